/*
 * Kernels of the core: internal to csrc/, not part of the public header.
 *
 * Each operation has a plain C reference (the specification, used by the tests) and, where it
 * matters for speed, optimised versions grouped in a kernel set (nt_kernels) per instruction set.
 * Weights come as nt_tensor in any dtype of the table (kernels/tensor.h); activations are always float32.
 */
#ifndef NT_KERNELS_H
#define NT_KERNELS_H

#include <stdint.h>

#include "kernels/tensor.h"
#include "nemotron.h"

/* y (M, N) = x (M, K) @ w (N, K)^T, for the output columns n in [n_begin, n_end) only.
 * w is (N, K) in the dtype the kernel is registered for; y rows are N floats apart. */
typedef void (*nt_matmul_fn)(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin,
                             int64_t n_end);

/* Defines NAME, the nt_matmul_fn of one dtype of a kernel written once for every dtype: KERNEL (y, x, w, DTYPE, M,
 * n_begin, n_end), an always-inline function, specialised for the dtype. */
#define NT_MATMUL_FOR_DTYPE(NAME, KERNEL, DTYPE)                                                                   \
    static void NAME(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) { \
        KERNEL(y, x, w, DTYPE, M, n_begin, n_end);                                                             \
    }

/* How a kernel set packs the rows of x for its matmul_packed: pack_rows writes the blocks [block_begin, block_end)
 * of row_block rows of x (M, K) (the last block padded) into packed, which holds packed_floats(M, K) floats (its
 * own layout, not floats) from a 64-byte boundary; 0 floats for a shape it does not pack. */
typedef struct nt_row_packing {
    int64_t row_block, min_rows;
    int64_t (*packed_floats)(int64_t M, int64_t K);
    void (*pack_rows)(float *packed, const float *x, int64_t M, int64_t K, int64_t block_begin, int64_t block_end);
} nt_row_packing;

/* A kernel set: the optimised kernels of one instruction set. */
typedef struct nt_kernels {
    const char *name;       /* as kernels= and NEMOTRON_C_KERNELS name it */
    int (*supported)(void); /* whether this CPU runs the set */
    nt_matmul_fn matmul[NT_DTYPE_COUNT]; /* indexed by the weight's dtype; NULL: the next set's (nt_kernel_sets) */
    /* attention's tiles, operands already in cache: y (M, N) (+)= x (M, K) @ w (K, N), w row-major (not
     * transposed as in matmul): x[m, k] at x + m * ldx + k * kx (x may be a transposed view), rows of w and y
     * ldw and ldy floats apart; accumulate: add to y, else overwrite it */
    void (*matmul_nn)(float *y, const float *x, const float *w, int64_t M, int64_t K, int64_t N, int64_t ldx,
                      int64_t kx, int64_t ldw, int64_t ldy, int accumulate);
    /* x (n) = exp(x - shift (n)), exp(-inf) = 0; shift finite */
    void (*exp_shifted)(float *x, const float *shift, int64_t n);
    /* Prefill's matmuls with the rows of x packed once for all threads and for every matmul of the same x (q, k
     * and v), which the matmuls above pack anew in each thread: packing[dtype] (NULL: none for that dtype) says
     * how, and matmul_packed[dtype] is then matmul with packed in place of x, for M >= packing's min_rows; it
     * returns 0 where it cannot serve (no memory for its panel, a shape it does not take): matmul must then. */
    const struct nt_row_packing *packing[NT_DTYPE_COUNT];
    /* Whether the set's matmul and matmul_packed serve w at M rows (NULL: always); those it declines go to `next`,
     * the set nt_kernels_select completed it from (nt_kernels_for below). */
    int (*takes)(const nt_tensor *w, int64_t M);
    const struct nt_kernels *next;
    int (*matmul_packed[NT_DTYPE_COUNT])(float *y, const float *packed, const nt_tensor *w, int64_t M, int64_t n_begin,
                                         int64_t n_end);
} nt_kernels;

/* The vector exp of the kernel sets' exp_shifted, as Cephes' expf: x = n ln2 + r with ln2 in two parts
 * (NT_EXP_LN2_HI exact in few bits), |r| <= ln2 / 2, exp(r) = 1 + r + r^2 p(r) with p's coefficients below,
 * highest first, then scaled by 2^n; within 2 ulp of expf. Below NT_EXP_MIN_ARG expf is subnormal: 0. */
