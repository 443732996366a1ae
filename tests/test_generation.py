"""generate() against Transformers' generate, token for token."""
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch

import nemotron_c
from helpers.transformers_reference import hf_from_pretrained

# Larger weights make the logits peaked, so that float32 rounding never decides an argmax.
PEAKED = dict(scale=0.25)
PROMPTS = np.array([[0, 0, 0, 5, 17, 33, 2], [9, 4, 61, 12, 8, 40, 71]])
MASK = np.array([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])


def hf_generate(model, ids, mask=None, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask),
                             do_sample=False, **kwargs)
    return out.numpy()


@pytest.fixture(scope="module")
def models(checkpoint):
    path = checkpoint(**PEAKED)
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)


def test_greedy_left_padded_batch(models):
    ours, theirs = models
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=12)
    got = ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=12)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_greedy_default_max_length_and_torch_inputs(models):
    ours, theirs = models
    expected = hf_generate(theirs, PROMPTS[1:])
    assert expected.shape[1] == PROMPTS.shape[1] + 20
    with pytest.warns(UserWarning, match="default `max_length`"):
        np.testing.assert_array_equal(ours.generate(torch.as_tensor(PROMPTS[1:])), expected)
    np.testing.assert_array_equal(ours.generate(PROMPTS[1]), expected)
    np.testing.assert_array_equal(ours.generate(PROMPTS[1:], max_length=11), hf_generate(theirs, PROMPTS[1:], max_length=11))


def test_eos_stops_rows_and_pads_them(models):
    ours, theirs = models
    free = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=12)
    eos = int(free[0, PROMPTS.shape[1] + 2])  # row 0 ends at its third new token
    for pad in (None, 1):
        kwargs = dict(max_new_tokens=12, eos_token_id=eos, pad_token_id=pad)
        expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
        np.testing.assert_array_equal(ours.generate(PROMPTS, attention_mask=MASK, **kwargs), expected)
    kwargs = dict(max_new_tokens=12, eos_token_id=[77, eos], pad_token_id=0)
    np.testing.assert_array_equal(ours.generate(PROMPTS, attention_mask=MASK, **kwargs),
                                  hf_generate(theirs, PROMPTS, MASK, **kwargs))


def test_all_rows_finish_early(models):
    ours, theirs = models
    free = hf_generate(theirs, PROMPTS[:1], max_new_tokens=12)
    eos = int(free[0, PROMPTS.shape[1] + 1])
    expected = hf_generate(theirs, PROMPTS[:1], max_new_tokens=12, eos_token_id=eos)
    got = ours.generate(PROMPTS[:1], max_new_tokens=12, eos_token_id=eos)
    assert got.shape[1] < PROMPTS.shape[1] + 12
    np.testing.assert_array_equal(got, expected)


def test_mask_inferred_from_pad_token(models):
    ours, theirs = models
    kwargs = dict(max_new_tokens=6, pad_token_id=0, eos_token_id=3)
    expected = hf_generate(theirs, PROMPTS, None, **kwargs)
    np.testing.assert_array_equal(ours.generate(PROMPTS, **kwargs), expected)


def test_prompt_longer_than_max_length_raises(models):
    ours, theirs = models
    with pytest.raises(ValueError, match="max_length"):
        hf_generate(theirs, PROMPTS[1:], max_length=5)
    with pytest.raises(ValueError, match="Input length of input_ids is 7, but `max_length` is set to 5"):
        ours.generate(PROMPTS[1:], max_length=5)


def test_generation_config_from_checkpoint(models):
    ours, theirs = models
    assert ours.generation_config.eos_token_id == theirs.generation_config.eos_token_id
    assert ours.generation_config.bos_token_id == theirs.generation_config.bos_token_id
    assert ours.generation_config.max_length == theirs.generation_config.max_length


def test_bad_generate_arguments(models):
    ours, _ = models
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours.generate(PROMPTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="not used by the model"):
        ours.generate(PROMPTS, max_new_tokenz=3)
    # as Transformers, an eos id the model cannot produce is accepted (it never stops a row); we also warn
    with pytest.warns(UserWarning, match="eos_token_id"):
        ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2, eos_token_id=1000)
    with pytest.raises(ValueError, match="attention_mask"):
        ours.generate(PROMPTS, attention_mask=MASK[:, :3], max_new_tokens=2)
    with pytest.raises(ValueError, match="token id"):
        ours.generate(np.array([[1, 500]]), max_new_tokens=2)


def test_greedy_batch_equals_rows_alone(models):
    ours, _ = models
    batch = ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10)
    for i in range(len(PROMPTS)):
        keep = MASK[i] == 1
        alone = ours.generate(PROMPTS[i:i + 1, keep], max_new_tokens=10)
        np.testing.assert_array_equal(batch[i, MASK.shape[1]:], alone[0, keep.sum():])


