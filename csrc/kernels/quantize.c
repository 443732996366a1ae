/* Quantization of float weights to NT_DTYPE_Q8 (nemotron.h states the rule), and its naive reference. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* The rule for one group, shared by both versions so that they can only differ in how they walk the tensor.
 * q (NT_Q8_GROUP), *scale = the group w (NT_Q8_GROUP) in float32. Returns 0 when a weight is not finite. */
static int quantize_group(int8_t *q, float *scale, const float *w) {
    float amax = 0.0f;
    for (int i = 0; i < NT_Q8_GROUP; i++) {
        if (!isfinite(w[i])) return 0;
        float a = fabsf(w[i]);
        amax = a > amax ? a : amax;
    }
    *scale = amax / 127.0f;
    if (*scale == 0.0f) { /* zeros, or weights so small that their scale underflows */
        memset(q, 0, NT_Q8_GROUP);
        return 1;
    }
    for (int i = 0; i < NT_Q8_GROUP; i++) {
        /* |w / scale| exceeds 127.5 only when the scale is subnormal and lost precision: hence the clamp. Adding
         * and taking away 1.5 x 2^23 rounds to the nearest integer, ties to even, as NumPy's round does (in the
         * default rounding mode; without -ffast-math the compiler keeps both steps), and vectorizes where a call
         * to nearbyintf would not. */
        float v = w[i] / *scale;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)((v + 0x1.8p23f) - 0x1.8p23f);
    }
    return 1;
}

static nt_status check_source(nt_error *err, const nt_tensor *src) {
    if (src->ndim != 2 || src->shape[0] < 0 || src->shape[1] < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "only a 2-D tensor can be quantized to int8");
    if (src->dtype != NT_DTYPE_F32 && src->dtype != NT_DTYPE_BF16 && src->dtype != NT_DTYPE_F16)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot quantize %s weights to int8 (float32, bfloat16 "
                            "or float16 expected)", nt_dtype_name(src->dtype));
    if (src->shape[1] % NT_Q8_GROUP != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "cannot quantize rows of %lld elements to int8: not a multiple of the group size %d",
                            (long long)src->shape[1], NT_Q8_GROUP);
    return nt_tensor_check_storage(err, src, "to quantize");
}

static nt_status non_finite(nt_error *err, int64_t row) {
    return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot quantize to int8: row %lld holds a weight that is "
                        "not finite", (long long)row);
}

nt_status nt_quantize_q8_naive(int8_t *data, float *scales, nt_error *err, const nt_tensor *src) {
    nt_status status = check_source(err, src);
    if (status != NT_OK) return status;
    int64_t N = src->shape[0], K = src->shape[1];
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k += NT_Q8_GROUP) {
            float w[NT_Q8_GROUP];
            nt_tensor_span_to_f32(w, src, n, k, NT_Q8_GROUP);
            if (!quantize_group(data + n * K + k, scales + (n * K + k) / NT_Q8_GROUP, w)) return non_finite(err, n);
        }
    return NT_OK;
}

typedef struct {
    int8_t *data;    /* (N, K) */
    float *scales;   /* (N, K / NT_Q8_GROUP) */
    const nt_tensor *src;
    atomic_llong bad_row; /* a row found with a weight that is not finite, or -1 */
} quantize_job;

/* Rows [begin, end), a span of SPAN columns widened to float32 at a time. */
static void quantize_rows(void *ctx, int64_t begin, int64_t end) {
    enum { SPAN = 4096 };
    quantize_job *job = ctx;
    int64_t K = job->src->shape[1];
    float span[SPAN];
    for (int64_t n = begin; n < end; n++)
        for (int64_t k0 = 0; k0 < K; k0 += SPAN) {
            int64_t len = K - k0 < SPAN ? K - k0 : SPAN;
            nt_tensor_span_to_f32(span, job->src, n, k0, len);
            for (int64_t k = 0; k < len; k += NT_Q8_GROUP)
                if (!quantize_group(job->data + n * K + k0 + k, job->scales + (n * K + k0 + k) / NT_Q8_GROUP,
                                    span + k)) {
                    atomic_store(&job->bad_row, n);
                    return;
                }
        }
}

nt_status nt_quantize_q8(int8_t *data, float *scales, nt_error *err, const nt_tensor *src, nt_threadpool *pool) {
    nt_status status = check_source(err, src);
    if (status != NT_OK) return status;
    quantize_job job = {.data = data, .scales = scales, .src = src};
    atomic_init(&job.bad_row, -1);
    if (pool != NULL)
        nt_threadpool_parallel_for(pool, quantize_rows, &job, src->shape[0], 16);
    else
        quantize_rows(&job, 0, src->shape[0]);
    int64_t bad_row = atomic_load(&job.bad_row);
    return bad_row >= 0 ? non_finite(err, bad_row) : NT_OK;
}
