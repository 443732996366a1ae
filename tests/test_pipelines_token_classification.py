"""nemotron_c.pipeline("token-classification") against transformers.pipeline on the same tiny checkpoints: the word
strategies (first, average, max), stride windows, batches, given offsets, odd inputs."""
import os
import shutil
import types
import warnings

import pytest
import tokenizers
import torch
import transformers
from test_pipelines import LABELS, assert_same, checkpoint_with_tokenizer

import nemotron_c
from nemotron_c.tokenizer.tokenization import decode_strings
from nemotron_c.tokenizer.files import decoder_steps

STRATEGIES = ["none", "simple", "first", "average", "max"]
TEXTS = ["Return the number of items \u00e9\u4e2d x\ny", "  two  spaces, \u00e9t\u00e9 \u4e2d\u6587 \U0001F600 done",
         "hi </s> there <s> <unk> x", "x <0x41> y a<0x41> \u2581c", " ", "Open  the file \u00e9\u4e2d and read it",
         "ReturnTheNumber,of(items)!", "\u00e9", "a\tb\u3000c"]
LONG = "Return the number of items and then close the file please now, \u00e9\u4e2d x\ny done."


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("token-classification"))
    model = transformers.NemotronForTokenClassification
    return {"no pad": checkpoint_with_tokenizer(root, "tok", model, num_labels=5, **LABELS),
            "right": checkpoint_with_tokenizer(root, "tok-right", model, pad=True, num_labels=5, **LABELS),
            "left": checkpoint_with_tokenizer(root, "tok-left", model, pad=True, padding_side="left", num_labels=5,
                                              **LABELS)}


def pair(paths, name="right", model_max_length=None, **kwargs):
    path = paths[name]
    theirs = transformers.pipeline("token-classification", model=path, tokenizer=path, device="cpu",
                                   dtype=torch.float32, **kwargs)
    ours = nemotron_c.pipeline("token-classification", model=path, **kwargs)
    if model_max_length:
        ours.tokenizer.model_max_length = theirs.tokenizer.model_max_length = model_max_length
    return ours, theirs


def with_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [(w.category, str(w.message)) for w in caught]


def assert_same_with_warnings(ours, theirs):
    """The same entities (scores within 1e-5) and the same warnings, as many times."""
    expected, expected_warnings = with_warnings(theirs)
    got, got_warnings = with_warnings(ours)
    assert_same(got, expected, atol=1e-5)
    assert got_warnings == expected_warnings


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_aggregation_strategies_as_transformers(paths, strategy):
    """first/average/max take one label per word; with no continuing_subword_prefix in nemotron_c's BPE, the words
    are Transformers' fallback guess, which warns once per token as there."""
    ours, theirs = pair(paths, aggregation_strategy=strategy)
    for text in TEXTS:
        for call in ({}, {"ignore_labels": []}, {"ignore_labels": ["NAME", "I-NAME", "O"]}):
            assert_same_with_warnings(lambda: ours(text, **call), lambda: theirs(text, **call))
    assert_same_with_warnings(lambda: ours(TEXTS, ignore_labels=[]), lambda: theirs(TEXTS, ignore_labels=[]))


@pytest.mark.parametrize("strategy", ["first", "average", "max", "AVERAGE"])
def test_word_strategies_given_to_a_call_and_on_words(paths, strategy):
    ours, theirs = pair(paths)
    call = {"aggregation_strategy": strategy, "ignore_labels": []}
    assert_same_with_warnings(lambda: ours(TEXTS[0], **call), lambda: theirs(TEXTS[0], **call))
    words = ["Open", "the", "fi", "le", "\u00e9t\u00e9", "now.", "<0x41>"]
    for delimiter in (None, "", "__"):
        split = {**call, "is_split_into_words": True, "delimiter": delimiter}
        assert_same_with_warnings(lambda: ours(words, **split), lambda: theirs(words, **split))


def tokenizers_decoder(component):
    decoders = tokenizers.decoders
    kind = component["type"]
    if kind == "Sequence":
        return decoders.Sequence([tokenizers_decoder(d) for d in component["decoders"]])
    if kind == "Replace":
        return decoders.Replace(component["pattern"]["String"], component["content"])
    if kind == "Strip":
        return decoders.Strip(component["content"], component["start"], component["stop"])
    if kind == "Metaspace":
        return decoders.Metaspace(component["replacement"], component["prepend_scheme"], component["split"])
    return {"ByteFallback": decoders.ByteFallback, "Fuse": decoders.Fuse}[kind]()


