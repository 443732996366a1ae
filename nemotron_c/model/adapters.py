"""The PEFT adapter methods of Transformers' models (its PeftAdapterMixin, with peft installed): load_adapter,
set_adapter, disable_adapters, enable_adapters, active_adapters, delete_adapter, get_adapter_state_dict.

Transformers wraps each adapted layer and adds the active adapters' updates at every call. Here the active
adapters are merged into the weights (checkpoint/adapters.py's merge_adapter, in float64): every change of what is
active rebuilds the core model from the base tensors it was loaded from (kept mapped, not copied) with the active
adapters merged, in the dtype, threads, kernel set and cache dtype of the model (int8 and int4 quantize the merged
weights again). A switch therefore costs about a load: the time to merge the adapted matrices and to convert or
quantize the weights the core holds, and the memory of the new weights while the old ones are still held. The
forward passes cost nothing more than the base model's. Caches made before a switch belong to the weights they
were computed with and are refused afterwards ("made before this model's weights changed").

The rules are Transformers' (5.24 with peft 0.21): the first adapter is named "default"; a loaded adapter becomes
the active one; set_adapter takes a name or a list of names (their updates add up); disable_adapters runs the base
model until enable_adapters, without changing which adapters are active (set_adapter and load_adapter leave the
model disabled); deleting the active adapter makes the first remaining name (sorted) active, with a warning; with
no adapter loaded every method but load_adapter raises ValueError("No adapter loaded. Please load an adapter
first.").
"""
import collections
import os
import warnings

import numpy as np

from ..checkpoint.adapters import (ADAPTER_CONFIG_NAME, find_adapter, float64, merge_adapter, read_adapter_config,
                                   read_adapter_weights)
from ..checkpoint.hub import HUB_KWARGS
from .configuration import CONFIG_NAME
from .weights import find_backbone_prefix

DEFAULT_ADAPTER_NAME = "default"
NO_ADAPTER = "No adapter loaded. Please load an adapter first."

# an adapter as loaded: its folder (what pickling records), adapter_config.json and {name: stored tensor}
LoadedAdapter = collections.namedtuple("LoadedAdapter", "directory config weights")
# what the core model is built from: the active adapters' names (in order) and whether they are enabled
AdapterState = collections.namedtuple("AdapterState", "adapters active enabled")


def read_adapter(directory):
    """The LoRA adapter of a local folder, its config checked and its weights mapped."""
    return LoadedAdapter(directory, read_adapter_config(directory), read_adapter_weights(directory))


def adapter_base(name, directory, config):
    """The checkpoint a LoRA adapter found at `name` (in `directory`, with adapter_config.json `config`) is merged
    into, as Transformers with peft picks it: the folder itself when it holds a config.json too, else the base model
    adapter_config.json names."""
    if os.path.isdir(os.fspath(name)) and os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        return name
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{os.path.join(directory, ADAPTER_CONFIG_NAME)} names no base_model_name_or_path to load "
                         "the adapter onto")
    return base


def repeated_whole_tensors(adapters):
    """[the names of each adapter's tensors to leave out of its merge]: the tensors it replaces whole
    (modules_to_save, saved base layers) that an adapter before it in the list replaces with the same values, which
    its merge would otherwise put back over the earlier adapter's update. The same tensor replaced with other values
    by two adapters raises ValueError (PEFT refuses two active modules_to_save too)."""
    seen, repeated = {}, []
    for adapter in adapters:
        names = set()
        for name, tensor in adapter.weights.items():
            if ".lora_" in name:
                continue
            target = name.replace(".base_layer.", ".")
            if target not in seen:
                seen[target] = tensor
            elif np.array_equal(float64(seen[target]), float64(tensor)):
                names.add(name)
            else:
                raise ValueError(f"two of the adapters set active replace {target!r} (modules_to_save or a saved base "
                                 "layer) with other values: set one of them at a time")
        repeated.append(names)
    return repeated


def merged_tensors(tensors, adapters, has_lm_head, tied, base_model_prefix):
    """(tensors with `adapters` merged one after the other, whether the embedding and head stay tied). With tied
    embeddings an update reaches only the layer it adapts, the embedding or the head (as PEFT's wrapped layers
    compute): a merge that changes either unties them."""
    if not adapters:
        return tensors, tied
    prefix = find_backbone_prefix(tensors, base_model_prefix)
    embedding = prefix + "embed_tokens.weight"
    shared = has_lm_head and tied  # one matrix for the embedding and the head
    if shared and "lm_head.weight" not in tensors:  # the head is the embedding until an adapter changes one
        tensors = {**tensors, "lm_head.weight": tensors[embedding]}
    changed = set()
    kept = [{name: tensor for name, tensor in adapter.weights.items() if name not in repeated}
            for adapter, repeated in zip(adapters, repeated_whole_tensors(adapters))]
    # the whole tensors (saved base layers, modules saved whole) first, then every adapter's LoRA update on top:
    # Transformers sums the updates over the layer loaded, so an adapter's saved base layer must not replace an
    # update another adapter made before it
    for lora in (False, True):
        for adapter, weights in zip(adapters, kept):
            part = {name: tensor for name, tensor in weights.items() if (".lora_" in name) == lora}
            if part:
                tensors, merged = merge_adapter(tensors, part, adapter.config, prefix)
                changed |= merged
    return tensors, tied and not (shared and changed & {embedding, "lm_head.weight"})


