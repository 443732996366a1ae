"""NemotronConfig against Transformers' NemotronConfig, field by field."""
import copy
import json

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from nemotron_c.model.rope import rope_parameters
from tests.helpers.checkpoints import edit_json

FIELDS = [
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "head_dim",
    "hidden_act", "max_position_embeddings", "initializer_range", "norm_eps", "use_cache", "pad_token_id",
    "bos_token_id", "eos_token_id", "tie_word_embeddings", "rope_parameters", "attention_bias",
    "attention_dropout", "mlp_bias", "num_labels", "id2label", "label2id", "output_hidden_states", "return_dict",
]

DICTS = [
    {},
    {"hidden_size": 256, "num_attention_heads": 8},
    {"hidden_size": 256, "num_attention_heads": 8, "head_dim": 64, "num_key_value_heads": 2},
    {"rope_theta": 500000.0},
    {"partial_rotary_factor": 1.0},
    {"rope_parameters": {"rope_type": "default", "rope_theta": 1234.0, "partial_rotary_factor": 0.25}},
    {"rope_scaling": {"type": "linear", "factor": 4.0}, "rope_theta": 20000.0},
    {"num_labels": 5},
    {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 512},
     "hidden_size": 512, "num_attention_heads": 4, "partial_rotary_factor": 1.0},
    {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 1024}, "max_position_embeddings": 4096},
    {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0, "beta_fast": 16,
                         "mscale": 0.7, "mscale_all_dim": 1.0, "truncate": False}},
    {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}},
    # the legacy spelling, an int factor and a max_position_embeddings factor * m / m does not give back exactly
    {"rope_scaling": {"type": "dynamic", "factor": 3}, "max_position_embeddings": 1000},
    {"rope_scaling": {"type": "dynamic", "factor": 1.1}, "max_position_embeddings": 3, "partial_rotary_factor": 1.0},
    {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5,
                         4.0, 4.5], "long_factor": [2.0] * 8, "original_max_position_embeddings": 1024},
     "hidden_size": 256, "num_attention_heads": 8, "max_position_embeddings": 8192},
    {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.1] * 8,
                         "long_factor": [3.0] * 8, "original_max_position_embeddings": 64, "factor": 4.0,
                         "attention_factor": 1.25}, "hidden_size": 256, "num_attention_heads": 8},
    {"id2label": {"0": "neg", "1": "pos", "2": "neutral"}},
    {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True, "pad_token_id": 0,
     "eos_token_id": [3, 7], "norm_eps": 1e-6, "hidden_act": "silu"},
    # a Minitron-4B-like config.json
    {"architectures": ["NemotronForCausalLM"], "bos_token_id": 2, "eos_token_id": 3, "head_dim": 128,
     "hidden_act": "relu2", "hidden_size": 3072, "initializer_range": 0.0134, "intermediate_size": 9216,
     "max_position_embeddings": 4096, "model_type": "nemotron", "num_attention_heads": 24,
     "num_hidden_layers": 32, "num_key_value_heads": 8, "norm_eps": 1e-05, "rope_theta": 10000,
     "partial_rotary_factor": 0.5, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
     "transformers_version": "4.32.0.dev0", "use_cache": True, "vocab_size": 256000},
]


@pytest.mark.parametrize("index", range(len(DICTS)))
def test_fields_match_transformers(index):
    data = {"model_type": "nemotron", **DICTS[index]}
    ours = nemotron_c.NemotronConfig.from_dict(data)
    theirs = transformers.NemotronConfig.from_dict(data)
    for field in FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), field
    expected_kv = theirs.num_key_value_heads or theirs.num_attention_heads
    assert ours.num_key_value_heads == expected_kv
    assert ours.model_type == "nemotron"


@pytest.mark.parametrize("index", range(len(DICTS)))
def test_inverse_frequencies_match_transformers(index):
    data = {"model_type": "nemotron", **DICTS[index]}
    ours = nemotron_c.NemotronConfig.from_dict(data)
    theirs = transformers.NemotronConfig.from_dict(data)
    theirs.num_key_value_heads = theirs.num_key_value_heads or theirs.num_attention_heads
    rotary = transformers.models.nemotron.modeling_nemotron.NemotronRotaryEmbedding(theirs)
    inv_freq, scaling = rope_parameters(ours)
    np.testing.assert_allclose(inv_freq, rotary.inv_freq.numpy(), rtol=2e-7, atol=0)
    assert scaling == pytest.approx(rotary.attention_scaling, rel=1e-12)


