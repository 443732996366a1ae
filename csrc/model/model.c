/* Building a model from a config and tensor views, with every size checked first. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static const char *const GLOBAL_NAMES[NT_GLOBAL_COUNT] = {
    "model.embed_tokens.weight", "model.norm.weight", "model.norm.bias", "lm_head.weight"};

static const char *const LAYER_NAMES[NT_LAYER_COUNT] = {
    "input_layernorm.weight", "input_layernorm.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.o_proj.weight", "self_attn.o_proj.bias", "post_attention_layernorm.weight",
    "post_attention_layernorm.bias", "mlp.up_proj.weight", "mlp.up_proj.bias", "mlp.down_proj.weight",
    "mlp.down_proj.bias"};

static nt_status check_config(nt_error *err, const nt_config *c) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_hidden_layers <= 0 ||
        c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 || c->head_dim <= 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "config sizes must be positive (vocab_size=%lld hidden_size=%lld intermediate_size=%lld "
                            "num_hidden_layers=%lld num_attention_heads=%lld num_key_value_heads=%lld head_dim=%lld)",
                            (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
                            (long long)c->num_hidden_layers, (long long)c->num_attention_heads,
                            (long long)c->num_key_value_heads, (long long)c->head_dim);
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "num_attention_heads=%lld is not a multiple of num_key_value_heads=%lld",
                            (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->rotary_dim < 0 || c->rotary_dim > c->head_dim || c->rotary_dim % 2 != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "rotary dimension %lld must be even and at most head_dim=%lld", (long long)c->rotary_dim,
                            (long long)c->head_dim);
    if (c->rotary_dim > 0 && c->inv_freq == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "inv_freq is missing");
    if (c->rope_scaling < NT_ROPE_FIXED || c->rope_scaling > NT_ROPE_LONGROPE)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "unknown rope scaling code %d", (int)c->rope_scaling);
    if (c->rope_scaling != NT_ROPE_FIXED && c->rope_length_threshold <= 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "rope_length_threshold must be positive");
    if (c->rope_scaling == NT_ROPE_DYNAMIC &&
        (!(c->rope_theta > 0.0) || !isfinite(c->rope_theta) || !(c->rope_factor > 0.0) || !isfinite(c->rope_factor) ||
         c->rope_dim < 0 || c->rope_dim == 2 || (c->rope_dim + 1) / 2 != c->rotary_dim / 2))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "dynamic rope needs a positive rope_theta and rope_factor and a rope_dim (not 2) of "
                            "rotary_dim / 2 frequencies");
    if (c->rope_scaling == NT_ROPE_LONGROPE && c->rotary_dim > 0 && c->long_inv_freq == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "long_inv_freq is missing");
    if (c->hidden_act < 0 || c->hidden_act >= NT_ACT_COUNT)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "unknown activation code %d", (int)c->hidden_act);
    if (!(c->norm_eps >= 0.0f))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "norm_eps must be >= 0");
    /* every matrix and activation row the forward pass allocates must have a representable size */
    int64_t widest = c->intermediate_size;
    if (c->hidden_size > widest) widest = c->hidden_size;
    if (c->vocab_size > widest) widest = c->vocab_size;
    if (nt_mul_size(c->num_attention_heads, c->head_dim) < 0 || nt_mul_size(widest, c->hidden_size) < 0 ||
        nt_mul_size(c->intermediate_size, c->hidden_size) < 0 ||
        nt_mul_size(nt_mul_size(c->num_attention_heads, c->head_dim), c->hidden_size) < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "config sizes overflow");
    return NT_OK;
}

/* Checks one tensor against its expected shape; `required` says whether it may be absent. */
static nt_status check_tensor(nt_error *err, const nt_tensor *t, const char *name, int64_t layer, int required,
                              int64_t rows, int64_t cols) {
    char full[96];
    if (layer >= 0)
        snprintf(full, sizeof full, "model.layers.%lld.%s", (long long)layer, name);
    else
        snprintf(full, sizeof full, "%s", name);
    if (t->data == NULL) {
        if (required) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s is missing", full);
        return NT_OK;
    }
    if (!required)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s is given but the config does not use it", full);
    int want_ndim = cols < 0 ? 1 : 2;
    if (t->ndim != want_ndim || t->shape[0] != rows || (want_ndim == 2 && t->shape[1] != cols)) {
        if (want_ndim == 1)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s should have shape (%lld,)", full,
                                (long long)rows);
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s should have shape (%lld, %lld)", full,
                            (long long)rows, (long long)cols);
    }
    return nt_tensor_check_storage(err, t, full);
}

