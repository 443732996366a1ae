/* A C-only smoke test of the generator under AddressSanitizer: a random tiny model, every decoding mode; and the
 * cache's operations (crop, select, copy, read) against forward passes on the same model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nemotron.h"
static float frand(unsigned *s) { *s = *s * 1103515245u + 12345u; return ((*s >> 8) & 0xffff) / 65536.0f - 0.5f; }
/* Every decoding mode from `first_mode` on, with a vocabulary of V and n_eos eos tokens (62 of 4096: beam search
 * keeps 63 candidates per beam, where its selections take the most work space). */
#define CHECK(cond) do { if (!(cond)) { printf("cache check failed, line %d: %s (%s)\n", __LINE__, #cond, err.message); return 1; } } while (0)

/* a forward pass over T tokens of B rows from position P; logits (B, V) of the last one */
static nt_status step(nt_model *m, nt_error *err, nt_cache *c, const int32_t *ids, int64_t B, int64_t T, int64_t P,
                      float *logits) {
    int64_t positions[64], keep = T - 1;
    for (int64_t i = 0; i < B * T; i++) positions[i] = P + i % T;
    return nt_model_forward(m, err, logits, NULL, NULL, ids, positions, NULL, &keep, 1, B, T, c, NULL, NULL);
}

static int close_enough(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-5f) return 0;
    return 1;
}

