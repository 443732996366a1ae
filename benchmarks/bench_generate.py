"""Decode speed of generate(): nemotron_c against Transformers' generate, in the same run.

Builds a mid-sized random Nemotron checkpoint (hidden 1024, 8 layers, vocab 32000 by default) in a temporary
directory, then times greedy generation at batch 1 and batch 8. Decode tokens/s excludes the prompt's
prefill: it is (tokens of a long run - tokens of a 1-token run) / (time difference).

    python benchmarks/bench_generate.py [--new-tokens 64] [--prompt 32] [--threads N] [--dtype float32] [--sample]

--sample adds rows for sampling (temperature 0.8, top_k 50, top_p 0.95), --beams N rows for beam search.
"""
import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_checkpoint(path, args):
    import torch
    import transformers

    config = transformers.NemotronConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 128,
        max_position_embeddings=4096)
    torch.manual_seed(0)
    model = transformers.NemotronForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(0.0, 0.02 if "norm" not in name else 0.1)
    model.to(getattr(torch, args.dtype)).save_pretrained(path)


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def decode_rate(generate, batch, new_tokens, repeats):
    short = best_time(lambda: generate(batch, 1), repeats)
    long = best_time(lambda: generate(batch, new_tokens), repeats)
    return batch * (new_tokens - 1) / (long - short)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sample", action="store_true", help="also time sampling")
    parser.add_argument("--beams", type=int, default=0, help="also time beam search with this many beams")
    args = parser.parse_args()

    import torch
    import transformers

    import nemotron_c

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as path:
        make_checkpoint(path, args)
        ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads)
        theirs = transformers.NemotronForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    rng = np.random.default_rng(0)

    def prompt(batch):
        return rng.integers(0, args.vocab, size=(batch, args.prompt))

    modes = [("greedy", dict(do_sample=False))]
    if args.sample:
        modes.append(("sample", dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95)))
    if args.beams > 1:
        modes.append((f"beams={args.beams}", dict(do_sample=False, num_beams=args.beams)))

    def run_ours(batch, n, mode):
        return ours.generate(prompt(batch), max_new_tokens=n, eos_token_id=None, seed=0, **mode)

    def run_theirs(batch, n, mode):
        with torch.no_grad():
            return theirs.generate(torch.as_tensor(prompt(batch)), max_new_tokens=n, eos_token_id=None,
                                   pad_token_id=0, **mode)

    run_ours(1, 2, {}), run_theirs(1, 2, {})  # warm up
    print(f"Nemotron hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, {args.dtype}; "
          f"prompt {args.prompt}, {args.new_tokens} new tokens, {args.threads} threads, kernels {ours.kernels}")
    print(f"{'mode':>8}  {'batch':>5}  {'nemotron_c tok/s':>16}  {'transformers tok/s':>18}  {'ratio':>6}")
    for name, mode in modes:
        for batch in args.batches:
            a = decode_rate(lambda b, n: run_ours(b, n, mode), batch, args.new_tokens, args.repeats)
            b = decode_rate(lambda b, n: run_theirs(b, n, mode), batch, args.new_tokens, args.repeats)
            print(f"{name:>8}  {batch:>5}  {a:>16.1f}  {b:>18.1f}  {a / b:>6.2f}")


if __name__ == "__main__":
    main()
