"""Assisted generation: Transformers' _assisted_decoding over the model's own forward and a NemotronCache.

Each iteration proposes candidate tokens, runs the model once over the last accepted token and all candidates (the
logits of every candidate position and of the one after), runs the logits processors on each position's logits
(Generator.process, the C loop's processors for rows of that length), keeps the candidates up to the first one the
model would not have chosen plus the model's own token after them, and crops the cache back to the kept tokens. On
a CPU decoding one token is bound by reading the weights, so checking several tokens in one pass is cheap.

Candidates, as Transformers' candidate generators:
- prompt lookup (prompt_lookup_num_tokens=, max_matching_ngram_size=): PromptLookupCandidateGenerator, the tokens
  that followed the first earlier occurrence of the sequence's last n-gram (the longest n first), cut before a
  token the processors forbid (-inf on logits of ones) and before an eos;
- assistant_model= (a smaller nemotron_c model with the same vocabulary): AssistedCandidateGenerator, the
  assistant's own generate() continuing the sequence on its cache, with the settings of its generation_config:
  num_assistant_tokens, num_assistant_tokens_schedule ("constant", "heuristic": +2 after a round that kept every
  candidate, else -1, written back to the assistant's generation_config at the end; "heuristic_transient": not
  written back) and assistant_confidence_threshold (the assistant stops below that probability of its token).

Acceptance, as Transformers: greedy keeps candidates equal to the argmax of the processed scores; sampling with an
assistant is speculative sampling (accept a candidate with probability min(1, p/q), else draw from max(p - q, 0)
normalised, after every candidate from p), with assistant_ensemble_weight w verifying against w p + (1 - w) q;
sampling with prompt lookup draws one token from every position and keeps the candidates equal to the draws. The
kept tokens stop at max_length and after an eos. Draws use our own generator (seed=), so sampled tokens match
Transformers in distribution, not draw for draw.

One prompt only (Transformers: ValueError for a batch), num_return_sequences=1, use_cache=True (Transformers:
RuntimeError without a cache). The streamer gets the (1, kept) tokens of each iteration; scores and logits hold one
entry per new token; stopping criteria and stop strings are checked once per iteration on the whole sequence, as in
Transformers (a stop string that ends before an iteration's last token is not seen).

Not supported (NotImplementedError): assistant_early_exit, use_mtp, speculation_type (DFlash), an assistant with
another tokenizer (assistant_tokenizer=, Transformers' universal assisted decoding), inputs_embeds, a cache passed
in, output_attentions and output_hidden_states, generate_iter(). The assistant's confidence threshold is not adapted
from a ROC curve (Transformers does that only when scikit-learn is installed). The assistant's min_new_tokens is its
own (Transformers' assistant takes the model's MinNewTokensLengthLogitsProcessor when the model has one): the drafts
may differ there, never the model's tokens.
"""
import copy
import time
import warnings

import numpy as np

from ..model.cache import NemotronCache
from .configuration import default_generation_params


def softmax(scores):
    """torch's softmax in float32 over the last axis (rows of -inf give NaN, as there)."""
    peak = np.max(scores, axis=-1, keepdims=True)
    e = np.exp(scores - peak)
    return e / e.sum(axis=-1, keepdims=True)


def draw(rng, probs):
    """One token from each row of probs (torch.multinomial, one sample); refuses what is no distribution."""
    tokens = []
    for row in np.asarray(probs, dtype=np.float64).reshape(-1, probs.shape[-1]):
        total = row.sum()
        if not np.isfinite(total) or total <= 0 or (row < 0).any():
            raise RuntimeError("cannot sample: after the logits processors every token's score is -inf, or one is "
                               "NaN or +inf, so they give no probability distribution (torch: probability tensor "
                               "contains either inf, nan or element < 0)")
        tokens.append(int(np.searchsorted(np.cumsum(row / total), rng.random(), side="right").clip(0, row.size - 1)))
    return np.array(tokens, dtype=np.int64)


def leading_matches(candidates, selected):
    """How many candidates agree with the selected tokens before the first that does not."""
    differ = np.flatnonzero(candidates != selected[:len(candidates)])
    return int(differ[0]) if differ.size else len(candidates)


