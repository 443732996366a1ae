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
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    ours = model(IDS, attention_mask=MASK, output_attentions=True)
    with torch.no_grad():
        theirs = hf_from_pretrained(path)(torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK),
                                          output_attentions=True)
    for layer, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
        assert_close(a, b.numpy(), atol=1e-5, what=f"attentions of layer {layer}")
    # the weights come from the plain path, the logits without them from the blocked one: both agree
    assert_close(ours.logits, model(IDS, attention_mask=MASK).logits, atol=1e-5, what="logits with and without weights")
