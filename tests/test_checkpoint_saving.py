"""save_pretrained of the models and the tokenizer: the files Transformers writes for the same model, read back by
Transformers and by nemotron_c to the same outputs."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained, hf_logits
from huggingface_hub.serialization._base import parse_size_to_int, split_state_dict_into_shards_factory
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_configuration import DICTS as CONFIG_DICTS
from helpers.checkpoints import TINY
from helpers.tokenizer_builders import build_all

import nemotron_c
import nemotron_c.checkpoint.saving
from nemotron_c.conversion import convert_checkpoint
from nemotron_c.checkpoint.saving import TensorToSave, parse_shard_size, plan_shards, safetensors_header

IDS = np.array([[5, 9, 2, 77, 13, 40, 41], [1, 2, 3, 4, 5, 6, 7]])
HEADS = {
    "NemotronForSequenceClassification": dict(num_labels=3, pad_token_id=0),
    "NemotronForQuestionAnswering": dict(seed=1),
    "NemotronForTokenClassification": dict(num_labels=5, seed=2),
}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def assert_same_files(ours, theirs, names=None):
    """Both directories hold the same files with the same bytes."""
    names = names or sorted(os.listdir(theirs))
    assert sorted(os.listdir(ours)) == sorted(names)
    for name in names:
        assert read_bytes(os.path.join(ours, name)) == read_bytes(os.path.join(theirs, name)), name


def stored_tensors(directory):
    """{name: (safetensors dtype, float32 values)} of every tensor of a directory's safetensors files."""
    out = {}
    for file in sorted(os.listdir(directory)):
        if file.endswith(".safetensors"):
            with safe_open(os.path.join(directory, file), "pt") as f:
                for name in f.keys():
                    tensor = f.get_tensor(name)
                    out[name] = (str(tensor.dtype), tensor.float().numpy())
    return out


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_causal_lm_saves_the_files_transformers_saves(checkpoint, tmp_path, dtype):
    """Loaded in its stored dtype and saved: config.json, generation_config.json and model.safetensors are
    byte for byte those Transformers wrote; both libraries read them back to the original's logits."""
    source = checkpoint(dtype=dtype)
    model = nemotron_c.NemotronForCausalLM.from_pretrained(source)
    model.save_pretrained(tmp_path)
    assert_same_files(tmp_path, source)
    theirs = hf_from_pretrained(source)
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), hf_logits(theirs, IDS), atol=0, what="Transformers")
    again = nemotron_c.NemotronForCausalLM.from_pretrained(tmp_path)
    assert again.dtype == dtype
    assert_close(again(IDS).logits, model(IDS).logits, atol=0, what="nemotron_c")
    generated = again.generate(IDS[:1], max_new_tokens=6, do_sample=False)
    reference = theirs.generate(torch.as_tensor(IDS[:1]), max_new_tokens=6, do_sample=False)
    assert np.array_equal(np.asarray(generated), reference.numpy())


@pytest.mark.parametrize("tie", [True, False])
def test_tied_and_untied_embeddings(checkpoint, tmp_path, tie):
    source = checkpoint(tie_word_embeddings=tie, seed=3)
    nemotron_c.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path)
    assert_same_files(tmp_path, source)
    assert ("lm_head.weight" in stored_tensors(tmp_path)) is not tie


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_model_converted_at_load_saves_the_converted_weights(checkpoint, tmp_path, dtype):
    """Each tensor as torch rounds it to the dtype; Transformers reads the file to its own converted model."""
    source = checkpoint()
    nemotron_c.NemotronForCausalLM.from_pretrained(source, dtype=dtype).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == dtype
    original = hf_from_pretrained(source)
    saved = stored_tensors(tmp_path)
    state = original.state_dict()
    assert sorted(saved) == sorted(state)
    for name, (stored_dtype, values) in saved.items():
        assert stored_dtype == f"torch.{dtype}"
        assert np.array_equal(values, state[name].to(getattr(torch, dtype)).float().numpy()), name
    with torch.no_grad():
        for param in original.parameters():
            param.copy_(param.to(getattr(torch, dtype)).float())
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), hf_logits(original, IDS), atol=0)


