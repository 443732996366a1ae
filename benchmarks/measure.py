"""How every engine is timed, the same for nemotron_c, Transformers and the peers (peers.py imports this file
from another interpreter: it needs nothing but the standard library).

An engine is an object with `engine` and `dtype` names, `decode_bytes` (weights one decode step reads) and
    prefill(ids)           ids: (1, P) list of lists; the logits of the last position only
    score(ids)             ids: (B, T); every position's next-token log-probability (when "score" is asked)
    generate(prompts, n)   prompts: (b, p); n greedy new tokens per row, end of sequence never chosen -> (b, n)
Each figure is the best of `repeats` runs after one warm-up.
    prefill tokens/s = P / t(prefill)
    decode tokens/s  = b (n - 1) / (t(generate n) - t(generate 1))      (the prompt's prefill cancels out)
"""
import gc
import math
import time

# the peers peers.py measures and the dtypes of each: llama.cpp's GGUF types, ONNX Runtime GenAI's precisions
PEERS = (("llama.cpp", ("f32", "bf16", "q8_0")), ("ORT GenAI", ("fp32", "int8", "int4")))


def best_time(fn, repeats):
    """(seconds of the fastest of `repeats` calls, what the last call returned)."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def row(measurement, engine, tokens_per_s=None, flops_per_token=None, bytes_per_token=None, note=""):
    return dict(measurement=measurement, engine=engine.engine, dtype=engine.dtype, tokens_per_s=tokens_per_s,
                flops_per_token=flops_per_token, bytes_per_token=bytes_per_token, note=note)


def measure_engine(engine, plan, repeats, which, log):
    """Rows (dicts of results.Row's fields) and {batch: generated tokens} of the measurements named in `which`
    ("prefill", "long": the long prompt's prefill, "score", "decode"). plan: the inputs and FLOP counts (run.py's
    make_plan)."""
    rows, tokens = [], {}
    for kind in [k for k in ("prefill", "long") if k in which]:
        ids = plan[f"{kind}_ids"]
        engine.prefill(ids)
        seconds, _ = best_time(lambda: engine.prefill(ids), repeats)
        rows.append(row(plan[f"{kind}_name"], engine, len(ids[0]) / seconds, plan[f"{kind}_flops"]))
        log(f"  {engine.engine} {engine.dtype}: {rows[-1]['measurement']} {rows[-1]['tokens_per_s']:.1f} tokens/s")
    if "score" in which:
        ids = plan["score_ids"]
        engine.score(ids)
        seconds, _ = best_time(lambda: engine.score(ids), repeats)
        rows.append(row(plan["score_name"], engine, len(ids) * len(ids[0]) / seconds, plan["score_flops"]))
        log(f"  {engine.engine} {engine.dtype}: {rows[-1]['measurement']} {rows[-1]['tokens_per_s']:.1f} tokens/s")
        gc.collect()  # Transformers' (B, T, V) logits
    if "decode" in which:
        n = plan["new_tokens"]
        for batch in plan["decode_batches"]:
            prompts = plan["decode_prompts"][:batch]
            name = f"decode batch {batch}"
            engine.generate(prompts, 2)
            one, _ = best_time(lambda: engine.generate(prompts, 1), repeats)
            full, out = best_time(lambda: engine.generate(prompts, n), repeats)
            rate = batch * (n - 1) / (full - one) if full > one else math.nan
            rows.append(row(name, engine, rate, bytes_per_token=engine.decode_bytes / batch))
            tokens[batch] = [[int(t) for t in r] for r in out]
            log(f"  {engine.engine} {engine.dtype}: {name} {rate:.2f} tokens/s")
    return rows, tokens


def leading_agreement(tokens, reference):
    """For each row of `tokens`, how many leading tokens it shares with the same row of `reference`."""
    return [next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            for mine, theirs in zip(tokens, reference)]
