"""generate(): Transformers' generate() over the C decoding loop.

This module holds the policy of Transformers' GenerationMixin.generate: merging the generation config,
resolving lengths and special tokens, validating every argument with the exceptions Transformers
raises, and shaping the outputs. The loop itself (forward passes, logits processors, greedy, sampling
and beam search) runs in C (csrc/model/generate.c) with the GIL released; Python is called back
between steps only for a streamer, stop strings, stopping criteria or generate_iter().

Supported: greedy search, sampling (temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff,
eta_cutoff), beam search and beam sampling (num_beams, length_penalty, early_stopping,
num_return_sequences), sequence_bias, repetition_penalty, no_repeat_ngram_size, bad_words_ids,
min_length, min_new_tokens, forced_bos_token_id, forced_eos_token_id, remove_invalid_values,
exponential_decay_length_penalty, suppress_tokens, begin_suppress_tokens, renormalize_logits,
eos_token_id (int or list), pad_token_id, max_time, stop_strings (with tokenizer=), streamer=,
return_dict_in_generate with output_scores / output_logits / beam_indices / sequences_scores /
output_attentions / output_hidden_states, inputs_embeds (alone, or with input_ids).
logits_processor, prefix_allowed_tokens_fn and stopping_criteria run as Transformers runs them (custom.py): the
processors inside the C step, called back at their place in Transformers' order; the criteria between steps
(with beams, inside the step on its candidates, as stop strings there).
Assisted generation (prompt_lookup_num_tokens=, assistant_model=) for one prompt runs in Python over the model's
forward (assisted.py, whose docstring says what of it is not supported).
Not supported (NotImplementedError): contrastive search, group beam search, constrained beam search,
DoLa, guidance_scale, watermarking, top_h,
cache_implementation "quantized" and "paged" (the static and offloaded ones generate the tokens of ours).

Attentions and hidden states: as Transformers, per step a tuple over layers (hidden states: the embeddings
then every layer), step 0 over the prompt (the positions a cache passed in lacks), later steps over one
position (all of them with use_cache=False), with beams over the running beams of that step in their order.
The C loop does not keep them: the steps' forward passes are made again with the model's forward over the
rows as they were fed (a finished row's pad tokens too; beams rebuilt from the parent and token of each
running beam the loop records, the cache reordered as the loop's). The weights come with the default attention
too, where Transformers' SDPA gives an empty tuple per step (see README "Padded positions").

inputs_embeds: as Transformers, the embeddings run the prompt's forward pass (here in Python, before the C
loop starts from its logits) and Transformers' input_ids are empty: the result holds only the new tokens,
max_new_tokens and min_new_tokens count from zero, an explicit max_length or min_length includes the
embeddings' positions, the processors see only the new tokens and encoder_* settings are ignored with
Transformers' warning. With input_ids of another length than the embeddings, the same, the input_ids standing
where nothing stood: the processors, criteria and result see them then the new tokens, and lengths count them. The
embeddings take the positions of the attention mask, which must then cover them (of the ids' length, Transformers
applies it to the embeddings unaligned: refused unless all ones); without one, as Transformers, the last of the
ids' positions 0, 1, ... (with fewer ids than embeddings, where Transformers fails, 0, 1, ...).
One difference, on purpose: Transformers' repetition penalty skips as many leading ids as the mask has left padding
(applied to ids that are not the padded prompt); ours penalizes every id it sees.
With return_dict_in_generate the result's `cache` is a NemotronCache, as Transformers leaves its cache
(every position but the last token; with beams, in the order of the running beams). Passing it back as
cache= (or past_key_values=) with input_ids that extend those tokens prefills only the new ones.
Sampling uses our own generator: pass seed= (an int, or a numpy Generator to draw one from) to make
it reproducible. Torch's random stream cannot be reproduced, so sampled tokens match Transformers in
distribution, not draw for draw.

Streaming: streamer= takes any object with put()/end() (Transformers' protocol: the prompt ids first,
then the (rows,) new ids of each step, then end()); nemotron_c.TextStreamer and TextIteratorStreamer
print or queue the decoded text. For one prompt, model.generate_iter(...) is a plain iterator over the
new token ids (greedy or sampling).

Ctrl-C: the steps run on a worker thread while the calling thread waits with the GIL released and
checks for signals every 50 ms; on one, the forward pass stops at its next layer and KeyboardInterrupt
is raised. The model is unaffected (each generate() has its own cache).

Differences from Transformers, on purpose: num_beams < 1 raises a ValueError (Transformers fails with
ZeroDivisionError or RuntimeError); eos ids outside the vocabulary also warn (they can never stop a
row); one prompt may be a list or a 1-D array (Transformers fails with AttributeError or IndexError);
empty input_ids raise a ValueError (a RuntimeError there); Transformers' logged warnings are UserWarnings here.
"""
import ast
import copy
import math
import re
import time
import warnings

import numpy as np

from .. import _core
from .assisted import AssistantCandidates, PromptLookupCandidates, assisted_decoding
from .custom import (FORCED_EOS_STAGE, PREFIX_ALLOWED_TOKENS_STAGE, CandidateCriteria, ForcedEos, PrefixConstrained,
                     Processors, as_callables, built_processors, merge_criteria, merge_processors)
from .configuration import GENERATION_CONFIG_NAME, GenerationConfig, default_generation_params
from ..model.inputs import (as_attention_mask, as_embeddings, as_position_ids, as_token_ids, check_embeddings,
                             check_int64, to_numpy)
from ..model.cache import NemotronCache, check_cache, physical_memory
from ..model.outputs import ModelOutput

__all__ = ["GENERATION_CONFIG_NAME", "GenerationConfig", "GenerateDecoderOnlyOutput", "GenerateBeamDecoderOnlyOutput",
           "compute_transition_scores", "generate", "generate_iter"]

EARLY_STOPPING = {False: 0, True: 1, "never": 2}

# Features of Transformers' generate() that nemotron_c does not implement: field -> when it is active.
UNSUPPORTED_FIELDS = {
    "top_h": lambda v: v is not None,
    "guidance_scale": lambda v: v is not None and v != 1,
    "watermarking_config": lambda v: v is not None,
    "token_healing": lambda v: bool(v),
}


class GenerateDecoderOnlyOutput(ModelOutput):
    """generate(..., return_dict_in_generate=True) without beams: sequences, then per-step scores/logits."""

    _fields = ("sequences", "scores", "logits", "attentions", "hidden_states", "cache")


class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """generate(..., return_dict_in_generate=True) with beams."""

    _fields = ("sequences", "sequences_scores", "scores", "logits", "beam_indices", "attentions", "hidden_states",
               "cache")


# ---------------------------------------------------------------- configuration


def as_generation_config(value):
    """Ours, or Transformers' own, which a script swapping its models for ours still builds (the same fields)."""
    if value is None or isinstance(value, GenerationConfig):
        return value
    if type(value).__name__ == "GenerationConfig" and hasattr(value, "to_dict"):
        return GenerationConfig.from_dict(value.to_dict())
    raise TypeError(f"generation_config must be a GenerationConfig, not {type(value).__name__}")


def prepare_generation_config(model, generation_config, kwargs):
    """Transformers' _prepare_generation_config: user config > model.generation_config > global defaults,
    then keyword arguments. Returns (config, model_kwargs)."""
    provided = generation_config is not None
    if generation_config is None:
        found = model.config.generation_parameters()
        if found:  # Transformers' error for the legacy way, word for word
            raise ValueError(
                "You have modified the pretrained model configuration to control generation We detected the following "
                f"values set - {found}. This strategy to control generation is not "
                "supported anymore. Please use and modify `model.generation_config` (see "
                "https://huggingface.co/docs/transformers/generation_strategies#default-text-generation-configuration )")
        generation_config = GenerationConfig()
    generation_config = as_generation_config(generation_config)
    config = copy.deepcopy(generation_config)
    config.update(**model.generation_config.to_dict(), defaults_only=True, allow_custom_entries=True)
    config.update(**default_generation_params(), defaults_only=True)
    model_kwargs = config.update(**kwargs)
    if config.cache_implementation == "hybrid":  # as Transformers: a dynamic cache then
        config.cache_implementation = None
    generation_kwargs = set(kwargs) - set(model_kwargs)
    if provided and generation_kwargs:
        warnings.warn(f"Passing `generation_config` together with generation-related arguments=({generation_kwargs}) "
                      "is deprecated and will be removed in future versions. Please pass either a `generation_config` "
                      "object OR all generation parameters explicitly, but not both.", UserWarning, stacklevel=4)
    return config, model_kwargs


