"""LoRA adapters (PEFT's format) merged at load, against Transformers with peft loading the same folders."""
import json
import os
import shutil
import warnings

import huggingface_hub
import numpy as np
import peft
import pytest
import safetensors.torch
import torch
import transformers
from helpers.checkpoints import edit_json
from helpers.compare import assert_close
from helpers.transformers_reference import hf_logits
from test_checkpoint_hub import add_to_cache, files_of

import nemotron_c
from nemotron_c.checkpoint.adapters import AdapterFormatError

IDS = np.random.default_rng(21).integers(1, 96, size=(2, 11))
MASK = np.ones_like(IDS)
MASK[1, :3] = 0  # left padding
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


def make_adapter(base_path, directory, model_class=transformers.NemotronForCausalLM, seed=5,
                 safe_serialization=True, train_heads=False, **lora):
    """Trains nothing: a LoRA with random A and B (init_lora_weights=False), so that every update matters;
    train_heads: the modules saved whole (a task head) moved off the base's values too."""
    torch.manual_seed(seed)
    model = model_class.from_pretrained(base_path, dtype=torch.float32)
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ALL_LINEAR, "init_lora_weights": False, **lora}
    adapted = peft.get_peft_model(model, peft.LoraConfig(**lora))
    with torch.no_grad():  # B starts at a scale that would make the update tiny beside the weights
        for name, param in adapted.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                param.mul_(20.0)
            if train_heads and "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 1e-3)
    adapted.save_pretrained(directory, safe_serialization=safe_serialization)
    return directory


def transformers_adapted(directory, model_class=transformers.AutoModelForCausalLM):
    return model_class.from_pretrained(directory, dtype=torch.float32).eval()


def compare(directory, hf_class=transformers.AutoModelForCausalLM, ours_class=nemotron_c.AutoModelForCausalLM,
            **ours_kwargs):
    theirs = transformers_adapted(directory, hf_class)
    ours = ours_class.from_pretrained(directory, **ours_kwargs)
    with torch.no_grad():
        expected = theirs(torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK)).logits.numpy()
    got = ours(IDS, attention_mask=MASK).logits
    assert_close(got, expected, what="logits of the adapted model")
    return ours, theirs


def adapter_effect(base_path, directory):
    """How far the adapter moves Transformers' logits: a test of the merge must see a change."""
    base = transformers.AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    return np.abs(hf_logits(base, IDS, MASK) - hf_logits(transformers_adapted(directory), IDS, MASK)).max()


@pytest.mark.parametrize("lora", [
    {},
    {"use_rslora": True, "lora_alpha": 5},
    {"rank_pattern": {"down_proj": 2, r"layers\.1\.self_attn\.q_proj": 3}, "alpha_pattern": {"v_proj": 3}},
    {"target_modules": ["q_proj", "lm_head", "embed_tokens"]},
    {"target_modules": "model\\.layers\\.0\\..*_proj", "r": 8, "lora_alpha": 2},
], ids=["all_linear", "rslora", "patterns", "embedding_and_head", "regex_target"])
def test_adapted_causal_lm_matches_transformers(checkpoint, tmp_path, lora):
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"), **lora)
    assert adapter_effect(base, directory) > 0.05
    ours, theirs = compare(directory)
    assert ours.name_or_path == theirs.name_or_path == base  # the base model's, as Transformers names it
    with torch.no_grad():
        expected = theirs.generate(torch.as_tensor(IDS[:1]), max_new_tokens=8, do_sample=False).numpy()
    np.testing.assert_array_equal(ours.generate(IDS[:1], max_new_tokens=8, do_sample=False), expected)


@pytest.mark.parametrize("target", [["embed_tokens"], ["lm_head"], ["q_proj"]])
def test_tied_embeddings_take_the_update_of_the_adapted_layer_only(checkpoint, tmp_path, target):
    """PEFT adapts the embedding or the head that share one matrix as two layers: the update reaches the one it
    targets, so the merged model unties them (and says so in its config, without the warning of a checkpoint
    whose head differs from its tied embedding); an adapter of neither keeps them tied."""
    base = checkpoint(tie_word_embeddings=True)
    directory = make_adapter(base, str(tmp_path / "adapter"), target_modules=target)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    ours, _ = compare(directory)
    assert ours.config.tie_word_embeddings == (target == ["q_proj"])


