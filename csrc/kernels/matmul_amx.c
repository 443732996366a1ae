/*
 * AVX-512 + AMX-BF16/INT8 kernels: bfloat16, int8, int4 and float32 weights multiplied on the tile unit, with
 * float32's products (float32 weights of other than bfloat16 values: within float32's rounding of them).
 *
 * A float32 x is the exact sum of three bfloat16 values: hi, x with its low 16 bits cleared; lo, the same of
 * x - hi; and lo2 = x - hi - lo, which has at most 8 significant bits left (each subtraction is exact: the
 * operands share a binade). The product of two bfloat16 values is exact in float32, so w * x is computed as
 * w * hi + w * lo + w * lo2 with every product exact and the sums in float32, as the FMA kernels do, in
 * another order: three tile products per 32 columns of K, where vdpbf16ps alone would round x to bfloat16
 * (kernels/matmul_avx512.c). int8 and int4 values are integers, exact in bfloat16: a group's products are summed
 * on the tile unit, then times the group's scale (y = sum over groups of scale * sum(q * x), where the FMA kernels
 * sum (q * scale) * x: the same within float32 rounding). float32 weights that hold bfloat16 values
 * (nt_tensor.bf16_values: a bfloat16 checkpoint loaded as float32) are bfloat16 weights; those of other values are
 * split in three parts as x is (tile_step). A decode step of 3 to 8 rows with int8 weights goes to the integer tile
 * unit instead (gemm_int_rows). The tile unit flushes subnormal inputs and outputs to zero: a difference only
 * below 1e-38.
 *
 * Only K a multiple of 32 and enough rows of x (min_rows) come here; every other matmul and kernel is the avx512
 * set's (kernels/dispatch.c fills the entries left NULL from the next set the CPU runs). An output element's sum
 * runs over K in the same order whatever M (from min_rows, and for int8 within 3 to 8 rows and from 10), the columns
 * asked for and the thread: a row's bits depend neither on the batch nor on the threads.
 *
 * This file alone is compiled with amx_CFLAGS (csrc/sources.mk); the set is used only when the CPU has
 * AMX-BF16 and AMX-INT8 and Linux grants the process the tile state (arch_prctl). Built without them, it is empty.
 */
#include "kernels/kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__) && defined(__AVX512F__) && \
    defined(__AVX512BW__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/transpose16.h"

/* Tiles: 0-3 the sums (C, tile 2a + b for weight tile a and x tile b), 4-5 weights (A: 16 rows of w, 32 of K
 * each), 6-7 x (B: 16 pairs of K, each a pair for 16 rows of x). Every tile is 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} tile_config;

static void load_tile_config(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.bytes_per_row[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
}

enum {
    STEP = 32,          /* columns of K per tile product */
    PLANES = 3,         /* hi, lo, lo2 */
    TILE_HALFS = 512,   /* bfloat16 values in a tile */
    ROWS_MC = 128,      /* rows of x whose tiles are packed together (128: 5-10% faster than 64 or 256 at 512 rows), */
    X_TILES = 768,      /* over as many steps of K as make this many tiles (768 KiB, in L2): few rows take long
                         * steps through each row of w, which memory streams better than short ones */
    COLS_NC = 4096,     /* for this many columns of y at most (their sums, 4 MiB, go through L2 once a block) */
};

/* ---------------------------------------------------------------- x in three bfloat16 planes */


/* The high halves of the 32 floats lo, hi as 32 bfloat16 in their order (exact: their low halves are zero). */
static inline __m512i high_halves(__m512 lo, __m512 hi) {
    static const uint16_t odd_words[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
                                           33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    return _mm512_permutex2var_epi16(_mm512_castps_si512(lo), _mm512_loadu_si512(odd_words), _mm512_castps_si512(hi));
}

/* part (PLANES) = the three bfloat16 parts (hi, lo, lo2, above) of the 32 floats a, b, in their order */
static inline void split_parts(__m512i part[PLANES], __m512 a, __m512 b) {
    const __m512 high = _mm512_castsi512_ps(_mm512_set1_epi32((int)0xffff0000u));
    __m512 a_hi = _mm512_and_ps(a, high), b_hi = _mm512_and_ps(b, high);
    __m512 a_rest = _mm512_sub_ps(a, a_hi), b_rest = _mm512_sub_ps(b, b_hi);
    __m512 a_lo = _mm512_and_ps(a_rest, high), b_lo = _mm512_and_ps(b_rest, high);
    part[0] = high_halves(a_hi, b_hi);
    part[1] = high_halves(a_lo, b_lo);
    part[2] = high_halves(_mm512_sub_ps(a_rest, a_lo), _mm512_sub_ps(b_rest, b_lo));
}

/* The x tiles of rows [m0, m0 + 16) (zeros past M) and steps [s0, s1) of K: tile (s, plane) at
 * xp + ((s - s0) * PLANES + plane) * TILE_HALFS, its row p holding, for each of the 16 rows of x, its columns
 * 2p and 2p + 1 of the step in that plane. */
static void pack_x_rows(uint16_t *xp, const float *x, int64_t M, int64_t K, int64_t m0, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++) {
        __m512 r[PLANES][16];
        for (int i = 0; i < 16; i++) {
            __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
            if (m0 + i < M) {
                a = _mm512_loadu_ps(x + (m0 + i) * K + s * STEP);
                b = _mm512_loadu_ps(x + (m0 + i) * K + s * STEP + 16);
            }
            __m512i part[PLANES];
            split_parts(part, a, b);
            /* 32 bfloat16 values are 16 lanes of 32 bits, which the transpose moves as floats */
            for (int p = 0; p < PLANES; p++) r[p][i] = _mm512_castsi512_ps(part[p]);
        }
        for (int p = 0; p < PLANES; p++) {
            transpose16(r[p]);
            uint16_t *tile = xp + ((s - s0) * PLANES + p) * TILE_HALFS;
            for (int i = 0; i < 16; i++) _mm512_store_ps((float *)(tile + 32 * i), r[p][i]);
        }
    }
}

