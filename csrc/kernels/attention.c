/*
 * Causal attention of the G query heads that share one key/value head, for one sequence, float32:
 *   out[t, g] = softmax(scale * q[t, g] @ keys^T + mask) @ values
 * over the keys 0..P+t allowed by the padding mask. Transformers' eager attention adds the float32 minimum
 * to every masked score; a row whose keys are all masked then has all scores equal, and its softmax is
 * uniform over every one of the S keys, future ones too. Both versions below reproduce that.
 *
 * nt_attention_naive is the specification: a row of S scores per query, the exact softmax, the weights
 * written out when asked for (output_attentions). nt_attention_blocked computes the same without the row:
 * a block of queries (every head of the group for QUERY_ROWS / G tokens) meets a block of KEY_BLOCK keys at
 * a time as two small matmuls of the kernel set, with the online softmax (a running maximum and sum per row,
 * the accumulator rescaled when the maximum grows), so that each key is loaded once per block of queries
 * and the G heads of a group share it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* rows of queries (tokens x heads) and keys met at once: the tiles (ROWS, D), (ROWS, KEY_BLOCK),
 * (D, KEY_BLOCK) and (KEY_BLOCK, D) of head_dim 128 stay within a core's L2 */
enum { QUERY_ROWS = 96, KEY_BLOCK = 64 };

int64_t nt_attention_query_block(int64_t G) { return G < QUERY_ROWS ? QUERY_ROWS / G : 1; }

int64_t nt_attention_work_floats(int64_t G, int64_t D) {
    int64_t rows = G * nt_attention_query_block(G);
    /* packed queries and the accumulator (rows, D) each, scores (rows, KEY_BLOCK), keys (D, KEY_BLOCK),
     * running maximum and sum (rows) each, the mean of the values (D) */
    return 2 * rows * D + rows * KEY_BLOCK + D * KEY_BLOCK + 2 * rows + D;
}

static int allowed(const nt_attention_args *a, int64_t t, int64_t j) {
    return j <= a->P + t && (a->mask == NULL || a->mask[j]);
}

/* mean (D) = the uniform softmax over all S keys: the output of a row whose keys are all masked */
static void values_mean(const nt_attention_args *a, float *mean) {
    int64_t S = a->P + a->T, D = a->D;
    float w = 1.0f / (float)S;
    memset(mean, 0, (size_t)D * sizeof(float));
    for (int64_t j = 0; j < S; j++)
        for (int64_t d = 0; d < D; d++) mean[d] += w * a->values[j * D + d];
}

nt_status nt_attention_naive(const nt_attention_args *a, float *weights, int64_t t_begin, int64_t t_end) {
    int64_t S = a->P + a->T, D = a->D;
    float *scores = malloc((size_t)S * sizeof(float)); /* (S) */
    if (scores == NULL) return NT_ERROR_OUT_OF_MEMORY;
    for (int64_t t = t_begin; t < t_end; t++)
        for (int64_t g = 0; g < a->G; g++) {
            const float *q = a->q + t * a->stride + g * D;
            float *out = a->out + t * a->stride + g * D;
            float *w = weights ? weights + (g * a->T + t) * S : NULL; /* (S) */
            float max_score = -INFINITY;
            for (int64_t j = 0; j < S; j++) {
                if (!allowed(a, t, j)) continue;
                float dot = 0.0f;
                for (int64_t d = 0; d < D; d++) dot += q[d] * a->keys[j * D + d];
                scores[j] = dot * a->scale;
                if (scores[j] > max_score) max_score = scores[j];
            }
            if (max_score == -INFINITY) {
                values_mean(a, out);
                if (w)
                    for (int64_t j = 0; j < S; j++) w[j] = 1.0f / (float)S;
                continue;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < S; j++)
                if (allowed(a, t, j)) sum += scores[j] = expf(scores[j] - max_score);
            float inv = 1.0f / sum;
            memset(out, 0, (size_t)D * sizeof(float));
            for (int64_t j = 0; j < S; j++) {
                float p = allowed(a, t, j) ? scores[j] * inv : 0.0f;
                if (w) w[j] = p;
                if (p != 0.0f)
                    for (int64_t d = 0; d < D; d++) out[d] += p * a->values[j * D + d];
            }
        }
    free(scores);
    return NT_OK;
}

