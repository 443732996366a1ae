/*
 * Causal attention of the G query heads that share one key/value head, for one sequence, float32:
 *   out[t, g] = softmax(scale * q[t, g] @ keys^T + mask) @ values
 * over the keys 0..P+t allowed by the padding mask. A row whose keys are all masked (a left-padding position)
 * has no softmax: Transformers' eager attention adds the float32 minimum to every masked score, so that all
 * its scores are equal and its softmax is uniform over every one of the S keys, future ones too; its SDPA
 * attention (torch's, given a boolean mask) outputs zeros there. masked_rows_average chooses; both versions
 * below reproduce either.
 *
 * nt_attention_naive is the specification: a row of S scores per query, the exact softmax, the weights
 * written out when asked for (output_attentions). nt_attention_blocked computes the same without the row:
 * a block of queries (every head of the group for QUERY_ROWS / G tokens) meets a block of KEY_BLOCK keys at
 * a time as two small matmuls of the kernel set, with the online softmax (a running maximum and sum per
 * query, the accumulator rescaled when the maximum grows), so that each key is loaded once per block of
 * queries and the G heads of a group share it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* rows of queries (tokens x heads) and keys met at once: the tiles (D, ROWS), (ROWS, D), (KEY_BLOCK, ROWS)
 * and (KEY_BLOCK, D) of head_dim 128 stay within a core's L2 */
enum { QUERY_ROWS = 96, KEY_BLOCK = 64 };

int64_t nt_attention_query_block(int64_t G) { return G < QUERY_ROWS ? QUERY_ROWS / G : 1; }

int64_t nt_attention_work_floats(int64_t G, int64_t D) {
    int64_t rows = G * nt_attention_query_block(G);
    /* the queries and the accumulator (rows, D) each, scores (KEY_BLOCK, rows), five (rows) vectors, the mean of
     * the values (D), the widened keys and values (KEY_BLOCK, D) each */
    return 2 * rows * D + rows * KEY_BLOCK + 5 * rows + D + 2 * KEY_BLOCK * D;
}

/* Rows [j0, j0 + n) of keys or values (src) in float32: src itself for float32, else widened into buffer. */
static const float *kv_rows(const nt_attention_args *a, const void *src, int64_t j0, int64_t n, float *buffer) {
    if (a->kv_dtype == NT_DTYPE_F32) return (const float *)src + j0 * a->D;
    const uint16_t *h = (const uint16_t *)src + j0 * a->D;
    for (int64_t i = 0; i < n * a->D; i++) buffer[i] = nt_bf16_to_f32(h[i]);
    return buffer;
}

static int allowed(const nt_attention_args *a, int64_t t, int64_t j) {
    return j <= a->P + t && (a->mask == NULL || a->mask[j]);
}

/* mean (D) = the uniform softmax over all S keys: the output of a row whose keys are all masked; row (D) a
 * buffer for one widened value */
static void values_mean(const nt_attention_args *a, float *mean, float *row) {
    int64_t S = a->P + a->T, D = a->D;
    float w = 1.0f / (float)S;
    memset(mean, 0, (size_t)D * sizeof(float));
    for (int64_t j = 0; j < S; j++) {
        const float *v = kv_rows(a, a->values, j, 1, row);
        for (int64_t d = 0; d < D; d++) mean[d] += w * v[d];
    }
}

nt_status nt_attention_naive(const nt_attention_args *a, float *weights, int64_t t_begin, int64_t t_end) {
    int64_t S = a->P + a->T, D = a->D;
    int wide = a->kv_dtype != NT_DTYPE_F32;
    /* scores (S), a value row (D), then for bfloat16 the keys and values (S, D) each in float32 */
    float *scores = malloc((size_t)(S + D + (wide ? 2 * S * D : 0)) * sizeof(float));
    if (scores == NULL) return NT_ERROR_OUT_OF_MEMORY;
    const float *keys = kv_rows(a, a->keys, 0, S, scores + S + D);
    const float *values = kv_rows(a, a->values, 0, S, scores + S + D + S * D);
    for (int64_t t = t_begin; t < t_end; t++)
        for (int64_t g = 0; g < a->G; g++) {
            const float *q = a->q + t * a->stride + g * D;
            float *out = a->out + t * a->stride + g * D;
            float *w = weights ? weights + (g * a->T + t) * S : NULL; /* (S) */
            float max_score = -INFINITY;
            for (int64_t j = 0; j < S; j++) {
                if (!allowed(a, t, j)) continue;
                float dot = 0.0f;
                for (int64_t d = 0; d < D; d++) dot += q[d] * keys[j * D + d];
                scores[j] = dot * a->scale;
                if (scores[j] > max_score) max_score = scores[j];
            }
            if (max_score == -INFINITY) {
                if (a->masked_rows_average)
                    values_mean(a, out, scores + S);
                else
                    memset(out, 0, (size_t)D * sizeof(float));
                if (w)
                    for (int64_t j = 0; j < S; j++) w[j] = a->masked_rows_average ? 1.0f / (float)S : 0.0f;
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
                    for (int64_t d = 0; d < D; d++) out[d] += p * values[j * D + d];
            }
        }
    free(scores);
    return NT_OK;
}

