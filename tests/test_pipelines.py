"""nemotron_c.pipeline against transformers.pipeline on the same tiny checkpoints (the demo model's tokenizer)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from transformers.pipelines.pt_utils import KeyDataset
from helpers.transformers_reference import build_hf_model

import nemotron_c

LABELS = {"id2label": {0: "O", 1: "B-NAME", 2: "I-NAME", 3: "B-PLACE", 4: "I-PLACE"},
          "label2id": {"O": 0, "B-NAME": 1, "I-NAME": 2, "B-PLACE": 3, "I-PLACE": 4}}
TEXTS = ["Return the number of items.", "Open  the file é中 and read it", "x\ny"]


def checkpoint_with_tokenizer(root, name, model_class, pad=False, padding_side=None, **overrides):
    """A tiny random checkpoint of model_class with the demo model's tokenizer files."""
    path = os.path.join(root, name)
    demo = nemotron_c.demo_model_path()
    vocab = json.load(open(os.path.join(demo, "config.json")))["vocab_size"]
    model = build_hf_model(seed=1, scale=0.3, model_class=model_class, vocab_size=vocab, **overrides)
    model.save_pretrained(path)
    shutil.copy(os.path.join(demo, "tokenizer.json"), path)
    config = json.load(open(os.path.join(demo, "tokenizer_config.json")))
    if pad:
        config["pad_token"] = "</s>"
    if padding_side:
        config["padding_side"] = padding_side
    json.dump(config, open(os.path.join(path, "tokenizer_config.json"), "w"))
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pipelines"))
    return {
        "text-generation": checkpoint_with_tokenizer(root, "lm", transformers.NemotronForCausalLM),
        "text-generation right": checkpoint_with_tokenizer(root, "lm-right", transformers.NemotronForCausalLM,
                                                            pad=True),
        "text-generation left": checkpoint_with_tokenizer(root, "lm-left", transformers.NemotronForCausalLM,
                                                           pad=True, padding_side="left"),
        "text-classification": checkpoint_with_tokenizer(
            root, "cls", transformers.NemotronForSequenceClassification, pad=True, num_labels=3, pad_token_id=2),
        "token-classification": checkpoint_with_tokenizer(
            root, "tok", transformers.NemotronForTokenClassification, num_labels=5, **LABELS),
    }


def pair(paths, task, **kwargs):
    path = paths[task]
    task = task.split()[0]
    theirs = transformers.pipeline(task, model=path, tokenizer=path, device="cpu", dtype=torch.float32, **kwargs)
    ours = nemotron_c.pipeline(task, model=path, **kwargs)
    return ours, theirs


def assert_same(ours, theirs, atol=1e-4):
    """Equal structures; floats within atol."""
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), (ours, theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key], atol)
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), (ours, theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b, atol)
    elif isinstance(theirs, (float, np.floating)):
        assert isinstance(ours, float) and abs(ours - float(theirs)) <= atol, (ours, theirs)
    else:
        assert ours == theirs and type(ours) is type(theirs), (ours, theirs)


@pytest.mark.parametrize("kwargs", [{}, {"return_full_text": False}, {"max_new_tokens": 5, "num_beams": 2},
                                    {"max_new_tokens": 4, "return_tensors": True}])
def test_text_generation(paths, kwargs):
    ours, theirs = pair(paths, "text-generation")
    call = {"max_new_tokens": 12, "do_sample": False, **kwargs}
    assert_same(ours(TEXTS[0], **call), theirs(TEXTS[0], **call))
    assert_same(ours(TEXTS[:2], **call), theirs(TEXTS[:2], **call))


def test_text_generation_chat_and_batch_size(paths):
    ours, theirs = pair(paths, "text-generation")
    chat = [{"role": "user", "content": "Return the value"}]
    assert_same(ours(chat, max_new_tokens=6, do_sample=False), theirs(chat, max_new_tokens=6, do_sample=False))
    assert_same(ours([chat, chat], max_new_tokens=3, do_sample=False),
                theirs([chat, chat], max_new_tokens=3, do_sample=False))
    prefill = chat + [{"role": "assistant", "content": "The"}]
    assert_same(ours(prefill, max_new_tokens=3, do_sample=False), theirs(prefill, max_new_tokens=3, do_sample=False))
    with pytest.raises(ValueError, match="without pad_token cannot do batching") as error:
        ours(TEXTS, batch_size=2, max_new_tokens=4, do_sample=False)
    with pytest.raises(ValueError) as expected:
        theirs(TEXTS, batch_size=2, max_new_tokens=4, do_sample=False)
    assert str(error.value) == str(expected.value)


