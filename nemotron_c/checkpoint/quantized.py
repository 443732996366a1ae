"""nemotron_c's int8 checkpoints: how a quantized weight is laid out in safetensors and how it is checked on reading.

A linear layer's weight `W` (N, K) quantized to int8 is two tensors beside each other:

    <name>.weight        I8  (N, K)       the values q (written in [-127, 127]; any int8 reads as q * scale)
    <name>.weight_scale  F32 (N, K / 64)  one scale per group of 64 consecutive values of a row

and W[n, k] = q[n, k] * scale[n, k // 64] in float32, exactly the core's NT_DTYPE_Q8. Every other tensor (embedding,
norms, biases, task heads, a tied lm_head) stays a float tensor. config.json says so:

    "quantization_config": {"format": "nemotron_c_int8", "bits": 8, "group_size": 64, "symmetric": true,
                            "scale_dtype": "float32"}

There is deliberately no `quant_method` key: Transformers skips a quantization_config whose quant_method it does not
know (with a warning) and would then load the int8 values as float weights, unscaled. Without the key, Transformers
refuses the folder with "The model's quantization config from the arguments has no `quant_method` attribute".

Reading checks every size against the tensors (never the config alone): each I8 tensor is a quantizable weight, 2-D,
with K a multiple of the group size, and has its F32 scale tensor of shape (N, K / group_size) with finite values; a
scale tensor belongs to an I8 weight. The values and scales stay views of the memory-mapped file.
"""
import numpy as np

from .. import _core
from .tensors import STORAGE_NUMPY, convert, row_blocks

QUANTIZED_DTYPE = "int8"
GROUP_SIZE = _core.DTYPE_INFO[QUANTIZED_DTYPE].block_size
SCALE_SUFFIX = "_scale"
FORMAT = "nemotron_c_int8"
# config.json's quantization_config of an int8 checkpoint, every key required
QUANTIZATION_CONFIG = {"format": FORMAT, "bits": 8, "group_size": GROUP_SIZE, "symmetric": True,
                       "scale_dtype": "float32"}


class QuantizedCheckpointError(_core.FormatError):
    """An int8 checkpoint's tensors do not fit its format (a ValueError)."""


class QuantizationConfigError(QuantizedCheckpointError):
    """config.json's quantization_config is not one nemotron_c reads."""


def check_quantization_config(config):
    """Refuses a quantization_config that is not nemotron_c's int8 one, saying which key differs."""
    if not isinstance(config, dict):
        raise QuantizationConfigError(f"config.json's quantization_config is {type(config).__name__}, not an object")
    if "quant_method" in config:
        raise QuantizationConfigError(
            f"config.json's quantization_config has quant_method {config['quant_method']!r}: nemotron_c reads float "
            f"weights (F32, BF16, F16) and its own int8 checkpoints (format {FORMAT!r}), not other quantizations")
    for key, value in QUANTIZATION_CONFIG.items():
        if key not in config:
            raise QuantizationConfigError(f"config.json's quantization_config lacks {key!r} (expected {value!r})")
        if config[key] != value or type(config[key]) is not type(value):
            raise QuantizationConfigError(
                f"config.json's quantization_config has {key} {config[key]!r}; nemotron_c's int8 checkpoints have "
                f"{value!r}" + (" (the core quantizes groups of that size)" if key == "group_size" else ""))
    extra = sorted(set(config) - set(QUANTIZATION_CONFIG))
    if extra:
        raise QuantizationConfigError(f"config.json's quantization_config has unknown key(s) {', '.join(extra)}")


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
    """An int8 weight read from a checkpoint: its values (StoredTensor I8) and scales (StoredTensor F32)."""

    __slots__ = ("name", "file", "shape", "values", "scales")
    dtype = "I8"
    storage = QUANTIZED_DTYPE

    def __init__(self, values, scales):
        self.name, self.file, self.shape = values.name, values.file, values.shape
        self.values, self.scales = values, scales

    def quantized(self):
        """The QuantizedWeight: values (N, K) int8, scales (N, K / GROUP_SIZE) float32, views of the map unless
        misaligned."""
        values = np.frombuffer(self.values.data, dtype=np.int8).reshape(self.values.shape)
        scales = np.frombuffer(self.scales.data, dtype=np.float32).reshape(self.scales.shape)
        if scales.ctypes.data % scales.itemsize:
            scales = scales.copy()
        return QuantizedWeight(values, scales, self.shape)

    def array(self, dtype):
        """The QuantizedWeight for "int8"; else the dequantized weight, q * scale in float32, then in `dtype`."""
        values, scales = weight = self.quantized()
        if dtype == QUANTIZED_DTYPE:
            return weight
        if dtype not in STORAGE_NUMPY:
            raise ValueError(f"tensor {self.name!r}: cannot give int8 weights as {dtype!r}")
        N, K = self.shape
        out = np.empty((N, K), dtype=STORAGE_NUMPY[dtype])
        for rows in row_blocks((N, K)):
            block = values[rows].reshape(-1, K // GROUP_SIZE, GROUP_SIZE).astype(np.float32) * scales[rows, :, None]
            out[rows] = convert(block.reshape(-1, K), "float32", dtype)
        return out


def gather_quantized(tensors, quantization_config, quantizable):
    """{name: StoredTensor} as read -> the same with each I8 weight and its scale tensor made one QuantizedTensor.

    quantization_config: config.json's (None when absent: I8 tensors are then left for their use to refuse).
    quantizable: the name endings of the weights that may be int8 (the model's linear layers)."""
    if quantization_config is None:
        return tensors
    check_quantization_config(quantization_config)
    out = {}
    for name, stored in tensors.items():
        where = f"tensor {name!r} in {stored.file}"
        if name.endswith(SCALE_SUFFIX):
            weight_name = name[: -len(SCALE_SUFFIX)]
            weight = tensors.get(weight_name)
            if weight is None or weight.dtype != "I8":
                raise QuantizedCheckpointError(f"{where} scales no int8 weight: {weight_name!r} is "
                                               f"{'absent' if weight is None else weight.dtype}")
            continue
        if stored.dtype != "I8":
            out[name] = stored
            continue
        if not name.endswith(quantizable):
            raise QuantizedCheckpointError(f"{where} is stored as I8, but only the linear layers' weights may be "
                                           f"int8 ({', '.join(quantizable)}); this one must be F32, BF16 or F16")
        if len(stored.shape) != 2 or stored.shape[1] % GROUP_SIZE:
            raise QuantizedCheckpointError(f"{where}: int8 weight of shape {list(stored.shape)} is not (N, K) with K "
                                           f"a multiple of the group size {GROUP_SIZE}")
        N, K = stored.shape
        scales = tensors.get(name + SCALE_SUFFIX)
        if scales is None:
            raise QuantizedCheckpointError(f"{where} is int8 but its scales {name + SCALE_SUFFIX!r} are missing")
        where = f"tensor {name + SCALE_SUFFIX!r} in {scales.file}"
        if scales.dtype != "F32":
            raise QuantizedCheckpointError(f"{where} is stored as {scales.dtype}; int8 scales are F32")
        if tuple(scales.shape) != (N, K // GROUP_SIZE):
            raise QuantizedCheckpointError(f"{where} has shape {list(scales.shape)}; the int8 weight "
                                           f"{list(stored.shape)} with groups of {GROUP_SIZE} needs "
                                           f"{[N, K // GROUP_SIZE]}")
        quantized = QuantizedTensor(stored, scales)
        if not np.isfinite(quantized.quantized()[1]).all():
            raise QuantizedCheckpointError(f"{where} holds a scale that is not finite")
        out[name] = quantized
    return out
