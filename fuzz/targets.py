"""One fuzz target per reader of outside data. Each takes the bytes of a file (or of a text) and feeds them to the
reader the way a user's folder would; the exceptions a reader may raise for bad input are listed in EXPECTED, and
anything else (a crash, a hang, a KeyError, a RecursionError, an unhashable TypeError...) is a finding.

Run them with atheris (fuzz/run.py --atheris) or with the seeded mutation loop of fuzz/mutate.py, which
tests/test_fuzz.py runs for a bounded number of iterations."""
import atexit
import json
import os
import shutil
import tempfile

import numpy as np

import nemotron_c
from nemotron_c.checkpoint.quantized import QUANTIZATION_CONFIGS, QuantizedCheckpointError, gather_quantized
from nemotron_c.checkpoint.safetensors import read_safetensors
from nemotron_c.checkpoint.torch_bin import read_state_dict
from nemotron_c.model.rope import rope_parameters
from nemotron_c.model.weights import QUANTIZED_TENSORS, core_config, layer_shapes
from nemotron_c.tokenizer.tokenization import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REGRESSIONS = os.path.join(HERE, "regressions")

# What bad input may raise: ValueError (FormatError, JSON and UTF-8 errors are ValueErrors) and, for a valid file
# asking for something nemotron_c does not implement, NotImplementedError. A TypeError is expected only where a
# reader documents one for a value of the wrong type.
EXPECTED = (ValueError, NotImplementedError)
EXPECTED_WITH_TYPES = EXPECTED + (TypeError,)

# in memory where there is a tmpfs: each execution writes its file, which on a disk took most of the time
_work = tempfile.mkdtemp(prefix="nemotron_c_fuzz_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
atexit.register(shutil.rmtree, _work, ignore_errors=True)


def _write(name, data):
    path = os.path.join(_work, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def safetensors(data):
    """The file as a shard of an int8 checkpoint and of an int4 one: quantized weights paired with their scales,
    read as stored and dequantized (a float file passes the pairing unchanged). A file one format refuses is still
    read as the other."""
    stored = read_safetensors(_write("model.safetensors", data))
    for config in QUANTIZATION_CONFIGS.values():
        try:
            tensors = gather_quantized(stored, config, QUANTIZED_TENSORS)
        except QuantizedCheckpointError:
            continue
        for tensor in tensors.values():
            if tensor.storage in QUANTIZATION_CONFIGS:
                tensor.array("float32")
            tensor.array(tensor.storage)


def torch_bin(data):
    for tensor in read_state_dict(_write("pytorch_model.bin", data)).values():
        np.frombuffer(tensor.data, dtype=np.uint8)


def config_json(data):
    try:
        values = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: json's own limit on nesting, before any of our code runs (Transformers has it too)
        return
    if not isinstance(values, dict):
        return
    config = nemotron_c.NemotronConfig.from_dict(values)
    config.validate()
    config.to_json_string()
    # The RoPE tables take head_dim / 2 floats. Loading checks every weight's shape against the file before it
    # builds them, and a q_proj of num_attention_heads * head_dim * hidden_size values is in the file: a config
    # alone does not reach here with a head_dim larger than its checkpoint (regressions/config_json/huge_head_dim).
    if max(int(np.prod(shape)) for shape in layer_shapes(config).values()) > 2**24:
        return
    core_config(config)
    rope_parameters(config)


def _tokenizer_folder(name, data):
    # one folder per file name, rewritten by each execution: a million runs must not leave a million folders
    folder = os.path.join(_work, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    return folder


def _exercise(tokenizer):
    ids = tokenizer("Hello <extra_id_0> wörld  12\n\ttabs 😀 end")["input_ids"]
    tokenizer.decode(ids)
    tokenizer.decode(list(range(min(len(tokenizer), 300))))


def tokenizer_json(data):
    _exercise(AutoTokenizer.from_pretrained(_tokenizer_folder("tokenizer.json", data)))


def tokenizer_model(data):
    folder = _tokenizer_folder("tokenizer.model", data)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": False}, f)
    _exercise(AutoTokenizer.from_pretrained(folder))


_seed_tokenizer = None


def encode_decode(data):
    """The bytes as text (any code points, lone surrogates included) to encode, and as ids to decode."""
    global _seed_tokenizer
    if _seed_tokenizer is None:
        with open(os.path.join(CORPUS, "tokenizer_json", "llama.json"), "rb") as f:
            _seed_tokenizer = AutoTokenizer.from_pretrained(_tokenizer_folder("tokenizer.json", f.read()))
    text = data.decode("utf-8", errors="surrogateescape" if len(data) % 2 else "replace")
    try:
        ids = _seed_tokenizer(text)["input_ids"]
        _seed_tokenizer([text, text[: len(text) // 2]])
    except TypeError:
        # a lone surrogate is refused with Transformers' TypeError; nothing else may raise one
        if not any("\ud800" <= c <= "\udfff" for c in text):
            raise
        ids = []
    assert isinstance(_seed_tokenizer.decode(ids), str)
    raw = np.frombuffer(data[: len(data) // 4 * 4], dtype=np.int32).tolist()
    _seed_tokenizer.decode(raw)


TARGETS = {
    "safetensors": (safetensors, EXPECTED),
    "torch_bin": (torch_bin, EXPECTED),
    "config_json": (config_json, EXPECTED_WITH_TYPES),
    "tokenizer_json": (tokenizer_json, EXPECTED),
    "tokenizer_model": (tokenizer_model, EXPECTED),
    # a negative id does not fit the u32 ids of tokenizers: Transformers raises OverflowError, and so do we
    "encode_decode": (encode_decode, EXPECTED + (OverflowError,)),
}


def seeds(target):
    """The seed corpus and the regression files of a target, as (name, bytes)."""
    out = []
    for root in (os.path.join(CORPUS, target), os.path.join(REGRESSIONS, target)):
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                with open(os.path.join(root, name), "rb") as f:
                    out.append((os.path.relpath(os.path.join(root, name), HERE), f.read()))
    return out


def run_one(target, data):
    """Runs a target on data; returns None, or the unexpected exception (a finding)."""
    function, expected = TARGETS[target]
    try:
        function(data)
    except expected:
        return None
    except Exception as e:  # noqa: BLE001 (anything else is what we look for)
        return e
    return None
