"""Streamers (Transformers' put/end protocol, TextStreamer, TextIteratorStreamer) and stop_strings, against
Transformers with a byte-level tokenizer over the tiny checkpoints' 96 ids."""
import os
import threading

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.generation_reference import MASK, PROMPTS, hf_generate, models, our_generate  # noqa: F401
from helpers.tokenizer_builders import byte_level_tokenizer

# 96 tokens: four specials, the letters, a space, then pieces of words (byte-level: 'Ġ' is a space)
PIECES = ["st", "op", "Ġthe", "ing", "er", "Ġst", "ed", "Ġa", "on", "Ġto", "es", "en", "Ġand", "at", "or", "Ġof",
          "\n", "Ċ", ",", ".", "!", "Ġis", "in", "re", "it", "Ġin", "ar", "al", "an", "le", "ro", "ou", "Ġw", "Ġc",
          "Ġs", "Ġb", "Ġp", "Ġf", "Ġm", "Ġd", "Ġh", "Ġl", "Ġn", "Ġe", "Ġo", "Ġr", "Ġg", "Ġu", "Ġy", "Ġv", "Ġk",
          "Ġj", "Ġq", "Ġx", "Ġz", "ll", "ch", "sh", "th", "om", "ic", "el", "ve", "ly", "ent"]
VOCAB = ["<unk>", "<s>", "</s>", "<pad>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"] + PIECES


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_tokenizer(VOCAB)


class Recorder:
    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(("put", np.asarray(value).tolist()))

    def end(self):
        self.calls.append(("end", None))


@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=6), dict(max_new_tokens=8, eos_token_id=40, pad_token_id=0)])
def test_streamer_protocol_as_transformers(models, kwargs):
    ours, theirs = models
    expected, got = Recorder(), Recorder()
    hf_generate(theirs, PROMPTS, MASK, streamer=expected, **kwargs)
    our_generate(ours, PROMPTS, MASK, streamer=got, **kwargs)
    assert got.calls == expected.calls
    assert got.calls[0] == ("put", PROMPTS.tolist()) and got.calls[-1] == ("end", None)


def captured(capsys, fn):
    fn()
    return capsys.readouterr().out


@pytest.mark.parametrize("skip_prompt", [False, True])
def test_text_streamer_prints_as_transformers(models, tokenizer, capsys, skip_prompt):
    ours, theirs = models
    prompt = PROMPTS[1:2]
    expected = captured(capsys, lambda: hf_generate(
        theirs, prompt, None, max_new_tokens=12, streamer=transformers.TextStreamer(tokenizer, skip_prompt)))
    got = captured(capsys, lambda: ours.generate(
        prompt, max_new_tokens=12, streamer=nemotron_c.TextStreamer(tokenizer, skip_prompt)))
    assert got == expected and got.strip()
    # and our streamer inside Transformers' generate
    assert captured(capsys, lambda: hf_generate(theirs, prompt, None, max_new_tokens=12,
                                                streamer=nemotron_c.TextStreamer(tokenizer, skip_prompt))) == expected


def test_text_iterator_streamer_in_a_thread(models, tokenizer):
    ours, _ = models
    streamer = nemotron_c.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=30)
    worker = threading.Thread(target=ours.generate, args=(PROMPTS[1:2],),
                              kwargs=dict(max_new_tokens=10, streamer=streamer))
    worker.start()
    text = "".join(streamer)
    worker.join()
    new = ours.generate(PROMPTS[1:2], max_new_tokens=10)[0, PROMPTS.shape[1]:]
    assert text == tokenizer.decode(new, skip_special_tokens=True)


def stop_string_for(tokenizer, tokens, step):
    """A string spanning the boundary between new tokens step-1 and step, which greedy search will produce."""
    before = tokenizer.decode(tokens[:step], skip_special_tokens=False)
    through = tokenizer.decode(tokens[:step + 1], skip_special_tokens=False)
    return through[max(0, len(before) - 2):len(before) + 1]


