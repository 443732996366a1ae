/*
 * AVX2 + FMA (+ F16C) kernels. This file alone is compiled with avx2_CFLAGS (csrc/sources.mk), and its
 * set is used only when the CPU reports those features (kernels/dispatch.c). Built without them (another
 * architecture), the set is empty and reports itself unsupported.
 */
#include "kernels/kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <stdlib.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Elements i..i+7 of w (N, K) in float32; i is a multiple of 8, so the eight share one int8 or int4 group, whose
 * scale is scales[i / group] because K is whole groups. */
static inline __m256 load8(const void *w, const float *scales, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_Q4: { /* the low nibbles of the group's bytes o..o+7, or their high ones past the first half */
        int64_t o = i % NT_Q4_GROUP;
        const uint8_t *p = (const uint8_t *)w + i / NT_Q4_GROUP * (NT_Q4_GROUP / 2) + o % (NT_Q4_GROUP / 2);
        __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
        if (o >= NT_Q4_GROUP / 2) q = _mm256_srli_epi32(q, 4);
        q = _mm256_sub_epi32(_mm256_and_si256(q, _mm256_set1_epi32(15)), _mm256_set1_epi32(8));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_broadcast_ss(scales + i / NT_Q4_GROUP));
    }
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

/* The 32 elements of an int4 group (its 16 bytes) times the group's scale, as load8 gives them 8 at a time: element
 * e in wv[e / 8]. fma(q, scale, -8 scale) rounds the exact (q - 8) scale once, as load8's product does. */
static inline __attribute__((always_inline)) void load_q4_group(__m256 wv[4], const uint8_t *group, const float *scale) {
    const __m256i low = _mm256_set1_epi32(15);
    __m256 s = _mm256_broadcast_ss(scale), offset = _mm256_mul_ps(s, _mm256_set1_ps(-8.0f));
    __m256i first = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)group));
    __m256i second = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(group + 8)));
    wv[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(first, low)), s, offset);
    wv[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(second, low)), s, offset);
    wv[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(first, 4)), s, offset);
    wv[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(second, 4)), s, offset);
}

