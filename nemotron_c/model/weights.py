"""The weight table: which checkpoint tensors the core takes, in which order and dtype, and the config it runs.

Transformers' state-dict names -> the core's tensor list (nt_global_tensor, then nt_layer_tensor for each layer),
the dtype each is handed over in, the activation codes; the task heads read their weights through here too.
"""
import warnings

import numpy as np

from .. import _core
from ..checkpoint.quantized import FORMATS, QuantizedCheckpointError, QuantizedWeight, gather_quantized
from ..checkpoint.reading import read_checkpoint
from ..checkpoint.tensors import DTYPE_ALIASES, STORAGE_NUMPY, STORED_DTYPES, convert, row_blocks
from .inputs import to_numpy
from .rope import rope_parameters

# Transformers' hidden_act names -> the core's activation names
ACTIVATIONS = {
    "relu2": "relu2",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "gelu_10": "gelu_clipped",
    "quick_gelu": "quick_gelu",
    "sigmoid": "sigmoid",
    "leaky_relu": "leaky_relu",
    "linear": "identity",
    "mish": "mish",
    "relu6": "relu6",
    "tanh": "tanh",
    "hardswish": "hardswish",
    "laplace": "laplace",
    "sqrtsoftplus": "sqrt_softplus",
}

# Transformers' activation modules as repr(model) prints them (ACT2FN)
ACTIVATION_REPRS = {
    "relu2": "ReLUSquaredActivation()", "relu": "ReLU()", "silu": "SiLUActivation()", "swish": "SiLU()",
    "gelu": "GELUActivation()", "gelu_python": "GELUActivation()", "gelu_new": "NewGELUActivation()",
    "gelu_pytorch_tanh": "GELUTanh()", "gelu_python_tanh": "GELUTanh()", "gelu_fast": "FastGELUActivation()",
    "gelu_accurate": "AccurateGELUActivation()", "gelu_10": "ClippedGELUActivation()",
    "quick_gelu": "QuickGELUActivation()", "sigmoid": "Sigmoid()", "tanh": "Tanh()", "mish": "MishActivation()",
    "linear": "LinearActivation()", "relu6": "ReLU6()", "leaky_relu": "LeakyReLU(negative_slope=0.01)",
    "hardswish": "Hardswish()", "laplace": "LaplaceActivation()", "sqrtsoftplus": "SqrtSoftplusActivation()",
}
assert set(ACTIVATION_REPRS) == set(ACTIVATIONS)

# Per-layer tensor names in the order of the core's nt_layer_tensor enum.
LAYER_TENSOR_NAMES = (
    "input_layernorm.weight", "input_layernorm.bias",
    "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.o_proj.weight", "self_attn.o_proj.bias",
    "post_attention_layernorm.weight", "post_attention_layernorm.bias",
    "mlp.up_proj.weight", "mlp.up_proj.bias",
    "mlp.down_proj.weight", "mlp.down_proj.bias",
)
assert len(LAYER_TENSOR_NAMES) == _core.LAYER_TENSOR_COUNT
# The same names in the order of Transformers' state_dict (module registration order), which decides the shards.
STATE_DICT_LAYER_ORDER = LAYER_TENSOR_NAMES[2:10] + LAYER_TENSOR_NAMES[12:16] + LAYER_TENSOR_NAMES[0:2] + \
    LAYER_TENSOR_NAMES[10:12]
BACKBONE_PREFIXES = ("model.", "transformer.", "")



def resolve_dtype(dtype):
    """The core's name of a weight dtype ('float32', 'bfloat16', 'float16', or 'int8' / 'int4': quantized at load
    unless stored so) from a name, a NumPy dtype or a torch dtype; None keeps the stored one."""
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return None
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__ == "torch" or str(dtype).startswith("torch."):
        name = str(dtype)
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype must be a name, a NumPy dtype or a torch dtype, not {dtype!r}") from None
    name = name.removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in STORAGE_NUMPY and name not in QUANTIZED_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: nemotron_c stores weights as "
                         f"{', '.join([*STORAGE_NUMPY, *QUANTIZED_DTYPES])}")
    return name


# Dtypes with one float32 scale per block of each row (the core's table): made at load time from a float checkpoint,
# or read as saved (checkpoint/quantized.py).
QUANTIZED_DTYPES = tuple(name for name, info in _core.DTYPE_INFO.items() if info.scaled)
# What a quantized dtype quantizes: the linear layers' matrices and an untied lm_head. The embedding table, the
# norms and the biases stay as stored (as bitsandbytes keeps them in Transformers); heads stay float32.
QUANTIZED_TENSORS = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                     "self_attn.o_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "lm_head.weight")


