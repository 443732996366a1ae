"""The command line: python -m nemotron_c score --model DIR_OR_ID FILE | convert SRC DST

Scores every text of FILE (one per line, or JSONL records with a "text" or "input_ids" field; "-"
reads standard input) and writes one JSON line per input to standard output or --output:

    {"line": 3, "num_tokens": 41, "sum_logprob": -97.2, "mean_logprob": -2.37, "perplexity": 10.7}

"line" is the input's line number (blank lines are skipped); a JSONL record's "id" is copied over;
--token-logprobs adds each token's log-probability. NaN (a text of one token has nothing to score)
is written as null. A progress bar goes to stderr when it is a terminal (or with --progress).

convert rewrites a checkpoint directory (any format nemotron_c reads) as safetensors in DST, optionally in
another dtype and sharded, with config.json, generation_config.json and the tokenizer files copied, so that
later loads map the weights instead of reading them. DST must be new or empty unless --overwrite; it can never
be SRC. With --progress (default: when stderr is a terminal) each file written is reported on stderr.
"""
import argparse
import json
import math
import os
import sys
import time

from .checkpoint.saving import DEFAULT_MAX_SHARD_SIZE, parse_shard_size
from .conversion import convert_checkpoint
from .generation.scoring import tokenize
from .model.modeling import NemotronForCausalLM
from .tokenizer.tokenization import AutoTokenizer

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """A problem with the command line's input, reported as `error: ...` with exit status 2."""


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m nemotron_c", description="nemotron_c command line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="log-likelihood and perplexity of each text of a file",
        description="Scores each text of FILE under a causal language model and writes JSON lines.",
    )
    score.add_argument("file", metavar="FILE", help='text lines or JSONL ("text" or "input_ids" per record); - for stdin')
    score.add_argument("--model", required=True, metavar="DIR_OR_ID", help="checkpoint directory or Hub id")
    score.add_argument("--tokenizer", metavar="DIR_OR_ID", help="tokenizer directory or Hub id (default: the model's)")
    score.add_argument("--output", "-o", metavar="FILE", help="write results here instead of stdout")
    score.add_argument("--format", choices=("auto", "text", "jsonl"), default="auto",
                       help="input format (auto: JSONL when the first line is a JSON object)")
    score.add_argument("--batch-size", type=int, default=8, metavar="N", help="texts per forward pass (default 8)")
    score.add_argument("--max-length", type=int, metavar="N", help="keep only the first N tokens of each text")
    score.add_argument("--token-logprobs", action="store_true", help="also write each token's log-probability")
    score.add_argument("--no-special-tokens", action="store_true",
                       help="tokenize without the tokenizer's special tokens (such as BOS)")
    score.add_argument("--dtype", help="weight dtype: float32, bfloat16 or float16 (default: as stored)")
    score.add_argument("--num-threads", type=int, metavar="N", help="threads (default: one per CPU)")
    progress = score.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show the progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")

    convert = commands.add_parser(
        "convert", help="rewrite a checkpoint as (sharded) safetensors, optionally in another dtype",
        description="Reads the checkpoint SRC and writes it to DST as safetensors, with its config and tokenizer "
                    "files.",
    )
    convert.add_argument("source", metavar="SRC", help="checkpoint directory to read")
    convert.add_argument("destination", metavar="DST", help="directory to write (new or empty)")
    convert.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                         help="dtype of the written weights (default: as stored)")
    convert.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, metavar="SIZE",
                         help=f"shard above this size, e.g. 5GB, 500MB (default {DEFAULT_MAX_SHARD_SIZE}, as "
                              "Transformers)")
    convert.add_argument("--overwrite", action="store_true",
                         help="write into a non-empty DST, replacing the files of the same names")
    progress = convert.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="report each file written on stderr")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never report")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run_convert(args) if args.command == "convert" else run_score(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ImportError, ValueError, TypeError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run_convert(args):
    show = sys.stderr.isatty() if args.progress is None else args.progress
    start = time.monotonic()

    def report(file_name, size):
        if show:
            print(f"wrote {file_name} ({size / 1e6:.1f} MB, {time.monotonic() - start:.1f} s)", file=sys.stderr,
                  flush=True)

    try:
        parse_shard_size(args.max_shard_size)
    except ValueError as e:
        raise InputError(str(e)) from None
    convert_checkpoint(args.source, args.destination, dtype=args.dtype, max_shard_size=args.max_shard_size,
                       overwrite=args.overwrite, on_file=report)
    return 0