def test_bfloat16_base_keeps_merged_matrices_in_float32(checkpoint, tmp_path):
    """The merged matrices are float32 (the others as stored), so the model equals Transformers' adapted float32
    model; with dtype="bfloat16" they are rounded like every weight."""
    base = checkpoint(dtype="bfloat16")
    directory = make_adapter(base, str(tmp_path / "adapter"))
    ours, _ = compare(directory)
    assert ours.dtype == "bfloat16"
    stored = dict(ours._weights)
    assert stored["layers.0.self_attn.q_proj.weight"][1] == "float32"
    assert stored["layers.0.input_layernorm.weight"][1] == "bfloat16"
    rounded = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype="bfloat16")
    assert rounded._weights["layers.0.self_attn.q_proj.weight"][1] == "bfloat16"
    assert not np.array_equal(rounded(IDS).logits, ours(IDS).logits)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_quantized_load_quantizes_the_merged_weights(checkpoint, tmp_path, dtype):
    base = checkpoint(intermediate_size=128)  # rows of whole int8 groups
    directory = make_adapter(base, str(tmp_path / "adapter"))
    merged = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    merged.save_pretrained(tmp_path / "merged")
    quantized = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=dtype)
    np.testing.assert_array_equal(quantized(IDS).logits, reference(IDS).logits)
    assert quantized.dtype == dtype


def test_saved_adapted_model_reloads_the_same(checkpoint, tmp_path):
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"), target_modules=ALL_LINEAR + ["lm_head"])
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    ours.save_pretrained(tmp_path / "merged")
    assert not os.path.exists(tmp_path / "merged" / "adapter_config.json")
    again = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    np.testing.assert_array_equal(again(IDS).logits, ours(IDS).logits)


def test_sequence_classification_adapter_with_a_trained_head(checkpoint, tmp_path):
    """modules_to_save: PEFT saves the task head whole, under its own name."""
    base = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=3, pad_token_id=0)
    directory = make_adapter(base, str(tmp_path / "adapter"), transformers.NemotronForSequenceClassification,
                             task_type="SEQ_CLS", target_modules=["q_proj", "v_proj"])
    with open(os.path.join(directory, "adapter_config.json")) as f:
        assert "score" in json.load(f)["modules_to_save"]
    compare(directory, transformers.AutoModelForSequenceClassification, nemotron_c.AutoModelForSequenceClassification)


@pytest.mark.parametrize("dtype", [None, "bfloat16", "int8"])
def test_adapter_head_is_held_in_the_dtype_of_the_model_weights_and_saved_so(checkpoint, tmp_path, dtype):
    # a bfloat16 base as NVIDIA ships them; the adapter's head (modules_to_save) is float32: a float dtype= rounds it
    # as it rounds the merged matrices, otherwise it stays float32 as they do; save_pretrained writes it as held
    base = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=3, pad_token_id=0,
                      dtype="bfloat16", intermediate_size=128)
    directory = make_adapter(base, str(tmp_path / "adapter"), transformers.NemotronForSequenceClassification,
                             task_type="SEQ_CLS", target_modules=["q_proj"], train_heads=True)
    ours = nemotron_c.AutoModelForSequenceClassification.from_pretrained(directory, dtype=dtype)
    trained = safetensors.torch.load_file(os.path.join(directory, "adapter_model.safetensors"))
    head = next(v for k, v in trained.items() if k.endswith("score.weight"))
    held = (head if dtype in (None, "int8") else head.to(torch.bfloat16)).float().numpy()
    np.testing.assert_array_equal(ours.score.weight, held)
    assert dtype != "bfloat16" or not np.array_equal(held, head.numpy())
    ours.save_pretrained(tmp_path / "merged")
    again = nemotron_c.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged", dtype=dtype)
    np.testing.assert_array_equal(again.score.weight, ours.score.weight)
    if dtype is not None:  # (with None the float32 merged q_proj is read back in the config's bfloat16)
        np.testing.assert_array_equal(again(IDS).logits, ours(IDS).logits)


