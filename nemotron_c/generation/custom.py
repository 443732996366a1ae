"""A caller's logits processors, prefix_allowed_tokens_fn and stopping criteria in generate(), as Transformers runs
them (its _get_logits_processor, _get_stopping_criteria and _merge_criteria_processor_list).

Processors run inside the C loop's step: the core calls back (csrc/nemotron.h, nt_generator_set_processor_hook)
after the stage of its processors where Transformers puts them. prefix_allowed_tokens_fn is Transformers'
PrefixConstrainedLogitsProcessor, after min_new_tokens and before forced_bos; the custom processors come after every
default processor and before the sampling warpers; a custom processor of a type generate() also builds from the
config takes that one's place (Transformers warns). Stopping criteria run in Python between steps.

The callables get torch tensors (input_ids int64, scores float32) when torch is importable, NumPy arrays otherwise,
and may return either.
"""
import inspect
import warnings

import numpy as np

from .. import _core
from ..model.inputs import to_numpy

# nt_processor_stage of csrc/nemotron.h
PREFIX_ALLOWED_TOKENS_STAGE = 8
FORCED_EOS_STAGE = 10
CUSTOM_STAGE = 15

# Transformers' processors that generate() builds from the config: (class name, stage, the C settings of the default
# one, which a custom one of that type replaces). MinLength and MinNewTokens share the core's min_length setting.
DEFAULT_PROCESSORS = {
    "SequenceBiasLogitsProcessor": (0, ("sequence_bias", "sequence_bias_ends", "sequence_bias_values")),
    "EncoderRepetitionPenaltyLogitsProcessor": (1, ("encoder_repetition_penalty",)),
    "RepetitionPenaltyLogitsProcessor": (2, ("repetition_penalty", "prompt_padding")),
    "NoRepeatNGramLogitsProcessor": (3, ("no_repeat_ngram_size",)),
    "EncoderNoRepeatNGramLogitsProcessor": (4, ("encoder_no_repeat_ngram_size",)),
    "NoBadWordsLogitsProcessor": (5, ("bad_words", "bad_word_ends")),
    "MinLengthLogitsProcessor": (6, ()),
    "MinNewTokensLengthLogitsProcessor": (7, ()),
    "PrefixConstrainedLogitsProcessor": (PREFIX_ALLOWED_TOKENS_STAGE, ()),
    "ForcedBOSTokenLogitsProcessor": (9, ("forced_bos_token_id",)),
    "ForcedEOSTokenLogitsProcessor": (FORCED_EOS_STAGE, ("forced_eos_token_ids",)),
    "InfNanRemoveLogitsProcessor": (11, ("remove_invalid_values",)),
    "ExponentialDecayLengthPenalty": (12, ("decay_start", "decay_factor")),
    "SuppressTokensLogitsProcessor": (13, ("suppress_tokens",)),
    "SuppressTokensAtBeginLogitsProcessor": (14, ("begin_suppress_tokens", "begin_index")),
}


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


def transformers_type(obj, module):
    """The class name of obj when its class is Transformers' own (exactly: Transformers compares types with `is`)."""
    cls = type(obj)
    return cls.__name__ if cls.__module__ == f"transformers.generation.{module}" else None


def built_processors(config, eos, embeds, prefix_allowed_tokens_fn):
    """The names of the processors Transformers' _get_logits_processor builds before the custom ones."""
    built = {
        "SequenceBiasLogitsProcessor": config.sequence_bias is not None,
        "EncoderRepetitionPenaltyLogitsProcessor": config.encoder_repetition_penalty not in (None, 1.0) and not embeds,
        "RepetitionPenaltyLogitsProcessor": config.repetition_penalty not in (None, 1.0),
        "NoRepeatNGramLogitsProcessor": config.no_repeat_ngram_size is not None and config.no_repeat_ngram_size > 0,
        "EncoderNoRepeatNGramLogitsProcessor": (config.encoder_no_repeat_ngram_size is not None
                                                and config.encoder_no_repeat_ngram_size > 0 and not embeds),
        "NoBadWordsLogitsProcessor": config.bad_words_ids is not None,
        "MinLengthLogitsProcessor": config.min_length is not None and bool(eos) and config.min_length > 0,
        "MinNewTokensLengthLogitsProcessor": (config.min_new_tokens is not None and bool(eos)
                                              and config.min_new_tokens > 0),
        "PrefixConstrainedLogitsProcessor": prefix_allowed_tokens_fn is not None,
        "ForcedBOSTokenLogitsProcessor": config.forced_bos_token_id is not None,
        "ForcedEOSTokenLogitsProcessor": config.forced_eos_token_id is not None,
        "InfNanRemoveLogitsProcessor": config.remove_invalid_values is True,
        "ExponentialDecayLengthPenalty": config.exponential_decay_length_penalty is not None,
        "SuppressTokensLogitsProcessor": config.suppress_tokens is not None,
        "SuppressTokensAtBeginLogitsProcessor": config.begin_suppress_tokens is not None,
    }
    return {name for name, on in built.items() if on}


