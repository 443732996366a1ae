"""int8 and int4 checkpoints (checkpoint/quantized.py): save_pretrained of a quantized model and `convert --dtype
int8/int4` write the values (I8, or U8 two a byte) with F32 group scales; from_pretrained maps them back without
quantizing again, to the same logits bit for bit on every kernel set; a float dtype dequantizes them (compared with
Transformers on the dequantized float files); the other quantized dtype is refused; Transformers refuses the folder;
every malformed variant gets a clear error naming the tensor or the config key."""
import json
import mmap
import os
import re
import shutil

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.kernel_sets import SETS, load_on
from helpers.transformers_reference import hf_from_pretrained, hf_logits
from safetensors.numpy import load_file, save_file
from test_cli import run_cli
from test_quantization import dequantize, numpy_quantize

import nemotron_c
import nemotron_c.checkpoint.saving
import nemotron_c.model.weights
from nemotron_c.checkpoint.quantized import (FORMATS, QUANTIZATION_CONFIGS, QuantizedCheckpointError,
                                             check_quantization_config)
from nemotron_c.checkpoint.safetensors import read_safetensors
from nemotron_c.checkpoint.saving import TensorToSave, write_safetensors

QUANTIZED = tuple(FORMATS)
OTHER = {"int8": "int4", "int4": "int8"}
BITS = {dtype: config["bits"] for dtype, config in QUANTIZATION_CONFIGS.items()}
# widths that are multiples of both groups (64, 32)
WIDTHS = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
QUANTIZED_NAMES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "up_proj.weight",
                   "down_proj.weight", "lm_head.weight")
IDS = np.array([[3, 17, 42, 5, 88, 61, 9, 2], [7, 7, 30, 64, 1, 95, 12, 40]])
Q_PROJ = "model.layers.1.self_attn.q_proj.weight"  # (64, 64): int8 values (64, 64), scales (64, 1); int4 (64, 32), (64, 2)
DOWN_PROJ = "model.layers.0.mlp.down_proj.weight"  # (64, 128): int8 scales (64, 2); int4 (64, 4)
SAFETENSORS = {"float32": "F32", "bfloat16": "BF16"}


def header_length(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8), "little")


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


def quantized_weights(model, quantized):
    return {name: arrays for name, (arrays, dtype) in model._weights.items() if dtype == quantized}


@pytest.fixture(scope="module")
def saved(checkpoint, tmp_path_factory):
    """saved(quantized, **checkpoint options) -> (float source, the folder save_pretrained wrote of it loaded as
    `quantized`, that model built again under the current kernel set)."""
    made = {}

    def save(quantized, **options):
        key = repr((quantized, sorted(options.items())))
        if key not in made:
            source = checkpoint(**{**WIDTHS, **options})
            model = nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype=quantized)
            directory = str(tmp_path_factory.mktemp(quantized))
            model.save_pretrained(directory)
            made[key] = source, directory
        source, directory = made[key]
        return source, directory, nemotron_c.AutoModelForCausalLM.from_pretrained(source, dtype=quantized)

    return save


@pytest.fixture(params=QUANTIZED)
def hostile(saved, tmp_path, request):
    """(a copy of a quantized folder to break, its QuantizedFormat)."""
    return shutil.copytree(saved(request.param)[1], tmp_path / request.param), FORMATS[request.param]


# ---------------------------------------------------------------- the round trip


