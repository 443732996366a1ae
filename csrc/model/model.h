/* The model's internal layout, shared by model.c, cache.c and forward.c. */
#ifndef NT_MODEL_H
#define NT_MODEL_H

#include <stdatomic.h>

#include "kernels/kernels.h"
#include "nemotron.h"

typedef struct {
    const float *input_norm_weight, *input_norm_bias; /* (H) each */
    nt_tensor q_proj;                                  /* (NH*D, H) */
    nt_tensor k_proj, v_proj;                          /* (NKV*D, H) */
    nt_tensor o_proj;                                  /* (H, NH*D) */
    const float *q_bias, *k_bias, *v_bias, *o_bias;    /* (NH*D), (NKV*D), (NKV*D), (H); NULL without attention_bias */
    const float *post_norm_weight, *post_norm_bias;    /* (H) each */
    nt_tensor up_proj;                                 /* (I, H) */
    nt_tensor down_proj;                               /* (H, I) */
    const float *up_bias, *down_bias;                  /* (I), (H); NULL without mlp_bias */
} nt_layer;

struct nt_model {
    nt_config config;          /* config.inv_freq points at inv_freq below */
    float *inv_freq;           /* (R/2) */
    float *long_inv_freq;      /* (R/2) NT_ROPE_LONGROPE's, else NULL */
    /* NT_ROPE_DYNAMIC: the length the frequencies are for, Transformers' max_seq_len_cached (see rope_length) */
    _Atomic int64_t rope_length;
    nt_tensor embed_tokens;    /* (V, H) */
    nt_tensor lm_head;         /* (V, H); embed_tokens when tied; data NULL for a bare model */
    const float *norm_weight, *norm_bias; /* (H) each */
    nt_layer *layers;          /* (L) */
    float *vectors;            /* one allocation holding every float32 norm and bias copy */
    const nt_kernels *kernels;
    nt_threadpool *pool;
    nt_dtype cache_dtype;      /* of the caches it makes: NT_DTYPE_F32 or NT_DTYPE_BF16 */
};

struct nt_cache {
    int64_t num_layers, batch_size, num_kv_heads, head_dim; /* L, B, NKV, D */
    int64_t capacity;  /* positions allocated per sequence */
    int64_t length;    /* P, positions filled */
    nt_dtype dtype;    /* of keys and values: NT_DTYPE_F32 or NT_DTYPE_BF16 */
    void *keys;        /* (L, B, NKV, capacity, D) */
    void *values;      /* (L, B, NKV, capacity, D) */
};

/* NT_OK when a cache has the layers, key/value heads and head size of the model's, else the error naming both: a
 * cache made by another model object of the same shape is as good as its own (Transformers' caches belong to no
 * model). */
nt_status nt_cache_check_fits(nt_error *err, const nt_cache *cache, const nt_config *config);

/* bytes of one element of a cache */
static inline size_t nt_cache_element_bytes(const nt_cache *c) { return c->dtype == NT_DTYPE_BF16 ? 2 : 4; }
/* nt_cache_reserve without its geometric growth: exactly `capacity` positions, when that is more */
nt_status nt_cache_resize(nt_cache *cache, nt_error *err, int64_t capacity);
/* cache (B * copies sequences) = each sequence of src (B) `copies` times in a row, as np.repeat */
nt_status nt_cache_expand(nt_cache *cache, nt_error *err, const nt_cache *src, int64_t copies);

/* Threaded building blocks of the forward pass, for the other model files (scoring, heads). */
/* y (M, N) = x (M, K) @ w (N, K)^T + bias (N); bias may be NULL */
void nt_model_linear(const nt_model *m, float *y, const float *x, const nt_tensor *w, const float *bias, int64_t M);
/* the same, then y = act(y) */
void nt_model_linear_act(const nt_model *m, float *y, const float *x, const nt_tensor *w, const float *bias,
                         int64_t M, nt_activation act);
/* x (M, K) packed by the kernel set for its prefill matmuls by w (N, K) and weights of its dtype, once for every
 * thread and every matmul that reads x; NULL when the set packs no rows for that dtype, M is too small for that,
 * the pool has one thread or memory is short (the matmuls then read x). free() it. */
float *nt_model_pack_rows(const nt_model *m, const float *x, int64_t M, const nt_tensor *w);
/* nt_model_linear_act with x also as nt_model_pack_rows gave it (NULL or not) */
void nt_model_linear_packed(const nt_model *m, float *y, const float *x, const float *packed, const nt_tensor *w,
                            const float *bias, int64_t M, nt_activation act);
/* LayerNorm1P over rows (rows, H); y may equal x */
void nt_model_layernorm1p(const nt_model *m, float *y, const float *x, const float *weight, const float *bias,
                          int64_t rows);

/* a * b, or -1 when either is negative or the product leaves int64 (sizes of at most 2^62) */
static inline int64_t nt_mul_size(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > ((int64_t)1 << 62) / a) return -1;
    return a * b;
}

#endif