/* One block of query tokens [t0, t1): rows = (t1 - t0) * G, row (t - t0) * G + g. */
static void attention_block(const nt_kernels *k, const nt_attention_args *a, int64_t t0, int64_t t1, float *work) {
    int64_t G = a->G, D = a->D, rows = (t1 - t0) * G, rows_max = G * nt_attention_query_block(G);
    float *queries = work;                        /* (rows, D) */
    float *acc = queries + rows_max * D;          /* (rows, D) unnormalised output */
    float *scores = acc + rows_max * D;           /* (rows, n) scores, then probabilities */
    float *keys_t = scores + rows_max * KEY_BLOCK; /* (D, n) the key block transposed */
    float *row_max = keys_t + D * KEY_BLOCK;      /* (rows) */
    float *row_sum = row_max + rows_max;          /* (rows) */
    float *mean = row_sum + rows_max;             /* (D) */

    for (int64_t t = t0; t < t1; t++)
        memcpy(queries + (t - t0) * G * D, a->q + t * a->stride, (size_t)(G * D) * sizeof(float));
    memset(acc, 0, (size_t)(rows * D) * sizeof(float));
    for (int64_t i = 0; i < rows; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }

    int64_t keys_end = a->P + t1; /* the causal limit of the block's last token */
    for (int64_t j0 = 0; j0 < keys_end; j0 += KEY_BLOCK) {
        int64_t n = keys_end - j0 < KEY_BLOCK ? keys_end - j0 : KEY_BLOCK;
        int padded = 0, open = 0; /* whether some key of the block is padding, some is not */
        for (int64_t j = j0; a->mask != NULL && j < j0 + n; j++) {
            padded |= !a->mask[j];
            open |= a->mask[j];
        }
        if (padded && !open) continue; /* every probability would be 0 */
        int masked = padded || j0 + n - 1 > a->P + t0; /* the block crosses the diagonal or has padding */

        for (int64_t j = 0; j < n; j++)
            for (int64_t d = 0; d < D; d++) keys_t[d * n + j] = a->keys[(j0 + j) * D + d];
        k->matmul_nn(scores, queries, keys_t, rows, D, n, D, n, n, 0);

        for (int64_t i = 0; i < rows; i++) {
            float *s = scores + i * n;
            int64_t t = t0 + i / G;
            float block_max = -INFINITY;
            for (int64_t j = 0; j < n; j++) {
                s[j] = masked && !allowed(a, t, j0 + j) ? -INFINITY : s[j] * a->scale;
                block_max = s[j] > block_max ? s[j] : block_max;
            }
            if (block_max == -INFINITY) { /* nothing allowed in this block for this row */
                memset(s, 0, (size_t)n * sizeof(float));
                continue;
            }
            float new_max = block_max > row_max[i] ? block_max : row_max[i];
            float rescale = expf(row_max[i] - new_max); /* 0 for the first block with an allowed key */
            row_sum[i] = row_sum[i] * rescale + k->exp_sum(s, n, new_max);
            row_max[i] = new_max;
            if (rescale != 1.0f)
                for (int64_t d = 0; d < D; d++) acc[i * D + d] *= rescale;
        }
        k->matmul_nn(acc, scores, a->values + j0 * D, rows, n, D, n, D, D, 1);
    }

    int have_mean = 0;
    for (int64_t i = 0; i < rows; i++) {
        float *out = a->out + (t0 + i / G) * a->stride + (i % G) * D;
        if (row_sum[i] == 0.0f) { /* every key masked */
            if (!have_mean) values_mean(a, mean);
            have_mean = 1;
            memcpy(out, mean, (size_t)D * sizeof(float));
            continue;
        }
        float inv = 1.0f / row_sum[i];
        for (int64_t d = 0; d < D; d++) out[d] = acc[i * D + d] * inv;
    }
}

void nt_attention_blocked(const nt_kernels *k, const nt_attention_args *a, int64_t t_begin, int64_t t_end,
                          float *work) {
    int64_t block = nt_attention_query_block(a->G);
    for (int64_t t0 = t_begin; t0 < t_end; t0 += block)
        attention_block(k, a, t0, t_end - t0 < block ? t_end : t0 + block, work);
}
