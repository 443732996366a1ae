/* The key/value cache: per layer, sequence and key/value head, a run of positions of D elements of the
 * cache's dtype (float32, or bfloat16 for half the memory). */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* bytes of one of keys/values for `batch_size` sequences at `capacity` positions, or -1 when that is not
 * representable */
static int64_t cache_bytes(const nt_cache *c, int64_t batch_size, int64_t capacity) {
    int64_t n = nt_mul_size(nt_mul_size(c->num_layers, batch_size), c->num_kv_heads);
    n = nt_mul_size(nt_mul_size(n, capacity), c->head_dim);
    n = nt_mul_size(n, (int64_t)nt_cache_element_bytes(c));
    if (n < 0 || (uint64_t)n > (uint64_t)SIZE_MAX) return -1;
    return n;
}

nt_status nt_cache_create(nt_cache **out, nt_error *err, const nt_model *model, int64_t batch_size,
                          int64_t capacity) {
    *out = NULL;
    if (batch_size <= 0) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache batch size must be positive");
    if (capacity < 0) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache capacity must be >= 0");
    nt_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the cache");
    c->num_layers = model->config.num_hidden_layers;
    c->batch_size = batch_size;
    c->num_kv_heads = model->config.num_key_value_heads;
    c->head_dim = model->config.head_dim;
    c->dtype = model->cache_dtype;
    nt_status status = nt_cache_reserve(c, err, capacity);
    if (status != NT_OK) {
        nt_cache_free(c);
        return status;
    }
    *out = c;
    return NT_OK;
}

void nt_cache_free(nt_cache *cache) {
    if (cache == NULL) return;
    free(cache->keys);
    free(cache->values);
    free(cache);
}

int64_t nt_cache_batch_size(const nt_cache *cache) { return cache->batch_size; }
int64_t nt_cache_length(const nt_cache *cache) { return cache->length; }
nt_status nt_cache_check_fits(nt_error *err, const nt_cache *c, const nt_config *config) {
    if (c->num_layers == config->num_hidden_layers && c->num_kv_heads == config->num_key_value_heads &&
        c->head_dim == config->head_dim)
        return NT_OK;
    return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "the cache was made by a model of another shape (%lld layers "
                        "of %lld key/value heads of %lld; this model has %lld of %lld of %lld)",
                        (long long)c->num_layers, (long long)c->num_kv_heads, (long long)c->head_dim,
                        (long long)config->num_hidden_layers, (long long)config->num_key_value_heads,
                        (long long)config->head_dim);
}

int64_t nt_cache_num_layers(const nt_cache *cache) { return cache->num_layers; }
int64_t nt_cache_num_kv_heads(const nt_cache *cache) { return cache->num_kv_heads; }
int64_t nt_cache_head_dim(const nt_cache *cache) { return cache->head_dim; }
nt_dtype nt_cache_dtype(const nt_cache *cache) { return cache->dtype; }

nt_status nt_cache_reserve(nt_cache *c, nt_error *err, int64_t capacity) {
    if (capacity <= c->capacity && c->keys != NULL) return NT_OK;
    /* grow geometrically so that a token-by-token caller copies O(n) in all */
    if (c->capacity > 0 && capacity < 2 * c->capacity) capacity = 2 * c->capacity;
    return nt_cache_resize(c, err, capacity);
}

nt_status nt_cache_resize(nt_cache *c, nt_error *err, int64_t capacity) {
    if (capacity <= c->capacity && c->keys != NULL) return NT_OK;
    if (capacity < 1) capacity = 1;
    int64_t bytes = cache_bytes(c, c->batch_size, capacity);
    if (bytes < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a cache of %lld positions is too large",
                            (long long)capacity);
    char *keys = malloc((size_t)bytes), *values = malloc((size_t)bytes);
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for a cache of %lld positions (%lld bytes)",
                            (long long)capacity, (long long)(2 * bytes));
    }
    int64_t runs = c->num_layers * c->batch_size * c->num_kv_heads;
    size_t element = nt_cache_element_bytes(c), filled = (size_t)(c->length * c->head_dim) * element;
    size_t old_stride = (size_t)(c->capacity * c->head_dim) * element, stride = (size_t)(capacity * c->head_dim) * element;
    for (int64_t r = 0; r < runs && filled > 0; r++) {
        memcpy(keys + r * stride, (char *)c->keys + r * old_stride, filled);
        memcpy(values + r * stride, (char *)c->values + r * old_stride, filled);
    }
    free(c->keys);
    free(c->values);
    c->keys = keys;
    c->values = values;
    c->capacity = capacity;
    return NT_OK;
}

