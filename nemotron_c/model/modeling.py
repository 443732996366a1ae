"""Transformers-style Nemotron models over the C core: loading, forward and the KV cache.

The policy lives here (argument handling, defaults, Transformers compatibility); each call makes one
call into nemotron_c._core, which runs the whole forward pass with the GIL released.
"""
import collections
import copy
import numbers
import os
import sys
import warnings

import numpy as np

from .. import _core
from ..checkpoint.adapters import find_adapter
from ..checkpoint.hub import HUB_KWARGS, pinned_to_snapshot, pop_hub_kwargs, resolve_directory
from ..checkpoint.quantized import QUANTIZATION_CONFIGS
from ..checkpoint.reading import check_explicit_name, weights_files
from ..checkpoint.tensors import convert
from ..checkpoint.saving import DEFAULT_MAX_SHARD_SIZE, save_model
from ..generation.configuration import GENERATION_CONFIG_NAME, GenerationConfig
from ..generation.scoring import score
from ..generation.utils import as_generation_config, compute_transition_scores, generate, generate_iter
from .adapters import DEFAULT_ADAPTER_NAME, AdapterState, PeftAdapterMixin, adapter_base, merged_tensors, read_adapter
from .cache import NemotronCache, check_cache
from .configuration import CONFIG_NAME, NemotronConfig
from .inputs import (as_attention_mask, as_embeddings, as_position_ids, as_token_ids, check_embeddings,
                     to_numpy)
from .losses import causal_lm_loss
from .outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from .rope import core_rope_settings
from .weights import (ACTIVATION_REPRS, QUANTIZED_DTYPES, STATE_DICT_LAYER_ORDER, Embedding, LanguageModelHead,
                      core_arrays, core_config, layer_shapes, read_weights, resolve_dtype, select_tensors)

# from_pretrained keywords of Transformers that have no meaning for a CPU model read from safetensors.
IGNORED_LOAD_KWARGS = {
    "low_cpu_mem_usage", "trust_remote_code", "offload_folder", "offload_state_dict",
}
# from_pretrained keywords of Transformers whose other values would change the result: these values only.
ACCEPTED_LOAD_KWARGS = {"output_loading_info": (None, False)}

def check_cpu_device(device, what):
    """Accepts anything that names the CPU (None, 'cpu', 'auto', torch.device('cpu'), {'': 'cpu'})."""
    if device is None:
        return
    if isinstance(device, dict):
        for value in device.values():
            check_cpu_device(value, what)
        return
    name = str(getattr(device, "type", device))
    if name not in ("cpu", "auto") and name.split(":")[0] != "cpu":  # "cpu:0" as torch.device takes it
        raise ValueError(f"{what}={device!r}: nemotron_c runs on the CPU only")


class CPUDevice:
    """model.device when torch is not loaded: compares equal to 'cpu' and has .type like torch.device."""

    type = "cpu"
    index = None

    def __eq__(self, other):
        return str(getattr(other, "type", other)) == "cpu"

    def __hash__(self):
        return hash("cpu")

    def __str__(self):
        return "cpu"

    def __repr__(self):
        return "device(type='cpu')"


class DType(str):
    """A weight dtype's name ("bfloat16") that also equals the torch and NumPy dtypes of that name, so that
    `model.dtype == torch.bfloat16` holds as it does in Transformers, without nemotron_c importing torch."""

    def __eq__(self, other):
        if isinstance(other, str):
            return str.__eq__(self, other)
        if type(other).__module__ == "torch":
            return str.__eq__(self, str(other).removeprefix("torch."))
        if other is None:
            return NotImplemented
        try:
            return str.__eq__(self, np.dtype(other).name)
        except TypeError:
            return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__


