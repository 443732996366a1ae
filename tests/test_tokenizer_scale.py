"""The tokenizer at Nemotron's scale against Transformers': a 256,000-piece SentencePiece BPE vocabulary with 4,000
control and user-defined pieces, a tokenizer_config.json with an added_tokens_decoder entry for each (special and
not, varied lstrip/rstrip/single_word/normalized), in a Nemotron checkpoint folder (built once per session)."""
import json
import os
import random

import numpy as np
import pytest

from helpers.tokenizer_builders import build_large
from helpers.tokenizer_corpus import make_test_corpus

import transformers

from nemotron_c.tokenizer.tokenization import AutoTokenizer

VOCAB_SIZE = 256000

# one of each Unicode class the pipeline must carry unchanged (or byte-fall back) the way tokenizers does
UNICODE_CLASSES = [
    "漢字とかな、한국어 그리고 中文混合", "😀👍🏽👨‍👩‍👧‍👦🏳️‍🌈🇯🇵", "e\u0301 a\u0308\u0323 \u0915\u094d\u0937 Z\u0335\u0336",
    "مرحبا بالعالم שלום \u202eabc\u202c \u200fRTL\u200e", "zero\u200bwidth\u200cnon\u200djoiner\ufeff\u2060word",
    "ctrl\x01\x02\x07\x08\x1b[0m\x7f\x85\u2028\u2029end", "\x00\x00 \t\x0b\x0c\r\n", "\ue000\U000f0000\U0010fffd",
    "ℌ𝔢𝔩𝔩𝔬 ＦＵＬＬ　ＷＩＤＴＨ ﬁ ﬀ Ⅻ ①", "\ud7ff\ue000\uffff\U00010000",
]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return build_large(str(tmp_path_factory.getbasetemp() / "large_tokenizer"))


@pytest.fixture(scope="module")
def pair(path):
    return AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def texts(path):
    """Prose, code, Unicode classes and added tokens (a sample of the 4,000) inside text."""
    with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as f:
        decoder = json.load(f)["added_tokens_decoder"]
    contents = sorted(v["content"] for v in decoder.values())
    specials = tuple(random.Random(3).sample(contents, 60)) + ("<s>", "</s>", "<unk>", "<pad>")
    return UNICODE_CLASSES + make_test_corpus(seed=5, n=1500, specials=specials)


def test_the_folder_is_at_nemotron_scale(path, pair):
    ours, theirs = pair
    with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as f:
        decoder = json.load(f)["added_tokens_decoder"]
    assert len(decoder) >= 4000
    flags = [(v["special"], v["lstrip"], v["rstrip"], v["single_word"], v["normalized"]) for v in decoder.values()]
    assert all(any(f[k] for f in flags) and not all(f[k] for f in flags) for k in range(5))
    assert len(theirs) == len(ours) == VOCAB_SIZE
    assert type(theirs).__name__ == "TokenizersBackend"


def test_vocabulary_and_special_tokens_match(pair):
    ours, theirs = pair
    assert ours.get_vocab() == theirs.get_vocab()
    for attr in ("padding_side", "special_tokens_map", "all_special_tokens", "all_special_ids", "bos_token_id",
                 "eos_token_id", "pad_token_id", "unk_token_id", "vocab_size"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr


def test_ids_tokens_and_decode_match(pair, texts):
    ours, theirs = pair
    ids = theirs(texts)["input_ids"]
    got = ours(texts)["input_ids"]
    bad = [i for i in range(len(texts)) if got[i] != ids[i]]
    assert not bad, [(texts[i][:50], got[i][:10], ids[i][:10]) for i in bad[:3]]
    for text in texts[::20]:
        assert ours.tokenize(text) == theirs.tokenize(text), text
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)


def test_random_ids_decode_like_transformers(pair):
    ours, theirs = pair
    rng = np.random.default_rng(1)
    for _ in range(200):
        ids = rng.integers(0, VOCAB_SIZE, size=int(rng.integers(1, 30))).tolist()
        ids += rng.integers(VOCAB_SIZE - 4000, VOCAB_SIZE, size=3).tolist()  # the added tokens
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)


@pytest.mark.parametrize("call", [dict(padding=True, return_tensors="np"),
                                  dict(padding="max_length", max_length=32, truncation=True, return_tensors="np")])
def test_padded_batches_match(pair, texts, call):
    ours, theirs = pair
    batch = [t for t in texts if len(t) < 200][:48]
    a, b = ours(batch, **call), theirs(batch, **call)
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(a[key], b[key])
