/*
 * Scoring: log-probabilities of chosen next tokens, without ever holding (B, T, V) logits.
 *
 * One forward pass gives the final-normed hidden states (B, T, H). The rows that have a target are
 * packed to the front of that buffer (R of them); then, for each chunk of rows and each block of the
 * vocabulary, the lm_head gives a (rows, block) tile of logits that is folded into a running
 * log-sum-exp per row (the online softmax), and each row's target logit is picked up from the block
 * that holds it:
 *   logprob = logit[target] - (max + log(sum over the vocabulary of exp(logit - max)))
 * Working memory beyond the forward pass: (B, T, H) hidden states, one tile of TILE_FLOATS floats and, with two
 * threads or more, a chunk's rows packed for the matmuls (about ROW_CHUNK x H floats).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* A tile of logits holds about this many floats (16 MB); rows per chunk are at least ROW_CHUNK so that the
 * lm_head is streamed through once per ROW_CHUNK rows, not once per row. A chunk's rows are packed once for all
 * its tiles (nt_model_pack_rows, two threads or more); each tile is one matmul whose threads split its columns in
 * blocks of 48: the 8192 columns of 512 rows split within 1%, where the 2048 of 4 MB tiles left one thread a block
 * more (2%). */
enum { TILE_FLOATS = 1 << 22, ROW_CHUNK = 512, COLUMN_ALIGN = 16 }; /* 512: the GEMMs' row block */

typedef struct {
    const nt_kernels *kernels;
    float *tile;           /* (rows, cols) logits of vocabulary entries [v0, v0 + cols); exp'd in place */
    int64_t cols, v0;
    const int32_t *target; /* (rows) */
    float *max;            /* (rows) running maximum */
    double *sum;           /* (rows) running sum of exp(logit - max) */
    float *picked;         /* (rows) the target's logit, once its block has been seen */
    atomic_int out_of_memory;
} fold_job;

/* the sum of n floats in double, in 8 running sums that the compiler keeps in vector registers */
static double sum_double(const float *x, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
    double sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += (double)x[i];
    return sum;
}

static void fold_range(void *ctx, int64_t begin, int64_t end) {
    fold_job *job = ctx;
    float *shift = malloc((size_t)job->cols * sizeof(float)); /* (cols) the row's maximum, for exp_shifted */
    if (shift == NULL) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        float *row = job->tile + r * job->cols;
        int64_t t = (int64_t)job->target[r] - job->v0;
        if (t >= 0 && t < job->cols) job->picked[r] = row[t];
        float block_max = -INFINITY;
        int nan = 0;
        for (int64_t j = 0; j < job->cols; j++) {
            block_max = row[j] > block_max ? row[j] : block_max;
            nan |= row[j] != row[j];
        }
        if (block_max > job->max[r]) {
            /* rescale what has been summed so far to the new maximum */
            job->sum[r] = job->max[r] == -INFINITY ? 0.0 : job->sum[r] * exp((double)job->max[r] - block_max);
            job->max[r] = block_max;
        }
        float m = job->max[r];
        if (m == -INFINITY) continue; /* every logit so far is -inf: nothing to add */
        if (nan || m == INFINITY) { /* as the sum of expf(logit - max) would be (exp_shifted needs m finite) */
            job->sum[r] = NAN;
            continue;
        }
        for (int64_t j = 0; j < job->cols; j++) shift[j] = m;
        job->kernels->exp_shifted(row, shift, job->cols);
        job->sum[r] += sum_double(row, job->cols);
    }
    free(shift);
}

