"""The tensors of a checkpoint as every reader returns them, and the dtypes they may be stored in.

The dtypes the core computes with are the core's table (`_core.DTYPE_INFO`: name -> code, itemsize, block size);
this module only maps file formats' names onto it and says how NumPy views each one's bytes.
"""
import os
import stat
import warnings

import numpy as np

from .. import _core

# safetensors' names of the dtypes the core takes (torch storages are mapped to these names too)
SUPPORTED = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
# ... and the byte sizes of the ones it does not, so that their files are still checked (None: sub-byte)
UNSUPPORTED_ITEMSIZES = {
    "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": None, "F6_E2M3": None, "F6_E3M2": None, "C64": 8,
}
# safetensors name -> (bytes per element, the core's dtype name or None when unsupported)
SAFETENSORS_DTYPES = {
    **{name: (_core.DTYPE_INFO[core].itemsize, core) for name, core in SUPPORTED.items()},
    **{name: (size, None) for name, size in UNSUPPORTED_ITEMSIZES.items()},
}
# torch dtypes safetensors has no name for, which a pytorch_model.bin may hold: our names for them, as
# STORED_DTYPES' keys. torch gives the sub-byte ones (int1-7, uint1-7, the bits types, float4_e2m1fn_x2) one byte an
# element of the shape, so they have an itemsize here.
TORCH_ONLY_ITEMSIZES = {
    "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1, "C128": 16, "C32": 4, "F4_E2M1FN_X2": 1,
    "BITS8": 1, "BITS16": 2, "BITS1X8": 1, "BITS2X4": 1, "BITS4X2": 1,
    **{f"{kind}{bits}": 1 for kind in ("I", "U") for bits in range(1, 8)},
}
# every dtype a checkpoint tensor may be stored in -> (bytes per element, the core's dtype name or None)
STORED_DTYPES = {**SAFETENSORS_DTYPES, **{name: (size, None) for name, size in TORCH_ONLY_ITEMSIZES.items()}}


def float8_table(exponent_bits, mantissa_bits, bias, nan, infinity=None, signed=True):
    """The float32 value of each of the 256 codes of a float8 format (torch's .to(float32) gives exactly these):
    `nan` and `infinity` are the codes (of either sign, unless the format is unsigned) that stand for them."""
    codes = np.arange(256)
    magnitude = codes & 0x7F if signed else codes
    exponent = magnitude >> mantissa_bits
    mantissa = (magnitude & ((1 << mantissa_bits) - 1)) / (1 << mantissa_bits)
    values = np.where(exponent == 0, mantissa * 2.0 ** (1 - bias), (1 + mantissa) * 2.0 ** (exponent - bias))
    if signed:
        values = np.where(codes & 0x80, -values, values)
    values[np.isin(magnitude, nan)] = np.nan
    if infinity is not None:
        values[magnitude == infinity] = np.inf
        values[(magnitude == infinity) & (codes >= 0x80)] = -np.inf
    return values.astype(np.float32)


FLOAT8_TABLES = {
    "F8_E4M3": float8_table(4, 3, 7, nan=[0x7F]),
    "F8_E5M2": float8_table(5, 2, 15, nan=[0x7D, 0x7E, 0x7F], infinity=0x7C),
    "F8_E8M0": np.where(np.arange(256) == 0xFF, np.nan, 2.0 ** (np.arange(256) - 127.0)).astype(np.float32),
}
# the "fnuz" formats have no negative zero: its code 0x80 is their only NaN
FLOAT8_TABLES["F8_E4M3FNUZ"] = float8_table(4, 3, 8, nan=[])
FLOAT8_TABLES["F8_E5M2FNUZ"] = float8_table(5, 2, 16, nan=[])
FLOAT8_TABLES["F8_E4M3FNUZ"][0x80] = FLOAT8_TABLES["F8_E5M2FNUZ"][0x80] = np.nan
# The dtypes torch's .to() turns into a float one, each read as NumPy type (complex: the real part, which is what
# torch keeps). Through float32 the values round as torch rounds them to bfloat16 or float16 (tested bit for bit).
CONVERTIBLE_NUMPY = {
    "F64": np.float64, "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
    "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.uint8, "C64": np.float32, "C128": np.float64,
    "C32": np.float16, **{name: np.uint8 for name in FLOAT8_TABLES},
}
# How each core dtype's raw elements are viewed in NumPy (bfloat16 has no NumPy type: its bits as uint16).
STORAGE_NUMPY = {"float32": np.float32, "bfloat16": np.uint16, "float16": np.float16}
# Names users give to_pretrained's dtype= beside the core's own
DTYPE_ALIASES = {"float": "float32", "fp32": "float32", "bf16": "bfloat16", "half": "float16", "fp16": "float16"}


