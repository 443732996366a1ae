"""The command line: nemotron_c (or python -m nemotron_c) generate | chat | score | info | convert

With no --model, generate, chat, score and info use the demo model shipped in the package
(nemotron_c.demo_model_path()), so that `python -m nemotron_c generate "The"` works with nothing downloaded.

generate PROMPT streams the continuation to stdout as it is decoded (greedy unless --do-sample or a sampling
option is given). chat reads messages from stdin, renders the conversation so far with the checkpoint's chat
template and streams each reply; an empty line is reported and ignored, /reset forgets the history, end of input
ends the chat. info describes a checkpoint: config, parameter count, weight dtypes and bytes, the kernel set this
CPU gets (for a LoRA adapter folder: the base model with the adapter merged, the base's name and the adapter's
settings).

score rates every text of FILE (one per line, or JSONL records with a "text" or "input_ids" field; "-" reads
standard input) and writes one JSON line per input to standard output or --output:

    {"line": 3, "num_tokens": 41, "sum_logprob": -97.2, "mean_logprob": -2.37, "perplexity": 10.7}

"line" is the input's line number (a blank line is reported on stderr and skipped); a JSONL record's "id" is
copied over; --token-logprobs adds each token's log-probability. A number JSON cannot hold is written as null:
NaN (a text of one token has nothing to score, num_tokens 0) and a perplexity beyond 1.8e308 (mean_logprob below
-709.78). A progress bar goes to stderr when it is a terminal (or with --progress).

convert rewrites a checkpoint directory (any format nemotron_c reads) as safetensors in DST, optionally in
another dtype (int8, int4: quantized once, then mapped by every load) and sharded, with config.json,
generation_config.json and the tokenizer files copied, so that later loads map the weights instead of reading
them; a LoRA adapter folder is written merged into its base model, as save_pretrained writes the model loaded
from it. DST must be new or empty unless --overwrite; it can never be SRC. With --progress (default: when stderr
is a terminal) each file written is reported on stderr.

Output cut short by a closed pipe (`... | head`) ends the command quietly.
"""
import argparse
import codecs
import json
import math
import os
import sys
import time

from .checkpoint.saving import DEFAULT_MAX_SHARD_SIZE, parse_shard_size
from .conversion import checkpoint_class, convert_checkpoint
from .demo import demo_model_path
from .generation.scoring import tokenize
from .generation.streamers import TextStreamer
from .model.modeling import NemotronForCausalLM
from .tokenizer.tokenization import AutoTokenizer

try:  # jinja2 renders chat templates; without it no template runs, so none can fail
    from jinja2 import TemplateError
    TEMPLATE_ERRORS = (TemplateError,)
except ImportError:
    TEMPLATE_ERRORS = ()

EXIT_BAD_INPUT = 2
# what a shell reports for a program ended by SIGPIPE (`yes | head`), which a closed pipe would have been
EXIT_BROKEN_PIPE = 128 + 13
# the turn marker of Nemotron's chat templates: a reply ends there even when the checkpoint's eos is another token
CHAT_TURN_MARKERS = ("<extra_id_1>",)
# the instruction sets that decide which kernel set a CPU gets, as /proc/cpuinfo names them
# the adapter_config.json settings info reports for a LoRA adapter folder
ADAPTER_INFO = ("r", "lora_alpha", "use_rslora", "target_modules", "modules_to_save", "rank_pattern", "alpha_pattern")
CPU_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx_vnni", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve")


class InputError(Exception):
    """A problem with the command line's input, reported as `error: ...` with exit status 2."""


def add_model_arguments(command):
    command.add_argument("--model", metavar="DIR_OR_ID",
                         help="checkpoint directory or Hub id (default: the demo model shipped with nemotron_c)")
    command.add_argument("--dtype", help="weight dtype: float32, bfloat16, float16, or int8 / int4 (quantized at "
                                         "load; default: as stored)")
    command.add_argument("--num-threads", type=int, metavar="N",
                         help="threads (default: NEMOTRON_C_NUM_THREADS, else one per available CPU)")