def test_sharded_save_matches_transformers_and_replaces_an_earlier_layout(checkpoint, tmp_path_factory):
    """With a tiny max_shard_size the shards, their names and the index are those of Transformers; a later save
    in the other layout leaves no file of the earlier one a reader could take instead."""
    tmp_path, theirs = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("theirs")
    source = checkpoint(shard_size="20KB")
    model = nemotron_c.NemotronForCausalLM.from_pretrained(source)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    transformers.NemotronForCausalLM.from_pretrained(source).save_pretrained(theirs, max_shard_size="20KB")
    assert_same_files(tmp_path, theirs)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(v.size * 4 for _, v in stored_tensors(tmp_path).values())
    assert index["metadata"]["total_parameters"] == hf_from_pretrained(source).num_parameters()
    assert len(set(index["weight_map"].values())) == 13
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), model(IDS).logits, atol=1e-4)

    model.save_pretrained(tmp_path, max_shard_size="100KB")  # fewer shards: the others are removed
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model-00001-of-00003.safetensors",
                                            "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                                            "model.safetensors.index.json"]
    model.save_pretrained(tmp_path)  # one file: shards and index go
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    model.save_pretrained(tmp_path, max_shard_size=100_000)  # sharded again: model.safetensors goes
    assert "model.safetensors" not in os.listdir(tmp_path)
    again = nemotron_c.NemotronForCausalLM.from_pretrained(tmp_path)
    assert_close(again(IDS).logits, model(IDS).logits, atol=0)


@pytest.mark.parametrize("max_shard_size", [1, 20_000, "0.05MB"])
@pytest.mark.parametrize("layers", [2, 11])
def test_loaded_model_sharded_as_transformers_shards_it(checkpoint, tmp_path, max_shard_size, layers):
    """Transformers' save of a model made by from_pretrained sorts its tensors by name (reverting the weight
    conversions, dot_natural_key: lm_head first, layers.2 before layers.10) before cutting shards, unlike its save
    of a model made from a config: the shards must hold the same tensors."""
    source = checkpoint(seed=3, num_hidden_layers=layers)
    nemotron_c.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path / "ours",
                                                                           max_shard_size=max_shard_size)
    theirs = transformers.NemotronForCausalLM.from_pretrained(source)
    theirs.save_pretrained(tmp_path / "theirs", max_shard_size=max_shard_size)
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")


@pytest.mark.parametrize("name", ["NemotronForCausalLM", "NemotronForSequenceClassification"])
def test_model_made_from_a_config_sharded_as_transformers_shards_one(tmp_path, name):
    """A model made from a config keeps the state_dict's order in Transformers' save (no weight conversions to
    revert): the same tensors in each shard (the weights are random, so only the index is compared)."""
    config = transformers.NemotronConfig(**{**TINY, "num_hidden_layers": 11}, num_labels=2)
    getattr(transformers, name)(config).save_pretrained(tmp_path / "theirs", max_shard_size="20KB")
    ours = getattr(nemotron_c, name).from_config(nemotron_c.NemotronConfig(**config.to_dict()))
    ours.save_pretrained(tmp_path / "ours", max_shard_size="20KB")
    index = "model.safetensors.index.json"
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "theirs"))
    assert (tmp_path / "ours" / index).read_text() == (tmp_path / "theirs" / index).read_text()


@pytest.mark.parametrize("layers", [2, 11])
def test_convert_shards_as_transformers_saves_the_loaded_model(checkpoint, tmp_path, layers):
    source = checkpoint(seed=3, num_hidden_layers=layers)
    convert_checkpoint(source, tmp_path / "ours", max_shard_size="20KB")
    transformers.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path / "theirs", max_shard_size="20KB")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")