/* ---------------------------------------------------------------- tile products */

/* Weight tiles a = 0, 1 of a block: 16 rows each; tile a of step s (from the block's first step) at
 * w[a] + s * step_halfs, its rows row_bytes apart: w's own rows (bfloat16), or tiles converted from int8 or int4
 * (convert_tiles); float32 weights of any value in three parts as x (W_PLANES), part q at + q * TILE_HALFS. */
typedef struct {
    const uint16_t *w[2];
    int64_t step_halfs, row_bytes;
} weight_tiles;

/* Step s of K into the sums' tiles: NA weight tiles times MB x tiles, in each of x's three parts; with W_PLANES = 3
 * (float32 weights of any value, split as x is), the products of parts p of x and q of w for p + q <= 2: the three
 * left out are below 2^-24 of the whole product, float32's rounding. */
static inline __attribute__((always_inline)) void tile_step(const weight_tiles *wt, const uint16_t *x0,
                                                            const uint16_t *x1, int64_t s, const int NA, const int MB,
                                                            const int W_PLANES) {
    if (W_PLANES == 1) {
        _tile_loadd(4, wt->w[0] + s * wt->step_halfs, wt->row_bytes);
        if (NA > 1) _tile_loadd(5, wt->w[1] + s * wt->step_halfs, wt->row_bytes);
    }
    for (int p = 0; p < PLANES; p++) {
        _tile_loadd(6, x0 + (s * PLANES + p) * TILE_HALFS, 64);
        if (MB > 1) _tile_loadd(7, x1 + (s * PLANES + p) * TILE_HALFS, 64);
        for (int q = 0; q < (W_PLANES == 1 ? 1 : PLANES - p); q++) {
            if (W_PLANES > 1) {
                _tile_loadd(4, wt->w[0] + s * wt->step_halfs + q * TILE_HALFS, wt->row_bytes);
                if (NA > 1) _tile_loadd(5, wt->w[1] + s * wt->step_halfs + q * TILE_HALFS, wt->row_bytes);
            }
            _tile_dpbf16ps(0, 4, 6);
            if (MB > 1) _tile_dpbf16ps(1, 4, 7);
            if (NA > 1) _tile_dpbf16ps(2, 5, 6);
            if (NA > 1 && MB > 1) _tile_dpbf16ps(3, 5, 7);
        }
    }
}

/* The sums c_ab (16 x 16 floats, c[j][i] for row i of x tile b and row j of weight tile a) of NA weight tiles by MB
 * x tiles (x0, x1: their tiles from the block's first step) over `steps` steps of K, added to c_ab, or from zero
 * when first. */
static inline __attribute__((always_inline)) void tile_block(float *c00, float *c01, float *c10, float *c11,
                                                             const weight_tiles *wt, const uint16_t *x0,
                                                             const uint16_t *x1, int64_t steps, int first,
                                                             const int NA, const int MB, const int W_PLANES) {
    if (first) {
        _tile_zero(0);
        if (MB > 1) _tile_zero(1);
        if (NA > 1) _tile_zero(2);
        if (NA > 1 && MB > 1) _tile_zero(3);
    } else {
        _tile_loadd(0, c00, 64);
        if (MB > 1) _tile_loadd(1, c01, 64);
        if (NA > 1) _tile_loadd(2, c10, 64);
        if (NA > 1 && MB > 1) _tile_loadd(3, c11, 64);
    }
    for (int64_t s = 0; s < steps; s++) tile_step(wt, x0, x1, s, NA, MB, W_PLANES);
    _tile_stored(0, c00, 64);
    if (MB > 1) _tile_stored(1, c01, 64);
    if (NA > 1) _tile_stored(2, c10, 64);
    if (NA > 1 && MB > 1) _tile_stored(3, c11, 64);
}

/* c (+)= scale * tile, row j of both times the scale of weight row j (scale[j * scale_stride]), for the first `rows`
 * rows; the others are zero. */
static inline void fold_group(float *c, const float *tile, const float *scale, int64_t scale_stride, int64_t rows,
                              int first) {
    for (int64_t j = 0; j < 16; j++) {
        __m512 t = _mm512_load_ps(tile + 16 * j), sum = _mm512_setzero_ps();
        if (j < rows) {
            __m512 s = _mm512_set1_ps(scale[j * scale_stride]);
            sum = first ? _mm512_mul_ps(s, t) : _mm512_fmadd_ps(s, t, _mm512_load_ps(c + 16 * j));
        }
        _mm512_store_ps(c + 16 * j, sum);
    }
}

/* int8 and int4 weights: as tile_block, one group of `group_steps` steps at a time, its sums (of exact products)
 * times the group's scales added to c_ab: y = sum over groups of scale * sum(q * x). scale[a] is the scale of weight
 * tile a's first row for the block's first group, its rows scale_stride apart, rows[a] of them real. scratch holds
 * four tiles of floats. */