/* One block of query tokens [t0, t1): rows = (t1 - t0) * G, row (t - t0) * G + g. The scores of a key block
 * are kept transposed, (keys, rows), so that the keys are read as they lie in the cache and every step of the
 * softmax runs along a key's row of queries, contiguous. */
static void attention_block(const nt_kernels *k, const nt_attention_args *a, int64_t t0, int64_t t1, float *work) {
    int64_t G = a->G, D = a->D, rows = (t1 - t0) * G, rows_max = G * nt_attention_query_block(G);
    float *queries_t = work;                      /* (D, rows) the block's queries transposed */
    float *acc = queries_t + rows_max * D;        /* (rows, D) unnormalised output */
    float *scores_t = acc + rows_max * D;         /* (n, rows) scores, then probabilities */
    float *row_max = scores_t + rows_max * KEY_BLOCK; /* (rows) the running maximum */
    float *row_sum = row_max + rows_max;          /* (rows) the running sum, relative to row_max */
    float *block_max = row_sum + rows_max;        /* (rows) */
    float *shift = block_max + rows_max;          /* (rows) the maximum exp() subtracts, finite */
    float *rescale = shift + rows_max;            /* (rows) exp(old maximum - new) */
    float *mean = rescale + rows_max;             /* (D) */
    float *wide_keys = mean + D;                  /* (KEY_BLOCK, D) for bfloat16 keys */
    float *wide_values = wide_keys + KEY_BLOCK * D; /* (KEY_BLOCK, D) */

    for (int64_t i = 0; i < rows; i++)
        for (int64_t d = 0; d < D; d++) queries_t[d * rows + i] = a->q[(t0 + i / G) * a->stride + (i % G) * D + d];
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

        /* scores_t (n, rows) = keys (n, D) @ queries_t (D, rows), then scaled and masked */
        k->matmul_nn(scores_t, kv_rows(a, a->keys, j0, n, wide_keys), queries_t, n, D, rows, D, 1, rows, rows, 0);
        for (int64_t i = 0; i < rows; i++) block_max[i] = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            float *s = scores_t + j * rows;
            /* key j0 + j is in the future of the rows before `first` */
            int64_t first = a->mask != NULL && !a->mask[j0 + j] ? rows : (j0 + j - a->P - t0) * G;
            if (first < 0) first = 0;
            if (first > rows) first = rows;
            for (int64_t i = 0; i < first; i++) s[i] = -INFINITY;
            for (int64_t i = first; i < rows; i++) s[i] *= a->scale;
            for (int64_t i = 0; i < rows; i++) block_max[i] = s[i] > block_max[i] ? s[i] : block_max[i];
        }
        /* the online softmax: the sums so far and the accumulator scale to the new maximum; a row with no key
         * allowed yet keeps a maximum of -inf and a shift of 0, so that its probabilities are exp(-inf) = 0 */
        for (int64_t i = 0; i < rows; i++) {
            float new_max = block_max[i] > row_max[i] ? block_max[i] : row_max[i];
            shift[i] = new_max == -INFINITY ? 0.0f : new_max;
            rescale[i] = row_max[i];
            row_max[i] = new_max;
        }
        k->exp_shifted(rescale, shift, rows);
        for (int64_t i = 0; i < rows; i++) {
            row_sum[i] *= rescale[i];
            if (rescale[i] != 1.0f)
                for (int64_t d = 0; d < D; d++) acc[i * D + d] *= rescale[i];
        }
        for (int64_t j = 0; j < n; j++) {
            float *s = scores_t + j * rows;
            k->exp_shifted(s, shift, rows);
            for (int64_t i = 0; i < rows; i++) row_sum[i] += s[i];
        }
        /* acc (rows, D) += probabilities (rows, n), read from scores_t, @ values (n, D) */
        k->matmul_nn(acc, scores_t, kv_rows(a, a->values, j0, n, wide_values), rows, n, D, 1, rows, D, D, 1);
    }

    int have_mean = 0;
    for (int64_t i = 0; i < rows; i++) {
        float *out = a->out + (t0 + i / G) * a->stride + (i % G) * D;
        if (row_sum[i] == 0.0f) { /* every key masked */
            if (!a->masked_rows_average) {
                memset(out, 0, (size_t)D * sizeof(float));
                continue;
            }
            if (!have_mean) values_mean(a, mean, wide_values);
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
