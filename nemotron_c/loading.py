"""Reading Hugging Face checkpoint directories: safetensors or pytorch_model.bin, single or sharded, memory-mapped.

Every size read from a file is checked before it is used: the header length against the file, each
tensor's offsets against the data area and against the other tensors, its byte length against its
shape and dtype, and shard paths against the checkpoint directory.
"""
import json
import mmap
import os
import struct

import numpy as np

from . import _core
from .checkpoint import torch_bin
from .checkpoint.dtypes import SAFETENSORS_DTYPES
from .checkpoint.torch_bin import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, TorchCheckpointFormatError

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# The safetensors library refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# How each dtype's raw elements are viewed in NumPy (bfloat16 has no NumPy type: its bits as uint16).
STORAGE_NUMPY = {"float32": np.float32, "bfloat16": np.uint16, "float16": np.float16}


class SafetensorsFormatError(_core.FormatError):
    """A safetensors file or index is malformed (a ValueError)."""


class StoredTensor:
    """One tensor of a checkpoint: its dtype, shape and a read-only view of its bytes in the file's map."""

    __slots__ = ("name", "file", "dtype", "shape", "data")

    def __init__(self, name, file, dtype, shape, data):
        self.name = name
        self.file = file
        self.dtype = dtype  # safetensors dtype name, e.g. "BF16"
        self.shape = shape
        self.data = data  # memoryview of the bytes

    @property
    def storage(self):
        """The core's name of the stored dtype ('float32', 'bfloat16', 'float16'); ValueError for any other."""
        stored = SAFETENSORS_DTYPES[self.dtype][1]
        if stored is None:
            raise ValueError(
                f"tensor {self.name!r} in {self.file} is stored as {self.dtype}, which nemotron_c does not support "
                f"(supported: F32, BF16, F16)"
            )
        return stored

    def array(self, dtype):
        """The tensor as a NumPy array in `dtype` ('float32', 'bfloat16' or 'float16'; bfloat16 as uint16 bits).

        Without conversion the array is a view of the memory map, unless the bytes are misaligned.
        """
        stored = self.storage
        raw = np.frombuffer(self.data, dtype=STORAGE_NUMPY[stored]).reshape(self.shape)
        if raw.ctypes.data % raw.itemsize:
            raw = raw.copy()
        return convert(raw, stored, dtype)


def float32_to_bfloat16_bits(values):
    """Rounds float32 to bfloat16 to nearest even, as torch does; returns the bits as uint16."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


def convert(raw, stored, dtype):
    if stored == dtype:
        return raw
    if stored == "bfloat16":
        as_float32 = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        as_float32 = raw.astype(np.float32)
    if dtype == "float32":
        return as_float32
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(as_float32)
    return as_float32.astype(np.float16)


def read_safetensors(path):
    """Maps a .safetensors file and returns {name: StoredTensor}; raises SafetensorsFormatError when malformed."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file {path} does not exist") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise SafetensorsFormatError(f"{path}: file of {size} bytes is too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise SafetensorsFormatError(
                f"{path}: header length {header_len} runs past the end of the file ({size} bytes): truncated?"
            )
        if header_len > MAX_HEADER_BYTES:
            raise SafetensorsFormatError(f"{path}: header length {header_len} exceeds {MAX_HEADER_BYTES} bytes")
        header_bytes = f.read(header_len)
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsFormatError(f"{path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsFormatError(f"{path}: header is not a JSON object")
        data_start = 8 + header_len
        data_len = size - data_start
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else None

    view = memoryview(mapped)
    tensors = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                raise SafetensorsFormatError(f"{path}: __metadata__ is not a JSON object")
            continue
        tensors[name] = parse_entry(path, name, entry, data_len, view, data_start)
        begin, end = entry["data_offsets"]
        if end > begin:
            spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise SafetensorsFormatError(f"{path}: tensors {n0!r} and {n1!r} overlap")
    return tensors


def parse_entry(path, name, entry, data_len, view, data_start):
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsFormatError(f"{where}: entry is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise SafetensorsFormatError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SafetensorsFormatError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise SafetensorsFormatError(f"{where}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise SafetensorsFormatError(
            f"{where}: data_offsets [{begin}, {end}] fall outside the data area of {data_len} bytes (truncated file?)"
        )
    itemsize = SAFETENSORS_DTYPES[dtype][0]
    count = 1
    for d in shape:
        count *= d
    if itemsize is not None and count * itemsize != end - begin:
        raise SafetensorsFormatError(
            f"{where}: shape {shape} of {dtype} needs {count * itemsize} bytes but data_offsets span {end - begin}"
        )
    return StoredTensor(name, path, dtype, tuple(shape), view[data_start + begin : data_start + end])


def read_checkpoint(directory):
    """All tensors of a checkpoint directory, from the first of WEIGHTS_FILES it holds (Transformers' order)."""
    directory = os.fspath(directory)
    for name, read_file, sharded in WEIGHTS_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return read_sharded(directory, path, read_file) if sharded else read_file(path)
    hint = " (found model.ckpt.index: TensorFlow checkpoints are not read)" if os.path.exists(
        os.path.join(directory, "model.ckpt.index")) else ""
    raise FileNotFoundError(f"no {', '.join(WEIGHTS_NAMES[:-1])} or {WEIGHTS_NAMES[-1]} in {directory}{hint}")


def read_torch_bin(path):
    """A torch.save state dict as {name: StoredTensor}; raises TorchCheckpointFormatError when malformed."""
    return {name: StoredTensor(name, path, t.dtype, t.shape, t.data)
            for name, t in torch_bin.read_state_dict(path).items()}


def read_sharded(directory, index_path, read_file):
    error = TorchCheckpointFormatError if read_file is read_torch_bin else SafetensorsFormatError
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{index_path}: not valid JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise error(f"{index_path}: no weight_map object")
    # lexical, not realpath: in the Hub cache every file is a symlink into blobs/, outside the snapshot folder
    root = os.path.abspath(directory)
    shards = {}
    for name, file_name in weight_map.items():
        if not isinstance(file_name, str) or not file_name:
            raise error(f"{index_path}: tensor {name!r} maps to {file_name!r}, not a file name")
        path = os.path.abspath(os.path.join(root, file_name))
        if os.path.isabs(file_name) or os.path.commonpath([root, path]) != root:
            raise error(
                f"{index_path}: shard {file_name!r} of tensor {name!r} lies outside the checkpoint directory"
            )
        shards.setdefault(path, []).append(name)
    tensors = {}
    for path, names in shards.items():
        shard = read_file(path)
        for name in names:
            if name not in shard:
                raise error(f"{index_path}: tensor {name!r} is not in shard {path}")
            tensors[name] = shard[name]
    return tensors


# The weight files a checkpoint directory may hold, in the order Transformers prefers them: (name, reader, whether
# the file is an index of shards). The Hub resolution fetches the first of WEIGHTS_NAMES a repo holds.
WEIGHTS_FILES = (
    (SAFE_WEIGHTS_NAME, read_safetensors, False),
    (SAFE_WEIGHTS_INDEX_NAME, read_safetensors, True),
    (WEIGHTS_NAME, read_torch_bin, False),
    (WEIGHTS_INDEX_NAME, read_torch_bin, True),
)
WEIGHTS_NAMES = tuple(name for name, _, _ in WEIGHTS_FILES)
