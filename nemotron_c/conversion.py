"""python -m nemotron_c convert: any checkpoint nemotron_c reads, rewritten once as safetensors so that later loads
map it (it sits above checkpoint/ and model/, both of which it uses)."""
import json
import os
import shutil

from .checkpoint.quantized import QUANTIZATION_CONFIGS
from .checkpoint.saving import (DEFAULT_MAX_SHARD_SIZE, ITEMSIZES, TensorToSave, parse_shard_size, prepare_directory,
                                save_weights, write_text)
from .model.configuration import CONFIG_NAME, NemotronConfig, read_config_json
from .model.modeling import NemotronPreTrainedModel
from .model.weights import (QUANTIZED_DTYPES, QUANTIZED_TENSORS, check_quantizable, quantize, read_weights,
                            untie_if_different)

# what convert copies from beside the weights: configs and every tokenizer file Transformers reads
CHECKPOINT_SIDE_FILES = (CONFIG_NAME, "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                         "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "chat_template.jinja")


def convert_checkpoint(source, destination, dtype=None, max_shard_size=DEFAULT_MAX_SHARD_SIZE, overwrite=False,
                       on_file=None):
    """Rewrites the checkpoint directory `source` (any format read_checkpoint reads) as safetensors in
    `destination`, each tensor converted to `dtype` (None keeps the stored one), with the files beside the weights
    (configs, tokenizer) copied over. Tensors keep their names; a tied lm_head.weight is dropped as Transformers
    drops it when saving, while a head the config ties but the checkpoint stores with other values is kept and the
    written config unties it (from_pretrained's rule: untie_if_different). "int8" or "int4" quantizes the linear layers' weights as from_pretrained(dtype=...) does
    and writes them in nemotron_c's format of that dtype (checkpoint/quantized.py), the other tensors as stored; a
    float dtype dequantizes a quantized source, the other quantized dtype is refused (as from_pretrained refuses
    it). Returns the names of the files written."""
    source, destination = os.fspath(source), os.fspath(destination)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source!r} is not a checkpoint directory")
    if os.path.realpath(source) == os.path.realpath(destination):
        raise ValueError("the destination is the source directory: convert into a new directory")
    if os.path.isdir(destination) and os.listdir(destination) and not overwrite:
        raise FileExistsError(f"{destination!r} is not empty (pass overwrite=True, --overwrite, to write into it)")
    limit = parse_shard_size(max_shard_size)
    if dtype is not None and dtype not in ITEMSIZES:
        raise ValueError(f"dtype must be one of {', '.join(ITEMSIZES)}, not {dtype!r}")
    config = NemotronConfig.from_pretrained(source)  # refuses what is not a Nemotron checkpoint
    stored = read_weights(source, config)
    # from_pretrained's rule: a head of other values than the embedding's is kept and the config unties it (else
    # dropping it would change the logits); a head alone becomes the embedding
    untied = False
    if config.tie_word_embeddings and "lm_head.weight" in stored:
        stored = untie_if_different(config, stored, NemotronPreTrainedModel.base_model_prefix)
        untied = not config.tie_word_embeddings
    if config.tie_word_embeddings and any(name.endswith("embed_tokens.weight") for name in stored):
        stored.pop("lm_head.weight", None)
    tensors = [saved for name, t in stored.items() for saved in TensorToSave.each(name, *converted(name, t, dtype))]
    quantized = next((t.dtype for t in tensors if t.dtype in QUANTIZED_DTYPES), None)
    destination = prepare_directory(destination)

    written = []
    for file_name in CHECKPOINT_SIDE_FILES:
        path = os.path.join(source, file_name)
        if not os.path.isfile(path):
            continue
        if file_name == CONFIG_NAME and (dtype is not None or untied):
            data = read_config_json(path)
            if untied:
                data["tie_word_embeddings"] = False
            if dtype is not None:
                if dtype not in QUANTIZED_DTYPES:  # a quantized checkpoint's config.dtype is that of its float tensors
                    data.pop("torch_dtype", None)
                    data["dtype"] = dtype
                data.pop("quantization_config", None)
                if quantized:
                    data["quantization_config"] = dict(QUANTIZATION_CONFIGS[quantized])
            write_text(os.path.join(destination, file_name), json.dumps(data, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copyfile(path, os.path.join(destination, file_name))
        written.append(file_name)
    return written + save_weights(destination, tensors, limit, on_file=on_file)


def converted(name, stored, dtype):
    """(dtype, shape, load) of a tensor written in `dtype` (None: as stored); load() gives its array, or for a
    quantized weight (values, scales), quantized only when stored in float."""
    if dtype in QUANTIZED_DTYPES:
        if stored.storage in QUANTIZED_DTYPES and stored.storage != dtype:
            raise ValueError(f"tensor {name!r} is stored in {stored.storage} (a nemotron_c {stored.storage} "
                             f"checkpoint): converting it to {dtype} would quantize its weights a second time; "
                             f"convert its float checkpoint instead")
        if stored.storage == dtype or not name.endswith(QUANTIZED_TENSORS):
            dtype = stored.storage
        else:
            check_quantizable(name, stored.shape, dtype)  # before anything is written
            return dtype, stored.shape, lambda: quantize(name, stored.array(stored.storage), stored.storage, dtype, 0)
    dtype = dtype or stored.storage
    return dtype, stored.shape, lambda: stored.array(dtype)
