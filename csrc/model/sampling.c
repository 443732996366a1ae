/*
 * The logits processors of Transformers' generate(), one row at a time, each as logits_process.py
 * defines it, then greedy and multinomial token selection with a seeded generator of our own.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sampling.h"

nt_status nt_row_scratch_init(nt_row_scratch *s, nt_error *err, int64_t V) {
    s->values = malloc((size_t)V * sizeof(float));
    s->spare = malloc((size_t)V * sizeof(float));
    s->order = malloc((size_t)V * sizeof(int32_t));
    s->ranks = malloc((size_t)(2 * V) * sizeof(int64_t)); /* its pages are touched only by min_p's min_keep */
    s->flags = calloc((size_t)V, 1);
    if (s->values == NULL || s->spare == NULL || s->order == NULL || s->ranks == NULL || s->flags == NULL) {
        nt_row_scratch_free(s);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the sampling work space");
    }
    return NT_OK;
}

void nt_row_scratch_free(nt_row_scratch *s) {
    free(s->values);
    free(s->spare);
    free(s->order);
    free(s->ranks);
    free(s->flags);
    s->values = NULL;
    s->spare = NULL;
    s->order = NULL;
    s->ranks = NULL;
    s->flags = NULL;
}

/* ---------------------------------------------------------------- softmax helpers */

static float max_of(const float *x, int64_t V) {
    float m = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    return m;
}

void nt_log_softmax(float *y, const float *x, int64_t V) {
    float m = max_of(x, V);
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)(x[i] - m));
    float log_sum = (float)log(sum);
    for (int64_t i = 0; i < V; i++) y[i] = x[i] - m - log_sum;
}

/* probs (V) = softmax(x) in float32 */
static void softmax(float *probs, const float *x, int64_t V) {
    float m = max_of(x, V);
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) {
        probs[i] = expf(x[i] - m);
        sum += probs[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < V; i++) probs[i] *= inv;
}

int nt_is_eos(const nt_generation_config *c, int64_t token) {
    for (int64_t i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == token) return 1;
    return 0;
}

int64_t nt_argmax(const float *scores, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (scores[i] > scores[best] || (isnan(scores[i]) && !isnan(scores[best]))) best = i;
    return best;
}

/* ---------------------------------------------------------------- sorting token indices by a key */

