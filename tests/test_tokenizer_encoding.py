"""Offsets, pairs, overflowing windows with a stride, words and sequence ids against Transformers 5's tokenizer."""
import pickle

import numpy as np
import pytest
import torch
import transformers
from helpers.tokenizer_builders import build_all

from nemotron_c import AutoTokenizer

VARIANTS = ["nemotron", "plain_strings", "big", "metaspace_split", "legacy", "glued", "llama_legacy"]
TEXTS = ["Hello world", " leading space", "two  spaces\tand\nnewline ", "Ünïcödé 日本語 😀 x", "  ", "end ",
         "a </s> b <s>c", "x", "The cat sat on the mat, and the dog sat on the log."]
QUESTIONS = ["What?", "Where is the  cat?", "日本語は?"]
CONTEXT = ("The quick brown fox jumps over the lazy dog. Ünïcode  sits here, and 日本語 too. " * 3).strip()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))


@pytest.fixture(scope="module", params=VARIANTS)
def both(request, dirs):
    path = dirs[request.param]
    tokenizers = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    for tokenizer in tokenizers:
        tokenizer.pad_token = tokenizer.pad_token or "</s>"
    return tokenizers


ALL = dict(return_offsets_mapping=True, return_token_type_ids=True, return_special_tokens_mask=True)


def same_call(ours, theirs, *args, **kwargs):
    """The same encodings, or, where Transformers fails (an Exception, or tokenizers' PanicException, a
    BaseException, for a stride too long), a ValueError from ours."""
    try:
        expected = theirs(*args, **kwargs)
    except BaseException as error:  # noqa: B036 (the panic is no Exception)
        with pytest.raises(ValueError) as raised:
            ours(*args, **kwargs)
        # the same refusal, not any ValueError on the way: Transformers' message, or, for the stride that
        # tokenizers panics on, ours naming the stride
        if "`stride` must be strictly less than" in str(error):
            assert str(raised.value).startswith(f"stride ({kwargs['stride']}) must be strictly less than")
        else:
            assert str(raised.value).startswith(str(error))
        return str(error)
    assert_same_encoding(ours(*args, **kwargs), expected)


def assert_same_encoding(ours, theirs):
    assert dict(ours) == {k: v for k, v in theirs.items()}
    assert list(ours) == list(theirs)  # the keys' order too
    for i in range(len(theirs.encodings)):
        assert ours.sequence_ids(i) == theirs.sequence_ids(i)
        assert ours.word_ids(i) == theirs.word_ids(i)
        for token, word in enumerate(theirs.word_ids(i)):
            assert ours.token_to_word(i, token) == theirs.token_to_word(i, token)
            if word is not None:
                for sequence in (0, 1):
                    span = theirs.encodings[i].word_to_chars(word, sequence)
                    assert ours.encodings[i].word_to_chars(word, sequence) == span
                    if span is not None:
                        assert ours.word_to_chars(i, word, sequence_index=sequence) == span


@pytest.mark.parametrize("text", TEXTS)
def test_offsets_and_words_of_one_text(both, text):
    ours, theirs = both
    assert_same_encoding(ours(text, **ALL), theirs(text, **ALL))
    assert_same_encoding(ours([text, "x y"], **ALL), theirs([text, "x y"], **ALL))


@pytest.mark.parametrize("question", QUESTIONS)
def test_pairs(both, question):
    ours, theirs = both
    for first, second in ((question, CONTEXT), (CONTEXT, question), (question, "a </s> b")):
        assert_same_encoding(ours(first, second, **ALL), theirs(first, second, **ALL))
    assert_same_encoding(ours([question, "x"], [CONTEXT, "y z"], padding=True, **ALL),
                         theirs([question, "x"], [CONTEXT, "y z"], padding=True, **ALL))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length,stride", [(16, 4), (24, 0), (12, 2), (60, 10), (500, 3)])
