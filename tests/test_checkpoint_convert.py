"""python -m nemotron_c convert writes the tensors save_pretrained of the Transformers class that loads the checkpoint
writes."""
import json
import os

import pytest
import torch
import transformers
from safetensors.torch import load_file

from nemotron_c.conversion import convert_checkpoint
from helpers.transformers_reference import build_hf_model, save_bin

HEAD_CLASSES = [transformers.NemotronForSequenceClassification, transformers.NemotronForTokenClassification,
                transformers.NemotronForQuestionAnswering]


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("model_class", HEAD_CLASSES, ids=lambda c: c.__name__)
def test_task_head_checkpoint_converts_without_an_lm_head(tmp_path, model_class, tie):
    # A head class has no lm_head: Transformers drops a stored one at load (an unexpected key) and never saves it
    model = build_hf_model(model_class=model_class, tie_word_embeddings=tie, num_labels=3)
    head = build_hf_model(seed=1).state_dict()["model.embed_tokens.weight"]
    source = save_bin(tmp_path / "source", model, {**model.state_dict(), "lm_head.weight": head})
    model_class.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    convert_checkpoint(source, tmp_path / "ours")
    ours, theirs = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "theirs" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name, t in theirs.items():
        assert torch.equal(ours[name], t), name
    with open(tmp_path / "ours" / "config.json") as f:
        assert json.load(f).get("tie_word_embeddings", True) is tie
