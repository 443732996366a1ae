"""Builds the tokenizer directories the tests compare on: SentencePiece BPE models (byte_fallback, control and
user-defined symbols) trained here, converted with Transformers' LlamaTokenizer (legacy=False) as Nemotron
checkpoints were, then saved in the layouts checkpoints use. Built once per test session (cached by root)."""
import functools
import json
import os
import shutil

import nemotron_c

from .tokenizer_corpus import training_lines

# Nemotron-Mini-4B-Instruct's prompt format, as the demo model shipped with the package carries it.
with open(os.path.join(nemotron_c.demo_model_path(), "tokenizer_config.json"), encoding="utf-8") as _f:
    CHAT_TEMPLATE = json.load(_f)["chat_template"]


def train(path_prefix, vocab_size, lines, user_defined, control, **options):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(**options,
        sentence_iterator=iter(lines), model_prefix=path_prefix, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, user_defined_symbols=user_defined,
        control_symbols=control, split_digits=False, max_sentence_length=100000, minloglevel=2,
        num_threads=2,
    )


def convert(spm_dir, out_dir):
    """tokenizer.model -> tokenizer.json with Transformers' LlamaTokenizer (legacy=False)."""
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(spm_dir, legacy=False)
    tok.save_pretrained(out_dir)
    for name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)


def _edit_tokenizer_json(path, edit):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    edit(data)
    _write_json(path, data)


def _nemotron_json(data):
    """As Transformers 4's LlamaConverter wrote it for Nemotron: unk_token set, a BOS template."""
    data["model"]["unk_token"] = "<unk>"
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }


def _string_merges(data):
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]


def _legacy_pipeline(data):
    """A tokenizer.json with the legacy normalizer (Prepend + Replace) and flagged added tokens."""
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    data["pre_tokenizer"] = None
    data["model"]["unk_token"] = "<unk>"
    for a in data["added_tokens"]:
        if a["content"] == "<extra_id_0>":
            a.update(lstrip=True, rstrip=True)
        if a["content"] == "<extra_id_1>":
            a.update(single_word=True)
    next_id = max(data["model"]["vocab"].values()) + 1
    data["added_tokens"].append({"id": next_id, "content": "zzword", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": True, "special": False})
    data["added_tokens"].append({"id": next_id + 1, "content": "<tool>", "single_word": False, "lstrip": True,
                                 "rstrip": False, "normalized": False, "special": True})


def _metaspace_split(data):
    """Metaspace splitting into words (prepend always) and a Metaspace decoder."""
    data["model"]["unk_token"] = "<unk>"
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                                   "split": True}]}


def _no_decoder(data):
    data["decoder"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                             "split": False}