def test_generate_iter_streams_what_generate_returns(models):
    ours, _ = models
    expected = ours.generate(PROMPTS[1:], max_new_tokens=9)
    assert list(ours.generate_iter(PROMPTS[1:], max_new_tokens=9)) == expected[0, PROMPTS.shape[1]:].tolist()
    eos = int(expected[0, PROMPTS.shape[1] + 3])
    tokens = list(ours.generate_iter(PROMPTS[1], max_new_tokens=9, eos_token_id=eos))
    assert tokens == expected[0, PROMPTS.shape[1]:PROMPTS.shape[1] + 4].tolist()
    sampled = list(ours.generate_iter(PROMPTS[1], max_new_tokens=6, do_sample=True, seed=11))
    np.testing.assert_array_equal(ours.generate(PROMPTS[1], max_new_tokens=6, do_sample=True, seed=11)[0, 7:], sampled)
    with pytest.raises(ValueError, match="one sequence"):
        next(ours.generate_iter(PROMPTS, attention_mask=MASK, max_new_tokens=2))


@pytest.mark.parametrize("kwargs", [dict(forced_bos_token_id=1000), dict(forced_eos_token_id=1000),
                                    dict(forced_eos_token_id=[3, 1000])])
def test_forced_ids_outside_the_vocabulary_raise(models, kwargs):
    # Transformers indexes the scores with them and raises when it forces one (BOS: after a one-token prompt); we
    # produced token 0. We refuse them whatever the prompt.
    ours, theirs = models
    with pytest.raises((IndexError, RuntimeError)):
        hf_generate(theirs, PROMPTS[:1, -1:], max_new_tokens=2, **kwargs)
    for prompt in (PROMPTS[:1, -1:], PROMPTS[:1]):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            ours.generate(prompt, max_new_tokens=2, **kwargs)


@pytest.mark.parametrize("name", ["max_new_tokens", "max_length", "pad_token_id", "forced_bos_token_id"])
def test_non_integer_lengths_and_ids_are_named(models, name):
    # Transformers fails comparing them ("'<=' not supported between instances of 'str' and 'int'")
    ours, _ = models
    with pytest.raises(TypeError, match=f"`{name}` must be an integer"):
        ours.generate(PROMPTS[:1], **{"max_new_tokens": 2, name: "3"})


def test_huge_max_new_tokens_cut_short_costs_nothing(models):
    # the output rows are written as tokens come: 3e8 possible tokens once took 2.3 GB and 13 s
    ours, _ = models
    first = ours.generate(PROMPTS[1:], max_new_tokens=1)[0, -1]
    for mask in (None, MASK[1:]):
        start = time.perf_counter()
        out = ours.generate(PROMPTS[1:], attention_mask=mask, max_new_tokens=3 * 10**8, eos_token_id=int(first))
        assert out.shape == (1, PROMPTS.shape[1] + 1) and time.perf_counter() - start < 2
    with pytest.raises(ValueError, match="num_beams=2 .* lower num_beams, num_return_sequences or max_new_tokens"):
        ours.generate(PROMPTS[1:], max_new_tokens=3 * 10**12, num_beams=2)


@pytest.mark.parametrize("kwargs", [dict(num_beams=10**9), dict(num_return_sequences=10**9, do_sample=True)])
def test_rows_beyond_memory_are_refused_before_allocating(models, kwargs):
    # Transformers first repeats input_ids 1e9 times: "RuntimeError: [enforce fail at alloc_cpu.cpp:127] ...
    # DefaultCPUAllocator: can't allocate memory: you tried to allocate 56000000000 bytes"
    ours, _ = models
    with pytest.raises(ValueError, match=r"num_beams=\d+ and num_return_sequences=\d+ make 1000000000 rows"):
        ours.generate(PROMPTS[1:], max_new_tokens=1, **kwargs)


@pytest.mark.parametrize("kwargs, setting", [(dict(max_new_tokens=2**70), "max_new_tokens"),
                                             (dict(max_length=2**49), "max_length")])
def test_lengths_no_array_can_hold_are_refused_by_name(models, kwargs, setting):
    # numpy said "Maximum allowed dimension exceeded" sizing the output; 2**48 tokens are beyond any generation
    ours, _ = models
    with pytest.raises(ValueError, match=rf"`{setting}` \(\d+\) asks for sequences of \d+ tokens; .* at most"):
        ours.generate(PROMPTS[1:], **kwargs)
    assert ours.generate(PROMPTS[1:], max_new_tokens=2).shape[1] == PROMPTS.shape[1] + 2  # still usable


def test_many_beams_cost_the_rows_not_the_prompt_times_the_rows(checkpoint, tmp_path):
    # 3e4 beams: the prompt runs once per prompt and its cache is copied to the beams, one work space per chunk of
    # rows (not per row), the cache grows to max_length and no further. Transformers takes 2.3 GB and ~1 min for 1e5
    # beams and one token, we ~0.5 GB and ~2 s.
    script = textwrap.dedent(f"""
        import resource, sys, numpy as np, nemotron_c
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from helpers.checkpoints import write_random_checkpoint
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(write_random_checkpoint({str(tmp_path)!r}))
        model.generate(np.array([[9, 4, 61, 12, 8, 40, 71]]), num_beams=2, max_new_tokens=1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = model.generate(np.array([[9, 4, 61, 12, 8, 40, 71]]), num_beams=30000, max_new_tokens=2)
        print(out.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    shape, grown_mb = result.stdout.rsplit(" ", 1)
    # 30000 rows of 9 positions of 512 bytes of cache (138 MB, and the 7 of the prompt while it grows), scores and
    # tables: 263 MB; 476 MB before
    assert shape == "(1, 9)" and int(grown_mb) < 350, result.stdout
