"""NVIDIA's published config.json files: read as Transformers reads them, and run, shrunk, from a bf16 .bin.

tests/data/configs/ holds the files as published on the Hugging Face Hub (byte sizes as listed there):
nvidia/Minitron-4B-Base (revision ebb5506), nvidia/Minitron-8B-Base (main, 0959baf) and
nvidia/Nemotron-Mini-4B-Instruct (its only config commit, b4d4a52, which spells head_dim as NeMo's kv_channels).
"""
import json
import os

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from nemotron_c.model.rope import rope_parameters
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained, hf_logits, randomize

CONFIGS = os.path.join(os.path.dirname(__file__), "data", "configs")
NAMES = ["Minitron-4B-Base", "Minitron-8B-Base", "Nemotron-Mini-4B-Instruct"]
FIELDS = [
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "norm_eps", "bos_token_id",
    "eos_token_id", "pad_token_id", "tie_word_embeddings", "rope_parameters", "attention_bias", "mlp_bias",
]
IDS = np.array([[2, 17, 5, 99, 3, 42, 7], [2, 8, 120, 64, 1, 33, 90]])


def published(name):
    with open(os.path.join(CONFIGS, f"{name}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", NAMES)
def test_published_config_reads_as_transformers_reads_it(name):
    data = published(name)
    ours = nemotron_c.NemotronConfig.from_dict(data)
    theirs = transformers.NemotronConfig.from_dict(data)
    for field in FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.head_dim == 128 and ours.num_key_value_heads == 8 and ours.hidden_act == "relu2"
    assert ours.rotary_dim == int(theirs.head_dim * theirs.rope_parameters["partial_rotary_factor"]) == 64
    rotary = transformers.models.nemotron.modeling_nemotron.NemotronRotaryEmbedding(theirs)
    inv_freq, scaling = rope_parameters(ours)
    np.testing.assert_allclose(inv_freq, rotary.inv_freq.numpy(), rtol=2e-7, atol=0)
    assert scaling == rotary.attention_scaling


def shrink(data, head_dim=16, kv_heads=2, layers=2, vocab=128):
    """Tiny widths, every other published field kept: the ratios heads/kv-heads, intermediate/hidden and
    hidden/(heads x head_dim), and the key the file uses for the head size (head_dim, kv_channels or none)."""
    full_head_dim = data.get("head_dim", data.get("kv_channels", data["hidden_size"] // data["num_attention_heads"]))
    heads = kv_heads * data["num_attention_heads"] // data["num_key_value_heads"]
    hidden = heads * head_dim * data["hidden_size"] // (data["num_attention_heads"] * full_head_dim)
    small = dict(data, num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_size=hidden,
                 intermediate_size=hidden * data["intermediate_size"] // data["hidden_size"],
                 num_hidden_layers=layers, vocab_size=vocab)
    for key in ("head_dim", "kv_channels"):
        if key in data:
            small[key] = head_dim
    return small


@pytest.fixture(scope="module", params=NAMES)
def shrunk_bin(request, tmp_path_factory):
    data = shrink(published(request.param))
    path = tmp_path_factory.mktemp(request.param)
    with open(path / "config.json", "w") as f:
        json.dump(data, f, indent=2)
    model = transformers.NemotronForCausalLM(transformers.NemotronConfig.from_dict(data)).eval()
    randomize(model, seed=3, scale=0.08)
    torch.save(model.to(torch.bfloat16).state_dict(), path / "pytorch_model.bin")
    return request.param, data, str(path)


def test_shrunk_published_config_logits_equal_transformers(shrunk_bin):
    name, data, path = shrunk_bin
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.dtype == "bfloat16"  # the bf16 weights used as stored, arithmetic in float32
    theirs = hf_from_pretrained(path)  # float32 from the same file
    assert ours.config.head_dim == theirs.config.head_dim == 16
    assert (data["hidden_size"] == data["num_attention_heads"] * 16) == (name != "Minitron-8B-Base")
    assert_close(ours(IDS).logits, hf_logits(theirs, IDS), atol=1e-4, what=name)
