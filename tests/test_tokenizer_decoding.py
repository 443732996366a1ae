"""Decoding against Transformers 5's tokenizer: decode, convert_ids_to_tokens and convert_tokens_to_string with
skip_special_tokens, no decoder or an empty one, and added tokens named by their normalized form."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import transformers
from helpers.tokenizer_builders import build_all, write_tiny_tokenizer

from nemotron_c import AutoTokenizer

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))


@pytest.mark.parametrize("name", ["nemotron", "big", "legacy", "plain_strings", "spm_only"])
def test_convert_ids_to_tokens_skips_the_named_special_tokens(dirs, name):
    """convert_ids_to_tokens(skip_special_tokens=True) drops all_special_ids (bos, eos, unk, pad and the extra
    special tokens), not every special added token: <pad> and <ctrl_0> stay when no special token names them."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs[name]), transformers.AutoTokenizer.from_pretrained(dirs[name])
    ids = list(range(12)) + [len(theirs) - 1]
    for skip in (False, True):
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=skip) == \
            theirs.convert_ids_to_tokens(ids, skip_special_tokens=skip)


def test_decoding_normalized_special_tokens(dirs, tmp_path):
    """Under a Prepend normalizer a normalized added token is named by its normalized form ('▁<x>'): tokenizers'
    decode(skip_special_tokens=True) then keeps a special one (it skips by name), and convert_tokens_to_string
    takes the name convert_ids_to_tokens gave. Random ids, with and without skipping and clean-up."""
    path = tmp_path / "legacy"
    shutil.copytree(dirs["legacy"], path)
    with open(path / "tokenizer.json", encoding="utf-8") as f:
        data = json.load(f)
    next_id = max(max(data["model"]["vocab"].values()), *(a["id"] for a in data["added_tokens"])) + 1
    flags = {"single_word": False, "lstrip": False, "rstrip": False}
    data["added_tokens"] += [{"id": next_id, "content": "<x>", "normalized": True, "special": True, **flags},
                             {"id": next_id + 1, "content": "<y>", "normalized": False, "special": True, **flags},
                             {"id": next_id + 2, "content": "<z>", "normalized": True, "special": False, **flags}]
    with open(path / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    ours, theirs = AutoTokenizer.from_pretrained(str(path)), transformers.AutoTokenizer.from_pretrained(str(path))
    rng = np.random.default_rng(1)
    added = sorted(theirs.added_tokens_decoder)
    for _ in range(300):
        ids = [int(i) for i in rng.integers(0, len(theirs), size=int(rng.integers(0, 8)))]
        ids += [int(rng.choice(added)) for _ in range(int(rng.integers(0, 4)))]
        rng.shuffle(ids)
        for kwargs in ({}, {"skip_special_tokens": True}, {"clean_up_tokenization_spaces": True}):
            assert (ids, kwargs, ours.decode(ids, **kwargs)) == (ids, kwargs, theirs.decode(ids, **kwargs))
        tokens = theirs.convert_ids_to_tokens(ids)
        assert ours.convert_ids_to_tokens(ids) == tokens
        assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)