/* The cache operations on a model of 2 layers, 2 key/value heads of 8, a vocabulary of V. */
static int cache_checks(nt_model *m, int64_t V) {
    enum { B = 3, T = 5, NKV = 2, D = 8 };
    nt_error err = {0};
    int32_t ids[B * T], next[B];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 11 + 3) % V;
    for (int i = 0; i < B; i++) next[i] = (i * 5 + 1) % V;
    float *full = malloc(B * V * 4), *again = malloc(B * V * 4), *picked = malloc(4 * V * 4);
    float keys[B * NKV * T * D], values[B * NKV * T * D], read[4 * NKV * T * D];
    nt_cache *c, *copy, *short_c;
    CHECK(nt_cache_create(&c, &err, m, B, 0) == NT_OK && step(m, &err, c, ids, B, T, 0, full) == NT_OK);
    CHECK(nt_cache_num_layers(c) == 2 && nt_cache_num_kv_heads(c) == NKV && nt_cache_head_dim(c) == D &&
          nt_cache_dtype(c) == NT_DTYPE_F32 && nt_cache_length(c) == T);
    CHECK(nt_cache_read(c, &err, 1, 0, keys, B * NKV * T * D) == NT_OK);
    CHECK(nt_cache_read(c, &err, 1, 1, values, B * NKV * T * D) == NT_OK);
    /* what reading refuses */
    CHECK(nt_cache_read(c, &err, 2, 0, keys, B * NKV * T * D) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_read(c, &err, -1, 0, keys, B * NKV * T * D) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_read(c, &err, 1, 2, keys, B * NKV * T * D) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_read(c, &err, 1, 0, keys, B * NKV * T * D - 1) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_read(c, &err, 1, 0, NULL, B * NKV * T * D) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_read(NULL, &err, 1, 0, keys, B * NKV * T * D) == NT_ERROR_INVALID_ARGUMENT);

    /* a copy reads the same and is independent */
    CHECK(nt_cache_copy(&copy, &err, c) == NT_OK && nt_cache_read(copy, &err, 1, 0, read, B * NKV * T * D) == NT_OK);
    CHECK(memcmp(read, keys, sizeof keys) == 0);
    nt_cache_free(copy);
    CHECK(nt_cache_copy(&short_c, &err, c) == NT_OK);
    CHECK(nt_cache_copy(NULL, &err, c) == NT_ERROR_INVALID_ARGUMENT && nt_cache_copy(&copy, &err, NULL) == NT_ERROR_INVALID_ARGUMENT && copy == NULL);
    CHECK(nt_cache_copy(&copy, &err, c) == NT_OK);

    /* crop to T - 2 positions, then the last two tokens again: the logits of the uncropped pass */
    CHECK(nt_cache_crop(short_c, &err, T + 1) == NT_ERROR_INVALID_ARGUMENT && nt_cache_length(short_c) == T);
    CHECK(nt_cache_crop(short_c, &err, -1) == NT_ERROR_INVALID_ARGUMENT && nt_cache_crop(NULL, &err, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_crop(short_c, &err, T - 2) == NT_OK && nt_cache_length(short_c) == T - 2);
    CHECK(nt_cache_read(short_c, &err, 1, 0, read, B * NKV * (T - 2) * D) == NT_OK);
    for (int b = 0; b < B * NKV; b++) CHECK(memcmp(read + b * (T - 2) * D, keys + b * T * D, (T - 2) * D * 4) == 0);
    int32_t tail[B * 2];
    for (int b = 0; b < B; b++) tail[b * 2] = ids[b * T + T - 2], tail[b * 2 + 1] = ids[b * T + T - 1];
    CHECK(step(m, &err, short_c, tail, B, 2, T - 2, again) == NT_OK && nt_cache_length(short_c) == T);
    CHECK(close_enough(again, full, B * V));
    CHECK(nt_cache_crop(short_c, &err, 0) == NT_OK && nt_cache_length(short_c) == 0);

    /* select rows 2, 0, 2, 1: row i then decodes as the original row rows[i] */
    int64_t rows[4] = {2, 0, 2, 1}, bad[2] = {0, 3}, negative[1] = {-1};
    CHECK(nt_cache_select(copy, &err, bad, 2) == NT_ERROR_INVALID_ARGUMENT && nt_cache_batch_size(copy) == B);
    CHECK(nt_cache_select(copy, &err, negative, 1) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_select(copy, &err, rows, 0) == NT_ERROR_INVALID_ARGUMENT && nt_cache_select(copy, &err, NULL, 1) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_select(NULL, &err, rows, 4) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_cache_select(copy, &err, rows, 4) == NT_OK && nt_cache_batch_size(copy) == 4 && nt_cache_length(copy) == T);
    CHECK(nt_cache_read(copy, &err, 1, 1, read, 4 * NKV * T * D) == NT_OK);
    for (int i = 0; i < 4; i++) CHECK(memcmp(read + i * NKV * T * D, values + rows[i] * NKV * T * D, NKV * T * D * 4) == 0);
    int32_t picked_next[4];
    for (int i = 0; i < 4; i++) picked_next[i] = next[rows[i]];
    CHECK(step(m, &err, c, next, B, 1, T, full) == NT_OK && step(m, &err, copy, picked_next, 4, 1, T, picked) == NT_OK);
    for (int i = 0; i < 4; i++) CHECK(close_enough(picked + i * V, full + rows[i] * V, V));
    /* an empty cache takes a new number of sequences too */
    CHECK(nt_cache_select(short_c, &err, rows, 1) == NT_OK && nt_cache_batch_size(short_c) == 1);
    nt_cache_free(c);
    nt_cache_free(copy);
    nt_cache_free(short_c);

    /* a bfloat16 cache reads widened: every value a bfloat16 */
    CHECK(nt_model_set_cache_dtype(m, &err, NT_DTYPE_BF16) == NT_OK);
    CHECK(nt_cache_create(&c, &err, m, B, 0) == NT_OK && step(m, &err, c, ids, B, T, 0, full) == NT_OK);
    CHECK(nt_cache_dtype(c) == NT_DTYPE_BF16 && nt_cache_read(c, &err, 0, 0, keys, B * NKV * T * D) == NT_OK);
    CHECK(nt_cache_copy(&copy, &err, c) == NT_OK && nt_cache_read(copy, &err, 0, 0, read, B * NKV * T * D) == NT_OK);
    CHECK(memcmp(read, keys, sizeof keys) == 0);
    int nonzero = 0;
    for (int i = 0; i < B * NKV * T * D; i++) {
        uint32_t bits;
        memcpy(&bits, &keys[i], 4);
        CHECK((bits & 0xffff) == 0);
        nonzero += keys[i] != 0.0f;
    }
    CHECK(nonzero > 0);
    nt_cache_free(c);
    nt_cache_free(copy);
    CHECK(nt_model_set_cache_dtype(m, &err, NT_DTYPE_F32) == NT_OK);
    free(full);
    free(again);
    free(picked);
    printf("cache checks: ok\n");
    return 0;
}