def as_callables(value, name):
    """The items of a LogitsProcessorList / StoppingCriteriaList (or any list of callables)."""
    if value is None:
        return []
    if callable(value) and not isinstance(value, (list, tuple)):
        raise TypeError(f"`{name}` must be a list (Transformers' {name_of_list(name)}) of callables, not a single "
                        f"{type(value).__name__}: wrap it in a list")
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a list of callables, not {type(value).__name__}") from None
    for item in items:
        if not callable(item):
            raise TypeError(f"`{name}` holds {item!r} ({type(item).__name__}), which is not callable")
        if name == "logits_processor":
            check_processor_parameters(item)
    return items


def check_processor_parameters(processor):
    """Transformers' LogitsProcessorList passes a processor whose __call__ takes more than (input_ids, scores) the
    keyword arguments it names, and generate() passes none: such a processor raises its ValueError."""
    try:
        parameters = list(inspect.signature(processor.__call__).parameters)
    except (TypeError, ValueError):  # no signature to read (a builtin): called with the two
        return
    if len(parameters) > 2:
        raise ValueError(f"Make sure that all the required parameters: {parameters} for {processor.__class__} are "
                         "passed to the logits processor.")


def name_of_list(name):
    return "LogitsProcessorList" if name == "logits_processor" else "StoppingCriteriaList"


def warn_replaced(custom, kind):
    cls = type(custom)
    warnings.warn(f"A custom {kind} of type {cls} has been passed to `.generate()`, but it was also created in "
                  f"`.generate()`, given its parameterization. The custom {cls} will take precedence. Please check "
                  f"the docstring of {cls} to see related `.generate()` flags.", UserWarning, stacklevel=5)


def merge_processors(custom, settings, defaults, config, prompt_length):
    """Transformers' _merge_criteria_processor_list for the processors: {stage: [callables]}, with the C settings of
    a default processor a custom one replaces turned off (settings is changed in place)."""
    stages = {}
    replaced = set()
    remaining = list(custom)
    for name, (stage, fields) in DEFAULT_PROCESSORS.items():
        if name not in defaults:
            continue
        match = next((p for p in remaining if transformers_type(p, "logits_process") == name), None)
        if match is None:
            continue
        warn_replaced(match, "logits processor")
        remaining = [p for p in remaining if p is not match]
        replaced.add(name)
        for field in fields:
            settings[field] = _core.GENERATION_SETTINGS[field]
        stages.setdefault(stage, []).append(match)
    if replaced & {"MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor"}:
        # the core bans eos below the larger of both lengths: keep the one not replaced
        lengths = []
        if "MinLengthLogitsProcessor" in defaults - replaced:
            lengths.append(config.min_length)
        if "MinNewTokensLengthLogitsProcessor" in defaults - replaced:
            lengths.append(prompt_length + config.min_new_tokens)
        settings["min_length"] = max(lengths, default=0)
    if remaining:
        stages.setdefault(CUSTOM_STAGE, []).extend(remaining)
    return stages


class PrefixConstrained:
    """Transformers' PrefixConstrainedLogitsProcessor: only the tokens fn(batch_id, row) allows, row by row, with
    batch_id = row // num_beams; where every row of a prompt is left with nothing but -inf, the allowed tokens get 0."""

    def __init__(self, fn, num_beams):
        self.fn = fn
        self.num_beams = num_beams

    def __call__(self, input_ids, scores):
        torch = torch_module()
        ids = to_numpy(input_ids, "input_ids")
        scores = to_numpy(scores, "scores")
        mask = np.full(scores.shape, -np.inf, dtype=np.float32)
        for row in range(ids.shape[0]):
            batch_id = row // self.num_beams
            sent = torch.from_numpy(ids[row].copy()) if torch is not None else ids[row].copy()
            mask[row, self.allowed(self.fn(batch_id, sent), batch_id, scores.shape[1])] = 0
        processed = scores + mask
        unsatisfiable = np.isneginf(processed.max(axis=-1)).reshape(-1, self.num_beams).all(axis=-1)
        return np.where(np.repeat(unsatisfiable, self.num_beams)[:, None], mask, processed)

    @staticmethod
    def allowed(allowed, batch_id, vocab_size):
        """The function's answer as mask indices: token ids (negative ones count from the end, as torch indexes) or
        one boolean per token."""
        what = f"prefix_allowed_tokens_fn returned {type(allowed).__name__} for batch ID {batch_id}"
        try:
            empty = len(allowed) == 0
        except TypeError:
            raise TypeError(f"{what}; it must return the allowed token ids (a list or a tensor)") from None
        if empty:
            raise ValueError(f"`prefix_allowed_tokens_fn` returned an empty list for batch ID {batch_id}.This "
                             "means that the constraint is unsatisfiable. Please check your implementationof "
                             "`prefix_allowed_tokens_fn` ")
        try:
            ids = to_numpy(list(allowed) if isinstance(allowed, range) else allowed,
                           "the token ids prefix_allowed_tokens_fn returned")
        except TypeError:
            raise TypeError(f"{what}; it must return the allowed token ids (a list or a tensor)") from None
        if ids.dtype == bool:
            return ids
        if not np.issubdtype(ids.dtype, np.integer):  # torch refuses them as indices; NumPy would truncate floats
            raise TypeError(f"prefix_allowed_tokens_fn returned {ids.dtype} token ids for batch ID {batch_id}; "
                            "they must be integers")
        bad = ids[(ids < -vocab_size) | (ids >= vocab_size)]
        if bad.size:
            raise IndexError(f"prefix_allowed_tokens_fn returned token id {bad.flat[0]} for batch ID {batch_id}, "
                             f"outside the vocabulary [0, {vocab_size})")
        return ids.astype(np.int64)


