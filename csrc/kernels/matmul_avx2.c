/*
 * AVX2 + FMA (+ F16C) kernels. This file alone is compiled with -mavx2 -mfma -mf16c, and its table
 * is used only when the CPU reports those features (kernels/dispatch.c). On other architectures it
 * compiles to a copy of the portable table.
 */
#include "kernels/kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

/* Inner dimension block: a block of x rows (3 x KC floats) and of w rows (4 x KC) stays in L1. */
enum { KC = 512 };

static inline __m256 load8(const void *w, nt_dtype dtype, int64_t i) {
    switch (dtype) {
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

static inline float load1(const void *w, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_BF16: return nt_bf16_to_f32(((const uint16_t *)w)[i]);
    case NT_DTYPE_F16: return _cvtsh_ss(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y[m][n] (+)= sum over k in [k0, k1) of x[m][k] * w[n][k], for up to 3 rows m and 4 rows n:
 * twelve accumulators, each w vector loaded once and used for every x row. */
static inline void block_3x4(float *y, const float *x, const void *w, nt_dtype dtype, int64_t mr,
                             int64_t nr, int64_t N, int64_t K, int64_t m0, int64_t n0, int64_t k0,
                             int64_t k1, int accumulate) {
    __m256 acc[3][4];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();
    const float *xr[3];
    for (int i = 0; i < 3; i++) xr[i] = x + (m0 + (i < mr ? i : 0)) * K;
    int64_t wr[4];
    for (int j = 0; j < 4; j++) wr[j] = (n0 + (j < nr ? j : 0)) * K;

    int64_t k = k0;
    if (mr == 3 && nr == 4) {
        for (; k + 8 <= k1; k += 8) {
            __m256 x0 = _mm256_loadu_ps(xr[0] + k), x1 = _mm256_loadu_ps(xr[1] + k),
                   x2 = _mm256_loadu_ps(xr[2] + k);
            for (int j = 0; j < 4; j++) {
                __m256 wv = load8(w, dtype, wr[j] + k);
                acc[0][j] = _mm256_fmadd_ps(x0, wv, acc[0][j]);
                acc[1][j] = _mm256_fmadd_ps(x1, wv, acc[1][j]);
                acc[2][j] = _mm256_fmadd_ps(x2, wv, acc[2][j]);
            }
        }
    } else {
        for (; k + 8 <= k1; k += 8) {
            __m256 xv[3];
            for (int i = 0; i < mr; i++) xv[i] = _mm256_loadu_ps(xr[i] + k);
            for (int j = 0; j < nr; j++) {
                __m256 wv = load8(w, dtype, wr[j] + k);
                for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float sum = hsum(acc[i][j]);
            for (int64_t kk = k; kk < k1; kk++) sum += xr[i][kk] * load1(w, dtype, wr[j] + kk);
            float *out = y + (m0 + i) * N + n0 + j;
            *out = accumulate ? *out + sum : sum;
        }
    }
}

static void matmul_avx2(float *y, const float *x, const void *w, nt_dtype dtype, int64_t M, int64_t N,
                        int64_t K, int64_t n_begin, int64_t n_end) {
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int64_t n0 = n_begin; n0 < n_end; n0 += 4) {
            int64_t nr = n_end - n0 < 4 ? n_end - n0 : 4;
            for (int64_t m0 = 0; m0 < M; m0 += 3) {
                int64_t mr = M - m0 < 3 ? M - m0 : 3;
                block_3x4(y, x, w, dtype, mr, nr, N, K, m0, n0, k0, k1, k0 > 0);
            }
        }
    }
}

static void matmul_f32_avx2(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                            int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_F32, M, N, K, n_begin, n_end);
}

static void matmul_bf16_avx2(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                             int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_BF16, M, N, K, n_begin, n_end);
}

static void matmul_f16_avx2(float *y, const float *x, const void *w, int64_t M, int64_t N, int64_t K,
                            int64_t n_begin, int64_t n_end) {
    matmul_avx2(y, x, w, NT_DTYPE_F16, M, N, K, n_begin, n_end);
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

const nt_kernels nt_kernels_avx2 = {
    .name = "avx2",
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_avx2,
        [NT_DTYPE_BF16] = matmul_bf16_avx2,
        [NT_DTYPE_F16] = matmul_f16_avx2,
    },
    .dot = dot_avx2,
    .axpy = axpy_avx2,
};

#else /* not compiled for AVX2: dispatch never selects this table, which only keeps the link whole */

const nt_kernels nt_kernels_avx2 = {
    .name = "portable",
    .matmul = {0},
    .dot = 0,
    .axpy = 0,
};

#endif