@pytest.mark.parametrize("max_shard_size", ["50GB", "20KB"])
def test_variant_saved_as_transformers_saves_it(checkpoint, tmp_path, max_shard_size):
    """model.fp16.safetensors, or model.fp16-0000i-of-0000n.safetensors and model.safetensors.index.fp16.json;
    read back by both with variant=."""
    source = checkpoint(seed=3)
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(source, dtype="float16")
    ours.save_pretrained(tmp_path / "ours", variant="fp16", max_shard_size=max_shard_size)
    transformers.NemotronForCausalLM.from_pretrained(source, dtype=torch.float16).save_pretrained(
        tmp_path / "theirs", variant="fp16", max_shard_size=max_shard_size)
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")
    again = nemotron_c.NemotronForCausalLM.from_pretrained(tmp_path / "ours", variant="fp16")
    assert_close(again(IDS).logits, ours(IDS).logits, atol=0)
    theirs = transformers.NemotronForCausalLM.from_pretrained(tmp_path / "ours", variant="fp16", dtype=torch.float32)
    assert_close(hf_logits(theirs, IDS), ours(IDS).logits, atol=1e-4)


def test_variant_save_removes_stale_files_as_transformers(checkpoint, tmp_path):
    """A save removes the shards of an earlier one its names begin with: a plain save those of a variant too
    (Transformers' startswith("model")), a variant's save only its own; and the other layout of its variant."""
    model = nemotron_c.NemotronForCausalLM.from_pretrained(checkpoint(seed=3))
    model.save_pretrained(tmp_path, variant="fp16", max_shard_size="20KB")
    model.save_pretrained(tmp_path, variant="fp16", max_shard_size="100KB")
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json",
                                            "model.fp16-00001-of-00003.safetensors",
                                            "model.fp16-00002-of-00003.safetensors",
                                            "model.fp16-00003-of-00003.safetensors",
                                            "model.safetensors.index.fp16.json"]
    model.save_pretrained(tmp_path, variant="v2")
    assert "model.v2.safetensors" in os.listdir(tmp_path) and "model.fp16-00001-of-00003.safetensors" in os.listdir(tmp_path)
    model.save_pretrained(tmp_path, variant="v2", max_shard_size="100KB")  # its single file goes
    assert "model.v2.safetensors" not in os.listdir(tmp_path)
    model.save_pretrained(tmp_path)  # Transformers' rule takes every model*-0000i-of-0000n shard
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors",
                                            "model.safetensors.index.fp16.json", "model.safetensors.index.v2.json"]


@pytest.mark.parametrize("name", list(HEADS))
def test_heads_save_the_files_transformers_saves(checkpoint, tmp_path, name):
    source = checkpoint(model_class=getattr(transformers, name), **HEADS[name])
    model = getattr(nemotron_c, name).from_pretrained(source)
    model.save_pretrained(tmp_path)
    assert_same_files(tmp_path, source)  # no generation_config.json: the heads do not generate
    again = getattr(nemotron_c, name).from_pretrained(tmp_path)
    outputs, expected = again(IDS).to_tuple(), model(IDS).to_tuple()
    assert len(outputs) == len(expected)
    arrays = [(ours, before) for ours, before in zip(outputs, expected) if isinstance(before, np.ndarray)]
    assert arrays  # the logits (start and end logits) at least, not only a cache
    for ours, before in arrays:
        assert_close(ours, before, atol=0)


def test_bare_model_saves_without_prefix(checkpoint, tmp_path):
    source = checkpoint(model_class=transformers.NemotronModel, seed=4)
    model = nemotron_c.NemotronModel.from_pretrained(source)
    model.save_pretrained(tmp_path)
    assert_same_files(tmp_path, source)
    assert "embed_tokens.weight" in stored_tensors(tmp_path)


def test_decoder_of_a_causal_lm_saved_as_transformers_saves_it(checkpoint, tmp_path):
    """A causal LM checkpoint loaded as NemotronModel: its class in the config, no prefix, no lm_head."""
    source = checkpoint(seed=4)
    nemotron_c.NemotronModel.from_pretrained(source).save_pretrained(tmp_path / "ours")
    transformers.NemotronModel.from_pretrained(source).save_pretrained(tmp_path / "theirs")
    assert_same_files(tmp_path / "ours", tmp_path / "theirs")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == ["NemotronModel"]