class ForcedEos:
    """Transformers' ForcedEOSTokenLogitsProcessor at the generation config's max_length where the loop runs past it
    (to a caller's longer MaxLengthCriteria, as Transformers' greedy search and sampling do): the forced ids alone
    at length max_length - 1, whatever the loop's length."""

    def __init__(self, max_length, token_ids):
        self.max_length = max_length
        self.token_ids = np.asarray(token_ids, dtype=np.int64)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] != self.max_length - 1:
            return scores
        forced = np.full(tuple(scores.shape), -np.inf, dtype=np.float32)
        forced[:, self.token_ids] = 0
        return forced


class Processors:
    """The hook of the C loop (Generator.set_processor_hook): the caller's processors of each stage, applied to
    the rows' ids and scores the step has so far."""

    def __init__(self, stages, vocab_size):
        self.stages = stages
        self.vocab_size = vocab_size
        self.bits = sum(1 << stage for stage in stages)

    def __call__(self, stage, ids, rows, length, scores):
        input_ids = np.frombuffer(ids, dtype=np.int64).reshape(rows, length)
        scores = np.frombuffer(scores, dtype=np.float32).reshape(rows, self.vocab_size).copy()
        torch = torch_module()
        for processor in self.stages[stage]:
            if torch is not None:
                result = processor(torch.from_numpy(input_ids.copy()), torch.from_numpy(scores))
            else:
                result = processor(input_ids.copy(), scores)
            scores = self.checked(processor, result, scores.shape)
        return scores

    @staticmethod
    def checked(processor, result, shape):
        what = type(processor).__name__ if not hasattr(processor, "__name__") else processor.__name__
        if isinstance(processor, PrefixConstrained):
            what = "prefix_allowed_tokens_fn"
        try:
            array = to_numpy(result, "scores")
        except TypeError:
            raise TypeError(f"the logits processor {what} returned {type(result).__name__}, not scores (a tensor "
                            f"of shape {shape})") from None
        if array.shape != shape:
            raise ValueError(f"the logits processor {what} returned scores of shape {tuple(array.shape)}; they must "
                             f"keep the shape of the scores it was given, {shape}")
        if array.dtype.kind not in "fiub":
            raise TypeError(f"the logits processor {what} returned scores of dtype {array.dtype}, not floats")
        array = np.ascontiguousarray(array, dtype=np.float32)
        bad = np.isnan(array) | np.isposinf(array)
        if bad.any():
            row, token = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"the logits processor {what} returned {array[row, token]} for token {token} of row "
                             f"{row}: scores must be finite or -inf")
        return array


class Criteria:
    """The caller's stopping criteria, called after each step as Transformers' StoppingCriteriaList: with the rows
    so far and the scores (the tuple of each step's processed scores with return_dict_in_generate and
    output_scores, else None); a row stops when any criterion says so."""

    def __init__(self, criteria):
        self.criteria = criteria

    def __call__(self, sequences, scores):
        torch = torch_module()
        rows = sequences.shape[0]
        if torch is not None:
            input_ids = torch.from_numpy(np.ascontiguousarray(sequences))
            scores = None if scores is None else tuple(torch.from_numpy(step) for step in scores)
        else:
            input_ids = np.ascontiguousarray(sequences)
        done = np.zeros(rows, dtype=bool)
        for criterion in self.criteria:
            result = criterion(input_ids, scores)
            if isinstance(result, (bool, np.bool_)):
                done |= bool(result)
                continue
            try:
                array = to_numpy(result, "stopping criterion")
            except TypeError:
                array = None
            if array is None or array.dtype != bool or array.shape not in ((rows,), (1,), ()):
                what = getattr(array, "shape", None)
                raise TypeError(f"the stopping criterion {type(criterion).__name__} returned "
                                f"{type(result).__name__}{'' if what is None else f' of shape {what} dtype {array.dtype}'}"
                                f"; it must return a bool or a bool tensor of shape ({rows},)")
            done |= array
        return done