@pytest.mark.parametrize("decoder", [None, {"type": "Sequence", "decoders": []},
                                     {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
                                     {"type": "Sequence", "decoders": [{"type": "Strip", "content": "a", "start": 2,
                                                                        "stop": 0}, {"type": "Fuse"}]}],
                         ids=["none", "empty-sequence", "byte-fallback", "strip"])
def test_decoding_with_no_or_an_empty_decoder(tmp_path, decoder):
    """Without a decoder tokenizers joins the tokens with spaces; an empty Sequence joins them with nothing.
    decode and convert_tokens_to_string (any strings) as Transformers."""
    vocab = {"<unk>": 0, "a": 1, "b": 2, " ": 3, "ab": 4, "<0x41>": 5, "<0xE4>": 6}
    path = write_tiny_tokenizer(tmp_path, vocab, [("a", "b")], decoder=decoder)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    for text in ("ab a b", "aab", "a"):
        ids = theirs.encode(text)
        assert (text, ours.decode(ids)) == (text, theirs.decode(ids))
    for tokens in (["ab", "x y"], ["<0x41>", "<0xE4>", "aab", "<0x+5>"], ["aa", "", "a"], []):
        assert ours.convert_tokens_to_string(tokens) == theirs.convert_tokens_to_string(tokens)


def test_lone_surrogates_in_tokens(dirs):
    """A token holding a lone surrogate: add_tokens raises a TypeError, as Transformers', and leaves the tokenizer
    as it was (the next add_tokens works); convert_tokens_to_ids raises UnicodeEncodeError, as Transformers."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(dirs["nemotron"])
    for tokenizer in (ours, theirs):
        with pytest.raises(TypeError):
            tokenizer.add_tokens(["z\ud800"])
        with pytest.raises((TypeError, UnicodeEncodeError)):  # Transformers' AddedToken raises the latter
            tokenizer.add_special_tokens({"extra_special_tokens": ["<e>\udfff"], "pad_token": "<p>\udfff"})
        with pytest.raises(UnicodeEncodeError):
            tokenizer.convert_tokens_to_ids(["a\ud800"])
    assert ours.add_tokens(["<ok>"]) == theirs.add_tokens(["<ok>"])
    assert ours.encode("a <ok>") == theirs.encode("a <ok>")
    assert ours.get_added_vocab() == theirs.get_added_vocab()
    assert (ours.all_special_tokens, ours.pad_token) == (theirs.all_special_tokens, theirs.pad_token)


@pytest.mark.parametrize("where", ["vocab", "added", "normalizer"])
def test_lone_surrogate_in_tokenizer_json(tmp_path, where):
    """A "\\ud800" escape in tokenizer.json (a piece, an added token, a normalizer's string): a FormatError naming
    the folder (Transformers fails too, with an Exception or a UnicodeEncodeError)."""
    from nemotron_c.tokenizer.files import FormatError

    path = write_tiny_tokenizer(tmp_path, {"<unk>": 0, "a": 1, "b": 2})
    with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
        data = json.load(f)
    if where == "vocab":
        data["model"]["vocab"]["x\ud800"] = 3
    elif where == "added":
        data["added_tokens"] = [{"id": 3, "content": "y\udc00", "special": True}]
    else:
        data["normalizer"] = {"type": "Replace", "pattern": {"String": "a"}, "content": "\ud800"}
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(data))  # ASCII, the surrogate escaped
    with pytest.raises(Exception):  # noqa: B017 (Transformers' own error type varies)
        transformers.AutoTokenizer.from_pretrained(path)
    with pytest.raises(FormatError, match="lone surrogate"):
        AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("sequence", [[1, 848, 5, 9], (1, 848, 5, 9), np.array([1, 848, 5, 9])])
def test_batch_decode_of_one_sequence(dirs, sequence):
    """Transformers 5 decodes a flat sequence as one (and says it is deprecated); each id was decoded alone."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    with pytest.warns(FutureWarning, match="single sequence to `batch_decode` is deprecated"):
        assert ours.batch_decode(sequence) == theirs.batch_decode(sequence) == [theirs.decode(sequence)]
    assert ours.batch_decode([]) == theirs.batch_decode([]) == []
    assert ours.batch_decode([[]]) == theirs.batch_decode([[]]) == [""]
    for single in (5, np.int64(5), np.array(5)):
        with pytest.raises(TypeError):
            theirs.batch_decode(single)
        with pytest.raises(TypeError, match="has no len"):
            ours.batch_decode(single)


@pytest.mark.parametrize("value", ["False", "", None, 0, 1, 1.5])
def test_skip_special_tokens_must_be_a_bool(dirs, value):
    """tokenizers refuses anything but a bool: "False" would otherwise skip the special tokens."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    ids = [1, 848, 5, 2]
    with pytest.raises(TypeError, match="is not an instance of 'bool'"):
        theirs.decode(ids, skip_special_tokens=value)
    for call in (lambda: ours.decode(ids, skip_special_tokens=value),
                 lambda: ours.batch_decode([ids], skip_special_tokens=value)):
        with pytest.raises(TypeError, match="is not an instance of 'bool'"):
            call()
    for flag in (np.bool_(True), np.bool_(False), True):
        assert ours.decode(ids, skip_special_tokens=flag) == theirs.decode(ids, skip_special_tokens=flag)


@pytest.mark.parametrize("side, error", [("middle", ValueError), ("LEFT", ValueError), (None, TypeError),
                                         (1, TypeError)])
def test_a_truncation_side_set_later_is_checked_when_it_cuts(dirs, side, error):
    """Set after loading, it was read as left by one path and right by the other, silently."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    text = "hello world this is long"
    for tokenizer in (ours, theirs):
        tokenizer.truncation_side = side
        tokenizer(text)  # nothing cut: nothing said
        for kwargs in ({}, {"return_offsets_mapping": True}, {"text_pair": "and a pair"}):
            with pytest.raises(error):
                tokenizer(text, truncation=True, max_length=3, **kwargs)
    ours.truncation_side = theirs.truncation_side = "left"
    assert ours(text, truncation=True, max_length=3)["input_ids"] == theirs(text, truncation=True,
                                                                           max_length=3)["input_ids"]


def test_forced_clean_up_is_an_attribute_and_pickles_keep_what_was_set(dirs):
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    ids = ours.encode("Hello , world .")
    assert ours.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output is False
    for tokenizer in (ours, theirs):
        tokenizer.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    assert ours.decode(ids, clean_up_tokenization_spaces=True) == theirs.decode(ids, clean_up_tokenization_spaces=True)
    assert "Hello," in ours.decode(ids, clean_up_tokenization_spaces=True)
    ours.model_input_names = ["input_ids"]
    again = pickle.loads(pickle.dumps(ours))
    assert again.model_input_names == ["input_ids"] and list(again("hi")) == ["input_ids"]
    assert again.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output is True


@pytest.mark.parametrize("names", [["input_ids"], ["input_ids", "token_type_ids", "attention_mask"],
                                   ["token_type_ids"], []])
def test_model_input_names_choose_the_columns(dirs, names):
    """Unasked, the mask and token type ids come when model_input_names lists them, as in Transformers."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    for tokenizer in (ours, theirs):
        tokenizer.model_input_names = names
    for args, kwargs in ((("hi there",), {}), ((["hi", "a b c"],), {}), (("hi", "pair"), {}),
                         (("hi",), {"return_attention_mask": True}), (("hi",), {"return_token_type_ids": False})):
        got, expected = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert list(got) == list(expected) and dict(got) == dict(expected), (names, args, kwargs)


def test_decode_takes_what_transformers_takes_and_refuses_a_str_of_tokens(dirs):
    ours, theirs = AutoTokenizer.from_pretrained(dirs["nemotron"]), transformers.AutoTokenizer.from_pretrained(
        dirs["nemotron"])
    encoding = theirs("hello world")  # Transformers' BatchEncoding, a mapping but no dict
    assert ours.decode(encoding) == theirs.decode(encoding["input_ids"])
    assert ours.decode(bytes([5, 9, 12])) == theirs.decode(bytes([5, 9, 12]))
    with pytest.raises(TypeError):
        theirs.convert_tokens_to_string("<0x41>")
    with pytest.raises(TypeError, match="a list of tokens, not a str"):
        ours.convert_tokens_to_string("<0x41>")
    assert ours.convert_tokens_to_string(["<0x41>"]) == theirs.convert_tokens_to_string(["<0x41>"])
    llama = AutoTokenizer.from_pretrained(dirs["llama_legacy"])
    assert repr(llama).startswith(type(llama).__name__ + "(")
