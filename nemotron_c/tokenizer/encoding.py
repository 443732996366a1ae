"""tokenizers' Encoding in Python: character offsets, words, sequence pairs and overflowing windows.

The C core gives a text's token ids; this module places each token in the text (`align`), puts sequences and
the post-processor's special tokens together (`apply_template`), cuts windows with a stride (`Encoding.truncate`)
and pads, as the tokenizers library does behind Transformers' `return_offsets_mapping`, `text_pair`,
`return_overflowing_tokens`, `stride` and `BatchEncoding.sequence_ids()` / `word_ids()` / `word_to_chars()`.
"""
import copy
import unicodedata

from .. import _core

PAD_TYPE_ID = 0  # tokenizers' pad_type_id, which Transformers leaves at 0
# an Encoding's per-token lists
COLUMNS = ("ids", "tokens", "type_ids", "_offsets", "words", "sequences", "special_tokens_mask", "attention_mask")
# tokenizers' TruncationError, raised when truncation="only_second" has to cut a text that has no pair
SECOND_SEQUENCE_MISSING = "Truncation error: Second sequence not provided (truncation='only_second' needs a text_pair)"
# Unicode's White_Space characters, which an added token's lstrip and rstrip take in (Rust's char::is_whitespace)
WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                       "\u2028\u2029\u202f\u205f\u3000")
# the symbols Unicode gives Other_Alphabetic (circled and squared Latin letters): regex \w takes them in, as the core's
# table does (tools/gen_unicode_tables.py)
OTHER_ALPHABETIC_SYMBOLS = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189))