static inline float load1(const void *w, const float *scales, nt_dtype dtype, int64_t i) {
    switch (dtype) {
    case NT_DTYPE_Q8: return (float)((const int8_t *)w)[i] * scales[i / NT_Q8_GROUP];
    case NT_DTYPE_Q4: {
        int64_t o = i % NT_Q4_GROUP;
        uint8_t byte = ((const uint8_t *)w)[i / NT_Q4_GROUP * (NT_Q4_GROUP / 2) + o % (NT_Q4_GROUP / 2)];
        return (float)((o < NT_Q4_GROUP / 2 ? byte & 15 : byte >> 4) - 8) * scales[i / NT_Q4_GROUP];
    }
    case NT_DTYPE_BF16: return nt_bf16_to_f32(((const uint16_t *)w)[i]);
    case NT_DTYPE_F16: return _cvtsh_ss(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

/* ---------------------------------------------------------------- decode: up to 16 rows of x, w read once
 * The loops are kernels/small_loops.h's (which explains the blocking); here the register block, in the 16 ymm
 * registers, which hold fewer accumulators than the AVX-512 set's: passes of up to 8 rows of x, 5 to 8 of them
 * against one row of w (8 accumulators, each x vector read by its FMA), up to 4 against two or four (the x vectors
 * in registers). The columns past the last multiple of 8 are summed one by one from x into their chunk's sum.
 * Packing x, keeping it in registers and reducing the accumulators together took it from about 63 to 72-77
 * GFLOP/s for bfloat16 and float16 and from 56 to 62 for int8 at 8 rows on a Sapphire Rapids core (132 GFLOP/s
 * peak with ymm); one pass of 8 rows instead of two of 4, int8 to 70-74 and float32 from 35-39 to 39-48 (memory
 * bound), int4 from 45 to 67-72 with its groups widened whole (small_block). Chunks of 1024 and blocks of
 * 48, as the AVX-512 set has, were 5% faster there, but would put the x chunk in half of a Zen core's 32 KiB L1 and
 * a block of bfloat16 rows of 9216 past its 512 KiB L2, where these kernels mostly run. */
enum { SMALL_MAX_ROWS = 16, SMALL_PASS_ROWS = 8, SMALL_KC = 512, SMALL_BLOCK_ROWS = 24, SMALL_MAX_W_ROWS = 4 };
enum { SMALL_ACCUMULATORS = 8 }; /* the most MR x NR of a block: reduce_many's */
#define SMALL_PASSES(PASS) PASS(1, 4) PASS(2, 4) PASS(3, 2) PASS(4, 2) PASS(5, 1) PASS(6, 1) PASS(7, 1) default: PASS(8, 1)
_Static_assert(SMALL_KC % NT_Q8_GROUP == 0 && NT_Q8_GROUP % 8 == 0, "a chunk and a vector stay in one group");

/* sums (8): lane 4h + r (h, r < 2 and 4) = the sum of the lanes of v[2r + h] for the first c of v (c <= 8): three
 * halvings, each merging two vectors (two shuffles and an add) where hsum takes five instructions per vector.
 * Every vector's lanes are added in the same order wherever it stands. */
static inline __attribute__((always_inline)) __m256 reduce_many(const __m256 *v, const int c) {
    __m256 s1[4], s2[2];
    for (int p = 0; p < (c + 1) / 2; p++) { /* lanes l + (l + 4) of v[2p] in the low 128 bits, of v[2p + 1] above */
        __m256 a = v[2 * p], b = 2 * p + 1 < c ? v[2 * p + 1] : a;
        s1[p] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    }
    for (int p = 0; p < (c + 3) / 4; p++) { /* 128-bit half h: 2 partial sums of v[4p + h], then of v[4p + 2 + h] */
        __m256d a = _mm256_castps_pd(s1[2 * p]), b = 2 * p + 1 < (c + 1) / 2 ? _mm256_castps_pd(s1[2 * p + 1]) : a;
        s2[p] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
    }
    __m256 a = s2[0], b = c > 4 ? s2[1] : a;
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xdd));
}

/* small_loops.h's small_block, the whole 8s of columns from xp, the rest from x. The asm statement keeps the x
 * vectors in registers (GCC otherwise reads them again for each FMA). */
static inline __attribute__((always_inline)) void small_block(float *y, int64_t N, const float *x, const float *xp,
                                                              int64_t K, const void *w, const float *scales,
                                                              nt_dtype dtype, int64_t n0, int64_t k0, int64_t k1,
                                                              int64_t ahead, const int MR, const int NR) {
    __m256 acc[SMALL_ACCUMULATORS]; /* x row i, w row j at i * NR + j */
#pragma GCC unroll 8
    for (int a = 0; a < MR * NR; a++) acc[a] = _mm256_setzero_ps();
    const char *base = w;
    int64_t size = dtype == NT_DTYPE_F32 ? 4 : dtype == NT_DTYPE_Q8 ? 1 : 2; /* bytes of one element */
    int64_t k = k0;
    /* int4: a group (four vectors, the chunk holds whole ones) widened at once, each vector of x then read by its
     * FMA: 8 to 16 rows of x ran at about 45 GFLOP/s with the group-fused row kernel, which reads w once per 3 rows,
     * and with load8 per vector (Sapphire Rapids core held to AVX2) */
    for (; dtype == NT_DTYPE_Q4 && k < k1; k += NT_Q4_GROUP) {
        if (k % 128 == 0) /* once per line of each row: 128 elements */
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++) _mm_prefetch(base + ((n0 + j) * K + k + ahead) / 2, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            __m256 wv[4];
            load_q4_group(wv, (const uint8_t *)w + ((n0 + j) * K + k) / 2, scales + ((n0 + j) * K + k) / NT_Q4_GROUP);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
#pragma GCC unroll 8
                for (int i = 0; i < MR; i++)
                    acc[i * NR + j] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + (k + 8 * v - k0) * MR + 8 * i), wv[v],
                                                      acc[i * NR + j]);
        }
    }
    for (; k + 8 <= k1; k += 8) {
        if (((k * size) & 63) == 0) /* once per line of each row */
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++) _mm_prefetch(base + ((n0 + j) * K + k + ahead) * size, _MM_HINT_T0);
        __m256 xv[SMALL_PASS_ROWS];
        if (NR > 1) /* x vectors serving several w rows stay in registers; with one w row each is read by its FMA */
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                xv[i] = _mm256_loadu_ps(xp + (k - k0) * MR + 8 * i);
                __asm__("" : "+x"(xv[i]));
            }
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            /* int8 with its group's scale, found by a shift (load8 divides a signed element index) */
            __m256 wv = dtype == NT_DTYPE_Q8
                            ? _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                                (const __m128i *)((const int8_t *)w + (n0 + j) * K + k)))),
                                            _mm256_broadcast_ss(scales + (n0 + j) * (K / NT_Q8_GROUP) + (uint64_t)k / NT_Q8_GROUP))
                            : load8(w, scales, dtype, (n0 + j) * K + k);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++)
                acc[i * NR + j] = _mm256_fmadd_ps(NR > 1 ? xv[i] : _mm256_loadu_ps(xp + (k - k0) * MR + 8 * i), wv,
                                                  acc[i * NR + j]);
        }
    }
    float sums[8];
    _mm256_storeu_ps(sums, reduce_many(acc, MR * NR));
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            int a = i * NR + j;
            float sum = sums[4 * (a % 2) + a / 2];
            for (int64_t kk = k; kk < k1; kk++) sum += x[i * K + kk] * load1(w, scales, dtype, (n0 + j) * K + kk);
            y[i * N + n0 + j] = k0 == 0 ? sum : y[i * N + n0 + j] + sum;
        }
}

