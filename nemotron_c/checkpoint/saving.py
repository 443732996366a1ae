"""Writing checkpoints as Transformers 5 does: safetensors files, sharded with an index when over a size.

Tensors are written one at a time straight from the arrays the model holds, so saving never needs a
second copy of the weights. Every file is written under a temporary name and renamed into place: a
model saved into the directory it was loaded (memory-mapped) from keeps reading its old files.
"""
import copy
import json
import os
import re
import shutil
import struct
import tempfile

import numpy as np

from .quantized import FORMATS, SCALE_SUFFIX
from .reading import add_variant
from .safetensors import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME
from .tensors import SAFETENSORS_DTYPES, SUPPORTED

# Transformers 5 save_pretrained's default shard size
DEFAULT_MAX_SHARD_SIZE = "50GB"
# huggingface_hub's units (Transformers 5 hands the size to it), plus the binary ones of Transformers'
# own convert_file_size_to_int
SIZE_UNITS = {"TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3, "TIB": 2**40, "GIB": 2**30, "MIB": 2**20,
              "KIB": 2**10}
# the core dtypes a safetensors file can hold, with their names there and their sizes (int8, int4: the values of a
# quantized weight, written beside their scales)
SAFETENSORS_NAMES = {**{core: name for name, core in SUPPORTED.items()}, **{d: f.stored for d, f in FORMATS.items()}}
ITEMSIZES = {core: SAFETENSORS_DTYPES[name][0] for core, name in SAFETENSORS_NAMES.items()}
SHARD_PATTERN = re.compile(r"(.*?)-\d{5}-of-\d{5}")


