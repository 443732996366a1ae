"""tokenizer.save_pretrained: the files Transformers 5 writes for a tokenizers-backed tokenizer.

tokenizer_config.json holds the loading settings and the special tokens (no added_tokens_decoder: the added
tokens live in tokenizer.json), chat_template.jinja the chat template, tokenizer.json the vocabulary, merges
and pipeline. We write the tokenizer.json the tokenizer was read from with its added tokens as built (the
special tokens the config added included) and, when the special tokens around a sequence came from
add_bos_token / add_eos_token, a post-processor that adds them, as Transformers does. LlamaTokenizer rebuilds
its pipeline when loaded, so the file's own pipeline is kept. A tokenizer read from tokenizer.model alone is
saved as a copy of that file plus the config (Transformers converts it to tokenizer.json).

Where we differ: a padding_side or truncation_side changed after loading is written even when the loaded
config did not name it (Transformers then drops the change).
"""
import json
import os
import shutil

from .files import (CHAT_TEMPLATE_DIR, CHAT_TEMPLATE_FILE, CONFIG_FILE, SPECIAL_TOKEN_NAMES, SPECIAL_TOKENS_FILE,
                    SPM_FILE, TOKENIZER_FILE, read_json)
from ..checkpoint.saving import prepare_directory, write_text

ADDED_TOKEN_FIELDS = ("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")
# init_kwargs Transformers does not write back: file names and places, flags tokenizer.json carries
NOT_SAVED = ("add_bos_token", "add_eos_token", "added_tokens_decoder", "additional_special_tokens", "chat_template",
             "name_or_path", "special_tokens_map_file", "tokenizer_file", "vocab_file", "device_map",
             "slow_tokenizer_class", "files_loaded", "is_local", "local_files_only")


