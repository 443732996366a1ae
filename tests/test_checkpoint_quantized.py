"""int8 checkpoints (checkpoint/quantized.py): save_pretrained of an int8 model and `convert --dtype int8` write I8
weights with F32 group scales; from_pretrained maps them back without quantizing again, to the same logits bit for
bit; a float dtype dequantizes them (compared with Transformers on the dequantized float files); Transformers
refuses the folder; every malformed variant gets a clear error naming the tensor or the config key."""
import json
import mmap
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained, hf_logits
from safetensors.numpy import load_file, save_file
from test_cli import run_cli
from test_quantization import dequantize, numpy_quantize

import nemotron_c
import nemotron_c.model.weights
from nemotron_c.checkpoint.quantized import QUANTIZATION_CONFIG, QuantizedCheckpointError
from nemotron_c.checkpoint.safetensors import read_safetensors

GROUP = QUANTIZATION_CONFIG["group_size"]
WIDTHS = dict(hidden_size=GROUP, intermediate_size=2 * GROUP, num_attention_heads=4, num_key_value_heads=2)
QUANTIZED_NAMES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "up_proj.weight",
                   "down_proj.weight", "lm_head.weight")
IDS = np.array([[3, 17, 42, 5, 88, 61, 9, 2], [7, 7, 30, 64, 1, 95, 12, 40]])
Q_PROJ = "model.layers.1.self_attn.q_proj.weight"  # (64, 64): scales (64, 1)
DOWN_PROJ = "model.layers.0.mlp.down_proj.weight"  # (64, 128): scales (64, 2)
SAFETENSORS = {"float32": "F32", "bfloat16": "BF16"}


def logits(model):
    return model(IDS).logits


def greedy(model):
    return np.asarray(model.generate(IDS, attention_mask=np.ones_like(IDS), max_new_tokens=8, do_sample=False))


