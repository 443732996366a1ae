/*
 * The Nemotron forward pass, step for step as Transformers' modeling_nemotron.py:
 *   x = embed_tokens(input_ids)
 *   per layer: x += o_proj(attention(rope(q_proj(ln1(x))), rope(k_proj(ln1(x))), v_proj(ln1(x))))
 *              x += down_proj(act(up_proj(ln2(x))))
 *   logits = lm_head(norm(x))
 * where ln is LayerNorm1P and act is relu^2 for every released checkpoint.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* MLP rows are processed in chunks so that the (rows, I) activation stays near this many floats.
 * Threads split a matmul's columns in whole blocks of MATMUL_COLUMN_BLOCK: a multiple of every kernel
 * set's panel width (16 for avx2, 48 for avx512), so that only the last block has a partial panel. */
enum { MLP_CHUNK_FLOATS = 4 << 20, MATMUL_COLUMN_BLOCK = 48 };

/* ---------------------------------------------------------------- threaded building blocks */

typedef struct {
    nt_matmul_fn fn;
    float *y;           /* (M, N) */
    const float *x;     /* (M, K) */
    const nt_tensor *w; /* (N, K) */
    const float *bias;  /* (N) or NULL */
    nt_activation act;
    int64_t M, N;
} matmul_job;

/* Each thread adds the bias and applies the activation to the columns it computed, while they are in cache. */
static void matmul_range(void *ctx, int64_t begin, int64_t end) {
    const matmul_job *job = ctx;
    int64_t n_begin = begin * MATMUL_COLUMN_BLOCK;
    int64_t n_end = end * MATMUL_COLUMN_BLOCK < job->N ? end * MATMUL_COLUMN_BLOCK : job->N;
    job->fn(job->y, job->x, job->w, job->M, n_begin, n_end);
    if (job->bias == NULL && job->act == NT_ACT_IDENTITY) return;
    for (int64_t m = 0; m < job->M; m++) {
        float *row = job->y + m * job->N + n_begin;
        if (job->bias != NULL) nt_add_bias(row, job->bias + n_begin, 1, n_end - n_begin);
        nt_activation_apply(row, n_end - n_begin, job->act);
    }
}

void nt_model_linear_act(const nt_model *m, float *y, const float *x, const nt_tensor *w, const float *bias,
                         int64_t M, nt_activation act) {
    matmul_job job = {nt_kernels_matmul(m->kernels, w->dtype), y, x, w, bias, act, M, w->shape[0]};
    int64_t blocks = (job.N + MATMUL_COLUMN_BLOCK - 1) / MATMUL_COLUMN_BLOCK;
    nt_threadpool_parallel_for(m->pool, matmul_range, &job, blocks, 1);
}

void nt_model_linear(const nt_model *m, float *y, const float *x, const nt_tensor *w, const float *bias, int64_t M) {
    nt_model_linear_act(m, y, x, w, bias, M, NT_ACT_IDENTITY);
}

/* Matmuls of the same x as one job of the pool, their column blocks numbered one after the other: q_proj,
 * k_proj and v_proj wait for the threads once instead of three times, which in a decode step (each matmul a
 * few milliseconds or less) is time the threads would spend idle. */
enum { MAX_FUSED = 3 };
typedef struct {
    matmul_job part[MAX_FUSED];
    int64_t first_block[MAX_FUSED + 1]; /* part p has the blocks [first_block[p], first_block[p + 1]) */
    int count;
} fused_job;

static void fused_range(void *ctx, int64_t begin, int64_t end) {
    const fused_job *job = ctx;
    for (int p = 0; p < job->count; p++) {
        int64_t b0 = begin > job->first_block[p] ? begin : job->first_block[p];
        int64_t b1 = end < job->first_block[p + 1] ? end : job->first_block[p + 1];
        if (b0 < b1) matmul_range((void *)&job->part[p], b0 - job->first_block[p], b1 - job->first_block[p]);
    }
}