static int ascending(const void *a, const void *b, void *key) {
    const float *sort_key = key;
    float x = sort_key[*(const int32_t *)a], y = sort_key[*(const int32_t *)b];
    if (x < y) return -1;
    if (x > y) return 1;
    return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

/* order (V) = the indices of the finite scores, sorted by key ascending (ties by index), then the others
 * unsorted; returns how many are finite. Removed tokens (-inf) have probability 0 and stay removed whatever
 * their place, so only the finite ones need sorting: after top_k that is k of them, not V. */
static int64_t argsort_finite_ascending(int32_t *order, const float *key, const float *scores, int64_t V) {
    int64_t n = 0, rest = V;
    for (int64_t i = 0; i < V; i++) {
        if (scores[i] > -INFINITY) order[n++] = (int32_t)i;
        else order[--rest] = (int32_t)i;
    }
    qsort_r(order, (size_t)n, sizeof *order, ascending, (void *)key);
    return n;
}

/* the k-th largest value (1 <= k <= V), by quickselect on a copy in tmp */
static float kth_largest(const float *x, float *tmp, int64_t V, int64_t k) {
    memcpy(tmp, x, (size_t)V * sizeof(float));
    int64_t lo = 0, hi = V - 1, target = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = tmp[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] > pivot) i++;
            while (tmp[j] < pivot) j--;
            if (i <= j) {
                float t = tmp[i];
                tmp[i] = tmp[j];
                tmp[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else break;
    }
    return tmp[target];
}

/* ---------------------------------------------------------------- processors */

static int in_vocab(int64_t t, int64_t V) { return t >= 0 && t < V; }

/* RepetitionPenaltyLogitsProcessor: each distinct earlier token's score is divided by the penalty when
 * positive, multiplied when negative. */
static void repetition_penalty(float *scores, const int64_t *seq, int64_t len, int64_t skip, float penalty, int64_t V,
                               uint8_t *seen) {
    for (int64_t i = skip; i < len; i++) {
        int64_t t = seq[i];
        if (!in_vocab(t, V) || seen[t]) continue;
        seen[t] = 1;
        scores[t] = scores[t] < 0 ? scores[t] * penalty : scores[t] / penalty;
    }
    for (int64_t i = skip; i < len; i++)
        if (in_vocab(seq[i], V)) seen[seq[i]] = 0;
}

/* EncoderRepetitionPenaltyLogitsProcessor: repetition_penalty over the prompt's distinct tokens with the inverse
 * penalty, 1 / penalty rounded to float32 as torch rounds the scalar (above 1 it favours the prompt's tokens). */
static void encoder_repetition_penalty(float *scores, const int64_t *prompt, int64_t prompt_len, float penalty,
                                       int64_t V, uint8_t *seen) {
    float inverse = (float)(1.0 / (double)penalty);
    for (int64_t i = 0; i < prompt_len; i++) {
        int64_t t = prompt[i];
        if (!in_vocab(t, V) || seen[t]) continue;
        seen[t] = 1;
        scores[t] = scores[t] < 0 ? scores[t] * inverse : scores[t] / inverse;
    }
    for (int64_t i = 0; i < prompt_len; i++)
        if (in_vocab(prompt[i], V)) seen[prompt[i]] = 0;
}

/* EncoderNoRepeatNGramLogitsProcessor: bans each token that would complete, after the row's last n - 1 tokens,
 * an n-gram of the prompt (padding included). */
static void encoder_no_repeat_ngram(float *scores, const int64_t *seq, int64_t len, int64_t prompt_len, int64_t n,
                                    int64_t V) {
    if (len < n - 1) return;
    const int64_t *prefix = seq + len - (n - 1);
    for (int64_t i = 0; i + n <= prompt_len; i++) {
        if (memcmp(seq + i, prefix, (size_t)(n - 1) * sizeof(int64_t)) == 0 && in_vocab(seq[i + n - 1], V))
            scores[seq[i + n - 1]] = -INFINITY;
    }
}

/* NoRepeatNGramLogitsProcessor: bans each token that would repeat an n-gram of the row (padding included). */
static void no_repeat_ngram(float *scores, const int64_t *seq, int64_t len, int64_t n, int64_t V) {
    if (len < n) return;
    const int64_t *prefix = seq + len - (n - 1);
    for (int64_t i = 0; i + n <= len; i++) {
        if (memcmp(seq + i, prefix, (size_t)(n - 1) * sizeof(int64_t)) == 0 && in_vocab(seq[i + n - 1], V))
            scores[seq[i + n - 1]] = -INFINITY;
    }
}

/* SequenceBiasLogitsProcessor (and NoBadWordsLogitsProcessor, whose biases are -inf): the last token of a
 * sequence gets its bias when the row ends with the rest; single tokens are set first, longer sequences add,
 * in float32, before the bias joins the scores. values NULL means -inf for all. bias (V) is work space. */
static void sequence_bias(float *scores, const int64_t *tokens, const int64_t *ends, const float *values, int64_t n,
                          const int64_t *seq, int64_t len, int64_t V, float *bias) {
    memset(bias, 0, (size_t)V * sizeof(float));
    int64_t start = 0;
    for (int64_t w = 0; w < n; start = ends[w], w++) {
        const int64_t *word = tokens + start;
        if (ends[w] - start == 1 && in_vocab(word[0], V)) bias[word[0]] = values ? values[w] : -INFINITY;
    }
    start = 0;
    for (int64_t w = 0; w < n; start = ends[w], w++) {
        const int64_t *word = tokens + start;
        int64_t prefix = ends[w] - start - 1;
        if (prefix <= 0 || prefix > len || !in_vocab(word[prefix], V)) continue;
        if (memcmp(seq + len - prefix, word, (size_t)prefix * sizeof(int64_t)) == 0)
            bias[word[prefix]] += values ? values[w] : -INFINITY;
    }
    for (int64_t i = 0; i < V; i++) scores[i] += bias[i];
}

/* forced tokens: every score -inf but theirs, 0 */
static void force_tokens(float *scores, const int64_t *tokens, int64_t n, int64_t V) {
    for (int64_t i = 0; i < V; i++) scores[i] = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (in_vocab(tokens[i], V)) scores[tokens[i]] = 0.0f;
}

/* InfNanRemoveLogitsProcessor */
static void remove_invalid(float *scores, int64_t V) {
    for (int64_t i = 0; i < V; i++) {
        if (isnan(scores[i])) scores[i] = 0.0f;
        else if (scores[i] == INFINITY) scores[i] = FLT_MAX;
        else if (scores[i] == -INFINITY) scores[i] = -FLT_MAX;
    }
}

/* ExponentialDecayLengthPenalty: past the start, eos scores grow by |score| * (factor^(len - start) - 1) */
static void exponential_decay(float *scores, const nt_generation_config *c, int64_t len, int64_t V, float *penalty) {
    if (!((double)len > c->decay_start)) return;
    float factor = (float)(pow((double)c->decay_factor, (double)len - c->decay_start) - 1.0);
    for (int64_t i = 0; i < c->n_eos; i++) {
        int64_t e = c->eos_token_ids[i];
        if (in_vocab(e, V)) penalty[i] = isfinite(scores[e]) ? fabsf(scores[e]) * factor : 0.0f;
    }
    for (int64_t i = 0; i < c->n_eos; i++)
        if (in_vocab(c->eos_token_ids[i], V)) scores[c->eos_token_ids[i]] += penalty[i];
}

/* EpsilonLogitsWarper and EtaLogitsWarper: tokens less probable than the cutoff are removed, except the
 * min_keep best. eta: the cutoff is min(eta, sqrt(eta) * exp(-entropy)). */
static void probability_cutoff(float *scores, float cutoff, int eta, int64_t min_keep, int64_t V, nt_row_scratch *s) {
    softmax(s->values, scores, V);
    if (eta) {
        float *logp = s->spare;
        nt_log_softmax(logp, scores, V);
        double entropy = 0.0;
        for (int64_t i = 0; i < V; i++)
            if (s->values[i] > 0.0f) entropy -= (double)s->values[i] * (double)logp[i];
        float scaled = sqrtf(cutoff) * expf(-(float)entropy);
        cutoff = scaled < cutoff ? scaled : cutoff;
    }
    float keep_from = kth_largest(scores, s->spare, V, min_keep < V ? min_keep : V);
    for (int64_t i = 0; i < V; i++)
        if (s->values[i] < cutoff && scores[i] < keep_from) scores[i] = -INFINITY;
}

static void ban_tokens(float *scores, const int64_t *tokens, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++)
        if (in_vocab(tokens[i], V)) scores[tokens[i]] = -INFINITY;
}

