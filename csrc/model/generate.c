/*
 * The decoding loop of Transformers' generate(), one step per nt_generator_step call: a forward pass,
 * the logits processors (sampling.c), then the choice of tokens: greedy search or multinomial sampling
 * here (GenerationMixin._sample), beam search in beam.c (_beam_search).
 *
 * Shapes: N rows decoded together (B prompts, times num_beams NB with beams), T0 prompt length,
 * M = max_length, G = M - T0 new tokens at most, K = candidates kept per prompt by beam search.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "model/beam.h"
#include "model/sampling.h"

struct nt_generator {
    nt_model *model;
    nt_cache *cache;
    int owns_cache;
    int64_t P0;                  /* prompt positions already in a caller's cache */
    nt_generation_config config; /* token arrays point into `tokens` */
    int64_t *tokens;             /* copies of the config's token arrays */
    float *bias_values;          /* copy of the config's sequence_bias_values */
    nt_generation_outputs out;
    int64_t N, B, NB, T0, M, G, V;
    int64_t E;                   /* consecutive rows that are copies of one prompt (beam search): prefilled once */
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
    nt_row_scratch *scratch;     /* (chunks): work space of each chunk of rows processed in parallel */
    int64_t chunks;
    nt_rng rng;
    nt_beam_search *beam;        /* NULL without beams */
    float *prompt_logits;        /* (N, V) the caller's prompt logits (nt_generator_prefilled), or NULL */
    int64_t context;             /* leading positions of each row that are embeddings, not tokens */
    int64_t uncached;            /* leading tokens of each row that are not in the cache (nt_generator_prefilled) */
    nt_generation_config processing; /* config as the processors see rows: max_length less the context */
    nt_processor_hook hook;      /* the caller's processors, after the stages of hook_stages; or NULL */
    void *hook_ctx;
    uint32_t hook_stages;
};

/* ---------------------------------------------------------------- helpers */

static double wall_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    if (c->no_repeat_ngram_size < 0 || c->encoder_no_repeat_ngram_size < 0 || c->n_eos < 0 || c->n_bad_words < 0 ||
        c->n_suppress_tokens < 0 || c->n_begin_suppress_tokens < 0 || c->n_sequence_bias < 0 || c->n_forced_eos < 0 ||
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
        for (int64_t i = 0; i < g->chunks; i++) nt_row_scratch_free(&g->scratch[i]);
    nt_beam_search_free(g->beam);
    void *buffers[] = {g->tokens, g->bias_values, g->mask, g->step_mask, g->positions, g->step_ids, g->skip,
                       g->unfinished, g->logits, g->scratch, g->prompt_logits};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    if (g->NB > 1) free(g->running);
    free(g);
}

