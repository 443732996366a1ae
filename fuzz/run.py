"""Runs a fuzz target: `python fuzz/run.py TARGET [--iterations N] [--seed S]` with the plain mutation loop, or
`python fuzz/run.py TARGET --atheris [libFuzzer options]` with atheris (pip install atheris). A finding is written
to fuzz/findings/ and reported; copy it to fuzz/regressions/TARGET/ once fixed."""
import argparse
import hashlib
import importlib
import inspect
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz.mutate import mutations  # noqa: E402

# atheris follows the coverage of the Python readers (the C core is not instrumented): of all of nemotron_c, except
# for tokenizer_model. Instrumented everywhere it ran 15 inputs a second against the ASan build, where one takes
# 1 ms: its protobuf reader makes some 600 calls of _varint and _fields per file. The generic tokenizer pipeline it
# goes through is tokenizer_json's target, so tokenizer_model follows the SentencePiece converter's functions only,
# and the two byte-level helpers, whose few branches any valid field takes, run uninstrumented.
ATHERIS_FUNCTIONS = {"tokenizer_model": ("nemotron_c.tokenizer.sentencepiece_model", {"_varint", "_fields"})}

if "--atheris" in sys.argv and not any(arg in ATHERIS_FUNCTIONS for arg in sys.argv):
    import atheris

    with atheris.instrument_imports(include=["nemotron_c", "fuzz"]):
        from fuzz.targets import HERE, TARGETS, run_one, seeds
else:
    from fuzz.targets import HERE, TARGETS, run_one, seeds  # noqa: E402

# the format-aware mutation of each target (fuzz.mutate.STRUCTURED), if any
STRUCTURED = {"config_json": "json", "tokenizer_json": "json", "safetensors": "safetensors"}


def save_finding(target, data):
    folder = os.path.join(HERE, "findings", target)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, hashlib.sha1(data).hexdigest()[:16])
    with open(path, "wb") as f:
        f.write(data)
    return path


def plain(target, iterations, seed):
    start, findings = time.time(), 0
    for data in mutations(seeds(target), seed, iterations, STRUCTURED.get(target)):
        error = run_one(target, data)
        if error is not None:
            findings += 1
            print(f"{target}: {type(error).__name__}: {error} -> {save_finding(target, data)}", flush=True)
    print(f"{target}: {iterations} executions in {time.time() - start:.1f} s, {findings} findings")
    return findings


def with_atheris(target, argv):
    import atheris

    if target in ATHERIS_FUNCTIONS:
        module, skipped = ATHERIS_FUNCTIONS[target]
        for name, value in vars(importlib.import_module(module)).items():
            if inspect.isfunction(value) and value.__module__ == module and name not in skipped:
                atheris.instrument_func(value)  # in place: callers holding the function see it too
    def one(data):
        error = run_one(target, data)
        if error is not None:
            raise error

    # libFuzzer adds what it finds to the first folder: a scratch one beside findings/, the seeds stay as they are
    grown = os.path.join(HERE, "findings", f"{target}-corpus")
    os.makedirs(grown, exist_ok=True)
    atheris.Setup([sys.argv[0], *argv, grown, os.path.join(HERE, "corpus", target)], one)
    atheris.Fuzz()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--atheris", action="store_true")
    args, rest = parser.parse_known_args()
    if args.atheris:
        with_atheris(args.target, rest)
    else:
        sys.exit(1 if plain(args.target, args.iterations, args.seed) else 0)


if __name__ == "__main__":
    main()
