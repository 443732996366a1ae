"""pytorch_model.bin: a state dict written by torch.save, read without torch and without running its pickle.

torch.save writes a zip archive with one top folder `<archive>/` holding
    data.pkl     the pickled state dict; each tensor is the call
                 torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)
                 and each storage the persistent id ("storage", torch.<Type>Storage, key, location, numel);
                 dtypes without such a class (uint16, float8, ...) are _rebuild_tensor_v3(..., hooks, torch.<dtype>)
                 on ("storage", torch.storage.UntypedStorage, key, location, bytes)
    data/<key>   the storage's bytes, stored uncompressed (torch 2.x aligns them to 64 bytes)
    byteorder    "little" or "big" (absent in files from torch < 1.12, which were little-endian in practice); a big
                 one's tensors are byteswapped into copies, as torch.load swaps them
torch.save(..., _use_new_zipfile_serialization=False), torch < 1.6's format, is a sequence instead (read_legacy):
pickles of the magic number, the protocol version, sys_info, the state dict (its storages' persistent ids carry a
sixth item, None) and the sorted list of storage keys, then each storage as its element count (int64) and bytes.
The pickle's opcodes are checked before it is unpickled, and the unpickler resolves only the globals above,
to functions of ours that check sizes and return records; every other global is refused by name, so
nothing a hostile file names is ever imported or called. Storages are read in place from a memory map.
"""
import collections
import io
import mmap
import os
import pickle
import pickletools
import struct
import zipfile
from typing import NamedTuple

import numpy as np

from .. import _core
from .tensors import STORED_DTYPES, git_lfs_hint, open_regular_file

WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
# A state dict's pickle holds names and shapes only (about 100 bytes a tensor); 64 MB is far beyond any model.
MAX_PICKLE_BYTES = 64 * 1024 * 1024
# A weight has 1 or 2 dimensions; more than 64 is no tensor torch.save writes for a model, only a hostile size tuple.
MAX_DIMS = 64

# The storage classes torch.save names for tensors of these dtypes -> the dtype's safetensors name.
STORAGE_DTYPES = {
    "FloatStorage": "F32", "BFloat16Storage": "BF16", "HalfStorage": "F16", "DoubleStorage": "F64",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "ComplexDoubleStorage": "C128",
}
# torch's dtypes -> their safetensors name (or ours, tensors.TORCH_ONLY_ITEMSIZES), for _rebuild_tensor_v3, which
# names the dtype itself (torch.save uses it for the newer dtypes). Every dtype torch.save writes is read: as in
# Transformers, a tensor the model uses is converted to the model's dtype where torch's .to() converts it (and refused
# where torch cannot, as Transformers fails on it), and one it does not use is ignored.
TORCH_DTYPES = {
    "float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "complex64": "C64", "uint16": "U16",
    "uint32": "U32", "uint64": "U64", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "complex128": "C128", "complex32": "C32",
    "float4_e2m1fn_x2": "F4_E2M1FN_X2", "bits8": "BITS8", "bits16": "BITS16", "bits1x8": "BITS1X8",
    "bits2x4": "BITS2X4", "bits4x2": "BITS4X2",
    # torch.save refuses these (sub-byte placeholders), but torch.load reads a file naming them
    **{f"{kind}int{bits}": f"{kind.upper() or 'I'}{bits}" for kind in ("", "u") for bits in range(1, 8)},
}
UNTYPED_STORAGE = "UntypedStorage"
# Values torch.load(weights_only=True) also allows, which a checkpoint may carry beside the tensors (a shape, a
# device, a set of step numbers): built as plain records, and ignored as Transformers ignores unexpected keys.
# A tensor with attributes set on it (or a Parameter subclass) is _rebuild_from_type_v2(rebuild, torch.Tensor, args,
# attributes): the tensor is built, the attributes dropped.
EXTRA_GLOBALS = {("torch", "Size"), ("torch", "device"), ("collections", "Counter"), ("_codecs", "encode"),
                 ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch._tensor", "_rebuild_from_type_v2")}
EXTRA_GLOBALS |= {(module, name) for module in ("__builtin__", "builtins") for name in ("set", "complex", "bytearray")}
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch.storage", UNTYPED_STORAGE),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
} | {("torch", name) for name in STORAGE_DTYPES} | {("torch", name) for name in TORCH_DTYPES} | EXTRA_GLOBALS
# The opcodes of protocols 2 to 4 that build plain data, call (REDUCE) and set state (BUILD); not the ones
# that make objects without a global we check (INST, OBJ, NEWOBJ, EXT*), nor text persistent ids or buffers.
# (torch.load(weights_only=True), hence Transformers, refuses FRAME, so torch.save(..., pickle_protocol=4): such a
# file is read here, its tensors being what torch.load without weights_only gives.)
ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4
    FLOAT BINFLOAT UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 SHORT_BINBYTES BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS
    GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split())