def read_weights(directory, config, variant=None, use_safetensors=None):
    """The tensors of a checkpoint directory (its weight files of that variant, see reading.weights_files, or the
    file config.transformers_weights names), each quantized weight paired with its scales when config.json's
    quantization_config says the checkpoint is one of nemotron_c's int8 or int4 ones (checkpoint/quantized.py)."""
    tensors = read_checkpoint(directory, variant, use_safetensors, getattr(config, "transformers_weights", None))
    return gather_quantized(tensors, getattr(config, "quantization_config", None), QUANTIZED_TENSORS)


def find_backbone_prefix(tensors, preferred):
    for prefix in (preferred + ".",) + BACKBONE_PREFIXES:
        if prefix + "embed_tokens.weight" in tensors:
            return prefix
    raise ValueError(
        "checkpoint lacks the embedding tensor (looked for 'model.embed_tokens.weight', "
        "'transformer.embed_tokens.weight' and 'embed_tokens.weight')"
    )


# safetensors names of the floating dtypes Transformers' dtype="auto" may pick from a checkpoint -> torch's names
FLOATING_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def auto_dtype(config, tensors):
    """The model's dtype under dtype=None or "auto" (Transformers' default, see its _get_dtype): config.dtype, else
    the dtype of the first floating tensor (float8 aside) of the first weight file, else of its first tensor."""
    dtype = getattr(config, "dtype", None)
    if dtype is not None:
        return DTYPE_ALIASES.get(str(dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))
    stored = [t for t in tensors.values() if isinstance(getattr(t, "file", None), str)]
    if not stored:
        return "float32"
    first = min(t.file for t in stored)  # Transformers reads the first shard of an index's sorted file names
    in_first = [t for t in stored if t.file == first]
    if first.endswith(".safetensors"):  # safe_open lists a file's tensors sorted by name; torch.load as saved
        in_first.sort(key=lambda t: t.name)
    chosen = next((t for t in in_first if t.dtype in FLOATING_DTYPES), in_first[0])
    return FLOATING_DTYPES.get(chosen.dtype, chosen.dtype)


class InModelDtype:
    """A stored tensor as a model loaded with dtype=None holds it: in the model's dtype (auto_dtype), to which
    Transformers casts every tensor it loads. array(dtype) converts the stored values directly, as torch's .to()."""

    __slots__ = ("tensor", "model_dtype")

    def __init__(self, tensor, model_dtype):
        self.tensor, self.model_dtype = tensor, model_dtype

    name = property(lambda self: self.tensor.name)
    file = property(lambda self: self.tensor.file)
    dtype = property(lambda self: self.tensor.dtype)
    shape = property(lambda self: self.tensor.shape)

    @property
    def storage(self):
        if self.model_dtype not in STORAGE_NUMPY:
            raise ValueError(
                f"the model's dtype is {self.model_dtype} (config.dtype, or when config.json names none the dtype of "
                f"the checkpoint's first floating tensor: Transformers' dtype='auto'), which nemotron_c does not "
                f"compute with: pass dtype='float32', 'bfloat16' or 'float16' (tensor {self.name!r} is stored as "
                f"{self.dtype})"
            )
        return self.model_dtype

    def array(self, dtype):
        return self.tensor.array(dtype)


def in_model_dtype(tensor, model_dtype):
    """The tensor, or an InModelDtype of it when stored in another dtype than the model's (a quantized weight, an
    array made without a checkpoint and an absent tensor stay as they are)."""
    if tensor is None or not isinstance(getattr(tensor, "dtype", None), str) or hasattr(tensor, "format"):
        return tensor
    if STORED_DTYPES[tensor.dtype][1] == model_dtype:
        return tensor
    return InModelDtype(tensor, model_dtype)


def resolve_storage(stored, dtype):
    """The dtype a weight is handed to the core in: the requested one, else the model's (select_tensors; arrays:
    float32)."""
    return dtype or getattr(stored, "storage", "float32")


def activation_code(name):
    if name not in ACTIVATIONS:
        raise NotImplementedError(
            f"hidden_act {name!r} is not supported (supported: {', '.join(sorted(ACTIVATIONS))})"
        )
    return _core.ACTIVATIONS[ACTIVATIONS[name]]