def file_of(array):
    """The object at the end of an array's base chain (a memory-mapped one ends in the file's mmap)."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return getattr(base, "obj", base)


def int8_weights(model):
    return {name: arrays for name, (arrays, dtype) in model._weights.items() if dtype == "int8"}


@pytest.fixture(scope="module")
def saved(checkpoint, tmp_path_factory):
    """saved(**checkpoint options) -> (float source, the folder save_pretrained wrote of it loaded as int8, that
    model built again under the current kernel set)."""
    made = {}

    def save(**options):
        key = repr(sorted(options.items()))
        if key not in made:
            source = checkpoint(**{**WIDTHS, **options})
            model = nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype="int8")
            directory = str(tmp_path_factory.mktemp("int8"))
            model.save_pretrained(directory)
            made[key] = source, directory
        source, directory = made[key]
        return source, directory, nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype="int8")

    return save


@pytest.fixture
def hostile(saved, tmp_path):
    """A copy of an int8 folder to break."""
    return shutil.copytree(saved()[1], tmp_path / "int8")


# ---------------------------------------------------------------- the round trip


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("tie", [False, True])
def test_saved_int8_model_loads_back_bit_for_bit(saved, dtype, tie, kernels):
    source, directory, model = saved(dtype=dtype, tie_word_embeddings=tie)
    again = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    assert again.dtype == "int8" and again.config.quantization_config == QUANTIZATION_CONFIG
    np.testing.assert_array_equal(logits(again), logits(model))
    np.testing.assert_array_equal(greedy(again), greedy(model))
    np.testing.assert_array_equal(again.score(IDS).sum_logprob, model.score(IDS).sum_logprob)

    # the files: the linear weights I8 with F32 scales, as the NumPy statement of the rule quantizes the float
    # ones; everything else (embedding, norms, a tied lm_head) float in the source's dtype
    config = json.loads(open(os.path.join(directory, "config.json")).read())
    assert config["dtype"] == dtype and config["quantization_config"] == QUANTIZATION_CONFIG
    written = read_safetensors(os.path.join(directory, "model.safetensors"))
    original = read_safetensors(os.path.join(source, "model.safetensors"))
    int8 = sorted(name for name, t in written.items() if t.dtype == "I8")
    assert sorted(name for name in written if name.endswith(QUANTIZED_NAMES)) == int8
    assert ("lm_head.weight" in int8) is not tie and ("lm_head.weight" in written) is not tie
    floats = {name for name in written if not name.endswith("_scale")} - set(int8)
    assert "model.embed_tokens.weight" in floats and {written[name].dtype for name in floats} == {SAFETENSORS[dtype]}
    assert sorted(name for name in written if name.endswith("_scale")) == [name + "_scale" for name in int8]
    for name in int8:
        values = np.frombuffer(written[name].data, np.int8).reshape(written[name].shape)
        scales = written[name + "_scale"]
        assert scales.dtype == "F32" and scales.shape == (values.shape[0], values.shape[1] // GROUP)
        want_values, want_scales = numpy_quantize(original[name].array("float32"), "int8")
        np.testing.assert_array_equal(values, want_values)
        np.testing.assert_array_equal(np.frombuffer(scales.data, np.float32).reshape(scales.shape), want_scales)


def test_int8_folder_loads_mapped_and_never_quantizes_again(saved, monkeypatch):
    _, directory, model = saved()

    def refuse(*args, **kwargs):
        raise AssertionError("an int8 checkpoint was quantized again")

    monkeypatch.setattr(nemotron_c.model.weights, "quantize", refuse)
    for options in ({}, {"dtype": "int8"}, {"load_in_8bit": True}, {"dtype": "auto"}):
        again = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, **options)
        assert again.dtype == "int8", options
        weights = int8_weights(again)
        assert len(weights) == 2 * 6 + 1
        for name, (values, scales) in weights.items():
            assert values.dtype == np.int8 and scales.dtype == np.float32
            assert isinstance(file_of(values), mmap.mmap) and file_of(values) is file_of(scales), name
        np.testing.assert_array_equal(logits(again), logits(model))


def test_saving_into_its_own_folder_and_sharded(saved, tmp_path):
    """Saved over the files it maps, and in shards (a weight and its scales may fall in two shards): the same."""
    _, directory, model = saved()
    own = shutil.copytree(directory, tmp_path / "own")
    loaded = nemotron_c.AutoModelForCausalLM.from_pretrained(own)
    loaded.save_pretrained(own)
    loaded.save_pretrained(own, max_shard_size="8KB")
    np.testing.assert_array_equal(logits(loaded), logits(model))
    shard_of = json.loads((own / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(shard_of.values())) > 3
    assert any(shard_of[name] != shard_of[name + "_scale"] for name in shard_of if name + "_scale" in shard_of)
    np.testing.assert_array_equal(logits(nemotron_c.AutoModelForCausalLM.from_pretrained(own)), logits(model))


def test_int8_pytorch_model_bin_reads_as_the_safetensors(saved, tmp_path):
    """The same tensors saved by torch.save (as another tool might write them) are read by the .bin reader and
    paired the same way."""
    _, directory, model = saved()
    shutil.copy(os.path.join(directory, "config.json"), tmp_path)
    torch.save({name: torch.from_numpy(array) for name, array in load_file(os.path.join(directory,
                                                                                      "model.safetensors")).items()},
               tmp_path / "pytorch_model.bin")
    again = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.dtype == "int8"
    np.testing.assert_array_equal(logits(again), logits(model))


@pytest.mark.parametrize("name, options", [
    ("NemotronForSequenceClassification", dict(num_labels=3, pad_token_id=0)),
    ("NemotronForTokenClassification", dict(num_labels=5, seed=2)),
])
def test_heads_stay_float(checkpoint, tmp_path, name, options):
    source = checkpoint(model_class=getattr(transformers, name), dtype="bfloat16", **WIDTHS, **options)
    model = getattr(nemotron_c, name).from_pretrained(source, dtype="int8")
    model.save_pretrained(tmp_path)
    written = read_safetensors(str(tmp_path / "model.safetensors"))
    assert written["score.weight"].dtype == "BF16" and written[Q_PROJ].dtype == "I8"
    again = getattr(nemotron_c, name).from_pretrained(tmp_path)
    assert again.dtype == "int8"
    np.testing.assert_array_equal(again(IDS).logits, model(IDS).logits)


# ---------------------------------------------------------------- float dtypes dequantize


def test_float_dtype_dequantizes_and_transformers_agrees(saved, tmp_path):
    """dtype="float32" on an int8 folder gives the weights q * scale; saved, that float checkpoint is an ordinary
    one which Transformers reads to the int8 model's logits."""
    _, directory, model = saved()
    stored = load_file(os.path.join(directory, "model.safetensors"))
    dense = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype="float32")
    assert dense.dtype == "float32" and not hasattr(dense.config, "quantization_config")
    np.testing.assert_array_equal(dense._weights["layers.1.self_attn.q_proj.weight"][0],
                                  dequantize(stored[Q_PROJ], stored[Q_PROJ + "_scale"], "int8"))
    assert_close(logits(dense), logits(model), atol=2e-5, what="dequantized float32")
    dense.save_pretrained(tmp_path)
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), logits(model), atol=1e-4, what="Transformers")
    half = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype="bfloat16")
    assert half.dtype == "bfloat16"
    assert_close(logits(half), logits(model), atol=0.05, what="dequantized bfloat16")