# ---------------------------------------------------------------- reading


def read_records(stream, name, fmt):
    """Yields (line_number, text or None, ids or None, id or None) for each non-blank line."""
    for number, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if fmt == "auto":
            fmt = "jsonl" if line.lstrip().startswith("{") else "text"
        if fmt == "text":
            yield number, line, None, None
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{name}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}:{number}: a JSONL record must be an object")
        text, ids = record.get("text"), record.get("input_ids")
        if (text is None) == (ids is None):
            raise InputError(f'{name}:{number}: a record needs either "text" (a string) or "input_ids" (integers)')
        if text is not None and not isinstance(text, str):
            raise InputError(f'{name}:{number}: "text" must be a string')
        if ids is not None and not (isinstance(ids, list) and all(type(i) is int for i in ids)):
            raise InputError(f'{name}:{number}: "input_ids" must be a list of integers')
        yield number, text, ids, record.get("id")


def count_lines(path):
    if path == "-" or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def groups(records, size):
    group = []
    for record in records:
        group.append(record)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


# ---------------------------------------------------------------- scoring


class Tokenizers:
    """Loads the tokenizer on first use (JSONL records of input_ids need none)."""

    def __init__(self, path):
        self.path = path
        self.tokenizer = None

    def get(self):
        if self.tokenizer is None:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            except (OSError, ImportError, ValueError) as e:
                raise InputError(f"could not load a tokenizer from {self.path} (give --tokenizer DIR_OR_ID, or JSONL "
                                 f'records with "input_ids"): {e}') from None
        return self.tokenizer


def run_score(args):
    for name in ("batch_size", "max_length", "num_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.file != "-" and not os.path.isfile(args.file):
        raise InputError(f"no such file: {args.file}")

    model = NemotronForCausalLM.from_pretrained(args.model, dtype=args.dtype, num_threads=args.num_threads)
    tokenizers = Tokenizers(args.tokenizer or args.model)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(count_lines(args.file), sys.stderr) if show else None

    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    sink = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")
    try:
        name = "<stdin>" if args.file == "-" else args.file
        records = read_records(source, name, args.format)
        # groups of several batches, so that sorting by length inside score() saves padding
        for group in groups(records, args.batch_size * 8):
            for line in score_group(model, tokenizers, group, name, args):
                sink.write(line + "\n")
            sink.flush()
            if bar:
                bar.update(len(group))
    finally:
        if bar:
            bar.close()
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
    return 0


def score_group(model, tokenizers, group, name, args):
    add_special = not args.no_special_tokens
    texts = [text for _, text, _, _ in group if text is not None]
    encoded = iter(tokenize(tokenizers.get(), texts, add_special) if texts else [])
    sequences = [ids if ids is not None else next(encoded) for _, _, ids, _ in group]
    vocab_size = model.config.vocab_size
    for (number, _, _, _), ids in zip(group, sequences):
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise InputError(f"{name}:{number}: token id {bad[0]} is outside the vocabulary [0, {vocab_size})")
    scores = model.score(sequences, batch_size=args.batch_size, max_length=args.max_length,
                         return_token_logprobs=args.token_logprobs)
    for i, (number, _, _, record_id) in enumerate(group):
        result = {"line": number}
        if record_id is not None:
            result["id"] = record_id
        result["num_tokens"] = int(scores.num_tokens[i])
        for key in ("sum_logprob", "mean_logprob", "perplexity"):
            result[key] = finite_or_none(scores[key][i])
        if args.token_logprobs:
            result["token_logprobs"] = [finite_or_none(x) for x in scores.token_logprobs[i]]
        yield json.dumps(result, ensure_ascii=False)


def finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- progress


class ProgressBar:
    """`scoring  42% |########            | 420/1000 texts  35.1 texts/s` redrawn in place on stderr."""

    def __init__(self, total, stream, width=24):
        self.total, self.stream, self.width = total, stream, width
        self.done = 0
        self.start = time.monotonic()
        self.draw()

    def update(self, n):
        self.done += n
        self.draw()

    def draw(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = f"{self.done / elapsed:.1f} texts/s"
        if self.total:
            filled = min(self.width, self.width * self.done // self.total)
            bar = "#" * filled + " " * (self.width - filled)
            text = f"scoring {100 * self.done // self.total:3d}% |{bar}| {self.done}/{self.total} texts  {rate}"
        else:
            text = f"scoring {self.done} texts  {rate}"
        self.stream.write("\r" + text)
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()