nt_status nt_generator_create(nt_generator **out, nt_error *err, nt_model *model, const nt_generation_config *config,
                              const nt_generation_outputs *outputs, const int64_t *input_ids,
                              const uint8_t *attention_mask, const int64_t *position_ids, int64_t N, int64_t T,
                              nt_cache *cache) {
    *out = NULL;
    nt_status status = check_config(err, config, N, T);
    if (status != NT_OK) return status;
    if (cache != NULL && (nt_cache_batch_size(cache) != N || nt_cache_length(cache) > T))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "the cache holds %lld rows of %lld positions; generate needs %lld rows of at most %lld",
                            (long long)nt_cache_batch_size(cache), (long long)nt_cache_length(cache), (long long)N,
                            (long long)T);
    const nt_config *mc = nt_model_config(model);
    if (cache != NULL && (status = nt_cache_check_fits(err, cache, mc)) != NT_OK) return status;
    /* 16: beam search's staged rows are twice a prompt's beams */
    if (nt_mul_size(nt_mul_size(N, config->max_length), 16) < 0 || nt_mul_size(nt_mul_size(N, mc->vocab_size), 8) < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "%lld rows of %lld tokens are too many to generate",
                            (long long)N, (long long)config->max_length);
    for (int64_t i = 0; i < N * T; i++)
        if (input_ids[i] < 0 || input_ids[i] >= mc->vocab_size)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "input id %lld at index %lld is outside [0, %lld)",
                                (long long)input_ids[i], (long long)i, (long long)mc->vocab_size);
    for (int64_t r = 0; position_ids != NULL && r < N; r++) /* the new tokens' positions count on from the last */
        if (position_ids[r * T + T - 1] > INT64_MAX - config->max_length)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "position id %lld of row %lld leaves no room for "
                                "%lld more", (long long)position_ids[r * T + T - 1], (long long)r,
                                (long long)config->max_length);
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
    int64_t M = g->M, V = g->V, NB = g->NB;

    g->tokens = malloc((size_t)n_tokens * sizeof(int64_t));
    g->bias_values = malloc((size_t)(c->n_sequence_bias + 1) * sizeof(float));
    g->skip = calloc((size_t)N, sizeof(int64_t));
    g->positions = malloc((size_t)(N * T) * sizeof(int64_t));
    g->step_ids = malloc((size_t)(N * T) * sizeof(int32_t));
    g->unfinished = malloc((size_t)N);
    g->logits = malloc((size_t)(N * V) * sizeof(float));
    /* a few chunks of rows per thread, not a work space per row: 1e5 beams would take 1e5 of them */
    g->chunks = 4 * (int64_t)nt_model_num_threads(model);
    if (g->chunks > N) g->chunks = N;
    if (g->chunks < 1) g->chunks = 1;
    g->scratch = calloc((size_t)g->chunks, sizeof(nt_row_scratch));
    g->running = NB > 1 ? malloc((size_t)(N * M) * sizeof(int64_t)) : outputs->sequences;
    int failed = g->tokens == NULL || g->bias_values == NULL || g->skip == NULL || g->positions == NULL ||
                 g->step_ids == NULL || g->unfinished == NULL || g->logits == NULL || g->scratch == NULL ||
                 g->running == NULL;
    if (attention_mask != NULL) {
        g->mask = malloc((size_t)(N * M));
        g->step_mask = malloc((size_t)(N * M));
        failed |= g->mask == NULL || g->step_mask == NULL;
    }
    if (failed) {
        nt_generator_free(g);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the generation state");
    }
    for (int64_t i = 0; i < g->chunks && status == NT_OK; i++) status = nt_row_scratch_init(&g->scratch[i], err, V);
    /* Beam search repeats each prompt num_beams times: when the copies are equal (always, from generate()), the
     * prompt runs once per prompt and its cache is copied, so 1e5 beams cost one prompt's forward pass. */
    g->E = 1;
    if (NB > 1 && cache == NULL) {
        int same = 1;
        for (int64_t r = 0; r < N && same; r++)
            if (r % NB != 0) {
                same = memcmp(input_ids + r * T, input_ids + (r - 1) * T, (size_t)T * sizeof(int64_t)) == 0;
                same = same && (attention_mask == NULL ||
                                memcmp(attention_mask + r * T, attention_mask + (r - 1) * T, (size_t)T) == 0);
            }
        if (same) g->E = NB;
    }
    /* the cache grows as tokens come (the forward pass reserves geometrically): a large max_length that eos
     * cuts short, or many beams, must not allocate cache up front for positions that may never come */
    if (cache != NULL) {
        g->cache = cache;
        g->P0 = nt_cache_length(cache);
    } else if (status == NT_OK) {
        status = nt_cache_create(&g->cache, err, model, N, g->E > 1 ? 1 : T + 1);
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
    g->processing = g->config;

    /* rows, mask and positions: those given, else cumsum(mask) - 1, 0 on padding, as Transformers */
    /* Only the prompt is written now: the rest of the (N, M) rows is touched as tokens come, so that a huge
     * max_length cut short by eos costs address space, not memory or time (beam search's tables too). */
    for (int64_t r = 0; r < N; r++) {
        int64_t position = -1;
        for (int64_t t = 0; t < T; t++) g->running[r * M + t] = input_ids[r * T + t];
        for (int64_t t = 0; g->mask && t < T; t++) g->mask[r * M + t] = attention_mask[r * T + t] != 0;
        for (int64_t t = 0; t < T; t++) {
            int keep = attention_mask == NULL || attention_mask[r * T + t] != 0;
            position += keep;
            g->positions[r * T + t] = position_ids != NULL ? position_ids[r * T + t] : keep ? position : 0;
            g->step_ids[r * T + t] = (int32_t)input_ids[r * T + t];
        }
        g->unfinished[r] = 1;
    }
    nt_rng_seed(&g->rng, c->seed);
    if (NB > 1 &&
        (status = nt_beam_search_create(&g->beam, err, &g->config, g->B, T, V, outputs->sequences, g->running))) {
        nt_generator_free(g);
        return status;
    }
    *out = g;
    return NT_OK;
}