/* xp = x rows 0..rows-1 (K apart), the whole 8s of columns [k0, k1): columns k.. of row i at
 * xp + (k - k0) * rows + 8 * i. Read from x directly, rows K floats apart all fall in the same L1 sets when K is
 * a multiple of 1024 and evict one another (see the AVX-512 set's small_pack). Unlike the AVX-512 set's, it leaves
 * out the columns past the last 8: small_block adds them one by one from x after the vectors' sum (this set's sums,
 * to the bit, are in that order), where the AVX-512 set's masked loads take them in its vectors. */
static void small_pack(float *xp, const float *x, int64_t K, int64_t rows, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k + 8 <= k1; k += 8)
        for (int64_t i = 0; i < rows; i++) _mm256_store_ps(xp + (k - k0) * rows + 8 * i, _mm256_loadu_ps(x + i * K + k));
}

#include "kernels/small_loops.h"

enum { GEMV_MAX_ROWS = 3, GEMV_W_ROWS = 4 }; /* rows of x per pass, rows of w per block (int8, int4) */

/* ---------------------------------------------------------------- one row of x, int8 weights
 * Decode of one sequence, the same streaming of w as small_matmul's with the scale applied once per group rather than once per element: each
 * group's products sum in `group` accumulators, which then join the row's with one FMA by the scale.
 * Fewer w rows per pass as MR grows keep both sets of MR x NR accumulators in registers.
 * Rows of 3072 int8 are short streams, which the hardware prefetcher picks up late on every new block of
 * rows: prefetching 2 KiB ahead, across into the next block, took a decode matmul from about 75% to about
 * 100% of bfloat16's bytes per second on an AVX-512-class Xeon VM (9 -> 12.5 GB/s). */