@pytest.mark.parametrize("head, task_type", [("QuestionAnswering", "QUESTION_ANS"),
                                             ("TokenClassification", "TOKEN_CLS")])
def test_question_answering_and_token_classification_adapters(checkpoint, tmp_path, head, task_type):
    """The question-answering model keeps its decoder under "transformer.", whose adapted names follow it."""
    hf_class = getattr(transformers, f"NemotronFor{head}")
    base = checkpoint(model_class=hf_class, num_labels=4, seed=3)
    directory = make_adapter(base, str(tmp_path / "adapter"), hf_class, task_type=task_type,
                             target_modules=["q_proj", "up_proj"])
    theirs = getattr(transformers, f"AutoModelFor{head}").from_pretrained(directory, dtype=torch.float32).eval()
    ours = getattr(nemotron_c, f"AutoModelFor{head}").from_pretrained(directory)
    with torch.no_grad():
        expected = theirs(torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK))
    got = ours(IDS, attention_mask=MASK)
    assert list(got.keys()) == list(expected.keys())
    for key in expected.keys():
        assert_close(got[key], expected[key].numpy(), what=key)


def test_adapter_model_bin(checkpoint, tmp_path):
    """torch.save's format, which PEFT reads; Transformers 5.24 looks for adapter_model.safetensors after finding
    the .bin and fails (FileNotFoundError): PEFT on Transformers' base model is the reference here."""
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"), safe_serialization=False)
    assert "adapter_model.bin" in os.listdir(directory)
    assert "adapter_model.safetensors" not in os.listdir(directory)
    theirs = peft.PeftModel.from_pretrained(
        transformers.NemotronForCausalLM.from_pretrained(base, dtype=torch.float32), directory).eval()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    assert_close(ours(IDS, attention_mask=MASK).logits, hf_logits(theirs, IDS, MASK))
    assert adapter_effect(base, make_adapter(base, str(tmp_path / "same"))) > 0.05


def test_adapter_inside_a_full_checkpoint_folder(checkpoint, tmp_path):
    """A folder holding a config.json and weights besides the adapter is the base itself, as in Transformers (its
    adapter_config.json may name a base elsewhere, which is then not read)."""
    base = checkpoint()
    folder = tmp_path / "both"
    shutil.copytree(base, folder)
    make_adapter(base, str(folder))
    with open(folder / "adapter_config.json") as f:
        config = json.load(f)
    config["base_model_name_or_path"] = str(tmp_path / "nowhere")
    with open(folder / "adapter_config.json", "w") as f:
        json.dump(config, f)
    compare(str(folder))