def add_generation_arguments(command):
    command.add_argument("--max-new-tokens", type=int, default=64, metavar="N",
                         help="tokens to generate at most (default 64)")
    command.add_argument("--do-sample", action="store_true",
                         help="sample (implied by any of the options below but --seed)")
    command.add_argument("--temperature", type=float, metavar="T")
    command.add_argument("--top-k", type=int, metavar="K")
    command.add_argument("--top-p", type=float, metavar="P")
    command.add_argument("--min-p", type=float, metavar="P")
    command.add_argument("--repetition-penalty", type=float, metavar="X", help="1.0 is none; 1.2 discourages loops")
    command.add_argument("--seed", type=int, metavar="N", help="seed of the sampler (same seed, same text)")


SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "min_p")


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description="Run Nemotron language models on the CPU.")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser(
        "generate", help="continue a prompt, streaming the text",
        description="Continues PROMPT and streams the text to stdout as it is generated.")
    generate.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    add_model_arguments(generate)
    add_generation_arguments(generate)
    generate.add_argument("--no-special-tokens", action="store_true",
                          help="tokenize without the tokenizer's special tokens (such as BOS)")

    chat = commands.add_parser(
        "chat", help="talk with a chat model (the checkpoint's chat template, history kept)",
        description="Reads messages from stdin, one per line, and streams each reply; /reset forgets the history, "
                    "end of input (Ctrl-D) ends the chat.")
    add_model_arguments(chat)
    add_generation_arguments(chat)
    chat.add_argument("--system", metavar="TEXT", help="a system message to start the conversation with")

    info = commands.add_parser(
        "info", help="describe a checkpoint: config, parameters, dtypes, bytes, kernels",
        description="Prints what nemotron_c sees in a checkpoint and which kernels this CPU gets.")
    add_model_arguments(info)
    info.add_argument("--json", action="store_true", help="print one JSON object (with the whole config)")
    score = commands.add_parser(
        "score", help="log-likelihood and perplexity of each text of a file",
        description="Scores each text of FILE under a causal language model and writes JSON lines.",
    )
    score.add_argument("file", metavar="FILE", help='text lines or JSONL ("text" or "input_ids" per record); - for stdin')
    score.add_argument("--model", metavar="DIR_OR_ID",
                       help="checkpoint directory or Hub id (default: the demo model shipped with nemotron_c)")
    score.add_argument("--tokenizer", metavar="DIR_OR_ID", help="tokenizer directory or Hub id (default: the model's)")
    score.add_argument("--output", "-o", metavar="FILE", help="write results here instead of stdout (- is stdout)")
    score.add_argument("--format", choices=("auto", "text", "jsonl"), default="auto",
                       help='input format (auto: JSONL when the first line starts with "{")')
    score.add_argument("--batch-size", type=int, default=8, metavar="N", help="texts per forward pass (default 8)")
    score.add_argument("--max-length", type=int, metavar="N", help="keep only the first N tokens of each text")
    score.add_argument("--token-logprobs", action="store_true", help="also write each token's log-probability")
    score.add_argument("--no-special-tokens", action="store_true",
                       help="tokenize without the tokenizer's special tokens (such as BOS)")
    score.add_argument("--dtype", help="weight dtype: float32, bfloat16, float16, or int8 / int4 (quantized at "
                                       "load; default: as stored)")
    score.add_argument("--num-threads", type=int, metavar="N",
                       help="threads (default: NEMOTRON_C_NUM_THREADS, else one per available CPU)")
    progress = score.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show the progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")

    convert = commands.add_parser(
        "convert", help="rewrite a checkpoint as (sharded) safetensors, optionally in another dtype",
        description="Reads the checkpoint SRC and writes it to DST as safetensors, with its config and tokenizer "
                    "files.",
    )
    convert.add_argument("source", metavar="SRC", help="checkpoint directory to read (a LoRA adapter folder: "
                                                       "written merged into its base model)")
    convert.add_argument("destination", metavar="DST", help="directory to write (new or empty)")
    convert.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "int8", "int4"),
                         help="dtype of the written weights (default: as stored); int8 and int4 quantize the linear "
                              "layers' weights, a float dtype dequantizes an int8 or int4 checkpoint")
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


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)
    commands = {"generate": run_generate, "chat": run_chat, "score": run_score, "info": run_info,
                "convert": run_convert}
    try:
        check_standard_streams(args)
        if getattr(args, "model", False) is None:
            args.model = demo_model_path()
        return commands[args.command](args)
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's exit-time flush of stdout from failing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TEMPLATE_ERRORS as e:
        # the checkpoint's template refused the conversation (raise_exception) or does not compile; a syntax
        # error's text may quote the template over several lines
        where = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
        print(f"error: the chat template of {args.model} failed{where}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    except (OSError, ImportError, ValueError, TypeError, NotImplementedError, RuntimeError, OverflowError,
            MemoryError) as e:
        # RuntimeError: sampling from scores that leave no distribution, as torch.multinomial raises; OverflowError:
        # a number too large for the core's C integers (--num-threads 10**20); MemoryError: generate's outputs for
        # a --max-new-tokens beyond the memory
        print(f"error: {e}", file=sys.stderr)
        return 1


