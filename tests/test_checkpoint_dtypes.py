"""Checkpoint tensors of every dtype torch.save writes, loaded as Transformers loads them: converted to the model's
dtype (config.dtype, Transformers' dtype="auto") exactly as torch's .to() converts them, or refused where torch
cannot convert them and Transformers fails too."""
import os
import warnings
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers

import nemotron_c
import nemotron_c.checkpoint.tensors
from nemotron_c.conversion import convert_checkpoint
from nemotron_c.checkpoint.reading import read_torch_bin
from helpers.checkpoints import edit_config
from helpers.compare import assert_close
from helpers.transformers_reference import build_hf_model, hf_from_pretrained, hf_logits, save_bin

IDS = np.array([[1, 5, 7, 9, 3, 60], [2, 4, 8, 16, 32, 64]])
TARGETS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TORCH_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}
NUMPY_BITS = {"float32": np.int32, "bfloat16": np.int16, "float16": np.int16}


def edge_values(dtype, generator):
    """Values of `dtype` that exercise its conversion: every code of a float8, extremes and rounding ties."""
    if dtype.itemsize == 1 and dtype.is_floating_point:
        return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype)
    if dtype == torch.bool:
        return torch.rand(64, generator=generator) > 0.5
    if dtype.is_complex:
        real = torch.randn(64, generator=generator, dtype=torch.float64) * 1e3
        return torch.complex(real, -real).to(dtype)
    if dtype.is_floating_point:  # float64: ties of bfloat16 and float16 rounding, nudged both ways
        base = (torch.randn(256, generator=generator) * 4).to(torch.bfloat16).to(torch.float64)
        ties = torch.cat([base + base.abs() * 2.0 ** -9, (base * 64).to(torch.float16).double() * (1 + 2.0 ** -11)])
        specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e300, -1e-300, 65520.0, 3.4e38, 2.0 ** -140])
        return torch.cat([ties, ties + ties.abs() * 2.0 ** -40, ties - ties.abs() * 2.0 ** -40, specials])
    info = torch.iinfo(dtype)
    special = [info.min, info.max, info.max - 1, 0, 1, 2 ** 24 + 1, 2 ** 24 + 3, 2049, 4097]
    special = [v for v in special if info.min <= v <= info.max]
    if info.bits == 64 and info.min == 0:  # uint64: beyond int64, built from its bits
        high = torch.tensor([2 ** 63 + 2 ** 39 + 1 - 2 ** 64, -1, 2 ** 63 - 2 ** 64], dtype=torch.int64)
        return torch.cat([torch.tensor([v for v in special if v < 2 ** 63]).view(dtype), high.view(dtype)])
    bits = min(info.bits - 1, 62)
    random = torch.randint(-(2 ** bits) if info.min < 0 else 0, 2 ** bits, (256,), generator=generator)
    return torch.cat([torch.tensor(special, dtype=dtype), random.to(dtype)])


CONVERTED = [torch.float64, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.uint16, torch.uint32,
             torch.uint64, torch.bool, torch.complex64, torch.complex128, torch.complex32, torch.float8_e4m3fn,
             torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e8m0fnu]


@pytest.mark.parametrize("blocks", [False, True], ids=["whole", "in_blocks"])
def test_every_convertible_dtype_converts_as_torch_does(tmp_path, monkeypatch, blocks):
    if blocks:  # as a big tensor is converted: a few rows at a time (Ctrl-C between blocks)
        monkeypatch.setattr(nemotron_c.checkpoint.tensors, "BLOCK_VALUES", 24)
    generator = torch.Generator().manual_seed(0)
    state = {str(dtype): edge_values(dtype, generator) for dtype in CONVERTED}
    state = {name: t.reshape(-1, 4) if t.numel() % 4 == 0 else t for name, t in state.items()}
    path = tmp_path / "dtypes.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that complex -> real drops the imaginary part
        torch.save(state, path)
        expected = {(name, target): t.to(torch_target) for name, t in state.items()
                    for target, torch_target in TARGETS.items()}
    tensors = read_torch_bin(path)
    for (name, target), reference in expected.items():
        ours = tensors[name].array(target).view(NUMPY_BITS[target])
        theirs = reference.view(TORCH_BITS[TARGETS[target]]).numpy()
        nan = torch.isnan(reference).numpy()
        assert np.array_equal(ours[~nan], theirs[~nan]), (name, target)
        assert np.isnan(tensors[name].array("float32")[nan]).all(), (name, target)
        assert ours.shape == tuple(reference.shape), name


