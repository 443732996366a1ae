"""Sampling: the distribution of sampled tokens (chi-square against the softmax of the processed scores, with
a fixed seed so that the test is deterministic) and reproducibility with seed=."""
import numpy as np
import pytest
from scipy import stats

from helpers.generation_reference import MASK, PROMPTS, hf_generate, models, our_generate  # noqa: F401

DRAWS = 4000


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def chi_square_pvalue(counts, probs):
    """p-value of the counts under probs, with categories expected fewer than 5 times pooled."""
    expected = probs * counts.sum()
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        assert observed[-1] == 0, "a token of zero probability was sampled"
        observed, expected = observed[:-1], expected[:-1]
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("warpers", [dict(temperature=1.8, top_k=0), dict(top_k=8), dict(top_p=0.9, top_k=0),
                                     dict(min_p=0.05, top_k=0, temperature=2.0), dict(typical_p=0.8, top_k=0)])
def test_first_token_distribution_matches_transformers_scores(models, warpers):
    ours, theirs = models
    prompt = PROMPTS[1:2]
    kwargs = dict(warpers, do_sample=True, max_new_tokens=1)
    reference = hf_generate(theirs, prompt, None, return_dict_in_generate=True, output_scores=True, **kwargs)
    probs = softmax(reference["scores"][0][0])
    got = our_generate(ours, prompt, None, num_return_sequences=DRAWS, seed=1234, **kwargs)
    counts = np.bincount(got[:, -1], minlength=len(probs))
    assert counts[probs == 0].sum() == 0, "sampled a token the warpers removed"
    assert (probs > 0).sum() >= 2
    assert chi_square_pvalue(counts, probs) > 1e-3


def test_later_steps_follow_their_scores(models):
    """Each row's token at every step is drawn from its own processed scores."""
    ours, _ = models
    out = our_generate(ours, np.repeat(PROMPTS[:1], 1000, axis=0), np.repeat(MASK[:1], 1000, axis=0),
                       do_sample=True, temperature=0.7, top_k=0, max_new_tokens=3, seed=7,
                       return_dict_in_generate=True, output_scores=True)
    step = 2
    # rows whose first two new tokens agree share the third step's distribution
    prefix = out.sequences[:, 7:9]
    values, counts = np.unique(prefix, axis=0, return_counts=True)
    common = (prefix == values[np.argmax(counts)]).all(axis=1)
    assert common.sum() > 100
    probs = softmax(out.scores[step][np.argmax(common)])
    np.testing.assert_allclose(out.scores[step][common], np.broadcast_to(out.scores[step][np.argmax(common)],
                                                                         (common.sum(), probs.size)), atol=1e-5)
    counts = np.bincount(out.sequences[common, 7 + step], minlength=probs.size)
    assert chi_square_pvalue(counts, probs) > 1e-3


def test_seed_makes_sampling_reproducible(models):
    ours, _ = models
    kwargs = dict(do_sample=True, temperature=1.5, max_new_tokens=12, num_return_sequences=3)
    first = our_generate(ours, PROMPTS, MASK, seed=42, **kwargs)
    np.testing.assert_array_equal(first, our_generate(ours, PROMPTS, MASK, seed=42, **kwargs))
    assert not np.array_equal(first, our_generate(ours, PROMPTS, MASK, seed=43, **kwargs))
    from_generator = our_generate(ours, PROMPTS, MASK, seed=np.random.default_rng(5), **kwargs)
    np.testing.assert_array_equal(from_generator, our_generate(ours, PROMPTS, MASK, seed=np.random.default_rng(5),
                                                               **kwargs))
    assert our_generate(ours, PROMPTS, MASK, **kwargs).shape == first.shape  # seed=None: fresh entropy
    beams = dict(do_sample=True, num_beams=3, max_new_tokens=6)
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, seed=9, **beams),
                                  our_generate(ours, PROMPTS, MASK, seed=9, **beams))


def test_sampling_with_eos_pads_finished_rows(models):
    ours, _ = models
    out = our_generate(ours, np.repeat(PROMPTS[1:2], 200, axis=0), None, do_sample=True, temperature=2.0, top_k=0,
                       max_new_tokens=10, eos_token_id=[40, 12], pad_token_id=0, seed=3)
    new = out[:, 7:]
    padded = 0
    for row in new:
        ends = np.flatnonzero(np.isin(row, [40, 12]))
        if ends.size:
            assert (row[ends[0] + 1:] == 0).all()
            padded += ends[0] < new.shape[1] - 1
    assert padded >= 20  # rows that end early and are padded, not a vacuous loop


def test_bad_seed_type(models):
    ours, _ = models
    with pytest.raises(TypeError, match="seed"):
        our_generate(ours, PROMPTS, MASK, do_sample=True, max_new_tokens=2, seed="x")


def test_beam_sampling_with_few_candidates_left(models):
    """top_k=1 leaves fewer tokens of non-zero probability than beam sampling draws; like torch, the draws go on
    with zero-probability candidates instead of failing."""
    ours, _ = models
    kwargs = dict(do_sample=True, num_beams=3, top_k=1, max_new_tokens=6, eos_token_id=None, seed=5)
    out = our_generate(ours, PROMPTS, MASK, **kwargs)
    assert out.shape == (3, PROMPTS.shape[1] + 6) and out.min() >= 0 and out.max() < 96
    np.testing.assert_array_equal(out, our_generate(ours, PROMPTS, MASK, **kwargs))


def test_seeds_beyond_64_bits_are_refused_as_torch_refuses_them(models):
    import torch
    ours, _ = models
    kwargs = dict(do_sample=True, max_new_tokens=4)
    torch.manual_seed(-1)  # torch's range: a negative seed is seed + 2**64, as ours
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, seed=-1, **kwargs),
                                  our_generate(ours, PROMPTS, MASK, seed=2**64 - 1, **kwargs))
    for seed in (2**64, 2**100, -2**63 - 1):
        with pytest.raises(ValueError, match="Overflow"):
            torch.manual_seed(seed)
        with pytest.raises(ValueError, match="seed must be in"):
            our_generate(ours, PROMPTS, MASK, seed=seed, **kwargs)
