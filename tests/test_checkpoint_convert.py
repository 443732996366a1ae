"""python -m nemotron_c convert writes the tensors save_pretrained of the Transformers class that loads the checkpoint
writes."""
import json
import os

import pytest
import torch
import transformers
from safetensors.torch import load_file

from nemotron_c.conversion import convert_checkpoint
from helpers.checkpoints import edit_config
from helpers.transformers_reference import build_hf_model, save_bin

HEAD_CLASSES = [transformers.NemotronForSequenceClassification, transformers.NemotronForTokenClassification,
                transformers.NemotronForQuestionAnswering]


def assert_same_files(ours, theirs):
    ours, theirs = load_file(ours / "model.safetensors"), load_file(theirs / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name, t in theirs.items():
        assert torch.equal(ours[name], t), name


@pytest.mark.parametrize("named", [True, False], ids=["architectures", "no_architectures"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("model_class", HEAD_CLASSES, ids=lambda c: c.__name__)
def test_task_head_checkpoint_converts_without_an_lm_head(tmp_path, model_class, tie, named):
    # A head class has no lm_head: Transformers drops a stored one at load (an unexpected key) and never saves it
    model = build_hf_model(model_class=model_class, tie_word_embeddings=tie, num_labels=3)
    head = build_hf_model(seed=1).state_dict()["model.embed_tokens.weight"]
    source = save_bin(tmp_path / "source", model, {**model.state_dict(), "lm_head.weight": head})
    edit_config(source, architectures=[model_class.__name__] if named else None)
    model_class.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    convert_checkpoint(source, tmp_path / "ours")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")
    with open(tmp_path / "ours" / "config.json") as f:
        assert json.load(f).get("tie_word_embeddings", True) is tie


@pytest.mark.parametrize("model_class", HEAD_CLASSES, ids=lambda c: c.__name__)
def test_causal_lm_checkpoint_converts_without_a_stray_task_head(tmp_path, model_class):
    # config.architectures says which class loads it: a causal LM drops the task head as an unexpected key
    model = build_hf_model(tie_word_embeddings=False)
    stray = build_hf_model(model_class=model_class, num_labels=3).state_dict()
    heads = {name: t for name, t in stray.items() if name.startswith(("score.", "qa_outputs."))}
    source = save_bin(tmp_path / "source", model, {**model.state_dict(), **heads})
    edit_config(source, architectures=["NemotronForCausalLM"])
    transformers.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    convert_checkpoint(source, tmp_path / "ours")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")


def test_sequence_classifier_drops_a_bias_it_has_not(tmp_path):
    model = build_hf_model(model_class=transformers.NemotronForSequenceClassification, num_labels=3)
    source = save_bin(tmp_path / "source", model, {**model.state_dict(), "score.bias": torch.ones(3)})
    edit_config(source, architectures=["NemotronForSequenceClassification"])
    transformers.NemotronForSequenceClassification.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    convert_checkpoint(source, tmp_path / "ours")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")


def test_convert_of_a_checkpoint_naming_its_weights_file(tmp_path):
    # config.json's transformers_weights names the file to read; the copy's weights are model.safetensors, and
    # Transformers' save_pretrained drops the key from the config it writes
    model = build_hf_model()
    source = str(tmp_path / "source")
    model.save_pretrained(source)
    os.rename(os.path.join(source, "model.safetensors"), os.path.join(source, "custom.safetensors"))
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(source, "config.json"), "w") as f:
        json.dump({**config, "transformers_weights": "custom.safetensors"}, f)
    transformers.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    convert_checkpoint(source, tmp_path / "ours")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")
    for saved in ("ours", "theirs"):
        with open(tmp_path / saved / "config.json") as f:
            assert "transformers_weights" not in json.load(f)
    transformers.NemotronForCausalLM.from_pretrained(tmp_path / "ours")


def test_convert_keeps_the_license_notice_and_model_card(tmp_path):
    """The demo model's NOTICE (its data's license) and a checkpoint's LICENSE and README.md travel with the copy."""
    import shutil

    import nemotron_c

    source = str(tmp_path / "source")
    shutil.copytree(os.path.join(os.path.dirname(nemotron_c.__file__), "demo_model"), source)
    for name, text in (("LICENSE", "terms\n"), ("README.md", "---\nlicense: other\n---\n")):
        with open(os.path.join(source, name), "w") as f:
            f.write(text)
    convert_checkpoint(source, tmp_path / "copy", dtype="bfloat16")
    for name in ("NOTICE", "LICENSE", "README.md"):
        with open(os.path.join(source, name), "rb") as a, open(tmp_path / "copy" / name, "rb") as b:
            assert a.read() == b.read(), name


@pytest.mark.parametrize("change, message", [
    ({"max_position_embeddings": -5}, "config.max_position_embeddings must be a positive integer"),
    ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads"),
    ({"rope_parameters": {"rope_type": "su", "rope_theta": 10000.0}}, "rope_type 'su' is not supported"),
])
def test_a_config_no_model_can_be_built_from_is_not_converted(tmp_path, change, message):
    """Loading refuses such a config: convert did not, and wrote a checkpoint that nemotron_c then refused."""
    source = tmp_path / "source"
    build_hf_model().save_pretrained(source)
    edit_config(source, **change)
    with pytest.raises((ValueError, NotImplementedError), match=message):
        convert_checkpoint(str(source), str(tmp_path / "converted"))
    assert not (tmp_path / "converted").exists() or not os.listdir(tmp_path / "converted")