def test_save_into_the_directory_it_was_loaded_from(checkpoint, tmp_path):
    """The weights are memory-mapped from the files being replaced: they are renamed over, never rewritten."""
    directory = tmp_path / "model"
    shutil.copytree(checkpoint(), directory)
    # a longer header than ours: rewritten in place, the file would move the data under the mapped weights
    weights = load_file(directory / "model.safetensors")
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt", "written_by": "another tool"})
    model = nemotron_c.NemotronForCausalLM.from_pretrained(directory)
    before = model(IDS).logits
    model.save_pretrained(directory)
    model.save_pretrained(directory, max_shard_size="30KB")
    assert_close(model(IDS).logits, before, atol=0)
    assert_close(nemotron_c.NemotronForCausalLM.from_pretrained(directory)(IDS).logits, before, atol=0)


@pytest.mark.parametrize("before, after", [("20KB", "50GB"), ("50GB", "20KB"), ("20KB", "100KB")])
def test_an_interrupted_save_leaves_the_earlier_checkpoint(checkpoint, tmp_path, monkeypatch, before, after):
    """Ctrl-C while the new files are written: the files of the earlier save are removed only after, so the
    directory still loads (Transformers removes stale shards first, and we also remove the other layout's file)."""
    model = nemotron_c.NemotronForCausalLM.from_pretrained(checkpoint(seed=3))
    model.save_pretrained(tmp_path, max_shard_size=before)
    write = nemotron_c.checkpoint.saving.write_safetensors
    calls = []

    def interrupted(path, tensors, metadata=None):
        calls.append(path)
        if len(calls) == 2 or after == "50GB":
            raise KeyboardInterrupt
        write(path, tensors, metadata)

    monkeypatch.setattr(nemotron_c.checkpoint.saving, "write_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path, max_shard_size=after)
    monkeypatch.undo()
    assert_close(nemotron_c.NemotronForCausalLM.from_pretrained(tmp_path)(IDS).logits, model(IDS).logits, atol=0)
    assert_close(hf_logits(hf_from_pretrained(tmp_path), IDS), model(IDS).logits, atol=1e-4)


def test_an_invalid_generation_config_is_refused_before_the_weights_are_written(checkpoint, tmp_path):
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(checkpoint(seed=3))
    theirs = transformers.NemotronForCausalLM.from_pretrained(checkpoint(seed=3))
    for model, directory in ((ours, tmp_path / "ours"), (theirs, tmp_path / "theirs")):
        model.generation_config.temperature = 0.5  # without do_sample: Transformers refuses to save it
        with pytest.raises(ValueError, match="Fix these issues to save the configuration"):
            model.save_pretrained(directory)
        assert not any(name.endswith(".safetensors") for name in os.listdir(directory))
    assert os.listdir(tmp_path / "ours") == []  # no config.json either (Transformers has written its own by then)


def test_save_refuses_a_file_and_what_it_cannot_write(checkpoint, tmp_path):
    model = nemotron_c.NemotronForCausalLM.from_pretrained(checkpoint())
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        model.save_pretrained(file)
    with pytest.raises(NotImplementedError, match="safetensors only"):
        model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(TypeError, match="variant must be a str"):
        model.save_pretrained(tmp_path / "variant", variant=16)
    with pytest.raises(TypeError, match="unexpected keyword"):
        model.save_pretrained(tmp_path / "typo", max_shard_sise="1GB")
    for bad in ("5XB", "GB", "five GB", "5 G B", "-1GB", "", "nanGB", "infGB", "1e400KB"):
        with pytest.raises(ValueError, match="max_shard_size"):
            model.save_pretrained(tmp_path / "bad", max_shard_size=bad)
    with pytest.raises(ValueError, match="negative"):
        model.save_pretrained(tmp_path / "bad", max_shard_size=-1)
    with pytest.raises(TypeError, match="max_shard_size"):
        model.save_pretrained(tmp_path / "bad", max_shard_size=1.5)
    assert not os.path.exists(tmp_path / "bad")  # refused before anything is written


@pytest.mark.parametrize("text", ["5GB", "500MB", "10KB", "1TB", "0.5GB", "5gb", " 20 KB ", "1e3KB", "+5MB", "1_000KB",
                                  "5.GB", "2.5e-1GB", "\t7\nMB"])
def test_shard_sizes_read_as_transformers_reads_them(text):
    assert parse_shard_size(text) == parse_size_to_int(text)


@pytest.mark.parametrize("limit", [1, 10, 16, 25, 40, 100])
def test_shards_planned_as_huggingface_hub_plans_them(limit):
    """Greedy in state_dict order, a tensor above the limit alone, a shard that exactly fits kept whole."""
    sizes = [("a", 10), ("b", 6), ("c", 40), ("d", 4), ("e", 16), ("f", 9), ("g", 1), ("h", 25)]
    split = split_state_dict_into_shards_factory(dict(sizes), get_storage_size=lambda size: size,
                                                 filename_pattern="model{suffix}.safetensors", max_shard_size=limit)
    assert plan_shards(sizes, limit) == list(split.filename_to_tensors.values())


@pytest.mark.parametrize("name_length", range(1, 9))
def test_safetensors_header_is_padded_to_eight_bytes(tmp_path, name_length):
    """The data starts 8-aligned, the padding is spaces, and safetensors reads the file."""
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = safetensors_header([TensorToSave.of("x" * name_length, array, "float32")], {"format": "pt"})
    length = int.from_bytes(header[:8], "little")
    assert length % 8 == 0 and len(header) == 8 + length
    assert json.loads(header[8:]) == {"__metadata__": {"format": "pt"},
                                      "x" * name_length: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    (tmp_path / "t.safetensors").write_bytes(header + array.tobytes())
    assert np.array_equal(load_file(tmp_path / "t.safetensors")["x" * name_length], array)


def test_binary_units_and_integers():
    assert parse_shard_size("2GiB") == 2 * 2**30
    assert parse_shard_size("3MiB") == 3 * 2**20
    assert parse_shard_size(12345) == 12345


LEGACY_CONFIG = {  # as checkpoints converted with Transformers 4 carry it
    "model_type": "nemotron", "architectures": ["NemotronForCausalLM"], "torch_dtype": "bfloat16",
    "rope_theta": 10000, "partial_rotary_factor": 0.5, "hidden_size": 3072, "num_attention_heads": 24,
    "num_key_value_heads": 8, "kv_channels": 128, "head_dim": 128, "rope_scaling": None, "num_labels": 3,
    "problem_type": "regression", "transformers_version": "4.44.0", "my_key": [1, 2],
}


@pytest.mark.parametrize("index", range(len(CONFIG_DICTS) + 1))
def test_config_json_as_transformers_writes_it(tmp_path, index):
    """config.json of nemotron_c's config equals Transformers' for the same dict, but for num_key_value_heads,
    which we resolve where Transformers keeps null."""
    data = {"model_type": "nemotron", **(CONFIG_DICTS + [LEGACY_CONFIG])[index]}
    transformers.NemotronConfig.from_dict(data).save_pretrained(tmp_path / "theirs")
    ours = nemotron_c.NemotronConfig.from_dict(data)
    ours.save_pretrained(tmp_path / "ours")
    theirs = json.loads((tmp_path / "theirs" / "config.json").read_text())
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    if theirs["num_key_value_heads"] is None:
        theirs["num_key_value_heads"] = ours.num_attention_heads
    assert written == theirs
    again = nemotron_c.NemotronConfig.from_pretrained(tmp_path / "ours")
    assert again.to_diff_dict() == ours.to_diff_dict() and again.name_or_path == str(tmp_path / "ours")


# ---------------------------------------------------------------- tokenizer

TEXTS = ["Hello world, this is   a test.", " leading space", "unicode: héllo wörld 日本語 😀 \u200d",
         "<extra_id_0>System\nhi<extra_id_1>User", "<extra_id_1>   spaced <extra_id_0> ", "a</s>b<s>c<pad>", "",
         "  \n\t x  "]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
TOKENIZERS = ["nemotron", "plain_strings", "llama_legacy", "legacy", "no_decoder", "spm_only", "spm_only_llama"]


@pytest.fixture(scope="session")
def dirs(tmp_path_factory):
    return build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))


