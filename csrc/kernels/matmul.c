/* Matrix products in plain C: the naive reference and the portable kernel set. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

nt_status nt_matmul_naive(float *y, const float *x, const nt_tensor *w, int64_t M) {
    /* y (M, N) = x (M, K) @ w (N, K)^T */
    int64_t N = w->shape[0], K = w->shape[1];
    float *w_n = malloc((size_t)(K > 0 ? K : 1) * sizeof(float)); /* (K) row n of w in float32 */
    if (w_n == NULL) return NT_ERROR_OUT_OF_MEMORY;
    for (int64_t n = 0; n < N; n++) {
        nt_tensor_row_to_f32(w_n, w, n);
        for (int64_t m = 0; m < M; m++) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += x[m * K + k] * w_n[k];
            y[m * N + n] = sum;
        }
    }
    free(w_n);
    return NT_OK;
}

/* Eight independent partial sums let the compiler use vector registers without reassociating. */
static float dot_portable(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void axpy_portable(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void matmul_nn_portable(float *y, const float *x, const float *w, int64_t M, int64_t K, int64_t N,
                               int64_t ldx, int64_t kx, int64_t ldw, int64_t ldy, int accumulate) {
    for (int64_t m = 0; m < M; m++) {
        float *y_m = y + m * ldy;
        if (!accumulate)
            for (int64_t n = 0; n < N; n++) y_m[n] = 0.0f;
        for (int64_t k = 0; k < K; k++) axpy_portable(y_m, x[m * ldx + k * kx], w + k * ldw, N);
    }
}

static void exp_shifted_portable(float *x, const float *shift, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = expf(x[i] - shift[i]);
}

static void matmul_f32_portable(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin,
                                int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    for (int64_t n = n_begin; n < n_end; n++) {
        const float *w_n = nt_tensor_row(w, n);
        for (int64_t m = 0; m < M; m++) y[m * N + n] = dot_portable(x + m * K, w_n, K);
    }
}

/* Other dtypes: each row of w is widened to float32 once, a span of SPAN columns at a time, then used
 * for every x row; a row that fits one span sums exactly as the float32 kernel. SPAN is whole groups of
 * every quantized dtype. */
enum { SPAN = 4096 };
_Static_assert(SPAN % NT_Q8_GROUP == 0 && SPAN % NT_Q4_GROUP == 0, "a span must be whole groups");

static void matmul_widening_portable(float *y, const float *x, const nt_tensor *w, int64_t M, int64_t n_begin,
                                     int64_t n_end) {
    int64_t N = w->shape[0], K = w->shape[1];
    float span[SPAN]; /* (SPAN) columns [k0, k0 + SPAN) of row n in float32 */
    for (int64_t n = n_begin; n < n_end; n++)
        for (int64_t k0 = 0; k0 < K; k0 += SPAN) {
            int64_t len = K - k0 < SPAN ? K - k0 : SPAN;
            nt_tensor_span_to_f32(span, w, n, k0, len);
            for (int64_t m = 0; m < M; m++) {
                float part = dot_portable(x + m * K + k0, span, len);
                y[m * N + n] = k0 == 0 ? part : y[m * N + n] + part;
            }
        }
}

static int always(void) { return 1; }

const nt_kernels nt_kernels_portable = {
    .name = "portable",
    .supported = always,
    .matmul = {
        [NT_DTYPE_F32] = matmul_f32_portable,
        [NT_DTYPE_BF16] = matmul_widening_portable,
        [NT_DTYPE_F16] = matmul_widening_portable,
        [NT_DTYPE_Q8] = matmul_widening_portable,
        [NT_DTYPE_Q4] = matmul_widening_portable,
    },
    .matmul_nn = matmul_nn_portable,
    .exp_shifted = exp_shifted_portable,
};
