"""The forward pass against Transformers: logits, hidden states, cache, padding, dtypes."""
import os
import pickle
import shutil
import tracemalloc

import numpy as np
import pytest
import torch
import transformers
from transformers.modeling_outputs import CausalLMOutputWithPast as TransformersCausalLMOutput

import nemotron_c
from nemotron_c.checkpoint.reading import read_checkpoint
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained, hf_logits
from helpers.checkpoints import TINY

RNG = np.random.default_rng(1234)
IDS = RNG.integers(0, 96, size=(2, 9))
LEFT_MASK = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]])
RIGHT_MASK = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]])

CONFIGS = {
    "grouped": {},
    "multi_query": {"num_key_value_heads": 1},
    "multi_head": {"num_key_value_heads": 4},
    "head_dim_24": {"head_dim": 24},
    "head_dim_24_mqa_full_rotary": {"head_dim": 24, "num_key_value_heads": 1, "partial_rotary_factor": 1.0},
    "full_rotary": {"partial_rotary_factor": 1.0},
    "quarter_rotary": {"partial_rotary_factor": 0.25},
    "no_rotary": {"partial_rotary_factor": 0.0},
    "biases": {"attention_bias": True, "mlp_bias": True},
    "attention_bias_only": {"attention_bias": True},
    "tied": {"tie_word_embeddings": True},
    "rope_theta": {"rope_theta": 500.0},
    "linear_rope": {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0,
                                        "partial_rotary_factor": 0.5}},
    "llama3_rope": {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
                                        "rope_theta": 10000.0, "partial_rotary_factor": 1.0}},
    "yarn_rope": {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                      "rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
    # frequencies that follow the length: 9 positions are past both thresholds (more in test_modeling_rope.py)
    "dynamic_rope": {"max_position_embeddings": 8, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0,
                                                                       "rope_theta": 10000.0}},
    "longrope": {"rope_parameters": {"rope_type": "longrope", "short_factor": [1.0, 1.2, 1.4, 1.6],
                                     "long_factor": [1.0, 3.0, 5.0, 7.0], "original_max_position_embeddings": 6}},
    "norm_eps": {"norm_eps": 1e-2},
    # int(head_dim * partial_rotary_factor) odd: Transformers rotates one dimension more (a cos/sin pair each)
    "odd_rotary": {"head_dim": 10, "partial_rotary_factor": 0.5},
    "odd_rotary_llama3": {"head_dim": 16, "rope_parameters": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16, "rope_theta": 10000.0, "partial_rotary_factor": 0.35}},
    "three_layers_odd_sizes": {"num_hidden_layers": 3, "hidden_size": 40, "intermediate_size": 70,
                               "num_attention_heads": 5, "num_key_value_heads": 5},
    "silu": {"hidden_act": "silu"},
    "gelu": {"hidden_act": "gelu"},
    "gelu_tanh": {"hidden_act": "gelu_pytorch_tanh"},
}
# every activation Transformers can name in hidden_act, except those with parameters of their own
ACTIVATION_NAMES = ["relu", "gelu_new", "gelu_fast", "gelu_accurate", "gelu_10", "gelu_python", "quick_gelu", "swish",
                    "sigmoid", "leaky_relu", "linear", "mish", "relu6", "tanh", "hardswish", "laplace", "sqrtsoftplus",
                    "gelu_python_tanh"]
CONFIGS.update({f"act_{name}": {"hidden_act": name} for name in ACTIVATION_NAMES})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_transformers(checkpoint, name):
    path = checkpoint(**CONFIGS[name])
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    for mask in (None, LEFT_MASK, RIGHT_MASK):
        out = ours(IDS, attention_mask=mask)
        assert out.logits.dtype == np.float32
        assert_close(out.logits, hf_logits(reference, IDS, mask), what=f"{name} logits, mask {mask is not None}")


@pytest.mark.parametrize("name", ["grouped", "biases", "head_dim_24"])
def test_portable_and_avx2_kernels_agree_with_transformers(checkpoint, kernels, name):
    path = checkpoint(**CONFIGS[name])
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    if kernels == "portable":
        assert ours.kernels == "portable"
    assert_close(ours(IDS, attention_mask=LEFT_MASK).logits, hf_logits(hf_from_pretrained(path), IDS, LEFT_MASK))


def test_unknown_kernel_set_is_refused_with_the_known_ones(checkpoint, monkeypatch):
    monkeypatch.setenv("NEMOTRON_C_KERNELS", "sse9")
    with pytest.raises(ValueError, match="unknown kernel set 'sse9' \\(expected one of 'auto', .*'portable'\\)"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())


