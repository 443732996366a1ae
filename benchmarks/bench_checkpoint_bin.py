"""Loading NVIDIA's checkpoint format: a Minitron-4B-sized random model as a 2-shard bf16 pytorch_model.bin.

    python benchmarks/bench_checkpoint_bin.py --dir /tmp/minitron4b_bin [--transformers] [--threads N]

Writes (once; reruns reuse it) a checkpoint with the exact published config of nvidia/Minitron-4B-Base
(tests/data/configs) and random bf16 weights, laid out as Transformers 4 saved it with
safe_serialization=False: pytorch_model-0000k-of-00002.bin and pytorch_model.bin.index.json. Then, each in a
fresh process, loads it with nemotron_c (torch made unimportable) and generates 8 tokens, and optionally does
the same with Transformers. Reports load time, generation time and peak resident memory (VmHWM) against the
weights' bytes. The checkpoint is 8.4 GB: delete the --dir afterwards.
"""
import argparse
import json
import os
import subprocess
import sys
import time

CONFIG = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "configs", "Minitron-4B-Base.json")
PROMPT = [2, 1014, 2877, 30211, 611, 9, 4071, 128]
NEW_TOKENS = 8


def tensor_shapes(config):
    """Every tensor of NemotronForCausalLM with its shape, in Transformers' state_dict order."""
    H, I, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    D = config.get("head_dim") or H // config["num_attention_heads"]
    Q, KV = config["num_attention_heads"] * D, config["num_key_value_heads"] * D
    shapes = {"model.embed_tokens.weight": (V, H)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (Q, H), p + "self_attn.k_proj.weight": (KV, H),
            p + "self_attn.v_proj.weight": (KV, H), p + "self_attn.o_proj.weight": (H, Q),
            p + "mlp.up_proj.weight": (I, H), p + "mlp.down_proj.weight": (H, I),
            p + "input_layernorm.weight": (H,), p + "input_layernorm.bias": (H,),
            p + "post_attention_layernorm.weight": (H,), p + "post_attention_layernorm.bias": (H,),
        })
    shapes.update({"model.norm.weight": (H,), "model.norm.bias": (H,)})
    if not config.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (V, H)
    return shapes


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def write_checkpoint(directory, shards=2):
    import torch  # only the writer needs torch

    with open(CONFIG) as f:
        config = json.load(f)
    shapes = tensor_shapes(config)
    total = sum(2 * numel(s) for s in shapes.values())
    index_path = os.path.join(directory, "pytorch_model.bin.index.json")
    if os.path.exists(index_path):
        return total
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # Cheap random weights: one pool of N(0, 0.02) values, each tensor a window of it at its own offset.
    generator = torch.Generator().manual_seed(0)
    pool = (torch.randn(1 << 24, generator=generator) * 0.02).to(torch.bfloat16)
    groups, current, size = [], [], 0
    for name in shapes:  # consecutive tensors; a shard closes once it holds its share of the bytes
        current.append(name)
        size += 2 * numel(shapes[name])
        if size >= total * (len(groups) + 1) / shards and len(groups) < shards - 1:
            groups.append(current)
            current = []
    groups.append(current)
    weight_map = {}
    for k, group in enumerate(groups, 1):
        file_name = f"pytorch_model-{k:05d}-of-{len(groups):05d}.bin"
        state = {}
        for j, name in enumerate(group):
            n = numel(shapes[name])
            if name.endswith("norm.weight") or name.endswith("norm.bias"):
                tensor = pool[j : j + n].float() * 5  # LayerNorm1P: weights near 0 mean gains near 1
            else:
                reps = -(-n // pool.numel())
                tensor = pool.roll(j * 7919).repeat(reps)[:n]
            state[name] = tensor.to(torch.bfloat16).reshape(shapes[name]).clone()
            weight_map[name] = file_name
        torch.save(state, os.path.join(directory, file_name))
        del state
    with open(index_path, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return total


def touched_bytes():
    """The weight bytes generating a few tokens reads: all of them but the untouched rows of the embedding."""
    with open(CONFIG) as f:
        config = json.load(f)
    return sum(2 * numel(s) for n, s in tensor_shapes(config).items() if n != "model.embed_tokens.weight")


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(library, directory, threads):
    if library == "nemotron_c":
        sys.modules["torch"] = None  # the .bin reader must not need torch
        import numpy as np
        import nemotron_c

        start = time.perf_counter()
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, num_threads=threads)
        loaded = time.perf_counter()
        out = model.generate(np.array([PROMPT]), max_new_tokens=NEW_TOKENS, do_sample=False)
        tokens = [int(t) for t in out[0][len(PROMPT):]]
    else:
        import torch
        import transformers

        torch.set_num_threads(threads)
        start = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
        loaded = time.perf_counter()
        with torch.no_grad():
            out = model.generate(torch.tensor([PROMPT]), max_new_tokens=NEW_TOKENS, do_sample=False)
        tokens = out[0][len(PROMPT):].tolist()
    done = time.perf_counter()
    print(json.dumps({"load_s": loaded - start, "generate_s": done - loaded, "peak_rss": peak_rss_bytes(),
                      "tokens": tokens}))


def run_child(library, directory, threads):
    result = subprocess.run([sys.executable, __file__, "--child", library, "--dir", directory,
                             "--threads", str(threads)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{library} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="where the checkpoint is written once and reused")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--transformers", action="store_true", help="also time Transformers (needs ~2x the RAM)")
    parser.add_argument("--child", choices=["nemotron_c", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.dir, args.threads)

    start = time.perf_counter()
    weight_bytes = write_checkpoint(args.dir)
    files = sorted(n for n in os.listdir(args.dir) if n.endswith(".bin"))
    print(f"checkpoint {args.dir}: {', '.join(files)}, {weight_bytes / 1e9:.2f} GB of bf16 weights "
          f"(ready in {time.perf_counter() - start:.0f} s)")
    touched = touched_bytes()
    print(f"without the embedding matrix, of which only the prompt's rows are read: {touched / 1e9:.2f} GB")
    libraries = ["nemotron_c"] + (["transformers"] if args.transformers else [])
    results = {}
    for library in libraries:
        r = results[library] = run_child(library, args.dir, args.threads)
        print(f"{library:>12}: load {r['load_s']:6.1f} s, generate {NEW_TOKENS} tokens {r['generate_s']:6.1f} s, "
              f"peak RSS {r['peak_rss'] / 1e9:5.2f} GB = {r['peak_rss'] / weight_bytes:.2f}x the weights "
              f"({r['peak_rss'] / touched:.2f}x those read), "
              f"tokens {r['tokens']}")
    if "transformers" in results:
        ours, theirs = results["nemotron_c"], results["transformers"]
        print(f"Transformers / nemotron_c: load {theirs['load_s'] / ours['load_s']:.1f}x, "
              f"peak RSS {theirs['peak_rss'] / ours['peak_rss']:.2f}x, same tokens: {ours['tokens'] == theirs['tokens']}")


if __name__ == "__main__":
    main()
