"""A checkpoint directory's weights: the first weight file Transformers would read, single or sharded.

Shard paths from an index are checked against the directory; each reader checks its own files. As in Transformers
5, every tensor of each shard the index lists is read, also one its weight_map leaves out.
"""
import json
import os

from . import torch_bin
from .safetensors import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, SafetensorsFormatError, read_safetensors
from .tensors import StoredTensor
from .torch_bin import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, TorchCheckpointFormatError


def read_checkpoint(directory, variant=None, use_safetensors=None, explicit_file=None):
    """All tensors of a checkpoint directory, from the first of its weight files (weights_files: Transformers'
    order, names and choice for from_pretrained's variant and use_safetensors), or from `explicit_file`, which
    config.json names as transformers_weights."""
    directory = os.fspath(directory)
    if explicit_file is not None:
        return read_explicit(directory, explicit_file)
    files = weights_files(variant, use_safetensors)
    for name, read_file, sharded in files:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return read_sharded(directory, path, read_file) if sharded else read_file(path)
    hint = " (found model.ckpt.index: TensorFlow checkpoints are not read)" if os.path.exists(
        os.path.join(directory, "model.ckpt.index")) else ""
    names = [name for name, _, _ in files]
    raise FileNotFoundError(f"no {', '.join(names[:-1])} or {names[-1]} in {directory}{hint}")


def check_explicit_name(file_name):
    """Transformers' check of config.json's transformers_weights, before it looks for the file."""
    if not isinstance(file_name, str) or not file_name.endswith((".safetensors", ".safetensors.index.json")):
        raise ValueError(f"config.json's transformers_weights {file_name!r} is neither a safetensors file nor a "
                         f"safetensors index (*.safetensors.index.json), as Transformers requires")


def read_explicit(directory, file_name):
    """The weights config.json names as transformers_weights, which Transformers reads instead of the usual files:
    a safetensors file or index inside the checkpoint directory."""
    check_explicit_name(file_name)
    root = os.path.abspath(directory)
    path = os.path.abspath(os.path.join(root, file_name))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"config.json's transformers_weights {file_name!r} lies outside the checkpoint directory "
                         f"{directory}")
    return read_sharded(directory, path, read_safetensors) if path.endswith(".index.json") else read_safetensors(path)


def add_variant(name, variant):
    """A weight file's name for a variant, as Transformers' _add_variant names it: model.fp16.safetensors,
    pytorch_model.fp16.bin, model.safetensors.index.fp16.json (the shards are whatever the index lists)."""
    if not variant:
        return name
    *stem, extension = name.split(".")
    return ".".join([*stem, variant, extension])


def weights_files(variant=None, use_safetensors=None):
    """[(file name, reader, whether it is an index of shards)] that from_pretrained looks for, in Transformers'
    order: safetensors first; use_safetensors=True only those, False only pytorch_model.bin ones."""
    return [(add_variant(name, variant), read_file, sharded) for name, read_file, sharded in WEIGHTS_FILES
            if use_safetensors is None or use_safetensors == (read_file is read_safetensors)]


def read_torch_bin(path):
    """A torch.save state dict as {name: StoredTensor}; raises TorchCheckpointFormatError when malformed."""
    return {name: StoredTensor(name, path, t.dtype, t.shape, t.data)
            for name, t in torch_bin.read_state_dict(path).items()}


def read_sharded(directory, index_path, read_file):
    error = TorchCheckpointFormatError if read_file is read_torch_bin else SafetensorsFormatError
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    # json raises a bare ValueError for an integer of over 4300 digits and RecursionError for deep nesting
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise error(f"{index_path}: not valid JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise error(f"{index_path}: no weight_map object")
    # lexical, not realpath: in the Hub cache every file is a symlink into blobs/, outside the snapshot folder
    root = os.path.abspath(directory)
    shards = {}
    for name, file_name in weight_map.items():
        if not isinstance(file_name, str) or not file_name or "\0" in file_name:  # open() refuses a NUL unnamed
            raise error(f"{index_path}: tensor {name!r} maps to {file_name!r}, not a file name")
        path = os.path.abspath(os.path.join(root, file_name))
        if os.path.isabs(file_name) or os.path.commonpath([root, path]) != root:
            raise error(
                f"{index_path}: shard {file_name!r} of tensor {name!r} lies outside the checkpoint directory"
            )
        shards.setdefault(path, []).append(name)
    # Transformers 5 loads every tensor of each listed shard, the weight_map only choosing the files: a tensor it
    # lists in another shard than the one holding it, or in none, is read as the shards hold it
    tensors, unlisted = {}, {}
    for path, names in shards.items():
        names = set(names)
        try:
            shard = read_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{index_path} lists the shard {os.path.relpath(path, root)!r}, which does not "
                                    f"exist: {path} (an incomplete download or copy?)") from None
        for name, tensor in shard.items():
            if name in names:
                tensors[name] = tensor
            elif name in unlisted and not same_tensor(unlisted[name], tensor):
                # Transformers takes the copy of the last shard in name order; which one is meant is unknown
                raise error(f"{index_path}: tensor {name!r}, which the weight_map does not list in either, is in two "
                            f"shards with different values: {unlisted[name].file} and {path}")
            else:
                unlisted[name] = tensor
    for name, tensor in tensors.items():
        # Transformers silently takes the copy of the last shard, which need not be the one the weight_map names
        if name in unlisted and not same_tensor(unlisted[name], tensor):
            raise error(f"{index_path}: tensor {name!r}, which the weight_map lists in {tensor.file}, is also in "
                        f"{unlisted[name].file} with different values")
    return {**unlisted, **tensors}  # a copy with the same values: the one in the shard the weight_map names


def same_tensor(a, b):
    return (a.dtype, tuple(a.shape)) == (b.dtype, tuple(b.shape)) and a.data == b.data


# The weight files a checkpoint directory may hold, in the order Transformers prefers them: (name, reader, whether
# the file is an index of shards). The Hub resolution fetches the first of WEIGHTS_NAMES a repo holds.
WEIGHTS_FILES = (
    (SAFE_WEIGHTS_NAME, read_safetensors, False),
    (SAFE_WEIGHTS_INDEX_NAME, read_safetensors, True),
    (WEIGHTS_NAME, read_torch_bin, False),
    (WEIGHTS_INDEX_NAME, read_torch_bin, True),
)
WEIGHTS_NAMES = tuple(name for name, _, _ in WEIGHTS_FILES)
