/* The dtype table, element conversions and row views of stored tensors (see kernels/tensor.h). */
#include <string.h>

#include "kernels/tensor.h"

float nt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13); /* inf or nan */
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        /* subnormal half: normalise into a float */
        int shift = 0;
        while ((mantissa & 0x400) == 0) {
            mantissa <<= 1;
            shift++;
        }
        mantissa &= 0x3ff;
        bits = sign | ((uint32_t)(113 - shift) << 23) | (mantissa << 13);
    }
    union { uint32_t u; float f; } v = { bits };
    return v.f;
}

/* ---------------------------------------------------------------- conversions, one per dtype
 * out (n) = the n elements at src in float32. scales: the per-group scales of those elements (for a
 * quantized dtype; NULL for the float ones, which ignore it). */

static void f32_to_f32(float *out, const void *src, const float *scales, int64_t n) {
    memcpy(out, src, (size_t)n * sizeof(float));
}

static void bf16_to_f32(float *out, const void *src, const float *scales, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) out[i] = nt_bf16_to_f32(s[i]);
}

static void f16_to_f32(float *out, const void *src, const float *scales, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) out[i] = nt_f16_to_f32(s[i]);
}

/* n is whole groups; each element is its int8 times its group's scale, as the kernels compute it */
static void q8_to_f32(float *out, const void *src, const float *scales, int64_t n) {
    const int8_t *s = src;
    for (int64_t i = 0; i < n; i++) out[i] = (float)s[i] * scales[i / NT_Q8_GROUP];
}

/* n is whole groups of 16 bytes: the low nibbles are the group's first 16 elements, the high ones the next 16 */
static void q4_to_f32(float *out, const void *src, const float *scales, int64_t n) {
    const uint8_t *s = src;
    for (int64_t g = 0; g < n / NT_Q4_GROUP; g++)
        for (int j = 0; j < NT_Q4_GROUP / 2; j++) {
            uint8_t byte = s[g * NT_Q4_GROUP / 2 + j];
            out[g * NT_Q4_GROUP + j] = (float)((byte & 15) - 8) * scales[g];
            out[g * NT_Q4_GROUP + j + NT_Q4_GROUP / 2] = (float)((byte >> 4) - 8) * scales[g];
        }
}

/* ---------------------------------------------------------------- the dtype table */

static const struct {
    nt_dtype_info info;
    void (*to_f32)(float *out, const void *src, const float *scales, int64_t n);
} DTYPES[NT_DTYPE_COUNT] = {
    [NT_DTYPE_F32] = {{"float32", 1, 4, 0}, f32_to_f32},
    [NT_DTYPE_BF16] = {{"bfloat16", 1, 2, 0}, bf16_to_f32},
    [NT_DTYPE_F16] = {{"float16", 1, 2, 0}, f16_to_f32},
    [NT_DTYPE_Q8] = {{"int8", NT_Q8_GROUP, NT_Q8_GROUP, 1}, q8_to_f32},
    [NT_DTYPE_Q4] = {{"int4", NT_Q4_GROUP, NT_Q4_GROUP / 2, 1}, q4_to_f32},
};

const nt_dtype_info *nt_dtype_get(nt_dtype dtype) {
    return dtype >= 0 && dtype < NT_DTYPE_COUNT ? &DTYPES[dtype].info : NULL;
}

const char *nt_dtype_name(nt_dtype dtype) {
    const nt_dtype_info *info = nt_dtype_get(dtype);
    return info ? info->name : "unknown";
}

int64_t nt_dtype_bytes(nt_dtype dtype, int64_t n) {
    const nt_dtype_info *info = nt_dtype_get(dtype);
    if (info == NULL || n < 0 || n % info->block_size != 0) return -1;
    int64_t blocks = n / info->block_size, block_bytes = (int64_t)info->block_bytes;
    if (blocks != 0 && block_bytes > ((int64_t)1 << 62) / blocks) return -1;
    return blocks * block_bytes;
}