# Arguments Transformers' forward takes for its loss or for mixture-of-experts models: generate() accepts them there
# and no token changes
IGNORED_KWARGS = ("labels", "num_items_in_batch", "output_router_logits")


def check_model_kwargs(model_kwargs):
    """The keyword arguments left after the generation config took its own; typos end up here."""
    unused = [key for key, value in model_kwargs.items()
              if value is not None and key not in ("attention_mask", "inputs_embeds", "logits_to_keep", "position_ids")
              + IGNORED_KWARGS]
    if unused:
        raise ValueError(f"The following `model_kwargs` are not used by the model: {unused} (note: typos in the "
                         "generate arguments will also show up in this list)")


def check_supported(config, mode):
    if mode not in ("greedy_search", "sample", "beam_search", "beam_sample", "assisted_generation"):
        raise NotImplementedError(f"generation mode '{mode}' is not supported by nemotron_c (greedy search, "
                                  "sampling, beam search, beam sampling and assisted generation are)")
    for field, active in UNSUPPORTED_FIELDS.items():
        value = getattr(config, field, None)
        if active(value):
            raise NotImplementedError(f"`{field}={value!r}` is not supported by nemotron_c's generate()")
    # A static or offloaded cache is where Transformers keeps the same keys and values (its tokens are the dynamic
    # cache's; the offloaded ones need CUDA there, an AssertionError on a CPU-only torch): ours computes them alike.
    # A quantized cache changes the numbers and "paged" is continuous batching: those are not ours.
    if config.cache_implementation in ("quantized", "paged"):
        raise NotImplementedError(f"cache_implementation={config.cache_implementation!r} is not supported")


def as_token_list(value, name):
    """The token id or ids of the setting `name` as a list of ints, or None."""
    if value is None:
        return None
    array = to_numpy(value, f"`{name}`")
    check_int64(array, f"`{name}`")
    return [int(t) for t in array.reshape(-1)]


MAX_GENERATED_LENGTH = 2**48


def resolve_lengths(config, prompt_length, has_default_max_length, has_default_min_length, max_positions):
    """Transformers' _prepare_generated_length and _validate_generated_length."""
    more = ("Please refer to the documentation for more information. "
            "(https://huggingface.co/docs/transformers/main/en/main_classes/text_generation)")
    if config.max_new_tokens is not None:
        if not has_default_max_length and config.max_length is not None:
            warnings.warn(f"Both `max_new_tokens` (={config.max_new_tokens}) and `max_length`(={config.max_length}) "
                          f"seem to have been set. `max_new_tokens` will take precedence. {more}", UserWarning,
                          stacklevel=4)
        config.max_length = config.max_new_tokens + prompt_length
    elif has_default_max_length:
        config.max_length = config.max_length + prompt_length
        if max_positions is not None:
            config.max_length = min(config.max_length, max_positions)
    if config.min_new_tokens is not None:
        if not has_default_min_length:
            warnings.warn(f"Both `min_new_tokens` (={config.min_new_tokens}) and `min_length`(={config.min_length}) "
                          f"seem to have been set. `min_new_tokens` will take precedence. {more}", UserWarning,
                          stacklevel=4)
        config.min_length = config.min_new_tokens + prompt_length

    if has_default_max_length and config.max_new_tokens is None:
        warnings.warn(f"Using the model-agnostic default `max_length` (={config.max_length}) to control the generation "
                      "length. We recommend setting `max_new_tokens` to control the maximum length of the generation.",
                      UserWarning, stacklevel=4)
    if config.max_length > MAX_GENERATED_LENGTH:  # what no machine generates; beyond it arrays cannot even be sized
        setting = "max_new_tokens" if config.max_new_tokens is not None else "max_length"
        raise ValueError(f"`{setting}` ({getattr(config, setting)}) asks for sequences of {config.max_length} tokens; "
                         f"nemotron_c generates at most {MAX_GENERATED_LENGTH} (2**48) tokens per sequence")
    if prompt_length >= config.max_length:
        raise ValueError(f"Input length of input_ids is {prompt_length}, but `max_length` is set to {config.max_length}. "
                         "This can lead to unexpected behavior. You should consider increasing `max_length` or, better "
                         "yet, setting `max_new_tokens`.")
    suffix = (" Generation will stop at the defined maximum length. You should decrease the minimum length and/or "
              "increase the maximum length.")
    if has_default_max_length:
        suffix += f" Note that `max_length` is set to {config.max_length}, its default value."
    if config.min_length is not None and config.min_length > config.max_length:
        warnings.warn(f"Unfeasible length constraints: `min_length` ({config.min_length}) is larger than the maximum "
                      f"possible length ({config.max_length})." + suffix, UserWarning, stacklevel=4)
    if config.min_new_tokens is not None and config.min_new_tokens + prompt_length > config.max_length:
        warnings.warn(f"Unfeasible length constraints: `min_new_tokens` ({config.min_new_tokens}), when added to the "
                      f"prompt length ({prompt_length}), is larger than the maximum possible length "
                      f"({config.max_length})." + suffix, UserWarning, stacklevel=4)