PROMPTS = ["Return", "Open  the file é中 and read it, then close the file", "x\ny", "Return the number of items."]


@pytest.mark.parametrize("side", ["right", "left", "forced right"])
@pytest.mark.parametrize("kwargs", [{}, {"return_full_text": False}, {"return_tensors": True},
                                    {"num_beams": 2, "num_return_sequences": 2},
                                    {"do_sample": True, "top_k": 1, "num_return_sequences": 3},
                                    {"max_new_tokens": 9, "eos_token_id": 2, "min_new_tokens": 0}])
def test_text_generation_batches_as_transformers(paths, side, kwargs):
    """batch_size pads the prompts of a batch into one generate call, as Transformers' pipeline does: on the left
    (the pipeline turns a right-padding tokenizer to the left), or on the right when the caller sets the pipeline's
    tokenizer back to it afterwards."""
    ours, theirs = pair(paths, f"text-generation {side.split()[-1]}")
    assert ours.tokenizer.padding_side == theirs.tokenizer.padding_side == "left"
    if side == "forced right":
        ours.tokenizer.padding_side = theirs.tokenizer.padding_side = "right"
    call = {"max_new_tokens": 4, "do_sample": False, **kwargs}
    for batch_size in (2, 3):
        assert_same(ours(PROMPTS, batch_size=batch_size, **call), theirs(PROMPTS, batch_size=batch_size, **call))
    if side == "left":
        chats = [[{"role": "user", "content": "Return the value"}], [{"role": "user", "content": "x"}]]
        assert_same(ours(chats, batch_size=2, **call), theirs(chats, batch_size=2, **call))


def test_text_generation_batch_with_an_empty_prompt(paths):
    """Transformers' collate fails on an empty prompt in a left-padded batch; ours generates it on its own."""
    ours, theirs = pair(paths, "text-generation left")
    call = {"max_new_tokens": 4, "do_sample": False}
    with pytest.raises(RuntimeError):
        theirs(["", "Return the"], batch_size=2, **call)
    assert ours(["", "Return the"], batch_size=2, **call) == [ours("", **call), ours("Return the", **call)]
    assert_same(ours(["", "Return the"], batch_size=2, **call)[1], theirs("Return the", **call))


def test_text_generation_defaults_as_transformers(paths):
    """Transformers' pipeline samples at temperature 0.7 for 256 new tokens unless the call or the model's
    generation config says otherwise; greedy when the call says do_sample=False."""
    ours, theirs = pair(paths, "text-generation")
    calls = []
    ours.model.generate = lambda ids, **kwargs: calls.append(kwargs) or np.concatenate([ids, ids], axis=1)
    ours("The")
    ours("The", do_sample=False, max_length=30)
    assert calls[0] == {"attention_mask": calls[0]["attention_mask"], "max_new_tokens": 256, "do_sample": True,
                        "temperature": 0.7}
    assert calls[1] == {"attention_mask": calls[1]["attention_mask"], "do_sample": False, "max_length": 30}


def test_text_generation_honours_the_generation_config_of_the_call(paths):
    """A call's generation_config replaces the generation keywords given at construction, and the pipeline's
    defaults (sampling, 256 tokens) only fill what it leaves unset, as Transformers' _prepare_generate_kwargs."""
    ours, theirs = pair(paths, "text-generation", max_new_tokens=2)
    for config in ({"max_new_tokens": 4, "do_sample": False}, {"do_sample": False}):
        assert_same(ours("Return the", generation_config=nemotron_c.GenerationConfig(**config)),
                    theirs("Return the", generation_config=transformers.GenerationConfig(**config)))
    calls = []
    ours.model.generate = lambda ids, **kwargs: calls.append(kwargs) or np.concatenate([ids, ids], axis=1)
    given = nemotron_c.GenerationConfig(max_new_tokens=4, do_sample=False)
    ours("The", generation_config=given)
    assert set(calls[0]) == {"attention_mask", "generation_config"}
    assert calls[0]["generation_config"].max_new_tokens == 4 and not calls[0]["generation_config"].do_sample
    assert given.to_diff_dict() == nemotron_c.GenerationConfig(max_new_tokens=4, do_sample=False).to_diff_dict()


