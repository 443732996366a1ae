"""Reads a SentencePiece tokenizer.model (a ModelProto protobuf) without the protobuf package, and builds what
Transformers 5 builds from it when a directory has no tokenizer.json (`SentencePieceExtractor` and
`SpmConverter.build_tokenizer_from_spm_proto`, or `LlamaTokenizer`'s own pipeline)."""
import struct

from .. import _core
from .._core import FormatError
from .files import metaspace, model_from_json, require, step

# field numbers of sentencepiece_model.proto
MODEL_PIECES, MODEL_TRAINER_SPEC, MODEL_NORMALIZER_SPEC = 1, 2, 3
PIECE_PIECE, PIECE_SCORE, PIECE_TYPE = 1, 2, 3
TRAINER_MODEL_TYPE, TRAINER_BYTE_FALLBACK = 3, 35
TRAINER_IDS = {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
TRAINER_PIECES = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
NORMALIZER_FIELDS = {1: "name", 2: "precompiled_charsmap", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces",
                     5: "escape_whitespaces"}
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPE_UNIGRAM, MODEL_TYPE_BPE = 1, 2


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise FormatError("tokenizer.model: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FormatError("tokenizer.model: varint longer than 10 bytes")


def _fields(data):
    """Yields (field number, wire type, value) of one message; value is an int, or bytes for wire type 2."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError("tokenizer.model: field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > len(data):
                raise FormatError("tokenizer.model: truncated fixed64")
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise FormatError(f"tokenizer.model: a field of {length} bytes runs past the end")
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            if pos + 4 > len(data):
                raise FormatError("tokenizer.model: truncated fixed32")
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise FormatError(f"tokenizer.model: unsupported wire type {wire}")
        yield number, wire, value


def _signed(value):
    """An int32 field: negative values are written as 10-byte varints."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value, what):
    if not isinstance(value, bytes):
        raise FormatError(f"tokenizer.model: {what} is not a length-delimited field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"tokenizer.model: {what} is not UTF-8") from None


def read_model_proto(path):
    """Returns (pieces [(piece, score, type)], trainer {name: value}, normalizer {name: value})."""
    with open(path, "rb") as f:
        data = f.read()
    pieces = []
    trainer = {"model_type": MODEL_TYPE_UNIGRAM, "byte_fallback": False, "unk_id": 0, "bos_id": 1, "eos_id": 2,
               "pad_id": -1, "unk_piece": "<unk>", "bos_piece": "<s>", "eos_piece": "</s>", "pad_piece": "<pad>"}
    normalizer = {"name": "", "precompiled_charsmap": b"", "add_dummy_prefix": True, "remove_extra_whitespaces": True,
                  "escape_whitespaces": True}
    for number, wire, value in _fields(data):
        if number == MODEL_PIECES:
            piece, score, kind = None, 0.0, TYPE_NORMAL
            for n, w, v in _fields(_bytes(value, "a piece")):
                if n == PIECE_PIECE:
                    piece = _text(v, "a piece")
                elif n == PIECE_SCORE:
                    if w != 5:
                        raise FormatError("tokenizer.model: a piece score is not a float")
                    score = struct.unpack("<f", v)[0]
                elif n == PIECE_TYPE:
                    kind = v
            if piece is None:
                raise FormatError(f"tokenizer.model: piece {len(pieces)} has no text")
            pieces.append((piece, score, kind))
        elif number == MODEL_TRAINER_SPEC:
            for n, w, v in _fields(_bytes(value, "trainer_spec")):
                if n == TRAINER_MODEL_TYPE:
                    trainer["model_type"] = v
                elif n == TRAINER_BYTE_FALLBACK:
                    trainer["byte_fallback"] = bool(v)
                elif n in TRAINER_IDS and w == 0:
                    trainer[TRAINER_IDS[n]] = _signed(v)
                elif n in TRAINER_PIECES:
                    trainer[TRAINER_PIECES[n]] = _text(v, TRAINER_PIECES[n])
        elif number == MODEL_NORMALIZER_SPEC:
            for n, w, v in _fields(_bytes(value, "normalizer_spec")):
                if n == 1:
                    normalizer["name"] = _text(v, "normalizer name")
                elif n == 2:
                    normalizer["precompiled_charsmap"] = _bytes(v, "precompiled_charsmap")
                elif n in NORMALIZER_FIELDS and w == 0:
                    normalizer[NORMALIZER_FIELDS[n]] = bool(v)
    if not pieces:
        raise FormatError(f"{path}: no pieces (not a SentencePiece model?)")
    return pieces, trainer, normalizer


def _bytes(value, what):
    if not isinstance(value, bytes):
        raise FormatError(f"tokenizer.model: {what} is not a length-delimited field")
    return value


def piece_lengths(pieces):
    """The distinct lengths of the pieces: ascending, and as a set."""
    lengths = {len(piece) for piece in pieces}
    return sorted(lengths), lengths


def splits(token, pieces, lengths):
    """Every (left, right) with left + right == token and both in pieces, by the length of left. Only the lengths
    pieces have are tried: one piece of a million characters would otherwise cost a million slices of it
    (quadratic, as in Transformers)."""
    n = len(token)
    ascending, present = lengths
    found = []
    for k in ascending:
        if k >= n:
            break
        if n - k in present:
            left, right = token[:k], token[k:]
            if left in pieces and right in pieces:
                found.append((left, right))
    return found


def _generate_merges(vocab):
    """Transformers' generate_merges(vocab): every split of a piece into two pieces, ranked by the piece's id."""
    merges = []
    lengths = piece_lengths(vocab)
    for piece, piece_id in vocab.items():
        local = [(left, right, piece_id) for left, right in splits(piece, vocab, lengths)]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in merges]


def _score_merges(pieces, vocab):
    """build_tokenizer_from_spm_proto's merges: splits of normal pieces into normal pieces, by score."""
    normal = {piece: (score, i) for i, (piece, score, kind) in enumerate(pieces) if kind == TYPE_NORMAL}
    ranked = []
    lengths = piece_lengths(normal)
    for token, (score, i) in normal.items():
        ranked.extend((-score, i, left, right) for left, right in splits(token, normal, lengths))
    ranked.sort()
    return [(left, right) for _, _, left, right in ranked]


def _added(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": special}


def model_from_sentencepiece(path, config, llama):
    """Returns (model, config) for nemotron_c.tokenizer.tokenization from tokenizer.model and what tokenizer_config.json said;
    llama: for LlamaTokenizer (else as TokenizersBackend converts it)."""
    pieces, trainer, normalizer = read_model_proto(path)
    if trainer["model_type"] != MODEL_TYPE_BPE:
        kind = {1: "Unigram", 2: "BPE", 3: "Word", 4: "Char"}.get(trainer["model_type"], trainer["model_type"])
        raise ValueError(f"unsupported SentencePiece model type {kind} (nemotron_c supports BPE)")
    vocab = {}
    for i, (piece, _, _) in enumerate(pieces):
        vocab.setdefault(piece, i)
    control = [(i, p) for i, (p, _, kind) in enumerate(pieces) if kind == TYPE_CONTROL]
    user_defined = [(i, p) for i, (p, _, kind) in enumerate(pieces) if kind == TYPE_USER_DEFINED]
    config = dict(config)
    # without a tokenizer.json there is no post-processor to keep: Transformers builds it from add_bos_token and
    # add_eos_token in tokenizer_config.json
    config["_bos_eos_from_config"] = True
    if llama:
        # LlamaTokenizer takes the vocabulary and id-ranked merges and builds its own pipeline around them; its
        # added tokens are the control and user-defined pieces, unless extra special tokens are named: then those
        named = "extra_special_tokens" in config or "additional_special_tokens" in config
        _default_extra_special_tokens(config, [p for _, p in control + user_defined])
        added = [] if named else [_added(i, p, True) for i, p in control] + [_added(i, p, False) for i, p in user_defined]
        tj = {"model": {"type": "BPE", "vocab": vocab, "merges": [list(m) for m in _generate_merges(vocab)]},
              "added_tokens": added}
        return model_from_json(tj, path), config

    if normalizer["precompiled_charsmap"]:
        raise ValueError(f"unsupported normalizer Precompiled: {path} carries a precompiled_charsmap "
                         f"(normalization rule {normalizer['name']!r}); nemotron_c supports 'identity' models")
    legacy = config.get("legacy", True)
    if normalizer["add_dummy_prefix"] and config.get("added_tokens_decoder"):
        # Transformers matches added_tokens_decoder's tokens in the raw text (normalized=False), so that each chunk
        # between them gets its own dummy prefix
        require(isinstance(config["added_tokens_decoder"], dict), "added_tokens_decoder must be an object")
        config["added_tokens_decoder"] = {key: {**value, "normalized": False} if isinstance(value, dict) else value
                                          for key, value in config["added_tokens_decoder"].items()}
    steps = []
    if normalizer["remove_extra_whitespaces"]:
        steps += [{"type": "Replace", "pattern": {"Regex": r"\A +| +\z"}, "content": ""},
                  {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]
    if normalizer["escape_whitespaces"]:
        steps.append({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})
    if normalizer["add_dummy_prefix"] and legacy:
        steps.append({"type": "Replace", "pattern": {"Regex": "\\A\u2581"}, "content": "\u2581\u2581"})
    pre = []
    if normalizer["add_dummy_prefix"]:
        pre.append({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always" if legacy else "first",
                    "split": False})
    if user_defined:
        literals = sorted((p for _, p in user_defined), key=len, reverse=True)
        pre.append({"type": "Split", "_literals": literals})
    decoders = [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}]
    if trainer["byte_fallback"]:
        decoders.append({"type": "ByteFallback"})
    if normalizer["add_dummy_prefix"]:
        decoders += [{"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]
    elif trainer["byte_fallback"]:
        decoders.append({"type": "Fuse"})
    tj = {
        "model": {"type": "BPE", "vocab": vocab, "merges": [list(m) for m in _score_merges(pieces, vocab)],
                  "unk_token": trainer["unk_piece"], "fuse_unk": True, "byte_fallback": trainer["byte_fallback"],
                  "ignore_merges": bool(user_defined)},
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": steps},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "post_processor": None,
    }
    model = model_from_json(tj, path)
    # the Split strings are literals already: no regex to write and parse back
    model.pre_tokenizer = [metaspace(p) if p["type"] == "Metaspace" else step(_core.STEP_SPLIT, strings=p["_literals"])
                           for p in pre]
    # special tokens as Transformers sets them from the trainer spec; control pieces become extra special tokens
    for name, id_key in (("bos_token", "bos_id"), ("eos_token", "eos_id"), ("unk_token", "unk_id")):
        if trainer[id_key] >= 0:
            config.setdefault(name, trainer[name.replace("_token", "_piece")])
    _default_extra_special_tokens(config, [p for _, p in control])
    return model, config


def _default_extra_special_tokens(config, pieces):
    """The control (and user-defined) pieces become the extra special tokens unless the config or the caller
    names them, under either of Transformers' names (additional_special_tokens too)."""
    if "extra_special_tokens" not in config and "additional_special_tokens" not in config:
        config["extra_special_tokens"] = pieces