def open_regular_file(path):
    """Opens a weight file for reading; refuses anything but a regular file (a FIFO or a device named by a shard
    index would block forever or never end). O_NONBLOCK keeps the open itself from waiting on a FIFO's writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file {path} does not exist") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"checkpoint file {path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


GIT_LFS_POINTER = b"version https://git-lfs"


def git_lfs_hint(start):
    """What to say of a weight file that starts with `start` when it is a Git LFS pointer (a repository cloned
    without git-lfs holds these small text files instead of the weights)."""
    if start.startswith(GIT_LFS_POINTER[: len(start)]) and len(start) >= 8:
        return " (it is a Git LFS pointer, not the weights: run `git lfs pull` in the clone, or download the repo)"
    return ""


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
        stored = STORED_DTYPES[self.dtype][1]
        if stored is None:
            raise ValueError(
                f"tensor {self.name!r} in {self.file} is stored as {self.dtype}, which nemotron_c does not compute "
                f"with (supported: {', '.join(SUPPORTED)})"
            )
        return stored

    def array(self, dtype):
        """The tensor as a NumPy array in `dtype` ('float32', 'bfloat16' or 'float16'; bfloat16 as uint16 bits).

        Without conversion the array is a view of the memory map, unless the bytes are misaligned. A tensor stored
        in another dtype torch converts (float64, integers, bool, complex, float8) is converted as torch's .to(dtype)
        converts it, which is what Transformers does with it; the others raise ValueError.
        """
        if STORED_DTYPES[self.dtype][1] is None:
            return self.converted(dtype)
        stored = self.storage
        raw = np.frombuffer(self.data, dtype=STORAGE_NUMPY[stored]).reshape(self.shape)
        if raw.ctypes.data % raw.itemsize:
            raw = raw.copy()
        return convert(raw, stored, dtype)

    def float32(self):
        """The values of a tensor stored in a dtype the core does not compute with, as torch's .to(float32)."""
        return self.converted("float32")

    def converted(self, dtype):
        """A tensor of a dtype the core does not compute with, in `dtype` (through float32, which rounds as torch
        rounds), converted in blocks of rows as convert() does."""
        numpy_type = CONVERTIBLE_NUMPY.get(self.dtype)
        if numpy_type is None:
            raise ValueError(
                f"tensor {self.name!r} in {self.file} is stored as {self.dtype}, which cannot be converted to a float "
                f"dtype (torch has no copy_ for it, so Transformers fails on it too)"
            )
        complex_parts = (2,) if self.dtype.startswith("C") else ()
        raw = np.frombuffer(self.data, dtype=numpy_type).reshape(*self.shape, *complex_parts)
        if complex_parts:
            warnings.warn(f"tensor {self.name!r} in {self.file} is complex ({self.dtype}): its imaginary part is "
                          f"dropped, as torch's .to() drops it (and warns) when Transformers loads it")
        if len(self.shape) == 0 or raw.size <= BLOCK_VALUES:
            return convert(self.decode(raw), "float32", dtype)
        out = np.empty(self.shape, dtype=STORAGE_NUMPY[dtype])
        for rows in row_blocks(self.shape):
            out[rows] = convert(self.decode(raw[rows]), "float32", dtype)
        return out

    def decode(self, raw):
        """float32 values of raw elements of the stored dtype (complex: the real part, which torch keeps)."""
        if self.dtype in FLOAT8_TABLES:
            return FLOAT8_TABLES[self.dtype][raw]
        if self.dtype.startswith("C"):
            return raw[..., 0].astype(np.float32)
        return raw.astype(np.float32)


def float32_to_bfloat16_bits(values):
    """Rounds float32 to bfloat16 to nearest even, as torch does; returns the bits as uint16."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


# Conversions and quantization at load run over blocks of rows of about this many values (~10 ms each): Python
# sees a Ctrl-C between two blocks, where one NumPy call over a whole embedding table would hold it for seconds,
# and the temporaries are a block's rather than the tensor's.
BLOCK_VALUES = 1 << 22


def row_blocks(shape):
    """Slices of the first axis of `shape`, each covering about BLOCK_VALUES values."""
    per_row = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, BLOCK_VALUES // per_row)
    return [slice(start, start + step) for start in range(0, shape[0], step)]


def convert(raw, stored, dtype):
    """raw, stored as `stored`, in `dtype` (a new array unless they are the same)."""
    if stored == dtype:
        return raw
    if raw.ndim == 0 or raw.size <= BLOCK_VALUES:
        return _convert_block(raw, stored, dtype)
    out = np.empty(raw.shape, dtype=STORAGE_NUMPY[dtype])
    for rows in row_blocks(raw.shape):
        out[rows] = _convert_block(raw[rows], stored, dtype)
    return out


def _convert_block(raw, stored, dtype):
    if stored == "bfloat16":
        as_float32 = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        as_float32 = raw.astype(np.float32)
    if dtype == "float32":
        return as_float32
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(as_float32)
    with np.errstate(over="ignore"):  # beyond float16's range is infinity, as torch gives it
        return as_float32.astype(np.float16)


