"""LoRA adapters (PEFT's format): adapter_config.json and adapter_model.safetensors (or adapter_model.bin), merged
into the base checkpoint's tensors at load.

Transformers (with peft installed) loads such a folder by loading the base model that adapter_config.json names
(or the folder itself when it also holds a config.json) and wrapping the adapted layers, which then compute
base(x) + scaling * B(A(x)). Merged, the layer is one matrix W + scaling * B @ A: the same function, summed in
another order. The merge is done in float64 and rounded once to float32, and a merged matrix stays float32 unless
the model is given another dtype: the model then equals Transformers' adapted float32 model within float32
rounding, as an unadapted one does.

The adapter file's names, with PEFT's "base_model.model." in front of the model's own names:
    <module>.lora_A.weight (r, in), <module>.lora_B.weight (out, r)   a Linear's update, B @ A
    <module>.lora_embedding_A (r, vocab), <module>.lora_embedding_B (hidden, r)   an Embedding's, (B @ A)^T
    <module>.base_layer.weight   the layer's own weight, saved beside its update (PEFT saves the embedding and the
                                 head so when it adapts them): it replaces the base's
    <module>.weight, .bias       a module of modules_to_save (a task head trained whole): replaces the base's
scaling = lora_alpha / r (use_rslora: lora_alpha / sqrt(r)), r and lora_alpha taken from rank_pattern and
alpha_pattern when a pattern matches the module's name, as PEFT matches them.
"""
import json
import math
import os
import re
import warnings

import numpy as np

from .hub import pinned_to_snapshot, resolve_directory
from .reading import read_torch_bin
from .safetensors import read_safetensors

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAMES = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT's and Transformers' order
PEFT_PREFIX = "base_model.model."

# adapter_config.json settings that change what the adapter computes beyond the merge above: refused by name
# (value -> whether it is the harmless default)
UNSUPPORTED_SETTINGS = {
    "use_dora": lambda v: not v,
    "lora_bias": lambda v: not v,
    "bias": lambda v: v in (None, "none"),
    "target_parameters": lambda v: not v,
    "trainable_token_indices": lambda v: not v,
    "layer_replication": lambda v: not v,
    "use_qalora": lambda v: not v,
    "ensure_weight_tying": lambda v: not v,
    "alora_invocation_tokens": lambda v: not v,
    "use_bdlora": lambda v: not v,
}


class AdapterFormatError(ValueError):
    """A malformed adapter folder."""


def find_adapter(name_or_path, hub_kwargs):
    """The directory of the adapter `name_or_path` names (a local folder or a Hub id, as Transformers' adapter
    lookup), with its weights fetched, or None when it holds no adapter_config.json."""
    name = os.fspath(name_or_path)
    subfolder = hub_kwargs.get("subfolder") or ""
    if os.path.isdir(name):
        directory = os.path.join(name, subfolder) if subfolder else name
        return directory if os.path.isfile(os.path.join(directory, ADAPTER_CONFIG_NAME)) else None
    directory = resolve_directory(name, (), (ADAPTER_CONFIG_NAME,), **hub_kwargs)
    if directory is None or not os.path.isfile(os.path.join(directory, ADAPTER_CONFIG_NAME)):
        return None
    return resolve_directory(name, (ADAPTER_WEIGHTS_NAMES,), **pinned_to_snapshot(hub_kwargs, name, directory))


