"""Prefill and batch scoring at Minitron-4B widths: nemotron_c against Transformers (float32) in one run.

    python benchmarks/bench_prefill.py CHECKPOINT [--threads 1] [--dtype float32|bfloat16] [--repeats 3]

CHECKPOINT: a Nemotron checkpoint directory (e.g. a random 2-layer one at Minitron-4B's widths, made with
transformers and saved in bfloat16). Timed, taking turns so that load from elsewhere hits all alike:
  prefill   one sequence of --prompt tokens, logits at the last position only (logits_to_keep=1);
  scoring   --batch x --length tokens, summed log-probabilities of the next tokens (nemotron_c's score;
            for Transformers the logits, log_softmax and gather a script would write).
nemotron_c loads the weights in --dtype (float32 widens a bfloat16 checkpoint at load; bfloat16 keeps them
and computes in float32); Transformers always runs float32, eager attention, torch.set_num_threads(--threads).
Reports the best wall time and the best CPU time (process time, all threads) of --repeats runs: on a shared
machine CPU time is the steadier figure, and CPU-time GFLOP/s per thread is what compares with the FMA peak.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scoring import best_times  # noqa: E402  (the same turn-taking best-of-N timer)


def matmul_flops(config, tokens, head_rows):
    """Multiply-adds x 2 of every linear layer for `tokens` positions, the lm_head on `head_rows` of them."""
    h, i = config["hidden_size"], config["intermediate_size"]
    qd = config["num_attention_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    kvd = config["num_key_value_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    per_token = h * qd + 2 * h * kvd + qd * h + 2 * h * i
    return 2 * (tokens * per_token * config["num_hidden_layers"] + head_rows * h * config["vocab_size"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-transformers", action="store_true", help="time nemotron_c alone")
    args = parser.parse_args()

    import nemotron_c

    with open(os.path.join(args.checkpoint, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    vocab = config["vocab_size"]
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, vocab, size=(1, args.prompt))
    batch = rng.integers(0, vocab, size=(args.batch, args.length))

    ours = nemotron_c.NemotronForCausalLM.from_pretrained(args.checkpoint, dtype=args.dtype,
                                                          num_threads=args.threads)
    fns = [lambda: ours(prompt, logits_to_keep=1, use_cache=False),
           lambda: ours.score(batch, batch_size=args.batch)]
    names = [f"nemotron_c {args.dtype} ({ours.kernels})"]
    if not args.no_transformers:
        import torch
        import transformers

        torch.set_num_threads(args.threads)
        transformers.logging.set_verbosity_error()
        theirs = transformers.NemotronForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()

        def theirs_prefill():
            with torch.inference_mode():
                theirs(torch.as_tensor(prompt), logits_to_keep=1, use_cache=False)

        def theirs_score():
            with torch.inference_mode():
                ids = torch.as_tensor(batch)
                logp = torch.log_softmax(theirs(ids).logits.float(), dim=-1)
                return logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].sum(-1)

        fns += [theirs_prefill, theirs_score]
        names.append(f"transformers {transformers.__version__} float32")
    wall, cpu = best_times(fns, args.repeats)

    work = [(args.prompt, matmul_flops(config, args.prompt, 1)),
            (args.batch * args.length, matmul_flops(config, args.batch * args.length, args.batch * args.length))]
    print(f"{args.checkpoint}: {args.threads} thread(s), best of {args.repeats}; GFLOP/s counts the linear layers "
          f"only; the last column per second of CPU time (all threads')")
    print(f"{'':34s} {'task':8s} {'tok/s':>8s} {'wall s':>7s} {'CPU s':>7s} {'GFLOP/s':>8s} {'GF/CPU-s':>11s}")
    for i, name in enumerate(names):
        for j, task in enumerate(["prefill", "scoring"]):
            t, c = wall[2 * i + j], cpu[2 * i + j]
            tokens, flops = work[j]
            print(f"{name:34s} {task:8s} {tokens / t:8.1f} {t:7.2f} {c:7.2f} {flops / t / 1e9:8.1f} "
                  f"{flops / c / 1e9:11.1f}")


if __name__ == "__main__":
    main()