def layer_shapes(config):
    """{per-layer tensor name: its shape} as the config implies."""
    H, I = config.hidden_size, config.intermediate_size
    QD = config.num_attention_heads * config.head_dim
    KVD = config.num_key_value_heads * config.head_dim
    return {
        "input_layernorm.weight": (H,), "input_layernorm.bias": (H,),
        "self_attn.q_proj.weight": (QD, H), "self_attn.q_proj.bias": (QD,),
        "self_attn.k_proj.weight": (KVD, H), "self_attn.k_proj.bias": (KVD,),
        "self_attn.v_proj.weight": (KVD, H), "self_attn.v_proj.bias": (KVD,),
        "self_attn.o_proj.weight": (H, QD), "self_attn.o_proj.bias": (H,),
        "post_attention_layernorm.weight": (H,), "post_attention_layernorm.bias": (H,),
        "mlp.up_proj.weight": (I, H), "mlp.up_proj.bias": (I,),
        "mlp.down_proj.weight": (H, I), "mlp.down_proj.bias": (H,),
    }


def select_tensors(config, tensors, base_model_prefix, has_lm_head):
    """[(name, StoredTensor or array, or None when absent)] in the core's order, names without the backbone prefix;
    a required tensor missing or of the wrong shape raises ValueError naming it. A tensor stored in another dtype
    than the model's (auto_dtype) comes as an InModelDtype, which from_pretrained(dtype=None) converts."""
    if has_lm_head and config.tie_word_embeddings and "lm_head.weight" in tensors:
        tensors = untie_if_different(config, tensors, base_model_prefix)
    prefix = find_backbone_prefix(tensors, base_model_prefix)
    # a checkpoint may mix prefixed and bare names: as Transformers maps each name, a backbone tensor is also looked
    # for under the class's prefix and bare
    others = [p for p in (base_model_prefix + ".", "") if p != prefix]

    def tensor(full, shape, backbone=True):
        stored = tensors.get(full)
        for other in others if stored is None and backbone else ():
            stored = tensors.get(other + full[len(prefix):])
            if stored is not None:
                break
        if stored is None:
            raise ValueError(f"checkpoint lacks tensor {full!r}")
        if tuple(stored.shape) == shape:
            return stored
        message = f"tensor {full!r} has shape {tuple(stored.shape)}, the config implies {shape}"
        if hasattr(stored, "format"):  # a quantized weight: its shape is read from its values' and the group's
            raise QuantizedCheckpointError(f"{message} (its {stored.storage} values are stored as {stored.dtype} "
                                           f"{tuple(stored.values.shape)}, {stored.format.layout})")
        raise ValueError(message)

    H, V = config.hidden_size, config.vocab_size
    optional = {
        "self_attn.q_proj.bias": config.attention_bias, "self_attn.k_proj.bias": config.attention_bias,
        "self_attn.v_proj.bias": config.attention_bias, "self_attn.o_proj.bias": config.attention_bias,
        "mlp.up_proj.bias": config.mlp_bias, "mlp.down_proj.bias": config.mlp_bias,
    }
    selected = [(name, tensor(prefix + name, shape)) for name, shape in
                (("embed_tokens.weight", (V, H)), ("norm.weight", (H,)), ("norm.bias", (H,)))]
    if has_lm_head and not config.tie_word_embeddings:
        if "lm_head.weight" not in tensors:
            raise ValueError("checkpoint lacks tensor 'lm_head.weight' (and tie_word_embeddings is false)")
        selected.append(("lm_head.weight", tensor("lm_head.weight", (V, H), backbone=False)))
    else:
        selected.append(("lm_head.weight", None))
    layers = prefix + "layers."
    indices = {name[len(layers):].split(".", 1)[0] for name in tensors if name.startswith(layers)}
    extra = sorted((i for i in indices if not i.isdigit() or int(i) >= config.num_hidden_layers), key=lambda i: (len(i), i))
    if extra:
        # Transformers loads such a checkpoint and warns that the weights are unused; a pruned model is legitimate
        warnings.warn(f"the checkpoint holds layers {', '.join(extra)} beyond config.num_hidden_layers = "
                      f"{config.num_hidden_layers}: their weights are not used")
    shapes = layer_shapes(config)
    for layer in range(config.num_hidden_layers):
        for name in LAYER_TENSOR_NAMES:
            full = f"layers.{layer}.{name}"
            use = optional.get(name, True)
            selected.append((full, tensor(prefix + full, shapes[name]) if use else None))
    model_dtype = auto_dtype(config, tensors)
    return [(name, in_model_dtype(t, model_dtype)) for name, t in selected]