/* Copies a 1-D tensor (any dtype) into float32 storage taken from *cursor; NULL for an absent one. */
static const float *take_vector(float **cursor, const nt_tensor *t) {
    if (t->data == NULL) return NULL;
    float *dst = *cursor;
    nt_tensor_row_to_f32(dst, t, 0);
    *cursor += t->shape[0];
    return dst;
}

void nt_model_free(nt_model *model) {
    if (model == NULL) return;
    nt_threadpool_free(model->pool);
    free(model->layers);
    free(model->vectors);
    free(model->inv_freq);
    free(model->long_inv_freq);
    free(model);
}

nt_status nt_model_create(nt_model **out, nt_error *err, const nt_config *config, const nt_tensor *tensors,
                          int64_t n_tensors, const char *kernels, int num_threads) {
    *out = NULL;
    nt_status status = check_config(err, config);
    if (status != NT_OK) return status;
    const nt_config *c = config;
    int64_t L = c->num_hidden_layers, H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t QD = c->num_attention_heads * c->head_dim, KVD = c->num_key_value_heads * c->head_dim;
    if (n_tensors != NT_GLOBAL_COUNT + L * NT_LAYER_COUNT)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "expected %lld tensors, got %lld",
                            (long long)(NT_GLOBAL_COUNT + L * NT_LAYER_COUNT), (long long)n_tensors);

    const nt_tensor *g = tensors;
    if ((status = check_tensor(err, &g[NT_GLOBAL_EMBED_TOKENS], GLOBAL_NAMES[0], -1, 1, V, H)) ||
        (status = check_tensor(err, &g[NT_GLOBAL_NORM_WEIGHT], GLOBAL_NAMES[1], -1, 1, H, -1)) ||
        (status = check_tensor(err, &g[NT_GLOBAL_NORM_BIAS], GLOBAL_NAMES[2], -1, 1, H, -1)))
        return status;
    /* lm_head is optional (a bare NemotronModel has none), and never given when tied */
    if (g[NT_GLOBAL_LM_HEAD].data != NULL &&
        (status = check_tensor(err, &g[NT_GLOBAL_LM_HEAD], GLOBAL_NAMES[3], -1, !c->tie_word_embeddings, V, H)))
        return status;

    int64_t vector_floats = 2 * H;
    for (int64_t l = 0; l < L; l++) {
        const nt_tensor *t = tensors + NT_GLOBAL_COUNT + l * NT_LAYER_COUNT;
        const struct { int slot, required; int64_t rows, cols; } expect[NT_LAYER_COUNT] = {
            {NT_LAYER_INPUT_NORM_WEIGHT, 1, H, -1},  {NT_LAYER_INPUT_NORM_BIAS, 1, H, -1},
            {NT_LAYER_Q_PROJ, 1, QD, H},             {NT_LAYER_Q_BIAS, c->attention_bias, QD, -1},
            {NT_LAYER_K_PROJ, 1, KVD, H},            {NT_LAYER_K_BIAS, c->attention_bias, KVD, -1},
            {NT_LAYER_V_PROJ, 1, KVD, H},            {NT_LAYER_V_BIAS, c->attention_bias, KVD, -1},
            {NT_LAYER_O_PROJ, 1, H, QD},             {NT_LAYER_O_BIAS, c->attention_bias, H, -1},
            {NT_LAYER_POST_NORM_WEIGHT, 1, H, -1},   {NT_LAYER_POST_NORM_BIAS, 1, H, -1},
            {NT_LAYER_UP_PROJ, 1, I, H},             {NT_LAYER_UP_BIAS, c->mlp_bias, I, -1},
            {NT_LAYER_DOWN_PROJ, 1, H, I},           {NT_LAYER_DOWN_BIAS, c->mlp_bias, H, -1},
        };
        for (int i = 0; i < NT_LAYER_COUNT; i++) {
            status = check_tensor(err, &t[expect[i].slot], LAYER_NAMES[expect[i].slot], l, expect[i].required,
                                  expect[i].rows, expect[i].cols);
            if (status != NT_OK) return status;
            if (t[expect[i].slot].data != NULL && expect[i].cols < 0) vector_floats += expect[i].rows;
        }
    }

    nt_model *m = calloc(1, sizeof *m);
    if (m == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the model");
    m->config = *c;
    int64_t half = c->rotary_dim / 2;
    m->inv_freq = malloc((size_t)(half > 0 ? half : 1) * sizeof(float));
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->vectors = malloc((size_t)vector_floats * sizeof(float));
    if (m->inv_freq == NULL || m->layers == NULL || m->vectors == NULL) {
        nt_model_free(m);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the model");
    }
    if (half > 0) memcpy(m->inv_freq, c->inv_freq, (size_t)half * sizeof(float));
    m->config.inv_freq = m->inv_freq;
    m->config.long_inv_freq = NULL;
    if (c->rope_scaling == NT_ROPE_LONGROPE && half > 0) {
        if ((m->long_inv_freq = malloc((size_t)half * sizeof(float))) == NULL) {
            nt_model_free(m);
            return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the model");
        }
        memcpy(m->long_inv_freq, c->long_inv_freq, (size_t)half * sizeof(float));
        m->config.long_inv_freq = m->long_inv_freq;
    }
    atomic_init(&m->rope_length, c->rope_length_threshold);

    float *cursor = m->vectors;
    m->embed_tokens = g[NT_GLOBAL_EMBED_TOKENS];
    m->lm_head = c->tie_word_embeddings ? g[NT_GLOBAL_EMBED_TOKENS] : g[NT_GLOBAL_LM_HEAD];
    m->norm_weight = take_vector(&cursor, &g[NT_GLOBAL_NORM_WEIGHT]);
    m->norm_bias = take_vector(&cursor, &g[NT_GLOBAL_NORM_BIAS]);
    for (int64_t l = 0; l < L; l++) {
        const nt_tensor *t = tensors + NT_GLOBAL_COUNT + l * NT_LAYER_COUNT;
        nt_layer *layer = &m->layers[l];
        layer->input_norm_weight = take_vector(&cursor, &t[NT_LAYER_INPUT_NORM_WEIGHT]);
        layer->input_norm_bias = take_vector(&cursor, &t[NT_LAYER_INPUT_NORM_BIAS]);
        layer->q_proj = t[NT_LAYER_Q_PROJ];
        layer->k_proj = t[NT_LAYER_K_PROJ];
        layer->v_proj = t[NT_LAYER_V_PROJ];
        layer->o_proj = t[NT_LAYER_O_PROJ];
        layer->q_bias = take_vector(&cursor, &t[NT_LAYER_Q_BIAS]);
        layer->k_bias = take_vector(&cursor, &t[NT_LAYER_K_BIAS]);
        layer->v_bias = take_vector(&cursor, &t[NT_LAYER_V_BIAS]);
        layer->o_bias = take_vector(&cursor, &t[NT_LAYER_O_BIAS]);
        layer->post_norm_weight = take_vector(&cursor, &t[NT_LAYER_POST_NORM_WEIGHT]);
        layer->post_norm_bias = take_vector(&cursor, &t[NT_LAYER_POST_NORM_BIAS]);
        layer->up_proj = t[NT_LAYER_UP_PROJ];
        layer->down_proj = t[NT_LAYER_DOWN_PROJ];
        layer->up_bias = take_vector(&cursor, &t[NT_LAYER_UP_BIAS]);
        layer->down_bias = take_vector(&cursor, &t[NT_LAYER_DOWN_BIAS]);
    }

    if ((status = nt_kernels_select(&m->kernels, err, kernels)) != NT_OK ||
        (status = nt_threadpool_create(&m->pool, err, num_threads)) != NT_OK) {
        nt_model_free(m);
        return status;
    }
    *out = m;
    return NT_OK;
}

const nt_config *nt_model_config(const nt_model *model) { return &model->config; }
const char *nt_model_kernels_name(const nt_model *model) { return model->kernels->name; }
int nt_model_num_threads(const nt_model *model) { return nt_threadpool_size(model->pool); }

nt_status nt_model_set_cache_dtype(nt_model *model, nt_error *err, nt_dtype dtype) {
    if (dtype != NT_DTYPE_F32 && dtype != NT_DTYPE_BF16)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a cache holds float32 or bfloat16, not %s",
                            nt_dtype_name(dtype));
    model->cache_dtype = dtype;
    return NT_OK;
}

nt_dtype nt_model_cache_dtype(const nt_model *model) { return model->cache_dtype; }
