"""nemotron_c.pipeline("question-answering") against Transformers 4.57's pipeline, the last one (5 removed it).

tests/data/qa/ holds a tiny checkpoint and what 4.57 answered on it (written by tools/make_qa_reference.py, which
says how, and how its left-padding cases differ from 4.57). Checked live against the installed Transformers 5: the
checkpoint's start and end logits and its tokenizer's ids, so that the recorded answers stay those of this model.
"""
import json
import os

import numpy as np
import pytest
import torch
import transformers

import nemotron_c

HERE = os.path.dirname(os.path.abspath(__file__))
QA = os.path.join(HERE, "data", "qa")
REFERENCE = json.load(open(os.path.join(QA, "expected.json"), encoding="utf-8"))
CASES = {case["name"]: case for case in REFERENCE["cases"]}


@pytest.fixture(scope="module")
def qa():
    return nemotron_c.pipeline("question-answering", model=QA)


def assert_same_answers(ours, expected, where=""):
    if isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), (where, ours, expected)
        for i, (o, e) in enumerate(zip(ours, expected)):
            assert_same_answers(o, e, f"{where}[{i}]")
        return
    assert isinstance(ours, dict), (where, ours)
    assert set(ours) == {"score", "start", "end", "answer"}
    assert (ours["answer"], ours["start"], ours["end"]) == (expected["answer"], expected["start"], expected["end"]), \
        (where, ours, expected)
    assert type(ours["score"]) is float and type(ours["start"]) is int
    assert ours["score"] == pytest.approx(expected["score"], rel=1e-5, abs=1e-12), (where, ours, expected)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if "expected" in c])
def test_answers_as_transformers_4_57(qa, name):
    case = CASES[name]
    qa.tokenizer.padding_side = case["padding_side"]
    try:
        assert_same_answers(qa(*case["args"], **case["kwargs"]), case["expected"])
    finally:
        qa.tokenizer.padding_side = "right"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if "error" in c])
def test_errors_as_transformers_4_57(qa, name):
    case = CASES[name]
    message = case["error"].split(": ", 1)[1]
    with pytest.raises((ValueError, KeyError)) as error:
        qa(*case["args"], **case["kwargs"])
    assert str(error.value).rstrip(")").startswith(message.rstrip(")")[:40])


def test_more_errors(qa):
    with pytest.raises(TypeError, match="max_seq_length"):
        qa(question="Where?", context="Here.", max_seq_length=8)
    with pytest.raises(ValueError, match="question= and context="):
        qa(question="Where?")
    with pytest.raises(ValueError, match="must be a str"):
        qa({"question": ["a", "b"], "context": "x"})
    no_pad = nemotron_c.pipeline("question-answering", model=QA)
    no_pad.tokenizer.pad_token = None
    with pytest.raises(ValueError, match="without pad_token cannot do batching"):
        no_pad(question="Where?", context="Here.", batch_size=2)
    assert no_pad(question="Where?", context="Here.")["answer"]


def test_settings_that_are_no_counts(qa):
    """4.57 fails deep inside NumPy or its tokenizer on these (or takes a fraction silently): a ValueError names
    each."""
    for setting in ({"top_k": 2.0}, {"top_k": "2"}, {"max_answer_len": 2.5}, {"max_seq_len": 2.5},
                    {"doc_stride": 1.5}, {"doc_stride": -1}, {"top_k": True}):
        with pytest.raises(ValueError, match=next(iter(setting))):
            qa(question="Where?", context="Here and there.", **setting)


def test_the_same_answers_with_the_pipeline_built_once_with_settings():
    case = CASES["windows 48/16 align=False"]
    kwargs = dict(case["kwargs"])
    question, context = kwargs.pop("question"), kwargs.pop("context")
    qa = nemotron_c.pipeline("question-answering", model=QA, **kwargs)
    assert_same_answers(qa(question=question, context=context), case["expected"])
    # settings given as None in a call are not given, as 4.57's _sanitize_parameters has them
    assert_same_answers(qa(question=question, context=context, **dict.fromkeys(kwargs)), case["expected"])
    # nor at construction: the defaults hold
    unset = nemotron_c.pipeline("question-answering", model=QA, top_k=None, max_answer_len=None, doc_stride=None,
                                max_seq_len=None)
    reference = nemotron_c.pipeline("question-answering", model=QA)
    assert unset(question=question, context=context) == reference(question=question, context=context)


@pytest.fixture(scope="module")
def transformers_model():
    return transformers.AutoModelForQuestionAnswering.from_pretrained(QA, dtype=torch.float32).eval()


def test_reference_checkpoint_is_the_model_transformers_5_loads(qa, transformers_model):
    """The recorded answers come from these logits: the same in Transformers 5 as in nemotron_c."""
    theirs_tokenizer = transformers.AutoTokenizer.from_pretrained(QA)
    for item in REFERENCE["token_ids"][::3]:
        ids = item["input_ids"]
        with torch.no_grad():
            theirs = transformers_model(input_ids=torch.tensor([ids]))
        ours = qa.model(np.array([ids]))
        np.testing.assert_allclose(ours.start_logits, theirs.start_logits.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours.end_logits, theirs.end_logits.numpy(), rtol=1e-4, atol=1e-4)
    # and Transformers 5's tokenizer, like ours, gives the ids 4.57 gave
    for item in REFERENCE["token_ids"]:
        assert theirs_tokenizer(item["question"], item["context"])["input_ids"] == item["input_ids"]
        assert qa.tokenizer(item["question"], item["context"])["input_ids"] == item["input_ids"]


