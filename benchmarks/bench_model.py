"""Load time, prefill and decode speed of nemotron_c against Transformers (PyTorch, CPU) in the same run.

    python benchmarks/bench_model.py [--dtype float32|bfloat16] [--threads N] [--layers 8]
    python benchmarks/bench_model.py --widths minitron-4b --layers 2 --kernels avx2,avx512

Makes a mid-sized random Nemotron checkpoint in a temporary directory (nothing is downloaded), then
times both libraries on it with the same number of threads, nemotron_c once per kernel set named in
--kernels (default: NEMOTRON_C_KERNELS, else the CPU's best). Prints a table with the ratio
Transformers time / nemotron_c time (above 1: nemotron_c is faster).
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
import transformers

import nemotron_c


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# hidden_size, intermediate_size, num_attention_heads, num_key_value_heads (the vocabulary stays at 32000)
WIDTHS = {"mid": (1024, 4096, 16, 4), "minitron-4b": (3072, 9216, 24, 8)}


def make_checkpoint(path, layers, dtype, widths, max_positions=4096):
    hidden, intermediate, heads, kv_heads = WIDTHS[widths]
    config = transformers.NemotronConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
    )
    torch.manual_seed(0)
    model = transformers.NemotronForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    embedding = config.vocab_size * config.hidden_size
    return params, embedding


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--widths", default="mid", choices=sorted(WIDTHS))
    parser.add_argument("--kernels", default=os.environ.get("NEMOTRON_C_KERNELS", "auto"),
                        help="comma-separated kernel sets to time, e.g. avx2,avx512")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as path:
        params, embedding = make_checkpoint(path, args.layers, args.dtype, args.widths)
        print(f"random Nemotron checkpoint ({args.widths} widths): {params / 1e6:.0f}M parameters stored as "
              f"{args.dtype}, {args.threads} threads")

        load_ours = best_of(lambda: nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads), 3)
        # Transformers computes in float32 here, as nemotron_c does whatever the storage
        load_theirs = best_of(lambda: transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), 3)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        ids = np.random.default_rng(0).integers(0, 32000, size=(1, args.prompt))
        n = args.new_tokens

        prefill_ours, rate_ours = {}, {}
        for kernels in args.kernels.split(","):
            os.environ["NEMOTRON_C_KERNELS"] = kernels
            ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads)
            ours(ids)  # warm up
            prefill_ours[kernels] = best_of(lambda: ours(ids, use_cache=False, logits_to_keep=1), 5)
            decode = best_of(lambda: ours.generate(ids, max_new_tokens=n, eos_token_id=None), 2)
            # decode rate: new tokens over the time beyond one prefill
            rate_ours[kernels] = n / max(decode - prefill_ours[kernels], 1e-9)
            del ours
        with torch.inference_mode():
            tids = torch.as_tensor(ids)
            theirs(tids)
            prefill_theirs = best_of(lambda: theirs(tids, use_cache=False, logits_to_keep=1), 5)
            decode_theirs = best_of(
                lambda: theirs.generate(tids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None,
                                        pad_token_id=0), 2)
        rate_theirs = n / max(decode_theirs - prefill_theirs, 1e-9)

    print(f"{'':32} {'kernels':>9} {'nemotron_c':>12} {'transformers':>13} {'ratio':>7}")
    print(f"{'from_pretrained (s)':32} {'':>9} {load_ours:12.3f} {load_theirs:13.3f} {load_theirs / load_ours:7.2f}")
    for kernels, prefill in prefill_ours.items():
        rows = [
            (f"forward, {args.prompt} tokens (s)", prefill, prefill_theirs, prefill_theirs / prefill),
            ("prefill tokens/s", args.prompt / prefill, args.prompt / prefill_theirs, prefill_theirs / prefill),
            ("decode tokens/s (batch 1)", rate_ours[kernels], rate_theirs, rate_ours[kernels] / rate_theirs),
        ]
        for name, a, b, ratio in rows:
            print(f"{name:32} {kernels:>9} {a:12.3f} {b:13.3f} {ratio:7.2f}")
    # prefill multiplies every token by the decoder layers' weights (the lm_head only for the last one);
    # decode reads the decoder layers and the lm_head once per token (the embedding table only one row)
    layer_params = params - 2 * embedding
    flops = 2 * layer_params * args.prompt
    weight_bytes = (layer_params + embedding) * (4 if args.dtype == "float32" else 2)
    for kernels, prefill in prefill_ours.items():
        print(f"{kernels}: prefill GFLOP/s (2 x layer params x tokens) {flops / prefill / 1e9:.1f}, "
              f"decode weight-read bandwidth {weight_bytes * rate_ours[kernels] / 1e9:.1f} GB/s")
    print(f"transformers: prefill GFLOP/s {flops / prefill_theirs / 1e9:.1f}, "
          f"decode weight-read bandwidth {weight_bytes * rate_theirs / 1e9:.1f} GB/s")

if __name__ == "__main__":
    main()