@pytest.mark.parametrize("kwargs", [{"return_text": True}, {"return_text": False}, {"return_tensors": False},
                                    {"return_full_text": True}, {"return_text": True, "return_full_text": False},
                                    {"return_text": True, "return_tensors": True},
                                    {"return_full_text": False, "return_tensors": False}])
def test_text_generation_return_settings(paths, kwargs):
    """return_text alone keeps the full text, a setting given as False still counts, and two together raise
    Transformers' "mutually exclusive" ValueError."""
    ours, theirs = pair(paths, "text-generation")
    call = {"max_new_tokens": 3, "do_sample": False, **kwargs}
    try:
        expected = theirs("Return the", **call)
    except ValueError as error:
        with pytest.raises(ValueError, match="mutually exclusive") as raised:
            ours("Return the", **call)
        assert str(raised.value) == str(error)
    else:
        assert_same(ours("Return the", **call), expected)


@pytest.mark.parametrize("kwargs", [{"truncation": True, "max_length": 8}, {"max_length": 9}, {"padding": False},
                                    {"tokenizer_encode_kwargs": {"truncation": True, "max_length": 4}},
                                    {"padding": "max_length", "max_length": 12, "batch_size": 2},
                                    {"handle_long_generation": "hole"}, {"handle_long_generation": "hole",
                                                                         "max_new_tokens": None, "max_length": 10},
                                    {"handle_long_generation": "hole", "max_new_tokens": 6}])
def test_text_generation_prompt_encoding_keywords(paths, kwargs):
    """truncation, padding, max_length (also generate's) and tokenizer_encode_kwargs encode the prompt, and
    handle_long_generation="hole" keeps a prompt's last tokens within model_max_length, as Transformers'
    preprocess does."""
    ours, theirs = pair(paths, "text-generation right")
    for pipe in (ours, theirs):
        pipe.tokenizer.model_max_length = 9
    call = {"max_new_tokens": 3, "do_sample": False, **kwargs}
    call = {key: value for key, value in call.items() if value is not None}
    for prompts in (PROMPTS, PROMPTS[0]):
        try:
            expected = theirs(prompts, **call)
        except ValueError as error:  # "hole" leaving no room for the prompt
            with pytest.raises(ValueError) as raised:
                ours(prompts, **call)
            assert str(raised.value) == str(error)
        else:
            assert_same(ours(prompts, **call), expected)
    chat = [{"role": "user", "content": "Return the number"}]
    if "handle_long_generation" not in kwargs:
        assert_same(ours(chat, **call), theirs(chat, **call))
    with pytest.raises(ValueError, match="is not a valid value for `handle_long_generation`"):
        ours("Return the", handle_long_generation="middle")


@pytest.mark.parametrize("kwargs", [{"output_scores": True}, {"output_scores": True, "output_logits": True,
                                                               "num_return_sequences": 2, "num_beams": 2},
                                    {"output_scores": True, "return_tensors": True}])
def test_text_generation_records_carry_generate_outputs(paths, kwargs):
    """With return_dict_in_generate, each text record carries its sequence's scores (and logits...), as
    Transformers' postprocess adds them."""
    ours, theirs = pair(paths, "text-generation right")
    call = {"max_new_tokens": 2, "do_sample": False, "return_dict_in_generate": True, **kwargs}
    for batch_size in (1, 2):
        expected = theirs(PROMPTS[:2], batch_size=batch_size, **call)
        got = ours(PROMPTS[:2], batch_size=batch_size, **call)
        assert [sorted(r) for rows in got for r in rows] == [sorted(r) for rows in expected for r in rows]
        assert_same(got, expected, atol=1e-3)


