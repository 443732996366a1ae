"""nemotron_c.pipeline(task, model=..., tokenizer=...): Transformers' pipelines over nemotron_c's models.

    generator = nemotron_c.pipeline("text-generation")            # the demo model
    generator("Return the", max_new_tokens=20)                    # [{"generated_text": "Return the ..."}]

Tasks: "text-generation", "text-classification" (alias "sentiment-analysis"), "token-classification" (alias
"ner"; every aggregation_strategy, stride windows), and "question-answering", which Transformers 5 removed: it follows
Transformers 4.57's QuestionAnsweringPipeline, the last one. Inputs, argument names and outputs are Transformers'
(a str gives what Transformers gives for a str, a list a list); scores are Python floats.
model is a checkpoint directory, a Hub id or a loaded nemotron_c model; tokenizer defaults to the model's.
"""
import copy
import sys
import types
import warnings
from collections.abc import Iterable

import numpy as np

from .demo import demo_model_path
from .generation.configuration import GenerationConfig
from .model.heads import (NemotronForQuestionAnswering, NemotronForSequenceClassification,
                          NemotronForTokenClassification)
from .model.modeling import NemotronForCausalLM, check_cpu_device
from .tokenizer.tokenization import AutoTokenizer

# What Transformers' text-generation pipeline adds to the parameters that neither the call nor the model's
# generation config sets (its _default_generation_config); the sampling ones only when sampling
GENERATION_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
SAMPLING_PARAMETERS = {"temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff",
                       "eta_cutoff"}
# Keywords given at construction that Transformers sets aside as generation parameters: a call that passes its own
# generation_config replaces them all
GENERATION_KEYS = frozenset(key for key in vars(GenerationConfig()) if not key.startswith("_")) | {"generation_config"}


# Transformers' pipelines pad every batch of a list or a generator when batch_size > 1, and refuse without a pad token
NO_PAD_BATCHING = ("Pipeline with tokenizer without pad_token cannot do batching. You can try to set it with "
                   "`pipe.tokenizer.pad_token_id = model.config.eos_token_id`.")


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def batch_size_of(value, default):
    """The batch size a call or a construction asks for: None means the default; anything but a positive integer
    raises the ValueError Transformers' DataLoader raises (where range() would silently drop every input)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"batch_size should be a positive integer value, but got batch_size={value!r}")
    return int(value)


def streamed(inputs):
    """A torch Dataset (KeyDataset over a datasets.Dataset, say) as a generator of its items: Transformers'
    pipelines take one as they take a generator, giving an iterator of results."""
    torch = sys.modules.get("torch")  # a Dataset comes from torch, so torch is imported when there is one
    if torch is None or not isinstance(inputs, torch.utils.data.Dataset):
        return inputs
    if isinstance(inputs, torch.utils.data.IterableDataset):
        return (item for item in inputs)
    return (inputs[i] for i in range(len(inputs)))


def collate(rows, value, left):
    """Rows padded with value to the longest, on the left or the right: a batch as Transformers' pipelines collate
    it (an int64 array)."""
    length = max(len(row) for row in rows)
    return np.array([[value] * (length - len(row)) + row if left else row + [value] * (length - len(row))
                     for row in rows], dtype=np.int64).reshape(len(rows), length)


class Pipeline:
    """A model and its tokenizer behind Transformers' pipeline call; batch_size groups inputs per forward."""

    model_class = None
    # settings that a call gives as None leave as the construction gave them (Transformers' _sanitize_parameters
    # sets only those not None)
    unset_by_none = frozenset()

    def __init__(self, model, tokenizer=None, batch_size=None, **kwargs):
        # what Transformers' pipeline() takes for loading, kept out of the call defaults: the files' revision and
        # token for the model and the tokenizer, model_kwargs and the dtype for the model; use_fast is moot (the
        # tokenizer is the tokenizers one either way)
        hub = {key: kwargs.pop(key) for key in ("revision", "token") if kwargs.get(key) is not None}
        loading = dict(kwargs.pop("model_kwargs", None) or {})
        loading.update({key: kwargs.pop(key) for key in ("dtype", "torch_dtype", "num_threads", "config")
                        if kwargs.get(key) is not None})
        kwargs.pop("use_fast", None)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = self.model_class.from_pretrained(model, **hub, **loading)
        # the checkpoint's name, or for a LoRA adapter its base model's, as Transformers finds the tokenizer
        name = model.name_or_path
        if tokenizer is None:
            if not name:
                raise ValueError("give tokenizer=: the model was not loaded from a checkpoint that would hold one")
            tokenizer = name
        if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer, **hub)
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size_of(batch_size, 1)
        self.defaults = kwargs  # call arguments given once, at construction, as Transformers allows

    def __call__(self, inputs, **kwargs):
        kwargs = {**self.defaults, **{key: value for key, value in kwargs.items()
                                      if not (value is None and key in self.unset_by_none)}}
        batch_size = batch_size_of(kwargs.pop("batch_size", None), self.batch_size)
        kwargs.pop("num_workers", None)  # Transformers' DataLoader workers: the model's threads do the work here
        inputs = streamed(inputs)
        if isinstance(inputs, types.GeneratorType):
            # as Transformers: a generator is not read ahead; its results come as an iterator, batch by batch
            return self._stream(inputs, batch_size, kwargs)
        single = not self._is_batch(inputs)
        items = [inputs] if single else list(inputs)
        results = []
        for start in range(0, len(items), batch_size):
            results += self._run(items[start:start + batch_size], **kwargs)
        return self._shape(results, single, kwargs)

    def _stream(self, inputs, batch_size, kwargs):
        batch = []
        for item in inputs:
            batch.append(item)
            if len(batch) == batch_size:
                yield from self._run(batch, **kwargs)
                batch = []
        if batch:
            yield from self._run(batch, **kwargs)

    def _is_batch(self, inputs):
        return isinstance(inputs, (list, tuple))

    def _shape(self, results, single, kwargs):
        return results[0] if single else results


# ---------------------------------------------------------------- text generation