def untie_if_different(config, tensors, base_model_prefix):
    """For a config that ties the lm_head to the embedding, a checkpoint holding the head as well, as Transformers'
    tie_weights treats it: a head alone becomes the embedding too (of the backbone whose final norm is stored);
    a head of other values than the embedding's stays the head, and config.tie_word_embeddings turns false
    (Transformers warns, keeps the flag and unties). Returns the tensors, with the embedding added when missing."""
    head = tensors["lm_head.weight"]
    prefixes = (base_model_prefix + ".",) + BACKBONE_PREFIXES
    embedding = next((tensors[p + "embed_tokens.weight"] for p in prefixes if p + "embed_tokens.weight" in tensors),
                     None)
    if embedding is None:
        prefix = next((p for p in prefixes if p + "norm.weight" in tensors), None)
        return tensors if prefix is None else {**tensors, prefix + "embed_tokens.weight": head}
    if not same_values(embedding, head):
        warnings.warn("config.tie_word_embeddings is true, but the checkpoint holds an lm_head.weight of other values "
                      "than the embedding's: the head is used as stored, untied, and the config says so from now on")
        config.tie_word_embeddings = False
    return tensors


def same_values(a, b):
    """Whether two tensors of a checkpoint (StoredTensor or arrays) hold the same values: the same bytes, or the same
    float32 values where their dtypes differ; a quantized one is never the same as another."""
    if a is b:
        return True
    if hasattr(a, "format") or hasattr(b, "format") or tuple(a.shape) != tuple(b.shape):
        return False
    (x, x_dtype), (y, y_dtype) = stored_array(a), stored_array(b)
    if x_dtype == y_dtype:
        return np.array_equal(x, y)
    return all(np.array_equal(convert(x[rows], x_dtype, "float32"), convert(y[rows], y_dtype, "float32"))
               for rows in row_blocks(x.shape))


def stored_array(t):
    """(values as stored, a view where it can be; the core's name of their dtype)."""
    if isinstance(t, np.ndarray):
        return t, {"float32": "float32", "float16": "float16", "uint16": "bfloat16"}[t.dtype.name]
    if STORED_DTYPES[t.dtype][1] is None:  # float64, an integer, float8...: as torch converts it to float32
        return t.float32(), "float32"
    return np.frombuffer(t.data, STORAGE_NUMPY[t.storage]).reshape(t.shape), t.storage


def core_arrays(selected, dtype, num_threads=0):
    """The arrays handed to the core ([(array or None, dtype code, shape[, scales])]) and {name: (array, dtype
    name)} of the present ones (what save_pretrained writes), each in `dtype` or, when None, its stored dtype. A
    quantized dtype applies to QUANTIZED_TENSORS (their array is then a QuantizedWeight); the rest stay as stored.
    Weights stored quantized stay as they are (views of the file) unless `dtype` is a float one: they are then
    dequantized; the other quantized dtype is refused (it would quantize them a second time)."""
    quantized = dtype in QUANTIZED_DTYPES
    arrays, weights = [], {}
    for name, stored in selected:
        if stored is None:
            arrays.append((None, 0, (1,)))
            continue
        storage = resolve_storage(stored, None if quantized else dtype)
        if quantized and storage in QUANTIZED_DTYPES and storage != dtype:
            raise ValueError(f"tensor {stored.name!r} is stored in {storage} (a nemotron_c {storage} checkpoint): "
                             f"dtype={dtype!r} would quantize its weights a second time; load it with dtype=None or "
                             f"{storage!r} to keep it, or with a float dtype to dequantize it")
        if hasattr(stored, "array"):
            array = stored.array(storage)
        else:  # an array made in memory (a merged adapter's float32 matrix): converted as a stored one would be
            array, held = stored_array(np.ascontiguousarray(stored))
            array = convert(array, held, storage)
        if quantized and storage not in QUANTIZED_DTYPES and name.endswith(QUANTIZED_TENSORS):
            storage, array = dtype, quantize(name, array, storage, dtype, num_threads)
        if storage in QUANTIZED_DTYPES:  # a QuantizedWeight, quantized now or as stored
            arrays.append((array.values, _core.DTYPE_INFO[storage].code, array.shape, array.scales))
        else:
            # float32 widened from bfloat16 holds bfloat16 values, which the core may multiply as such (the amx
            # kernel set: the same products, on the tile unit)
            bf16_values = storage == "float32" and str(getattr(stored, "dtype", "")) == "BF16"
            arrays.append((array, _core.DTYPE_INFO[storage].code, tuple(array.shape), None, bf16_values))
        weights[name] = (array, storage)
    return arrays, weights


