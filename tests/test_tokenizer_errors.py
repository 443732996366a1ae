"""Bad input to the tokenizer: each is a clear exception (Transformers' type where it raises one), never a crash."""
import json
import os
import random
import re
import shutil
import time

import numpy as np
import pytest

from helpers.interrupt import interrupt_child
from helpers.tokenizer_builders import build_all
from helpers.tokenizer_corpus import training_lines

import sentencepiece  # noqa: F401  (the tests train tokenizers with it)
import tokenizers
import transformers

from nemotron_c import _core  # noqa: E402
from nemotron_c.tokenizer.tokenization import AutoTokenizer, FormatError  # noqa: E402


@pytest.fixture(scope="session")
def dirs(tmp_path_factory):
    return build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))


@pytest.fixture(scope="module")
def both(dirs):
    return AutoTokenizer.from_pretrained(dirs["big"]), transformers.AutoTokenizer.from_pretrained(dirs["big"])


def same_exception(call_ours, call_theirs, same_message=False):
    """Transformers' exception type from ours, with a message; with same_message, Transformers' own message (ours
    may add to it), so that no other error of that type on the way passes."""
    with pytest.raises(Exception) as theirs:
        call_theirs()
    with pytest.raises(type(theirs.value)) as ours:
        call_ours()
    assert str(ours.value)
    if same_message:
        assert str(ours.value).startswith(str(theirs.value))
    return ours.value


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "ok \udc80\ud800 ok"])
def test_lone_surrogates(both, text):
    ours, theirs = both
    same_exception(lambda: ours.encode(text), lambda: theirs.encode(text), same_message=True)
    same_exception(lambda: ours([text, "fine"]), lambda: theirs([text, "fine"]), same_message=True)
    same_exception(lambda: ours(text), lambda: theirs(text), same_message=True)
    assert ours.encode("still works") == theirs.encode("still works")


@pytest.mark.parametrize("value", [5, 3.5, b"bytes", None, object()])
def test_non_str_text(both, value):
    ours, theirs = both
    # encode(None): Transformers' message names the types a text may have, ours says no text was given
    same_exception(lambda: ours.encode(value), lambda: theirs.encode(value), same_message=value is not None)
    same_exception(lambda: ours(value), lambda: theirs(value), same_message=True)


@pytest.mark.parametrize("batch", [["a", 5], ["a", None], [["a"]], ["a", b"b"]])
def test_non_str_in_batch(both, batch):
    ours, theirs = both
    same_exception(lambda: ours(batch), lambda: theirs(batch), same_message=True)


@pytest.mark.parametrize("ids", [[-1], [5, -3], [2**32], [2**40, 5], [10**30]])
def test_decode_out_of_range_raises(both, ids):
    ours, theirs = both
    error = same_exception(lambda: ours.decode(ids), lambda: theirs.decode(ids))
    # tokenizers' message does not say which id; ours does
    assert f"token id {next(i for i in ids if not 0 <= i < 2**32)}:" in str(error)


@pytest.mark.parametrize("ids", [-1, [-1], [5, -3], 2**32, [2**40, 5], [10**30]])
def test_convert_ids_to_tokens_out_of_range_raises(both, ids):
    """An id that is no u32 is an OverflowError naming it, as in decode (not None, as if it were unknown)."""
    ours, theirs = both
    error = same_exception(lambda: ours.convert_ids_to_tokens(ids), lambda: theirs.convert_ids_to_tokens(ids))
    bad = ids if isinstance(ids, int) else next(i for i in ids if not 0 <= i < 2**32)
    assert f"token id {bad}:" in str(error)


@pytest.mark.parametrize("ids", [[8000], [5, 9999, 6], [2**31], [2**32 - 1, 100], [len("x") + 7999]])
def test_decode_ids_past_the_vocabulary_are_skipped(both, ids):
    ours, theirs = both
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("ids", [["a"], [1.5], [None], "abc"])
def test_decode_non_integers(both, ids):
    ours, theirs = both
    # a str: tokenizers' "Can't extract `str` to `Vec`", ours names what token ids may be
    same_exception(lambda: ours.decode(ids), lambda: theirs.decode(ids), same_message=ids != "abc")


# ---------------------------------------------------------------- files


