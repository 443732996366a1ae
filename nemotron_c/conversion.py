"""python -m nemotron_c convert: any checkpoint nemotron_c reads, rewritten once as safetensors so that later loads
map it (it sits above checkpoint/ and model/, both of which it uses)."""
import json
import os
import shutil

from .checkpoint.adapters import find_adapter, read_adapter_config
from .checkpoint.quantized import QUANTIZATION_CONFIGS
from .checkpoint.saving import (DEFAULT_MAX_SHARD_SIZE, ITEMSIZES, TensorToSave, dot_natural_key, parse_shard_size,
                                prepare_directory, save_model, save_weights, write_text)
from .generation.configuration import GENERATION_CONFIG_NAME
from .model.adapters import adapter_base
from .model.configuration import CONFIG_NAME, NemotronConfig, read_config_json
from .model.heads import (NemotronForQuestionAnswering, NemotronForSequenceClassification,
                          NemotronForTokenClassification)
from .model.modeling import NemotronForCausalLM, NemotronModel, NemotronPreTrainedModel
from .model.weights import (QUANTIZED_DTYPES, QUANTIZED_TENSORS, auto_dtype, check_quantizable, find_backbone_prefix,
                            in_model_dtype, quantize, read_weights, select_tensors, untie_if_different)

# what convert copies from beside the weights: configs, every tokenizer file Transformers reads, and the terms the
# weights come under (a license or notice must travel with a converted copy; the Hub's model card holds them too)
CHECKPOINT_SIDE_FILES = (CONFIG_NAME, "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                         "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                         "LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "NOTICE.txt", "NOTICE.md", "README.md")
HEAD_CLASSES = {cls.__name__: cls for cls in (NemotronForSequenceClassification, NemotronForTokenClassification,
                                              NemotronForQuestionAnswering)}
# the classes a checkpoint's config.json may name in "architectures" (a causal LM when it names none of them)
MODEL_CLASSES = {cls.__name__: cls for cls in (NemotronForCausalLM, NemotronModel, *HEAD_CLASSES.values())}
# the task heads' tensors, which convert keeps beside the backbone's when config.architectures does not say which
# class the checkpoint is of
TASK_HEAD_TENSORS = {f"{cls.head_name}.{part}" for part in ("weight", "bias") for cls in HEAD_CLASSES.values()}


def convert_checkpoint(source, destination, dtype=None, max_shard_size=DEFAULT_MAX_SHARD_SIZE, overwrite=False,
                       on_file=None):
    """Rewrites the checkpoint directory `source` (any format read_checkpoint reads) as safetensors in
    `destination`, each tensor converted to `dtype` (None keeps the stored one), with the files beside the weights
    (configs, tokenizer) copied over. Tensors keep their names; those a loaded model would not use are left out and
    the lm_head follows from_pretrained's rule (used_tensors), so DST holds what save_pretrained of the model loaded
    from SRC writes. "int8" or "int4" quantizes the linear layers' weights as from_pretrained(dtype=...) does
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
    if find_adapter(source, {}) is not None:
        return convert_adapted(source, destination, dtype, max_shard_size, on_file)
    config = NemotronConfig.from_pretrained(source)  # refuses what is not a Nemotron checkpoint
    config.validate()  # as loading does: no checkpoint written that no model can be built from
    tied = config.tie_word_embeddings
    read = read_weights(source, config)
    model_dtype = auto_dtype(config, read)  # what a tensor is converted to with dtype None, as from_pretrained
    stored = {name: in_model_dtype(t, model_dtype) for name, t in used_tensors(config, read).items()}
    untied = tied and not config.tie_word_embeddings
    # in the order Transformers' save of the loaded model shards them (save_pretrained's too)
    tensors = [saved for name, t in sorted(stored.items(), key=lambda item: dot_natural_key(item[0]))
               for saved in TensorToSave.each(name, *converted(name, t, dtype))]
    quantized = next((t.dtype for t in tensors if t.dtype in QUANTIZED_DTYPES), None)
    destination = prepare_directory(destination)

    written = []
    for file_name in CHECKPOINT_SIDE_FILES:
        path = os.path.join(source, file_name)
        if not os.path.isfile(path):
            continue
        if file_name == CONFIG_NAME and (dtype is not None or untied or hasattr(config, "transformers_weights")):
            data = read_config_json(path)
            # the file it named is written as model.safetensors now (Transformers' save drops it too)
            data.pop("transformers_weights", None)
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


def checkpoint_class(name):
    """(the model class from_pretrained(name) should be called on, the LoRA adapter's directory or None): the class
    config.json's architectures names (a causal LM by default), for an adapter folder its base checkpoint's."""
    adapter = find_adapter(name, {})
    config_name = name if adapter is None else adapter_base(name, adapter, read_adapter_config(adapter))
    architectures = NemotronConfig.from_pretrained(config_name).architectures or []
    return next((MODEL_CLASSES[a] for a in architectures if a in MODEL_CLASSES), NemotronForCausalLM), adapter


def convert_adapted(source, destination, dtype, max_shard_size, on_file):
    """A LoRA adapter folder converts to what save_pretrained of the model from_pretrained loads from it writes: the
    base checkpoint with the adapter merged (merged matrices in float32 unless `dtype` says otherwise, as loaded),
    with the base's tokenizer and license files."""
    model_class, _ = checkpoint_class(source)
    model = model_class.from_pretrained(source, dtype=dtype)
    written = save_model(model, destination, max_shard_size, on_file=on_file)
    written += [CONFIG_NAME] + ([GENERATION_CONFIG_NAME] if model.can_generate() else [])
    base = model._load_args[0]
    for file_name in CHECKPOINT_SIDE_FILES:
        path = os.path.join(base, file_name)
        if file_name not in written and os.path.isfile(path):
            shutil.copyfile(path, os.path.join(destination, file_name))
            written.append(file_name)
    return written


def used_tensors(config, stored):
    """{name: tensor} of what a model loaded from `stored` reads, under the stored names: what its save_pretrained
    writes. Transformers' save drops the rest (rotary inv_freq buffers, layers beyond num_hidden_layers, a training
    step counter, perhaps of a dtype nemotron_c does not read), and so does convert; a task head's weight and bias
    are kept. The lm_head follows from_pretrained's rule (untie_if_different): a head the config ties but the
    checkpoint stores with other values is kept and config.tie_word_embeddings turns false; a head alone becomes the
    embedding; a tied head is dropped, as Transformers' save drops it. The class is config.architectures' (what
    save_pretrained wrote), else a task head's when the checkpoint holds one: a task head class has no lm_head and
    a causal LM no task head, which Transformers drops at load (unexpected keys), and so does convert."""
    base_model_prefix = NemotronPreTrainedModel.base_model_prefix
    architecture = (getattr(config, "architectures", None) or [None])[0]
    if architecture in HEAD_CLASSES:
        heads = set(HEAD_CLASSES[architecture]._head_shapes(config))
    elif architecture in ("NemotronForCausalLM", "NemotronModel"):
        heads = set()
    else:
        heads = TASK_HEAD_TENSORS
    if architecture == "NemotronModel" or any(name in heads for name in stored):
        stored = {name: t for name, t in stored.items() if name != "lm_head.weight"}
    elif config.tie_word_embeddings and "lm_head.weight" in stored:
        stored = untie_if_different(config, stored, base_model_prefix)
        if config.tie_word_embeddings:
            stored = {name: t for name, t in stored.items() if name != "lm_head.weight"}
    selected = select_tensors(config, stored, base_model_prefix, has_lm_head="lm_head.weight" in stored)
    prefix = find_backbone_prefix(stored, base_model_prefix)
    used = {name if name == "lm_head.weight" else prefix + name for name, t in selected if t is not None}
    return {name: t for name, t in stored.items() if name in used or name in heads}


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
