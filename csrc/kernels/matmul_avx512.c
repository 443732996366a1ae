/*
 * AVX-512 (F, BW, VL, DQ) + FMA + F16C kernels, float32 activations and accumulation for every weight dtype
 * (int8 and int4 widened to float32 in registers).
 * This file alone is compiled with avx512_CFLAGS (csrc/sources.mk), and its set is used only when the CPU
 * reports those features and the OS saves the zmm state (kernels/dispatch.c). Built without them (another
 * architecture), the set is empty and reports itself unsupported.
 *
 * BF16 weights are widened to float32 with a shift, never multiplied with vdpbf16ps: that instruction
 * rounds the activations to bf16 too, about 3 significant digits, far from Transformers' float32 logits.
 */
#include "kernels/kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__FMA__) && defined(__F16C__)
#include <cpuid.h>
#include <immintrin.h>

#include "kernels/transpose16.h"
#include <stdlib.h>

/* Elements [i, i + 16) of w in float32; with a mask, lanes past it read nothing and are zero. */
static inline __m512 load16(const void *w, nt_dtype dtype, int64_t i, __mmask16 mask) {
    switch (dtype) {
    case NT_DTYPE_BF16: {
        __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case NT_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i));
    default:
        return _mm512_maskz_loadu_ps(mask, (const float *)w + i);
    }
}

static inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* (i - 8 for i in 0..15): vpermps reads only the low 4 bits of each index, so a byte widened to 32 bits indexes
 * this table by its low nibble, and shifted right by 4 by its high one, with no masking nor conversion. */
static inline __m512 q4_levels(void) {
    return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}

/* Elements [i, i + 16) of an int8 or int4 w, unscaled, in float32: whole, as i is a multiple of 16 and K of the
 * group (int4: the low nibbles of the group's 16 bytes for its first half, the high ones for its second). */
static inline __m512 load16_quantized(const void *w, nt_dtype dtype, int64_t i) {
    if (dtype == NT_DTYPE_Q8)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)w + i))));
    __m512i b = _mm512_cvtepu8_epi32(
        _mm_loadu_si128((const __m128i *)((const uint8_t *)w + i / NT_Q4_GROUP * (NT_Q4_GROUP / 2))));
    if (i % NT_Q4_GROUP != 0) b = _mm512_srli_epi32(b, 4);
    return _mm512_permutexvar_ps(b, q4_levels());
}

/* load16, and for the quantized dtypes the elements times their group's scale */
static inline __m512 load16_scaled(const void *w, const float *scales, nt_dtype dtype, int64_t i, __mmask16 mask) {
    switch (dtype) {
    case NT_DTYPE_Q8: return _mm512_mul_ps(load16_quantized(w, dtype, i), _mm512_set1_ps(scales[i / NT_Q8_GROUP]));
    case NT_DTYPE_Q4: return _mm512_mul_ps(load16_quantized(w, dtype, i), _mm512_set1_ps(scales[i / NT_Q4_GROUP]));
    default: return load16(w, dtype, i, mask);
    }
}

/* ---------------------------------------------------------------- few rows of x: stream w once
 * For decode, where w is read from memory once per token and the arithmetic is cheap. MR rows of x
 * against NR rows of w over the whole of K, the last partial 16 columns through masked loads; MR and NR
 * are constants at every call so that the accumulators live in registers. */
enum { GEMV_MAX_ROWS = 4, GEMV_W_ROWS = 4 };

