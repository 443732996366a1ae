"""Reading tokenizer.json into the tables of the C core: the BPE model, added tokens, normalizer, pre-tokenizer,
decoder and post-processor that SentencePiece conversions produce. A component nemotron_c does not implement is a
ValueError naming it; a malformed file is a FormatError."""
import functools
import itertools
import json
import operator

import numpy as np

from .. import _core

FormatError = _core.FormatError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
SPM_FILE = "tokenizer.model"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # <name>.jinja: the named templates besides the default
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

PREPEND_SCHEMES = {"always": _core.PREPEND_ALWAYS, "first": _core.PREPEND_FIRST, "never": _core.PREPEND_NEVER}


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} is not valid JSON: {e}") from None


def require(condition, message):
    if not condition:
        raise FormatError(message)


class SpecialTokenTypeError(FormatError, TypeError):
    """A special token that is neither a string nor an AddedToken: a format error of the file, and a TypeError as
    Transformers raises it ("Special token pad_token has to be either str or AddedToken")."""


def token_content(value):
    """A special token as tokenizer_config.json writes it: a string or a serialized AddedToken."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(getattr(value, "content", None), str):  # an AddedToken (tokenizers', Transformers', ours)
        return value.content
    raise SpecialTokenTypeError(f"a special token must be a string or an AddedToken dict, got {value!r}")


def step(kind, a=None, b=None, start=0, stop=0, prepend_scheme=_core.PREPEND_ALWAYS, split=False, strings=None):
    step = (kind, a, b, int(start), int(stop), prepend_scheme, int(bool(split)))
    return step if strings is None else step + (list(strings),)


# The regular expressions Transformers' SentencePiece conversion writes, as the core's fixed-string steps.
REGEX_NORMALIZERS = {
    (r"\A +| +\z", ""): lambda: step(_core.STEP_TRIM, " "),
    (" {2,}", " "): lambda: step(_core.STEP_COLLAPSE, " ", " "),
    ("\\A\u2581", "\u2581\u2581"): lambda: step(_core.STEP_REPLACE_PREFIX, "\u2581", "\u2581\u2581"),
}
REGEX_META = set("()[]{}*+?.^$|\\")


def regex_literals(pattern):
    """The strings of a regex that is an alternation of escaped literals (as re.escape writes them), or None."""
    literals, current, i = [], [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern) or pattern[i + 1].isalnum():
                return None  # a class such as \d or \A, not an escaped character
            current.append(pattern[i + 1])
            i += 2
            continue
        if c == "|":
            literals.append("".join(current))
            current = []
        elif c in REGEX_META:
            return None
        else:
            current.append(c)
        i += 1
    literals.append("".join(current))
    return literals if all(literals) else None


def reachable_alternatives(literals):
    """The strings of a regex alternation that can match. tokenizers' regex takes, where several begin, the first
    one listed ("a|ab" never matches "ab"), the core the longest: a string with a shorter one listed before it
    that begins it is dropped, and then the longest is the first listed."""
    kept = []
    for k, literal in enumerate(literals):
        if not any(len(earlier) < len(literal) and literal.startswith(earlier) for earlier in literals[:k]):
            kept.append(literal)
    return kept


def flatten(component, key):
    if component is None:
        return []
    require(isinstance(component, dict) and isinstance(component.get("type"), str),
             f"a {key} must be an object with a 'type', got {component!r}")
    if component["type"] == "Sequence":
        items = component.get(key + "s")
        require(isinstance(items, list), f"a Sequence {key} needs a '{key}s' list")
        return [step for item in items for step in flatten(item, key)]
    return [component]


def string_pattern(component, where):
    pattern = component.get("pattern")
    if isinstance(pattern, dict) and "String" in pattern:
        require(isinstance(pattern["String"], str), f"{where} Replace needs a string pattern, got {pattern!r}")
        return pattern["String"]
    if isinstance(pattern, dict) and "Regex" in pattern:
        raise ValueError(f"unsupported {where}: Replace with a Regex pattern")
    raise FormatError(f"{where} Replace has no pattern: {component!r}")


def replace_content(component, where):
    content = component.get("content")
    require(isinstance(content, str), f"{where} Replace needs a string 'content', got {content!r}")
    return content


# How much a chain of Replace steps may multiply a text's length: each step is linear, but a chain of k steps
# that each double it ("a" -> "aa") grows it 2**k times (tokenizers does; a 30-step file turns 1 KB into 1 TB).
MAX_REPLACE_GROWTH = 64


def check_growth(steps, where):
    growth = 1.0
    for kind, a, b, *_ in steps:
        if kind == _core.STEP_REPLACE and a:
            growth *= max(1.0, len(b.encode("utf-8")) / len(a.encode("utf-8")))
    if growth > MAX_REPLACE_GROWTH:
        raise FormatError(f"the {where}'s Replace steps can multiply a text's length by {growth:.3g}, more than the "
                          f"{MAX_REPLACE_GROWTH} nemotron_c allows")
    return steps


def metaspace(component):
    replacement = component.get("replacement", "\u2581")
    require(isinstance(replacement, str) and len(replacement) == 1, "Metaspace replacement must be one character")
    if "prepend_scheme" in component:
        scheme = component["prepend_scheme"]
    else:  # tokenizers before 0.14 wrote add_prefix_space
        scheme = "always" if component.get("add_prefix_space", True) else "never"
    require(scheme in PREPEND_SCHEMES, f"unknown Metaspace prepend_scheme {scheme!r}")
    return step(_core.STEP_METASPACE, replacement, None, prepend_scheme=PREPEND_SCHEMES[scheme],
                 split=component.get("split", True))


def component(name):
    """A reader of one tokenizer.json component: a field missing or of the wrong type there (a KeyError,
    TypeError or AttributeError deep inside) becomes a FormatError naming the component."""
    def wrap(read):
        @functools.wraps(read)
        def checked(value):
            try:
                return read(value)
            except (KeyError, TypeError, AttributeError, IndexError) as e:
                raise FormatError(f"malformed {name} in tokenizer.json ({type(e).__name__}: {e}): "
                                  f"{json.dumps(value, default=str)[:200]}") from None
        return checked
    return wrap


@component("normalizer")
def normalizer_steps(normalizer):
    steps = []
    for n in flatten(normalizer, "normalizer"):
        kind = n["type"]
        if kind == "Prepend":
            require(isinstance(n.get("prepend"), str), f"a Prepend normalizer needs a string 'prepend': {n!r}")
            steps.append(step(_core.STEP_PREPEND, n["prepend"]))
        elif kind == "Replace" and isinstance(n.get("pattern"), dict) and "Regex" in n["pattern"]:
            make = REGEX_NORMALIZERS.get((n["pattern"]["Regex"], n.get("content")))
            if make is None:
                raise ValueError(f"unsupported normalizer: Replace with the Regex pattern {n['pattern']['Regex']!r}")
            steps.append(make())
        elif kind == "Replace":
            steps.append(step(_core.STEP_REPLACE, string_pattern(n, "normalizer"), replace_content(n, "normalizer")))
        else:
            raise ValueError(f"unsupported normalizer type {kind!r} (nemotron_c supports Prepend, Replace, Sequence)")
    return check_growth(steps, "normalizer")


@component("pre_tokenizer")
def pre_tokenizer_steps(pre_tokenizer):
    steps = []
    for p in flatten(pre_tokenizer, "pretokenizer"):
        if p["type"] == "Metaspace" and not steps:
            steps.append(metaspace(p))
        elif p["type"] == "Split":
            pattern = p.get("pattern") or {}
            require(isinstance(pattern, dict), f"a Split pre_tokenizer's pattern must be an object: {pattern!r}")
            require("String" in pattern or isinstance(pattern.get("Regex", ""), str),
                    f"a Split pre_tokenizer's Regex must be a string: {pattern!r}")
            literals = [pattern["String"]] if "String" in pattern else regex_literals(pattern.get("Regex", ""))
            if literals is None or p.get("behavior") != "Isolated" or p.get("invert"):
                raise ValueError("unsupported pre_tokenizer: Split other than isolating fixed strings "
                                 f"({json.dumps(p)[:200]})")
            require(all(isinstance(literal, str) for literal in literals),
                    f"a Split pre_tokenizer needs a string pattern: {pattern!r}")
            steps.append(step(_core.STEP_SPLIT, strings=reachable_alternatives(literals)))
        else:
            raise ValueError(f"unsupported pre_tokenizer type {p['type']!r} (nemotron_c supports Metaspace, Split)")
    if len(steps) > 2 or (len(steps) == 2 and steps[1][0] != _core.STEP_SPLIT):
        raise ValueError("unsupported pre_tokenizer: a Sequence other than Metaspace then Split")
    return steps


@component("decoder")
def decoder_steps(decoder):
    steps = []
    for d in flatten(decoder, "decoder"):
        kind = d["type"]
        if kind == "Replace":
            steps.append(step(_core.STEP_REPLACE, string_pattern(d, "decoder"), replace_content(d, "decoder")))
        elif kind == "ByteFallback":
            steps.append(step(_core.STEP_BYTE_FALLBACK))
        elif kind == "Fuse":
            steps.append(step(_core.STEP_FUSE))
        elif kind == "Strip":
            # tokenizers reads the counts as usize; the core takes them as int64
            content, start, stop = d.get("content"), d.get("start", 0), d.get("stop", 0)
            require(isinstance(content, str) and all(type(n) is int and 0 <= n < 2**31 for n in (start, stop)),
                    f"a Strip decoder needs a string content and start and stop counts in [0, 2**31), got {d!r}")
            steps.append(step(_core.STEP_STRIP, content, None, start, stop))
        elif kind == "Metaspace":
            steps.append(metaspace(d))
        else:
            raise ValueError(f"unsupported decoder type {kind!r} "
                             "(nemotron_c supports Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)")
    if decoder is not None and not steps:
        # an empty Sequence leaves the tokens as they are, to be joined with nothing; without a decoder tokenizers
        # joins them with spaces
        steps.append(step(_core.STEP_FUSE))
    return check_growth(steps, "decoder")


@component("post_processor")
def post_processor_templates(post):
    """A TemplateProcessing's single and pair templates: lists of ("sequence", index, type_id) and
    ("special", ids, type_id). Without a post-processor, tokenizers puts the sequences side by side, typed 0 and 1."""
    if post is None:
        return [("sequence", 0, 0)], [("sequence", 0, 0), ("sequence", 1, 1)]
    if post.get("type") != "TemplateProcessing":
        raise ValueError(f"unsupported post_processor type {post.get('type')!r} (nemotron_c supports TemplateProcessing)")
    specials = post.get("special_tokens", {})

    def type_id(entry):
        value = entry.get("type_id", 0)
        require(type(value) is int and 0 <= value < 2**31, f"post_processor type_id {value!r} is not a small integer")
        return value

    def template(items):
        pieces = []
        for item in items:
            if "Sequence" in item:
                name = item["Sequence"]["id"]
                require(name in ("A", "B"), f"post_processor sequence {name!r} is neither A nor B")
                pieces.append(("sequence", int(name == "B"), type_id(item["Sequence"])))
                continue
            name = item["SpecialToken"]["id"]
            ids = specials.get(name, {}).get("ids")
            require(isinstance(ids, list) and all(type(i) is int and 0 <= i < 2**31 for i in ids),
                    f"post_processor special token {name!r} needs a list of ids, got {ids!r}")
            pieces.append(("special", list(ids), type_id(item["SpecialToken"])))
        return pieces

    return template(post.get("single", [])), template(post.get("pair", []))


def template_affixes(template):
    """The special token ids a single-sequence template puts before and after the sequence."""
    prefix, suffix, seen = [], [], False
    for kind, value, _ in template:
        if kind == "sequence":
            seen = True
        else:
            (suffix if seen else prefix).extend(value)
    return prefix, suffix


class TokenizerModel:
    """What the core needs, from tokenizer.json or tokenizer.model."""

    def __init__(self, vocab, merges, unk_token, byte_fallback, fuse_unk, added, normalizer, pre_tokenizer, decoder,
                 post_processor, ignore_merges=False):
        self.vocab = vocab                    # piece -> id (the BPE model's)
        self.merges = merges                  # [[left, right]] in rank order
        self.unk_token = unk_token
        self.byte_fallback = byte_fallback
        self.fuse_unk = fuse_unk
        self.added = added                    # [dict(id, content, special, lstrip, rstrip, single_word, normalized)]
        self.normalizer = normalizer          # step tuples
        self.pre_tokenizer = pre_tokenizer
        self.decoder = decoder
        self.post_processor = post_processor  # the JSON object, or None
        self.ignore_merges = ignore_merges
        self.from_tokenizer_json = False      # read from tokenizer.json (not converted from tokenizer.model)
        self.tables = None                    # the core's vocabulary and merge tables, once build_core made them


def model_from_json(tj, path):
    require(isinstance(tj, dict), f"{path}: the top level is not an object")
    model = tj.get("model")
    require(isinstance(model, dict), f"{path}: no 'model' object")
    if model.get("type", "BPE") != "BPE":
        raise ValueError(f"unsupported model type {model.get('type')!r} (nemotron_c supports BPE)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"unsupported BPE option {key}={model[key]!r}")
    if model.get("dropout") not in (None, 0, 0.0):
        raise ValueError("unsupported BPE option dropout (nemotron_c encodes deterministically)")
    vocab = model.get("vocab")
    require(isinstance(vocab, dict), f"{path}: model.vocab is not an object")
    # whole-table checks (a comprehension, map and set), not a call per entry: Nemotron's 256,000 pieces and
    # their merges load in well under a second
    bad = next((piece for piece, i in vocab.items() if type(i) is not int or not 0 <= i < 2**31), None)
    require(bad is None, f"{path}: bad id {vocab.get(bad)!r} for piece {bad!r}")
    raw = model.get("merges", [])
    require(isinstance(raw, list), f"{path}: model.merges is not a list")
    merges = [m.split(" ") if type(m) is str else m for m in raw]
    if not (set(map(type, merges)) <= {list} and set(map(len, merges)) <= {2}
            and set(map(type, itertools.chain.from_iterable(merges))) <= {str}):
        bad = next(k for k, m in enumerate(merges)
                   if type(m) is not list or len(m) != 2 or type(m[0]) is not str or type(m[1]) is not str)
        raise FormatError(f"{path}: merge {bad} ({raw[bad]!r}) is not a pair of strings nor two pieces separated by "
                          "a space")
    added = []
    require(isinstance(tj.get("added_tokens") or [], list), f"{path}: added_tokens is not a list")
    for a in tj.get("added_tokens") or []:
        require(isinstance(a, dict) and isinstance(a.get("content"), str) and type(a.get("id")) is int,
                 f"{path}: bad added token {a!r}")
        # ids are int32 in the core, as in the vocabulary (tokenizers reads them as u32)
        require(0 <= a["id"] < 2**31, f"{path}: bad id {a['id']!r} for added token {a['content']!r}")
        added.append({"id": a["id"], "content": a["content"], "special": bool(a.get("special", False)),
                      "lstrip": bool(a.get("lstrip", False)), "rstrip": bool(a.get("rstrip", False)),
                      "single_word": bool(a.get("single_word", False)),
                      "normalized": bool(a.get("normalized", not a.get("special", False)))})
    return TokenizerModel(vocab, merges, model.get("unk_token"), bool(model.get("byte_fallback", False)),
                  bool(model.get("fuse_unk", False)), added, normalizer_steps(tj.get("normalizer")),
                  pre_tokenizer_steps(tj.get("pre_tokenizer")), decoder_steps(tj.get("decoder")),
                  tj.get("post_processor"), bool(model.get("ignore_merges", False)))


def llama_pipeline(model, config):
    """Transformers' LlamaTokenizer keeps the file's vocabulary and merges but builds its own pipeline."""
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else add_prefix_space
    legacy = config.get("legacy", False)
    scheme = ("first" if not legacy else "always") if add_prefix_space else "never"
    model.unk_token = None
    model.byte_fallback = True
    model.fuse_unk = True
    model.ignore_merges = False
    model.normalizer = []
    model.pre_tokenizer = [step(_core.STEP_METASPACE, "\u2581", prepend_scheme=PREPEND_SCHEMES[scheme], split=False)]
    model.decoder = [step(_core.STEP_REPLACE, "\u2581", " "), step(_core.STEP_BYTE_FALLBACK), step(_core.STEP_FUSE)]
    if add_prefix_space:
        model.decoder.append(step(_core.STEP_STRIP, " ", None, 1, 0))


def normalize_content(content, steps):
    """An added token marked `normalized` is matched (and named) in its normalized form, as tokenizers does."""
    for kind, a, b, *_ in steps:
        if kind == _core.STEP_PREPEND:
            content = a + content if content else content
        elif kind == _core.STEP_REPLACE:
            content = content.replace(a, b)
    return content


def added_tokens_decoder_tokens(decoder):
    """tokenizer_config.json's added_tokens_decoder ({id: AddedToken dict}) as AddedToken dicts in the order of
    their ids, as Transformers adds them (the ids themselves are not kept: tokenizers gives each its own)."""
    if not decoder:
        return []
    require(isinstance(decoder, dict), "added_tokens_decoder must be an object")
    tokens = []
    for key, value in decoder.items():
        try:
            token_id = int(key)
        except ValueError:
            raise FormatError(f"added_tokens_decoder has a non-integer id {key!r}") from None
        content = token_content(value)
        require(isinstance(content, str) and content and 0 <= token_id < 2**31,
                f"added_tokens_decoder[{key!r}] is not a token")
        flags = value if isinstance(value, dict) else {}
        special = bool(flags.get("special", False))
        tokens.append((token_id, added_token(content, special, **{f: flags[f] for f in ADDED_FLAGS if f in flags})))
    return [token for _, token in sorted(tokens, key=lambda t: t[0])]


ADDED_FLAGS = ("lstrip", "rstrip", "single_word", "normalized")


def added_token(content, special, lstrip=False, rstrip=False, single_word=False, normalized=None):
    """An AddedToken as a dict, with tokenizers' defaults (normalized unless special)."""
    return {"content": content, "special": bool(special), "lstrip": bool(lstrip), "rstrip": bool(rstrip),
            "single_word": bool(single_word), "normalized": bool(not special if normalized is None else normalized)}


