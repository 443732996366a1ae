"""Batch scoring throughput of nemotron_c against Transformers, in one run on one random checkpoint.

    python benchmarks/bench_scoring.py [--batch 16] [--length 128] [--threads N]

nemotron_c: NemotronForCausalLM.score (tiled log-softmax in C, no (B, T, V) logits).
Transformers: model(ids).logits, log_softmax, gather at the next tokens (what a script would write),
float32, eager attention, torch.inference_mode, the same number of threads.
Both score the same (batch, length) ids; the checkpoint is a mid-sized random Nemotron made on the fly.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def best_times(fns, repeats):
    """Best wall time and best CPU time (all threads) of each function. The functions take turns, so that
    load from elsewhere hits all alike; CPU time is the steadier figure on a busy machine."""
    for fn in fns:
        fn()  # warm-up: pages the weights in, starts the threads
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for fn, w, c in zip(fns, wall, cpu):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - start)
            c.append(time.process_time() - start_cpu)
    return [min(w) for w in wall], [min(c) for c in cpu]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    import transformers

    import nemotron_c

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    config = transformers.NemotronConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(4096, args.length),
    )
    torch.manual_seed(0)
    reference = transformers.NemotronForCausalLM(config).eval()
    ids = np.random.default_rng(0).integers(0, args.vocab, size=(args.batch, args.length))
    tokens = args.batch * args.length

    with tempfile.TemporaryDirectory() as path:
        reference.save_pretrained(path)
        del reference
        theirs = transformers.NemotronForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        ours = nemotron_c.NemotronForCausalLM.from_pretrained(path, num_threads=args.threads)

        def transformers_scores():
            with torch.inference_mode():
                input_ids = torch.as_tensor(ids)
                logits = theirs(input_ids).logits
                logp = torch.log_softmax(logits.float(), dim=-1)
                return logp[:, :-1].gather(-1, input_ids[:, 1:, None])[..., 0].sum(-1).numpy()

        def nemotron_scores():
            return ours.score(ids, batch_size=args.batch).sum_logprob

        def transformers_backbone():
            with torch.inference_mode():
                theirs.model(torch.as_tensor(ids))

        def nemotron_backbone():
            ours._run(ids, None, None, None, False, 0, False, True, False)

        difference = np.abs(transformers_scores() - nemotron_scores()).max()
        (t_theirs, t_ours, b_theirs, b_ours), (c_theirs, c_ours, cb_theirs, cb_ours) = best_times(
            [transformers_scores, nemotron_scores, transformers_backbone, nemotron_backbone], args.repeats)

    print(f"checkpoint: hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, "
          f"{args.heads}/{args.kv_heads} heads, vocab {args.vocab}, float32; {args.threads} threads "
          f"({ours.kernels} kernels)")
    print(f"batch {args.batch} x {args.length} tokens, best of {args.repeats}")
    print(f"{'':28s}{'tokens/s':>10s} {'wall ms':>8s} {'CPU s':>7s}   decoder alone (wall ms, CPU s)")
    for name, t, c, b, cb in (
        (f"transformers {transformers.__version__}", t_theirs, c_theirs, b_theirs, cb_theirs),
        ("nemotron_c", t_ours, c_ours, b_ours, cb_ours),
    ):
        print(f"{name:28s}{tokens / t:10.1f} {t * 1000:8.0f} {c:7.2f}   {b * 1000:8.0f} {cb:7.2f}")
    print(f"speed ratio nemotron_c / transformers: {t_theirs / t_ours:.2f}x by wall time, "
          f"{c_theirs / c_ours:.2f}x by CPU time")
    print(f"head and log-softmax alone (score minus decoder), CPU s: transformers {c_theirs - cb_theirs:.2f}, "
          f"nemotron_c {c_ours - cb_ours:.2f}")
    print(f"largest difference in summed log-probabilities: {difference:.2e}")


if __name__ == "__main__":
    main()