def test_padded_batches_give_transformers_5_logits(qa, transformers_model):
    """A left-padded batch (as the pipeline runs windows of different lengths) against Transformers 5."""
    encoded = qa.tokenizer(["Where?", "What did the dog do there?"], ["Here.", "It sat down on the mat."],
                           padding=True, padding_side="left", return_tensors="np")
    ours = qa.model(**encoded)
    with torch.no_grad():
        theirs = transformers_model(**{k: torch.from_numpy(v) for k, v in encoded.items()})
    mask = encoded["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours.start_logits[mask], theirs.start_logits.numpy()[mask], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.end_logits[mask], theirs.end_logits.numpy()[mask], rtol=1e-4, atol=1e-4)


class SquadExample:
    """What 4.57's pipeline reads of transformers.data.SquadExample (which Transformers 5 no longer has)."""

    def __init__(self, qas_id, question_text, context_text, answer_text, start_position_character, title):
        self.question_text, self.context_text = question_text, context_text


def examples_of(case):
    kwargs = dict(case["kwargs"])
    if case["args"]:
        examples = case["args"][0]
    else:
        question, context = kwargs.pop("question"), kwargs.pop("context")
        if isinstance(question, str):
            return {"question": question, "context": context}, kwargs
        if isinstance(context, str):
            context = [context] * len(question)
        examples = [{"question": q, "context": c} for q, c in zip(question, context)]
    return examples, kwargs


@pytest.mark.parametrize("name", ["questions and contexts", "questions, one context", "dicts batch_size=2 right",
                                  "dicts batch_size=3 left", "single long batch_size=4 right"])
def test_a_generator_gives_an_iterator_of_answers(qa, name):
    """As 4.57 (whose argument handler passes a generator on): one result per item, read when it is asked for."""
    case = CASES[name]
    examples, kwargs = examples_of(case)
    if isinstance(examples, dict):
        examples, expected = [examples], [case["expected"]]
    else:
        expected = case["expected"]
    read = []

    def items():
        for example in examples:
            read.append(example)
            yield example

    qa.tokenizer.padding_side = case["padding_side"]
    try:
        results = qa(items(), **kwargs)
        assert read == [] and iter(results) is results
        for i, result in enumerate(results):
            assert len(read) == i + 1
            assert_same_answers(result, expected[i], f"[{i}]")
        assert len(read) == len(examples)
        with pytest.warns(FutureWarning, match="`X` argument"):
            assert_same_answers(list(qa(X=(e for e in examples), **kwargs)), expected)
    finally:
        qa.tokenizer.padding_side = "right"


def test_a_torch_dataset_gives_an_iterator_of_answers(qa):
    """A torch Dataset of dicts (KeyDataset, or one of one's own) is taken as 4.57 takes it: as a generator."""
    examples, kwargs = examples_of(CASES["dicts batch_size=2 right"])
    expected = qa(examples, **kwargs)

    class Examples(torch.utils.data.Dataset):
        def __len__(self):
            return len(examples)

        def __getitem__(self, i):
            return examples[i]

    results = qa(Examples(), **kwargs)
    assert iter(results) is results
    assert_same_answers(list(results), expected)


def test_squad_examples_iterables_and_keyword_forms(qa):
    """SquadExamples, any iterable of examples, X= and data= give 4.57's answers, with its FutureWarnings."""
    case = CASES["questions and contexts"]
    examples, kwargs = examples_of(case)
    squad = [SquadExample(None, e["question"], e["context"], None, None, None) for e in examples]
    with pytest.warns(FutureWarning, match="list of SQuAD examples"):
        assert_same_answers(qa(squad, **kwargs), case["expected"])
    with pytest.warns(FutureWarning, match="list of SQuAD examples"):
        assert_same_answers(qa(*squad, **kwargs), case["expected"])
    with pytest.warns(FutureWarning, match="list of SQuAD examples"):
        assert_same_answers(qa(squad[0], **kwargs), case["expected"][0])
    with pytest.warns(FutureWarning, match="list of SQuAD examples"):
        assert_same_answers(qa(tuple(examples), **kwargs), case["expected"])
    with pytest.warns(FutureWarning, match="list of SQuAD examples"):
        assert_same_answers(qa(map(dict, examples), **kwargs), case["expected"])
    with pytest.warns(FutureWarning, match="`data` argument"):
        assert_same_answers(qa(data=examples, **kwargs), case["expected"])
    with pytest.warns(FutureWarning, match="`X` argument"):
        assert_same_answers(qa(X=examples[0], **kwargs), case["expected"][0])
    with pytest.warns(FutureWarning, match="`X` argument"):
        assert_same_answers(qa(X=(e for e in squad), **kwargs).__next__(), case["expected"][0])
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="Invalid arguments"):
        qa(5)
    with pytest.raises(ValueError, match="`context` cannot be empty"):
        qa(X=[SquadExample(None, "Why?", "", None, None, None)])
    # a bad item of a generator raises when it is read, as the generator is read lazily
    results = qa((e for e in [examples[0], {"question": "Why?"}]), **kwargs)
    assert_same_answers(next(results), case["expected"][0])
    with pytest.raises(KeyError, match="question:..., context:..."):
        next(results)
    with pytest.raises(ValueError, match="without pad_token cannot do batching"):
        no_pad = nemotron_c.pipeline("question-answering", model=QA)
        no_pad.tokenizer.pad_token = None
        no_pad((e for e in examples), batch_size=2)