static inline __attribute__((always_inline)) void gemv_block(float *y, const float *x, const void *w,
                                                             nt_dtype dtype, int64_t N, int64_t K, int64_t m0,
                                                             int64_t n0, const int MR, const int NR) {
    __m512 acc[GEMV_MAX_ROWS][GEMV_W_ROWS];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    const float *xr = x + m0 * K;
    for (int64_t k = 0; k < K; k += 16) {
        __mmask16 mask = first_lanes(K - k);
        __m512 xv[GEMV_MAX_ROWS];
        for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(mask, xr + i * K + k);
        for (int j = 0; j < NR; j++) {
            __m512 wv = load16(w, dtype, (n0 + j) * K + k, mask);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(m0 + i) * N + n0 + j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Instantiates gemv_block for the row counts of one pass: MR x rows against 4 w rows, then the tail. */
#define GEMV_PASS(MR)                                                                                       \
    static void gemv_pass_##MR(float *y, const float *x, const void *w, nt_dtype dtype, int64_t N, int64_t K, \
                               int64_t m0, int64_t n_begin, int64_t n_end) {                               \
        int64_t n0 = n_begin;                                                                               \
        for (; n0 + GEMV_W_ROWS <= n_end; n0 += GEMV_W_ROWS)                                                \
            gemv_block(y, x, w, dtype, N, K, m0, n0, MR, GEMV_W_ROWS);                                      \
        for (; n0 < n_end; n0++) gemv_block(y, x, w, dtype, N, K, m0, n0, MR, 1);                           \
    }
GEMV_PASS(1)
GEMV_PASS(2)
GEMV_PASS(3)
GEMV_PASS(4)

static void gemv(float *y, const float *x, const void *w, nt_dtype dtype, int64_t M, int64_t N, int64_t K,
                 int64_t n_begin, int64_t n_end) {
    for (int64_t m0 = 0; m0 < M; m0 += GEMV_MAX_ROWS) {
        switch (M - m0) {
        case 1: gemv_pass_1(y, x, w, dtype, N, K, m0, n_begin, n_end); break;
        case 2: gemv_pass_2(y, x, w, dtype, N, K, m0, n_begin, n_end); break;
        case 3: gemv_pass_3(y, x, w, dtype, N, K, m0, n_begin, n_end); break;
        default: gemv_pass_4(y, x, w, dtype, N, K, m0, n_begin, n_end); break;
        }
    }
}

/* ---------------------------------------------------------------- few rows of x, int8 and int4 weights
 * The same streaming of w, fusing the dequantization: each group's products with its unscaled integers sum in
 * `sum` accumulators, which join the row's with one FMA by the group's scale. Fewer w rows per pass as MR grows
 * keep both sets of accumulators in the 32 registers. Prefetching 2 KiB ahead of each row, across into the next
 * block of rows, as the AVX2 int8 kernel does (its comment has the measurement). Per 16 weights both dtypes cost
 * three instructions (widen, convert or look up, FMA), which bounds decode by arithmetic rather than by memory on
 * an AVX-512 Xeon; the activations stay float32 all the same: README "Kernels" says why not vpdpbusd (VNNI). */

/* wv (group / 16) = group g of a row of int8 or int4 w, unscaled, in float32 (int4: one widening of its 16 bytes
 * serves both halves). */
static inline __attribute__((always_inline)) void load_group(__m512 wv[4], const void *row, nt_dtype dtype,
                                                             int64_t g) {
    if (dtype == NT_DTYPE_Q8) {
        for (int v = 0; v < 4; v++) wv[v] = load16_quantized(row, dtype, g * NT_Q8_GROUP + 16 * v);
        return;
    }
    const uint8_t *bytes = (const uint8_t *)row + g * (NT_Q4_GROUP / 2);
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)bytes));
    wv[0] = _mm512_permutexvar_ps(b, q4_levels());
    wv[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), q4_levels());
}