def test_overflowing_windows(both, side, max_length, stride):
    ours, theirs = both
    ours.truncation_side = theirs.truncation_side = side
    try:
        common = dict(max_length=max_length, stride=stride, return_overflowing_tokens=True, **ALL)
        for question in QUESTIONS:
            same_call(ours, theirs, question, CONTEXT, truncation="only_second", **common)
            same_call(ours, theirs, CONTEXT, question, truncation="only_first", **common)
            same_call(ours, theirs, [question, "x"], [CONTEXT, "short"], truncation="only_second",
                      padding="max_length", **common)
        same_call(ours, theirs, CONTEXT, truncation=True, **common)
    finally:
        ours.truncation_side = theirs.truncation_side = "right"


@pytest.mark.parametrize("max_length", [6, 11, 20])
def test_longest_first_pairs(both, max_length):
    ours, theirs = both
    for first, second in (("one two three four five six seven", "a b"), ("a b", CONTEXT), (CONTEXT, CONTEXT[:40])):
        assert_same_encoding(ours(first, second, truncation=True, max_length=max_length, **ALL),
                             theirs(first, second, truncation=True, max_length=max_length, **ALL))


def test_tensors_and_lazy_encodings(both):
    ours, theirs = both
    kwargs = dict(truncation="only_second", max_length=16, stride=3, return_overflowing_tokens=True,
                  padding=True, return_tensors="np", **ALL)
    a, b = ours("Where?", CONTEXT, **kwargs), theirs("Where?", CONTEXT, **kwargs)
    assert list(a) == list(b)
    for key in b:
        assert a[key].tolist() == b[key].tolist(), key
    # the plain path computes its encodings when asked
    plain_ours, plain_theirs = ours(["Hello world", "x"]), theirs(["Hello world", "x"])
    assert plain_ours.word_ids(1) == plain_theirs.word_ids(1)
    assert plain_ours[0].offsets == plain_theirs[0].offsets
    copied = pickle.loads(pickle.dumps(ours(["Hello world", "x"])))
    assert copied == plain_ours and copied.word_ids(0) == plain_theirs.word_ids(0)


def test_truncation_errors(both):
    ours, theirs = both
    long_question = "What is the name of the thing that sits on the mat by the door?"
    message = same_call(ours, theirs, long_question, "short", truncation="only_second", max_length=6)
    assert "too short" in message
    same_call(ours, theirs, "one two", truncation="only_second", max_length=3, **ALL)
    same_call(ours, theirs, "one two three", truncation=True, max_length=1, return_overflowing_tokens=True, **ALL)
    message = same_call(ours, theirs, "Q?", CONTEXT, truncation="only_second", max_length=10, stride=8,
                        return_overflowing_tokens=True)
    assert "stride" in message


def _plain(value):
    """A BatchEncoding, dict, tensor or array as plain Python values (tensors tagged with their kind)."""
    if hasattr(value, "keys"):
        return [(key, _plain(value[key])) for key in value.keys()]  # the keys' order too
    if hasattr(value, "tolist"):
        return (type(value).__module__.split(".")[0], _plain(value.tolist()))
    if isinstance(value, list):  # an object array's rows are arrays
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("kwargs", [dict(), dict(padding=True), dict(padding=True, return_tensors="np"),
                                    dict(padding="max_length", max_length=40, return_tensors="pt"),
                                    dict(return_offsets_mapping=True, padding=True),
                                    dict(truncation=True, max_length=5, return_overflowing_tokens=True, stride=1)])
def test_return_length(both, kwargs):
    ours, theirs = both
    for text in (TEXTS, TEXTS[0]):
        assert _plain(ours(text, return_length=True, **kwargs)) == _plain(theirs(text, return_length=True, **kwargs))


