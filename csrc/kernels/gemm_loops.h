/*
 * The loops of the prefill GEMM around an instruction set's micro-kernel, written once for the sets that include
 * this file after defining, for their registers: PANEL_MR, PANEL_NR, PANEL_KC and ROWS_MC (a multiple of PANEL_MR;
 * PANEL_KC, PANEL_NR and ROWS_MC such that whole panels and x blocks are whole 64-byte lines), and
 *   pack_panel (panel, w, scales, dtype, K, n0, nr, k0, kc)  the panel (kc, PANEL_NR) of w rows from n0;
 *   pack_rows (xp, x, K, mr, kc)                             x rows (mr, kc) as (kc, PANEL_MR), nothing past it;
 *   panel_block (y, N, xp, panel, kc, mr, nr, accumulate)    y (mr, nr) (+)= xp @ panel.
 * It defines gemm (each thread packs the rows of x it multiplies) and, for the set's table, packed_floats, pack_x and
 * matmul_packed_<dtype> (the rows of x packed once for all threads: nt_kernels in kernels/kernels.h), and the
 * table's entries GEMM_PACKING (of the set's row_packing, which names packed_floats and pack_x) and
 * GEMM_MATMUL_PACKED.
 */
#ifndef NT_GEMM_LOOPS_H
#define NT_GEMM_LOOPS_H

#include <stdlib.h>

/* y rows [mc0, mc_end) (+)= those rows of x, packed, over columns [k0, k0 + kc) @ w rows [n_begin, n_end)^T. The
 * packed block of PANEL_MR rows from m0 is at xp + (m0 - mc0) / PANEL_MR * xp_stride; panel is the panel's buffer. */
static void gemm_k_block(float *y, int64_t N, const float *xp, int64_t xp_stride, float *panel, const void *w,
                         const float *scales, nt_dtype dtype, int64_t K, int64_t mc0, int64_t mc_end, int64_t k0,
                         int64_t kc, int64_t n_begin, int64_t n_end) {
    for (int64_t n0 = n_begin; n0 < n_end; n0 += PANEL_NR) {
        int64_t nr = n_end - n0 < PANEL_NR ? n_end - n0 : PANEL_NR;
        pack_panel(panel, w, scales, dtype, K, n0, nr, k0, kc);
        for (int64_t m0 = mc0; m0 < mc_end; m0 += PANEL_MR) {
            int64_t mr = mc_end - m0 < PANEL_MR ? mc_end - m0 : PANEL_MR;
            panel_block(y + m0 * N + n0, N, xp + (m0 - mc0) / PANEL_MR * xp_stride, panel, kc, mr, nr, k0 > 0);
        }
    }
}

/* Returns 0 without memory for its buffers (the caller then uses the row kernels, which need none). */
static int gemm(float *y, const float *x, const void *w, const float *scales, nt_dtype dtype, int64_t M, int64_t N,
                int64_t K, int64_t n_begin, int64_t n_end) {
    /* panel (PANEL_KC, PANEL_NR), then the x block (mc / PANEL_MR, PANEL_KC, PANEL_MR) */
    int64_t mc_max = M < ROWS_MC ? (M + PANEL_MR - 1) / PANEL_MR * PANEL_MR : ROWS_MC;
    float *panel = aligned_alloc(64, sizeof(float) * PANEL_KC * (PANEL_NR + mc_max));
    if (panel == NULL) return 0;
    float *rows = panel + PANEL_KC * PANEL_NR;
    for (int64_t mc0 = 0; mc0 < M; mc0 += ROWS_MC) {
        int64_t mc_end = M - mc0 < ROWS_MC ? M : mc0 + ROWS_MC;
        for (int64_t k0 = 0; k0 < K; k0 += PANEL_KC) {
            int64_t kc = K - k0 < PANEL_KC ? K - k0 : PANEL_KC;
            for (int64_t m0 = mc0; m0 < mc_end; m0 += PANEL_MR) {
                int64_t mr = mc_end - m0 < PANEL_MR ? mc_end - m0 : PANEL_MR;
                pack_rows(rows + (m0 - mc0) * kc, x + m0 * K + k0, K, mr, kc);
            }
            gemm_k_block(y, N, rows, PANEL_MR * kc, panel, w, scales, dtype, K, mc0, mc_end, k0, kc, n_begin, n_end);
        }
    }
    free(panel);
    return 1;
}