class Encoding:
    """One encoded sequence (or pair) as tokenizers' Encoding: per token its id, type id, (start, end) in its text,
    word, sequence (0, 1, or None for a special token), special-token and attention flags; `overflowing` holds the
    further windows a truncation with return_overflowing_tokens cut."""

    offsets_error = None  # why the offsets could not be placed: reading them raises NotImplementedError

    def __init__(self, ids, offsets=None, words=None, sequence=None, type_id=0, special=False, tokens=None):
        n = len(ids)
        self.ids = list(ids)
        self.tokens = list(tokens) if tokens is not None else [None] * n  # None: named by its id, later
        self.type_ids = [type_id] * n
        self._offsets = list(offsets) if offsets is not None else [(0, 0)] * n
        self.words = list(words) if words is not None else [None] * n
        self.sequences = [sequence] * n
        self.special_tokens_mask = [int(special)] * n
        self.attention_mask = [1] * n
        self.overflowing = []
        # the sequences it was made of, an emptied one too (tokenizers keeps an empty range for it)
        self.made_of = set() if sequence is None else {sequence}

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"Encoding(num_tokens={len(self)}, overflowing={len(self.overflowing)})"

    def _slice(self, start, stop):
        part = copy.copy(self)
        for name in COLUMNS:
            setattr(part, name, getattr(self, name)[start:stop])
        part.overflowing = []
        return part

    # ---- what Transformers' BatchEncoding reads

    @property
    def offsets(self):
        if self.offsets_error is not None:
            raise NotImplementedError(self.offsets_error)
        return self._offsets

    @property
    def n_sequences(self):
        # an emptied sequence counts: tokenizers keeps its (empty) range
        return len(self.made_of) or 1

    @property
    def sequence_ids(self):
        return list(self.sequences)

    @property
    def word_ids(self):
        if self.offsets_error is not None:
            raise NotImplementedError(self.offsets_error)
        return list(self.words)

    def _sequence_of(self, token_index):
        if token_index < 0:  # tokenizers takes an unsigned index
            raise OverflowError(f"token index {token_index} is negative")
        return self.sequences[token_index] if token_index < len(self) else None

    def token_to_sequence(self, token_index):
        return self._sequence_of(token_index)

    def token_to_word(self, token_index):
        """The token's word (None for a special token or an index past the end)."""
        self._sequence_of(token_index)
        return self.word_ids[token_index] if token_index < len(self) else None

    def _sequence_range(self, sequence_index):
        positions = [i for i, s in enumerate(self.sequences) if s == sequence_index]
        if positions:
            return range(positions[0], positions[-1] + 1)
        return range(0) if sequence_index in self.made_of else range(len(self))

    def word_to_tokens(self, word_index, sequence_index=0):
        """(first, last + 1) of the tokens of a word in one sequence (the whole encoding when it was not made with
        such a sequence), or None; as tokenizers, the search stops at the first later word."""
        if not isinstance(word_index, int):
            raise TypeError(f"word index must be an int, not {type(word_index).__name__}")
        words, found = self.word_ids, []
        for i in self._sequence_range(sequence_index):
            if words[i] is not None and words[i] > word_index:
                break
            if words[i] == word_index:
                found.append(i)
        return (found[0], found[-1] + 1) if found else None

    def char_to_token(self, char_index, sequence_index=0):
        """The first token of a sequence whose span holds the character, or None (tokenizers' char_to_token)."""
        if char_index < 0:  # tokenizers takes an unsigned index
            raise OverflowError(f"character index {char_index} is negative")
        for i in self._sequence_range(sequence_index):
            start, end = self.offsets[i]
            if start <= char_index < end:
                return i
        return None

    def token_to_chars(self, token_index):
        """(start, end) of the token in its text, or None for a special token, padding or an index past the end."""
        if self._sequence_of(token_index) is None:
            return None
        return self.offsets[token_index]

    def char_to_word(self, char_index, sequence_index=0):
        """The word of the first token of a sequence whose span holds the character, or None."""
        token = self.char_to_token(char_index, sequence_index)
        return None if token is None else self.word_ids[token]

    def word_to_chars(self, word_index, sequence_index=0):
        """(start, end) in its text of a word of one sequence, or None."""
        tokens = self.word_to_tokens(word_index, sequence_index)
        if tokens is None:
            return None
        return self.offsets[tokens[0]][0], self.offsets[tokens[1] - 1][1]

    # ---- building

    def truncate(self, max_length, stride, left):
        """Keeps the first window of max_length tokens (the last ones when `left`) and puts the rest in
        `overflowing`: windows that each repeat the `stride` tokens before them, as tokenizers cuts them."""
        n = len(self)
        if max_length >= n:
            return
        if max_length == 0:
            whole = self._slice(0, n)
            self.__dict__.update(self._slice(0, 0).__dict__)
            self.overflowing = [whole]
            return
        if stride >= max_length:
            raise ValueError(f"stride ({stride}) must be strictly less than the length of the truncated sequence "
                             f"({max_length}, max_length less the special tokens and the other sequence)")
        step, ranges = max_length - stride, []
        if left:
            for stop in range(n, 0, -step):
                ranges.append((max(stop - max_length, 0), stop))
                if ranges[-1][0] == 0:
                    break
        else:
            for start in range(0, n, step):
                ranges.append((start, min(start + max_length, n)))
                if ranges[-1][1] == n:
                    break
        windows = [self._slice(a, b) for a, b in ranges]
        self.__dict__.update(windows[0].__dict__)
        self.overflowing = windows[1:]

    def merge_with(self, other):
        """Appends other; the overflowing windows of both combine as tokenizers combines them."""
        combined = []
        for mine in self.overflowing:
            combined.append(_concatenated(mine, other))
            combined += [_concatenated(mine, theirs) for theirs in other.overflowing]
        combined += [_concatenated(self, theirs) for theirs in other.overflowing]
        overflowing = combined
        merged = _concatenated(self, other)
        self.__dict__.update(merged.__dict__)
        self.overflowing = overflowing

    def pad(self, length, pad_id, left):
        """Pads this window and its overflowing ones to length tokens."""
        for window in [self, *self.overflowing]:
            fill = length - len(window)
            if fill <= 0:
                continue
            for name, value in (("ids", pad_id), ("tokens", None), ("type_ids", PAD_TYPE_ID), ("_offsets", (0, 0)),
                                ("words", None),
                                ("sequences", None), ("special_tokens_mask", 1), ("attention_mask", 0)):
                column = getattr(window, name)
                setattr(window, name, [value] * fill + column if left else column + [value] * fill)


def _concatenated(a, b):
    out = a._slice(0, len(a))
    for name in COLUMNS:
        setattr(out, name, getattr(a, name) + getattr(b, name))
    out.made_of = a.made_of | b.made_of
    out.offsets_error = a.offsets_error or b.offsets_error
    return out


