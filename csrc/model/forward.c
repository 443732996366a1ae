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

/* MLP rows are processed in chunks so that the (rows, I) activation stays near MLP_CHUNK_FLOATS floats, in
 * whole multiples of MLP_CHUNK_ROWS: the packed kernels convert and pack every weight panel once per call
 * for up to 512 rows, so that a chunk of 455 rows (Minitron's I = 9216) then one of 57 cost two packings
 * of the whole up and down projections for a 512-token prompt, and the 57 rows ran at a fraction of the
 * kernel's speed.
 * Threads split a matmul's columns in whole blocks of MATMUL_COLUMN_BLOCK: a multiple of every kernel
 * set's panel width (16 for avx2, 48 for avx512), so that only the last block has a partial panel. */
enum { MLP_CHUNK_FLOATS = 4 << 20, MLP_CHUNK_ROWS = 512, MATMUL_COLUMN_BLOCK = 48 };

/* ---------------------------------------------------------------- threaded building blocks */

typedef struct {
    nt_matmul_fn fn;
    float *y;           /* (M, N) */
    const float *x;     /* (M, K) */
    const float *packed; /* x packed for packed_fn, or NULL */
    int (*packed_fn)(float *y, const float *packed, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end);
    const nt_tensor *w; /* (N, K) */
    const float *bias;  /* (N) or NULL */
    nt_activation act;
    int64_t M, N;
} matmul_job;

static matmul_job matmul_job_for(const nt_model *m, float *y, const float *x, const float *packed, const nt_tensor *w,
                                 const float *bias, int64_t M, nt_activation act) {
    const nt_kernels *k = nt_kernels_for(m->kernels, w, M);
    matmul_job job = {k->matmul[w->dtype], y, x, NULL, k->matmul_packed[w->dtype], w, bias, act, M, w->shape[0]};
    if (job.packed_fn != NULL) job.packed = packed;
    return job;
}

/* Each thread adds the bias and applies the activation to the columns it computed, while they are in cache. */
static void matmul_range(void *ctx, int64_t begin, int64_t end) {
    const matmul_job *job = ctx;
    int64_t n_begin = begin * MATMUL_COLUMN_BLOCK;
    int64_t n_end = end * MATMUL_COLUMN_BLOCK < job->N ? end * MATMUL_COLUMN_BLOCK : job->N;
    if (job->packed == NULL || !job->packed_fn(job->y, job->packed, job->w, job->M, n_begin, n_end))
        job->fn(job->y, job->x, job->w, job->M, n_begin, n_end);
    if (job->bias == NULL && job->act == NT_ACT_IDENTITY) return;
    for (int64_t m = 0; m < job->M; m++) {
        float *row = job->y + m * job->N + n_begin;
        if (job->bias != NULL) nt_add_bias(row, job->bias + n_begin, 1, n_end - n_begin);
        nt_activation_apply(row, n_end - n_begin, job->act);
    }
}

typedef struct {
    const nt_row_packing *packing;
    float *packed;
    const float *x;
    int64_t M, K;
} pack_job;

static void pack_range(void *ctx, int64_t begin, int64_t end) {
    const pack_job *job = ctx;
    job->packing->pack_rows(job->packed, job->x, job->M, job->K, begin, end);
}

float *nt_model_pack_rows(const nt_model *m, const float *x, int64_t M, const nt_tensor *w) {
    const nt_row_packing *p = nt_kernels_for(m->kernels, w, M)->packing[w->dtype];
    int64_t K = w->shape[1];
    /* One thread packs x for itself block by block, into a buffer that stays in L2, which measured 6-10% faster
     * than packing it whole first (prefill 512 and scoring 16 x 128 tokens at Minitron-4B's widths); two threads
     * packing it together, once, rather than each all of it, are 3% faster. */
    if (p == NULL || M < p->min_rows || nt_threadpool_size(m->pool) < 2) return NULL;
    size_t bytes = (size_t)p->packed_floats(M, K) * sizeof(float);
    float *packed = bytes == 0 ? NULL : aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (packed == NULL) return NULL;
    pack_job job = {p, packed, x, M, K};
    nt_threadpool_parallel_for(m->pool, pack_range, &job, (M + p->row_block - 1) / p->row_block, 4);
    return packed;
}