VARIANTS = {
    # name: (vocab size, tokenizer.json edits, tokenizer_config.json)
    "nemotron": (3000, [_nemotron_json], {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False, "legacy": False, "model_max_length": 4096,
        "tokenizer_class": "LlamaTokenizer", "chat_template": CHAT_TEMPLATE}),
    "llama_no_prefix_space": (3000, [_nemotron_json], {"tokenizer_class": "LlamaTokenizer", "add_prefix_space": False,
                                                       "legacy": False}),
    "llama_legacy": (3000, [_nemotron_json], {"tokenizer_class": "LlamaTokenizerFast", "legacy": True}),
    "plain_strings": (1000, [_nemotron_json, _string_merges], {
        "add_eos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "clean_up_tokenization_spaces": True, "model_max_length": 64, "padding_side": "right",
        "tokenizer_class": "PreTrainedTokenizerFast"}),
    "big": (8000, [], {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                       "unk_token": "<unk>", "pad_token": "</s>"}),
    # pieces that hold U+2581 inside or after other characters ("s▁the", "▁▁▁"): merges then cross
    # word boundaries, which the core's word cutting must respect
    "glued": (("glued", 3000, (("split_by_whitespace", False), ("allow_whitespace_only_pieces", True),
                               ("remove_extra_whitespaces", False))),
              [_nemotron_json], {"tokenizer_class": "LlamaTokenizer", "legacy": False}),
    "metaspace_split": (1000, [_metaspace_split], {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "no_decoder": (1000, [_no_decoder], {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "legacy": (1000, [_legacy_pipeline], {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True}),
}

SPM_ONLY = [
    ("spm_only", {}, None),
    ("spm_only_no_extra_ws", {"remove_extra_whitespaces": False}, None),
    ("spm_only_no_prefix", {"add_dummy_prefix": False}, {"legacy": False}),
    ("spm_only_llama", {}, {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True}),
]
USER_DEFINED = ["<extra_id_0>", "<extra_id_1>"]
CONTROL = ["<pad>", "<ctrl_0>"]


@functools.lru_cache(maxsize=None)
def build_all(root, n_lines=6000, spm_only=True):
    """Returns {name: directory}; also 'spm:<size>' -> a directory holding only tokenizer.model."""
    lines = training_lines(n=n_lines)
    dirs = {}
    models = {}
    for size in sorted({v[0] for v in VARIANTS.values()}, key=str):
        tag = size if isinstance(size, int) else size[0]
        spm_dir = os.path.join(root, f"spm{tag}")
        os.makedirs(spm_dir, exist_ok=True)
        options = {} if isinstance(size, int) else dict(size[2])
        train(os.path.join(spm_dir, "tokenizer"), size if isinstance(size, int) else size[1], lines, USER_DEFINED,
              CONTROL, **options)
        os.remove(os.path.join(spm_dir, "tokenizer.vocab"))
        converted = os.path.join(root, f"converted{tag}")
        convert(spm_dir, converted)
        models[size] = (spm_dir, converted)
        dirs[f"spm:{tag}"] = spm_dir
    # tokenizer.model alone (identity normalization: Transformers' conversion then needs no charsmap), with and
    # without a tokenizer_config.json naming LlamaTokenizer
    for name, options, config in SPM_ONLY if spm_only else []:
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        train(os.path.join(out, "tokenizer"), 2000, lines, USER_DEFINED, CONTROL, normalization_rule_name="identity",
              **options)
        os.remove(os.path.join(out, "tokenizer.vocab"))
        if config is not None:
            _write_json(os.path.join(out, "tokenizer_config.json"), config)
        dirs[name] = out
    for name, (size, edits, config) in VARIANTS.items():
        out = os.path.join(root, name)
        shutil.copytree(models[size][1], out, dirs_exist_ok=True)
        for edit in edits:
            _edit_tokenizer_json(os.path.join(out, "tokenizer.json"), edit)
        _write_json(os.path.join(out, "tokenizer_config.json"), config)
        dirs[name] = out
    return dirs


def _grow_model_proto(path, vocab_size, n_control, n_user_defined, seed=0):
    """Edits a trained tokenizer.model up to vocab_size pieces as Nemotron's is: n_control control pieces and
    n_user_defined user-defined ones (ids after the trained pieces), then normal pieces, each the concatenation of
    two earlier ones (so that merges reach them) with falling scores."""
    import random

    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
    seen = {p.piece for p in proto.pieces}
    for k in range(n_control):
        proto.pieces.add(piece=f"<special_{k}>", score=0.0, type=kinds.CONTROL)
    for k in range(n_user_defined):
        # tags, and word-like pieces that also occur inside ordinary text
        proto.pieces.add(piece=f"<tool_{k}>" if k % 3 else f"zq{k}x", score=0.0, type=kinds.USER_DEFINED)
    normal = [p for p in proto.pieces if p.type == kinds.NORMAL]
    pieces, score = [p.piece for p in normal], min(p.score for p in normal)
    rng = random.Random(seed)
    while len(proto.pieces) < vocab_size:
        piece = rng.choice(pieces) + rng.choice(pieces).lstrip("\u2581")
        if piece in seen or len(piece) > 16:
            continue
        seen.add(piece)
        pieces.append(piece)
        score -= 0.01
        proto.pieces.add(piece=piece, score=score, type=kinds.NORMAL)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def _added_tokens_decoder(added, seed=0):
    """added_tokens_decoder for tokenizer.json's added tokens (the control and user-defined pieces), with varied
    flags: the control pieces special, the user-defined ones not (some marked special), lstrip/rstrip/single_word/
    normalized set on some of each."""
    import random

    rng = random.Random(seed)
    decoder = {}
    for a in added:
        special = a["special"] or rng.random() < 0.1
        decoder[str(a["id"])] = {"content": a["content"], "special": special, "lstrip": rng.random() < 0.2,
                                 "rstrip": rng.random() < 0.2, "single_word": rng.random() < 0.1,
                                 "normalized": (not special) and rng.random() < 0.5}
    return decoder


@functools.lru_cache(maxsize=None)
def build_large(root, vocab_size=256000, n_control=2000, n_user_defined=2000):
    """A tokenizer at Nemotron's scale in `root`: vocab_size pieces (a SentencePiece BPE model with byte fallback
    trained here, grown by editing its ModelProto), n_control + n_user_defined control and user-defined pieces, a
    tokenizer_config.json with an added_tokens_decoder entry for each, and a Nemotron config.json beside them.
    Returns the directory."""
    from transformers import NemotronConfig

    spm_dir, out = os.path.join(root, "spm"), os.path.join(root, "large")
    os.makedirs(spm_dir, exist_ok=True)
    train(os.path.join(spm_dir, "tokenizer"), 8000, training_lines(n=6000), USER_DEFINED, CONTROL)
    os.remove(os.path.join(spm_dir, "tokenizer.vocab"))
    _grow_model_proto(os.path.join(spm_dir, "tokenizer.model"), vocab_size, n_control, n_user_defined)
    convert(spm_dir, out)
    json_path = os.path.join(out, "tokenizer.json")
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    _nemotron_json(data)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    _write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "model_max_length": 4096, "added_tokens_decoder": _added_tokens_decoder(data["added_tokens"])})
    NemotronConfig(vocab_size=vocab_size, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                   num_attention_heads=2, num_key_value_heads=1).save_pretrained(out)
    return out


def write_tiny_tokenizer(out, vocab, merges=(), added=(), pre_tokenizer=None, decoder=None, config=None):
    """A hand-written tokenizer.json (BPE over `vocab` with `merges`, no normalizer or post-processor) and a
    tokenizer_config.json naming PreTrainedTokenizerFast, in out: for cases a trained model does not reach.
    added: dicts with at least id and content (the other AddedToken flags default to False, special to True)."""
    os.makedirs(out, exist_ok=True)
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    data = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [{**flags, **a} for a in added],
            "normalizer": None, "pre_tokenizer": pre_tokenizer, "post_processor": None, "decoder": decoder,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": [list(m) for m in merges]}}
    _write_json(os.path.join(out, "tokenizer.json"), data)
    _write_json(os.path.join(out, "tokenizer_config.json"), {"tokenizer_class": "PreTrainedTokenizerFast",
                                                              **(config or {})})
    return str(out)


def byte_level_tokenizer(tokens, size=96):
    """Transformers' fast tokenizer over the tiny checkpoints' `size` ids: byte-level BPE without merges whose first
    ids are `tokens` (the specials <unk> <s> </s> <pad> first), the rest filler."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    while len(vocab) < size:
        vocab[f"x{len(vocab)}"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", pad_token="<pad>")