def apply_template(template, sequences, add_special_tokens):
    """The post-processor's template (a list of ("sequence", index, type_id) and ("special", ids, type_id)) around
    the sequences' Encodings, as tokenizers' TemplateProcessing merges them."""
    merged = Encoding([])
    for kind, value, type_id in template:
        if kind == "sequence":
            part = sequences[value]
            for window in [part, *part.overflowing]:
                window.type_ids = [type_id] * len(window)
                window.sequences = [value] * len(window)
                window.made_of = {value}
        elif add_special_tokens:
            part = Encoding(value, type_id=type_id, special=True)
        else:
            continue
        merged.merge_with(part)
    return merged


def truncate_sequences(encodings, max_length, strategy, stride, left):
    """tokenizers' truncate_encodings: max_length counts the sequences' tokens only (the special tokens already
    taken off). encodings is [first] or [first, second]."""
    total = sum(len(e) for e in encodings)
    if max_length == 0:
        for e in encodings:
            e.truncate(0, stride, left)
        return
    if total <= max_length:
        return
    to_remove = total - max_length
    if strategy in ("only_first", "only_second"):
        index = 0 if strategy == "only_first" else 1
        if index >= len(encodings):
            raise ValueError(SECOND_SEQUENCE_MISSING)
        target = encodings[index]
        if len(target) <= to_remove:
            raise ValueError("Truncation error: Sequence to truncate too short to respect the provided max_length")
        target.truncate(len(target) - to_remove, stride, left)
    elif len(encodings) == 1:
        encodings[0].truncate(max_length, stride, left)
    else:
        # longest first: the shorter sequence keeps what it can, the longer one takes the rest
        n1, n2 = len(encodings[0]), len(encodings[1])
        swap = n1 > n2
        if swap:
            n1, n2 = n2, n1
        n2 = n1 if n1 > max_length else max(n1, max_length - n1)
        if n1 + n2 > max_length:
            n1 = max_length // 2
            n2 = n1 + max_length % 2
        if swap:
            n1, n2 = n2, n1
        encodings[0].truncate(n1, stride, left)
        encodings[1].truncate(n2, stride, left)


class Pipeline:
    """What align() needs to know of a tokenizer: its tokens, its added tokens, and the steps that change the text
    before BPE (the normalizer's, and a Metaspace pre-tokenizer's), so that each token can be placed in the text.

    tokens: id -> the BPE model's token; raw: id -> content of the added tokens matched in the raw text;
    normalized: id -> normalized content of those matched in the normalized text; normalizer: the core's step
    tuples; metaspace: (replacement, prepend scheme name, split) or None; split_strings: the strings a Split
    pre-tokenizer isolates (after Metaspace), or None; stripping: id -> (lstrip, rstrip) of the added tokens that
    have either; vocab, unk_id, fuse_unk, byte_fallback: the BPE model's, to place unknown characters;
    single_word: the ids of the added tokens that match only standing alone."""

    def __init__(self, tokens, raw, normalized, normalizer, metaspace, split_strings=None, stripping=None,
                 vocab=None, unk_id=None, fuse_unk=False, byte_fallback=False, single_word=()):
        self.tokens, self.raw, self.normalized = tokens, raw, normalized
        self.stripping = stripping or {}
        self.single_word = set(single_word)
        self.vocab, self.unk_id, self.fuse_unk, self.byte_fallback = vocab or {}, unk_id, fuse_unk, byte_fallback
        self.normalizer, self.metaspace = normalizer, metaspace
        # the core isolates, at each place, the longest of the strings that stands there; looked up by their
        # lengths for each first character (a tokenizer.model may have thousands of user-defined pieces)
        self.split_strings = set(split_strings or ())
        self.split_lengths = {}
        for string in self.split_strings:
            self.split_lengths.setdefault(string[0], set()).add(len(string))
        self.split_lengths = {c: sorted(lengths, reverse=True) for c, lengths in self.split_lengths.items()}


def _replaced(chars, start, stop, content):
    """chars[start:stop] replaced by content, as tokenizers' NormalizedString.replace aligns it: every character
    of content takes the span of the last character it replaces."""
    span = chars[stop - 1][1:]
    chars[start:stop] = [(c, *span) for c in content]


