"""nemotron_c's int8 and int4 checkpoints: how a quantized weight is laid out in safetensors and how it is checked on
reading.

A linear layer's weight `W` (N, K) quantized is two tensors beside each other, its values and its scales:

    int8  <name>.weight        I8  (N, K)       the values q (written in [-127, 127]; any int8 reads as q * scale)
          <name>.weight_scale  F32 (N, K / 64)  one scale per group of 64 consecutive values of a row
    int4  <name>.weight        U8  (N, K / 2)   two values a byte, each stored as q + 8 (0..15)
          <name>.weight_scale  F32 (N, K / 32)  one scale per group of 32 consecutive values of a row

and W[n, k] = q[n, k] * scale[n, k // group] in float32, exactly the core's NT_DTYPE_Q8 and NT_DTYPE_Q4: the bytes
are the core's in-memory layout, so that loading maps them. In int4 a group of 32 is 16 bytes, byte j holding element
j of the group in its low nibble and element j + 16 in its high one (NT_Q4_GROUP in csrc/nemotron.h). Every other
tensor (embedding, norms, biases, task heads, a tied lm_head) stays a float tensor. config.json says which format:

    "quantization_config": {"format": "nemotron_c_int8", "bits": 8, "group_size": 64, "symmetric": true,
                            "scale_dtype": "float32"}
    "quantization_config": {"format": "nemotron_c_int4", "bits": 4, "group_size": 32, "symmetric": true,
                            "scale_dtype": "float32"}

There is deliberately no `quant_method` key: Transformers skips a quantization_config whose quant_method it does not
know (with a warning) and would then load the stored values as float weights, unscaled. Without the key, Transformers
refuses the folder with "The model's quantization config from the arguments has no `quant_method` attribute".

Reading checks every size against the tensors (never the config alone): each tensor of the format's values dtype is a
quantizable weight, 2-D, whose rows hold whole groups, and has its F32 scale tensor of shape (N, K / group_size) with
finite values; a scale tensor belongs to such a weight; the other format's values dtype is refused. The values and
scales stay views of the memory-mapped file.
"""
import numpy as np

from .. import _core
from .tensors import STORAGE_NUMPY, convert, row_blocks

SCALE_SUFFIX = "_scale"


def int8_unpack(grouped):
    return grouped


def int4_unpack(grouped):
    """(rows, groups, 16) bytes -> (rows, groups, 32) int8 values: byte j holds element j in its low nibble and
    element j + 16 in its high one, each as q + 8."""
    return np.concatenate([grouped & 15, grouped >> 4], axis=-1).astype(np.int8) - 8


class QuantizedFormat:
    """A quantized dtype as a checkpoint stores it: the safetensors dtype and NumPy type of its values, its group
    and the bytes of a group's values (the core's dtype table), its quantization_config."""

    def __init__(self, dtype, stored, numpy_type, layout, unpack):
        info = _core.DTYPE_INFO[dtype]
        self.dtype, self.stored, self.numpy_type = dtype, stored, numpy_type
        self.layout = layout  # the values' shape, for messages
        self.unpack = unpack  # (rows, groups, group_bytes) stored -> (rows, groups, group_size) integer values
        self.group_size, self.group_bytes = info.block_size, info.itemsize
        # config.json's quantization_config of such a checkpoint, every key required
        self.quantization_config = {"format": f"nemotron_c_{dtype}", "bits": 8 * info.itemsize // info.block_size,
                                    "group_size": info.block_size, "symmetric": True, "scale_dtype": "float32"}

    def stored_shape(self, shape):
        """The shape of a (N, K) matrix's stored values."""
        N, K = shape
        return N, K // self.group_size * self.group_bytes

    def dequantize(self, values, scales):
        """q * scale in float32, (rows, K), from stored values (rows, K * bits / 8) and scales (rows, K / group)."""
        rows, groups = scales.shape
        q = self.unpack(values.reshape(rows, groups, self.group_bytes))
        return (q.astype(np.float32) * scales[:, :, None]).reshape(rows, groups * self.group_size)


FORMATS = {f.dtype: f for f in (QuantizedFormat("int8", "I8", np.int8, "(N, K)", int8_unpack),
                                QuantizedFormat("int4", "U8", np.uint8, "(N, K / 2), two values a byte",
                                                int4_unpack))}
