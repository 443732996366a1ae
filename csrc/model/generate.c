/*
 * The decoding loop of Transformers' generate(): greedy search, multinomial sampling and beam search
 * (GenerationMixin._sample and _beam_search), one step per nt_generator_step call.
 *
 * Shapes: N rows decoded together (B prompts, times num_beams NB with beams), T0 prompt length,
 * M = max_length, G = M - T0 new tokens at most, K = candidates kept per prompt by beam search.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "model/sampling.h"

/* Transformers' stand-in for minus infinity in beam scores */
#define BEAM_EXCLUDED (-1.0e9f)

struct nt_generator {
    nt_model *model;
    nt_cache *cache;
    int owns_cache;
    int64_t P0;                  /* prompt positions already in a caller's cache */
    nt_generation_config config; /* token arrays point into `tokens` */
    int64_t *tokens;             /* copies of the config's token arrays */
    float *bias_values;          /* copy of the config's sequence_bias_values */
    nt_generation_outputs out;
    int64_t N, B, NB, K, T0, M, G, V;
    int64_t length;              /* tokens per row so far */
    int64_t steps;
    int done;

    int64_t *running;            /* (N, M) the rows being decoded */
    uint8_t *mask;               /* (N, M) attention mask, or NULL when the prompt has no padding */
    uint8_t *step_mask;          /* (N, M) the first `length` columns of mask, packed as (N, S) */
    int64_t *positions;          /* (N, T0) rotary positions of the prompt; then (N) of the next token */
    int32_t *step_ids;           /* (N, T0) */
    int64_t *skip;               /* (N) leading tokens the repetition penalty skips */
    uint8_t *unfinished;         /* (N) */
    float *logits;               /* (N, V) */
    nt_row_scratch *scratch;     /* (N) */
    nt_rng rng;

    /* beam search, after Transformers' _beam_search */
    float *running_scores;         /* (B, NB) */
    int64_t *running_beam_indices; /* (B, NB, G) */
    int64_t *sequences;            /* (B, NB, M) finished hypotheses (out.sequences) */
    float *beam_scores;            /* (B, NB) */
    int64_t *beam_indices;         /* (B, NB, G) */
    uint8_t *is_finished;          /* (B, NB) */
    uint8_t *unsatisfied;          /* (B) the early-stop heuristic still allows improvement */
    float *cand_scores;            /* (B, K) */
    int64_t *cand_flat;            /* (B, K) index into the NB * V continuations */
    uint8_t *cand_hits;            /* (B, K) */
    int64_t *cand_seqs;            /* (B, K, M) */
    int64_t *cand_beam_indices;    /* (B, K, G) */
    int64_t *reorder;              /* (N) */
    int64_t *scratch_rows;         /* (B, NB, M) */
    int64_t *scratch_indices;      /* (B, NB, G) */
    float *scratch_scores;         /* (B, NB + K) */
    int64_t *chosen;               /* (NB) */
    int64_t *best;                 /* (NB) */
    uint8_t *just_finished;        /* (K) */
    uint8_t *finished_flags;       /* (NB) */
    float *new_scores;             /* (NB) */
    uint8_t *taken;                /* (NB * V) beam sampling: candidates drawn so far */
};

/* ---------------------------------------------------------------- helpers */

static double wall_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_eos(const nt_generation_config *c, int64_t token) {
    for (int64_t i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == token) return 1;
    return 0;
}