void nt_model_linear_packed(const nt_model *m, float *y, const float *x, const float *packed, const nt_tensor *w,
                            const float *bias, int64_t M, nt_activation act) {
    matmul_job job = matmul_job_for(m, y, x, packed, w, bias, M, act);
    int64_t blocks = (job.N + MATMUL_COLUMN_BLOCK - 1) / MATMUL_COLUMN_BLOCK;
    nt_threadpool_parallel_for(m->pool, matmul_range, &job, blocks, 1);
}

void nt_model_linear_act(const nt_model *m, float *y, const float *x, const nt_tensor *w, const float *bias,
                         int64_t M, nt_activation act) {
    float *packed = nt_model_pack_rows(m, x, M, w);
    nt_model_linear_packed(m, y, x, packed, w, bias, M, act);
    free(packed);
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
    /* x packed once for the parts when one packing serves them all (q, k and v: one dtype), else by each matmul */
    int one_packing = 1;
    for (int p = 1; p < count; p++)
        one_packing &= w[p]->dtype == w[0]->dtype &&
                       nt_kernels_for(m->kernels, w[p], M) == nt_kernels_for(m->kernels, w[0], M);
    float *packed = one_packing ? nt_model_pack_rows(m, x, M, w[0]) : NULL;
    for (int p = 0; p < count; p++) {
        job.part[p] = matmul_job_for(m, y[p], x, packed, w[p], bias[p], M, NT_ACT_IDENTITY);
        job.first_block[p + 1] = job.first_block[p] + (w[p]->shape[0] + MATMUL_COLUMN_BLOCK - 1) / MATMUL_COLUMN_BLOCK;
    }
    nt_threadpool_parallel_for(m->pool, fused_range, &job, job.first_block[count], 1);
    free(packed);
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
    int64_t layer, B, T, P, query_blocks;
    const float *q;                /* (B, T, NH, D) after rotary */
    const uint8_t *attention_mask; /* (B, S) or NULL */
    float *out;                    /* (B, T, NH, D) */
    float *weights;                /* (B, NH, T, S) softmax weights of this layer, or NULL */
    float scale;
    atomic_int out_of_memory;
    const volatile int *cancel; /* checked per task: a long prompt's layer is seconds of work */
} attention_job;

/* One task is one block of query tokens of one (sequence, key/value head), with the query heads that share
 * that head. The blocks nearest the end of the prompt, which see the most keys, come first so that the
 * threads finish together. */
static void attention_range(void *ctx, int64_t begin, int64_t end) {
    attention_job *job = ctx;
    const nt_config *c = &job->model->config;
    int64_t NH = c->num_attention_heads, NKV = c->num_key_value_heads, D = c->head_dim, S = job->P + job->T;
    int64_t G = NH / NKV, block = nt_attention_query_block(G);
    float *work = job->weights ? NULL : malloc((size_t)nt_attention_work_floats(G, D) * sizeof(float));
    if (job->weights == NULL && work == NULL) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    for (int64_t task = begin; task < end; task++) {
        if (job->cancel != NULL && *job->cancel) break; /* the caller sees the flag and discards the layer */
        int64_t qb = job->query_blocks - 1 - task / (job->B * NKV), b = task % (job->B * NKV) / NKV, kvh = task % NKV;
        int64_t t0 = qb * block, t1 = t0 + block < job->T ? t0 + block : job->T;
        size_t run = (size_t)(((job->layer * job->B + b) * NKV + kvh) * job->cache->capacity * D) *
                     nt_cache_element_bytes(job->cache);
        nt_attention_args a = {
            .q = job->q + (b * job->T * NH + kvh * G) * D, .out = job->out + (b * job->T * NH + kvh * G) * D,
            .stride = NH * D, .keys = (const char *)job->cache->keys + run,
            .values = (const char *)job->cache->values + run, .kv_dtype = job->cache->dtype,
            .mask = job->attention_mask ? job->attention_mask + b * S : NULL,
            .T = job->T, .P = job->P, .G = G, .D = D, .scale = job->scale,
            .masked_rows_average = job->model->config.masked_rows_average};
        if (job->weights == NULL)
            nt_attention_blocked(job->model->kernels, &a, t0, t1, work);
        else if (nt_attention_naive(&a, job->weights + (b * NH + kvh * G) * job->T * S, t0, t1) != NT_OK)
            atomic_store(&job->out_of_memory, 1);
    }
    free(work);
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
    float *inv_freq; /* (R/2) the call's rotary frequencies */
    const volatile int *cancel; /* the caller's flag, also checked within a layer (see nt_model_forward) */
} scratch;

