"""What Transformers users reach for on a model: repr, num_parameters, dtype against torch dtypes, from_config, the
max_position_embeddings warning; compared with Transformers' models of the same config."""
import copy
import pickle
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
    dict(num_hidden_layers=1, pad_token_id=7),  # embed_tokens shows its padding_idx
    dict(num_hidden_layers=1, pad_token_id=-2),  # counted from the end, as nn.Embedding counts it
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


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("classes", CLASSES, ids=lambda c: c[1].__name__)
def test_from_config_in_half_precision_equals_the_float32_draws_rounded(tmp_path, classes, dtype):
    # the heads read from_config's bfloat16 draws (uint16 bits) as numbers: weights of 48,000 instead of 0.03
    config = nemotron_c.NemotronConfig(**settings(num_hidden_layers=1, num_labels=3))
    ids = np.array([[1, 5, 9, 2, 77]])
    classes[1].from_config(config, seed=2).save_pretrained(tmp_path)
    rounded = classes[1].from_pretrained(tmp_path, dtype=dtype)
    model = classes[1].from_config(config, seed=2, dtype=dtype)
    for got, want in zip(model(ids, use_cache=False).values(), rounded(ids, use_cache=False).values()):
        np.testing.assert_array_equal(got, want)
    if hasattr(model, "head"):
        np.testing.assert_array_equal(model.head.weight, rounded.head.weight)
        assert np.abs(model.head.weight).max() < 10 * config.initializer_range


@pytest.mark.parametrize("tied", [False, True])
def test_from_config_zeroes_the_padding_row_as_transformers(tied):
    overrides = dict(num_hidden_layers=1, pad_token_id=3, tie_word_embeddings=tied)
    theirs = transformers.NemotronForCausalLM(transformers.NemotronConfig(**settings(**overrides)))
    ours = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings(**overrides)))
    assert not theirs.model.embed_tokens.weight[3].any() and theirs.model.embed_tokens.weight[4].any()
    table = ours.get_input_embeddings().weight
    assert not table[3].any() and table[4].all()
    logits = ours(np.array([[1, 2]])).logits[0, -1]  # a tied lm_head shares the zero row
    assert (logits[3] == 0) == tied


def test_from_config_takes_transformers_config_and_names_bad_arguments():
    config = transformers.NemotronConfig(**settings(num_hidden_layers=1))
    model = nemotron_c.AutoModelForCausalLM.from_config(config, seed=1)
    assert isinstance(model.config, nemotron_c.NemotronConfig) and not isinstance(model.config, type(config))
    same = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings(num_hidden_layers=1)), seed=1)
    np.testing.assert_array_equal(model(np.array([[1, 2]])).logits, same(np.array([[1, 2]])).logits)
    ours = nemotron_c.NemotronConfig.from_config(config)
    with pytest.raises(TypeError, match="config must be a NemotronConfig, not dict"):
        nemotron_c.NemotronForCausalLM.from_config({"vocab_size": 100})
    with pytest.raises(ValueError, match="seed=-1: "):
        nemotron_c.NemotronForCausalLM.from_config(ours, seed=-1)
    for threads in (1.5, True, "2"):
        with pytest.raises(TypeError, match=f"num_threads must be an int, got {threads!r}"):
            nemotron_c.NemotronForCausalLM.from_config(ours, num_threads=threads)
    assert nemotron_c.NemotronForCausalLM.from_config(ours, num_threads=np.int64(1)).num_threads == 1


@pytest.mark.parametrize("classes", CLASSES, ids=lambda c: c[1].__name__)
def test_token_type_ids_are_taken_and_ignored_as_transformers(classes):
    config = settings(num_hidden_layers=1, num_labels=2, pad_token_id=0)
    theirs = classes[0](transformers.NemotronConfig(**config)).eval()
    ours = classes[1].from_config(nemotron_c.NemotronConfig(**config))
    ids = np.array([[1, 5, 9]])
    with torch.no_grad():
        theirs(torch.as_tensor(ids), token_type_ids=torch.zeros(1, 3, dtype=torch.long))  # accepted there too
    for got, want in zip(ours(ids, token_type_ids=np.ones_like(ids), use_cache=False).values(),
                         ours(ids, use_cache=False).values()):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="unexpected keyword argument.*atention_mask"):
        ours(ids, atention_mask=np.ones_like(ids))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int4"])