/* order (n) = indices of the n largest of x (len), largest first, ties by lower index (torch.topk) */
static void top_n(int64_t *order, const float *x, int64_t len, int64_t n) {
    int64_t count = 0;
    for (int64_t i = 0; i < len; i++) {
        if (count == n && !(x[i] > x[order[n - 1]])) continue;
        int64_t j = count < n ? count++ : n - 1;
        while (j > 0 && x[i] > x[order[j - 1]]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

static int64_t *copy_tokens(int64_t **cursor, const int64_t *src, int64_t n) {
    int64_t *dst = *cursor;
    if (n > 0) memcpy(dst, src, (size_t)n * sizeof(int64_t));
    *cursor += n;
    return dst;
}

/* ---------------------------------------------------------------- creation */

static nt_status check_config(nt_error *err, const nt_generation_config *c, int64_t N, int64_t T) {
    if (N <= 0 || T <= 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "generate needs at least one prompt of at least one token");
    if (c->max_length <= T)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "max_length (%lld) must exceed the prompt length (%lld)",
                            (long long)c->max_length, (long long)T);
    if (c->num_beams < 1 || N % c->num_beams != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "num_beams (%lld) must be >= 1 and divide the rows (%lld)",
                            (long long)c->num_beams, (long long)N);
    if (c->no_repeat_ngram_size < 0 || c->n_eos < 0 || c->n_bad_words < 0 || c->n_suppress_tokens < 0 ||
        c->n_begin_suppress_tokens < 0 || c->n_sequence_bias < 0 || c->n_forced_eos < 0 ||
        c->min_tokens_to_keep < 1 || c->top_k < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "invalid generation config");
    for (int64_t w = 0; w < c->n_bad_words; w++)
        if (c->bad_word_ends[w] < (w ? c->bad_word_ends[w - 1] : 0))
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "bad word offsets must not decrease");
    for (int64_t w = 0; w < c->n_sequence_bias; w++)
        if (c->sequence_bias_ends[w] < (w ? c->sequence_bias_ends[w - 1] : 0))
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "sequence bias offsets must not decrease");
    if (c->do_sample && (!(c->temperature > 0.0f) || isnan(c->top_p)))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "temperature must be positive for sampling");
    return NT_OK;
}

void nt_generator_free(nt_generator *g) {
    if (g == NULL) return;
    if (g->owns_cache) nt_cache_free(g->cache);
    if (g->scratch != NULL)
        for (int64_t r = 0; r < g->N; r++) nt_row_scratch_free(&g->scratch[r]);
    void *buffers[] = {g->tokens, g->bias_values, g->mask, g->step_mask, g->positions, g->step_ids, g->skip,
                       g->unfinished, g->logits, g->scratch, g->running_scores, g->running_beam_indices,
                       g->beam_scores, g->beam_indices, g->is_finished, g->unsatisfied, g->cand_scores, g->cand_flat,
                       g->cand_hits, g->cand_seqs, g->cand_beam_indices, g->reorder, g->scratch_rows,
                       g->scratch_indices, g->scratch_scores, g->chosen, g->best, g->just_finished,
                       g->finished_flags, g->new_scores, g->taken};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    if (g->NB > 1) free(g->running);
    free(g);
}

