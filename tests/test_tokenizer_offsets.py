"""Offsets, words and the char/token/word maps against Transformers 5's tokenizer where tokenizers' matcher and
pre-tokenizer shape them: added tokens whose lstrip/rstrip take in whitespace, a Split pre-tokenizer isolating
SentencePiece's user-defined pieces, unknown characters, a byte token's text written out ("<0x41>")."""
import itertools
import json
import os
import shutil

import numpy as np
import pytest
import transformers
from helpers.tokenizer_builders import build_all, write_tiny_tokenizer

from nemotron_c import AutoTokenizer

transformers.logging.set_verbosity_error()

# every added token kind that strips: special or not, normalized or not, lstrip, rstrip or both
FLAGS = [dict(special=special, normalized=normalized, lstrip=lstrip, rstrip=rstrip)
         for special, normalized, lstrip, rstrip in itertools.product((False, True), repeat=4) if lstrip or rstrip]
STRIPPING = [(f"<t{k}{'L' * f['lstrip']}{'R' * f['rstrip']}{'n' * f['normalized']}{'s' * f['special']}>", f)
             for k, f in enumerate(FLAGS)]
# Unicode White_Space (what lstrip/rstrip take in: U+3000, U+00A0, U+0085, U+2009 too), and characters Python's
# str.isspace() or a reader may take for spaces but tokenizers does not (U+200B, U+001C, U+180E)
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\xa0", "\x85", "\u2009", "\u200b", "\x1c", "\u180e"]
ALPHABET = WHITESPACE + ["\u2581", "a", "b", "the", "x", "\u00e9", "\u4e2d", "\U0001f600", "<extra_id_0>",
                         "<extra_id_1>", "<s>", "<0x41>"] + [content for content, _ in STRIPPING]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))


def random_texts(alphabet, n, seed, size=14):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(alphabet, size=int(rng.integers(0, size)))) for _ in range(n)]


