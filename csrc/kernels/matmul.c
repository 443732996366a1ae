/* Matrix products in plain C: the naive reference and the portable kernels. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

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

void nt_convert_to_f32(float *dst, const void *src, nt_dtype dtype, int64_t n) {
    switch (dtype) {
    case NT_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case NT_DTYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = nt_bf16_to_f32(s[i]);
        break;
    }
    case NT_DTYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = nt_f16_to_f32(s[i]);
        break;
    }
    default:
        break;
    }
}

static float weight_at(const void *w, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_BF16: return nt_bf16_to_f32(((const uint16_t *)w)[i]);
    case NT_DTYPE_F16: return nt_f16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

void nt_matmul_naive(float *y, const float *x, const void *w, nt_dtype dtype, int64_t M, int64_t N,
                     int64_t K) {
    /* y (M, N) = x (M, K) @ w (N, K)^T */
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += x[m * K + k] * weight_at(w, dtype, n * K + k);
            y[m * N + n] = sum;
        }
    }
}

/* Eight independent partial sums let the compiler use vector registers without reassociating. */
static float dot_portable(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void axpy_portable(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void matmul_f32_portable(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                                int64_t n_begin, int64_t n_end) {
    const float *wf = w;
    for (int64_t n = n_begin; n < n_end; n++)
        for (int64_t m = 0; m < M; m++) y[m * N + n] = dot_portable(x + m * K, wf + n * K, K);
}

/* Half-precision weights: each row is widened once into a buffer, then used for every x row. */
static void matmul_half_portable(float *y, const float *x, const void *w, nt_dtype dtype, int64_t M,
                                 int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
    float stack_row[4096];
    float *row = K <= 4096 ? stack_row : malloc((size_t)K * sizeof(float));
    if (row == NULL) {
        /* no memory for the row buffer: widen element by element instead */
        for (int64_t n = n_begin; n < n_end; n++)
            for (int64_t m = 0; m < M; m++) {
                float sum = 0.0f;
                for (int64_t k = 0; k < K; k++) sum += x[m * K + k] * weight_at(w, dtype, n * K + k);
                y[m * N + n] = sum;
            }
        return;
    }
    const uint16_t *wh = w;
    for (int64_t n = n_begin; n < n_end; n++) {
        nt_convert_to_f32(row, wh + n * K, dtype, K);
        for (int64_t m = 0; m < M; m++) y[m * N + n] = dot_portable(x + m * K, row, K);
    }
    if (row != stack_row) free(row);
}

static void matmul_bf16_portable(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                                 int64_t n_begin, int64_t n_end) {
    matmul_half_portable(y, x, w, NT_DTYPE_BF16, M, N, K, n_begin, n_end);
}

static void matmul_f16_portable(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                                int64_t n_begin, int64_t n_end) {
    matmul_half_portable(y, x, w, NT_DTYPE_F16, M, N, K, n_begin, n_end);
}

const nt_kernels nt_kernels_portable = {
    .name = "portable",
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_portable,
        [NT_DTYPE_BF16] = matmul_bf16_portable,
        [NT_DTYPE_F16] = matmul_f16_portable,
    },
    .dot = dot_portable,
    .axpy = axpy_portable,
};