nt_status nt_generator_create(nt_generator **out, nt_error *err, nt_model *model, const nt_generation_config *config,
                              const nt_generation_outputs *outputs, const int64_t *input_ids,
                              const uint8_t *attention_mask, int64_t N, int64_t T, nt_cache *cache) {
    *out = NULL;
    nt_status status = check_config(err, config, N, T);
    if (status != NT_OK) return status;
    if (cache != NULL && (nt_cache_batch_size(cache) != N || nt_cache_length(cache) >= T))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "the cache holds %lld rows of %lld positions; generate needs %lld rows of fewer than %lld",
                            (long long)nt_cache_batch_size(cache), (long long)nt_cache_length(cache), (long long)N,
                            (long long)T);
    const nt_config *mc = nt_model_config(model);
    int64_t K = (config->n_eos + 1 > 2 ? config->n_eos + 1 : 2) * config->num_beams;
    if (nt_mul_size(nt_mul_size(N, config->max_length), 8) < 0 || nt_mul_size(nt_mul_size(N, mc->vocab_size), 8) < 0 ||
        nt_mul_size(nt_mul_size(K * (N / config->num_beams), config->max_length), 8) < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "%lld rows of %lld tokens are too many to generate",
                            (long long)N, (long long)config->max_length);
    for (int64_t i = 0; i < N * T; i++)
        if (input_ids[i] < 0 || input_ids[i] >= mc->vocab_size)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "input id %lld at index %lld is outside [0, %lld)",
                                (long long)input_ids[i], (long long)i, (long long)mc->vocab_size);
    nt_generator *g = calloc(1, sizeof *g);
    if (g == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the generator");
    g->model = model;
    g->config = *config;
    g->out = *outputs;
    g->N = N;
    g->NB = config->num_beams;
    g->B = N / g->NB;
    g->T0 = T;
    g->M = config->max_length;
    g->G = g->M - T;
    g->V = mc->vocab_size;
    g->length = T;
    const nt_generation_config *c = config;
    int64_t n_bad = c->n_bad_words > 0 ? c->bad_word_ends[c->n_bad_words - 1] : 0;
    int64_t n_bias = c->n_sequence_bias > 0 ? c->sequence_bias_ends[c->n_sequence_bias - 1] : 0;
    int64_t n_tokens = c->n_eos + n_bad + c->n_bad_words + c->n_suppress_tokens + c->n_begin_suppress_tokens +
                       n_bias + c->n_sequence_bias + c->n_forced_eos + 1;
    int64_t M = g->M, V = g->V, G = g->G, B = g->B, NB = g->NB;
    g->K = K;

    g->tokens = malloc((size_t)n_tokens * sizeof(int64_t));
    g->bias_values = malloc((size_t)(c->n_sequence_bias + 1) * sizeof(float));
    g->skip = calloc((size_t)N, sizeof(int64_t));
    g->positions = malloc((size_t)(N * T) * sizeof(int64_t));
    g->step_ids = malloc((size_t)(N * T) * sizeof(int32_t));
    g->unfinished = malloc((size_t)N);
    g->logits = malloc((size_t)(N * V) * sizeof(float));
    g->scratch = calloc((size_t)N, sizeof(nt_row_scratch));
    g->running = NB > 1 ? malloc((size_t)(N * M) * sizeof(int64_t)) : outputs->sequences;
    int failed = g->tokens == NULL || g->bias_values == NULL || g->skip == NULL || g->positions == NULL ||
                 g->step_ids == NULL || g->unfinished == NULL || g->logits == NULL || g->scratch == NULL ||
                 g->running == NULL;
    if (attention_mask != NULL) {
        g->mask = malloc((size_t)(N * M));
        g->step_mask = malloc((size_t)(N * M));
        failed |= g->mask == NULL || g->step_mask == NULL;
    }
    if (NB > 1) {
        g->running_scores = malloc((size_t)(B * NB) * sizeof(float));
        g->running_beam_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
        g->sequences = outputs->sequences;
        g->beam_scores = malloc((size_t)(B * NB) * sizeof(float));
        g->beam_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
        g->is_finished = calloc((size_t)(B * NB), 1);
        g->unsatisfied = malloc((size_t)B);
        g->cand_scores = malloc((size_t)(B * K) * sizeof(float));
        g->cand_flat = malloc((size_t)(B * K) * sizeof(int64_t));
        g->cand_hits = malloc((size_t)(B * K));
        g->cand_seqs = malloc((size_t)(B * K * M) * sizeof(int64_t));
        g->cand_beam_indices = malloc((size_t)(B * K * G) * sizeof(int64_t));
        g->reorder = malloc((size_t)N * sizeof(int64_t));
        g->scratch_rows = malloc((size_t)(B * NB * M) * sizeof(int64_t));
        g->scratch_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
        g->scratch_scores = malloc((size_t)(B * (NB + K)) * sizeof(float));
        g->chosen = malloc((size_t)NB * sizeof(int64_t));
        g->best = malloc((size_t)NB * sizeof(int64_t));
        g->just_finished = malloc((size_t)K);
        g->finished_flags = malloc((size_t)NB);
        g->new_scores = malloc((size_t)NB * sizeof(float));
        g->taken = config->do_sample ? malloc((size_t)(NB * V)) : malloc(1);
        failed |= g->running_scores == NULL || g->running_beam_indices == NULL || g->beam_scores == NULL ||
                  g->beam_indices == NULL || g->is_finished == NULL || g->unsatisfied == NULL ||
                  g->cand_scores == NULL || g->cand_flat == NULL || g->cand_hits == NULL || g->cand_seqs == NULL ||
                  g->cand_beam_indices == NULL || g->reorder == NULL || g->scratch_rows == NULL ||
                  g->scratch_indices == NULL || g->scratch_scores == NULL || g->chosen == NULL || g->best == NULL ||
                  g->just_finished == NULL || g->finished_flags == NULL || g->new_scores == NULL ||
                  g->taken == NULL;
    }
    if (failed) {
        nt_generator_free(g);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the generation state");
    }
    for (int64_t r = 0; r < N && status == NT_OK; r++) status = nt_row_scratch_init(&g->scratch[r], err, V);
    /* the cache grows as tokens come (the forward pass reserves geometrically): a large max_length that eos
     * cuts short must not allocate its whole cache up front */
    if (cache != NULL) {
        g->cache = cache;
        g->P0 = nt_cache_length(cache);
    } else if (status == NT_OK) {
        status = nt_cache_create(&g->cache, err, model, N, M < T + 64 ? M : T + 64);
        g->owns_cache = status == NT_OK;
    }
    if (status != NT_OK) {
        nt_generator_free(g);
        return status;
    }

    /* own copies of the token lists */
    int64_t *cursor = g->tokens;
    g->config.eos_token_ids = copy_tokens(&cursor, c->eos_token_ids, c->n_eos);
    g->config.bad_words = copy_tokens(&cursor, c->bad_words, n_bad);
    g->config.bad_word_ends = copy_tokens(&cursor, c->bad_word_ends, c->n_bad_words);
    g->config.suppress_tokens = copy_tokens(&cursor, c->suppress_tokens, c->n_suppress_tokens);
    g->config.begin_suppress_tokens = copy_tokens(&cursor, c->begin_suppress_tokens, c->n_begin_suppress_tokens);
    g->config.sequence_bias = copy_tokens(&cursor, c->sequence_bias, n_bias);
    g->config.sequence_bias_ends = copy_tokens(&cursor, c->sequence_bias_ends, c->n_sequence_bias);
    g->config.forced_eos_token_ids = copy_tokens(&cursor, c->forced_eos_token_ids, c->n_forced_eos);
    if (c->n_sequence_bias > 0)
        memcpy(g->bias_values, c->sequence_bias_values, (size_t)c->n_sequence_bias * sizeof(float));
    g->config.sequence_bias_values = g->bias_values;
    g->config.prompt_padding = NULL;
    if (c->prompt_padding != NULL) memcpy(g->skip, c->prompt_padding, (size_t)N * sizeof(int64_t));

    /* rows, mask and positions: cumsum(mask) - 1, 0 on padding, as Transformers */
    int64_t fill = NB > 1 ? c->beam_fill_token_id : 0;
    for (int64_t r = 0; r < N; r++) {
        int64_t position = -1;
        for (int64_t t = 0; t < M; t++) {
            g->running[r * M + t] = t < T ? input_ids[r * T + t] : fill;
            if (g->mask) g->mask[r * M + t] = t < T ? (attention_mask[r * T + t] != 0) : 1;
        }
        for (int64_t t = 0; t < T; t++) {
            int keep = attention_mask == NULL || attention_mask[r * T + t] != 0;
            position += keep;
            g->positions[r * T + t] = keep ? position : 0;
            g->step_ids[r * T + t] = (int32_t)input_ids[r * T + t];
        }
        g->unfinished[r] = 1;
    }
    nt_rng_seed(&g->rng, c->seed);
    if (NB > 1) {
        memcpy(g->sequences, g->running, (size_t)(N * M) * sizeof(int64_t));
        for (int64_t i = 0; i < B * NB; i++) {
            g->running_scores[i] = i % NB == 0 ? 0.0f : BEAM_EXCLUDED;
            g->beam_scores[i] = BEAM_EXCLUDED;
        }
        for (int64_t i = 0; i < B * NB * G; i++) g->running_beam_indices[i] = g->beam_indices[i] = -1;
        memset(g->unsatisfied, 1, (size_t)B);
    }
    *out = g;
    return NT_OK;
}