def test_round_trip_and_unknown_keys(tmp_path):
    config = nemotron_c.NemotronConfig(hidden_size=128, num_attention_heads=4, my_custom_field=[1, 2])
    assert config.my_custom_field == [1, 2]
    config.save_pretrained(tmp_path)
    again = nemotron_c.AutoConfig.from_pretrained(tmp_path)
    # equal but for where it was read from, which == compares as in Transformers
    assert again.to_diff_dict() == config.to_diff_dict() and again != config
    again.name_or_path = ""
    assert again == config
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["model_type"] == "nemotron"
    # Transformers reads what we write
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert theirs.hidden_size == 128 and theirs.head_dim == 32


def test_to_dict_has_transformers_metadata(tmp_path):
    kwargs = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4)
    transformers.NemotronConfig(**kwargs).save_pretrained(tmp_path)
    edit_json(tmp_path / "config.json", transformers_version="4.1.0")
    for module in (nemotron_c, transformers):
        config = module.AutoConfig.from_pretrained(tmp_path)
        assert config.transformers_version == "4.1.0"  # the file's, kept as Transformers keeps it
        full, diff = config.to_dict(), config.to_diff_dict()
        assert full["_name_or_path"] == str(tmp_path) and "_name_or_path" not in diff
        assert full["transformers_version"] == diff["transformers_version"] == transformers.__version__
        assert "_name_or_path" in config and '"_name_or_path"' in config.to_json_string(use_diff=False)
    ours = nemotron_c.AutoConfig.from_pretrained(tmp_path).to_dict()
    theirs = transformers.AutoConfig.from_pretrained(tmp_path).to_dict()
    assert sorted(ours) == sorted(theirs)
    assert nemotron_c.NemotronConfig(**kwargs).to_dict()["_name_or_path"] == ""


def test_transformers_saved_config_reads_back(tmp_path):
    theirs = transformers.NemotronConfig(hidden_size=96, num_attention_heads=3, num_key_value_heads=1,
                                         partial_rotary_factor=1.0, num_labels=4)
    theirs.save_pretrained(tmp_path)
    ours = nemotron_c.NemotronConfig.from_pretrained(tmp_path)
    for field in FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), field


def test_key_value_heads_missing_means_all_heads():
    """Transformers keeps None and its attention then fails; we take num_attention_heads."""
    config = nemotron_c.NemotronConfig(num_attention_heads=6, hidden_size=96, num_key_value_heads=None)
    assert config.num_key_value_heads == 6
    with pytest.raises(TypeError):
        transformers.NemotronForCausalLM(transformers.NemotronConfig(
            vocab_size=16, hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2))


def test_legacy_nemo_keys():
    assert nemotron_c.NemotronConfig(rope_percent=0.25).partial_rotary_factor == 0.25
    assert nemotron_c.NemotronConfig(rope_percentage=1.0).partial_rotary_factor == 1.0
    assert nemotron_c.NemotronConfig(rope_percent=0.25, partial_rotary_factor=1.0).partial_rotary_factor == 1.0
    config = nemotron_c.NemotronConfig(hidden_size=128, num_attention_heads=4, kv_channels=48)
    assert config.head_dim == 48 and config.kv_channels == 48
    assert nemotron_c.NemotronConfig(hidden_size=128, num_attention_heads=4, kv_channels=48, head_dim=16).head_dim == 16


def test_validation_messages():
    with pytest.raises(ValueError, match="multiple"):
        nemotron_c.NemotronConfig(num_attention_heads=6, num_key_value_heads=4, hidden_size=96).validate()
    # an odd rotary size rotates one more dimension, as in Transformers: which fails where that passes head_dim
    nemotron_c.NemotronConfig(hidden_size=40, num_attention_heads=4, partial_rotary_factor=0.5).validate()
    with pytest.raises(ValueError, match="odd and equals head_dim"):
        nemotron_c.NemotronConfig(hidden_size=36, num_attention_heads=4, partial_rotary_factor=1.0).validate()
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        nemotron_c.NemotronConfig(partial_rotary_factor=1.5).validate()
    with pytest.raises(NotImplementedError, match="proportional"):
        nemotron_c.NemotronConfig(rope_parameters={"rope_type": "proportional", "factor": 2.0}).validate()
    with pytest.raises(ValueError, match="low_freq_factor"):
        nemotron_c.NemotronConfig(rope_parameters={"rope_type": "llama3", "factor": 2.0}).validate()
    with pytest.raises(ValueError, match="model_type"):
        nemotron_c.NemotronConfig.from_dict({"model_type": "llama"})
    with pytest.raises(ValueError, match="model_type"):
        nemotron_c.AutoConfig.for_model("gpt2")
    with pytest.raises(TypeError, match="rope_parameters"):
        nemotron_c.NemotronConfig(rope_parameters=[1, 2])
    with pytest.raises(ValueError, match="factor"):
        nemotron_c.NemotronConfig(rope_parameters={"rope_type": "linear"}).validate()
    with pytest.raises(ValueError, match="rope_theta"):
        nemotron_c.NemotronConfig(rope_theta=0).validate()
    with pytest.raises(TypeError, match="NemotronConfig"):
        nemotron_c.NemotronConfig.from_config(42)