#undef CHECK
#define CHECK(cond) do { if (!(cond)) { printf("prefilled check failed, line %d: %s (%s)\n", __LINE__, #cond, err.message); return 1; } } while (0)

/* nt_generator_prefilled: a prompt the caller ran into the cache itself, then the loop from its last logits, gives
 * the tokens of the ordinary path; the refusals leave the generator usable. */
static int prefilled_checks(nt_model *m, int64_t V) {
    enum { N = 2, T = 5, M = 12 };
    nt_error err = {0};
    nt_generation_config g = {.max_length = M, .pad_token_id = 0, .beam_fill_token_id = 0, .forced_bos_token_id = -1,
                              .repetition_penalty = 1.3f, .temperature = 1.0f, .top_p = 1.0f, .typical_p = 1.0f,
                              .min_tokens_to_keep = 1, .num_beams = 1, .length_penalty = 1.0f};
    int64_t ids[N * T], ordinary[N * M], prefilled[N * M];
    int32_t ids32[N * T];
    for (int i = 0; i < N * T; i++) ids32[i] = (int32_t)(ids[i] = (i * 11 + 3) % V);
    float *logits = calloc(N * V, sizeof(float));
    CHECK(logits != NULL);
    nt_generation_outputs out = {.sequences = ordinary};
    nt_generator *gen;
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, 0) == NT_ERROR_INVALID_ARGUMENT); /* no cache holding the prompt */
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_length(gen) == M);
    nt_cache_free(nt_generator_take_cache(gen));
    nt_generator_free(gen);

    nt_cache *c;
    CHECK(nt_cache_create(&c, &err, m, N, 0) == NT_OK && step(m, &err, c, ids32, N, T, 0, logits) == NT_OK);
    out.sequences = prefilled;
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, c) == NT_OK);
    CHECK(nt_generator_prefilled(gen, &err, NULL, 0, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_prefilled(NULL, &err, logits, 0, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_prefilled(gen, &err, logits, -1, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_prefilled(gen, &err, logits, T + 1, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, 0) == NT_OK);
    CHECK(nt_generator_run(gen, &err, 1, NULL) == NT_OK);
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, 0) == NT_ERROR_INVALID_ARGUMENT); /* after a step */
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_length(gen) == M);
    CHECK(memcmp(prefilled, ordinary, sizeof ordinary) == 0);
    nt_generator_free(gen);

    /* the cache holds the whole prompt but no logits were given: the first step says so */
    CHECK(nt_cache_crop(c, &err, T) == NT_OK);
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, c) == NT_OK);
    CHECK(nt_generator_run(gen, &err, 1, NULL) == NT_ERROR_INVALID_ARGUMENT && strstr(err.message, "nt_generator_prefilled"));
    nt_generator_free(gen);
    nt_cache_free(c);

    /* uncached: rows of T tokens over a cache of their last T - U (at the positions the mask gives them) decode as
     * those T - U alone; the first U stay in the rows, for the processors */
    enum { U = 2 };
    nt_generation_config plain = g;
    plain.repetition_penalty = 1.0f;
    int64_t tail[N * (T - U)], short_rows[N * (M - U)];
    int32_t tail32[N * (T - U)];
    uint8_t mask[N * T];
    for (int i = 0; i < N * T; i++) mask[i] = i % T >= U;
    for (int r = 0; r < N; r++)
        for (int t = 0; t < T - U; t++) tail32[r * (T - U) + t] = (int32_t)(tail[r * (T - U) + t] = ids[r * T + U + t]);
    plain.max_length = M - U;
    out.sequences = short_rows;
    CHECK(nt_generator_create(&gen, &err, m, &plain, &out, tail, NULL, NULL, N, T - U, NULL) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK);
    nt_generator_free(gen);
    CHECK(nt_cache_create(&c, &err, m, N, 0) == NT_OK && step(m, &err, c, tail32, N, T - U, 0, logits) == NT_OK);
    plain.max_length = M;
    out.sequences = prefilled;
    CHECK(nt_generator_create(&gen, &err, m, &plain, &out, ids, mask, NULL, N, T, c) == NT_OK);
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, U + 1) == NT_ERROR_INVALID_ARGUMENT); /* the cache holds T - U */
    CHECK(nt_generator_prefilled(gen, &err, logits, 1, U) == NT_ERROR_INVALID_ARGUMENT);     /* not with a context */
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, T) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_prefilled(gen, &err, logits, 0, U) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_length(gen) == M);
    for (int r = 0; r < N; r++) {
        CHECK(memcmp(prefilled + r * M, ids + r * T, U * sizeof(int64_t)) == 0);
        CHECK(memcmp(prefilled + r * M + U, short_rows + r * (M - U), (M - U) * sizeof(int64_t)) == 0);
    }
    nt_generator_free(gen);
    nt_cache_free(c);

    free(logits);
    printf("prefilled checks: ok\n");
    return 0;
}