static inline __attribute__((always_inline)) void gemv_quantized_block(float *y, const float *x, const void *w,
                                                                       const float *scales, nt_dtype dtype,
                                                                       int64_t N, int64_t K, int64_t m0, int64_t n0,
                                                                       const int MR, const int NR) {
    const int64_t group = dtype == NT_DTYPE_Q8 ? NT_Q8_GROUP : NT_Q4_GROUP, groups = K / group;
    const int64_t group_bytes = dtype == NT_DTYPE_Q8 ? NT_Q8_GROUP : NT_Q4_GROUP / 2;
    const int64_t row_bytes = groups * group_bytes;
    const int vectors = (int)(group / 16); /* per group */
    const char *rows[GEMV_W_ROWS];
    const float *row_scales[GEMV_W_ROWS];
    for (int j = 0; j < NR; j++) {
        rows[j] = (const char *)w + (n0 + j) * row_bytes;
        row_scales[j] = scales + (n0 + j) * groups;
    }
    __m512 acc[GEMV_MAX_ROWS][GEMV_W_ROWS], sum[GEMV_MAX_ROWS][GEMV_W_ROWS];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    const float *xr = x + m0 * K;
    for (int64_t g = 0; g < groups; g++) {
        /* once a cache line: 2 KiB ahead of each row, past the row's end into the next block's rows */
        int64_t ahead = g * group_bytes + 2048;
        if (ahead % 64 < group_bytes) {
            if (ahead >= row_bytes) ahead += (NR - 1) * row_bytes;
            if (ahead < row_bytes || n0 + 2 * NR <= N)
                for (int j = 0; j < NR; j++) _mm_prefetch(rows[j] + ahead, _MM_HINT_T0);
        }
        for (int j = 0; j < NR; j++) {
            __m512 wv[4];
            load_group(wv, rows[j], dtype, g);
            for (int i = 0; i < MR; i++) {
                const float *xg = xr + i * K + g * group;
                sum[i][j] = _mm512_mul_ps(_mm512_loadu_ps(xg), wv[0]);
                for (int v = 1; v < vectors; v++)
                    sum[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 16 * v), wv[v], sum[i][j]);
            }
        }
        for (int j = 0; j < NR; j++) {
            __m512 scale = _mm512_set1_ps(row_scales[j][g]);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(sum[i][j], scale, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(m0 + i) * N + n0 + j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Instantiates gemv_quantized_block for one dtype (a constant, so that the group's loop unrolls) and the row counts
 * of one pass: MR x rows against NR w rows, then the tail. */
#define GEMV_QUANTIZED_PASS(NAME, DTYPE, MR, NR)                                                              \
    static void gemv_##NAME##_pass_##MR(float *y, const float *x, const void *w, const float *scales, int64_t N, \
                                        int64_t K, int64_t m0, int64_t n_begin, int64_t n_end) {              \
        int64_t n0 = n_begin;                                                                                 \
        for (; n0 + NR <= n_end; n0 += NR) gemv_quantized_block(y, x, w, scales, DTYPE, N, K, m0, n0, MR, NR); \
        for (; n0 < n_end; n0++) gemv_quantized_block(y, x, w, scales, DTYPE, N, K, m0, n0, MR, 1);           \
    }
#define GEMV_QUANTIZED(NAME, DTYPE)                                                                           \
    GEMV_QUANTIZED_PASS(NAME, DTYPE, 1, 4)                                                                    \
    GEMV_QUANTIZED_PASS(NAME, DTYPE, 2, 4)                                                                    \
    GEMV_QUANTIZED_PASS(NAME, DTYPE, 3, 3)                                                                    \
    GEMV_QUANTIZED_PASS(NAME, DTYPE, 4, 2)                                                                    \
    static void gemv_##NAME(float *y, const float *x, const void *w, const float *scales, int64_t M, int64_t N, \
                            int64_t K, int64_t n_begin, int64_t n_end) {                                      \
        for (int64_t m0 = 0; m0 < M; m0 += GEMV_MAX_ROWS) {                                                   \
            switch (M - m0) {                                                                                 \
            case 1: gemv_##NAME##_pass_1(y, x, w, scales, N, K, m0, n_begin, n_end); break;                   \
            case 2: gemv_##NAME##_pass_2(y, x, w, scales, N, K, m0, n_begin, n_end); break;                   \
            case 3: gemv_##NAME##_pass_3(y, x, w, scales, N, K, m0, n_begin, n_end); break;                   \
            default: gemv_##NAME##_pass_4(y, x, w, scales, N, K, m0, n_begin, n_end); break;                  \
            }                                                                                                 \
        }                                                                                                     \
    }
GEMV_QUANTIZED(q8, NT_DTYPE_Q8)
GEMV_QUANTIZED(q4, NT_DTYPE_Q4)

/* ---------------------------------------------------------------- decode: up to 16 rows of x, w read once
 * The loops are kernels/small_loops.h's; here the register block, in the 32 zmm registers: passes of up to 8 rows
 * of x, chunks of 1024 columns (8 x 1024 floats of x, 32 KiB, in L1).
 * Measured on a Sapphire Rapids core (bench_kernels, 8 rows, 9216 x 3072, one thread), against the earlier
 * version of this kernel (x read in place, chunks of 512, blocks of 24, each accumulator reduced alone, 85-90
 * GFLOP/s for every dtype): packing x +5-15%, x kept in registers +10-15%, the joint reduction +10%, chunks of
 * 1024 and blocks of 48 (half the reductions and packings) +10-15%, the int4 levels scaled once per group
 * +20%: bfloat16, float16 and int8 about 130 GFLOP/s, int4 140, some 55% of the FMA peak (float32, bound by
 * memory at 8 rows, 75-90). llvm-mca puts the loop at 80% of the peak: loads of x that miss L1 (the stream of w
 * passes through it) seem to take the rest. */
enum { SMALL_MAX_ROWS = 16, SMALL_PASS_ROWS = 8, SMALL_KC = 1024, SMALL_BLOCK_ROWS = 48, SMALL_MAX_W_ROWS = 4 };
enum { SMALL_ACCUMULATORS = 16 }; /* the most MR x NR of a block: reduce_many's */
#define SMALL_PASSES(PASS) \
    PASS(1, 4) PASS(2, 4) PASS(3, 4) PASS(4, 4) PASS(5, 3) PASS(6, 2) PASS(7, 2) default: PASS(8, 2)
_Static_assert(SMALL_KC % NT_Q8_GROUP == 0 && SMALL_KC % 32 == 0 && NT_Q8_GROUP % 16 == 0 && NT_Q4_GROUP == 32,
               "a chunk is whole steps and groups, a vector in one int8 group, a step one int4 group");

/* sums (16): lane 4q + r = the sum of the lanes of v[4r + q], for the first c of v (c <= 16). Four halvings,
 * each merging two vectors into one (two shuffles and an add) rather than reducing every vector on its own (eight
 * instructions each, mostly shuffles: at the end of every chunk, they took about a fifth of the decode kernel's
 * time). Every vector's lanes are added in the same order wherever it stands, so a sum does not depend on c. */
static inline __attribute__((always_inline)) __m512 reduce_many(const __m512 *v, const int c) {
    __m512 s1[8], s2[4], s3[2];
#pragma GCC unroll 8
    for (int p = 0; p < (c + 1) / 2; p++) { /* lanes l + (l + 8) of v[2p] in 128-bit lanes 0, 1; of v[2p + 1] in 2, 3 */
        __m512 a = v[2 * p], b = 2 * p + 1 < c ? v[2 * p + 1] : a;
        s1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    }
#pragma GCC unroll 4
    for (int p = 0; p < (c + 3) / 4; p++) { /* 128-bit lane q: 4 partial sums of v[4p + q] */
        __m512 a = s1[2 * p], b = 2 * p + 1 < (c + 1) / 2 ? s1[2 * p + 1] : a;
        s2[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xdd));
    }
#pragma GCC unroll 2
    for (int p = 0; p < (c + 7) / 8; p++) { /* 128-bit lane q: 2 partial sums of v[8p + q], then of v[8p + 4 + q] */
        __m512d a = _mm512_castps_pd(s2[2 * p]), b = 2 * p + 1 < (c + 3) / 4 ? _mm512_castps_pd(s2[2 * p + 1]) : a;
        s3[p] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    __m512 a = s3[0], b = c > 8 ? s3[1] : a;
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xdd));
}