static inline __attribute__((always_inline)) void tile_block_grouped(
    float *c00, float *c01, float *c10, float *c11, const weight_tiles *wt, const uint16_t *x0, const uint16_t *x1,
    int64_t steps, int first, int64_t group_steps, const float *const scale[2], int64_t scale_stride,
    const int64_t rows[2], float *scratch, const int NA, const int MB) {
    for (int64_t g = 0; g < steps; g += group_steps) {
        _tile_zero(0);
        if (MB > 1) _tile_zero(1);
        if (NA > 1) _tile_zero(2);
        if (NA > 1 && MB > 1) _tile_zero(3);
        for (int64_t s = g; s < g + group_steps; s++) tile_step(wt, x0, x1, s, NA, MB, 1);
        int fresh = first && g == 0;
        int64_t group = g / group_steps;
        _tile_stored(0, scratch, 64);
        fold_group(c00, scratch, scale[0] + group, scale_stride, rows[0], fresh);
        if (MB > 1) {
            _tile_stored(1, scratch + 256, 64);
            fold_group(c01, scratch + 256, scale[0] + group, scale_stride, rows[0], fresh);
        }
        if (NA > 1) {
            _tile_stored(2, scratch + 512, 64);
            fold_group(c10, scratch + 512, scale[1] + group, scale_stride, rows[1], fresh);
        }
        if (NA > 1 && MB > 1) {
            _tile_stored(3, scratch + 768, 64);
            fold_group(c11, scratch + 768, scale[1] + group, scale_stride, rows[1], fresh);
        }
    }
}

/* Parts of float32 weights of any value on the tile unit: three, as x (hi, lo, lo2); one for the other dtypes. */
static inline int weight_planes(const nt_tensor *w) { return w->dtype == NT_DTYPE_F32 && !w->bf16_values ? PLANES : 1; }

/* The weight tiles (16 rows from n0, `rows` of them real, zeros past them) of steps [s0, s0 + steps) of an int8 or
 * int4 w, unscaled, or of a float32 w of bfloat16 values, in bfloat16 (exact: integers in [-128, 127], or the high
 * halves of the float32 values): tile s at out + (s - s0) * TILE_HALFS, its rows 64 bytes apart; float32 weights of
 * any value in their three parts, part q of step s at out + ((s - s0) * PLANES + q) * TILE_HALFS. int4 groups are
 * 16 bytes, element j in the low nibble of byte j and element j + 16 in the high one (NT_Q4_GROUP), as q + 8. */
static void convert_tiles(uint16_t *out, const nt_tensor *w, int64_t n0, int64_t rows, int64_t s0, int64_t steps) {
    const __m512 q4_levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const int64_t K = w->shape[1], planes = weight_planes(w);
    for (int64_t s = s0; s < s0 + steps; s++)
        for (int64_t j = 0; j < 16; j++) {
            __m512i part[PLANES] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
            if (j < rows) {
                __m512 lo, hi;
                if (w->dtype == NT_DTYPE_F32) {
                    const float *f = (const float *)w->data + (n0 + j) * K + s * STEP;
                    lo = _mm512_loadu_ps(f);
                    hi = _mm512_loadu_ps(f + 16);
                } else if (w->dtype == NT_DTYPE_Q8) {
                    const int8_t *q = (const int8_t *)w->data + (n0 + j) * K + s * STEP;
                    lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
                    hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 16))));
                } else {
                    const uint8_t *q = (const uint8_t *)w->data + ((n0 + j) * K + s * STEP) / 2;
                    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
                    lo = _mm512_permutexvar_ps(b, q4_levels); /* vpermps reads the low 4 bits of each index */
                    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), q4_levels);
                }
                if (planes > 1)
                    split_parts(part, lo, hi);
                else
                    part[0] = high_halves(lo, hi);
            }
            for (int64_t q = 0; q < planes; q++)
                _mm512_store_si512(out + ((s - s0) * planes + q) * TILE_HALFS + 32 * j, part[q]);
        }
}

/* y rows [m0, m0 + mr) x columns [n0, n0 + nr) = the tile of sums c (16 x 16, c[j][i] for row i, column j). */
static void store_tile(float *y, int64_t N, const float *c, int64_t m0, int64_t mr, int64_t n0, int64_t nr) {
    __m512 r[16];
    for (int j = 0; j < 16; j++) r[j] = _mm512_load_ps(c + 16 * j);
    transpose16(r);
    __mmask16 mask = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    for (int64_t i = 0; i < mr; i++) _mm512_mask_storeu_ps(y + (m0 + i) * N + n0, mask, r[i]);
}

/* ---------------------------------------------------------------- the matmul */

/* y (M, N) = x (M, K) @ w^T for columns [n_begin, n_end), w as takes_amx accepts it: x's tiles from packed
 * (pack_rows below) or, when it is NULL, packed here block by block. Returns 0 without memory for its buffers. */