@pytest.mark.parametrize("quantized", QUANTIZED)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("kernels", SETS)
def test_saved_quantized_model_loads_back_bit_for_bit(saved, quantized, dtype, tie, kernels, monkeypatch):
    source, directory, _ = saved(quantized, dtype=dtype, tie_word_embeddings=tie)
    model = load_on(source, kernels, monkeypatch, dtype=quantized)
    again = load_on(directory, kernels, monkeypatch)
    assert again.kernels == model.kernels == kernels
    assert again.dtype == quantized and again.config.quantization_config == QUANTIZATION_CONFIGS[quantized]
    assert again.num_parameters() == model.num_parameters()
    np.testing.assert_array_equal(logits(again), logits(model))
    np.testing.assert_array_equal(greedy(again), greedy(model))
    np.testing.assert_array_equal(again.score(IDS).sum_logprob, model.score(IDS).sum_logprob)

    # the files: the linear weights' values (I8, or U8 two a byte) with F32 scales, as the NumPy statement of the
    # rule quantizes the float ones; everything else (embedding, norms, a tied lm_head) float in the source's dtype
    fmt = FORMATS[quantized]
    config = json.loads(open(os.path.join(directory, "config.json")).read())
    assert config["dtype"] == dtype and config["quantization_config"] == QUANTIZATION_CONFIGS[quantized]
    written = read_safetensors(os.path.join(directory, "model.safetensors"))
    original = read_safetensors(os.path.join(source, "model.safetensors"))
    values = sorted(name for name, t in written.items() if t.dtype == fmt.stored)
    assert sorted(name for name in written if name.endswith(QUANTIZED_NAMES)) == values
    assert ("lm_head.weight" in values) is not tie and ("lm_head.weight" in written) is not tie
    floats = {name for name in written if not name.endswith("_scale")} - set(values)
    assert "model.embed_tokens.weight" in floats and {written[name].dtype for name in floats} == {SAFETENSORS[dtype]}
    assert sorted(name for name in written if name.endswith("_scale")) == [name + "_scale" for name in values]
    for name in values:
        N, K = original[name].shape
        stored = np.frombuffer(written[name].data, fmt.numpy_type).reshape(written[name].shape)
        scales = written[name + "_scale"]
        assert stored.shape == (N, K * BITS[quantized] // 8)
        assert scales.dtype == "F32" and scales.shape == (N, K // fmt.group_size)
        want_values, want_scales = numpy_quantize(original[name].array("float32"), quantized)
        np.testing.assert_array_equal(stored, want_values)
        np.testing.assert_array_equal(np.frombuffer(scales.data, np.float32).reshape(scales.shape), want_scales)


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_quantized_folder_loads_mapped_and_never_quantizes_again(saved, monkeypatch, quantized):
    _, directory, model = saved(quantized)

    def refuse(*args, **kwargs):
        raise AssertionError("a quantized checkpoint was quantized again")

    monkeypatch.setattr(nemotron_c.model.weights, "quantize", refuse)
    for options in ({}, {"dtype": quantized}, {f"load_in_{BITS[quantized]}bit": True}, {"dtype": "auto"}):
        again = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, **options)
        assert again.dtype == quantized, options
        weights = quantized_weights(again, quantized)
        assert len(weights) == 2 * 6 + 1
        for name, (values, scales) in weights.items():
            assert values.dtype == FORMATS[quantized].numpy_type and scales.dtype == np.float32
            assert isinstance(file_of(values), mmap.mmap) and file_of(values) is file_of(scales), name
        np.testing.assert_array_equal(logits(again), logits(model))


@pytest.mark.parametrize("quantized", QUANTIZED)
@pytest.mark.parametrize("kernels", SETS)
def test_values_at_an_unaligned_offset_are_mapped_as_they_are(saved, tmp_path, monkeypatch, quantized, kernels):
    """Another writer may leave the values at any offset of the file (here 2 bytes past a 64-byte boundary, behind a
    one-value F16 tensor): they are still used in place, the kernels reading them unaligned; the scales, which
    NumPy needs aligned, are copied."""
    _, directory, _ = saved(quantized)
    model = load_on(directory, kernels, monkeypatch)
    stored = read_safetensors(os.path.join(directory, "model.safetensors"))
    tensors = [TensorToSave.of("a.first", np.zeros(1, np.float16), "float16")]
    numpy_types = {"F32": np.float32, "BF16": np.uint16, "I8": np.int8, "U8": np.uint8}
    dtypes = {"F32": "float32", "BF16": "bfloat16", FORMATS[quantized].stored: quantized}
    for name, t in stored.items():
        tensors.append(TensorToSave(name, dtypes[t.dtype], t.shape,
                                    lambda t=t: np.frombuffer(t.data, numpy_types[t.dtype]).reshape(t.shape)))
    shutil.copy(os.path.join(directory, "config.json"), tmp_path)
    write_safetensors(str(tmp_path / "model.safetensors"), tensors, {"format": "pt"})
    again = load_on(tmp_path, kernels, monkeypatch)
    values, scales = again._weights["layers.1.self_attn.q_proj.weight"][0]
    assert values.ctypes.data % 4 == 2 and isinstance(file_of(values), mmap.mmap)
    assert scales.ctypes.data % 4 == 0
    np.testing.assert_array_equal(logits(again), logits(model))


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_saving_into_its_own_folder_and_sharded(saved, tmp_path, quantized):
    """Saved over the files it maps, and in shards (a weight and its scales may fall in two shards): the same."""
    _, directory, model = saved(quantized)
    own = shutil.copytree(directory, tmp_path / "own")
    loaded = nemotron_c.AutoModelForCausalLM.from_pretrained(own)
    loaded.save_pretrained(own)
    loaded.save_pretrained(own, max_shard_size="4KB")
    np.testing.assert_array_equal(logits(loaded), logits(model))
    index = json.loads((own / "model.safetensors.index.json").read_text())
    # as Transformers' index: the model's num_parameters (the matrices', not their stored values' and scales')
    assert index["metadata"]["total_parameters"] == loaded.num_parameters() == model.num_parameters()
    assert index["metadata"]["total_size"] == sum(os.path.getsize(own / f) - 8 - header_length(own / f)
                                                  for f in set(index["weight_map"].values()))
    shard_of = index["weight_map"]
    assert len(set(shard_of.values())) > 3
    assert any(shard_of[name] != shard_of[name + "_scale"] for name in shard_of if name + "_scale" in shard_of)
    np.testing.assert_array_equal(logits(nemotron_c.AutoModelForCausalLM.from_pretrained(own)), logits(model))


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_an_interrupted_dequantized_save_into_its_own_folder_leaves_it_loadable(saved, tmp_path, monkeypatch,
                                                                               quantized):
    """config.json is put in place after the weights: a float save interrupted over an int8 or int4 folder leaves
    its quantization_config beside its quantized weights."""
    _, directory, model = saved(quantized)
    own = shutil.copytree(directory, tmp_path / "own")
    dequantized = nemotron_c.AutoModelForCausalLM.from_pretrained(own, dtype="float32")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nemotron_c.checkpoint.saving, "write_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dequantized.save_pretrained(own)
    monkeypatch.undo()
    assert sorted(os.listdir(own)) == sorted(os.listdir(directory))
    np.testing.assert_array_equal(logits(nemotron_c.AutoModelForCausalLM.from_pretrained(own)), logits(model))


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_quantized_pytorch_model_bin_reads_as_the_safetensors(saved, tmp_path, quantized):
    """The same tensors saved by torch.save (as another tool might write them) are read by the .bin reader and
    paired the same way."""
    _, directory, model = saved(quantized)
    shutil.copy(os.path.join(directory, "config.json"), tmp_path)
    torch.save({name: torch.from_numpy(array) for name, array in load_file(os.path.join(directory,
                                                                                      "model.safetensors")).items()},
               tmp_path / "pytorch_model.bin")
    again = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.dtype == quantized
    np.testing.assert_array_equal(logits(again), logits(model))


@pytest.mark.parametrize("quantized", QUANTIZED)
@pytest.mark.parametrize("name, options", [
    ("NemotronForSequenceClassification", dict(num_labels=3, pad_token_id=0)),
    ("NemotronForTokenClassification", dict(num_labels=5, seed=2)),
])
def test_heads_stay_float(checkpoint, tmp_path, name, options, quantized):
    source = checkpoint(model_class=getattr(transformers, name), dtype="bfloat16", **WIDTHS, **options)
    model = getattr(nemotron_c, name).from_pretrained(source, dtype=quantized)
    model.save_pretrained(tmp_path)
    written = read_safetensors(str(tmp_path / "model.safetensors"))
    assert written["score.weight"].dtype == "BF16" and written[Q_PROJ].dtype == FORMATS[quantized].stored
    again = getattr(nemotron_c, name).from_pretrained(tmp_path)
    assert again.dtype == quantized
    np.testing.assert_array_equal(again(IDS).logits, model(IDS).logits)


# ---------------------------------------------------------------- float dtypes dequantize, the other one is refused


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_float_dtype_dequantizes_and_transformers_agrees(saved, tmp_path, quantized):
    """dtype="float32" on a quantized folder gives the weights q * scale; saved, that float checkpoint is an
    ordinary one which Transformers reads to the quantized model's logits."""
    _, directory, model = saved(quantized)
    stored = load_file(os.path.join(directory, "model.safetensors"))
    dense = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype="float32")
    assert dense.dtype == "float32" and not hasattr(dense.config, "quantization_config")
    np.testing.assert_array_equal(dense._weights["layers.1.self_attn.q_proj.weight"][0],
                                  dequantize(stored[Q_PROJ], stored[Q_PROJ + "_scale"], quantized))
    assert_close(logits(dense), logits(model), atol=2e-5, what="dequantized float32")
    dense.save_pretrained(tmp_path)
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), logits(model), atol=1e-4, what="Transformers")
    half = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype="bfloat16")
    assert half.dtype == "bfloat16"
    assert_close(logits(half), logits(model), atol=0.05, what="dequantized bfloat16")


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_the_other_quantized_dtype_is_refused(saved, tmp_path, quantized):
    """An int4 folder loaded or converted as int8 (or the reverse) would be quantized a second time, larger or
    coarser and never better than its float checkpoint: refused by name, before anything is written."""
    _, directory, _ = saved(quantized)
    other = OTHER[quantized]
    message = rf"is stored in {quantized} \(a nemotron_c {quantized} checkpoint\)"
    for options in ({"dtype": other}, {f"load_in_{BITS[other]}bit": True}):
        with pytest.raises(ValueError, match=message + rf": dtype='{other}' would quantize its weights a second"):
            nemotron_c.AutoModelForCausalLM.from_pretrained(directory, **options)
    run = run_cli("convert", directory, str(tmp_path / "out"), "--dtype", other)
    assert run.returncode == 1 and re.search(message + f": converting it to {other} would", run.stderr), run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_transformers_refuses_the_quantized_folder(saved, quantized):
    """Without quant_method in quantization_config, Transformers stops before reading a weight (with an unknown
    quant_method it would load the stored values as float weights, unscaled, after a warning)."""
    _, directory, _ = saved(quantized)
    for options in ({}, {"dtype": torch.float32}):
        with pytest.raises(ValueError, match="quantization config .* has no `quant_method`"):
            transformers.AutoModelForCausalLM.from_pretrained(directory, **options)