enum { PREFETCH_GROUPS = 2048 / NT_Q8_GROUP };
static inline __attribute__((always_inline)) void gemv_q8_block(float *y, const float *x, const int8_t *w,
                                                                const float *scales, int64_t N, int64_t K,
                                                                int64_t m0, int64_t n0, const int MR, const int NR) {
    __m256 acc[GEMV_MAX_ROWS][GEMV_W_ROWS], group[GEMV_MAX_ROWS][GEMV_W_ROWS];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const float *xr = x + m0 * K;
    int64_t groups = K / NT_Q8_GROUP;
    for (int64_t g = 0; g < groups; g++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) group[i][j] = _mm256_setzero_ps();
        /* the group PREFETCH_GROUPS ahead of each row, or past the row's end the next block's rows */
        int64_t ahead = (g + PREFETCH_GROUPS) * NT_Q8_GROUP;
        if (ahead >= K) ahead += (NR - 1) * K;
        if (ahead < K || n0 + 2 * NR <= N)
            for (int j = 0; j < NR; j++) _mm_prefetch((const char *)(w + (n0 + j) * K + ahead), _MM_HINT_T0);
        for (int64_t k = g * NT_Q8_GROUP; k < (g + 1) * NT_Q8_GROUP; k += 8)
            for (int j = 0; j < NR; j++) {
                __m128i q = _mm_loadl_epi64((const __m128i *)(w + (n0 + j) * K + k));
                __m256 wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                for (int i = 0; i < MR; i++)
                    group[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i * K + k), wv, group[i][j]);
            }
        for (int j = 0; j < NR; j++) {
            __m256 scale = _mm256_broadcast_ss(scales + (n0 + j) * groups + g);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(group[i][j], scale, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(m0 + i) * N + n0 + j] = hsum(acc[i][j]);
}

/* ---------------------------------------------------------------- few rows of x, int4 weights
 * As gemv_q8_block, a group of 32 (16 bytes) at a time: its bytes widened 8 at a time to 32 bits (the one shuffle
 * per 8 bytes), whose low nibbles (elements 0..15) are masked and high ones (16..31) shifted down, then converted
 * as 0..15. The -8 of every element is taken once per group and x row: each group sum starts from -8 x the sum of
 * the group's x, which also serves every w row. Splitting the nibbles in bytes and widening them signed took 6
 * shuffles a group instead of 2: llvm-mca puts this version 10% (Sapphire Rapids) and 24% (Zen 3) faster. */
static inline __attribute__((always_inline)) void widen_q4_group(__m256 wv[4], const uint8_t *group) {
    const __m256i low = _mm256_set1_epi32(15);
    __m256i first = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)group));
    __m256i second = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(group + 8)));
    wv[0] = _mm256_cvtepi32_ps(_mm256_and_si256(first, low));
    wv[1] = _mm256_cvtepi32_ps(_mm256_and_si256(second, low));
    wv[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(first, 4));
    wv[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(second, 4));
}

enum { Q4_GROUP_BYTES = NT_Q4_GROUP / 2 };

static inline __attribute__((always_inline)) void gemv_q4_block(float *y, const float *x, const uint8_t *w,
                                                                const float *scales, int64_t N, int64_t K,
                                                                int64_t m0, int64_t n0, const int MR, const int NR) {
    int64_t groups = K / NT_Q4_GROUP, row_bytes = groups * Q4_GROUP_BYTES;
    const uint8_t *rows[GEMV_W_ROWS];
    const float *row_scales[GEMV_W_ROWS];
    for (int j = 0; j < NR; j++) {
        rows[j] = w + (n0 + j) * row_bytes;
        row_scales[j] = scales + (n0 + j) * groups;
    }
    __m256 acc[GEMV_MAX_ROWS][GEMV_W_ROWS], group[GEMV_MAX_ROWS][GEMV_W_ROWS];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const float *xr = x + m0 * K;
    for (int64_t g = 0; g < groups; g++) {
        /* once a cache line: 2 KiB ahead of each row, past the row's end into the next block's rows (see
         * gemv_q8_block) */
        int64_t ahead = g * Q4_GROUP_BYTES + 2048;
        if (ahead % 64 < Q4_GROUP_BYTES) {
            if (ahead >= row_bytes) ahead += (NR - 1) * row_bytes;
            if (ahead < row_bytes || n0 + 2 * NR <= N)
                for (int j = 0; j < NR; j++) _mm_prefetch((const char *)(rows[j] + ahead), _MM_HINT_T0);
        }
        __m256 offset[GEMV_MAX_ROWS]; /* -8 x the group's x, lane-wise */
        for (int i = 0; i < MR; i++) {
            const float *xg = xr + i * K + g * NT_Q4_GROUP;
            __m256 xs = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg), _mm256_loadu_ps(xg + 8)),
                                      _mm256_add_ps(_mm256_loadu_ps(xg + 16), _mm256_loadu_ps(xg + 24)));
            offset[i] = _mm256_mul_ps(xs, _mm256_set1_ps(-8.0f));
        }
        for (int j = 0; j < NR; j++) {
            __m256 wv[4];
            widen_q4_group(wv, rows[j] + g * Q4_GROUP_BYTES);
            for (int i = 0; i < MR; i++) {
                const float *xg = xr + i * K + g * NT_Q4_GROUP;
                __m256 sum = offset[i];
                for (int v = 0; v < 4; v++) sum = _mm256_fmadd_ps(_mm256_loadu_ps(xg + 8 * v), wv[v], sum);
                group[i][j] = sum;
            }
        }
        for (int j = 0; j < NR; j++) {
            __m256 scale = _mm256_broadcast_ss(row_scales[j] + g);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(group[i][j], scale, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(m0 + i) * N + n0 + j] = hsum(acc[i][j]);
}

