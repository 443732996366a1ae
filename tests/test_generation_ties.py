"""Equal scores: which token Transformers keeps is whatever torch.topk or torch.sort returns, and neither breaks ties
by index (the C++ library's partial_sort, nth_element or sort decide). nemotron_c's nt_topk and nt_sort replay those
algorithms."""
import numpy as np
import pytest
import torch

import nemotron_c
from nemotron_c import _core
from helpers.generation_reference import MASK, PROMPTS, assert_scores_equal, hf_generate, our_generate
from helpers.transformers_reference import build_hf_model, hf_from_pretrained

DICT = dict(return_dict_in_generate=True, output_scores=True)


def our_topk(values, k):
    indices = np.empty(k, dtype=np.int64)
    _core.topk(indices, np.ascontiguousarray(values, dtype=np.float32))
    return indices


def tie_heavy_cases(seed, count):
    """(values, k): few distinct values, some NaN and infinities, n and k on both sides of torch's k * 64 <= n."""
    rng = np.random.default_rng(seed)
    for case in range(count):
        n = int(rng.integers(1, 300)) if case % 3 else int(rng.integers(64, 4000))
        k = int(rng.integers(1, min(n, 48) + 1))
        values = rng.integers(0, int(rng.integers(1, 6)), n).astype(np.float32)
        if case % 5 == 0:
            values[rng.integers(0, n, 3)] = np.nan
        if case % 7 == 0:
            values[rng.integers(0, n, 3)] = -np.inf
        if case % 11 == 0:
            values[rng.integers(0, n, 2)] = np.inf
        yield values, k


def test_topk_order_equals_torch_topk_among_ties():
    for values, k in tie_heavy_cases(seed=0, count=3000):
        expected = torch.topk(torch.from_numpy(values), k).indices.numpy()
        np.testing.assert_array_equal(our_topk(values, k), expected, err_msg=f"n={values.size} k={k}")


@pytest.mark.parametrize("n,k", [(1, 1), (64, 1), (63, 1), (128, 2), (127, 2), (5, 5), (4000, 62), (4000, 63)])
def test_topk_at_the_boundaries_of_its_two_algorithms(n, k):
    for fill in (0.0, np.nan, -np.inf):
        values = np.full(n, fill, dtype=np.float32)
        values[::3] = 1.0
        expected = torch.topk(torch.from_numpy(values), k).indices.numpy()
        np.testing.assert_array_equal(our_topk(values, k), expected)


def our_sort(values, descending):
    order = np.empty(values.size, dtype=np.int64)
    _core.sort(order, np.ascontiguousarray(values, dtype=np.float32), descending)
    return order


@pytest.mark.parametrize("descending", [False, True])
def test_sort_order_equals_torch_sort_among_ties(descending):
    for values, _ in tie_heavy_cases(seed=1, count=1500):
        expected = torch.sort(torch.from_numpy(values), descending=descending).indices.numpy()
        np.testing.assert_array_equal(our_sort(values, descending), expected, err_msg=f"n={values.size}")
    many = np.random.default_rng(2).integers(0, 50, 40000).astype(np.float32)  # a vocabulary's width
    np.testing.assert_array_equal(our_sort(many, descending),
                                  torch.sort(torch.from_numpy(many), descending=descending).indices.numpy())


def test_topk_refuses_k_outside_one_to_n():
    with pytest.raises(ValueError, match="k = 4 must be in"):
        _core.topk(np.empty(4, dtype=np.int64), np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="k = 0 must be in"):
        _core.topk(np.empty(0, dtype=np.int64), np.zeros(3, dtype=np.float32))


@pytest.fixture(scope="module")
def tied_models(tmp_path_factory):
    """A checkpoint whose head gives every token from 10 on exactly the logit 0: a long run of equal scores."""
    model = build_hf_model(seed=5, scale=0.25)
    with torch.no_grad():
        model.lm_head.weight[10:] = 0.0
    path = str(tmp_path_factory.mktemp("tied_head"))
    model.save_pretrained(path)
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)


@pytest.mark.parametrize("num_beams,num_return_sequences", [(2, 1), (3, 3), (4, 2), (5, 5)])
def test_beam_search_among_equal_scores_equals_transformers(tied_models, num_beams, num_return_sequences):
    ours, theirs = tied_models
    kwargs = dict(num_beams=num_beams, num_return_sequences=num_return_sequences, max_new_tokens=5, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    np.testing.assert_array_equal(got.beam_indices, expected["beam_indices"])
    assert_scores_equal(got.scores, expected["scores"])


@pytest.mark.parametrize("num_beams", [2, 4])
def test_forced_eos_list_ties_at_the_last_step_like_transformers(tied_models, num_beams):
    """forced_eos_token_id as a list gives its tokens the same score at the last step."""
    ours, theirs = tied_models
    kwargs = dict(num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=3,
                  forced_eos_token_id=[4, 5, 6], **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])


@pytest.mark.parametrize("eos_count", [1, 4, 39])
def test_min_p_keeps_the_tokens_torch_topk_names_among_ties(tied_models, eos_count):
    """min_p near 1 removes all but the most probable; beam sampling keeps at least len(eos_token_id) + 1 tokens
    (Transformers' min_tokens_to_keep), which among the equally probable are torch.topk's choice, not the lowest
    ids. The first step's processed scores do not depend on the draws."""
    ours, theirs = tied_models
    eos = list(range(40, 40 + eos_count))
    kwargs = dict(do_sample=True, num_beams=2, top_k=0, min_p=0.999, eos_token_id=eos, max_new_tokens=1, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, seed=0, **kwargs)
    assert_scores_equal(got.scores, expected["scores"])
    kept = np.isfinite(expected["scores"][0]).sum(axis=1)
    assert (kept == eos_count + 1).all()


@pytest.mark.parametrize("warpers", [
    dict(top_p=0.9), dict(top_p=0.5, temperature=3.0), dict(top_p=0.1, temperature=100.0),
    dict(top_p=0.9, top_k=50), dict(typical_p=0.01, temperature=0.3, num_beams=2, eos_token_id=[2, 3, 4, 5]),
    dict(typical_p=0.05, temperature=0.3, num_beams=3, eos_token_id=list(range(10, 30))),
    dict(top_p=0.5, top_k=2, temperature=0.5, num_beams=3, eos_token_id=list(range(10, 30))),
])
def test_top_p_and_typical_p_cut_among_equal_scores_as_transformers(tied_models, warpers):
    """The cut of top_p, and typical_p's min_tokens_to_keep, fall among the run of equal logits: which of them stay
    is torch.sort's order (the first step's processed scores do not depend on the draws)."""
    ours, theirs = tied_models
    kwargs = dict(dict(top_k=0), **warpers, do_sample=True, max_new_tokens=1, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, seed=0, **kwargs)
    assert_scores_equal(got.scores, expected["scores"])