/* y[p] (M, N_p) = x (M, K) @ w[p]^T + bias[p] for p < count */
static void linear_fused(const nt_model *m, float *const *y, const float *x, const nt_tensor *const *w,
                         const float *const *bias, int count, int64_t M) {
    fused_job job = {.count = count};
    for (int p = 0; p < count; p++) {
        job.part[p] = (matmul_job){nt_kernels_matmul(m->kernels, w[p]->dtype), y[p], x, w[p], bias[p],
                                   NT_ACT_IDENTITY, M, w[p]->shape[0]};
        job.first_block[p + 1] = job.first_block[p] + (w[p]->shape[0] + MATMUL_COLUMN_BLOCK - 1) / MATMUL_COLUMN_BLOCK;
    }
    nt_threadpool_parallel_for(m->pool, fused_range, &job, job.first_block[count], 1);
}

typedef struct {
    float *y;
    const float *x, *weight, *bias;
    int64_t H;
    float eps;
} norm_job;

static void norm_range(void *ctx, int64_t begin, int64_t end) {
    const norm_job *job = ctx;
    nt_layernorm1p(job->y + begin * job->H, job->x + begin * job->H, job->weight, job->bias, end - begin, job->H,
                   job->eps);
}

void nt_model_layernorm1p(const nt_model *m, float *y, const float *x, const float *weight, const float *bias,
                        int64_t rows) {
    norm_job job = {y, x, weight, bias, m->config.hidden_size, m->config.norm_eps};
    nt_threadpool_parallel_for(m->pool, norm_range, &job, rows, 8);
}

/* ---------------------------------------------------------------- attention */

typedef struct {
    const nt_model *model;
    const nt_cache *cache;
    int64_t layer, B, T, P;
    const float *q;                /* (B, T, NH, D) after rotary */
    const uint8_t *attention_mask; /* (B, S) or NULL */
    float *out;                    /* (B, T, NH, D) */
    float *weights;                /* (B, NH, T, S) softmax weights of this layer, or NULL */
    float scale;
    atomic_int out_of_memory;
    const volatile int *cancel; /* checked per query position: a long prompt's head is seconds of work */
} attention_job;

/* One task is one (sequence, query head): every query position of that head. */
static void attention_range(void *ctx, int64_t begin, int64_t end) {
    attention_job *job = ctx;
    const nt_config *c = &job->model->config;
    const nt_kernels *k = job->model->kernels;
    int64_t NH = c->num_attention_heads, D = c->head_dim, S = job->P + job->T;
    int64_t group = NH / c->num_key_value_heads;
    float *scores = malloc((size_t)S * sizeof(float));
    if (scores == NULL) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    for (int64_t task = begin; task < end; task++) {
        int64_t b = task / NH, h = task % NH, kvh = h / group;
        size_t run = (size_t)(((job->layer * job->B + b) * c->num_key_value_heads + kvh) * job->cache->capacity * D);
        const float *keys = job->cache->keys + run, *values = job->cache->values + run; /* (S, D) */
        const uint8_t *mask = job->attention_mask ? job->attention_mask + b * S : NULL;
        for (int64_t t = 0; t < job->T; t++) {
            if (job->cancel != NULL && *job->cancel) break; /* the caller sees the flag and discards the layer */
            const float *q = job->q + ((b * job->T + t) * NH + h) * D;
            float *out = job->out + ((b * job->T + t) * NH + h) * D;
            int64_t last = job->P + t; /* causal: keys 0..last */
            float max_score = -INFINITY;
            int64_t allowed = 0;
            for (int64_t j = 0; j <= last; j++) {
                if (mask && !mask[j]) continue;
                scores[j] = k->dot(q, keys + j * D, D) * job->scale;
                if (scores[j] > max_score) max_score = scores[j];
                allowed++;
            }
            memset(out, 0, (size_t)D * sizeof(float));
            float *weights = job->weights ? job->weights + ((b * NH + h) * job->T + t) * S : NULL;
            if (allowed == 0) {
                /* Transformers' eager attention adds the float32 minimum to every masked score; when
                 * all are masked, all are equal and softmax is uniform over every key, future ones too. */
                float w = 1.0f / (float)S;
                for (int64_t j = 0; j < S; j++) k->axpy(out, w, values + j * D, D);
                if (weights)
                    for (int64_t j = 0; j < S; j++) weights[j] = w;
                continue;
            }
            if (weights) memset(weights, 0, (size_t)S * sizeof(float));
            float sum = 0.0f;
            for (int64_t j = 0; j <= last; j++) {
                if (mask && !mask[j]) continue;
                scores[j] = expf(scores[j] - max_score);
                sum += scores[j];
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j <= last; j++) {
                if (mask && !mask[j]) continue;
                k->axpy(out, scores[j] * inv, values + j * D, D);
                if (weights) weights[j] = scores[j] * inv;
            }
        }
    }
    free(scores);
}

