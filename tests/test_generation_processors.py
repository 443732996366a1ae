"""Processed scores (output_scores) and raw logits (output_logits) against Transformers, for each logits
processor alone and in combination."""
import numpy as np
import pytest

from helpers.generation_reference import MASK, PROMPTS, assert_scores_equal, hf_generate, models, our_generate  # noqa: F401

DICT = dict(return_dict_in_generate=True, output_scores=True, output_logits=True)

# Processors that apply without sampling: compared over several greedy steps of a left-padded batch.
GREEDY_PROCESSORS = {
    "repetition_penalty": dict(repetition_penalty=1.7),
    "repetition_penalty_below_one": dict(repetition_penalty=0.6),
    "no_repeat_ngram_size_1": dict(no_repeat_ngram_size=1),
    "no_repeat_ngram_size_2": dict(no_repeat_ngram_size=2),
    # the prompt (padding included) is the encoder input of a decoder-only model
    "encoder_repetition_penalty": dict(encoder_repetition_penalty=1.8),
    "encoder_repetition_penalty_below_one": dict(encoder_repetition_penalty=0.4),
    "encoder_no_repeat_ngram_size_1": dict(encoder_no_repeat_ngram_size=1),
    "encoder_no_repeat_ngram_size_2": dict(encoder_no_repeat_ngram_size=2),
    # the bias leads each row into a bigram of its prompt, whose next token the trigram rule then bans (unbiased,
    # no trigram of these prompts recurs and the rule changes no score)
    "encoder_no_repeat_ngram_size_3": dict(encoder_no_repeat_ngram_size=3,
                                           sequence_bias={(5,): 4.0, (5, 17): 8.0, (9,): 4.0, (9, 4): 8.0}),
    "encoder_both": dict(encoder_repetition_penalty=2.5, encoder_no_repeat_ngram_size=2, repetition_penalty=1.3,
                         no_repeat_ngram_size=2, sequence_bias={(40,): 3.0}),
    "bad_words_ids": dict(bad_words_ids=[[33], [2, 40], [61, 12, 8], [3]], eos_token_id=3),
    "min_length": dict(min_length=12, eos_token_id=[3, 40]),
    "min_new_tokens": dict(min_new_tokens=4, eos_token_id=40),
    "suppress_tokens": dict(suppress_tokens=[1, 40, 95]),
    "begin_suppress_tokens": dict(begin_suppress_tokens=[40, 12]),
    "sequence_bias_list": dict(sequence_bias=[[[33], 4.0], [[2, 40], -3.5], [[7], -1.0], [[12, 8, 40], 2.0]]),
    "sequence_bias_dict": dict(sequence_bias={(40,): 3.0, (71, 5): 2.5, (5,): -2.0}),
    "forced_eos_token_id": dict(forced_eos_token_id=[40, 3]),
    "remove_invalid_values": dict(remove_invalid_values=True, bad_words_ids=[[33]], suppress_tokens=[4]),
    "exponential_decay_length_penalty": dict(exponential_decay_length_penalty=(2, 1.6), eos_token_id=[40, 12]),
    # a float start stays a float: Transformers' penalty grows by factor ** (length - start - prompt length)
    "exponential_decay_length_penalty_float_start": dict(exponential_decay_length_penalty=(1.7, 1.5),
                                                         eos_token_id=[40, 12]),
    "renormalize_logits": dict(renormalize_logits=True, repetition_penalty=1.4),
    "combination": dict(repetition_penalty=1.3, no_repeat_ngram_size=3, bad_words_ids=[[5, 17]], min_new_tokens=2,
                        suppress_tokens=[7], begin_suppress_tokens=[9], eos_token_id=[40, 3]),
}

# Warpers that apply only with sampling: compared on the first step (the sampled tokens differ later).
SAMPLING_WARPERS = {
    "temperature": dict(temperature=0.7),
    "top_k": dict(top_k=5),
    "top_k_large": dict(top_k=200),
    "top_p": dict(top_p=0.8, top_k=0),
    "top_p_flat": dict(top_p=0.97, top_k=0, temperature=4.0),
    "top_p_zero": dict(top_p=0.0, top_k=0),
    "typical_p_flat": dict(typical_p=0.99, top_k=0, temperature=4.0),
    "min_p": dict(min_p=0.1, top_k=0),
    "typical_p": dict(typical_p=0.6, top_k=0),
    "default_top_k_50": dict(),
    "temperature_top_k_top_p": dict(temperature=1.3, top_k=20, top_p=0.9),
    "epsilon_cutoff": dict(epsilon_cutoff=0.02, top_k=0),
    "eta_cutoff": dict(eta_cutoff=0.05, top_k=0),
    "renormalized": dict(renormalize_logits=True, top_k=10, temperature=0.5),
    "all": dict(temperature=0.8, top_k=30, top_p=0.95, min_p=0.02, typical_p=0.9, repetition_penalty=1.2,
                no_repeat_ngram_size=2, suppress_tokens=[4], encoder_repetition_penalty=1.5,
                encoder_no_repeat_ngram_size=1),
}


@pytest.mark.parametrize("name", sorted(GREEDY_PROCESSORS))
def test_processor_scores_greedy(models, name):
    ours, theirs = models
    kwargs = dict(GREEDY_PROCESSORS[name], max_new_tokens=8, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_scores_equal(got.scores, expected["scores"])
    assert_scores_equal(got.logits, expected["logits"], what="logits")
    # the case's first setting changes Transformers' scores here: one that ours ignored could not pass
    first = next(iter(GREEDY_PROCESSORS[name]))
    without = hf_generate(theirs, PROMPTS, MASK, **{k: v for k, v in kwargs.items() if k != first})
    assert not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(without["scores"], expected["scores"]))