/* Instantiates, for gemv_NAME_block, the passes of 1, 2 and 3 rows of x (each against 4, 3 or 2 rows of w at a
 * time, then the tail), and gemv_NAME: y (M, N) = x (M, K) @ w^T, columns [n_begin, n_end), K whole groups (the
 * storage checks refuse anything else), by passes of up to GEMV_MAX_ROWS rows of x. */
#define GEMV_PASS(NAME, WTYPE, MR, NR)                                                                       \
    static void gemv_##NAME##_pass_##MR(float *y, const float *x, const WTYPE *w, const float *scales,        \
                                        int64_t N, int64_t K, int64_t m0, int64_t n_begin, int64_t n_end) {   \
        int64_t n0 = n_begin;                                                                                \
        for (; n0 + NR <= n_end; n0 += NR) gemv_##NAME##_block(y, x, w, scales, N, K, m0, n0, MR, NR);       \
        for (; n0 < n_end; n0++) gemv_##NAME##_block(y, x, w, scales, N, K, m0, n0, MR, 1);                  \
    }
#define GEMV_QUANTIZED(NAME, WTYPE)                                                                          \
    GEMV_PASS(NAME, WTYPE, 1, 4)                                                                             \
    GEMV_PASS(NAME, WTYPE, 2, 3)                                                                             \
    GEMV_PASS(NAME, WTYPE, 3, 2)                                                                             \
    static void gemv_##NAME(float *y, const float *x, const WTYPE *w, const float *scales, int64_t M,        \
                            int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {                          \
        for (int64_t m0 = 0; m0 < M; m0 += GEMV_MAX_ROWS) {                                                  \
            int64_t rows = M - m0;                                                                           \
            if (rows >= 3)                                                                                   \
                gemv_##NAME##_pass_3(y, x, w, scales, N, K, m0, n_begin, n_end);                             \
            else if (rows == 2)                                                                              \
                gemv_##NAME##_pass_2(y, x, w, scales, N, K, m0, n_begin, n_end);                             \
            else                                                                                             \
                gemv_##NAME##_pass_1(y, x, w, scales, N, K, m0, n_begin, n_end);                             \
        }                                                                                                    \
    }
/* int8: the scale once per group of 64 rather than once per 8 weights, as small_matmul does, is what one row needs
 * (callgrind: fewer instructions; decode of one row is bound by them on AVX2), and two or three rows too (1.3x
 * small_matmul's speed at 2 rows, level at 3; from 4 rows, small_matmul's sharing of each widened weight among more
 * rows wins). */
GEMV_QUANTIZED(q8, int8_t)
GEMV_QUANTIZED(q4, uint8_t)

/* ---------------------------------------------------------------- many rows of x: packed panels
 * For prefill, where the arithmetic dominates. A panel of NR rows of w and KC of its columns is
 * converted to float32 and laid out k-major (KC, NR), then every block of MR rows of x is multiplied
 * against it: MR x NR outputs kept in 12 registers, two panel loads and MR broadcasts per k. Loops, outer
 * to inner: ROWS_MC rows of x, k blocks (the x block (MC, KC), packed once so that each block of MR rows
 * is one contiguous stream, stays in L2), panels (each packed once per row block), MR rows. Measured on a
 * Sapphire Rapids core at M = 512: packing x and KC = 512 (the panel, 32 KiB, in L1 beside the x stream)
 * took the kernel from about 78 to about 96 GFLOP/s; 256 and 768 were slower. Prefetching the x stream 32 k ahead
 * (software: the hardware prefetchers bring it to L2, not L1, with the panel filling two thirds of L1) took it from
 * 99-107 to 105-112 GFLOP/s of the core's 129 (the same core held to AVX2, one thread). */