def speculative_sampling(candidates, candidate_logits, scores, rng, ensemble_weight=None):
    """Transformers' _speculative_sampling (algorithm 1 of arXiv 2211.17192): (kept tokens, matches).
    candidates (k,), candidate_logits (k, V) the assistant's processed scores q, scores (k + 1, V) the model's p."""
    k = len(candidates)
    q = softmax(candidate_logits)
    p = softmax(scores)
    q_i = q[np.arange(k), candidates]
    p_i = p[np.arange(k), candidates]
    with np.errstate(divide="ignore"):  # q_i = 0: a ratio of inf, accepted, as in torch
        ratio = p_i / q_i if ensemble_weight is None else 1.0 - ensemble_weight + ensemble_weight * (p_i / q_i)
    accepted = rng.random(k).astype(np.float32) <= ratio
    n = leading_matches(accepted, np.ones(k, dtype=bool))
    if n < k:
        residual = np.clip(p[n] - q[n], 0, None)
        total = residual.sum()
        if ensemble_weight is not None and total <= np.finfo(np.float32).tiny:
            residual = p[n]  # p and q agree: the residual is numerically nothing
        else:
            residual = residual / total
    else:
        residual = p[n]
    return np.concatenate([candidates[:n], draw(rng, residual)]), n


# ---------------------------------------------------------------- candidates


class PromptLookupCandidates:
    """Transformers' PromptLookupCandidateGenerator."""

    def __init__(self, eos, num_output_tokens, max_matching_ngram_size, max_length, process, vocab_size):
        if max_matching_ngram_size <= 0 or num_output_tokens <= 0:
            raise ValueError("Invalid max_matching_ngram_size or num_output_tokens")
        self.eos = np.array(eos, dtype=np.int64)
        self.num_output_tokens = int(num_output_tokens)
        self.max_matching_ngram_size = int(max_matching_ngram_size)
        self.max_length = max_length
        self.process = process
        self.vocab_size = vocab_size

    def allowed(self, ids, chosen):
        """chosen cut before its first token the processors forbid after ids and the tokens before it: Transformers
        runs them on logits of ones and looks for -inf (or the float32 minimum)."""
        for i, token in enumerate(chosen):
            scores = np.ones((1, self.vocab_size), dtype=np.float32)
            self.process(np.concatenate([ids, chosen[:i]])[None], scores)
            if scores[0, token] in (-np.inf, np.finfo(np.float32).min):
                return chosen[:i]
        return chosen

    def get_candidates(self, ids):
        length = len(ids)
        if self.max_length == length + 1:  # the model's own token is the last one
            return ids[:0], None
        for n in range(min(self.max_matching_ngram_size, length - 1), 0, -1):
            ngram = ids[length - n:]
            windows = np.lib.stride_tricks.sliding_window_view(ids, n)
            for start in np.flatnonzero((windows == ngram).all(axis=1)) + n:
                end = min(start + self.num_output_tokens, length, self.max_length)
                if start >= end:
                    continue
                chosen = self.allowed(ids, ids[start:end])
                if len(chosen) == 0:
                    continue
                eos = np.flatnonzero(np.isin(chosen, self.eos))
                return (chosen[:eos[0]] if eos.size else chosen), None
        return ids[:0], None

    def update(self, ids, scores, n_matches):
        pass


class ConfidenceCriteria:
    """Transformers' ConfidenceCriteria: the assistant stops when its own token's probability falls below the
    threshold."""

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, input_ids, scores):
        probs = softmax(np.asarray(scores[-1], dtype=np.float32))
        return bool(probs[0, int(input_ids[0, -1])] < self.threshold)


class AssistantCandidates:
    """Transformers' AssistedCandidateGenerator: the assistant's generate() continues the sequence on its own cache
    (cropped to all but the last two tokens, as Transformers), with the main generation config's settings."""

    def __init__(self, assistant, config, processors, mask, rng):
        own = copy.deepcopy(assistant.generation_config)
        own.update(**default_generation_params(), defaults_only=True)
        self.assistant, self.own = assistant, own
        self.num_assistant_tokens = own.num_assistant_tokens
        self.schedule = own.num_assistant_tokens_schedule
        threshold = own.assistant_confidence_threshold
        self.criteria = [ConfidenceCriteria(threshold)] if threshold else None
        self.main_min_length, self.main_max_length = config.min_length or 0, config.max_length
        self.config = copy.deepcopy(config)
        self.config.update(return_dict_in_generate=True, output_scores=True, is_assistant=True, min_length=None,
                           min_new_tokens=None, max_length=None, cache_implementation=None,
                           assistant_confidence_threshold=threshold)
        self.processors, self.mask, self.rng = processors, mask, rng
        self.cache = None

    def get_candidates(self, ids):
        length = len(ids)
        max_new = min(int(self.num_assistant_tokens), self.main_max_length - length - 1)
        if max_new <= 0:
            return ids[:0], None
        config = copy.copy(self.config)
        config.max_new_tokens = max_new
        config.min_new_tokens = max(min(max_new, self.main_min_length - length), 0)
        if self.cache is not None:
            self.cache.crop(-max(self.cache.get_seq_length() - (length - 2), 0))
        with warnings.catch_warnings():  # the length warnings of every round, which Transformers logs
            warnings.simplefilter("ignore")
            out = self.assistant.generate(
                ids[None], generation_config=config, logits_processor=self.processors,
                stopping_criteria=self.criteria, cache=self.cache, seed=self.rng,
                attention_mask=None if self.mask is None else np.concatenate(
                    [self.mask, np.ones((1, length - self.mask.shape[1]), np.uint8)], axis=1))
        self.cache = out.cache
        return out.sequences[0, length:], np.stack([step[0] for step in out.scores])

    def update(self, ids, scores, n_matches):
        if self.schedule in ("heuristic", "heuristic_transient"):
            if n_matches == len(scores) - 1:
                self.num_assistant_tokens += 2
            else:
                self.num_assistant_tokens = max(1, self.num_assistant_tokens - 1)

    def finish(self):
        if self.schedule == "heuristic":  # kept for the assistant's next call, as Transformers
            self.assistant.generation_config.num_assistant_tokens = self.num_assistant_tokens