@pytest.mark.parametrize("kwargs", [dict(), dict(padding=True), dict(padding=True, return_tensors="np")])
def test_text_target_gives_labels(both, kwargs):
    ours, theirs = both
    for call in (dict(text=TEXTS[:3], text_target=TEXTS[3:6]), dict(text=TEXTS[0], text_target=TEXTS[1]),
                 dict(text_target=TEXTS[:2]), dict(text=TEXTS[:2], text_pair=QUESTIONS[:2], text_target=TEXTS[2:4],
                                                     text_pair_target=QUESTIONS[1:3])):
        assert _plain(ours(**call, **kwargs)) == _plain(theirs(**call, **kwargs))


PAD_INPUTS = {
    "list of dicts": lambda: [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}],
    "dict of columns": lambda: {"input_ids": [[5, 6], [7]], "attention_mask": [[1, 1], [1]]},
    "single": lambda: {"input_ids": [5, 6]},
    "numpy rows": lambda: {"input_ids": [np.array([5, 6]), np.array([7])]},
    "torch rows": lambda: [{"input_ids": torch.tensor([5, 6, 7])}, {"input_ids": torch.tensor([8])}],
    "every column": lambda: {"input_ids": [[5, 6, 7], [8]], "token_type_ids": [[0, 0, 1], [0]],
                             "special_tokens_mask": [[1, 0, 0], [1]], "attention_mask": [[1, 1, 1], [1]]},
    "extra column": lambda: [{"input_ids": [5, 6], "labels": 1}, {"input_ids": [7], "labels": 0}],
    "empty": lambda: {"input_ids": []},
    "no input_ids": lambda: {"ids": [[5]]},
}


@pytest.mark.parametrize("name", PAD_INPUTS)
@pytest.mark.parametrize("kwargs", [dict(), dict(padding_side="left", pad_to_multiple_of=4),
                                    dict(padding="max_length", max_length=6, return_tensors="np"),
                                    dict(return_attention_mask=False), dict(padding=False), dict(return_tensors="pt"),
                                    dict(padding_side="middle")])
def test_pad_as_transformers(both, name, kwargs):
    """What DataCollatorWithPadding calls: the same padded columns, tensors and errors."""
    ours, theirs = both
    try:
        expected = _plain(theirs.pad(PAD_INPUTS[name](), **kwargs))
    except Exception as error:  # noqa: BLE001 (the same exception is asked of ours)
        with pytest.raises(type(error)) as raised:
            ours.pad(PAD_INPUTS[name](), **kwargs)
        assert str(raised.value) == str(error)
        return
    assert _plain(ours.pad(PAD_INPUTS[name](), **kwargs)) == expected


def test_special_token_counts_and_tokens_to_string(both):
    ours, theirs = both
    for pair in (False, True):
        assert ours.num_special_tokens_to_add(pair) == theirs.num_special_tokens_to_add(pair)
    for text in TEXTS:
        tokens = theirs.tokenize(text)
        assert ours.tokenize(text) == tokens
        assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)
    # any strings, as Transformers runs the decoder on them
    for tokens in (["no such token anywhere"], ["\u2581a\u2581b", "<0x41>", "<0xE4>", "<0xB8>", "<0xAD>", "<0xE4>", "x"],
                   ["<0x+5>", "<0xZZ>", "<0x4", "\u2581", " b\u2581 "], []):
        assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)
    with pytest.raises(TypeError):
        theirs.convert_tokens_to_string(["a", 5])
    with pytest.raises(TypeError, match="takes strings"):
        ours.convert_tokens_to_string(["a", 5])


def test_pad_of_the_tokenizers_own_encodings(both):
    """DataCollatorWithPadding's input: a list of the tokenizer's unpadded encodings."""
    ours, theirs = both
    features = TEXTS[:4]
    expected = _plain(theirs.pad([theirs(text) for text in features], return_tensors="np"))
    assert _plain(ours.pad([ours(text) for text in features], return_tensors="np")) == expected


