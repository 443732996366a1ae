"""NemotronConfig: the fields, defaults and legacy spellings of Transformers' NemotronConfig.

Where Transformers 5.24 does something we consider wrong, we differ on purpose:
- `num_key_value_heads` missing or null means `num_attention_heads` (Transformers keeps None and its
  attention then fails with a TypeError).
- The legacy NeMo keys `rope_percent` / `rope_percentage` give `partial_rotary_factor` when that is
  absent (Transformers did so until recent 5.x releases and now silently ignores them).
- The legacy key `kv_channels` gives `head_dim` when that is absent (NeMo's name for the per-head size;
  Transformers ignores it and cannot load such a checkpoint when the two differ).
"""
import copy
import json
import math
import numbers
import os

from ..checkpoint.hub import pop_hub_kwargs, resolve_directory
from ..generation.configuration import VERSION, default_generation_params

MODEL_TYPE = "nemotron"
CONFIG_NAME = "config.json"

# Nemotron's own fields and their defaults, as in Transformers' NemotronConfig.
NEMOTRON_DEFAULTS = {
    "vocab_size": 256000,
    "hidden_size": 6144,
    "intermediate_size": 24576,
    "num_hidden_layers": 32,
    "num_attention_heads": 48,
    "head_dim": None,
    "num_key_value_heads": None,
    "hidden_act": "relu2",
    "max_position_embeddings": 4096,
    "initializer_range": 0.0134,
    "norm_eps": 1e-5,
    "use_cache": True,
    "pad_token_id": None,
    "bos_token_id": 2,
    "eos_token_id": 3,
    "tie_word_embeddings": False,
    "rope_parameters": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
}

# Fields every Transformers config has.
COMMON_DEFAULTS = {
    "architectures": None,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "dtype": None,
    "problem_type": None,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
}

DEFAULT_ROPE_THETA = 10000.0
DEFAULT_PARTIAL_ROTARY_FACTOR = 0.5
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic", "longrope")
# Transformers' attention implementations differ only where a query sees no key at all (a left-padding position):
# eager averages every value there, SDPA (its default, None) gives zeros. The others are GPU kernels.
ATTENTION_IMPLEMENTATIONS = (None, "sdpa", "eager")
# Generation settings have no place in a model config since Transformers 5: a config.json's reach the model's
# generation_config (read from the file itself), not the config. use_cache is a model field too.
GENERATION_PARAMETERS = tuple(key for key in default_generation_params() if key != "use_cache")