def copy_with(dirs, tmp_path, edit=None, text_edit=None):
    out = tmp_path / "tok"
    shutil.copytree(dirs["big"], out)
    path = out / "tokenizer.json"
    if edit is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(json.dumps(data), encoding="utf-8")
    if text_edit is not None:
        path.write_text(text_edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return str(out)


@pytest.mark.parametrize("cut", [0, 1, 100, 0.5, 0.999])
def test_truncated_tokenizer_json(dirs, tmp_path, cut):
    path = copy_with(dirs, tmp_path, text_edit=lambda t: t[: int(cut * len(t)) if isinstance(cut, float) else cut])
    with pytest.raises(ValueError):  # Transformers raises json's JSONDecodeError, a ValueError
        transformers.AutoTokenizer.from_pretrained(path)
    with pytest.raises(FormatError):
        AutoTokenizer.from_pretrained(path)


def test_malformed_config_files(dirs, tmp_path):
    path = copy_with(dirs, tmp_path)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(FormatError, match="tokenizer_config.json"):
        AutoTokenizer.from_pretrained(path)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        f.write("[1, 2]")
    with pytest.raises(FormatError):
        AutoTokenizer.from_pretrained(path)


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, name", [
    (_set(["normalizer"], {"type": "NFKC"}), "NFKC"),
    (_set(["normalizer"], {"type": "Sequence", "normalizers": [{"type": "Lowercase"}]}), "Lowercase"),
    (_set(["pre_tokenizer"], {"type": "ByteLevel", "add_prefix_space": False}), "ByteLevel"),
    (_set(["pre_tokenizer"], {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}]}), "Whitespace"),
    (_set(["decoder"], {"type": "WordPiece", "prefix": "##"}), "WordPiece"),
    (_set(["decoder"], {"type": "Sequence", "decoders": [{"type": "CTC"}]}), "CTC"),
    (_set(["model", "type"], "Unigram"), "Unigram"),
    (_set(["post_processor"], {"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}), "BertProcessing"),
    (_set(["normalizer"], {"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}), "Regex"),
    (_set(["model", "dropout"], 0.1), "dropout"),
    (_set(["model", "continuing_subword_prefix"], "##"), "continuing_subword_prefix"),
])
def test_unsupported_components_are_named(dirs, tmp_path, edit, name):
    path = copy_with(dirs, tmp_path, edit)
    with pytest.raises(ValueError, match=name):
        AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("edit", [
    _set(["model", "merges"], [["no-such", "piece"]]),
    _set(["model", "merges"], ["only-one-part"]),
    _set(["model", "merges"], [[1, 2]]),
    _set(["model", "vocab"], ["a", "b"]),
    _set(["model", "vocab"], {"a": -1}),
    _set(["model", "vocab"], {"a": "zero"}),
    _set(["model", "unk_token"], "<not-in-vocab>"),
    _set(["model"], None),
    _set(["added_tokens"], [{"content": 5, "id": 1}]),
    _set(["added_tokens"], [{"content": "<x>", "id": -4, "special": True}]),
    _set(["pre_tokenizer"], {"type": "Metaspace", "replacement": "ab", "prepend_scheme": "first"}),
    _set(["pre_tokenizer"], {"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}),
    _set(["normalizer"], {"type": "Sequence"}),
    _set(["normalizer"], {"no_type": 1}),
])
def test_malformed_tables(dirs, tmp_path, edit):
    path = copy_with(dirs, tmp_path, edit)
    with pytest.raises(FormatError):
        AutoTokenizer.from_pretrained(path)


def test_merge_of_pieces_whose_join_is_not_a_piece(dirs, tmp_path):
    def edit(data):
        vocab = data["model"]["vocab"]
        a, b = next((a, b) for a in ("q", "x") for b in ("z", "j") if a in vocab and b in vocab and a + b not in vocab)
        data["model"]["merges"].insert(0, [a, b])
    path = copy_with(dirs, tmp_path, edit)
    with pytest.raises(FormatError, match="merge 0"):
        AutoTokenizer.from_pretrained(path)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained(str(tmp_path))


def test_core_rejects_inconsistent_tables():
    steps = []
    ok = dict(pieces=b"ab", piece_offsets=np.array([0, 1, 2], np.int64), piece_ids=np.array([0, 1], np.int32),
              merges=np.zeros((0, 2), np.int32), unk_id=-1, byte_fallback=True, fuse_unk=False, added=[],
              normalizer=steps, pre_tokenizer=[], decoder=[])
    tok = _core.Tokenizer(**ok)
    assert tok.encode("abba") == [0, 1, 1, 0]
    bad = [  # (change, what the error says: this refusal, not another error of the type on the way)
        (dict(piece_offsets=np.array([0, 1, 5], np.int64)), "piece_offsets run past the pieces"),
        (dict(piece_offsets=np.array([0, 2, 1], np.int64)), "piece offsets decrease at 1"),
        (dict(piece_offsets=np.array([0, 1], np.int64)), r"piece_offsets must have shape \(3\), got \(2\)"),
        (dict(piece_ids=np.array([0, -1], np.int32)), "negative id -1 in the vocabulary"),
        (dict(merges=np.array([[0, 1]], np.int32)), "merge 0: the merged piece is not in the vocabulary"),  # "ab"
        (dict(merges=np.array([[0, 7]], np.int32)), "merge 0 names an id that is not a piece"),
        (dict(merges=np.array([0, 1], np.int32)), "merges must be a 2-D array"),  # not (M, 2)
        (dict(piece_ids=np.array([0, 1], np.int64)), "piece_ids must be a 1-D array of format 'i'"),  # wrong dtype
        (dict(unk_id=99), "unknown token id 99 is not in the vocabulary"),
        (dict(pieces=b"\xff\xfe"), "the vocabulary is not valid UTF-8"),
        (dict(added=[("", 3, True, False, False, False, False)]), "added token 3 is empty"),
        (dict(added=[("x", -2, True, False, False, False, False)]), "negative id -2 for an added token"),
        (dict(normalizer=[(99, None, None, 0, 0, 0, 0)]), "normalizer: unknown step type 99"),
        (dict(normalizer=[(_core.STEP_FUSE, None, None, 0, 0, 0, 0)]), "normalizer step 0 is not a normalizer"),
        (dict(pre_tokenizer=[(_core.STEP_REPLACE, "a", "b", 0, 0, 0, 0)]), "the pre-tokenizers must be a Metaspace"),
        (dict(decoder=[(_core.STEP_STRIP, "ab", None, 1, 0, 0, 0)]), "Strip content must be one character"),
        (dict(decoder=[(_core.STEP_REPLACE, "", "b", 0, 0, 0, 0)]), "Replace with an empty pattern"),
        (dict(decoder=[(_core.STEP_METASPACE, "_", None, 0, 0, 9, 0)]), "unknown prepend_scheme 9"),
        (dict(decoder=[("not a step",)]), r"takes at least 7 arguments \(1 given\)"),
    ]
    for change, message in bad:
        with pytest.raises((ValueError, TypeError), match=message):
            _core.Tokenizer(**{**ok, **change})
    with pytest.raises(TypeError, match="text must be a str, not bytes"):
        tok.encode(b"ab")
    with pytest.raises(TypeError, match="ids must be a C-contiguous array"):
        tok.decode([0, 1])  # a list is not an int32 buffer
    assert tok.decode(np.array([0, 1, -5, 99], np.int32)) == "a b"  # no decoder: joined with spaces
    with pytest.raises(RuntimeError, match="Tokenizer is not initialised"):
        _core.Tokenizer.__new__(_core.Tokenizer).encode("x")


# ---------------------------------------------------------------- tokenizer.model


def spm_copy(dirs, tmp_path, name="spm_only"):
    out = tmp_path / "spm"
    shutil.copytree(dirs[name], out)
    return out


@pytest.mark.parametrize("cut", [0, 1, 7, 100, 0.5, 0.99])
def test_truncated_tokenizer_model(dirs, tmp_path, cut):
    out = spm_copy(dirs, tmp_path)
    data = (out / "tokenizer.model").read_bytes()
    (out / "tokenizer.model").write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with pytest.raises(FormatError):
        AutoTokenizer.from_pretrained(str(out))


@pytest.mark.parametrize("data", [b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x0b\x00", b"\x00\x00",
                                  b"\x0a\x02\x0a\x00"])
def test_garbage_tokenizer_model(tmp_path, data):
    (tmp_path / "tokenizer.model").write_bytes(data)
    with pytest.raises(ValueError):  # FormatError, or a well-formed model of a type we do not support
        AutoTokenizer.from_pretrained(str(tmp_path))


def test_tokenizer_model_with_a_charsmap_is_named(dirs):
    # trained with SentencePiece's default nmt_nfkc rule: Transformers adds a Precompiled normalizer
    with pytest.raises(ValueError, match="Precompiled"):
        AutoTokenizer.from_pretrained(dirs["spm:1000"])


def test_unigram_tokenizer_model_is_named(tmp_path):
    import sentencepiece as spm


    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_lines(n=500)), model_prefix=str(tmp_path / "tokenizer"),
                                   vocab_size=300, model_type="unigram", minloglevel=2,
                                   character_coverage=0.98)
    with pytest.raises(ValueError, match="Unigram|model type"):
        AutoTokenizer.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("option", [dict(split_special_tokens=True)])
def test_unsupported_call_options_are_refused(both, option):
    ours, _ = both
    with pytest.raises(NotImplementedError, match=next(iter(option))):
        ours(["a b"], **option)
    assert ours(["a b"], **{k: v for k, v in option.items() if k in ("max_length", "truncation")})["input_ids"]


@pytest.mark.parametrize("where", ["normalizer", "decoder"])
def test_empty_replace_pattern_is_refused_by_name(dirs, tmp_path, where):
    """tokenizers inserts the content between every character for an empty pattern; we refuse it clearly."""
    def edit(data):
        data[where] = {"type": "Replace", "pattern": {"String": ""}, "content": "y"}

    path = copy_with(dirs, tmp_path, edit=edit)
    with pytest.raises(FormatError, match="empty pattern"):
        AutoTokenizer.from_pretrained(path)


def _add_vocab(piece, token_id):
    def edit(data):
        data["model"]["vocab"][piece] = token_id
    return edit


def _add_token(token_id):
    def edit(data):
        data["added_tokens"].append({"id": token_id, "content": "<far>", "special": True, "single_word": False,
                                     "lstrip": False, "rstrip": False, "normalized": False})
    return edit


@pytest.mark.parametrize("edit", [_add_vocab("far-away", 2**31 - 1)])
def test_far_token_ids_are_refused_before_allocating(dirs, tmp_path, edit):
    # the id tables are dense: one id of 2**31 - 1 allocated 16 GB
    path = copy_with(dirs, tmp_path, edit)
    with pytest.raises(FormatError, match="largest token id"):
        AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("token_id", [2**31 - 1, 10**7])
def test_far_added_token_ids_are_not_kept(dirs, tmp_path, token_id):
    """An added token's id as written is not kept (tokenizers gives it the next free one): nothing far to
    allocate, and the same ids as Transformers."""
    path = copy_with(dirs, tmp_path, _add_token(token_id))
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    assert ours.convert_tokens_to_ids("<far>") == theirs.convert_tokens_to_ids("<far>") < 2**16
    assert ours.encode("a <far> b") == theirs.encode("a <far> b")


def test_chained_replace_steps_cannot_grow_text_exponentially(dirs, tmp_path):
    doubling = [{"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}] * 30
    for where, key in (("normalizer", "normalizers"), ("decoder", "decoders")):
        path = copy_with(dirs, tmp_path / where, _set([where], {"type": "Sequence", key: doubling}))
        with pytest.raises(FormatError, match="multiply a text's length"):
            AutoTokenizer.from_pretrained(path)
    # a few steps that each grow it a little still load
    path = copy_with(dirs, tmp_path / "few", _set(["normalizer"], {"type": "Sequence", "normalizers": doubling[:3]}))
    assert AutoTokenizer.from_pretrained(path)("a")["input_ids"]


@pytest.mark.parametrize("edit, name", [
    (_set(["normalizer"], {"type": "Replace", "pattern": {"String": " "}}), "content"),
    (_set(["normalizer"], {"type": "Replace", "pattern": {"String": " "}, "content": 5}), "content"),
    (_set(["decoder"], {"type": "Replace", "pattern": {"String": " "}}), "content"),
])
def test_missing_fields_are_named_not_key_errors(dirs, tmp_path, edit, name):
    path = copy_with(dirs, tmp_path, edit)
    with pytest.raises(FormatError, match=name):
        AutoTokenizer.from_pretrained(path)


def test_padding_side_other_than_left_or_right(dirs, tmp_path):
    path = copy_with(dirs, tmp_path)
    config_path = os.path.join(path, "tokenizer_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["padding_side"] = "middle"
    with open(config_path, "w") as f:
        json.dump(config, f)
    same_exception(lambda: AutoTokenizer.from_pretrained(path), lambda: transformers.AutoTokenizer.from_pretrained(path),
                   same_message=True)
    ours = AutoTokenizer.from_pretrained(dirs["big"])
    theirs = transformers.AutoTokenizer.from_pretrained(dirs["big"])
    same_exception(lambda: ours(["a", "a b c"], padding=True, padding_side="middle"),
                   lambda: theirs(["a", "a b c"], padding=True, padding_side="middle"))


def _with_config(dirs, tmp_path, **values):
    path = copy_with(dirs, tmp_path)
    config_path = os.path.join(path, "tokenizer_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config.update(values)
    with open(config_path, "w") as f:
        json.dump(config, f)
    return path


@pytest.mark.parametrize("value", ["512", 12.5, True, [8], float("nan")])
def test_model_max_length_that_is_not_a_whole_number_is_refused_at_load(dirs, tmp_path, value):
    """Transformers loads these and fails at the first call that truncates ("'>' not supported between instances
    of 'str' and 'int'", "'float' object cannot be interpreted as an integer"); we read "512" as no limit and 12.5
    as 12, and int(nan) raised a bare ValueError."""
    path = _with_config(dirs, tmp_path, model_max_length=value)
    with pytest.raises(FormatError, match="model_max_length must be a whole number"):
        AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("value", [1e30, float("inf"), 512.0, 2**100])
def test_model_max_length_huge_or_whole_floats_load_as_transformers(dirs, tmp_path, value):
    path = _with_config(dirs, tmp_path, model_max_length=value)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    text = "hello there " * 300
    if value != 512.0:  # Transformers fails on a float it must use: "'float' object cannot be interpreted..."
        assert ours(text, truncation=True)["input_ids"] == theirs(text, truncation=True)["input_ids"]
    assert len(ours(text, truncation=True)["input_ids"]) == (512 if value == 512.0 else len(ours(text)["input_ids"]))


@pytest.mark.parametrize("key, value", [("pad_token", 5), ("pad_token", {"no_content": 1}), ("eos_token", ["</s>"]),
                                        ("extra_special_tokens", [1, 2])])
def test_special_tokens_of_the_wrong_type_raise_typeerror_as_transformers(dirs, tmp_path, key, value):
    path = _with_config(dirs, tmp_path, **{key: value})
    error = same_exception(lambda: AutoTokenizer.from_pretrained(path),
                           lambda: transformers.AutoTokenizer.from_pretrained(path))
    assert isinstance(error, FormatError) and "a special token must be a string or an AddedToken dict" in str(error)


INTERRUPTED_ENCODE = """
import sys, time
sys.path.insert(0, {root!r})
from nemotron_c.tokenizer.tokenization import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({path!r})
line = "The quick brown fox, 12 jumps; over the lazy dog. " * 200
texts = [line + str(i) for i in range(5000)]  # 50 MB
expected = tokenizer(texts[:3])["input_ids"]
print("ready", flush=True)
try:
    tokenizer(texts)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
print("usable" if tokenizer(texts[:3])["input_ids"] == expected else "broken", flush=True)
"""


def test_ctrl_c_interrupts_a_long_batch_encode(dirs):
    # the batch runs on the binding's cancellable runner and reads the flag before each text
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    interrupt_child(INTERRUPTED_ENCODE.format(root=root, path=dirs["big"]))


INTERRUPTED_ONE_TEXT = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from nemotron_c.tokenizer.tokenization import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({path!r})
text = "The quick brown fox, 12 jumps; over the lazy dog. " * 3_000_000  # 150 MB in one string
ids = np.tile(np.array(tokenizer(text[:5000])["input_ids"], dtype=np.int32), 40_000)  # 60 M ids
expected = tokenizer("fox, 12 dogs")["input_ids"], tokenizer.decode(ids[:50])
print("ready", flush=True)
try:
    {call}
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
again = tokenizer("fox, 12 dogs")["input_ids"], tokenizer.decode(ids[:50])
print("usable" if again == expected else "broken", flush=True)
"""


@pytest.mark.parametrize("call", ["tokenizer(text)", "tokenizer._core.decode(ids)"])
def test_ctrl_c_interrupts_one_huge_text_or_id_array(dirs, call):
    # one text is encoded (ids decoded) on the cancellable runner once it is long: the flag is read before each
    # word and every 65536 merges (every 65536 ids in each decoder step); before, only between texts. The C decode
    # is called directly: tokenizer.decode spends longer in Python's conversion of the ids, which Ctrl-C stops anyway.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    interrupt_child(INTERRUPTED_ONE_TEXT.format(root=root, path=dirs["big"], call=call))


def _varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def test_tokenizer_model_with_one_long_piece_loads_in_linear_time(dirs, tmp_path):
    # every split of every piece was tried: a piece of 200,000 characters meant 200,000 slices of it (minutes)
    source = dirs["spm:1000"]
    with open(os.path.join(source, "tokenizer.model"), "rb") as f:
        data = f.read()
    text = ("ab" * 100000).encode()
    piece = b"\x0a" + _varint(len(text)) + text + b"\x15" + b"\x00\x00\x80\xbf" + b"\x18\x01"  # piece, score -1, NORMAL
    out = tmp_path / "long"
    out.mkdir()
    (out / "tokenizer.model").write_bytes(data + b"\x0a" + _varint(len(piece)) + piece)
    (out / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert time.perf_counter() - start < 10
    assert tokenizer.convert_tokens_to_ids("ab" * 100000) == len(tokenizer) - 1


def test_split_of_ten_thousand_literals_is_linear_in_the_text(dirs, tmp_path):
    # each position was compared with every literal: 300 KB of text took 21 s (tokenizers' regex: about 60 s)
    rng = random.Random(0)
    literals = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 12)))
                for _ in range(10000)]
    split = {"type": "Split", "pattern": {"Regex": "|".join(re.escape(word) for word in literals)},
             "behavior": "Isolated", "invert": False}
    path = copy_with(dirs, tmp_path, _set(["pre_tokenizer"], split))
    ours = AutoTokenizer.from_pretrained(path)
    theirs = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    text = " ".join(training_lines(n=3000))
    short = text[:3000] + " " + " ".join(literals[:50])
    assert ours.encode(short, add_special_tokens=False) == theirs.encode(short, add_special_tokens=False).ids
    start = time.perf_counter()
    ours.encode(text[:300000], add_special_tokens=False)
    assert time.perf_counter() - start < 5


LENGTH_SETTINGS = {
    "negative max_length": (dict(max_length=-1, truncation=True), "max_length must not be negative, got -1"),
    "negative max_length padded": (dict(max_length=-2, padding="max_length"), "max_length must not be negative"),
    "float max_length": (dict(max_length=2.5, truncation=True), "max_length must be an integer, got 2.5"),
    "negative pad_to_multiple_of": (dict(padding=True, pad_to_multiple_of=-3),
                                    "pad_to_multiple_of must not be negative, got -3"),
}


@pytest.mark.parametrize("case", LENGTH_SETTINGS)
@pytest.mark.parametrize("full", [False, True])
def test_bad_lengths_raise_transformers_type_with_the_setting_named(both, case, full):
    """Transformers raises these as "can't convert negative int to unsigned" (OverflowError) and "'float' object
    cannot be interpreted as an integer"; we returned [] for a negative max_length and let a negative
    pad_to_multiple_of through."""
    ours, theirs = both
    kwargs, message = LENGTH_SETTINGS[case]
    extra = dict(return_offsets_mapping=True) if full else {}
    texts = ["hello there my friend", "and you"]
    for tokenizer in (ours, theirs):
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    error = same_exception(lambda: ours(texts, **kwargs, **extra), lambda: theirs(texts, **kwargs, **extra))
    assert message in str(error)


@pytest.mark.parametrize("kwargs", [dict(padding="max_length", max_length=2**40),
                                    dict(padding="max_length", max_length=2**40, return_offsets_mapping=True),
                                    dict(padding=True, pad_to_multiple_of=2**40)])
def test_padding_beyond_memory_is_refused_before_padding(both, kwargs):
    """tokenizers aborts the whole process ("memory allocation of 4398046511104 bytes failed"); we raised a
    MemoryError without a message after trying."""
    ours, _ = both
    ours.pad_token = ours.pad_token or ours.eos_token
    with pytest.raises(ValueError, match=r"padding 2 rows to 1099511627776 tokens .* more than this machine's"):
        ours(["hello there", "you"], **kwargs)