def processor_settings(config, eos, prompt_length, vocab_size, padding, embeds=False):
    """The C loop's settings (named as in _core.GENERATION_SETTINGS), validated in the order Transformers builds
    its processors, with its errors. embeds: the prompt came as inputs_embeds, where Transformers has no prompt
    tokens for the encoder processors (it ignores them, warning) and prompt_length counts the input_ids alone."""
    c = dict(_core.GENERATION_SETTINGS)  # every field at the value that turns its step off
    if config.sequence_bias is not None:
        biases = sequence_bias_dict(config.sequence_bias)
        check_in_vocab(biases, vocab_size)
        c["sequence_bias"], c["sequence_bias_ends"] = flatten_sequences(biases)
        c["sequence_bias_values"] = np.array(list(biases.values()), dtype=np.float32)
    # the prompt is Transformers' encoder_input_ids for a decoder-only model: these read each row's prompt tokens
    penalty = config.encoder_repetition_penalty
    if penalty is not None and penalty != 1.0 and embeds:
        warnings.warn("Passing `encoder_repetition_penalty` requires some form of `input_ids` to be passed to "
                      "`generate`, ignoring the argument.", UserWarning, stacklevel=4)
    elif penalty is not None and penalty != 1.0:
        if not isinstance(penalty, float) or not penalty > 0:
            raise ValueError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        c["encoder_repetition_penalty"] = penalty
    penalty = config.repetition_penalty
    if penalty is not None and penalty != 1.0:
        if not isinstance(penalty, float) or not penalty > 0:
            raise ValueError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        c["repetition_penalty"] = penalty
        c["prompt_padding"] = padding
        if prompt_length == 0:
            warnings.warn("Passing `repetition_penalty` with `inputs_embeds` and without `input_ids` to `generate` "
                          "will apply the penalty only to newly generated tokens, not to the prompt.", UserWarning,
                          stacklevel=4)
    n = config.no_repeat_ngram_size
    if n is not None and n > 0:
        if not isinstance(n, int):
            raise ValueError(f"`ngram_size` has to be a strictly positive integer, but is {n}")
        c["no_repeat_ngram_size"] = n
        if prompt_length == 0:
            warnings.warn("Passing `no_repeat_ngram_size` with `inputs_embeds` and without `input_ids` to `generate` "
                          "will apply n-gram constraints only to newly generated tokens, not to the prompt.",
                          UserWarning, stacklevel=4)
    n = config.encoder_no_repeat_ngram_size
    if n is not None and n > 0 and embeds:
        warnings.warn("Passing `encoder_no_repeat_ngram_size` requires some form of `input_ids` to be passed to "
                      "`generate`, ignoring the argument.", UserWarning, stacklevel=4)
    elif n is not None and n > 0:
        if not isinstance(n, int):
            raise ValueError(f"`encoder_ngram_size` has to be a strictly positive integer, but is {n}")
        c["encoder_no_repeat_ngram_size"] = n
    if config.bad_words_ids is not None:
        words = config.bad_words_ids
        if not isinstance(words, list) or len(words) == 0:
            raise ValueError(f"`bad_words_ids` has to be a non-empty list, but is {words}.")
        if any(not isinstance(word, list) for word in words):
            raise ValueError(f"`bad_words_ids` has to be a list of lists, but is {words}.")
        if any(any(not isinstance(t, (int, np.integer)) or t < 0 for t in word) for word in words):
            raise ValueError(f"Each list in `bad_words_ids` has to be a list of positive integers, but is {words}.")
        words = [word for word in words if all(word != [e] for e in eos)]
        # the distinct sequences in order; Transformers checks bad_words_ids, not the (possibly empty) bias dict
        words = list({tuple(word): None for word in words})
        check_in_vocab(words, vocab_size)
        c["bad_words"], c["bad_word_ends"] = flatten_sequences(words)
    min_lengths = []
    if config.min_length is not None and eos and config.min_length > 0:
        if not isinstance(config.min_length, int):
            raise ValueError(f"`min_length` has to be a non-negative integer, but is {config.min_length}")
        min_lengths.append(config.min_length)
    if config.min_new_tokens is not None and eos and config.min_new_tokens > 0:
        if not isinstance(config.min_new_tokens, int):
            raise ValueError(f"`min_new_tokens` has to be a positive integer, but is {config.min_new_tokens}")
        min_lengths.append(prompt_length + config.min_new_tokens)
    c["min_length"] = max(min_lengths, default=0)
    # Transformers' processors index the scores with these ids and fail (IndexError) outside the vocabulary; the
    # core would force nothing and the argmax of -inf scores, token 0, would come out
    if config.forced_bos_token_id is not None:
        if not 0 <= config.forced_bos_token_id < vocab_size:
            raise ValueError(f"`forced_bos_token_id` {config.forced_bos_token_id} is outside the vocabulary "
                             f"[0, {vocab_size})")
        c["forced_bos_token_id"] = int(config.forced_bos_token_id)
    if config.forced_eos_token_id is not None:
        forced = as_token_list(config.forced_eos_token_id, "forced_eos_token_id")
        if not forced or any(t < 0 for t in forced):  # [] too: Transformers' tensor of it is a float one
            raise ValueError(f"`eos_token_id` has to be a list of positive integers, but is {forced}")
        if any(t >= vocab_size for t in forced):
            raise ValueError(f"`forced_eos_token_id` {forced} holds ids outside the vocabulary [0, {vocab_size})")
        c["forced_eos_token_ids"] = np.array(forced, dtype=np.int64)
    if config.remove_invalid_values is True:
        c["remove_invalid_values"] = 1
    if config.exponential_decay_length_penalty is not None:
        start, factor = config.exponential_decay_length_penalty
        if not eos or any(t < 0 for t in eos):
            raise ValueError(f"`eos_token_id` has to be a list of positive integers, but is {eos or None}")
        # a float start stays a float, as Transformers' regulation_start (NaN or a huge one never starts)
        c["decay_start"], c["decay_factor"] = float(start) + prompt_length, float(factor)
    if config.suppress_tokens is not None:
        c["suppress_tokens"] = np.array(as_token_list(config.suppress_tokens, "suppress_tokens"), dtype=np.int64)
    if config.begin_suppress_tokens is not None:
        begin = as_token_list(config.begin_suppress_tokens, "begin_suppress_tokens")
        c["begin_suppress_tokens"] = np.array(begin, dtype=np.int64)
        # as Transformers: after a one-token prompt a forced BOS takes the first step, and suppression the next
        forced_first = prompt_length == 1 and config.forced_bos_token_id is not None
        c["begin_index"] = prompt_length + 1 if forced_first else prompt_length

    if config.do_sample:
        if config.num_beams is not None and config.num_beams > 1:
            c["min_tokens_to_keep"] = len(eos) + 1 if eos else 2
        t = config.temperature
        if t is not None and t != 1.0:
            if not isinstance(t, float) or not t > 0:
                message = (f"`temperature` (={t}) has to be a strictly positive float, otherwise your next token "
                           "scores will be invalid.")
                if isinstance(t, float) and t == 0.0:
                    message += " If you're looking for greedy decoding strategies, set `do_sample=False`."
                raise ValueError(message)
            c["temperature"] = t
        k = config.top_k
        if k is not None and k != 0:
            if not isinstance(k, int) or k <= 0:
                raise ValueError(f"`top_k` has to be a strictly positive integer, but is {k}")
            c["top_k"] = k
        p = config.top_p
        if p is not None and p < 1.0:
            if float(p) < 0 or float(p) > 1.0:
                raise ValueError(f"`top_p` has to be a float > 0 and < 1, but is {float(p)}")
            c["top_p"] = float(p)
        if config.min_p is not None:
            if not 0 <= config.min_p <= 1.0:
                raise ValueError(f"`min_p` has to be a float in the [0, 1] interval, but is {config.min_p}")
            c["min_p"] = float(config.min_p)
        mass = config.typical_p
        if mass is not None and mass < 1.0:
            if not (float(mass) > 0 and float(mass) < 1):
                raise ValueError(f"`typical_p` has to be a float > 0 and < 1, but is {float(mass)}")
            c["typical_p"] = float(mass)
        for name in ("epsilon_cutoff", "eta_cutoff"):
            value = getattr(config, name)
            if value is not None and 0.0 < value < 1.0:
                c[name] = float(value)
    if config.renormalize_logits is True:
        c["renormalize_logits"] = 1
    return c


def sequence_bias_dict(sequence_bias):
    """Transformers' SequenceBiasLogitsProcessor argument checks; {token tuple: bias} in the given order."""
    bias = sequence_bias
    if not isinstance(bias, (dict, list)) or len(bias) == 0:
        raise ValueError(f"`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {bias}.")
    if isinstance(bias, dict):
        # A saved config writes the tuple keys as strings ("(5, 79)"), which Transformers then refuses (its generate
        # raises the ValueError below for its own saved file): read back here
        bias = {written_tuple(ids): value for ids, value in bias.items()}
        if any(not isinstance(ids, tuple) for ids in bias):
            raise ValueError(f"`sequence_bias` has to be a dict with tuples as keys, but is {bias}.")
        if any(len(ids) == 0 or any(not isinstance(t, (int, np.integer)) or t < 0 for t in ids) for ids in bias):
            raise ValueError(f"Each key in `sequence_bias` has to be a non-empty tuple of positive integers, but is "
                             f"{bias}.")
        if any(not isinstance(value, float) for value in bias.values()):
            raise ValueError(f"`sequence_bias` has to be a dict with floats as values, but is {bias}.")
        return dict(bias)

    def valid(pair):
        return (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], list)
                and all(isinstance(t, (int, np.integer)) and t >= 0 for t in pair[0]) and isinstance(pair[1], float))

    if any(not valid(pair) for pair in bias):
        raise ValueError(f"Each element in `sequence_bias` has to be a non-empty list of lists of positive integers "
                         f"and float, but is {bias}.")
    return {tuple(pair[0]): pair[1] for pair in bias}


def written_tuple(key):
    """A sequence_bias key as to_json_string wrote it ("(5, 79)") as that tuple; any other key unchanged."""
    if isinstance(key, str) and key.startswith("(") and key.endswith(")"):
        try:
            value = ast.literal_eval(key)
        except (ValueError, SyntaxError):
            return key
        if isinstance(value, tuple) and all(isinstance(t, int) for t in value):
            return value
    return key


def check_in_vocab(sequences, vocab_size):
    too_large = [t for ids in sequences for t in ids if t >= vocab_size]
    if too_large:
        raise ValueError(f"The model vocabulary size is {vocab_size}, but the following tokens were being biased: "
                         f"{too_large}")


def flatten_sequences(sequences):
    """Token sequences as (concatenated tokens, end offsets), the layout of the C config; (None, None) for none."""
    if not sequences:
        return None, None
    tokens = np.array([t for ids in sequences for t in ids], dtype=np.int64)
    return tokens, np.cumsum([len(ids) for ids in sequences]).astype(np.int64)