@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_half_precision_checkpoints(checkpoint, stored):
    path = checkpoint(dtype=stored)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.dtype == stored
    # Transformers in float32 on the same stored values
    reference = hf_from_pretrained(path)
    assert_close(ours(IDS, attention_mask=LEFT_MASK).logits, hf_logits(reference, IDS, LEFT_MASK))


@pytest.mark.parametrize("requested", ["bfloat16", "float16", torch.bfloat16, np.float16, "torch.float16"])
def test_dtype_conversion_on_load(checkpoint, requested):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=requested)
    name = str(requested).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    torch_dtype = getattr(torch, name)
    # Transformers rounds the weights the same way; we compare with its float32 math on the rounded values
    reference = hf_from_pretrained(path)
    with torch.no_grad():
        for param in reference.parameters():  # parameters only: .to() would round the rotary buffer too
            param.copy_(param.to(torch_dtype).to(torch.float32))
    assert_close(ours(IDS).logits, hf_logits(reference, IDS))


def test_float32_request_on_bfloat16_checkpoint(checkpoint):
    path = checkpoint(dtype="bfloat16")
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    assert ours.dtype == "float32"
    assert_close(ours(IDS).logits, hf_logits(hf_from_pretrained(path), IDS))


@pytest.mark.parametrize("stored, dtype, marked", [
    ("bfloat16", "float32", True),  # widened from bfloat16: every value a bfloat16 one
    ("float32", None, False), ("float32", "float32", False), ("bfloat16", None, False), ("float16", "float32", False),
    ("float32", "bfloat16", False), ("float32", "int4", False),
])
def test_float32_weights_of_bfloat16_values_are_marked(checkpoint, monkeypatch, stored, dtype, marked):
    """The core learns which float32 tensors hold bfloat16 values (nt_tensor.bf16_values: the amx kernel set then
    multiplies them on its tile unit); only the loader knows, from the stored dtype."""
    handed = []
    real_model = nemotron_c.model.modeling._core.Model

    def recording_model(config, tensors, *args, **kwargs):
        handed.extend(tensors)
        return real_model(config, tensors, *args, **kwargs)

    monkeypatch.setattr(nemotron_c.model.modeling._core, "Model", recording_model)
    nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(dtype=stored), dtype=dtype)
    present = [t for t in handed if t[0] is not None]
    assert present and all((len(t) == 5 and t[4]) == marked for t in present)


def test_sharded_checkpoint(checkpoint):
    path = checkpoint(shard_size="40KB")
    import os

    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert_close(ours(IDS).logits, hf_logits(hf_from_pretrained(path), IDS))