def normalize_aligned(chars, steps):
    """Runs the normalizer on chars, a list of (character, start, end in the original text). Returns whether a
    Trim removed the start (Metaspace's prepend_scheme "first" then does not prepend, as in the core)."""
    trimmed_start = False
    for kind, a, b, *_ in steps:
        if not chars:
            break
        if kind == _core.STEP_PREPEND:
            # tokenizers' prepend: the new characters take the span of the first one
            chars[0:0] = [(c, *chars[0][1:]) for c in a]
        elif kind == _core.STEP_TRIM:
            lo, hi = 0, len(chars)
            while lo < hi and chars[lo][0] == a:
                lo += 1
            while hi > lo and chars[hi - 1][0] == a:
                hi -= 1
            trimmed_start = trimmed_start or lo > 0
            chars[:] = chars[lo:hi]
        elif kind == _core.STEP_COLLAPSE:  # runs of two or more `a` become `b`
            i = 0
            while i < len(chars):
                run = 0
                while i + run < len(chars) and chars[i + run][0] == a:
                    run += 1
                if run >= 2:
                    _replaced(chars, i, i + run, b)
                    i += len(b)
                else:
                    i += max(run, 1)
        elif kind == _core.STEP_REPLACE_PREFIX:
            if "".join(c for c, _, _ in chars[:len(a)]) == a:
                _replaced(chars, 0, len(a), b)
        elif kind == _core.STEP_REPLACE:
            text, out, last = "".join(c for c, _, _ in chars), [], 0
            at = text.find(a) if a else -1
            while at >= 0:
                out += chars[last:at]
                piece = chars[at:at + len(a)]
                _replaced(piece, 0, len(a), b)
                out += piece
                last = at + len(a)
                at = text.find(a, last)
            chars[:] = out + chars[last:]
        else:
            raise NotImplementedError(f"offsets through normalizer step {kind} are not supported")
    return trimmed_start


class _Placed:
    """What align() has placed so far: each token's (start, end) and word, the name of each added token the
    matcher gave (the text it took, None for the model's tokens), and the last word."""

    def __init__(self, word=-1):
        self.offsets, self.words, self.names, self.word = [], [], [], word

    def fork(self):
        return _Placed(self.word)

    def take(self, other):
        self.offsets += other.offsets
        self.words += other.words
        self.names += other.names
        self.word = other.word

    def add(self, span, new_word, name=None):
        self.word += new_word
        self.offsets.append(span)
        self.words.append(self.word)
        self.names.append(name)


def align(text, ids, pipeline, matches=None):
    """(offsets, words, names) of the token ids the core gave for `text` (no special tokens around them): each
    token's (start, end) in text as tokenizers gives it, its word (a new one at each added token and after it, and
    at each word the pre-tokenizer cuts: Metaspace's when it splits, Split's isolated strings), and for the added
    tokens the matcher gave, the text they took (tokenizers' name for them), None for the others.

    As tokenizers does, the text is cut at the added tokens matched in it; each piece between them is normalized
    keeping, for each character, the span of the original it comes from (replaced, trimmed and collapsed characters,
    and a prepended "▁" that takes the span of the character after it); Metaspace replaces spaces and prepends; the
    tokens then spell the pieces, a token's span running from its first character's start to its last's end (the
    bytes of a byte-fallback character all get its span, <unk> its unknown characters'). An added token with lstrip
    or rstrip spans the whitespace it took in. A token that does not spell its piece raises NotImplementedError.
    matches: for each token, whether the matcher gave it, or None to take every id of an added token for a
    match."""
    placed = _Placed()
    chars = [(c, k, k + 1) for k, c in enumerate(text)]
    matched = [True] * len(ids) if matches is None else matches
    i, position, resume = 0, 0, 0
    while True:
        j = next((k for k in range(i, len(ids)) if matched[k] and ids[k] in pipeline.raw), len(ids))
        if j == len(ids):
            _align_segment(text, position, len(text), ids[i:], matched[i:], pipeline, placed)
            return placed.offsets, placed.words, placed.names
        content = pipeline.raw[ids[j]]

        def place(at):
            start, end = _stripped_span(chars, at, at + len(content), position, pipeline.stripping.get(ids[j]))
            if start >= end:  # an lstrip token with nothing of it past the previous match's whitespace: no match
                raise NotImplementedError(f"no match of {content!r} at {at}")
            # the text before the added token (it may normalize to nothing: spaces a Trim takes off)
            found = placed.fork()
            _align_segment(text, position, max(start, position), ids[i:j], matched[i:j], pipeline, found)
            return start, end, found

        at, (start, end, found) = _first_fit(text, content, resume, place, ids[j] in pipeline.single_word)
        placed.take(found)
        placed.add((start, end), 1, text[start:end])
        # as the core: after a token inside the previous match's whitespace, the rest of that is text again
        i, position, resume = j + 1, end, at + len(content)