def test_stop_strings_as_transformers(models, tokenizer):
    ours, theirs = models
    free = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=12)
    tokens = free[1, PROMPTS.shape[1]:].tolist()
    stop = stop_string_for(tokenizer, tokens, 4)
    for stops in ([stop], stop, ["zzzz", stop]):
        kwargs = dict(max_new_tokens=12, stop_strings=stops, tokenizer=tokenizer)
        expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
        got = our_generate(ours, PROMPTS, MASK, **kwargs)
        np.testing.assert_array_equal(got, expected)
    single = our_generate(ours, PROMPTS[1:2], None, max_new_tokens=12, stop_strings=stop, tokenizer=tokenizer)
    np.testing.assert_array_equal(single, hf_generate(theirs, PROMPTS[1:2], None, max_new_tokens=12,
                                                      stop_strings=stop, tokenizer=tokenizer))
    assert single.shape[1] < PROMPTS.shape[1] + 12


@pytest.mark.parametrize("stops", [5, 2.5, object()])
def test_stop_strings_that_are_no_strings_are_named(models, tokenizer, stops):
    """Transformers' StopStringCriteria fails in tuple(), with "'int' object is not iterable"."""
    with pytest.raises(TypeError, match="stop_strings must be a string or a list of strings, not "):
        our_generate(models[0], PROMPTS, MASK, max_new_tokens=2, stop_strings=stops, tokenizer=tokenizer)


def test_stop_strings_of_characters_spread_over_byte_tokens(models):
    """A byte-level tokenizer writes "€" as three tokens: "€€" spans six, more than its two characters, and the
    token that completes the second "€" turns the U+FFFD its first two bytes decoded to into "€"."""
    from tokenizers import Tokenizer, decoders, models as token_models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ours, theirs = models
    byte_chars = bytes_to_unicode()
    euro = list("€".encode())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in euro + list("\ufffd".encode()) + list(range(ord("a"), ord("z") + 1)) + list(range(256)):
        if len(vocab) < 96:
            vocab.setdefault(byte_chars[b], len(vocab))
    core = Tokenizer(token_models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    e1, e2, e3 = (vocab[byte_chars[b]] for b in euro)
    # "€" and two bytes of another; the bias makes the first new token the third byte, completing "€€"
    prompt = np.array([[5, e1, e2, e3, e1, e2]])
    kwargs = dict(max_new_tokens=5, stop_strings=["€€"], tokenizer=tokenizer, sequence_bias={(e3,): 50.0})
    expected = hf_generate(theirs, prompt, None, **kwargs)
    got = our_generate(ours, prompt, None, **kwargs)
    assert got.shape[1] == prompt.shape[1] + 1
    np.testing.assert_array_equal(got, expected)
    # the bytes are matched, as Transformers does: the first two bytes of "€" are no U+FFFD there
    from transformers.generation.stopping_criteria import StopStringCriteria

    from nemotron_c.generation.utils import StopStrings

    for stop in ["\ufffd", "€"]:
        replacement = [vocab[byte_chars[b]] for b in "\ufffd".encode()]
        for row in ([5, e1], [5, e1, e2], [5, e1, e2, e3], [e2, 5], [5] + replacement):
            ids = np.array([row])
            assert (bool(StopStrings(tokenizer, [stop])(ids, len(row), 0)[0])
                    == bool(StopStringCriteria(tokenizer, [stop])(torch.as_tensor(ids), None)[0])), (stop, row)


def byte_fallback_tokenizer(directory):
    """A SentencePiece-style tokenizer.json over 96 ids with byte-fallback tokens for the bytes of "€", "é" and
    U+FFFD and a lone continuation byte: Transformers' and ours, loaded from the same files."""
    import json

    from helpers.tokenizer_builders import write_tiny_tokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in (0xE2, 0x82, 0xAC, 0xEF, 0xBF, 0xBD, 0x80, 0xC3, 0xA9):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token in ["▁", "▁a", "é", "€", "ab"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]:
        vocab[token] = len(vocab)
    vocab.update({f"x{i}": i for i in range(len(vocab), 96)})
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    write_tiny_tokenizer(directory, vocab, decoder=decoder, added=[{"id": i, "content": t} for t, i in vocab.items()
                                                                  if i < 3],
                         pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                                        "split": False})
    path = os.path.join(directory, "tokenizer.json")
    with open(path) as f:
        data = json.load(f)
    data["model"]["byte_fallback"] = True
    with open(path, "w") as f:
        json.dump(data, f)
    return (vocab, transformers.AutoTokenizer.from_pretrained(directory),
            nemotron_c.AutoTokenizer.from_pretrained(directory))