assert set(FORMATS) == {name for name, info in _core.DTYPE_INFO.items() if info.scaled}
QUANTIZATION_CONFIGS = {dtype: f.quantization_config for dtype, f in FORMATS.items()}
FORMAT_NAMES = " or ".join(repr(f.quantization_config["format"]) for f in FORMATS.values())
VALUES_DTYPES = {f.stored: f for f in FORMATS.values()}  # safetensors dtype of the values -> their format


class QuantizedCheckpointError(_core.FormatError):
    """A quantized checkpoint's tensors do not fit its format (a ValueError)."""


class QuantizationConfigError(QuantizedCheckpointError):
    """config.json's quantization_config is not one nemotron_c reads."""


def check_quantization_config(config):
    """The QuantizedFormat of config.json's quantization_config; refuses one that is not nemotron_c's int8 or int4
    one, saying which key differs."""
    if not isinstance(config, dict):
        raise QuantizationConfigError(f"config.json's quantization_config is {type(config).__name__}, not an object")
    # as Transformers' AutoQuantizationConfig.from_dict: load_in_8bit or load_in_4bit (older bitsandbytes configs
    # have no quant_method) says bitsandbytes whatever quant_method says
    bits = "4bit" if config.get("load_in_4bit") else "8bit" if config.get("load_in_8bit") else None
    if bits is not None or "quant_method" in config:
        method = f"bitsandbytes_{bits}" if bits is not None else config["quant_method"]
        raise QuantizationConfigError(
            f"config.json's quantization_config has quant_method {method!r}: nemotron_c reads float "
            f"weights (F32, BF16, F16) and its own quantized checkpoints (format {FORMAT_NAMES}), not other "
            "quantizations")
    if "format" not in config:
        raise QuantizationConfigError(f"config.json's quantization_config lacks 'format' (expected {FORMAT_NAMES})")
    fmt = next((f for f in FORMATS.values() if f.quantization_config["format"] == config["format"]), None)
    if fmt is None:
        raise QuantizationConfigError(f"config.json's quantization_config has format {config['format']!r}; "
                                      f"nemotron_c's quantized checkpoints have {FORMAT_NAMES}")
    for key, value in fmt.quantization_config.items():
        if key not in config:
            raise QuantizationConfigError(f"config.json's quantization_config lacks {key!r} (expected {value!r})")
        if config[key] != value or type(config[key]) is not type(value):
            raise QuantizationConfigError(
                f"config.json's quantization_config has {key} {config[key]!r}; nemotron_c's {fmt.dtype} checkpoints "
                f"have {value!r}" + (" (the core quantizes groups of that size)" if key == "group_size" else ""))
    extra = sorted(set(config) - set(fmt.quantization_config))
    if extra:
        raise QuantizationConfigError(f"config.json's quantization_config has unknown key(s) {', '.join(extra)}")
    return fmt


class QuantizedWeight(tuple):
    """(values, scales) of a quantized matrix: values (N, K) int8, or (N, K / 2) uint8 for int4 (two per byte, see
    NT_Q4_GROUP in csrc/nemotron.h); scales (N, K / block) float32. shape, size and nbytes are those of the
    matrix it stands for and of the bytes it holds, as a NumPy array's."""

    def __new__(cls, values, scales, shape):
        weight = super().__new__(cls, (values, scales))
        weight.shape = tuple(shape)
        return weight

    values = property(lambda self: self[0])
    scales = property(lambda self: self[1])
    size = property(lambda self: int(np.prod(self.shape)))
    nbytes = property(lambda self: self[0].nbytes + self[1].nbytes)


class QuantizedTensor:
    """A quantized weight read from a checkpoint: its values and scales (StoredTensor), its format, and the shape
    (N, K) of the matrix they stand for."""

    __slots__ = ("name", "file", "shape", "values", "scales", "format")

    def __init__(self, values, scales, fmt, shape):
        self.name, self.file, self.shape = values.name, values.file, shape
        self.values, self.scales, self.format = values, scales, fmt

    dtype = property(lambda self: self.format.stored)
    storage = property(lambda self: self.format.dtype)

    def quantized(self):
        """The QuantizedWeight: values as stored, scales (N, K / group) float32, views of the map unless
        misaligned."""
        values = np.frombuffer(self.values.data, dtype=self.format.numpy_type).reshape(self.values.shape)
        scales = np.frombuffer(self.scales.data, dtype=np.float32).reshape(self.scales.shape)
        if scales.ctypes.data % scales.itemsize:
            scales = scales.copy()
        return QuantizedWeight(values, scales, self.shape)

    def array(self, dtype):
        """The QuantizedWeight for its own dtype; else the dequantized weight, q * scale in float32, then in
        `dtype`."""
        values, scales = weight = self.quantized()
        if dtype == self.storage:
            return weight
        if dtype not in STORAGE_NUMPY:
            raise ValueError(f"tensor {self.name!r}: cannot give {self.storage} weights as {dtype!r}")
        out = np.empty(self.shape, dtype=STORAGE_NUMPY[dtype])
        for rows in row_blocks(self.shape):
            out[rows] = convert(self.format.dequantize(values[rows], scales[rows]), "float32", dtype)
        return out