#undef CHECK
#define CHECK(cond) do { if (!(cond)) { printf("custom eos check failed, line %d: %s (%s)\n", __LINE__, #cond, err.message); return 1; } } while (0)

/* greedy search of max_length tokens with every processor off and no eos */
static nt_generation_config neutral_config(int64_t max_length) {
    return (nt_generation_config){.max_length = max_length, .pad_token_id = 0, .beam_fill_token_id = 0,
                                  .forced_bos_token_id = -1, .repetition_penalty = 1.0f, .temperature = 1.0f,
                                  .top_p = 1.0f, .typical_p = 1.0f, .min_tokens_to_keep = 1, .num_beams = 1,
                                  .length_penalty = 1.0f, .decay_start = INFINITY};
}

/* custom_eos_criteria: an eos id the rows take stops none of them; a row the caller stops gets pad_token_id after,
 * even with no eos ids */
static int custom_eos_checks(nt_model *m, int64_t V) {
    enum { N = 2, T = 5, M = 12 };
    nt_error err = {0};
    nt_generation_config plain = neutral_config(M);
    int64_t ids[N * T], reference[N * M], custom[N * M];
    for (int i = 0; i < N * T; i++) ids[i] = (i * 11 + 3) % V;
    nt_generation_outputs out = {.sequences = reference}; /* without eos ids */
    nt_generator *gen;
    CHECK(nt_generator_create(&gen, &err, m, &plain, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK);
    nt_generator_free(gen);
    plain.eos_token_ids = &reference[T + 1]; /* the token row 0 took second */
    plain.n_eos = 1;
    plain.custom_eos_criteria = 1;
    plain.pad_token_id = (reference[M + T + 1] + 1) % V; /* not the token row 1 takes there */
    out.sequences = custom;
    CHECK(nt_generator_create(&gen, &err, m, &plain, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_length(gen) == M);
    CHECK(memcmp(custom, reference, sizeof custom) == 0);
    nt_generator_free(gen);
    plain.n_eos = 0;
    uint8_t stop[N] = {0, 1};
    CHECK(nt_generator_create(&gen, &err, m, &plain, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_run(gen, &err, 1, NULL) == NT_OK && nt_generator_stop_rows(gen, &err, stop) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_length(gen) == M);
    for (int t = T + 1; t < M; t++) CHECK(custom[M + t] == plain.pad_token_id && custom[t] == reference[t]);
    nt_generator_free(gen);
    printf("custom eos checks: ok\n");
    return 0;
}

#undef CHECK
#define CHECK(cond) do { if (!(cond)) { printf("process check failed, line %d: %s (%s)\n", __LINE__, #cond, err.message); return 1; } } while (0)

/* nt_generator_process: the step's processors on given scores (min_length bans eos below it); ids outside the
 * vocabulary, which the processors would index scores by, are refused */
static int process_checks(nt_model *m, int64_t V) {
    enum { N = 1, T = 3, M = 10 };
    nt_error err = {0};
    int64_t eos = 1, ids[N * (T + 2)] = {4, 5, 6, 7, 8};
    nt_generation_config g = neutral_config(M);
    g.min_length = T + 2;
    g.eos_token_ids = &eos;
    g.n_eos = 1;
    int64_t sequences[N * M];
    nt_generation_outputs out = {.sequences = sequences};
    nt_generator *gen;
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    float *scores = malloc(sizeof(float) * (size_t)V);
    CHECK(scores != NULL);
    for (int64_t v = 0; v < V; v++) scores[v] = 1.0f;
    CHECK(nt_generator_process(gen, &err, ids, T + 1, scores) == NT_OK);
    CHECK(scores[eos] == -INFINITY && scores[0] == 1.0f); /* length 4 < min_length 5 */
    for (int64_t v = 0; v < V; v++) scores[v] = 1.0f;
    CHECK(nt_generator_process(gen, &err, ids, T + 2, scores) == NT_OK && scores[eos] == 1.0f);
    CHECK(nt_generator_process(gen, &err, ids, T - 1, scores) == NT_ERROR_INVALID_ARGUMENT);
    ids[T] = V;
    CHECK(nt_generator_process(gen, &err, ids, T + 1, scores) == NT_ERROR_INVALID_ARGUMENT);
    ids[T] = -1;
    CHECK(nt_generator_process(gen, &err, ids, T + 1, scores) == NT_ERROR_INVALID_ARGUMENT);
    free(scores);
    nt_generator_free(gen);
    printf("process checks: ok\n");
    return 0;
}

#undef CHECK
#define CHECK(cond) do { if (!(cond)) { printf("hook check failed, line %d: %s (%s)\n", __LINE__, #cond, err.message); return 1; } } while (0)

/* a processor hook: records the stage and rows it was given, then bans token 3 (or fails when asked to) */
typedef struct {
    int calls, fail, stage;
    int64_t rows, length, stride, last_id;
} hook_record;

static nt_status ban_three(void *ctx, nt_error *err, int stage, const int64_t *ids, int64_t stride, int64_t rows,
                           int64_t length, float *scores, int64_t V) {
    hook_record *h = ctx;
    h->calls++;
    h->stage = stage;
    h->rows = rows;
    h->length = length;
    h->stride = stride;
    h->last_id = ids[(rows - 1) * stride + length - 1];
    if (h->fail) return nt_error_set(err, NT_ERROR_INTERNAL, "the hook failed");
    for (int64_t r = 0; r < rows; r++) scores[r * V + 3] = -INFINITY;
    return NT_OK;
}

/* a stop hook: records the candidates it was given and stops every one (or fails when asked to) */
static nt_status stop_all(void *ctx, nt_error *err, const int64_t *ids, int64_t rows, int64_t length, uint8_t *hits) {
    hook_record *h = ctx;
    h->calls++;
    h->rows = rows;
    h->length = length;
    h->last_id = ids[rows * length - 1];
    if (h->fail) return nt_error_set(err, NT_ERROR_INTERNAL, "the hook failed");
    memset(hits, 1, (size_t)rows);
    return NT_OK;
}

/* nt_generator_set_processor_hook: called once a step at its stage with the rows so far, its changes to the scores
 * kept (greedy search never picks what it banned, and the scores out show the ban); a failing hook ends the step
 * with its status; what setting a hook refuses */
static int hook_checks(nt_model *m, int64_t V) {
    enum { N = 2, T = 4, M = 9 };
    nt_error err = {0};
    nt_generation_config g = {.max_length = M, .pad_token_id = 0, .beam_fill_token_id = 0, .forced_bos_token_id = -1,
                              .temperature = 1.0f, .top_p = 1.0f, .typical_p = 1.0f, .min_tokens_to_keep = 1,
                              .num_beams = 1, .length_penalty = 1.0f, .repetition_penalty = 1.0f,
                              .encoder_repetition_penalty = 1.0f, .min_p = -1.0f};
    int64_t ids[N * T], seqs[N * M];
    for (int i = 0; i < N * T; i++) ids[i] = (i * 5 + 1) % V;
    float scores[(M - T) * N * 64];
    CHECK(V <= 64);
    nt_generation_outputs out = {.sequences = seqs, .scores = scores};
    nt_generator *gen;
    hook_record h = {0};
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_set_processor_hook(NULL, &err, ban_three, &h, 1u << NT_STAGE_CUSTOM) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_set_processor_hook(gen, &err, ban_three, &h, 1u << NT_STAGE_WARPERS) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_set_processor_hook(gen, &err, ban_three, &h, 0) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_set_processor_hook(gen, &err, NULL, &h, 1u) == NT_ERROR_INVALID_ARGUMENT);
    CHECK(nt_generator_set_processor_hook(gen, &err, ban_three, &h, 1u << NT_STAGE_CUSTOM) == NT_OK);
    CHECK(nt_generator_run(gen, &err, 1, NULL) == NT_OK && h.calls == 1 && h.stage == NT_STAGE_CUSTOM);
    CHECK(h.rows == N && h.length == T && h.stride == M && h.last_id == ids[N * T - 1]);
    CHECK(nt_generator_set_processor_hook(gen, &err, NULL, NULL, 0) == NT_ERROR_INVALID_ARGUMENT); /* after a step */
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && h.calls == M - T && h.length == M - 1);
    for (int64_t r = 0; r < N; r++)
        for (int64_t t = T; t < M; t++) CHECK(seqs[r * M + t] != 3);
    for (int64_t i = 0; i < (M - T) * N; i++) CHECK(isinf(scores[i * V + 3]) && scores[i * V + 3] < 0);
    nt_generator_free(gen);

    /* a hook that fails: the step ends with its status and the generator is done */
    h = (hook_record){.fail = 1};
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_set_processor_hook(gen, &err, ban_three, &h, 1u << NT_STAGE_PREFIX_ALLOWED_TOKENS) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_ERROR_INTERNAL && strstr(err.message, "the hook failed"));
    CHECK(h.calls == 1 && h.stage == NT_STAGE_PREFIX_ALLOWED_TOKENS && nt_generator_done(gen));
    nt_generator_free(gen);

    /* beam search's stop hook: sees every prompt's K candidates of length + 1 tokens; stopping them all ends the
     * search after one step, as eos on every candidate would; a failing hook ends the step with its status */
    CHECK(nt_generator_create(&gen, &err, m, &g, &out, ids, NULL, NULL, N, T, NULL) == NT_OK);
    CHECK(nt_generator_set_stop_hook(gen, &err, stop_all, &h) == NT_ERROR_INVALID_ARGUMENT); /* no beams */
    nt_generator_free(gen);
    nt_generation_config beams = g;
    beams.num_beams = 2;
    int64_t beam_ids[2 * N * T], beam_seqs[2 * N * M];
    for (int i = 0; i < 2 * N * T; i++) beam_ids[i] = ids[(i / (2 * T)) * T + i % T]; /* each prompt twice */
    nt_generation_outputs beam_out = {.sequences = beam_seqs};
    h = (hook_record){0};
    CHECK(nt_generator_create(&gen, &err, m, &beams, &beam_out, beam_ids, NULL, NULL, 2 * N, T, NULL) == NT_OK);
    CHECK(nt_generator_set_stop_hook(gen, &err, stop_all, &h) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_OK && nt_generator_steps(gen) == 1 && h.calls == 1);
    CHECK(h.rows == N * 2 * 2 && h.length == T + 1); /* K = 2 x num_beams candidates of each prompt */
    CHECK(nt_generator_beam_output_length(gen, 2) == 1);
    nt_generator_free(gen);
    h = (hook_record){.fail = 1};
    CHECK(nt_generator_create(&gen, &err, m, &beams, &beam_out, beam_ids, NULL, NULL, 2 * N, T, NULL) == NT_OK);
    CHECK(nt_generator_set_stop_hook(gen, &err, stop_all, &h) == NT_OK);
    CHECK(nt_generator_run(gen, &err, -1, NULL) == NT_ERROR_INTERNAL && strstr(err.message, "the hook failed"));
    nt_generator_free(gen);
    printf("hook checks: ok\n");
    return 0;
}