def resolve_seed(seed):
    """An int seed for the C generator: given, drawn from a numpy Generator, or fresh from the OS."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63, dtype=np.int64))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        # torch.manual_seed's range: a negative seed stands for seed + 2**64; beyond it seeds would repeat
        if not -2**63 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [-2**63, 2**64), got {int(seed)}")
        return int(seed) & (2**64 - 1)
    raise TypeError(f"seed must be an int or a numpy.random.Generator, not {type(seed).__name__}")


# ---------------------------------------------------------------- stop strings


STOP_PREFIX = "abcdef"  # Transformers' static_prefix
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def byte_level_alphabet():
    """{character: byte} of GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others
    for the characters from U+0100 on, in order."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("\xa1"), ord("\xac") + 1)) | set(
        range(ord("\xae"), ord("\xff") + 1))
    alphabet, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[chr(byte)] = byte
        else:
            alphabet[chr(256 + shifted)] = byte
            shifted += 1
    return alphabet


BYTE_LEVEL = byte_level_alphabet()


def stop_string_matching(tokenizer):
    """What Transformers' StopStringCriteria matches for this tokenizer: "byte_fallback" when its decoder turns
    <0xNN> tokens into their byte, "byte_level" when it turns GPT-2's byte alphabet into bytes (Ġ is a space),
    None otherwise (text). Found by asking the decoder, which works for any tokenizer with
    convert_tokens_to_string; Transformers reads its fast tokenizer's decoder settings."""
    convert = getattr(tokenizer, "convert_tokens_to_string", None)
    if convert is None:
        return None
    if convert(["<0x41>"]) == "A":
        return "byte_fallback"
    if convert(["\u0120a"]) == " a":
        return "byte_level"
    return None


class StopStrings:
    """Transformers' StopStringCriteria: a row stops when the decoded text ends in one of the strings, with the
    string reaching into the row's last token (a string that ended before it would have stopped the row then).

    Works with any tokenizer that has decode(ids): the tail of each row is decoded with and without its last token.
    With a byte-fallback or byte-level decoder (stop_string_matching), as Transformers, the UTF-8 bytes of the
    strings are matched in the tokens' bytes: a byte token's own byte, other tokens' text. Decoding would show an
    incomplete or invalid UTF-8 sequence as U+FFFD, which a string holding U+FFFD would then match where its bytes
    are not there (and miss where they are, split over tokens).
    """

    def __init__(self, tokenizer, stop_strings):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        try:
            stop_strings = list(stop_strings)
        except TypeError:
            raise TypeError(f"stop_strings must be a string or a list of strings, not {type(stop_strings).__name__}") \
                from None
        if not stop_strings or not all(isinstance(s, str) and s for s in stop_strings):
            raise ValueError(f"stop_strings must be a non-empty string or list of non-empty strings, got {stop_strings!r}")
        self.tokenizer = tokenizer
        self.stop_strings = stop_strings
        # Every token but an empty one decodes to at least one byte (byte-fallback and byte-level tokens to exactly
        # one), so a stop string lies within its UTF-8 length of tokens from the end, as Transformers' matching
        # assumes; the window holds two more, so that it starts before the string.
        self.tail = max(len(s.encode("utf-8")) for s in self.stop_strings) + 2
        # Transformers matches the tokens' own strings: a leading "▁a" is " a" even at the start of a sequence, where
        # a decoder strips that space. Decoding after the tokens of a fixed prefix keeps it (its static_prefix trick).
        encode = getattr(tokenizer, "encode", None)
        self.prefix_ids = [int(i) for i in encode(STOP_PREFIX, add_special_tokens=False)] if encode else []
        self.matching = stop_string_matching(tokenizer)
        self.stop_bytes = [s.encode("utf-8") for s in self.stop_strings]
        self.token_bytes = {}  # id -> bytes, as the matching reads them

    def decode(self, ids):
        ids = [int(i) for i in ids]
        if self.prefix_ids:
            text = self.tokenizer.decode(self.prefix_ids + ids, skip_special_tokens=False)
            at = text.find(STOP_PREFIX)
            if at >= 0:
                return text[at + len(STOP_PREFIX):]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def bytes_of(self, token_id):
        if token_id not in self.token_bytes:
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            if self.matching == "byte_fallback" and BYTE_TOKEN.fullmatch(token):
                self.token_bytes[token_id] = bytes([int(token[3:5], 16)])
            elif self.matching == "byte_level" and token and all(c in BYTE_LEVEL for c in token):
                self.token_bytes[token_id] = bytes(BYTE_LEVEL[c] for c in token)
            else:
                self.token_bytes[token_id] = self.decode([token_id]).encode("utf-8")
        return self.token_bytes[token_id]

    def ends_in_bytes(self, ids):
        """Whether the bytes of the tokens ids hold a stop string that reaches into the last token's."""
        pieces = [self.bytes_of(int(i)) for i in ids]
        data = b"".join(pieces)
        before = len(data) - len(pieces[-1])
        return any(data.rfind(s) + len(s) > before for s in self.stop_bytes if s in data)

    def __call__(self, sequences, length, prompt_length):
        """(N) bool: rows of sequences[:, :length] that end with a stop string."""
        hits = np.zeros(sequences.shape[0], dtype=bool)
        for r in range(sequences.shape[0]):
            start = max(0, length - self.tail)
            if self.matching is not None:
                hits[r] = self.ends_in_bytes(sequences[r, start:length])
                continue
            text = self.decode(sequences[r, start:length])
            # the text the last token leaves unchanged: what decodes alike without it (a token that completes a
            # character's bytes replaces the U+FFFD the incomplete bytes decoded to)
            shorter = self.decode(sequences[r, start:length - 1]) if length - 1 > start else ""
            before = next((i for i, (a, b) in enumerate(zip(text, shorter)) if a != b), min(len(text), len(shorter)))
            for s in self.stop_strings:
                at = text.rfind(s)
                if at >= 0 and at + len(s) > before:
                    hits[r] = True
                    break
        return hits


# ---------------------------------------------------------------- generate


def generate(model, inputs=None, generation_config=None, logits_processor=None, stopping_criteria=None,
             prefix_allowed_tokens_fn=None, synced_gpus=None, assistant_model=None, streamer=None,
             negative_prompt_ids=None, negative_prompt_attention_mask=None, custom_generate=None, seed=None,
             **kwargs):
    """Transformers' generate() for a decoder-only Nemotron, token for token (see the module docstring)."""
    run = prepare(model, inputs, kwargs, generation_config=generation_config, logits_processor=logits_processor,
                  stopping_criteria=stopping_criteria, prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
                  assistant_model=assistant_model, streamer=streamer, negative_prompt_ids=negative_prompt_ids,
                  negative_prompt_attention_mask=negative_prompt_attention_mask, custom_generate=custom_generate,
                  seed=seed)
    if run.assisted is not None:
        sequences, scores, logits, cache = assisted_decoding(run)
        if streamer is not None:
            streamer.end()
        if not run.return_dict:
            return sequences
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores, logits=logits, cache=cache)
    if streamer is None and run.stop_strings is None and run.criteria is None:
        run.generator.run()
    else:
        while not run.generator.done:
            run.step()
    if streamer is not None:
        streamer.end()
    return run.result()


def compute_transition_scores(model, sequences, scores, beam_indices=None, normalize_logits=False):
    """Transformers' compute_transition_scores: the score of each generated token, (rows, new tokens) float32.

    scores: the per-step scores (or logits) of a return_dict_in_generate result; beam_indices: its beam_indices
    for beam search; normalize_logits: log_softmax each step's scores first. Steps after a beam ended give 0.
    """
    sequences = to_numpy(sequences, "sequences")
    steps = [np.asarray(to_numpy(step, "scores"), dtype=np.float32) for step in scores]
    if beam_indices is None:
        beam_indices = np.broadcast_to(np.arange(steps[0].shape[0])[:, None], (steps[0].shape[0], len(steps)))
    beam_indices = np.asarray(to_numpy(beam_indices, "beam_indices"), dtype=np.int64)
    stacked = np.stack(steps)  # (steps, rows, V)
    if normalize_logits:
        peak = stacked.max(axis=-1, keepdims=True)
        shifted = stacked - peak
        stacked = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    ended = beam_indices < 0
    length = int((~ended).sum(axis=-1).max())
    rows = np.where(ended, 0, beam_indices)[:, :length]
    ended = ended[:, :length]
    tokens = sequences[:, sequences.shape[-1] - length:]
    result = stacked[np.arange(length)[None, :], rows, tokens]
    result[ended] = 0
    return result