def assert_same_tokenizer(ours, theirs):
    """Same ids, decoded text, padding, special tokens and chat template."""
    for text in TEXTS:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    if theirs.pad_token is not None:
        batch = dict(padding=True, truncation=True, max_length=6)
        assert ours(TEXTS[:3], **batch)["input_ids"] == theirs(TEXTS[:3], **batch)["input_ids"]
    for name in ("padding_side", "truncation_side", "model_max_length", "bos_token", "eos_token", "unk_token",
                 "pad_token", "pad_token_id", "all_special_tokens", "chat_template"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    if theirs.chat_template:
        text = theirs.apply_chat_template(MESSAGES, tokenize=False)
        assert ours.apply_chat_template(MESSAGES, tokenize=False) == text


@pytest.mark.parametrize("load_kwargs", [{}, {"add_bos_token": True, "add_eos_token": True}], ids=["plain", "bos_eos"])
@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokenizer_round_trip(dirs, tmp_path, name, load_kwargs):
    """Saved by nemotron_c, read by Transformers and by nemotron_c: the tokenizer Transformers reads from the
    original directory (with the same from_pretrained arguments)."""
    ours = nemotron_c.AutoTokenizer.from_pretrained(dirs[name], **load_kwargs)
    written = ours.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, written))
    assert all(os.path.dirname(f) == str(tmp_path) for f in written)
    reference = transformers.AutoTokenizer.from_pretrained(dirs[name], **load_kwargs)
    assert_same_tokenizer(transformers.AutoTokenizer.from_pretrained(tmp_path), reference)
    assert_same_tokenizer(nemotron_c.AutoTokenizer.from_pretrained(tmp_path), reference)


