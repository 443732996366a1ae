"""int8 weights in the core: _core.quantize_int8 against a NumPy statement of the rule, and a core model on int8
weights against the same model on the dequantized float32 weights (the kernels must be exact with respect to the
dequantized weights, up to float rounding); from_pretrained(dtype="int8") against the float model on the
dequantized weights."""

import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import nemotron_c
from helpers.checkpoints import write_random_checkpoint
from helpers.compare import assert_close
from nemotron_c import _core

GROUP = _core.DTYPE_INFO["int8"].block_size
INT8 = _core.DTYPE_INFO["int8"].code


def numpy_quantize(w):
    """The rule of nt_quantize_q8: per group of GROUP along a row, scale = max|w| / 127 in float32,
    q = w / scale rounded half to even (NumPy's round), clamped to [-127, 127]; a group of zeros has scale 0."""
    w = np.asarray(w, dtype=np.float32)
    groups = w.reshape(w.shape[0], -1, GROUP)
    scales = (np.abs(groups).max(axis=-1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales == 0, np.float32(1), scales)[..., None]
    q = np.where(scales[..., None] == 0, 0, np.clip(np.round(groups / safe), -127, 127))
    return q.astype(np.int8).reshape(w.shape), scales


def dequantize(q, scales):
    return (q.reshape(q.shape[0], -1, GROUP).astype(np.float32) * scales[..., None]).reshape(q.shape)


def quantize(weights, dtype="float32", num_threads=1):
    N, K = weights.shape
    q = np.empty((N, K), dtype=np.int8)
    scales = np.empty((N, K // GROUP), dtype=np.float32)
    _core.quantize_int8(q, scales, weights, _core.DTYPE_INFO[dtype].code, (N, K), num_threads)
    return q, scales


def random_weights(N, K, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((N, K)) * rng.uniform(0.01, 3, size=(N, 1))).astype(np.float32)
    w[1, :GROUP] = 0  # a group of zeros
    w[2, :GROUP] = np.concatenate([[127], np.arange(GROUP - 1) - 30.5])  # scale 1 and halves: ties to even
    return w


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_quantize_int8_matches_numpy(dtype, num_threads):
    w = random_weights(37, 5 * GROUP)
    if dtype == "float32":
        stored, widened = w, w
    elif dtype == "float16":
        stored = w.astype(np.float16)
        widened = stored.astype(np.float32)
    else:  # bfloat16 by truncation, widened back exactly
        stored = (w.view(np.uint32) >> 16).astype(np.uint16)
        widened = (stored.astype(np.uint32) << 16).view(np.float32)
    q, scales = quantize(stored, dtype, num_threads)
    want_q, want_scales = numpy_quantize(widened)
    np.testing.assert_array_equal(scales, want_scales)
    np.testing.assert_array_equal(q, want_q)
    assert scales[1, 0] == 0 and not q[1, :GROUP].any()
    # the error of each weight is at most half a step of its group
    assert np.all(np.abs(dequantize(q, scales) - widened) <= np.repeat(scales, GROUP, axis=1) * 0.5001)


def test_quantize_int8_rounds_ties_to_even():
    w = np.zeros((1, GROUP), dtype=np.float32)
    w[0, :6] = [127, 2.5, 3.5, -2.5, -0.5, 126.5]
    q, scales = quantize(w)
    assert scales[0, 0] == 1
    assert q[0, :6].tolist() == [127, 2, 4, -2, 0, 126]


def test_quantize_int8_refuses_what_it_cannot_do():
    w = random_weights(4, 2 * GROUP)
    with pytest.raises(ValueError, match="not a multiple of the group size 64"):
        _core.quantize_int8(np.empty((4, 96), np.int8), np.empty((4, 1), np.float32), w[:, :96].copy(),
                            _core.DTYPE_INFO["float32"].code, (4, 96))
    bad = w.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="row 3 holds a weight that is not finite"):
        quantize(bad)
    with pytest.raises(ValueError, match="cannot quantize int8 weights"):
        _core.quantize_int8(np.empty((4, 2 * GROUP), np.int8), np.empty((4, 2), np.float32),
                            np.zeros((4, 2 * GROUP), np.int8), INT8, (4, 2 * GROUP))
    with pytest.raises(ValueError, match="holds 2048 bytes, its shape and dtype need 4096"):
        _core.quantize_int8(np.empty((8, 2 * GROUP), np.int8), np.empty((8, 2), np.float32), w,
                            _core.DTYPE_INFO["float32"].code, (8, 2 * GROUP))
    with pytest.raises(ValueError, match="scales must have shape"):
        _core.quantize_int8(np.empty((4, 2 * GROUP), np.int8), np.empty((4, 1), np.float32), w,
                            _core.DTYPE_INFO["float32"].code, (4, 2 * GROUP))
    with pytest.raises(TypeError, match="data must be a 2-D array of format 'b'"):
        _core.quantize_int8(np.empty((4, 2 * GROUP), np.uint8), np.empty((4, 2), np.float32), w,
                            _core.DTYPE_INFO["float32"].code, (4, 2 * GROUP))


# ---------------------------------------------------------------- a core model on int8 weights

V, H, I, L, NH, NKV, D, R = 96, 64, 128, 2, 4, 2, 16, 8
LAYER_SHAPES = [(H,), (H,), (NH * D, H), None, (NKV * D, H), None, (NKV * D, H), None, (H, NH * D), None,
                (H,), (H,), (I, H), None, (H, I), None]  # nt_layer_tensor order; None: no bias


def core_config():
    return {
        "vocab_size": V, "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
        "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": D, "rotary_dim": R,
        "inv_freq": (1.0 / 10000 ** (np.arange(0, R, 2) / R)).astype(np.float32), "rope_attention_scaling": 1.0,
        "norm_eps": 1e-5, "hidden_act": 0, "attention_bias": 0, "mlp_bias": 0, "tie_word_embeddings": 1,
    }


def model_weights(seed=1):
    """Random float32 weights in the core's tensor order: embed_tokens, norm weight and bias, no lm_head (tied)."""
    rng = np.random.default_rng(seed)
    shapes = [(V, H), (H,), (H,), None] + LAYER_SHAPES * L
    return [None if s is None else (rng.standard_normal(s) * (0.1 if len(s) == 1 else 0.08)).astype(np.float32)
            for s in shapes]


def logits_of(model, ids):
    B, T = ids.shape
    logits = np.empty((B, T, V), dtype=np.float32)
    model.forward(input_ids=ids, position_ids=np.tile(np.arange(T, dtype=np.int64), (B, 1)),
                  keep_positions=np.arange(T, dtype=np.int64), logits=logits)
    return logits


@pytest.mark.parametrize("kernels", ["portable", "auto"])
def test_int8_model_matches_its_dequantized_float_model(kernels):
    """Every matrix (embedding and tied lm_head included) in int8: the logits and scores are those of the float32
    model whose weights are the dequantized int8 ones, for decode (one token) and prefill (many) shapes."""
    weights = model_weights()
    int8_tensors, float_tensors = [], []
    for w in weights:
        if w is None:
            int8_tensors.append((None, 0, (1,)))
            float_tensors.append((None, 0, (1,)))
        elif w.ndim == 1:
            int8_tensors.append((w, _core.DTYPE_INFO["float32"].code, w.shape))
            float_tensors.append((w, _core.DTYPE_INFO["float32"].code, w.shape))
        else:
            q, scales = quantize(w)
            int8_tensors.append((q, INT8, w.shape, scales))
            float_tensors.append((dequantize(q, scales), _core.DTYPE_INFO["float32"].code, w.shape))
    int8_model = _core.Model(core_config(), int8_tensors, kernels, 2)
    float_model = _core.Model(core_config(), float_tensors, kernels, 2)
    rng = np.random.default_rng(2)
    for B, T in [(1, 1), (3, 1), (2, 13)]:
        ids = rng.integers(0, V, size=(B, T), dtype=np.int32)
        ours, reference = logits_of(int8_model, ids), logits_of(float_model, ids)
        np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=0)
        assert np.abs(reference).max() > 0.1  # the comparison is not between near-zero logits
    # scoring reads the lm_head through row views (nt_tensor_rows), which carry the scales along
    ids = rng.integers(0, V, size=(2, 9), dtype=np.int32)
    scores = []
    for model in (int8_model, float_model):
        logprobs = np.empty((2, 9), dtype=np.float32)
        model.score(input_ids=ids, position_ids=np.tile(np.arange(9, dtype=np.int64), (2, 1)),
                    targets=np.roll(ids, -1, axis=1), logprobs=logprobs)
        scores.append(logprobs)
    np.testing.assert_allclose(scores[0], scores[1], atol=2e-5, rtol=0)


def test_int8_model_refuses_bad_scales():
    weights = model_weights()
    tensors = [(None, 0, (1,)) if w is None else (w, _core.DTYPE_INFO["float32"].code, w.shape) for w in weights]
    q, scales = quantize(weights[4 + 2])  # layer 0's q_proj
    cases = [
        ((q, INT8, q.shape), "need per-group scales"),
        ((q, INT8, q.shape, scales[:, :-1].copy()), "bytes of scales, its shape needs"),
        ((q, INT8, q.shape, scales.astype(np.float64)), "scales must be a 2-D array of format 'f'"),
        ((weights[4 + 2], _core.DTYPE_INFO["float32"].code, q.shape, scales), "take no per-group scales"),
    ]
    for tensor, message in cases:
        bad = list(tensors)
        bad[4 + 2] = tensor
        with pytest.raises((ValueError, TypeError), match=message):
            _core.Model(core_config(), bad, "auto", 1)


# ---------------------------------------------------------------- from_pretrained(dtype="int8")

QUANTIZED_NAMES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "up_proj.weight",
                   "down_proj.weight", "lm_head.weight")
