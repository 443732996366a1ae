/*
 * AVX2 + FMA (+ F16C) kernels. This file alone is compiled with avx2_CFLAGS (csrc/sources.mk), and its
 * set is used only when the CPU reports those features (kernels/dispatch.c). Built without them (another
 * architecture), the set is empty and reports itself unsupported.
 */
#include "kernels/kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Elements i..i+7 of w (N, K) in float32; i is a multiple of 8, so the eight share one int8 group, whose
 * scale is scales[i / NT_Q8_GROUP] because K is whole groups. */
static inline __m256 load8(const void *w, const float *scales, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_Q8: {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)w + i)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_broadcast_ss(scales + i / NT_Q8_GROUP));
    }
    case NT_DTYPE_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case NT_DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    default:
        return _mm256_loadu_ps((const float *)w + i);
    }
}

static inline float load1(const void *w, const float *scales, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_Q8: return (float)((const int8_t *)w)[i] * scales[i / NT_Q8_GROUP];
    case NT_DTYPE_BF16: return nt_bf16_to_f32(((const uint16_t *)w)[i]);
    case NT_DTYPE_F16: return _cvtsh_ss(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

/* ---------------------------------------------------------------- decode: up to 16 rows of x, w read once
 * As the AVX-512 set's (kernels/matmul_avx512.c, which explains the blocking): the thread's rows of w by blocks
 * of SMALL_BLOCK_ROWS, the rows of x by passes of at most SMALL_PASS_ROWS (16 ymm registers hold fewer
 * accumulators: a second pass reads the block from L2), K by chunks of SMALL_KC columns whose x stays in L1,
 * a row's sum being its chunks' sums in order whatever M. The columns past the last multiple of 8 are summed
 * one by one into their chunk's sum. */
enum { SMALL_MAX_ROWS = 16, SMALL_PASS_ROWS = 4, SMALL_KC = 512, SMALL_BLOCK_ROWS = 24, SMALL_MAX_W_ROWS = 4 };
_Static_assert(SMALL_KC % NT_Q8_GROUP == 0 && NT_Q8_GROUP % 8 == 0, "a chunk and a vector stay in one group");

/* y (MR rows, N apart) columns n0..n0+NR-1 (+)= x (MR rows, K apart) @ w rows n0.. over columns [k0, k1);
 * prefetches the same span of the rows `ahead` elements further on in w. */
static inline __attribute__((always_inline)) void small_block(float *y, int64_t N, const float *x, int64_t K,
                                                              const void *w, const float *scales, nt_dtype dtype,
                                                              int64_t n0, int64_t k0, int64_t k1, int64_t ahead,
                                                              const int MR, const int NR) {
    __m256 acc[SMALL_PASS_ROWS][SMALL_MAX_W_ROWS];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const char *base = w;
    int64_t size = dtype == NT_DTYPE_F32 ? 4 : dtype == NT_DTYPE_Q8 ? 1 : 2; /* bytes of one element */
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        if (((k * size) & 63) == 0) /* once per line of each row */
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++) _mm_prefetch(base + ((n0 + j) * K + k + ahead) * size, _MM_HINT_T0);
        __m256 xv[SMALL_PASS_ROWS];
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(x + i * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            /* int8 with its group's scale, found by a shift (load8 divides a signed element index) */
            __m256 wv = dtype == NT_DTYPE_Q8
                            ? _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                                (const __m128i *)((const int8_t *)w + (n0 + j) * K + k)))),
                                            _mm256_broadcast_ss(scales + (n0 + j) * (K / NT_Q8_GROUP) + (uint64_t)k / NT_Q8_GROUP))
                            : load8(w, scales, dtype, (n0 + j) * K + k);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            float sum = hsum(acc[i][j]);
            for (int64_t kk = k; kk < k1; kk++) sum += x[i * K + kk] * load1(w, scales, dtype, (n0 + j) * K + kk);
            y[i * N + n0 + j] = k0 == 0 ? sum : y[i * N + n0 + j] + sum;
        }
}

/* The MR rows of x against w rows [n0, n1) over columns [k0, k1): NR rows of w at a time, then one. */
static inline __attribute__((always_inline)) void small_pass(float *y, int64_t N, const float *x, int64_t K,
                                                             const void *w, const float *scales, nt_dtype dtype,
                                                             int64_t n0, int64_t n1, int64_t k0, int64_t k1,
                                                             int64_t ahead, const int MR, const int NR) {
    int64_t n = n0;
    for (; n + NR <= n1; n += NR) small_block(y, N, x, K, w, scales, dtype, n, k0, k1, ahead, MR, NR);
    for (; n < n1; n++) small_block(y, N, x, K, w, scales, dtype, n, k0, k1, ahead, MR, 1);
}