class CandidateCriteria:
    """Beam search's stop hook (Generator.set_stop_hook): stop strings (utils.StopStrings) and the caller's criteria
    (or None) over every step's candidates, as Transformers' _beam_search calls them (with the scores of the steps so
    far, this one's included, or None)."""

    def __init__(self, criteria, scores, context, stop_strings=None):
        self.criteria, self.scores, self.context, self.stop_strings = criteria, scores, context, stop_strings
        self.steps = 0

    def __call__(self, ids, rows, length):
        self.steps += 1
        sequences = np.frombuffer(ids, dtype=np.int64).reshape(rows, length)[:, self.context:]
        hits = np.zeros(rows, dtype=bool)
        if self.stop_strings is not None:
            hits |= self.stop_strings(sequences, sequences.shape[1], 0)
        if self.criteria is not None:
            scores = None if self.scores is None else tuple(self.scores[:self.steps])
            hits |= self.criteria(sequences, scores)
        return hits.astype(np.uint8)


def merge_criteria(custom, config, eos, pad, has_stop_strings, num_beams):
    """Transformers' _merge_criteria_processor_list for the stopping criteria. The defaults (max_length, max_time,
    stop strings, eos) run in the C loop or in Run; a custom one of a default's type replaces it: the default's
    setting is then dropped (max_time, stop strings), the loop runs up to a longer custom max_length, and an
    EosTokenCriteria of other ids than the config's stops rows at its own ids alone (the processors keep the
    config's).
    Returns (criteria, drop_max_time, drop_stop_strings, max_length: the loop's, or None for the config's,
    custom_eos: the caller's criteria stop rows at eos ids in place of the config's eos ids, as
    nt_generation_config's custom_eos_criteria)."""
    forced = config.forced_eos_token_id
    forced = [] if forced is None else [int(t) for t in np.asarray(to_numpy(forced, "forced_eos_token_id")).reshape(-1)]
    drop_max_time = drop_stop_strings = custom_eos = False
    max_length = None
    defaults = {"MaxLengthCriteria": config.max_length is not None, "MaxTimeCriteria": config.max_time is not None,
                "StopStringCriteria": has_stop_strings, "EosTokenCriteria": bool(eos)}
    seen = set()
    for criterion in custom:
        name = transformers_type(criterion, "stopping_criteria")
        if name is None or not defaults.get(name) or name in seen:
            continue
        seen.add(name)
        warn_replaced(criterion, "stopping criteria")
        if name == "MaxTimeCriteria":
            drop_max_time = True
        elif name == "StopStringCriteria":
            drop_stop_strings = True
        elif name == "MaxLengthCriteria" and criterion.max_length > config.max_length:
            # Transformers' greedy search and sampling then go on to it (the processors keep the config's
            # max_length: a forced eos comes there); its beam search fails (IndexError) past the arrays sized by the
            # config's, unless forced eos ids that are all eos ids end every beam by then
            if num_beams == 1:
                max_length = int(criterion.max_length)
            elif not forced or not set(forced) <= set(eos):
                raise NotImplementedError(f"a MaxLengthCriteria(max_length={criterion.max_length}) beyond the "
                                          f"generation config's max_length ({config.max_length}) in beam search is "
                                          "not supported (Transformers fails with an IndexError): set max_length or "
                                          "max_new_tokens instead")
        elif name == "EosTokenCriteria":
            theirs = sorted(int(t) for t in np.asarray(to_numpy(criterion.eos_token_id, "eos_token_id")).reshape(-1))
            custom_eos = theirs != sorted(eos)
    if not eos and any(hasattr(criterion, "eos_token_id") for criterion in custom):
        # Transformers' greedy search and sampling then pad finished rows (its has_eos_stopping_criteria) with
        # pad_token_id, and fail (TypeError) without one
        if pad is None and num_beams == 1:
            raise ValueError("a stopping criterion with an eos_token_id pads the rows it stops with pad_token_id, "
                             "which is not set (nor eos_token_id, which stands in for it): set pad_token_id")
        custom_eos = True
    return Criteria(custom), drop_max_time, drop_stop_strings, max_length, custom_eos
