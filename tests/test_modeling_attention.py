"""Attention over prompts longer than its blocks (kernels/attention.c meets 64 keys at a time, and up to 96 rows of
query heads x tokens) against Transformers' eager attention, on every kernel set this CPU runs: left and right
padding in one batch, a past in the cache followed by many new tokens or by single ones, head groups of 1, 2 and 4
query heads per key/value head, and the softmax weights of output_attentions."""
import functools

import numpy as np
import pytest
import torch

import nemotron_c
from helpers.compare import assert_close
from helpers.kernel_sets import SETS, load_on
from helpers.transformers_reference import hf_from_pretrained

CONFIGS = {
    "grouped": {},  # 4 query heads, 2 key/value heads
    "multi_query": {"num_key_value_heads": 1},
    "multi_head_dim_24": {"num_key_value_heads": 4, "head_dim": 24},
}
T = 300
IDS = np.random.default_rng(11).integers(0, 96, size=(3, T))
MASK = np.ones((3, T), dtype=np.int64)
MASK[0, :110] = 0  # left padding: the first 110 queries of row 0 see no key at all
MASK[1, 230:] = 0  # right padding
# (prefix, then the lengths of the calls that follow it through the cache)
SPLITS = {"prefix_then_130": (170, [130]), "prefix_then_single_tokens": (295, [1] * 5)}


def calls(model_call, split):
    """Logits of IDS fed as a prefix then the split's chunks through one cache, concatenated over positions;
    model_call(ids, mask, cache) -> (logits, cache)."""
    prefix, lengths = SPLITS[split]
    logits, cache = model_call(IDS[:, :prefix], MASK[:, :prefix], None)
    chunks, end = [logits], prefix
    for n in lengths:
        logits, cache = model_call(IDS[:, end : end + n], MASK[:, : end + n], cache)
        chunks.append(logits)
        end += n
    return np.concatenate(chunks, axis=1)


@functools.cache
def transformers_outputs(path, split):
    reference = hf_from_pretrained(path)

    def call(ids, mask, cache):
        with torch.no_grad():
            out = reference(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), cache=cache, use_cache=True)
        return out.logits.float().numpy(), out.cache

    if split is None:
        return call(IDS, MASK, None)[0]
    return calls(call, split)


@pytest.fixture
def path(checkpoint, request):
    return checkpoint(max_position_embeddings=512, **CONFIGS[request.param])


@pytest.mark.parametrize("kernels", SETS)
@pytest.mark.parametrize("path", sorted(CONFIGS), indirect=True)
def test_long_padded_prompt_matches_transformers(path, kernels, monkeypatch):
    model = load_on(path, kernels, monkeypatch)
    # every position, the padded ones too: their uniform attention over all keys is Transformers' as well
    assert_close(model(IDS, attention_mask=MASK).logits, transformers_outputs(path, None), what=f"{kernels} logits")


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("kernels", SETS)
@pytest.mark.parametrize("path", ["grouped", "multi_query"], indirect=True)
def test_past_then_new_tokens_match_transformers(path, kernels, split, monkeypatch):
    model = load_on(path, kernels, monkeypatch)
    def call(ids, mask, cache):
        out = model(ids, attention_mask=mask, past_key_values=cache)
        return out.logits, out.past_key_values

    ours = calls(call, split)
    assert_close(ours, transformers_outputs(path, split), what=f"{kernels} logits, {split}")