/* ---------------------------------------------------------------- the forward pass */

typedef struct {
    float *x;        /* (B*T, H) the residual stream */
    float *xn;       /* (B*T, H) normed */
    float *q;        /* (B*T, NH*D) */
    float *k, *v;    /* (B*T, NKV*D) */
    float *att;      /* (B*T, NH*D) */
    float *mlp;      /* (chunk, I) */
    float *cos, *sin;/* (B*T, R/2) */
    float *kept;     /* (B*K, H) normed rows whose logits are wanted */
    const volatile int *cancel; /* the caller's flag, also checked within a layer (see nt_model_forward) */
} scratch;

static nt_status check_inputs(nt_error *err, const nt_model *m, const int32_t *input_ids,
                              const int64_t *position_ids, const int64_t *keep_positions, int64_t K, int64_t B,
                              int64_t T, const nt_cache *cache) {
    if (B <= 0 || T <= 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "batch size and sequence length must be positive, got %lld and %lld",
                            (long long)B, (long long)T);
    if (cache != NULL && cache->batch_size != B)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "the cache holds %lld sequences but the input has %lld",
                            (long long)cache->batch_size, (long long)B);
    for (int64_t i = 0; i < B * T; i++) {
        if (input_ids != NULL && (input_ids[i] < 0 || input_ids[i] >= m->config.vocab_size))
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "input id %d at index %lld is outside [0, %lld)",
                                (int)input_ids[i], (long long)i, (long long)m->config.vocab_size);
        if (position_ids[i] < 0)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "position id %lld at index %lld is negative",
                                (long long)position_ids[i], (long long)i);
    }
    for (int64_t i = 0; i < K; i++)
        if (keep_positions[i] < 0 || keep_positions[i] >= T)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "logits position %lld is outside [0, %lld)",
                                (long long)keep_positions[i], (long long)T);
    return NT_OK;
}

/* x (rows, H) = embed_tokens[input_ids] */
static void embed(const nt_model *m, float *x, const int32_t *input_ids, int64_t rows) {
    int64_t H = m->config.hidden_size;
    for (int64_t i = 0; i < rows; i++) nt_tensor_row_to_f32(x + i * H, &m->embed_tokens, input_ids[i]);
}

/* cos and sin (rows, R/2) of position * inv_freq, in float32 as Transformers computes them */
static void rotary_tables(const nt_model *m, float *cos_out, float *sin_out, const int64_t *position_ids, int64_t rows) {
    int64_t half = m->config.rotary_dim / 2;
    float scaling = m->config.rope_attention_scaling;
    for (int64_t i = 0; i < rows; i++) {
        float pos = (float)position_ids[i];
        for (int64_t j = 0; j < half; j++) {
            float angle = pos * m->inv_freq[j];
            cos_out[i * half + j] = cosf(angle) * scaling;
            sin_out[i * half + j] = sinf(angle) * scaling;
        }
    }
}

static void store_kv(nt_cache *cache, int64_t layer, const float *k, const float *v, int64_t B, int64_t T, int64_t P) {
    int64_t NKV = cache->num_kv_heads, D = cache->head_dim;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NKV; h++) {
            size_t run = (size_t)(((layer * B + b) * NKV + h) * cache->capacity * D);
            for (int64_t t = 0; t < T; t++) {
                size_t src = (size_t)(((b * T + t) * NKV + h) * D);
                memcpy(cache->keys + run + (size_t)((P + t) * D), k + src, (size_t)D * sizeof(float));
                memcpy(cache->values + run + (size_t)((P + t) * D), v + src, (size_t)D * sizeof(float));
            }
        }
}

