"""The Nemotron tokenizer with Transformers' API: `AutoTokenizer.from_pretrained(dir or Hub id)`.

Policy lives here: which tokenizer a folder gets (`tokenizer_class_for`), reading tokenizer.json,
tokenizer_config.json and special_tokens_map.json (or tokenizer.model alone), the special tokens, padding,
truncation, tensors and chat templates, following Transformers 5 (`TokenizersBackend` and `LlamaTokenizer`). The C
core (`_core.Tokenizer`) does the encoding and decoding.
"""
import collections
import collections.abc
import math
import operator
import os
import warnings

import numpy as np

from .. import _core
from ..checkpoint.hub import pop_hub_kwargs, resolve_directory
from .chat_template import (control_pattern, mark_control_tokens, normalized_messages, render, split_marked,
                            template_literal_text)
from .saving import save_tokenizer
from .sentencepiece_model import model_from_sentencepiece
from .files import (ADDED_FLAGS, CHAT_TEMPLATE_DIR, CHAT_TEMPLATE_FILE, CONFIG_FILE, SPECIAL_TOKEN_NAMES,
                    SPECIAL_TOKENS_FILE, SPM_FILE, TOKENIZER_FILE, AddedVocabulary, FormatError, added_token,
                    added_tokens_decoder_tokens, as_added_token, build_core, llama_pipeline, model_from_json, normalize_content,
                    post_processor_templates, read_json, require, template_affixes, token_content)
from .encoding import (PAD_TYPE_ID, SECOND_SEQUENCE_MISSING, Encoding, Pipeline, align, apply_template,
                       truncate_sequences)

MODEL_CONFIG_FILE = "config.json"
OPTIONAL_FILES = (CONFIG_FILE, SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE)  # read when present, beside one of the two

# tokenizer_config.json's tokenizer_class values: those whose Transformers __init__ rebuilds the pipeline around the
# file's vocabulary and merges, and those that use tokenizer.json as it is.
LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
PLAIN_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend", "NemotronTokenizer")
# config.json model_types Transformers 5 maps to TokenizersBackend whatever tokenizer_class says
# (MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS in transformers/models/auto/tokenization_auto.py).
TOKENIZERS_BACKEND_MODEL_TYPES = ("nemotron",)
VERY_LARGE_INTEGER = int(1e30)  # Transformers' model_max_length when none is set
LARGE_INTEGER = int(1e20)       # above it, model_max_length means "no limit"

# ---------------------------------------------------------------- outputs


CharSpan = collections.namedtuple("CharSpan", ["start", "end"])
TokenSpan = collections.namedtuple("TokenSpan", ["start", "end"])


class BatchEncoding(dict):
    """A dict of model inputs that also reads as attributes, like Transformers' BatchEncoding. Its rows' Encodings
    (offsets, words, sequences) answer sequence_ids(), word_ids(), token_to_word() and word_to_chars(); an integer
    index gives a row's Encoding."""

    _encodings = None  # a list, or a function that makes it (the plain encoding path computes them on demand)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, item):
        if isinstance(item, int):
            return self.encodings[item]
        return super().__getitem__(item)

    def __getstate__(self):  # the encodings made (a function cannot be pickled)
        return {"_encodings": self.encodings}

    @property
    def encodings(self):
        if callable(self._encodings):
            self._encodings = self._encodings()
        return self._encodings

    def _row(self, batch_or_index, index, count_from_end=True):
        """(row, index) from Transformers' (batch_or_token_index, token_index) arguments; negative ones count from
        the end."""
        row, index = (0, batch_or_index) if index is None else (batch_or_index, index)
        row = row + len(self.encodings) if row < 0 else row
        if count_from_end and index < 0:
            index += len(self.encodings[row])
        return row, index

    def sequence_ids(self, batch_index=0):
        return self.encodings[batch_index].sequence_ids

    def word_ids(self, batch_index=0):
        return self.encodings[batch_index].word_ids

    def token_to_sequence(self, batch_or_token_index, token_index=None):
        row, index = self._row(batch_or_token_index, token_index)
        return self.encodings[row].token_to_sequence(index)

    def token_to_word(self, batch_or_token_index, token_index=None):
        row, index = self._row(batch_or_token_index, token_index)
        return self.encodings[row].token_to_word(index)

    def tokens(self, batch_index=0):
        """The row's tokens as strings (an added token with lstrip/rstrip named by the text it matched)."""
        return list(self.encodings[batch_index].tokens)

    def char_to_token(self, batch_or_char_index, char_index=None, sequence_index=0):
        row, index = self._row(batch_or_char_index, char_index, count_from_end=False)
        return self.encodings[row].char_to_token(index, sequence_index)

    def token_to_chars(self, batch_or_token_index, token_index=None):
        row, index = self._row(batch_or_token_index, token_index, count_from_end=False)
        span = self.encodings[row].token_to_chars(index)
        return None if span is None else CharSpan(*span)

    def char_to_word(self, batch_or_char_index, char_index=None, sequence_index=0):
        row, index = self._row(batch_or_char_index, char_index, count_from_end=False)
        return self.encodings[row].char_to_word(index, sequence_index)

    def word_to_tokens(self, batch_or_word_index, word_index=None, sequence_index=0):
        row, index = self._row(batch_or_word_index, word_index)
        span = self.encodings[row].word_to_tokens(index, sequence_index)
        return None if span is None else TokenSpan(*span)

    def word_to_chars(self, batch_or_word_index, word_index=None, sequence_index=0):
        row, index = self._row(batch_or_word_index, word_index, count_from_end=False)
        span = self.encodings[row].word_to_chars(index, sequence_index)
        if span is None:  # Transformers fails here with a TypeError too
            raise TypeError(f"word {index} has no tokens in sequence {sequence_index} of row {row}")
        return CharSpan(*span)

    @property
    def data(self):  # Transformers' BatchEncoding keeps its columns in a dict there
        return self

    @property
    def is_fast(self):
        return True

    @property
    def n_sequences(self):
        return self.encodings[0].n_sequences if self.encodings else None

    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis=False):
        """Transformers' convert_to_tensors: each column (under a batch axis when prepend_batch_axis) as a tensor of
        tensor_type ("np" or "pt"), in place; ragged rows make a NumPy object array, and a ValueError for "pt"."""
        if tensor_type is None:
            return self
        kind = getattr(tensor_type, "value", tensor_type)  # a TensorType too
        if kind not in ("np", "pt"):
            raise ValueError(f"unsupported tensor_type={tensor_type!r} (nemotron_c supports 'np' and 'pt')")
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            if isinstance(value, np.ndarray) or hasattr(value, "detach"):
                continue
            try:
                self[key] = _column_tensor(value, kind)
            except Exception as e:  # Transformers' message
                raise ValueError(
                    "Unable to create tensor, you should probably activate truncation and/or padding with 'padding=True' "
                    "'truncation=True' to have batched tensors with the same length. Perhaps your features "
                    f"(`{key}` in this case) have excessive nesting (inputs type `list` where type `int` is expected)."
                ) from e
        return self

    def to(self, device):
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _as_tensor(rows, return_tensors):
    ragged = len({len(r) for r in rows}) > 1
    if return_tensors == "np":
        if ragged:  # as Transformers: an object array of rows
            array = np.empty(len(rows), dtype=object)
            array[:] = [np.array(r, dtype=np.int64) for r in rows]
            return array
        return np.array(rows, dtype=np.int64)
    if ragged and return_tensors == "pt":
        raise ValueError("Unable to create tensor, you should probably activate truncation and/or padding with "
                         "'padding=True' 'truncation=True' to have batched tensors with the same length. Perhaps your "
                         "features (`input_ids` in this case) have excessive nesting (inputs type `list` where type "
                         "`int` is expected).")
    array = np.array(rows, dtype=np.int64)
    if return_tensors == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError("return_tensors='pt' needs PyTorch, which is not installed") from None
        return torch.from_numpy(array)
    raise ValueError(f"unsupported return_tensors={return_tensors!r} (nemotron_c supports 'np' and 'pt')")


def _named(names, placed_names):
    """The tokens' names: those of the matches as align() placed them (the text an lstrip/rstrip token took; a
    token that begins inside the whitespace the previous match's rstrip took is named from where that ends, as
    tokenizers names it), else those the core reported."""
    return [placed if placed is not None else name for name, placed in zip(names, placed_names)]


def _column_tensor(value, kind):
    """One column as Transformers' convert_to_tensors makes it."""
    empty = _is_empty(value)
    if kind == "pt":
        import torch

        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            return torch.from_numpy(np.array(value))
        return torch.tensor(value, dtype=torch.int64 if empty else None)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)) and \
            len({len(row) for row in value}) > 1:
        return np.asarray([np.asarray(row) for row in value], dtype=object)  # ragged rows
    return np.asarray(value, dtype=np.int64 if empty else None)


def _is_empty(value):
    """No leaf elements (nested empty lists)."""
    if isinstance(value, (list, tuple)):
        return len(value) == 0 or (isinstance(value[0], (list, tuple)) and all(_is_empty(v) for v in value))
    return False


def _check_text(text, in_batch=False):
    if isinstance(text, str):
        return
    if in_batch:  # as tokenizers' binding reports it
        raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]"
                        f" (got {type(text).__name__})")
    raise ValueError("text input must be of type `str` (single example), `list[str]` (batch or single pretokenized "
                     "example) or `list[list[str]]` (batch of pretokenized examples) or `list[tuple[list[str], "
                     "list[str]]]` (batch of pretokenized sequence pairs).")