/* Columns are taken 32 at a time, as two halves of 16 lanes: an int4 group, whose bytes are widened once and
 * whose 16 levels are scaled once for both halves. */
enum { SMALL_STEP = 32 };

/* Half h of the SMALL_STEP columns from column k of w row n in float32; live columns [k, k + live) (int8 and int4
 * rows are whole groups, so only the float dtypes see a tail). raw: for int4, row n's group's 16 bytes widened to
 * 32 bits; levels: q4_levels times the group's scale (one multiplication per
 * group rather than one per 16 weights, and the same products as the dequantized weights). */
static inline __attribute__((always_inline)) __m512 small_half(const void *w, const float *scales, nt_dtype dtype,
                                                               int64_t n, int64_t K, int64_t k, int h, int64_t live,
                                                               __m512i raw, __m512 levels) {
    if (dtype == NT_DTYPE_Q4) return _mm512_permutexvar_ps(h == 0 ? raw : _mm512_srli_epi32(raw, 4), levels);
    int64_t i = n * K + k + 16 * h;
    if (dtype == NT_DTYPE_Q8)
        return _mm512_mul_ps(load16_quantized(w, dtype, i), _mm512_set1_ps(scales[(uint64_t)i / NT_Q8_GROUP]));
    return load16(w, dtype, i, first_lanes(live - 16 * h > 0 ? live - 16 * h : 0));
}

/* small_loops.h's small_block, every column from xp (x is not read): the last partial step goes through the same
 * code with masks (a macro: a separate function taking the accumulators by address sends GCC's copies of them to
 * memory). The asm statement keeps the x vectors in registers: GCC otherwise reads them again as an operand of each
 * FMA, and the loads, more than the FMAs, then bound the loop. */