def check_standard_streams(args):
    """A shell's >&- or <&- closes the descriptor, and Python then sets sys.stdout or sys.stdin to None: refuse before
    loading anything, rather than fail on None at the first write or read (info printed nothing and said 0)."""
    if sys.stdout is None and (args.command != "convert" and getattr(args, "output", None) in (None, "-")):
        raise InputError("standard output is closed: give the command somewhere to write" +
                         (" (or --output FILE)" if args.command == "score" else ""))
    if sys.stdin is None and (args.command == "chat" or getattr(args, "file", None) == "-"):
        raise InputError("standard input is closed: the command reads " +
                         ("the messages" if args.command == "chat" else "the texts") + " from it")


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


# ---------------------------------------------------------------- generate, chat, info


def check_positive(args, names):
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def load_model(args):
    check_positive(args, ("num_threads",))
    model = NemotronForCausalLM.from_pretrained(args.model, dtype=args.dtype, num_threads=args.num_threads)
    try:  # the checkpoint's, or for a LoRA adapter its base model's (as Transformers' pipeline finds it)
        tokenizer = AutoTokenizer.from_pretrained(model.name_or_path)
    except (OSError, ValueError) as e:
        raise InputError(f"could not load the tokenizer of {model.name_or_path}: {e}") from None
    return model, tokenizer


def generation_kwargs(args):
    """generate()'s keywords from the options given; the rest come from the checkpoint's generation config."""
    check_positive(args, ("max_new_tokens",))
    kwargs = {"max_new_tokens": args.max_new_tokens}
    for name in SAMPLING_OPTIONS + ("repetition_penalty", "seed"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    # said either way: a checkpoint's generation_config.json with do_sample true would otherwise sample unasked
    kwargs["do_sample"] = bool(args.do_sample or any(getattr(args, name) is not None for name in SAMPLING_OPTIONS))
    return kwargs


class StdoutStreamer(TextStreamer):
    """TextStreamer writing to the sys.stdout of the moment (tests and pipes replace it)."""

    line_open = False  # text written since the last newline

    def on_finalized_text(self, text, stream_end=False):
        text += "\n" if stream_end else ""
        if text:
            self.line_open = not text.endswith("\n")
        if not writes_utf8(sys.stdout):
            # a terminal in another encoding shows what it can: a character it has no code for was a
            # UnicodeEncodeError that ended the command mid-text
            encoding = sys.stdout.encoding
            text = text.encode(encoding, "replace").decode(encoding)
        sys.stdout.write(text)
        sys.stdout.flush()


def generate_streaming(model, inputs, streamer, kwargs):
    try:
        return model.generate(**inputs, streamer=streamer, **kwargs)
    except BaseException as e:
        # the prompt is streamed before generate() checks its options (as in Transformers): an error or Ctrl-C gets
        # a line of its own in a terminal, not "Theerror: ..."
        if streamer.line_open and not isinstance(e, BrokenPipeError):
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise


def check_utf8_argument(value, what):
    """Command-line bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape), which the tokenizer
    refuses naming nothing: name the option and the byte."""
    if value is not None and not is_utf8(value):
        column = next(i for i, c in enumerate(value) if not is_utf8(c))
        raw = os.fsencode(value[column])
        raise InputError(f"{what} is not valid UTF-8 (byte 0x{raw[0]:02x} at column {column + 1}); give UTF-8 text")


def run_generate(args):
    check_utf8_argument(args.prompt, "the prompt")
    if not args.prompt.strip():
        raise InputError("the prompt is empty: give some text to continue")
    kwargs = generation_kwargs(args)
    model, tokenizer = load_model(args)
    inputs = tokenizer(args.prompt, add_special_tokens=not args.no_special_tokens, return_tensors="np")
    streamer = StdoutStreamer(tokenizer, skip_special_tokens=True)
    generate_streaming(model, inputs, streamer, kwargs)
    return 0


def run_chat(args):
    check_utf8_argument(args.system, "--system")
    kwargs = generation_kwargs(args)
    model, tokenizer = load_model(args)
    if tokenizer.chat_template is None:
        raise InputError(f"{args.model} has no chat template (chat_template in tokenizer_config.json or "
                         "chat_template.jinja): use generate")
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    vocab = tokenizer.get_vocab()
    kwargs["eos_token_id"] = eos + [vocab[m] for m in CHAT_TURN_MARKERS if m in vocab and vocab[m] not in eos]
    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message and press Enter; /reset forgets the conversation, Ctrl-D ends it.", file=sys.stderr)
    lines = utf8_lines(sys.stdin, "<stdin>")
    while True:
        if interactive:
            print(">>> ", end="", file=sys.stderr, flush=True)
        line = next(lines, None)
        if line is None:
            break
        text = line.strip()
        if not text:
            print("(empty message ignored: type some text, or Ctrl-D to end)", file=sys.stderr, flush=True)
            continue
        if text == "/reset":
            messages = list(start)
            print("(conversation reset)", file=sys.stderr, flush=True)
            continue
        messages.append({"role": "user", "content": text})
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                               return_tensors="np")
        streamer = StdoutStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        output = generate_streaming(model, inputs, streamer, kwargs)
        reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": reply.strip()})
    return 0