# ---------------------------------------------------------------- convert


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_convert_to_quantized_and_back(saved, tmp_path, quantized):
    """convert --dtype int8/int4 writes the bytes save_pretrained writes for the model quantized at load; converting
    that folder keeps it, and --dtype float32 dequantizes it."""
    source, directory, model = saved(quantized, dtype="bfloat16")
    run = run_cli("convert", source, str(tmp_path / quantized), "--dtype", quantized)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / quantized / "model.safetensors").read_bytes() == \
        open(os.path.join(directory, "model.safetensors"), "rb").read()
    config = json.loads((tmp_path / quantized / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["quantization_config"] == QUANTIZATION_CONFIGS[quantized]
    converted = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / quantized)
    assert converted.dtype == quantized
    np.testing.assert_array_equal(logits(converted), logits(model))

    for again, dtype in (("again", []), ("again_named", ["--dtype", quantized])):
        run = run_cli("convert", str(tmp_path / quantized), str(tmp_path / again), "--max-shard-size", "20KB", *dtype)
        assert run.returncode == 0, run.stderr
        np.testing.assert_array_equal(logits(nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / again)),
                                      logits(model))
    run = run_cli("convert", str(tmp_path / quantized), str(tmp_path / "float"), "--dtype", "float32")
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "float" / "config.json").read_text())
    assert config["dtype"] == "float32" and "quantization_config" not in config
    dense = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "float")
    assert dense.dtype == "float32"
    assert_close(logits(dense), logits(model), atol=2e-5)