nt_status nt_model_score(nt_model *m, nt_error *err, float *logprobs, const int32_t *input_ids,
                         const int64_t *position_ids, const uint8_t *attention_mask, const int32_t *targets,
                         int64_t B, int64_t T, nt_cache *cache, const volatile int *cancel) {
    const nt_config *c = &m->config;
    int64_t H = c->hidden_size, V = c->vocab_size;
    if (m->lm_head.data == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "this model has no lm_head to score tokens with");
    int64_t BT = nt_mul_size(B, T), BTH = nt_mul_size(BT, H);
    if (B <= 0 || T <= 0 || BTH < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot score a batch of %lld x %lld tokens",
                            (long long)B, (long long)T);
    int64_t R = 0; /* rows with a target */
    for (int64_t i = 0; i < BT; i++) {
        if (targets[i] >= V)
            return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "target id %d at index %lld is outside [0, %lld)",
                                (int)targets[i], (long long)i, (long long)V);
        if (targets[i] >= 0) R++;
    }

    int64_t rows_max = TILE_FLOATS / V > ROW_CHUNK ? TILE_FLOATS / V : ROW_CHUNK;
    if (rows_max > R) rows_max = R > 0 ? R : 1;
    int64_t cols_max = TILE_FLOATS / rows_max / COLUMN_ALIGN * COLUMN_ALIGN;
    if (cols_max < COLUMN_ALIGN) cols_max = COLUMN_ALIGN;
    if (cols_max > V) cols_max = V;

    float *hidden = malloc((size_t)BTH * sizeof(float));                 /* (B*T, H), then (R, H) packed */
    float *tile = malloc((size_t)(rows_max * cols_max) * sizeof(float)); /* (rows, cols) */
    int64_t *row_of = malloc((size_t)(R > 0 ? R : 1) * sizeof(int64_t)); /* (R) index into B*T */
    int32_t *row_target = malloc((size_t)(R > 0 ? R : 1) * sizeof(int32_t));
    float *row_max = malloc((size_t)rows_max * sizeof(float));
    float *picked = malloc((size_t)rows_max * sizeof(float));
    double *row_sum = malloc((size_t)rows_max * sizeof(double));
    float *packed = NULL; /* a chunk's rows of hidden, packed for the lm_head's matmuls */
    nt_status status = NT_OK;
    if (!hidden || !tile || !row_of || !row_target || !row_max || !picked || !row_sum) {
        status = nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for scoring %lld x %lld tokens",
                              (long long)B, (long long)T);
        goto done;
    }

    int64_t P = cache != NULL ? cache->length : 0;
    status = nt_model_forward(m, err, NULL, hidden, NULL, input_ids, position_ids, attention_mask, NULL, 0, B, T,
                              cache, NULL, cancel);
    if (status != NT_OK) goto done;

    memset(logprobs, 0, (size_t)BT * sizeof(float));
    int64_t r = 0;
    for (int64_t i = 0; i < BT; i++) {
        if (targets[i] < 0) continue;
        if (r != i) memcpy(hidden + r * H, hidden + i * H, (size_t)H * sizeof(float)); /* r < i: no overlap */
        row_of[r] = i;
        row_target[r] = targets[i];
        r++;
    }

    for (int64_t r0 = 0; r0 < R; r0 += rows_max) {
        int64_t rows = R - r0 < rows_max ? R - r0 : rows_max;
        free(packed);
        packed = nt_model_pack_rows(m, hidden + r0 * H, rows, &m->lm_head); /* once for every block of the vocabulary */
        for (int64_t k = 0; k < rows; k++) {
            row_max[k] = -INFINITY;
            row_sum[k] = 0.0;
            picked[k] = NAN;
        }
        for (int64_t v0 = 0; v0 < V; v0 += cols_max) {
            if (cancel != NULL && *cancel) {
                status = nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
                if (cache != NULL) cache->length = P; /* as nt_model_forward: an interrupted call adds nothing */
                goto done;
            }
            int64_t cols = V - v0 < cols_max ? V - v0 : cols_max;
            /* lm_head rows [v0, v0 + cols) as a (cols, H) matrix of their own */
            nt_tensor block = nt_tensor_rows(&m->lm_head, v0, cols);
            nt_model_linear_packed(m, tile, hidden + r0 * H, packed, &block, NULL, rows, NT_ACT_IDENTITY);
            fold_job job = {.kernels = m->kernels, .tile = tile, .cols = cols, .v0 = v0, .target = row_target + r0,
                            .max = row_max, .sum = row_sum, .picked = picked};
            atomic_init(&job.out_of_memory, 0);
            nt_threadpool_parallel_for(m->pool, fold_range, &job, rows, 4);
            if (atomic_load(&job.out_of_memory)) {
                status = nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for scoring %lld x %lld tokens",
                                      (long long)B, (long long)T);
                if (cache != NULL) cache->length = P;
                goto done;
            }
        }
        for (int64_t k = 0; k < rows; k++)
            logprobs[row_of[r0 + k]] = (float)((double)picked[k] - ((double)row_max[k] + log(row_sum[k])));
    }

done:
    free(hidden);
    free(tile);
    free(row_of);
    free(row_target);
    free(row_max);
    free(picked);
    free(row_sum);
    free(packed);
    return status;
}
