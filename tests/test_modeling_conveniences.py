"""What Transformers users reach for on a model: repr, num_parameters, dtype against torch dtypes, from_config, the
max_position_embeddings warning; compared with Transformers' models of the same config."""
import warnings

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close

import nemotron_c

CLASSES = [
    (transformers.NemotronModel, nemotron_c.NemotronModel),
    (transformers.NemotronForCausalLM, nemotron_c.NemotronForCausalLM),
    (transformers.NemotronForSequenceClassification, nemotron_c.NemotronForSequenceClassification),
    (transformers.NemotronForQuestionAnswering, nemotron_c.NemotronForQuestionAnswering),
    (transformers.NemotronForTokenClassification, nemotron_c.NemotronForTokenClassification),
]
CONFIGS = [
    dict(num_hidden_layers=2, tie_word_embeddings=False, attention_bias=False),
    dict(num_hidden_layers=1, tie_word_embeddings=True, attention_bias=True, mlp_bias=True, num_labels=3,
         head_dim=16, hidden_act="silu", classifier_dropout=0.25),
]


def settings(**overrides):
    return dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=16, **overrides)


@pytest.mark.parametrize("overrides", CONFIGS)
@pytest.mark.parametrize("classes", CLASSES, ids=lambda c: c[1].__name__)
def test_repr_and_num_parameters_as_transformers(classes, overrides):
    theirs = classes[0](transformers.NemotronConfig(**settings(**overrides)))
    ours = classes[1].from_config(nemotron_c.NemotronConfig(**settings(**overrides)))
    assert repr(ours) == repr(theirs)
    for exclude in (False, True):
        assert ours.num_parameters(exclude_embeddings=exclude) == theirs.num_parameters(exclude_embeddings=exclude)


def test_from_config_is_seeded_and_loads_in_transformers(tmp_path):
    config = nemotron_c.NemotronConfig(**settings(num_hidden_layers=2))
    ids = np.array([[1, 5, 9, 2, 77]])
    model = nemotron_c.AutoModelForCausalLM.from_config(config, seed=3)
    again = nemotron_c.NemotronForCausalLM.from_config(config, seed=3)
    other = nemotron_c.NemotronForCausalLM.from_config(config, seed=4)
    assert np.array_equal(model(ids).logits, again(ids).logits)
    assert not np.allclose(model(ids).logits, other(ids).logits)
    model.save_pretrained(tmp_path)
    reference = transformers.NemotronForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    std = reference.model.embed_tokens.weight.std().item()
    assert abs(std - config.initializer_range) < 0.1 * config.initializer_range
    with torch.no_grad():
        assert_close(model(ids).logits, reference(torch.tensor(ids)).logits.numpy())


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_from_config_quantizes_the_float32_draws(tmp_path, dtype):
    config = nemotron_c.NemotronConfig(**dict(settings(num_hidden_layers=2), hidden_size=64, intermediate_size=128))
    ids = np.array([[1, 5, 9, 2, 77]])
    nemotron_c.NemotronForCausalLM.from_config(config, seed=3).save_pretrained(tmp_path)
    model = nemotron_c.NemotronForCausalLM.from_config(config, seed=3, dtype=dtype)
    assert model.dtype == dtype and model.config.quantization_config["bits"] == int(dtype[3:])
    loaded = nemotron_c.NemotronForCausalLM.from_pretrained(tmp_path, dtype=dtype)
    assert np.array_equal(model(ids).logits, loaded(ids).logits)
    with pytest.raises(ValueError, match="rows of 32 values, not a multiple of the 64 that int8"):  # hidden_size 32
        nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings(num_hidden_layers=1)),
                                                   dtype="int8")


def test_dtype_compares_with_torch_and_numpy_dtypes():
    config = nemotron_c.NemotronConfig(**settings(num_hidden_layers=1))
    model = nemotron_c.NemotronForCausalLM.from_config(config, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and torch.bfloat16 == model.dtype and model.dtype == "bfloat16"
    assert model.dtype != torch.float32 and model.dtype != np.float32
    assert nemotron_c.NemotronForCausalLM.from_config(config).dtype == np.float32
    assert {model.dtype: 1}["bfloat16"] == 1


def test_warns_once_past_max_position_embeddings():
    model = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings(num_hidden_layers=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(np.arange(16)[None])
    with pytest.warns(UserWarning, match=r"17 positions is longer than config.max_position_embeddings \(16\)"):
        model(np.arange(17)[None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(np.arange(20)[None])