nt_status nt_generator_prefilled(nt_generator *g, nt_error *err, const float *logits, int64_t context,
                                 int64_t uncached) {
    if (g == NULL || logits == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a prefilled prompt needs a generator and its logits");
    if (uncached < 0 || uncached >= g->T0 || (uncached > 0 && context > 0))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "uncached %lld must be in [0, %lld), and 0 with a context", (long long)uncached,
                            (long long)g->T0);
    if (g->length != g->T0 || g->done || g->cache == NULL || nt_cache_length(g->cache) != g->T0 - uncached)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "a prefilled prompt needs a generator that has made no step, over a cache holding the "
                            "whole prompt (%lld positions)", (long long)(g->T0 - uncached));
    if (context < 0 || context > g->T0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "context %lld is outside [0, %lld]", (long long)context,
                            (long long)g->T0);
    if (g->prompt_logits == NULL) g->prompt_logits = malloc((size_t)(g->N * g->V) * sizeof(float));
    if (g->prompt_logits == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the logits");
    memcpy(g->prompt_logits, logits, (size_t)(g->N * g->V) * sizeof(float));
    g->context = context;
    g->uncached = uncached;
    g->P0 = g->T0; /* the first step prefills nothing: the uncached tokens stay out of the cache */
    g->processing.max_length = g->config.max_length - context;
    return NT_OK;
}

int nt_generator_done(const nt_generator *g) { return g->done; }
int64_t nt_generator_length(const nt_generator *g) { return g->length; }
int64_t nt_generator_steps(const nt_generator *g) { return g->steps; }

/* ---------------------------------------------------------------- the forward pass of a step */

/* The prompt of rows that come in groups of E copies: one forward pass over the B distinct rows into a cache of
 * B sequences, then that cache and the last logits copied E times. Row b of a group is row b * E of the inputs. */
static nt_status prefill_shared(nt_generator *g, nt_error *err, const volatile int *cancel) {
    int64_t B = g->N / g->E, T = g->T0, E = g->E, V = g->V;
    int32_t *ids = malloc((size_t)(B * T) * sizeof(int32_t));
    int64_t *positions = malloc((size_t)(B * T) * sizeof(int64_t));
    uint8_t *mask = g->mask != NULL ? malloc((size_t)(B * T)) : NULL;
    nt_cache *prompts = NULL;
    nt_status status = NT_OK;
    if (ids == NULL || positions == NULL || (g->mask != NULL && mask == NULL))
        status = nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the prompt");
    for (int64_t b = 0; b < B && status == NT_OK; b++) {
        memcpy(ids + b * T, g->step_ids + b * E * T, (size_t)T * sizeof(int32_t));
        memcpy(positions + b * T, g->positions + b * E * T, (size_t)T * sizeof(int64_t));
        if (mask != NULL) memcpy(mask + b * T, g->step_mask + b * E * T, (size_t)T);
    }
    if (status == NT_OK) status = nt_cache_create(&prompts, err, g->model, B, T);
    int64_t keep = T - 1;
    if (status == NT_OK)
        status = nt_model_forward(g->model, err, g->logits, NULL, NULL, ids, positions, mask, &keep, 1, B, T, prompts,
                                  NULL, cancel);
    if (status == NT_OK) status = nt_cache_expand(g->cache, err, prompts, E);
    /* logits of prompt b to rows b * E ... b * E + E - 1, from the last prompt down so no source is overwritten */
    for (int64_t b = B - 1; b >= 0 && status == NT_OK; b--)
        for (int64_t j = E - 1; j >= 0; j--)
            if (b * E + j != b) memcpy(g->logits + (b * E + j) * V, g->logits + b * V, (size_t)V * sizeof(float));
    nt_cache_free(prompts);
    free(ids);
    free(positions);
    free(mask);
    return status;
}

static nt_status step_forward(nt_generator *g, nt_error *err, const volatile int *cancel) {
    int first = g->length == g->T0;
    /* S: the positions the cache holds after this step, the rows' columns from `uncached` on */
    int64_t N = g->N, T = first ? g->T0 - g->P0 : 1, S = g->length - g->uncached;
    if (first && T == 0) { /* the caller ran the prompt */
        if (g->prompt_logits == NULL)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                                "the cache holds the whole prompt: its logits must be given (nt_generator_prefilled)");
        memcpy(g->logits, g->prompt_logits, (size_t)(N * g->V) * sizeof(float));
        for (int64_t r = 0; r < N; r++) g->positions[r] = g->positions[r * g->T0 + g->T0 - 1] + 1;
        return NT_OK;
    }
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
        for (int64_t r = 0; r < N; r++) {
            if (!first) g->mask[r * g->M + g->length - 1] = 1; /* the token generated last */
            memcpy(g->step_mask + r * S, g->mask + r * g->M + g->uncached, (size_t)S);
        }
    if (first && g->P0 > 0) /* only the prompt tokens the cache lacks: pack them as (N, T) */
        for (int64_t r = 0; r < N; r++)
            for (int64_t t = 0; t < T; t++) {
                g->step_ids[r * T + t] = g->step_ids[r * g->T0 + g->P0 + t];
                g->positions[r * T + t] = g->positions[r * g->T0 + g->P0 + t];
            }
    /* room for this step's positions, growing geometrically as the forward pass would, but never past max_length:
     * with many rows a position is a lot of memory */
    int64_t capacity = g->cache->capacity;
    if (capacity < S) {
        capacity = 2 * capacity > S ? 2 * capacity : S;
        nt_status status = nt_cache_resize(g->cache, err, capacity < g->M ? capacity : g->M);
        if (status != NT_OK) return status;
    }
    int64_t keep = T - 1;
    nt_status status = first && g->E > 1
                           ? prefill_shared(g, err, cancel)
                           : nt_model_forward(g->model, err, g->logits, NULL, NULL, g->step_ids, g->positions,
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
    float *scores;         /* (N, V) */
    const int64_t *ids;    /* row r's tokens at ids + r * stride, from its first position */
    int64_t stride, length;
    int log_softmax_first; /* beam search processes log-probabilities */
    int from, to;          /* the stages [from, to) */
} process_job;