def read_adapter_config(directory):
    """adapter_config.json as a dict, checked: a LoRA adapter whose settings the merge reproduces."""
    path = os.path.join(directory, ADAPTER_CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # json: RecursionError for deep nesting
        raise AdapterFormatError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{path} must hold a JSON object")
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise NotImplementedError(f"{path}: peft_type {peft_type!r} is not supported; nemotron_c merges LoRA "
                                  "adapters (peft_type 'LORA') only")
    for key, harmless in UNSUPPORTED_SETTINGS.items():
        if not harmless(config.get(key)):
            raise NotImplementedError(f"{path}: {key}={config[key]!r} is not supported by nemotron_c's LoRA merge")
    # PEFT sizes its matrices with r (a float fails in torch) and scales by any lora_alpha: 0 or negative too
    def rank(value):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def alpha(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    for key, valid, what in (("r", rank, "a positive integer"), ("lora_alpha", alpha, "a finite number")):
        if not valid(config.get(key)):
            raise AdapterFormatError(f"{path}: {key} must be {what}, got {config.get(key)!r}")
    for key, valid, what in (("rank_pattern", rank, "positive integers"), ("alpha_pattern", alpha, "finite numbers")):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict) or not all(isinstance(k, str) and valid(v) for k, v in patterns.items()):
            raise AdapterFormatError(f"{path}: {key} must map module name patterns to {what}, got {patterns!r}")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise AdapterFormatError(f"{path}: {key} holds the pattern {pattern!r}, not a regular expression: "
                                         f"{e}") from None
    check_targeting(path, config)
    base = config.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise AdapterFormatError(f"{path}: base_model_name_or_path must be a string, got {base!r}")
    return config


def check_targeting(path, config):
    """The settings that choose the modules PEFT wraps (see targeted) have the types PEFT's matching takes, and
    their patterns are regular expressions."""
    def strings(value):
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)

    def compiles(pattern):
        try:
            re.compile(pattern)
        except re.error as e:
            raise AdapterFormatError(f"{path}: the pattern {pattern!r} is not a regular expression: {e}") from None

    if config.get("target_modules") is None:  # PEFT's default targets know no Nemotron: it raises a ValueError too
        raise AdapterFormatError(f"{path} names no target_modules")
    for key in ("target_modules", "exclude_modules", "modules_to_save", "layers_pattern"):
        value = config.get(key)
        if not (value is None or isinstance(value, str) or strings(value)):
            raise AdapterFormatError(f"{path}: {key} must be a string or a list of strings, got {value!r}")
        for pattern in [value] if isinstance(value, str) else value or ():
            compiles(pattern)
    layers = config.get("layers_to_transform")
    if layers is not None and not (isinstance(layers, int) and not isinstance(layers, bool)) and not (
            isinstance(layers, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in layers)):
        raise AdapterFormatError(f"{path}: layers_to_transform must be an integer or a list of integers, got "
                                 f"{layers!r}")


def targeted(config, module):
    """Whether PEFT wraps `module` (the base model's name, as model.layers.0.self_attn.q_proj) in a LoRA layer, as
    its check_target_module_exists decides: only those take the file's LoRA and base_layer tensors.
    "all-linear" is every Linear but the causal LM's head (and a SEQ_CLS adapter's score): in Nemotron, every module
    a LoRA can adapt but the embedding and those."""
    exclude = config.get("exclude_modules")
    if isinstance(exclude, str):
        if re.fullmatch(exclude, module):
            return False
    elif exclude and (module in exclude or any(module.endswith(f".{e}") for e in exclude)):
        return False
    if any(re.match(rf"(^|.*\.){saved}($|\..*)", module) for saved in config.get("modules_to_save") or ()):
        return False
    target = config["target_modules"]
    if isinstance(target, str):
        if target.lower() == "all-linear":
            heads = ("lm_head", "score") if config.get("task_type") == "SEQ_CLS" else ("lm_head",)
            return module not in heads and not module.endswith(".embed_tokens") and module != "embed_tokens"
        return re.fullmatch(target, module) is not None
    if module in target:
        return True
    found = any(module.endswith(f".{t}") for t in target)
    layers = config.get("layers_to_transform")
    if not found or layers is None or layers == []:
        return found
    pattern = config.get("layers_pattern")
    if not pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", module)
    else:
        for p in [pattern] if isinstance(pattern, str) else pattern:
            match = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", module)
            if match is not None:
                break
    if match is None:
        return False
    index = int(match["idx"])
    return index == layers if isinstance(layers, int) else index in layers


def read_adapter_weights(directory):
    """{name without PEFT's prefix: StoredTensor} of the adapter's weight file."""
    for name in ADAPTER_WEIGHTS_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            tensors = read_safetensors(path) if name.endswith(".safetensors") else read_torch_bin(path)
            break
    else:
        raise FileNotFoundError(f"no {' or '.join(ADAPTER_WEIGHTS_NAMES)} in the adapter folder {directory}")
    return {name.removeprefix(PEFT_PREFIX): tensor for name, tensor in tensors.items()}