def check_quantizable(name, shape, dtype):
    block = _core.DTYPE_INFO[dtype].block_size
    if shape[-1] % block:
        raise ValueError(f"tensor {name!r} has rows of {shape[-1]} values, not a multiple of the {block} that "
                         f"{dtype} quantizes together: keep this checkpoint in a float dtype")


def quantize(name, array, storage, dtype, num_threads):
    """The QuantizedWeight of a float matrix, by the core's quantizer."""
    info = _core.DTYPE_INFO[dtype]
    check_quantizable(name, array.shape, dtype)
    N, K = array.shape
    groups = K // info.block_size
    values = np.empty(FORMATS[dtype].stored_shape((N, K)), dtype=FORMATS[dtype].numpy_type)
    scales = np.empty((N, groups), dtype=np.float32)
    for rows in row_blocks((N, K)):  # a block per call: Ctrl-C is seen between them
        block = array[rows]
        try:
            _core.quantize(values[rows], scales[rows], block, _core.DTYPE_INFO[storage].code, block.shape, info.code,
                           num_threads)
        except ValueError:  # a weight that is not finite: named with its tensor and row
            bad = np.flatnonzero(~np.isfinite(convert(block, storage, "float32")).all(axis=1))
            if not bad.size:
                raise
            raise ValueError(f"cannot quantize tensor {name!r} to {dtype}: its row {rows.start + int(bad[0])} holds "
                             "a weight that is not finite") from None
    return QuantizedWeight(values, scales, (N, K))


def float32_weight(stored, dtype):
    """A head's weight as float32 after rounding to `dtype` (what resolve_storage gives it), as the core treats
    every weight; an array made in memory (from_config's draws, bfloat16 as uint16 bits; an adapter's head) is read
    as stored_array reads it."""
    if hasattr(stored, "array"):
        return np.ascontiguousarray(convert(stored.array(dtype), dtype, "float32"))
    array, held = stored_array(np.ascontiguousarray(stored))
    return np.ascontiguousarray(convert(convert(array, held, dtype), dtype, "float32"))


def core_config(config):
    """The settings of the core's nt_config, by the names of its field table."""
    inv_freq, rope_scaling = rope_parameters(config)
    return {
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
        # Transformers rotates cos.shape[-1] dimensions, two per frequency: yarn of a rotary size of 1 has none
        "head_dim": config.head_dim, "rotary_dim": 2 * inv_freq.size,
        "inv_freq": inv_freq, "rope_attention_scaling": rope_scaling,
        "norm_eps": float(config.norm_eps), "hidden_act": activation_code(config.hidden_act),
        "attention_bias": int(bool(config.attention_bias)), "mlp_bias": int(bool(config.mlp_bias)),
        "tie_word_embeddings": int(bool(config.tie_word_embeddings)),
        "masked_rows_average": int(config._attn_implementation == "eager"),
    }


class Embedding:
    """Token ids -> float32 embedding rows, for building inputs_embeds as with Transformers' nn.Embedding."""

    def __init__(self, table, storage, padding_idx=None):
        self._table = table  # (V, H) in its storage dtype (bfloat16 as uint16 bits)
        self._storage = storage
        self.num_embeddings, self.embedding_dim = table.shape
        self.padding_idx = padding_idx  # config.pad_token_id, as Transformers' nn.Embedding has it

    def __call__(self, input_ids):
        ids = to_numpy(input_ids, "input_ids")
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"input_ids must hold integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"input_ids must lie in [0, {self.num_embeddings})")
        return convert(self._table[ids], self._storage, "float32")

    @property
    def weight(self):
        """The whole table in float32 (a copy when stored in half precision)."""
        return convert(self._table, self._storage, "float32")


class LanguageModelHead:
    """The lm_head as get_output_embeddings() gives it (Transformers' nn.Linear role): its weight (V, H) in float32
    (a copy; a quantized head dequantized, q * scale), in_features and out_features; calling it maps hidden states
    (..., H) to logits (..., V)."""

    def __init__(self, weight, storage):
        self._weight, self._storage = weight, storage  # as the core holds it
        self.out_features, self.in_features = weight.shape

    @property
    def weight(self):
        if self._storage in QUANTIZED_DTYPES:
            return FORMATS[self._storage].dequantize(self._weight.values, self._weight.scales)
        return convert(self._weight, self._storage, "float32")

    def __call__(self, hidden_states):
        return np.asarray(hidden_states, dtype=np.float32) @ self.weight.T

    def __repr__(self):
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias=False)"