class NemotronPreTrainedModel(PeftAdapterMixin):
    """Loading and the parts of Transformers' PreTrainedModel interface that scripts rely on (and the adapter
    methods of its PeftAdapterMixin: model/adapters.py)."""

    config_class = NemotronConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    has_lm_head = False
    optional_files = ()  # files from_pretrained reads when the checkpoint has them, besides config and weights

    def __init__(self, config, tensors, dtype=None, num_threads=None, kernels=None, adapter=None):
        """Builds the model from `tensors` ({name: StoredTensor or ndarray}), with `adapter` ((name, LoadedAdapter)
        or None) merged; use from_pretrained normally. The tensors are kept (mapped, or the arrays given): adapter
        switches rebuild the model from them."""
        if not isinstance(config, NemotronConfig):
            raise TypeError(f"config must be a NemotronConfig, not {type(config).__name__}")
        config.validate()
        self.config = config
        self.name_or_path = getattr(config, "_name_or_path", "")
        self._base_tensors, self._base_tied = tensors, config.tie_word_embeddings
        self._requested_dtype, self._requested_threads = dtype, num_threads
        if adapter is not None:
            name, loaded = adapter
            tensors, config.tie_word_embeddings = merged_tensors(tensors, [loaded], self.has_lm_head,
                                                                 self._base_tied, self.base_model_prefix)
            self._adapter_state = AdapterState({name: loaded}, [name], True)
        self._build(tensors, dtype, num_threads, kernels)
        self.training = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, dtype=None, torch_dtype=None,
                        device_map=None, device=None, num_threads=None, **kwargs):
        """Loads a Hugging Face checkpoint (config.json and safetensors weights): a local directory, or a Hub id
        ("org/name") found in huggingface_hub's cache or downloaded (needs `pip install "nemotron_c[hub]"`).

        revision, cache_dir, local_files_only, token, subfolder, force_download, proxies, variant, use_safetensors: as
        in Transformers
        (HF_HUB_OFFLINE=1 and the HF_HOME / HF_HUB_CACHE variables are honoured; a local directory always wins).
        dtype: None or "auto" is Transformers' "auto": config.json's dtype, else the first floating tensor's; "float32", "bfloat16", "float16" (or the
        NumPy/torch dtype) converts the weights; "int8" (or load_in_8bit=True) quantizes the linear layers' matrices
        at load, one float32 scale per 64 weights of a row; "int4" (or load_in_4bit=True) likewise with one scale per
        32 (llama.cpp's q4_0 rule; see nt_quantize in csrc/nemotron.h). A checkpoint saved in int8 (int4) loads as
        it is stored (mapped, not quantized again) with None, "auto" or "int8" ("int4"); a float dtype dequantizes
        it; the other quantized dtype is refused. Arithmetic is float32 whatever the storage.
        num_threads: threads per call (default: NEMOTRON_C_NUM_THREADS, else one per available CPU).
        cache_dtype: "float32" (default, as Transformers' cache) or "bfloat16": the dtype of the key/value caches
        the model makes (forward, generate, score), see the cache_dtype attribute.
        config: a NemotronConfig (or Transformers' own), or, as in Transformers, the config.json file, folder or Hub
        id to read it from instead of the checkpoint's.
        Other keywords override config attributes, as in Transformers.
        """
        if model_args:
            raise TypeError("from_pretrained takes the checkpoint path as its only positional argument")
        cache_dtype = kwargs.pop("cache_dtype", None)
        attn_implementation = kwargs.pop("attn_implementation", None)
        generation_config = as_generation_config(kwargs.pop("generation_config", None))
        check_cpu_device(device_map, "device_map")
        check_cpu_device(device, "device")
        if torch_dtype is not None:
            if dtype is not None:
                raise ValueError("give dtype= or its older spelling torch_dtype=, not both")
            dtype = torch_dtype
        for bits in (8, 4):  # Transformers' (bitsandbytes) spellings
            if kwargs.pop(f"load_in_{bits}bit", False):
                if dtype not in (None, "auto", f"int{bits}"):
                    raise ValueError(f"load_in_{bits}bit=True quantizes the weights to int{bits}; it cannot go with "
                                     f"dtype={dtype!r}")
                dtype = f"int{bits}"
        if kwargs.get("quantization_config") is not None:  # Transformers' quantizers (bitsandbytes, GPTQ, ...)
            raise NotImplementedError(f"quantization_config={type(kwargs['quantization_config']).__name__}: "
                                      "nemotron_c runs its own int8 and int4 weights: pass dtype='int8' or 'int4'")
        kwargs.pop("quantization_config", None)
        dtype = resolve_dtype(dtype)
        hub_kwargs = pop_hub_kwargs(kwargs)
        for key in IGNORED_LOAD_KWARGS:
            kwargs.pop(key, None)
        # as in Transformers: variant names the files (model.fp16.safetensors, ...); use_safetensors True reads
        # safetensors weights only, False pytorch_model.bin ones only, None whichever the folder holds, in its order
        variant, use_safetensors = kwargs.pop("variant", None), kwargs.pop("use_safetensors", None)
        if variant is not None and not isinstance(variant, str):
            raise TypeError(f"variant must be a str, not {type(variant).__name__}")
        if use_safetensors not in (None, True, False):
            raise TypeError(f"use_safetensors must be True, False or None, not {use_safetensors!r}")
        weights_names = tuple(name for name, _, _ in weights_files(variant, use_safetensors))
        for key, accepted in ACCEPTED_LOAD_KWARGS.items():
            value = kwargs.pop(key, None)
            if value not in accepted:
                raise NotImplementedError(f"from_pretrained({key}={value!r}) is not supported by nemotron_c")
        name = pretrained_model_name_or_path
        # as Transformers with peft installed: a LoRA adapter's folder loads the base model its adapter_config.json
        # names (or the folder itself when it holds a config.json too), with the adapter merged in
        adapter_kwargs = kwargs.pop("adapter_kwargs", None) or {}
        adapter_name = kwargs.pop("adapter_name", None) or DEFAULT_ADAPTER_NAME
        if not isinstance(adapter_kwargs, dict) or set(adapter_kwargs) - set(HUB_KWARGS):
            raise TypeError(f"adapter_kwargs takes the keywords {', '.join(HUB_KWARGS)}, got {adapter_kwargs!r}")
        adapter = find_adapter(name, {**hub_kwargs, **adapter_kwargs})
        if adapter is not None:
            adapter = read_adapter(adapter)
            name = adapter_base(name, adapter.directory, adapter.config)
        if config is None:
            config_directory = resolve_directory(name, ((CONFIG_NAME,),), **hub_kwargs)
            # the file itself: a local folder's subfolder that does not exist is no Hub id to look up
            config_file = os.path.join(config_directory, CONFIG_NAME)
            if not os.path.isfile(config_file):
                raise FileNotFoundError(f"no {CONFIG_NAME} at {config_file}")
            config = NemotronConfig.from_pretrained(config_file)
            hub_kwargs = pinned_to_snapshot(hub_kwargs, name, config_directory)
        elif isinstance(config, (str, os.PathLike)):  # as Transformers: the config.json file, folder or Hub id to read
            config = NemotronConfig.from_pretrained(config, **hub_kwargs)
        else:
            config = copy.deepcopy(NemotronConfig.from_config(config))  # the overrides below leave the caller's alone
        for key, value in kwargs.items():
            if not hasattr(config, key):
                raise TypeError(f"from_pretrained got an unexpected keyword argument {key!r}")
            setattr(config, key, value)
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        config._name_or_path = os.fspath(name)
        # config.json's transformers_weights names the one weight file to read, from a folder or the Hub
        explicit = getattr(config, "transformers_weights", None)
        if explicit is not None:
            check_explicit_name(explicit)
        path = resolve_directory(name, ((explicit,) if explicit else weights_names,), cls.optional_files, **hub_kwargs)
        if explicit is None and use_safetensors is not None and not any(
                os.path.isfile(os.path.join(path, file_name)) for file_name in weights_names):
            raise OSError(f"Error no file named {' or '.join(weights_names)} found in directory {path}.")
        tensors = read_weights(path, config, variant, use_safetensors)
        model = cls(config, tensors, dtype=dtype, num_threads=num_threads,
                    adapter=None if adapter is None else (adapter_name, adapter))
        model._load_extras(path)
        if generation_config is not None and model.can_generate():  # as Transformers: it replaces the checkpoint's
            model.generation_config = generation_config
        if cache_dtype is not None:
            model.cache_dtype = cache_dtype
        model._load_args = (os.path.abspath(path), dtype, num_threads)  # unpickled from any directory
        return model

    @classmethod
    def from_config(cls, config, seed=0, dtype=None, num_threads=None, attn_implementation=None):
        """A model with random weights (no checkpoint), for tests and demos: as Transformers initialises them,
        linear and embedding weights drawn from N(0, config.initializer_range), biases zero, norms at weight 1 and
        bias 0; the same `seed` gives the same weights (not torch's draws). Weights are in `dtype`, by default
        config.dtype as in Transformers, else float32. config may be Transformers' NemotronConfig too."""
        config = copy.deepcopy(NemotronConfig.from_config(config))  # as Transformers: the caller's is left alone
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        config.validate()
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as e:
            raise type(e)(f"seed={seed!r}: {e}") from None
        std = float(config.initializer_range)

        def tensor(name, shape):
            if name.endswith("layernorm.weight") or name == "norm.weight":
                return np.ones(shape, np.float32)
            if name.endswith(".bias"):
                return np.zeros(shape, np.float32)
            return rng.normal(0.0, std, shape).astype(np.float32)

        H, V = config.hidden_size, config.vocab_size
        shapes = {"embed_tokens.weight": (V, H), "norm.weight": (H,), "norm.bias": (H,)}
        shapes.update({f"layers.{layer}.{name}": shape for layer in range(config.num_hidden_layers)
                       for name, shape in layer_shapes(config).items()})
        prefix = cls.base_model_prefix + "."
        tensors = {prefix + name: tensor(name, shape) for name, shape in shapes.items()}
        pad = padding_idx(config)
        if pad is not None:  # as Transformers initialises an nn.Embedding with a padding_idx (tied: the lm_head too)
            tensors[prefix + "embed_tokens.weight"][pad] = 0.0
        if cls.has_lm_head and not config.tie_word_embeddings:
            tensors["lm_head.weight"] = tensor("lm_head.weight", (V, H))
        tensors.update({name: tensor(name, shape) for name, shape in cls._head_shapes(config).items()})
        dtype = resolve_dtype(dtype if dtype is not None else getattr(config, "dtype", None)) or "float32"
        if dtype not in QUANTIZED_DTYPES:  # int8 and int4 quantize the float32 draws when the model is built
            tensors = {name: convert(array, "float32", dtype) for name, array in tensors.items()}
        return cls(config, tensors, dtype=dtype, num_threads=num_threads)

    @classmethod
    def _head_shapes(cls, config):
        """{name: shape} of the task head's tensors (the heads' subclass says)."""
        return {}

    def num_parameters(self, only_trainable=False, exclude_embeddings=False):
        """Number of weights, as Transformers counts them: a tied lm_head once, the embedding table excluded
        with exclude_embeddings. Every weight counts as trainable (only_trainable changes nothing)."""
        return sum(int(array.size)  # a QuantizedWeight's size is that of the matrix it stands for
                   for name, array, dtype in self._tensors_to_save()
                   if not (exclude_embeddings and name.endswith("embed_tokens.weight")))

    def __repr__(self):
        """The module tree Transformers prints for the same model."""
        c = self.config
        QD, KVD = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        norm = f"NemotronLayerNorm1P(({c.hidden_size},), eps={c.norm_eps}, elementwise_affine=True, bias=True)"

        def linear(n_in, n_out, bias):
            return f"Linear(in_features={n_in}, out_features={n_out}, bias={bool(bias)})"

        layer = [
            "(self_attn): NemotronAttention(",
            f"  (q_proj): {linear(c.hidden_size, QD, c.attention_bias)}",
            f"  (k_proj): {linear(c.hidden_size, KVD, c.attention_bias)}",
            f"  (v_proj): {linear(c.hidden_size, KVD, c.attention_bias)}",
            f"  (o_proj): {linear(QD, c.hidden_size, c.attention_bias)}",
            ")",
            "(mlp): NemotronMLP(",
            f"  (up_proj): {linear(c.hidden_size, c.intermediate_size, c.mlp_bias)}",
            f"  (down_proj): {linear(c.intermediate_size, c.hidden_size, c.mlp_bias)}",
            f"  (act_fn): {ACTIVATION_REPRS[c.hidden_act]}",
            ")",
            f"(input_layernorm): {norm}",
            f"(post_attention_layernorm): {norm}",
        ]
        L = c.num_hidden_layers
        layers = f"(0-{L - 1}): {L} x NemotronDecoderLayer(" if L > 1 else "(0): NemotronDecoderLayer("
        pad = padding_idx(c)
        embedding = f"Embedding({c.vocab_size}, {c.hidden_size}" + ("" if pad is None else f", padding_idx={pad}") + ")"
        backbone = [f"(embed_tokens): {embedding}", "(layers): ModuleList(",
                    "  " + layers, *("    " + line for line in layer), "  )", ")",
                    f"(norm): {norm}", "(rotary_emb): NemotronRotaryEmbedding()"]
        if type(self) is NemotronModel:
            lines = backbone
        else:
            lines = [f"({self.base_model_prefix}): NemotronModel("] + ["  " + line for line in backbone] + [")"]
            lines += self._repr_heads()
        return f"{type(self).__name__}(\n" + "\n".join("  " + line for line in lines) + "\n)"

    def _repr_heads(self):
        """The lines of what follows the backbone in repr() (the lm_head or a task head)."""
        return []

    def _load_extras(self, path):
        """Hook for what a subclass reads besides the weights (the generation config)."""

    def __reduce__(self):
        """Pickles as the local directory the weights were read from, the dtype and num_threads given to
        from_pretrained, the cache_dtype, the config (with any override or later change) and the generation
        config; unpickling reloads the weights, so that models cross process boundaries (multiprocessing) as
        Transformers' do.
        Adapters pickle as their folders, with which are active and whether they are enabled: unpickling loads them
        again and merges the active ones.
        Not kept: the kernel set (chosen again from the CPU and NEMOTRON_C_KERNELS) and anything else set on the
        object after loading."""
        load_args = getattr(self, "_load_args", None)
        if load_args is None:
            raise TypeError(f"only a {type(self).__name__} made by from_pretrained can be pickled: it pickles as the "
                            "checkpoint directory it was read from")
        load_args = (*load_args, str(self.cache_dtype))
        config = copy.deepcopy(self.config)
        config.tie_word_embeddings = self._base_tied  # the base's: unpickling merges the adapters again
        return _unpickle_model, (type(self), load_args, config, getattr(self, "generation_config", None),
                                 self._pickled_adapters())

    def __deepcopy__(self, memo):
        """An independent model with the same weights, as copy.deepcopy gives of a Transformers model, a from_config
        one included: built again from the tensors this one was built from (a checkpoint's stay mapped, read-only,
        shared), with its dtype, threads, kernel set, cache dtype, config, generation config and adapters."""
        config = copy.deepcopy(self.config, memo)
        config.tie_word_embeddings = self._base_tied  # the base's: the adapters are merged again below
        model = type(self)(config, self._base_tensors, dtype=self._requested_dtype,
                           num_threads=self._requested_threads, kernels=self.kernels)
        state = self._adapter_state
        if state.adapters:
            model._switch(AdapterState(dict(state.adapters), list(state.active), state.enabled))
        model.cache_dtype = self.cache_dtype
        model.training, model.name_or_path = self.training, self.name_or_path
        if getattr(self, "_load_args", None) is not None:
            model._load_args = self._load_args
        if hasattr(self, "generation_config"):
            model.generation_config = copy.deepcopy(self.generation_config, memo)
        return model

    def save_pretrained(self, save_directory, max_shard_size=DEFAULT_MAX_SHARD_SIZE, safe_serialization=True,
                        **kwargs):
        """Writes config.json, generation_config.json (causal LM) and the weights in the dtype the model holds
        them, as safetensors with Transformers' names; sharded with an index above max_shard_size ("5GB",
        "500MB", an int of bytes). from_pretrained of nemotron_c or Transformers reads the directory back,
        except an int8 or int4 model's, which nemotron_c alone reads (its format: checkpoint/quantized.py)."""
        save_model(self, save_directory, max_shard_size, safe_serialization, **kwargs)

    def can_generate(self):
        return False

    def _tensors_to_save(self):
        """[(Transformers' name, array, dtype)] in the order of Transformers' state_dict."""
        prefix = self._saved_prefix()
        names = ["embed_tokens.weight"]
        names += [f"layers.{layer}.{name}" for layer in range(self.config.num_hidden_layers)
                  for name in STATE_DICT_LAYER_ORDER]
        names += ["norm.weight", "norm.bias"]
        saved = [(prefix + name, *self._weights[name]) for name in names if name in self._weights]
        if "lm_head.weight" in self._weights:
            saved.append(("lm_head.weight", *self._weights["lm_head.weight"]))
        return saved

    def _saved_prefix(self):
        return self.base_model_prefix + "."

    # ------------------------------------------------------------ building the core model

    def _rebuild(self, tensors, tied):
        """Builds the core model again from `tensors` (an adapter switch), in the dtype, threads, kernel set and
        cache dtype of the model; on any error the model is left as it was."""
        saved, saved_config = dict(self.__dict__), dict(self.config.__dict__)
        cache_dtype = self.cache_dtype
        try:
            self.config.tie_word_embeddings = tied
            self._build(tensors, self._requested_dtype, self._requested_threads, self.kernels)
            self.cache_dtype = cache_dtype
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            self.config.__dict__.clear()
            self.config.__dict__.update(saved_config)
            raise

    def _build(self, tensors, dtype, num_threads, kernels):
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral)):
            raise TypeError(f"num_threads must be an int, got {num_threads!r}")
        selected = select_tensors(self.config, tensors, self.base_model_prefix, self.has_lm_head)
        arrays, self._weights = core_arrays(selected, dtype, num_threads or 0)  # _weights: what save_pretrained writes
        self._input_embeddings = Embedding(*self._weights["embed_tokens.weight"], padding_idx(self.config))
        # the dtype of the tensors left in float (all of them but a quantized model's linear weights): config.dtype
        self._float_dtype = self._weights["embed_tokens.weight"][1]
        self.config.dtype = self._float_dtype  # as Transformers sets it on the model's config
        quantized = [d for _, d in self._weights.values() if d in QUANTIZED_DTYPES]
        self.dtype = DType(dtype or (quantized[0] if quantized else self._float_dtype))
        # as Transformers' quantizers do, the config says how the model's weights are quantized, and only then
        if quantized:
            self.config.quantization_config = dict(QUANTIZATION_CONFIGS[quantized[0]])
        elif hasattr(self.config, "quantization_config"):
            del self.config.quantization_config
        kernels = kernels or os.environ.get("NEMOTRON_C_KERNELS", "auto")
        threads = 0 if num_threads is None else int(num_threads)
        if num_threads is not None and threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        # dynamic and longrope: what the core needs to pick each call's frequencies from its positions
        settings = {**core_config(self.config), **core_rope_settings(self.config)}
        self._core = _core.Model(settings, arrays, kernels, threads)

    # ------------------------------------------------------------ the PreTrainedModel surface

    @property
    def device(self):
        if "torch" in sys.modules:
            return sys.modules["torch"].device("cpu")
        return CPUDevice()

    def get_input_embeddings(self):
        """The embedding table as a callable from token ids to float32 embeddings (Transformers' nn.Embedding role)."""
        return self._input_embeddings

    def get_output_embeddings(self):
        return None  # a task head is no output embedding, as in Transformers

    @property
    def base_model(self):
        """The backbone, as Transformers' base_model (and `model.model`, or `model.transformer` for the question
        answering head): a NemotronModel over this model's weights, sharing its state, so that its forward gives the
        last hidden states."""
        if isinstance(self, NemotronModel):
            return self
        backbone = NemotronModel.__new__(NemotronModel)
        backbone.__dict__ = self.__dict__  # the same core, config and adapters, now and after any change
        return backbone

    def get_decoder(self):
        return self.base_model

    def __getattr__(self, name):
        if name == type(self).base_model_prefix and not isinstance(self, NemotronModel):
            return self.base_model
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def tie_weights(self):
        """Nothing to do: the head is the embedding exactly when config.tie_word_embeddings says so."""

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        raise NotImplementedError("nemotron_c runs a checkpoint's vocabulary as it is: resize the embeddings with "
                                  "Transformers (resize_token_embeddings, then save_pretrained) and load that")

    @property
    def kernels(self):
        """Name of the kernel set chosen for this CPU ('amx', 'avx512', 'avx2' or 'portable')."""
        return self._core.kernels

    @property
    def num_threads(self):
        return self._core.num_threads

    @property
    def cache_dtype(self):
        """The dtype of the key/value caches the model makes from now on: "float32" (the default, Transformers'
        float32 cache) or "bfloat16", which halves their memory for long contexts (keys and values are rounded
        to bfloat16 as they are stored; attention still computes in float32). Set it (or pass cache_dtype= to
        from_pretrained) before the model is shared between threads; a cache keeps the dtype it was made with."""
        return DType(next(name for name, info in _core.DTYPE_INFO.items() if info.code == self._core.cache_dtype))

    @cache_dtype.setter
    def cache_dtype(self, value):
        name = str(value).removeprefix("torch.")
        if name not in ("float32", "bfloat16"):
            raise ValueError(f"cache_dtype must be 'float32' or 'bfloat16', got {value!r}")
        self._core.set_cache_dtype(_core.DTYPE_INFO[name].code)

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        if mode:
            raise NotImplementedError("nemotron_c runs inference only; train() is not available")
        return self.eval()

    def requires_grad_(self, requires_grad=True):
        return self

    def to(self, *args, **kwargs):
        """torch's Module.to(device, dtype, non_blocking, memory_format), or to(tensor) for its device and dtype: the
        CPU only; a float dtype other than the model's converts its weights, as torch converts them, rebuilding the
        core model from the tensors it was loaded from (the cost of a load; caches made before are refused after)."""
        for name in ("non_blocking", "copy", "memory_format"):  # torch's options, with nothing to do here
            kwargs.pop(name, None)
        dtype = None
        for value in list(args) + list(kwargs.values()):
            if value is None or isinstance(value, bool) or type(value).__name__ == "memory_format":
                continue  # non_blocking or memory_format given by position
            if type(value).__name__ == "Tensor":  # to(tensor): its device and dtype
                check_cpu_device(value.device, "to")
                dtype = value.dtype
            elif self._is_dtype(value):
                dtype = value
            else:
                check_cpu_device(value, "to")
        if dtype is not None and self.dtype != dtype:
            self._convert(str(getattr(dtype, "name", dtype)).removeprefix("torch."))
        return self

    @staticmethod
    def _is_dtype(value):
        """torch and NumPy dtypes and their names; to()'s other arguments are devices."""
        if type(value).__module__ == "torch":
            return type(value).__name__ == "dtype"
        if isinstance(value, str):
            return value.removeprefix("torch.") in ("float32", "float16", "bfloat16", "float64", "int8", "int4")
        try:
            np.dtype(value)
            return True
        except (TypeError, ValueError, KeyError):
            return False

    def _convert(self, name):
        if name not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"to() converts the weights to float32, bfloat16 or float16, not {name}")
        if self.dtype in QUANTIZED_DTYPES:  # as Transformers refuses .to(dtype) of a quantized model
            raise ValueError(f"`.to` a dtype is not supported for {self.dtype} models: load the checkpoint with "
                             f"from_pretrained(path, dtype={name!r}) instead")
        state = self._adapter_state
        adapters = [state.adapters[n] for n in state.active] if state.enabled else []
        tensors, tied = merged_tensors(self._base_tensors, adapters, self.has_lm_head, self._base_tied,
                                       self.base_model_prefix)
        previous, self._requested_dtype = self._requested_dtype, name
        try:
            self._rebuild(tensors, tied)
        except BaseException:
            self._requested_dtype = previous
            raise
        if getattr(self, "_load_args", None) is not None:  # a pickle loads it in the new dtype
            path, _, num_threads = self._load_args
            self._load_args = (path, name, num_threads)

    def float(self):
        return self.to("float32")

    def half(self):
        return self.to("float16")

    def bfloat16(self):
        return self.to("bfloat16")

    def cpu(self):
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ forward

    def _forward_settings(self, past_key_values, cache, use_cache, output_hidden_states, output_attentions):
        """(cache, use_cache, output_hidden_states, output_attentions) as every forward resolves them: the cache by
        either name, and None meaning the config's value."""
        config = self.config
        return (past_key_values if cache is None else cache,
                config.use_cache if use_cache is None else use_cache,
                config.output_hidden_states if output_hidden_states is None else output_hidden_states,
                config.output_attentions if output_attentions is None else output_attentions)

    def _returned(self, output, return_dict):
        """The output, or its tuple when return_dict (None: config.return_dict, as Transformers) is false."""
        return_dict = getattr(self.config, "return_dict", True) if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def _warn_beyond_positions(self, length, stacklevel):
        """Once per model, as Transformers' warning: positions beyond the trained ones give no error."""
        limit = self.config.max_position_embeddings
        if length > limit and not getattr(self, "_warned_length", False):
            self._warned_length = True
            warnings.warn(f"a sequence of {length} positions is longer than config.max_position_embeddings ({limit}):"
                          " the model was not trained on positions this far and its output may degrade", UserWarning,
                          stacklevel=stacklevel)

    def _run(self, input_ids, attention_mask, position_ids, cache, use_cache, *, inputs_embeds=None, logits=False,
             logits_to_keep=0, last_hidden=False, all_hidden=False, attentions=False):
        """Validates the inputs and makes the one core call; returns a ForwardResult holding the outputs asked for
        (logits at the positions logits_to_keep picks, the final hidden states, tuples of every layer's hidden
        states and attention weights) and the cache."""
        config = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            ids, embeds = as_token_ids(input_ids, vocab_size=config.vocab_size).astype(np.int32), None
            B, T = ids.shape
        else:
            ids, embeds = None, check_embeddings(inputs_embeds, config.hidden_size)
            B, T = embeds.shape[:2]
        if cache is not None:
            check_cache(cache, self, B, "past_key_values", f"the input holds {B}")
        past = 0 if cache is None else cache.get_seq_length()
        self._warn_beyond_positions(past + T, stacklevel=5)
        mask = None if attention_mask is None else as_attention_mask(attention_mask, (B, past + T))
        if position_ids is None:
            positions = np.broadcast_to(np.arange(past, past + T, dtype=np.int64), (B, T)).copy()
        else:
            positions = as_position_ids(position_ids, (B, T))
        if embeds is not None:
            embeds = as_embeddings(embeds, config.hidden_size)
        if cache is None and use_cache:
            cache = NemotronCache(self, B, T)
        keep_positions, pick = positions_to_keep(logits_to_keep, B, T) if logits else (np.zeros(0, np.int64), None)
        H, L = config.hidden_size, config.num_hidden_layers
        shapes = {"logits": (B, len(keep_positions), config.vocab_size), "last_hidden": (B, T, H),
                  "all_hidden": (L + 1, B, T, H), "attentions": (L, B, config.num_attention_heads, T, past + T)}
        wanted = {"logits": logits, "last_hidden": last_hidden, "all_hidden": all_hidden, "attentions": attentions}
        outputs = {name: np.empty(shapes[name], dtype=np.float32) if wanted[name] else None for name in shapes}
        self._core.forward(input_ids=ids, inputs_embeds=embeds, position_ids=positions, attention_mask=mask,
                           cache=None if cache is None else cache._core, keep_positions=keep_positions, **outputs)
        if pick is not None:
            outputs["logits"] = pick(outputs["logits"])
        for name in ("all_hidden", "attentions"):  # per layer, as Transformers' outputs hold them
            if outputs[name] is not None:
                outputs[name] = tuple(outputs[name])
        return ForwardResult(cache=cache, **outputs)