static inline __attribute__((always_inline)) void small_block(float *y, int64_t N, const float *x, const float *xp,
                                                              int64_t K, const void *w, const float *scales,
                                                              nt_dtype dtype, int64_t n0, int64_t k0, int64_t k1,
                                                              int64_t ahead, const int MR, const int NR) {
    __m512 acc[SMALL_ACCUMULATORS]; /* x row i, w row j at i * NR + j */
#pragma GCC unroll 16
    for (int a = 0; a < MR * NR; a++) acc[a] = _mm512_setzero_ps();
    const char *base = w;
    /* bytes of two elements: int4 packs two in a byte */
    const int64_t size2 = dtype == NT_DTYPE_F32 ? 8 : dtype == NT_DTYPE_Q8 ? 2 : dtype == NT_DTYPE_Q4 ? 1 : 4;
    const int64_t step_bytes = SMALL_STEP * size2 / 2;
#define SMALL_STEP_AT(LIVE)                                                                                   \
    do {                                                                                                      \
        if (step_bytes >= 64 || ((k * size2 / 2) & 63) == 0) /* once per line of each row */                 \
            _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++)                                              \
                _Pragma("GCC unroll 2") for (int64_t l = 0; l < step_bytes; l += 64)                          \
                    _mm_prefetch(base + ((n0 + j) * K + k + ahead) * size2 / 2 + l, _MM_HINT_T0);             \
        __m512i raw[SMALL_MAX_W_ROWS];                                                                        \
        __m512 levels[SMALL_MAX_W_ROWS];                                                                      \
        _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++) {                                                \
            int64_t i = (n0 + j) * K + k;                                                                     \
            if (dtype == NT_DTYPE_Q4) {                                                                       \
                raw[j] = _mm512_cvtepu8_epi32(_mm_loadu_si128(                                                \
                    (const __m128i *)((const uint8_t *)w + (uint64_t)i / NT_Q4_GROUP * (NT_Q4_GROUP / 2))));  \
                levels[j] = _mm512_mul_ps(q4_levels(), _mm512_set1_ps(scales[(uint64_t)i / NT_Q4_GROUP]));    \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                                 \
            __m512 xv[SMALL_PASS_ROWS];                                                                       \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                           \
                xv[i] = _mm512_maskz_loadu_ps(first_lanes((LIVE) - 16 * h > 0 ? (LIVE) - 16 * h : 0),       \
                                              xp + (k - k0) * MR + 16 * (h * MR + i));                        \
                __asm__("" : "+v"(xv[i]));                                                                    \
            }                                                                                                 \
            _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++) {                                            \
                __m512 wv = small_half(w, scales, dtype, n0 + j, K, k, h, LIVE, raw[j], levels[j]);           \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                          \
                    acc[i * NR + j] = _mm512_fmadd_ps(xv[i], wv, acc[i * NR + j]);                            \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)
    int64_t k = k0;
    for (; k + SMALL_STEP <= k1; k += SMALL_STEP) SMALL_STEP_AT(SMALL_STEP);
    if (k < k1) SMALL_STEP_AT(k1 - k);
#undef SMALL_STEP_AT
    float sums[16];
    _mm512_storeu_ps(sums, reduce_many(acc, MR * NR));
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            int a = i * NR + j;
            float sum = sums[4 * (a % 4) + a / 4];
            y[i * N + n0 + j] = k0 == 0 ? sum : y[i * N + n0 + j] + sum;
        }
}

/* xp = x rows 0..rows-1 (K apart), columns [k0, k1), in the order small_block reads them: columns k.. of row i
 * at xp + (k - k0) * rows + 16 * i, past k1 zero. Read from x directly, rows K floats apart all fall in the same
 * L1 sets when K is a multiple of 1024, and evicted one another: the kernel then ran at about half its speed even
 * with w in L2. */
static void small_pack(float *xp, const float *x, int64_t K, int64_t rows, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; k += 16) {
        __mmask16 mask = first_lanes(k1 - k);
        for (int64_t i = 0; i < rows; i++)
            _mm512_store_ps(xp + (k - k0) * rows + 16 * i, _mm512_maskz_loadu_ps(mask, x + i * K + k));
    }
}

#include "kernels/small_loops.h"

/* ---------------------------------------------------------------- many rows of x: packed panels
 * For prefill, where the arithmetic dominates. A panel of PANEL_NR rows of w and PANEL_KC of its columns
 * is converted to float32 and laid out k-major (KC, NR); every block of PANEL_MR rows of x (packed too) is
 * multiplied against it with MR x NR/16 accumulators in zmm registers, NR/16 panel loads and MR broadcasts
 * per k. Loops, outer to inner: ROWS_MC rows of x, k blocks (the x block (MC, KC), packed once, stays in
 * L2), panels (each packed once per row block: once per call for a prompt of up to ROWS_MC tokens),
 * PANEL_MR rows. Measured on a Sapphire Rapids core: 8x48 beat 14x32, 12x32 and 6x64; KC = 512 (the panel
 * in L2) beat the L1-sized 128..256 by about 10% and 384 by 3%, and KC = 768 beat 512 by 2-4% at M = 512 (fewer
 * passes of y, whose lines come from memory: 4 over Minitron's K = 3072 instead of 6), 640 and 1024 (MC 384) less,
 * 896 as much; MC = 512 beat 1024 by 5% at M = 2048, and beat 256 (panels packed twice for 512 rows) by about 5%
 * at M = 512; prefetching the next panel's rows, or y's lines, while the current one runs gained nothing. */
