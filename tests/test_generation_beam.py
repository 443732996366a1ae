"""Beam search against Transformers' generate, token for token, with its scores and beam indices."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers.generation_reference import MASK, PROMPTS, assert_scores_equal, hf_generate, models, our_generate  # noqa: F401

DICT = dict(return_dict_in_generate=True, output_scores=True, output_logits=True)


def eos_that_fires(theirs, **kwargs):
    """Two tokens that beam search produces early on, so that eos really ends hypotheses."""
    free = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=6, **kwargs)
    new = free[:, PROMPTS.shape[1]:]
    return [int(new[0, 1]), int(new[1, 2])]


def check(ours, theirs, ids, mask, **kwargs):
    expected = hf_generate(theirs, ids, mask, **kwargs, **DICT)
    got = our_generate(ours, ids, mask, **kwargs, **DICT)
    assert got.sequences.dtype == np.int64
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    np.testing.assert_allclose(got.sequences_scores, expected["sequences_scores"], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(got.beam_indices, expected["beam_indices"])
    assert_scores_equal(got.scores, expected["scores"])
    assert_scores_equal(got.logits, expected["logits"], what="logits")
    assert got.cache.get_seq_length() == expected["cache"].get_seq_length()
    assert got.cache.batch_size == len(ids) * kwargs["num_beams"]
    plain = our_generate(ours, ids, mask, **kwargs)
    np.testing.assert_array_equal(plain, expected["sequences"])
    return expected["sequences"]


@pytest.mark.parametrize("num_beams,num_return_sequences,length_penalty", [(2, 1, 1.0), (3, 3, 1.0), (4, 2, 0.5),
                                                                           (3, 1, -1.0)])
def test_beam_search_left_padded(models, num_beams, num_return_sequences, length_penalty):
    ours, theirs = models
    check(ours, theirs, PROMPTS, MASK, num_beams=num_beams, num_return_sequences=num_return_sequences,
          length_penalty=length_penalty, max_new_tokens=9)


@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@pytest.mark.parametrize("length_penalty", [1.0, 2.0, 0.0])
def test_beam_search_with_eos(models, early_stopping, length_penalty):
    ours, theirs = models
    eos = eos_that_fires(theirs, num_beams=3)
    sequences = check(ours, theirs, PROMPTS, MASK, num_beams=3, num_return_sequences=2, max_new_tokens=10,
                      eos_token_id=eos, pad_token_id=1, early_stopping=early_stopping, length_penalty=length_penalty)
    assert np.isin(sequences[:, PROMPTS.shape[1]:], eos).any()


def test_beam_search_eos_without_pad_and_single_eos(models):
    ours, theirs = models
    eos = eos_that_fires(theirs, num_beams=2)
    check(ours, theirs, PROMPTS, MASK, num_beams=2, max_new_tokens=8, eos_token_id=eos[0])
    check(ours, theirs, PROMPTS, MASK, num_beams=2, max_new_tokens=8, eos_token_id=eos[1], pad_token_id=0)


def test_beam_search_with_processors(models):
    ours, theirs = models
    check(ours, theirs, PROMPTS, MASK, num_beams=3, max_new_tokens=8, repetition_penalty=1.5, no_repeat_ngram_size=2,
          bad_words_ids=[[12], [40, 71]], min_new_tokens=3, eos_token_id=eos_that_fires(theirs, num_beams=3))


@pytest.mark.parametrize("kwargs", [
    dict(encoder_repetition_penalty=2.0),
    # the bias leads each row to a token of its prompt, after which the bigram rule bans the prompt's next token
    # (unbiased, the rule changes no score here)
    dict(encoder_no_repeat_ngram_size=2, sequence_bias={(5,): 4.0, (9,): 4.0, (88,): 4.0}),
    dict(encoder_repetition_penalty=0.5, encoder_no_repeat_ngram_size=1)])
def test_beam_search_with_the_prompt_processors(models, kwargs):
    """Each beam reads its own prompt as Transformers' encoder_input_ids (repeated for the beams)."""
    ours, theirs = models
    settings = dict(num_beams=3, num_return_sequences=2, max_new_tokens=7)
    check(ours, theirs, PROMPTS, MASK, **settings, **kwargs)
    # the prompt processors change Transformers' scores here: ones that ours ignored could not pass
    others = {k: v for k, v in kwargs.items() if not k.startswith("encoder_")}
    without = hf_generate(theirs, PROMPTS, MASK, **settings, **others, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **settings, **kwargs, **DICT)
    assert not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(without["scores"], expected["scores"]))