/* TopKLogitsWarper: scores below the k-th largest are removed. */
static void top_k(float *scores, int64_t k, int64_t V, float *tmp) {
    if (k > V) k = V;
    float threshold = kth_largest(scores, tmp, V, k);
    for (int64_t i = 0; i < V; i++)
        if (scores[i] < threshold) scores[i] = -INFINITY;
}

/* TopPLogitsWarper: in ascending order, tokens whose cumulative probability stays <= 1 - top_p are removed,
 * but never the last min_keep.
 * Tokens less probable than (1 - top_p) / V weigh less than 1 - top_p together, so they all fall in the
 * removed prefix whatever their order: only the others are sorted (a handful of V in practice). Equal scores
 * give equal cumulative sums in any order; only when the cut falls among equal scores does the order decide which
 * of them go, and then it is torch.sort's (nt_sort), over the whole row as Transformers sorts it. */
static void top_p(float *scores, float p, int64_t min_keep, int64_t V, nt_row_scratch *s) {
    softmax(s->values, scores, V);
    float limit = (float)(1.0 - (double)p);
    float small = limit / (float)V;
    double cumulative = 0.0;
    int64_t n = 0, n_small = 0;
    for (int64_t i = 0; i < V; i++) {
        if (s->values[i] < small && scores[i] > -INFINITY) {
            cumulative += s->values[i];
            n_small++;
        } else if (s->values[i] >= small) {
            s->order[n++] = (int32_t)i;
        }
    }
    if (n < min_keep) { /* min_keep reaches into the small ones: sort everything finite instead */
        n = argsort_finite_ascending(s->order, scores, scores, V);
        cumulative = 0.0;
        n_small = 0;
    } else {
        qsort_r(s->order, (size_t)n, sizeof *s->order, ascending, scores);
    }
    int64_t removed = 0; /* of the sorted ones */
    for (; removed < n - min_keep; removed++) {
        cumulative += s->values[s->order[removed]];
        if ((float)cumulative > limit) break;
    }
    if (removed > 0 && removed < n && scores[s->order[removed - 1]] == scores[s->order[removed]]) {
        int64_t *order = s->ranks, gone = 0; /* the removed tokens already at -inf, first in torch's order */
        nt_sort(order, scores, V, 0);
        while (gone < V && scores[order[gone]] == -INFINITY) gone++;
        for (int64_t i = 0; i < gone + n_small + removed; i++) scores[order[i]] = -INFINITY;
        return;
    }
    for (int64_t i = 0; i < V && n_small > 0; i++)
        if (s->values[i] < small) scores[i] = -INFINITY;
    for (int64_t i = 0; i < removed; i++) scores[s->order[i]] = -INFINITY;
}