enum {
    PANEL_NR = 16,
    PANEL_MR = 6,
    PANEL_KC = 512,
    ROWS_MC = 516, /* a multiple of PANEL_MR, at least 512 rows (forward.c's MLP chunk); the x block, 1 MiB,
                    * and a panel fit a 2 MiB L2 */
    GEMM_MIN_ROWS = 8,
    PANEL_PREFETCH_K = 32, /* how many k ahead panel_block prefetches the stream of packed x */
};

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

/* xp (kc, PANEL_MR) = x rows 0..mr-1 (each K apart), columns 0..kc-1, interleaved so that the broadcasts of
 * one k are adjacent; rows past mr repeat the last one. 8 columns at a time go through the 8x8 transpose,
 * each column stored whole at its place, its 2 unused lanes overwritten by the next column's store, the last
 * column's through a mask: nothing is written past xp's end, where another thread may be packing. */
static void pack_rows(float *xp, const float *x, int64_t K, int64_t mr, int64_t kc) {
    _Static_assert(PANEL_MR == 6, "the last column's mask keeps 6 lanes");
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int64_t i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + (i < mr ? i : mr - 1) * K + k);
        transpose8(r);
        for (int t = 0; t < 7; t++) _mm256_storeu_ps(xp + (k + t) * PANEL_MR, r[t]);
        _mm256_maskstore_ps(xp + (k + 7) * PANEL_MR, six, r[7]);
    }
    for (; k < kc; k++)
        for (int64_t i = 0; i < PANEL_MR; i++) xp[k * PANEL_MR + i] = x[(i < mr ? i : mr - 1) * K + k];
}

/* y rows (mr <= 6, each N apart) (+)= xp (kc, 6) @ panel (kc, 16), for the nr first columns. The twelve
 * accumulators are named one by one because GCC keeps an accumulator array in memory here. */
static void panel_block(float *y, int64_t N, const float *xp, const float *panel, int64_t kc, int64_t mr, int64_t nr,
                        int accumulate) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
           a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(panel + k * PANEL_NR), w1 = _mm256_load_ps(panel + k * PANEL_NR + 8), b;
        const float *xk = xp + k * PANEL_MR;
        if (k % 8 == 0) /* the x stream 32 k on (into the next block's at the end), 3 lines per 8 k */
            for (int line = 0; line < 3; line++)
                _mm_prefetch((const char *)(xk + PANEL_MR * PANEL_PREFETCH_K + 16 * line), _MM_HINT_T0);
        b = _mm256_broadcast_ss(xk);
        a00 = _mm256_fmadd_ps(b, w0, a00);
        a01 = _mm256_fmadd_ps(b, w1, a01);
        b = _mm256_broadcast_ss(xk + 1);
        a10 = _mm256_fmadd_ps(b, w0, a10);
        a11 = _mm256_fmadd_ps(b, w1, a11);
        b = _mm256_broadcast_ss(xk + 2);
        a20 = _mm256_fmadd_ps(b, w0, a20);
        a21 = _mm256_fmadd_ps(b, w1, a21);
        b = _mm256_broadcast_ss(xk + 3);
        a30 = _mm256_fmadd_ps(b, w0, a30);
        a31 = _mm256_fmadd_ps(b, w1, a31);
        b = _mm256_broadcast_ss(xk + 4);
        a40 = _mm256_fmadd_ps(b, w0, a40);
        a41 = _mm256_fmadd_ps(b, w1, a41);
        b = _mm256_broadcast_ss(xk + 5);
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

#include "kernels/gemm_loops.h"

/* The element index arithmetic below stays inside this file: the kernels are written once for every
 * dtype, and load8/load1 widen each dtype's elements in registers (int8 and int4 through their group's scale). */