def pattern_value(patterns, module, default):
    """PEFT's choice in rank_pattern / alpha_pattern: the first pattern naming the end of the module's name."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def float64(tensor):
    return np.asarray(tensor.array("float32") if hasattr(tensor, "array") else tensor, dtype=np.float64)


def merge_adapter(tensors, adapter, config, backbone_prefix):
    """The checkpoint's tensors with the adapter merged in: the adapted ones replaced by float32 arrays.

    tensors: {name: stored tensor} of the base checkpoint; adapter: read_adapter_weights's; config: its
    read_adapter_config; backbone_prefix: where the checkpoint keeps its decoder ("model.", "transformer." or ""),
    for an adapter trained on a model whose decoder was named otherwise. Returns (tensors, names of the tensors the
    adapter changed)."""
    tensors = dict(tensors)
    updates, replacements = {}, {}  # module -> {"A": ..., "B": ..., "embedding": bool}; tensor name -> tensor
    ignored = []
    for name, tensor in adapter.items():
        match = re.fullmatch(r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)", name)
        wrapped = re.fullmatch(r"(.+)\.base_layer\..+", name)
        if (match or wrapped) and not targeted(config, (match or wrapped).group(1)):
            ignored.append(name)  # Transformers: an unexpected key of its load report, left out
        elif match:
            module, part = match.groups()
            entry = updates.setdefault(module, {})
            entry["embedding" if "embedding" in part else "linear"] = True
            entry["A" if "_A" in part else "B"] = (name, tensor)
        elif ".lora_" in name:
            raise AdapterFormatError(f"adapter tensor {name!r}: not a LoRA weight nemotron_c knows "
                                     "(lora_A.weight, lora_B.weight, lora_embedding_A, lora_embedding_B)")
        else:
            replacements[name.replace(".base_layer.", ".")] = (name, tensor)

    def base_name(name):
        """The checkpoint's name of a tensor the adapter names."""
        if name in tensors:
            return name
        for prefix in ("model.", "transformer.", ""):
            if name.startswith(prefix) and backbone_prefix + name[len(prefix):] in tensors:
                return backbone_prefix + name[len(prefix):]
        raise AdapterFormatError(f"adapter tensor {name!r} names no tensor of the base checkpoint")

    if ignored:
        warnings.warn(f"the adapter's tensors {', '.join(ignored)} belong to modules not among the modules "
                      "adapter_config.json targets (target_modules, exclude_modules, layers_to_transform, "
                      "modules_to_save): left out, as Transformers leaves them", UserWarning, stacklevel=4)
    changed = set()
    for name, (adapter_name, tensor) in replacements.items():
        target = base_name(name)
        if tuple(tensor.shape) != tuple(tensors[target].shape):
            raise AdapterFormatError(f"adapter tensor {adapter_name!r} has shape {tuple(tensor.shape)}, the base "
                                     f"checkpoint's {target!r} {tuple(tensors[target].shape)}")
        tensors[target] = np.ascontiguousarray(float64(tensor), dtype=np.float32)
        changed.add(target)
    r, alpha = config["r"], config["lora_alpha"]
    for module, entry in sorted(updates.items()):
        if "A" not in entry or "B" not in entry or len(entry) != 3:
            raise AdapterFormatError(f"adapter module {module!r} lacks its lora_A or lora_B (or mixes a Linear's "
                                     "and an Embedding's)")
        target = base_name(module + ".weight")
        (a_name, a), (b_name, b) = entry["A"], entry["B"]
        rank = pattern_value(config.get("rank_pattern") or {}, module, r)
        shape = tuple(tensors[target].shape)
        if entry.get("embedding"):  # A (r, vocab), B (hidden, r): the update (B @ A)^T is (vocab, hidden)
            expected = ((rank, shape[0]), (shape[1], rank))
        else:  # A (r, in), B (out, r)
            expected = ((rank, shape[1]), (shape[0], rank))
        if (tuple(a.shape), tuple(b.shape)) != expected:
            raise AdapterFormatError(f"adapter tensors {a_name!r} {tuple(a.shape)} and {b_name!r} "
                                     f"{tuple(b.shape)} do not fit {target!r} {shape} with rank {rank} "
                                     f"(r / rank_pattern) ")
        module_alpha = pattern_value(config.get("alpha_pattern") or {}, module, alpha)
        scaling = module_alpha / math.sqrt(rank) if config.get("use_rslora") else module_alpha / rank
        with np.errstate(over="ignore", invalid="ignore"):  # inf, NaN and values past float32's range: refused below
            update = float64(b) @ float64(a)
            if entry.get("embedding"):
                update = update.T
            merged = np.ascontiguousarray(float64(tensors[target]) + scaling * update, dtype=np.float32)
        if not np.all(np.isfinite(merged)):
            raise AdapterFormatError(f"merging the adapter into {target!r} gives values that are not finite")
        tensors[target] = merged
        changed.add(target)
    return tensors, changed