def padding_idx(config):
    """The padding_idx of Transformers' embed_tokens: config.pad_token_id, a negative one counted from the end as
    nn.Embedding counts it; None without one, or for one outside the vocabulary (nn.Embedding refuses it)."""
    pad, V = getattr(config, "pad_token_id", None), config.vocab_size
    if isinstance(pad, bool) or not isinstance(pad, int) or not -V <= pad < V:
        return None
    return pad % V


def _unpickle_model(cls, load_args, config, generation_config, adapters=None):
    path, dtype, num_threads, cache_dtype = load_args
    name = config._name_or_path
    model = cls.from_pretrained(path, config=config, dtype=dtype, num_threads=num_threads, cache_dtype=cache_dtype)
    if adapters is not None:
        model._restore_adapters(*adapters)
    model.config._name_or_path = model.name_or_path = name
    if generation_config is not None:
        model.generation_config = generation_config
    return model


ForwardResult = collections.namedtuple("ForwardResult", "logits last_hidden all_hidden cache attentions")


def positions_to_keep(logits_to_keep, B, T):
    """Transformers' logits_to_keep as (the positions whose logits the core computes, None or how the logits of a
    2-D logits_to_keep are picked from theirs): an int n keeps positions[-n:] as Transformers slices them (the last n;
    0: all; a negative n drops the first -n); a 1-D array lists positions for every row, or as booleans (T) marks
    them; a 2-D integer array (B, P) lists each row's, giving (B, P, V); a 2-D boolean mask (B, T) keeps its true
    positions, giving (number of them, V), rows one after another."""
    if logits_to_keep is None:
        return np.arange(T, dtype=np.int64), None
    if isinstance(logits_to_keep, (int, np.integer)) and not isinstance(logits_to_keep, bool):
        n = int(logits_to_keep)
        return np.arange(T, dtype=np.int64)[-n if n else 0:], None
    positions = to_numpy(logits_to_keep, "logits_to_keep")
    if positions.ndim == 1 and positions.dtype == np.bool_:
        if positions.shape != (T,):
            raise ValueError(f"a 1-D boolean logits_to_keep must have the inputs' length {T}, got {positions.shape[0]}")
        return np.flatnonzero(positions).astype(np.int64), None
    if positions.ndim == 2 and positions.dtype == np.bool_:
        if positions.shape != (B, T):
            raise ValueError(f"a boolean logits_to_keep must have the inputs' shape {(B, T)}, got {positions.shape}")
        keep = np.flatnonzero(positions.any(axis=0))
        chosen = positions[:, keep]
        return keep, lambda logits: np.ascontiguousarray(logits[chosen])
    if positions.ndim not in (1, 2) or not np.issubdtype(positions.dtype, np.integer) or (
            positions.ndim == 2 and positions.shape[0] != B):
        raise TypeError(f"logits_to_keep must be an int, a 1-D integer array of positions, a ({B}, P) integer array "
                        f"of each row's positions or a ({B}, {T}) boolean mask")
    positions = positions.astype(np.int64)
    if positions.size and (positions.min() < -T or positions.max() >= T):
        raise ValueError(f"logits_to_keep positions must lie in [-{T}, {T})")
    positions = positions % T if T else positions
    if positions.ndim == 1:
        return np.ascontiguousarray(positions), None
    keep = np.unique(positions)
    index = np.searchsorted(keep, positions)
    return keep, lambda logits: np.ascontiguousarray(logits[np.arange(B)[:, None], index])