def parse_shard_size(size):
    """Bytes from an int or a string such as "5GB", "500MB", "10KB", "0.5GB" (decimal units) or "2GiB"."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 0:
            raise ValueError(f"max_shard_size must not be negative, got {size}")
        return int(size)
    if not isinstance(size, str):
        raise TypeError(f"max_shard_size must be an int (bytes) or a string such as '5GB', not {type(size).__name__}")
    # as huggingface_hub's parse_size_to_int: the unit ends the stripped text, the rest is whatever float() reads
    # ("1e3KB", "+5GB"); NaN, infinities and negative sizes are refused (the hub would overflow or make one shard a
    # tensor)
    text = size.strip()
    unit = next((u for u in SIZE_UNITS if text.upper().endswith(u)), None)
    try:
        value = float(text[: -len(unit)]) if unit else None
    except ValueError:
        value = None
    if value is None or not np.isfinite(value):
        raise ValueError(
            f"max_shard_size {size!r} is not a number followed by a unit: use e.g. '5GB', '500MB', '10KB' "
            f"(units: {', '.join(SIZE_UNITS)})"
        )
    if value < 0:
        raise ValueError(f"max_shard_size must not be negative, got {size!r}")
    return int(value * SIZE_UNITS[unit])


def plan_shards(sizes, max_shard_size):
    """Groups tensor names into shards as huggingface_hub's split_state_dict_into_shards does.

    sizes: [(name, bytes)] in state_dict order. In that order, a tensor above the limit gets a shard of its
    own and the current shard is closed when the next tensor would take it past the limit.
    """
    shards, current, current_size = [], [], 0
    for name, size in sizes:
        if size > max_shard_size:
            shards.append([name])
            continue
        if current and current_size + size > max_shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current:
        shards.append(current)
    return shards


class TensorToSave:
    """A tensor to write: its name, dtype ('float32', 'bfloat16', 'float16', or 'int8' / 'int4' for a quantized
    weight's values), the shape it is stored in and a function giving its array (bfloat16 as uint16 bits), called
    only when the tensor is written, so that a conversion makes one tensor at a time. parameters: the weights it
    stands for (a quantized weight's values: those of its matrix, its scales: none), as num_parameters counts."""

    __slots__ = ("name", "dtype", "shape", "load", "parameters")

    def __init__(self, name, dtype, shape, load, parameters=None):
        if dtype not in ITEMSIZES:
            raise ValueError(f"tensor {name!r}: cannot save dtype {dtype!r} ({', '.join(ITEMSIZES)})")
        self.name, self.dtype, self.shape, self.load = name, dtype, tuple(int(d) for d in shape), load
        self.parameters = int(np.prod(self.shape, dtype=np.int64)) if parameters is None else parameters

    @classmethod
    def of(cls, name, array, dtype):
        return cls(name, dtype, array.shape, lambda: array)

    @classmethod
    def each(cls, name, dtype, shape, load):
        """The tensors that store one weight of `shape`: itself, or for a quantized weight (load() then gives
        (values, scales)) its values `name` (I8 (N, K) or U8 (N, K / 2), checkpoint/quantized.py) and its scales
        `name`_scale F32 (N, K / group), made by one call of load (the two are written one after the other)."""
        fmt = FORMATS.get(dtype)
        if fmt is None:
            return [cls(name, dtype, shape, load)]
        held = {}

        def part(i):
            pair = held.pop("pair", None)
            if pair is None:
                pair = held["pair"] = load()
            return pair[i]

        N, K = shape
        return [cls(name, dtype, fmt.stored_shape(shape), lambda: part(0), parameters=N * K),
                cls(name + SCALE_SUFFIX, "float32", (N, K // fmt.group_size), lambda: part(1), parameters=0)]

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * ITEMSIZES[self.dtype]


def safetensors_header(tensors, metadata):
    """The header bytes of a safetensors file holding `tensors` (TensorToSave) in that order.

    8 bytes of little-endian length, then the JSON, padded with spaces so that the data starts 8-aligned.
    """
    entries = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for t in tensors:
        entries[t.name] = {"dtype": SAFETENSORS_NAMES[t.dtype], "shape": list(t.shape),
                           "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (TensorToSave) to `path` through a temporary file, sorted by name as the safetensors
    library does."""
    tensors = sorted(tensors, key=lambda t: t.name)
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(safetensors_header(tensors, metadata))
            for t in tensors:
                array = np.ascontiguousarray(t.load())
                if array.shape != t.shape or array.nbytes != t.nbytes:
                    raise ValueError(f"tensor {t.name!r}: array of shape {array.shape} and {array.nbytes} bytes, "
                                     f"expected {t.shape} in {t.dtype}")
                f.write(array.data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save_weights(save_directory, tensors, max_shard_size=DEFAULT_MAX_SHARD_SIZE, on_file=None, variant=None):
    """Writes `tensors` (TensorToSave, in state_dict order) as model.safetensors, or as shards
    model-0000i-of-0000n.safetensors with model.safetensors.index.json when they exceed max_shard_size; with a
    variant, Transformers' names for it: model.fp16.safetensors, model.fp16-0000i-of-0000n.safetensors and
    model.safetensors.index.fp16.json.

    Removes the shard files of an earlier save that this one does not overwrite, as Transformers does, and
    also the single file or the index of an earlier save of the other layout, which Transformers leaves
    (a reader would then prefer the stale model.safetensors). Unlike Transformers, only once every new file is
    in place: a save that fails or is interrupted (Ctrl-C) leaves the earlier checkpoint readable, unless it
    had as many shards (then overwritten one by one). on_file(name, bytes) follows each file written.
    Returns the names of the files written.
    """
    limit = parse_shard_size(max_shard_size)
    by_name = {t.name: t for t in tensors}
    if len(by_name) != len(tensors):
        raise ValueError("two tensors share a name")
    shards = plan_shards([(t.name, t.nbytes) for t in tensors], limit)
    weights_name, index_name = add_variant(SAFE_WEIGHTS_NAME, variant), add_variant(SAFE_WEIGHTS_INDEX_NAME, variant)
    stem = weights_name.removesuffix(".safetensors")
    if len(shards) <= 1:
        files = {weights_name: shards[0] if shards else []}
    else:
        files = {f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors": names for i, names in enumerate(shards)}
    for file_name, names in files.items():
        write_safetensors(os.path.join(save_directory, file_name), [by_name[n] for n in names], {"format": "pt"})
        if on_file:
            on_file(file_name, sum(by_name[n].nbytes for n in names))
    if len(files) == 1:
        remove_stale_weights(save_directory, files, stem, weights_name, index_name)
        return [weights_name]
    # Transformers' model.num_parameters(): a quantized model's counts the matrices, not their stored bytes or scales
    total_parameters = sum(t.parameters for t in tensors)
    index = {
        "metadata": {"total_parameters": total_parameters, "total_size": sum(t.nbytes for t in tensors)},
        "weight_map": {name: file_name for file_name, names in files.items() for name in names},
    }
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    write_text(os.path.join(save_directory, index_name), text)
    remove_stale_weights(save_directory, files, stem, weights_name, index_name)
    return [*files, index_name]


def remove_stale_weights(save_directory, files, stem, weights_name, index_name):
    """Transformers' rule: a shard file whose name begins as the weights' (model, or model.fp16 for a variant) and
    that this save does not overwrite goes; so does the other layout's file of the same variant."""
    sharded = len(files) > 1
    for file_name in os.listdir(save_directory):
        path = os.path.join(save_directory, file_name)
        if not os.path.isfile(path) or file_name in files:
            continue
        stale_shard = (file_name.startswith(stem) and file_name.endswith(".safetensors")
                       and SHARD_PATTERN.fullmatch(file_name.removesuffix(".safetensors")) is not None)
        other_layout = file_name == (weights_name if sharded else index_name)
        if stale_shard or other_layout:
            os.remove(path)


def write_text(path, text):
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def prepare_directory(save_directory):
    """Creates the directory; a path that is a file is an error (Transformers logs it and saves nothing)."""
    save_directory = os.fspath(save_directory)
    if os.path.exists(save_directory) and not os.path.isdir(save_directory):
        raise NotADirectoryError(f"cannot save into {save_directory!r}: it is a file, not a directory")
    os.makedirs(save_directory, exist_ok=True)
    return save_directory


def dot_natural_key(name):
    """Transformers' sort key of state_dict names: split on dots, numbers (and a part's trailing digits) compared
    as numbers, so that layers.2 comes before layers.10."""
    parts = []
    for part in name.split("."):
        if part.isdigit():
            parts.append((0, int(part)))
            continue
        text = part.rstrip("0123456789")
        parts.append((1, text, int(part[len(text):])) if text != part else (1, text))
    return parts


def transformers_save_order(tensors, model):
    """[(name, ...)] in the order Transformers' save_pretrained shards them. A model made by from_pretrained has
    its (empty) weight conversions recorded, and reverting them sorts the state_dict by dot_natural_key (lm_head
    first, then each layer's tensors by name); a model made from a config keeps the state_dict's order."""
    if getattr(model, "_load_args", None) is None:
        return list(tensors)
    return sorted(tensors, key=lambda item: dot_natural_key(item[0]))


def save_model(model, save_directory, max_shard_size=DEFAULT_MAX_SHARD_SIZE, safe_serialization=True, on_file=None,
               **kwargs):
    """model.save_pretrained: config.json, generation_config.json (models that generate) and the weights; returns the
    names of the weight files (on_file(name, size) is called after each, as save_weights does)."""
    if not safe_serialization:
        raise NotImplementedError(
            "nemotron_c writes safetensors only (safe_serialization=False would mean pytorch_model.bin; "
            "Transformers 5 writes safetensors only as well)"
        )
    variant = kwargs.pop("variant", None)
    if variant is not None and not isinstance(variant, str):
        raise TypeError(f"variant must be a str, not {type(variant).__name__}")
    unsupported = {"state_dict": None, "push_to_hub": False, "save_peft_format": True,
                   "distributed_checkpoint": False}
    for key, neutral in unsupported.items():
        if kwargs.pop(key, neutral) != neutral:
            raise NotImplementedError(f"save_pretrained({key}=...) is not supported by nemotron_c")
    kwargs.pop("token", None)
    kwargs.pop("save_original_format", None)
    is_main_process = kwargs.pop("is_main_process", True)
    if kwargs:
        raise TypeError(f"save_pretrained got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
    limit = parse_shard_size(max_shard_size)
    save_directory = prepare_directory(save_directory)
    if not is_main_process:  # as Transformers: only the main process writes
        return
    tensors = [saved for name, array, dtype in transformers_save_order(model._tensors_to_save(), model)
               for saved in TensorToSave.each(name, dtype, array.shape,
                                              lambda array=array: array)]
    # as Transformers: the config records the saved dtype (a quantized model's: that of its float tensors, beside
    # its quantization_config) and the class
    model.config.dtype = model._float_dtype
    model.config.architectures = [type(model).__name__]
    # the weight file config.json named to load from: the weights are model.safetensors now (Transformers' config
    # save drops it; the model's config keeps it, since a pickled model loads again from where it was loaded)
    config = model.config
    if hasattr(config, "transformers_weights"):
        config = copy.deepcopy(config)
        del config.transformers_weights
    # the configs are written (and the generation config validated, which may refuse it) before the weights, as
    # Transformers does, but put in place after them: an interrupted save into a checkpoint's directory leaves its
    # config.json beside its weights (a dequantized save's config over int8 weights would not load)
    staging = tempfile.mkdtemp(prefix=".nemotron_c-save-", dir=save_directory)
    try:
        config.save_pretrained(staging)
        if model.can_generate():
            model.generation_config.save_pretrained(staging)
        written = save_weights(save_directory, tensors, limit, on_file=on_file, variant=variant)
        for file_name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, file_name), os.path.join(save_directory, file_name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