def test_single_label_classification_with_one_label_is_refused_as_transformers_refuses_it(tmp_path):
    fields = {"model_type": "nemotron", "problem_type": "single_label_classification", "num_labels": 1}
    with open(tmp_path / "config.json", "w") as f:
        json.dump(fields, f)
    with pytest.raises(ValueError, match="single_label_classification"):
        transformers.AutoConfig.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="single_label_classification.*num_labels > 1"):
        nemotron_c.AutoConfig.from_pretrained(str(tmp_path))
    assert nemotron_c.NemotronConfig(problem_type="single_label_classification", num_labels=2).num_labels == 2
    assert nemotron_c.NemotronConfig(problem_type="regression", num_labels=1).num_labels == 1


def test_transformers_config_object_accepted(checkpoint):
    path = checkpoint()
    theirs = transformers.AutoConfig.from_pretrained(path)
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, config=theirs)
    assert isinstance(model.config, nemotron_c.NemotronConfig)
    assert model.config.hidden_size == theirs.hidden_size


YARN = {"rope_type": "yarn", "factor": 2.0}
LONGROPE = {"rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4,
            "original_max_position_embeddings": 8}


@pytest.mark.parametrize("fields, message", [
    (dict(rope_parameters={**YARN, "factor": 0}), "'factor'"),
    (dict(rope_parameters={**YARN, "factor": float("nan")}), "'factor'"),
    (dict(rope_parameters={**YARN, "factor": float("inf")}), "'factor'"),
    (dict(rope_parameters={**YARN, "factor": -2}), "'factor'"),
    (dict(rope_parameters={**YARN, "attention_factor": float("nan")}), "'attention_factor'"),
    (dict(rope_parameters={**YARN, "beta_fast": -1}), "'beta_fast'"),  # was "math domain error"
    (dict(rope_parameters={**YARN, "original_max_position_embeddings": 0}), "original_max_position_embeddings"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": float("nan")}), "rope_theta"),
    (dict(rope_parameters={"rope_type": "linear", "factor": True}), "'factor'"),
    # Transformers only warns about these and builds the model (its frequencies then turn NaN or negative, or a
    # factor list of one broadcasts over every frequency)
    (dict(rope_parameters={"rope_type": "dynamic", "factor": -1.0}), "'factor'"),
    (dict(rope_parameters={"rope_type": "dynamic", "factor": 0}), "'factor'"),
    (dict(hidden_size=64, num_attention_heads=4, rope_parameters={**LONGROPE, "short_factor": [1.0]}), "'short_factor'.*list of 4"),
    (dict(hidden_size=64, num_attention_heads=4, rope_parameters={**LONGROPE, "long_factor": [1.0, -2.0, 1.0, 1.0]}), "'long_factor'"),
    (dict(hidden_size=64, num_attention_heads=4, rope_parameters={**LONGROPE, "attention_factor": -1.0}), "'attention_factor'"),
    (dict(hidden_size=64, num_attention_heads=4, rope_parameters={**LONGROPE, "original_max_position_embeddings": None}), "original_max_position_embeddings"),
    (dict(max_position_embeddings=0), "max_position_embeddings"),
    (dict(max_position_embeddings=-5), "max_position_embeddings"),
    (dict(max_position_embeddings=2.5), "max_position_embeddings"),
    (dict(norm_eps=float("nan")), "norm_eps"),
    (dict(hidden_act=["relu"]), "hidden_act"),  # was "unhashable type"
    (dict(num_attention_heads=0), "num_attention_heads"),  # was ZeroDivisionError computing head_dim
    (dict(num_attention_heads="4"), "num_attention_heads"),  # was TypeError on //
])
def test_odd_values_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        nemotron_c.NemotronConfig(**fields).validate()


SMALL = dict(vocab_size=16, hidden_size=64, intermediate_size=16, num_hidden_layers=1, num_attention_heads=4,
             num_key_value_heads=2)


@pytest.mark.parametrize("fields, message, theirs", [
    (dict(rope_parameters={"rope_type": "dynamic"}), "'factor'", KeyError),
    (dict(rope_scaling={"type": "dynamic"}), "'factor'", KeyError),
    # the NTK exponent d / (d - 2) for int(head_dim * partial_rotary_factor) = 2
    (dict(head_dim=4, rope_parameters={"rope_type": "dynamic", "factor": 2.0}), "other than 2", ZeroDivisionError),
    (dict(rope_parameters={k: v for k, v in LONGROPE.items() if k != "long_factor"}), "'long_factor'", KeyError),
    (dict(rope_parameters={**LONGROPE, "short_factor": [1.0] * 3}), "'short_factor'.*list of 4", RuntimeError),
    (dict(rope_parameters={**LONGROPE, "long_factor": [1.0, "a", 1.0, 1.0]}), "'long_factor'", TypeError),
    # its attention factor sqrt(1 + log(factor) / log(original_max_position_embeddings)) divides by log(1)
    (dict(max_position_embeddings=32, rope_parameters={**LONGROPE, "original_max_position_embeddings": 1}),
     "original_max_position_embeddings > 1", ZeroDivisionError),
])
def test_bad_dynamic_and_longrope_parameters_are_refused_where_transformers_fails(fields, message, theirs):
    """Transformers raises a KeyError making such a config, or fails building the model or in its first forward
    pass; ours is a ValueError naming the parameter when a model is built from the config."""
    with pytest.raises(theirs):
        model = transformers.NemotronForCausalLM(transformers.NemotronConfig(**SMALL, **fields))
        model(torch.arange(12)[None] % 16)
    with pytest.raises(ValueError, match=message):
        nemotron_c.NemotronConfig(**SMALL, **fields).validate()


@pytest.mark.parametrize("inner", [{}, {"original_max_position_embeddings": 12}])
def test_top_level_original_max_position_embeddings_is_the_one_transformers_models_use(inner):
    """Phi-3's spelling. Transformers' config keeps rope_parameters' own value (or max_position_embeddings) until a
    model is built, whose rope functions standardize the parameters again and take the top-level one; ours takes it
    at once."""
    own = {k: v for k, v in LONGROPE.items() if k != "original_max_position_embeddings"}
    fields = dict(SMALL, max_position_embeddings=64, original_max_position_embeddings=10, rope_parameters={**own, **inner})
    theirs = transformers.NemotronConfig(**copy.deepcopy(fields))
    transformers.NemotronForCausalLM(theirs)
    assert nemotron_c.NemotronConfig(**fields).rope_parameters == theirs.rope_parameters
    assert theirs.rope_parameters["original_max_position_embeddings"] == 10


WRONG_TYPES = [("tie_word_embeddings", "no"), ("tie_word_embeddings", 1), ("attention_bias", "false"),
               ("attention_bias", None), ("mlp_bias", 0), ("use_cache", "yes"), ("initializer_range", "0.02"),
               ("attention_dropout", None), ("pad_token_id", "0"), ("pad_token_id", 1.0), ("bos_token_id", True),
               ("eos_token_id", [2, "3"]), ("eos_token_id", {"a": 1}), ("eos_token_id", 2.5)]


@pytest.mark.parametrize("key, value", WRONG_TYPES)
def test_fields_of_the_wrong_type_are_refused_as_transformers_refuses_them(key, value, tmp_path):
    """Transformers' strict dataclass refuses each of these when it reads config.json (a
    StrictDataclassFieldValidationError); nemotron_c read tie_word_embeddings="no" as true and built the model.
    Ours is a TypeError naming the field when a model is built from the config."""
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"model_type": "nemotron", "hidden_size": 64, "num_attention_heads": 4, key: value}, f)
    with pytest.raises(Exception, match=f"'{key}'"):
        transformers.AutoConfig.from_pretrained(str(tmp_path))
    config = nemotron_c.AutoConfig.from_pretrained(str(tmp_path))
    with pytest.raises(TypeError, match=f"config.{key} must be"):
        config.validate()