@pytest.mark.parametrize("quantized", QUANTIZED)
def test_info_counts_the_quantized_weights_with_their_scales(saved, quantized):
    _, directory, model = saved(quantized)
    run = run_cli("info", "--model", directory, "--json")
    assert run.returncode == 0, run.stderr
    weights = json.loads(run.stdout)["weights"]
    values = list(quantized_weights(model, quantized).values())
    assert weights[quantized] == {"tensors": len(values), "bytes": sum(v.nbytes + s.nbytes for v, s in values)}
    # int8: 8 bits a weight and 32 a scale per 64; int4: 4 bits and 32 per 32
    parameters = sum(int(np.prod(model._weights[name][0].shape)) for name in quantized_weights(model, quantized))
    assert weights[quantized]["bytes"] * 8 == parameters * (BITS[quantized] + 32 / FORMATS[quantized].group_size)


@pytest.mark.parametrize("quantized, widths, K", [("int8", {}, 96),
                                                  ("int4", dict(hidden_size=48, num_attention_heads=3,
                                                                num_key_value_heads=1), 48)])
def test_convert_refuses_rows_it_cannot_quantize_before_writing(checkpoint, tmp_path, quantized, widths, K):
    source = checkpoint(**widths)  # int8: intermediate_size 96; int4: hidden_size 48
    run = run_cli("convert", source, str(tmp_path / "out"), "--dtype", quantized)
    assert run.returncode == 1
    assert re.search(rf"tensor '[\w.]+\.weight' has rows of {K} values, not a multiple of the "
                     rf"{FORMATS[quantized].group_size}", run.stderr), run.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- what a malformed quantized folder gets


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
    def apply(tensors, fmt):
        tensors[name + "_scale"] = change(tensors[name + "_scale"])
    return apply