class NemotronModel(NemotronPreTrainedModel):
    """The bare decoder: hidden states, no head."""

    def _saved_prefix(self):
        return ""  # Transformers saves the bare decoder's tensors without the "model." of the models around it

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, **kwargs):
        check_extra_kwargs(kwargs)
        cache, use_cache, want_all, want_attentions = self._forward_settings(
            past_key_values, cache, use_cache, output_hidden_states, output_attentions)
        result = self._run(input_ids, attention_mask, position_ids, cache, use_cache, inputs_embeds=inputs_embeds,
                           last_hidden=True, all_hidden=want_all, attentions=want_attentions)
        output = BaseModelOutputWithPast(
            last_hidden_state=result.last_hidden,
            cache=result.cache,
            hidden_states=result.all_hidden,
            attentions=result.attentions,
        )
        return self._returned(output, return_dict)


class NemotronForCausalLM(NemotronPreTrainedModel):
    """The decoder with its language-modelling head: logits, loss and generate()."""

    has_lm_head = True
    optional_files = (GENERATION_CONFIG_NAME,)

    def __init__(self, config, tensors, dtype=None, num_threads=None, kernels=None, adapter=None):
        super().__init__(config, tensors, dtype=dtype, num_threads=num_threads, kernels=kernels, adapter=adapter)
        self.generation_config = GenerationConfig.from_model_config(config)

    def get_output_embeddings(self):
        """The lm_head (Transformers' nn.Linear role): the embedding table when tied."""
        return LanguageModelHead(*self._weights.get("lm_head.weight", self._weights["embed_tokens.weight"]))

    def _load_extras(self, path):
        if os.path.isfile(os.path.join(path, GENERATION_CONFIG_NAME)):
            try:
                self.generation_config = GenerationConfig.from_pretrained(path)
                return
            except OSError:  # not valid JSON: Transformers falls back to config.json as for a missing file
                pass
        # as Transformers: from the generation parameters of the raw config.json
        self.generation_config = GenerationConfig.from_pretrained(path, config_file_name=CONFIG_NAME,
                                                                  _from_model_config=True)

    def can_generate(self):
        return True

    def _repr_heads(self):
        return [f"(lm_head): Linear(in_features={self.config.hidden_size}, out_features={self.config.vocab_size}, "
                "bias=False)"]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, logits_to_keep=0, cache=None, **kwargs):
        loss_kwargs = {key: kwargs.pop(key) for key in ("num_items_in_batch", "shift_labels") if key in kwargs}
        check_extra_kwargs(kwargs)
        cache, use_cache, want_all, want_attentions = self._forward_settings(
            past_key_values, cache, use_cache, output_hidden_states, output_attentions)
        result = self._run(input_ids, attention_mask, position_ids, cache, use_cache, inputs_embeds=inputs_embeds,
                           logits=True, logits_to_keep=logits_to_keep, all_hidden=want_all, attentions=want_attentions)
        # logits of a boolean logits_to_keep are (kept, V): one sequence of them, as Transformers flattens them
        logits = result.logits if result.logits.ndim == 3 else result.logits[None]
        loss = None if labels is None else causal_lm_loss(logits, labels, self.config.vocab_size, **loss_kwargs)
        output = CausalLMOutputWithPast(
            loss=loss,
            logits=result.logits,
            cache=result.cache,
            hidden_states=result.all_hidden,
            attentions=result.attentions,
        )
        return self._returned(output, return_dict)

    def generate(self, inputs=None, *args, **kwargs):
        """Transformers' generate(inputs, generation_config, logits_processor, stopping_criteria, ...); see
        nemotron_c.generation.utils.generate."""
        return generate(self, inputs, *args, **kwargs)

    def score(self, inputs, tokenizer=None, **kwargs):
        """Log-likelihood of each sequence (sum, mean, perplexity); see nemotron_c.generation.scoring.score."""
        return score(self, inputs, tokenizer=tokenizer, **kwargs)

    def compute_transition_scores(self, sequences, scores, beam_indices=None, normalize_logits=False):
        """The score of each generated token (see nemotron_c.generation.utils.compute_transition_scores)."""
        return compute_transition_scores(self, sequences, scores, beam_indices, normalize_logits)

    def generate_iter(self, inputs=None, **kwargs):
        """Yields the new token ids of one prompt as they are generated (see nemotron_c.generation.utils.generate_iter)."""
        return generate_iter(self, inputs, **kwargs)


def check_extra_kwargs(kwargs):
    kwargs.pop("cache_position", None)
    kwargs.pop("num_items_in_batch", None)  # the losses that take it have read it before
    kwargs.pop("token_type_ids", None)  # a tokenizer's, which Transformers' Nemotron models ignore
    if kwargs:
        raise TypeError(f"forward() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")


class AutoModel:
    """Dispatches on config.model_type; only 'nemotron' exists here."""

    model_class = NemotronModel

    def __init__(self):
        raise EnvironmentError(f"{type(self).__name__} is created with {type(self).__name__}.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        # the model class reads config.json, whose model_type must be "nemotron"
        return cls.model_class.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs):
        """A model of random weights (see NemotronPreTrainedModel.from_config)."""
        return cls.model_class.from_config(config, **kwargs)


class AutoModelForCausalLM(AutoModel):
    model_class = NemotronForCausalLM