def test_rope_tables_that_overflow_are_refused():
    # every field in range, yet theta ** (2i / d) underflows: the frequencies are inf, the logits NaN, the token 0
    config = nemotron_c.NemotronConfig(rope_parameters={"rope_type": "default", "rope_theta": 1e-300})
    config.validate()
    with pytest.raises(ValueError, match="non-finite rotary frequencies"):
        rope_parameters(config)


def test_label_maps_of_the_wrong_type_are_named():
    with pytest.raises(TypeError, match="id2label must be a dict"):
        nemotron_c.NemotronConfig(id2label=["a", "b"])
    with pytest.raises(TypeError, match="label2id must be a dict"):
        nemotron_c.NemotronConfig(label2id=["a", "b"])


def test_saved_config_drops_transformers_weights_as_transformers(tmp_path):
    """transformers_weights names the file a load read; Transformers' save_pretrained drops it (the weights saved
    beside it have the usual names)."""
    for config, where in ((transformers.NemotronConfig(transformers_weights="custom.safetensors"), "theirs"),
                          (nemotron_c.NemotronConfig(transformers_weights="custom.safetensors"), "ours")):
        config.save_pretrained(tmp_path / where)
        with open(tmp_path / where / "config.json") as f:
            assert "transformers_weights" not in json.load(f)