static int gemm(float *y, const float *x, const uint16_t *packed, const nt_tensor *w, int64_t M, int64_t n_begin,
                int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1], steps = K / STEP;
    int converted = w->dtype != NT_DTYPE_BF16, grouped = nt_dtype_get(w->dtype)->scaled;
    int64_t group = nt_dtype_get(w->dtype)->block_size, group_steps = grouped ? group / STEP : 1;
    int64_t scale_stride = grouped ? K / group : 0, w_planes = weight_planes(w);
    /* weights in three parts: twice the rows of x per conversion of their tiles (1.2-1.7x faster at 512 rows) */
    int64_t rows_mc = w_planes > 1 ? 2 * ROWS_MC : ROWS_MC;
    int64_t mc_max = M < rows_mc ? (M + 15) / 16 * 16 : rows_mc, n_tiles_max = (n_end - n_begin + 15) / 16;
    if (n_tiles_max > COLS_NC / 16) n_tiles_max = COLS_NC / 16;
    /* x's tiles (X_TILES); the sums (n_tiles_max x mc_max / 16 tiles); bfloat16: 16 rows of w padded with zeros
     * for a last tile of weights that would read past N; the others: two weight tiles (of w_planes parts) for each
     * step of a block in bfloat16, and four tiles of a group's sums */
    int64_t x_tiles_used = (mc_max / 16) * steps * PLANES; /* a decode step's few rows use fewer than X_TILES */
    size_t x_halfs = packed == NULL ? (size_t)(x_tiles_used < X_TILES ? x_tiles_used : X_TILES) * TILE_HALFS : 0;
    size_t sums_floats = (size_t)n_tiles_max * (size_t)mc_max * 16;
    size_t w_tile_halfs = (size_t)2 * (size_t)w_planes * (X_TILES / PLANES) * TILE_HALFS;
    size_t w_halfs = converted ? w_tile_halfs + 4 * 256 * 2 : (size_t)16 * (size_t)K;
    uint16_t *xp = aligned_alloc(64, x_halfs * 2 + sums_floats * 4 + w_halfs * 2);
    if (xp == NULL) return 0;
    float *sums = (float *)(xp + x_halfs);
    uint16_t *w_buffer = (uint16_t *)(sums + sums_floats);
    float *scratch = (float *)(w_buffer + w_tile_halfs);
    const uint16_t *wd = w->data;
    int64_t last_tile = n_begin + (n_end - n_begin - 1) / 16 * 16, padded_tile = last_tile + 16 > N ? last_tile : -1;
    if (!converted && padded_tile >= 0) {
        memset(w_buffer, 0, w_halfs * 2);
        memcpy(w_buffer, wd + padded_tile * K, (size_t)(N - padded_tile) * (size_t)K * 2);
    }
    load_tile_config();
    for (int64_t nc0 = n_begin; nc0 < n_end; nc0 += COLS_NC) {
        int64_t nc = n_end - nc0 < COLS_NC ? n_end - nc0 : COLS_NC, n_tiles = (nc + 15) / 16;
        for (int64_t mc0 = 0; mc0 < M; mc0 += rows_mc) {
            int64_t mc = M - mc0 < rows_mc ? M - mc0 : rows_mc, m_tiles = (mc + 15) / 16;
            int64_t steps_kc = X_TILES / PLANES / m_tiles / group_steps * group_steps;
            for (int64_t s0 = 0; s0 < steps; s0 += steps_kc) {
                int64_t ks = steps - s0 < steps_kc ? steps - s0 : steps_kc;
                /* the tiles of x tile b from step s0 at x_tiles + b * x_stride, those of the next steps after them */
                const uint16_t *x_tiles = xp;
                int64_t x_stride = ks * PLANES * TILE_HALFS;
                if (packed != NULL) {
                    x_stride = steps * PLANES * TILE_HALFS;
                    x_tiles = packed + mc0 / 16 * x_stride + s0 * PLANES * TILE_HALFS;
                } else {
                    for (int64_t b = 0; b < m_tiles; b++)
                        pack_x_rows(xp + b * x_stride, x, M, K, mc0 + 16 * b, s0, s0 + ks);
                }
                for (int64_t a = 0; a < n_tiles; a += 2) {
                    int na = n_tiles - a >= 2 ? 2 : 1;
                    int64_t n0 = nc0 + 16 * a, rows[2], n1 = n0 + 16;
                    rows[0] = N - n0 < 16 ? N - n0 : 16;
                    rows[1] = N - n1 < 16 ? (N - n1 > 0 ? N - n1 : 0) : 16;
                    weight_tiles wt = {{wd + n0 * K + s0 * STEP, wd + n1 * K + s0 * STEP}, STEP, K * 2};
                    const float *scale[2] = {NULL, NULL};
                    if (converted) {
                        uint16_t *w1 = w_buffer + ks * w_planes * TILE_HALFS;
                        convert_tiles(w_buffer, w, n0, rows[0], s0, ks);
                        if (na > 1) convert_tiles(w1, w, n1, rows[1], s0, ks);
                        wt = (weight_tiles){{w_buffer, w1}, w_planes * TILE_HALFS, 64};
                    }
                    if (grouped) {
                        scale[0] = w->scales + n0 * scale_stride + s0 / group_steps;
                        scale[1] = rows[1] > 0 ? w->scales + n1 * scale_stride + s0 / group_steps : scale[0];
                    } else if (!converted) {
                        if (n0 == padded_tile) wt.w[0] = w_buffer + s0 * STEP;
                        if (n1 == padded_tile) wt.w[1] = w_buffer + s0 * STEP;
                    }
                    for (int64_t b = 0; b < m_tiles; b += 2) {
                        int mb = m_tiles - b >= 2 ? 2 : 1, first = s0 == 0;
                        float *c00 = sums + (a * m_tiles + b) * 256, *c10 = c00 + m_tiles * 256;
                        const uint16_t *x0 = x_tiles + b * x_stride, *x1 = x0 + x_stride;
#define TILE_BLOCK(C01, C10, C11, X1, NA, MB)                                                                      \
    (grouped ? tile_block_grouped(c00, C01, C10, C11, &wt, x0, X1, ks, first, group_steps, scale, scale_stride, \
                                  rows, scratch, NA, MB)                                                         \
             : w_planes > 1 ? tile_block(c00, C01, C10, C11, &wt, x0, X1, ks, first, NA, MB, PLANES)          \
                            : tile_block(c00, C01, C10, C11, &wt, x0, X1, ks, first, NA, MB, 1))
                        if (na == 2 && mb == 2)
                            TILE_BLOCK(c00 + 256, c10, c10 + 256, x1, 2, 2);
                        else if (na == 2)
                            TILE_BLOCK(NULL, c10, NULL, NULL, 2, 1);
                        else if (mb == 2)
                            TILE_BLOCK(c00 + 256, NULL, NULL, x1, 1, 2);
                        else
                            TILE_BLOCK(NULL, NULL, NULL, NULL, 1, 1);
#undef TILE_BLOCK
                    }
                }
            }
            for (int64_t a = 0; a < n_tiles; a++)
                for (int64_t b = 0; b < m_tiles; b++) {
                    int64_t mr = mc - 16 * b < 16 ? mc - 16 * b : 16, nr = nc - 16 * a < 16 ? nc - 16 * a : 16;
                    store_tile(y, N, sums + (a * m_tiles + b) * 256, mc0 + 16 * b, mr, nc0 + 16 * a, nr);
                }
        }
    }
    _tile_release();
    free(xp);
    return 1;
}

