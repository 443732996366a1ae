"""Batch scoring: how likely a causal language model finds each of many texts.

    model = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    scores = model.score(["first text", "second text"], tokenizer=tokenizer)
    scores.mean_logprob, scores.perplexity        # (2,) float64 each

Every token but the first of a sequence is scored by the log-probability the model gives it after the
tokens before it: log_softmax(logits[t - 1])[ids[t]], which is what Transformers' logits give. The core
computes these log-probabilities tile by tile (csrc/model/score.c), so no (batch, length, vocab) logits
array ever exists; memory is that of the forward pass over one batch plus a few megabytes.

Sequences are scored alone: padding, batching and order do not change a sequence's result beyond
float32 rounding. Inputs are sorted by length into batches to waste little work on padding.
"""
from collections.abc import Mapping

import numpy as np

from ..model.inputs import as_attention_mask, to_numpy
from ..model.cache import NemotronCache
from ..model.outputs import SequenceScoreOutput


def score(model, inputs, tokenizer=None, attention_mask=None, batch_size=16, max_length=None, chunk_size=1024,
          add_special_tokens=True, return_token_logprobs=False):
    """Scores each sequence of `inputs`; returns a SequenceScoreOutput with one entry per sequence.

    inputs: a text or a list of texts (then `tokenizer` is required: any Transformers-compatible
      tokenizer, called as tokenizer(texts, add_special_tokens=...)); or token ids: a list of id lists
      (ragged is fine), a 1-D or 2-D integer array, or a tokenizer's output (a mapping with "input_ids"
      and perhaps "attention_mask").
    attention_mask: for a 2-D ids array, 1 for tokens and 0 for padding (left, right or anywhere);
      only the tokens are scored, as one sequence per row.
    batch_size: sequences per forward pass.
    max_length: sequences longer than this keep their first max_length tokens.
    chunk_size: positions per core call; longer batches run in chunks that carry the KV cache forward,
      which bounds the activations to batch_size x chunk_size x hidden_size floats (the cache still
      grows with the length). The results do not depend on it.
    return_token_logprobs: also return each sequence's per-token log-probabilities.
    """
    if not getattr(model, "has_lm_head", False):
        raise TypeError(f"scoring needs a model with a language-modelling head, not {type(model).__name__}")
    batch_size = positive_int(batch_size, "batch_size")
    chunk_size = positive_int(chunk_size, "chunk_size")
    if max_length is not None:
        max_length = positive_int(max_length, "max_length")
    sequences = as_sequences(inputs, tokenizer, attention_mask, add_special_tokens, model.config.vocab_size)
    if max_length is not None:
        sequences = [s[:max_length] for s in sequences]

    N = len(sequences)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    model._warn_beyond_positions(int(lengths.max(initial=0)), stacklevel=4)
    sums = np.zeros(N, dtype=np.float64)
    tokens = [None] * N
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, N, batch_size):
        batch = order[start:start + batch_size]
        if lengths[batch[0]] == 0:
            for i in batch:
                tokens[i] = np.zeros(0, dtype=np.float32)
            continue
        logprobs = score_batch(model, [sequences[i] for i in batch], chunk_size)
        for row, i in enumerate(batch):
            tokens[i] = logprobs[row, :max(lengths[i] - 1, 0)].copy()
            sums[i] = tokens[i].sum(dtype=np.float64)

    num_tokens = np.maximum(lengths - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # a perplexity beyond float64 is inf
        mean = np.where(num_tokens > 0, sums / np.maximum(num_tokens, 1), np.nan)
        perplexity = np.exp(-mean)
    return SequenceScoreOutput(
        sum_logprob=sums,
        mean_logprob=mean,
        perplexity=perplexity,
        num_tokens=num_tokens,
        token_logprobs=tokens if return_token_logprobs else None,
    )


def score_batch(model, sequences, chunk_size):
    """(B, T) float32 log-probabilities of each next token for right-padded `sequences` (0 past each end)."""
    B, T = len(sequences), max(len(s) for s in sequences)
    ids = np.zeros((B, T), dtype=np.int32)
    mask = np.zeros((B, T), dtype=np.uint8)
    targets = np.full((B, T), -1, dtype=np.int32)
    for b, s in enumerate(sequences):
        ids[b, :len(s)] = s
        mask[b, :len(s)] = 1
        if len(s) > 1:
            targets[b, :len(s) - 1] = s[1:]
    logprobs = np.empty((B, T), dtype=np.float32)
    if T <= chunk_size:
        positions = np.broadcast_to(np.arange(T, dtype=np.int64), (B, T)).copy()
        model._core.score(input_ids=ids, position_ids=positions, attention_mask=mask, targets=targets,
                          logprobs=logprobs)
        return logprobs
    cache = NemotronCache(model, B, T)
    for s in range(0, T, chunk_size):
        e = min(s + chunk_size, T)
        positions = np.broadcast_to(np.arange(s, e, dtype=np.int64), (B, e - s)).copy()
        out = np.empty((B, e - s), dtype=np.float32)
        model._core.score(input_ids=np.ascontiguousarray(ids[:, s:e]), position_ids=positions,
                          attention_mask=np.ascontiguousarray(mask[:, :e]),
                          targets=np.ascontiguousarray(targets[:, s:e]), logprobs=out, cache=cache._core)
        logprobs[:, s:e] = out
    return logprobs


# ---------------------------------------------------------------- inputs


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_sequences(inputs, tokenizer, attention_mask, add_special_tokens, vocab_size):
    """A list of 1-D int64 id arrays, one per sequence, padding removed."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        if "input_ids" not in inputs:
            raise ValueError("a mapping given as inputs must hold 'input_ids' (a tokenizer's output)")
        if attention_mask is None:
            attention_mask = inputs.get("attention_mask")
        inputs = inputs["input_ids"]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, str) for x in inputs):
        if attention_mask is not None:
            raise ValueError("attention_mask is for token ids; texts are tokenized without padding")
        inputs = tokenize(tokenizer, list(inputs), add_special_tokens)
    elif isinstance(inputs, (list, tuple)) and any(isinstance(x, str) for x in inputs):
        raise TypeError("inputs mixes texts and other values; give a list of texts or of token id lists")

    if isinstance(inputs, (list, tuple)) and not (inputs and np.ndim(inputs[0]) == 0):
        sequences = [one_sequence(id_array(x, f"inputs[{i}]"), f"inputs[{i}]") for i, x in enumerate(inputs)]
        if attention_mask is not None:
            sequences = apply_row_masks(sequences, attention_mask)
    else:
        ids = to_numpy(inputs, "inputs")
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2:
            raise ValueError(f"token ids must be 1-D or 2-D (batch, sequence), got shape {ids.shape}")
        ids = id_array(ids, "inputs")
        if attention_mask is None:
            sequences = list(ids)
        else:
            mask = as_attention_mask(attention_mask, ids.shape).astype(bool)
            sequences = [row[keep] for row, keep in zip(ids, mask)]
    if not sequences:
        raise ValueError("inputs holds no sequence to score")
    for i, s in enumerate(sequences):
        if s.size and (s.min() < 0 or s.max() >= vocab_size):
            bad = int(s.min()) if s.min() < 0 else int(s.max())
            raise ValueError(f"sequence {i} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    return sequences


def apply_row_masks(sequences, attention_mask):
    """Keeps the tokens whose mask entry is 1, row by row (a tokenizer's list output)."""
    masks = attention_mask if isinstance(attention_mask, (list, tuple)) else list(to_numpy(attention_mask, "attention_mask"))
    if len(masks) != len(sequences):
        raise ValueError(f"attention_mask has {len(masks)} rows for {len(sequences)} sequences")
    kept = []
    for i, (ids, mask) in enumerate(zip(sequences, masks)):
        mask = as_attention_mask(np.asarray(mask).reshape(1, -1), (1, len(ids)))[0].astype(bool)
        kept.append(ids[mask])
    return kept


def one_sequence(ids, name):
    """A list element as one sequence: a (1, T) row, what tokenizer(text, return_tensors="np")["input_ids"] gives,
    is that sequence; more rows in one element are refused (a list element is one text)."""
    if ids.ndim == 2:
        if ids.shape[0] != 1:
            raise ValueError(f"{name} has shape {ids.shape}: each element of a list is one sequence (1-D, or one row "
                             "of shape (1, T)); give a 2-D array for a batch")
        ids = ids[0]
    return ids


def id_array(value, name):
    array = to_numpy(value, name) if not isinstance(value, np.ndarray) else value
    if array.size == 0:
        return np.zeros(array.shape[:-1] + (0,) if array.ndim > 1 else (0,), dtype=np.int64)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be a sequence of token ids, got shape {array.shape}")
    if array.dtype.kind == "u" and array.itemsize == 8 and array.max() > np.iinfo(np.int64).max:
        # the cast to int64 would wrap it to a negative id, which the vocabulary check would then name
        raise ValueError(f"{name} holds token id {int(array.max())}, which does not fit a 64-bit signed integer")
    return array.astype(np.int64)


def tokenize(tokenizer, texts, add_special_tokens):
    """Token id lists of texts with any Transformers-compatible tokenizer (no padding, no truncation)."""
    if tokenizer is None:
        raise ValueError("scoring texts needs a tokenizer: pass tokenizer=, or give token ids instead")
    if callable(tokenizer):
        encoded = tokenizer(texts, add_special_tokens=add_special_tokens)
        ids = encoded["input_ids"] if isinstance(encoded, Mapping) or hasattr(encoded, "keys") else encoded
    elif hasattr(tokenizer, "encode"):
        ids = [tokenizer.encode(text, add_special_tokens=add_special_tokens) for text in texts]
    else:
        raise TypeError(f"tokenizer must be callable or have encode(), got {type(tokenizer).__name__}")
    if len(ids) != len(texts):
        raise ValueError(f"the tokenizer returned {len(ids)} sequences for {len(texts)} texts")
    return [list(x) for x in ids]