def test_hidden_states_layout(checkpoint):
    path = checkpoint(num_hidden_layers=3)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    out = ours(IDS, attention_mask=LEFT_MASK, output_hidden_states=True)
    with torch.no_grad():
        ref = reference(torch.as_tensor(IDS), attention_mask=torch.as_tensor(LEFT_MASK), output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == 4
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_close(a, b.numpy(), what=f"hidden_states[{i}]")
    assert_close(out.logits, ref.logits.numpy())


def test_bare_model_last_hidden_state(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModel.from_pretrained(path)
    assert isinstance(ours, nemotron_c.NemotronModel)
    reference = hf_from_pretrained(path, transformers.NemotronModel)
    out = ours(IDS, attention_mask=RIGHT_MASK, output_hidden_states=True)
    with torch.no_grad():
        ref = reference(torch.as_tensor(IDS), attention_mask=torch.as_tensor(RIGHT_MASK), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 9, 64)
    assert_close(out.last_hidden_state, ref.last_hidden_state.numpy())
    assert len(out.hidden_states) == len(ref.hidden_states) == 3  # the embeddings and each of the 2 layers
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert_close(a, b.numpy())


def test_bare_model_checkpoint_without_prefix(checkpoint):
    """A NemotronModel saved on its own has no 'model.' prefix; both libraries load it."""
    path = checkpoint(model_class=transformers.NemotronModel)
    ours = nemotron_c.NemotronModel.from_pretrained(path)
    reference = hf_from_pretrained(path, transformers.NemotronModel)
    with torch.no_grad():
        ref = reference(torch.as_tensor(IDS)).last_hidden_state.numpy()
    assert_close(ours(IDS).last_hidden_state, ref)
    with pytest.raises(ValueError, match="lm_head"):
        nemotron_c.NemotronForCausalLM.from_pretrained(path)


def test_incremental_decoding_equals_full_forward(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    full = ours(IDS, attention_mask=LEFT_MASK, use_cache=False).logits
    assert "past_key_values" not in ours(IDS, use_cache=False)
    out = ours(IDS[:, :5], attention_mask=LEFT_MASK[:, :5])
    cache = out.past_key_values
    assert cache.get_seq_length() == 5
    # padded positions attend uniformly to every key (as in Transformers), so only real tokens compare
    real = LEFT_MASK[:, :5] == 1
    assert_close(out.logits[real], full[:, :5][real], atol=1e-5)
    for t in range(5, 9):
        step = ours(IDS[:, t : t + 1], attention_mask=LEFT_MASK[:, : t + 1], past_key_values=cache)
        assert step.past_key_values is cache and cache.get_seq_length() == t + 1
        assert_close(step.logits[:, 0], full[:, t], atol=1e-5, what=f"step {t}")


def test_cache_equals_transformers_cache(checkpoint):
    """Two chunks through the cache, with explicit positions, against Transformers doing the same."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    first = ours(IDS[:, :6], attention_mask=LEFT_MASK[:, :6])
    second = ours(IDS[:, 6:], attention_mask=LEFT_MASK, past_key_values=first.past_key_values)
    with torch.no_grad():
        ref_first = reference(torch.as_tensor(IDS[:, :6]), attention_mask=torch.as_tensor(LEFT_MASK[:, :6]),
                              use_cache=True)
        ref_second = reference(torch.as_tensor(IDS[:, 6:]), attention_mask=torch.as_tensor(LEFT_MASK),
                               cache=ref_first.cache)
    assert_close(first.logits, ref_first.logits.numpy())
    assert_close(second.logits, ref_second.logits.numpy())


def test_position_ids_and_logits_to_keep(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    positions = np.cumsum(LEFT_MASK, axis=1) - 1
    positions[LEFT_MASK == 0] = 0
    ref = hf_logits(reference, IDS, LEFT_MASK, position_ids=torch.as_tensor(positions))
    assert_close(ours(IDS, attention_mask=LEFT_MASK, position_ids=positions).logits, ref)
    assert_close(ours(IDS, attention_mask=LEFT_MASK, position_ids=positions, logits_to_keep=1).logits, ref[:, -1:])
    assert_close(ours(IDS, attention_mask=LEFT_MASK, position_ids=positions, logits_to_keep=3).logits, ref[:, -3:])
    picked = np.array([0, 4, -1])
    ref_picked = hf_logits(reference, IDS, LEFT_MASK, position_ids=torch.as_tensor(positions),
                           logits_to_keep=torch.as_tensor(picked))
    assert_close(ours(IDS, attention_mask=LEFT_MASK, position_ids=positions, logits_to_keep=picked).logits, ref_picked)


def test_negative_position_ids_and_other_logits_to_keep_forms_as_transformers(checkpoint):
    """cumsum(mask) - 1 without the masked_fill leaves -1 at the padding: Transformers rotates by it, ours refused
    it; a negative int logits_to_keep is Transformers' slice (it drops the first positions), a 1-D boolean marks
    positions for every row: both were refused."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    positions = np.cumsum(LEFT_MASK, axis=1) - 1
    assert positions.min() < 0
    assert_close(ours(IDS, attention_mask=LEFT_MASK, position_ids=positions).logits,
                 hf_logits(reference, IDS, LEFT_MASK, position_ids=torch.as_tensor(positions)))
    shifted = positions - 50  # every position negative
    assert_close(ours(IDS, position_ids=shifted).logits,
                 hf_logits(reference, IDS, position_ids=torch.as_tensor(shifted)))
    marked = np.zeros(IDS.shape[1], dtype=bool)
    marked[[1, 4]] = True
    for keep in (-2, -IDS.shape[1], -100, marked, np.zeros(IDS.shape[1], dtype=bool)):
        ref = hf_logits(reference, IDS, logits_to_keep=torch.as_tensor(keep) if isinstance(keep, np.ndarray) else keep)
        got = ours(IDS, logits_to_keep=keep).logits
        assert got.shape == ref.shape
        assert_close(got, ref)
    with pytest.raises(ValueError, match="1-D boolean logits_to_keep must have the inputs' length"):
        ours(IDS, logits_to_keep=marked[:3])


def test_two_dimensional_logits_to_keep_match_transformers(checkpoint):
    """Each row's own positions (B, P) give (B, P, V); a boolean mask (B, T) gives its true positions' logits,
    (count, V), and a loss over them with labels given per kept position (packed training)."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    per_row = np.array([[0, 8, 3], [-1, 2, 2]])
    mask = np.zeros(IDS.shape, dtype=bool)
    mask[0, [1, 5]] = mask[1, [5, 6, 8]] = True
    for keep in (per_row, mask):
        with torch.no_grad():
            ref = reference(torch.as_tensor(IDS), logits_to_keep=torch.as_tensor(keep)).logits.numpy()
        got = ours(IDS, logits_to_keep=keep).logits
        assert got.shape == ref.shape
        assert_close(got, ref)
    labels = IDS[mask]
    with torch.no_grad():
        ref_loss = reference(torch.as_tensor(IDS), logits_to_keep=torch.as_tensor(mask),
                             labels=torch.as_tensor(labels)).loss.item()
    assert abs(float(ours(IDS, logits_to_keep=mask, labels=labels).loss) - ref_loss) < 1e-5
    with pytest.raises(ValueError, match="boolean logits_to_keep"):
        ours(IDS, logits_to_keep=mask[:, :4])


def test_loss_matches_transformers(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    labels = IDS.copy()
    labels[0, :3] = -100
    with torch.no_grad():
        ref = hf_from_pretrained(path)(torch.as_tensor(IDS), labels=torch.as_tensor(labels)).loss.item()
    assert abs(float(ours(IDS, labels=labels).loss) - ref) < 1e-5


def test_loss_over_num_items_in_batch_and_shift_labels_match_transformers(checkpoint):
    """Gradient accumulation's num_items_in_batch (an int or a tensor) turns the mean into a sum over it, and
    shift_labels replaces the shifted labels, as Transformers' ForCausalLMLoss."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    labels = IDS.copy()
    labels[0, :3] = -100
    shifted = np.roll(IDS, 2, axis=1)
    shifted[1, -2:] = -100
    for kwargs in ({"num_items_in_batch": 7}, {"num_items_in_batch": torch.tensor(11)},
                   {"num_items_in_batch": np.int64(3)}, {"shift_labels": shifted},
                   {"shift_labels": shifted, "num_items_in_batch": 5}):
        torch_kwargs = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        with torch.no_grad():
            ref = reference(torch.as_tensor(IDS), labels=torch.as_tensor(labels), **torch_kwargs).loss.item()
        got = float(ours(IDS, labels=labels, **kwargs).loss)
        assert abs(got - ref) < 1e-5 * max(1.0, abs(ref)), (kwargs, got, ref)
    with pytest.raises(TypeError, match="num_items_in_batch"):
        ours(IDS, labels=labels, num_items_in_batch="seven")


def test_config_return_dict_false_gives_tuples(checkpoint, tmp_path):
    """return_dict=None reads config.return_dict, as Transformers' can_return_tuple (whose NemotronForCausalLM fails
    with such a config: its bare model's tuple has no last_hidden_state)."""
    path = checkpoint()
    bare = nemotron_c.AutoModel.from_pretrained(path, return_dict=False)
    reference = transformers.NemotronModel.from_pretrained(path, return_dict=False).eval()
    with torch.no_grad():
        expected = reference(torch.as_tensor(IDS))
    got = bare(IDS)
    assert isinstance(expected, tuple) and isinstance(got, tuple) and len(got) == len(expected)
    assert_close(got[0], expected[0].numpy())
    assert isinstance(bare(IDS, return_dict=True), nemotron_c.BaseModelOutputWithPast)
    causal = nemotron_c.AutoModelForCausalLM.from_pretrained(path, return_dict=False)
    as_tuple = causal(IDS, labels=IDS)
    assert isinstance(as_tuple, tuple)
    assert_close(as_tuple[1], causal(IDS, return_dict=True).logits)


def test_a_cache_passed_in_is_returned_with_use_cache_false(checkpoint):
    """Transformers extends a cache it is given whatever use_cache says, and returns it."""
    path = checkpoint()
    for ours in (nemotron_c.AutoModelForCausalLM.from_pretrained(path), nemotron_c.AutoModel.from_pretrained(path)):
        first = ours(IDS[:, :5], use_cache=True)
        out = ours(IDS[:, 5:], past_key_values=first.past_key_values, use_cache=False)
        assert out.past_key_values is first.past_key_values and out.past_key_values.get_seq_length() == 9
        assert ours(IDS, use_cache=False).past_key_values is None


def untied_checkpoint_saying_tied(checkpoint, tmp_path, drop_embedding=False):
    """A checkpoint of an untied model whose config.json says tie_word_embeddings: true; without its embedding
    (drop_embedding), it holds the embedding's values as lm_head.weight alone."""
    import json
    import shutil
    from safetensors.numpy import load_file, save_file

    source = checkpoint(seed=3, tie_word_embeddings=False)
    path = tmp_path / ("head-only" if drop_embedding else "both")
    shutil.copytree(source, path)
    config = json.loads((path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (path / "config.json").write_text(json.dumps(config))
    if drop_embedding:
        tensors = load_file(path / "model.safetensors")
        tensors["lm_head.weight"] = tensors.pop("model.embed_tokens.weight")
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return str(path)


def test_tied_config_with_a_different_stored_head_uses_the_head(checkpoint, tmp_path):
    """Transformers' tie_weights does not tie a head stored with other values than the embedding's."""
    path = untied_checkpoint_saying_tied(checkpoint, tmp_path)
    with pytest.warns(UserWarning, match="untied"):
        ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.config.tie_word_embeddings is False
    assert_close(ours(IDS).logits, hf_logits(hf_from_pretrained(path), IDS))


def test_tied_config_with_the_head_alone_uses_it_as_the_embedding(checkpoint, tmp_path):
    """Transformers ties the other way round when only lm_head.weight is stored."""
    path = untied_checkpoint_saying_tied(checkpoint, tmp_path, drop_embedding=True)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.config.tie_word_embeddings is True
    assert_close(ours(IDS).logits, hf_logits(hf_from_pretrained(path), IDS))


def test_inputs_of_any_integer_type_lists_and_torch(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    expected = ours(IDS).logits
    for value in (IDS.astype(np.int32), IDS.astype(np.uint8), IDS.tolist(), torch.as_tensor(IDS)):
        assert_close(ours(value).logits, expected, atol=0)
    one = ours(IDS[0]).logits
    assert one.shape == (1, 9, 96)
    # one sequence is 9 rows of x, two are 18: the kernels sum in another order past 16 rows (kernels/matmul_*.c)
    assert_close(one, expected[:1], atol=1e-5)
    mask_variants = (LEFT_MASK.astype(bool), torch.as_tensor(LEFT_MASK), LEFT_MASK.tolist())
    for mask in mask_variants:
        assert_close(ours(IDS, attention_mask=mask).logits, ours(IDS, attention_mask=LEFT_MASK).logits, atol=0)


BEYOND_INT64 = {
    "list": ([[1, 2**64]], "input_ids holds 18446744073709551616, which does not fit a 64-bit integer"),
    "list_negative": ([[-(2**64), 1]], "input_ids holds -18446744073709551616,"),
    # NumPy turns [-1, 2**63] into float64, which reads as "must hold integers, got dtype float64"
    "list_numpy_makes_float": ([[-1, 2**63]], "input_ids holds 9223372036854775808,"),
    # a cast to int64 would report 2**63 as token id -9223372036854775808
    "uint64": (np.array([[1, 2**63]], dtype=np.uint64), "token id 9223372036854775808, outside the vocabulary"),
    "uint64_max": (np.array([[2**64 - 1]], dtype=np.uint64), "token id 18446744073709551615, outside"),
}


@pytest.mark.parametrize("case", BEYOND_INT64)
def test_ids_beyond_int64_are_named(checkpoint, case):
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    value, message = BEYOND_INT64[case]
    with pytest.raises(ValueError, match=message):
        ours(value)
    with pytest.raises(ValueError, match=message):
        ours.generate(value, max_new_tokens=1)


def test_positions_labels_and_embedding_ids_beyond_int64_are_named(checkpoint):
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    with pytest.raises(ValueError, match="position_ids holds 9223372036854775813, which does not fit"):
        ours(IDS[:1, :2], position_ids=np.array([[0, 2**63 + 5]], dtype=np.uint64))
    with pytest.raises(ValueError, match="position_ids holds 18446744073709551616"):
        ours(IDS[:1, :2], position_ids=[[0, 2**64]])
    with pytest.raises(ValueError, match="labels holds 18446744073709551616"):
        ours(IDS[:1, :2], labels=[[1, 2**64]])
    with pytest.raises(ValueError, match="input_ids holds 36893488147419103232"):
        ours.get_input_embeddings()([2**65])
    # ids within uint64's lower half are read as they are
    assert_close(ours(IDS.astype(np.uint64)).logits, ours(IDS).logits, atol=0)


@pytest.mark.parametrize("flags", [{}, {"use_cache": True}, {"use_cache": True, "output_hidden_states": True},
                                   {"output_attentions": True, "output_hidden_states": True}])
@pytest.mark.parametrize("cls", ["AutoModel", "AutoModelForCausalLM"])
def test_output_keys_and_access_like_transformers(checkpoint, cls, flags):
    path = checkpoint()
    ours = getattr(nemotron_c, cls).from_pretrained(path)
    theirs = getattr(transformers, cls).from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    out = ours(IDS, **flags)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(IDS), **flags)
    assert list(out.keys()) == list(ref.keys())
    first = "logits" if cls == "AutoModelForCausalLM" else "last_hidden_state"
    assert out[first] is getattr(out, first) is out[0] is out.to_tuple()[0]
    assert out.loss is None if first == "logits" else True
    if flags.get("use_cache"):
        # the cache's older name reaches the same object, as an attribute, a key and an argument
        assert out.cache is out.past_key_values is out["past_key_values"] is out["cache"]
        assert type(out)(**{first: out[0], "past_key_values": out.cache}).cache is out.cache
        with pytest.raises(TypeError, match="both 'cache' and its old name"):
            type(out)(cache=out.cache, past_key_values=out.cache)
    assert isinstance(ours(IDS, return_dict=False), tuple)


def test_outputs_are_edited_as_transformers_outputs(checkpoint):
    """Setting a field as an attribute or a key reaches the other access paths (it went to the attribute alone), the
    cache's old names are keys too, fields may be given in order, and the dict neither shrinks nor grows otherwise;
    each against Transformers' own output class."""
    out = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())(IDS, use_cache=True)
    logits = torch.as_tensor(out.logits)
    ref = TransformersCausalLMOutput(logits=logits, past_key_values=transformers.DynamicCache())
    for output, value in ((out, np.ones(1)), (ref, torch.ones(1))):
        assert "past_key_values" in output and output.get("past_key_values") is output.cache
        output.loss = value
        output["hidden_states"] = (value,)
        output.logits = None  # the key keeps its value
        assert list(output.keys()) == ["logits", "cache", "loss", "hidden_states"]
        assert output[2] is value and output.loss is value and output["hidden_states"][0] is value
        assert output.logits is None and output["logits"] is not None
        new_cache = object()
        output.past_key_values = new_cache
        assert output.cache is output["cache"] is output[1] is new_cache
        for method, call in (("__delitem__", lambda: output.__delitem__("loss")), ("pop", lambda: output.pop("loss")),
                             ("update", lambda: output.update(x=1)), ("setdefault", lambda: output.setdefault("x"))):
            with pytest.raises(Exception, match=f"You cannot use ``{method}`` on a CausalLMOutputWithPast instance"):
                call()
    positional = type(out)(None, out["logits"])
    assert list(positional.keys()) == ["logits"] and positional.logits is out["logits"]
    assert repr(type(out)(logits=1)) == "CausalLMOutputWithPast(loss=None, logits=1, cache=None, " \
                                       "hidden_states=None, attentions=None)"


def test_batch_rows_equal_rows_alone(checkpoint):
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    batch = ours(IDS).logits
    for row in range(2):
        assert_close(ours(IDS[row : row + 1]).logits, batch[row : row + 1], atol=1e-5)


def test_model_surface_for_transformers_scripts(checkpoint):
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, device_map="cpu", attn_implementation="eager")
    assert ours.eval() is ours and ours.to("cpu") is ours and ours.to(torch.device("cpu")) is ours
    assert ours.device == torch.device("cpu")
    assert ours.config.model_type == "nemotron"
    nemotron_c.AutoModelForCausalLM.from_pretrained(path, device_map={"": "cpu"})
    nemotron_c.AutoModelForCausalLM.from_pretrained(path, device_map="auto")
    with pytest.raises(ValueError, match="CPU"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path, device_map="cuda")
    with pytest.raises(ValueError, match="CPU"):
        ours.to("cuda:0")
    with pytest.raises(ValueError, match="not both"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype="float32", torch_dtype="float32")
    with pytest.raises(ValueError, match="unsupported dtype 'int2': .* int8, int4"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype="int2")
    single = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=1)
    assert single.num_threads == 1
    assert_close(single(IDS).logits, ours(IDS).logits, atol=1e-6)


def test_fork_after_use(checkpoint):
    """The thread pool survives fork(): a child process computes the same logits."""
    import multiprocessing

    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    expected = ours(IDS).logits
    FORKED["model"] = ours
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        child = pool.apply(_child_logits)
    assert_close(child, expected, atol=0)


FORKED = {}


def _child_logits():
    return FORKED["model"](IDS).logits


def test_threads_share_one_model(checkpoint):
    from concurrent.futures import ThreadPoolExecutor

    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    expected = ours(IDS).logits
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ours(IDS).logits, range(16)))
    for result in results:
        assert_close(result, expected, atol=0)