IDS = np.array([[3, 17, 42, 5, 88, 61, 9, 2], [7, 7, 30, 64, 1, 95, 12, 40]])


@pytest.fixture(scope="module")
def float_and_dequantized(tmp_path_factory):
    """A random float32 checkpoint (widths multiples of the group) and the same with every matrix int8 quantizes
    replaced by its dequantized values, as NumPy states the rule."""
    source = write_random_checkpoint(tmp_path_factory.mktemp("int8_source"), hidden_size=GROUP,
                                     intermediate_size=2 * GROUP, num_attention_heads=4, num_key_value_heads=2)
    target = str(tmp_path_factory.mktemp("int8_dequantized"))
    shutil.copy(os.path.join(source, "config.json"), target)
    tensors = load_file(os.path.join(source, "model.safetensors"))
    for name, w in tensors.items():
        if name.endswith(QUANTIZED_NAMES):
            tensors[name] = dequantize(*numpy_quantize(w))
    save_file(tensors, os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
    return source, target


def test_int8_model_equals_the_float_model_on_dequantized_weights(float_and_dequantized, kernels):
    source, dequantized = float_and_dequantized
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype="int8")
    assert model.dtype == "int8"
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(dequantized)
    assert_close(model(IDS).logits, reference(IDS).logits, atol=2e-5, what="int8 logits")
    mask = np.ones_like(IDS)
    np.testing.assert_array_equal(model.generate(IDS, attention_mask=mask, max_new_tokens=12, do_sample=False),
                                  reference.generate(IDS, attention_mask=mask, max_new_tokens=12, do_sample=False))
    ours = model.score(IDS)
    assert_close(ours.sum_logprob, reference.score(IDS).sum_logprob, atol=1e-4, what="scores")