def test_text_generation_prefix_as_transformers(paths, tmp_path):
    """A prefix's tokens count towards max_length and min_length (not max_new_tokens), and config.json's "prefix"
    is the prefix when none is given at construction."""
    ours, theirs = pair(paths, "text-generation right")
    for call in ({"max_length": 14}, {"max_length": 16, "min_length": 15}, {"max_new_tokens": 3},
                 {"max_length": 14, "add_special_tokens": True}):
        call = {"prefix": "Open the file ", "do_sample": False, **call}
        assert_same(ours("Return the", **call), theirs("Return the", **call))
        assert_same(ours("Return the", return_tensors=True, **call), theirs("Return the", return_tensors=True, **call))
    path = tmp_path / "prefixed"
    shutil.copytree(paths["text-generation right"], path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "prefix": "Open the file "}))
    ours, theirs = pair({"text-generation": str(path)}, "text-generation")
    for call in ({"max_new_tokens": 4}, {"max_length": 14}, {"max_new_tokens": 4, "prefix": ""}):
        call = {"do_sample": False, "return_tensors": True, **call}
        assert_same(ours("Return the", **call), theirs("Return the", **call))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"top_k": 2}, {"function_to_apply": "sigmoid"},
                                    {"top_k": 1, "function_to_apply": "none"}])
def test_text_classification(paths, kwargs):
    ours, theirs = pair(paths, "text-classification")
    assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
    assert_same(ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs))
    assert_same(ours(TEXTS, batch_size=2, **kwargs), theirs(TEXTS, batch_size=2, **kwargs))


@pytest.mark.parametrize("kwargs", [{"top_k": None}, {"top_k": 2}, {"function_to_apply": "sigmoid"}])
def test_text_classification_keywords_given_at_construction(paths, kwargs):
    ours, theirs = pair(paths, "text-classification", **kwargs)
    assert_same(ours(TEXTS[0]), theirs(TEXTS[0]))
    assert_same(ours(TEXTS), theirs(TEXTS))


def test_text_classification_function_to_apply(paths):
    """function_to_apply=None in a call leaves the construction's; Transformers' ClassificationFunction is taken;
    an unknown name raises a KeyError and anything else a ValueError, as there."""
    from transformers.pipelines.text_classification import ClassificationFunction

    ours, theirs = pair(paths, "text-classification", function_to_apply="sigmoid")
    for call in ({"function_to_apply": None}, {"function_to_apply": ClassificationFunction.NONE, "top_k": None},
                 {"function_to_apply": "SoftMax"}):
        assert_same(ours(TEXTS, **call), theirs(TEXTS, **call))
    with pytest.raises(KeyError):
        theirs(TEXTS[0], function_to_apply="tanh")
    with pytest.raises(KeyError, match="TANH"):
        ours(TEXTS[0], function_to_apply="tanh")
    with pytest.raises(ValueError) as expected:
        theirs(TEXTS[0], function_to_apply=3)
    with pytest.raises(ValueError) as raised:
        ours(TEXTS[0], function_to_apply=3)
    assert str(raised.value) == str(expected.value)


def test_text_classification_refuses_what_transformers_would_drop(paths):
    """A dict holding lists of texts, or a top_k that is no int: Transformers answers for the first text alone, or
    ignores that top_k; here each raises a ValueError naming it."""
    ours, theirs = pair(paths, "text-classification")
    lists = {"text": ["a", "b"], "text_pair": ["c", "d"]}
    assert isinstance(theirs(lists), dict)
    with pytest.raises(ValueError, match="holds one text"):
        ours(lists)
    for top_k in (2.0, "2"):
        assert isinstance(theirs("a", top_k=top_k), dict)  # the one best label
        with pytest.raises(ValueError, match="top_k="):
            ours("a", top_k=top_k)
    assert_same(ours("a", top_k=np.int64(2)), theirs("a", top_k=2))
    for no_text in ({"text_pair": "a"}, {}):  # the tokenizer's error, as there
        with pytest.raises(ValueError) as expected:
            theirs(no_text)
        with pytest.raises(ValueError) as raised:
            ours(no_text)
        assert str(raised.value) == str(expected.value)