def test_transformers_refuses_the_int8_folder(saved):
    """Without quant_method in quantization_config, Transformers stops before reading a weight (with an unknown
    quant_method it would load the int8 values as float weights, unscaled, after a warning)."""
    _, directory, _ = saved()
    for options in ({}, {"dtype": torch.float32}):
        with pytest.raises(ValueError, match="quantization config .* has no `quant_method`"):
            transformers.AutoModelForCausalLM.from_pretrained(directory, **options)


# ---------------------------------------------------------------- convert


def test_convert_to_int8_and_back(saved, tmp_path):
    """convert --dtype int8 writes the bytes save_pretrained writes for the model quantized at load; converting
    that folder keeps it, and --dtype float32 dequantizes it."""
    source, directory, model = saved(dtype="bfloat16")
    run = run_cli("convert", source, str(tmp_path / "int8"), "--dtype", "int8")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "int8" / "model.safetensors").read_bytes() == \
        open(os.path.join(directory, "model.safetensors"), "rb").read()
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["quantization_config"] == QUANTIZATION_CONFIG
    converted = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "int8")
    assert converted.dtype == "int8"
    np.testing.assert_array_equal(logits(converted), logits(model))

    run = run_cli("convert", str(tmp_path / "int8"), str(tmp_path / "again"), "--max-shard-size", "20KB")
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(logits(nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "again")),
                                  logits(model))
    run = run_cli("convert", str(tmp_path / "int8"), str(tmp_path / "float"), "--dtype", "float32")
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "float" / "config.json").read_text())
    assert config["dtype"] == "float32" and "quantization_config" not in config
    dense = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "float")
    assert dense.dtype == "float32"
    assert_close(logits(dense), logits(model), atol=2e-5)


def test_info_counts_the_int8_weights_with_their_scales(saved):
    _, directory, model = saved()
    run = run_cli("info", "--model", directory, "--json")
    assert run.returncode == 0, run.stderr
    weights = json.loads(run.stdout)["weights"]
    values = [arrays for arrays, dtype in model._weights.values() if dtype == "int8"]
    assert weights["int8"] == {"tensors": len(values), "bytes": sum(v.nbytes + s.nbytes for v, s in values)}


def test_convert_refuses_rows_int8_cannot_hold_before_writing(checkpoint, tmp_path):
    source = checkpoint()  # intermediate_size 96: down_proj rows of 96 values
    run = run_cli("convert", source, str(tmp_path / "out"), "--dtype", "int8")
    assert run.returncode == 1
    assert "'model.layers.0.mlp.down_proj.weight' has rows of 96 values, not a multiple of the 64" in run.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- what a malformed int8 folder gets


def rewrite(directory, change):
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def set_quantization_config(directory, value):
    path = os.path.join(directory, "config.json")
    config = json.loads(open(path).read())
    if value is None:
        config.pop("quantization_config")
    else:
        config["quantization_config"] = value
    with open(path, "w") as f:
        json.dump(config, f)


def scale_of(name, change):
    def apply(tensors):
        tensors[name + "_scale"] = change(tensors[name + "_scale"])
    return apply


def nan_at(scales):
    scales = scales.copy()
    scales[3, -1] = np.nan
    return scales


def int8_in_place_of(name):
    def apply(tensors):
        tensors[name] = np.zeros(tensors[name].shape, np.int8)
    return apply