/* ---------------------------------------------------------------- a few rows, int8 weights: integer tiles
 * A decode step of INT_MIN_ROWS to INT_MAX_ROWS rows of x reads each weight once, and the bfloat16 tiles above would
 * first convert every weight for those few rows. Here int8 weights go to the integer tile unit (tdpbssd) as they
 * are, loaded straight from w. x is split exactly, per row, into INT_PLANES planes of small integers times a power
 * of two (block floating point):
 *   x[m][k] = 2^e[m] (q0 + q1 2^-7 + q2 2^-14 + q3 2^-21) + r,   |q_p| <= 64,   |r| <= 2^-27 max_k |x[m][k]|,
 * e[m] chosen so that max |x[m]| 2^-e[m] is in [32, 64); each step is exact in float32 (x 2^-e, rounding to an
 * integer, the remainder, times 128). A group's products with each plane are exact integers on the tile unit;
 * times the group's scale they are summed over the groups in float32, then y = 2^e (A0 + 2^-7 (A1 + 2^-7 (A2 +
 * 2^-7 A3))). The planes hold 28 bits of each row against its largest element where float32 holds 24 of each
 * element, so an output is within float32 rounding of the exact sum, even beside an outlier 1000 times the rest of
 * its row (kernels' test); not the FMA kernels' bits. A row's sums do not depend on the other rows, nor on the
 * columns asked for: its bits are the same in every batch of INT_MIN_ROWS to INT_MAX_ROWS rows. A row holding an
 * infinity or a NaN sends the call to the avx512 kernels, which propagate it.
 * Every group needs its own tile product, its store and its fold into float32 (one scale per group), where a
 * bfloat16 matmul keeps its sums on the tile unit over the whole of K: one thread, 9216 x 3072, this runs 130 GFLOP/s
 * at 4 rows and 215-260 at 8 against the avx512 kernels' 87-102 and 107-111, but only 65-80% of their speed at 1 and
 * 2 rows, which are bound by memory there anyway. int4 weights, unpacked to bytes and in groups of 32 (twice the
 * products, stores and folds per weight), ran no faster than the avx512 kernels at 8 rows and at half their speed
 * at 1: they stay there.
 * Tiles: 0-3 the sums (16 rows of w by an x tile's 16 columns, plane p of x row 4b + i in column 4i + p, int32), 4-5
 * weights (16 rows of w by a group of K, 64 bytes), 6-7 x (a group of K by 16 columns, four consecutive k of one
 * plane of one row in each 32-bit element). */
enum {
    INT_MIN_ROWS = 3,
    INT_MAX_ROWS = 8, /* 4 rows (16 columns) per x tile, two x tiles */
    INT_PLANES = 4,
    INT_AHEAD = 8, /* groups of each row of w prefetched ahead */
};

/* The planes of x rows [0, M) (M <= INT_MAX_ROWS), K a multiple of 64, as x tiles: for x tile b (rows 4b..4b+3,
 * zeros past M), columns 4r..4r+3 of K at xb + b * K * 16 + r * 64, a 64-byte row of 16 four-byte elements, plane p
 * of x row 4b + i at element 4i + p. exponent[m] = e[m] above. Returns 0, leaving xb unfinished, when a row holds a
 * value that is not finite. */
