/*
 * Kernels of the core: internal to csrc/, not part of the public header.
 *
 * Each operation has a plain C reference (the specification, used by the tests) and, where it
 * matters for speed, optimised versions grouped in an nt_kernels table per instruction set.
 * Weights may be stored as float32, bfloat16 or float16; activations are always float32.
 */
#ifndef NT_KERNELS_H
#define NT_KERNELS_H

#include <stdint.h>

#include "nemotron.h"

/* y (M, N) = x (M, K) @ w (N, K)^T, for the output columns n in [n_begin, n_end) only.
 * w holds N rows of K elements in the table's dtype; y rows are N floats apart. */
typedef void (*nt_matmul_fn)(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                             int64_t n_begin, int64_t n_end);

typedef struct {
    const char *name;
    nt_matmul_fn matmul[NT_DTYPE_COUNT]; /* indexed by the weight's dtype */
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n); /* y += a * x */
} nt_kernels;

/* "auto": the best table this CPU supports; "portable": plain C; "avx2": fails if unsupported. */
nt_status nt_kernels_select(const nt_kernels **out, nt_error *err, const char *name);

extern const nt_kernels nt_kernels_portable;
extern const nt_kernels nt_kernels_avx2; /* kernels/matmul_avx2.c, compiled with -mavx2 -mfma -mf16c */

/* The reference matmul, any dtype, one output at a time in the simplest order. */
void nt_matmul_naive(float *y, const float *x, const void *w, nt_dtype dtype, int64_t M, int64_t N,
                     int64_t K);

/* Element conversions. */
static inline float nt_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
float nt_f16_to_f32(uint16_t h);
/* Converts n elements of src (in dtype) to float32. */
void nt_convert_to_f32(float *dst, const void *src, nt_dtype dtype, int64_t n);

/* ---- element-wise and row operations (kernels/ops.c), float32 ---- */

/* LayerNorm1P over rows: y = (x - mean) / sqrt(var + eps) * (1 + weight) + bias, population
 * variance. y (rows, H), x (rows, H), weight (H), bias (H); y may equal x. */
void nt_layernorm1p(float *y, const float *x, const float *weight, const float *bias, int64_t rows,
                    int64_t H, float eps);

/* Rotates the first R dims of each of n_heads heads of one token in place (half-split rotation,
 * as Transformers' rotate_half). x (n_heads, D), cos and sin (R/2) for this token's position. */
void nt_rope_apply(float *x, const float *cos, const float *sin, int64_t n_heads, int64_t D, int64_t R);

/* x (n) = act(x) */
void nt_activation_apply(float *x, int64_t n, nt_activation act);

/* y (rows, N) += bias (N) */
void nt_add_bias(float *y, const float *bias, int64_t rows, int64_t N);

#endif