EMPTY = object()


def is_message(item):
    """A chat message as Transformers recognises one: a dict with "role" and "content"."""
    return isinstance(item, dict) and "role" in item and "content" in item


def chained(first, rest):
    yield first
    yield from rest


RETURN_SETTINGS = ("return_full_text", "return_tensors", "return_text", "return_type")  # _return_type's order


class TextGenerationPipeline(Pipeline):
    """Continues texts or chats (a list of {"role", "content"} messages, rendered with the chat template)."""

    model_class = NemotronForCausalLM
    unset_by_none = frozenset({
        "return_full_text", "return_tensors", "return_text", "return_type", "clean_up_tokenization_spaces",
        "skip_special_tokens", "prefix", "add_special_tokens", "continue_final_message", "stop_sequence",
        "truncation", "padding", "max_length", "tokenizer_encode_kwargs", "handle_long_generation", "tools",
        "documents"})

    def _is_batch(self, inputs):
        return isinstance(inputs, (list, tuple)) and not (inputs and is_message(inputs[0]))

    def _set_generation_params(self, generate_kwargs):
        """What generate() will not take from its global defaults: the kwargs, over their generation_config if any,
        over the model's generation config."""
        params = self.model.generation_config.to_diff_dict()
        if generate_kwargs.get("generation_config") is not None:
            params.update(generate_kwargs["generation_config"].to_diff_dict())
        return {**params, **generate_kwargs}

    def _with_defaults(self, generate_kwargs):
        """generate()'s keywords for a call, as Transformers' _prepare_generate_kwargs: the call's over those given at
        construction (unless the call passes a generation_config, which replaces them), plus the pipeline's defaults
        for what nobody set (the sampling ones only when sampling), put into a copy of the call's generation_config
        when it passes one, since generate() would otherwise let that config override nothing."""
        if "generation_config" not in generate_kwargs:
            generate_kwargs = {**self.generate_defaults, **generate_kwargs}
        defaults = dict(GENERATION_DEFAULTS)
        if self.tokenizer.pad_token_id is not None:
            defaults["pad_token_id"] = self.tokenizer.pad_token_id
        chosen = self._set_generation_params(generate_kwargs)
        added = {key: value for key, value in defaults.items()
                 if key not in chosen and not (key == "max_new_tokens" and "max_length" in chosen)}
        if not {**chosen, **added}.get("do_sample"):
            added = {key: value for key, value in added.items() if key not in SAMPLING_PARAMETERS}
        user_config = generate_kwargs.get("generation_config")
        if user_config is None:
            return {**generate_kwargs, **added}
        user_config = copy.deepcopy(user_config)
        user_config.update(**added)
        return {**generate_kwargs, "generation_config": user_config}

    def __init__(self, model, tokenizer=None, batch_size=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
        self.generate_defaults = {key: self.defaults.pop(key) for key in GENERATION_KEYS & self.defaults.keys()}
        # as Transformers: a "prefix" in config.json is the prefix when the construction gives none
        if "prefix" not in self.defaults and getattr(self.model.config, "prefix", None) is not None:
            self.defaults["prefix"] = self.model.config.prefix
        # as Transformers' pipeline: batches of a decoder-only model pad on the left (the tokenizer itself changes)
        if self.tokenizer.padding_side == "right":
            self.tokenizer.padding_side = "left"

    def __call__(self, inputs, **kwargs):
        inputs = streamed(inputs)
        if isinstance(inputs, types.GeneratorType):
            # as Transformers, which reads a generator's first item at once: a generator of messages is one chat
            # (read whole), an empty one gives an empty list
            first = next(inputs, EMPTY)
            if first is EMPTY:
                inputs = []
            elif is_message(first):
                inputs = [first, *inputs]
            else:
                inputs = chained(first, inputs)
        batch_size = batch_size_of(kwargs.get("batch_size", self.defaults.get("batch_size")), self.batch_size)
        if batch_size > 1 and self.tokenizer.pad_token_id is None and \
                (self._is_batch(inputs) or isinstance(inputs, types.GeneratorType)):
            raise ValueError(NO_PAD_BATCHING)
        given = {key: kwargs.pop(key) for key in RETURN_SETTINGS if kwargs.get(key) is not None}
        # as Transformers, which reads the construction's and the call's return settings each on its own: a type the
        # call's set replaces the construction's (return_text alone sets none), and they are never refused together
        returned = self._return_type(*(given.get(key) for key in RETURN_SETTINGS))
        if returned is not None:
            kwargs["return_type"] = ["tensors", "new", "full"].index(returned)
        return super().__call__(inputs, **kwargs)

    def _run(self, prompts, return_full_text=None, return_tensors=None, return_text=None, return_type=None,
             clean_up_tokenization_spaces=None, skip_special_tokens=True, prefix="", add_special_tokens=None,
             continue_final_message=None, stop_sequence=None, truncation=None, padding=None, max_length=None,
             tokenizer_encode_kwargs=None, handle_long_generation=None, tools=None, documents=None,
             **generate_kwargs):
        """One generate call for the prompts of a batch, padded to the longest on the tokenizer's padding side as
        Transformers' pipeline collates them; each prompt's text is what follows the padded prompt."""
        returned = self._return_type(return_full_text, return_tensors, return_text, return_type) or "full"
        if handle_long_generation not in (None, "hole"):
            raise ValueError(f"{handle_long_generation} is not a valid value for `handle_long_generation` parameter "
                             "expected [None, 'hole']")
        # as Transformers' preprocess: these encode the prompt (max_length also bounds generate, as there), and only
        # those given, so that the tokenizer's own defaults hold otherwise
        tokenizer_kwargs = {key: value for key, value in (("add_special_tokens", add_special_tokens),
                                                          ("truncation", truncation), ("padding", padding),
                                                          ("max_length", max_length)) if value is not None}
        tokenizer_kwargs.update(tokenizer_encode_kwargs or {})
        if max_length is not None:
            generate_kwargs["max_length"] = max_length
        generate_kwargs = self._with_defaults(generate_kwargs)
        # the lengths "hole" keeps prompts within (the pipeline's defaults always set one of them)
        lengths = self._set_generation_params(generate_kwargs) if handle_long_generation == "hole" else None
        if prefix:
            # as Transformers: a total length (not a number of new tokens) counts the prefix's tokens too, counted
            # without special tokens unless the call's add_special_tokens says otherwise
            prefix_length = len(self.tokenizer(prefix, add_special_tokens=bool(add_special_tokens))["input_ids"])
            chosen = self._set_generation_params(generate_kwargs)
            for length, new_tokens in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
                if length in chosen and new_tokens not in chosen:
                    generate_kwargs[length] = chosen[length] + prefix_length
        if stop_sequence is not None:
            generate_kwargs["stop_strings"] = [stop_sequence] if isinstance(stop_sequence, str) else stop_sequence
            generate_kwargs["tokenizer"] = self.tokenizer
        encoded, finals = [], []
        for prompt in prompts:
            final = None
            if isinstance(prompt, (list, tuple)):
                if not (prompt and is_message(prompt[0])):
                    raise TypeError(f"a prompt is a str or a chat (a list of {{'role': ..., 'content': ...}} "
                                    f"messages), got {prompt!r}")
                if not all(is_message(message) for message in prompt):  # Transformers' Chat's check and message
                    raise ValueError("When passing chat dicts as input, each dict must have a 'role' and 'content' "
                                     "key.")
                final = continue_final_message
                if final is None:
                    final = prompt[-1]["role"] == "assistant"
                chat_kwargs = {key: value for key, value in tokenizer_kwargs.items() if key != "add_special_tokens"}
                inputs = self.tokenizer.apply_chat_template(
                    list(prompt), add_generation_prompt=not final, continue_final_message=final, return_dict=True,
                    tools=tools, documents=documents, **chat_kwargs)
            else:
                inputs = self.tokenizer(prefix + prompt, **tokenizer_kwargs)
            ids, mask = list(inputs["input_ids"]), list(inputs["attention_mask"])
            if lengths is not None:
                ids, mask = self._hole(ids, mask, lengths)
            encoded.append((ids, mask))
            finals.append(final)
        # an empty prompt runs on its own (Transformers' collate fails on it)
        groups = [[i for i, (row, _) in enumerate(encoded) if row]] + \
            [[i] for i, (row, _) in enumerate(encoded) if not row]
        results = [None] * len(prompts)
        for group in filter(None, groups):
            left = self.tokenizer.padding_side == "left"
            ids = collate([encoded[i][0] for i in group], self.tokenizer.pad_token_id, left)
            mask = collate([encoded[i][1] for i in group], 0, left)
            if ids.size == 0:  # as Transformers: generation from nothing (the model's BOS)
                sequences = self.model.generate(None, **generate_kwargs)
            else:
                sequences = self.model.generate(ids, attention_mask=mask, **generate_kwargs)
            extras = {}
            if hasattr(sequences, "sequences"):
                extras = per_sequence_outputs(sequences, len(group))
                sequences = sequences.sequences
            sequences = np.asarray(sequences)
            sequences = sequences.reshape(len(group), -1, sequences.shape[-1]).tolist()
            for row, (i, rows) in enumerate(zip(group, sequences)):
                results[i] = self._records(prompts[i], finals[i], rows, ids.shape[-1], returned,
                                           skip_special_tokens, clean_up_tokenization_spaces,
                                           {key: value[row] for key, value in extras.items()})
        return results

    def _hole(self, ids, mask, lengths):
        """handle_long_generation="hole": a prompt whose tokens and the new ones would pass the tokenizer's
        model_max_length keeps only its last tokens, as Transformers' preprocess cuts it."""
        new_tokens = lengths.get("max_new_tokens")
        if new_tokens is None:
            new_tokens = lengths["max_length"] - len(ids)
            if new_tokens < 0:
                raise ValueError("We cannot infer how many new tokens are expected")
        if len(ids) + new_tokens > self.tokenizer.model_max_length:
            keep = self.tokenizer.model_max_length - new_tokens
            if keep <= 0:
                raise ValueError("We cannot use `hole` to handle this generation the number of desired tokens "
                                 "exceeds the models max length")
            ids, mask = ids[-keep:], mask[-keep:]
        return ids, mask

    @staticmethod
    def _return_type(return_full_text, return_tensors, return_text, return_type=None):
        """"full" text, "new" text or "tensors", read as Transformers' _sanitize_parameters reads them: return_type
        (Transformers' ReturnType) first, then a setting given at all (even False) counts, and two of them together
        raise; None where none sets it (return_text alone: the full text, unless the construction said otherwise)."""
        if return_type is not None:
            # ReturnType.TENSORS, NEW_TEXT, FULL_TEXT, or their values 0, 1, 2 (on which Transformers fails)
            returned = {"TENSORS": "tensors", "NEW_TEXT": "new", "FULL_TEXT": "full"}
            name = getattr(return_type, "name", None)
            if name not in returned and isinstance(return_type, int) and not isinstance(return_type, bool) and \
                    0 <= return_type <= 2:
                name = list(returned)[return_type]
            if name not in returned:
                raise ValueError(f"return_type={return_type!r}: give a ReturnType (TENSORS, NEW_TEXT or FULL_TEXT)")
            return returned[name]
        if return_full_text is not None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_full_text`")
            if return_tensors is not None:
                raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
            return "full" if return_full_text else "new"
        if return_tensors is not None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_tensors`")
            return "tensors"
        return None

    def _records(self, prompt, final, rows, prompt_length, returned, skip_special_tokens,
                 clean_up_tokenization_spaces, extras):
        records = []
        for index, sequence in enumerate(rows):
            if returned == "tensors":
                records.append({"generated_token_ids": sequence})
                continue
            text = self.tokenizer.decode(sequence[prompt_length:], skip_special_tokens=skip_special_tokens,
                                         clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            if returned == "full":
                if isinstance(prompt, str):
                    text = prompt + text
                elif final:
                    text = list(prompt[:-1]) + [{"role": prompt[-1]["role"], "content": prompt[-1]["content"] + text}]
                else:
                    text = list(prompt) + [{"role": "assistant", "content": text}]
            # as Transformers: a text record also carries generate's per-sequence outputs (scores, logits...)
            records.append({"generated_text": text, **{key: value[index].tolist() for key, value in extras.items()}})
        return records


def per_sequence_outputs(output, prompts):
    """generate()'s outputs with one entry per returned sequence, as (prompts, sequences per prompt, ...) arrays:
    Transformers' pipeline keeps the arrays whose first axis is the sequences and the per-step tuples of those
    (stacked to (sequence, step, ...)); the per-layer ones (attentions, hidden states) and the cache it drops."""
    count = np.shape(output.sequences)[0]
    kept = {}
    for key, value in output.items():
        if key in ("sequences", "cache", "past_key_values"):
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], np.ndarray) and len(value[0]) == count:
            value = np.stack(value).swapaxes(0, 1)
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == count:
            kept[key] = value.reshape(prompts, count // prompts, *value.shape[1:])
    return kept


# ---------------------------------------------------------------- text classification


class TextClassificationPipeline(Pipeline):
    """Labels with scores, the model's head pooled at the last token: function_to_apply "softmax", "sigmoid" or
    "none" (default as Transformers: sigmoid for one label or multi-label, none for regression, else softmax)."""

    model_class = NemotronForSequenceClassification
    LEGACY = object()  # top_k not given: Transformers' older output shape

    def __call__(self, inputs, **kwargs):
        # top_k given at construction holds for each call; Transformers' older output shape (a str gives a list
        # around its result) follows from the call's own keywords alone
        legacy_shape = "top_k" not in kwargs
        inputs = streamed(inputs)
        if kwargs.get("function_to_apply", "") is None:  # as Transformers: not given, the construction's holds
            del kwargs["function_to_apply"]
        batch_size = batch_size_of(kwargs.get("batch_size", self.defaults.get("batch_size")), self.batch_size)
        if batch_size > 1 and self.tokenizer.pad_token_id is None and \
                isinstance(inputs, (list, tuple, types.GeneratorType)):
            raise ValueError(NO_PAD_BATCHING)  # as Transformers, even for a list of one (a str runs alone)
        if "top_k" not in kwargs and "top_k" not in self.defaults:
            kwargs["top_k"] = self.LEGACY
        for top_k in (kwargs.get("top_k"), self.defaults.get("top_k")):
            if not (top_k is None or top_k is self.LEGACY or isinstance(top_k, (int, np.integer))):
                # Transformers ignores such a top_k (and gives the one best label)
                raise ValueError(f"top_k={top_k!r}: give a number of labels (int) or None for all")
        results = super().__call__(inputs, **kwargs)
        return [results] if legacy_shape and isinstance(inputs, str) else results

    def _encode(self, text, tokenizer_kwargs):
        """One input as Transformers' preprocess reads it: a str, a {"text", "text_pair"} dict (its keys go to the
        tokenizer), or the older [[text, text_pair]]."""
        if isinstance(text, dict):
            if isinstance(text.get("text"), (list, tuple)):
                # Transformers would run the texts as a batch and answer for the first alone
                raise ValueError(f'a {{"text", "text_pair"}} input holds one text (a str), got {text["text"]!r}; '
                                 "give a list of such dicts for several")
            return self.tokenizer(**text, **tokenizer_kwargs)
        if isinstance(text, (list, tuple)):
            if len(text) == 1 and isinstance(text[0], (list, tuple)) and len(text[0]) == 2:
                return self.tokenizer(text=text[0][0], text_pair=text[0][1], **tokenizer_kwargs)
            raise ValueError('The pipeline received invalid inputs, if you are trying to send text pairs, you can try '
                             'to send a dictionary `{"text": "My text", "text_pair": "My pair"}` in order to send a '
                             'text pair.')
        return self.tokenizer(text, **tokenizer_kwargs)

    def _batch(self, texts, tokenizer_kwargs):
        """The inputs encoded one by one (so tokenizer keywords such as padding="max_length" apply to each), then
        padded to the longest on the tokenizer's side, as Transformers' pipeline collates them."""
        rows = [self._encode(text, tokenizer_kwargs) for text in texts]
        left = self.tokenizer.padding_side == "left"
        return {"input_ids": collate([list(row["input_ids"]) for row in rows], self.tokenizer.pad_token_id, left),
                "attention_mask": collate([list(row["attention_mask"]) for row in rows], 0, left)}

    def _run(self, texts, top_k, function_to_apply=None, **tokenizer_kwargs):
        config = self.model.config
        functions = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}
        function = getattr(function_to_apply, "value", function_to_apply)  # Transformers' ClassificationFunction
        if isinstance(function, str):
            if function.lower() not in functions:
                raise KeyError(f"{function.upper()!r}: function_to_apply is one of {', '.join(functions)}")
            function = function.lower()
        elif function is None:
            problem = getattr(config, "problem_type", None)
            function = ("none" if problem == "regression" else
                        "sigmoid" if problem == "multi_label_classification" or config.num_labels == 1 else
                        "softmax")
        else:
            raise ValueError(f"Unrecognized `function_to_apply` argument: {function_to_apply}")
        logits = self.model(**self._batch(texts, tokenizer_kwargs)).logits
        scores = functions[function](logits)
        results = []
        for row in scores:
            if top_k is self.LEGACY:
                results.append({"label": config.id2label[int(row.argmax())], "score": float(row.max())})
                continue
            labelled = sorted(({"label": config.id2label[i], "score": float(s)} for i, s in enumerate(row)),
                              key=lambda x: x["score"], reverse=True)
            results.append(labelled if top_k is None else labelled[:top_k])
        return results


