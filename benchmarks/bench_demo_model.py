"""Held-out perplexity of the demo model (nemotron_c/demo_model/) in each weight dtype nemotron_c stores.

    python benchmarks/bench_demo_model.py [--seq-len 128] [--transformers]

The held-out text is the one tools/train_demo_model.py set aside: the docstrings of one standard-library module in
twenty of this interpreter, packed as text EOS text EOS ... and cut into windows of seq-len + 1 tokens, each scoring
seq-len next tokens (what the training script reports). The demo model is stored in bfloat16; "float32" loads the
same values widened, so the two agree, and every dtype computes in float32. With --transformers, Transformers'
perplexity on the same windows in float32 and in bfloat16 arithmetic is printed beside (needs torch).
"""
import argparse
import math
import os
import sys
import sysconfig
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import nemotron_c  # noqa: E402
from nemotron_c.checkpoint.tensors import STORAGE_NUMPY  # noqa: E402
from nemotron_c.model.weights import QUANTIZED_DTYPES  # noqa: E402
from train_demo_model import docstrings, held_out  # noqa: E402


def held_out_windows(tokenizer, seq_len):
    texts = [text for path, text in docstrings(sysconfig.get_paths()["stdlib"]) if held_out(path)]
    stream = []
    for ids in tokenizer(texts)["input_ids"]:
        stream += ids + [tokenizer.eos_token_id]
    return [stream[start:start + seq_len + 1] for start in range(0, len(stream) - seq_len - 1, seq_len)]


def perplexity(sum_logprob, num_tokens):
    return math.exp(-float(np.sum(sum_logprob)) / float(np.sum(num_tokens)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--transformers", action="store_true", help="also Transformers' perplexity (needs torch)")
    args = parser.parse_args()
    path = nemotron_c.demo_model_path()
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(path)
    windows = held_out_windows(tokenizer, args.seq_len)
    print(f"{len(windows)} held-out windows of {args.seq_len} scored tokens")
    for dtype in (*STORAGE_NUMPY, *QUANTIZED_DTYPES):
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        start = time.perf_counter()
        scores = model.score(windows, batch_size=16)
        print(f"nemotron_c   {dtype:9s} perplexity {perplexity(scores.sum_logprob, scores.num_tokens):8.3f}"
              f"   ({time.perf_counter() - start:.1f} s)")
    if args.transformers:
        import torch
        import transformers

        for dtype in (torch.float32, torch.bfloat16):
            model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
            total, count = 0.0, 0
            with torch.inference_mode():
                for window in windows:
                    ids = torch.tensor([window])
                    total += model(ids, labels=ids).loss.float().item() * (len(window) - 1)
                    count += len(window) - 1
            print(f"Transformers {str(dtype)[6:]:9s} perplexity {math.exp(total / count):8.3f}")


if __name__ == "__main__":
    main()