def test_int8_error_against_float32_is_small(float_and_dequantized):
    """The quantization's cost on random Gaussian weights, relative to the spread of the float32 logits: measured
    1.4% root-mean-square and 6% at the worst logit."""
    source, _ = float_and_dequantized
    exact = nemotron_c.AutoModelForCausalLM.from_pretrained(source)(IDS).logits
    int8 = nemotron_c.AutoModelForCausalLM.from_pretrained(source, load_in_8bit=True)(IDS).logits
    error = (int8 - exact) / exact.std()
    assert np.sqrt(np.mean(error ** 2)) < 0.03 and np.abs(error).max() < 0.1, (np.sqrt(np.mean(error ** 2)),
                                                                                  np.abs(error).max())


def test_int8_results_do_not_depend_on_threads(float_and_dequantized):
    source, _ = float_and_dequantized
    one = nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype="int8", num_threads=1)(IDS).logits
    two = nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype="int8", num_threads=2)(IDS).logits
    np.testing.assert_array_equal(one, two)


def test_int8_refusals(float_and_dequantized, tmp_path):
    source, _ = float_and_dequantized
    with pytest.raises(ValueError, match="load_in_8bit=True .* dtype='bfloat16'"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(source, load_in_8bit=True, dtype="bfloat16")
    odd = write_random_checkpoint(tmp_path / "odd")  # intermediate_size 96: down_proj rows of 96 values
    with pytest.raises(ValueError, match=r"'layers.0.mlp.down_proj.weight' has rows of 96 values, not a multiple"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(odd, dtype="int8")
