"""nemotron_c.pipeline(task, model=..., tokenizer=...): Transformers' pipelines over nemotron_c's models.

    generator = nemotron_c.pipeline("text-generation")            # the demo model
    generator("Return the", max_new_tokens=20)                    # [{"generated_text": "Return the ..."}]

Tasks: "text-generation", "text-classification" (alias "sentiment-analysis"), "token-classification" (alias
"ner"; aggregation_strategy "none" or "simple"). "question-answering" is refused as Transformers 5 refuses it (the
pipeline was removed there; NemotronForQuestionAnswering gives the start and end logits). Inputs, argument names
and outputs are Transformers' (a str gives what Transformers gives for a str, a list a list); scores are Python
floats.
model is a checkpoint directory, a Hub id or a loaded nemotron_c model; tokenizer defaults to the model's.
"""
import numpy as np

from .demo import demo_model_path
from .model.heads import NemotronForSequenceClassification, NemotronForTokenClassification
from .model.modeling import NemotronForCausalLM
from .tokenizer.tokenization import AutoTokenizer

# What Transformers' text-generation pipeline adds to the parameters that neither the call nor the model's
# generation config sets (its _default_generation_config); the sampling ones only when sampling
GENERATION_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
SAMPLING_PARAMETERS = {"temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"}


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


class Pipeline:
    """A model and its tokenizer behind Transformers' pipeline call; batch_size groups inputs per forward."""

    model_class = None

    def __init__(self, model, tokenizer=None, batch_size=None, **kwargs):
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            name = model
            model = self.model_class.from_pretrained(model, dtype=kwargs.pop("dtype", None),
                                                     num_threads=kwargs.pop("num_threads", None))
        else:
            name = model.name_or_path
        if tokenizer is None:
            if not name:
                raise ValueError("give tokenizer=: the model was not loaded from a checkpoint that would hold one")
            tokenizer = name
        if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = 1 if batch_size is None else int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.defaults = kwargs  # call arguments given once, at construction, as Transformers allows

    def __call__(self, inputs, **kwargs):
        kwargs = {**self.defaults, **kwargs}
        batch_size = int(kwargs.pop("batch_size", self.batch_size))
        single = not self._is_batch(inputs)
        items = [inputs] if single else list(inputs)
        results = []
        for start in range(0, len(items), batch_size):
            results += self._run(items[start:start + batch_size], **kwargs)
        return self._shape(results, single, kwargs)

    def _is_batch(self, inputs):
        return isinstance(inputs, (list, tuple))

    def _shape(self, results, single, kwargs):
        return results[0] if single else results

    def _encode(self, texts, **tokenizer_kwargs):
        """One padded batch of texts (padding on the side the tokenizer pads)."""
        if len(texts) > 1 and self.tokenizer.pad_token_id is None:
            raise ValueError("batch_size > 1 needs a tokenizer with a pad token (tokenizer.pad_token = ...)")
        return self.tokenizer(texts, padding=len(texts) > 1, return_tensors="np", **tokenizer_kwargs)


# ---------------------------------------------------------------- text generation