static nt_status check_inputs(nt_error *err, const nt_model *m, const int32_t *input_ids,
                              const int64_t *keep_positions, int64_t K, int64_t B, int64_t T, const nt_cache *cache) {
    if (B <= 0 || T <= 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "batch size and sequence length must be positive, got %lld and %lld",
                            (long long)B, (long long)T);
    nt_status status = cache != NULL ? nt_cache_check_fits(err, cache, &m->config) : NT_OK;
    if (status != NT_OK) return status;
    if (cache != NULL && cache->batch_size != B)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "the cache holds %lld sequences but the input has %lld",
                            (long long)cache->batch_size, (long long)B);
    for (int64_t i = 0; i < B * T; i++) {
        if (input_ids != NULL && (input_ids[i] < 0 || input_ids[i] >= m->config.vocab_size))
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "input id %d at index %lld is outside [0, %lld)",
                                (int)input_ids[i], (long long)i, (long long)m->config.vocab_size);
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

/* The length that decides a call's frequencies: its largest position id + 1 (torch.max(position_ids) + 1) */
static int64_t call_length(const int64_t *position_ids, int64_t rows) {
    int64_t last = 0;
    for (int64_t i = 0; i < rows; i++)
        if (position_ids[i] > last) last = position_ids[i];
    return last < INT64_MAX ? last + 1 : INT64_MAX;
}

/* NT_ROPE_DYNAMIC's length for a call of length n, as Transformers' dynamic_frequency_update, which keeps
 * max_seq_len_cached on the module: a call longer than it grows it (new frequencies), a call shorter than the
 * threshold resets it (the original frequencies) and any other keeps it, so that a call may run with the
 * frequencies of a longer one made before it. We keep it per model, to give Transformers' results for any
 * sequence of calls; it changes atomically, so that calls from several threads see the updates in some order. */
static int64_t dynamic_length(nt_model *m, int64_t n) {
    int64_t threshold = m->config.rope_length_threshold, seen = atomic_load(&m->rope_length), next;
    do next = n > seen ? n : n < threshold ? threshold : seen;
    while (!atomic_compare_exchange_weak(&m->rope_length, &seen, next));
    return next;
}

/* NT_ROPE_DYNAMIC's frequencies (R/2) for a length n above the threshold, with the float32 operations torch runs
 * in _compute_dynamic_ntk_parameters on a tensor seq_len: each Python float rounded to float32 as it meets the
 * tensor, a power by a scalar (torch squares, cubes and takes reciprocals itself; otherwise it raises the float to
 * the double exponent), then base ** (2i / d) with powf. torch takes the last of these from its vector library
 * (SLEEF) for 32 frequencies and more (16 on a CPU without AVX-512), where powf's differ by up to 2 ulps. */
static void dynamic_inv_freq(const nt_config *c, int64_t n, float *inv_freq) {
    int64_t dim = c->rope_dim;
    float scaled = (float)c->rope_factor * (float)n;
    scaled = scaled / (float)c->rope_length_threshold;
    scaled = scaled - (float)(c->rope_factor - 1.0);
    double exponent = (double)dim / (double)(dim - 2);
    float power = exponent == 2.0    ? scaled * scaled
                  : exponent == 3.0  ? scaled * scaled * scaled
                  : exponent == -1.0 ? 1.0f / scaled
                                     : (float)pow((double)scaled, exponent);
    float base = (float)c->rope_theta * power;
    for (int64_t j = 0; j < c->rotary_dim / 2; j++) inv_freq[j] = 1.0f / powf(base, (float)(2 * j) / (float)dim);
}

void nt_model_rope_frequencies(const nt_model *m, int64_t length, float *inv_freq) {
    const nt_config *c = &m->config;
    const float *chosen = m->inv_freq;
    if (c->rope_scaling == NT_ROPE_DYNAMIC && length > c->rope_length_threshold) {
        dynamic_inv_freq(c, length, inv_freq);
        return;
    }
    if (c->rope_scaling == NT_ROPE_LONGROPE && length > c->rope_length_threshold) chosen = m->long_inv_freq;
    if (c->rotary_dim > 0) memcpy(inv_freq, chosen, (size_t)(c->rotary_dim / 2) * sizeof(float));
}

