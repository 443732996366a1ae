"""generate(): Transformers' decoding loop over the C forward pass.

This first version does greedy search with the KV cache, max_length / max_new_tokens, eos and pad
handling and left-padded batches, exactly as Transformers' `generate` does them.
"""
import copy
import json
import os
import warnings

import numpy as np

from .inputs import as_attention_mask, as_token_ids, to_numpy

GENERATION_CONFIG_NAME = "generation_config.json"

# As in Transformers 5, a GenerationConfig leaves unset what the user did not set; generate() then
# applies these defaults.
GENERATION_FIELDS = (
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "do_sample", "num_beams", "temperature",
    "top_k", "top_p", "num_return_sequences", "bos_token_id", "eos_token_id", "pad_token_id", "use_cache",
    "output_scores", "output_logits", "return_dict_in_generate",
)
DEFAULT_NEW_TOKENS = 20  # what Transformers generates when no length is given

class GenerationConfig:
    """The generation parameters with Transformers' names and defaults; unknown keys are kept."""

    def __init__(self, **kwargs):
        for key in GENERATION_FIELDS:
            setattr(self, key, copy.deepcopy(kwargs.pop(key, None)))
        kwargs.pop("transformers_version", None)
        for key, value in kwargs.items():
            setattr(self, key, value)

    @classmethod
    def from_model_config(cls, model_config):
        return cls(bos_token_id=model_config.bos_token_id, eos_token_id=model_config.eos_token_id,
                   pad_token_id=model_config.pad_token_id)

    @classmethod
    def from_pretrained(cls, directory):
        path = os.path.join(os.fspath(directory), GENERATION_CONFIG_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
        return cls(**data)

    def update(self, **kwargs):
        """Sets the given attributes that exist; returns the keyword arguments that are not generation parameters."""
        unused = {}
        for key, value in kwargs.items():
            if hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def to_dict(self):
        return copy.deepcopy(vars(self))

    def __repr__(self):
        return f"GenerationConfig {json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)}"


def eos_token_list(eos_token_id):
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, (int, np.integer)):
        return [int(eos_token_id)]
    return [int(t) for t in eos_token_id]


def generate(model, inputs=None, generation_config=None, attention_mask=None, **kwargs):
    """Greedy decoding equal to Transformers' `generate` (the features of this first version only)."""
    config = copy.deepcopy(generation_config or model.generation_config)
    if "input_ids" in kwargs:
        if inputs is not None:
            raise ValueError("give the prompt as `inputs` or `input_ids`, not both")
        inputs = kwargs.pop("input_ids")
    model_kwargs = config.update(**kwargs)
    model_kwargs.pop("use_cache", None)
    if model_kwargs:
        raise ValueError(
            f"The following `model_kwargs` are not used by the model: {sorted(model_kwargs)} "
            "(note: typos in the generate arguments will also show up in this list)"
        )
    if inputs is None:
        raise ValueError("generate needs input_ids (a prompt)")
    vocab_size = model.config.vocab_size
    input_ids = as_token_ids(inputs, vocab_size=vocab_size)
    batch_size, prompt_length = input_ids.shape

    if config.do_sample or (config.num_beams or 1) != 1 or (config.num_return_sequences or 1) != 1:
        raise NotImplementedError("only greedy decoding (do_sample=False, num_beams=1) is available so far")

    eos = eos_token_list(config.eos_token_id)
    for token in eos:
        if not 0 <= token < vocab_size:
            raise ValueError(f"eos_token_id {token} is outside the vocabulary [0, {vocab_size})")
    pad = config.pad_token_id
    if pad is None and eos:
        pad = eos[0]

    if attention_mask is None:
        mask = np.ones_like(input_ids, dtype=np.uint8)
        if config.pad_token_id is not None and np.any(input_ids == config.pad_token_id) and (
            config.pad_token_id not in eos
        ):
            mask = (input_ids != config.pad_token_id).astype(np.uint8)
    else:
        mask = as_attention_mask(attention_mask, input_ids.shape)

    if config.max_new_tokens is not None:
        if int(config.max_new_tokens) <= 0:
            raise ValueError(f"max_new_tokens must be greater than 0, but is {config.max_new_tokens}.")
        max_length = prompt_length + int(config.max_new_tokens)
    elif config.max_length is not None:
        max_length = int(config.max_length)
    else:
        warnings.warn(
            f"Using the model-agnostic default `max_length` (={prompt_length + DEFAULT_NEW_TOKENS}) to control the "
            "generation length. We recommend setting `max_new_tokens` to control the maximum length of the generation.",
            UserWarning,
        )
        max_length = min(prompt_length + DEFAULT_NEW_TOKENS, model.config.max_position_embeddings)
    if prompt_length >= max_length:
        raise ValueError(
            f"Input length of input_ids is {prompt_length}, but `max_length` is set to {max_length}. This can lead "
            "to unexpected behavior. You should consider increasing `max_length` or, better yet, setting "
            "`max_new_tokens`."
        )

    sequences = np.zeros((batch_size, max_length), dtype=np.int64)
    sequences[:, :prompt_length] = input_ids
    length = prompt_length
    unfinished = np.ones(batch_size, dtype=bool)

    # Positions from the mask, as Transformers: cumsum(mask) - 1, padding at 0.
    positions = np.cumsum(mask, axis=1, dtype=np.int64) - 1
    positions[mask == 0] = 0
    cache = None
    step_ids, step_positions, full_mask = input_ids, positions, mask
    while True:
        out = model(step_ids, attention_mask=full_mask, position_ids=step_positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        next_tokens = np.argmax(out.logits[:, -1, :], axis=-1).astype(np.int64)
        if pad is not None:
            next_tokens = np.where(unfinished, next_tokens, pad)
        sequences[:, length] = next_tokens
        length += 1
        if eos:
            unfinished &= ~np.isin(next_tokens, eos)
        if length >= max_length or not unfinished.any():
            break
        step_ids = next_tokens[:, None]
        step_positions = step_positions[:, -1:] + 1
        full_mask = np.concatenate([full_mask, np.ones((batch_size, 1), dtype=np.uint8)], axis=1)
    return sequences[:, :length]