static inline __attribute__((always_inline)) void matmul_avx2(float *y, const float *x, const nt_tensor *w,
                                                              nt_dtype dtype, int64_t M, int64_t n_begin,
                                                              int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    if (M <= SMALL_MAX_ROWS)
        small_matmul(y, x, w, dtype, M, n_begin, n_end);
    else if (!gemm(y, x, w->data, w->scales, dtype, M, N, K, n_begin, n_end))
        for (int64_t m0 = 0; m0 < M; m0 += SMALL_MAX_ROWS) /* without memory for the panels */
            small_matmul(y + m0 * N, x + m0 * K, w, dtype, M - m0 < SMALL_MAX_ROWS ? M - m0 : SMALL_MAX_ROWS,
                         n_begin, n_end);
}

NT_MATMUL_FOR_DTYPE(matmul_f32_avx2, matmul_avx2, NT_DTYPE_F32)
NT_MATMUL_FOR_DTYPE(matmul_bf16_avx2, matmul_avx2, NT_DTYPE_BF16)
NT_MATMUL_FOR_DTYPE(matmul_f16_avx2, matmul_avx2, NT_DTYPE_F16)

static void matmul_q8_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    if (M <= GEMV_MAX_ROWS)
        gemv_q8(y, x, w->data, w->scales, M, w->shape[0], w->shape[1], n_begin, n_end);
    else
        matmul_avx2(y, x, w, NT_DTYPE_Q8, M, n_begin, n_end);
}

static void matmul_q4_avx2(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    /* from 4 rows small_matmul, which reads w once for 8 rows (the group-fused kernel, once per 3): 57 GFLOP/s at 4
     * rows and 67-72 at 8 and 16 where that one gives 45 */
    if (M > GEMV_MAX_ROWS)
        matmul_avx2(y, x, w, NT_DTYPE_Q4, M, n_begin, n_end);
    else
        gemv_q4(y, x, w->data, w->scales, M, w->shape[0], w->shape[1], n_begin, n_end);
}

/* ---------------------------------------------------------------- attention's tiles
 * y (M, N) (+)= x (M, K) @ w (K, N) with w row-major: NN_MR rows of y by NN_NV vectors of 8 columns in ymm
 * accumulators (12 of the 16 registers), one broadcast of x and NN_NV loads of w per k. A strip whose width
 * is no multiple of 8 goes through masked loads and stores (TAIL), the others through plain ones. */
enum { NN_MR = 4, NN_NV = 3 };