RESAVE = "load it with torch and save it again with torch.save's defaults, or as safetensors"


TENSOR_CLASS = "torch.Tensor"  # what torch.Tensor and torch.nn.Parameter stand for in a pickle


class TorchCheckpointFormatError(_core.FormatError):
    """A pytorch_model.bin file or its index is malformed or holds something other than a state dict."""


class StorageType(NamedTuple):
    name: str  # e.g. "BFloat16Storage", or "UntypedStorage"


class TorchDtype(NamedTuple):
    name: str  # e.g. "uint16"


class Storage(NamedTuple):
    key: str
    dtype: str  # safetensors name, or None for an UntypedStorage (its tensors name their dtype)
    data: memoryview


class Tensor(NamedTuple):
    dtype: str  # safetensors name
    shape: tuple
    data: memoryview


def read_state_dict(path):
    """Maps a torch.save zip and returns {name: Tensor}, each Tensor's data a view of the map."""
    path = os.fspath(path)
    with open_regular_file(path) as f:
        magic = f.read(8)
        if magic[:1] == b"\x80":  # a pickle's PROTO opcode: the legacy format
            return only_tensors(path, read_legacy(path, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)))
        if magic[:2] != b"PK":
            raise TorchCheckpointFormatError(not_a_zip(path, magic))
        f.seek(0)
        try:
            infos = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, struct.error) as e:
            raise TorchCheckpointFormatError(f"{path}: not a readable zip archive ({e}): truncated or corrupt?") from None
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    entries = locate_entries(path, infos, memoryview(mapped))
    pickles = [n for n in entries if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise TorchCheckpointFormatError(f"{path}: expected one <archive>/data.pkl entry, found {pickles or 'none'}")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = entries.get(prefix + "byteorder")
    if byteorder is not None and bytes(byteorder) not in (b"little", b"big"):
        raise TorchCheckpointFormatError(f"{path}: byteorder entry is {bytes(byteorder[:16])!r}, not little or big")
    big_endian = byteorder is not None and bytes(byteorder) == b"big"
    data_pkl = entries[pickles[0]]
    if len(data_pkl) > MAX_PICKLE_BYTES:
        raise TorchCheckpointFormatError(f"{path}: data.pkl of {len(data_pkl)} bytes exceeds {MAX_PICKLE_BYTES}")
    data_pkl = bytes(data_pkl)
    check_opcodes(path, data_pkl)
    return only_tensors(path, StateDictUnpickler(path, data_pkl, entries, prefix, big_endian).load_state())


def only_tensors(path, state):
    """The tensors of an unpickled state dict; anything else than a tensor, a number or a string is refused."""
    if not isinstance(state, dict):
        raise TorchCheckpointFormatError(f"{path}: data.pkl holds a {type(state).__name__}, not a state dict")
    for name in state:
        if not isinstance(name, str):
            raise TorchCheckpointFormatError(f"{path}: the state dict has a key {name!r}, not a tensor name")
    # what is not a tensor (a training step, a version, optimizer settings) is no key of the model: Transformers
    # ignores it as an unexpected key. Without a tensor beside it, a dict is a wrapped state dict such as
    # {'state_dict': ...}, on which Transformers fails (an AttributeError).
    tensors = {name: value for name, value in state.items() if isinstance(value, Tensor)}
    wrapped = next((name for name, value in state.items() if isinstance(value, dict)), None)
    if not tensors and wrapped is not None:
        raise TorchCheckpointFormatError(f"{path}: entry {wrapped!r} of the state dict is a dict, not a tensor (a "
                                         f"nested dict such as {{'state_dict': ...}} is not a model's state dict)")
    return tensors


def not_a_zip(path, magic):
    return (f"{path}: not a torch.save zip archive nor a pickle of torch's legacy format (starts with {magic!r})"
            f"{git_lfs_hint(magic)}")


LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def read_legacy(path, mapped):
    """The state dict of a file in torch's legacy format (see the module docstring), its storages views of the map."""
    view = memoryview(mapped)
    offset, header = 0, []
    for _ in range(3):  # the magic number, the protocol version, sys_info: plain data, no globals
        pkl, offset = next_pickle(path, mapped, offset)
        header.append(StateDictUnpickler(path, pkl, {}, "").load_state())
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION or not isinstance(sys_info, dict):
        raise TorchCheckpointFormatError(f"{path}: a pickle, but not one torch.save wrote (magic number {magic!r}, "
                                         f"protocol version {protocol!r})")
    if sys_info.get("little_endian") is not True:  # torch.load reads such a file's bytes unswapped: wrong values
        raise TorchCheckpointFormatError(f"{path}: saved on a big-endian machine in the legacy format, which torch "
                                         f"itself misreads on a little-endian one: {RESAVE} on the big-endian machine")
    data_pkl, offset = next_pickle(path, mapped, offset)
    keys_pkl, offset = next_pickle(path, mapped, offset)
    keys = StateDictUnpickler(path, keys_pkl, {}, "").load_state()
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys) and len(set(keys)) == len(keys)):
        raise TorchCheckpointFormatError(f"{path}: the list of storage keys after the state dict is malformed")
    scout = StorageScout(path, data_pkl, {}, "")
    scout.load_state()
    entries = {}
    for key in keys:  # each storage's bytes, in the order of the list
        if key not in scout.storages:
            raise TorchCheckpointFormatError(f"{path}: storage {key!r} is listed but no tensor uses it")
        dtype, numel = scout.storages[key]
        if offset + 8 > len(view):
            raise TorchCheckpointFormatError(f"{path}: storage {key!r} starts past the end of the file: truncated?")
        (count,) = struct.unpack_from("<q", view, offset)
        if count != numel:
            raise TorchCheckpointFormatError(f"{path}: storage {key!r} holds {count} elements, its tensors' "
                                             f"reference says {numel}")
        end = offset + 8 + numel * (1 if dtype is None else STORED_DTYPES[dtype][0])
        if end > len(view):
            raise TorchCheckpointFormatError(f"{path}: storage {key!r} runs to byte {end}, past the end of the file "
                                             f"({len(view)} bytes): truncated?")
        entries[f"data/{key}"] = view[offset + 8 : end]
        offset = end
    return StateDictUnpickler(path, data_pkl, entries, "").load_state()