static int run(int64_t V, int64_t n_eos, int first_mode) {
    nt_config c = {.vocab_size = V, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
                   .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rotary_dim = 4,
                   .rope_attention_scaling = 1.0f, .norm_eps = 1e-5f, .hidden_act = NT_ACT_RELU2};
    float inv_freq[2] = {1.0f, 0.01f};
    c.inv_freq = inv_freq;
    int64_t H = 32, I = 48, QD = 32, KVD = 16;
    unsigned seed = 1;
    nt_tensor t[NT_GLOBAL_COUNT + 2 * NT_LAYER_COUNT];
    memset(t, 0, sizeof t);
    float *store[64]; int ns = 0;
#define MAKE(idx, r, cols) do { int64_t n = (r) * ((cols) ? (cols) : 1); float *d = malloc(n * 4); for (int64_t q = 0; q < n; q++) d[q] = frand(&seed); store[ns++] = d; \
    t[idx].data = d; t[idx].dtype = NT_DTYPE_F32; t[idx].ndim = (cols) ? 2 : 1; t[idx].shape[0] = (r); t[idx].shape[1] = (cols); t[idx].nbytes = n * 4; } while (0)
    MAKE(NT_GLOBAL_EMBED_TOKENS, V, H); MAKE(NT_GLOBAL_NORM_WEIGHT, H, 0); MAKE(NT_GLOBAL_NORM_BIAS, H, 0); MAKE(NT_GLOBAL_LM_HEAD, V, H);
    for (int l = 0; l < 2; l++) {
        int b = NT_GLOBAL_COUNT + l * NT_LAYER_COUNT;
        MAKE(b + NT_LAYER_INPUT_NORM_WEIGHT, H, 0); MAKE(b + NT_LAYER_INPUT_NORM_BIAS, H, 0);
        MAKE(b + NT_LAYER_Q_PROJ, QD, H); MAKE(b + NT_LAYER_K_PROJ, KVD, H); MAKE(b + NT_LAYER_V_PROJ, KVD, H);
        MAKE(b + NT_LAYER_O_PROJ, H, QD); MAKE(b + NT_LAYER_POST_NORM_WEIGHT, H, 0); MAKE(b + NT_LAYER_POST_NORM_BIAS, H, 0);
        MAKE(b + NT_LAYER_UP_PROJ, I, H); MAKE(b + NT_LAYER_DOWN_PROJ, H, I);
    }
    nt_error err = {0};
    nt_model *model;
    if (nt_model_create(&model, &err, &c, t, NT_GLOBAL_COUNT + 2 * NT_LAYER_COUNT, "portable", 2) != NT_OK) { printf("model: %s\n", err.message); return 1; }
    int64_t eos[62] = {7, 9}, bad[3] = {4, 5, 6}, bad_ends[2] = {1, 3}, sup[1] = {2}, bias_tok[2] = {1, 3}, bias_ends[1] = {2}, feos[1] = {7};
    for (int64_t i = 2; i < n_eos; i++) eos[i] = 10 + i;
    float bias_vals[1] = {2.0f};
    for (int mode = first_mode; mode < 4; mode++) {
        int64_t NB = mode >= 2 ? 3 : 1, B = 2, N = B * NB, T = 5, M = 16, G = M - T;
        nt_generation_config g = {.max_length = M, .min_length = 8, .eos_token_ids = eos, .n_eos = n_eos, .pad_token_id = 0,
            .beam_fill_token_id = 0, .repetition_penalty = 1.3f, .no_repeat_ngram_size = 2, .bad_words = bad,
            .bad_word_ends = bad_ends, .n_bad_words = 2, .suppress_tokens = sup, .n_suppress_tokens = 1,
            .begin_index = T, .begin_suppress_tokens = sup, .n_begin_suppress_tokens = 1,
            .sequence_bias = bias_tok, .sequence_bias_ends = bias_ends, .sequence_bias_values = bias_vals, .n_sequence_bias = 1,
            .forced_bos_token_id = -1, .forced_eos_token_ids = feos, .n_forced_eos = 1, .remove_invalid_values = 1,
            .decay_start = 8, .decay_factor = 1.2f,
            .do_sample = mode % 2, .temperature = 0.9f, .top_k = 20, .top_p = 0.9f, .min_p = 0.01f, .typical_p = 0.95f,
            .epsilon_cutoff = 0.001f, .eta_cutoff = 0.001f, .renormalize_logits = 1,
            .min_tokens_to_keep = NB > 1 ? 3 : 1, .seed = 42, .num_beams = NB, .length_penalty = 1.0f,
            .early_stopping = NT_EARLY_STOPPING_FALSE};
        int64_t *ids = malloc(N * T * 8); uint8_t *mask = malloc(N * T);
        for (int64_t i = 0; i < N * T; i++) { ids[i] = (i * 7) % V; mask[i] = (i % T) >= (i / T) % 2; }
        int64_t *seqs = malloc(N * M * 8); float *scores = malloc(G * N * V * 4), *logits = malloc(G * N * V * 4);
        float *ss = malloc(N * 4); int64_t *bi = malloc(N * G * 8);
        /* named fields: outputs added later stay NULL without a warning */
        nt_generation_outputs out = {.sequences = seqs, .scores = scores, .logits = logits,
                                     .sequence_scores = NB > 1 ? ss : NULL, .beam_indices = NB > 1 ? bi : NULL};
        nt_generator *gen;
        if (nt_generator_create(&gen, &err, model, &g, &out, ids, mask, NULL, N, T, NULL) != NT_OK) { printf("create: %s\n", err.message); return 1; }
        if (nt_generator_run(gen, &err, -1, NULL) != NT_OK) { printf("run: %s\n", err.message); return 1; }
        printf("V %lld, mode %d: length %lld steps %lld first row:", (long long)V, mode, (long long)nt_generator_length(gen), (long long)nt_generator_steps(gen));
        for (int64_t i = 0; i < nt_generator_length(gen); i++) /* past it: unwritten */ printf(" %lld", (long long)seqs[i]);
        printf("\n");
        nt_cache_free(nt_generator_take_cache(gen));
        nt_generator_free(gen);
        free(ids); free(mask); free(seqs); free(scores); free(logits); free(ss); free(bi);
    }
    if (first_mode == 0 && (cache_checks(model, V) || prefilled_checks(model, V) || custom_eos_checks(model, V) || process_checks(model, V) ||
                            hook_checks(model, V))) return 1;
    nt_model_free(model);
    for (int i = 0; i < ns; i++) free(store[i]);
    return 0;
}

int main(void) { return run(50, 2, 0) || run(4096, 62, 2); }