enum {
    PANEL_MR = 8,
    PANEL_NV = 3, /* zmm vectors per panel row */
    PANEL_NR = 16 * PANEL_NV,
    PANEL_KC = 768,
    ROWS_MC = 512, /* a multiple of PANEL_MR; the x block, 1.5 MiB, and a panel fit a 2 MiB L2 */
    GEMM_MIN_ROWS = 8,
};


/* panel (kc, PANEL_NR) = w rows n0..n0+nr-1, columns k0..k0+kc-1, in float32; rows past nr are zero.
 * Blocks of 16 rows by 16 columns go through a transpose in registers; the last partial one is read
 * through a mask. */
static void pack_panel(float *panel, const void *w, const float *scales, nt_dtype dtype, int64_t K, int64_t n0,
                       int64_t nr, int64_t k0, int64_t kc) {
    for (int64_t j0 = 0; j0 < PANEL_NR; j0 += 16)
        for (int64_t k = 0; k < kc; k += 16) {
            __mmask16 mask = first_lanes(kc - k);
            __m512 r[16];
            for (int64_t j = 0; j < 16; j++)
                r[j] = j0 + j < nr ? load16_scaled(w, scales, dtype, (n0 + j0 + j) * K + k0 + k, mask)
                                   : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t t = 0; t < 16 && k + t < kc; t++) _mm512_store_ps(panel + (k + t) * PANEL_NR + j0, r[t]);
        }
}

/* xp (kc, PANEL_MR) = x rows 0..mr-1 (each K apart), columns 0..kc-1, interleaved so that the broadcasts of
 * one k are adjacent; rows past mr repeat the last one. Read from x directly, the rows of a block lie K
 * floats apart, which for K a multiple of 1024 puts them all in the same L1 set. 16 columns at a time go
 * through the transpose, whose rows 8..15 are left unused. */
static void pack_rows(float *xp, const float *x, int64_t K, int64_t mr, int64_t kc) {
    _Static_assert(PANEL_MR == 8, "pack_rows stores the 8 lanes of a k as one ymm");
    for (int64_t k = 0; k < kc; k += 16) {
        __mmask16 mask = first_lanes(kc - k);
        __m512 r[16];
        for (int64_t i = 0; i < PANEL_MR; i++) r[i] = _mm512_maskz_loadu_ps(mask, x + (i < mr ? i : mr - 1) * K + k);
        for (int64_t i = PANEL_MR; i < 16; i++) r[i] = r[PANEL_MR - 1];
        transpose16(r);
        for (int64_t t = 0; t < 16 && k + t < kc; t++)
            _mm256_store_ps(xp + (k + t) * PANEL_MR, _mm512_castps512_ps256(r[t]));
    }
}

/* y rows (mr <= PANEL_MR, each N apart) (+)= xp (kc, PANEL_MR) @ panel (kc, PANEL_NR), first nr columns. */
static void panel_block(float *y, int64_t N, const float *xp, const float *panel, int64_t kc, int64_t mr, int64_t nr,
                        int accumulate) {
    __m512 acc[PANEL_MR][PANEL_NV];
#pragma GCC unroll 16
    for (int i = 0; i < PANEL_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < PANEL_NV; v++) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        __m512 wv[PANEL_NV];
        /* both streams come from L2 (the panel, 144 KiB, is reused from there by every block of rows): into L1 ahead
         * of use, x 32 k on and the panel 16, took the kernel from 186-197 to 191-205 GFLOP/s (one Sapphire Rapids
         * core, 245 peak) */
        if (k % 2 == 0) _mm_prefetch((const char *)(xp + (k + 32) * PANEL_MR), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int v = 0; v < PANEL_NV; v++) {
            _mm_prefetch((const char *)(panel + (k + 16) * PANEL_NR + 16 * v), _MM_HINT_T0);
            wv[v] = _mm512_load_ps(panel + k * PANEL_NR + 16 * v);
        }
#pragma GCC unroll 16
        for (int i = 0; i < PANEL_MR; i++) {
            __m512 b = _mm512_set1_ps(xp[k * PANEL_MR + i]);
#pragma GCC unroll 4
            for (int v = 0; v < PANEL_NV; v++) acc[i][v] = _mm512_fmadd_ps(b, wv[v], acc[i][v]);
        }
    }
    for (int64_t i = 0; i < mr; i++)
        for (int v = 0; v < PANEL_NV; v++) {
            __mmask16 mask = first_lanes(nr - 16 * v > 0 ? nr - 16 * v : 0);
            float *y_iv = y + i * N + 16 * v;
            __m512 out = acc[i][v];
            if (accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, y_iv));
            _mm512_mask_storeu_ps(y_iv, mask, out);
        }
}