static int pack_x_planes(int8_t *xb, int *exponent, const float *x, int64_t M, int64_t K) {
    float up[INT_MAX_ROWS][2]; /* 2^-e in two factors, each a normal float whatever e */
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t m = 0; m < M; m++) {
        __m512 largest = zero;
        __mmask16 bad = 0;
        for (int64_t k = 0; k < K; k += 16) {
            __m512 v = _mm512_loadu_ps(x + m * K + k);
            bad |= _mm512_cmp_ps_mask(_mm512_mul_ps(v, zero), zero, _CMP_NEQ_UQ); /* inf * 0 and NaN are NaN */
            largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
        }
        if (bad) return 0;
        float a = _mm512_reduce_max_ps(largest);
        int e = a > 0.0f ? ilogbf(a) - 5 : 0;
        exponent[m] = e;
        up[m][0] = ldexpf(1.0f, -e / 2);
        up[m][1] = ldexpf(1.0f, -e - -e / 2);
    }
    for (int64_t b = 0; b < (M + 3) / 4; b++)
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            __m512 r[16];
            for (int i = 0; i < 4; i++) {
                int64_t m = 4 * b + i;
                int8_t planes[INT_PLANES][64] __attribute__((aligned(64)));
                memset(planes, 0, sizeof planes);
                for (int v = 0; m < M && v < 4; v++) {
                    __m512 xv = _mm512_loadu_ps(x + m * K + k0 + 16 * v);
                    xv = _mm512_mul_ps(_mm512_mul_ps(xv, _mm512_set1_ps(up[m][0])), _mm512_set1_ps(up[m][1]));
                    for (int p = 0; p < INT_PLANES; p++) {
                        __m512 q = _mm512_roundscale_ps(xv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                        _mm_store_si128((__m128i *)(planes[p] + 16 * v), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
                        xv = _mm512_mul_ps(_mm512_sub_ps(xv, q), _mm512_set1_ps(128.0f));
                    }
                }
                for (int p = 0; p < INT_PLANES; p++) r[4 * i + p] = _mm512_load_ps((const float *)planes[p]);
            }
            transpose16(r); /* r[t]: the 4 bytes of columns k0 + 4t.. of every (row, plane) */
            for (int t = 0; t < 16; t++) _mm512_store_ps((float *)(xb + b * K * 16 + (k0 / 4 + t) * 64), r[t]);
        }
    return 1;
}

/* sums (16 x 16 floats) += the int32 tile (16 x 16) times the scale of each of its rows (scale[j * stride]), the
 * first `rows` rows. */
static inline void fold_int_group(float *sums, const int32_t *tile, const float *scale, int64_t stride, int64_t rows) {
    for (int64_t j = 0; j < rows; j++) {
        __m512 t = _mm512_cvtepi32_ps(_mm512_load_si512(tile + 16 * j));
        __m512 s = _mm512_set1_ps(scale[j * stride]);
        _mm512_store_ps(sums + 16 * j, _mm512_fmadd_ps(t, s, _mm512_load_ps(sums + 16 * j)));
    }
}

/* One group of weight tile A (16 rows) by x tile XB0 (and XB1 for more than 4 rows) into the sums' tile C0 (and C1);
 * tile numbers are immediates. Reads gemm_int_rows' w_stride, x_tiles and K. */
#define GROUP_PRODUCT(C0, C1, A, XB0, XB1, w_group, x_group)                                                 \
    do {                                                                                                     \
        _tile_zero(C0);                                                                                      \
        _tile_loadd(A, w_group, w_stride);                                                                   \
        _tile_loadd(XB0, x_group, 64);                                                                       \
        _tile_dpbssd(C0, A, XB0);                                                                            \
        if (x_tiles > 1) {                                                                                   \
            _tile_zero(C1);                                                                                  \
            _tile_loadd(XB1, (x_group) + K * 16, 64);                                                        \
            _tile_dpbssd(C1, A, XB1);                                                                        \
        }                                                                                                    \
    } while (0)

/* x's planes for gemm_int_rows: a header of 64 bytes (int32: 1 when every value of x is finite, then e[m] for each
 * row), then x's tiles (pack_x_planes). */
static int64_t int_packed_bytes(int64_t M, int64_t K) { return 64 + (M + 3) / 4 * K * 16; }

static void pack_int_rows(void *packed, const float *x, int64_t M, int64_t K) {
    int32_t *header = packed;
    _Static_assert(sizeof(int32_t) * (1 + INT_MAX_ROWS) <= 64, "the header holds the flag and the exponents");
    header[0] = pack_x_planes((int8_t *)packed + 64, header + 1, x, M, K);
}

/* y (M, N) = x (M, K) @ w^T for columns [n_begin, n_end), w int8, M <= INT_MAX_ROWS, x packed by pack_int_rows. 16
 * rows of w at a time, through K by batches of groups that fill the four sums' tiles (4 groups for up to 4 rows of
 * x, 2 for 8): their products run one after another on the tile unit, then are stored and folded. Returns 0 for x
 * not finite, or without memory for a last tile of w padded with zeros: the avx512 kernels then. */