/* The inverse frequencies (R/2) of a call, written to inv_freq: those of its length, or for NT_ROPE_DYNAMIC of the
 * length the model keeps once the call has updated it */
static void call_inv_freq(nt_model *m, const int64_t *position_ids, int64_t rows, float *inv_freq) {
    int64_t length = call_length(position_ids, rows);
    if (m->config.rope_scaling == NT_ROPE_DYNAMIC) length = dynamic_length(m, length);
    nt_model_rope_frequencies(m, length, inv_freq);
}

/* cos and sin (rows, R/2) of position * inv_freq, in float32 as Transformers computes them */
static void rotary_tables(const nt_model *m, const float *inv_freq, float *cos_out, float *sin_out,
                          const int64_t *position_ids, int64_t rows) {
    int64_t half = m->config.rotary_dim / 2;
    float scaling = m->config.rope_attention_scaling;
    for (int64_t i = 0; i < rows; i++) {
        float pos = (float)position_ids[i];
        for (int64_t j = 0; j < half; j++) {
            float angle = pos * inv_freq[j];
            cos_out[i * half + j] = cosf(angle) * scaling;
            sin_out[i * half + j] = sinf(angle) * scaling;
        }
    }
}

/* dst (D) = src (D) in the cache's dtype */
static void store_row(const nt_cache *cache, void *dst, const float *src) {
    if (cache->dtype == NT_DTYPE_BF16)
        for (int64_t d = 0; d < cache->head_dim; d++) ((uint16_t *)dst)[d] = nt_f32_to_bf16(src[d]);
    else
        memcpy(dst, src, (size_t)cache->head_dim * sizeof(float));
}

static void store_kv(nt_cache *cache, int64_t layer, const float *k, const float *v, int64_t B, int64_t T, int64_t P) {
    int64_t NKV = cache->num_kv_heads, D = cache->head_dim;
    size_t element = nt_cache_element_bytes(cache);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NKV; h++) {
            size_t run = (size_t)(((layer * B + b) * NKV + h) * cache->capacity + P) * D * element;
            for (int64_t t = 0; t < T; t++) {
                size_t src = (size_t)(((b * T + t) * NKV + h) * D), at = run + (size_t)(t * D) * element;
                store_row(cache, (char *)cache->keys + at, k + src);
                store_row(cache, (char *)cache->values + at, v + src);
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

    int64_t block = nt_attention_query_block(NH / NKV), query_blocks = (T + block - 1) / block;
    attention_job job = {.model = m, .cache = cache, .layer = layer, .B = B, .T = T, .P = P,
                         .query_blocks = query_blocks, .q = s->q, .attention_mask = attention_mask, .out = s->att,
                         .weights = weights, .scale = (float)pow((double)D, -0.5), .cancel = s->cancel};
    atomic_init(&job.out_of_memory, 0);
    nt_threadpool_parallel_for(m->pool, attention_range, &job, query_blocks * B * NKV, 1);
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
    nt_status status = check_inputs(err, m, input_ids, keep_positions, K, B, T, cache);
    if (status != NT_OK) return status;
    if (logits != NULL && m->lm_head.data == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "this model has no lm_head to compute logits with");

    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t QD = c->num_attention_heads * c->head_dim, KVD = c->num_key_value_heads * c->head_dim;
    int64_t BT = nt_mul_size(B, T), half = c->rotary_dim / 2;
    int64_t chunk = MLP_CHUNK_FLOATS / I / MLP_CHUNK_ROWS * MLP_CHUNK_ROWS;
    if (chunk < MLP_CHUNK_ROWS) chunk = MLP_CHUNK_ROWS;
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
                       nt_mul_size(BT, half), nt_mul_size(nt_mul_size(B, K), H), half};
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
    float **slots[] = {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.att, &s.mlp, &s.cos, &s.sin, &s.kept, &s.inv_freq};
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
    call_inv_freq(m, position_ids, BT, s.inv_freq);
    rotary_tables(m, s.inv_freq, s.cos, s.sin, position_ids, BT);

    /* Ctrl-C: the flag is read before each layer and within its attention (per block of query tokens) and MLP (per
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