int nt_generator_done(const nt_generator *g) { return g->done; }
int64_t nt_generator_length(const nt_generator *g) { return g->length; }
int64_t nt_generator_steps(const nt_generator *g) { return g->steps; }

/* ---------------------------------------------------------------- the forward pass of a step */

static nt_status step_forward(nt_generator *g, nt_error *err, const volatile int *cancel) {
    int first = g->length == g->T0;
    int64_t N = g->N, T = first ? g->T0 - g->P0 : 1, S = g->length;
    if (!first)
        for (int64_t r = 0; r < N; r++) {
            g->step_ids[r] = (int32_t)g->running[r * g->M + g->length - 1];
            if (g->step_ids[r] < 0 || g->step_ids[r] >= g->V)
                return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                                    "token %lld fed back to the model is outside the vocabulary [0, %lld) "
                                    "(is pad_token_id valid?)",
                                    (long long)g->running[r * g->M + g->length - 1], (long long)g->V);
        }
    if (g->mask != NULL)
        for (int64_t r = 0; r < N; r++) memcpy(g->step_mask + r * S, g->mask + r * g->M, (size_t)S);
    if (first && g->P0 > 0) /* only the prompt tokens the cache lacks: pack them as (N, T) */
        for (int64_t r = 0; r < N; r++)
            for (int64_t t = 0; t < T; t++) {
                g->step_ids[r * T + t] = g->step_ids[r * g->T0 + g->P0 + t];
                g->positions[r * T + t] = g->positions[r * g->T0 + g->P0 + t];
            }
    int64_t keep = T - 1;
    nt_status status = nt_model_forward(g->model, err, g->logits, NULL, NULL, g->step_ids, g->positions,
                                        g->mask ? g->step_mask : NULL, &keep, 1, N, T, g->cache, NULL, cancel);
    if (status != NT_OK) return status;
    /* positions of the next tokens: one past each row's last */
    if (first)
        for (int64_t r = 0; r < N; r++) g->positions[r] = g->positions[r * T + T - 1];
    for (int64_t r = 0; r < N; r++) g->positions[r]++;
    return NT_OK;
}