def _first_fit(text, content, resume, place, single_word):
    """(at, place(at)) for the first place `at` of content in text from resume that the matcher took: not one a
    single_word token has a word character beside (the matcher goes on after it), and one where the tokens before
    it spell the text before it (place raises NotImplementedError where they do not: another added token's match
    may have covered an earlier one)."""
    at, error = resume, None
    while True:
        at = text.find(content, at)
        if at < 0:
            raise error or NotImplementedError(f"cannot place the added token {content!r} in {text!r}")
        end = at + len(content)
        if single_word and ((at > 0 and _is_word(text[at - 1])) or (end < len(text) and _is_word(text[end]))):
            at = end
            continue
        try:
            return at, place(at)
        except NotImplementedError as e:
            error = error or e
            at += 1


def _is_word(character):
    """Whether regex \\w takes the character in (Alphabetic, Mark, Decimal_Number, Connector_Punctuation,
    Join_Control), as tokenizers' single_word check and the core's table do."""
    category = unicodedata.category(character)
    if category[0] in "LM" or category in ("Nd", "Nl", "Pc") or character in "\u200c\u200d":
        return True
    return any(lo <= ord(character) <= hi for lo, hi in OTHER_ALPHABETIC_SYMBOLS)


def _stripped_span(chars, start, end, floor, stripping):
    """(start, end) of an added token matched at chars[start:end] with the whitespace its lstrip takes in on its
    left (back to floor, the end of the previous match) and its rstrip on its right, as tokenizers' matcher.
    Whitespace is Unicode's White_Space (Rust's char::is_whitespace): U+00A0 and U+3000 are, U+200B and U+001C
    are not."""
    lstrip, rstrip = stripping or (False, False)
    if lstrip:
        while start > floor and chars[start - 1][0] in WHITESPACE:
            start -= 1
        # a token that begins inside the whitespace the previous match's rstrip took starts where that ends
        start = max(start, floor)
    if rstrip:
        while end < len(chars) and chars[end][0] in WHITESPACE:
            end += 1
    return start, end


def _align_segment(text, start, end, ids, matched, pipeline, placed):
    """Places the tokens of text[start:end], a piece between added tokens matched in the raw text (matched: for
    each token, whether the matcher gave it)."""
    chars = [(c, start + k, start + k + 1) for k, c in enumerate(text[start:end])]
    trimmed_start = normalize_aligned(chars, pipeline.normalizer)
    normalized = "".join(c for c, _, _ in chars)
    p, i, resume = 0, 0, 0
    while True:
        first = start == 0 and p == 0 and not trimmed_start
        j = next((k for k in range(i, len(ids)) if matched[k] and ids[k] in pipeline.normalized), len(ids))
        if j == len(ids):
            _align_piece(chars[p:], first, ids[i:], pipeline, placed)
            return
        content = pipeline.normalized[ids[j]]

        def place(at):
            span = _stripped_span(chars, at, at + len(content), p, pipeline.stripping.get(ids[j]))
            if span[0] >= span[1]:
                raise NotImplementedError(f"no match of {content!r} at {at}")
            found = placed.fork()
            _align_piece(chars[p:max(span[0], p)], first, ids[i:j], pipeline, found)
            return span, found

        at, (span, found) = _first_fit(normalized, content, resume, place, ids[j] in pipeline.single_word)
        placed.take(found)
        placed.add((chars[span[0]][1], chars[span[1] - 1][2]), 1, normalized[span[0]:span[1]])
        p, i, resume = span[1], j + 1, at + len(content)