def test_decoding_words_as_tokenizers_decoders():
    """The word strategies decode words that are no tokens (decoded words, a token's text): the decoder's steps run
    on them as tokenizers' decoders run them."""
    chains = [
        {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                          {"type": "ByteFallback"}, {"type": "Fuse"},
                                          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": True},
        {"type": "Sequence", "decoders": [{"type": "ByteFallback"},
                                          {"type": "Strip", "content": "x", "start": 2, "stop": 1}]},
    ]
    words = [["\u2581\u2581a", "<0x41>", "<0xE4>", "<0xB8>", "<0xAD>", " b\u2581", "<0xE4>", "c", "<0xZZ>"],
             ["  x", "xxAxx", "\u00e9\u4e2d", "<0x4", "\u2581x\u2581"], ["\u2581"], ["<0xC3>", "<0xA9>"]]
    for chain in chains:  # what the tokenizer's convert_tokens_to_string runs
        for tokens in words:
            assert decode_strings(decoder_steps(chain), tokens) == tokenizers_decoder(chain).decode(tokens), \
                (chain, tokens)
    assert decode_strings([], ["a", "b"]) == "a b"  # as Transformers without a decoder


@pytest.mark.parametrize("strategy", [None, "simple", "first", "average", "max"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_stride_windows_as_transformers(paths, strategy, side):
    """With stride, a text longer than model_max_length is read in overlapping windows (padded to the longest, on
    the tokenizer's side), whose entities are merged, as Transformers does; without aggregation_strategy the windows'
    token entities are merged so too."""
    ours, theirs = pair(paths, side, model_max_length=8)
    for stride in (0, 3, 7):
        call = {"stride": stride, "ignore_labels": []}
        if strategy:
            call["aggregation_strategy"] = strategy
        assert_same_with_warnings(lambda: ours(LONG, **call), lambda: theirs(LONG, **call))
        assert_same_with_warnings(lambda: ours(LONG, stride=stride), lambda: theirs(LONG, stride=stride))
        for batch_size in (1, 3):
            # left-padded batches: Transformers' "index" counts the padding (see test_batches_as_transformers)
            if side == "left" and batch_size > 1 and strategy is None:
                continue
            inputs = [LONG, TEXTS[1], TEXTS[0]]
            assert_same(ours(inputs, batch_size=batch_size, **call), theirs(inputs, batch_size=batch_size, **call),
                        atol=1e-5)
    words = LONG.split()
    call = {"stride": 2, "is_split_into_words": True, "aggregation_strategy": strategy}
    assert_same_with_warnings(lambda: ours(words, **call), lambda: theirs(words, **call))


def test_stride_refusals_as_transformers(paths):
    ours, theirs = pair(paths, model_max_length=8)
    for call in ({"stride": 8, "aggregation_strategy": "simple"}, {"stride": 2, "aggregation_strategy": "none"}):
        with pytest.raises(ValueError) as expected:
            theirs(LONG, **call)
        with pytest.raises(ValueError) as raised:
            ours(LONG, **call)
        assert str(raised.value) == str(expected.value)
    with pytest.raises(ValueError, match="aggregation_strategy"):
        nemotron_c.pipeline("token-classification", model=paths["right"], stride=2, aggregation_strategy="none")
    # the "none" given at construction is not checked against a call's stride, as in Transformers
    ours, theirs = pair(paths, model_max_length=8, aggregation_strategy="none")
    assert_same(ours(LONG, stride=2), theirs(LONG, stride=2), atol=1e-5)
    # windows are padded: without a pad token, the tokenizer's ValueError
    ours, theirs = pair(paths, "no pad", model_max_length=8)
    with pytest.raises(ValueError) as expected:
        theirs(LONG, stride=2, aggregation_strategy="first")
    with pytest.raises(ValueError) as raised:
        ours(LONG, stride=2, aggregation_strategy="first")
    assert str(raised.value) == str(expected.value)


def test_batches_as_transformers(paths):
    """batch_size pads the windows of a batch on the tokenizer's side; without a pad token that raises
    Transformers' ValueError for any input, even one text. A left-padded row's "index" in Transformers counts the
    padding before it; ours is the token's index in its own text (as unbatched)."""
    ours, theirs = pair(paths, "no pad")
    # each its own generator: Transformers reads an item before it raises
    for inputs in (lambda: TEXTS[0], lambda: TEXTS[:2], lambda: (t for t in TEXTS[:2])):
        with pytest.raises(ValueError) as expected:
            theirs(inputs(), batch_size=2)
        with pytest.raises(ValueError) as raised:
            ours(inputs(), batch_size=2)
        assert str(raised.value) == str(expected.value)
    assert_same(ours(TEXTS, batch_size=1), theirs(TEXTS, batch_size=1), atol=1e-5)
    for side in ("right", "left"):
        ours, theirs = pair(paths, side)
        for strategy in STRATEGIES:
            for batch_size in (2, 4):
                call = {"batch_size": batch_size, "aggregation_strategy": strategy, "ignore_labels": []}
                expected = theirs(TEXTS, **call)
                result = ours(TEXTS, **call)
                if side == "left" and strategy == "none":
                    assert_same(result, theirs(TEXTS, aggregation_strategy="none", ignore_labels=[]), atol=1e-5)
                    for entities in expected:
                        for entity in entities:
                            entity.pop("index")
                    for entities in result:
                        for entity in entities:
                            entity.pop("index")
                assert_same(result, expected, atol=1e-5)
        generated = ours((t for t in TEXTS), batch_size=2)
        assert isinstance(generated, types.GeneratorType)
        generated = list(generated)
        assert generated == ours(TEXTS, batch_size=2)
        if side == "right":
            assert_same(generated, list(theirs((t for t in TEXTS), batch_size=2)), atol=1e-5)


def test_given_offsets(paths):
    """offset_mapping replaces the tokenizer's offsets (start, end, the word's text and where words begin). One per
    input: Transformers checks so, then gives the first to every input of a list; each input has its own here."""
    ours, theirs = pair(paths)
    text = "Return the number of items"
    offsets = [(0, 3), (3, 6), (6, 7), (7, 17), (17, 20)]
    for strategy in STRATEGIES:
        call = {"aggregation_strategy": strategy, "offset_mapping": offsets, "ignore_labels": []}
        assert_same_with_warnings(lambda: ours(text, **call), lambda: theirs(text, **call))
        other = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
        both = {**call, "offset_mapping": [offsets, other]}
        expected = [theirs(text, **call), theirs(text, **{**call, "offset_mapping": other})]
        assert_same(ours([text, text], **both), expected, atol=1e-5)
    for bad in ([offsets, offsets], [[0, 3], [3, 6]]):
        with pytest.raises(ValueError) as expected:
            theirs(text, offset_mapping=bad)
        with pytest.raises(ValueError, match="offset_mapping should have the same batch size") as raised:
            ours(text, offset_mapping=bad)
        assert str(raised.value) == str(expected.value)


def test_odd_inputs(paths):
    """An empty text has no entities (Transformers' model fails on no tokens); no input, a strategy Transformers
    does not know or an unknown keyword raise as there."""
    ours, theirs = pair(paths)
    with pytest.raises(RuntimeError):
        theirs("")
    assert ours("") == [] and ours(["", "x"])[0] == []
    assert ours(["", ""], batch_size=2, aggregation_strategy="max") == [[], []]
    assert_same(ours(["", "x"])[1], theirs("x"), atol=1e-5)
    for inputs in ([], None, 3):
        with pytest.raises(ValueError, match="At least one input is required"):
            theirs(inputs)
        with pytest.raises(ValueError, match="At least one input is required"):
            ours(inputs)
    with pytest.raises(KeyError):
        theirs("a", aggregation_strategy="longest")
    with pytest.raises(KeyError, match="longest"):
        ours("a", aggregation_strategy="longest")
    with pytest.raises(KeyError):
        nemotron_c.pipeline("token-classification", model=paths["right"], aggregation_strategy="longest")
    for call in ({"aggregation_stategy": "simple"}, {"truncation": True}):
        with pytest.raises(TypeError):
            theirs("a", **call)
        with pytest.raises(TypeError, match=next(iter(call))):
            ours("a", **call)
    enum = transformers.pipelines.token_classification.AggregationStrategy.FIRST
    assert_same_with_warnings(lambda: ours(TEXTS[0], aggregation_strategy=enum),
                              lambda: theirs(TEXTS[0], aggregation_strategy=enum))


def test_settings_of_a_call_over_the_construction(paths):
    """A call's setting given as None leaves the construction's in place, as Transformers' _sanitize_parameters;
    a stride that is no count of tokens raises a ValueError (Transformers' tokenizer an OverflowError)."""
    ours, theirs = pair(paths, model_max_length=6, aggregation_strategy="simple", stride=2, ignore_labels=[])
    for call in ({}, {"aggregation_strategy": None}, {"stride": None, "ignore_labels": None},
                 {"aggregation_strategy": "max"}, {"ignore_labels": ["O", "NAME"]}):
        assert_same_with_warnings(lambda: ours(LONG, **call), lambda: theirs(LONG, **call))
    with pytest.raises(OverflowError):
        theirs(LONG, stride=-1)
    for stride in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="stride="):
            ours(LONG, stride=stride)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_with_special_tokens_in_each_window(paths, tmp_path, strategy):
    """A tokenizer that puts <s> before each text (and window): the added tokens are no entities, as in
    Transformers."""
    path = tmp_path / "bos"
    shutil.copytree(paths["right"], path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(os.path.dirname(__file__), "data", "qa", name), path)
    ours, theirs = pair({"bos": str(path)}, "bos", aggregation_strategy=strategy, ignore_labels=[])
    assert ours.tokenizer("a")["input_ids"][0] == ours.tokenizer.bos_token_id
    calls = [{}, {"batch_size": 2}, {"is_split_into_words": True}]
    if strategy != "none":
        calls.append({"stride": 3})
    for model_max_length in (None, 8):
        if model_max_length:
            ours.tokenizer.model_max_length = theirs.tokenizer.model_max_length = model_max_length
        for call in calls:
            inputs = LONG.split() if call.get("is_split_into_words") else [LONG, TEXTS[0], "a b"]
            assert_same_with_warnings(lambda: ours(inputs, **call), lambda: theirs(inputs, **call))