def test_beam_batch_equals_rows_alone(models):
    ours, _ = models
    kwargs = dict(num_beams=3, num_return_sequences=2, max_new_tokens=8)
    batch = our_generate(ours, PROMPTS, MASK, **kwargs)
    for i in range(len(PROMPTS)):
        keep = MASK[i] == 1
        alone = our_generate(ours, PROMPTS[i:i + 1, keep], None, **kwargs)
        np.testing.assert_array_equal(batch[2 * i:2 * i + 2, MASK.shape[1]:], alone[:, keep.sum():])


@pytest.mark.parametrize("normalize", [False, True])
def test_compute_transition_scores(models, normalize):
    import torch

    ours, theirs = models
    for kwargs in (dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, eos_token_id=eos_that_fires(theirs)),
                   dict(max_new_tokens=6, repetition_penalty=1.3)):
        expected = hf_generate(theirs, PROMPTS, MASK, **kwargs, **DICT)
        got = our_generate(ours, PROMPTS, MASK, **kwargs, **DICT)
        beams = got.get("beam_indices")
        reference = theirs.compute_transition_scores(
            torch.as_tensor(expected["sequences"]), tuple(torch.as_tensor(s) for s in expected["scores"]),
            None if beams is None else torch.as_tensor(expected["beam_indices"]), normalize_logits=normalize).numpy()
        mine = ours.compute_transition_scores(got.sequences, got.scores, beams, normalize_logits=normalize)
        np.testing.assert_allclose(mine, reference, atol=1e-4)


def test_a_max_length_that_eos_cuts_short_costs_neither_memory_nor_time(tmp_path):
    """Beam search's tables are as wide as max_length but written only as tokens come, and its candidates are
    read from the running beams rather than copied whole: with half the vocabulary as eos (196 candidates a step)
    and max_new_tokens=10**6, the search took seconds and gigabytes, copying every candidate's row of 10**6 tokens
    each step (10**5 with the demo model: 7.9 s and 4.2 GB; 10**6 was killed for memory). The results equal a
    max_length the search never reaches."""
    script = textwrap.dedent(f"""
        import resource, sys, time, numpy as np, nemotron_c
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from helpers.checkpoints import write_random_checkpoint
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(write_random_checkpoint({str(tmp_path)!r}))
        settings = dict(num_beams=4, num_return_sequences=3, eos_token_id=list(range(0, 96, 2)), pad_token_id=1,
                        return_dict_in_generate=True, output_scores=True)
        prompts = np.array([[9, 4, 61, 12, 8, 40, 71], [3, 5, 7, 11, 13, 17, 19]])
        short = model.generate(prompts, max_new_tokens=30, **settings)
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
        long = model.generate(prompts, max_new_tokens=10**6, **settings)
        seconds = time.perf_counter() - start
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        same = all(np.array_equal(getattr(short, name), getattr(long, name))
                   for name in ("sequences", "sequences_scores", "beam_indices"))
        print(short.sequences.shape, same, seconds, grown)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shape, same, seconds, grown = result.stdout.split(")")[0] + ")", *result.stdout.split(")")[1].split()
    assert shape.startswith("(6, ") and int(shape.split(",")[1].strip(" )")) < 7 + 30, shape
    assert same == "True"
    assert float(seconds) < 5 and int(grown) < 200, (seconds, grown)


def test_more_candidates_than_continuations_is_refused(models):
    """num_beams x (1 + len(eos)) candidates a step above num_beams x vocab_size: torch.topk fails in Transformers
    ("selected index k out of range"); ours names the settings (the core would have read past its scores)."""
    ours, theirs = models
    eos = list(range(ours.config.vocab_size))  # one more candidate than the vocabulary at num_beams=1 per beam
    kwargs = dict(num_beams=2, max_new_tokens=2, eos_token_id=eos, pad_token_id=0)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        hf_generate(theirs, PROMPTS, MASK, **kwargs)
    with pytest.raises(ValueError, match="candidates a step, more than its num_beams x vocab_size"):
        our_generate(ours, PROMPTS, MASK, **kwargs)


def test_beam_search_that_adds_no_token_returns_its_dict(models):
    """Every token suppressed: the beams end at once with the prompt; the dict result reshaped rows of 0 ids with
    -1 and raised NumPy's ValueError. beam_indices are int32, as Transformers'."""
    ours, theirs = models
    kwargs = dict(num_beams=2, num_return_sequences=2, max_new_tokens=3,
                  suppress_tokens=list(range(ours.config.vocab_size)), **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert got.beam_indices.shape == expected["beam_indices"].shape == (2 * len(PROMPTS), 0)
    assert got.beam_indices.dtype == expected["beam_indices"].dtype == np.int32
    np.testing.assert_allclose(got.sequences_scores, expected["sequences_scores"])
    assert_scores_equal(got.scores, expected["scores"])
    assert our_generate(ours, PROMPTS, MASK, num_beams=2, max_new_tokens=3, return_dict_in_generate=True).beam_indices \
        .dtype == np.int32