/* MinPLogitsWarper: tokens less probable than min_p times the top probability are removed, but never the
 * min_keep most probable: the ones torch.topk names, which among equal probabilities are not the lowest ids. */
static void min_p(float *scores, float p, int64_t min_keep, int64_t V, nt_row_scratch *s) {
    softmax(s->values, scores, V);
    float threshold = p * max_of(s->values, V);
    int64_t keep = min_keep < V ? min_keep : V, *kept = s->ranks;
    if (keep > 1) { /* the most probable token is never below the threshold: one needs no ranking */
        nt_topk(kept, s->ranks + V, s->values, V, keep);
        for (int64_t j = 0; j < keep; j++) s->flags[kept[j]] = 1;
    }
    for (int64_t i = 0; i < V; i++)
        if (s->values[i] < threshold && !s->flags[i]) scores[i] = -INFINITY;
    if (keep > 1)
        for (int64_t j = 0; j < keep; j++) s->flags[kept[j]] = 0;
}

/* TypicalLogitsWarper: keeps the tokens whose surprisal is closest to the entropy until their mass
 * reaches typical_p, and at least min_keep. */
static void typical_p(float *scores, float mass, int64_t min_keep, int64_t V, nt_row_scratch *s) {
    float *shifted = s->values;
    nt_log_softmax(shifted, scores, V);
    double entropy = 0.0;
    for (int64_t i = 0; i < V; i++) {
        double term = (double)shifted[i] * exp((double)shifted[i]);
        if (!isnan(term)) entropy -= term;
    }
    float ent = (float)entropy;
    for (int64_t i = 0; i < V; i++) shifted[i] = fabsf(-shifted[i] - ent);
    /* removed tokens have an infinite shift: they sort last, after every finite one */
    int64_t n = argsort_finite_ascending(s->order, shifted, scores, V);
    float *probs = s->spare;
    softmax(probs, scores, V);
    double cumulative = 0.0;
    int64_t last = 0;
    for (int64_t i = 0; i < n; i++) {
        cumulative += probs[s->order[i]];
        if ((float)cumulative < mass) last++;
    }
    if (last == n) last = V; /* the mass was never reached: the cut falls among the removed tokens */
    if (last > V - 1) last = V - 1;
    float threshold = last < n ? shifted[s->order[last]] : INFINITY;
    const int32_t *order = s->order;
    if (min_keep < n && shifted[order[min_keep - 1]] == shifted[order[min_keep]] && shifted[order[min_keep]] > threshold) {
        /* the min_keep kept come from among equal shifts: torch.sort's order (nt_sort) names them */
        int64_t *full = s->ranks;
        nt_sort(full, shifted, V, 0);
        for (int64_t i = min_keep; i < V; i++)
            if (shifted[full[i]] > threshold) scores[full[i]] = -INFINITY;
        return;
    }
    for (int64_t i = min_keep; i < n; i++)
        if (shifted[order[i]] > threshold) scores[order[i]] = -INFINITY;
}