def next_pickle(path, mapped, offset):
    """(the bytes of the pickle starting at byte `offset` of the map, the offset after it), its opcodes checked."""
    end = None
    try:
        for opcode, _, pos in pickletools.genops(MappedReader(mapped, offset, offset + MAX_PICKLE_BYTES)):
            if opcode.name == "STOP":
                end = pos + 1
    except ValueError as e:
        raise TorchCheckpointFormatError(f"{path}: the pickle at byte {offset} is not valid ({e}): truncated or "
                                         f"corrupt?") from None
    if end is None:
        raise TorchCheckpointFormatError(f"{path}: the pickle at byte {offset} does not end within "
                                         f"{MAX_PICKLE_BYTES} bytes")
    pkl = mapped[offset:end]
    check_opcodes(path, pkl)
    return pkl, end


class MappedReader:
    """The file object pickletools.genops reads, over bytes start to end of a map: nothing is copied but what it
    reads, and a line (a GLOBAL's names) is looked for at C speed, never past end."""

    def __init__(self, mapped, start, end):
        self.mapped, self.position, self.end = mapped, start, min(end, len(mapped))

    def read(self, n=-1):
        return self.advance(self.end if n is None or n < 0 else min(self.end, self.position + n))

    def readline(self):
        newline = self.mapped.find(b"\n", self.position, self.end)
        return self.advance(self.end if newline < 0 else newline + 1)

    def advance(self, stop):
        data, self.position = self.mapped[self.position : stop], stop
        return data

    def tell(self):
        return self.position


