"""GenerationConfig with the fields, defaults and validation of Transformers 5.

As in Transformers 5, every field defaults to None ("not set"); generate() fills what is still unset
from the model's generation_config, then from `default_generation_params()`. Validation raises the
ValueErrors Transformers raises and turns its logged "minor issues" into UserWarnings.
"""
import copy
import json
import numbers
import operator
import os
import warnings

import numpy as np

from ..checkpoint.hub import pop_hub_kwargs, resolve_directory

GENERATION_CONFIG_NAME = "generation_config.json"

# Every field of Transformers' GenerationConfig, in its order. All default to None.
FIELDS = (
    # length
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "early_stopping", "max_time", "stop_strings",
    # strategy
    "do_sample", "num_beams", "use_mtp",
    # cache
    "use_cache", "cache_implementation", "cache_config", "max_cache_len",
    # logits manipulation
    "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "repetition_penalty", "encoder_repetition_penalty", "length_penalty", "no_repeat_ngram_size", "bad_words_ids",
    "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "sequence_bias",
    "token_healing", "guidance_scale", "watermarking_config",
    # outputs
    "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate",
    # special tokens
    "pad_token_id", "bos_token_id", "eos_token_id",
    # encoder-decoder
    "encoder_no_repeat_ngram_size", "decoder_start_token_id",
    # assisted generation
    "is_assistant", "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "prompt_lookup_num_tokens", "max_matching_ngram_size", "assistant_early_exit", "assistant_lookbehind",
    "target_lookbehind", "assistant_ensemble_weight", "speculation_type",
    # performance and deprecated
    "compile_config", "disable_compile", "continuous_batching_config", "low_memory", "penalty_alpha",
    "dola_layers", "diversity_penalty", "num_beam_groups", "constraints", "force_words_ids", "prefill_chunk_size",
)

EXTRA_OUTPUT_FLAGS = ("output_attentions", "output_hidden_states", "output_scores", "output_logits")
METADATA_FIELDS = ("_from_model_config", "_commit_hash", "_original_object_hash", "transformers_version")
STATIC_CACHE_IMPLEMENTATIONS = ("static", "offloaded_static", "sliding_window", "hybrid", "hybrid_chunked",
                                "offloaded_hybrid", "offloaded_hybrid_chunked")
# Transformers' ALL_CACHE_IMPLEMENTATIONS and "paged", in its order (its error message lists them)
CACHE_IMPLEMENTATIONS = STATIC_CACHE_IMPLEMENTATIONS + ("dynamic", "offloaded", "quantized", "paged")
GENERATE_ARGUMENTS = ("logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus",
                      "assistant_model", "streamer", "negative_prompt_ids", "negative_prompt_attention_mask")
VERSION = "5.24.0"  # the Transformers version whose files we read and write
# Transformers' WatermarkingConfig fields and defaults: a watermarking_config dict is read as one (we keep a dict)
WATERMARKING_DEFAULTS = {"greenlist_ratio": 0.25, "bias": 2.0, "hashing_key": 15485863, "seeding_scheme": "lefthash",
                         "context_width": 1}


def watermarking_config(value):
    """A watermarking_config dict with Transformers' defaults filled in; unknown keys raise its TypeError."""
    if not isinstance(value, dict):
        return value
    unknown = [key for key in value if key not in WATERMARKING_DEFAULTS]
    if unknown:
        raise TypeError(f"WatermarkingConfig.__init__() got an unexpected keyword argument '{unknown[0]}'")
    return {**WATERMARKING_DEFAULTS, **value}