# ---------------------------------------------------------------- the tokenizer


class NemotronTokenizer:
    """Encodes and decodes as Transformers' tokenizer does on the same files.

    `NemotronTokenizer.from_pretrained(dir)` is `transformers.PreTrainedTokenizerFast.from_pretrained(dir)`
    (TokenizersBackend): tokenizer.json as it is, whatever tokenizer_config.json's tokenizer_class says; padding on
    the right unless tokenizer_config.json sets padding_side. It is what `AutoTokenizer` gives in a Nemotron
    checkpoint folder."""

    model_input_names = ["input_ids", "attention_mask"]
    _llama = False  # LlamaTokenizer's pipeline and defaults

    def __init__(self, model, config, kwargs=None, name_or_path=""):
        """model: a TokenizerModel read from tokenizer.json or tokenizer.model; config: tokenizer_config.json and
        special_tokens_map.json; kwargs: what the caller passed to from_pretrained (they override config)."""
        kwargs = kwargs or {}
        config = {**config, **kwargs}
        self.name_or_path = name_or_path
        self.init_kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
        if self._llama:
            llama_pipeline(model, config)
        self._read_special_tokens(config)
        self._tokens_added_later = []  # by add_tokens and add_special_tokens, for pickling
        # special tokens encoded as text (tokenizers' encode_special_tokens), the default of every call
        self.split_special_tokens = bool(config.get("split_special_tokens", False))
        # tokenizer.json's added tokens, which Transformers takes for added_tokens_decoder when the config has none
        written = list(model.added) if model.from_tokenizer_json else []
        if "added_tokens_decoder" in config and self._llama:
            # LlamaTokenizer rebuilds the backend: its added tokens are then those of the config only
            model.added = []
        self._add_tokens(model, config, written)
        self._build_vocabulary(model)
        self._set_post_processor(model, config, kwargs)

        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        # Transformers 5 skips the clean-up for BPE models unless forced
        self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = bool(
            config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False))
        self.model_max_length = _model_max_length(config.get("model_max_length"))
        self.padding_side = config.get("padding_side", "left" if self._llama else "right")
        self.truncation_side = config.get("truncation_side", "right")
        for name in ("padding_side", "truncation_side"):  # Transformers' check and message
            if getattr(self, name) not in ("right", "left"):
                raise ValueError(f"{name.split('_')[0].capitalize()} side should be selected between 'right' and "
                                 f"'left', current value: {getattr(self, name)}")
        self.chat_template = config.get("chat_template")
        # the added tokens sanitize_control_tokens treats as control tokens besides the special ones
        self.chat_control_tokens = config.get("chat_control_tokens")
        if self.chat_control_tokens is not None and not isinstance(self.chat_control_tokens, (list, tuple)):
            raise TypeError(f"`chat_control_tokens` should be a list of strings, got {self.chat_control_tokens!r}")
        if isinstance(self.chat_template, list):  # named templates
            self.chat_template = {t["name"]: t["template"] for t in self.chat_template}

    def _read_special_tokens(self, config):
        # LlamaTokenizer has defaults, a plain tokenizer.json has none
        defaults = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"} if self._llama else {}
        specific = config.get(MODEL_SPECIFIC, {})
        # the names of the special tokens, Transformers' SPECIAL_TOKENS_ATTRIBUTES of this tokenizer
        self._special_names = list(SPECIAL_TOKEN_NAMES) + [name for name in specific if name not in SPECIAL_TOKEN_NAMES]
        self._special = {}
        self._special_given = {}  # content -> the AddedToken given for it (object or dict), for its flags
        for name in self._special_names:
            given = specific.get(name, config.get(name, defaults.get(name)))
            value = token_content(given)
            if value is not None:
                self._special[name] = value
                if not isinstance(given, str):
                    self._special_given[value] = given
        # Transformers 4's name stands in for an empty or missing extra_special_tokens (a dict of them is named:
        # _model_specific_tokens took it)
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        self._extra_special = [token_content(t) for t in extra]
        self._special_given.update({token_content(t): t for t in extra if not isinstance(t, str)})

    def _add_tokens(self, model, config, written):
        """model.added as tokenizers and Transformers build it, each token given its id by AddedVocabulary (the
        ids written are not kept): the file's added tokens; then those of added_tokens_decoder, or, without one,
        tokenizer.json's again (`written`, in the order of the ids written), those a special token names made
        special; then every special token whose content is not there yet."""
        vocabulary = AddedVocabulary(model.vocab)
        vocabulary.add([added_token(a["content"], a["special"], **{f: a[f] for f in ADDED_FLAGS}) for a in model.added])
        if "added_tokens_decoder" in config:
            tokens = added_tokens_decoder_tokens(config["added_tokens_decoder"])
        else:
            by_id = {a["id"]: a for a in written}
            tokens = [added_token(a["content"], a["special"], **{f: a[f] for f in ADDED_FLAGS})
                      for _, a in sorted(by_id.items())]
        named = set(self._special.values())
        for token in tokens:
            token["special"] = token["special"] or token["content"] in named
        # converted from tokenizer.model, a named special token that is a user-defined piece (added plain)
        # becomes special, as Transformers adds it again (an extra one stays plain; tokenizer.json's stay as written)
        listed = {t["content"] for t in tokens}
        promoted = named if not model.from_tokenizer_json else set()
        # a new special token has the flags of the AddedToken it was given as; a piece of the vocabulary keeps
        # tokenizers' defaults, as Transformers' does
        tokens += [added_token(content, True) if content in model.vocab else self._special_token(content)
                   for content in dict.fromkeys([*self._special.values(), *self._extra_special])
                   if content not in listed and (content not in vocabulary.ids
                                                 or content in promoted and content not in vocabulary.special)]
        vocabulary.add(tokens)
        model.added = vocabulary.tokens()
        self._added_vocabulary = vocabulary  # add_tokens goes on with it

    def _special_token(self, content):
        """The special AddedToken dict a special token is added as: with the flags of the AddedToken (object, or
        dict of tokenizer_config.json) it was given as, else tokenizers' defaults for a special token."""
        given = self._special_given.get(content)
        if isinstance(given, dict):
            return added_token(content, True, **{f: given[f] for f in ADDED_FLAGS if f in given})
        return added_token(content, True) if given is None else as_added_token(given, True)

    def _build_vocabulary(self, model):
        """The core tokenizer and the id <-> token maps (again after add_tokens: the model is kept for that)."""
        self._model = model
        # tokenizers names a normalized added token by its normalized form, but looks it up by its content
        for a in model.added:
            a["matched"] = normalize_content(a["content"], model.normalizer) if a["normalized"] else a["content"]
        self._core = build_core(model)
        self._split_core = None
        self._plain_core = None  # without any added token: sanitize_control_tokens' text, made when first needed
        if self.split_special_tokens:
            added = model.added
            model.added = [a for a in added if not a["special"]]
            self._split_core = build_core(model)
            model.added = added
        self._added_tokens = [dict(a) for a in model.added]  # for save_pretrained

        self._n_model = len(model.vocab)
        self._pieces = dict(zip(model.vocab.values(), model.vocab))  # the BPE model's id -> token
        # the tokens' names need the matcher's report where an added token is named by the text it took in
        # (lstrip/rstrip), or where one shares its id with a piece of another name (BPE's "▁" and a normalized
        # added "▁" named "▁▁"): tokenizers names each by where it came from
        self._stripping_tokens = any(a["lstrip"] or a["rstrip"] for a in model.added)
        self._names_from_matches = any(a["lstrip"] or a["rstrip"] or self._pieces.get(a["id"], a["matched"]) != a["matched"]
                                       for a in model.added)
        self._id_to_token = dict(self._pieces)
        self._id_to_token.update({a["id"]: a["matched"] for a in model.added})
        self._n_ids = max(self._id_to_token, default=-1) + 1
        # decode(skip_special_tokens=True) drops, as tokenizers does, the ids whose token (by name) is a special
        # token's content: not a normalized special token named by its normalized form ("▁<x>" under a Prepend)
        special = {a["content"] for a in model.added if a["special"]}
        self._skipped_ids = {i for i in [a["id"] for a in model.added] + [model.vocab[c] for c in special if c in model.vocab]
                             if self._id_to_token.get(i) in special}
        self._vocab = dict(model.vocab)
        self._vocab.update({a["content"]: a["id"] for a in model.added})
        # what align() needs to place tokens in the text
        schemes = {_core.PREPEND_ALWAYS: "always", _core.PREPEND_FIRST: "first", _core.PREPEND_NEVER: "never"}
        metaspace = next(((s[1], schemes[s[5]], bool(s[6])) for s in model.pre_tokenizer if s[0] == _core.STEP_METASPACE),
                         None)
        self._pipeline = Pipeline(self._pieces, {a["id"]: a["content"] for a in model.added if not a["normalized"]},
                                  {a["id"]: a["matched"] for a in model.added if a["normalized"]}, list(model.normalizer),
                                  metaspace, next((s[7] for s in model.pre_tokenizer if s[0] == _core.STEP_SPLIT), None),
                                  {a["id"]: (a["lstrip"], a["rstrip"]) for a in model.added if a["lstrip"] or a["rstrip"]},
                                  model.vocab, model.vocab.get(model.unk_token) if model.unk_token else None,
                                  model.fuse_unk, model.byte_fallback, {a["id"] for a in model.added if a["single_word"]})

    def _set_post_processor(self, model, config, kwargs):
        """The special tokens around each sequence. Transformers 5 keeps tokenizer.json's template and ignores
        add_bos_token and add_eos_token in tokenizer_config.json; only when they are passed to from_pretrained, or
        when there is no template (no tokenizer.json, or a null post_processor), does it build one from them, each
        defaulting to False (and, with only tokenizer.model, it reads them from tokenizer_config.json)."""
        source = config if config.get("_bos_eos_from_config") else kwargs
        explicit = {k: source[k] for k in ("add_bos_token", "add_eos_token") if k in source}
        self._add_bos_token = bool(explicit.get("add_bos_token", False)) and self.bos_token_id is not None
        self._add_eos_token = bool(explicit.get("add_eos_token", False)) and self.eos_token_id is not None
        if explicit or model.post_processor is None:
            self._update_post_processor()
        else:
            self._add_bos_token = self._add_eos_token = False
            self._post_processor_rebuilt = False
            self._templates = post_processor_templates(model.post_processor)
            self._prefix, self._suffix = template_affixes(self._templates[0])

    def _update_post_processor(self):
        """Transformers' update_post_processor, from add_bos_token and add_eos_token (a flag whose token is unset
        turns false): "<s>:0 $A:0 </s>:0", the pair adding "<s>:1 $B:1 </s>:1"."""
        for flag, name in (("_add_bos_token", "bos_token"), ("_add_eos_token", "eos_token")):
            if getattr(self, flag) and self._special.get(name) is None:
                setattr(self, flag, False)
            elif getattr(self, flag) and self._special_id(name) is None:
                raise ValueError(f"{name} {self._special[name]!r} has no id in the vocabulary: it cannot surround "
                                 "a sequence")

        def around(index):
            return ([("special", [self.bos_token_id], index)] if self._add_bos_token else []) + \
                [("sequence", index, index)] + \
                ([("special", [self.eos_token_id], index)] if self._add_eos_token else [])

        self._post_processor_rebuilt = True
        self._templates = (around(0), around(0) + around(1))
        self._prefix, self._suffix = template_affixes(self._templates[0])

    # ---- loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """From a directory or a Hub id (the keywords revision, cache_dir, local_files_only, token, subfolder,
        force_download and proxies choose the files, as in Transformers; the others override tokenizer_config).
        Behaves as Transformers' PreTrainedTokenizerFast.from_pretrained (LlamaTokenizer: LlamaTokenizerFast's)."""
        name = os.fspath(pretrained_model_name_or_path)
        path = tokenizer_folder(name, kwargs)
        return cls._from_files(name, path, read_tokenizer_config(path), kwargs)

    @classmethod
    def _from_files(cls, name, path, config, kwargs):
        try:
            return cls._read_files(name, path, config, kwargs)
        except UnicodeEncodeError as e:  # a "\ud800" escape in the JSON (tokenizers: "unexpected end of hex escape")
            raise FormatError(f"{path}: a token, piece or setting holds a lone surrogate {e.object[e.start:e.end]!r}, "
                              "which is not valid UTF-8") from None

    @classmethod
    def _read_files(cls, name, path, config, kwargs):
        json_path = os.path.join(path, TOKENIZER_FILE)
        spm_path = os.path.join(path, SPM_FILE)
        given_kwargs = dict(kwargs)  # for pickling: the load again
        config, kwargs = _model_specific_tokens(config, kwargs)
        derived = {}
        if os.path.isfile(json_path):
            tj = read_json(json_path)
            model = model_from_json(tj, json_path)
            model.from_tokenizer_json = True
        elif os.path.isfile(spm_path):
            # the conversion reads legacy and the extra special tokens from the keywords as from the file
            given = {**config, **kwargs}
            model, config = model_from_sentencepiece(spm_path, given, cls._llama)
            # what the conversion derived from tokenizer.model; save_pretrained leaves it to be derived again
            derived = {k: v for k, v in config.items() if k not in given and not k.startswith("_")}
        else:
            raise OSError(f"{path!r} has neither {TOKENIZER_FILE} nor {SPM_FILE}")
        tokenizer = cls(model, config, kwargs, name_or_path=name)
        tokenizer._load_args = (os.path.abspath(path), given_kwargs)  # unpickled from any directory
        tokenizer._source_file = json_path if os.path.isfile(json_path) else spm_path
        tokenizer._derived_config = derived
        return tokenizer

    def save_pretrained(self, save_directory, **kwargs):
        """Writes tokenizer_config.json, tokenizer.json (or, for a tokenizer read from tokenizer.model alone, a
        copy of it) and chat_template.jinja as Transformers 5 does; returns the paths written."""
        return save_tokenizer(self, save_directory, **kwargs)

    def __reduce__(self):
        """Pickles as the directory it was loaded from plus the attributes a caller may have changed (the C core
        cannot be pickled; it is rebuilt), so that tokenizers cross process boundaries as Transformers' do."""
        load_args = getattr(self, "_load_args", None)
        if load_args is None:
            raise TypeError("only a NemotronTokenizer made by from_pretrained can be pickled")
        # the public attributes as they are now (set after loading too, model_input_names say), and the special and
        # added tokens
        state = {**{key: value for key, value in vars(self).items() if not key.startswith("_")},
                 "_special": dict(self._special), "_special_names": list(self._special_names),
                 "_extra_special": list(self._extra_special), "_tokens_added_later": list(self._tokens_added_later)}
        # the special tokens around a sequence, when built from add_bos_token / add_eos_token (maybe set later)
        bos_eos = (self._add_bos_token, self._add_eos_token) if self._post_processor_rebuilt else None
        return _unpickle_tokenizer, (type(self), load_args, state, bos_eos)

    @property
    def add_bos_token(self):
        return self._add_bos_token

    @add_bos_token.setter
    def add_bos_token(self, value):
        """As in Transformers: the special tokens around a sequence are rebuilt from both flags (tokenizer.json's
        template is replaced)."""
        self._add_bos_token = bool(value)
        self._update_post_processor()

    @property
    def add_eos_token(self):
        return self._add_eos_token

    @add_eos_token.setter
    def add_eos_token(self, value):
        self._add_eos_token = bool(value)
        self._update_post_processor()

    # ---- vocabulary

    def __len__(self):
        return len(self._id_to_token)

    @property
    def vocab_size(self):
        return self._n_model

    def get_vocab(self):
        return dict(self._vocab)

    @property
    def vocab(self):
        return self.get_vocab()

    pad_token_type_id = PAD_TYPE_ID

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        """1 for each id of all_special_ids in a sequence that has its special tokens already (what
        DataCollatorForLanguageModeling asks), as Transformers; for one without them, the mask the post-processor's
        template gives (Transformers raises NotImplementedError there)."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("You should not supply a second sequence if the provided sequence of ids is already "
                                 "formatted with special tokens for the model.")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        sequences = [token_ids_0] if token_ids_1 is None else [token_ids_0, token_ids_1]
        return [mask for kind, value, _ in self._templates[len(sequences) - 1]
                for mask in ([0] * len(sequences[value]) if kind == "sequence" else [1] * len(value))]

    def clean_up_tokenization(self, text):
        return clean_up_tokenization(text)

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:  # Transformers 5's error (4 returned None)
            raise TypeError("'NoneType' object is not iterable")
        if isinstance(tokens, str):
            token_id = self._vocab.get(tokens)
            if token_id is None:
                tokens.encode("utf-8")  # a lone surrogate: Transformers' UnicodeEncodeError
                unk = self._special.get("unk_token")
                return None if unk is None else self._vocab.get(unk)
            return token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Each id's token; None for an id no token has (as tokenizers), OverflowError for one that is no u32."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token.get(_u32(int(ids)))
        ids = _id_list(ids)
        # as Transformers, skip_special_tokens drops the ids of all_special_ids only (the named special tokens)
        skipped = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token.get(_u32(i)) for i in ids if i not in skipped]

    # ---- special tokens

    def _special_id(self, name):
        token = self._special.get(name)
        return None if token is None else self.convert_tokens_to_ids(token)

    def _set_special(self, name, value):
        # as in Transformers: the attribute changes; the vocabulary and the post-processor do not
        if value is None:
            self._special.pop(name, None)
        elif isinstance(value, str):
            self._special[name] = value
        else:
            raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")

    def _set_special_id(self, name, value):
        self._set_special(name, None if value is None else self._id_to_token.get(operator.index(value)))

    @staticmethod
    def _token_property(name):
        return property(lambda self: self._special.get(name), lambda self, value: self._set_special(name, value))

    @staticmethod
    def _id_property(name):
        return property(lambda self: self._special_id(name), lambda self, value: self._set_special_id(name, value))

    bos_token = _token_property("bos_token")
    eos_token = _token_property("eos_token")
    unk_token = _token_property("unk_token")
    sep_token = _token_property("sep_token")
    pad_token = _token_property("pad_token")
    cls_token = _token_property("cls_token")
    mask_token = _token_property("mask_token")
    bos_token_id = _id_property("bos_token")
    eos_token_id = _id_property("eos_token")
    unk_token_id = _id_property("unk_token")
    sep_token_id = _id_property("sep_token")
    pad_token_id = _id_property("pad_token")
    cls_token_id = _id_property("cls_token")
    mask_token_id = _id_property("mask_token")

    @property
    def extra_special_tokens(self):
        """The special tokens that have no name (Transformers 4's additional_special_tokens)."""
        return list(self._extra_special)

    @extra_special_tokens.setter
    def extra_special_tokens(self, value):
        # as the named ones: the attribute changes, the vocabulary does not
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) or hasattr(t, "content") for t in value):
            raise TypeError(f"extra_special_tokens must be a list of str or AddedToken, not {value!r}")
        self._extra_special = [str(t) for t in value]

    @property
    def extra_special_tokens_ids(self):
        return self.convert_tokens_to_ids(self.extra_special_tokens)

    @property
    def special_tokens_map(self):  # in Transformers' order of the names, whatever order they were set in
        return {name: self._special[name] for name in self._special_names if name in self._special}

    # a model-specific special token (an image_token of tokenizer_config.json, a name of a dict
    # extra_special_tokens) is an attribute of its name, as in Transformers, and so is its id
    def __getattr__(self, name):
        names = self.__dict__.get("_special_names", ())
        if name in names:
            return self._special.get(name)
        if name.endswith("_id") and name[:-3] in names:
            return self._special_id(name[:-3])
        raise AttributeError(f"{type(self).__name__} has no attribute {name}")

    def __setattr__(self, name, value):
        if name in self.__dict__.get("_special_names", ()) and name not in SPECIAL_TOKEN_NAMES:
            self._set_special(name, value)
        else:
            super().__setattr__(name, value)

    @property
    def all_special_tokens(self):
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self._extra_special]))

    @property
    def all_special_ids(self):
        return [self._vocab[t] for t in self.all_special_tokens if t in self._vocab]

    # ---- encoding

    def _encoder(self, split_special_tokens=None):
        """The core that encodes: with split_special_tokens, one where special added tokens are not matched (they
        are encoded as text, as tokenizers' encode_special_tokens does), built by from_pretrained."""
        split = self.split_special_tokens if split_special_tokens is None else bool(split_special_tokens)
        if not split:
            return self._core
        if self._split_core is None:
            raise NotImplementedError("split_special_tokens=True needs a tokenizer loaded with it: "
                                      "from_pretrained(..., split_special_tokens=True)")
        return self._split_core

    def _encode_texts(self, texts, batched=False, core=None):
        core = core or self._core
        for t in texts:
            _check_text(t, batched)
        try:
            return core.encode_batch(texts) if len(texts) > 1 else [core.encode(texts[0])]
        except UnicodeEncodeError:
            # tokenizers' Python binding rejects text it cannot turn into UTF-8 with a TypeError
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]"
                            " (the text holds a lone surrogate, which is not valid UTF-8)") from None

    def _encode_naming_matches(self, texts, batched, core, always=False):
        """Each text's (ids, names, matches): names[i] is the token's name as tokenizers gives it (an added token's
        the text it matched, with lstrip/rstrip the whitespace it took in included; the model's piece for the
        others), matches[i] whether the matcher gave it (align needs to know: an added token may share its id with
        a piece BPE gives, such as "▁"). names and matches are None where the ids' names say it all, unless
        `always`."""
        if not self._names_from_matches and not always:
            return [(ids, None, None) for ids in self._encode_texts(texts, batched, core)]
        for t in texts:
            _check_text(t, batched)
        encoded = []
        for text in texts:
            try:
                ids, found = (core or self._core).encode_matches(text)
            except UnicodeEncodeError:
                self._encode_texts([text])  # raises the TypeError Transformers raises
            names, matches = [self._pieces.get(i) for i in ids], [False] * len(ids)
            for position, matched in found:
                names[position], matches[position] = matched, True
            encoded.append((ids, names, matches))
        return encoded

    def tokenize(self, text, pair=None, add_special_tokens=False, split_special_tokens=None, **kwargs):
        if pair is not None:  # Transformers' tokenize is an encoding's tokens (which ignores truncation=)
            options = {} if split_special_tokens is None else {"split_special_tokens": split_special_tokens}
            return self(text, pair, add_special_tokens=add_special_tokens, **options).tokens()
        core = self._encoder(split_special_tokens)
        ids, names, matches = self._encode_naming_matches([text], False, core)[0]
        if self._stripping_tokens:  # the names of what lstrip/rstrip took, from the text (see _named)
            try:
                names = _named(names, align(text, ids, self._pipeline, matches)[2])
            except NotImplementedError:
                pass
        tokens = [self._id_to_token[i] if names is None or names[p] is None else names[p] for p, i in enumerate(ids)]
        if add_special_tokens:
            tokens = [self._id_to_token[i] for i in self._prefix] + tokens + [self._id_to_token[i] for i in self._suffix]
        return tokens

    def _warn_if_too_long(self, rows):
        """Transformers' _eventual_warn_about_too_long_sequence: once a tokenizer, for ids longer than
        model_max_length that nothing truncated (a UserWarning where Transformers logs it)."""
        if getattr(self, "_warned_too_long", False) or self.model_max_length == 0:
            return
        length = next((len(r) for r in rows if len(r) > self.model_max_length), None)
        if length is not None:
            self._warned_too_long = True
            warnings.warn("Token indices sequence length is longer than the specified maximum sequence length for this "
                          f"model ({length} > {self.model_max_length}). Running this sequence through the model will "
                          "result in indexing errors", stacklevel=4)

    def _truncates_right(self):
        """truncation_side as it is when a text is cut (it may be set after loading): tokenizers' errors for another
        value, rather than a side chosen silently."""
        side = self.truncation_side
        if not isinstance(side, str):
            raise TypeError(f"'{type(side).__name__}' is not an instance of 'str' (truncation_side)")
        if side not in ("left", "right"):
            raise ValueError(f"Unknown `direction`: `{side}`. Use one of `left` or `right`.")
        return side == "right"

    def _finish(self, ids, add_special_tokens, truncation, max_length):
        """One text's ids truncated and put between the special tokens, as _encodings does without the Encoding."""
        n_special = len(self._prefix) + len(self._suffix) if add_special_tokens else 0
        if truncation and max_length is not None:
            keep = _room_for_tokens(max_length, n_special)
            if len(ids) > keep:
                if truncation == "only_second" and keep > 0:  # tokenizers cuts everything at 0 without asking
                    raise ValueError(SECOND_SEQUENCE_MISSING)
                ids = ids[:keep] if self._truncates_right() else ids[len(ids) - keep:]
        return self._prefix + ids + self._suffix if add_special_tokens else ids

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """Transformers' _get_padding_truncation_strategies: (padding, truncate, max_length), padding being
        None, "longest" or "max_length", truncate False or the strategy's name."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # max_length alone turns truncation on
        if padding is True or padding == "longest":
            padding = "longest"
        elif padding in (False, None, "do_not_pad"):
            padding = None
        elif padding != "max_length":
            raise ValueError(f"{padding!r} is not a valid PaddingStrategy, please select one of ['longest', "
                             "'max_length', 'do_not_pad']")
        if truncation in (None, False, "do_not_truncate"):
            truncate = False
        elif truncation in (True, "longest_first", "only_first", "only_second"):
            truncate = "longest_first" if truncation is True else truncation
        else:
            raise ValueError(f"{truncation!r} is not a valid TruncationStrategy, please select one of "
                             "['longest_first', 'only_first', 'only_second', 'do_not_truncate']")
        if max_length is None:
            huge = self.model_max_length > LARGE_INTEGER
            if padding == "max_length":
                padding, max_length = (None, None) if huge else (padding, self.model_max_length)
            if truncate:
                truncate, max_length = (False, max_length) if huge else (truncate, self.model_max_length)
        for name, value, used in (("max_length", max_length, truncate or padding == "max_length"),
                                  ("pad_to_multiple_of", pad_to_multiple_of, padding is not None)):
            if value is None or not used:
                continue
            if not isinstance(value, (int, np.integer)):  # the types Transformers raises, with the setting named
                raise TypeError(f"{name} must be an integer, got {value!r}")
            if value < 0:
                raise OverflowError(f"{name} must not be negative, got {value}")
        if padding is not None and self.pad_token_id is None:
            raise ValueError("Asking to pad but the tokenizer does not have a padding token. Please select a token to "
                             "use as `pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad "
                             "token via `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
        if truncate and padding is not None and pad_to_multiple_of and max_length is not None and \
                max_length % pad_to_multiple_of:
            raise ValueError("Truncation and padding are both activated but truncation length "
                             f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return padding, truncate, max_length

    def _checked_truncation(self, truncate, max_length, stride):
        """tokenizers' enable_truncation refuses a stride longer than max_length less the special tokens around
        one sequence (counted so for a pair too, and without add_special_tokens) before any text is read, with its
        message."""
        if not truncate:
            return truncate
        n_single = sum(len(v) for kind, v, _ in self._templates[0] if kind == "special")
        if stride and n_single <= max_length and stride > max_length - n_single:
            raise ValueError(f"tokenizer stride set to {stride}, which is greater than or equal to its effective max "
                             f"length of {max_length - n_single} (= {max_length} original max length - {n_single} "
                             "added special tokens), ")
        return truncate

    def encode(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None, max_length=None,
               stride=0, padding_side=None, return_tensors=None, **kwargs):
        """The input_ids of __call__, with Transformers' positional order (text, text_pair, add_special_tokens)."""
        kwargs["return_attention_mask"] = False
        out = self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                   max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors,
                   **kwargs)
        return out["input_ids"]

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None, **kwargs):
        """Transformers' __call__: the encodings of text (and text_pair); of text_target (and text_pair_target)
        alone, or as the `labels` of text's encodings when both are given."""
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        encodings = self._call_one(text, text_pair, **kwargs) if text is not None else None
        if text_target is None:
            return encodings
        targets = self._call_one(text_target, text_pair_target, **kwargs)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _call_one(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                  max_length=None, stride=0, pad_to_multiple_of=None, padding_side=None, return_tensors=None,
                  return_token_type_ids=None, return_attention_mask=None, return_overflowing_tokens=False,
                  return_special_tokens_mask=False, return_offsets_mapping=False, return_length=False,
                  is_split_into_words=False, split_special_tokens=None, **kwargs):
        core = self._encoder(split_special_tokens)
        # pre-tokenized input: a list of words is one text, a list of such lists a batch
        batched = isinstance(text, (list, tuple)) and not (
            is_split_into_words and not (text and isinstance(text[0], (list, tuple))))
        texts = list(text) if batched else [text]
        if batched and not texts:
            raise ValueError("text input must not be an empty list")
        pairs = self._pairs(texts, text_pair, batched)
        if batched and not is_split_into_words and any(isinstance(t, (list, tuple)) for t in texts):
            if text_pair is not None:  # tokenizers is given (item, text_pair) pairs whose first part is no text
                raise TypeError("TextInputSequence must be str")
            texts, pairs = _split_pairs(texts)
        padding, truncate, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        truncate = self._checked_truncation(truncate, max_length, stride)
        side = padding_side or self.padding_side
        if padding is not None and side not in ("right", "left"):
            raise ValueError(f"Invalid padding strategy:{side}")
        # as Transformers: unasked, the mask and the token type ids are returned when model_input_names lists them
        want_mask = return_attention_mask if return_attention_mask is not None else \
            "attention_mask" in self.model_input_names
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        full = (pairs is not None or return_overflowing_tokens or return_offsets_mapping or return_special_tokens_mask
                or return_token_type_ids or stride or is_split_into_words)

        def encodings():
            return self._encodings(texts, pairs, add_special_tokens, padding, truncate, max_length, stride or 0,
                                   pad_to_multiple_of, side, bool(is_split_into_words), core)

        if full:
            rows = encodings()
            if return_overflowing_tokens:
                mapping = [i for i, e in enumerate(rows) for _ in range(1 + len(e.overflowing))]
                rows = [w for e in rows for w in (e, *e.overflowing)]
            columns = {"input_ids": [r.ids for r in rows]}
            if return_token_type_ids:
                columns["token_type_ids"] = [r.type_ids for r in rows]
            if want_mask:
                columns["attention_mask"] = [r.attention_mask for r in rows]
            if return_special_tokens_mask:
                columns["special_tokens_mask"] = [r.special_tokens_mask for r in rows]
            if return_offsets_mapping:
                columns["offset_mapping"] = [r.offsets for r in rows]
            if return_length:
                columns["length"] = [len(r.ids) for r in rows]
            if return_overflowing_tokens:
                columns["overflow_to_sample_mapping"] = mapping
        else:
            rows = None
            ids = [self._finish(ids, add_special_tokens, truncate, max_length)
                   for ids in self._encode_texts(texts, batched, core)]
            masks = [[1] * len(r) for r in ids]
            if padding is not None:
                target = self._padded_length([len(r) for r in ids], padding, max_length, pad_to_multiple_of)
                for r, m in zip(ids, masks):
                    fill = max(target - len(r), 0)
                    at = 0 if side == "left" else len(r)
                    r[at:at] = [self.pad_token_id] * fill
                    m[at:at] = [0] * fill
            columns = {"input_ids": ids}
            if want_mask:
                columns["attention_mask"] = masks
            if return_length:
                columns["length"] = [len(r) for r in ids]

        if max_length is None and kwargs.get("verbose", True):
            self._warn_if_too_long(columns["input_ids"])
        # one text gives unbatched lists, but batched tensors (Transformers' prepend_batch_axis)
        out = _batch_encoding(columns, return_tensors,
                              unbatch=not batched and not return_overflowing_tokens and return_tensors is None)
        out._encodings = (lambda: rows) if rows is not None else encodings
        return out

    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None, padding_side=None,
            return_attention_mask=None, return_tensors=None, verbose=True):
        """Transformers' pad (what DataCollatorWithPadding calls): pads input_ids (and attention_mask,
        token_type_ids, special_tokens_mask) of one encoding or a batch of them, given as a dict of columns or a list
        of dicts, with lists, NumPy arrays or torch tensors (return_tensors then defaults to their kind)."""
        if (isinstance(encoded_inputs, (list, tuple)) and encoded_inputs
                and isinstance(encoded_inputs[0], collections.abc.Mapping)):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        encoded_inputs = dict(encoded_inputs)
        if "input_ids" not in encoded_inputs:
            raise ValueError("You should supply an encoding or a list of encodings to this method that includes "
                             f"input_ids, but you provided {list(encoded_inputs.keys())}")
        required = encoded_inputs["input_ids"]
        if required is None or len(required) == 0:
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return _batch_encoding(encoded_inputs, None, unbatch=False)
        first = required[0]
        if isinstance(first, (list, tuple)):
            first = next((row[0] for row in required if len(row)), first)
        if not isinstance(first, (int, list, tuple)):
            if hasattr(first, "detach") or isinstance(first, (np.ndarray, np.generic)):
                return_tensors = return_tensors or ("np" if isinstance(first, (np.ndarray, np.generic)) else "pt")
            else:
                raise ValueError(f"type of {first} unknown: {type(first)}. Should be one of a python, numpy, or "
                                 "pytorch object.")
            encoded_inputs = {key: _to_lists(value) for key, value in encoded_inputs.items()}
        padding, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of)
        side = padding_side or self.padding_side
        single = not isinstance(encoded_inputs["input_ids"][0], (list, tuple))
        rows = [encoded_inputs] if single else [
            {key: value[i] for key, value in encoded_inputs.items()} for i in range(len(encoded_inputs["input_ids"]))]
        if any(len(v) != len(rows) for v in encoded_inputs.values()) and not single:
            raise ValueError("Some items in the output dictionary have a different batch size than others.")
        target = None
        if padding is not None:
            target = self._padded_length([len(r["input_ids"]) for r in rows], padding, max_length, pad_to_multiple_of)
        want_mask = return_attention_mask if return_attention_mask is not None else \
            "attention_mask" in self.model_input_names
        columns = {}
        for row in rows:
            for key, value in self._pad_row(dict(row), target, side, want_mask).items():
                columns.setdefault(key, []).append(value)
        return _batch_encoding(columns, return_tensors, unbatch=single)

    def _pad_row(self, row, target, side, want_mask):
        """Transformers' _pad of one encoding (a dict of lists) to target tokens (None: no padding)."""
        ids = list(row["input_ids"])
        if want_mask and "attention_mask" not in row:
            row["attention_mask"] = [1] * len(ids)
        fill = 0 if target is None else target - len(ids)
        if fill <= 0:
            return row
        if side not in ("right", "left"):
            raise ValueError(f"Invalid padding strategy:{side}")
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": PAD_TYPE_ID,
                "special_tokens_mask": 1}
        for key, value in pads.items():
            if key in row and (key != "attention_mask" or want_mask):
                column = list(row[key])
                row[key] = [value] * fill + column if side == "left" else column + [value] * fill
        return row

    def num_special_tokens_to_add(self, pair=False):
        """The special tokens the post-processor adds to one sequence, or to a pair."""
        return sum(len(ids) for kind, ids, _ in self._templates[1 if pair else 0] if kind == "special")

    @property
    def max_len_single_sentence(self):
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self):
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    @property
    def is_fast(self):
        return True  # what Transformers 5 builds for these files is the tokenizers-backed tokenizer

    # ---- added tokens

    @property
    def added_tokens_decoder(self):
        """{id: AddedToken} of the added tokens, with the flags last given for each (as tokenizers keeps them)."""
        return self._added_vocabulary.decoder()

    @property
    def added_tokens_encoder(self):
        return {token.content: token_id for token_id, token in self.added_tokens_decoder.items()}

    def get_added_vocab(self):
        return self.added_tokens_encoder

    def add_tokens(self, new_tokens, special_tokens=False):
        """Adds tokens (str or AddedToken) as tokenizers' add_tokens (add_special_tokens when special_tokens):
        each gets its content's id or the next free one; returns how many were added. The special tokens around a
        sequence do not change."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        tokens = [as_added_token(token, special_tokens) for token in new_tokens]
        added = self._added_vocabulary.add(tokens)
        self._tokens_added_later += tokens
        self._rebuild()
        return added

    def add_special_tokens(self, special_tokens_dict, replace_extra_special_tokens=True):
        """Transformers' add_special_tokens: sets the named special tokens (bos_token, pad_token, ...) and the
        extra ones, and adds them as special tokens; returns how many were added."""
        allowed = set(self._special_names) | {"extra_special_tokens"}
        # Transformers 4's name of the extra ones, which Transformers 5 still takes
        special_tokens_dict = {"extra_special_tokens" if key == "additional_special_tokens" else key: value
                               for key, value in special_tokens_dict.items()}
        for value in special_tokens_dict.values():  # a token as_added_token refuses, before anything changes
            for token in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(token, str) or hasattr(token, "content"):
                    as_added_token(token, True)
        tokens = []
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise ValueError(f"Key {key} is not a valid special token. Valid keys are: {allowed}")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) or hasattr(t, "content")
                                                                   for t in value):
                    raise ValueError(f"Tokens {value} for key {key} should all be str or AddedToken instances")
                new = [t for t in value if replace_extra_special_tokens or str(t) not in self._extra_special]
                contents = [str(t) for t in new]
                if replace_extra_special_tokens and new:
                    self._extra_special = contents
                else:
                    self._extra_special += contents
                tokens += new
            else:
                if not isinstance(value, str) and not hasattr(value, "content"):
                    raise ValueError(f"Token {value} for key {key} should be a str or an AddedToken instance")
                self._set_special(key, str(value))
                tokens.append(value)
        return self.add_tokens(tokens, special_tokens=True)

    def _rebuild(self):
        """The core and the maps again, after tokens were added."""
        self._model.added = self._added_vocabulary.tokens()
        self._build_vocabulary(self._model)

    def convert_tokens_to_string(self, tokens):
        """The decoder's text of the tokens, as Transformers runs the decoder on them (any strings, not only the
        vocabulary's: the names convert_ids_to_tokens gives, words a pipeline put together), without clean-up;
        without a decoder, the tokens joined by spaces."""
        if isinstance(tokens, str):  # as tokenizers refuses it: a str is not a list of its characters here
            raise TypeError("convert_tokens_to_string takes a list of tokens, not a str")
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"convert_tokens_to_string takes strings, not {type(token).__name__}")
        return decode_strings(self._model.decoder, tokens)

    def _pairs(self, texts, text_pair, batched):
        """The second sequences (None without text_pair), checked as Transformers checks them."""
        if batched:
            if text_pair is None:
                return None
            if isinstance(text_pair, str):
                raise TypeError("when tokenizing batches of text, `text_pair` must be a list or tuple with the same "
                                "length as `text`.")
            if len(texts) != len(text_pair):
                raise ValueError(f"batch length of `text`: {len(texts)} does not match batch length of `text_pair`:"
                                 f" {len(text_pair)}.")
            return list(text_pair)
        # as Transformers: an empty text_pair is no pair
        return [text_pair] if text_pair else None

    def _padded_length(self, lengths, padding, max_length, pad_to_multiple_of, columns=2):
        """The length rows of `lengths` pad to; refuses, before padding, a length whose `columns` lists of 8-byte
        slots per row cannot fit in this machine's memory (tokenizers aborts the process there)."""
        target = max(lengths) if padding == "longest" else max_length
        if pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        needed = 8 * columns * len(lengths) * max(target, 0)
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
        if available and needed > available:
            raise ValueError(f"padding {len(lengths)} rows to {target} tokens (max_length={max_length}, "
                             f"pad_to_multiple_of={pad_to_multiple_of}) needs {needed / 2**30:.1f} GiB, more than "
                             f"this machine's {available / 2**30:.1f} GiB")
        return target

    def _sequence_encodings(self, texts, sequence, split=False, core=None):
        """An Encoding (ids, offsets, words) per text, no special tokens. split: each text is a list of words."""
        if split:
            return [self._words_encoding(words, sequence, core) for words in texts]
        encodings = []
        for text, (ids, names, matches) in zip(texts, self._encode_naming_matches(texts, len(texts) > 1, core,
                                                                                   always=True)):
            try:
                offsets, words, placed_names = align(text, ids, self._pipeline, matches)
                names, error = _named(names, placed_names), None
            except NotImplementedError as e:  # raised when offsets or words are read, not for ids or tokens
                offsets, words, error = None, [NotImplemented] * len(ids), str(e)
            encodings.append(Encoding(ids, offsets, words, sequence, type_id=sequence, tokens=names))
            encodings[-1].offsets_error = error
        return encodings

    def _words_encoding(self, words, sequence, core=None):
        """The Encoding of pre-tokenized text (is_split_into_words), as tokenizers makes it: each word encoded on its
        own (a Metaspace prepends to each), the word ids the words' indices, the offsets within each word."""
        if not isinstance(words, (list, tuple)) or not all(isinstance(word, str) for word in words):
            raise TypeError("with is_split_into_words=True, a text is a list of words (str) and a batch a list of "
                            f"such lists, not {words!r}")  # tokenizers' TypeError names the Union it wanted
        ids, offsets, word_ids, names = [], [], [], []
        encoded = self._encode_naming_matches(list(words), len(words) > 1, core, always=True) if words else []
        for index, (word, (word_ids_of, names_of, matches)) in enumerate(zip(words, encoded)):
            word_offsets, _, placed_names = align(word, word_ids_of, self._pipeline, matches)
            ids += list(word_ids_of)
            offsets += word_offsets
            word_ids += [index] * len(word_ids_of)
            names += _named(names_of, placed_names)
        return Encoding(ids, offsets, word_ids, sequence, type_id=sequence, tokens=names)

    def _encodings(self, texts, pairs, add_special_tokens, padding, truncate, max_length, stride, pad_to_multiple_of,
                   side, split=False, core=None):
        """The Encodings (overflowing windows inside) of texts, or of (texts, pairs), as tokenizers makes them:
        each sequence encoded, truncated (windows with `stride` when truncation cuts), put in the template, padded."""
        firsts = self._sequence_encodings(texts, 0, split, core)
        seconds = [None] * len(texts)
        if pairs is not None:  # a row's pair may be None: a batch of texts and (text, text_pair) items
            given = iter(self._sequence_encodings([p for p in pairs if p is not None], 1, split, core))
            seconds = [None if p is None else next(given) for p in pairs]
        if stride and not truncate:
            stride = 0  # tokenizers windows only what it truncates
        encodings = []
        for first, second in zip(firsts, seconds):
            sequences = [first] if second is None else [first, second]
            template = self._templates[len(sequences) - 1]
            n_added = sum(len(v) for kind, v, _ in template if kind == "special") if add_special_tokens else 0
            if truncate:
                truncate_sequences(sequences, _room_for_tokens(max_length, n_added), truncate, stride,
                                   not self._truncates_right())
            encodings.append(apply_template(template, sequences, add_special_tokens))
        if padding is not None:
            # tokenizers pads to the longest main row; the overflowing windows are padded to that length too, never
            # counted (a pair's windows can be longer than its first row)
            rows = 1 + max((len(e.overflowing) for e in encodings), default=0)
            target = self._padded_length([len(e) for e in encodings] * rows, padding, max_length, pad_to_multiple_of,
                                         columns=7)
            for e in encodings:
                e.pad(target, self.pad_token_id, side == "left")
        for window in (w for e in encodings for w in (e, *e.overflowing)):  # the tokens' names (tokens())
            window.tokens = [self._id_to_token.get(i) if t is None else t for i, t in zip(window.ids, window.tokens)]
        return encodings

    # ---- decoding

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        ids = _id_list(token_ids)
        if ids and isinstance(ids[0], list):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        for i in ids:
            _u32(i)
        if not isinstance(skip_special_tokens, (bool, np.bool_)):  # tokenizers' TypeError: "False" is no False
            raise TypeError(f"'{type(skip_special_tokens).__name__}' object is not an instance of 'bool' "
                            "(skip_special_tokens)")
        # ids beyond the vocabulary are skipped, as tokenizers does
        skipped = self._skipped_ids if skip_special_tokens else ()
        array = np.array([i for i in ids if i < self._n_ids and i not in skipped], dtype=np.int32)
        text = self._core.decode(array, False)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        forced = self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
        return clean_up_tokenization(text) if clean and forced else text

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(sequences, (int, np.integer)) or getattr(sequences, "ndim", None) == 0:
            raise TypeError(f"object of type '{type(sequences).__name__}' has no len(): batch_decode takes a batch "
                            "of sequences (decode takes one)")
        rows = _id_list(sequences)
        if rows and not any(isinstance(row, list) for row in rows):
            # as Transformers 5, which warns that this is deprecated: one sequence, not a batch of one-token ones
            warnings.warn("Passing a single sequence to `batch_decode` is deprecated and will be removed in a future "
                          "version, use `decode` instead.", FutureWarning, stacklevel=2)
            rows = [rows]
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in rows]

    # ---- chat

    def get_chat_template(self, chat_template=None, tools=None):
        """Transformers' choice: with named templates, chat_template= names one (or is a template itself), else
        "tool_use" when there are tools, else "default"; with one, chat_template= or the tokenizer's."""
        if isinstance(self.chat_template, dict):
            named = self.chat_template
            if chat_template is not None and chat_template in named:
                return named[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in named:
                    return named["tool_use"]
                if "default" in named:
                    return named["default"]
                raise ValueError("This model has multiple chat templates with no default specified! Please either "
                                 "pass a chat template or the name of the template you wish to use to the "
                                 f"`chat_template` argument. Available template names are {sorted(named)}.")
            return chat_template
        if chat_template is None:
            if self.chat_template is None:
                raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set and "
                                 "no template argument was passed! For information about writing templates and "
                                 "setting the tokenizer.chat_template attribute, please see the documentation at "
                                 "https://huggingface.co/docs/transformers/main/en/chat_templating")
            return self.chat_template
        return chat_template

    def apply_chat_template(self, conversation, tools=None, documents=None, chat_template=None,
                            add_generation_prompt=False, continue_final_message=False, tokenize=True,
                            sanitize_control_tokens=False, padding=False, truncation=False, max_length=None,
                            return_tensors=None, return_dict=True, return_assistant_tokens_mask=False,
                            tokenizer_kwargs=None, **kwargs):
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not (return_dict and tokenize):
            raise ValueError("`return_assistant_tokens_mask=True` requires `return_dict=True` and `tokenize=True`")
        template = self.get_chat_template(chat_template, tools)
        if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        # a batch: a list of conversations, each a list of messages or an object with .messages
        batched = isinstance(conversation, (list, tuple)) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
        conversations = [normalized_messages(c) for c in (conversation if batched else [conversation])]
        # (with add_generation_prompt too, render raises first that those two do not go together, as Transformers)
        if continue_final_message and return_assistant_tokens_mask and not add_generation_prompt:
            raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        if sanitize_control_tokens:
            if not tokenize or return_assistant_tokens_mask:
                raise ValueError("`sanitize_control_tokens=True` requires `tokenize=True` and is not compatible with "
                                 "`return_assistant_tokens_mask=True`.")
            # the control tokens in the user's strings are marked, and encoded as text below
            pattern = control_pattern(self._control_tokens(template))
            conversations = [mark_control_tokens(c, pattern) for c in conversations]
            tools, documents = mark_control_tokens(tools, pattern), mark_control_tokens(documents, pattern)
            kwargs = mark_control_tokens(kwargs, pattern)
        spans = [[] if return_assistant_tokens_mask else None for _ in conversations]
        rendered = [render(template, c, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
                           continue_final_message=continue_final_message, generation_spans=s,
                           **{**self.special_tokens_map, **kwargs})
                    for c, s in zip(conversations, spans)]
        if sanitize_control_tokens:
            ids = [self._encode_marked(text) for text in rendered]
            if truncation not in (None, False, "do_not_truncate") and max_length is not None:
                right = self._truncates_right()
                ids = [r[:max_length] if right else r[len(r) - max_length:] if len(r) > max_length else r
                       for r in ids]
            options = {k: v for k, v in (tokenizer_kwargs or {}).items()
                       if k in ("pad_to_multiple_of", "padding_side", "return_attention_mask")}
            out = self.pad({"input_ids": ids if batched or return_tensors else ids[0]}, padding=padding,
                           max_length=max_length, return_tensors=return_tensors, **options)
            return out if return_dict else out["input_ids"]
        if not batched:
            rendered = rendered[0]
        if not tokenize:
            return rendered
        out = self(rendered, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        if not return_dict:
            return out["input_ids"]
        if return_assistant_tokens_mask:
            masks = [_assistant_mask(out.encodings[i].offsets, spans[i]) for i in range(len(conversations))]
            if return_tensors:
                out["assistant_masks"] = _as_tensor(masks, return_tensors)
            else:
                out["assistant_masks"] = masks if batched else masks[0]
        return out

    def _control_tokens(self, template):
        """What sanitize_control_tokens encodes as text in the user's strings: the special added tokens, and those of
        chat_control_tokens, or without it the added tokens the template writes (whitespace ones aside)."""
        tokens = self.added_tokens_decoder.values()
        if self.chat_control_tokens is not None:
            listed = set(self.chat_control_tokens)
            return tuple(t.content for t in tokens if t.special or t.content in listed)
        literal = template_literal_text(template)
        return tuple(t.content for t in tokens if t.special or (t.content in literal and not t.content.isspace()))

    def _encode_marked(self, text):
        """The ids of a chat rendered from marked inputs: the marked control tokens as plain text (no added token
        matched), the rest as usual. Each piece is encoded after a newline, which is then taken off, so that
        SentencePiece's prefix space does not start every piece (Transformers' way)."""
        newline = self._encode_texts(["\n"])[0]
        if self._plain_core is None:
            added, self._model.added = self._model.added, []
            try:
                self._plain_core = build_core(self._model)
            finally:
                self._model.added = added

        def encode(piece, as_text):
            core = self._plain_core if as_text else self._encoder()
            ids = self._encode_texts(["\n" + piece], core=core)[0]
            return ids[len(newline):] if ids[:len(newline)] == newline else self._encode_texts([piece], core=core)[0]

        pieces = split_marked(text, list(self.added_tokens_encoder))
        ids = self._encode_texts([pieces[0]], core=self._encoder())[0] if pieces[0] else []
        for i, piece in enumerate(pieces[1:], start=1):
            if not piece:
                continue
            as_text = i % 2 == 1  # the marked tokens
            piece_ids = encode(piece, as_text)
            if as_text and self.convert_tokens_to_ids(piece) in piece_ids:
                raise ValueError(f"Can't sanitize {piece!r}: the tokenizer produces it from plain text")
            ids += piece_ids
        return ids

    def __repr__(self):
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"len={len(self)}, padding_side={self.padding_side!r})")