/* chunks [begin, end): chunk i is rows [i * N / chunks, (i + 1) * N / chunks), with work space i */
static void process_range(void *ctx, int64_t begin, int64_t end) {
    const process_job *job = ctx;
    nt_generator *g = job->g;
    for (int64_t i = begin; i < end; i++)
        for (int64_t r = i * g->N / g->chunks; r < (i + 1) * g->N / g->chunks; r++) {
            float *row = job->scores + r * g->V;
            int64_t ctx = g->context;
            if (job->log_softmax_first) nt_log_softmax(row, row, g->V);
            nt_process_scores(&g->processing, row, job->ids + r * job->stride + ctx, job->length - ctx, g->T0 - ctx,
                              g->skip[r], g->V, &g->scratch[i], job->from, job->to);
        }
}

/* the processors on scores (N, V) of rows of `length` tokens: the core's stages in parallel over rows, the
 * caller's hook after its stages */
static nt_status process_scores(nt_generator *g, nt_error *err, float *scores, const int64_t *ids, int64_t stride,
                                int64_t length, int log_softmax_first) {
    int from = 0;
    for (int stage = 0; stage < NT_STAGE_COUNT; stage++) {
        int hooked = g->hook != NULL && (g->hook_stages >> stage & 1u);
        if (!hooked && stage != NT_STAGE_COUNT - 1) continue;
        process_job job = {g, scores, ids, stride, length, log_softmax_first && from == 0, from, stage + 1};
        nt_threadpool_parallel_for(g->model->pool, process_range, &job, g->chunks, 1);
        from = stage + 1;
        if (hooked) {
            int64_t ctx = g->context;
            nt_status status = g->hook(g->hook_ctx, err, stage, ids + ctx, stride, g->N, length - ctx, scores, g->V);
            if (status != NT_OK) return status;
        }
    }
    return NT_OK;
}

/* raw logits out, processors, processed scores out */
static nt_status process_rows(nt_generator *g, nt_error *err, int log_softmax_first) {
    size_t step_bytes = (size_t)(g->N * g->V) * sizeof(float);
    if (g->out.logits != NULL) memcpy(g->out.logits + g->steps * g->N * g->V, g->logits, step_bytes);
    nt_status status = process_scores(g, err, g->logits, g->running, g->M, g->length, log_softmax_first);
    if (status != NT_OK) return status;
    if (g->out.scores != NULL) memcpy(g->out.scores + g->steps * g->N * g->V, g->logits, step_bytes);
    return NT_OK;
}

nt_status nt_generator_process(nt_generator *g, nt_error *err, const int64_t *ids, int64_t length, float *scores) {
    if (g == NULL || ids == NULL || scores == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "processing scores needs a generator, ids and scores");
    if (g->beam != NULL)
        return nt_error_set(err, NT_ERROR_UNSUPPORTED, "beam search processes log-probabilities of its own beams");
    if (length < g->T0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "rows of %lld tokens are shorter than the prompt (%lld)",
                            (long long)length, (long long)g->T0);
    for (int64_t i = 0; i < g->N * length; i++) /* the processors index scores by these ids */
        if (ids[i] < 0 || ids[i] >= g->V)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "token id %lld is outside the vocabulary (%lld)",
                                (long long)ids[i], (long long)g->V);
    return process_scores(g, err, scores, ids, length, length, 0);
}

