/*
 * The loops of the decode kernel (up to SMALL_MAX_ROWS rows of x, each row of w read once for all of them) around
 * an instruction set's register block, written once for the sets that include this file after defining, for their
 * registers: SMALL_MAX_ROWS, SMALL_PASS_ROWS, SMALL_KC, SMALL_BLOCK_ROWS, SMALL_MAX_W_ROWS (the NR of one row of x),
 * SMALL_PASSES (the (MR, NR) of a pass of each number of rows, 1 to SMALL_PASS_ROWS, as PASS(MR, NR) PASS(...), the
 * last one after `default:`, as the cases of a switch), SMALL_ACCUMULATORS (the most MR x NR the block sums), and
 *   small_pack (xp, x, K, rows, k0, k1)   x rows (rows, K apart), columns [k0, k1), as small_block reads them;
 *   small_block (y, N, x, xp, K, w, scales, dtype, n0, k0, k1, ahead, MR, NR)   always inline, MR and NR constants:
 *       y (MR rows, N apart) columns n0..n0+NR-1 (+)= x @ w rows n0.. over columns [k0, k1) (= where k0 is 0),
 *       x packed in xp, or in place from x (MR rows, K apart, from column 0) for what small_pack leaves out;
 *       prefetches the same span of the rows `ahead` elements further on in w.
 * It defines small_matmul (and small_pass, its inner loop).
 *
 * A decode step multiplies a few rows of x (one per sequence of the batch) by every weight matrix, whose bytes come
 * from memory once per step: the kernel must read each weight row once for all the rows of x. From 4 rows on it is
 * bound by arithmetic, not by memory: each vector of weights widened (and for int8 and int4 scaled) serves MR FMAs,
 * so the widening and the loads around the FMAs set its speed.
 *
 * The thread's rows of w go by blocks of SMALL_BLOCK_ROWS. Within a block, the rows of x go in passes of at most
 * SMALL_PASS_ROWS (their accumulators and x vectors fill the registers); a second pass reads the block again from
 * L2, not from memory. Within a pass, K goes by chunks of SMALL_KC columns: the pass's x chunk, packed contiguous
 * (small_pack), stays in L1 while every row of the block passes over it; a row's sum is the sum of its chunks' sums
 * in order, each chunk's accumulators reduced together, so that an output does not depend on M, on the block or on
 * the thread's column range. While a chunk of a row is read, the same row's next chunk (or, at the last chunk, the
 * next block's row) is prefetched, which keeps several streams of w in flight per thread: rows of a few KiB are
 * short streams that the hardware prefetcher picks up late (prefetching took the earlier int8 row kernel from about
 * 75% to about 100% of bfloat16's bytes per second). The sets' files give their measurements.
 */
#ifndef NT_SMALL_LOOPS_H
#define NT_SMALL_LOOPS_H

/* The MR rows of x against w rows [n0, n1) over columns [k0, k1): NR rows of w at a time, then one. */
static inline __attribute__((always_inline)) void small_pass(float *y, int64_t N, const float *x, const float *xp,
                                                             int64_t K, const void *w, const float *scales,
                                                             nt_dtype dtype, int64_t n0, int64_t n1, int64_t k0,
                                                             int64_t k1, int64_t ahead, const int MR, const int NR) {
    int64_t n = n0;
    for (; n + NR <= n1; n += NR) small_block(y, N, x, xp, K, w, scales, dtype, n, k0, k1, ahead, MR, NR);
    for (; n < n1; n++) small_block(y, N, x, xp, K, w, scales, dtype, n, k0, k1, ahead, MR, 1);
}

/* y (M, N) = x (M, K) @ w^T for 1 <= M <= SMALL_MAX_ROWS, columns [n_begin, n_end). The w rows per block grow
 * as the x rows per pass shrink, to keep MR x NR accumulators, MR x vectors and NR w vectors in registers. */
static inline __attribute__((always_inline)) void small_matmul(float *y, const float *x, const nt_tensor *t,
                                                               nt_dtype dtype, int64_t M, int64_t n_begin,
                                                               int64_t n_end) {
    int64_t N = t->shape[0], K = t->shape[1];
    if (M == 1) {
        /* one row is its own packing; w row after row, each through its chunks in order as below (so the same
         * sums), streams w as the hardware prefetcher likes best: the block order was 3% slower here (AVX-512) */
        enum { NR = SMALL_MAX_W_ROWS };
        for (int64_t n = n_begin; n < n_end;) {
            int64_t nr = n_end - n < NR ? 1 : NR;
            for (int64_t k0 = 0; k0 < K; k0 += SMALL_KC) {
                int64_t k1 = K - k0 < SMALL_KC ? K : k0 + SMALL_KC;
                int64_t ahead = k1 < K ? SMALL_KC : n + 2 * nr <= N ? nr * K - k0 : 0;
                if (nr == NR)
                    small_block(y, N, x, x + k0, K, t->data, t->scales, dtype, n, k0, k1, ahead, 1, NR);
                else
                    small_block(y, N, x, x + k0, K, t->data, t->scales, dtype, n, k0, k1, ahead, 1, 1);
            }
            n += nr;
        }
        return;
    }
    int64_t passes = (M + SMALL_PASS_ROWS - 1) / SMALL_PASS_ROWS;
    float xp[SMALL_PASS_ROWS * SMALL_KC] __attribute__((aligned(64))); /* whole lines */
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
                small_pack(xp, x_p, K, rows, k0, k1);
#define SMALL_CASE(MR, NR)                                                                                  \
    case MR:                                                                                                \
        _Static_assert(MR * NR <= SMALL_ACCUMULATORS, "the block sums at most SMALL_ACCUMULATORS");         \
        small_pass(y_p, N, x_p, xp, K, t->data, t->scales, dtype, n0, n1, k0, k1, ahead, MR, NR);           \
        break;
                switch (rows) {
                SMALL_PASSES(SMALL_CASE)
                }
#undef SMALL_CASE
            }
            m0 += rows;
        }
    }
}

#endif
