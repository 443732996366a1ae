"""Plain greedy vs prompt lookup decoding (generate(prompt_lookup_num_tokens=...)) at batch 1 on random
checkpoints of moderate width: tokens/s, best of N, and the acceptance (new tokens per verifying forward pass).

    python -m benchmarks.bench_assisted [--dir DIR] [--repeats N] [--new-tokens N]

A random model does not copy its prompt as a trained one does when it rewrites a file, so two models bound the
speedup: "random" never continues the passage (no candidate is accepted: the cost of looking and verifying), and
"chain" is random too but its lm_head is its embedding permuted, so that its next token is a fixed function of the
last one; its prompt is a passage following that function, given twice (a file being rewritten), so that prompt
lookup's candidates are all accepted. Trained models on edits lie between, by their acceptance.
"""
import argparse
import os
import sys
import time

import numpy as np

from safetensors.numpy import load_file, save_file

import nemotron_c

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from helpers.checkpoints import write_random_checkpoint  # noqa: E402 - the tests' writer, no torch

WIDTH = dict(vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=4, num_attention_heads=16,
             num_key_value_heads=4, max_position_embeddings=4096)


class Count:
    """A streamer counting the puts (one per verifying forward pass in assisted generation)."""

    def __init__(self):
        self.puts = 0

    def put(self, value):
        self.puts += 1

    def end(self):
        pass


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def chain_checkpoint(directory):
    """A random checkpoint whose next token is perm[last token]: lm_head row perm[t] is token t's embedding (and
    small layers, so that the embedding dominates the last hidden state). Returns perm."""
    write_random_checkpoint(directory, seed=1, **WIDTH)
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    for name in tensors:
        if name.startswith("model.layers.") and "layernorm" not in name:
            tensors[name] = tensors[name] * np.float32(0.2)
    rng = np.random.default_rng(1)
    embed = rng.standard_normal(tensors["model.embed_tokens.weight"].shape).astype(np.float32)
    perm = rng.permutation(WIDTH["vocab_size"])
    head = np.empty_like(embed)
    head[perm] = embed
    tensors["model.embed_tokens.weight"], tensors["lm_head.weight"] = embed, head
    save_file(tensors, path, metadata={"format": "pt"})
    np.save(os.path.join(directory, "perm.npy"), perm)
    return perm


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp/nemotron_c_bench_assisted")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    random_dir, chain_dir = os.path.join(args.dir, "random"), os.path.join(args.dir, "chain")
    if not os.path.exists(os.path.join(random_dir, "config.json")):
        write_random_checkpoint(random_dir, seed=0, **WIDTH)
    perm = (np.load(os.path.join(chain_dir, "perm.npy")) if os.path.exists(os.path.join(chain_dir, "perm.npy"))
            else chain_checkpoint(chain_dir))
    rng = np.random.default_rng(0)
    passage = rng.integers(10, WIDTH["vocab_size"], 300)
    chain = [int(rng.integers(10, WIDTH["vocab_size"]))]
    while len(chain) < 300:
        chain.append(int(perm[chain[-1]]))
    chain = np.array(chain)
    cases = {"random, passage + its first half again": (random_dir, np.concatenate([passage, passage[:150]])[None]),
             "chain, passage + its first half again": (chain_dir, np.concatenate([chain, chain[:150]])[None])}
    G = args.new_tokens
    for name, (directory, ids) in cases.items():
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
        plain_time, plain = best(lambda: model.generate(ids, max_new_tokens=G, eos_token_id=[]), args.repeats)
        print(f"{name} ({ids.shape[1]} tokens), {G} new, best of {args.repeats}")
        print(f"  greedy:             {G / plain_time:7.1f} tokens/s")
        for k in (3, 10):
            count = Count()
            t, out = best(lambda: model.generate(ids, max_new_tokens=G, eos_token_id=[], prompt_lookup_num_tokens=k,
                                                 streamer=count), args.repeats)
            forwards = (count.puts - args.repeats) / args.repeats  # less the prompt's put
            same = np.array_equal(out, plain)
            print(f"  prompt lookup k={k:2d}: {G / t:7.1f} tokens/s ({plain_time / t:.2f}x), {G / forwards:.2f} new "
                  f"tokens per forward pass, same tokens as greedy: {same}")


if __name__ == "__main__":
    main()