def cpu_features():
    """The instruction sets of CPU_FEATURES this CPU reports (Linux), or None where /proc/cpuinfo is absent."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for name in CPU_FEATURES if name in flags]
    except OSError:
        pass
    return None


def run_info(args):
    check_positive(args, ("num_threads",))
    model_class, adapter = checkpoint_class(args.model)
    model = model_class.from_pretrained(args.model, dtype=args.dtype, num_threads=args.num_threads)
    dtypes = {}
    for _, array, dtype in model._tensors_to_save():
        count, size = dtypes.get(dtype, (0, 0))
        arrays = array if isinstance(array, tuple) else (array,)  # a quantized weight: (values, scales)
        dtypes[dtype] = (count + 1, size + sum(int(a.nbytes) for a in arrays))
    c = model.config
    info = {
        "model": args.model,
        "parameters": model.num_parameters(),
        "parameters_without_embeddings": model.num_parameters(exclude_embeddings=True),
        "weights": {dtype: {"tensors": count, "bytes": size} for dtype, (count, size) in dtypes.items()},
        "kernels": model.kernels,
        "cpu_features": cpu_features(),
        "num_threads": model.num_threads,
        "config": c.to_dict(),
    }
    if adapter is not None:  # a LoRA adapter folder: the base it is merged into, and the adapter's settings
        settings = model.peft_config[model.active_adapters()[0]]
        info["base_model"] = model.name_or_path
        info["adapter"] = {"path": adapter, **{key: settings.get(key) for key in ADAPTER_INFO}}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    total = sum(size for _, size in dtypes.values())
    weights = ", ".join(f"{dtype} ({count} tensors, {size / 1e6:.1f} MB)" for dtype, (count, size) in dtypes.items())
    features = info["cpu_features"]
    print(f"model        {args.model}")
    if adapter is not None:
        settings = ", ".join(f"{key} {', '.join(value) if isinstance(value, list) else value}"
                             for key, value in info["adapter"].items()
                             if key != "path" and value not in (None, False, {}, []))
        print(f"adapter      LoRA ({settings}), merged into the base model {info['base_model']}")
    print(f"architecture {type(model).__name__}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
          f"{c.num_attention_heads} heads ({c.num_key_value_heads} key/value heads, head_dim {c.head_dim}), "
          f"intermediate {c.intermediate_size}, vocab {c.vocab_size}, {c.hidden_act}, "
          f"{c.max_position_embeddings} positions")
    print(f"parameters   {info['parameters']:,} ({info['parameters'] / 1e6:.2f} M; "
          f"{info['parameters_without_embeddings']:,} without the embeddings)")
    print(f"weights      {weights}; {total / 1e6:.1f} MB in all")
    cpu = "features unknown" if features is None else " ".join(features) or f"none of {', '.join(CPU_FEATURES)}"
    print(f"kernels      {model.kernels} (CPU: {cpu}; "
          f"{model.num_threads} threads)")
    return 0


# ---------------------------------------------------------------- reading


def utf8_lines(stream, name):
    """The lines of a stream, read one at a time (chat answers each as it comes) and decoded as strict UTF-8, so
    that a bad byte is reported with its line: Python's stdin would let it through as a lone surrogate that the
    tokenizer refuses later, naming nothing."""
    binary = getattr(stream, "buffer", stream)  # tests may give a StringIO, already text
    number = 0
    while True:
        line = binary.readline()
        if not line:
            return
        number += 1
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{name}:{number}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column "
                                 f"{e.start + 1}); the input must be UTF-8 text") from None
        if number == 1 and line.startswith("\ufeff"):
            # the byte order mark Windows editors put first (Python's utf-8-sig drops it): it is no text to score,
            # and a JSONL file starting with one would not be recognized as JSON
            line = line[1:]
        yield line


def read_records(stream, name, fmt):
    """Yields (line_number, text or None, ids or None, id or NO_ID) for each non-blank line; blank ones are reported
    on stderr."""
    hint = ""
    for number, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            print(f"warning: {name}:{number}: empty line skipped", file=sys.stderr, flush=True)
            continue
        if fmt == "auto":
            # a first line that only looks like JSON is reported as bad JSON rather than scored as text
            fmt = "jsonl" if line.lstrip().startswith("{") else "text"
            hint = f'; line {number} starts with "{{", so the file is read as JSONL: --format text reads text lines'
        if fmt == "text":
            yield number, line, None, NO_ID
            continue
        try:
            record = parse_json(line)
        except ValueError as e:
            raise InputError(f"{name}:{number}: not valid JSON ({e}){hint}") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}:{number}: a JSONL record must be an object")
        text, ids = record.get("text"), record.get("input_ids")
        if (text is None) == (ids is None):
            raise InputError(f'{name}:{number}: a record needs either "text" (a string) or "input_ids" (integers)')
        if text is not None and not isinstance(text, str):
            raise InputError(f'{name}:{number}: "text" must be a string')
        if text is not None and not is_utf8(text):
            raise InputError(f'{name}:{number}: "text" holds a lone surrogate (a \\ud800-\\udfff escape), which is '
                             "not a character: it cannot be tokenized")
        if ids is not None and not (isinstance(ids, list) and all(type(i) is int for i in ids)):
            raise InputError(f'{name}:{number}: "input_ids" must be a list of integers')
        record_id = record.get("id", NO_ID)
        if record_id is not NO_ID:
            try:  # it is written back: as strict JSON, in UTF-8
                json.dumps(record_id, allow_nan=False, ensure_ascii=False).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise InputError(f'{name}:{number}: "id" holds a value that cannot be written back as JSON (an '
                                 "infinite number or a lone surrogate)") from None
        yield number, text, ids, record_id


NO_ID = object()  # a record without "id" (one with "id": null gets its null back)


def parse_json(line):
    """json.loads, refusing NaN and Infinity (not JSON: the scores written back would not be JSON either) and
    reporting nesting too deep for Python's parser as a ValueError."""
    def refuse(constant):
        raise ValueError(f"{constant} is not a JSON value")
    try:
        return json.loads(line, parse_constant=refuse)
    except json.JSONDecodeError as e:
        raise ValueError(e.msg) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def is_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def count_lines(path):
    if path == "-" or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        # the lines read_records keeps: decoded, so that a line of Unicode whitespace or the BOM alone is skipped
        return sum(1 for line in utf8_lines(f, path) if line.strip())


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
    check_positive(args, ("batch_size", "max_length", "num_threads"))
    if args.output == "-":  # as FILE's "-": standard output, not a file named "-"
        args.output = None
    # any readable file: a FIFO or a shell's <(...) too, which are read once, as they come
    if args.file != "-" and not os.path.exists(args.file):
        raise InputError(f"no such file: {args.file}")
    if os.path.isdir(args.file):
        raise InputError(f"{args.file} is a directory: give a file of texts")
    refuse_output_over_input(args.file, args.output)
    if args.output is not None:  # said before the model loads, which can take minutes
        if os.path.isdir(args.output) or args.output.endswith(("/", os.sep)):
            raise InputError(f"--output {args.output} names a directory: give a file name")
        if not args.output:
            raise InputError("--output is empty: give a file name")
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise InputError(f"--output {args.output}: there is no directory {folder}")

    model = NemotronForCausalLM.from_pretrained(args.model, dtype=args.dtype, num_threads=args.num_threads)
    tokenizers = Tokenizers(args.tokenizer or model.name_or_path)
    refuse_output_over_checkpoint(args.output, [model.name_or_path, tokenizers.path])
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(count_lines(args.file), sys.stderr) if show else None

    source = sys.stdin if args.file == "-" else open(args.file, "rb")  # decoded by utf8_lines
    try:
        sink = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")
    except OSError as e:
        source.close()
        raise OSError(f"cannot write --output {args.output}: {e.strerror}") from None
    try:
        name = "<stdin>" if args.file == "-" else args.file
        records = read_records(utf8_lines(source, name), name, args.format)
        # groups of several batches, so that sorting by length inside score() saves padding
        for group in groups(records, args.batch_size * 8):
            lines = "".join(line + "\n" for line in
                            score_group(model, tokenizers, group, name, args, ascii_only=not writes_utf8(sink)))
            try:
                sink.write(lines)
                sink.flush()
            except OSError as e:
                if sink is sys.stdout:
                    raise  # a closed pipe (| head) ends quietly in main
                raise OSError(f"cannot write --output {args.output}: {e.strerror}") from None
            if bar:
                bar.update(len(group))
    finally:
        if bar:
            bar.close()
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            try:
                sink.close()  # flushes what a failed write left: the same failure again
            except OSError as e:
                raise OSError(f"cannot write --output {args.output}: {e.strerror}") from None
    return 0