def test_text_classification_text_pairs_and_tokenizer_keywords(paths):
    """{"text", "text_pair"} dicts (one, or a list, batched or not) are pairs, and tokenizer keywords such as
    padding="max_length" apply to each input before the batch is padded, as Transformers' preprocess does."""
    ours, theirs = pair(paths, "text-classification")
    pairs = [{"text": TEXTS[0], "text_pair": TEXTS[1]}, {"text": TEXTS[2], "text_pair": "a"}, {"text": TEXTS[1]}]
    assert_same(ours(pairs[0]), theirs(pairs[0]))
    assert_same(ours(pairs[2], top_k=None), theirs(pairs[2], top_k=None))
    for batch_size in (1, 2, 3):
        assert_same(ours(pairs, batch_size=batch_size), theirs(pairs, batch_size=batch_size))
    call = {"padding": "max_length", "max_length": 24, "batch_size": 2}
    assert_same(ours(TEXTS, **call), theirs(TEXTS, **call))
    with pytest.raises(ValueError, match="send text pairs"):
        theirs([["a", "b"]])
    with pytest.raises(ValueError, match="send text pairs"):
        ours([["a", "b"]])


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_token_classification(paths, strategy):
    ours, theirs = pair(paths, "token-classification", aggregation_strategy=strategy)
    # "</s>" written in a text is a token of it: only the tokens the tokenizer adds are left out
    for text in TEXTS + ["  two  spaces, \u00e9t\u00e9 \u4e2d\u6587 \U0001F600 done", "hi </s> there <s>"]:
        assert_same(ours(text), theirs(text))
    assert_same(ours(TEXTS, ignore_labels=[]), theirs(TEXTS, ignore_labels=[]))


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_token_classification_of_words(paths, strategy):
    """is_split_into_words: a list of words is one sentence (a list of lists several), each word encoded on its
    own, start and end counted in the words joined by the delimiter, as Transformers has them."""
    ours, theirs = pair(paths, "token-classification", aggregation_strategy=strategy)
    words = ["Open", "the", "file", "\u00e9t\u00e9", "now."]
    for inputs, call in ((words, {}), ([words, ["x", "y"]], {}), (words, {"delimiter": "__"})):
        call = {"is_split_into_words": True, "ignore_labels": [], **call}
        assert_same(ours(inputs, **call), theirs(inputs, **call))


def test_token_classification_refuses_unknown_keywords(paths):
    """A keyword Transformers does not know raises a TypeError as there: it may not be ignored silently (stride and
    the word strategies: test_pipelines_token_classification.py)."""
    ours, theirs = pair(paths, "token-classification")
    with pytest.raises(TypeError):
        theirs(TEXTS[0], aggregation_stategy="simple")
    with pytest.raises(TypeError, match="aggregation_stategy"):
        ours(TEXTS[0], aggregation_stategy="simple")
    assert_same(ours(TEXTS[0], stride=None), theirs(TEXTS[0], stride=None))


def test_errors(paths):
    with pytest.raises(KeyError, match="unknown task 'summarization'"):
        nemotron_c.pipeline("summarization")
    with pytest.raises(KeyError):  # Transformers 5 removed it; ours follows 4.57 (test_pipelines_question_answering)
        transformers.pipeline("question-answering", model=paths["text-generation"])
    with pytest.raises(ValueError, match="needs model="):
        nemotron_c.pipeline("question-answering")
    with pytest.raises(ValueError, match="needs model="):
        nemotron_c.pipeline("text-classification")


@pytest.mark.parametrize("task", ["text-generation right", "text-classification"])
def test_batch_size_of_a_call(paths, task):
    """None means the pipeline's batch size; anything but a positive integer raises Transformers' ValueError
    (a negative one dropped every input)."""
    ours, theirs = pair(paths, task)
    call = {"max_new_tokens": 3, "do_sample": False} if task.startswith("text-generation") else {}
    assert_same(ours(TEXTS, batch_size=None, **call), theirs(TEXTS, batch_size=None, **call))
    for bad in (-1, 0):
        with pytest.raises(ValueError) as expected:
            theirs(TEXTS, batch_size=bad, **call)
        with pytest.raises(ValueError, match="batch_size should be a positive integer value") as raised:
            ours(TEXTS, batch_size=bad, **call)
        assert str(raised.value) == str(expected.value)
    with pytest.raises(ValueError, match="positive integer"):
        ours(TEXTS, batch_size=2.5, **call)


@pytest.mark.parametrize("task", ["text-generation right", "text-classification", "token-classification"])
def test_a_generator_of_inputs_streams(paths, task):
    """A generator gives an iterator of results, read as it is consumed, as Transformers' pipelines do."""
    ours, theirs = pair(paths, task)
    call = {"max_new_tokens": 3, "do_sample": False} if task.startswith("text-generation") else {}
    read = []

    def texts():
        for text in TEXTS:
            read.append(text)
            yield text

    for batch_size in (1, 2) if ours.tokenizer.pad_token_id is not None else (1,):
        read.clear()
        results = ours(texts(), batch_size=batch_size, **call)
        # Transformers' text-generation reads the first item at once, to tell a chat from texts
        assert read == (TEXTS[:1] if task.startswith("text-generation") else [])
        assert_same(list(results), list(theirs((t for t in TEXTS), batch_size=batch_size, **call)))