@pytest.mark.parametrize("change, message", [
    (scale_of(DOWN_PROJ, lambda s: s[:, :1].copy()), rf"'{DOWN_PROJ}_scale' .* has shape \[64, 1\]; the int8 "
                                                     r"weight \[64, 128\] with groups of 64 needs \[64, 2\]"),
    (scale_of(Q_PROJ, lambda s: np.concatenate([s, s], axis=1)), rf"'{Q_PROJ}_scale' .* has shape \[64, 2\]"),
    (scale_of(Q_PROJ, lambda s: s[:-1].copy()), rf"'{Q_PROJ}_scale' .* has shape \[63, 1\]"),
    (lambda t: t.pop(Q_PROJ + "_scale"), rf"'{Q_PROJ}' .* is int8 but its scales '{Q_PROJ}_scale' are missing"),
    (scale_of(Q_PROJ, nan_at), rf"'{Q_PROJ}_scale' .* holds a scale that is not finite"),
    (scale_of(Q_PROJ, lambda s: np.full_like(s, np.inf)), rf"'{Q_PROJ}_scale' .* not finite"),
    (scale_of(Q_PROJ, lambda s: s.astype(np.float16)), rf"'{Q_PROJ}_scale' .* is stored as F16; int8 scales are F32"),
    (lambda t: t.pop(Q_PROJ), rf"'{Q_PROJ}_scale' .* scales no int8 weight: '{Q_PROJ}' is absent"),
    (lambda t: t.update({Q_PROJ: dequantize(t[Q_PROJ], t[Q_PROJ + "_scale"], "int8")}),
     rf"'{Q_PROJ}_scale' .* scales no int8 weight: '{Q_PROJ}' is F32"),
    (int8_in_place_of("model.norm.weight"), r"'model.norm.weight' .* is stored as I8, but only the linear layers' "
                                            r"weights may be int8"),
    (int8_in_place_of("model.embed_tokens.weight"), r"'model.embed_tokens.weight' .* stored as I8, but only"),
    (lambda t: t.update({Q_PROJ: t[Q_PROJ].reshape(-1)}), rf"'{Q_PROJ}' .* int8 weight of shape \[4096\] is not"),
])
def test_malformed_tensors_are_named(hostile, change, message):
    rewrite(hostile, change)
    with pytest.raises(QuantizedCheckpointError, match=message):
        nemotron_c.AutoModelForCausalLM.from_pretrained(hostile)


@pytest.mark.parametrize("value, message", [
    ({**QUANTIZATION_CONFIG, "group_size": 32}, "group_size 32; nemotron_c's int8 checkpoints have 64"),
    ({**QUANTIZATION_CONFIG, "bits": 4}, "bits 4"),
    ({**QUANTIZATION_CONFIG, "bits": 8.0}, "bits 8.0"),
    ({**QUANTIZATION_CONFIG, "symmetric": False}, "symmetric False"),
    ({**QUANTIZATION_CONFIG, "scale_dtype": "bfloat16"}, "scale_dtype 'bfloat16'"),
    ({**QUANTIZATION_CONFIG, "format": "int-quantized"}, "format 'int-quantized'"),
    ({**QUANTIZATION_CONFIG, "zero_point": True}, "unknown key.* zero_point"),
    ({key: value for key, value in QUANTIZATION_CONFIG.items() if key != "group_size"}, "lacks 'group_size'"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 64}, "quant_method 'gptq'"),
    ([8, 64], "is list, not an object"),
])
def test_wrong_quantization_config_is_named(hostile, value, message):
    set_quantization_config(hostile, value)
    with pytest.raises(QuantizedCheckpointError, match=message):
        nemotron_c.AutoModelForCausalLM.from_pretrained(hostile)


def test_int8_tensors_without_quantization_config(hostile):
    set_quantization_config(hostile, None)
    with pytest.raises(ValueError, match=r"is stored as I8, which nemotron_c does not support"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(hostile)


def test_group_size_from_the_scales_shape_is_checked(hostile):
    """Scales of 32-wide groups under a config claiming 64: the shapes disagree with the config's group size."""
    def regroup(tensors):
        for name in [n for n in tensors if n.endswith("_scale")]:
            tensors[name] = np.repeat(tensors[name], 2, axis=1)
    rewrite(hostile, regroup)
    with pytest.raises(QuantizedCheckpointError, match=r"with groups of 64 needs"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(hostile)