/* y (M, N) = x (M, K) @ w^T for 1 <= M <= SMALL_MAX_ROWS, columns [n_begin, n_end). */
static inline __attribute__((always_inline)) void small_matmul(float *y, const float *x, const nt_tensor *t,
                                                               nt_dtype dtype, int64_t M, int64_t n_begin,
                                                               int64_t n_end) {
    int64_t N = t->shape[0], K = t->shape[1];
    int64_t passes = (M + SMALL_PASS_ROWS - 1) / SMALL_PASS_ROWS;
    for (int64_t n0 = n_begin; n0 < n_end; n0 += SMALL_BLOCK_ROWS) {
        int64_t n1 = n_end - n0 < SMALL_BLOCK_ROWS ? n_end : n0 + SMALL_BLOCK_ROWS;
        for (int64_t p = 0, m0 = 0; p < passes; p++) {
            int64_t rows = (M - m0) / (passes - p); /* passes of equal rows, within one */
            float *y_p = y + m0 * N;
            const float *x_p = x + m0 * K;
            for (int64_t k0 = 0; k0 < K; k0 += SMALL_KC) {
                int64_t k1 = K - k0 < SMALL_KC ? K : k0 + SMALL_KC;
                /* the same rows' next chunk, or from the last chunk the next block's first one */
                int64_t ahead = k1 < K ? SMALL_KC : n1 < N ? SMALL_BLOCK_ROWS * K - k0 : 0;
#define SMALL_CASE(MR, NR) \
    case MR: small_pass(y_p, N, x_p, K, t->data, t->scales, dtype, n0, n1, k0, k1, ahead, MR, NR); break;
                switch (rows) {
                SMALL_CASE(1, 4) SMALL_CASE(2, 4) SMALL_CASE(3, 3) default: SMALL_CASE(4, 2)
                }
#undef SMALL_CASE
            }
            m0 += rows;
        }
    }
}

/* ---------------------------------------------------------------- many rows of x: packed panels
 * For prefill, where the arithmetic dominates. A panel of NR rows of w and KC of its columns is
 * converted to float32 and laid out k-major (KC, NR), then every block of MR rows of x is multiplied
 * against it: MR x NR outputs kept in 12 registers, two panel loads and MR broadcasts per k. */
enum { PANEL_NR = 16, PANEL_MR = 6, PANEL_KC = 256, GEMM_MIN_ROWS = 8 };

/* Transposes the 8x8 block r[0..7] (rows) in place into columns. */
static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* panel (kc, PANEL_NR) = w rows n0..n0+nr-1, columns k0..k0+kc-1, in float32; rows past nr are zero.
 * Full groups of 8 rows by 8 columns go through an 8x8 transpose in registers. */
static void pack_panel(float *panel, const void *w, const float *scales, nt_dtype dtype, int64_t K, int64_t n0,
                       int64_t nr, int64_t k0, int64_t kc) {
    for (int64_t j0 = 0; j0 < PANEL_NR; j0 += 8) {
        int64_t k = 0;
        if (j0 + 8 <= nr) {
            for (; k + 8 <= kc; k += 8) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = load8(w, scales, dtype, (n0 + j0 + j) * K + k0 + k);
                transpose8(r);
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(panel + (k + t) * PANEL_NR + j0, r[t]);
            }
        }
        for (int64_t j = j0; j < j0 + 8; j++)
            for (int64_t kk = k; kk < kc; kk++)
                panel[kk * PANEL_NR + j] = j < nr ? load1(w, scales, dtype, (n0 + j) * K + k0 + kk) : 0.0f;
    }
}

/* y rows (mr <= 6, each N apart) (+)= x rows (6, each K apart) @ panel (kc, 16), for the nr first columns.
 * Rows of x past mr repeat the last valid row: computed, never stored. The twelve accumulators are
 * named one by one because GCC keeps an accumulator array in memory here. */