/* ---------------------------------------------------------------- processing rows in parallel */

typedef struct {
    nt_generator *g;
    int log_softmax_first; /* beam search processes log-probabilities */
} process_job;

static void process_range(void *ctx, int64_t begin, int64_t end) {
    const process_job *job = ctx;
    nt_generator *g = job->g;
    for (int64_t r = begin; r < end; r++) {
        float *row = g->logits + r * g->V;
        if (job->log_softmax_first) nt_log_softmax(row, row, g->V);
        nt_process_scores(&g->config, row, g->running + r * g->M, g->length, g->skip[r], g->V, &g->scratch[r]);
    }
}

/* raw logits out, processors, processed scores out */
static void process_rows(nt_generator *g, int log_softmax_first) {
    size_t step_bytes = (size_t)(g->N * g->V) * sizeof(float);
    if (g->out.logits != NULL) memcpy(g->out.logits + g->steps * g->N * g->V, g->logits, step_bytes);
    process_job job = {g, log_softmax_first};
    nt_threadpool_parallel_for(g->model->pool, process_range, &job, g->N, 1);
    if (g->out.scores != NULL) memcpy(g->out.scores + g->steps * g->N * g->V, g->logits, step_bytes);
}

/* ---------------------------------------------------------------- greedy search and sampling */

