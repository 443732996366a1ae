"""The RoPE types whose frequencies follow each call's length (dynamic NTK and longrope) against Transformers:
forward logits with and without a cache, left-padded batches, prompts on both sides of the threshold, and greedy
generate() across it. Transformers' dynamic rope keeps the longest length it has seen on the module until a call
shorter than max_position_embeddings resets it; we keep it per model, so every test runs the same sequence of
calls on both models, freshly loaded."""
import warnings

import numpy as np
import pytest
import torch

import nemotron_c
from helpers.compare import assert_close
from helpers.generation_reference import MASK, PEAKED, PROMPTS, hf_generate, our_generate
from helpers.transformers_reference import hf_from_pretrained, hf_logits

SHORT = [1.0, 1.1, 1.3, 1.5]
LONG = [1.0, 2.5, 4.0, 9.0]
DYNAMIC = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
LONGROPE = {"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG, "original_max_position_embeddings": 12,
            "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
# the threshold each config's frequencies change at: max_position_embeddings (dynamic) or
# original_max_position_embeddings (longrope)
CONFIGS = {
    "dynamic": ({"max_position_embeddings": 16, "rope_parameters": DYNAMIC}, 16),
    # the legacy spelling; an odd rotary size (exponent 5/3), a factor float32 cannot hold, a threshold not a power of 2
    "dynamic_legacy_odd": ({"head_dim": 10, "max_position_embeddings": 20,
                            "rope_scaling": {"type": "dynamic", "factor": 1.7}}, 20),
    # exponent d / (d - 2) = 2 and 3, which torch computes as a square and a cube
    "dynamic_dim_4": ({"head_dim": 8, "max_position_embeddings": 16, "rope_parameters": DYNAMIC}, 16),
    "dynamic_dim_3": ({"head_dim": 6, "max_position_embeddings": 16, "rope_parameters": {**DYNAMIC, "factor": 2.7}},
                      16),
    "dynamic_full_rotary_int_factor": ({"max_position_embeddings": 12, "rope_parameters": {
        **DYNAMIC, "factor": 3, "rope_theta": 500.0, "partial_rotary_factor": 1.0}}, 12),
    "longrope": ({"max_position_embeddings": 64, "rope_parameters": LONGROPE}, 12),
    # Phi-3's spelling: original_max_position_embeddings at the top level wins; an explicit factor and attention_factor
    "longrope_phi3": ({"max_position_embeddings": 48, "original_max_position_embeddings": 10, "rope_parameters": {
        **LONGROPE, "factor": 2.0, "attention_factor": 1.3}}, 10),
    "longrope_odd": ({"head_dim": 10, "max_position_embeddings": 64, "rope_parameters": {
        **LONGROPE, "short_factor": SHORT[:3], "long_factor": LONG[:3]}}, 12),
}


def positions_of(mask):
    """Positions that follow the mask, 0 on padding, as Transformers' generate() makes them."""
    return np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 0)


def left_padded(T, real):
    mask = np.ones((2, T), dtype=np.int64)
    mask[0, : T - real] = 0
    return mask