class TextGenerationPipeline(Pipeline):
    """Continues texts or chats (a list of {"role", "content"} messages, rendered with the chat template)."""

    model_class = NemotronForCausalLM

    def _is_batch(self, inputs):
        return isinstance(inputs, (list, tuple)) and not (inputs and isinstance(inputs[0], dict))

    def _with_defaults(self, generate_kwargs):
        defaults = dict(GENERATION_DEFAULTS)
        if self.tokenizer.pad_token_id is not None:
            defaults["pad_token_id"] = self.tokenizer.pad_token_id
        chosen = {**self.model.generation_config.to_diff_dict(), **generate_kwargs}
        added = {key: value for key, value in defaults.items()
                 if key not in chosen and not (key == "max_new_tokens" and "max_length" in chosen)}
        if not {**chosen, **added}.get("do_sample"):
            added = {key: value for key, value in added.items() if key not in SAMPLING_PARAMETERS}
        return {**generate_kwargs, **added}

    def _run(self, prompts, return_full_text=None, return_tensors=None, return_text=None,
             clean_up_tokenization_spaces=None, skip_special_tokens=True, prefix="", add_special_tokens=None,
             continue_final_message=None, stop_sequence=None, **generate_kwargs):
        if return_full_text is not None and return_tensors:
            raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
        generate_kwargs = self._with_defaults(generate_kwargs)
        if stop_sequence is not None:
            generate_kwargs["stop_strings"] = [stop_sequence] if isinstance(stop_sequence, str) else stop_sequence
            generate_kwargs["tokenizer"] = self.tokenizer
        tokenizer_kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        results = []
        # one prompt per generate call: padded batches would change the text Transformers gives for each prompt
        for prompt in prompts:
            if isinstance(prompt, (list, tuple)):
                messages = list(prompt)
                final = continue_final_message
                if final is None:
                    final = messages[-1]["role"] == "assistant"
                inputs = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=not final, continue_final_message=final, return_dict=True,
                    return_tensors="np", **tokenizer_kwargs)
            else:
                inputs = self.tokenizer(prefix + prompt, return_tensors="np", **tokenizer_kwargs)
            ids = inputs["input_ids"]
            sequences = self.model.generate(ids, attention_mask=inputs.get("attention_mask"), **generate_kwargs)
            if hasattr(sequences, "sequences"):
                sequences = sequences.sequences
            records = []
            for sequence in np.asarray(sequences).tolist():
                if return_tensors:
                    records.append({"generated_token_ids": sequence})
                    continue
                text = self.tokenizer.decode(sequence[ids.shape[-1]:], skip_special_tokens=skip_special_tokens,
                                             clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                if return_full_text is not False and not return_text:
                    if isinstance(prompt, str):
                        text = prompt + text
                    elif final:
                        text = messages[:-1] + [{"role": messages[-1]["role"],
                                                 "content": messages[-1]["content"] + text}]
                    else:
                        text = messages + [{"role": "assistant", "content": text}]
                records.append({"generated_text": text})
            results.append(records)
        return results


# ---------------------------------------------------------------- text classification


class TextClassificationPipeline(Pipeline):
    """Labels with scores, the model's head pooled at the last token: function_to_apply "softmax", "sigmoid" or
    "none" (default as Transformers: sigmoid for one label or multi-label, none for regression, else softmax)."""

    model_class = NemotronForSequenceClassification
    LEGACY = object()  # top_k not given: Transformers' older output shape

    def __call__(self, inputs, top_k=LEGACY, **kwargs):
        return super().__call__(inputs, top_k=top_k, **kwargs)

    def _run(self, texts, top_k, function_to_apply=None, **tokenizer_kwargs):
        config = self.model.config
        logits = self.model(**self._encode(texts, **tokenizer_kwargs)).logits
        function = function_to_apply.lower() if isinstance(function_to_apply, str) else function_to_apply
        if function is None:
            problem = getattr(config, "problem_type", None)
            function = ("none" if problem == "regression" else
                        "sigmoid" if problem == "multi_label_classification" or config.num_labels == 1 else
                        "softmax")
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}[function](logits)
        results = []
        for row in scores:
            if top_k is self.LEGACY:
                results.append({"label": config.id2label[int(row.argmax())], "score": float(row.max())})
                continue
            labelled = sorted(({"label": config.id2label[i], "score": float(s)} for i, s in enumerate(row)),
                              key=lambda x: x["score"], reverse=True)
            results.append(labelled if top_k is None else labelled[:top_k])
        return results

    def _shape(self, results, single, kwargs):
        if single:
            return results if kwargs["top_k"] is self.LEGACY else results[0]
        return results


# ---------------------------------------------------------------- token classification


def char_offsets(tokenizer, text, ids):
    """(start, end) in `text` of each token of `ids` (the tokenizer's encoding of text, special tokens included),
    as Transformers' fast tokenizers give them: a "▁" stands for the space it replaced (none for the one prepended
    to the text), the bytes of a byte-fallback character share its span, special tokens get (0, 0)."""
    special = set(tokenizer.all_special_ids)
    offsets, position, pending = [], 0, []
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        if token_id in special:
            offsets.append((0, 0))
            continue
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            pending.append(len(offsets))
            offsets.append(None)
            if len(text[position].encode("utf-8")) == len(pending):
                for index in pending:
                    offsets[index] = (position, position + 1)
                position, pending = position + 1, []
            continue
        start = None
        for character in token:
            expected = " " if character == "\u2581" else character
            if position < len(text) and text[position] == expected:
                start = position if start is None else start
                position += 1
            elif character != "\u2581" or position != 0:
                raise ValueError(f"cannot align token {token!r} with the text at character {position}")
        offsets.append((position if start is None else start, position))
    return offsets