class AddedToken:
    """An added token as Transformers' added_tokens_decoder shows it (tokenizers.AddedToken's fields)."""

    __slots__ = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")

    def __init__(self, content, single_word=False, lstrip=False, rstrip=False, normalized=None, special=False):
        self.content, self.single_word, self.lstrip, self.rstrip = content, single_word, lstrip, rstrip
        self.normalized = not special if normalized is None else normalized
        self.special = special

    def __str__(self):
        return self.content

    def __repr__(self):
        return (f'AddedToken("{self.content}", rstrip={self.rstrip}, lstrip={self.lstrip}, '
                f"single_word={self.single_word}, normalized={self.normalized}, special={self.special})")

    def __eq__(self, other):
        return all(getattr(self, f) == getattr(other, f, None) for f in self.__slots__)

    def __hash__(self):
        return hash(self.content)


def as_added_token(token, special):
    """A str (special as given: tokenizers' add_special_tokens or add_tokens), or an AddedToken (ours or
    tokenizers'; add_special_tokens makes it special), as an AddedToken dict."""
    content = token if isinstance(token, str) else getattr(token, "content", None)
    if not isinstance(content, str):
        raise TypeError(f"a token to add must be a str or an AddedToken, not {type(token).__name__}")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:  # refused before the vocabulary takes it in (tokenizers' TypeError)
        raise TypeError(f"the token to add {content!r} holds a lone surrogate, which is not valid UTF-8") from None
    if isinstance(token, str):
        return added_token(token, special)
    return added_token(content, special or bool(token.special),
                       **{f: bool(getattr(token, f)) for f in ADDED_FLAGS if hasattr(token, f)})