static void select_tokens(nt_generator *g) {
    const nt_generation_config *c = &g->config;
    int64_t M = g->M, L = g->length;
    for (int64_t r = 0; r < g->N; r++) {
        const float *scores = g->logits + r * g->V;
        int64_t token = c->do_sample ? nt_sample(&g->rng, scores, g->V, g->scratch[r].spare) : nt_argmax(scores, g->V);
        if (c->n_eos > 0 && !g->unfinished[r]) token = c->pad_token_id;
        g->running[r * M + L] = token;
    }
    g->length++;
    int timed_out = c->deadline > 0 && wall_clock() > c->deadline;
    int any = 0;
    for (int64_t r = 0; r < g->N; r++) {
        if (g->length >= M || timed_out || is_eos(c, g->running[r * M + L])) g->unfinished[r] = 0;
        any |= g->unfinished[r];
    }
    g->done = !any;
}

/* ---------------------------------------------------------------- beam search */

/* K continuations of prompt b from its NB * V accumulated log-probabilities (in g->logits), best first */
static void beam_candidates(nt_generator *g, int64_t b) {
    int64_t NB = g->NB, V = g->V, K = g->K;
    float *acc = g->logits + b * NB * V; /* (NB * V) */
    for (int64_t j = 0; j < NB; j++)
        for (int64_t v = 0; v < V; v++) acc[j * V + v] += g->running_scores[b * NB + j];
    int64_t *flat = g->cand_flat + b * K;
    if (!g->config.do_sample) {
        top_n(flat, acc, NB * V, K);
    } else {
        /* K draws without replacement from softmax(acc), then sorted by score (torch.multinomial + sort).
         * Once every candidate of non-zero probability is drawn, torch goes on with zero-probability ones: so
         * do we, in index order. */
        uint8_t *taken = g->taken;
        memset(taken, 0, (size_t)(NB * V));
        float m = -INFINITY;
        for (int64_t i = 0; i < NB * V; i++)
            if (acc[i] > m) m = acc[i];
        double total = 0.0;
        for (int64_t i = 0; i < NB * V; i++) total += exp((double)(acc[i] - m));
        for (int64_t k = 0; k < K; k++) {
            double u = nt_rng_uniform(&g->rng) * total, cumulative = 0.0;
            int64_t pick = -1, last = -1, first_free = -1;
            for (int64_t i = 0; i < NB * V; i++) {
                if (taken[i]) continue;
                if (first_free < 0) first_free = i;
                double p = exp((double)(acc[i] - m));
                if (p <= 0.0) continue;
                last = i;
                cumulative += p;
                if (u < cumulative) {
                    pick = i;
                    break;
                }
            }
            if (pick < 0) pick = last >= 0 ? last : first_free; /* rounding at the end, or only zeros left */
            taken[pick] = 1;
            flat[k] = pick;
            total -= exp((double)(acc[pick] - m));
            if (total < 0) total = 0;
        }
        /* sort the draws by score, best first */
        for (int64_t k = 1; k < K; k++)
            for (int64_t q = k; q > 0 && acc[flat[q]] > acc[flat[q - 1]]; q--) {
                int64_t t = flat[q];
                flat[q] = flat[q - 1];
                flat[q - 1] = t;
            }
    }
    for (int64_t k = 0; k < K; k++) g->cand_scores[b * K + k] = acc[flat[k]];
}