nt_status nt_cache_expand(nt_cache *c, nt_error *err, const nt_cache *src, int64_t copies) {
    if (c->batch_size != src->batch_size * copies || c->num_layers != src->num_layers ||
        c->num_kv_heads != src->num_kv_heads || c->head_dim != src->head_dim || c->dtype != src->dtype)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache of %lld sequences cannot hold %lld x %lld",
                            (long long)c->batch_size, (long long)src->batch_size, (long long)copies);
    nt_status status = nt_cache_reserve(c, err, src->length);
    if (status != NT_OK) return status;
    size_t element = nt_cache_element_bytes(c); /* the sizes below are in bytes */
    size_t filled = (size_t)(src->length * src->head_dim) * element;
    size_t src_run = (size_t)(src->capacity * src->head_dim) * element, run = (size_t)(c->capacity * c->head_dim) * element;
    int64_t NKV = c->num_kv_heads;
    for (int64_t l = 0; l < c->num_layers; l++)
        for (int64_t b = 0; b < src->batch_size; b++)
            for (int64_t h = 0; h < NKV; h++) {
                size_t from = (size_t)((l * src->batch_size + b) * NKV + h) * src_run;
                for (int64_t j = 0; j < copies; j++) {
                    size_t to = (size_t)((l * c->batch_size + b * copies + j) * NKV + h) * run;
                    memcpy((char *)c->keys + to, (const char *)src->keys + from, filled);
                    memcpy((char *)c->values + to, (const char *)src->values + from, filled);
                }
            }
    c->length = src->length;
    return NT_OK;
}

nt_status nt_cache_reorder(nt_cache *c, nt_error *err, const int64_t *rows) {
    if (c == NULL || rows == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no cache or rows to reorder");
    int64_t B = c->batch_size, changed = 0;
    for (int64_t i = 0; i < B; i++) {
        if (rows[i] < 0 || rows[i] >= B)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache row %lld is outside [0, %lld)",
                                (long long)rows[i], (long long)B);
        changed += rows[i] != i;
    }
    if (c->length == 0 || changed == 0) return NT_OK;
    /* one sequence of one layer: NKV runs of `length` positions, each at a stride of `capacity`. The sources
     * of the sequences that change are staged first, as a destination may be another one's source. */
    size_t element = nt_cache_element_bytes(c); /* the sizes below are in bytes */
    size_t run = (size_t)(c->length * c->head_dim) * element, stride = (size_t)(c->capacity * c->head_dim) * element;
    size_t per_sequence = (size_t)c->num_kv_heads * run;
    char *scratch = malloc((size_t)changed * per_sequence);
    if (scratch == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory to reorder the cache");
    char *tensors[2] = {c->keys, c->values};
    for (int t = 0; t < 2; t++)
        for (int64_t l = 0; l < c->num_layers; l++) {
            char *layer = tensors[t] + (size_t)(l * B * c->num_kv_heads) * stride; /* (B, NKV, capacity, D) */
            char *staged = scratch;
            for (int64_t i = 0; i < B; i++)
                if (rows[i] != i) {
                    for (int64_t h = 0; h < c->num_kv_heads; h++)
                        memcpy(staged + (size_t)h * run, layer + (size_t)(rows[i] * c->num_kv_heads + h) * stride,
                               run);
                    staged += per_sequence;
                }
            staged = scratch;
            for (int64_t i = 0; i < B; i++)
                if (rows[i] != i) {
                    for (int64_t h = 0; h < c->num_kv_heads; h++)
                        memcpy(layer + (size_t)(i * c->num_kv_heads + h) * stride, staged + (size_t)h * run,
                               run);
                    staged += per_sequence;
                }
        }
    free(scratch);
    return NT_OK;
}

nt_status nt_cache_crop(nt_cache *c, nt_error *err, int64_t length) {
    if (c == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no cache to crop");
    if (length < 0 || length > c->length)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot crop a cache of %lld positions to %lld",
                            (long long)c->length, (long long)length);
    /* the positions past `length` stay in memory and are written over by the next forward pass */
    c->length = length;
    return NT_OK;
}

nt_status nt_cache_select(nt_cache *c, nt_error *err, const int64_t *rows, int64_t n) {
    if (c == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no cache to select from");
    if (n < 1 || rows == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a cache must keep at least one sequence (got %lld)",
                            (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= c->batch_size)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cache row %lld is outside [0, %lld)",
                                (long long)rows[i], (long long)c->batch_size);
    /* new memory sized to the positions held: the sources stay intact while the sequences are copied, and the
     * next forward pass grows it as it would a new cache */
    int64_t capacity = c->length > 0 ? c->length : 1, bytes = cache_bytes(c, n, capacity);
    if (bytes < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a cache of %lld sequences of %lld positions is too large",
                            (long long)n, (long long)capacity);
    char *keys = malloc((size_t)bytes), *values = malloc((size_t)bytes);
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for a cache of %lld sequences (%lld bytes)",
                            (long long)n, (long long)(2 * bytes));
    }
    size_t element = nt_cache_element_bytes(c); /* the sizes below are in bytes */
    size_t filled = (size_t)(c->length * c->head_dim) * element;
    size_t old_run = (size_t)(c->capacity * c->head_dim) * element, run = (size_t)(capacity * c->head_dim) * element;
    int64_t NKV = c->num_kv_heads;
    for (int64_t l = 0; l < c->num_layers && filled > 0; l++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < NKV; h++) {
                size_t from = (size_t)((l * c->batch_size + rows[i]) * NKV + h) * old_run;
                size_t to = (size_t)((l * n + i) * NKV + h) * run;
                memcpy(keys + to, (const char *)c->keys + from, filled);
                memcpy(values + to, (const char *)c->values + from, filled);
            }
    free(c->keys);
    free(c->values);
    c->keys = keys;
    c->values = values;
    c->batch_size = n;
    c->capacity = capacity;
    return NT_OK;
}