static nt_status attention_block(const nt_model *m, nt_error *err, scratch *s, const nt_layer *w, nt_cache *cache,
                                 int64_t layer, const uint8_t *attention_mask, int64_t B, int64_t T, int64_t P,
                                 float *weights) {
    const nt_config *c = &m->config;
    int64_t BT = B * T, NH = c->num_attention_heads, NKV = c->num_key_value_heads, D = c->head_dim;
    nt_model_layernorm1p(m, s->xn, s->x, w->input_norm_weight, w->input_norm_bias, BT);
    float *const qkv[] = {s->q, s->k, s->v};
    const nt_tensor *const qkv_proj[] = {&w->q_proj, &w->k_proj, &w->v_proj};
    const float *const qkv_bias[] = {w->q_bias, w->k_bias, w->v_bias};
    linear_fused(m, qkv, s->xn, qkv_proj, qkv_bias, 3, BT);
    int64_t half = c->rotary_dim / 2;
    if (half > 0)
        for (int64_t i = 0; i < BT; i++) {
            nt_rope_apply(s->q + i * NH * D, s->cos + i * half, s->sin + i * half, NH, D, c->rotary_dim);
            nt_rope_apply(s->k + i * NKV * D, s->cos + i * half, s->sin + i * half, NKV, D, c->rotary_dim);
        }
    store_kv(cache, layer, s->k, s->v, B, T, P);

    attention_job job = {.model = m, .cache = cache, .layer = layer, .B = B, .T = T, .P = P, .q = s->q,
                         .attention_mask = attention_mask, .out = s->att, .weights = weights,
                         .scale = (float)pow((double)D, -0.5), .cancel = s->cancel};
    atomic_init(&job.out_of_memory, 0);
    nt_threadpool_parallel_for(m->pool, attention_range, &job, B * NH, 1);
    if (atomic_load(&job.out_of_memory))
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for attention scores");

    /* the o_proj output goes into xn (free now), then joins the residual stream */
    nt_model_linear(m, s->xn, s->att, &w->o_proj, w->o_bias, BT);
    for (int64_t i = 0; i < BT * c->hidden_size; i++) s->x[i] += s->xn[i];
    return NT_OK;
}

static void mlp_block(const nt_model *m, scratch *s, const nt_layer *w, int64_t BT, int64_t chunk) {
    int64_t H = m->config.hidden_size;
    nt_model_layernorm1p(m, s->xn, s->x, w->post_norm_weight, w->post_norm_bias, BT);
    for (int64_t r = 0; r < BT; r += chunk) {
        if (s->cancel != NULL && *s->cancel) return;
        int64_t rows = BT - r < chunk ? BT - r : chunk;
        nt_model_linear_act(m, s->mlp, s->xn + r * H, &w->up_proj, w->up_bias, rows, m->config.hidden_act);
        /* down_proj writes over the normed rows it no longer needs */
        nt_model_linear(m, s->xn + r * H, s->mlp, &w->down_proj, w->down_bias, rows);
    }
    for (int64_t i = 0; i < BT * H; i++) s->x[i] += s->xn[i];
}