# ---------------------------------------------------------------- token classification


AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")
TOKEN_CLASSIFICATION_SETTINGS = {"ignore_labels", "aggregation_strategy", "offset_mapping", "is_split_into_words",
                                 "stride", "delimiter", "batch_size", "num_workers"}


def aggregation_name(strategy):
    """"none" ... "max" from a str in any case or Transformers' AggregationStrategy; None is "none"."""
    if strategy is None:
        return "none"
    if isinstance(strategy, str):
        if strategy.lower() not in AGGREGATION_STRATEGIES:
            # Transformers' AggregationStrategy[...] raises the KeyError
            raise KeyError(f"aggregation_strategy {strategy!r}: choose one of {', '.join(AGGREGATION_STRATEGIES)}")
        return strategy.lower()
    value = getattr(strategy, "value", None)
    if value in AGGREGATION_STRATEGIES:
        return value
    raise ValueError(f"Invalid aggregation_strategy {strategy!r}")


class TokenClassificationPipeline(Pipeline):
    """Entities per token ("none"), grouped B-/I- spans ("simple"), or spans of words whose tokens agree ("first",
    "average", "max"), labels in ignore_labels (default ["O"]) left out, with Transformers' "entity"/"entity_group",
    "score", "index", "word", "start", "end". stride cuts texts longer than model_max_length into overlapping
    windows whose entities are merged, as Transformers does."""

    model_class = NemotronForTokenClassification

    def __init__(self, model, tokenizer=None, batch_size=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
        self._sanitize(self.defaults)  # as Transformers, settings given at construction are checked there

    def _sanitize(self, settings):
        """Transformers' _sanitize_parameters checks, on the settings of a call or of the construction alone."""
        unknown = set(settings) - TOKEN_CLASSIFICATION_SETTINGS
        if unknown:  # Transformers' _sanitize_parameters takes no other keyword either
            raise TypeError(f"unexpected arguments for token-classification: {', '.join(sorted(unknown))}")
        strategy = settings.get("aggregation_strategy")
        if strategy is not None:
            strategy = aggregation_name(strategy)
        stride = settings.get("stride")
        if stride is not None:
            if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0:
                # Transformers' tokenizer fails on it (OverflowError for a negative one)
                raise ValueError(f"stride={stride!r}: give a number of tokens >= 0")
            if stride >= self.tokenizer.model_max_length:
                raise ValueError("`stride` must be less than `tokenizer.model_max_length` (or even lower if the "
                                 "tokenizer adds special tokens)")
            if strategy == "none":
                # Transformers' message, its enum written as f-strings write it
                raise ValueError("`stride` was provided to process all the text but "
                                 '`aggregation_strategy="AggregationStrategy.NONE"`, please select another one '
                                 "instead.")

    def __call__(self, inputs, **kwargs):
        self._sanitize(kwargs)
        # as Transformers' _sanitize_parameters: a setting given as None is not given (the construction's holds)
        settings = {**self.defaults, **{key: value for key, value in kwargs.items() if value is not None}}
        batch_size = batch_size_of(settings.pop("batch_size", None), self.batch_size)
        settings.pop("num_workers", None)  # the model's threads do the work
        if batch_size > 1 and self.tokenizer.pad_token_id is None:
            # as Transformers: batches are padded, so asking for them without a pad token fails, whatever the input
            raise ValueError(NO_PAD_BATCHING)
        offset_mapping = settings.pop("offset_mapping", None)
        inputs = streamed(inputs)
        if isinstance(inputs, types.GeneratorType):
            return self._stream(zip(inputs, self._offset_mappings(offset_mapping, None)), batch_size, settings)
        if isinstance(inputs, str):
            items, single = [inputs], True
        elif isinstance(inputs, (list, tuple)) and inputs:
            items, single = list(inputs), False
            if settings.get("is_split_into_words") and not all(isinstance(x, (list, tuple)) for x in items):
                items = [items]  # one sentence of words: a batch of one, as Transformers has it
        else:
            raise ValueError("At least one input is required.")
        pairs = list(zip(items, self._offset_mappings(offset_mapping, len(items))))
        results = []
        for start in range(0, len(pairs), batch_size):
            results += self._run(pairs[start:start + batch_size], batch_size, **settings)
        return results[0] if single else results

    def _stream(self, pairs, batch_size, settings):
        batch = []
        for pair in pairs:
            batch.append(pair)
            if len(batch) == batch_size:
                yield from self._run(batch, batch_size, **settings)
                batch = []
        if batch:
            yield from self._run(batch, batch_size, **settings)

    @staticmethod
    def _offset_mappings(offset_mapping, count):
        """One offset mapping (or None) per input. Transformers checks that there is one per input but then gives
        the first to every input of a batch; here each input has its own."""
        if not offset_mapping:
            return iter(lambda: None, 0)  # None for ever
        if isinstance(offset_mapping, list) and isinstance(offset_mapping[0], tuple):
            offset_mapping = [offset_mapping]
        if count is not None and len(offset_mapping) != count:
            raise ValueError("offset_mapping should have the same batch size as the input")
        return iter(offset_mapping)

    def _run(self, pairs, batch_size, aggregation_strategy=None, ignore_labels=None, stride=None,
             is_split_into_words=False, delimiter=None):
        strategy = aggregation_name(aggregation_strategy)
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        inputs = [self._windows(text, offsets, is_split_into_words, delimiter, stride) for text, offsets in pairs]
        windows = [window for _, input_windows in inputs for window in input_windows]
        # as Transformers' pipeline: batch_size windows per forward (of one input or several), padded on the
        # tokenizer's side; each window's scores are those of its own tokens
        for first in range(0, len(windows), batch_size):
            self._forward(windows[first:first + batch_size])
        results = []
        for sentence, input_windows in inputs:
            entities = []
            for window in input_windows:
                pre_entities = self._pre_entities(sentence, window, strategy)
                entities += [e for e in self._aggregate(pre_entities, strategy)
                             if e.get("entity") not in ignore_labels and e.get("entity_group") not in ignore_labels]
            if len(input_windows) > 1:
                entities = merge_overlapping(entities)
            results.append(entities)
        return results

    def _windows(self, text, offset_mapping, is_split_into_words, delimiter, stride):
        """(the sentence, its windows) as Transformers' preprocess encodes an input: one window of at most
        model_max_length tokens, or with stride the overlapping windows of the whole text (padded to the longest,
        as there). Offsets are in the sentence, pre-split words being joined by the delimiter."""
        params = {"truncation": bool(self.tokenizer.model_max_length and self.tokenizer.model_max_length > 0),
                  "return_special_tokens_mask": True, "return_offsets_mapping": True}
        if stride is not None:
            params.update(return_overflowing_tokens=True, padding=True, stride=stride)
        if is_split_into_words:
            if not isinstance(text, (list, tuple)):
                raise ValueError("When `is_split_into_words=True`, `sentence` must be a list of tokens.")
            words = list(text)
            delimiter = " " if delimiter is None else delimiter
            word_starts, start = [], 0
            for word in words:
                word_starts.append(start)
                start += len(word) + len(delimiter)
            sentence = delimiter.join(words)
            encodings = self.tokenizer(words, is_split_into_words=True, **params).encodings
        else:
            if not isinstance(text, str):
                raise ValueError("When `is_split_into_words=False`, `sentence` must be an untokenized string.")
            sentence = text
            encodings = self.tokenizer(text, **params).encodings
        windows = []
        for encoding in encodings:
            offsets = list(encoding.offsets) if offset_mapping is None else offset_mapping
            if is_split_into_words:
                # a word's offsets are within the word: moved to where it is in the sentence
                offsets = [(s + word_starts[w], e + word_starts[w]) if w is not None else (s, e)
                           for (s, e), w in zip(offsets, encoding.word_ids)]
            windows.append({"input_ids": list(encoding.ids), "attention_mask": list(encoding.attention_mask),
                            "special_tokens_mask": list(encoding.special_tokens_mask), "offsets": offsets})
        return sentence, windows

    def _forward(self, windows):
        empty = [w for w in windows if not w["input_ids"]]
        for w in empty:  # an empty text has no tokens to label (Transformers' model fails on it)
            w["scores"] = np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        windows = [w for w in windows if w["input_ids"]]
        if not windows:
            return
        left = self.tokenizer.padding_side == "left"
        ids = collate([w["input_ids"] for w in windows], self.tokenizer.pad_token_id, left)
        mask = collate([w["attention_mask"] for w in windows], 0, left)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.astype(np.float32)
        for row, w in zip(logits, windows):
            # Transformers keeps the batch's padding in each row (a left-padded row's "index" counts it); the
            # window's own tokens are what an index means
            w["scores"] = softmax(row[len(row) - len(w["input_ids"]):] if left else row[:len(w["input_ids"])])

    def _pre_entities(self, sentence, window, strategy):
        """Transformers' gather_pre_entities: each token but those the tokenizer added (a special token written in
        the text is a token of it), with its scores, offsets and whether it continues a word. nemotron_c's BPE has
        no continuing_subword_prefix, so that is Transformers' fallback guess: a token continues a word unless a
        space is just before it or is its first character."""
        pre_entities = []
        for index, (token_id, scores) in enumerate(zip(window["input_ids"], window["scores"])):
            if window["special_tokens_mask"][index]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            start, end = (int(x) for x in window["offsets"][index])
            word_ref = sentence[start:end]
            if strategy in WORD_STRATEGIES:
                warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
            is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word, is_subword = word_ref, False
            pre_entities.append({"word": word, "scores": scores, "start": start, "end": end, "index": index,
                                 "is_subword": is_subword})
        return pre_entities

    def _aggregate(self, pre_entities, strategy):
        id2label = self.model.config.id2label
        if strategy in WORD_STRATEGIES:
            entities = self._aggregate_words(pre_entities, strategy)
        else:
            entities = []
            for pre in pre_entities:
                best = int(pre["scores"].argmax())
                entities.append({"entity": id2label[best], "score": float(pre["scores"][best]),
                                 "index": pre["index"], "word": pre["word"], "start": pre["start"],
                                 "end": pre["end"]})
        return entities if strategy == "none" else self._group(entities)

    def _aggregate_words(self, pre_entities, strategy):
        """Transformers' aggregate_words: each word's tokens (a token and those that continue it) take one label,
        that of the first token, of the token with the highest score, or the best of the averaged scores."""
        words = []
        for pre in pre_entities:
            if words and pre["is_subword"]:
                words[-1].append(pre)
            else:
                words.append([pre])
        entities = []
        for tokens in words:
            if strategy == "first":
                scores = tokens[0]["scores"]
            elif strategy == "max":
                scores = max(tokens, key=lambda pre: pre["scores"].max())["scores"]
            else:
                scores = np.nanmean(np.stack([pre["scores"] for pre in tokens]), axis=0)
            best = int(scores.argmax())
            entities.append({"entity": self.model.config.id2label[best], "score": float(scores[best]),
                             "word": self.tokenizer.convert_tokens_to_string([pre["word"] for pre in tokens]),
                             "start": tokens[0]["start"], "end": tokens[-1]["end"]})
        return entities

    def _group(self, entities):
        """Transformers' group_entities: neighbours with the same tag form one entity unless the later one is a B-."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = tag_of(entity["entity"])
                if not (tag == tag_of(current[-1]["entity"])[1] and bi != "B"):
                    groups.append(self._merge(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._merge(current))
        return groups

    def _merge(self, entities):
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in entities])),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def merge_overlapping(entities):
    """Transformers' aggregate_overlapping_entities, for the entities of overlapping windows: by start, an entity
    that starts inside the one kept before replaces it when it is longer (or as long with a higher score)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or length == previous_length and entity["score"] > previous["score"]:
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def tag_of(label):
    """("B" or "I", tag) of a label, as Transformers reads B-/I- prefixes (anything else is an I)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


# ---------------------------------------------------------------- question answering


def question_answering_inputs(args, kwargs):
    """The {"question", "context"} dicts of a call, as Transformers 4.57's QuestionAnsweringArgumentHandler reads
    them: two strs, a dict, a SquadExample or an iterable of those given positionally (or as X= or data=, with
    4.57's FutureWarnings), or question= and context= (strs or lists; one context for several questions). Takes
    them out of kwargs. A generator gives a generator, its items read (and checked) as they come."""
    if args:
        warnings.warn("Passing a list of SQuAD examples to the pipeline is deprecated and will be removed in v5. "
                      "Inputs should be passed using the `question` and `context` keyword arguments instead.",
                      FutureWarning)
        if len(args) == 1:
            inputs = args[0]
        elif len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = [{"question": args[0], "context": args[1]}]
        else:
            inputs = list(args)
    elif "X" in kwargs or "data" in kwargs:
        key = "X" if "X" in kwargs else "data"
        warnings.warn(f"Passing the `{key}` argument to the pipeline is deprecated and will be removed in v5. Inputs "
                      "should be passed using the `question` and `context` keyword arguments instead.", FutureWarning)
        inputs = kwargs.pop(key)
    elif "question" in kwargs and "context" in kwargs:
        question, context = kwargs.pop("question"), kwargs.pop("context")
        if isinstance(question, list) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError("Questions and contexts don't have the same lengths")
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        elif isinstance(question, str) and isinstance(context, str):
            inputs = [{"question": question, "context": context}]
        else:
            raise ValueError("Arguments can't be understood")
    else:
        raise ValueError("give question= and context= (or {'question': ..., 'context': ...} dicts)")
    inputs = streamed(inputs)
    if isinstance(inputs, types.GeneratorType):
        return (question_answering_example(item) for item in inputs)
    if isinstance(inputs, dict) or hasattr(inputs, "context_text"):
        inputs = [inputs]
    elif isinstance(inputs, Iterable):
        inputs = list(inputs)
    else:
        raise ValueError(f"Invalid arguments {inputs!r}: give question= and context=, or dicts of them")
    return [question_answering_example(item) for item in inputs]


def question_answering_example(item):
    """{"question", "context"} of a dict, or of a SquadExample (its question_text and context_text), checked."""
    if hasattr(item, "question_text") and hasattr(item, "context_text") and not isinstance(item, dict):
        item = {"question": item.question_text, "context": item.context_text}
    if not isinstance(item, dict):
        raise ValueError(f"{item} argument needs to be of type (SquadExample, dict)")
    for key in ("question", "context"):
        if key not in item:
            raise KeyError("You need to provide a dictionary with keys {question:..., context:...}")
        if item[key] is None:
            raise ValueError(f"`{key}` cannot be None")
        if not isinstance(item[key], str):
            raise ValueError(f"`{key}` must be a str, got {type(item[key]).__name__}")
        if not item[key]:
            raise ValueError(f"`{key}` cannot be empty")
    return {"question": item["question"], "context": item["context"]}


def best_spans(start, end, p_mask, attention_mask, min_null_score, top_k, max_answer_len):
    """Transformers 4.57's select_starts_ends and decode_spans on one window: start and end logits (1, L) made
    probabilities over the tokens that may be in an answer (p_mask 0, attention 1), the null score (the first
    token's start times end probability) folded into min_null_score, then the top_k (start, end) pairs by the
    product of their probabilities with end - start < max_answer_len. Returns starts, ends, scores,
    min_null_score. The NumPy steps are 4.57's, so that ties among zero scores come out in the same order."""
    allowed = (1 - p_mask) & attention_mask  # (1, L)
    masked = allowed == 0
    start = np.where(masked, -10000.0, start)
    end = np.where(masked, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0

    candidates = np.tril(np.triu(np.matmul(start[:, :, None], end[:, None, :])), max_answer_len - 1)  # (1, L, L)
    flat = candidates.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        order = np.argpartition(-flat, top_k)[0:top_k]
        order = order[np.argsort(-flat[order])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # as 4.57: membership in nonzero()'s (rows, columns) pair, so index 0 always passes
    keep = np.isin(starts, allowed.nonzero()) & np.isin(ends, allowed.nonzero())
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends], min_null_score


class QuestionAnsweringPipeline(Pipeline):
    """Extractive answers as Transformers 4.57's QuestionAnsweringPipeline gives them:
    {"score", "start", "end", "answer"} (a list when top_k > 1 finds several, and one result per input for several
    inputs). A long context is cut into windows of max_seq_len tokens overlapping by doc_stride (the tokenizer's
    overflowing windows); answers with the same text (ignoring case) from several windows add their scores.
    The question comes first when the tokenizer pads on the right, the context first otherwise; batch_size groups
    windows (of any inputs) per forward, padded on the tokenizer's side."""

    model_class = NemotronForQuestionAnswering
    SETTINGS = ("top_k", "topk", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                "handle_impossible_answer", "align_to_words", "padding", "batch_size", "num_workers")

    def __call__(self, *args, **kwargs):
        # as 4.57's _sanitize_parameters: a setting given as None is not given (the construction's holds, and at
        # construction the default)
        kwargs = {**{key: value for key, value in self.defaults.items() if value is not None},
                  **{key: value for key, value in kwargs.items() if value is not None}}
        examples = question_answering_inputs(args, kwargs)
        unknown = set(kwargs) - set(self.SETTINGS)
        if unknown:
            raise TypeError(f"unexpected arguments for question-answering: {', '.join(sorted(unknown))}")
        if kwargs.get("topk") is not None and kwargs.get("top_k") is None:
            warnings.warn("topk parameter is deprecated, use top_k instead", UserWarning)
            kwargs["top_k"] = kwargs["topk"]
        for name in ("top_k", "max_answer_len", "doc_stride", "max_seq_len"):
            value = kwargs.get(name)
            # 4.57 fails on these deep inside NumPy or the tokenizer, or takes a fraction silently
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"{name}={value!r}: give an int")
        if kwargs.get("doc_stride", 0) < 0:
            raise ValueError(f"`doc_stride` ({kwargs['doc_stride']}) should be >= 0")
        top_k = kwargs.get("top_k", 1)
        if top_k < 1:
            raise ValueError(f"top_k parameter should be >= 1 (got {top_k})")
        max_answer_len = kwargs.get("max_answer_len", 15)
        if max_answer_len < 1:
            raise ValueError(f"max_answer_len parameter should be >= 1 (got {max_answer_len})")
        batch_size = batch_size_of(kwargs.get("batch_size"), self.batch_size)
        if batch_size > 1 and self.tokenizer.pad_token_id is None:
            raise ValueError(NO_PAD_BATCHING)
        align_to_words = kwargs.get("align_to_words")
        settings = {"batch_size": batch_size, "padding": kwargs.get("padding"), "doc_stride": kwargs.get("doc_stride"),
                    "max_seq_len": kwargs.get("max_seq_len"), "top_k": top_k, "max_answer_len": max_answer_len,
                    "handle_impossible_answer": bool(kwargs.get("handle_impossible_answer")),
                    "align_to_words": True if align_to_words is None else bool(align_to_words)}
        if isinstance(examples, types.GeneratorType):
            # as 4.57: a generator gives an iterator of results, each read from the generator as it is asked for
            return (self._answer_all([example], **settings)[0] for example in examples)
        results = self._answer_all(examples, **settings)
        return results[0] if len(results) == 1 else results

    def _answer_all(self, examples, batch_size, padding, doc_stride, max_seq_len, top_k, max_answer_len,
                    handle_impossible_answer, align_to_words):
        windows = [w for index, example in enumerate(examples)
                   for w in self._windows(index, example, padding, doc_stride, max_seq_len)]
        for first in range(0, len(windows), batch_size):
            self._forward(windows[first:first + batch_size])
        return [self._answers(examples[i]["context"], [w for w in windows if w["example"] == i], top_k,
                              handle_impossible_answer, max_answer_len, align_to_words)
                for i in range(len(examples))]

    def _windows(self, index, example, padding, doc_stride, max_seq_len):
        """The model inputs of one question and context: a window per max_seq_len tokens, each with its Encoding
        and p_mask (1 where no answer may be: the question and the special tokens)."""
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        question_first = self.tokenizer.padding_side == "right"
        question, context = example["question"], example["context"]
        encoded = self.tokenizer(
            text=question if question_first else context, text_pair=context if question_first else question,
            padding=padding or False, truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len, stride=doc_stride, return_overflowing_tokens=True)
        context_index = 1 if question_first else 0
        return [{"example": index, "encoding": encoding, "input_ids": encoding.ids,
                 "attention_mask": encoding.attention_mask,
                 "p_mask": [int(s != context_index) for s in encoding.sequence_ids], "context_index": context_index}
                for encoding in encoded.encodings]

    def _forward(self, windows):
        """Start and end logits of windows, run as one batch padded to the longest on the tokenizer's side (as
        4.57's pipeline collates them: pad ids, attention 0, p_mask 1)."""
        left = self.tokenizer.padding_side == "left"
        ids = collate([w["input_ids"] for w in windows], self.tokenizer.pad_token_id, left)
        mask = collate([w["attention_mask"] for w in windows], 0, left)
        p_mask = collate([w["p_mask"] for w in windows], 1, left)
        out = self.model(input_ids=ids, attention_mask=mask)
        for i, w in enumerate(windows):
            w.update(start=out.start_logits[i:i + 1].astype(np.float32), end=out.end_logits[i:i + 1].astype(np.float32),
                     padded_mask=mask[i:i + 1], padded_p_mask=p_mask[i:i + 1],
                     shift=ids.shape[1] - len(w["input_ids"]) if left else 0)

    def _answers(self, context, windows, top_k, handle_impossible_answer, max_answer_len, align_to_words):
        min_null_score = 1000000.0
        answers = []
        candidates = top_k * 2 + 10 if align_to_words else top_k  # aligning to words may merge some
        for w in windows:
            starts, ends, scores, min_null_score = best_spans(
                w["start"], w["end"], w["padded_p_mask"], w["padded_mask"], min_null_score, candidates,
                max_answer_len)
            for s, e, score in zip(starts, ends, scores):
                begin, stop = self._characters(w["encoding"], s - w["shift"], e - w["shift"], w["context_index"],
                                               align_to_words)
                text = context[begin:stop]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": begin, "end": stop, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers

    @staticmethod
    def _characters(encoding, start, end, sequence_index, align_to_words):
        """(start, end) in the context of the tokens start..end: widened to whole words when align_to_words and
        both tokens have a word in the context, else their offsets."""
        if align_to_words:
            try:
                return (encoding.word_to_chars(encoding.token_to_word(start), sequence_index)[0],
                        encoding.word_to_chars(encoding.token_to_word(end), sequence_index)[1])
            except (TypeError, OverflowError):  # a special token, or no such word in the context: the offsets
                pass
        return encoding.offsets[start][0], encoding.offsets[end][1]


# ---------------------------------------------------------------- the factory


TASKS = {
    "text-generation": TextGenerationPipeline,
    "text-classification": TextClassificationPipeline,
    "sentiment-analysis": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "ner": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
}


def pipeline(task, model=None, tokenizer=None, batch_size=None, device=None, device_map=None, **kwargs):
    """Transformers' pipeline(task, model=..., tokenizer=...) on nemotron_c's models (see the module docstring).
    Without a model, text-generation runs the demo model; the other tasks need a checkpoint with their head.
    dtype= and num_threads= go to from_pretrained; other keywords become defaults of every call."""
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; nemotron_c's pipelines: {', '.join(sorted(TASKS))}")
    if device != -1:  # Transformers' old spelling of the CPU
        check_cpu_device(device, "device")
    check_cpu_device(device_map, "device_map")  # "auto" and {"": "cpu"} too, as model cards write them
    if model is None:
        if task != "text-generation":
            raise ValueError(f"the {task} pipeline needs model= (a checkpoint with its head); only text-generation "
                             "has a default, the demo model")
        model = demo_model_path()
    return TASKS[task](model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
