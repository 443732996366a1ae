"""Shared pieces of the generate() tests: the peaked tiny checkpoint, prompts, and Transformers' generate."""
import warnings

import numpy as np
import pytest
import torch

import nemotron_c
from .transformers_reference import hf_from_pretrained

# Larger weights make the logits peaked, so that float32 rounding never decides an argmax.
PEAKED = dict(scale=0.25)
PROMPTS = np.array([[0, 0, 0, 5, 17, 33, 2], [9, 4, 61, 12, 8, 40, 71], [0, 0, 0, 0, 0, 88, 7]])
MASK = np.array([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1]])


def hf_generate(model, ids, mask=None, **kwargs):
    """Transformers' generate on NumPy inputs; tensors in the result become NumPy arrays."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask),
                             **kwargs)
    if isinstance(out, torch.Tensor):
        return out.numpy()
    return {key: (value.numpy() if isinstance(value, torch.Tensor)
                  else tuple(v.numpy() for v in value) if isinstance(value, tuple) else value)
            for key, value in out.items()}


def our_generate(model, ids, mask=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(ids, attention_mask=mask, **kwargs)


def assert_scores_equal(ours, theirs, atol=1e-4, what="scores"):
    """Per-step score tuples equal: the same -inf entries, finite values within atol."""
    assert len(ours) == len(theirs), f"{what}: {len(ours)} steps, Transformers {len(theirs)}"
    for step, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{what}[{step}]: shape {a.shape} != {b.shape}"
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg=f"{what}[{step}]: -inf entries differ")
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], atol=atol, rtol=0, err_msg=f"{what}[{step}]")


@pytest.fixture(scope="module")
def models(checkpoint):
    path = checkpoint(**PEAKED)
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)
