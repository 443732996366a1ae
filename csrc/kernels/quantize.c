/* Quantization of float weights to NT_DTYPE_Q8 and NT_DTYPE_Q4 (nemotron.h states the rules), and its naive
 * reference. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Adding and taking away 1.5 x 2^23 rounds to the nearest integer, ties to even, as NumPy's round does (in the
 * default rounding mode; without -ffast-math the compiler keeps both steps), and vectorizes where a call to
 * nearbyintf would not. v is clamped first, so that |v| < 2^22. */
static inline float round_clamped(float v, float lo, float hi) {
    v = v > hi ? hi : v < lo ? lo : v;
    return (v + 0x1.8p23f) - 0x1.8p23f;
}

/* The rules for one group, shared by both versions so that they can only differ in how they walk the tensor.
 * q (the group's bytes), *scale = the group w in float32. Return 0 when a weight is not finite. */
static int quantize_group_q8(void *q, float *scale, const float *w) {
    int8_t *out = q;
    float amax = 0.0f;
    for (int i = 0; i < NT_Q8_GROUP; i++) {
        if (!isfinite(w[i])) return 0;
        float a = fabsf(w[i]);
        amax = a > amax ? a : amax;
    }
    *scale = amax / 127.0f;
    if (*scale == 0.0f) { /* zeros, or weights so small that their scale underflows */
        memset(out, 0, NT_Q8_GROUP);
        return 1;
    }
    /* |w / scale| exceeds 127.5 only when the scale is subnormal and lost precision: hence the clamp */
    for (int i = 0; i < NT_Q8_GROUP; i++) out[i] = (int8_t)round_clamped(w[i] / *scale, -127.0f, 127.0f);
    return 1;
}

static int quantize_group_q4(void *q, float *scale, const float *w) {
    enum { HALF = NT_Q4_GROUP / 2 };
    uint8_t *out = q;
    float m = 0.0f; /* the first weight of largest magnitude */
    for (int i = 0; i < NT_Q4_GROUP; i++) {
        if (!isfinite(w[i])) return 0;
        if (fabsf(w[i]) > fabsf(m)) m = w[i];
    }
    *scale = m / -8.0f;
    if (*scale == 0.0f) {
        *scale = 0.0f; /* not -0 */
        memset(out, 0x88, HALF);
        return 1;
    }
    for (int j = 0; j < HALF; j++) {
        int lo = (int)round_clamped(w[j] / *scale, -8.0f, 7.0f);
        int hi = (int)round_clamped(w[j + HALF] / *scale, -8.0f, 7.0f);
        out[j] = (uint8_t)((lo + 8) | (hi + 8) << 4);
    }
    return 1;
}

typedef struct {
    int64_t group;
    size_t group_bytes;
    int (*quantize_group)(void *q, float *scale, const float *w);
} rule;

_Static_assert((int)NT_Q8_GROUP >= (int)NT_Q4_GROUP, "nt_quantize_naive widens a group into NT_Q8_GROUP floats");

static const rule *rule_of(nt_dtype dtype) {
    static const rule q8 = {NT_Q8_GROUP, NT_Q8_GROUP, quantize_group_q8}, q4 = {NT_Q4_GROUP, NT_Q4_GROUP / 2,
                                                                              quantize_group_q4};
    return dtype == NT_DTYPE_Q8 ? &q8 : dtype == NT_DTYPE_Q4 ? &q4 : NULL;
}

static nt_status check_source(nt_error *err, nt_dtype dtype, const nt_tensor *src) {
    const rule *r = rule_of(dtype);
    if (r == NULL)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot quantize to %s: not a quantized dtype",
                            nt_dtype_name(dtype));
    const char *name = nt_dtype_name(dtype);
    if (src->ndim != 2 || src->shape[0] < 0 || src->shape[1] < 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "only a 2-D tensor can be quantized to %s", name);
    if (src->dtype != NT_DTYPE_F32 && src->dtype != NT_DTYPE_BF16 && src->dtype != NT_DTYPE_F16)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot quantize %s weights to %s (float32, bfloat16 "
                            "or float16 expected)", nt_dtype_name(src->dtype), name);
    if (src->shape[1] % r->group != 0)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "cannot quantize rows of %lld elements to %s: not a multiple of the group size %lld",
                            (long long)src->shape[1], name, (long long)r->group);
    return nt_tensor_check_storage(err, src, "to quantize");
}

static nt_status non_finite(nt_error *err, nt_dtype dtype, int64_t row) {
    return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "cannot quantize to %s: row %lld holds a weight that is "
                        "not finite", nt_dtype_name(dtype), (long long)row);
}

nt_status nt_quantize_naive(void *data, float *scales, nt_error *err, nt_dtype dtype, const nt_tensor *src) {
    nt_status status = check_source(err, dtype, src);
    if (status != NT_OK) return status;
    const rule *r = rule_of(dtype);
    int64_t N = src->shape[0], K = src->shape[1];
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k += r->group) {
            float w[NT_Q8_GROUP]; /* the largest group */
            int64_t g = (n * K + k) / r->group;
            nt_tensor_span_to_f32(w, src, n, k, r->group);
            if (!r->quantize_group((char *)data + g * r->group_bytes, scales + g, w)) return non_finite(err, dtype, n);
        }
    return NT_OK;
}

typedef struct {
    char *data;      /* (N, K) in the dtype's layout */
    float *scales;   /* (N, K / group) */
    const rule *rule;
    const nt_tensor *src;
    atomic_llong bad_row; /* a row found with a weight that is not finite, or -1 */
} quantize_job;

/* Rows [begin, end), a span of SPAN columns widened to float32 at a time. */
static void quantize_rows(void *ctx, int64_t begin, int64_t end) {
    enum { SPAN = 4096 };
    _Static_assert(SPAN % NT_Q8_GROUP == 0 && SPAN % NT_Q4_GROUP == 0, "a span must be whole groups");
    quantize_job *job = ctx;
    const rule *r = job->rule;
    int64_t K = job->src->shape[1];
    float span[SPAN];
    for (int64_t n = begin; n < end; n++)
        for (int64_t k0 = 0; k0 < K; k0 += SPAN) {
            int64_t len = K - k0 < SPAN ? K - k0 : SPAN;
            nt_tensor_span_to_f32(span, job->src, n, k0, len);
            for (int64_t k = 0; k < len; k += r->group) {
                int64_t g = (n * K + k0 + k) / r->group;
                if (!r->quantize_group(job->data + g * r->group_bytes, job->scales + g, span + k)) {
                    atomic_store(&job->bad_row, n);
                    return;
                }
            }
        }
}

nt_status nt_quantize(void *data, float *scales, nt_error *err, nt_dtype dtype, const nt_tensor *src,
                      nt_threadpool *pool) {
    nt_status status = check_source(err, dtype, src);
    if (status != NT_OK) return status;
    quantize_job job = {.data = data, .scales = scales, .rule = rule_of(dtype), .src = src};
    atomic_init(&job.bad_row, -1);
    if (pool != NULL)
        nt_threadpool_parallel_for(pool, quantize_rows, &job, src->shape[0], 16);
    else
        quantize_rows(&job, 0, src->shape[0]);
    int64_t bad_row = atomic_load(&job.bad_row);
    return bad_row >= 0 ? non_finite(err, dtype, bad_row) : NT_OK;
}