def values_of(name, change):
    def apply(tensors, fmt):
        tensors[name] = change(tensors[name])
    return apply


def nan_at(scales):
    scales = scales.copy()
    scales[3, -1] = np.nan
    return scales


def values_in_place_of(name, other=False):
    """The tensor `name` replaced by zeros in the values dtype of the checkpoint's format (or of the other one)."""
    def apply(tensors, fmt):
        tensors[name] = np.zeros(tensors[name].shape, (FORMATS[OTHER[fmt.dtype]] if other else fmt).numpy_type)
    return apply


def doubled(array):
    return np.concatenate([array, array], axis=1)


def facts(fmt):
    """What the messages below say of a format: its dtype, group, values dtype and layout; the scale columns of
    Q_PROJ (K 64) and DOWN_PROJ (K 128); the value columns of Q_PROJ; the other format's names."""
    other = FORMATS[OTHER[fmt.dtype]]
    return dict(q=fmt.dtype, G=fmt.group_size, S=fmt.stored, layout=re.escape(fmt.layout), qs=64 // fmt.group_size,
                ds=128 // fmt.group_size, qv=64 * BITS[fmt.dtype] // 8, other=other.dtype, other_S=other.stored,
                Q=re.escape(Q_PROJ), D=re.escape(DOWN_PROJ))


