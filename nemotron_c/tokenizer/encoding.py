"""tokenizers' Encoding in Python: character offsets, words, sequence pairs and overflowing windows.

The C core gives a text's token ids; this module places each token in the text (`align`), puts sequences and
the post-processor's special tokens together (`apply_template`), cuts windows with a stride (`Encoding.truncate`)
and pads, as the tokenizers library does behind Transformers' `return_offsets_mapping`, `text_pair`,
`return_overflowing_tokens`, `stride` and `BatchEncoding.sequence_ids()` / `word_ids()` / `word_to_chars()`.
"""
import copy

PAD_TYPE_ID = 0  # tokenizers' pad_type_id, which Transformers leaves at 0
SPACE_MARK = "\u2581"


class Encoding:
    """One encoded sequence (or pair) as tokenizers' Encoding: per token its id, type id, (start, end) in its text,
    word, sequence (0, 1, or None for a special token), special-token and attention flags; `overflowing` holds the
    further windows a truncation with return_overflowing_tokens cut."""

    def __init__(self, ids, offsets=None, words=None, sequence=None, type_id=0, special=False):
        n = len(ids)
        self.ids = list(ids)
        self.type_ids = [type_id] * n
        self.offsets = list(offsets) if offsets is not None else [(0, 0)] * n
        self.words = list(words) if words is not None else [None] * n
        self.sequences = [sequence] * n
        self.special_tokens_mask = [int(special)] * n
        self.attention_mask = [1] * n
        self.overflowing = []

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"Encoding(num_tokens={len(self)}, overflowing={len(self.overflowing)})"

    def _slice(self, start, stop):
        part = copy.copy(self)
        for name in ("ids", "type_ids", "offsets", "words", "sequences", "special_tokens_mask", "attention_mask"):
            setattr(part, name, getattr(self, name)[start:stop])
        part.overflowing = []
        return part

    # ---- what Transformers' BatchEncoding reads

    @property
    def n_sequences(self):
        return len({s for s in self.sequences if s is not None}) or 1

    @property
    def sequence_ids(self):
        return list(self.sequences)

    @property
    def word_ids(self):
        if any(w is NotImplemented for w in self.words):
            raise NotImplementedError("word ids need a tokenizer whose pre-tokenizer is Metaspace alone (or none); "
                                      "this one splits words with a Split pre-tokenizer, which nemotron_c does not "
                                      "track")
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
        return range(positions[0], positions[-1] + 1) if positions else range(len(self))

    def word_to_tokens(self, word_index, sequence_index=0):
        """(first, last + 1) of the tokens of a word in one sequence (the whole encoding when it has no such
        sequence), or None; as tokenizers, the search stops at the first later word."""
        if not isinstance(word_index, int):
            raise TypeError(f"word index must be an int, not {type(word_index).__name__}")
        words, found = self.word_ids, []
        for i in self._sequence_range(sequence_index):
            if words[i] is not None and words[i] > word_index:
                break
            if words[i] == word_index:
                found.append(i)
        return (found[0], found[-1] + 1) if found else None

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
            for name, value in (("ids", pad_id), ("type_ids", PAD_TYPE_ID), ("offsets", (0, 0)), ("words", None),
                                ("sequences", None), ("special_tokens_mask", 1), ("attention_mask", 0)):
                column = getattr(window, name)
                setattr(window, name, [value] * fill + column if left else column + [value] * fill)


def _concatenated(a, b):
    out = a._slice(0, len(a))
    for name in ("ids", "type_ids", "offsets", "words", "sequences", "special_tokens_mask", "attention_mask"):
        setattr(out, name, getattr(a, name) + getattr(b, name))
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
            raise ValueError("truncation='only_second' needs a second sequence (text_pair)")
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


def align(text, ids, tokens, added, prepend, metaspace_split, words_known):
    """(offsets, words) of the token ids the core gave for `text` (no special tokens around them): each token's
    (start, end) in text as tokenizers gives it, and its word (a new one at each added token and after it, and, with
    a Metaspace pre-tokenizer that splits, at each token that begins with "▁").

    tokens: id -> the token's string; added: id -> content, for tokens matched as themselves in the text.
    prepend: where the pipeline puts a "▁" before a piece of text (between added tokens): "normalizer" (a Prepend
    normalizer: always), Metaspace's "always" or "first" (unless the piece begins with a space), or "never".
    A "▁" stands for the space it replaced, or, prepended, for the character after it (not consumed); the bytes of
    a byte-fallback character all get its span."""
    offsets, words = [], []
    position, pending, word, segment_start = 0, 0, -1, True
    for token_id in ids:
        if token_id in added:
            content = added[token_id]
            if not text.startswith(content, position):
                raise NotImplementedError(f"cannot place the added token {content!r} in the text at character "
                                          f"{position} (offsets of tokens with lstrip/rstrip are not supported)")
            offsets.append((position, position + len(content)))
            position += len(content)
            word += 1
            words.append(word)
            segment_start = True
            continue
        token = tokens[token_id]
        prepended = segment_start and position < len(text) and (
            prepend == "normalizer" or (prepend in ("always", "first") and text[position] not in (" ", SPACE_MARK)
                                        and (prepend == "always" or position == 0)))
        if segment_start or (metaspace_split and token.startswith(SPACE_MARK)):
            word += 1
        segment_start = False
        words.append(word if words_known else NotImplemented)
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            if position >= len(text):
                raise NotImplementedError(f"cannot place the byte token {token} after the end of the text")
            character_bytes = len(text[position].encode("utf-8", "surrogatepass"))
            offsets.append((position, position + 1))
            pending += 1
            if pending == character_bytes:
                position, pending = position + 1, 0
            continue
        start = end = None
        for index, character in enumerate(token):
            here = text[position] if position < len(text) else None
            if prepended and index == 0 and character == SPACE_MARK:
                # prepended to the piece of text: it takes the span of the character it stands before
                start, end = position, position + 1
            elif here is not None and (here == character or (character == SPACE_MARK and here == " ")):
                start = position if start is None else start
                position += 1
                end = position
            else:
                raise NotImplementedError(
                    f"cannot place token {token!r} in the text at character {position} (offsets are supported for "
                    "tokenizers that only replace spaces with '▁' and prepend one, as Nemotron's do)")
        offsets.append((start, end) if start is not None else (position, position))
    return offsets, words