nt_status nt_model_forward(nt_model *m, nt_error *err, float *logits, float *last_hidden, float *all_hidden,
                           const int32_t *input_ids, const int64_t *position_ids, const uint8_t *attention_mask,
                           const int64_t *keep_positions, int64_t K, int64_t B, int64_t T, nt_cache *cache,
                           const nt_forward_options *options, const volatile int *cancel) {
    const nt_config *c = &m->config;
    const float *inputs_embeds = options ? options->inputs_embeds : NULL;
    float *attentions = options ? options->attentions : NULL;
    if (input_ids == NULL && inputs_embeds == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "either input_ids or inputs_embeds is needed");
    nt_status status = check_inputs(err, m, input_ids, position_ids, keep_positions, K, B, T, cache);
    if (status != NT_OK) return status;
    if (logits != NULL && m->lm_head.data == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "this model has no lm_head to compute logits with");

    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t QD = c->num_attention_heads * c->head_dim, KVD = c->num_key_value_heads * c->head_dim;
    int64_t BT = nt_mul_size(B, T), half = c->rotary_dim / 2;
    int64_t chunk = MLP_CHUNK_FLOATS / I > 0 ? MLP_CHUNK_FLOATS / I : 1;
    if (chunk > BT) chunk = BT;

    nt_cache *own_cache = NULL;
    if (cache == NULL) {
        if ((status = nt_cache_create(&own_cache, err, m, B, T)) != NT_OK) return status;
        cache = own_cache;
    }
    int64_t P = cache->length;
    if (P > ((int64_t)1 << 40) || (status = nt_cache_reserve(cache, err, P + T)) != NT_OK) {
        nt_cache_free(own_cache);
        return status != NT_OK ? status : nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache too long");
    }

    /* one allocation for every activation of this call */
    int64_t sizes[] = {nt_mul_size(BT, H), nt_mul_size(BT, H), nt_mul_size(BT, QD), nt_mul_size(BT, KVD),
                       nt_mul_size(BT, KVD), nt_mul_size(BT, QD), nt_mul_size(chunk, I), nt_mul_size(BT, half),
                       nt_mul_size(BT, half), nt_mul_size(nt_mul_size(B, K), H)};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] < 0 || total > ((int64_t)1 << 60) - sizes[i]) {
            nt_cache_free(own_cache);
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "batch of %lld x %lld tokens is too large",
                                (long long)B, (long long)T);
        }
        total += sizes[i];
    }
    float *arena = malloc((size_t)total * sizeof(float));
    if (arena == NULL) {
        nt_cache_free(own_cache);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the activations of %lld x %lld tokens",
                            (long long)B, (long long)T);
    }
    scratch s = {.cancel = cancel};
    float **slots[] = {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.att, &s.mlp, &s.cos, &s.sin, &s.kept};
    float *cursor = arena;
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        *slots[i] = cursor;
        cursor += sizes[i];
    }

    if (inputs_embeds != NULL)
        memcpy(s.x, inputs_embeds, (size_t)(BT * H) * sizeof(float));
    else
        embed(m, s.x, input_ids, BT);
    if (all_hidden != NULL) memcpy(all_hidden, s.x, (size_t)(BT * H) * sizeof(float));
    rotary_tables(m, s.cos, s.sin, position_ids, BT);

    /* Ctrl-C: the flag is read before each layer and within its attention (per query position) and MLP (per
     * chunk of rows), so that a long prompt stops within a fraction of a layer. A layer left half done is
     * discarded: nothing is returned and the cache keeps its length (the rows written past it are unused). */
    for (int64_t l = 0; l <= L; l++) {
        if (cancel != NULL && *cancel) {
            status = nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
            goto done;
        }
        if (l == L) break;
        float *weights = attentions ? attentions + l * B * c->num_attention_heads * T * (P + T) : NULL;
        status = attention_block(m, err, &s, &m->layers[l], cache, l, attention_mask, B, T, P, weights);
        if (status != NT_OK) goto done;
        mlp_block(m, &s, &m->layers[l], BT, chunk);
        if (all_hidden != NULL && l + 1 < L)
            memcpy(all_hidden + (l + 1) * BT * H, s.x, (size_t)(BT * H) * sizeof(float));
    }

    if (last_hidden != NULL || all_hidden != NULL) {
        float *normed = last_hidden != NULL ? last_hidden : all_hidden + L * BT * H;
        nt_model_layernorm1p(m, normed, s.x, m->norm_weight, m->norm_bias, BT);
        if (last_hidden != NULL && all_hidden != NULL)
            memcpy(all_hidden + L * BT * H, normed, (size_t)(BT * H) * sizeof(float));
    }
    if (logits != NULL && K > 0) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < K; i++)
                memcpy(s.kept + (b * K + i) * H, s.x + (b * T + keep_positions[i]) * H, (size_t)H * sizeof(float));
        nt_model_layernorm1p(m, s.kept, s.kept, m->norm_weight, m->norm_bias, B * K);
        nt_model_linear(m, logits, s.kept, &m->lm_head, NULL, B * K);
    }
    cache->length = P + T;
    status = NT_OK;

done:
    free(arena);
    nt_cache_free(own_cache);
    return status;
}