@pytest.mark.parametrize("change, message", [
    (scale_of(DOWN_PROJ, lambda s: s[:, :1].copy()),
     lambda f: rf"'{f['D']}_scale' .* has shape \[64, 1\]; the {f['q']} weight \[64, 128\] with groups of {f['G']} "
               rf"needs \[64, {f['ds']}\]"),
    (scale_of(Q_PROJ, doubled), lambda f: rf"'{f['Q']}_scale' .* has shape \[64, {2 * f['qs']}\]; .* needs "
                                          rf"\[64, {f['qs']}\]"),
    (scale_of(Q_PROJ, lambda s: s[:-1].copy()), lambda f: rf"'{f['Q']}_scale' .* has shape \[63, {f['qs']}\]"),
    (lambda t, fmt: t.pop(Q_PROJ + "_scale"),
     lambda f: rf"'{f['Q']}' .* is {f['q']} but its scales '{f['Q']}_scale' are missing"),
    (scale_of(Q_PROJ, nan_at), lambda f: rf"'{f['Q']}_scale' .* holds a scale that is not finite"),
    (scale_of(Q_PROJ, lambda s: np.full_like(s, np.inf)), lambda f: rf"'{f['Q']}_scale' .* not finite"),
    (scale_of(Q_PROJ, lambda s: s.astype(np.float16)),
     lambda f: rf"'{f['Q']}_scale' .* is stored as F16; {f['q']} scales are F32"),
    (lambda t, fmt: t.pop(Q_PROJ), lambda f: rf"'{f['Q']}_scale' .* scales no {f['q']} weight: '{f['Q']}' is absent"),
    (lambda t, fmt: t.update({Q_PROJ: dequantize(t[Q_PROJ], t[Q_PROJ + "_scale"], fmt.dtype)}),
     lambda f: rf"'{f['Q']}_scale' .* scales no {f['q']} weight: '{f['Q']}' is F32"),
    (values_of(Q_PROJ, lambda v: v.astype(np.int16)),
     lambda f: rf"'{f['Q']}_scale' .* scales no {f['q']} weight: '{f['Q']}' is I16"),
    (values_in_place_of("model.norm.weight"),
     lambda f: rf"'model.norm.weight' .* is stored as {f['S']}, but only the linear layers' weights may be {f['q']}"),
    (values_in_place_of("model.embed_tokens.weight"),
     lambda f: rf"'model.embed_tokens.weight' .* stored as {f['S']}, but only"),
    (values_of(Q_PROJ, lambda v: v.reshape(-1)),
     lambda f: rf"'{f['Q']}' .* {f['q']} weight of shape \[{64 * f['qv']}\] is not {f['layout']} with K a multiple "
               rf"of the group size {f['G']}"),
    # a packed length that is not whole groups
    (values_of(Q_PROJ, lambda v: v[:, :-1].copy()),
     lambda f: rf"'{f['Q']}' .* {f['q']} weight of shape \[64, {f['qv'] - 1}\] is not {f['layout']}"),
    # values twice as long as the scales say (int4: unpacked, one value a byte)
    (values_of(Q_PROJ, doubled),
     lambda f: rf"'{f['Q']}_scale' .* has shape \[64, {f['qs']}\]; the {f['q']} weight \[64, 128\] with groups of "
               rf"{f['G']} needs \[64, {2 * f['qs']}\]"),
    # values and scales that agree with each other, not with the config
    (lambda t, fmt: t.update({Q_PROJ: doubled(t[Q_PROJ]), Q_PROJ + "_scale": doubled(t[Q_PROJ + "_scale"])}),
     lambda f: rf"'{f['Q']}' has shape \(64, 128\), the config implies \(64, 64\) \(its {f['q']} values are stored "
               rf"as {f['S']} \(64, {2 * f['qv']}\), {f['layout']}\)"),
    # the values dtype of the other format, beside scales or alone
    (values_in_place_of(Q_PROJ, other=True),
     lambda f: rf"'{f['Q']}' .* is stored as {f['other_S']}, the values of {f['other']} weights, but config.json's "
               rf"quantization_config is {f['q']}'s \('nemotron_c_{f['q']}'\), whose weights are {f['S']}"),
    (values_in_place_of("model.norm.weight", other=True),
     lambda f: rf"'model.norm.weight' .* is stored as {f['other_S']}, the values of {f['other']} weights, but "
               rf"config.json's quantization_config is {f['q']}'s"),
], ids=["scales_too_few_groups", "scales_too_many_groups", "scales_too_few_rows", "scales_missing", "scale_nan",
       "scales_inf", "scales_f16", "weight_missing", "weight_float", "weight_i16", "values_dtype_on_norm",
       "values_dtype_on_embedding", "values_1d", "values_not_whole_groups", "values_twice_as_long",
       "values_and_scales_wider_than_config", "other_format_values", "other_format_values_alone"])
def test_malformed_tensors_are_named(hostile, change, message):
    directory, fmt = hostile
    rewrite(directory, lambda tensors: change(tensors, fmt))
    with pytest.raises(QuantizedCheckpointError, match=message(facts(fmt))):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