def locate_entries(path, infos, view):
    """{name: memoryview of the entry's bytes}, each checked against the file and its local header."""
    entries, spans = {}, []
    for info in infos:
        name = info.filename
        if name in entries:
            raise TorchCheckpointFormatError(f"{path}: the zip archive holds two entries named {name!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise TorchCheckpointFormatError(
                f"{path}: entry {name!r} is compressed (zip method {info.compress_type}), which torch.save never "
                f"writes and nemotron_c does not inflate: {RESAVE}"
            )
        start = info.header_offset
        # zipfile reports a negative header_offset when the central directory's offsets do not add up
        if info.file_size != info.compress_size or not 0 <= start <= len(view) - 30:
            raise TorchCheckpointFormatError(f"{path}: entry {name!r} has inconsistent sizes or offset: truncated?")
        signature, name_len, extra_len = struct.unpack_from("<4s22xHH", view, start)
        local_name = bytes(view[start + 30 : start + 30 + name_len])
        names = {info.orig_filename.encode("utf-8", "replace"), info.orig_filename.encode("cp437", "replace")}
        if signature != b"PK\x03\x04" or local_name not in names:
            raise TorchCheckpointFormatError(f"{path}: entry {name!r} has no matching local header at {start}")
        begin = start + 30 + name_len + extra_len
        end = begin + info.file_size
        if end > len(view):
            raise TorchCheckpointFormatError(
                f"{path}: entry {name!r} runs to byte {end}, past the end of the file ({len(view)} bytes): truncated?"
            )
        entries[name] = view[begin:end]
        spans.append((start, end, name))
    spans.sort()
    for (_, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise TorchCheckpointFormatError(f"{path}: zip entries {n0!r} and {n1!r} overlap")
    return entries


def refused_global(path, module, name):
    return TorchCheckpointFormatError(
        f"{path}: data.pkl refers to {module}.{name}, which is not part of a state dict saved by torch.save; "
        f"refused without importing or calling it (nemotron_c reads tensors' storages, offsets and shapes only)"
    )


def check_opcodes(path, data_pkl):
    """Refuses, before anything is unpickled, opcodes a state dict never uses, globals by name, and memo indices
    beyond the pickle (CPython's unpickler would size its memo table to a huge index)."""
    count = 0
    try:
        for opcode, arg, pos in pickletools.genops(data_pkl):
            if opcode.name not in ALLOWED_OPCODES:
                raise TorchCheckpointFormatError(
                    f"{path}: data.pkl uses the pickle opcode {opcode.name} (byte {pos}), which a state dict "
                    f"saved by torch.save does not"
                )
            if opcode.name == "GLOBAL":
                module, _, name = arg.partition(" ")
                if (module, name) not in ALLOWED_GLOBALS:
                    raise refused_global(path, module, name)
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                raise TorchCheckpointFormatError(f"{path}: data.pkl stores memo index {arg} at byte {pos}")
            count += 1
    except ValueError as e:
        if isinstance(e, TorchCheckpointFormatError):
            raise
        raise TorchCheckpointFormatError(f"{path}: data.pkl is not a valid pickle ({e})") from None


class StateDictUnpickler(pickle.Unpickler):
    """Resolves the globals torch.save writes for a state dict to record builders; refuses all others."""

    def __init__(self, path, data_pkl, entries, prefix, big_endian=False):
        super().__init__(io.BytesIO(data_pkl))
        self.path, self.entries, self.prefix, self.big_endian = path, entries, prefix, big_endian
        self.storage_dtypes = {}

    def load_state(self):
        try:
            return self.load()
        except TorchCheckpointFormatError:
            raise
        except Exception as e:  # whatever else a malformed pickle makes the unpickler or our builders raise
            raise TorchCheckpointFormatError(f"{self.path}: data.pkl is not a state dict ({type(e).__name__}: {e})")

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise refused_global(self.path, module, name)
        plain = {"set": self.plain_set, "Size": self.plain_tuple, "device": self.plain_tuple,
                 "Counter": self.plain_dict, "encode": self.plain_bytes, "complex": self.plain_complex,
                 "bytearray": self.plain_bytes, "Tensor": TENSOR_CLASS, "Parameter": TENSOR_CLASS,
                 "_rebuild_from_type_v2": self.rebuild_from_type}
        if name in plain:
            return plain[name]
        if module == "torch":
            return StorageType(name) if name in STORAGE_DTYPES else TorchDtype(name)
        if module == "torch.storage":
            return StorageType(name)
        if name == "OrderedDict":
            return self.ordered_dict
        if name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if name == "_rebuild_tensor_v3":
            return self.rebuild_tensor_v3
        return self.rebuild_parameter

    # Bound methods, not module functions: a BUILD opcode cannot set attributes on them.
    def ordered_dict(self, items=()):
        return collections.OrderedDict(items)

    def plain_set(self, items=()):
        return frozenset(items)

    def plain_tuple(self, *args):
        return tuple(args)

    def plain_dict(self, items=()):
        return dict(items)

    def plain_complex(self, real=0.0, imag=0.0):
        return complex(real, imag)

    def plain_bytes(self, data=b"", encoding="latin1"):  # bytes in protocol 2: _codecs.encode(text, "latin1")
        if isinstance(data, str):
            return data.encode("latin1")
        if not isinstance(data, (bytes, bytearray, list, tuple)):  # bytearray(10**11) would ask for 100 GB
            raise TorchCheckpointFormatError(f"{self.path}: bytes made from a {type(data).__name__}")
        return bytes(data)

    def rebuild_from_type(self, rebuild, new_type, args, state):
        if rebuild not in (self.rebuild_tensor, self.rebuild_tensor_v3, self.rebuild_parameter) or \
                new_type is not TENSOR_CLASS or not isinstance(args, tuple):
            raise TorchCheckpointFormatError(f"{self.path}: a tensor rebuilt by {rebuild!r} as {new_type!r}")
        return rebuild(*args)

    def rebuild_parameter(self, data, requires_grad, backward_hooks, state=None):
        if not isinstance(data, Tensor):
            raise TorchCheckpointFormatError(f"{self.path}: a parameter wraps a {type(data).__name__}, not a tensor")
        return data

    def storage_reference(self, pid):
        """(key, dtype, element count) of a storage's persistent id (the legacy format's has a sixth item, the view
        of a storage, which torch >= 1.6 writes as None)."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchCheckpointFormatError(f"{self.path}: persistent id {pid!r} is not a storage reference")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, StorageType) or not isinstance(key, str) or not is_count(numel):
            raise TorchCheckpointFormatError(f"{self.path}: malformed storage reference {pid!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchCheckpointFormatError(f"{self.path}: storage {key!r} is a view of another (torch < 1.6), "
                                             f"which nemotron_c does not read: {RESAVE}")
        dtype = STORAGE_DTYPES.get(storage_type.name)  # None: untyped, numel counts bytes
        if storage_type.name != UNTYPED_STORAGE and dtype is None:
            raise TorchCheckpointFormatError(f"{self.path}: storage {key!r} is of the class {storage_type.name}")
        if self.storage_dtypes.setdefault(key, dtype) != dtype:
            raise TorchCheckpointFormatError(f"{self.path}: storage {key!r} is referred to as two dtypes")
        return key, dtype, numel

    def persistent_load(self, pid):
        key, dtype, numel = self.storage_reference(pid)
        data = self.entries.get(f"{self.prefix}data/{key}")
        if data is None:
            raise TorchCheckpointFormatError(f"{self.path}: storage {key!r} has no entry {self.prefix}data/{key}")
        itemsize = 1 if dtype is None else STORED_DTYPES[dtype][0]
        if numel * itemsize != len(data):
            raise TorchCheckpointFormatError(
                f"{self.path}: storage {key!r} of {numel} {dtype or 'byte'} elements needs "
                f"{numel * itemsize} bytes, its entry holds {len(data)}"
            )
        return Storage(key, dtype, data)

    def rebuild_tensor(self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
        if not isinstance(storage, Storage) or storage.dtype is None:
            raise TorchCheckpointFormatError(f"{self.path}: a tensor is built on a {type(storage).__name__}, "
                                             f"not a typed storage")
        return self.tensor_of(storage, storage.dtype, storage_offset, size, stride)

    def rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                          metadata=None):
        if not isinstance(storage, Storage) or storage.dtype is not None:
            raise TorchCheckpointFormatError(f"{self.path}: a tensor naming its dtype is built on a "
                                             f"{type(storage).__name__}, not an untyped storage")
        if not isinstance(dtype, TorchDtype):
            raise TorchCheckpointFormatError(f"{self.path}: a tensor's dtype is a {type(dtype).__name__}")
        return self.tensor_of(storage, TORCH_DTYPES[dtype.name], storage_offset, size, stride)

    def tensor_of(self, storage, dtype, storage_offset, size, stride):
        """The Tensor of `size` (contiguous) at element `storage_offset` of `storage`, its elements of `dtype`."""
        where = f"{self.path}: a tensor of storage {storage.key!r}"
        # Bounded before anything walks the tuples: N dimensions of 2**62 would make the products below cost
        # time quadratic in N (big integers) from a pickle of a few bytes per dimension.
        for dims in (size, stride):
            if isinstance(dims, tuple) and len(dims) > MAX_DIMS:
                raise TorchCheckpointFormatError(f"{where}: {len(dims)} dimensions, more than {MAX_DIMS}")
        if not (is_count(storage_offset) and isinstance(size, tuple) and all(map(is_count, size))
                and isinstance(stride, tuple) and len(stride) == len(size) and all(map(is_count, stride))):
            raise TorchCheckpointFormatError(
                f"{where}: offset {storage_offset!r}, size {size!r}, stride {stride!r} are not non-negative integers"
            )
        itemsize = STORED_DTYPES[dtype][0]
        # The element count is checked against the storage as it grows, so it never outgrows the file's numbers.
        available = len(storage.data) // itemsize
        count = 0 if 0 in size else 1
        for d in size:
            count *= d
            if storage_offset + count > available:
                raise TorchCheckpointFormatError(
                    f"{where}: size {size} from element {storage_offset} would fall outside the storage's "
                    f"{available} elements"
                )
        contiguous = count == 0 or all(d == 1 or s == e for d, s, e in zip(size, stride, contiguous_strides(size)))
        if not contiguous:
            tensor = self.strided_copy(where, storage, dtype, storage_offset, size, stride, available)
        else:
            begin, end = storage_offset * itemsize, (storage_offset + count) * itemsize
            tensor = Tensor(dtype, size, storage.data[begin:end])
        return byteswapped(tensor) if self.big_endian else tensor


    def strided_copy(self, where, storage, dtype, storage_offset, size, stride, available):
        """A transposed or sliced view, which torch.save writes with its whole storage, copied into a contiguous
        tensor, as Transformers' load copies it (its size was checked against the storage: never a bigger copy)."""
        last = storage_offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= available:
            raise TorchCheckpointFormatError(f"{where}: size {size} with stride {stride} from element {storage_offset} "
                                             f"reaches element {last}, outside the storage's {available}")
        itemsize = STORED_DTYPES[dtype][0]
        elements = np.frombuffer(storage.data[:available * itemsize], dtype=np.dtype(f"V{itemsize}"))[storage_offset:]
        view = np.lib.stride_tricks.as_strided(elements, shape=size, strides=[s * itemsize for s in stride],
                                               writeable=False)
        return Tensor(dtype, size, memoryview(np.ascontiguousarray(view).view(np.uint8).reshape(-1)))


def byteswapped(tensor):
    """A tensor of a file saved on a big-endian machine, its elements (a complex one's two parts) swapped into a
    copy, as torch.load swaps them."""
    unit = STORED_DTYPES[tensor.dtype][0] // (2 if tensor.dtype.startswith("C") else 1)
    if unit == 1:
        return tensor
    swapped = np.frombuffer(tensor.data, dtype=f">u{unit}").astype(f"<u{unit}")
    return Tensor(tensor.dtype, tensor.shape, memoryview(swapped.view(np.uint8)))


def contiguous_strides(size):
    strides, step = [], 1
    for d in reversed(size):
        strides.append(step)
        step *= d
    return reversed(strides)


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class StorageScout(StateDictUnpickler):
    """A first pass over a legacy state dict's pickle: {key: (dtype, element count)} of the storages it names, whose
    bytes follow the pickle. The tensors are built in the second pass, on the storages' bytes."""

    def __init__(self, *args):
        super().__init__(*args)
        self.storages = {}

    def persistent_load(self, pid):
        key, dtype, numel = self.storage_reference(pid)
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise TorchCheckpointFormatError(f"{self.path}: storage {key!r} is referred to with two sizes")

    def rebuild_tensor(self, *args, **kwargs):
        return None

    rebuild_tensor_v3 = rebuild_parameter = rebuild_tensor