class PeftAdapterMixin:
    """Transformers' adapter methods over merged weights (see the module's docstring). The model class provides
    _rebuild(tensors, tied), which builds its core model from tensors, and keeps _base_tensors and _base_tied."""

    _adapter_state = AdapterState({}, [], True)

    @property
    def peft_config(self):
        """{adapter name: its adapter_config.json as a dict} (Transformers holds peft's LoraConfig objects);
        absent (AttributeError) while no adapter is loaded, as in Transformers."""
        if not self._adapter_state.adapters:
            raise AttributeError(f"{type(self).__name__} has no peft_config: no adapter is loaded")
        return {name: dict(adapter.config) for name, adapter in self._adapter_state.adapters.items()}

    def _check_loaded(self):
        if not self._adapter_state.adapters:
            raise ValueError(NO_ADAPTER)

    def load_adapter(self, peft_model_id=None, adapter_name=None, peft_config=None, adapter_state_dict=None,
                     low_cpu_mem_usage=False, is_trainable=False, hotswap="auto", local_files_only=False,
                     adapter_kwargs=None, **kwargs):
        """Loads the LoRA adapter of a folder or Hub id (adapter_config.json and adapter_model.safetensors or .bin)
        under `adapter_name` (default "default", which must not be taken unless hotswap=True replaces that
        adapter's weights) and makes it the active adapter: the model is rebuilt with it merged (see the module's
        docstring for the cost). Hub keywords (revision, cache_dir, token, subfolder, ...) as in from_pretrained,
        directly or in adapter_kwargs. peft_config / adapter_state_dict (adapters built in memory with peft) and
        is_trainable=True are not supported (NotImplementedError). Returns None."""
        if peft_config is not None or adapter_state_dict is not None:
            raise NotImplementedError("load_adapter(peft_config=..., adapter_state_dict=...) needs torch and peft; "
                                      "nemotron_c loads adapters from their folder or Hub id (save them with "
                                      "peft's save_pretrained)")
        if is_trainable:
            raise NotImplementedError("nemotron_c runs inference only: is_trainable=True is not available")
        if peft_model_id is None:
            raise ValueError("You should either pass a `peft_model_id` or a `peft_config` and `adapter_state_dict` "
                             "to load an adapter.")
        hub_kwargs = {**kwargs, **(adapter_kwargs or {})}
        unknown = set(hub_kwargs) - set(HUB_KWARGS)
        if unknown:
            raise TypeError(f"load_adapter got unexpected keyword argument(s) {', '.join(sorted(unknown))} (it takes "
                            f"the Hub keywords {', '.join(HUB_KWARGS)})")
        if local_files_only:
            hub_kwargs["local_files_only"] = True
        name = DEFAULT_ADAPTER_NAME if adapter_name is None else adapter_name
        if not isinstance(name, str):
            raise TypeError(f"adapter_name must be a str, not {type(name).__name__}")
        state = self._adapter_state
        hotswap = False if hotswap == "auto" else hotswap  # "auto" hotswaps only after enable_peft_hotswap
        if hotswap and name not in state.adapters:
            raise ValueError("To hotswap an adapter, there must already be an existing adapter with the same adapter "
                             "name.")
        if not hotswap and name in state.adapters:
            raise ValueError(f"Adapter with name {name} already exists. Please use a different name.")
        directory = find_adapter(peft_model_id, hub_kwargs)
        if directory is None:
            raise ValueError(f"adapter model file not found in {peft_model_id}. Make sure you are passing the "
                             "correct path to the adapter model.")
        active = state.active if hotswap else [name]
        self._switch(AdapterState({**state.adapters, name: read_adapter(directory)}, active, state.enabled),
                     check=[name])

    def set_adapter(self, adapter_name):
        """Makes `adapter_name` (a name, or a list of names whose updates add up) the active adapter(s), rebuilding
        the model with them merged unless adapters are disabled. Two active adapters may not replace the same tensor
        with different values (two task heads of modules_to_save)."""
        state = self._adapter_state
        self._check_loaded()
        if isinstance(adapter_name, list):
            missing = [name for name in adapter_name if name not in state.adapters]
            if missing:
                raise ValueError(f"Following adapter(s) could not be found: {', '.join(map(str, missing))}. Make sure "
                                 "you are passing the correct adapter name(s). current loaded adapters are: "
                                 f"{list(state.adapters)}")
            if not adapter_name:
                raise ValueError("Please specify at least one adapter to set")
            active = list(dict.fromkeys(adapter_name))
        elif adapter_name not in state.adapters:
            raise ValueError(f"Adapter with name {adapter_name} not found. Please pass the correct adapter name among "
                             f"{list(state.adapters)}")
        else:
            active = [adapter_name]
        self._switch(state._replace(active=active))

    def disable_adapters(self):
        """Runs the base model (rebuilt without the adapters; tied embeddings tied again) until enable_adapters."""
        self._check_loaded()
        self._switch(self._adapter_state._replace(enabled=False))

    def enable_adapters(self):
        """Merges the active adapters again after disable_adapters (a task head of modules_to_save included, which
        Transformers 5.24 leaves disabled)."""
        self._check_loaded()
        self._switch(self._adapter_state._replace(enabled=True))

    def active_adapters(self):
        """The names of the active adapters (a list), whether or not adapters are disabled."""
        self._check_loaded()
        return list(self._adapter_state.active)

    def delete_adapter(self, adapter_names):
        """Forgets the adapter(s) named (a name or a list). Deleting an active one leaves the other active ones, else
        makes the first remaining adapter (by name) active, with a warning, else none: the base model."""
        self._check_loaded()
        state = self._adapter_state
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        missing = [name for name in names if name not in state.adapters]
        if missing:
            raise ValueError(f"The following adapter(s) are not present and cannot be deleted: "
                             f"{', '.join(map(str, missing))}")
        adapters = {name: adapter for name, adapter in state.adapters.items() if name not in names}
        active = [name for name in state.active if name not in names]
        if not active and adapters:
            active = [sorted(adapters)[0]]
            warnings.warn(f"Adapter {', '.join(n for n in state.active if n in names)} was active which is now "
                          f"deleted. Setting active adapter to {active[0]}.", UserWarning, stacklevel=2)
        self._switch(AdapterState(adapters, active, state.enabled if adapters else True))

    def get_adapter_state_dict(self, adapter_name=None, state_dict=None):
        """{name: float32 NumPy array} of the adapter's weights (default: the first active adapter's) under the
        names Transformers gives them (those of its adapter_model file without PEFT's "base_model.model."): the
        lora_A / lora_B matrices and the whole tensors it saves. An unknown name raises KeyError, as there."""
        self._check_loaded()
        if state_dict is not None:
            raise NotImplementedError("get_adapter_state_dict(state_dict=...) takes torch tensors: nemotron_c has "
                                      "no torch state_dict")
        state = self._adapter_state
        name = state.active[0] if adapter_name is None else adapter_name
        if name not in state.adapters:
            raise KeyError(f"no adapter named {name!r} (loaded: {list(state.adapters)})")
        return {key: tensor.array("float32") if hasattr(tensor, "array") else tensor
                for key, tensor in state.adapters[name].weights.items()}

    def _restore_adapters(self, directories, active, enabled):
        """Reloads adapters from their folders ({name: directory}) and rebuilds once (unpickling)."""
        adapters = {name: read_adapter(directory) for name, directory in directories.items()}
        self._switch(AdapterState(adapters, list(active), enabled))

    def _switch(self, state, check=()):
        """Rebuilds the core model for `state` when what it computes changes (and merges the adapters named in
        `check` even when disabled, so that a bad adapter is refused when it is loaded); on any error the model is
        left as it was."""
        old = self._adapter_state
        repeated_whole_tensors([state.adapters[name] for name in state.active])  # refused even while disabled
        for name in check:
            if not state.enabled or name not in state.active:
                merged_tensors(self._base_tensors, [state.adapters[name]], self.has_lm_head, self._base_tied,
                               self.base_model_prefix)
        merged = [state.adapters[name] for name in state.active] if state.enabled else []
        previous = [old.adapters[name] for name in old.active] if old.enabled else []
        if [id(a) for a in merged] != [id(a) for a in previous]:
            tensors, tied = merged_tensors(self._base_tensors, merged, self.has_lm_head, self._base_tied,
                                           self.base_model_prefix)
            self._rebuild(tensors, tied)
        self._adapter_state = state

    def _pickled_adapters(self):
        """What unpickling needs to load the adapters again: ({name: directory}, active, enabled), or None."""
        state = self._adapter_state
        if not state.adapters:
            return None
        return ({name: os.path.abspath(adapter.directory) for name, adapter in state.adapters.items()}, state.active,
                state.enabled)