class Listed(torch.utils.data.Dataset):
    """A map-style torch Dataset, as transformers.pipelines.pt_utils.KeyDataset over a datasets.Dataset is."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Streamed(torch.utils.data.IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


@pytest.mark.parametrize("task", ["text-generation right", "text-classification", "token-classification"])
def test_a_torch_dataset_streams_as_in_transformers(paths, task):
    """KeyDataset(dataset, "text") is how Transformers' documentation feeds a dataset to a pipeline: an iterator of
    results, one per item (it was taken for one input and refused)."""
    ours, theirs = pair(paths, task)
    call = {"max_new_tokens": 3, "do_sample": False} if task.startswith("text-generation") else {}
    records = [{"text": text} for text in TEXTS]
    expected = list(theirs(KeyDataset(records, "text"), **call))
    assert len(expected) == len(TEXTS)
    for dataset in (KeyDataset(records, "text"), Listed(TEXTS), Streamed(TEXTS)):
        results = ours(dataset, **call)
        assert iter(results) is results
        assert_same(list(results), expected)
        if ours.tokenizer.pad_token_id is not None:
            assert_same(list(ours(dataset, batch_size=2, **call)), expected)


def test_text_generation_generators_as_transformers(paths):
    """A generator of messages is one chat, a generator of chats gives an iterator, an empty one an empty list; a
    generator with batch_size > 1 and no pad token raises, as Transformers' pipeline does."""
    ours, theirs = pair(paths, "text-generation right")
    call = {"max_new_tokens": 3, "do_sample": False}
    messages = [{"role": "user", "content": "Return the value"}, {"role": "user", "content": "x"}]
    assert_same(ours((m for m in messages), **call), theirs((m for m in messages), **call))
    chats = [messages[:1], messages[1:]]
    assert_same(list(ours((c for c in chats), **call)), list(theirs((c for c in chats), **call)))
    assert ours((c for c in []), **call) == theirs((c for c in []), **call) == []
    ours, theirs = pair(paths, "text-generation")
    for inputs in (lambda: (t for t in TEXTS), lambda: ["a"]):  # each its own generator: Transformers reads one item
        with pytest.raises(ValueError) as expected:
            theirs(inputs(), batch_size=2, **call)
        with pytest.raises(ValueError, match="without pad_token cannot do batching") as raised:
            ours(inputs(), batch_size=2, **call)
        assert str(raised.value) == str(expected.value)
    for chats in ([["a"]], [[]]):
        with pytest.raises(TypeError):
            theirs(chats, **call)
        with pytest.raises(TypeError, match="a prompt is a str or a chat"):
            ours(chats, **call)
    no_content = [messages[0], {"role": "user"}]
    with pytest.raises(ValueError) as expected:
        theirs(no_content, **call)
    with pytest.raises(ValueError) as raised:
        ours(no_content, **call)
    assert str(raised.value) == str(expected.value)


def test_text_generation_settings_given_as_none(paths):
    """A pipeline setting a call gives as None leaves the construction's (or config's) in place, and num_workers
    is taken, as Transformers' pipeline takes them."""
    ours, theirs = pair(paths, "text-generation right", return_full_text=False, prefix="Open the ")
    call = {"max_new_tokens": 3, "do_sample": False}
    for extra in ({}, {"return_full_text": None, "prefix": None}, {"prefix": None, "max_length": None},
                  {"skip_special_tokens": None, "stop_sequence": None, "num_workers": 2}):
        assert_same(ours(PROMPTS[:2], **extra, **call), theirs(PROMPTS[:2], **extra, **call))
    ours, theirs = pair(paths, "text-classification")
    assert_same(ours(TEXTS, num_workers=2), theirs(TEXTS, num_workers=2))