static const float NT_EXP_POLY[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                     4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
#define NT_EXP_LOG2E 1.44269504088896341f
#define NT_EXP_LN2_HI 0.693359375f
#define NT_EXP_LN2_LO -2.12194440e-4f
#define NT_EXP_MIN_ARG -87.33f

/* Every kernel set, best first; the last is the portable one, which every CPU runs (kernels/dispatch.c).
 * A new instruction set is one entry here, its file and its line in csrc/sources.mk; it need not cover every
 * entry of nt_kernels: nt_kernels_select hands out the set with those it leaves NULL filled from the next set the
 * CPU runs. */
extern const nt_kernels *const nt_kernel_sets[];
extern const int nt_kernel_set_count;

extern const nt_kernels nt_kernels_portable; /* kernels/matmul.c */
extern const nt_kernels nt_kernels_avx2;     /* kernels/matmul_avx2.c, compiled with avx2_CFLAGS */
extern const nt_kernels nt_kernels_avx512;   /* kernels/matmul_avx512.c, compiled with avx512_CFLAGS */
extern const nt_kernels nt_kernels_amx;      /* kernels/matmul_amx.c, compiled with amx_CFLAGS */

/* "auto": the first set this CPU supports; otherwise the set of that name, which the CPU must support; completed
 * as nt_kernel_sets says. */
nt_status nt_kernels_select(const nt_kernels **out, nt_error *err, const char *name);

/* The set (k or one it was completed from) whose matmul, matmul_packed and packing serve w at M rows. */
static inline const nt_kernels *nt_kernels_for(const nt_kernels *k, const nt_tensor *w, int64_t M) {
    while (k->takes != NULL && k->next != NULL && !k->takes(w, M)) k = k->next;
    return k;
}

/* The reference matmul, any dtype, one output at a time in the simplest order: y (M, N) = x (M, K) @ w^T.
 * Fails only for want of memory to widen a row of w. */
nt_status nt_matmul_naive(float *y, const float *x, const nt_tensor *w, int64_t M);

/* The reference of nt_quantize (kernels/quantize.c): the same rules, one group at a time, on one thread. */
nt_status nt_quantize_naive(void *data, float *scales, nt_error *err, nt_dtype dtype, const nt_tensor *src);

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

/* ---- attention (kernels/attention.c), float32 ---- */

/* The G query heads that share one key/value head, of one sequence of T new tokens after P cached ones. */
typedef struct {
    const float *q;             /* query of token t, head g at q + t * stride + g * D, after rotary */
    float *out;                 /* the same layout as q */
    int64_t stride;             /* floats from one token's heads to the next's (NH * D) */
    const void *keys, *values; /* (S, D) in kv_dtype, S = P + T, rotary applied to the keys */
    nt_dtype kv_dtype;          /* NT_DTYPE_F32 or NT_DTYPE_BF16 (widened to float32 as they are read) */
    const uint8_t *mask;        /* (S) 0 for padding, or NULL for none */
    int64_t T, P, G, D;
    float scale;
    int masked_rows_average;    /* a query whose keys are all masked: 1 the mean of every value, 0 zeros */
} nt_attention_args;

/* The reference: out for tokens [t_begin, t_end), and weights (G, T, S) (the softmax, as
 * output_attentions returns it) unless NULL. Fails only for want of memory for a row of scores (and for
 * bfloat16 keys and values, their float32 copies). */
nt_status nt_attention_naive(const nt_attention_args *a, float *weights, int64_t t_begin, int64_t t_end);

/* The same output, blocked over queries and keys with the online softmax; work holds
 * nt_attention_work_floats(G, D) floats. Tokens go in blocks of nt_attention_query_block(G). */
void nt_attention_blocked(const nt_kernels *k, const nt_attention_args *a, int64_t t_begin, int64_t t_end,
                          float *work);
int64_t nt_attention_query_block(int64_t G);
int64_t nt_attention_work_floats(int64_t G, int64_t D);

#endif
