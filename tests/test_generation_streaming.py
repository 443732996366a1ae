"""Streamers (Transformers' put/end protocol, TextStreamer, TextIteratorStreamer) and stop_strings, against
Transformers with a byte-level tokenizer over the tiny checkpoints' 96 ids."""
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
    for b in euro + list(range(ord("a"), ord("z") + 1)) + list(range(256)):
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