#include "kernels/gemm_loops.h"

/* The element index arithmetic below stays inside this file: the kernels are written once for every
 * dtype, and load16 (load16_scaled) widens each dtype's elements in registers. */
static inline __attribute__((always_inline)) void matmul_avx512(float *y, const float *x, const nt_tensor *w,
                                                                nt_dtype dtype, int64_t M, int64_t n_begin,
                                                                int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    if (M <= SMALL_MAX_ROWS)
        small_matmul(y, x, w, dtype, M, n_begin, n_end);
    else if (!gemm(y, x, w->data, w->scales, dtype, M, N, K, n_begin, n_end))
        gemv(y, x, w->data, dtype, M, N, K, n_begin, n_end);
}

/* the quantized dtypes: the packed panels of dequantized weights for prefill, the fused row kernels below */
static inline __attribute__((always_inline)) void matmul_quantized_avx512(float *y, const float *x,
                                                                          const nt_tensor *w, nt_dtype dtype,
                                                                          int64_t M, int64_t n_begin, int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    /* up to 3 rows: the group-fused row kernels (one multiplication by the scale per group and x row costs less
     * than one per 16 weights: at 2 and 3 rows they ran 20% to 45% faster than small_matmul, which at 4 rows
     * and more wins); up to 16 rows: the shared decode kernel, reading w once */
    if (M > 3 && M <= SMALL_MAX_ROWS) {
        small_matmul(y, x, w, dtype, M, n_begin, n_end);
        return;
    }
    if (M >= GEMM_MIN_ROWS && gemm(y, x, w->data, w->scales, dtype, M, N, K, n_begin, n_end)) return;
    if (dtype == NT_DTYPE_Q8)
        gemv_q8(y, x, w->data, w->scales, M, N, K, n_begin, n_end);
    else
        gemv_q4(y, x, w->data, w->scales, M, N, K, n_begin, n_end);
}

NT_MATMUL_FOR_DTYPE(matmul_q8_avx512, matmul_quantized_avx512, NT_DTYPE_Q8)
NT_MATMUL_FOR_DTYPE(matmul_q4_avx512, matmul_quantized_avx512, NT_DTYPE_Q4)
NT_MATMUL_FOR_DTYPE(matmul_f32_avx512, matmul_avx512, NT_DTYPE_F32)
NT_MATMUL_FOR_DTYPE(matmul_bf16_avx512, matmul_avx512, NT_DTYPE_BF16)
NT_MATMUL_FOR_DTYPE(matmul_f16_avx512, matmul_avx512, NT_DTYPE_F16)

/* ---------------------------------------------------------------- attention's tiles
 * y (M, N) (+)= x (M, K) @ w (K, N) with w row-major: NN_MR rows of y by NN_NV vectors of 16 columns in
 * zmm accumulators, one broadcast of x and NN_NV loads of w per k; the last vector of a row is masked. */
enum { NN_MR = 6, NN_NV = 4 };