def generate_iter(model, inputs=None, **kwargs):
    """Yields the new token ids (ints) of one prompt as they are generated; the same tokens generate() returns.

    Greedy search or sampling only. Stopping early (breaking out of the loop) frees the generation state.
    """
    if kwargs.get("streamer") is not None:
        raise ValueError("generate_iter() is itself the stream; do not pass a streamer")
    run = prepare(model, inputs, kwargs, generation_config=kwargs.pop("generation_config", None),
                  logits_processor=kwargs.pop("logits_processor", None),
                  stopping_criteria=kwargs.pop("stopping_criteria", None),
                  prefix_allowed_tokens_fn=kwargs.pop("prefix_allowed_tokens_fn", None), seed=kwargs.pop("seed", None))
    if run.assisted is not None:
        raise NotImplementedError("generate_iter() does not do assisted generation: use generate() with a streamer")
    if run.beams > 1 or run.rows != 1:
        raise ValueError("generate_iter() streams one sequence: give one prompt, num_beams=1 and num_return_sequences=1")
    eos = set(run.eos)
    while not run.generator.done:
        run.step()
        token = int(run.sequences[0, run.generator.length - 1])
        yield token
        if token in eos:
            return


class Run:
    """A prepared generation: the C generator, its output buffers and what Python does between steps."""

    criteria = None  # the caller's stopping criteria (custom.Criteria), or None

    def step(self):
        self.generator.run(1)
        length = self.generator.length
        if self.stop_strings is not None:
            hits = self.stop_strings(self.sequences[:, self.context:], length - self.context,
                                     self.prompt_length - self.context)
            if hits.any():
                self.generator.stop_rows(hits.astype(np.uint8))
        if self.criteria is not None:
            scores = None if self.scores is None else tuple(self.scores[:self.generator.steps])
            hits = self.criteria(self.sequences[:, self.context:length], scores)
            if hits.any():
                self.generator.stop_rows(hits.astype(np.uint8))
        if self.streamer is not None:
            self.streamer.put(self.sequences[:, length - 1].copy())

    def result(self):
        steps, T0, context = self.generator.steps, self.prompt_length, self.context
        cache = self.cache  # given to the loop: the caller's, or the one the prompt of embeddings ran into
        # use_cache=False: Transformers computes without a cache and returns none (ours always decodes with one)
        if self.return_dict and cache is None and self.use_cache:
            cache = NemotronCache._wrap(self.model, self.generator.take_cache())
        scores = tuple(self.scores[:steps]) if self.scores is not None else None
        logits = tuple(self.logits[:steps]) if self.logits is not None else None
        if self.beams > 1:
            n = self.num_return_sequences
            generated = self.generator.beam_output_length(n)
            rows = self.sequences.shape[0] * n  # not -1: a beam search that added no token has rows of 0 ids
            sequences = self.sequences[:, :n, context:T0 + generated].reshape(rows, T0 - context + generated)
            if not self.return_dict:
                return np.ascontiguousarray(sequences)
            attentions, hidden_states = self.replay(steps, self.running_beams(), self.running_parents)
            return GenerateBeamDecoderOnlyOutput(
                sequences=np.ascontiguousarray(sequences),
                sequences_scores=self.sequence_scores[:, :n].reshape(-1).copy() if self.output_scores else None,
                scores=scores, logits=logits,
                # int32, as Transformers' (the loop writes int64)
                beam_indices=self.beam_indices[:, :n, :generated].reshape(rows, generated).astype(np.int32),
                attentions=attentions, hidden_states=hidden_states, cache=cache,
            )
        sequences = np.ascontiguousarray(self.sequences[:, context:self.generator.length])
        if not self.return_dict:
            return sequences
        attentions, hidden_states = self.replay(steps, lambda step: self.sequences[:, :T0 + step])
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores, logits=logits, attentions=attentions,
                                         hidden_states=hidden_states, cache=cache)

    def running_beams(self):
        """rows(step) -> (N, prompt + step) the running beams that step decoded, for steps 0, 1, 2... in turn:
        rebuilt from the parent row and token of every beam the C loop recorded."""
        beams = self.input_ids

        def rows(step):
            nonlocal beams
            if step > 0:
                beams = np.concatenate([beams[self.running_parents[step - 1]],
                                        self.running_tokens[step - 1][:, None]], axis=1)
            return beams

        return rows

    def replay(self, steps, fed_rows, parents=None):
        """Transformers' per-step attentions and hidden_states (each None unless asked for): the forward pass of
        every step made again with the model's own forward, which returns them. fed_rows(step) -> (N, prompt +
        step) the rows that step decoded (asked for steps 0, 1, 2... in turn): step 0 ran the prompt, later ones
        each row's last token into the cache, or the whole rows with use_cache=False, as Transformers feeds them.
        Rows are replayed as generated (a finished row's pad tokens too), with the attention mask extended by ones
        and positions one past the row's last, as the C loop and Transformers extend them; with beams the cache
        follows the rows each step continued (parents (steps, N)), as the loop reorders its own. A prompt that ran
        before the loop (prepare) gave step 0's outputs already."""
        if not (self.output_attentions or self.output_hidden_states) or steps == 0:
            return None, None
        # the rows' leading ids beyond the embeddings are in no cache: the replay starts after them
        u, T0, rows = self.uncached, self.prompt_length - self.uncached, self.rows
        mask = None if self.mask is None else np.concatenate([self.mask[:, u:], np.ones((rows, steps), np.uint8)],
                                                             axis=1)
        positions = np.concatenate([self.positions[:, u:],
                                    self.positions[:, -1:] + np.arange(1, steps, dtype=np.int64)], axis=1)

        def forward(fed, start, outputs):
            """Positions [start, length) of the rows `fed` (N, length), into the cache when there is one."""
            length = fed.shape[1]
            ids, embeds = fed[:, start:], None
            if self.embeds is not None and start < T0:  # the prompt's embeddings, then the new tokens'
                embeds = np.concatenate([self.embeds[:, start:], self.model.get_input_embeddings()(fed[:, T0:])],
                                        axis=1)
                ids = None
            return self.model._run(ids, None if mask is None else mask[:, :length], positions[:, start:length],
                                   cache, cache is not None, inputs_embeds=embeds,
                                   all_hidden=outputs and self.output_hidden_states,
                                   attentions=outputs and self.output_attentions)

        cache = NemotronCache(self.model, rows, T0 + steps - 1) if self.use_cache else None
        attentions, hidden_states = [], []
        for step in range(steps):
            fed = fed_rows(step)[:, u:]
            if step == 0 and self.prompt_outputs is not None:
                if cache is not None:
                    forward(fed, 0, False)
                step_attentions, step_hidden = self.prompt_outputs
            else:
                if step > 0 and cache is not None and parents is not None:
                    cache.reorder_cache(parents[step - 1])
                result = forward(fed, fed.shape[1] - 1 if step > 0 and cache is not None else 0, True)
                step_attentions, step_hidden = result.attentions, result.all_hidden
            attentions.append(step_attentions)
            hidden_states.append(step_hidden)
        return (tuple(attentions) if self.output_attentions else None,
                tuple(hidden_states) if self.output_hidden_states else None)


