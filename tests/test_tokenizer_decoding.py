"""Decoding against Transformers 5's tokenizer: decode, convert_ids_to_tokens and convert_tokens_to_string with
skip_special_tokens, no decoder or an empty one, and added tokens named by their normalized form."""
import json
import os
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