@pytest.mark.parametrize("path", ["grouped"], indirect=True)
def test_attention_weights_of_a_long_prompt_match_transformers(path):
    """Transformers returns the weights with its eager attention only (SDPA gives an empty tuple). Eager gives the
    queries that see no key (row 0's left padding) a uniform softmax over all T keys; ours do so with
    attn_implementation="eager" and give them zeros by default, where SDPA's outputs are zeros."""
    with torch.no_grad():
        theirs = hf_from_pretrained(path, attn_implementation="eager")(
            torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK), output_attentions=True).attentions
    assert len(theirs) == 2
    eager = nemotron_c.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    default = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    ours_eager = eager(IDS, attention_mask=MASK, output_attentions=True)
    ours_default = default(IDS, attention_mask=MASK, output_attentions=True)
    assert len(ours_eager.attentions) == len(ours_default.attentions) == len(theirs)
    for layer, (a, b, reference) in enumerate(zip(ours_eager.attentions, ours_default.attentions, theirs)):
        reference = reference.numpy()
        assert_close(a, reference, atol=1e-5, what=f"eager attentions of layer {layer}")
        assert np.allclose(reference[0, :, :110], 1.0 / T)
        np.testing.assert_array_equal(b[0, :, :110], 0.0)
        assert_close(b[0, :, 110:], reference[0, :, 110:], atol=1e-5, what=f"attentions of layer {layer}, row 0")
        assert_close(b[1:], reference[1:], atol=1e-5, what=f"attentions of layer {layer}, rows 1 and 2")
    # the weights come from the plain path, the logits without them from the blocked one: both agree
    for model, out in ((eager, ours_eager), (default, ours_default)):
        assert_close(out.logits, model(IDS, attention_mask=MASK).logits, atol=1e-5,
                     what="logits with and without weights")


# ---------------------------------------------------------------- bfloat16 cache

# Keys and values rounded to bfloat16 (8 significant bits) move these tiny models' logits by under 0.01 (measured
# 0.009 at most); the bound stated and tested is twice that.
BF16_CACHE_ATOL = 0.02


@pytest.mark.parametrize("kernels", SETS)
@pytest.mark.parametrize("path", ["grouped", "multi_query"], indirect=True)
def test_bfloat16_cache_logits_stay_near_the_float32_cache(path, kernels, monkeypatch):
    exact = load_on(path, kernels, monkeypatch)
    halved = nemotron_c.AutoModelForCausalLM.from_pretrained(path, cache_dtype="bfloat16")
    assert exact.cache_dtype == "float32" and halved.cache_dtype == "bfloat16"

    def run(model):
        def call(ids, mask, cache):
            out = model(ids, attention_mask=mask, past_key_values=cache)
            return out.logits, out.past_key_values

        return calls(call, "prefix_then_single_tokens")

    ours, reference = run(halved), run(exact)
    assert_close(ours, reference, atol=BF16_CACHE_ATOL, what="logits with a bfloat16 cache")
    assert not np.array_equal(ours, reference)  # the keys and values were rounded


@pytest.mark.parametrize(("path", "num_beams"), [("grouped", 1), ("multi_query", 1), ("multi_query", 3)],
                         indirect=["path"])
def test_bfloat16_cache_generates_the_same_tokens(path, num_beams):
    """Greedy search gives the float32 cache's tokens up to the first step where the float32 logits' best two are
    nearer than the bound (there a rounding may flip the choice). Beam search, whose cache rows follow the beams,
    gives the same beams on the multi-query model (on the grouped one two beam scores are near enough to swap)."""
    exact = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    halved = nemotron_c.AutoModelForCausalLM.from_pretrained(path, cache_dtype="bfloat16")
    settings = dict(attention_mask=MASK[:, :200], max_new_tokens=20, do_sample=False, num_beams=num_beams)
    reference = exact.generate(IDS[:, :200], output_logits=True, return_dict_in_generate=True, **settings)
    ours = halved.generate(IDS[:, :200], **settings)
    compared = 0
    if num_beams == 1:
        best_two = np.sort(np.stack(reference.logits, axis=1), axis=-1)[..., -2:]
        near = best_two[..., 1] - best_two[..., 0] < 2 * BF16_CACHE_ATOL
        for row in range(len(IDS)):
            steps = int(np.argmax(near[row])) if near[row].any() else near.shape[1]
            np.testing.assert_array_equal(ours[row, 200 : 200 + steps], reference.sequences[row, 200 : 200 + steps])
            compared += steps
        assert compared >= 20  # not a vacuous comparison
    else:
        np.testing.assert_array_equal(ours, reference.sequences)


def test_cache_dtype_is_checked_and_pickled(checkpoint):
    import pickle

    model = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(), cache_dtype="bfloat16")
    assert pickle.loads(pickle.dumps(model)).cache_dtype == "bfloat16"
    model.cache_dtype = torch.float32
    assert model.cache_dtype == "float32" and model.cache_dtype == torch.float32
    for bad in ("float16", "int8", None):
        with pytest.raises(ValueError, match="cache_dtype must be 'float32' or 'bfloat16'"):
            model.cache_dtype = bad