nt_status nt_cache_copy(nt_cache **out, nt_error *err, const nt_cache *src) {
    if (out == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no place for the cache copy");
    *out = NULL;
    if (src == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no cache to copy");
    nt_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the cache");
    *c = *src;
    c->keys = c->values = NULL;
    c->capacity = c->length = 0;
    nt_status status = nt_cache_resize(c, err, src->length);
    if (status == NT_OK) status = nt_cache_expand(c, err, src, 1);
    if (status != NT_OK) {
        nt_cache_free(c);
        return status;
    }
    *out = c;
    return NT_OK;
}

nt_status nt_cache_read(const nt_cache *c, nt_error *err, int64_t layer, int values, float *out,
                        int64_t out_count) {
    if (c == NULL) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "no cache to read");
    if (layer < 0 || layer >= c->num_layers)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "layer %lld is outside [0, %lld)", (long long)layer,
                            (long long)c->num_layers);
    if (values != 0 && values != 1)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "values must be 0 (keys) or 1 (values), not %d", values);
    int64_t NKV = c->num_kv_heads, D = c->head_dim, P = c->length;
    int64_t count = nt_mul_size(nt_mul_size(nt_mul_size(c->batch_size, NKV), P), D);
    if (count < 0 || out_count != count || (count > 0 && out == NULL))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "the keys or values of a layer are %lld x %lld x %lld x %lld floats, not %lld",
                            (long long)c->batch_size, (long long)NKV, (long long)P, (long long)D,
                            (long long)out_count);
    if (count == 0) return NT_OK;
    const char *tensor = values ? c->values : c->keys;
    size_t element = nt_cache_element_bytes(c);
    for (int64_t b = 0; b < c->batch_size; b++)
        for (int64_t h = 0; h < NKV; h++) {
            const char *run = tensor + (size_t)(((layer * c->batch_size + b) * NKV + h) * c->capacity * D) * element;
            float *to = out + ((b * NKV + h) * P) * D;
            if (c->dtype == NT_DTYPE_BF16)
                for (int64_t i = 0; i < P * D; i++) to[i] = nt_bf16_to_f32(((const uint16_t *)run)[i]);
            else
                memcpy(to, run, (size_t)(P * D) * sizeof(float));
        }
    return NT_OK;
}