static void beam_step(nt_generator *g) {
    const nt_generation_config *c = &g->config;
    int64_t B = g->B, NB = g->NB, K = g->K, M = g->M, G = g->G, V = g->V, T0 = g->T0, L = g->length;
    int timed_out = c->deadline > 0 && wall_clock() > c->deadline;
    int all_hit = 1;

    for (int64_t b = 0; b < B; b++) {
        beam_candidates(g, b);
        /* the candidates' sequences, beam indices and whether they meet a stopping criterion */
        for (int64_t k = 0; k < K; k++) {
            int64_t flat = g->cand_flat[b * K + k], source = flat / V, token = flat % V;
            int64_t *seq = g->cand_seqs + (b * K + k) * M;
            int64_t *idx = g->cand_beam_indices + (b * K + k) * G;
            memcpy(seq, g->running + (b * NB + source) * M, (size_t)M * sizeof(int64_t));
            memcpy(idx, g->running_beam_indices + (b * NB + source) * G, (size_t)G * sizeof(int64_t));
            seq[L] = token;
            idx[L - T0] = b * NB + source;
            int hit = L + 1 >= M || timed_out || is_eos(c, token);
            g->cand_hits[b * K + k] = (uint8_t)hit;
            all_hit &= hit;
        }

        /* the best NB candidates that did not stop keep running (candidates are copies: no aliasing) */
        float *running_scores = g->scratch_scores + b * (NB + K); /* (K) */
        for (int64_t k = 0; k < K; k++)
            running_scores[k] = g->cand_scores[b * K + k] + (g->cand_hits[b * K + k] ? BEAM_EXCLUDED : 0.0f);
        int64_t *chosen = g->chosen;
        top_n(chosen, running_scores, K, NB);
        for (int64_t j = 0; j < NB; j++) {
            int64_t k = chosen[j], row = b * NB + j;
            memcpy(g->running + row * M, g->cand_seqs + (b * K + k) * M, (size_t)M * sizeof(int64_t));
            memcpy(g->running_beam_indices + row * G, g->cand_beam_indices + (b * K + k) * G,
                   (size_t)G * sizeof(int64_t));
            g->running_scores[row] = running_scores[k];
            g->reorder[row] = g->running_beam_indices[row * G + L - T0]; /* the cache row it continues */
        }

        /* the finished hypotheses: the best NB of those kept so far and the candidates that just stopped */
        int full = c->early_stopping == NT_EARLY_STOPPING_TRUE;
        for (int64_t j = 0; j < NB; j++) full &= g->is_finished[b * NB + j];
        float divisor = (float)pow((double)(L + 1 - T0), (double)c->length_penalty);
        /* merged (NB + K): the finished scores, then the candidates' with the length penalty, excluded (-1e9
         * added, in Transformers' order) unless among the best NB, just stopped and still able to improve */
        float *merged = g->scratch_scores + b * (NB + K);
        uint8_t *just_finished = g->just_finished;
        for (int64_t j = 0; j < NB; j++) merged[j] = g->beam_scores[b * NB + j];
        for (int64_t k = 0; k < K; k++) {
            float score = g->cand_scores[b * K + k] / divisor;
            score += full ? BEAM_EXCLUDED : 0.0f;
            score += g->unsatisfied[b] ? 0.0f : BEAM_EXCLUDED;
            just_finished[k] = g->cand_hits[b * K + k] && k < NB;
            score += just_finished[k] ? 0.0f : BEAM_EXCLUDED;
            merged[NB + k] = score;
        }
        int64_t *best = g->best;
        top_n(best, merged, NB + K, NB);
        uint8_t *finished_flags = g->finished_flags;
        float *new_scores = g->new_scores;
        for (int64_t j = 0; j < NB; j++) {
            int64_t i = best[j];
            const int64_t *seq = i < NB ? g->sequences + (b * NB + i) * M : g->cand_seqs + (b * K + i - NB) * M;
            const int64_t *idx = i < NB ? g->beam_indices + (b * NB + i) * G : g->cand_beam_indices + (b * K + i - NB) * G;
            /* staged, as the kept hypotheses may move among themselves */
            memcpy(g->scratch_rows + (b * NB + j) * M, seq, (size_t)M * sizeof(int64_t));
            memcpy(g->scratch_indices + (b * NB + j) * G, idx, (size_t)G * sizeof(int64_t));
            new_scores[j] = merged[i];
            finished_flags[j] = i < NB ? g->is_finished[b * NB + i] : just_finished[i - NB];
        }
        for (int64_t j = 0; j < NB; j++) {
            memcpy(g->sequences + (b * NB + j) * M, g->scratch_rows + (b * NB + j) * M, (size_t)M * sizeof(int64_t));
            memcpy(g->beam_indices + (b * NB + j) * G, g->scratch_indices + (b * NB + j) * G, (size_t)G * sizeof(int64_t));
            g->beam_scores[b * NB + j] = new_scores[j];
            g->is_finished[b * NB + j] = finished_flags[j];
        }
    }
    g->length++;
    L = g->length;

    /* can a running beam still beat the worst finished one? (_check_early_stop_heuristic) */
    int improvement_possible = 0, all_finished = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t hypothetical = c->early_stopping == NT_EARLY_STOPPING_NEVER && c->length_penalty > 0.0f ? M - T0
                                                                                                       : L - T0;
        float best_possible = g->running_scores[b * NB] / (float)pow((double)hypothetical, (double)c->length_penalty);
        float worst = INFINITY;
        for (int64_t j = 0; j < NB; j++)
            if (g->beam_scores[b * NB + j] < worst) worst = g->beam_scores[b * NB + j];
        int better = 0;
        for (int64_t j = 0; j < NB; j++) better |= best_possible > (g->is_finished[b * NB + j] ? worst : BEAM_EXCLUDED);
        g->unsatisfied[b] &= (uint8_t)better;
        improvement_possible |= g->unsatisfied[b];
        for (int64_t j = 0; j < NB; j++) all_finished &= g->is_finished[b * NB + j];
    }
    int open_beam = !(all_finished && c->early_stopping == NT_EARLY_STOPPING_TRUE);
    g->done = !(improvement_possible && open_beam && !all_hit);
}