def test_adapter_from_the_hub(checkpoint, tmp_path, monkeypatch):
    """A Hub adapter repo naming a Hub base model, both in huggingface_hub's cache (offline). Transformers 5.24
    finds the adapter there with cache_dir= but then looks for its weights in the default cache and fails: the
    reference is Transformers on the same two repos as local folders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"))
    expected = hf_logits(transformers_adapted(directory), IDS, MASK)
    edit_adapter_config(directory, base_model_name_or_path="nvidia/Tiny-Base")
    cache = str(tmp_path / "hub")
    add_to_cache(cache, "nvidia/Tiny-Base", "4" * 40, files_of(base), ref="main")
    add_to_cache(cache, "someone/tiny-lora", "5" * 40, files_of(directory), ref="main")
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained("someone/tiny-lora", cache_dir=cache)
    assert ours.name_or_path == "nvidia/Tiny-Base"
    assert_close(ours(IDS, attention_mask=MASK).logits, expected)
    # a Hub model that is no adapter: no adapter_config.json in the cache, loaded as it is
    plain = nemotron_c.AutoModelForCausalLM.from_pretrained("nvidia/Tiny-Base", cache_dir=cache)
    assert_close(plain(IDS).logits, nemotron_c.AutoModelForCausalLM.from_pretrained(base)(IDS).logits, atol=0)
    # the adapter's weights missing from the cache: named
    os.remove(os.path.join(cache, "models--someone--tiny-lora", "snapshots", "5" * 40, "adapter_model.safetensors"))
    with pytest.raises(OSError, match="adapter_model.safetensors or adapter_model.bin"):
        nemotron_c.AutoModelForCausalLM.from_pretrained("someone/tiny-lora", cache_dir=cache)


# ---------------------------------------------------------------- hostile adapters


@pytest.fixture
def adapter(checkpoint, tmp_path):
    """(base, a fresh adapter folder to spoil)"""
    base = checkpoint()
    return base, make_adapter(base, str(tmp_path / "adapter"), target_modules=["q_proj", "v_proj"])


def edit_adapter_config(directory, **changes):
    edit_json(os.path.join(directory, "adapter_config.json"), **changes)


def edit_adapter_weights(directory, edit):
    from safetensors.numpy import load_file, save_file

    path = os.path.join(directory, "adapter_model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


@pytest.mark.parametrize("changes, error, match", [
    ({"peft_type": "IA3"}, NotImplementedError, "peft_type 'IA3' is not supported"),
    ({"peft_type": None}, NotImplementedError, "peft_type None is not supported"),
    ({"use_dora": True}, NotImplementedError, "use_dora=True is not supported"),
    ({"bias": "all"}, NotImplementedError, "bias='all' is not supported"),
    ({"lora_bias": True}, NotImplementedError, "lora_bias=True"),
    ({"trainable_token_indices": [1, 2]}, NotImplementedError, "trainable_token_indices"),
    ({"r": 0}, ValueError, "r must be a positive integer"),
    ({"r": True}, ValueError, "r must be a positive integer"),
    ({"r": 4.0}, ValueError, "r must be a positive integer"),  # PEFT: a TypeError in torch.empty
    ({"lora_alpha": "8"}, ValueError, "lora_alpha must be a finite number"),
    ({"lora_alpha": float("inf")}, ValueError, "lora_alpha must be a finite number"),
    ({"lora_alpha": float("nan")}, ValueError, "lora_alpha must be a finite number"),
    ({"rank_pattern": {"q_proj": -1}}, ValueError, "rank_pattern must map module name patterns to positive integers"),
    ({"rank_pattern": {"q_proj": 4.0}}, ValueError, "rank_pattern must map module name patterns to positive integers"),
    ({"alpha_pattern": {"q_proj": "2"}}, ValueError, "alpha_pattern must map module name patterns to finite numbers"),
    ({"alpha_pattern": {"(": 2}}, ValueError, "not a regular expression"),
    ({"base_model_name_or_path": None}, ValueError, "names no base_model_name_or_path"),
    ({"base_model_name_or_path": 7}, ValueError, "base_model_name_or_path must be a string"),
    ({"r": 3}, ValueError, "do not fit .* with rank 3"),
])
def test_bad_adapter_config(adapter, changes, error, match):
    _, directory = adapter
    edit_adapter_config(directory, **changes)
    with pytest.raises(error, match=match):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


@pytest.mark.parametrize("changes", [{"lora_alpha": 0}, {"lora_alpha": -8}, {"alpha_pattern": {"v_proj": -3.5}}],
                         ids=["zero", "negative", "negative_pattern"])
def test_zero_and_negative_alpha_scale_as_in_peft(adapter, changes):
    """scaling = lora_alpha / r whatever its sign: an adapter subtracted (task arithmetic), or none"""
    _, directory = adapter
    edit_adapter_config(directory, **changes)
    compare(directory)


def test_adapter_config_not_json(adapter):
    _, directory = adapter
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="adapter_config.json is not valid JSON"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_adapter_config_nested_too_deep(adapter):
    """json's RecursionError is a malformed file like any other"""
    _, directory = adapter
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        f.write('{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "x": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(AdapterFormatError, match="adapter_config.json is not valid JSON"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


@pytest.mark.parametrize("changes", [
    {"target_modules": ["q_proj"]},
    {"target_modules": r"model\.layers\.0\..*_proj"},
    {"exclude_modules": ["v_proj"]},
    {"exclude_modules": r".*layers\.1\..*"},
    {"layers_to_transform": [1]},
    {"layers_to_transform": 0, "layers_pattern": "layers"},
    {"modules_to_save": ["q_proj"]},
], ids=["list", "regex", "exclude_list", "exclude_regex", "layers_to_transform", "layers_pattern", "modules_to_save"])
def test_updates_of_modules_the_config_does_not_target_are_ignored(adapter, changes):
    """PEFT wraps the modules adapter_config.json targets only: the file's tensors for others (LoRA weights, a
    base_layer weight) are unexpected keys that Transformers leaves out (its load report lists them)."""
    _, directory = adapter
    # init_lora_weights: a module targeted without weights in the file then starts with no update in PEFT too
    edit_adapter_config(directory, init_lora_weights=True, **changes)
    edit_adapter_weights(directory, lambda t: t.update({
        "base_model.model.model.layers.1.input_layernorm.base_layer.weight": np.ones(64, np.float32)}))
    with pytest.warns(UserWarning, match="not among the modules adapter_config.json targets"):
        compare(directory)


def test_all_linear_leaves_the_embedding_out(checkpoint, tmp_path):
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"), target_modules=["q_proj", "embed_tokens"])
    # init_lora_weights: the Linears without weights in the file then start with no update in PEFT too
    edit_adapter_config(directory, target_modules="ALL-LINEAR", init_lora_weights=True)
    with pytest.warns(UserWarning, match="embed_tokens"):
        compare(directory)


def rename(old, new):
    def edit(tensors):
        tensors[new] = tensors.pop(old)
    return edit


Q_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
Q_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop(Q_B), "lacks its lora_A or lora_B"),
    (lambda t: t.update({Q_A: t[Q_A][:, :5]}), "do not fit"),
    (lambda t: t.update({Q_B: t[Q_B].T.copy()}), "do not fit"),
    (lambda t: (rename(Q_A, Q_A.replace("layers.0", "layers.7"))(t), rename(Q_B, Q_B.replace("layers.0", "layers.7"))(t)),
     "names no tensor of the base checkpoint"),
    (rename(Q_A, Q_A.replace("lora_A", "lora_C")), "not a LoRA weight"),
    (lambda t: t.update({"base_model.model.lm_head.weight": np.zeros((3, 3), np.float32)}), "has shape"),
    (lambda t: t.update({Q_B: np.full_like(t[Q_B], np.inf)}), "not finite"),
    (lambda t: t.update({Q_A: np.full_like(t[Q_A], 3e38)}), "not finite"),  # finite in float64, not in float32
])
def test_bad_adapter_weights(adapter, edit, match):
    _, directory = adapter
    edit_adapter_weights(directory, edit)
    with pytest.raises(ValueError, match=match) as caught:
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    assert isinstance(caught.value, AdapterFormatError)