def decode_strings(steps, tokens):
    """tokenizers' decoders (the core's decoder steps) run on strings, as the core runs them on the ids' tokens."""
    if not steps:
        return " ".join(tokens)
    for kind, a, b, start, stop, prepend_scheme, *_ in steps:
        if kind == _core.STEP_REPLACE:
            tokens = [t.replace(a, b) if a else t for t in tokens]
        elif kind == _core.STEP_BYTE_FALLBACK:
            tokens = _byte_fallback(tokens)
        elif kind == _core.STEP_FUSE:
            tokens = ["".join(tokens)]
        elif kind == _core.STEP_STRIP:
            tokens = [_strip(t, a, start, stop) for t in tokens]
        elif kind == _core.STEP_METASPACE:  # the first token's replacements are dropped unless prepend is "never"
            tokens = [t.replace(a, "" if i == 0 and prepend_scheme != _core.PREPEND_NEVER else " ")
                      for i, t in enumerate(tokens)]
        else:
            raise ValueError(f"decoder step {kind} is not one nemotron_c decodes")
    return "".join(tokens)


def _byte_fallback(tokens):
    """Runs of <0xNN> tokens become their text when it is UTF-8, else one U+FFFD a byte."""
    out, run = [], bytearray()
    for token in tokens + [None]:
        value = _byte_value(token)
        if value is not None:
            run.append(value)
            continue
        if run:
            try:
                out.append(run.decode("utf-8"))
            except UnicodeDecodeError:
                out += ["\ufffd"] * len(run)
            run.clear()
        if token is not None:
            out.append(token)
    return out