def test_text_generation_return_type(paths):
    """return_type (Transformers' ReturnType) chooses the output over the other return settings; its int values,
    on which Transformers fails, mean the same here."""
    from transformers.pipelines.text_generation import ReturnType

    ours, theirs = pair(paths, "text-generation")
    call = {"max_new_tokens": 3, "do_sample": False}
    for return_type in ReturnType:
        for extra in ({}, {"return_full_text": False}, {"return_tensors": True}):
            expected = theirs("Return the", return_type=return_type, **extra, **call)
            assert_same(ours("Return the", return_type=return_type, **extra, **call), expected)
            assert_same(ours("Return the", return_type=return_type.value, **extra, **call), expected)
    with pytest.raises(ValueError, match="return_type='full'"):
        ours("Return the", return_type="full", **call)


@pytest.mark.parametrize("construction", [{"return_full_text": False}, {"return_tensors": True},
                                          {"return_text": True}, {}])
def test_text_generation_return_settings_of_a_call_replace_the_constructions(paths, construction):
    """As Transformers reads them, each on its own: a type the call sets wins, return_text alone sets none (the
    construction's holds), and the two are never refused as mutually exclusive (they were)."""
    call = {"max_new_tokens": 3, "do_sample": False}
    path = paths["text-generation"]
    ours = nemotron_c.pipeline("text-generation", model=path, **construction, **call)
    theirs = transformers.pipeline("text-generation", model=path, device="cpu", dtype=torch.float32, **construction,
                                   **call)
    for settings in ({}, {"return_full_text": True}, {"return_full_text": False}, {"return_tensors": True},
                     {"return_text": True}, {"return_text": True, "return_full_text": None}):
        assert_same(ours("Return the", **settings), theirs("Return the", **settings))
    with pytest.raises(ValueError, match="mutually exclusive") as expected:
        theirs("Return the", return_text=True, return_tensors=True)
    with pytest.raises(ValueError, match="mutually exclusive") as raised:
        ours("Return the", return_text=True, return_tensors=True)
    assert str(raised.value) == str(expected.value)


def test_text_classification_batches_without_pad_token(paths, tmp_path):
    """batch_size > 1 refuses a list (even of one) or a generator without a pad token, as Transformers' pipeline;
    one text runs alone."""
    path = checkpoint_with_tokenizer(str(tmp_path), "cls-no-pad", transformers.NemotronForSequenceClassification,
                                     num_labels=3)
    ours, theirs = pair({"text-classification": path}, "text-classification")
    for inputs in (lambda: ["a"], lambda: ["a", "b"], lambda: (t for t in ["a", "b"])):
        with pytest.raises(ValueError) as expected:
            theirs(inputs(), batch_size=2)
        with pytest.raises(ValueError, match="without pad_token cannot do batching") as raised:
            ours(inputs(), batch_size=2)
        assert str(raised.value) == str(expected.value)
    assert_same(ours("a", batch_size=2), theirs("a", batch_size=2))
    pair_of_texts = {"text": "a", "text_pair": "b"}
    assert_same(ours(pair_of_texts, batch_size=2), theirs(pair_of_texts, batch_size=2))


@pytest.mark.parametrize("kwargs", [{"torch_dtype": torch.float32}, {"model_kwargs": {"num_threads": 1}},
                                    {"revision": "main"}, {"use_fast": True}, {"device": "cpu:0"},
                                    {"device": torch.device("cpu")}, {"device": -1}, {"device_map": "auto"},
                                    {"device_map": {"": "cpu"}}, {"device_map": "cpu"}])
def test_loading_keywords_of_pipeline(paths, kwargs):
    """Transformers' construction keywords for loading choose how the model loads; they are not call defaults."""
    _, theirs = pair(paths, "text-generation")  # model_kwargs of ours are nemotron_c's from_pretrained's
    ours = nemotron_c.pipeline("text-generation", model=paths["text-generation"], **kwargs)
    call = {"max_new_tokens": 3, "do_sample": False}
    assert_same(ours("Return the", **call), theirs("Return the", **call))
    for bad in ({"device": "cuda:0"}, {"device_map": {"": 0}}, {"device_map": "cuda"}):
        with pytest.raises(ValueError, match="runs on the CPU"):
            nemotron_c.pipeline("text-generation", model=paths["text-generation"], **bad)


def test_default_is_the_demo_model():
    generator = nemotron_c.pipeline("text-generation")
    out = generator("Return the", max_new_tokens=8)
    assert out[0]["generated_text"].startswith("Return the") and len(out[0]["generated_text"]) > len("Return the")