def test_adapter_without_weights(adapter):
    _, directory = adapter
    os.remove(os.path.join(directory, "adapter_model.safetensors"))
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors or adapter_model.bin"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_adapter_kwargs(adapter):
    base, directory = adapter
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, adapter_name="mine",
                                                           adapter_kwargs={"local_files_only": True})
    assert ours.name_or_path == base
    with pytest.raises(TypeError, match="adapter_kwargs takes the keywords"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory, adapter_kwargs={"peft_config": {}})


def test_base_layer_saved_with_the_adapter_replaces_the_base(checkpoint, tmp_path):
    """PEFT saves an adapted embedding's and head's own weight beside the update (for models whose vocabulary was
    resized while training): it is loaded in place of the base's, under the update."""
    base = checkpoint()
    directory = make_adapter(base, str(tmp_path / "adapter"), target_modules=["embed_tokens", "lm_head"])

    def shift(tensors):
        for name in ("base_model.model.model.embed_tokens.base_layer.weight", "base_model.model.lm_head.base_layer.weight"):
            tensors[name] = tensors[name] + np.float32(0.25)

    edit_adapter_weights(directory, shift)
    compare(directory)


def test_pipeline_of_an_adapter_takes_the_base_models_tokenizer(tmp_path):
    """Transformers' pipeline() loads the tokenizer of the base model an adapter names."""
    from test_pipelines import checkpoint_with_tokenizer

    base = checkpoint_with_tokenizer(str(tmp_path), "base", transformers.NemotronForCausalLM)
    directory = make_adapter(base, str(tmp_path / "adapter"))
    assert not any(name.startswith("tokenizer") for name in os.listdir(directory))
    theirs = transformers.pipeline("text-generation", model=directory, dtype=torch.float32)
    ours = nemotron_c.pipeline("text-generation", model=directory)
    call = {"max_new_tokens": 8, "do_sample": False}
    assert ours("Return the value", **call) == theirs("Return the value", **call)
    plain = nemotron_c.pipeline("text-generation", model=base)
    assert plain("Return the value", **call) != ours("Return the value", **call)