@pytest.mark.parametrize("name", sorted(SAMPLING_WARPERS))
def test_warper_scores_first_step(models, name):
    ours, theirs = models
    kwargs = dict(SAMPLING_WARPERS[name], do_sample=True, max_new_tokens=1, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, seed=0, **kwargs)
    assert_scores_equal(got.scores, expected["scores"])
    # the sampled token is one the processed scores allow
    new = got.sequences[:, -1]
    assert np.isfinite(got.scores[0][np.arange(len(new)), new]).all()


def test_beam_sampling_warpers_keep_enough_tokens(models):
    """With beams, the warpers keep len(eos) + 1 tokens at least (Transformers' min_tokens_to_keep)."""
    ours, theirs = models
    kwargs = dict(do_sample=True, num_beams=3, top_k=1, top_p=0.01, max_new_tokens=1, eos_token_id=[3, 4], **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, seed=1, **kwargs)
    assert_scores_equal(got.scores, expected["scores"])
    assert (np.isfinite(got.scores[0]).sum(axis=1) == 3).all()


def test_greedy_return_dict_without_scores(models):
    ours, theirs = models
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4, return_dict_in_generate=True)
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=4, return_dict_in_generate=True)
    assert set(got.keys()) == {k for k, v in expected.items() if v is not None}
    assert got.scores is None and got.logits is None
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    # the cache holds every position but the last token, as Transformers': continuing from it gives the logits
    # of the whole sequence run at once
    assert got.cache.get_seq_length() == expected["cache"].get_seq_length() == got.sequences.shape[1] - 1
    mask = np.concatenate([MASK, np.ones((3, got.sequences.shape[1] - MASK.shape[1]), dtype=MASK.dtype)], axis=1)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    step = ours(got.sequences[:, -1:], attention_mask=mask, position_ids=positions[:, -1:], past_key_values=got.cache)
    whole = ours(got.sequences, attention_mask=mask, position_ids=positions)
    np.testing.assert_allclose(step.logits[:, -1], whole.logits[:, -1], atol=1e-4)


def test_forced_bos_token_on_a_one_token_prompt(models):
    ours, theirs = models
    kwargs = dict(forced_bos_token_id=44, max_new_tokens=4, **DICT)
    expected = hf_generate(theirs, PROMPTS[1:2, :1], None, **kwargs)
    got = our_generate(ours, PROMPTS[1:2, :1], None, **kwargs)
    assert got.sequences[0, 1] == 44
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_scores_equal(got.scores, expected["scores"])


def test_begin_suppress_tokens_after_a_forced_bos_on_a_one_token_prompt(models):
    """Transformers begins the suppression one step later there: the forced token takes the first step."""
    ours, theirs = models
    prompt = PROMPTS[1:2, :1]
    free = our_generate(ours, prompt, None, forced_bos_token_id=44, max_new_tokens=3)
    for suppressed in ([44], [int(free[0, 2])]):  # the forced token, and the one the second step would choose
        kwargs = dict(forced_bos_token_id=44, begin_suppress_tokens=suppressed, max_new_tokens=3, **DICT)
        expected = hf_generate(theirs, prompt, None, **kwargs)
        got = our_generate(ours, prompt, None, **kwargs)
        assert got.sequences[0, 1] == 44
        np.testing.assert_array_equal(got.sequences, expected["sequences"])
        assert_scores_equal(got.scores, expected["scores"])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_sampling_from_scores_that_allow_no_token_raises_as_transformers(models, num_beams):
    """torch.multinomial refuses a row of no probability; nemotron_c had returned the last token of the vocabulary."""
    ours, theirs = models
    kwargs = dict(do_sample=True, num_beams=num_beams, suppress_tokens=list(range(96)), max_new_tokens=3)
    with pytest.raises(RuntimeError, match="probability"):
        hf_generate(theirs, PROMPTS, MASK, **kwargs)
    with pytest.raises(RuntimeError, match="no probability distribution"):
        our_generate(ours, PROMPTS, MASK, seed=0, **kwargs)


def test_repetition_penalty_skips_padding_inferred_from_pad_token(models):
    """Without attention_mask, Transformers infers it from pad_token_id, and the penalty skips that padding."""
    ours, theirs = models
    kwargs = dict(repetition_penalty=1.8, pad_token_id=0, eos_token_id=3, max_new_tokens=6, **DICT)
    expected = hf_generate(theirs, PROMPTS, None, **kwargs)
    got = our_generate(ours, PROMPTS, None, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_scores_equal(got.scores, expected["scores"])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_continuing_from_a_returned_cache(models, num_beams):
    """generate(full_ids, cache=out.cache) prefills only the new tokens and equals generating from scratch."""
    ours, theirs = models
    first = our_generate(ours, PROMPTS, MASK, max_new_tokens=4, return_dict_in_generate=True)
    more = np.array([[11, 12], [13, 14], [15, 16]])
    ids = np.concatenate([first.sequences, more], axis=1)
    mask = np.concatenate([MASK, np.ones((3, ids.shape[1] - MASK.shape[1]), dtype=MASK.dtype)], axis=1)
    expected = hf_generate(theirs, ids, mask, max_new_tokens=5)
    if num_beams == 1:
        got = our_generate(ours, ids, mask, max_new_tokens=5, cache=first.cache)
        np.testing.assert_array_equal(got, expected)
        assert first.cache.get_seq_length() == ids.shape[1] + 5 - 1
    with pytest.raises(ValueError, match="already holds"):
        our_generate(ours, ids[:, :5], mask[:, :5], max_new_tokens=2, cache=first.cache)
    with pytest.raises(ValueError, match="rows"):
        our_generate(ours, ids, mask, max_new_tokens=2, num_beams=2, past_key_values=first.cache)