def validate_watermarking(config):
    if not isinstance(config, dict):
        # Transformers fails calling config.validate() on it
        raise TypeError(f"`watermarking_config` must be a dict of WatermarkingConfig fields, but is {config!r}")
    message = ("Some of the keys in `watermarking_config` are defined incorrectly. `{}` should be {}` but found {}")
    if config["seeding_scheme"] not in ("selfhash", "lefthash"):
        raise ValueError(message.format("seeding_scheme", "[`selfhash`, `lefthash`]", config["seeding_scheme"]))
    if not 0.0 <= config["greenlist_ratio"] <= 1.0:  # Transformers names the seeding scheme as what it found here
        raise ValueError(message.format("greenlist_ratio", "in range between 0.0 and 1.0", config["seeding_scheme"]))
    if not config["context_width"] >= 1:
        raise ValueError(message.format("context_width", "a positive integer", config["context_width"]))


def json_ready(value):
    """What Transformers' to_json_string writes: dict keys as strings (sequence_bias's tuples become "(1, 2)"), and
    config objects as their to_dict(). NumPy (and torch) numbers and arrays, such as a token id taken from an output,
    are written as the numbers they hold (Transformers cannot write them); any other object is a TypeError, as
    there, rather than its str() written as a setting."""
    if isinstance(value, dict):
        return {str(tuple(json_ready(key)) if isinstance(key, tuple) else json_ready(key)): json_ready(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if hasattr(value, "tolist") and not isinstance(value, type) and type(value).__module__ in ("numpy", "torch"):
        return json_ready(value.tolist())
    return value


def dtype_to_str(d):
    """Transformers' dict_dtype_to_str: a torch dtype under a `dtype` key (at any depth) is written as its name."""
    if d.get("dtype") is not None and not isinstance(d["dtype"], str):
        d["dtype"] = str(d["dtype"]).split(".")[1]
    for value in d.values():
        if isinstance(value, dict):
            dtype_to_str(value)


def default_generation_params():
    """What generate() uses for fields neither the user nor the model's generation_config set."""
    return {
        "max_length": 20, "min_length": 0, "do_sample": False, "use_cache": True, "early_stopping": False,
        "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0,
        "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
        "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "num_return_sequences": 1,
        "output_scores": False, "return_dict_in_generate": False, "forced_bos_token_id": None,
        "forced_eos_token_id": None, "remove_invalid_values": False, "exponential_decay_length_penalty": None,
        "suppress_tokens": None, "begin_suppress_tokens": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
        "encoder_repetition_penalty": 1.0, "num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant",
        "assistant_confidence_threshold": 0.4, "assistant_lookbehind": 10, "target_lookbehind": 10,
        "num_beam_groups": 1, "diversity_penalty": 0.0,
    }


def _should_warn(outer, inner, user_set):
    """Transformers warns about a conflicting pair unless only the outer flag was set by the caller."""
    outer_set = user_set is not None and outer in user_set
    inner_set = user_set is not None and inner in user_set
    return not (outer_set and not inner_set)


# Lengths, counts and token ids that must be integers when set (num_beams and token id lists: where they are used).
# A whole float (3.0, as a JSON writer may put it) is taken as its integer, as Transformers (torch) takes it; the
# minimum lengths are left to their own check, whose ValueError Transformers raises for any float.
INTEGER_FIELDS = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_return_sequences",
                  "pad_token_id", "bos_token_id", "forced_bos_token_id", "decoder_start_token_id")
MIN_LENGTH_FIELDS = ("min_length", "min_new_tokens")


# Settings that must be numbers when set: Transformers fails comparing or converting them ("'<' not supported
# between instances of 'str' and 'float'", "could not convert string to float"), without naming the setting.
# temperature, top_k and the two repetition penalties are not here: Transformers' own checks name them (a
# ValueError), and so do ours where they are used (generation/utils.py).
NUMBER_FIELDS = ("top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "length_penalty",
                 "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "max_time")


class GenerationConfig:
    """The parameters of generate(), with Transformers' names; unknown keys are kept as attributes."""

    extra_output_flags = EXTRA_OUTPUT_FLAGS

    def __init__(self, **kwargs):
        user_set = set(kwargs)
        for key in FIELDS:
            setattr(self, key, kwargs.pop(key, None))
        self.watermarking_config = watermarking_config(self.watermarking_config)
        if self.continuous_batching_config is not None:
            warnings.warn("Passing ContinuousBatchingConfig through GenerationConfig is deprecated and will be removed "
                          "in v5.19. Please pass it separately using the continuous_batching_config kwarg.",
                          FutureWarning, stacklevel=2)
        kwargs.pop("_commit_hash", None)
        self._from_model_config = kwargs.pop("_from_model_config", None)
        self.transformers_version = kwargs.pop("transformers_version", None)
        if not self._from_model_config:
            for key, value in kwargs.items():
                setattr(self, key, value)
        elif kwargs.get("force_bos_token_to_be_generated", False):  # the legacy name in old models' config.json
            self.forced_bos_token_id = self.bos_token_id
        self.validate(user_set_attributes=user_set)

    # ------------------------------------------------------------ validation

    def validate(self, strict=False, user_set_attributes=None):
        """Raises ValueError for invalid values; warns (UserWarning) about flags that will be ignored."""
        for name in INTEGER_FIELDS:  # Transformers fails later with a TypeError comparing them ('<=' not supported)
            value = getattr(self, name, None)
            if isinstance(value, float) and value.is_integer() and name not in MIN_LENGTH_FIELDS:
                setattr(self, name, int(value))
            elif name in MIN_LENGTH_FIELDS and isinstance(value, float):
                continue
            elif value is not None and not isinstance(value, numbers.Integral):
                try:  # an integer tensor or 0-d array (pad_token_id=torch.tensor(0)), which Transformers takes
                    setattr(self, name, operator.index(value))
                except TypeError:
                    raise TypeError(f"`{name}` must be an integer, but is {value!r}") from None
        for name in NUMBER_FIELDS:
            value = getattr(self, name, None)
            if value is not None and not isinstance(value, numbers.Real):
                raise TypeError(f"`{name}` must be a number, but is {value!r}")
        decay = self.exponential_decay_length_penalty
        if decay is not None and not (isinstance(decay, (tuple, list, np.ndarray)) and len(decay) == 2
                                      and all(isinstance(v, numbers.Real) for v in decay)):
            raise TypeError(f"`exponential_decay_length_penalty` must be a pair (start_index, decay_factor), but is "
                            f"{decay!r}")
        # a tuple, not a set: an unhashable value (a list) is refused by the message below, not by hash()
        if self.early_stopping not in (None, True, False, "never"):
            raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {self.early_stopping}.")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but is {self.max_new_tokens}.")
        if self.assistant_ensemble_weight is not None and not 0.0 < self.assistant_ensemble_weight < 1.0:
            raise ValueError(f"`assistant_ensemble_weight` must be in the open interval `(0.0, 1.0)`, but is "
                             f"{self.assistant_ensemble_weight}. Use `None` for standard (lossless) speculative "
                             "decoding.")
        if self.cache_implementation is not None and self.cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"Invalid `cache_implementation` ({self.cache_implementation}). Choose one of: "
                             f"{CACHE_IMPLEMENTATIONS}")
        if self.max_cache_len is not None and self.cache_implementation not in STATIC_CACHE_IMPLEMENTATIONS:
            warnings.warn(f"`max_cache_len` is only used with static caches ({STATIC_CACHE_IMPLEMENTATIONS[:2]}); it "
                          f"will be ignored with `cache_implementation={self.cache_implementation!r}`.", UserWarning,
                          stacklevel=3)
        # a CompileConfig is Transformers' torch.compile settings: only ever that class, which generate() ignores here
        if self.compile_config is not None and type(self.compile_config).__name__ != "CompileConfig":
            raise ValueError(f"You provided `compile_config` as an instance of {type(self.compile_config)}, but it must "
                             "be an instance of `CompileConfig`.")
        if self.watermarking_config is not None:
            validate_watermarking(self.watermarking_config)
        minor = {}
        if self.pad_token_id is not None and self.pad_token_id < 0:
            minor["pad_token_id"] = (f"`pad_token_id` should be positive but got {self.pad_token_id}. This will cause "
                                     "errors when batch generating, if there is padding. Please set `pad_token_id` "
                                     "explicitly as `model.generation_config.pad_token_id=PAD_TOKEN_ID` to avoid "
                                     "errors in generation")
        if self.do_sample is not True:
            message = ("`do_sample` is not set to `True`. However, `{0}` is set to `{1}` -- this flag is only used in "
                       "sample-based generation modes. You should set `do_sample=True` or unset `{0}`.")
            unused_when = {"temperature": 1.0, "top_p": 1.0, "min_p": None, "top_h": None, "typical_p": 1.0,
                           "top_k": 50, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
            for flag, neutral in unused_when.items():
                value = getattr(self, flag)
                if value is not None and value != neutral and _should_warn("do_sample", flag, user_set_attributes):
                    minor[flag] = message.format(flag, value)
        if self.num_beams is None or self.num_beams == 1:
            message = ("`num_beams` is set to {0}. However, `{1}` is set to `{2}` -- this flag is only used in "
                       "beam-based generation modes. You should set `num_beams>1` or unset `{1}`.")
            if (self.early_stopping is not None and self.early_stopping is not False
                    and _should_warn("num_beams", "early_stopping", user_set_attributes)):
                minor["early_stopping"] = message.format(self.num_beams, "early_stopping", self.early_stopping)
            if (self.length_penalty is not None and self.length_penalty != 1.0
                    and _should_warn("num_beams", "length_penalty", user_set_attributes)):
                minor["length_penalty"] = message.format(self.num_beams, "length_penalty", self.length_penalty)
        if self.num_return_sequences is not None and self.num_return_sequences > 1:
            if self.num_beams is None or self.num_beams == 1:
                if not self.do_sample:
                    raise ValueError("Greedy methods (do_sample != True) without beam search do not support "
                                     f"`num_return_sequences` different than 1 (got {self.num_return_sequences}).")
            elif self.num_return_sequences > self.num_beams:
                raise ValueError(f"`num_return_sequences` ({self.num_return_sequences}) has to be smaller or equal to "
                                 f"`num_beams` ({self.num_beams}).")
        if self.use_cache is False:
            for name in ("cache_implementation", "cache_config"):
                if getattr(self, name) is not None:
                    minor[name] = (f"You have not set `use_cache` to `True`, but {name} is set to "
                                   f"{getattr(self, name)}.{name} will have no effect.")
        if self.return_dict_in_generate is not True:
            for flag in EXTRA_OUTPUT_FLAGS:
                if getattr(self, flag) is True:
                    minor[flag] = (f"`return_dict_in_generate` is NOT set to `True`, but `{flag}` is. When "
                                   f"`return_dict_in_generate` is not `True`, `{flag}` is ignored.")
        if self.suppress_tokens is not None:
            try:
                suppressed = set(self.suppress_tokens)
            except TypeError:
                raise TypeError(f"`suppress_tokens` must be a list of token ids, got {self.suppress_tokens!r}") from None
            for forced_attr in ("forced_bos_token_id", "forced_eos_token_id"):
                forced = getattr(self, forced_attr)
                if forced is None:
                    continue
                forced = {forced} if isinstance(forced, int) else set(forced)
                if forced and forced.issubset(suppressed):
                    raise ValueError(
                        f"Every token in `{forced_attr}` ({sorted(forced)}) is also in `suppress_tokens`. Forcing a "
                        "token while suppressing it sets all logits to `-inf` at the forcing step, which produces `nan` "
                        "probabilities and crashes generation. Remove the overlapping token(s) from either "
                        f"`{forced_attr}` or `suppress_tokens` (if you meant to prevent an early EOS token, use "
                        "`min_new_tokens` instead).")
        for argument in GENERATE_ARGUMENTS:
            if hasattr(self, argument):
                raise ValueError(f"Argument `{argument}` is not a valid argument of `GenerationConfig`. It should be "
                                 "passed to `generate()` (or a pipeline) directly.")
        if minor:
            details = "\n".join(f"- `{name}`: {issue}" for name, issue in minor.items())
            details += ("\nIf you're using a pretrained model, note that some of these attributes may be set through "
                        "the model's `generation_config.json` file.")
            if strict:
                raise ValueError("GenerationConfig is invalid: \n" + details)
            warnings.warn(f"The following generation flags are not valid and may be ignored: {list(minor)}.\n"
                          + details, UserWarning, stacklevel=3)

    # ------------------------------------------------------------ modes

    def get_generation_mode(self, assistant_model=None):
        """'greedy_search', 'sample', 'beam_search', 'beam_sample' or an unsupported mode's name."""
        if self.constraints is not None or self.force_words_ids is not None:
            return "constrained_beam_search"
        if self.num_beams is None or self.num_beams == 1:
            if self.do_sample is not True:
                if self.top_k is not None and self.top_k > 1 and self.penalty_alpha is not None and self.penalty_alpha > 0:
                    return "contrastive_search"
                mode = "greedy_search"
            else:
                mode = "sample"
        elif self.num_beam_groups is not None and self.num_beam_groups > 1:
            return "group_beam_search"
        else:
            mode = "beam_sample" if self.do_sample is True else "beam_search"
        if (assistant_model is not None or self.use_mtp or self.prompt_lookup_num_tokens is not None
                or self.assistant_early_exit is not None):
            if mode in ("greedy_search", "sample"):
                return "assisted_generation"
            warnings.warn("You've set `assistant_model` or `use_mtp`, which triggers assisted generate. Currently, "
                          "assisted generate is only supported with Greedy Search and Sample. However, the base "
                          f"decoding mode (based on current flags) is {mode} -- some of the set flags will be ignored.",
                          UserWarning, stacklevel=4)
        if self.dola_layers is not None and mode in ("greedy_search", "sample"):
            return "dola_generation"
        return mode

    # ------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        return_unused = kwargs.pop("return_unused_kwargs", False)
        kwargs.pop("_from_auto", None)  # Transformers' telemetry flags, never attributes
        kwargs.pop("_from_pipeline", None)
        config = cls(**{**config_dict, **kwargs})
        # without kwargs update() would only validate again: Transformers logs that second warning once, we skip it
        unused = config.update(**kwargs) if kwargs else {}
        return (config, unused) if return_unused else config

    @classmethod
    def from_pretrained(cls, pretrained_model_name, config_file_name=None, **kwargs):
        """Reads generation_config.json (or config_file_name) from a directory or a Hub id (the keywords
        revision, cache_dir, local_files_only, token, subfolder, force_download and proxies as in Transformers)."""
        file_name = config_file_name or GENERATION_CONFIG_NAME
        directory = resolve_directory(pretrained_model_name, [(file_name,)], **pop_hub_kwargs(kwargs))
        path = os.path.join(directory, file_name)
        if not os.path.isfile(path):
            raise OSError(f"{path} does not exist")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError):  # Transformers' OSError, which a model load falls back from
            raise OSError(f"It looks like the config file at '{path}' is not a valid JSON file.") from None
        # json raises a bare ValueError for an integer of over 4300 digits (Transformers lets it through) and
        # RecursionError for deep nesting (Transformers crashes)
        except (ValueError, RecursionError):
            raise ValueError(f"{path} is not valid JSON: an integer of over 4300 digits or nesting too deep") from None
        if not isinstance(data, dict):
            raise OSError(f"{path} must hold a JSON object")
        if kwargs.pop("_from_model_config", False):
            return cls.from_model_config(data)
        loaded = cls.from_dict(data, **kwargs)
        config = loaded[0] if kwargs.get("return_unused_kwargs") else loaded
        config._original_object_hash = hash(config)  # save_pretrained is lenient with what it was loaded as
        return loaded

    @classmethod
    def from_model_config(cls, model_config):
        """The generation parameters a model's config carries (bos/eos/pad ids, use_cache, ...)."""
        config_dict = model_config if isinstance(model_config, dict) else model_config.to_dict()
        config_dict = {k: v for k, v in config_dict.items() if v is not None and k != "_from_model_config"}
        config = cls.from_dict(config_dict, _from_model_config=True)
        decoder = config_dict
        if isinstance(model_config, dict):
            for name in ("decoder", "generator", "text_config"):
                if model_config.get(name):
                    decoder = model_config[name]
                    break
        default = cls()
        for attr in config.to_dict():
            if attr in decoder and getattr(config, attr, None) == getattr(default, attr, None):
                setattr(config, attr, decoder[attr])
        if not config.return_dict_in_generate and any(getattr(config, f, False) for f in EXTRA_OUTPUT_FLAGS):
            config.return_dict_in_generate = True
        config._original_object_hash = hash(config)
        return config

    def update(self, defaults_only=False, allow_custom_entries=False, **kwargs):
        """Sets the given attributes that exist (only unset ones with defaults_only); returns the others."""
        used = []
        for key, value in kwargs.items():
            if allow_custom_entries and not hasattr(self, key):
                setattr(self, key, value)
                used.append(key)
            elif hasattr(self, key) and (not defaults_only or getattr(self, key) is None):
                setattr(self, key, watermarking_config(value) if key == "watermarking_config" else value)
                used.append(key)
        self.validate(user_set_attributes=set(used))
        return {key: value for key, value in kwargs.items() if key not in used}

    # ------------------------------------------------------------ serialisation

    def to_dict(self):
        output = copy.deepcopy({k: v for k, v in vars(self).items() if k not in ("_original_object_hash", "_mask_length")})
        output["transformers_version"] = VERSION
        dtype_to_str(output)
        return output

    def to_diff_dict(self):
        default = GenerationConfig().to_dict()
        return {k: v for k, v in self.to_dict().items()
                if k not in default or k == "transformers_version" or v != default[k]}

    def to_json_string(self, use_diff=True, ignore_metadata=False, keys_to_pop=None):
        data = self.to_diff_dict() if use_diff else self.to_dict()
        for key in keys_to_pop or ():
            data.pop(key, None)
        if ignore_metadata:
            for key in METADATA_FIELDS:
                data.pop(key, None)
        return json.dumps(json_ready(data), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path, use_diff=True, keys_to_pop=None):
        text = self.to_json_string(use_diff=use_diff, keys_to_pop=keys_to_pop)  # an error leaves no file
        with open(json_file_path, "w", encoding="utf-8") as f:
            f.write(text)

    def save_pretrained(self, save_directory, config_file_name=None, push_to_hub=False, **kwargs):
        if push_to_hub:
            raise NotImplementedError("GenerationConfig.save_pretrained(push_to_hub=True) is not supported by nemotron_c")
        # Transformers refuses to save a config with issues, except one unchanged since it was loaded, which it only
        # warns about: a published generation_config.json (temperature without do_sample) can always be saved back
        was_modified = getattr(self, "_original_object_hash", None) != hash(self)
        try:
            self.validate(strict=was_modified)
        except ValueError as exc:
            raise ValueError(str(exc) + "\n\nFix these issues to save the configuration.") from None
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, config_file_name or GENERATION_CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(self.to_json_string(use_diff=True, keys_to_pop=["compile_config"]))

    def __eq__(self, other):
        if not isinstance(other, GenerationConfig):
            return False
        return (self.to_json_string(use_diff=False, ignore_metadata=True)
                == other.to_json_string(use_diff=False, ignore_metadata=True))

    def __hash__(self):
        return hash(self.to_json_string(ignore_metadata=True))

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string(ignore_metadata=True)}"