def gather_quantized(tensors, quantization_config, quantizable):
    """{name: StoredTensor} as read -> the same with each quantized weight and its scale tensor made one
    QuantizedTensor.

    quantization_config: config.json's (None when absent: the values of a quantized weight are then refused).
    quantizable: the name endings of the weights that may be quantized (the model's linear layers)."""
    if quantization_config is None:
        for name, stored in tensors.items():
            if stored.dtype in VALUES_DTYPES and name.endswith(quantizable):
                fmt = VALUES_DTYPES[stored.dtype]
                raise QuantizedCheckpointError(
                    f"tensor {name!r} in {stored.file} is stored as {stored.dtype}, which nemotron_c reads only as the "
                    f"values of its {fmt.dtype} checkpoints, and config.json has no quantization_config saying the "
                    f"checkpoint is one ({fmt.quantization_config['format']!r}): Transformers would load its "
                    f"integers as the weights' values (other dtypes are converted to the model's dtype, as "
                    f"Transformers does)")
        return tensors
    fmt = check_quantization_config(quantization_config)
    out = {}
    for name, stored in tensors.items():
        where = f"tensor {name!r} in {stored.file}"
        if name.endswith(SCALE_SUFFIX):
            weight_name = name[: -len(SCALE_SUFFIX)]
            weight = tensors.get(weight_name)
            if weight is not None and weight.dtype != fmt.stored and weight.dtype in VALUES_DTYPES:
                raise other_format(weight, fmt)
            if weight is None or weight.dtype != fmt.stored:
                raise QuantizedCheckpointError(f"{where} scales no {fmt.dtype} weight: {weight_name!r} is "
                                               f"{'absent' if weight is None else weight.dtype}")
            continue
        if stored.dtype != fmt.stored:
            if stored.dtype in VALUES_DTYPES:
                raise other_format(stored, fmt)
            out[name] = stored
            continue
        if not name.endswith(quantizable):
            raise QuantizedCheckpointError(f"{where} is stored as {fmt.stored}, but only the linear layers' weights "
                                           f"may be {fmt.dtype} ({', '.join(quantizable)}); this one must be F32, BF16 "
                                           "or F16")
        if len(stored.shape) != 2 or stored.shape[1] % fmt.group_bytes:
            raise QuantizedCheckpointError(f"{where}: {fmt.dtype} weight of shape {list(stored.shape)} is not "
                                           f"{fmt.layout} with K a multiple of the group size {fmt.group_size}")
        N, K = stored.shape[0], stored.shape[1] // fmt.group_bytes * fmt.group_size
        scales = tensors.get(name + SCALE_SUFFIX)
        if scales is None:
            raise QuantizedCheckpointError(f"{where} is {fmt.dtype} but its scales {name + SCALE_SUFFIX!r} are "
                                           "missing")
        where = f"tensor {name + SCALE_SUFFIX!r} in {scales.file}"
        if scales.dtype != "F32":
            raise QuantizedCheckpointError(f"{where} is stored as {scales.dtype}; {fmt.dtype} scales are F32")
        if tuple(scales.shape) != (N, K // fmt.group_size):
            raise QuantizedCheckpointError(f"{where} has shape {list(scales.shape)}; the {fmt.dtype} weight "
                                           f"{[N, K]} with groups of {fmt.group_size} needs "
                                           f"{[N, K // fmt.group_size]}")
        quantized = QuantizedTensor(stored, scales, fmt, (N, K))
        if not np.isfinite(quantized.quantized().scales).all():
            raise QuantizedCheckpointError(f"{where} holds a scale that is not finite")
        out[name] = quantized
    return out


def other_format(stored, fmt):
    return QuantizedCheckpointError(
        f"tensor {stored.name!r} in {stored.file} is stored as {stored.dtype}, the values of "
        f"{VALUES_DTYPES[stored.dtype].dtype} weights, but config.json's quantization_config is {fmt.dtype}'s "
        f"({fmt.quantization_config['format']!r}), whose weights are {fmt.stored}")
