"""Encode throughput of nemotron_c's tokenizer against Transformers' fast tokenizer (Rust), same files, same corpus,
same run.

    python benchmarks/bench_tokenizer.py [--vocab 8000] [--mb 8] [--dir DIR]
    python benchmarks/bench_tokenizer.py --vocab 256000 --added 4000     # at Nemotron's scale

Without --dir it trains a SentencePiece BPE tokenizer (byte fallback) as the tests do and converts it with
Transformers; with --added, the tests' Nemotron-scale folder (tokenizer_builders.build_large: the trained model grown
to --vocab pieces, --added of them control and user-defined pieces, each in tokenizer_config.json's
added_tokens_decoder, and a Nemotron config.json). Rows: from_pretrained (seconds), one thread (each document encoded
in turn, from Python), the whole corpus as one batch (all cores), and one long document without spaces.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="a tokenizer directory (default: train one)")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--mb", type=float, default=8.0, help="corpus size in MB")
    parser.add_argument("--added", type=int, help="control and user-defined pieces (a Nemotron-scale folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from helpers import tokenizer_builders
    from helpers.tokenizer_corpus import training_lines

    import transformers
    from nemotron_c.tokenizer.tokenization import AutoTokenizer

    path = args.dir
    if path is None and args.added is not None:
        path = tokenizer_builders.build_large(tempfile.mkdtemp(prefix="bench_tokenizer_"), vocab_size=args.vocab,
                                              n_control=args.added // 2, n_user_defined=args.added - args.added // 2)
    elif path is None:
        root = tempfile.mkdtemp(prefix="bench_tokenizer_")
        tokenizer_builders.VARIANTS = {"bench": (args.vocab, [tokenizer_builders._nemotron_json],
                                                 {"tokenizer_class": "PreTrainedTokenizerFast"})}
        # larger vocabularies need more (and more varied) training text
        path = tokenizer_builders.build_all(root, n_lines=max(6000, args.vocab * 2), spm_only=False)["bench"]

    load_ours = best_of(lambda: AutoTokenizer.from_pretrained(path), args.repeat)
    load_theirs = best_of(lambda: transformers.AutoTokenizer.from_pretrained(path), args.repeat)
    ours = AutoTokenizer.from_pretrained(path)
    theirs = transformers.AutoTokenizer.from_pretrained(path)
    rust = theirs.backend_tokenizer

    # documents of a few lines each, prose, code, CJK and emoji mixed as in the tests
    lines = training_lines(seed=7, n=4000)
    docs, size, i = [], 0, 0
    while size < args.mb * 1e6:
        doc = "\n".join(lines[(i + k) % len(lines)] for k in range(1 + i % 7))
        docs.append(doc)
        size += len(doc.encode("utf-8"))
        i += 1
    mb = size / 1e6
    no_spaces = ("".join(lines[:2000]).replace(" ", ""))[:1_000_000]
    mb_long = len(no_spaces.encode("utf-8")) / 1e6

    # both sides give the same ids on this corpus
    sample = docs[:: max(1, len(docs) // 300)]
    assert ours(sample, add_special_tokens=False)["input_ids"] == [rust.encode(d, add_special_tokens=False).ids
                                                                    for d in sample]

    core = ours._core
    rows = [
        ("one thread, per document", lambda: [core.encode(d) for d in docs],
         lambda: [rust.encode(d, add_special_tokens=False) for d in docs], mb),
        ("batch, all cores", lambda: core.encode_batch(docs),
         lambda: rust.encode_batch(docs, add_special_tokens=False), mb),
        ("tokenizer(batch) API", lambda: ours(docs), lambda: theirs(docs), mb),
        ("1 MB without spaces", lambda: core.encode(no_spaces),
         lambda: rust.encode(no_spaces, add_special_tokens=False), mb_long),
    ]
    print(f"tokenizer: {path} (vocab {len(theirs)}, {len(theirs.added_tokens_decoder)} added tokens); corpus "
          f"{len(docs)} documents, {mb:.1f} MB; {cpu_name()}, {os.cpu_count()} CPUs; best of {args.repeat}")
    print(f"{'':28s} {'nemotron_c':>16s} {'transformers':>18s} {'ratio':>7s}")
    print(f"{'from_pretrained, seconds':28s} {load_ours:16.2f} {load_theirs:18.2f} {load_theirs / load_ours:6.2f}x")
    print(f"{'encode, MB/s':28s}")
    for name, fn_ours, fn_theirs, size_mb in rows:
        t_ours = best_of(fn_ours, args.repeat)
        t_theirs = best_of(fn_theirs, args.repeat)
        print(f"{name:28s} {size_mb / t_ours:16.1f} {size_mb / t_theirs:18.1f} {t_theirs / t_ours:6.2f}x")


if __name__ == "__main__":
    main()