def test_config_api_as_transformers(tmp_path):
    """What a review found apart (each compared with Transformers' NemotronConfig): a torch dtype is saved by name
    (the save raised after emptying config.json); rope_scaling set after construction takes effect at once (only
    after a save and reload before); from_pretrained applies the keywords the config has and returns the others
    with return_unused_kwargs (ours stored and saved them); num_labels wins over an id2label of another size and
    keeps the names of one of its own; rope_theta and torch_dtype can be set; update, update_from_string,
    to_json_file, iteration and `in`, name_or_path, use_return_dict and get_text_config exist; an infinite float
    Transformers saved as {"__float__": "Infinity"} reads back as a float."""
    base = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
    ours, theirs = nemotron_c.NemotronConfig(**base), transformers.NemotronConfig(**base)
    for config in (ours, theirs):
        config.save_pretrained(tmp_path / "base")
        config.torch_dtype = torch.float16
        config.save_pretrained(tmp_path / type(config).__module__.split(".")[0])
    assert json.load(open(tmp_path / "nemotron_c" / "config.json"))["dtype"] == "float16" == \
        json.load(open(tmp_path / "transformers" / "config.json"))["dtype"]

    for config in (ours, theirs):
        config.rope_scaling = {"rope_type": "linear", "factor": 4.0}
        config.rope_theta = 5e5
    for key in ("rope_type", "factor"):
        assert ours.rope_parameters[key] == theirs.rope_parameters[key] == ours.rope_scaling[key]
    # Transformers' setter replaces the whole dict, so that its theta then reads None; ours keeps the theta set
    assert ours.rope_theta == 5e5 and ours.partial_rotary_factor == 0.5
    ours.save_pretrained(tmp_path / "rope")
    assert nemotron_c.NemotronConfig.from_pretrained(tmp_path / "rope").rope_parameters == ours.rope_parameters

    labelled = dict(base, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    transformers.NemotronConfig(**labelled).save_pretrained(tmp_path / "labels")
    for cls in (nemotron_c.AutoConfig, transformers.AutoConfig):
        config, unused = cls.from_pretrained(tmp_path / "labels", num_labels=3, vocab_size=7, bar=3,
                                             return_unused_kwargs=True)
        assert (config.vocab_size, config.id2label[2], unused) == (7, "LABEL_2", {"bar": 3}) and not hasattr(config, "bar")
    for cls in (nemotron_c.NemotronConfig, transformers.NemotronConfig):
        config = cls(**labelled)
        config.num_labels = 2
        assert config.id2label == {0: "neg", 1: "pos"}
        assert cls(**dict(labelled, num_labels=3)).num_labels == 3
    with pytest.raises(TypeError, match="num_labels must be an int"):
        ours.num_labels = "3"

    for config in (ours, theirs):
        config.update({"vocab_size": 20})
        config.update_from_string("vocab_size=12,tie_word_embeddings=true")
        config.to_json_file(tmp_path / f"{type(config).__module__.split('.')[0]}.json")
        assert config.vocab_size == 12 and config.tie_word_embeddings is True and "vocab_size" in config
        assert "vocab_size" in list(config) and config.use_return_dict and config.get_text_config() is config
    with pytest.raises(ValueError, match="key nonexistent isn't in the original config dict"):
        ours.update_from_string("nonexistent=3")
    assert nemotron_c.NemotronConfig.from_json_file(tmp_path / "nemotron_c.json").vocab_size == 12

    theirs.extra_limit = float("inf")
    theirs.save_pretrained(tmp_path / "inf")
    assert '"__float__"' in open(tmp_path / "inf" / "config.json").read()
    assert nemotron_c.NemotronConfig.from_pretrained(tmp_path / "inf").extra_limit == float("inf")
    assert nemotron_c.NemotronConfig.from_pretrained(tmp_path / "inf").name_or_path == str(tmp_path / "inf")