/* ---------------------------------------------------------------- the step */

nt_status nt_generator_step(nt_generator *g, nt_error *err, const volatile int *cancel) {
    if (g->done || g->cache == NULL) return NT_OK;
    nt_status status = step_forward(g, err, cancel);
    if (status != NT_OK) return status;
    process_rows(g, g->NB > 1);
    if (g->NB > 1) {
        beam_step(g);
        status = nt_cache_reorder(g->cache, err, g->reorder); /* after the last step too, as Transformers */
    } else {
        select_tokens(g);
    }
    g->steps++;
    if (g->length >= g->M) g->done = 1;
    if (g->out.sequence_scores != NULL && g->NB > 1)
        memcpy(g->out.sequence_scores, g->beam_scores, (size_t)(g->B * g->NB) * sizeof(float));
    if (g->out.beam_indices != NULL && g->NB > 1)
        memcpy(g->out.beam_indices, g->beam_indices, (size_t)(g->B * g->NB * g->G) * sizeof(int64_t));
    return status;
}

nt_status nt_generator_run(nt_generator *g, nt_error *err, int64_t max_steps, const volatile int *cancel) {
    for (int64_t i = 0; (max_steps < 0 || i < max_steps) && !g->done; i++) {
        if (cancel != NULL && *cancel) return nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
        nt_status status = nt_generator_step(g, err, cancel);
        if (status != NT_OK) {
            g->done = 1; /* a failed or interrupted step leaves the rows inconsistent */
            return status;
        }
    }
    return NT_OK;
}

nt_status nt_generator_stop_rows(nt_generator *g, nt_error *err, const uint8_t *rows) {
    if (g->NB > 1) return nt_error_set(err, NT_ERROR_UNSUPPORTED, "rows cannot be stopped one by one in beam search");
    int any = 0;
    for (int64_t r = 0; r < g->N; r++) {
        if (rows[r]) g->unfinished[r] = 0;
        any |= g->unfinished[r];
    }
    if (!any) g->done = 1;
    return NT_OK;
}

nt_cache *nt_generator_take_cache(nt_generator *g) {
    if (!g->owns_cache) return NULL;
    nt_cache *cache = g->cache;
    g->owns_cache = 0;
    g->cache = NULL;
    g->done = 1;
    return cache;
}

int64_t nt_generator_beam_output_length(const nt_generator *g, int64_t n) {
    if (g->NB <= 1) return g->length - g->T0;
    int64_t longest = 0;
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t j = 0; j < n && j < g->NB; j++) {
            const int64_t *idx = g->beam_indices + (b * g->NB + j) * g->G;
            int64_t count = 0;
            for (int64_t t = 0; t < g->G; t++) count += idx[t] != -1;
            if (count > longest) longest = count;
        }
    return longest;
}