def with_stripping_tokens(source, out):
    """A copy of the tokenizer folder source with STRIPPING's added tokens: in tokenizer.json, or (tokenizer.model
    alone) in tokenizer_config.json's added_tokens_decoder."""
    shutil.copytree(source, out)
    json_path, config_path = os.path.join(out, "tokenizer.json"), os.path.join(out, "tokenizer_config.json")
    if os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        next_id = max(max(data["model"]["vocab"].values()), *(a["id"] for a in data["added_tokens"])) + 1
        data["added_tokens"] += [{"id": next_id + k, "content": content, "single_word": False, **flags}
                                 for k, (content, flags) in enumerate(STRIPPING)]
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    else:
        config = {}
        if os.path.exists(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
        config["added_tokens_decoder"] = {str(10000 + k): {"content": content, "single_word": False, **flags}
                                          for k, (content, flags) in enumerate(STRIPPING)}
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(config, f)
    return str(out)


def assert_same_offsets(ours, theirs, texts, pairs=None, maps=True):
    """ids, tokens, offsets and words of each text (and pair) as Transformers gives them, and (maps) the maps
    between characters, tokens and words at every index."""
    kwargs = dict(return_offsets_mapping=True)
    a, b = ours(texts, pairs, **kwargs), theirs(texts, pairs, **kwargs)
    for i, text in enumerate(texts):
        assert (text, a["input_ids"][i], a.tokens(i)) == (text, b["input_ids"][i], b.tokens(i))
        assert (text, a["offset_mapping"][i], a.word_ids(i)) == (text, b["offset_mapping"][i], b.word_ids(i))
        if not maps:
            continue
        n, words = len(b.tokens(i)), [w for w in b.word_ids(i) if w is not None]
        assert [a.token_to_chars(i, k) for k in range(n + 1)] == [b.token_to_chars(i, k) for k in range(n + 1)]
        assert [a.token_to_word(i, k) for k in range(n)] == [b.token_to_word(i, k) for k in range(n)]
        for sequence in (0, 1) if pairs else (0,):
            length = len(text if sequence == 0 else pairs[i]) + 1
            assert [a.char_to_token(i, c, sequence) for c in range(length)] == \
                [b.char_to_token(i, c, sequence) for c in range(length)], text
            assert [a.char_to_word(i, c, sequence) for c in range(length)] == \
                [b.char_to_word(i, c, sequence) for c in range(length)], text
            assert [a.word_to_tokens(i, w, sequence) for w in range(max(words, default=0) + 2)] == \
                [b.word_to_tokens(i, w, sequence) for w in range(max(words, default=0) + 2)], text
            # (Transformers raises a TypeError for a word with no tokens in the sequence)
            own = sorted({w for w, s in zip(b.word_ids(i), b.sequence_ids(i)) if s == sequence and w is not None})
            assert [a.word_to_chars(i, w, sequence) for w in own] == [b.word_to_chars(i, w, sequence) for w in own]


STRIPPING_BASES = ["legacy", "nemotron", "metaspace_split", "plain_strings", "spm_only", "spm_only_no_prefix",
                   "spm_only_llama"]


@pytest.mark.parametrize("base", STRIPPING_BASES)
def test_offsets_of_added_tokens_that_strip_whitespace(dirs, tmp_path, base):
    """An added token with lstrip/rstrip spans the whitespace it took in (' <x>\\t' is (1, 6)) and the text
    around it starts and ends where that whitespace does, as tokenizers gives it: special or not, matched in
    the raw or the normalized text (where spaces may already be '▁'), at the start, the end, side by side, with
    tabs, newlines, runs of spaces and Unicode whitespace. With tokenizer.model alone, added_tokens_decoder's
    tokens are matched in the raw text (Transformers' conversion makes them normalized=False)."""
    path = with_stripping_tokens(dirs[base], tmp_path / base)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = [f"{before}{token}{after}" for token, _ in STRIPPING[::3]
             for before in ("", "a", "a ", "a\t\n", " \u3000", "x\u200b")
             for after in ("", "b", " b", "  \n b", "\xa0", "\x85y")]
    texts += [f"{a}{b}" for (a, _), (b, _) in itertools.product(STRIPPING[:6], STRIPPING[6:])]
    texts += [f"{t} {t}  {t}\t{t}" for t, _ in STRIPPING]
    texts += random_texts(ALPHABET, 300, seed=len(base))
    assert_same_offsets(ours, theirs, texts)
    assert_same_offsets(ours, theirs, texts[:60], texts[60:120])


@pytest.mark.parametrize("character", WHITESPACE)
def test_what_lstrip_and_rstrip_take_in(dirs, character):
    """lstrip and rstrip take in Unicode's White_Space characters (Rust's char::is_whitespace) on either side,
    not U+200B, U+001C or U+180E (str.isspace() says U+001C is one)."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs["legacy"]), transformers.AutoTokenizer.from_pretrained(dirs["legacy"])
    texts = [f"x{character}<extra_id_0>{character}y", f"x{character}<tool>{character}y", f"{character * 2}<tool>",
             f"<extra_id_0>{character * 2}", f"<extra_id_0>{character}<extra_id_0>{character}<tool>"]
    assert_same_offsets(ours, theirs, texts)
    taken = theirs(texts[0]).tokens()[-2] == f"{character}<extra_id_0>{character}"
    assert taken == (character.strip() == "" and character not in "\x1c")


TINY_VOCAB = {"<unk>": 0, " ": 1, "y": 2, "<": 3, "x": 4, ">": 5, "\u00a0": 6, "a": 7, "b": 8, "\t": 9}


@pytest.mark.parametrize("added", [
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": " y", "special": False}],
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": "  y", "special": False}],
    [{"id": 10, "content": "y ", "special": False}, {"id": 11, "content": "<x>", "lstrip": True}],
    [{"id": 10, "content": "<x>", "rstrip": True, "lstrip": True}, {"id": 11, "content": " y ", "rstrip": True}],
    [{"id": 10, "content": "<x>", "rstrip": True, "lstrip": True}, {"id": 11, "content": " ", "rstrip": True}],
    [{"id": 10, "content": "<x>", "rstrip": True, "normalized": True},
     {"id": 11, "content": " y", "special": False, "normalized": True}],
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": "\ty", "lstrip": True, "rstrip": True}],
    [{"id": 10, "content": "\ty", "lstrip": True, "rstrip": True, "normalized": True}],
], ids=["rstrip-then-space", "rstrip-then-two-spaces", "lstrip-after", "both", "space-token", "normalized",
        "lstrip-inside", "lstrip-inside-normalized"])
def test_offsets_of_a_token_inside_stripped_whitespace(tmp_path, added):
    """A token that begins inside the whitespace an rstrip took in ('<x> y' with ' y' added: '<x> ' is (0, 4),
    ' y' (3, 5)) keeps its own span, overlapping, as tokenizers gives it; with lstrip it starts where that
    whitespace ends ('\\ty' after '<x>\\t' is 'y'), in its span and its name."""
    path = write_tiny_tokenizer(tmp_path, TINY_VOCAB, added=added)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = ["<x> y", "<x>  y", "<x>   y", "<x> y y", "a<x>   yb", "<x>\u00a0 y", "<x> <x> y", "y <x>", "y  <x>",
             "ay <x>", " y <x> y ", "<x>", " y", "y \t <x> \t", "a\ty\tya", "<x>\ty\ty", "<x> \t\ty"]
    texts += random_texts([" ", "\t", "y", "a", "<x>", " y", "\u00a0", "\ty"], 300, seed=3, size=10)
    assert_same_offsets(ours, theirs, texts)
    assert [ours.tokenize(text) for text in texts] == [theirs.tokenize(text) for text in texts]


@pytest.mark.parametrize("added", [
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": "\t"}],
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": " "}],
    [{"id": 10, "content": "<x>", "rstrip": True}, {"id": 11, "content": "\u3000", "lstrip": True}],
    [{"id": 10, "content": "<x>", "rstrip": True, "lstrip": True}, {"id": 11, "content": "\n", "rstrip": True},
     {"id": 12, "content": "\t", "lstrip": True, "rstrip": True}],
], ids=["tab", "space", "lstrip-ideographic-space", "both"])
def test_whitespace_tokens_inside_stripped_whitespace(tmp_path, added):
    """A whitespace token inside the whitespace an rstrip took in: tokenizers encodes what is left of that
    whitespace after it ('<x> \t y' is <x>, \t, then ' y'), and an lstrip one that nothing is left of past that
    whitespace is no token at all ('<x>\u3000' is <x>). Texts where tokenizers panics ('AddedVocabulary bad
    split') must still encode here."""
    path = write_tiny_tokenizer(tmp_path, TINY_VOCAB, added=added)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = ["<x> \t y", "<x>\u3000", "<x> \u3000 y", "<x>\t\t", "<x>\n \t", "a <x> \n\ty"]
    texts += random_texts([" ", "  ", "\t", "\n", "\u3000", "y", "a", "<x>"], 400, seed=5, size=10)
    compared = []
    for text in texts:
        try:
            theirs(text)
        except BaseException:  # pyo3's PanicException is no Exception
            ours(text, return_offsets_mapping=True)
            continue
        compared.append(text)
    assert len(compared) > 300
    assert_same_offsets(ours, theirs, compared)


SPLIT_ALPHABET = [" ", "  ", "\u2581", "a", "b", "th", "e", "the", "\n", "\t", "<s>", "</s>", "<extra_id_0>",
                  "<extra_id_1>", "<", ">", "\u00e9", "e\u0301", "\u4e2d", "\U0001f600", "\u200d", "1", ".",
                  "<0x41>", "<0x3C>", "<0xZZ>", "\r\n", "\u3000", "\u202e", "\U000e0041", "\x00"]


@pytest.mark.parametrize("name", ["spm_only", "spm_only_no_extra_ws", "spm_only_no_prefix"])
def test_word_ids_with_a_split_pre_tokenizer(dirs, name):
    """tokenizer.model alone, converted by Transformers 5 (TokenizersBackend): a Sequence of Metaspace and a Split
    isolating the user-defined pieces (Split alone without the dummy prefix). Each isolated piece and each run
    between them is a word; a user-defined piece such as '<0x41>' written out in the text is spelled, not a
    byte."""
    ours, theirs = AutoTokenizer.from_pretrained(dirs[name]), transformers.AutoTokenizer.from_pretrained(dirs[name])
    pre_tokenizer = json.loads(theirs.backend_tokenizer.to_str())["pre_tokenizer"]
    assert "Split" in json.dumps(pre_tokenizer)
    texts = ["a<extra_id_0>b", "<extra_id_0><extra_id_1> x", " <extra_id_1> ", "the<0x41><extra_id_0>", "<0x41>"]
    texts += random_texts(SPLIT_ALPHABET, 400, seed=11, size=20)
    assert_same_offsets(ours, theirs, texts)
    assert_same_offsets(ours, theirs, texts[:40], texts[40:80])


METASPACE_SPLIT = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
METASPACE = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
SPLIT = {"type": "Split", "pattern": {"Regex": "<ab>|<a>|\u2581b"}, "behavior": "Isolated", "invert": False}


@pytest.mark.parametrize("pre_tokenizer", [
    SPLIT, {"type": "Split", "pattern": {"String": "<a>"}, "behavior": "Isolated", "invert": False},
    {"type": "Sequence", "pretokenizers": [METASPACE, SPLIT]},
    {"type": "Sequence", "pretokenizers": [METASPACE_SPLIT, SPLIT]},
], ids=["split", "split-string", "metaspace-split", "metaspace-splitting-split"])
def test_word_ids_with_split_pre_tokenizers_in_tokenizer_json(tmp_path, pre_tokenizer):
    """Split pre-tokenizers as tokenizer.json writes them, alone or after Metaspace (which may split too): the
    isolated strings (the longest where several begin, '<ab>' before '<a>'), also one with a '▁' that Metaspace
    put there, are words of their own."""
    vocab = {"<unk>": 0, "<": 1, "a": 2, "b": 3, ">": 4, " ": 5, "\u2581": 6, "<a>": 7, "<ab>": 8, "ab": 9,
             "\u2581b": 10, "\u2581a": 11}
    merges = [("<", "a"), ("<a", ">"), ("a", "b"), ("<a", "b>"), ("b", ">"), ("\u2581", "b"), ("\u2581", "a")]
    vocab.update({"<a": 12, "b>": 13})
    path = write_tiny_tokenizer(tmp_path, vocab, merges, pre_tokenizer=pre_tokenizer)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = random_texts(["<", "a", "b", ">", " ", "<a>", "<ab>", "ab", "\u2581", "  "], 400, seed=5)
    assert_same_offsets(ours, theirs, texts)


@pytest.mark.parametrize("fuse_unk", [False, True])
@pytest.mark.parametrize("pre_tokenizer", [None, METASPACE, METASPACE_SPLIT], ids=["none", "metaspace", "splitting"])
def test_offsets_of_unknown_characters(tmp_path, fuse_unk, pre_tokenizer):
    """A BPE model without byte_fallback gives <unk> for a character it has no token for: its span is that
    character's (with fuse_unk, the run of them in the word's)."""
    vocab = {"<unk>": 0, " ": 1, "y": 2, "<": 3, "x": 4, ">": 5, "\u2581a": 6, "a": 7, "b": 8, "ab": 9, "\u2581": 10}
    path = write_tiny_tokenizer(tmp_path, vocab, [("a", "b"), ("\u2581", "a")], pre_tokenizer=pre_tokenizer,
                                added=[{"id": 11, "content": "<x>", "lstrip": True}])
    with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
        data = json.load(f)
    data["model"]["fuse_unk"] = fuse_unk
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = ["a\u4e2db", "a\u4e2d\u6587b", "\u4e2d", "ab\U0001f600 \u4e2dx", "a\u0301b"]
    texts += random_texts(["a", "b", "x", " ", "\u4e2d", "\u6587", "\U0001f600", "\u0301", "<x>", "y", "\u2581"], 300,
                          seed=2, size=10)
    assert_same_offsets(ours, theirs, texts)


@pytest.mark.parametrize("pattern", ["<a|<ab", "<ab|<a", "a|ab", "ab|a", "b|<a|<ab|a"])
def test_split_alternation_takes_the_first_string_listed(tmp_path, pattern):
    """A Split regex of strings isolates, where several begin, the first listed (tokenizers' regex: "a|ab" never
    isolates "ab"), not the longest: ids, offsets and words."""
    vocab = {"<unk>": 0, "<": 1, "a": 2, "b": 3, ">": 4, " ": 5, "ab": 6, "<a": 7, "<ab": 8}
    split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
    path = write_tiny_tokenizer(tmp_path, vocab, [("a", "b"), ("<", "a"), ("<a", "b")], pre_tokenizer=split)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    texts = ["<ab>ab"] + random_texts(["<", "a", "b", ">", " ", "ab", "<a", "<ab"], 200, seed=9, size=10)
    assert_same_offsets(ours, theirs, texts)


SINGLE_WORD = [(f"w{k}x", dict(flags, single_word=True)) for k, flags in enumerate(
    dict(special=special, normalized=normalized, lstrip=lstrip, rstrip=rstrip)
    for special, normalized, lstrip, rstrip in itertools.product((False, True), repeat=4))]
# characters beside a single_word token: regex \w (letters, marks, digits, '_', ZWJ, circled letters) or not
NEIGHBOURS = ["", " ", "a", "_", "1", "\u00e9", "e\u0301", "\u00b2", "\u2167", "\u24b6", "\u203f", "\u200d", "\u00a0",
              "\u3000", "\U0001f600", "\u4e2d", "-", ".", "\n", "\u0663", "\u0915\u094d", "\U0001f130"]


@pytest.mark.parametrize("base", ["legacy", "nemotron", "metaspace_split"])
def test_offsets_of_single_word_tokens(dirs, tmp_path, base):
    """single_word tokens (with lstrip/rstrip, normalized or not) are placed where the matcher took them, past the
    occurrences it turned down for a word character beside them, also when a long text turns down thousands."""
    source = dirs[base]
    path = tmp_path / base
    shutil.copytree(source, path)
    with open(path / "tokenizer.json", encoding="utf-8") as f:
        data = json.load(f)
    next_id = max(max(data["model"]["vocab"].values()), *(a["id"] for a in data["added_tokens"])) + 1
    data["added_tokens"] += [{"id": next_id + k, "content": content, **flags}
                             for k, (content, flags) in enumerate(SINGLE_WORD)]
    with open(path / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    ours, theirs = AutoTokenizer.from_pretrained(str(path)), transformers.AutoTokenizer.from_pretrained(str(path))
    texts = [f"{a}{token}{b}" for token, _ in SINGLE_WORD[::5] for a in NEIGHBOURS for b in NEIGHBOURS]
    texts += [("a" + token) * 1500 + " " + token for token, _ in SINGLE_WORD[::5]]
    assert_same_offsets(ours, theirs, texts, maps=False)
    texts = random_texts([" ", "\t", "\u3000", "a", "w", "x", "_", "-", "\u00e9", "\u4e2d"] +
                         [content for content, _ in SINGLE_WORD], 300, seed=4, size=10)
    assert_same_offsets(ours, theirs, texts)


@pytest.mark.parametrize("base", ["legacy", "nemotron", "spm_only"])
def test_pre_split_words_with_stripping_tokens(dirs, tmp_path, base):
    """is_split_into_words=True: each word encoded on its own, an lstrip/rstrip token in it named by the text it
    took in (tokens()), offsets within the word, pairs and windows too."""
    path = with_stripping_tokens(dirs[base], tmp_path / base)
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    rng = np.random.default_rng(8)
    for _ in range(60):
        words, pair = ([str(w) for w in random_texts(ALPHABET, int(rng.integers(1, 6)), int(rng.integers(1 << 30)),
                                                      size=4)] for _ in range(2))
        for call in (dict(text=words), dict(text=[words, pair]),
                     dict(text=words, text_pair=pair, truncation=True, max_length=6, stride=1,
                          return_overflowing_tokens=True)):
            a = ours(**call, is_split_into_words=True, return_offsets_mapping=True)
            b = theirs(**call, is_split_into_words=True, return_offsets_mapping=True)
            assert (call, dict(a)) == (call, dict(b))
            rows = range(len(b.encodings))
            assert [(a.tokens(i), a.word_ids(i)) for i in rows] == [(b.tokens(i), b.word_ids(i)) for i in rows]


def test_assistant_masks_with_stripping_tokens(dirs, tmp_path):
    """apply_chat_template's assistant masks come from the offsets: with lstrip/rstrip tokens in the template and
    the messages they are Transformers'."""
    path = with_stripping_tokens(dirs["legacy"], tmp_path / "legacy")
    ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    template = ("{% for m in messages %}{% if m['role'] == 'assistant' %}<t2LR> {% generation %}{{ m['content'] }}"
                "{% endgeneration %} <t7Ls>\n{% else %}{{ '<' + m['role'] + '> ' + m['content'] + '\\n' }}{% endif %}"
                "{% endfor %}")
    conversation = [{"role": "user", "content": "Hi <t0R> there"}, {"role": "assistant", "content": " Hello\t<t1L> x "},
                    {"role": "user", "content": "more"}, {"role": "assistant", "content": "<t5LRn> y"}]
    kwargs = dict(chat_template=template, return_assistant_tokens_mask=True, return_dict=True)
    a, b = ours.apply_chat_template(conversation, **kwargs), theirs.apply_chat_template(conversation, **kwargs)
    assert (a["input_ids"], a["assistant_masks"]) == (b["input_ids"], b["assistant_masks"])


# added tokens whose content is a piece of the vocabulary ("▁", "<0x41>", "\u200d"): they share its id
SHARED = ["\x00", "\u2581", "\u2581x", "e\u0301", "\u0301", "\U0001f468\u200d\U0001f469", "\u200d", "ab", "a b", "\r\n",
          "<0x41>", "\ufffd", "\u05d0\u05d1"]


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("base", ["legacy", "nemotron", "metaspace_split"])
def test_added_tokens_that_share_an_id_with_a_piece(dirs, tmp_path, base, normalized):
    """An added token with a vocabulary piece's content ('▁') has that piece's id: where BPE gives the piece, it
    is placed as BPE's and named as the model names it, where the matcher took the added token, as the added token
    (normalized under a Prepend: '▁▁'), as tokenizers does; also combining marks, ZWJ sequences, NUL, CR LF."""
    path = tmp_path / base
    shutil.copytree(dirs[base], path)
    with open(path / "tokenizer.json", encoding="utf-8") as f:
        data = json.load(f)
    next_id = max(max(data["model"]["vocab"].values()), *(a["id"] for a in data["added_tokens"])) + 1
    data["added_tokens"] += [{"id": next_id + k, "content": content, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": normalized, "special": False}
                             for k, content in enumerate(SHARED)]
    with open(path / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    ours, theirs = AutoTokenizer.from_pretrained(str(path)), transformers.AutoTokenizer.from_pretrained(str(path))
    texts = ["\u4e2d\u05d0<0x41>\u4e2d    \u2581", "\u05d0\u05d1\U0001f468\u200d\U0001f469ab "]
    texts += random_texts(SHARED + [" ", "a", "b", "x", "e", "\u05d0", "\u4e2d", "  "], 300, seed=4, size=10)
    assert_same_offsets(ours, theirs, texts)
    assert [ours.tokenize(text) for text in texts] == [theirs.tokenize(text) for text in texts]