PRETOKENIZED = [
    dict(text=["Hello", "world", "!"]),
    dict(text=[["Hello world", "x"], [" a", "b "], ["Ünïcödé", "日本語", "</s>", "😀"]], padding=True),
    dict(text=["a", "b"], text_pair=["c", "d e"]),
    dict(text=[["a", "b"], ["x"]], text_pair=[["c"], ["d", "e", "f"]], padding=True, return_token_type_ids=True),
    dict(text=[["a"], []], padding=True),
    dict(text=[]),
    dict(text=["Hello", "world", "foo", "bar", "baz"], truncation=True, max_length=6, return_overflowing_tokens=True,
         stride=1),
    dict(text=[["one", "two"], ["three"]], padding=True, return_tensors="np", return_special_tokens_mask=True),
]


@pytest.mark.parametrize("call", PRETOKENIZED)
def test_is_split_into_words(both, call):
    """Pre-tokenized input (what token classification scripts give): each word encoded on its own, word ids the
    words' indices, offsets within each word; word_ids() is how labels are aligned to tokens."""
    ours, theirs = both
    kwargs = dict(call, is_split_into_words=True, return_offsets_mapping=True)
    if "return_tensors" in call:
        assert _plain(ours(**kwargs)) == _plain(theirs(**kwargs))
    else:
        same_call(ours, theirs, **kwargs)
    for bad in (["a", 5], [["a"], "b"]):
        with pytest.raises(TypeError):
            theirs(bad, is_split_into_words=True)
        with pytest.raises(TypeError, match="a list of words"):
            ours(bad, is_split_into_words=True)


SPACED_PIECES = [" ", "  ", "   ", "\u2581", "\u2581\u2581", "a", "th", "e", "the", "\n", "\t", "<s>", "</s>", "<pad>",
                 "<extra_id_0>", "<extra_id_1>", "<ctrl_0>", "\u00e9", "\u4e2d", "\U0001f600", ".", "<unk>"]


@pytest.mark.parametrize("name", ["spm_only", "spm_only_no_extra_ws", "spm_only_no_prefix", "spm_only_llama",
                                  "nemotron", "metaspace_split", "glued"])