def _byte_value(token):
    """The byte of a "<0xNN>" token (six UTF-8 bytes, NN read as Rust's u8::from_str_radix reads it), or None."""
    if token is None or len(token.encode("utf-8")) != 6 or not token.startswith("<0x") or not token.endswith(">"):
        return None
    digits = token[3:5]
    hexadecimal = "0123456789abcdefABCDEF"
    if all(c in hexadecimal for c in digits) or (digits[0] == "+" and digits[1] in hexadecimal):
        return int(digits, 16)
    return None


def _strip(token, content, start, stop):
    """tokenizers' Strip decoder: up to start leading and stop trailing `content` characters off."""
    for _ in range(start):
        if not (content and token.startswith(content)):
            break
        token = token[len(content):]
    for _ in range(stop):
        if not (content and token.endswith(content)):
            break
        token = token[:-len(content)]
    return token


MODEL_SPECIFIC = "_model_specific_special_tokens"


def _model_specific_tokens(config, kwargs):
    """(config, kwargs) with Transformers 5's model-specific special tokens gathered under MODEL_SPECIFIC in config
    ({name: token}, in the order of the merged settings): every other `*_token` setting whose value is a token (a
    string or an AddedToken dict), then the names of an extra_special_tokens (or additional_special_tokens) given
    as a dict, which is taken out of both (the tokens it lists are then none, and a tokenizer.model's conversion
    names its own). Each becomes a special token with an attribute of its name."""
    merged = {**config, **kwargs}
    def is_token(value):  # a string, or an AddedToken (an object, or a dict in tokenizer_config.json)
        content = value.get("content") if isinstance(value, dict) else getattr(value, "content", value)
        return isinstance(content, str)

    specific = {key: value for key, value in merged.items()
                if key.endswith("_token") and key not in SPECIAL_TOKEN_NAMES and is_token(value)}
    extra_key = "extra_special_tokens" if merged.get("extra_special_tokens") else "additional_special_tokens"
    if isinstance(merged.get(extra_key), dict):
        specific.update(merged[extra_key])
        config = {k: v for k, v in config.items() if k not in ("extra_special_tokens", "additional_special_tokens")}
        kwargs = {k: v for k, v in kwargs.items() if k not in ("extra_special_tokens", "additional_special_tokens")}
    return ({**config, MODEL_SPECIFIC: specific} if specific else config), kwargs