def test_deepcopy_of_a_from_config_model_is_an_independent_equal_model(dtype):
    config = nemotron_c.NemotronConfig(**dict(settings(num_hidden_layers=1), hidden_size=64, intermediate_size=128))
    model = nemotron_c.NemotronForCausalLM.from_config(config, seed=4, dtype=dtype)
    model.cache_dtype = "bfloat16"
    model.generation_config.max_new_tokens = 5
    twin = copy.deepcopy(model)
    ids = np.array([[1, 5, 9]])
    np.testing.assert_array_equal(twin(ids).logits, model(ids).logits)
    np.testing.assert_array_equal(twin.generate(ids), model.generate(ids))
    assert (twin.dtype, twin.cache_dtype, twin.generation_config.max_new_tokens) == (dtype, "bfloat16", 5)
    twin.generation_config.max_new_tokens = 2
    twin.config.pad_token_id = 1
    assert model.generation_config.max_new_tokens == 5 and model.config.pad_token_id is None


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
    # scoring too, with its truncation first, and the warning pointing at the caller's line
    model = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(**settings(num_hidden_layers=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.score([list(range(40))], max_length=16)
    with pytest.warns(UserWarning, match=r"40 positions is longer than config.max_position_embeddings \(16\)") as caught:
        model.score([[1, 2], list(range(40))], chunk_size=7)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.score([list(range(40))])



def test_to_float_half_and_bfloat16_convert_as_loading_in_that_dtype(checkpoint):
    """model.to(dtype) (and .float(), .half(), .bfloat16()) converts the weights as from_pretrained(dtype=...) does,
    as Transformers converts them; the CPU, torch's options and a tensor's device and dtype are taken; another
    device, a non-float dtype or a quantized model's conversion are refused."""
    path = checkpoint(scale=0.25)
    ids = np.array([[5, 17, 33, 2, 9, 4]])
    loaded = {name: nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=name)(ids).logits
              for name in ("float32", "bfloat16", "float16")}
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    cache = model(ids[:, :3], use_cache=True).past_key_values
    for convert, name in ((lambda m: m.to(torch.bfloat16), "bfloat16"), (lambda m: m.half(), "float16"),
                          (lambda m: m.to("cpu", dtype=torch.float32, non_blocking=True), "float32"),
                          (lambda m: m.to(torch.zeros(1, dtype=torch.bfloat16)), "bfloat16"),
                          (lambda m: m.bfloat16(), "bfloat16"), (lambda m: m.float(), "float32")):
        assert convert(model) is model and model.dtype == name and model.config.dtype == name
        np.testing.assert_array_equal(model(ids).logits, loaded[name])
    with pytest.raises(ValueError, match="made before this model's weights changed"):
        model(ids[:, 3:], past_key_values=cache)
    model.to(torch.float16)
    again = pickle.loads(pickle.dumps(model))
    assert again.dtype == "float16"
    np.testing.assert_array_equal(again(ids).logits, loaded["float16"])
    for bad, error in ((("cuda",), ValueError), ((torch.float64,), ValueError), ((torch.int8,), ValueError),
                       ((torch.zeros(1, device="meta"),), ValueError)):
        with pytest.raises(error):
            model.to(*bad)
    assert model.dtype == "float16"
    quantized = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(scale=0.25, intermediate_size=128),
                                                                dtype="int8")
    with pytest.raises(ValueError, match="not supported for int8 models"):
        quantized.float()
    assert quantized.to("cpu") is quantized and quantized.to(torch.device("cpu"), non_blocking=True) is quantized


@pytest.mark.parametrize("name, tied", [("NemotronForCausalLM", False), ("NemotronForCausalLM", True),
                                        ("NemotronForSequenceClassification", False),
                                        ("NemotronForTokenClassification", False),
                                        ("NemotronForQuestionAnswering", False), ("NemotronModel", False)])
def test_the_module_tree_scripts_reach_into(checkpoint, name, tied):
    """base_model, the backbone under its attribute (model, or transformer), get_decoder, get_output_embeddings and
    the embedding's padding_idx, as Transformers gives them (they raised AttributeError)."""
    path = checkpoint(scale=0.25, model_class=getattr(transformers, name), tie_word_embeddings=tied, pad_token_id=3)
    ours = getattr(nemotron_c, name).from_pretrained(path)
    theirs = getattr(transformers, name).from_pretrained(path, dtype=torch.float32)
    ids = np.array([[5, 17, 33, 2, 9]])
    prefix = type(theirs).base_model_prefix
    backbones = [ours.base_model, ours.get_decoder()] + ([getattr(ours, prefix)] if name != "NemotronModel" else [])
    with torch.no_grad():
        expected = theirs.base_model(torch.as_tensor(ids)).last_hidden_state.numpy()
    for backbone in backbones:
        assert type(backbone) is nemotron_c.NemotronModel
        assert_close(backbone(ids).last_hidden_state, expected, atol=1e-5)
    assert (ours.base_model is ours) == (name == "NemotronModel")
    head, reference = ours.get_output_embeddings(), theirs.get_output_embeddings()
    assert (head is None) == (reference is None)
    if head is not None:
        assert repr(head) == repr(reference)
        np.testing.assert_array_equal(head.weight, reference.weight.detach().numpy())
        assert_close(head(ours.base_model(ids).last_hidden_state), ours(ids).logits, atol=1e-5)
    assert ours.get_input_embeddings().padding_idx == theirs.get_input_embeddings().padding_idx == 3
    assert ours.tie_weights() is None
    with pytest.raises(NotImplementedError, match="resize the embeddings with Transformers"):
        ours.resize_token_embeddings(200)
    with pytest.raises(AttributeError, match="has no attribute 'layers'"):
        ours.layers


def test_a_quantized_head_is_given_dequantized(checkpoint):
    path = checkpoint(scale=0.25, hidden_size=64, intermediate_size=128)
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype="int8")
    head = model.get_output_embeddings()
    assert head.weight.dtype == np.float32 and head.weight.shape == (96, 64)
    assert_close(head(model.base_model(np.array([[1, 2, 3]])).last_hidden_state),
                 model(np.array([[1, 2, 3]])).logits, atol=1e-4)