def refuse_output_over_input(input_path, output_path):
    """Opening --output truncates it before the input is read: naming the input (by any path, a link, or as the
    file stdin was redirected from) would lose the texts, so refuse it."""
    if output_path is None:
        return
    try:
        out = os.stat(output_path)
    except OSError:
        return  # not there yet, so not the input
    try:
        src = os.fstat(sys.stdin.fileno()) if input_path == "-" else os.stat(input_path)
    except (OSError, ValueError):
        return
    if (src.st_dev, src.st_ino) == (out.st_dev, out.st_ino):
        raise InputError(f"--output {output_path} is the input file: writing it would erase the texts before "
                         "they are read; write the scores to another file")


def refuse_output_over_checkpoint(output_path, directories):
    """Opening --output empties it: a file of the model's or tokenizer's folder, or any file this process has mapped
    (the weights, wherever they were read from), would be lost, and the model reading emptied pages would crash."""
    if output_path is None:
        return
    try:
        out = os.stat(output_path)
    except OSError:
        return
    paths = [entry.path for d in directories if os.path.isdir(d) for entry in os.scandir(d)]
    try:
        with open("/proc/self/maps") as maps:  # address, perms, offset, device, inode, path
            paths += [fields[5].rstrip("\n") for fields in (line.split(maxsplit=5) for line in maps)
                      if len(fields) == 6 and fields[5].startswith("/")]
    except OSError:
        pass  # not Linux: the folders alone
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            also = "" if os.path.abspath(path) == os.path.abspath(output_path) else f" ({path})"
            raise InputError(f"--output {output_path} is a file of the model or its tokenizer{also}: writing the "
                             "scores there would erase it; write them to another file")


def writes_utf8(stream):
    return codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name == "utf-8"


def score_group(model, tokenizers, group, name, args, ascii_only=False):
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
        if record_id is not NO_ID:
            result["id"] = record_id
        result["num_tokens"] = int(scores.num_tokens[i])
        for key in ("sum_logprob", "mean_logprob", "perplexity"):
            result[key] = finite_or_none(scores[key][i])
        if args.token_logprobs:
            result["token_logprobs"] = [finite_or_none(x) for x in scores.token_logprobs[i]]
        # JSON's \u escapes where stdout's encoding (PYTHONIOENCODING, a Latin-1 locale) could not hold an id's text
        yield json.dumps(result, ensure_ascii=ascii_only)


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