@pytest.mark.parametrize("stored", ["float32", "bfloat16"])
def test_inputs_embeds_match_transformers(checkpoint, stored):
    path = checkpoint(dtype=stored)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    reference = hf_from_pretrained(path)
    embeds = ours.get_input_embeddings()(IDS)
    assert embeds.dtype == np.float32 and embeds.shape == (2, 9, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(embeds, reference.get_input_embeddings()(torch.as_tensor(IDS)).numpy())
        expected = reference(inputs_embeds=torch.as_tensor(embeds), attention_mask=torch.as_tensor(LEFT_MASK)).logits
    got = ours(inputs_embeds=embeds, attention_mask=LEFT_MASK)
    assert_close(got.logits, expected.numpy())
    assert_close(got.logits, ours(IDS, attention_mask=LEFT_MASK).logits, atol=0)
    bare = nemotron_c.AutoModel.from_pretrained(path)
    assert_close(bare(inputs_embeds=embeds[:1, :4]).last_hidden_state, bare(IDS[:1, :4]).last_hidden_state, atol=0)
    with pytest.raises(ValueError, match="exactly one"):
        ours(IDS, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="exactly one"):
        ours()
    with pytest.raises(ValueError, match="inputs_embeds must have shape"):
        ours(inputs_embeds=embeds[..., :10])
    with pytest.raises(TypeError, match="floats"):
        ours(inputs_embeds=IDS)


def test_bad_inputs_beside_a_huge_broadcast_batch_are_refused_before_copying_it(checkpoint):
    """np.broadcast_to declares a batch it holds no memory for: a mask or position_ids of the wrong shape are
    refused before the embeddings are copied out at their declared size (150 MB here)."""
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    embeds = np.broadcast_to(ours.get_input_embeddings()(IDS[:1]), (2**16, 9, 64))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="attention_mask has shape"):
            ours(inputs_embeds=embeds, attention_mask=np.ones((2**16, 5), np.int64))
        with pytest.raises(ValueError, match="position_ids has shape"):
            ours(inputs_embeds=embeds, position_ids=np.zeros((3, 9), np.int64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_attentions_match_transformers(checkpoint):
    # Transformers' SDPA attention (its default) returns no attention weights: eager on both sides
    path = checkpoint(num_hidden_layers=3)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    reference = hf_from_pretrained(path, attn_implementation="eager")
    first = ours(IDS[:, :6], attention_mask=LEFT_MASK[:, :6], output_attentions=True)
    second = ours(IDS[:, 6:], attention_mask=LEFT_MASK, past_key_values=first.past_key_values, output_attentions=True)
    with torch.no_grad():
        ref_first = reference(torch.as_tensor(IDS[:, :6]), attention_mask=torch.as_tensor(LEFT_MASK[:, :6]),
                              use_cache=True, output_attentions=True)
        ref_second = reference(torch.as_tensor(IDS[:, 6:]), attention_mask=torch.as_tensor(LEFT_MASK),
                               cache=ref_first.cache, output_attentions=True)
    for ours_out, ref_out in ((first, ref_first), (second, ref_second)):
        assert len(ours_out.attentions) == len(ref_out.attentions) == 3
        for layer, (a, b) in enumerate(zip(ours_out.attentions, ref_out.attentions)):
            assert_close(a, b.numpy(), atol=1e-5, what=f"attentions of layer {layer}")
    bare = nemotron_c.AutoModel.from_pretrained(path)
    assert bare(IDS, output_attentions=True).attentions[0].shape == (2, 4, 9, 9)


@pytest.mark.parametrize("attn_implementation", [None, "sdpa", "eager"])
def test_padding_positions_match_either_attention_of_transformers(checkpoint, attn_implementation):
    """A left-padding position's query sees no key: Transformers' SDPA attention (the default) outputs zeros there,
    its eager attention the mean of every value; the logits and hidden states of those positions follow it. Real
    tokens are the same either way."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn_implementation)
    reference = hf_from_pretrained(path, attn_implementation=attn_implementation)
    out = ours(IDS, attention_mask=LEFT_MASK, output_hidden_states=True)
    with torch.no_grad():
        expected = reference(torch.as_tensor(IDS), attention_mask=torch.as_tensor(LEFT_MASK), output_hidden_states=True)
    assert_close(out.logits, expected.logits.numpy(), what="logits")
    assert len(out.hidden_states) == len(expected.hidden_states) == 3  # the embeddings and each of the 2 layers
    for layer, (a, b) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(a, b.numpy(), what=f"hidden states {layer}")
    other = nemotron_c.AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="sdpa" if attn_implementation == "eager" else "eager")
    differ = np.abs(other(IDS, attention_mask=LEFT_MASK).logits - out.logits).max(axis=-1) > 1e-3
    np.testing.assert_array_equal(differ, LEFT_MASK == 0)  # the padding positions, and they alone, change
    random = nemotron_c.AutoModelForCausalLM.from_config(ours.config, attn_implementation="eager")
    assert random.config._attn_implementation == "eager"
    assert pickle.loads(pickle.dumps(ours)).config._attn_implementation == attn_implementation


@pytest.mark.parametrize("value", ["flash_attention_2", "flex_attention", "bogus", 3])
def test_attention_implementations_other_than_sdpa_and_eager_are_refused(checkpoint, value):
    with pytest.raises(ValueError, match=r"attn_implementation=.* is not supported: nemotron_c computes 'sdpa' or"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(), attn_implementation=value)


# ---------------------------------------------------------------- pickling


def test_pickle_reloads_from_the_checkpoint(checkpoint):
    import pickle

    path = checkpoint(dtype="bfloat16", tie_word_embeddings=True)
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype="float16", num_threads=1, norm_eps=1e-2)
    model.generation_config.max_new_tokens = 3
    model.config.pad_token_id = 5  # a change made after loading travels with the config
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is type(model) and again.dtype == "float16" and again.num_threads == 1
    assert again.config == model.config and again.config.norm_eps == 1e-2 and again.config.pad_token_id == 5
    assert again.generation_config.max_new_tokens == 3 and again.name_or_path == path
    np.testing.assert_array_equal(again(IDS).logits, model(IDS).logits)
    head_path = checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=5, seed=2)
    head = nemotron_c.NemotronForTokenClassification.from_pretrained(head_path)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(head))(IDS).logits, head(IDS).logits)


def test_pickle_refuses_a_model_not_loaded_by_from_pretrained(checkpoint):
    import pickle


    config = nemotron_c.NemotronConfig.from_pretrained(checkpoint())
    built = nemotron_c.NemotronForCausalLM(config, read_checkpoint(checkpoint()))
    with pytest.raises(TypeError, match="only a NemotronForCausalLM made by from_pretrained can be pickled"):
        pickle.dumps(built)


def test_pickled_model_crosses_to_a_spawned_worker(checkpoint):
    import multiprocessing
    import operator

    model = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        # the model is pickled as the argument; forward runs in the worker
        out = pool.apply(operator.methodcaller("forward", IDS, use_cache=False), (model,))
    np.testing.assert_array_equal(out.logits, model(IDS).logits)


@pytest.mark.parametrize("dtype", [None, "bfloat16", "float16"])
def test_config_dtype_after_loading_is_the_models_as_in_transformers(checkpoint, dtype):
    path = checkpoint()
    theirs = transformers.NemotronForCausalLM.from_pretrained(path, dtype=dtype and getattr(torch, dtype))
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path, dtype=dtype)
    assert ours.config.dtype == str(theirs.config.dtype).removeprefix("torch.") == (dtype or "float32")


def test_from_config_takes_the_configs_dtype_as_transformers():
    settings = dict(TINY, dtype="bfloat16")
    theirs = transformers.AutoModelForCausalLM.from_config(transformers.NemotronConfig(**settings))
    ours = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings))
    assert theirs.dtype == torch.bfloat16 and ours.dtype == torch.bfloat16
    assert nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**TINY)).dtype == torch.float32


def test_a_transformers_quantization_config_is_refused_naming_ours(checkpoint):
    with pytest.raises(NotImplementedError, match="BitsAndBytesConfig.*dtype='int8' or 'int4'"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(),
                                                        quantization_config=transformers.BitsAndBytesConfig(True))
    assert nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(), quantization_config=None).dtype == torch.float32


def test_generation_config_that_is_not_json_falls_back_to_config_json(checkpoint, tmp_path):
    path = str(tmp_path / "broken_generation_config")
    shutil.copytree(checkpoint(), path)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        f.write("{not json")
    theirs = transformers.NemotronForCausalLM.from_pretrained(path).generation_config
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path).generation_config
    assert (ours.bos_token_id, ours.eos_token_id) == (theirs.bos_token_id, theirs.eos_token_id)
    assert issubclass(nemotron_c.AsyncTextIteratorStreamer, nemotron_c.BaseStreamer)
