"""Load time, prefill and decode speed of nemotron_c against Transformers (PyTorch, CPU) in the same run.

    python benchmarks/bench_model.py [--dtype float32|bfloat16] [--threads N] [--layers 8]

Makes a mid-sized random Nemotron checkpoint in a temporary directory (nothing is downloaded), then
times both libraries on it with the same number of threads. Prints a table with the ratio
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


def make_checkpoint(path, layers, dtype):
    config = transformers.NemotronConfig(
        vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as path:
        params, embedding = make_checkpoint(path, args.layers, args.dtype)
        print(f"random Nemotron checkpoint: {params / 1e6:.0f}M parameters stored as {args.dtype}, "
              f"{args.threads} threads, kernels {os.environ.get('NEMOTRON_C_KERNELS', 'auto')}")

        load_ours = best_of(lambda: nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads), 3)
        # Transformers computes in float32 here, as nemotron_c does whatever the storage
        load_theirs = best_of(lambda: transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), 3)
        ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=args.threads)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

        ids = np.random.default_rng(0).integers(0, 32000, size=(1, args.prompt))
        ours(ids)  # warm up
        prefill_ours = best_of(lambda: ours(ids, use_cache=False, logits_to_keep=1), 5)
        with torch.inference_mode():
            tids = torch.as_tensor(ids)
            theirs(tids)
            prefill_theirs = best_of(lambda: theirs(tids, use_cache=False, logits_to_keep=1), 5)

        n = args.new_tokens
        decode_ours = best_of(lambda: ours.generate(ids, max_new_tokens=n, eos_token_id=None), 2)
        with torch.inference_mode():
            decode_theirs = best_of(
                lambda: theirs.generate(tids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None,
                                        pad_token_id=0), 2)
        # decode rate: new tokens over the time beyond one prefill
        rate_ours = n / max(decode_ours - prefill_ours, 1e-9)
        rate_theirs = n / max(decode_theirs - prefill_theirs, 1e-9)

    rows = [
        ("from_pretrained (s)", load_ours, load_theirs, load_theirs / load_ours),
        (f"forward, {args.prompt} tokens (s)", prefill_ours, prefill_theirs, prefill_theirs / prefill_ours),
        ("prefill tokens/s", args.prompt / prefill_ours, args.prompt / prefill_theirs,
         prefill_theirs / prefill_ours),
        ("decode tokens/s (batch 1)", rate_ours, rate_theirs, rate_ours / rate_theirs),
    ]
    print(f"{'':32} {'nemotron_c':>12} {'transformers':>13} {'ratio':>7}")
    for name, a, b, ratio in rows:
        print(f"{name:32} {a:12.3f} {b:13.3f} {ratio:7.2f}")
    # prefill multiplies every token by the decoder layers' weights (the lm_head only for the last one);
    # decode reads the decoder layers and the lm_head once per token (the embedding table only one row)
    layer_params = params - 2 * embedding
    flops = 2 * layer_params * args.prompt
    print(f"prefill GFLOP/s (2 x layer params x tokens): nemotron_c {flops / prefill_ours / 1e9:.1f}, "
          f"transformers {flops / prefill_theirs / 1e9:.1f}")
    weight_bytes = (layer_params + embedding) * (4 if args.dtype == "float32" else 2)
    print(f"decode weight-read bandwidth: nemotron_c {weight_bytes * rate_ours / 1e9:.1f} GB/s, "
          f"transformers {weight_bytes * rate_theirs / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
