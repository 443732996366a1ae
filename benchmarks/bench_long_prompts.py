"""Prefill time per token at several prompt lengths, to see what attention adds as prompts grow.

    python benchmarks/bench_long_prompts.py [--widths minitron-4b] [--layers 1] [--lengths 512,4096] [--repeat 3]
                                       [--cache-dtype float32|bfloat16] [--dtype float32|bfloat16]

Makes a random Nemotron checkpoint (nothing is downloaded) and times one forward pass over a prompt of each
length (the lm_head for the last position only, as generate's prefill), best of --repeat. The ratio column
is each length's time per token over the first length's: attention's cost grows with the prompt, every
other step does not. CPU time (of every thread of the process) is printed beside the wall time: on a
machine that other jobs share it is the steadier of the two.
"""
import argparse
import os
import tempfile
import time

import numpy as np

import nemotron_c
from bench_model import WIDTHS, make_checkpoint


def best_of(fn, repeat):
    """The least wall time and the least CPU time (all threads) of `repeat` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="minitron-4b", choices=sorted(WIDTHS))
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--lengths", default="512,4096")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cache-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the weights' dtype (bfloat16: the amx kernel set's tile matmuls where the CPU has them)")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]

    with tempfile.TemporaryDirectory() as path:
        make_checkpoint(path, args.layers, args.dtype, args.widths, max_positions=max(lengths))
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads,
                                                                cache_dtype=args.cache_dtype)
        rng = np.random.default_rng(0)
        per_token = {}
        for n in lengths:
            ids = rng.integers(0, model.config.vocab_size, size=(1, n))
            wall, cpu = best_of(lambda: model(ids, use_cache=False, logits_to_keep=1), args.repeat)
            per_token[n] = wall / n, cpu / n
            first = per_token[lengths[0]]
            print(f"{n:6} tokens: wall {wall:8.3f} s, {1e3 * wall / n:7.3f} ms/token, "
                  f"{per_token[n][0] / first[0]:5.2f} x; CPU {cpu:8.3f} s, {1e3 * cpu / n:7.3f} ms/token, "
                  f"{per_token[n][1] / first[1]:5.2f} x the per-token time at {lengths[0]}", flush=True)


if __name__ == "__main__":
    main()