@pytest.mark.parametrize("dtype", CONVERTED, ids=str)
def test_used_tensor_of_any_dtype_loads_as_transformers_loads_it(tmp_path, dtype):
    model = build_hf_model(tie_word_embeddings=False)
    state = dict(model.state_dict())
    # int8 / uint8 linear weights without a quantization_config are refused (test_checkpoint_quantized): the values
    # of a nemotron_c int8 / int4 checkpoint whose config lost it, which Transformers would load as garbage
    matrix = "model.layers.0.input_layernorm.bias" if dtype in (torch.int8, torch.uint8) else \
        "model.layers.0.mlp.up_proj.weight"
    for name in ("model.norm.weight", matrix):
        values = state[name] * (64 if dtype.is_floating_point or dtype.is_complex else 32)
        if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
            values = values.abs()
        state[name] = values.to(dtype) if dtype != torch.bool else values > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = save_bin(tmp_path / str(dtype), model, state)
        theirs = transformers.NemotronForCausalLM.from_pretrained(path).eval()  # its default: dtype="auto"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    # torch warns that complex -> real drops the imaginary part; so do we
    assert any("imaginary part is dropped" in str(w.message) for w in caught) == dtype.is_complex
    assert ours.dtype == theirs.dtype == torch.float32
    reference = hf_logits(theirs, IDS)
    assert_close(ours(IDS).logits, reference, atol=1e-4 * max(1, np.abs(reference).max()))


# torch has no copy_ for these: Transformers fails on a tensor of them that the model uses; one it does not use is an
# unexpected key, ignored. The sub-byte integers torch.save refuses to write, but torch.load reads a file naming them.
NOT_CONVERTED = ["float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2", "uint4", "int1", "uint7"]


def save_with_dtype(path, model, name, dtype_name):
    """model's state dict in a .bin with tensor `name` of `dtype_name` (written as uint8, then renamed in the pickle:
    torch.save refuses the sub-byte integers)."""
    state = dict(model.state_dict())
    width = 2 if dtype_name == "bits16" else 1
    placeholder = {1: torch.float8_e8m0fnu, 2: torch.uint16}[width]
    state[name] = torch.zeros(state[name].shape, dtype=torch.uint8 if width == 1 else torch.int16).view(placeholder)
    path = save_bin(path, model, state)
    file = os.path.join(path, "pytorch_model.bin")
    with zipfile.ZipFile(file) as z:
        entries = [(info.filename, z.read(info)) for info in z.infolist()]
    old = b"ctorch\n" + str(placeholder).removeprefix("torch.").encode() + b"\n"
    with zipfile.ZipFile(file, "w") as z:
        for entry, data in entries:
            if entry.endswith("data.pkl"):
                assert data.count(old) == 1
                data = data.replace(old, b"ctorch\n" + dtype_name.encode() + b"\n")
            z.writestr(entry, data)
    return path


@pytest.mark.parametrize("dtype_name", NOT_CONVERTED)
def test_used_tensor_torch_cannot_convert_is_refused_naming_it(tmp_path, dtype_name):
    path = save_with_dtype(tmp_path / dtype_name, build_hf_model(), "model.norm.weight", dtype_name)
    assert torch.load(os.path.join(path, "pytorch_model.bin"))["model.norm.weight"].dtype == getattr(torch, dtype_name)
    with pytest.raises(NotImplementedError, match="not implemented for"):
        transformers.NemotronForCausalLM.from_pretrained(path)
    with pytest.raises(ValueError, match=r"'model.norm.weight' .*cannot be converted.*Transformers fails on it too"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)


@pytest.mark.parametrize("dtype_name", NOT_CONVERTED)
def test_unused_tensor_torch_cannot_convert_is_ignored(tmp_path, dtype_name):
    model = build_hf_model()
    model.extra = torch.nn.Linear(2, 3)  # a tensor in the file that NemotronForCausalLM does not have
    path = save_with_dtype(tmp_path / dtype_name, model, "extra.weight", dtype_name)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(transformers.NemotronForCausalLM.from_pretrained(path), IDS))