@pytest.mark.parametrize("value, message", [
    (lambda c, f: {**c, "group_size": 96 - c["group_size"]},
     lambda c, f: f"group_size {96 - c['group_size']}; nemotron_c's {f.dtype} checkpoints have {c['group_size']}"),
    (lambda c, f: {**c, "bits": 12 - c["bits"]}, lambda c, f: f"bits {12 - c['bits']}; nemotron_c's {f.dtype} "
                                                              f"checkpoints have {c['bits']}"),
    (lambda c, f: {**c, "bits": float(c["bits"])}, lambda c, f: f"bits {float(c['bits'])}"),
    (lambda c, f: {**c, "group_size": 16}, lambda c, f: r"group_size 16; .* \(the core quantizes groups of that size\)"),
    (lambda c, f: {**c, "symmetric": False}, lambda c, f: "symmetric False"),
    (lambda c, f: {**c, "scale_dtype": "bfloat16"}, lambda c, f: "scale_dtype 'bfloat16'"),
    (lambda c, f: {**c, "format": "int-quantized"},
     lambda c, f: "format 'int-quantized'; nemotron_c's quantized checkpoints have 'nemotron_c_int8' or "
                  "'nemotron_c_int4'"),
    (lambda c, f: {**c, "zero_point": True}, lambda c, f: "unknown key.* zero_point"),
    (lambda c, f: {key: value for key, value in c.items() if key != "group_size"}, lambda c, f: "lacks 'group_size'"),
    (lambda c, f: {key: value for key, value in c.items() if key != "format"},
     lambda c, f: r"lacks 'format' \(expected 'nemotron_c_int8' or 'nemotron_c_int4'\)"),
    (lambda c, f: {"quant_method": "gptq", "bits": c["bits"], "group_size": c["group_size"]},
     lambda c, f: "quant_method 'gptq'"),
    # Transformers reads load_in_8bit / load_in_4bit as bitsandbytes' (configs older than its quant_method)
    (lambda c, f: {"load_in_8bit": True, "llm_int8_threshold": 6.0}, lambda c, f: "quant_method 'bitsandbytes_8bit'"),
    (lambda c, f: {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "quant_method": "gptq"},
     lambda c, f: "quant_method 'bitsandbytes_4bit'"),
    (lambda c, f: [c["bits"], c["group_size"]], lambda c, f: "is list, not an object"),
    # the other format's config: its values dtype is then refused by name
    (lambda c, f: QUANTIZATION_CONFIGS[OTHER[f.dtype]],
     lambda c, f: rf"tensor '.*' in .* is stored as {f.stored}, the values of {f.dtype} weights, but config.json's "
                  rf"quantization_config is {OTHER[f.dtype]}'s"),
], ids=["other_group_size", "other_bits", "float_bits", "group_size_16", "asymmetric", "scale_dtype",
       "unknown_format", "extra_key", "no_group_size", "no_format", "quant_method", "bnb_8bit_without_quant_method",
       "bnb_4bit_over_quant_method", "not_an_object",
       "other_format_config"])
def test_wrong_quantization_config_is_named(hostile, value, message):
    directory, fmt = hostile
    config = QUANTIZATION_CONFIGS[fmt.dtype]
    set_quantization_config(directory, value(config, fmt))
    with pytest.raises(QuantizedCheckpointError, match=message(config, fmt)):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


@pytest.mark.parametrize("config", [{"load_in_8bit": True, "llm_int8_threshold": 6.0},
                                    {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "quant_method": "gptq"}])
def test_bitsandbytes_configs_are_named_as_transformers_reads_them(config):
    from transformers.quantizers.auto import AutoQuantizationConfig

    theirs = AutoQuantizationConfig.from_dict(dict(config)).quant_method
    assert getattr(theirs, "value", theirs) == "bitsandbytes"
    with pytest.raises(QuantizedCheckpointError, match="quant_method 'bitsandbytes_[48]bit'"):
        check_quantization_config(config)


def test_quantized_tensors_without_quantization_config(hostile):
    directory, fmt = hostile
    set_quantization_config(directory, None)
    with pytest.raises(QuantizedCheckpointError, match=rf"tensor '[\w.]+' in .* is stored as {fmt.stored}, "
                                                       rf"which nemotron_c reads only as the values of its {fmt.dtype} "
                                                       "checkpoints, and config.json has no quantization_config"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_group_size_from_the_scales_shape_is_checked(hostile):
    """Scales of groups half as wide as the config's: the shapes disagree with the config's group size."""
    directory, fmt = hostile

    def regroup(tensors):
        for name in [n for n in tensors if n.endswith("_scale")]:
            tensors[name] = np.repeat(tensors[name], 2, axis=1)
    rewrite(directory, regroup)
    with pytest.raises(QuantizedCheckpointError, match=rf"with groups of {fmt.group_size} needs"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