def _split_pairs(items):
    """(texts, pairs) of a batch whose items are texts or (text, text_pair) tuples or 2-lists, as tokenizers'
    encode_batch takes them (a row without a pair has None), with its errors."""
    texts, pairs = [], []
    for item in items:
        if not isinstance(item, (list, tuple)):
            texts.append(item)
            pairs.append(None)
            continue
        if len(item) != 2:
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        if not all(isinstance(part, str) for part in item):
            raise TypeError("TextInputSequence must be str")
        texts.append(item[0])
        pairs.append(item[1])
    return texts, pairs


def _room_for_tokens(max_length, n_special):
    """How many tokens of the texts fit in max_length beside n_special special tokens. Shorter than the special
    tokens is a ValueError (tokenizers then does not truncate at all, returning more than max_length tokens)."""
    if max_length < n_special:
        raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens the "
                         "tokenizer adds")
    return max_length - n_special


def _assistant_mask(offsets, spans):
    """1 for each token that overlaps a {% generation %} span of the rendered text (so that a span cut by
    truncation keeps its remaining tokens), as Transformers' apply_chat_template marks them."""
    mask, k = [0] * len(offsets), 0
    for index, (start, end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[index] = 1
    return mask


def _batch_encoding(columns, return_tensors, unbatch):
    """A BatchEncoding of the columns, as tensors of return_tensors' kind or lists (a single row's when unbatch)."""
    out = BatchEncoding()
    for key, column in columns.items():
        per_row = key in ("overflow_to_sample_mapping", "length")  # one number a row: a 1-D column, never unbatched
        if unbatch and not per_row:
            column = column[0]
        if return_tensors is None:
            out[key] = column
        else:  # _as_tensor makes 2-D tensors from rows: a 1-D column is one row
            one_dimensional = per_row or not column or not isinstance(column[0], (list, tuple))
            out[key] = _as_tensor([column], return_tensors)[0] if one_dimensional else _as_tensor(column, return_tensors)
    return out


def _to_lists(value):
    """A NumPy array or torch tensor (or a list of them) as nested Python lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_lists(v) for v in value]
    return value


def _unpickle_tokenizer(cls, load_args, state, bos_eos=None):
    path, kwargs = load_args
    tokenizer = cls.from_pretrained(path, **kwargs)
    tokenizer.__dict__.update(state)
    if tokenizer._tokens_added_later:  # add_tokens after loading, again
        tokenizer._added_vocabulary.add(tokenizer._tokens_added_later)
        tokenizer._rebuild()
    if bos_eos is not None:
        tokenizer._add_bos_token, tokenizer._add_eos_token = bos_eos
        tokenizer._update_post_processor()
    return tokenizer


def clean_up_tokenization(text):
    """Transformers' clean_up_tokenization_spaces."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


def _u32(token_id):
    """token_id, checked as tokenizers' ids are (u32): its OverflowErrors, with the id."""
    if token_id < 0:
        raise OverflowError(f"token id {token_id}: number too small to fit in target type")
    if token_id >= 2**32:
        raise OverflowError(f"token id {token_id}: number too large to fit in target type")
    return token_id


def _id_list(ids):
    """Token ids from an int, a list, a NumPy array or a torch tensor, as Python ints (or lists of them).
    Anything that is not an integer is a TypeError, as in Transformers."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (bytes, bytearray)):  # a sequence of small ints, as tokenizers reads it
        ids = list(ids)
    if isinstance(ids, collections.abc.Mapping) and "input_ids" in ids:  # a BatchEncoding, Transformers' too
        ids = ids["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
    if isinstance(ids, str):
        raise TypeError("token ids must be an integer or a sequence of integers, not a str")
    if not isinstance(ids, (list, tuple)):
        return [operator.index(ids)]
    # rows may be arrays or tensors themselves (a list of per-row arrays, as batch_decode is often given)
    return [_id_list(i) if isinstance(i, (list, tuple)) or hasattr(i, "tolist") and getattr(i, "ndim", 0) else
            operator.index(i) for i in ids]


class LlamaTokenizer(NemotronTokenizer):
    """`transformers.LlamaTokenizer` (and LlamaTokenizerFast): the vocabulary and merges of the files inside Llama's
    own pipeline (Metaspace with prepend_scheme "first" unless legacy=True, none if add_prefix_space=False), <s>,
    </s> and <unk> by default, padding on the left. AutoTokenizer gives it only outside a Nemotron checkpoint
    folder, when tokenizer_config.json names LlamaTokenizer or LlamaTokenizerFast."""

    _llama = True


def tokenizer_folder(name, kwargs):
    """The local folder of a directory or Hub id; takes the Hub keywords out of kwargs. config.json comes along
    from the Hub because it decides which tokenizer Transformers builds."""
    path = resolve_directory(name, [(TOKENIZER_FILE, SPM_FILE)], OPTIONAL_FILES + (MODEL_CONFIG_FILE,),
                             **pop_hub_kwargs(kwargs))
    if not os.path.isdir(path):
        raise OSError(f"{path!r} is not a directory holding tokenizer files")
    return path


def _read_object(path):
    data = read_json(path)
    require(isinstance(data, dict), f"{path}: the top level is not an object")
    return data


def _model_max_length(value):
    """tokenizer_config.json's model_max_length as an int: absent, null or beyond LARGE_INTEGER (1e30 is a float in
    JSON) means no limit; anything else must be a whole number (Transformers fails on a string or 12.5 at the first
    call that truncates, with "'>' not supported" or "'float' object cannot be interpreted as an integer")."""
    if value is None:
        return VERY_LARGE_INTEGER
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value > LARGE_INTEGER:
        return VERY_LARGE_INTEGER
    if not isinstance(value, float) or not math.isfinite(value) or value != int(value):
        raise FormatError(f"tokenizer_config.json: model_max_length must be a whole number, got {value!r}")
    return int(value)


def read_tokenizer_config(path):
    """tokenizer_config.json, special_tokens_map.json and chat_template.jinja as one dict."""
    config = {}
    config_path = os.path.join(path, CONFIG_FILE)
    if os.path.isfile(config_path):
        config.update(_read_object(config_path))
    # As Transformers: special_tokens_map.json is read only when tokenizer_config.json has no
    # added_tokens_decoder, and then its entries win over tokenizer_config.json's.
    special_map = os.path.join(path, SPECIAL_TOKENS_FILE)
    if os.path.isfile(special_map) and "added_tokens_decoder" not in config:
        config.update(_read_object(special_map))
    # as Transformers: template files win over the config's; chat_template.jinja is the default, each
    # additional_chat_templates/<name>.jinja a named one
    templates = {}
    if os.path.isfile(os.path.join(path, CHAT_TEMPLATE_FILE)):
        templates["default"] = _read_text(os.path.join(path, CHAT_TEMPLATE_FILE))
    extra = os.path.join(path, CHAT_TEMPLATE_DIR)
    if os.path.isdir(extra):
        for file_name in sorted(os.listdir(extra)):
            if file_name.endswith(".jinja") and os.path.isfile(os.path.join(extra, file_name)):
                templates[file_name[:-len(".jinja")]] = _read_text(os.path.join(extra, file_name))
    if list(templates) == ["default"]:
        config["chat_template"] = templates["default"]
    elif templates:
        config["chat_template"] = templates
    return config


def _read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def tokenizer_class_for(path, tokenizer_config):
    """The tokenizer Transformers 5's AutoTokenizer.from_pretrained(path) builds, as ours:

    1. config.json beside the tokenizer files says model_type "nemotron" (every Nemotron checkpoint folder):
       Transformers maps nemotron to TokenizersBackend and ignores tokenizer_config.json's tokenizer_class, so
       NemotronTokenizer: tokenizer.json as it is (its legacy and add_prefix_space ignored, add_bos_token and
       add_eos_token too when tokenizer.json has a post-processor; tokenizer.model alone is converted as
       TokenizersBackend converts it), padding on the right unless padding_side is set, and only the special tokens
       tokenizer_config.json names (no <s>/</s>/<unk> defaults).
    2. Otherwise (no config.json, or another model_type) tokenizer_config.json's tokenizer_class decides:
       LlamaTokenizer or LlamaTokenizerFast gives LlamaTokenizer (Llama's pipeline, padding on the left);
       PreTrainedTokenizerFast, TokenizersBackend, NemotronTokenizer or none gives NemotronTokenizer; any other
       class is a ValueError.

    use_fast=False and trust_remote_code change nothing (Transformers 5 always builds the fast tokenizer)."""
    model_config_path = os.path.join(path, MODEL_CONFIG_FILE)
    if os.path.isfile(model_config_path):
        if _read_object(model_config_path).get("model_type") in TOKENIZERS_BACKEND_MODEL_TYPES:
            return NemotronTokenizer
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    if tokenizer_class in LLAMA_CLASSES:
        return LlamaTokenizer
    if tokenizer_class in PLAIN_CLASSES:
        return NemotronTokenizer
    raise ValueError(f"unsupported tokenizer_class {tokenizer_class!r} in {os.path.join(path, CONFIG_FILE)} "
                     f"(nemotron_c supports {', '.join(c for c in LLAMA_CLASSES + PLAIN_CLASSES if c)})")


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(dir or Hub id)`: the tokenizer Transformers' AutoTokenizer builds on the same
    folder (see tokenizer_class_for): NemotronTokenizer in a Nemotron checkpoint folder, whose config.json says
    model_type "nemotron"."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        for ignored in ("use_fast", "trust_remote_code"):
            kwargs.pop(ignored, None)
        name = os.fspath(pretrained_model_name_or_path)
        path = tokenizer_folder(name, kwargs)
        config = read_tokenizer_config(path)
        return tokenizer_class_for(path, config)._from_files(name, path, config, kwargs)
