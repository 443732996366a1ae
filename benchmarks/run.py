"""The benchmark in one command: the machine, its probes, then nemotron_c beside Transformers (and llama.cpp and
ONNX Runtime GenAI when installed) on one random checkpoint with Minitron-4B's layer widths.

    python -m benchmarks.run [--threads N] [--repeats 3] [--layers 2] [--vocab 32000]
                             [--peers-python PYTHON] [--results benchmarks/RESULTS.md] [--smoke]

Run from the clone's root (the nemotron_c found there is the one measured). Prints the CPU, its instruction
sets, the kernel set and thread count; the float32 FMA peak and read bandwidth (one thread and all threads);
then one table: prefill of a 512-token prompt and scoring of 16 x 128 tokens (nemotron_c float32 and bfloat16
weights, and float32 weights of other than bfloat16 values from a float32 copy of the checkpoint; Transformers
float32), prefill of a 4096-token prompt and of the 512-token one on one thread (how attention grows with the
prompt, how the threads scale), greedy decode of 64 new tokens at batch 1 and 8 (every nemotron_c dtype,
Transformers float32 and bfloat16, the peers), with tokens/s, the ratio to Transformers float32, GFLOP/s and
its fraction of the FMA peak, the weights read per token, GB/s and its fraction of the read bandwidth. The
table replaces this CPU kind's section of the results file. benchmarks/README.md says more.
"""
import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import nemotron_c
from nemotron_c.model.weights import QUANTIZED_DTYPES

from . import goals, machine
from .checkpoint import (BOS_ID, EOS_ID, MAX_POSITIONS, MINITRON_4B, SMOKE, checkpoint_dir, make_checkpoint,
                         make_float32_variant, read_config)