static void panel_block(float *y, int64_t N, const float *x, int64_t K, const float *panel, int64_t kc, int64_t mr,
                        int64_t nr, int accumulate) {
    const float *x0 = x, *x1 = x + (mr > 1 ? 1 : 0) * K, *x2 = x + (mr > 2 ? 2 : mr - 1) * K,
                *x3 = x + (mr > 3 ? 3 : mr - 1) * K, *x4 = x + (mr > 4 ? 4 : mr - 1) * K,
                *x5 = x + (mr > 5 ? 5 : mr - 1) * K;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
           a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(panel + k * PANEL_NR), w1 = _mm256_load_ps(panel + k * PANEL_NR + 8), b;
        b = _mm256_broadcast_ss(x0 + k);
        a00 = _mm256_fmadd_ps(b, w0, a00);
        a01 = _mm256_fmadd_ps(b, w1, a01);
        b = _mm256_broadcast_ss(x1 + k);
        a10 = _mm256_fmadd_ps(b, w0, a10);
        a11 = _mm256_fmadd_ps(b, w1, a11);
        b = _mm256_broadcast_ss(x2 + k);
        a20 = _mm256_fmadd_ps(b, w0, a20);
        a21 = _mm256_fmadd_ps(b, w1, a21);
        b = _mm256_broadcast_ss(x3 + k);
        a30 = _mm256_fmadd_ps(b, w0, a30);
        a31 = _mm256_fmadd_ps(b, w1, a31);
        b = _mm256_broadcast_ss(x4 + k);
        a40 = _mm256_fmadd_ps(b, w0, a40);
        a41 = _mm256_fmadd_ps(b, w1, a41);
        b = _mm256_broadcast_ss(x5 + k);
        a50 = _mm256_fmadd_ps(b, w0, a50);
        a51 = _mm256_fmadd_ps(b, w1, a51);
    }
    __m256 acc[PANEL_MR][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    for (int64_t i = 0; i < mr; i++) {
        float *y_i = y + i * N;
        if (nr == PANEL_NR) {
            __m256 lo = acc[i][0], hi = acc[i][1];
            if (accumulate) {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(y_i));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(y_i + 8));
            }
            _mm256_storeu_ps(y_i, lo);
            _mm256_storeu_ps(y_i + 8, hi);
            continue;
        }
        float out[PANEL_NR];
        _mm256_storeu_ps(out, acc[i][0]);
        _mm256_storeu_ps(out + 8, acc[i][1]);
        for (int64_t j = 0; j < nr; j++) y_i[j] = accumulate ? y_i[j] + out[j] : out[j];
    }
}

static void gemm(float *y, const float *x, const void *w, const float *scales, nt_dtype dtype, int64_t M, int64_t N,
                 int64_t K, int64_t n_begin, int64_t n_end) {
    float panel[PANEL_KC * PANEL_NR] __attribute__((aligned(32)));
    for (int64_t n0 = n_begin; n0 < n_end; n0 += PANEL_NR) {
        int64_t nr = n_end - n0 < PANEL_NR ? n_end - n0 : PANEL_NR;
        for (int64_t k0 = 0; k0 < K; k0 += PANEL_KC) {
            int64_t kc = K - k0 < PANEL_KC ? K - k0 : PANEL_KC;
            pack_panel(panel, w, scales, dtype, K, n0, nr, k0, kc);
            for (int64_t m0 = 0; m0 < M; m0 += PANEL_MR) {
                int64_t mr = M - m0 < PANEL_MR ? M - m0 : PANEL_MR;
                panel_block(y + m0 * N + n0, N, x + m0 * K + k0, K, panel, kc, mr, nr, k0 > 0);
            }
        }
    }
}

/* The element index arithmetic below stays inside this file: the kernels are written once for every
 * dtype, and load8/load1 widen each dtype's elements in registers (int8 through its group's scale). */
static inline __attribute__((always_inline)) void matmul_avx2(float *y, const float *x, const nt_tensor *w,
                                                              nt_dtype dtype, int64_t M, int64_t n_begin,
                                                              int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    if (M <= SMALL_MAX_ROWS)
        small_matmul(y, x, w, dtype, M, n_begin, n_end);
    else
        gemm(y, x, w->data, w->scales, dtype, M, N, K, n_begin, n_end);
}

static void matmul_f32_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_F32, M, n_begin, n_end);
}

static void matmul_bf16_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_BF16, M, n_begin, n_end);
}

static void matmul_f16_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_F16, M, n_begin, n_end);
}

static void matmul_q8_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_Q8, M, n_begin, n_end);
}

static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float sum = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

const nt_kernels nt_kernels_avx2 = {
    .name = "avx2",
    .supported = cpu_has_avx2,
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_avx2,
        [NT_DTYPE_BF16] = matmul_bf16_avx2,
        [NT_DTYPE_F16] = matmul_f16_avx2,
        [NT_DTYPE_Q8] = matmul_q8_avx2,
    },
    .dot = dot_avx2,
    .axpy = axpy_avx2,
};

#else /* not compiled for AVX2 (another architecture): a set that no CPU supports keeps the list whole */

static int never(void) { return 0; }

const nt_kernels nt_kernels_avx2 = {.name = "avx2", .supported = never};

#endif