# ---------------------------------------------------------------- the loop


def assisted_decoding(run):
    """The loop of Transformers' _assisted_decoding for the one row of a prepared run (utils.prepare: its candidate
    generator run.assisted, config, rng, and scores and logits buffers (new tokens, 1, V) or None). Returns
    (sequences (1, length), scores, logits: per new token (1, V) tuples or None, the cache). The run's Generator is
    never stepped: its processors are run on each verified position's logits."""
    model, candidates, config, rng = run.model, run.assisted, run.config, run.rng
    T0, max_length = run.prompt_length, run.max_length
    ids = np.empty(max_length, dtype=np.int64)
    ids[:T0] = run.input_ids[0]
    mask = None if run.mask is None else np.concatenate([run.mask, np.ones((1, max_length), np.uint8)], axis=1)
    positions = np.concatenate([run.positions[0], run.positions[0, -1] + np.arange(1, max_length + 1)])
    cache = NemotronCache(model, 1, T0 + 1)
    eos = np.array(run.eos, dtype=np.int64)
    length = T0
    while True:
        proposed, candidate_logits = candidates.get_candidates(ids[:length].copy())
        k = len(proposed)
        sequence = np.concatenate([ids[:length], proposed])
        start = cache.get_seq_length()
        result = model._run(sequence[None, start:], None if mask is None else mask[:, :length + k],
                            positions[None, start:length + k], cache, True, logits=True, logits_to_keep=k + 1)
        raw = result.logits[0]
        processed = raw.copy()
        for i in range(k + 1):
            run.generator.process(sequence[None, :length + i], processed[i:i + 1])

        if config.do_sample and candidate_logits is not None:
            kept, n = speculative_sampling(proposed, candidate_logits, processed, rng,
                                           config.assistant_ensemble_weight)
        else:
            if config.do_sample:
                selected = draw(rng, softmax(processed))
            elif config.assistant_ensemble_weight is not None and candidate_logits is not None:
                w = config.assistant_ensemble_weight
                mixed = w * softmax(processed[:k]) + (1.0 - w) * softmax(candidate_logits)
                selected = np.concatenate([mixed.argmax(axis=-1), processed[k:].argmax(axis=-1)])
            else:
                selected = processed.argmax(axis=-1)
            n = leading_matches(proposed, selected)
            kept = selected[:n + 1]
        kept = kept[:max_length - length]
        ended = np.flatnonzero(np.isin(kept, eos))
        if ended.size:
            kept = kept[:ended[0] + 1]
        n = len(kept) - 1

        ids[length:length + len(kept)] = kept
        length += len(kept)
        if run.streamer is not None:
            run.streamer.put(kept[None].copy())
        cache.crop(-(k - n))  # the kept candidates stay; the last kept token is fed next time
        candidates.update(ids[:length], processed, n)
        for buffer, values in ((run.scores, processed), (run.logits, raw)):
            if buffer is not None:
                buffer[length - len(kept) - T0:length - T0, 0] = values[:n + 1]

        # Transformers' stopping criteria: max_length, max_time, stop strings, eos, then the caller's
        done = length >= max_length or bool(run.deadline and time.time() > run.deadline)
        if run.stop_strings is not None:
            done |= bool(run.stop_strings(ids[None, :length], length, T0)[0])
        done |= ended.size > 0
        if run.criteria is not None:
            scores = None if run.scores is None else tuple(run.scores[:length - T0])
            done |= bool(run.criteria(ids[None, :length], scores)[0])
        if done:
            break
    if hasattr(candidates, "finish"):
        candidates.finish()
    steps = length - T0
    return (ids[None, :length].copy(), None if run.scores is None else tuple(run.scores[:steps]),
            None if run.logits is None else tuple(run.logits[:steps]), cache)