/* ---------------------------------------------------------------- row views */

nt_status nt_tensor_check_storage(nt_error *err, const nt_tensor *t, const char *name) {
    const nt_dtype_info *info = nt_dtype_get(t->dtype);
    if (info == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s has an unknown dtype code %d", name,
                            (int)t->dtype);
    int64_t rows = t->ndim == 1 ? 1 : t->shape[0], cols = nt_tensor_cols(t);
    int64_t row_bytes = nt_dtype_bytes(t->dtype, cols);
    if (row_bytes < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "tensor %s has rows of %lld elements, not whole %s blocks of %lld", name, (long long)cols,
                            info->name, (long long)info->block_size);
    int64_t bytes = rows != 0 && row_bytes > ((int64_t)1 << 62) / rows ? -1 : rows * row_bytes;
    if (bytes < 0 || (size_t)bytes != t->nbytes)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s holds %zu bytes, its shape and dtype need %lld",
                            name, t->nbytes, (long long)bytes);
    size_t alignment = info->block_size == 1 ? info->block_bytes : 1;
    if ((uintptr_t)t->data % alignment != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s is not aligned to its element size", name);
    if ((t->scales != NULL) != info->scaled)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s: %s weights %s per-group scales", name,
                            info->name, info->scaled ? "need" : "take no");
    if (info->scaled) {
        if (t->group_size != info->block_size)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                                "tensor %s has scales per %lld elements, %s needs %lld", name,
                                (long long)t->group_size, info->name, (long long)info->block_size);
        /* rows x groups cannot overflow: it is at most the element count, which fits bytes above */
        int64_t groups = rows * (cols / info->block_size);
        if (t->scales_nbytes / sizeof(float) != (size_t)groups || t->scales_nbytes % sizeof(float) != 0)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                                "tensor %s has %zu bytes of scales, its shape needs %lld float32 scales", name,
                                t->scales_nbytes, (long long)groups);
        if ((uintptr_t)t->scales % sizeof(float) != 0)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tensor %s has scales not aligned to float32", name);
    }
    return NT_OK;
}

static int64_t row_bytes(const nt_tensor *t) {
    return nt_tensor_cols(t) / DTYPES[t->dtype].info.block_size * (int64_t)DTYPES[t->dtype].info.block_bytes;
}

const void *nt_tensor_row(const nt_tensor *t, int64_t r) {
    return (const char *)t->data + (size_t)r * (size_t)row_bytes(t);
}

nt_tensor nt_tensor_rows(const nt_tensor *t, int64_t begin, int64_t count) {
    nt_tensor view = *t;
    view.data = nt_tensor_row(t, begin);
    view.shape[0] = count;
    view.nbytes = (size_t)count * (size_t)row_bytes(t);
    if (t->scales != NULL) {
        int64_t groups = nt_tensor_cols(t) / t->group_size; /* per row */
        view.scales = t->scales + begin * groups;
        view.scales_nbytes = (size_t)(count * groups) * sizeof(float);
    }
    return view;
}

void nt_tensor_span_to_f32(float *out, const nt_tensor *t, int64_t r, int64_t begin, int64_t n) {
    int64_t block = DTYPES[t->dtype].info.block_size;
    const char *src = (const char *)nt_tensor_row(t, r) + (size_t)(begin / block) * DTYPES[t->dtype].info.block_bytes;
    const float *scales = NULL; /* the scales of the span's groups */
    if (t->scales != NULL) scales = t->scales + r * (nt_tensor_cols(t) / t->group_size) + begin / t->group_size;
    DTYPES[t->dtype].to_f32(out, src, scales, n);
}

void nt_tensor_row_to_f32(float *out, const nt_tensor *t, int64_t r) {
    nt_tensor_span_to_f32(out, t, r, 0, nt_tensor_cols(t));
}