class AddedVocabulary:
    """tokenizers' AddedVocabulary, for the ids and flags added tokens end up with: add() is its add_tokens.

    The ids written in tokenizer.json or added_tokens_decoder are not kept: each token gets the id its content
    already has (an added token's, else the vocabulary's), else the next free one (the vocabulary's size, or one
    past the largest added id). The first AddedToken that makes a content special keeps it special ('special':
    false later does not undo it); the flags matching uses are those of the last AddedToken given for it."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.ids = {}             # content -> id
        self.by_id = {}           # id -> the AddedToken dict last given that id
        self.given = set()        # those AddedTokens (their items), to skip one given again
        self.special = set()      # contents that are special
        self._pieces = None       # id -> piece of the vocabulary, made when a new id is checked

    def _next_id(self):
        size = len(self.vocab)
        largest = max(self.ids.values(), default=None)
        return size if largest is None or (largest < size and size > 0) else largest + 1

    def add(self, tokens):
        """Adds AddedToken dicts; returns how many were not skipped (empty, or given before as they are)."""
        count = 0
        for token in tokens:
            if token["special"] and token["content"]:
                self.special.add(token["content"])
        for token in tokens:
            content, key = token["content"], tuple(sorted(token.items()))
            if not content or key in self.given:
                continue
            token_id = self.ids.get(content, self.vocab.get(content))
            if token_id is None:
                token_id = self._next_id()
                owner = self._vocab_piece(token_id)
                require(owner is None, f"the added token {content!r} would get id {token_id}, which the vocabulary "
                        f"gives to {owner!r} (tokenizers then has two tokens for one id: ids are sparse)")
            self.ids[content] = token_id
            if token_id in self.by_id:
                self.given.discard(tuple(sorted(self.by_id[token_id].items())))
            self.by_id[token_id] = token
            self.given.add(key)
            count += 1
        return count

    def _vocab_piece(self, token_id):
        if self._pieces is None:
            self._pieces = {i: piece for piece, i in self.vocab.items()}
        return self._pieces.get(token_id)

    def decoder(self):
        """{id: AddedToken} in the order of the ids (Transformers' added_tokens_decoder)."""
        return {i: AddedToken(**self.by_id[i]) for i in sorted(self.by_id)}

    def tokens(self):
        """model.added: one dict per content (id, content, special, and the flags matching uses)."""
        return [{**{f: self.by_id[token_id][f] for f in ADDED_FLAGS}, "id": token_id, "content": content,
                 "special": content in self.special} for content, token_id in self.ids.items()]


def build_core(model):
    """The C core of model. The vocabulary's and merges' tables are made once and kept on the model (model.tables),
    so that adding tokens later rebuilds the core without the merges' Python lists."""
    if model.tables is None:
        model.tables = _core_tables(model)
        model.merges = None  # in the tables now; the lists of a 256,000-piece vocabulary are tens of MB
    added = [(a["matched"], a["id"], a["special"], a["lstrip"], a["rstrip"], a["single_word"], a["normalized"])
             for a in model.added]
    pieces, offsets, ids, merges, unk_id = model.tables
    return _core.Tokenizer(pieces, offsets, ids, merges, unk_id, model.byte_fallback, model.fuse_unk, added,
                           model.normalizer, model.pre_tokenizer, model.decoder, model.ignore_merges)


def _core_tables(model):
    """(pieces' bytes back to back, their offsets, their ids, merges as id pairs, unk id) for the core."""
    vocab = model.vocab
    pieces = sorted(vocab, key=vocab.__getitem__)
    encoded = list(map(str.encode, pieces))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    ids = np.fromiter(map(vocab.__getitem__, pieces), dtype=np.int32, count=len(pieces))
    try:
        # the lookups in one C call (itemgetter): a 256,000-piece vocabulary has hundreds of thousands of merges
        halves = list(itertools.chain.from_iterable(model.merges))
        merges = np.array(operator.itemgetter(*halves)(vocab) if halves else [], dtype=np.int32).reshape(-1, 2)
    except KeyError as e:
        raise FormatError(f"a merge names {e.args[0]!r}, which is not in the vocabulary") from None
    unk_id = -1
    if model.unk_token is not None:
        require(isinstance(model.unk_token, str) and model.unk_token in vocab,
                f"unk_token {model.unk_token!r} is not in the vocabulary")
        unk_id = vocab[model.unk_token]
    return b"".join(encoded), offsets, ids, merges, unk_id