@pytest.mark.parametrize("tokenizer_class", ["LlamaTokenizer", "PreTrainedTokenizerFast"])
def test_tokenizer_with_added_tokens_decoder(dirs, tmp_path, tokenizer_class):
    """A config written by Transformers 4 lists the added tokens with their flags (LlamaTokenizer then keeps only
    those); the saved tokenizer.json carries them."""
    source = tmp_path / "source"
    shutil.copytree(dirs["nemotron"], source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    flags = dict(lstrip=False, rstrip=False, normalized=False, single_word=False)
    config["added_tokens_decoder"] = {
        "0": dict(content="<unk>", special=True, **flags), "1": dict(content="<s>", special=True, **flags),
        "2": dict(content="</s>", special=True, **flags), "5": dict(content="<extra_id_0>", special=True, **flags),
        "6": dict(content="<extra_id_1>", special=False, **{**flags, "rstrip": True}),
    }
    config["tokenizer_class"] = tokenizer_class
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    nemotron_c.AutoTokenizer.from_pretrained(source).save_pretrained(tmp_path / "saved")
    reference = transformers.AutoTokenizer.from_pretrained(source)
    assert_same_tokenizer(transformers.AutoTokenizer.from_pretrained(tmp_path / "saved"), reference)
    assert_same_tokenizer(nemotron_c.AutoTokenizer.from_pretrained(tmp_path / "saved"), reference)


@pytest.mark.parametrize("name", ["nemotron", "plain_strings", "big"])
def test_tokenizer_files_as_transformers_writes_them(dirs, tmp_path, name):
    """The same file names (and returned paths), the same tokenizer_config.json entries and the same added tokens
    and post-processor in tokenizer.json as Transformers' save of the same directory."""
    ours = nemotron_c.AutoTokenizer.from_pretrained(dirs[name]).save_pretrained(tmp_path / "ours")
    theirs = transformers.AutoTokenizer.from_pretrained(dirs[name]).save_pretrained(tmp_path / "theirs")
    assert [os.path.basename(f) for f in ours] == [os.path.basename(f) for f in theirs]
    config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    expected = json.loads((tmp_path / "theirs" / "tokenizer_config.json").read_text())
    # loading-call leftovers, and LlamaTokenizer's __init__ defaults that it writes back
    for key in ("is_local", "local_files_only", "add_prefix_space", "use_default_system_prompt"):
        expected.pop(key, None)
        config.pop(key, None)
    config.pop("legacy", None)  # kept by us: LlamaTokenizer reads it (Transformers drops it)
    assert config == expected
    ours_json = json.loads((tmp_path / "ours" / "tokenizer.json").read_text())
    their_json = json.loads((tmp_path / "theirs" / "tokenizer.json").read_text())
    for key in ("added_tokens", "post_processor"):
        assert ours_json[key] == their_json[key], key
    assert ours_json["model"]["vocab"] == their_json["model"]["vocab"]
    if (tmp_path / "theirs" / "chat_template.jinja").exists():
        template = read_bytes(tmp_path / "theirs" / "chat_template.jinja")
        assert read_bytes(tmp_path / "ours" / "chat_template.jinja") == template


@pytest.mark.parametrize("name", ["nemotron", "big", "spm_only"])
def test_changed_attributes_survive(dirs, tmp_path, name):
    """padding_side and truncation_side survive even when the loaded config did not name them (Transformers then
    drops the change)."""
    ours = nemotron_c.AutoTokenizer.from_pretrained(dirs[name])
    changed = dict(padding_side="right" if ours.padding_side == "left" else "left", truncation_side="left",
                   model_max_length=77, pad_token="<s>", chat_template="{{ messages[0]['content'] }}|")
    for key, value in changed.items():
        setattr(ours, key, value)
    (tmp_path / "special_tokens_map.json").write_text('{"pad_token": "</s>"}')  # an earlier save's, to be replaced
    ours.save_pretrained(tmp_path)
    for auto in (nemotron_c.AutoTokenizer, transformers.AutoTokenizer):
        loaded = auto.from_pretrained(tmp_path)
        for key, value in changed.items():
            assert getattr(loaded, key) == value, (type(loaded).__name__, key)
        assert loaded.pad_token_id == ours.convert_tokens_to_ids("<s>")
        assert loaded(["a b c d e f g h", "a"], padding=True)["input_ids"] == ours(["a b c d e f g h", "a"],
                                                                                   padding=True)["input_ids"]
    ours.save_pretrained(tmp_path, save_jinja_files=False)  # the template in the config, the .jinja removed
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"] == changed["chat_template"]
    assert not (tmp_path / "chat_template.jinja").exists()
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).chat_template == changed["chat_template"]
    ours.chat_template = None
    ours.save_pretrained(tmp_path)
    assert nemotron_c.AutoTokenizer.from_pretrained(tmp_path).chat_template is None


def test_tokenizer_save_refuses_a_file_and_unknown_arguments(dirs, tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(dirs["big"])
    with pytest.raises(NotADirectoryError, match="is a file"):
        tokenizer.save_pretrained(file)
    with pytest.raises(TypeError, match="save_jinja_file"):
        tokenizer.save_pretrained(tmp_path / "typo", save_jinja_file=False)


def test_head_converted_at_load_saves_its_head_in_that_dtype(checkpoint, tmp_path):
    source = checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=5, seed=2)
    nemotron_c.NemotronForTokenClassification.from_pretrained(source, dtype="bfloat16").save_pretrained(tmp_path)
    original = transformers.NemotronForTokenClassification.from_pretrained(source).state_dict()
    for name in ("score.weight", "score.bias", "model.norm.weight"):
        stored_dtype, values = stored_tensors(tmp_path)[name]
        assert stored_dtype == "torch.bfloat16"
        assert np.array_equal(values, original[name].to(torch.bfloat16).float().numpy()), name