def prepare(model, inputs, kwargs, *, generation_config=None, logits_processor=None, stopping_criteria=None,
            prefix_allowed_tokens_fn=None, assistant_model=None, streamer=None, negative_prompt_ids=None,
            negative_prompt_attention_mask=None, custom_generate=None, seed=None):
    """Everything generate() does before its decoding loop, in Transformers' order."""
    processors = as_callables(logits_processor, "logits_processor")
    criteria = as_callables(stopping_criteria, "stopping_criteria")
    if prefix_allowed_tokens_fn is not None and not callable(prefix_allowed_tokens_fn):
        raise TypeError(f"`prefix_allowed_tokens_fn` must be a callable (batch_id, input_ids) -> allowed token ids, "
                        f"not {type(prefix_allowed_tokens_fn).__name__}")
    # negative_prompt_ids (and its mask) serve classifier-free guidance alone, which guidance_scale other than 1
    # asks for and check_supported refuses: otherwise Transformers ignores them, as here
    if custom_generate is not None:
        raise NotImplementedError("custom_generate is not supported by nemotron_c's generate()")
    tokenizer = kwargs.pop("tokenizer", None)
    assistant_tokenizer = kwargs.pop("assistant_tokenizer", None)
    kwargs.pop("trust_remote_code", None)
    if "input_ids" in kwargs:
        if inputs is not None:
            raise ValueError("`inputs` were passed alongside `input_ids`, which is not allowed: pass the prompt as "
                             "`inputs` or as `input_ids=`, not both")
        inputs = kwargs.pop("input_ids")
    user_cache = None
    for cache_key in ("cache", "past_key_values"):  # past_key_values: the older name
        value = kwargs.pop(cache_key, None)
        if value is not None:
            if user_cache is not None:
                raise ValueError("give the cache as `cache=` or `past_key_values=`, not both")
            user_cache = value

    generation_config = as_generation_config(generation_config)
    has_default_max_length = (kwargs.get("max_length") is None
                              and (generation_config is None or generation_config.max_length is None)
                              and model.generation_config.max_length is None)
    has_default_min_length = (kwargs.get("min_length") is None
                              and (generation_config is None or generation_config.min_length is None)
                              and model.generation_config.min_length is None)
    config, model_kwargs = prepare_generation_config(model, generation_config, kwargs)
    mode = config.get_generation_mode(assistant_model)
    check_model_kwargs(model_kwargs)
    if mode == "assisted_generation":
        check_assisted(model, config, assistant_model, tokenizer, assistant_tokenizer, model_kwargs, user_cache)
    # Transformers refuses a streamer with beam search only; with beam sampling it puts the prompt (one row per beam,
    # which TextStreamer refuses) and then nothing, not even end(), so that a TextIteratorStreamer's reader waits
    # forever: refused here too
    if mode in ("beam_search", "beam_sample") and streamer is not None:
        raise ValueError("`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1.")
    num_beams = config.num_beams
    if not isinstance(num_beams, (int, np.integer)) or isinstance(num_beams, bool) or num_beams < 1:
        raise ValueError(f"`num_beams` has to be a positive integer, but is {num_beams!r}")
    num_return = config.num_return_sequences
    if not isinstance(num_return, (int, np.integer)) or isinstance(num_return, bool) or num_return < 1:
        raise ValueError(f"`num_return_sequences` has to be a positive integer, but is {num_return!r}")
    check_supported(config, mode)
    # Transformers' refusals, with its messages
    if mode in ("beam_search", "beam_sample") and getattr(config, "low_memory", None):
        raise ValueError("`low_memory=True` is not supported after the beam search refactor. Please check the "
                         "discussion in #35802 *after the PR got merged*, and add a comment there if your questions "
                         "are not yet answered.")
    if user_cache is not None and config.cache_implementation is not None:
        raise ValueError("Passing both `cache_implementation` (used to initialize certain caches) and `cache` (a Cache "
                         "object) is unsupported. Please use only one of the two.")
    prefill_chunk = getattr(config, "prefill_chunk_size", None)
    if prefill_chunk is not None and (isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int)
                                      or prefill_chunk < 1):
        raise ValueError(f"`prefill_chunk_size` must be a positive integer, got {prefill_chunk!r}")

    vocab_size = model.config.vocab_size
    embeds = model_kwargs.get("inputs_embeds")
    if embeds is not None:
        embeds = check_embeddings(embeds, model.config.hidden_size)  # copied once the mask is checked too
        # as Transformers: the embeddings run the prompt's forward pass and it needs a cache to go on from
        config.use_cache = True
    if inputs is None and embeds is None:
        if config.bos_token_id is None:
            raise ValueError("`bos_token_id` has to be defined when no `input_ids` are provided.")
        # as Transformers: one row of BOS per row of the first array among the model's arguments (an attention_mask)
        batch_size = next((value.shape[0] for value in model_kwargs.values()
                           if hasattr(value, "shape") and len(value.shape) > 0), 1)
        inputs = np.full((batch_size, 1), config.bos_token_id, dtype=np.int64)
    # Transformers' input_ids: (B, 0) with embeddings alone
    input_ids = (as_token_ids(inputs, vocab_size=vocab_size) if inputs is not None
                 else np.zeros((embeds.shape[0], 0), dtype=np.int64))
    if embeds is not None and embeds.shape[0] != input_ids.shape[0]:
        raise ValueError(f"inputs_embeds hold {embeds.shape[0]} sequences, but input_ids {input_ids.shape[0]}")
    # Embeddings of another length than input_ids (none at all, or some): as Transformers, the embeddings run the
    # prompt's forward pass and its processors, criteria and output see input_ids and the new tokens. The C loop's
    # rows are then the longer of both: `context` leading stand-in ids for the embeddings' positions the ids lack
    # (unread: the loop shows its processors the rows after them, and the result leaves them out), or `uncached`
    # leading ids beyond the embeddings, which the cache of the embeddings lacks.
    mixed = embeds is not None and embeds.shape[1] != input_ids.shape[1]
    embeds_length = embeds.shape[1] if mixed else 0
    context = max(embeds_length - input_ids.shape[1], 0)
    uncached = max(input_ids.shape[1] - embeds_length, 0) if mixed else 0
    if mixed and user_cache is not None and uncached:
        raise NotImplementedError("a cache together with inputs_embeds shorter than input_ids is not supported")
    input_ids = np.concatenate([np.zeros((input_ids.shape[0], context), dtype=np.int64), input_ids], axis=1)
    batch_size, prompt_length = input_ids.shape

    # special tokens (_prepare_special_tokens)
    # [] is no eos token (with no pad_token_id Transformers fails taking its first id as the pad: IndexError)
    eos = as_token_list(config.eos_token_id, "eos_token_id") or []
    pad = config.pad_token_id
    has_mask = model_kwargs.get("attention_mask") is not None
    if pad is None and eos:
        if not has_mask and batch_size > 1:
            warnings.warn("The attention mask and the pad token id were not set, with a batched input. As a "
                          "consequence, you may observe unexpected behavior. Please pass your input's "
                          "`attention_mask` to obtain reliable results.", UserWarning, stacklevel=3)
        pad = eos[0]
    if pad is not None and pad in eos and not has_mask and batch_size > 1:
        warnings.warn("The attention mask is not set with a batched input, and cannot be inferred from input because "
                      "pad token is same as eos token. As a consequence, you may observe unexpected behavior. Please "
                      "pass your input's `attention_mask` to obtain reliable results.", UserWarning, stacklevel=3)
    if any(t < 0 for t in eos):
        warnings.warn(f"`eos_token_id` should consist of positive integers, but is {eos}. Your generation will not "
                      "stop until the maximum length is reached. Depending on other flags, it may even crash.",
                      UserWarning, stacklevel=3)
    elif any(t >= vocab_size for t in eos):
        warnings.warn(f"`eos_token_id` {eos} holds ids outside the vocabulary [0, {vocab_size}): the model can never "
                      "produce them, so they will not stop generation.", UserWarning, stacklevel=3)

    # attention mask
    if mixed:
        mask = mixed_attention_mask(model_kwargs.get("attention_mask"), batch_size, prompt_length - context,
                                    embeds_length, uncached)
    elif has_mask:
        mask = as_attention_mask(model_kwargs["attention_mask"], input_ids.shape)
    else:
        mask = np.ones_like(input_ids, dtype=np.uint8)
        if pad is not None and np.isin(input_ids, [pad]).any() and pad not in eos:
            mask = (input_ids != pad).astype(np.uint8)
    # positions: those given (Transformers then counts each row's new tokens on from its last), else the mask's
    positions = model_kwargs.get("position_ids")
    if positions is not None:
        if embeds is not None:
            raise NotImplementedError("position_ids together with inputs_embeds in generate() is not supported")
        positions = as_position_ids(positions, input_ids.shape)
    # as Transformers: a given mask tells right padding; without one, a last token that is the pad token does (also
    # where pad == eos, so that no mask was inferred); not with embeddings, which it does not look at
    right_padded = (mask[:, -1] == 0).any() if has_mask else (input_ids[:, -1] == pad).any()
    if pad is not None and batch_size > 1 and right_padded and embeds is None:
        warnings.warn("A decoder-only architecture is being used, but right-padding was detected! For correct "
                      "generation results, please set `padding_side='left'` when initializing the tokenizer.",
                      UserWarning, stacklevel=3)

    # lengths count Transformers' input_ids; an explicit max_length, and a min_length without min_new_tokens, include
    # the positions of embeddings of another length
    if mixed and config.max_new_tokens is None and not has_default_max_length:
        config.max_length -= embeds_length
    if mixed and config.min_new_tokens is None:
        config.min_length = max((config.min_length or 0) - embeds_length, 0)
    resolve_lengths(config, prompt_length - context, has_default_max_length, has_default_min_length,
                    getattr(model.config, "max_position_embeddings", None))
    # rows: each prompt repeated max(num_beams, num_return_sequences) times
    expand = max(num_beams, num_return)
    check_rows_memory(model.config, num_beams, num_return, batch_size * expand, prompt_length,
                      config.max_length + context)
    input_ids = np.repeat(input_ids, expand, axis=0)
    mask = np.repeat(mask, expand, axis=0)
    positions = None if positions is None else np.repeat(positions, expand, axis=0)
    embeds = None if embeds is None else np.repeat(as_embeddings(embeds, model.config.hidden_size), expand, axis=0)
    # Transformers skips each row's leading padding in the repetition penalty. With embeddings of another length it
    # skips that many of its input_ids and new tokens, which are not what the mask pads: none is skipped here.
    padding = np.argmax(mask != 0, axis=1).astype(np.int64) * (not mixed)
    if streamer is not None:
        streamer.put(input_ids[:, context:].copy())
    if config.stop_strings is not None and tokenizer is None:
        raise ValueError("There are one or more stop strings, either in the arguments to `generate` or in the model's "
                         "generation config, but we could not locate a tokenizer. When generating with stop strings, "
                         "you must pass the model's tokenizer to the `tokenizer` argument of `generate`.")

    settings = processor_settings(config, eos, prompt_length - context, vocab_size, padding, embeds is not None)
    if config.early_stopping not in EARLY_STOPPING:
        raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {config.early_stopping}.")
    settings.update(
        max_length=int(config.max_length) + context,
        eos_token_ids=np.array(eos, dtype=np.int64),
        pad_token_id=int(pad) if pad is not None else 0,
        beam_fill_token_id=-1 if not eos else (int(pad) if pad else eos[0]),
        deadline=time.time() + float(config.max_time) if config.max_time is not None else 0.0,
        do_sample=int(bool(config.do_sample)),
        seed=resolve_seed(seed) if config.do_sample else 0,
        num_beams=int(num_beams),
        # None: the default, where Transformers fails raising a length to the power None
        length_penalty=1.0 if config.length_penalty is None else float(config.length_penalty),
        early_stopping=EARLY_STOPPING[config.early_stopping],
    )
    # the caller's processors, each at its place in Transformers' order; then its stopping criteria
    stages = merge_processors(processors, settings, built_processors(config, eos, embeds is not None,
                                                                     prefix_allowed_tokens_fn),
                              config, prompt_length - context)
    if prefix_allowed_tokens_fn is not None and PREFIX_ALLOWED_TOKENS_STAGE not in stages:
        stages[PREFIX_ALLOWED_TOKENS_STAGE] = [PrefixConstrained(prefix_allowed_tokens_fn, expand)]
    run_criteria = drop_stop_strings = None
    if criteria:
        run_criteria, drop_max_time, drop_stop_strings, max_length, custom_eos = merge_criteria(
            criteria, config, eos, pad, config.stop_strings is not None, num_beams)
        settings["custom_eos_criteria"] = int(custom_eos)
        if drop_max_time:
            settings["deadline"] = 0.0
        if max_length is not None:
            settings["max_length"] = max_length + context
            if settings["forced_eos_token_ids"] is not None:  # forced at the config's max_length, not the loop's
                stages[FORCED_EOS_STAGE] = [ForcedEos(config.max_length, settings["forced_eos_token_ids"])]
                settings["forced_eos_token_ids"] = None

    run = Run()
    run.model = model
    run.assisted = None
    if mode == "assisted_generation":
        # Transformers' _assisted_decoding: its cache, then its candidate generator, then the batch size
        if not config.use_cache:
            raise RuntimeError("Assisted decoding requires a cache")
        run.rng = np.random.default_rng(settings["seed"])
        if config.prompt_lookup_num_tokens is not None:
            if config.assistant_ensemble_weight is not None:
                raise ValueError("Setting `assistant_ensemble_weight` requires candidate logits from the assistant "
                                 "model. It is not supported with prompt lookup decoding.")
            run.assisted = PromptLookupCandidates(eos, config.prompt_lookup_num_tokens,
                                                  config.max_matching_ngram_size or 2, settings["max_length"],
                                                  lambda ids, scores: run.generator.process(ids, scores), vocab_size)
        else:
            run.assisted = AssistantCandidates(assistant_model, config, processors,
                                               None if mask.all() else mask, run.rng)
        if input_ids.shape[0] > 1:
            raise ValueError("assisted generate is only supported for batch_size = 1")
        run.max_length = settings["max_length"]
        run.deadline = settings["deadline"]
    run.prompt_length = prompt_length
    run.beams = int(num_beams)
    run.rows = input_ids.shape[0]
    run.eos = [] if settings["custom_eos_criteria"] else eos  # the ids that end a row
    run.config = config
    run.num_return_sequences = int(num_return)
    run.streamer = streamer
    stop_strings = (StopStrings(tokenizer, config.stop_strings)
                    if config.stop_strings is not None and not drop_stop_strings else None)
    # between steps; beam search calls them on its candidates, inside its step
    run.stop_strings = stop_strings if run.beams == 1 else None
    run.criteria = run_criteria if run.beams == 1 else None
    run.return_dict = bool(config.return_dict_in_generate)
    run.use_cache = bool(config.use_cache)
    run.output_scores = bool(config.output_scores)
    run.output_attentions = run.return_dict and bool(config.output_attentions)
    run.output_hidden_states = run.return_dict and bool(config.output_hidden_states)
    N, V, M = input_ids.shape[0], vocab_size, settings["max_length"]
    G = M - prompt_length
    want_scores = run.return_dict and config.output_scores
    want_logits = run.return_dict and config.output_logits

    def zeros(shape, dtype, what):
        """The loop writes its outputs in place, sized for max_length up front (pages are only used as tokens
        come): a max_length beyond the memory is said as such, not as NumPy's failure to allocate."""
        try:
            return np.zeros(shape, dtype=dtype)
        except MemoryError:
            size = np.dtype(dtype).itemsize * math.prod(shape)
            raise MemoryError(f"generate() cannot make room for {what} of {M} positions ({size / 2**30:,.0f} GiB): "
                              f"max_length {M} (max_new_tokens {G}) asks for more than this machine can hold") from None

    run.scores = zeros((G, N, V), np.float32, "the scores") if want_scores else None
    run.logits = zeros((G, N, V), np.float32, "the logits") if want_logits else None
    run.running_parents = run.running_tokens = None
    if run.beams > 1:
        B = batch_size
        run.sequences = zeros((B, run.beams, M), np.int64, "the sequences")
        run.sequence_scores = np.zeros((B, run.beams), dtype=np.float32)
        run.beam_indices = zeros((B, run.beams, G), np.int64, "the beam indices")
        if run.output_attentions or run.output_hidden_states:  # to rebuild the running beams of every step
            run.running_parents = zeros((G, N), np.int64, "the running beams")
            run.running_tokens = zeros((G, N), np.int64, "the running beams")
    else:
        run.sequences = zeros((N, M), np.int64, "the sequences")
        run.sequence_scores = run.beam_indices = None
    if user_cache is not None:
        check_user_cache(model, user_cache, N, prompt_length)
    all_ones = bool(mask.all())
    # what a replay of the steps needs (Run.replay): the rows' prompts, mask and positions as the loop has them
    run.input_ids, run.mask, run.embeds, run.context = input_ids, None if all_ones else mask, embeds, context
    run.uncached = uncached
    run.positions = (np.where(mask != 0, np.cumsum(mask != 0, axis=1) - 1, 0).astype(np.int64) if positions is None
                     else positions)
    # The prompt's forward pass runs here, not in the C loop, for embeddings, and for the attentions or hidden states
    # of a prompt continuing a cache given (a replay could not start from that cache's positions, which the loop
    # extends); the loop then starts from its logits.
    run.cache, run.prompt_outputs, prompt_logits = user_cache, None, None
    if embeds is not None or (user_cache is not None and (run.output_attentions or run.output_hidden_states)):
        # as the C loop: each prompt runs once and its cache is repeated for its copies (beams, return sequences)
        copies = expand if user_cache is None else 1
        if run.cache is None:
            run.cache = NemotronCache(model, N // copies, prompt_length - uncached + 1)
        cached = run.cache.get_seq_length()
        rows = slice(None, None, copies)
        result = model._run(None if embeds is not None else input_ids[rows, cached:],
                            None if run.mask is None else run.mask[rows, uncached:],
                            run.positions[rows, uncached + cached:], run.cache, True,
                            inputs_embeds=None if embeds is None else embeds[rows, cached:], logits=True,
                            logits_to_keep=1, all_hidden=run.output_hidden_states, attentions=run.output_attentions)
        run.cache.batch_repeat_interleave(copies)
        prompt_logits = np.ascontiguousarray(np.repeat(result.logits[:, -1], copies, axis=0))
        run.prompt_outputs = tuple(None if each is None else tuple(np.repeat(layer, copies, axis=0) for layer in each)
                                   for each in (result.attentions, result.all_hidden))
    run.generator = _core.Generator(
        model._core, input_ids=np.ascontiguousarray(input_ids), attention_mask=run.mask, position_ids=positions,
        sequences=run.sequences, scores=run.scores, logits=run.logits, sequence_scores=run.sequence_scores,
        beam_indices=run.beam_indices, running_parents=run.running_parents, running_tokens=run.running_tokens,
        # assisted generation runs the model itself and only asks the Generator to process scores: an empty cache
        cache=(NemotronCache(model, N)._core if run.assisted is not None
               else None if run.cache is None else run.cache._core), **settings)
    if prompt_logits is not None:
        run.generator.prefilled(prompt_logits, context, uncached)
    if stages:
        hook = Processors(stages, vocab_size)
        run.generator.set_processor_hook(hook, hook.bits)
    if run.beams > 1 and (run_criteria is not None or stop_strings is not None):
        run.generator.set_stop_hook(CandidateCriteria(run_criteria, run.scores, context, stop_strings))
    return run


def mixed_attention_mask(value, batch_size, ids_length, embeds_length, uncached):
    """The loop's (B, uncached + embeddings) attention mask when inputs_embeds cover another number of positions than
    input_ids: the embeddings' (the mask given, or ones) after the `uncached` leading ids beyond them, whose columns
    count only for the positions. These are Transformers': cumsum(mask) - 1 of a mask given; without one, its
    positions of the ids, 0 .. ids_length - 1, of which the embeddings take the last (0 .. embeds_length - 1 with
    fewer ids, where Transformers fails with a RuntimeError).
    A mask of the ids' length that holds padding is refused: Transformers applies it to the embeddings' positions,
    which it does not cover (an all-ones one is no mask, as there)."""
    if value is None:
        return np.ones((batch_size, uncached + embeds_length), dtype=np.uint8)
    value = to_numpy(value, "attention_mask")
    if value.ndim == 1 and batch_size == 1:
        value = value[None]
    shape = value.shape
    if ids_length and shape == (batch_size, ids_length):
        mask = as_attention_mask(value, (batch_size, ids_length))
        if mask.all():
            return np.ones((batch_size, uncached + embeds_length), dtype=np.uint8)
    if shape != (batch_size, embeds_length):
        raise ValueError(f"attention_mask has shape {shape}, but the model runs the {embeds_length} positions of "
                         f"inputs_embeds (input_ids hold {ids_length}): give a mask of shape ({batch_size}, "
                         f"{embeds_length}), or none")
    mask = as_attention_mask(value, (batch_size, embeds_length))
    return np.concatenate([np.zeros((batch_size, uncached), dtype=np.uint8), mask], axis=1)


def check_assisted(model, config, assistant_model, tokenizer, assistant_tokenizer, model_kwargs, user_cache):
    """Transformers' _validate_generation_mode for assisted generation, and what nemotron_c's does not do."""
    if config.num_return_sequences > 1:
        raise ValueError("num_return_sequences has to be 1 when doing assisted generate, "
                         f"but is {config.num_return_sequences}.")
    for name in ("assistant_early_exit", "use_mtp", "speculation_type"):
        if getattr(config, name):
            raise NotImplementedError(f"`{name}={getattr(config, name)!r}` (assisted generation) is not supported by "
                                      "nemotron_c's generate(): use prompt_lookup_num_tokens or assistant_model")
    if model_kwargs.get("inputs_embeds") is not None:
        raise NotImplementedError("assisted generation from inputs_embeds is not supported: give input_ids")
    if user_cache is not None:
        raise NotImplementedError("assisted generation continuing a cache passed in (cache= or past_key_values=) is "
                                  "not supported")
    if model_kwargs.get("position_ids") is not None:
        raise NotImplementedError("position_ids in assisted generation are not supported")
    if config.return_dict_in_generate and (config.output_attentions or config.output_hidden_states):
        raise NotImplementedError("output_attentions and output_hidden_states in assisted generation are not supported")
    if assistant_model is None:
        return
    if not hasattr(assistant_model, "_core") or not hasattr(assistant_model, "generation_config"):
        raise TypeError(f"assistant_model must be a nemotron_c causal LM, not {type(assistant_model).__name__}")
    more = "(see https://huggingface.co/docs/transformers/en/generation_strategies#universal-assisted-decoding)"
    if model.config.vocab_size == assistant_model.config.vocab_size:
        if assistant_tokenizer is not None:
            raise ValueError("`assistant_tokenizer` is not required when the main and assistant models use the same "
                             f"tokenizer. Please omit `assistant_tokenizer` from `generate()` {more}.")
    elif tokenizer is None or assistant_tokenizer is None:
        raise ValueError("The main and assistant models have different tokenizers. Please provide `tokenizer` and "
                         f"`assistant_tokenizer` to `generate()` {more}.")
    elif config.prompt_lookup_num_tokens is None:  # prompt lookup goes first: the assistant is then unused
        raise NotImplementedError("an assistant model with another tokenizer (Transformers' universal assisted "
                                  "decoding) is not supported: give an assistant with the model's vocabulary")


def check_rows_memory(model_config, num_beams, num_return, rows, prompt_length, max_length):
    """Refuses, before allocating anything, rows that cannot fit in this machine's memory, naming the settings.
    What each row (prompts x max(num_beams, num_return_sequences)) needs before its first token: the cache of the
    prompt and of one token and its scores (twice: logits and processed). The cache then grows a position per token,
    as in Transformers, and the rows are written as tokens come. Beam search's tables (rows, max_length) of int64
    (csrc/model/beam.c) are touched as tokens come too, but each is one allocation, which Linux refuses beyond the
    machine's memory: such a table is refused here by name."""
    c = model_config
    per_position = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4
    per_row = (prompt_length + 1) * per_position + 2 * 4 * c.vocab_size
    needed, table = rows * per_row, rows * 8 * max_length if num_beams > 1 else 0
    available = physical_memory()
    if available and max(needed, table) > available:
        what = (f"{per_row / 2**20:.2f} MiB each (cache and scores): {needed / 2**30:.1f} GiB before the first token"
                if needed >= table else f"sequences up to max_length={max_length}: tables of {table / 2**30:.1f} GiB")
        raise ValueError(f"num_beams={num_beams} and num_return_sequences={num_return} make {rows} rows of {what}, "
                         f"more than this machine's {available / 2**30:.1f} GiB: lower num_beams, "
                         f"num_return_sequences or max_new_tokens")


def check_user_cache(model, cache, rows, prompt_length):
    """A cache passed to generate(): this model's, one row per decoded row, holding part of the prompt."""
    check_cache(cache, model, rows, "the cache", f"generate() decodes {rows} rows (prompts times num_beams or "
                "num_return_sequences)")
    if cache.get_seq_length() >= prompt_length:
        raise ValueError(f"the cache already holds {cache.get_seq_length()} positions, but input_ids has "
                         f"{prompt_length}: input_ids must hold the cached tokens and at least one new one")