static inline __attribute__((always_inline)) void nn_block(float *y, const float *x, const float *w, int64_t K,
                                                           int64_t ldx, int64_t kx, int64_t ldw, int64_t ldy,
                                                           int64_t cols, int accumulate, const int MR, const int NV) {
    __m512 acc[NN_MR][NN_NV];
    __mmask16 mask[NN_NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) mask[v] = first_lanes(cols - 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 wv[NN_NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) wv[v] = _mm512_maskz_loadu_ps(mask[v], w + k * ldw + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512 b = _mm512_set1_ps(x[i * ldx + k * kx]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(b, wv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            float *y_iv = y + i * ldy + 16 * v;
            __m512 out = acc[i][v];
            if (accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask[v], y_iv));
            _mm512_mask_storeu_ps(y_iv, mask[v], out);
        }
}

#define NN_BLOCK(MR, NV)                                                                                        \
    static void nn_block_##MR##_##NV(float *y, const float *x, const float *w, int64_t K, int64_t ldx,          \
                                     int64_t kx, int64_t ldw, int64_t ldy, int64_t cols, int accumulate) {      \
        nn_block(y, x, w, K, ldx, kx, ldw, ldy, cols, accumulate, MR, NV);                                       \
    }
#define NN_BLOCKS(MR) NN_BLOCK(MR, 1) NN_BLOCK(MR, 2) NN_BLOCK(MR, 3) NN_BLOCK(MR, 4)
NN_BLOCKS(1) NN_BLOCKS(2) NN_BLOCKS(3) NN_BLOCKS(4) NN_BLOCKS(5) NN_BLOCKS(6)
#define NN_ROW(MR) {nn_block_##MR##_1, nn_block_##MR##_2, nn_block_##MR##_3, nn_block_##MR##_4}

static void matmul_nn_avx512(float *y, const float *x, const float *w, int64_t M, int64_t K, int64_t N,
                             int64_t ldx, int64_t kx, int64_t ldw, int64_t ldy, int accumulate) {
    typedef void (*block_fn)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int);
    static const block_fn blocks[NN_MR][NN_NV] = {NN_ROW(1), NN_ROW(2), NN_ROW(3), NN_ROW(4), NN_ROW(5), NN_ROW(6)};
    /* a column strip of w (K, 64) stays in L1 while every block of rows passes */
    for (int64_t n0 = 0; n0 < N; n0 += 16 * NN_NV) {
        int64_t cols = N - n0 < 16 * NN_NV ? N - n0 : 16 * NN_NV;
        int64_t nv = (cols + 15) / 16;
        for (int64_t m0 = 0; m0 < M; m0 += NN_MR) {
            int64_t mr = M - m0 < NN_MR ? M - m0 : NN_MR;
            blocks[mr - 1][nv - 1](y + m0 * ldy + n0, x + m0 * ldx, w + n0, K, ldx, kx, ldw, ldy, cols, accumulate);
        }
    }
}

/* exp(x) for x <= 0 (NT_EXP_POLY in kernels/kernels.h), 0 for exp(-inf) */
static inline __m512 exp_nonpositive(__m512 x) {
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(NT_EXP_MIN_ARG), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(NT_EXP_MIN_ARG));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(NT_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(NT_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(NT_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(NT_EXP_POLY[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(NT_EXP_POLY[i]));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(~tiny, _mm512_scalef_ps(p, n));
}

static void exp_shifted_avx512(float *x, const float *shift, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 mask = first_lanes(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, shift + i));
        _mm512_mask_storeu_ps(x + i, mask, exp_nonpositive(d));
    }
}

/* The CPU's features, and the OS's consent: XCR0 must enable the SSE, AVX, opmask and both zmm states
 * (bits 1, 2, 5, 6, 7), or the first zmm instruction faults. */
static int cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, f16c = (c >> 29) & 1;
    if (!fma || !osxsave || !f16c) return 0;
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 0xe6) != 0xe6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned f = 1u << 16, dq = 1u << 17, bw = 1u << 30, vl = 1u << 31;
    return (b & (f | dq | bw | vl)) == (f | dq | bw | vl);
}

static const nt_row_packing row_packing = {
    .row_block = PANEL_MR,
    .min_rows = SMALL_MAX_ROWS + 1, /* as matmul_avx512: fewer go to the decode kernels */
    .packed_floats = packed_floats,
    .pack_rows = pack_x,
};

const nt_kernels nt_kernels_avx512 = {
    .name = "avx512",
    .supported = cpu_has_avx512,
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_avx512,
        [NT_DTYPE_BF16] = matmul_bf16_avx512,
        [NT_DTYPE_F16] = matmul_f16_avx512,
        [NT_DTYPE_Q8] = matmul_q8_avx512,
        [NT_DTYPE_Q4] = matmul_q4_avx512,
    },
    .matmul_nn = matmul_nn_avx512,
    .exp_shifted = exp_shifted_avx512,
    .packing = GEMM_PACKING,
    .matmul_packed = GEMM_MATMUL_PACKED,
};

#else /* not compiled for AVX-512 (another architecture): a set that no CPU supports keeps the list whole */

static int never(void) { return 0; }

const nt_kernels nt_kernels_avx512 = {.name = "avx512", .supported = never};

#endif