class NemotronConfig:
    """Configuration of a Nemotron decoder, with Transformers' attribute names.

    Unknown keys are kept as attributes and written back by `to_dict`, as Transformers does.
    """

    model_type = MODEL_TYPE

    def __init__(self, **kwargs):
        kwargs = dict(kwargs)
        kwargs.pop("model_type", None)
        # the version that wrote the file, as Transformers keeps it; to_dict writes this one's
        self.transformers_version = kwargs.pop("transformers_version", None)
        if "torch_dtype" in kwargs and "dtype" not in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        kwargs.pop("torch_dtype", None)
        num_labels = kwargs.pop("num_labels", None)
        # not written to config.json, as in Transformers: None is its default, "sdpa"
        self._attn_implementation = kwargs.pop("attn_implementation", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        for key in GENERATION_PARAMETERS:
            kwargs.pop(key, None)

        for key, default in {**COMMON_DEFAULTS, **NEMOTRON_DEFAULTS}.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))

        if self.head_dim is None and kwargs.get("kv_channels") is not None:
            self.head_dim = int(kwargs["kv_channels"])
        if self.head_dim is None and is_positive_integer(self.hidden_size) and is_positive_integer(self.num_attention_heads):
            self.head_dim = self.hidden_size // self.num_attention_heads  # else validate() names the bad field
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

        self.rope_parameters = self._standardize_rope(kwargs)
        self._set_labels(num_labels, id2label, label2id)
        for key, value in kwargs.items():
            setattr(self, key, value)
        if self.problem_type == "single_label_classification" and self.num_labels == 1:
            raise ValueError('problem_type "single_label_classification" needs num_labels > 1 (one label: use '
                             'problem_type "regression"; two classes: num_labels=2), as Transformers requires')

    def _standardize_rope(self, kwargs):
        """Gathers rope_theta, partial_rotary_factor and rope_scaling into rope_parameters, as Transformers does."""
        rope = copy.deepcopy(kwargs.pop("rope_scaling", None) or self.rope_parameters or {})
        if not isinstance(rope, dict):
            raise TypeError(f"rope_parameters must be a dict, got {type(rope).__name__}")
        rope.setdefault("rope_theta", kwargs.pop("rope_theta", DEFAULT_ROPE_THETA))
        kwargs.pop("rope_theta", None)
        factor = kwargs.pop("partial_rotary_factor", None)
        if factor is None:
            factor = kwargs.get("rope_percent") or kwargs.get("rope_percentage")
        rope.setdefault("partial_rotary_factor", DEFAULT_PARTIAL_ROTARY_FACTOR if factor is None else factor)
        rope.setdefault("rope_type", rope.get("type", "default"))
        if rope["rope_type"] in ("llama3", "yarn", "longrope"):
            # the pretraining length; a top-level key wins, as Transformers lets it for Phi-3 checkpoints
            if "original_max_position_embeddings" in kwargs:
                rope["original_max_position_embeddings"] = kwargs["original_max_position_embeddings"]
            rope.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        return rope

    def _set_labels(self, num_labels, id2label, label2id):
        if id2label is not None and not isinstance(id2label, dict):
            raise TypeError(f"id2label must be a dict of label ids to names, got {type(id2label).__name__}")
        if label2id is not None and not isinstance(label2id, dict):
            raise TypeError(f"label2id must be a dict of label names to ids, got {type(label2id).__name__}")
        if id2label is not None and (num_labels is None or int(num_labels) == len(id2label)):
            self.id2label = {int(k): v for k, v in dict(id2label).items()}
        else:  # as Transformers: a num_labels that disagrees with id2label wins, with default names
            count = 2 if num_labels is None else int(num_labels)
            self.id2label = {i: f"LABEL_{i}" for i in range(count)}
        if id2label is not None and self.id2label is not None and len(self.id2label) != len(id2label):
            self.label2id = {v: k for k, v in self.id2label.items()}
        elif label2id is not None:
            self.label2id = {k: int(v) for k, v in dict(label2id).items()}
        elif id2label is not None:
            self.label2id = None  # as Transformers: given id2label alone, label2id stays unset
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}

    # ------------------------------------------------------------ derived values

    @property
    def num_labels(self):
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"num_labels must be an int, got {value!r}")
        if len(self.id2label) != value:  # as Transformers: the same count keeps the names
            self._set_labels(int(value), None, None)

    @property
    def torch_dtype(self):
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value):  # Transformers' older name
        self.dtype = value

    @property
    def rope_theta(self):
        return self.rope_parameters["rope_theta"]

    @rope_theta.setter
    def rope_theta(self, value):
        self.rope_parameters = {**self.rope_parameters, "rope_theta": value}

    @property
    def rope_scaling(self):
        """Transformers 5's older name of rope_parameters: reading gives them, setting replaces the scaling (the
        theta and rotary factor kept unless given), effective at once."""
        return self.rope_parameters

    @rope_scaling.setter
    def rope_scaling(self, value):
        keep = {k: self.rope_parameters[k] for k in ("rope_theta", "partial_rotary_factor")}
        self.rope_parameters = {}
        self.rope_parameters = self._standardize_rope({"rope_scaling": {**keep, **(value or {})}})

    @property
    def partial_rotary_factor(self):
        return self.rope_parameters["partial_rotary_factor"]

    @property
    def rotary_dim(self):
        """int(head_dim * partial_rotary_factor): the size the rotary frequencies are computed for."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def rotated_dims(self):
        """Dimensions of each head that are rotated: one cos/sin pair per frequency, so rotary_dim rounded up to even
        (Transformers rotates cos.shape[-1] dimensions, which is that)."""
        return self.rotary_dim + self.rotary_dim % 2

    # ------------------------------------------------------------ construction and serialisation

    @classmethod
    def from_dict(cls, config_dict, return_unused_kwargs=False, **kwargs):
        """As Transformers: the config of config_dict, then each keyword that names one of its attributes set on it
        (num_labels, rope_theta, torch_dtype... through their setters); the others are unused, returned as
        (config, unused) with return_unused_kwargs, else dropped."""
        config_dict = dict(config_dict)
        model_type = config_dict.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"config has model_type {model_type!r}; nemotron_c implements only {MODEL_TYPE!r} models"
            )
        attn_implementation = kwargs.pop("attn_implementation", None)
        config = cls(**config_dict)
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        unused = {}
        for key, value in kwargs.items():
            if hasattr(config, key):
                setattr(config, key, value)
            else:
                unused[key] = value
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def from_config(cls, config):
        """A NemotronConfig from another config object with to_dict() (such as Transformers' NemotronConfig)."""
        if isinstance(config, cls):
            return config
        if hasattr(config, "to_dict"):
            return cls.from_dict(config.to_dict(), attn_implementation=getattr(config, "_attn_implementation", None))
        raise TypeError(f"config must be a NemotronConfig, not {type(config).__name__}")

    @classmethod
    def from_json_file(cls, path):
        return cls.from_dict(read_config_json(path))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """From a config.json file, a directory holding one, or a Hub id (see nemotron_c.checkpoint.hub; the
        keywords revision, cache_dir, local_files_only, token, subfolder, force_download and proxies choose the
        files, the others override attributes)."""
        name = os.fspath(pretrained_model_name_or_path)
        path = name
        hub_kwargs = pop_hub_kwargs(kwargs)
        if not os.path.isfile(name):
            path = os.path.join(resolve_directory(name, [(CONFIG_NAME,)], **hub_kwargs), CONFIG_NAME)
        config = cls.from_dict(read_config_json(path), **kwargs)
        (config[0] if isinstance(config, tuple) else config)._name_or_path = name
        return config

    def to_dict(self):
        out = {key: copy.deepcopy(value) for key, value in vars(self).items() if not key.startswith("_")}
        if out.get("dtype") is not None:  # a torch or NumPy dtype as its name, as Transformers writes it
            out["dtype"] = str(out["dtype"]).removeprefix("torch.")
        out["model_type"] = MODEL_TYPE
        out["_name_or_path"] = self.name_or_path
        out["transformers_version"] = VERSION
        return out

    def to_diff_dict(self):
        """to_dict without the fields every Transformers config has at their defaults, with the Transformers
        version: what Transformers writes to config.json."""
        defaults = {**COMMON_DEFAULTS, "id2label": {0: "LABEL_0", 1: "LABEL_1"},
                    "label2id": {"LABEL_0": 0, "LABEL_1": 1}}
        # as Transformers: where the config was read from is not written
        return {key: value for key, value in self.to_dict().items()
                if key != "_name_or_path" and (key not in defaults or value != defaults[key])}

    def to_json_string(self, use_diff=True):
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def generation_parameters(self):
        """The generation settings set on this config since it was made (Transformers' _get_generation_parameters)."""
        return {key: getattr(self, key) for key in GENERATION_PARAMETERS if getattr(self, key, None) is not None}

    def save_pretrained(self, save_directory):
        found = self.generation_parameters()
        if found:  # Transformers' error, word for word
            raise ValueError("Some generation parameters are set in the model config. These should go into "
                             "`model.generation_config`as opposed to `model.config`. \nGeneration parameters found: "
                             f"{found}")
        os.makedirs(save_directory, exist_ok=True)
        if hasattr(self, "transformers_weights"):  # as Transformers: it names the file loading read, not one saved
            del self.transformers_weights
        text = self.to_json_string(use_diff=True)  # before the file is opened: an error leaves the old one whole
        path = os.path.join(save_directory, CONFIG_NAME)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    def to_json_file(self, json_file_path, use_diff=True):
        with open(json_file_path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string(use_diff=use_diff))

    def update(self, config_dict):
        """Sets each of config_dict's items as an attribute, as Transformers' update."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    def update_from_string(self, update_str):
        """Transformers' update_from_string: "key=value,..." for attributes the config has, each value read as
        the type the attribute holds (bool from true/false, 1/0, y/n, yes/no; int; float; str)."""
        for item in update_str.split(","):
            key, value = item.split("=")
            if not hasattr(self, key):
                raise ValueError(f"key {key} isn't in the original config dict")
            old = getattr(self, key)
            if isinstance(old, bool):
                if value.lower() not in ("true", "1", "y", "yes", "false", "0", "n", "no"):
                    raise ValueError(f"can't derive true or false from {value} (key {key})")
                value = value.lower() in ("true", "1", "y", "yes")
            elif isinstance(old, int):
                value = int(value)
            elif isinstance(old, float):
                value = float(value)
            elif not isinstance(old, str):
                raise TypeError(f"You can only update int, float, bool or string values in the config, got {value} "
                                f"for key {key}")
            setattr(self, key, value)

    def __iter__(self):  # the attribute names, as iterating a Transformers config gives them
        return iter(self.to_dict())

    def __contains__(self, key):
        return key in self.to_dict()

    @property
    def name_or_path(self):
        return getattr(self, "_name_or_path", "")

    @name_or_path.setter
    def name_or_path(self, value):
        self._name_or_path = str(value)

    @property
    def use_return_dict(self):
        return self.return_dict

    def get_text_config(self, decoder=None, encoder=None):
        return self  # a decoder-only text model's config is its own text config

    def __eq__(self, other):
        return isinstance(other, NemotronConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"NemotronConfig {self.to_json_string()}"

    # ------------------------------------------------------------ checks before building a model

    def validate(self):
        """Raises ValueError for a config that no model can be built from."""
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, key)
            if not is_positive_integer(value):
                raise ValueError(f"config.{key} must be a positive integer, got {value!r}")
        # Transformers' strict dataclass refuses these types when the config is made; a flag such as
        # tie_word_embeddings="no" would otherwise read as true
        for key in ("use_cache", "tie_word_embeddings", "attention_bias", "mlp_bias"):
            if not isinstance(getattr(self, key), bool):
                raise TypeError(f"config.{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("initializer_range", "attention_dropout"):
            if not is_number(getattr(self, key)):
                raise TypeError(f"config.{key} must be a number, got {getattr(self, key)!r}")
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, key)
            ids = value if key == "eos_token_id" and isinstance(value, list) else [value]
            if value is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise TypeError(f"config.{key} must be a token id{', a list of them' if key == 'eos_token_id' else ''}"
                                f" or null, got {value!r}")
        if self._attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={self._attn_implementation!r} is not supported: nemotron_c "
                             f"computes {' or '.join(map(repr, ATTENTION_IMPLEMENTATIONS[1:]))} attention")
        if not isinstance(self.hidden_act, str):
            raise ValueError(f"config.hidden_act must be an activation name, got {self.hidden_act!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        factor = self.partial_rotary_factor
        if not is_number(factor) or not 0.0 <= factor <= 1.0:
            raise ValueError(f"partial_rotary_factor must be within [0, 1], got {factor!r}")
        if self.rotated_dims > self.head_dim:
            raise ValueError(
                f"int(head_dim * partial_rotary_factor) = {self.rotary_dim} is odd and equals head_dim: its "
                f"{self.rotated_dims} rotated dimensions do not fit a head (Transformers fails on it too)"
            )
        rope_type = self.rope_parameters.get("rope_type")
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise NotImplementedError(
                f"rope_type {rope_type!r} is not supported by nemotron_c (supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
            )
        theta = self.rope_parameters.get("rope_theta")
        if not is_positive_number(theta):
            raise ValueError(f"rope_theta must be a positive number, got {theta!r}")
        needed = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
                  "dynamic": ("factor",)}
        for key in needed.get(rope_type, ()):
            value = self.rope_parameters.get(key)
            if not is_positive_number(value):
                raise ValueError(f"{rope_type} rope scaling needs a positive {key!r}, got {value!r}")
        # optional ones: absent or null means the default, anything else must be a positive finite number (0 too
        # for those where Transformers reads 0 as "the default")
        optional = {"factor": False, "attention_factor": False, "original_max_position_embeddings": False,
                    "beta_fast": True, "beta_slow": True, "mscale": True, "mscale_all_dim": True}
        for key, zero_is_default in optional.items() if rope_type in ("yarn", "llama3", "longrope") else ():
            value = self.rope_parameters.get(key)
            if value is not None and not (is_positive_number(value) or (zero_is_default and value == 0)):
                raise ValueError(f"{rope_type} rope scaling needs {key!r} to be a positive number, got {value!r}")
        if rope_type == "llama3" and self.rope_parameters["low_freq_factor"] == self.rope_parameters["high_freq_factor"]:
            raise ValueError("llama3 rope scaling needs low_freq_factor != high_freq_factor")
        if rope_type == "dynamic" and self.rotary_dim == 2:
            # the NTK exponent d / (d - 2) divides by zero: Transformers raises ZeroDivisionError building the model
            raise ValueError("dynamic rope scaling needs int(head_dim * partial_rotary_factor) other than 2")
        if rope_type == "longrope":
            self._validate_longrope()
        if not is_number(self.norm_eps) or not self.norm_eps >= 0:
            raise ValueError(f"norm_eps must be a non-negative number, got {self.norm_eps!r}")

    def _validate_longrope(self):
        """Transformers only warns about these, then fails in torch (a factor list of another length does not
        broadcast; one of length 1 does, and we refuse it too) or divides by log(1) (a ZeroDivisionError)."""
        params = self.rope_parameters
        frequencies = (self.rotary_dim + 1) // 2  # len(range(0, rotary_dim, 2))
        for key in ("short_factor", "long_factor"):
            value = params.get(key)
            if not (isinstance(value, list) and len(value) == frequencies and all(map(is_positive_number, value))):
                raise ValueError(f"longrope rope scaling needs {key!r} to be a list of {frequencies} positive numbers "
                                 f"(one per rotary frequency), got {value!r}")
        original = params.get("original_max_position_embeddings")
        if not is_positive_number(original):
            raise ValueError(f"longrope rope scaling needs a positive 'original_max_position_embeddings', got {original!r}")
        factor = params.get("factor")
        if factor is None:
            factor = self.max_position_embeddings / original
        if params.get("attention_factor") is None and factor > 1 and original <= 1:
            raise ValueError("longrope rope scaling with factor > 1 and no attention_factor needs "
                             "original_max_position_embeddings > 1 (its attention factor divides by its log)")


def is_number(value):
    """A finite int or float (not a bool, whose True would read as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_positive_number(value):
    return is_number(value) and value > 0


def is_positive_integer(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_config_json(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config.json at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_hook=_tagged_float)
    # json raises a bare ValueError for an integer of over 4300 digits and RecursionError for deep nesting
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


FLOAT_TAGS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _tagged_float(obj):
    """Transformers writes an infinite or NaN float as {"__float__": "Infinity"} (JSON has none): read back, as the
    decoder meets each object."""
    if len(obj) == 1 and isinstance(obj.get("__float__"), str) and obj["__float__"] in FLOAT_TAGS:
        return FLOAT_TAGS[obj["__float__"]]
    return obj


class AutoConfig:
    """Reads config.json and returns the config class of its model_type (only 'nemotron' here)."""

    def __init__(self):
        raise EnvironmentError("AutoConfig is created with AutoConfig.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        return NemotronConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def for_model(cls, model_type, **kwargs):
        if model_type != MODEL_TYPE:
            raise ValueError(f"unsupported model_type {model_type!r}; nemotron_c implements only {MODEL_TYPE!r}")
        return NemotronConfig(**kwargs)