static int gemm_int_rows(float *y, const void *packed, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    const int64_t N = w->shape[0], K = w->shape[1], groups = K / NT_Q8_GROUP, x_tiles = (M + 3) / 4;
    const int64_t batch = 4 / x_tiles, w_stride = K; /* groups per batch; bytes between rows of w */
    _Static_assert(NT_Q8_GROUP == 64, "a group of K is one tile product");
    const int32_t *header = packed;
    const int8_t *xb = (const int8_t *)packed + 64;
    if (!header[0]) return 0;
    /* the last tile of weights, 16 rows padded with zeros when it would read past N */
    int64_t last = n_begin + (n_end - n_begin - 1) / 16 * 16;
    int8_t *w_padded = NULL;
    if (last + 16 > N) {
        w_padded = aligned_alloc(64, (size_t)16 * (size_t)K);
        if (w_padded == NULL) return 0;
        memset(w_padded, 0, (size_t)16 * (size_t)K);
        memcpy(w_padded, (const int8_t *)w->data + last * K, (size_t)(N - last) * (size_t)K);
    }
    float sums[2 * 256] __attribute__((aligned(64))); /* 16 rows of w by each x tile's 16 columns */
    int32_t tiles[4 * 256] __attribute__((aligned(64)));
    float down[INT_MAX_ROWS][2]; /* 2^e in two factors */
    for (int64_t m = 0; m < M; m++) {
        down[m][0] = ldexpf(1.0f, header[1 + m] / 2);
        down[m][1] = ldexpf(1.0f, header[1 + m] - header[1 + m] / 2);
    }
    load_tile_config();
    for (int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
        const int64_t rows = N - n0 < 16 ? N - n0 : 16; /* real rows of the weight tile */
        const int8_t *wt = n0 == last && w_padded != NULL ? w_padded : (const int8_t *)w->data + n0 * K;
        memset(sums, 0, sizeof sums);
        for (int64_t g0 = 0; g0 < groups; g0 += batch) {
            int64_t ahead = (g0 + INT_AHEAD) * NT_Q8_GROUP, first = n0; /* past the row's end: the next tile's rows */
            if (ahead >= K) ahead -= K, first += 16;
            for (int64_t j = 0; j < 16 && first + j < N; j++)
                for (int64_t i = 0; i < batch; i++)
                    _mm_prefetch((const char *)w->data + (first + j) * K + ahead + i * 64, _MM_HINT_T0);
            const int8_t *wg = wt + g0 * NT_Q8_GROUP, *xg = xb + g0 * NT_Q8_GROUP * 16;
            const int64_t live = groups - g0 < batch ? groups - g0 : batch, products = live * x_tiles;
            if (x_tiles == 1) {
                GROUP_PRODUCT(0, 0, 4, 6, 6, wg, xg);
                if (live > 1) GROUP_PRODUCT(1, 1, 5, 7, 7, wg + 64, xg + 64 * 16);
                if (live > 2) GROUP_PRODUCT(2, 2, 4, 6, 6, wg + 128, xg + 128 * 16);
                if (live > 3) GROUP_PRODUCT(3, 3, 5, 7, 7, wg + 192, xg + 192 * 16);
            } else {
                GROUP_PRODUCT(0, 1, 4, 6, 7, wg, xg);
                if (live > 1) GROUP_PRODUCT(2, 3, 5, 6, 7, wg + 64, xg + 64 * 16);
            }
            _tile_stored(0, tiles, 64);
            if (products > 1) _tile_stored(1, tiles + 256, 64);
            if (products > 2) _tile_stored(2, tiles + 512, 64);
            if (products > 3) _tile_stored(3, tiles + 768, 64);
            for (int64_t t = 0; t < products; t++) /* tile t: group g0 + t / x_tiles, x tile t % x_tiles */
                fold_int_group(sums + t % x_tiles * 256, tiles + 256 * t, w->scales + n0 * groups + g0 + t / x_tiles,
                               groups, rows);
        }
        for (int64_t j = 0; j < 16 && n0 + j < n_end; j++)
            for (int64_t m = 0; m < M; m++) {
                const float *s = sums + m / 4 * 256 + 16 * j + 4 * (m % 4);
                float v = ((s[3] * 0x1p-7f + s[2]) * 0x1p-7f + s[1]) * 0x1p-7f + s[0];
                y[m * N + n0 + j] = v * down[m][0] * down[m][1];
            }
    }
    _tile_release();
    free(w_padded);
    return 1;
}
#undef GROUP_PRODUCT

/* Whether w and M come here, else to the avx512 kernels: whole steps of K and enough rows, as a tile product costs
 * the same for 1 row as for 16 and the other dtypes than bfloat16 add a conversion of their tiles (one thread,
 * bench_kernels: at 8 rows int4 runs 110 GFLOP/s here against 133 there, at 16 rows 218 against 141); float32
 * weights, twice bfloat16's bytes (and of other than bfloat16 values twice its tile products), only for prefill's
 * rows, where the conversion is shared by many. int8 weights also at INT_MIN_ROWS to INT_MAX_ROWS rows, on the
 * integer tiles (gemm_int_rows). */
static int takes_amx(const nt_tensor *w, int64_t M) {
    int64_t K = w->shape[1];
    if (K % STEP != 0 || K == 0) return 0;
    if (w->dtype == NT_DTYPE_Q8 && M >= INT_MIN_ROWS && M <= INT_MAX_ROWS) return 1;
    return M >= (w->dtype == NT_DTYPE_BF16 ? 5 : w->dtype == NT_DTYPE_F32 ? 17 : 10);
}

/* Whether the integer tiles (gemm_int_rows) serve what takes_amx accepts, else the bfloat16 ones (gemm). */
static inline int on_integer_tiles(const nt_tensor *w, int64_t M) {
    return w->dtype == NT_DTYPE_Q8 && M <= INT_MAX_ROWS;
}