void nt_process_scores(const nt_generation_config *c, float *scores, const int64_t *seq, int64_t len,
                       int64_t prompt_len, int64_t skip, int64_t V, nt_row_scratch *s, int from, int to) {
#define STAGE(x) (from <= (x) && (x) < to)
    if (STAGE(NT_STAGE_SEQUENCE_BIAS) && c->n_sequence_bias > 0)
        sequence_bias(scores, c->sequence_bias, c->sequence_bias_ends, c->sequence_bias_values, c->n_sequence_bias,
                      seq, len, V, s->spare);
    if (STAGE(NT_STAGE_ENCODER_REPETITION_PENALTY) && c->encoder_repetition_penalty != 1.0f)
        encoder_repetition_penalty(scores, seq, prompt_len, c->encoder_repetition_penalty, V, s->flags);
    if (STAGE(NT_STAGE_REPETITION_PENALTY) && c->repetition_penalty != 1.0f)
        repetition_penalty(scores, seq, len, skip, c->repetition_penalty, V, s->flags);
    if (STAGE(NT_STAGE_NO_REPEAT_NGRAM) && c->no_repeat_ngram_size > 0)
        no_repeat_ngram(scores, seq, len, c->no_repeat_ngram_size, V);
    if (STAGE(NT_STAGE_ENCODER_NO_REPEAT_NGRAM) && c->encoder_no_repeat_ngram_size > 0)
        encoder_no_repeat_ngram(scores, seq, len, prompt_len, c->encoder_no_repeat_ngram_size, V);
    if (STAGE(NT_STAGE_BAD_WORDS) && c->n_bad_words > 0)
        sequence_bias(scores, c->bad_words, c->bad_word_ends, NULL, c->n_bad_words, seq, len, V, s->spare);
    /* min_length holds min_new_tokens too (the larger of both): banning eos twice bans it once */
    if (STAGE(NT_STAGE_MIN_LENGTH) && len < c->min_length) ban_tokens(scores, c->eos_token_ids, c->n_eos, V);
    if (STAGE(NT_STAGE_FORCED_BOS) && c->forced_bos_token_id >= 0 && len == 1)
        force_tokens(scores, &c->forced_bos_token_id, 1, V);
    if (STAGE(NT_STAGE_FORCED_EOS) && c->n_forced_eos > 0 && len == c->max_length - 1)
        force_tokens(scores, c->forced_eos_token_ids, c->n_forced_eos, V);
    if (STAGE(NT_STAGE_REMOVE_INVALID_VALUES) && c->remove_invalid_values) remove_invalid(scores, V);
    if (STAGE(NT_STAGE_EXPONENTIAL_DECAY)) exponential_decay(scores, c, len, V, s->spare);
    if (STAGE(NT_STAGE_SUPPRESS_TOKENS)) ban_tokens(scores, c->suppress_tokens, c->n_suppress_tokens, V);
    if (STAGE(NT_STAGE_BEGIN_SUPPRESS_TOKENS) && len == c->begin_index)
        ban_tokens(scores, c->begin_suppress_tokens, c->n_begin_suppress_tokens, V);
    if (!STAGE(NT_STAGE_WARPERS)) return;
#undef STAGE
    if (c->do_sample) {
        if (c->temperature != 1.0f)
            for (int64_t i = 0; i < V; i++) scores[i] /= c->temperature;
        if (c->top_k > 0)
            top_k(scores, c->top_k > c->min_tokens_to_keep ? c->top_k : c->min_tokens_to_keep, V, s->spare);
        if (c->top_p < 1.0f) top_p(scores, c->top_p, c->min_tokens_to_keep, V, s);
        if (c->min_p >= 0.0f) min_p(scores, c->min_p, c->min_tokens_to_keep, V, s);
        if (c->typical_p < 1.0f) typical_p(scores, c->typical_p, c->min_tokens_to_keep, V, s);
        if (c->epsilon_cutoff > 0.0f) probability_cutoff(scores, c->epsilon_cutoff, 0, c->min_tokens_to_keep, V, s);
        if (c->eta_cutoff > 0.0f) probability_cutoff(scores, c->eta_cutoff, 1, c->min_tokens_to_keep, V, s);
    }
    if (c->renormalize_logits) nt_log_softmax(scores, scores, V);
}

/* ---------------------------------------------------------------- random numbers and sampling */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nt_rng_seed(nt_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(nt_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double nt_rng_uniform(nt_rng *rng) { return (double)(next_u64(rng) >> 11) * 0x1.0p-53; }

int64_t nt_sample(nt_rng *rng, const float *scores, int64_t V, float *work) {
    float m = max_of(scores, V);
    double total = 0.0;
    for (int64_t i = 0; i < V; i++) {
        work[i] = expf(scores[i] - m); /* unnormalised probabilities */
        total += work[i];
    }
    if (!(total > 0.0 && isfinite(total))) return -1; /* all -inf (NaN from -inf - -inf), NaN or +inf */
    double u = nt_rng_uniform(rng) * total, cumulative = 0.0;
    int64_t last = 0;
    for (int64_t i = 0; i < V; i++) {
        if (work[i] <= 0.0f) continue;
        last = i;
        cumulative += work[i];
        if (u < cumulative) return i;
    }
    return last; /* u landed on the rounding error at the very end */
}