static inline __m256i lanes_below(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) void nn_block(float *y, const float *x, const float *w, int64_t K,
                                                           int64_t ldx, int64_t kx, int64_t ldw, int64_t ldy,
                                                           int64_t cols, int accumulate, const int MR, const int NV,
                                                           const int TAIL) {
    __m256 acc[NN_MR][NN_NV];
    __m256i mask = lanes_below(cols - 8 * (NV - 1)); /* of the last vector */
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m256 wv[NN_NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            wv[v] = TAIL && v == NV - 1 ? _mm256_maskload_ps(w + k * ldw + 8 * v, mask)
                                        : _mm256_loadu_ps(w + k * ldw + 8 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256 b = _mm256_broadcast_ss(x + i * ldx + k * kx);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(b, wv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            float *y_iv = y + i * ldy + 8 * v;
            __m256 out = acc[i][v];
            if (TAIL && v == NV - 1) {
                if (accumulate) out = _mm256_add_ps(out, _mm256_maskload_ps(y_iv, mask));
                _mm256_maskstore_ps(y_iv, mask, out);
            } else {
                if (accumulate) out = _mm256_add_ps(out, _mm256_loadu_ps(y_iv));
                _mm256_storeu_ps(y_iv, out);
            }
        }
}

#define NN_BLOCK(MR, NV, TAIL)                                                                                  \
    static void nn_block_##MR##_##NV##_##TAIL(float *y, const float *x, const float *w, int64_t K, int64_t ldx, \
                                              int64_t kx, int64_t ldw, int64_t ldy, int64_t cols,               \
                                              int accumulate) {                                                 \
        nn_block(y, x, w, K, ldx, kx, ldw, ldy, cols, accumulate, MR, NV, TAIL);                                 \
    }
#define NN_BLOCKS(MR, TAIL) NN_BLOCK(MR, 1, TAIL) NN_BLOCK(MR, 2, TAIL) NN_BLOCK(MR, 3, TAIL)
NN_BLOCKS(1, 0) NN_BLOCKS(2, 0) NN_BLOCKS(3, 0) NN_BLOCKS(4, 0)
NN_BLOCKS(1, 1) NN_BLOCKS(2, 1) NN_BLOCKS(3, 1) NN_BLOCKS(4, 1)
#define NN_ROW(MR, TAIL) {nn_block_##MR##_1_##TAIL, nn_block_##MR##_2_##TAIL, nn_block_##MR##_3_##TAIL}

static void matmul_nn_avx2(float *y, const float *x, const float *w, int64_t M, int64_t K, int64_t N, int64_t ldx,
                           int64_t kx, int64_t ldw, int64_t ldy, int accumulate) {
    typedef void (*block_fn)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int);
    static const block_fn blocks[2][NN_MR][NN_NV] = {{NN_ROW(1, 0), NN_ROW(2, 0), NN_ROW(3, 0), NN_ROW(4, 0)},
                                                      {NN_ROW(1, 1), NN_ROW(2, 1), NN_ROW(3, 1), NN_ROW(4, 1)}};
    /* a column strip of w (K, 24) stays in L1 while every block of rows passes */
    for (int64_t n0 = 0; n0 < N; n0 += 8 * NN_NV) {
        int64_t cols = N - n0 < 8 * NN_NV ? N - n0 : 8 * NN_NV;
        int64_t nv = (cols + 7) / 8;
        for (int64_t m0 = 0; m0 < M; m0 += NN_MR) {
            int64_t mr = M - m0 < NN_MR ? M - m0 : NN_MR;
            blocks[cols % 8 != 0][mr - 1][nv - 1](y + m0 * ldy + n0, x + m0 * ldx, w + n0, K, ldx, kx, ldw, ldy,
                                                   cols, accumulate);
        }
    }
}

/* exp(x) for x <= 0 (NT_EXP_POLY in kernels/kernels.h), 0 for exp(-inf); 2^n built in the exponent bits */
static inline __m256 exp_nonpositive(__m256 x) {
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(NT_EXP_MIN_ARG), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(NT_EXP_MIN_ARG));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(NT_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(NT_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(NT_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(NT_EXP_POLY[0]);
    for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(NT_EXP_POLY[i]));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n >= -126 after the clamp: 2^n is a normal float */
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(scale)));
}

static void exp_shifted_avx2(float *x, const float *shift, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(shift + i))));
    if (i < n) {
        __m256i mask = lanes_below(n - i);
        __m256 d = _mm256_sub_ps(_mm256_maskload_ps(x + i, mask), _mm256_maskload_ps(shift + i, mask));
        _mm256_maskstore_ps(x + i, mask, exp_nonpositive(d));
    }
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

static const nt_row_packing row_packing = {
    .row_block = PANEL_MR,
    .min_rows = SMALL_MAX_ROWS + 1, /* as matmul_avx2: fewer go to the decode kernels */
    .packed_floats = packed_floats,
    .pack_rows = pack_x,
};

const nt_kernels nt_kernels_avx2 = {
    .name = "avx2",
    .supported = cpu_has_avx2,
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_avx2,
        [NT_DTYPE_BF16] = matmul_bf16_avx2,
        [NT_DTYPE_F16] = matmul_f16_avx2,
        [NT_DTYPE_Q8] = matmul_q8_avx2,
        [NT_DTYPE_Q4] = matmul_q4_avx2,
    },
    .matmul_nn = matmul_nn_avx2,
    .exp_shifted = exp_shifted_avx2,
    .packing = GEMM_PACKING,
    .matmul_packed = GEMM_MATMUL_PACKED,
};

#else /* not compiled for AVX2 (another architecture): a set that no CPU supports keeps the list whole */

static int never(void) { return 0; }

const nt_kernels nt_kernels_avx2 = {.name = "avx2", .supported = never};

#endif