class TokenClassificationPipeline(Pipeline):
    """Entities per token ("none") or grouped B-/I- spans ("simple"), labels in ignore_labels (default ["O"])
    left out, with Transformers' "entity"/"entity_group", "score", "index", "word", "start", "end"."""

    model_class = NemotronForTokenClassification

    def _run(self, texts, aggregation_strategy="none", ignore_labels=None, **tokenizer_kwargs):
        strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
        if strategy not in ("none", "simple"):
            raise NotImplementedError(f"aggregation_strategy {aggregation_strategy!r}: nemotron_c implements 'none' "
                                      "and 'simple' (the tokenizer has no word boundaries for first/average/max)")
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        max_length = self.tokenizer.model_max_length
        truncation = {"truncation": True, "max_length": max_length} if max_length and max_length < 1e9 else {}
        results = []
        for text in texts:
            ids = self.tokenizer(text, **truncation, **tokenizer_kwargs)["input_ids"]
            scores = softmax(self.model(np.array([ids])).logits[0])
            entities = self._entities(text, ids, scores)
            if strategy == "simple":
                entities = self._group(entities)
            results.append([e for e in entities if e.get("entity", e.get("entity_group")) not in ignore_labels])
        return results

    def _entities(self, text, ids, scores):
        offsets = char_offsets(self.tokenizer, text, ids)
        special = set(self.tokenizer.all_special_ids)
        entities = []
        for index, (token_id, row) in enumerate(zip(ids, scores)):
            if token_id in special:
                continue
            best = int(row.argmax())
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            if token_id == self.tokenizer.unk_token_id:
                word = text[offsets[index][0]:offsets[index][1]]
            entities.append({"entity": self.model.config.id2label[best], "score": float(row[best]), "index": index,
                             "word": word, "start": offsets[index][0], "end": offsets[index][1]})
        return entities

    def _group(self, entities):
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
        ids = self.tokenizer.convert_tokens_to_ids([e["word"] for e in entities])
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.mean([e["score"] for e in entities])),
                "word": self.tokenizer.decode(ids, clean_up_tokenization_spaces=False),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def tag_of(label):
    """("B" or "I", tag) of a label, as Transformers reads B-/I- prefixes (anything else is an I)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


# ---------------------------------------------------------------- the factory


TASKS = {
    "text-generation": TextGenerationPipeline,
    "text-classification": TextClassificationPipeline,
    "sentiment-analysis": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "ner": TokenClassificationPipeline,
}

# as Transformers 5 words it
REMOVED_TASKS = {"question-answering": "Use the `text-generation` pipeline with a chat model instead."}


def pipeline(task, model=None, tokenizer=None, batch_size=None, device=None, device_map=None, **kwargs):
    """Transformers' pipeline(task, model=..., tokenizer=...) on nemotron_c's models (see the module docstring).
    Without a model, text-generation runs the demo model; the other tasks need a checkpoint with their head.
    dtype= and num_threads= go to from_pretrained; other keywords become defaults of every call."""
    if task in REMOVED_TASKS:
        raise KeyError(f"The task {task!r} was removed from Transformers' pipelines in version 5 (and is not in "
                       f"nemotron_c's): {REMOVED_TASKS[task]}")
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; nemotron_c's pipelines: {', '.join(sorted(TASKS))}")
    for name, value in (("device", device), ("device_map", device_map)):
        if value not in (None, "cpu", -1) and str(value) != "cpu":
            raise ValueError(f"{name}={value!r}: nemotron_c runs on the CPU")
    if model is None:
        if task != "text-generation":
            raise ValueError(f"the {task} pipeline needs model= (a checkpoint with its head); only text-generation "
                             "has a default, the demo model")
        model = demo_model_path()
    return TASKS[task](model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
