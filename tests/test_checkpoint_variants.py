"""Weight files of a variant (model.fp16.safetensors, pytorch_model.fp16.bin, their sharded indexes) and the
use_safetensors choice, read as Transformers' from_pretrained(variant=..., use_safetensors=...) reads them."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from nemotron_c.checkpoint.reading import add_variant, weights_files
from nemotron_c.model.weights import read_weights
from helpers.checkpoints import edit_config
from helpers.compare import assert_close
from helpers.transformers_reference import build_hf_model, hf_logits, save_bin

IDS = np.array([[1, 5, 7, 9, 3, 60]])


def variant_bin(directory, model, variant, shard_size=None):
    """pytorch_model.<variant>.bin, or its shards and pytorch_model.bin.index.<variant>.json, beside what is there."""
    staging = str(directory) + ".staging"
    save_bin(staging, model, shard_size=shard_size)
    for name in os.listdir(staging):
        if name.endswith(".bin") or name.endswith(".json") and name != "config.json":
            target = add_variant(name, variant) if name.startswith("pytorch_model.bin") else \
                name.replace("pytorch_model", f"pytorch_model.{variant}")
            if name.endswith(".index.json"):
                with open(os.path.join(staging, name)) as f:
                    text = f.read().replace("pytorch_model-", f"pytorch_model.{variant}-")
                with open(os.path.join(directory, target), "w") as f:
                    f.write(text)
            else:
                shutil.copy(os.path.join(staging, name), os.path.join(directory, target))
    shutil.rmtree(staging)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    models = [build_hf_model(seed=seed) for seed in range(4)]
    both = str(root / "both")
    models[0].save_pretrained(both)
    models[1].half().save_pretrained(both, variant="fp16")
    save_bin(both, models[2])
    variant_bin(both, models[3].half(), "fp16")
    sharded = str(root / "sharded")
    models[1].half().save_pretrained(sharded, variant="fp16", max_shard_size="40KB")
    variant_bin(sharded, models[3], "ema", shard_size=40_000)
    assert os.path.isfile(os.path.join(sharded, "model.safetensors.index.fp16.json"))
    assert os.path.isfile(os.path.join(sharded, "pytorch_model.bin.index.ema.json"))
    return {"both": both, "sharded": sharded}


CASES = [("both", None, None), ("both", "fp16", None), ("both", None, False), ("both", "fp16", False),
         ("both", "fp16", True), ("sharded", "fp16", None), ("sharded", "ema", None), ("sharded", "ema", False)]


@pytest.mark.parametrize("folder, variant, use_safetensors", CASES)
def test_variant_files_chosen_as_transformers_chooses_them(folders, folder, variant, use_safetensors):
    path = folders[folder]
    theirs = transformers.NemotronForCausalLM.from_pretrained(path, variant=variant, use_safetensors=use_safetensors,
                                                              dtype=torch.float32)
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path, variant=variant, use_safetensors=use_safetensors,
                                                          dtype="float32")
    assert_close(ours(IDS).logits, hf_logits(theirs, IDS))


@pytest.mark.parametrize("folder, variant, use_safetensors", [("sharded", None, None), ("sharded", "fp16", False),
                                                              ("sharded", "ema", True), ("both", "bf16", None)])
def test_missing_variant_files_raise_as_in_transformers(folders, folder, variant, use_safetensors):
    path = folders[folder]
    with pytest.raises(OSError):
        transformers.NemotronForCausalLM.from_pretrained(path, variant=variant, use_safetensors=use_safetensors)
    config = nemotron_c.NemotronConfig.from_pretrained(path)
    names = [name for name, _, _ in weights_files(variant, use_safetensors)]
    with pytest.raises(FileNotFoundError, match=f"no {', '.join(names[:-1])} or {names[-1]} in"):
        read_weights(path, config, variant, use_safetensors)
    with pytest.raises(OSError, match=names[0].replace(".", r"\.")):
        nemotron_c.NemotronForCausalLM.from_pretrained(path, variant=variant, use_safetensors=use_safetensors)


def test_variant_names_as_transformers_adds_them():
    from transformers.modeling_utils import _add_variant
    for name, _, _ in weights_files():
        for variant in (None, "fp16", "ema"):
            assert add_variant(name, variant) == _add_variant(name, variant)


def test_sharded_variant_fetched_from_the_hub_cache(folders, tmp_path, monkeypatch):
    # the index of a variant is named model.safetensors.index.fp16.json: its shards come along with it
    from test_checkpoint_hub import add_to_cache, files_of
    import huggingface_hub
    from nemotron_c.checkpoint.hub import resolve_directory
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo, commit = "nvidia/Tiny-Variants", "4" * 40
    add_to_cache(str(tmp_path), repo, commit, files_of(folders["sharded"]), ref="main")
    asked = []  # from the network, were it online: the count is of hf_hub_download calls
    download = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: asked.append(name) or
                        download(repo, name, **kw))
    for variant, use_safetensors in (("fp16", None), ("ema", False)):
        names = [name for name, _, _ in weights_files(variant, use_safetensors)]
        asked.clear()
        path = resolve_directory(repo, [("config.json",), names], cache_dir=str(tmp_path))
        shards = [name for name in os.listdir(folders["sharded"]) if f".{variant}-" in name]
        assert len(shards) > 1 and set(shards) <= set(asked), asked
        theirs = transformers.NemotronForCausalLM.from_pretrained(repo, cache_dir=str(tmp_path), variant=variant,
                                                                  use_safetensors=use_safetensors, dtype=torch.float32)
        config = nemotron_c.NemotronConfig.from_pretrained(path)
        ours = nemotron_c.NemotronForCausalLM(config, read_weights(path, config, variant, use_safetensors),
                                              dtype="float32")
        assert_close(ours(IDS).logits, hf_logits(theirs, IDS))


@pytest.mark.parametrize("sharded", [False, True])
def test_transformers_weights_names_the_file_to_read(tmp_path, sharded):
    # config.json's transformers_weights: Transformers reads that file instead of model.safetensors
    path = str(tmp_path / "explicit")
    build_hf_model(seed=0).save_pretrained(path)
    chosen = build_hf_model(seed=1)
    chosen.save_pretrained(str(tmp_path / "chosen"), **({"max_shard_size": "40KB"} if sharded else {}))
    # an index's shards are named from the checkpoint directory (Transformers fails on an index in a folder of it)
    os.makedirs(os.path.join(path, "weights"))
    for name in os.listdir(tmp_path / "chosen"):
        if name == "model.safetensors":
            shutil.copy(tmp_path / "chosen" / name, os.path.join(path, "weights", name))
        elif name == "model.safetensors.index.json":
            shutil.copy(tmp_path / "chosen" / name, os.path.join(path, "custom.safetensors.index.json"))
        elif name.endswith(".safetensors"):
            shutil.copy(tmp_path / "chosen" / name, os.path.join(path, name))
    explicit = "custom.safetensors.index.json" if sharded else "weights/model.safetensors"
    edit_config(path, transformers_weights=explicit)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    assert_close(ours(IDS).logits, hf_logits(theirs, IDS))
    assert_close(ours(IDS).logits, hf_logits(chosen, IDS))


# not a str: Transformers fails with an AttributeError (no endswith), ours names it
@pytest.mark.parametrize("file_name, message, theirs", [
    ("pytorch_model.bin", "neither a safetensors file", ValueError),
    ("../elsewhere/model.safetensors", "outside the checkpoint", ValueError),
    (7, "neither a safetensors file", AttributeError), (["model.safetensors"], "neither a safetensors file", AttributeError)])
def test_transformers_weights_refused_as_transformers_refuses_it(tmp_path, file_name, message, theirs):
    path = str(tmp_path / "explicit")
    save_bin(path, build_hf_model())
    build_hf_model().save_pretrained(str(tmp_path / "elsewhere"))
    edit_config(path, transformers_weights=file_name)
    with pytest.raises(theirs):
        transformers.NemotronForCausalLM.from_pretrained(path)
    with pytest.raises(ValueError, match=f"transformers_weights .*{message}"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)


def test_model_loaded_from_transformers_weights_saves_a_loadable_copy(tmp_path):
    path = str(tmp_path / "explicit")
    model = build_hf_model()
    model.save_pretrained(path)
    os.rename(os.path.join(path, "model.safetensors"), os.path.join(path, "custom.safetensors"))
    edit_config(path, transformers_weights="custom.safetensors")
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for saved in ("ours", "theirs"):
        with open(tmp_path / saved / "config.json") as f:
            assert "transformers_weights" not in json.load(f)
    assert_close(nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "ours")(IDS).logits, hf_logits(model, IDS))
    # a pickled model loads again from the files it was loaded from (Transformers' config forgets the key on save)
    assert_close(pickle.loads(pickle.dumps(ours))(IDS).logits, hf_logits(model, IDS))


@pytest.mark.parametrize("kwargs, message", [(dict(variant=16), "variant must be a str, not int"),
                                             (dict(use_safetensors="yes"), "use_safetensors must be True, False")])
def test_variant_and_use_safetensors_of_the_wrong_type_are_named(folders, kwargs, message):
    with pytest.raises(TypeError, match=message):
        nemotron_c.NemotronForCausalLM.from_pretrained(folders["both"], **kwargs)


def test_a_checkpoint_mixing_prefixed_and_bare_names_loads_as_in_transformers(tmp_path):
    """Transformers maps each name on its own: layer 0 saved without 'model.' beside prefixed ones loads there, and
    here (it was 'checkpoint lacks tensor model.layers.0...')."""
    from safetensors.torch import load_file, save_file

    model = build_hf_model(seed=4)
    model.save_pretrained(tmp_path / "mixed")
    path = tmp_path / "mixed" / "model.safetensors"
    tensors = load_file(path)
    save_file({(k[len("model."):] if k.startswith("model.layers.0.") else k): v for k, v in tensors.items()}, path,
              metadata={"format": "pt"})
    theirs = transformers.NemotronForCausalLM.from_pretrained(tmp_path / "mixed", dtype=torch.float32).eval()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "mixed")
    assert_close(ours(IDS).logits, hf_logits(theirs, IDS))
    np.testing.assert_array_equal(ours(IDS).logits, nemotron_c.AutoModelForCausalLM.from_pretrained(
        _saved(model, tmp_path / "whole"))(IDS).logits)


def _saved(model, directory):
    model.save_pretrained(directory)
    return directory


def test_a_subfolder_missing_from_a_local_folder_is_no_hub_id(tmp_path, monkeypatch):
    """A local folder with subfolder= naming nothing: the config is missing there (the folder/subfolder pair was
    taken for a Hub repo id and fetched, 23 s of retries without a network, or read from a cached repo of that name)."""
    import huggingface_hub.file_download

    model = build_hf_model(seed=4)
    model.save_pretrained(tmp_path / "local")

    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", no_network)
    monkeypatch.chdir(tmp_path)  # "local/nope" is then a valid repo id too
    with pytest.raises(FileNotFoundError, match=r"no config.json at local/nope/config.json"):
        nemotron_c.AutoModelForCausalLM.from_pretrained("local", subfolder="nope")