def test_offsets_through_the_normalizer(dirs, name):
    """Offsets where the normalizer trims, collapses and doubles spaces (tokenizer.model alone: Transformers'
    SentencePiece conversion), spaces and U+2581 at every place: each token's span is that of the original
    characters it comes from, as tokenizers aligns them (' both' is (1, 5), the '▁' prepended to ' .' is (1, 2))."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs[name]), transformers.AutoTokenizer.from_pretrained(dirs[name])
    rng = np.random.default_rng(7)
    texts = [" both", " .", " \u2581 ", "a  b", "  lead", "trail  ", "\u2581\u2581a", " \u2581a", "a  \u2581b"]
    texts += ["".join(rng.choice(SPACED_PIECES, size=int(rng.integers(0, 10)))) for _ in range(400)]
    for text in texts:
        expected = theirs(text, return_offsets_mapping=True)
        got = ours(text, return_offsets_mapping=True)
        assert (text, got["offset_mapping"]) == (text, expected["offset_mapping"])
        assert (text, got.word_ids()) == (text, expected.word_ids())


@pytest.mark.parametrize("overflowing", [False, True])
@pytest.mark.parametrize("max_length", [1, 2, 3, 5])
def test_padding_longest_counts_the_main_rows_only(both, overflowing, max_length):
    """padding='longest' pads to the longest main row: truncation that empties one sequence of a pair leaves
    overflowing windows longer than it, which tokenizers pads to that length too but never counts."""
    ours, theirs = both
    texts, pairs = ["the quick brown fox", "a b"], ["hello world", "the lazy dog both"]
    kwargs = dict(padding="longest", truncation="longest_first", max_length=max_length + ours.num_special_tokens_to_add(True),
                  return_overflowing_tokens=overflowing)
    same_call(ours, theirs, texts, pairs, **kwargs)
    same_call(ours, theirs, texts[:1], pairs[:1], **kwargs)


@pytest.mark.parametrize("extra", [{}, ALL], ids=["plain", "offsets"])
@pytest.mark.parametrize("max_length", [2, 3, 4, 12])
def test_only_second_without_a_pair(both, extra, max_length):
    """truncation='only_second' with no text_pair raises where it has to cut (tokenizers' 'Second sequence not
    provided'), on both encoding paths; a text that fits, or max_length equal to the special tokens (everything
    cut, no question asked), passes."""
    ours, theirs = both
    max_length += ours.num_special_tokens_to_add()
    for text in ("one two three four five", "x", ["one two three four five", "x"]):
        message = same_call(ours, theirs, text, truncation="only_second", max_length=max_length, **extra)
        assert message is None or "Second sequence not provided" in message
    same_call(ours, theirs, "one two", truncation="only_second", max_length=ours.num_special_tokens_to_add(), **extra)


@pytest.mark.parametrize("extra", [{}, ALL], ids=["plain", "offsets"])
def test_max_length_shorter_than_the_special_tokens(both, extra):
    """Both encoding paths refuse max_length below the special tokens with the same ValueError (tokenizers then
    skips truncation and returns more than max_length tokens, the README's documented difference); at exactly
    the special tokens they give what Transformers gives."""
    ours, theirs = both
    n_special = ours.num_special_tokens_to_add()
    assert n_special == theirs.num_special_tokens_to_add()
    if n_special == 0:  # no special tokens to leave room for: the shortest window is Transformers' own
        same_call(ours, theirs, "the quick brown fox", truncation=True, max_length=1, **extra)
        return
    for call in (lambda: ours("the quick brown fox", truncation=True, max_length=n_special - 1, **extra),
                 lambda: ours(["the quick brown fox", "a"], truncation=True, max_length=n_special - 1, **extra),
                 lambda: ours.encode("the quick brown fox", truncation=True, max_length=n_special - 1)):
        with pytest.raises(ValueError, match="leaves no room for the"):
            call()
    same_call(ours, theirs, "the quick brown fox", truncation=True, max_length=n_special, **extra)


def test_encode_takes_a_text_pair(both):
    """encode(text, text_pair, add_special_tokens, ...) in Transformers' positional order: the pair is encoded,
    positionally or by keyword, with the other options (stride, truncation) passed on."""
    ours, theirs = both
    for args, kwargs in [(("hello", "world"), {}), (("hello",), {"text_pair": "world"}),
                         (("hello", "world", False), {}), (("Where is the  cat?", CONTEXT), {"truncation": "only_second",
                                                                                          "max_length": 24}),
                         (("hello", None, True), {"return_tensors": "np"})]:
        a, b = ours.encode(*args, **kwargs), theirs.encode(*args, **kwargs)
        assert (args, _plain(a)) == (args, _plain(b))


def test_tokens_char_to_token_and_word_to_tokens(both):
    """BatchEncoding.tokens(), char_to_token() and word_to_tokens(), of one text, a batch and a pair."""
    ours, theirs = both
    for args, kwargs in [(("Hello  world<extra_id_0>x </s> y",), {}), ((["Hello  world x", "b"],), {"padding": True}),
                         (("Hello", "world  x"), {})]:
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
        rows = len(b.encodings)
        assert [a.tokens(i) for i in range(rows)] == [b.tokens(i) for i in range(rows)]
        for sequence in (0, 1):
            assert [a.char_to_token(i, c, sequence_index=sequence) for i in range(rows) for c in range(16)] == \
                [b.char_to_token(i, c, sequence_index=sequence) for i in range(rows) for c in range(16)]
            assert [a.word_to_tokens(i, w, sequence_index=sequence) for i in range(rows) for w in range(5)] == \
                [b.word_to_tokens(i, w, sequence_index=sequence) for i in range(rows) for w in range(5)]
        assert a.char_to_token(3) == b.char_to_token(3) and a.word_to_tokens(0) == b.word_to_tokens(0)


def test_offsets_of_stripping_tokens_in_pairs_and_windows(dirs):
    """The legacy tokenizer's lstrip/rstrip tokens, whose spans take in the whitespace around them, in pairs and in
    overflowing windows with a stride, as Transformers gives them."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["legacy"]), transformers.AutoTokenizer.from_pretrained(dirs["legacy"])
    text = "Hello  world <extra_id_0> x <tool> y\t<tool>\u3000<extra_id_0>"
    assert_same_encoding(ours(text, **ALL), theirs(text, **ALL))
    assert_same_encoding(ours(text, "a <tool> pair", **ALL), theirs(text, "a <tool> pair", **ALL))
    try:
        for side in ("right", "left"):
            ours.truncation_side = theirs.truncation_side = side
            same_call(ours, theirs, [text, "x"], ["q <extra_id_0> r", text], truncation="longest_first",
                      max_length=12, stride=3, return_overflowing_tokens=True, padding=True, **ALL)
    finally:
        ours.truncation_side = theirs.truncation_side = "right"


def _columns(encoding):
    """A BatchEncoding's columns as comparable values (tensor kind, dtype, values; rows of a ragged array)."""
    out = {}
    for key, value in encoding.items():
        if isinstance(value, np.ndarray) and value.dtype == object:
            out[key] = ("object", [row.tolist() for row in value])
        elif hasattr(value, "tolist"):
            out[key] = (type(value).__name__, str(value.dtype), value.tolist())
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("tensor_type", ["np", "pt", None])
def test_convert_to_tensors_n_sequences_and_is_fast(both, tensor_type):
    """BatchEncoding.convert_to_tensors (in place, with or without a batch axis put before; ragged rows an object
    array, or Transformers' ValueError), n_sequences (an emptied sequence of a pair counts), is_fast and data."""
    ours, theirs = both
    calls = [(("Hello world",), {}), ((["Hello world", "x"],), {}), ((["Hello world", "x"],), {"padding": True}),
             ((["Hello world", "x"],), {"return_offsets_mapping": True}), (("",), {}), (([""],), {}),
             (("a b", "c d e f g h"), dict(truncation="only_second", max_length=6 + ours.num_special_tokens_to_add(True),
                                           return_overflowing_tokens=True, stride=1))]
    for args, kwargs in calls:
        for batch_axis in (False, True):
            outcomes = []
            for tokenizer in (ours, theirs):
                encoding = tokenizer(*args, **kwargs)
                try:
                    converted = encoding.convert_to_tensors(tensor_type, prepend_batch_axis=batch_axis)
                    outcomes.append((converted is encoding, _columns(encoding)))
                except ValueError as e:
                    outcomes.append(str(e)[:40])
            assert (args, kwargs, batch_axis, outcomes[0]) == (args, kwargs, batch_axis, outcomes[1])
    for args, kwargs in [(("Hello world",), {}), ((["a", "b c"], ["x", "y"]), {}),
                         (("a b", "c d e f g h"), dict(truncation="longest_first", return_overflowing_tokens=True,
                                                       max_length=1 + ours.num_special_tokens_to_add(True)))]:
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert (a.n_sequences, [e.n_sequences for e in a.encodings]) == \
            (b.n_sequences, [e.n_sequences for e in b.encodings])
        assert a.is_fast and a.data == b.data


def test_special_tokens_mask_vocab_and_other_attributes(both):
    """get_special_tokens_mask (what DataCollatorForLanguageModeling calls: all_special_ids in a formatted
    sequence; for an unformatted one, which Transformers does not implement, the template's mask, equal to
    return_special_tokens_mask's), vocab, pad_token_type_id and clean_up_tokenization as Transformers'."""
    ours, theirs = both
    for text in TEXTS:
        ids = theirs(text)["input_ids"] + theirs.convert_tokens_to_ids(["<pad>", "<ctrl_0>", "<unk>"])
        assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == \
            theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    with pytest.raises(ValueError, match="second sequence"):
        ours.get_special_tokens_mask([1], [2], already_has_special_tokens=True)
    first, second = theirs("a b", add_special_tokens=False)["input_ids"], theirs("c", add_special_tokens=False)["input_ids"]
    assert ours.get_special_tokens_mask(first) == theirs("a b", return_special_tokens_mask=True)["special_tokens_mask"]
    assert ours.get_special_tokens_mask(first, second) == \
        theirs("a b", "c", return_special_tokens_mask=True)["special_tokens_mask"]
    assert (ours.vocab, ours.pad_token_type_id) == (theirs.vocab, theirs.pad_token_type_id)
    assert ours.clean_up_tokenization("a , b . c 's") == theirs.clean_up_tokenization("a , b . c 's")


@pytest.mark.parametrize("overflowing", [False, True])
def test_a_stride_past_the_room_left_is_refused_before_any_text_as_transformers(both, overflowing):
    """tokenizers' enable_truncation refuses a stride longer than max_length less one sequence's special tokens
    (counted so for pairs and without add_special_tokens too) whether or not a text is cut; ours refused only
    where it cut, and windowed a short text with no room left (max_length 1: a window of the BOS alone)."""
    ours, theirs = both
    refused = 0
    for args in (("hi",), ("hello world there",), ("hi", "yo"), (["hi", "hello world foo bar"],)):
        for max_length in range(1, 6):
            for stride in (1, 2, 4, 6):
                for add_special_tokens in (True, False):
                    message = same_call(ours, theirs, *args, truncation=True, max_length=max_length, stride=stride,
                                        add_special_tokens=add_special_tokens,
                                        return_overflowing_tokens=overflowing)
                    refused += message is not None and message.startswith("tokenizer stride set to")
    assert refused > 0


def test_a_batch_of_text_pairs_as_tuples_or_lists(both):
    """Transformers hands a batch's items to tokenizers' encode_batch, which takes a (text, text_pair) tuple or
    2-list as a pair: mixed with plain texts too."""
    ours, theirs = both
    for batch, kwargs in [([("a b", "c")], {}), ([["a b", "c"]], ALL), (["x", ("Where?", CONTEXT)], ALL),
                          ([("Where?", CONTEXT), ("What?", "short")],
                           dict(truncation="only_second", max_length=12, stride=2, return_overflowing_tokens=True,
                                padding=True, **ALL)),
                          ([("a b", "c"), "d e"], dict(padding=True, return_tensors="np"))]:
        a, b = ours(batch, **kwargs), theirs(batch, **kwargs)
        assert _plain(a) == _plain(b), batch
        if kwargs.get("return_tensors") is None:
            assert_same_encoding(a, b)
    for bad in ([("a", "b", "c")], [("a",)], [("a", 5)]):
        with pytest.raises(TypeError):
            theirs(bad)
        with pytest.raises(TypeError, match="TextEncodeInput must be|TextInputSequence must be str"):
            ours(bad)
    with pytest.raises(TypeError, match="TextInputSequence must be str"):
        ours([("a", "b")], text_pair=["z"])


def test_tokenize_takes_a_pair(both):
    ours, theirs = both
    for args, kwargs in [(("a b", "c d"), {}), (("Where is the  cat?",), dict(pair=CONTEXT, add_special_tokens=True)),
                         (("a b", None, True), {}), (("a </s> b", "<s>c"), dict(add_special_tokens=True)),
                         (("hello world foo",), dict(truncation=True, max_length=3))]:  # truncation: ignored there
        assert ours.tokenize(*args, **kwargs) == theirs.tokenize(*args, **kwargs), (args, kwargs)