from .engines import NemotronC, Transformers
from .measure import PEERS, leading_agreement, measure_engine
from .results import Ceilings, Row, section, text_table, update_results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                             "nemotron_c", "benchmarks")
# the smoke test's sizes: every section runs, in seconds
SMOKE_SIZES = dict(vocab=512, prefill=16, long_prefill=64, score_batch=2, score_length=8, new_tokens=4,
                   decode_prompt=4, repeats=1, probe_mib=16)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=machine.thread_count(),
                        help="threads for every engine and the all-threads probes (default: the CPUs available)")
    parser.add_argument("--repeats", type=int, help="best of N for every figure (default 3)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, help="vocabulary size (default 32000; 256000 is Nemotron-4's)")
    parser.add_argument("--prefill", type=int, help="prompt tokens of the prefill row (default 512)")
    parser.add_argument("--long-prefill", type=int,
                        help=f"prompt tokens of the long prompt's prefill row (default and most {MAX_POSITIONS}, the "
                             "checkpoint's positions; 0: no such row)")
    parser.add_argument("--score-batch", type=int, help="sequences scored at once (default 16)")
    parser.add_argument("--score-length", type=int, help="tokens per scored sequence (default 128)")
    parser.add_argument("--new-tokens", type=int, help="greedy tokens generated per decode row (default 64)")
    parser.add_argument("--decode-prompt", type=int, help="prompt tokens before decoding (default 16)")
    parser.add_argument("--decode-batches", default="1,8")
    parser.add_argument("--probe-mib", type=int, help="buffer the read-bandwidth probe reads (default 1024)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE,
                        help=f"where the checkpoint, conversions and probes are kept (default {DEFAULT_CACHE})")
    parser.add_argument("--results", help="results file to update (default benchmarks/RESULTS.md; with --smoke, "
                                          "RESULTS-smoke.md in the cache directory)")
    parser.add_argument("--peers-python", default=sys.executable,
                        help="interpreter that has llama_cpp / onnxruntime_genai (default: this one); the peer "
                             "rows run in a subprocess of it, which imports nothing of nemotron_c")
    parser.add_argument("--gguf-converter", help="llama.cpp's convert_hf_to_gguf.py (default: looked for beside "
                                                 "the peers' llama_cpp and in the cache directory)")
    parser.add_argument("--isa", choices=("best", "avx2"), default="best",
                        help="avx2: hold nemotron_c and torch to AVX2 and FMA, as on a CPU without AVX-512 (an AMD "
                             "EPYC), and take the AVX2 FMA peak; the results go to a section of their own")
    parser.add_argument("--smoke", action="store_true", help="tiny widths, one repeat: checks the command, "
                                                             "not the speed")
    args = parser.parse_args(argv)
    sizes = dict(vocab=32000, prefill=512, long_prefill=MAX_POSITIONS, score_batch=16, score_length=128,
                 new_tokens=64, decode_prompt=16, repeats=3, probe_mib=1024)
    if args.smoke:
        sizes.update(SMOKE_SIZES)
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("threads", "repeats", "layers", "vocab", "prefill", "score_batch", "score_length",
                 "decode_prompt", "probe_mib"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.long_prefill <= MAX_POSITIONS:
        parser.error(f"--long-prefill must be 0 to {MAX_POSITIONS}, the checkpoint's max_position_embeddings")
    if args.long_prefill == args.prefill:
        parser.error("--long-prefill must differ from --prefill (0 leaves its row out)")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (decode rates time the tokens after the first)")
    if args.isa == "avx2" and not {"avx2", "fma", "f16c"} <= set(machine.isa_flags()):
        parser.error("--isa avx2 holds the engines to AVX2, FMA and F16C, which this CPU does not have all of")
    args.decode_batches = [int(b) for b in args.decode_batches.split(",") if b]
    args.widths = SMOKE if args.smoke else MINITRON_4B
    if args.results is None:
        args.results = (os.path.join(args.cache_dir, "RESULTS-smoke.md") if args.smoke
                        else os.path.join(HERE, "RESULTS.md"))
    return args


# --isa avx2: what holds each engine to AVX2 and FMA. The variables are read when torch first computes, so they are
# set before anything imports it; llama.cpp runs at the instruction sets its library was built for (a build without
# AVX-512 through LLAMA_CPP_LIB_PATH, benchmarks/README.md); ONNX Runtime's kernels read CPUID and cannot be held.
AVX2_ENVIRONMENT = {
    "NEMOTRON_C_KERNELS": "avx2",
    "ATEN_CPU_CAPABILITY": "avx2",       # torch's own vectorized kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",   # its float32 matmuls
    "ONEDNN_MAX_CPU_ISA": "AVX2",        # its bfloat16 ones
}
AVX2_HELD = ("nemotron_c's avx2 kernels; torch through ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and "
             "ONEDNN_MAX_CPU_ISA; llama.cpp by its build (its CPU features under Versions); ONNX Runtime GenAI not "
             "held (it reads CPUID)")


def log(*parts):
    print(*parts, flush=True)


def commit():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"nemotron_c {nemotron_c.__version__}"


def chosen_kernels(threads):
    """The kernel set nemotron_c picks here (NEMOTRON_C_KERNELS or the CPU's best), from a tiny model."""
    config = nemotron_c.NemotronConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2)
    return nemotron_c.NemotronForCausalLM.from_config(config, num_threads=threads).kernels


def run_probes(args):
    """(lines to print, Ceilings at the run's thread count, probe summary for the results file). The peak is the
    widest instruction set's, or --isa's."""
    build_dir = os.path.join(args.cache_dir, "probes")
    lines, summary = [], []
    peak = one_peak = bandwidth = None
    try:
        peaks = machine.fma_peak(build_dir, args.threads, args.repeats)
        for isa, (one, all_threads) in peaks.items():
            lines.append(f"float32 FMA peak {isa:7s} {one:8.1f} GFLOP/s one core, {all_threads:8.1f} GFLOP/s "
                         f"{args.threads} threads")
        if args.isa != "best":
            peaks = {isa: pair for isa, pair in peaks.items() if isa == args.isa}
        if peaks:
            isa, (one_peak, peak) = max(peaks.items(), key=lambda item: item[1][1] or 0)
            summary.append(f"float32 FMA peak ({isa}) {one_peak:.1f} GFLOP/s one core, {peak:.1f} all threads")
        else:
            lines.append("float32 FMA peak: no probe for this CPU's instruction sets")
    except OSError as e:
        lines.append(f"float32 FMA peak: not measured ({e})")
    try:
        one, bandwidth = machine.read_bandwidth(build_dir, args.threads, args.repeats, args.probe_mib)
        lines.append(f"read bandwidth ({args.probe_mib} MiB) {one:.1f} GB/s one thread, {bandwidth:.1f} GB/s "
                     f"{args.threads} threads")
        summary.append(f"read bandwidth {one:.1f} GB/s one thread, {bandwidth:.1f} all threads")
    except OSError as e:
        lines.append(f"read bandwidth: not measured ({e})")
    return lines, Ceilings(peak, bandwidth, one_peak), "; ".join(summary) or "not measured"


def make_plan(args, config):
    """The inputs every engine gets and the FLOPs per token of prefill and scoring. Prompts are random ids
    (never the end-of-sequence id), each starting with BOS."""
    H, V, L = config["hidden_size"], config["vocab_size"], config["num_hidden_layers"]
    QD = config["num_attention_heads"] * config["head_dim"]
    KVD = config["num_key_value_heads"] * config["head_dim"]
    # the decoder layers' matmuls per token (q, k, v, o; the relu² MLP's up and down)
    layer_flops = 2 * L * (2 * H * QD + 2 * H * KVD + 2 * H * config["intermediate_size"])

    def sequence_flops(T, logits):
        # causal attention: T(T+1)/2 query-key pairs, a product each for QK and for AV, per head dim
        return T * layer_flops + L * 2 * QD * T * (T + 1) + logits * 2 * H * V

    rng = np.random.default_rng(0)

    def ids(rows, length):
        out = rng.integers(EOS_ID + 1, V, size=(rows, length))
        out[:, 0] = BOS_ID
        return out.tolist()

    P, B, T, LP = args.prefill, args.score_batch, args.score_length, args.long_prefill
    return dict(
        prefill_name=f"prefill {P}", prefill_ids=ids(1, P), prefill_flops=sequence_flops(P, 1) / P,
        # None: no long prompt row (--long-prefill 0)
        long_name=f"prefill {LP}" if LP else None, long_ids=ids(1, LP) if LP else None,
        long_flops=sequence_flops(LP, 1) / LP if LP else None,
        one_thread_name=f"prefill {P}, 1 thread",
        score_name=f"score {B}×{T}", score_ids=ids(B, T), score_flops=sequence_flops(T, T) / T,
        decode_batches=args.decode_batches, decode_prompts=ids(max(args.decode_batches), args.decode_prompt),
        new_tokens=args.new_tokens)


# the row of float32 weights that are not bfloat16 values: prefill and scoring (decode runs the float32 row's kernels)
ANY_FLOAT32 = "float32, any"
ANY_FLOAT32_NOTE = "a float32 copy of the checkpoint, values off bfloat16's grid; × Transformers: its float32 row"


def measure_local(args, path, float32_path, plan):
    """Rows and {(engine, dtype): {batch: tokens}} of nemotron_c and Transformers, one model in memory at a time;
    float32_path: the checkpoint's float32 variant (make_float32_variant), for nemotron_c's ANY_FLOAT32 row."""
    full = ("prefill", "long", "score", "decode") if args.long_prefill else ("prefill", "score", "decode")
    specs = [(NemotronC, "float32", full),
             (NemotronC, "bfloat16", full),
             *((NemotronC, dtype, ("decode",)) for dtype in QUANTIZED_DTYPES),
             (Transformers, "float32", full),
             (Transformers, "bfloat16", ("decode",))]
    rows, tokens = [], {}
    for cls, dtype, which in specs:
        engine = cls(path, dtype, args.threads)
        found, generated = measure_engine(engine, plan, args.repeats, which, log)
        rows += [Row(**r) for r in found]
        tokens[(engine.engine, dtype)] = generated
        del engine
        gc.collect()
    if args.threads > 1:  # the same prefill on one thread: how the engines scale
        one_thread = dict(plan, prefill_name=plan["one_thread_name"])
        for cls, dtype, which in specs:
            if "prefill" in which:
                engine = cls(path, dtype, 1)
                found, _ = measure_engine(engine, one_thread, args.repeats, ("prefill",), log)
                rows += [Row(**r, threads=1) for r in found]
                del engine
                gc.collect()
    engine = NemotronC(float32_path, "float32", args.threads)
    engine.dtype = ANY_FLOAT32
    found, _ = measure_engine(engine, plan, args.repeats, ("prefill", "score"), log)
    rows += [Row(**dict(r, note=ANY_FLOAT32_NOTE)) for r in found]
    del engine
    gc.collect()
    relate_prefills(rows, plan, args.threads)
    return rows, tokens


def relate_prefills(rows, plan, threads):
    """Notes the long prompt's time per token and the one-thread prefill's scaling against each engine's prefill
    row: issue 12's goals (at most 1.5x, at least 1.8x on two threads) are stated on these ratios."""
    prefill = {(r.engine, r.dtype): r.tokens_per_s for r in rows if r.measurement == plan["prefill_name"]}
    for r in rows:
        base = prefill.get((r.engine, r.dtype))
        if not base or not r.tokens_per_s:
            continue
        if r.measurement == plan["long_name"]:
            r.note = f"time per token {base / r.tokens_per_s:.2f}× {plan['prefill_name']}'s"
        elif r.threads == 1 and threads > 1:
            r.note = f"{threads} threads: {base / r.tokens_per_s:.2f}× this"


def run_peers(args, path, plan):
    """Rows, tokens and version notes of llama.cpp and ONNX Runtime GenAI, each dtype measured by peers.py in a
    subprocess of --peers-python of its own (which converts the checkpoint into the cache directory once): a
    peer that crashes costs its own row only."""
    rows, tokens, versions = [], {}, set()
    for engine, dtypes in PEERS:
        for dtype in dtypes:
            log(f"  {engine} {dtype}")
            found, generated, named = run_peer(args, path, plan, engine, dtype)
            if engine == "llama.cpp" and found[0].note.startswith("failed: peers.py ended with signal"):
                # llama-cpp-python 0.3.36 crashes on q8_0 on a Xeon with AMX unless its extra buffer types
                # (repacked weights) are off: rows without them, saying so
                crash = found[0].note.removeprefix("failed: ")
                found, generated, named = run_peer(args, path, plan, engine, dtype, extra_buffers=False)
                for row in found:
                    row.note = f"extra buffer types off (on: {crash})" + (f"; {row.note}" if row.note else "")
            rows += found
            tokens.update(generated)
            versions.update(named)
            if len(found) == 1 and found[0].dtype == "/".join(dtypes):
                break  # not installed or not convertible: the row says so for all its dtypes
    return rows, tokens, sorted(versions)


def run_peer(args, path, plan, engine, dtype, extra_buffers=True):
    with tempfile.TemporaryDirectory() as tmp:
        request, response = os.path.join(tmp, "request.json"), os.path.join(tmp, "response.json")
        with open(request, "w", encoding="utf-8") as f:
            json.dump(dict(peer=[engine, dtype], checkpoint=path, out_dir=os.path.join(args.cache_dir, "peers"),
                           threads=args.threads, repeats=args.repeats, plan=plan, gguf_converter=args.gguf_converter,
                           extra_buffers=extra_buffers), f)
        try:
            status = subprocess.run([args.peers_python, os.path.join(HERE, "peers.py"), request, response],
                                    timeout=3600).returncode
            if status != 0:
                why = f"signal {-status}" if status < 0 else f"status {status}"
                return [Row("-", engine, dtype, note=f"failed: peers.py ended with {why}")], {}, []
            with open(response, encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            return [Row("-", engine, dtype, note=f"failed: {type(e).__name__}: {e}"[:160])], {}, []
    tokens = {(name, kind): {int(b): t for b, t in by_batch.items()} for name, kind, by_batch in result["tokens"]}
    return [Row(**r) for r in result["rows"]], tokens, result["versions"]


def agreement(rows, tokens, new_tokens):
    """Sets each decode row's `greedy`: how its greedy tokens compare with Transformers float32's (how many rows
    of the batch agree throughout, how far the others do); returns the sanity line for nemotron_c float32 and
    bfloat16."""
    reference = tokens.get(("Transformers", "float32"), {})
    exact = []
    for row in rows:
        if not row.measurement.startswith("decode batch") or row.tokens_per_s is None:
            continue
        batch = int(row.measurement.rsplit(" ", 1)[1])
        mine = tokens.get((row.engine, row.dtype), {}).get(batch)
        if mine is None or batch not in reference:
            continue
        if (row.engine, row.dtype) == ("Transformers", "float32"):
            row.greedy = "greedy reference"
            continue
        agree = leading_agreement(mine, reference[batch])
        same = sum(a == new_tokens for a in agree)
        if same == len(agree):
            row.greedy = "greedy = Transformers fp32"
        elif len(agree) == 1:
            row.greedy = f"greedy: first {agree[0]}/{new_tokens} agree"
        else:  # one near-tie flipped by rounding ends a row's agreement: say how many rows went all the way
            row.greedy = f"greedy: {same}/{len(agree)} rows = Transformers fp32, the others from token {min(agree)}"
        if row.engine == "nemotron_c" and row.dtype in ("float32", "bfloat16"):
            exact.append(same == len(agree))
    if not exact:
        return "greedy tokens: not compared"
    verdict = "yes" if all(exact) else "NO"
    return (f"greedy tokens of nemotron_c float32 and bfloat16 equal Transformers float32's at batch "
            f"{' and '.join(map(str, reference))}: {verdict}")


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.cache_dir, exist_ok=True)
    name, heading = machine.cpu_kind()
    if args.isa == "avx2":
        os.environ.update(AVX2_ENVIRONMENT)
        heading += ", held to AVX2"
    kernels = chosen_kernels(args.threads)
    revision = commit()  # once: the run's own first write of the results file makes the tree differ from HEAD
    log("== machine")
    log(f"CPU      {name}")
    log(f"ISA      {' '.join(machine.isa_flags()) or 'unknown'}")
    log(f"kernels  {kernels} (nemotron_c {nemotron_c.__version__}, commit {revision})")
    log(f"threads  {args.threads}; best of {args.repeats}")

    started = {"probes": time.perf_counter()}
    log("== probes")
    probe_lines, ceilings, probe_summary = run_probes(args)
    for line in probe_lines:
        log(line)

    started["checkpoint"] = time.perf_counter()
    log("== checkpoint")
    path = make_checkpoint(checkpoint_dir(args.cache_dir, args.widths, args.layers, args.vocab), args.widths,
                           args.layers, args.vocab, log=log)
    config = read_config(path)
    log(f"{path}: random, hidden {config['hidden_size']}, {config['num_attention_heads']} heads "
        f"({config['num_key_value_heads']} key/value, head_dim {config['head_dim']}), intermediate "
        f"{config['intermediate_size']}, {config['num_hidden_layers']} layers, vocab {config['vocab_size']}, "
        f"bfloat16 on disk")
    float32_path = make_float32_variant(path, path + "-float32", log=log)
    plan = make_plan(args, config)

    started["nemotron_c and Transformers"] = time.perf_counter()
    log("== nemotron_c and Transformers")
    import torch  # optional dependencies, only for the reference rows
    import transformers

    rows, tokens = measure_local(args, path, float32_path, plan)
    versions = [f"nemotron_c {nemotron_c.__version__}",
                f"torch {torch.__version__} (ATen {torch.backends.cpu.get_cpu_capability()})",
                f"transformers {transformers.__version__}"]

    names = dict(prefill=plan["prefill_name"], long=plan["long_name"], score=plan["score_name"],
                 one_thread=plan["one_thread_name"])

    def write_results(peer_versions, pending=""):
        sanity = agreement(rows, tokens, args.new_tokens)
        checks = goals.evaluate(rows, names, ceilings, args.threads)
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        header = [
            f"{date} · commit {revision} · {args.threads} threads · kernels {kernels} · best of {args.repeats}  ",
            f"ISA: {' '.join(machine.isa_flags()) or 'unknown'}  ",
            f"Probes: {probe_summary}  ",
            f"Checkpoint: random, hidden {config['hidden_size']}, {config['num_attention_heads']}/"
            f"{config['num_key_value_heads']} heads × {config['head_dim']}, intermediate "
            f"{config['intermediate_size']}, {config['num_hidden_layers']} layers, vocab {config['vocab_size']}, "
            f"bfloat16 on disk  ",
            f"Versions: {', '.join(versions + peer_versions)}  ",
            *([f"Held to AVX2: {AVX2_HELD}  "] if args.isa == "avx2" else []),
            f"Sanity: {sanity}" + (f"  \n{pending}" if pending else ""),
        ]
        update_results(args.results, heading, section(heading, header, rows, ceilings, goals.markdown(checks)))
        return sanity, checks

    # written now as well, so that a run stopped while the peers convert or run keeps what it measured
    write_results([], "Peers: not measured (the run stopped before them)")
    started["peers"] = time.perf_counter()
    log("== peers")
    peer_rows, peer_tokens, peer_versions = run_peers(args, path, plan)
    rows += peer_rows
    tokens.update(peer_tokens)
    sanity, checks = write_results(peer_versions)
    log("== results")
    log(text_table(rows, ceilings))
    log(sanity)
    log("== goals")
    for c in checks:
        log(f"  {'-' if c.met is None else 'met' if c.met else 'NOT':3s}  {c.goal}: {c.measured}")
    log(goals.summary(checks))
    log(f"written to {args.results} (section '{heading}')")
    ends = list(started.values())[1:] + [time.perf_counter()]
    log("took " + ", ".join(f"{name} {(end - start) / 60:.1f} min"
                            for (name, start), end in zip(started.items(), ends)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
