"""safetensors files: a little-endian u64 header length, a JSON header of dtype, shape and data offsets, the data.

Every size read from a file is checked before it is used: the header length against the file, each tensor's
offsets against the data area and against the other tensors, its byte length against its shape and dtype.
The file is memory-mapped and each tensor is a view of the map.
"""
import json
import mmap
import os
import struct

from .. import _core
from .tensors import SAFETENSORS_DTYPES, StoredTensor, git_lfs_hint, open_regular_file

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# The safetensors library refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# A weight has 1 or 2 dimensions; a shape of more than 64 is only a hostile header's (see parse_entry).
MAX_DIMS = 64
# bits per element of the sub-byte dtypes (itemsize None)
SUB_BYTE_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


class SafetensorsFormatError(_core.FormatError):
    """A safetensors file or index is malformed (a ValueError)."""


def read_safetensors(path):
    """Maps a .safetensors file and returns {name: StoredTensor}; raises SafetensorsFormatError when malformed."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise SafetensorsFormatError(f"{path}: file of {size} bytes is too short for a safetensors header")
        start = f.read(8)
        (header_len,) = struct.unpack("<Q", start)
        if header_len > size - 8:
            raise SafetensorsFormatError(f"{path}: header length {header_len} runs past the end of the file ({size} "
                                         f"bytes): truncated?{git_lfs_hint(start)}")
        if header_len > MAX_HEADER_BYTES:
            raise SafetensorsFormatError(f"{path}: header length {header_len} exceeds {MAX_HEADER_BYTES} bytes")
        header_bytes = f.read(header_len)
        try:
            header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=refuse_duplicate_keys)
        # json raises a bare ValueError for an integer of over 4300 digits and RecursionError for deep nesting
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise SafetensorsFormatError(f"{path}: header is not valid JSON ({e})") from None
        except DuplicateKeyError as e:
            raise SafetensorsFormatError(f"{path}: header names {e.args[0]!r} twice") from None
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
            # as the safetensors library: absent, null, or an object of strings (Transformers reads none of it)
            if entry is not None and not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise SafetensorsFormatError(f"{path}: __metadata__ is not a JSON object of strings")
            continue
        tensors[name] = parse_entry(path, name, entry, data_len, view, data_start)
        begin, end = entry["data_offsets"]
        spans.append((begin, end, name))
    # As the safetensors library (and so Transformers) requires, the tensors in order of their offsets tile the data
    # area: no overlap, no gap, nothing after the last
    spans.sort()
    covered, previous = 0, None
    for begin, end, name in spans:
        if begin < covered:
            raise SafetensorsFormatError(f"{path}: tensors {previous!r} and {name!r} overlap")
        if begin > covered:
            raise SafetensorsFormatError(f"{path}: bytes {covered} to {begin} of the data area belong to no tensor "
                                         f"(before {name!r}): not a file the safetensors library reads")
        covered, previous = end, name
    if covered != data_len:
        raise SafetensorsFormatError(f"{path}: the tensors cover {covered} bytes of the data area's {data_len}: "
                                     f"truncated or not a file the safetensors library reads")
    return tensors


class DuplicateKeyError(Exception):
    pass


def refuse_duplicate_keys(pairs):
    """json's object_pairs_hook: json.loads alone keeps the last of two equal keys; the safetensors library
    refuses such a header, since which of the two tensors is meant is unknown."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def parse_entry(path, name, entry, data_len, view, data_start):
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsFormatError(f"{where}: entry is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise SafetensorsFormatError(f"{where}: unknown dtype {dtype!r}")
    # Bounded before the shape is walked: N dimensions of 2**62 would make the element count's product cost time
    # quadratic in N (big integers) from a header of 20 bytes per dimension.
    if isinstance(shape, list) and len(shape) > MAX_DIMS:
        raise SafetensorsFormatError(f"{where}: shape of {len(shape)} dimensions, more than {MAX_DIMS}")
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
    # Checked against the data area as the count grows, so it never outgrows the file's own numbers
    # (a sub-byte dtype, itemsize None, holds at least 4 elements a byte).
    count = 0 if 0 in shape else 1
    for d in shape:
        count *= d
        if count > 4 * data_len:
            raise SafetensorsFormatError(
                f"{where}: shape {shape} of {dtype} holds more elements than the data area's {data_len} bytes"
            )
    bits = 8 * itemsize if itemsize is not None else SUB_BYTE_BITS[dtype]
    if count * bits % 8:
        raise SafetensorsFormatError(f"{where}: shape {shape} of {dtype} does not fill whole bytes")
    if count * bits // 8 != end - begin:
        raise SafetensorsFormatError(
            f"{where}: shape {shape} of {dtype} needs {count * bits // 8} bytes but data_offsets span {end - begin}"
        )
    return StoredTensor(name, path, dtype, tuple(shape), view[data_start + begin : data_start + end])