nt_status nt_generator_set_stop_hook(nt_generator *g, nt_error *err, nt_stop_hook hook, void *ctx) {
    if (g == NULL || g->beam == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a stop hook needs a beam search generator");
    if (g->steps > 0 || g->length != g->T0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a stop hook is set before the first step");
    g->beam->stop_hook = hook;
    g->beam->stop_ctx = ctx;
    return NT_OK;
}

nt_status nt_generator_set_processor_hook(nt_generator *g, nt_error *err, nt_processor_hook hook, void *ctx,
                                          uint32_t stages) {
    if (g == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a processor hook needs a generator");
    if (g->steps > 0 || g->length != g->T0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a processor hook is set before the first step");
    if (stages >> NT_STAGE_WARPERS != 0 || (hook == NULL) != (stages == 0))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "processor hook stages 0x%x: a hook follows stages below %d, and has at least one",
                            (unsigned)stages, (int)NT_STAGE_WARPERS);
    g->hook = hook;
    g->hook_ctx = ctx;
    g->hook_stages = stages;
    return NT_OK;
}

/* ---------------------------------------------------------------- greedy search and sampling */

/* torch.multinomial's refusal, where Transformers samples from such scores */
static nt_status no_distribution(nt_error *err) {
    return nt_error_set(err, NT_ERROR_NOT_FINITE,
                        "cannot sample: after the logits processors every token's score is -inf, or one is NaN or "
                        "+inf, so they give no probability distribution (torch: probability tensor contains either "
                        "inf, nan or element < 0)");
}

static nt_status select_tokens(nt_generator *g, nt_error *err) {
    const nt_generation_config *c = &g->config;
    int64_t M = g->M, L = g->length;
    for (int64_t r = 0; r < g->N; r++) {
        const float *scores = g->logits + r * g->V;
        int64_t token = c->do_sample ? nt_sample(&g->rng, scores, g->V, g->scratch[0].spare) : nt_argmax(scores, g->V);
        if (token < 0) return no_distribution(err);
        if ((c->n_eos > 0 || c->custom_eos_criteria) && !g->unfinished[r]) token = c->pad_token_id;
        g->running[r * M + L] = token;
    }
    g->length++;
    int timed_out = c->deadline > 0 && wall_clock() > c->deadline;
    int any = 0;
    for (int64_t r = 0; r < g->N; r++) {
        if (g->length >= M || timed_out || (!c->custom_eos_criteria && nt_is_eos(c, g->running[r * M + L])))
            g->unfinished[r] = 0;
        any |= g->unfinished[r];
    }
    g->done = !any;
    return NT_OK;
}

/* ---------------------------------------------------------------- beam search (model/beam.c) */

static nt_status beam_select(nt_generator *g, nt_error *err) {
    const nt_generation_config *c = &g->config;
    int timed_out = c->deadline > 0 && wall_clock() > c->deadline;
    int done = nt_beam_search_step(g->beam, err, g->running, g->logits, g->length, &g->rng, timed_out);
    if (done == -2) return g->beam->stop_status;
    if (done < 0) return no_distribution(err);
    g->done = done;
    g->length++;
    if (g->out.sequence_scores != NULL)
        memcpy(g->out.sequence_scores, g->beam->beam_scores, (size_t)(g->B * g->NB) * sizeof(float));
    if (g->out.running_parents != NULL)
        memcpy(g->out.running_parents + g->steps * g->N, g->beam->reorder, (size_t)g->N * sizeof(int64_t));
    if (g->out.running_tokens != NULL)
        for (int64_t r = 0; r < g->N; r++)
            g->out.running_tokens[g->steps * g->N + r] = g->running[r * g->M + g->length - 1];
    return nt_cache_reorder(g->cache, err, g->beam->reorder); /* after the last step too, as Transformers */
}

/* ---------------------------------------------------------------- the step */

nt_status nt_generator_step(nt_generator *g, nt_error *err, const volatile int *cancel) {
    if (g->done || g->cache == NULL) return NT_OK;
    nt_status status = step_forward(g, err, cancel);
    if (status != NT_OK) return status;
    status = process_rows(g, err, g->beam != NULL);
    if (status == NT_OK) status = g->beam != NULL ? beam_select(g, err) : select_tokens(g, err);
    if (status != NT_OK) {
        g->done = 1; /* the step is half made: nothing more can follow it */
        return status;
    }
    g->steps++;
    if (g->length >= g->M) g->done = 1;
    if (g->done && g->beam != NULL) nt_beam_search_finish(g->beam, g->out.beam_indices, g->config.beam_fill_token_id);
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
    return g->beam != NULL ? nt_beam_search_output_length(g->beam, n) : g->length - g->T0;
}