/* gemm_int_rows with x packed for this call alone */
static int matmul_int_rows(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    void *packed = aligned_alloc(64, (size_t)int_packed_bytes(M, w->shape[1]));
    if (packed == NULL) return 0;
    pack_int_rows(packed, x, M, w->shape[1]);
    int done = gemm_int_rows(y, packed, w, M, n_begin, n_end);
    free(packed);
    return done;
}

static void matmul_amx(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin, int64_t n_end) {
    int done = 0;
    if (takes_amx(w, M))
        done = on_integer_tiles(w, M) ? matmul_int_rows(y, x, w, M, n_begin, n_end)
                                      : gemm(y, x, NULL, w, M, n_begin, n_end);
    if (!done) nt_kernels_avx512.matmul[w->dtype](y, x, w, M, n_begin, n_end); /* which needs no memory */
}

/* x's tiles for every matmul of the same x and every thread: tile (b, s, plane) of x tile b (rows 16b..16b+15, zeros
 * past M) at packed + ((b * steps + s) * PLANES + plane) * TILE_HALFS, steps = K / STEP; none when K is not whole
 * steps. */
static int64_t packed_floats(int64_t M, int64_t K) {
    return K % STEP != 0 ? 0 : (M + 15) / 16 * (K / STEP) * PLANES * TILE_HALFS / 2;
}

static void pack_rows(float *packed, const float *x, int64_t M, int64_t K, int64_t block_begin, int64_t block_end) {
    for (int64_t b = block_begin; b < block_end; b++)
        pack_x_rows((uint16_t *)packed + b * (K / STEP) * PLANES * TILE_HALFS, x, M, K, 16 * b, 0, K / STEP);
}

static const nt_row_packing row_packing = {
    .row_block = 16,
    .min_rows = 17, /* as the avx512 set: a decode step's few rows are packed by each thread */
    .packed_floats = packed_floats,
    .pack_rows = pack_rows,
};

/* int8: the bfloat16 tiles from 17 rows as the other dtypes; at INT_MIN_ROWS to INT_MAX_ROWS the integer planes, once
 * for every thread and for q, k and v (packed by each thread, they took 6% of a decode step of 8 rows); none
 * between. */
static int64_t int8_packed_floats(int64_t M, int64_t K) {
    if (M > INT_MAX_ROWS) return M < row_packing.min_rows ? 0 : packed_floats(M, K);
    return K % NT_Q8_GROUP != 0 ? 0 : (int_packed_bytes(M, K) + 3) / 4;
}

static void int8_pack_rows(float *packed, const float *x, int64_t M, int64_t K, int64_t block_begin,
                           int64_t block_end) {
    if (M > INT_MAX_ROWS)
        pack_rows(packed, x, M, K, block_begin, block_end);
    else if (block_begin == 0 && block_end > 0) /* one block */
        pack_int_rows(packed, x, M, K);
}

/* matmul_amx with x packed by the dtype's packing */
static int matmul_packed_amx(float *y, const float *packed, const nt_tensor *w, int64_t M, int64_t n_begin,
                             int64_t n_end) {
    if (!takes_amx(w, M)) return 0;
    return on_integer_tiles(w, M) ? gemm_int_rows(y, packed, w, M, n_begin, n_end)
                                  : gemm(y, NULL, (const uint16_t *)packed, w, M, n_begin, n_end);
}

static const nt_row_packing int8_row_packing = {
    .row_block = 16,
    .min_rows = INT_MIN_ROWS,
    .packed_floats = int8_packed_floats,
    .pack_rows = int8_pack_rows,
};

/* ---------------------------------------------------------------- the set */

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* AMX-TILE, AMX-BF16 and AMX-INT8 (CPUID 7.0 EDX bits 24, 22, 25), the OS saving the tile state (XCR0 bits 17,
 * 18), and Linux's consent for this process, asked once (the first use of a tile register faults without it). */
static int amx_usable;
static pthread_once_t amx_checked = PTHREAD_ONCE_INIT;

static void check_amx(void) {
    unsigned a, b, c, d;
    if (!nt_kernels_avx512.supported() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) ||
        !(d >> 22 & 1) || !(d >> 25 & 1))
        return;
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    amx_usable = (xcr0_low & (3u << 17)) == (3u << 17) &&
                 syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static int cpu_has_amx(void) {
    pthread_once(&amx_checked, check_amx);
    return amx_usable;
}

const nt_kernels nt_kernels_amx = {
    .name = "amx",
    .supported = cpu_has_amx,
    .matmul = {[NT_DTYPE_F32] = matmul_amx, [NT_DTYPE_BF16] = matmul_amx, [NT_DTYPE_Q8] = matmul_amx,
               [NT_DTYPE_Q4] = matmul_amx},
    .packing = {[NT_DTYPE_F32] = &row_packing, [NT_DTYPE_BF16] = &row_packing, [NT_DTYPE_Q8] = &int8_row_packing,
                [NT_DTYPE_Q4] = &row_packing},
    .matmul_packed = {[NT_DTYPE_F32] = matmul_packed_amx, [NT_DTYPE_BF16] = matmul_packed_amx,
                      [NT_DTYPE_Q8] = matmul_packed_amx, [NT_DTYPE_Q4] = matmul_packed_amx},
    .takes = takes_amx,
};

#else

static int never(void) { return 0; }

const nt_kernels nt_kernels_amx = {.name = "amx", .supported = never};

#endif