def save_tokenizer(tokenizer, save_directory, legacy_format=None, filename_prefix=None, push_to_hub=False,
                   save_jinja_files=True):
    if push_to_hub or filename_prefix or legacy_format:
        raise NotImplementedError("nemotron_c's tokenizer.save_pretrained takes no push_to_hub, filename_prefix "
                                  "or legacy_format")
    source = getattr(tokenizer, "_source_file", None)
    if source is None:
        raise TypeError("only a NemotronTokenizer made by from_pretrained can be saved")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"cannot save the tokenizer: {source}, which it was loaded from, no longer exists")
    save_directory = prepare_directory(save_directory)
    from_json = os.path.basename(source) == TOKENIZER_FILE
    named = set(tokenizer.special_tokens_map.values()) | set(tokenizer._extra_special)
    # beyond the pieces of tokenizer.model, only the tokens the config names come back: those added after loading,
    # and those a special token named at loading and no longer names (an image_token set to another), would not
    lost = list(dict.fromkeys([t["content"] for t in tokenizer._tokens_added_later] +
                              [t["content"] for t in tokenizer._added_tokens if t["id"] >= tokenizer.vocab_size]))
    lost = [content for content in lost if content not in named]
    if lost and not from_json:  # the special tokens come back from the config; the others would be lost
        raise NotImplementedError(f"cannot save the tokens {lost} (added after loading, or named by a special token "
                                  f"that no longer names them): the tokenizer was read from {SPM_FILE} alone, and "
                                  "nemotron_c saves it as a copy of that file")
    # read before writing anything: the source may be the file about to be replaced
    tokenizer_json = tokenizer_json_to_save(tokenizer, read_json(source)) if from_json else None

    config = tokenizer_config(tokenizer, keep_bos_eos=not from_json)
    written = [os.path.join(save_directory, CONFIG_FILE)]
    templates = chat_template_files(tokenizer.chat_template) if save_jinja_files else {}
    if not save_jinja_files and isinstance(tokenizer.chat_template, dict):  # the list form in the config
        config["chat_template"] = [{"name": name, "template": text} for name, text in tokenizer.chat_template.items()]
    elif not save_jinja_files and tokenizer.chat_template is not None:
        config["chat_template"] = tokenizer.chat_template
    for name, text in templates.items():
        os.makedirs(os.path.dirname(os.path.join(save_directory, name)), exist_ok=True)
        written.append(os.path.join(save_directory, name))
        write_text(written[-1], text)
    # files of an earlier save that a reader would take over what is written now
    extra = os.path.join(save_directory, CHAT_TEMPLATE_DIR)
    stale = [SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE] + ([] if from_json else [TOKENIZER_FILE]) + \
        ([os.path.join(CHAT_TEMPLATE_DIR, f) for f in os.listdir(extra) if f.endswith(".jinja")]
         if os.path.isdir(extra) else [])
    for name in stale:
        if name not in templates and os.path.isfile(os.path.join(save_directory, name)):
            os.remove(os.path.join(save_directory, name))
    write_text(written[0], json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    target = os.path.join(save_directory, os.path.basename(source))
    if from_json:
        write_text(target, json.dumps(tokenizer_json, indent=2, ensure_ascii=False))
    elif os.path.realpath(source) != os.path.realpath(target):
        shutil.copyfile(source, target)
    written.append(target)
    return tuple(written)


def chat_template_files(template):
    """{path in the folder: text} of the chat templates as Transformers 5 saves them: one template, or the default
    of named ones, in chat_template.jinja; every other named one in additional_chat_templates/<name>.jinja."""
    if isinstance(template, str):
        return {CHAT_TEMPLATE_FILE: template}
    files = {}
    for name, text in (template or {}).items():
        if name == "default":
            files[CHAT_TEMPLATE_FILE] = text
            continue
        # a name is a file name of that folder, nothing that leads out of it
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or os.sep in name \
                or "\0" in name:
            raise ValueError(f"Invalid chat template name: {name!r}")
        files[os.path.join(CHAT_TEMPLATE_DIR, name + ".jinja")] = text
    return files


def tokenizer_config(tokenizer, keep_bos_eos):
    """tokenizer_config.json as Transformers writes it: the loading arguments with the current values of the
    attributes, the special tokens, and the class that reads the files back."""
    config = {k: v for k, v in tokenizer.init_kwargs.items() if k not in NOT_SAVED and k not in SPECIAL_TOKEN_NAMES}
    config.update(tokenizer.special_tokens_map)
    if tokenizer._extra_special:
        config["extra_special_tokens"] = list(tokenizer._extra_special)
    else:
        config.pop("extra_special_tokens", None)
    config["model_max_length"] = tokenizer.model_max_length
    if tokenizer.chat_control_tokens is not None:
        config["chat_control_tokens"] = list(tokenizer.chat_control_tokens)
    else:
        config.pop("chat_control_tokens", None)
    default_padding = "left" if tokenizer._llama else "right"
    for key, default in (("padding_side", default_padding), ("truncation_side", "right"),
                         ("clean_up_tokenization_spaces", False)):
        value = getattr(tokenizer, key)
        if key in config or value != default:
            config[key] = value
    if keep_bos_eos:  # without tokenizer.json, the config says which special tokens surround a sequence
        config["add_bos_token"] = tokenizer.add_bos_token
        config["add_eos_token"] = tokenizer.add_eos_token
    for key, value in tokenizer._derived_config.items():
        # read from tokenizer.model, not from the config: left out so that loading derives it again (written,
        # LlamaTokenizer would make the user-defined pieces among the extra special tokens special)
        if config.get(key) == value:
            del config[key]
    config["backend"] = "tokenizers"
    config["tokenizer_class"] = "LlamaTokenizer" if tokenizer._llama else "TokenizersBackend"
    return config


def tokenizer_json_to_save(tokenizer, data):
    data["added_tokens"] = [{field: token[field] for field in ADDED_TOKEN_FIELDS}
                            for token in sorted(tokenizer._added_tokens, key=lambda t: t["id"])]
    if tokenizer._post_processor_rebuilt:
        data["post_processor"] = template_processing(tokenizer)
    return data


def template_processing(tokenizer):
    """The TemplateProcessing Transformers builds from add_bos_token / add_eos_token."""
    def sequence(name, type_id):
        return {"Sequence": {"id": name, "type_id": type_id}}

    def special(token, type_id):
        return {"SpecialToken": {"id": token, "type_id": type_id}}

    bos = tokenizer.bos_token if tokenizer.add_bos_token else None
    eos = tokenizer.eos_token if tokenizer.add_eos_token else None
    single, pair = [], []
    for name, type_id, items in (("A", 0, single), ("B", 1, pair)):
        items += ([special(bos, type_id)] if bos else []) + [sequence(name, type_id)] + \
                 ([special(eos, type_id)] if eos else [])
    specials = {t: {"id": t, "ids": [tokenizer.convert_tokens_to_ids(t)], "tokens": [t]} for t in (bos, eos) if t}
    return {"type": "TemplateProcessing", "single": single, "pair": single + pair, "special_tokens": specials}