def _word_starts(chars, pipeline):
    """Where in chars (a piece after Metaspace) the pre-tokenizer begins a new word, as tokenizers' pre-tokenized
    splits: before each replacement character when Metaspace splits, and around each string a Split isolates
    (searched within each of Metaspace's words, as tokenizers' Sequence runs Split on them)."""
    starts = {0}
    if pipeline.metaspace is not None and pipeline.metaspace[2]:
        starts.update(k for k in range(1, len(chars)) if chars[k][0] == pipeline.metaspace[0])
    if pipeline.split_strings:
        text = "".join(c for c, _, _ in chars)
        bounds = sorted(starts) + [len(text)]
        for a, b in zip(bounds, bounds[1:]):
            k = a
            while k < b:
                length = next((n for n in pipeline.split_lengths.get(text[k], ())
                               if k + n <= b and text[k:k + n] in pipeline.split_strings), 0)
                if length == 0:
                    k += 1
                    continue
                starts.update((k, k + length))
                k += length
    return starts


def _align_piece(chars, first, ids, pipeline, placed):
    """Places ids, the BPE tokens of one normalized piece, after Metaspace's replacement and prepending."""
    if pipeline.metaspace is not None and chars:
        replacement, scheme, _ = pipeline.metaspace
        starts = chars[0][0] in (" ", replacement)
        chars = [(replacement if c == " " else c, s, e) for c, s, e in chars]
        if not starts and (scheme == "always" or (scheme == "first" and first)):
            chars.insert(0, (replacement, *chars[0][1:]))
    word_starts = _word_starts(chars, pipeline)
    k, pending = 0, 0
    for n, token_id in enumerate(ids):
        token = pipeline.tokens.get(token_id, "")
        new_word = int(n == 0 or (pending == 0 and k in word_starts))
        spelled = not pending and token and "".join(c for c, _, _ in chars[k:k + len(token)]) == token
        if _is_byte_of(token, chars[k][0] if k < len(chars) else None, pending, spelled, pipeline):
            character, s, e = chars[k]
            placed.add((s, e), new_word)
            pending += 1
            if pending == len(character.encode("utf-8", "surrogatepass")):
                k, pending = k + 1, 0
            continue
        if not spelled and token_id == pipeline.unk_id and not pending and k < len(chars):
            # an unknown character (with fuse_unk, the run of them), as tokenizers' BPE gives <unk> its bytes
            end = k + 1
            while pipeline.fuse_unk and end < len(chars) and _unknown(chars[end][0], pipeline):
                end += 1
            placed.add((chars[k][1], chars[end - 1][2]), new_word)
            k = end
            continue
        if not spelled:
            raise NotImplementedError(
                f"cannot place token {token!r} in the normalized text "
                f"{''.join(c for c, _, _ in chars)!r} at character {k} (an unknown character?)")
        placed.add((chars[k][1], chars[k + len(token) - 1][2]), new_word)
        k += len(token)
    if k < len(chars) or pending:
        raise NotImplementedError(f"the tokens do not spell the normalized text {''.join(c for c, _, _ in chars)!r}")


def _is_byte_of(token, character, pending, spelled, pipeline):
    """Whether token ("<0x41>") is byte number `pending` of character's UTF-8, given by byte_fallback. The text
    "<0x41>" itself is a word BPE can give whole (ignore_merges): then the token spells it."""
    if character is None or len(token) != 6 or not token.startswith("<0x") or not token.endswith(">"):
        return False
    try:
        value = int(token[3:5], 16)
    except ValueError:
        return False
    encoded = character.encode("utf-8", "surrogatepass")
    return encoded[pending] == value and (pending > 0 or not spelled or character not in pipeline.vocab)


def _unknown(character, pipeline):
    """Whether BPE has no token for the character: not in the vocabulary, nor all its bytes with byte_fallback."""
    if character in pipeline.vocab:
        return False
    return not (pipeline.byte_fallback and
                all(f"<0x{b:02X}>" in pipeline.vocab for b in character.encode("utf-8", "surrogatepass")))