def test_stop_strings_over_byte_fallback_tokens_match_bytes(models, tmp_path):
    """As Transformers, the strings' UTF-8 bytes are matched in the tokens' bytes (a byte token's byte): an
    incomplete or invalid byte sequence, which decodes to U+FFFD, matches no "\ufffd" (the bytes of a real one,
    spread over three tokens, do), and "€" ends where its third byte comes."""
    from transformers.generation.stopping_criteria import StopStringCriteria

    from nemotron_c.generation.utils import StopStrings

    ours, theirs = models
    vocab, hf_tokenizer, our_tokenizer = byte_fallback_tokenizer(str(tmp_path / "byte_fallback"))
    byte = {b: vocab[f"<0x{b:02X}>"] for b in (0xE2, 0x82, 0xAC, 0xEF, 0xBF, 0xBD, 0x80, 0xC3, 0xA9)}
    rows = [[byte[0xE2], byte[0x82], byte[0xAC], vocab["b"]], [byte[0xE2], vocab["a"]],
            [byte[0xEF], byte[0xBF], byte[0xBD], vocab["a"]], [vocab["a"], byte[0x80], vocab["b"]],
            [byte[0xC3], vocab["é"], byte[0xA9]], [vocab["▁a"], byte[0xE2], byte[0x82], byte[0xAC], vocab["ab"]]]
    for stop in ["€", "\ufffd", "\ufffda", "a\ufffd", "\ufffdb", "€b", " a", "é", "ab", "b"]:
        reference = StopStringCriteria(hf_tokenizer, [stop])
        mine = [StopStrings(hf_tokenizer, [stop]), StopStrings(our_tokenizer, [stop])]
        for row in rows:
            for n in range(1, len(row) + 1):
                ids = np.array([[1] + row[:n]])
                expected = bool(reference(torch.as_tensor(ids), None)[0])
                for criteria in mine:
                    assert bool(criteria(ids, ids.shape[1], 1)[0]) == expected, (stop, row[:n])
    # generate: U+FFFD's three bytes one by one (the first two alone decode to U+FFFD each); the stop string ends
    # the rows at the third
    bias = {(byte[0xEF],): 50.0, (byte[0xEF], byte[0xBF]): 100.0, (byte[0xBF], byte[0xBD]): 150.0}
    kwargs = dict(max_new_tokens=5, stop_strings=["\ufffd"], sequence_bias=bias)
    expected = hf_generate(theirs, np.array([[5]]), None, tokenizer=hf_tokenizer, **kwargs)
    assert expected[0, 1:].tolist() == [byte[0xEF], byte[0xBF], byte[0xBD]]
    for tokenizer in (hf_tokenizer, our_tokenizer):
        np.testing.assert_array_equal(our_generate(ours, np.array([[5]]), None, tokenizer=tokenizer, **kwargs),
                                      expected)


def test_text_streamer_refuses_ids_that_are_not_integers(tokenizer, capsys):
    """Transformers' tokenizer refuses float ids (a TypeError); int() took 1.7 for token 1. A 3-D array was
    flattened (Transformers fails on it)."""
    for streamer_class in (nemotron_c.TextStreamer, nemotron_c.TextIteratorStreamer):
        streamer = streamer_class(tokenizer)
        with pytest.raises(TypeError, match="integer token ids, got float64"):
            streamer.put(np.array([1.7]))
        with pytest.raises(ValueError, match=r"shape \(1, n\) or \(n\), got shape \(1, 1, 1\)"):
            streamer.put(np.array([[[5]]]))
        streamer.put(np.array([], dtype=np.float32))  # nothing to decode: as an empty step
        streamer.put(torch.tensor([[5, 9]]))
        streamer.end()
    assert capsys.readouterr().out == tokenizer.decode([5, 9]) + "\n"