/* ---------------------------------------------------------------- the same, rows packed once
 * packed holds, for each block of ROWS_MC rows of x (the last one shorter, rounded up to PANEL_MR) and each k block
 * of PANEL_KC columns, the x block gemm packs there, whole, one after the other. forward.c packs so with two threads
 * or more: each thread of gemm packs every row of x, and q, k and v pack it three times, where pack_x runs once,
 * split between the threads (avx512, the down projection 3072 x 9216 at M = 512 on two threads: 1.95x one thread,
 * against gemm's 1.87x). On one thread it is about 3% slower than gemm, which packs each x block just before use
 * into a buffer that stays in L2. */
static int64_t packed_floats(int64_t M, int64_t K) { return (M + PANEL_MR - 1) / PANEL_MR * PANEL_MR * K; }

/* where in packed the x block (mc, kc) of rows from mc0 and columns from k0 begins */
static int64_t packed_block(int64_t M, int64_t K, int64_t mc0, int64_t k0) {
    int64_t mc = M - mc0 < ROWS_MC ? M - mc0 : ROWS_MC;
    return mc0 * K + k0 * ((mc + PANEL_MR - 1) / PANEL_MR * PANEL_MR);
}

static void pack_x(float *packed, const float *x, int64_t M, int64_t K, int64_t block_begin, int64_t block_end) {
    for (int64_t b = block_begin; b < block_end; b++) {
        int64_t m0 = b * PANEL_MR, mr = M - m0 < PANEL_MR ? M - m0 : PANEL_MR, mc0 = m0 / ROWS_MC * ROWS_MC;
        for (int64_t k0 = 0; k0 < K; k0 += PANEL_KC) {
            int64_t kc = K - k0 < PANEL_KC ? K - k0 : PANEL_KC;
            pack_rows(packed + packed_block(M, K, mc0, k0) + (m0 - mc0) * kc, x + m0 * K + k0, K, mr, kc);
        }
    }
}

static int gemm_packed(float *y, const float *packed, const nt_tensor *w, nt_dtype dtype, int64_t M, int64_t n_begin,
                       int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    float *panel = aligned_alloc(64, sizeof(float) * PANEL_KC * PANEL_NR);
    if (panel == NULL) return 0;
    for (int64_t mc0 = 0; mc0 < M; mc0 += ROWS_MC) {
        int64_t mc_end = M - mc0 < ROWS_MC ? M : mc0 + ROWS_MC;
        for (int64_t k0 = 0; k0 < K; k0 += PANEL_KC) {
            int64_t kc = K - k0 < PANEL_KC ? K - k0 : PANEL_KC;
            gemm_k_block(y, N, packed + packed_block(M, K, mc0, k0), PANEL_MR * kc, panel, w->data, w->scales, dtype,
                         K, mc0, mc_end, k0, kc, n_begin, n_end);
        }
    }
    free(panel);
    return 1;
}

#define GEMM_PACKED(NAME, DTYPE)                                                                                  \
    static int matmul_packed_##NAME(float *y, const float *packed, const nt_tensor *w, int64_t M, int64_t n_begin, \
                                    int64_t n_end) {                                                              \
        return gemm_packed(y, packed, w, DTYPE, M, n_begin, n_end);                                               \
    }
GEMM_PACKED(f32, NT_DTYPE_F32)
GEMM_PACKED(bf16, NT_DTYPE_BF16)
GEMM_PACKED(f16, NT_DTYPE_F16)
GEMM_PACKED(q8, NT_DTYPE_Q8)
GEMM_PACKED(q4, NT_DTYPE_Q4)

/* the set's table's packing and matmul_packed: x packed alike for every dtype, by the row_packing the set defines */
#define GEMM_PACKING                                                                                        \
    {                                                                                                       \
        [NT_DTYPE_F32] = &row_packing, [NT_DTYPE_BF16] = &row_packing, [NT_DTYPE_F16] = &row_packing,       \
        [NT_DTYPE_Q8] = &row_packing, [NT_DTYPE_Q4] = &row_packing,                                         \
    }
#define GEMM_MATMUL_PACKED                                                                                  \
    {                                                                                                       \
        [NT_DTYPE_F32] = matmul_packed_f32, [NT_DTYPE_BF16] = matmul_packed_bf16,                           \
        [NT_DTYPE_F16] = matmul_packed_f16, [NT_DTYPE_Q8] = matmul_packed_q8, [NT_DTYPE_Q4] = matmul_packed_q4, \
    }

#endif