def test_command_line_generates_with_an_adapter(tmp_path):
    """python -m nemotron_c generate --model <adapter>: the base model's tokenizer, the adapted model's text."""
    from test_cli import run_cli
    from test_pipelines import checkpoint_with_tokenizer

    base = checkpoint_with_tokenizer(str(tmp_path), "base", transformers.NemotronForCausalLM)
    directory = make_adapter(base, str(tmp_path / "adapter"))
    theirs = transformers.pipeline("text-generation", model=directory, dtype=torch.float32)
    expected = theirs("Return the", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    run = run_cli("generate", "Return the", "--model", directory, "--max-new-tokens", "8")
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected + "\n"


def test_command_line_info_describes_the_base_and_the_adapter(tmp_path):
    from test_cli import run_cli

    base = os.path.join(tmp_path, "base")
    transformers.NemotronForCausalLM(transformers.NemotronConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True)).save_pretrained(base)
    directory = make_adapter(base, str(tmp_path / "adapter"), target_modules=["q_proj", "lm_head"])
    run = run_cli("info", "--model", directory, "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["base_model"] == base
    assert info["adapter"]["path"] == directory and (info["adapter"]["r"], info["adapter"]["lora_alpha"]) == (4, 8)
    assert sorted(info["adapter"]["target_modules"]) == ["lm_head", "q_proj"]
    merged = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    assert info["parameters"] == merged.num_parameters()  # the lm_head untied by the merge counts
    assert info["config"]["tie_word_embeddings"] is False
    run = run_cli("info", "--model", directory)
    assert run.returncode == 0, run.stderr
    assert "LoRA (r 4, lora_alpha 8, target_modules " in run.stdout
    assert f"merged into the base model {base}\n" in run.stdout


def test_command_line_convert_writes_an_adapter_merged(tmp_path):
    """What the CLI promises of convert: DST holds what save_pretrained of the model loaded from SRC writes."""
    from test_cli import run_cli
    from test_pipelines import checkpoint_with_tokenizer

    base = checkpoint_with_tokenizer(str(tmp_path), "base", transformers.NemotronForCausalLM)
    directory = make_adapter(base, str(tmp_path / "adapter"))
    expected = hf_logits(transformers_adapted(directory), IDS, MASK)
    for dtype in (None, "bfloat16"):
        destination = tmp_path / f"merged-{dtype}"
        run = run_cli("convert", directory, str(destination), *(("--dtype", dtype) if dtype else ()))
        assert run.returncode == 0, run.stderr
        assert "adapter_config.json" not in os.listdir(destination)
        assert "tokenizer.json" in os.listdir(destination)
        converted = nemotron_c.AutoModelForCausalLM.from_pretrained(destination)
        loaded = nemotron_c.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
        np.testing.assert_array_equal(converted(IDS, attention_mask=MASK).logits,
                                      loaded(IDS, attention_mask=MASK).logits)
    merged = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "merged-None")
    assert_close(merged(IDS, attention_mask=MASK).logits, expected)