def load(checkpoint, name, **kwargs):
    path = checkpoint(**kwargs, **CONFIGS[name][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Transformers' notes on longrope's factor
        return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_follow_each_calls_length(checkpoint, name):
    """Lengths below, above, between (after a longer call: dynamic keeps that one's frequencies) and below again (a
    reset); each without a mask and left-padded with positions that follow the mask, where the padded row is short
    and the other decides the length."""
    ours, theirs = load(checkpoint, name)
    threshold = CONFIGS[name][1]
    rng = np.random.default_rng(7)
    for T in (threshold - 5, threshold, threshold + 14, threshold + 6, threshold - 3, threshold + 1, threshold + 9):
        ids = rng.integers(0, 96, size=(2, T))
        mask = left_padded(T, real=max(1, threshold - 6))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # beyond max_position_embeddings
            plain = ours(ids).logits
            padded = ours(ids, attention_mask=mask, position_ids=positions_of(mask)).logits
        assert_close(plain, hf_logits(theirs, ids), what=f"{name} length {T}")
        expected = hf_logits(theirs, ids, mask, position_ids=torch.as_tensor(positions_of(mask)))
        assert_close(padded[mask == 1], expected[mask == 1], what=f"{name} length {T}, left padding")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_frequencies_are_transformers_float32_ones_to_the_bit(checkpoint, name):
    """The frequencies of each length, from the core, against those Transformers' rotary module holds after a call of
    that length (each after a short call, which resets dynamic's kept length). Bit for bit: torch computes them with
    scalar powf below 16 frequencies (32 with AVX-512), as here; above, its SLEEF powf differs by up to 2 ulps."""
    ours, theirs = load(checkpoint, name)
    rotary = theirs.model.rotary_emb
    threshold = CONFIGS[name][1]
    x = torch.zeros(1, dtype=torch.float32)
    for length in (1, threshold - 1, threshold, threshold + 1, threshold + 7, 999, 50_012, 122_235, 200_012, 2**24):
        with torch.no_grad():
            rotary(x, torch.tensor([[0]]))
            rotary(x, torch.tensor([[length - 1]]))
        got = np.array(ours._core.rope_frequencies(length), dtype=np.float32)
        np.testing.assert_array_equal(got, rotary.inv_freq.numpy(), err_msg=f"{name} length {length}")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_at_far_positions(checkpoint, name):
    """Positions in the hundred thousands magnify any difference in the frequencies or in how the angles are
    formed from them; lengths growing from call to call, so that dynamic computes each one's frequencies."""
    ours, theirs = load(checkpoint, name)
    positions = np.array([[199_990, 199_993, 200_001, 200_002], [199_000, 199_500, 200_004, 200_011]])
    ids = np.array([[5, 17, 33, 2], [9, 4, 61, 12]])
    for start in (150_000, 77_777, 0):  # growing: dynamic computes each length's frequencies
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ours(ids, position_ids=positions - start).logits
        expected = hf_logits(theirs, ids, position_ids=torch.as_tensor(positions - start))
        assert_close(got, expected, what=f"{name} positions near {200_000 - start}")


@pytest.mark.parametrize("name", ["dynamic", "dynamic_legacy_odd", "longrope"])
def test_cache_steps_across_the_threshold(checkpoint, name):
    """A prompt below the threshold into the cache, then one token per call past it: the new keys and queries take
    each call's frequencies, the cached keys keep theirs, in both."""
    ours, theirs = load(checkpoint, name)
    threshold = CONFIGS[name][1]
    rng = np.random.default_rng(3)
    T0, steps = threshold - 4, 9
    ids = rng.integers(0, 96, size=(2, T0 + steps))
    mask = left_padded(T0 + steps, real=T0 + steps - 3)
    first = ours(ids[:, :T0], attention_mask=mask[:, :T0])
    cache = first.past_key_values
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids[:, :T0]), attention_mask=torch.as_tensor(mask[:, :T0]), use_cache=True)
    ref_cache = ref.cache
    assert_close(first.logits[mask[:, :T0] == 1], ref.logits.numpy()[mask[:, :T0] == 1], what=f"{name} prompt")
    for t in range(T0, T0 + steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step = ours(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache)
        with torch.no_grad():
            ref = theirs(torch.as_tensor(ids[:, t : t + 1]), attention_mask=torch.as_tensor(mask[:, : t + 1]),
                         cache=ref_cache, use_cache=True)
        ref_cache = ref.cache
        assert_close(step.logits, ref.logits.numpy(), what=f"{name} step to length {t + 1}")


@pytest.mark.parametrize("name", ["dynamic", "dynamic_legacy_odd", "longrope", "longrope_phi3"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_across_the_threshold(checkpoint, name, num_beams):
    """Left-padded prompts of 7 tokens, 18 new ones: the frequencies change during generation (at the longest row's
    length), and again in a second call whose prompt is longer than the threshold."""
    ours, theirs = load(checkpoint, name, **PEAKED)
    for prompts, mask in ((PROMPTS, MASK), (np.tile(PROMPTS, 3)[:, : CONFIGS[name][1] + 2], None)):
        expected = hf_generate(theirs, prompts, mask, max_new_tokens=18, do_sample=False, num_beams=num_beams)
        got = our_generate(ours, prompts, mask, max_new_tokens=18, do_sample=False, num_beams=num_beams)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["dynamic", "dynamic_legacy_odd"])
def test_generate_after_a_longer_call_keeps_its_frequencies(checkpoint, name):
    """Transformers' dynamic rope keeps the frequencies of the longest call since the last one shorter than
    max_position_embeddings: a generation above that length but below an earlier call's runs with the earlier
    call's frequencies, in both."""
    ours, theirs = load(checkpoint, name, **PEAKED)
    threshold = CONFIGS[name][1]
    long_ids = np.arange(3 * threshold)[None] % 96
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_close(ours(long_ids).logits, hf_logits(theirs, long_ids))
    prompts = np.tile(PROMPTS, 3)[:, : threshold + 2]
    expected = hf_generate(theirs, prompts, max_new_tokens=10, do_sample=False)
    np.testing.assert_array_equal(our_generate(ours, prompts, max_new_tokens=10, do_sample=False), expected)


@pytest.mark.parametrize("partial_rotary_factor", [0.25, 0.4])
def test_yarn_of_one_rotary_dimension_rotates_nothing_as_transformers(checkpoint, partial_rotary_factor):
    """int(head_dim * factor) = 1: yarn's ramp over rotary_dim // 2 = 0 frequencies broadcasts its one frequency
    away, so Transformers' cos and sin are empty and no dimension turns (the other types rotate two)."""
    rope = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 8, "rope_theta": 10000.0,
            "partial_rotary_factor": partial_rotary_factor}
    path = checkpoint(head_dim=4, max_position_embeddings=16, rope_parameters=rope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Transformers' note on yarn's factor
        ours, theirs = nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)
    assert theirs.model.rotary_emb.inv_freq.numel() == 0
    assert_close(ours(PROMPTS, attention_mask=MASK).logits, hf_logits(theirs, PROMPTS, MASK))