@pytest.mark.parametrize("config_dtype", ["bfloat16", "float16"])
def test_config_dtype_is_the_model_dtype(tmp_path, config_dtype):
    # Transformers' default dtype="auto" gives the model config.dtype and casts every stored tensor to it
    path = str(tmp_path / "f32")
    build_hf_model().save_pretrained(path)
    edit_config(path, dtype=config_dtype)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.dtype == theirs.dtype == getattr(torch, config_dtype)
    # Transformers computes in that dtype, nemotron_c in float32: compared on Transformers' weights in float32
    assert_close(ours(IDS).logits, hf_logits(theirs.float(), IDS))
    saved = str(tmp_path / "saved")
    ours.save_pretrained(saved)
    assert {t.dtype for t in safetensors.torch.load_file(os.path.join(saved, "model.safetensors")).values()} == {
        getattr(torch, config_dtype)}


def test_mixed_checkpoint_without_config_dtype_takes_the_first_floating_tensors(tmp_path):
    # no config.dtype: the dtype of the first floating tensor of the file (torch.load's order), float8 aside
    model = build_hf_model()
    state = {name: t.to(torch.float8_e4m3fn if "embed" in name else torch.bfloat16 if "layers.0." in name
                        else torch.float32) for name, t in model.state_dict().items()}
    path = save_bin(tmp_path / "mixed", model, state)
    edit_config(path, dtype=None)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert_close(ours(IDS).logits, hf_logits(theirs.float(), IDS))


def test_float64_model_dtype_is_refused_with_the_way_out(tmp_path):
    path = save_bin(tmp_path / "f64", build_hf_model().to(torch.float64))
    assert transformers.NemotronForCausalLM.from_pretrained(path).dtype == torch.float64
    with pytest.raises(ValueError, match=r"model's dtype is float64 .*pass dtype='float32'"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype="float32")(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))


def test_safetensors_of_other_dtypes_convert_too(tmp_path):
    model = build_hf_model()
    path = str(tmp_path / "st")
    model.save_pretrained(path)
    state = safetensors.torch.load_file(os.path.join(path, "model.safetensors"))
    state["model.norm.weight"] = (state["model.norm.weight"] * 64).to(torch.float64)
    state["model.layers.1.input_layernorm.weight"] = (state["model.layers.1.input_layernorm.weight"] * 300).to(
        torch.int16)
    state["model.layers.0.mlp.down_proj.weight"] = state["model.layers.0.mlp.down_proj.weight"].to(torch.float8_e5m2)
    safetensors.torch.save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    # Norms 64 and 300 times larger make these logits (up to 15) ill-conditioned: float32 sums in one order or another
    # land up to 1.1e-4 from the exact logits (Transformers' own on a Zen 5 EPYC, and our portable kernels; avx512 7e-6,
    # avx2 8e-5), so two float32 results can be 2e-4 apart. The reference is Transformers' float64 forward pass over
    # the float32 weights it loaded, within 3e-4; a weight converted wrongly moves logits by far more.
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    assert theirs.dtype == torch.float32
    assert_close(ours, hf_logits(theirs.double(), IDS), atol=3e-4)


def test_convert_writes_the_model_dtype(tmp_path):
    model = build_hf_model(tie_word_embeddings=False)
    state = {name: t.to(torch.float64) if "norm" in name else t.to(torch.bfloat16)
             for name, t in model.state_dict().items()}
    path = save_bin(tmp_path / "src", model, state)
    edit_config(path, dtype="bfloat16")
    convert_checkpoint(path, tmp_path / "dst")
    written = safetensors.torch.load_file(str(tmp_path / "dst" / "model.safetensors"))
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    theirs.save_pretrained(tmp_path / "theirs")
    reference = safetensors.torch.load_file(str(tmp_path / "theirs" / "model.safetensors"))
    assert written.keys() == reference.keys()
    for name, t in reference.items():
        assert written[name].dtype == t.dtype and torch.equal(written[name], t), name


def test_mixed_safetensors_without_config_dtype_takes_the_first_name_in_order(tmp_path):
    # safe_open lists a file's tensors sorted by name: lm_head.weight comes before model.*
    model = build_hf_model(tie_word_embeddings=False)
    path = str(tmp_path / "mixed")
    model.save_pretrained(path)
    state = safetensors.torch.load_file(os.path.join(path, "model.safetensors"))
    state["lm_head.weight"] = state["lm_head.weight"].to(torch.float16)
    safetensors.torch.save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    edit_config(path, dtype=None)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert ours.dtype == theirs.dtype == torch.float16
    assert_close(ours(IDS).logits, hf_logits(theirs.float(), IDS))
