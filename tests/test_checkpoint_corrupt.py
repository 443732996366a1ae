"""Truncated and corrupted weight files: a ValueError (the reader's FormatError) or OSError naming the file, never
another exception, a crash or a hang; Transformers fails on them too."""
import os
import random
import shutil

import pytest

import nemotron_c
from nemotron_c.checkpoint.reading import read_checkpoint
from helpers.transformers_reference import build_hf_model, save_bin

FORMATS = {
    "safetensors": ("model.safetensors", lambda path, model: model.save_pretrained(path)),
    "bin": ("pytorch_model.bin", lambda path, model: save_bin(path, model)),
    "legacy_bin": ("pytorch_model.bin", None),
    "safetensors_index": ("model.safetensors.index.json",
                          lambda path, model: model.save_pretrained(path, max_shard_size="40KB")),
    "bin_index": ("pytorch_model.bin.index.json", lambda path, model: save_bin(path, model, shard_size=40_000)),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    import torch
    root = tmp_path_factory.mktemp("corrupt_sources")
    model = build_hf_model()
    paths = {}
    for name, (_, write) in FORMATS.items():
        paths[name] = str(root / name)
        if write is None:
            save_bin(paths[name], model)
            file = os.path.join(paths[name], "pytorch_model.bin")
            torch.save(model.state_dict(), file, _use_new_zipfile_serialization=False)
        else:
            write(paths[name], model)
    return paths


def damaged(data, rng, truncate):
    if truncate:
        return data[: rng.randrange(len(data))]
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        # half the bytes among the first 4 KB (the header, the pickle, the zip's first entries): a file is mostly
        # tensor data, where a changed byte is no error
        end = len(data) if rng.random() < 0.5 else min(len(data), 4096)
        data[rng.randrange(end)] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("truncate", [True, False], ids=["truncated", "corrupted"])
@pytest.mark.parametrize("name", FORMATS)
def test_damaged_weight_file_raises_naming_it(sources, tmp_path, name, truncate):
    file_name = FORMATS[name][0]
    directory = str(tmp_path / "work")
    shutil.copytree(sources[name], directory)
    with open(os.path.join(sources[name], file_name), "rb") as f:
        original = f.read()
    rng = random.Random(f"{name}{truncate}")
    refused = 0
    for _ in range(60):
        with open(os.path.join(directory, file_name), "wb") as f:
            f.write(damaged(original, rng, truncate))
        try:
            read_checkpoint(directory)
        except (ValueError, OSError) as e:
            assert file_name in str(e), e
            refused += 1
        # a corrupted byte in a tensor's data is no error: torch and safetensors read it as it is
    # a truncated file is always refused; of the corrupted ones, those whose damage meets the structure
    assert refused == 60 if truncate else refused >= 5, refused


def test_damaged_model_loads_raise_cleanly(sources, tmp_path):
    directory = str(tmp_path / "work")
    shutil.copytree(sources["safetensors"], directory)
    path = os.path.join(directory, "model.safetensors")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match="model.safetensors: .*truncated"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_missing_shard_is_named_with_its_index(sources, tmp_path):
    # Transformers raises FileNotFoundError for the shard alone
    directory = str(tmp_path / "work")
    shutil.copytree(sources["bin_index"], directory)
    shard = sorted(name for name in os.listdir(directory) if name.startswith("pytorch_model-"))[-1]
    os.remove(os.path.join(directory, shard))
    with pytest.raises(FileNotFoundError, match=f"pytorch_model.bin.index.json lists the shard '{shard}', which does "
                                                f"not exist"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)

