/*
 * Every kernel set the CPU runs against the naive reference, on odd shapes and every weight dtype;
 * the tensor seam's row views and storage checks;
 * the thread pool against a serial loop, before and after fork().
 * Prints the first mismatches and the largest difference; exits non-zero on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"

static int failures = 0;

static uint32_t rng_state = 12345;
static float random_float(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static uint16_t to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    return (uint16_t)((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}

static uint16_t to_f16(float f) {
    /* values here are in [-1, 1]: normal or zero halves, no overflow */
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000, exponent = (v.u >> 23) & 0xff, mantissa = v.u & 0x7fffff;
    if (exponent < 113) return (uint16_t)sign; /* flush tiny values to zero */
    uint32_t half = sign | ((exponent - 112) << 10) | (mantissa >> 13);
    if ((mantissa >> 12) & 1) half++; /* round half up: good enough for test data */
    return (uint16_t)half;
}

static void check_close(const char *what, const float *got, const float *want, int64_t n, float tolerance) {
    float worst = 0.0f;
    int64_t worst_at = -1, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float diff = fabsf(got[i] - want[i]);
        if (!(diff <= tolerance)) {
            if (bad < 3) fprintf(stderr, "  %s: [%lld] got %g want %g\n", what, (long long)i, got[i], want[i]);
            bad++;
        }
        if (diff > worst || diff != diff) {
            worst = diff;
            worst_at = i;
        }
    }
    if (bad) {
        fprintf(stderr, "FAIL %s: %lld mismatches, largest %g at %lld\n", what, (long long)bad, worst, (long long)worst_at);
        failures++;
    }
}

static nt_tensor matrix(const void *data, nt_dtype dtype, int64_t N, int64_t K) {
    nt_tensor t = {.data = data, .dtype = dtype, .ndim = 2, .shape = {N, K}};
    t.nbytes = (size_t)nt_dtype_bytes(dtype, N * K);
    return t;
}

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* Every M of Ms with every N of Ns and every K of Ks. */
static void test_matmul_shapes(const nt_kernels *kernels, const int64_t *Ms, size_t n_Ms, const int64_t *Ns,
                               size_t n_Ns, const int64_t *Ks, size_t n_Ks) {
    for (size_t a = 0; a < n_Ms; a++)
        for (size_t b = 0; b < n_Ns; b++)
            for (size_t c = 0; c < n_Ks; c++) {
                int64_t M = Ms[a], N = Ns[b], K = Ks[c];
                float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K);
                uint16_t *wb = malloc(2 * N * K), *wh = malloc(2 * N * K);
                float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
                for (int64_t i = 0; i < M * K; i++) x[i] = random_float();
                for (int64_t i = 0; i < N * K; i++) {
                    wf[i] = random_float();
                    wb[i] = to_bf16(wf[i]);
                    wh[i] = to_f16(wf[i]);
                }
                const void *weights[NT_DTYPE_COUNT] = {wf, wb, wh};
                for (int d = 0; d < NT_DTYPE_COUNT; d++) {
                    if (kernels->matmul[d] == NULL) continue;
                    nt_tensor w = matrix(weights[d], (nt_dtype)d, N, K);
                    char what[128];
                    snprintf(what, sizeof what, "%s matmul %s M=%lld N=%lld K=%lld", kernels->name,
                             nt_dtype_name((nt_dtype)d), (long long)M, (long long)N, (long long)K);
                    nt_matmul_naive(want, x, &w, M);
                    /* in two column ranges, as the thread pool splits it */
                    for (int64_t i = 0; i < M * N; i++) got[i] = NAN;
                    kernels->matmul[d](got, x, &w, M, 0, N / 2);
                    kernels->matmul[d](got, x, &w, M, N / 2, N);
                    check_close(what, got, want, M * N, 1e-5f * (float)K);
                    /* rows [N/3, N) as a tensor of their own, as scoring slices the lm_head */
                    int64_t v0 = N / 3;
                    nt_tensor block = nt_tensor_rows(&w, v0, N - v0);
                    kernels->matmul[d](got, x, &block, M, 0, N - v0);
                    for (int64_t m = 0; m < M; m++)
                        check_close(what, got + m * (N - v0), want + m * N + v0, N - v0, 1e-5f * (float)K);
                }
                free(x), free(wf), free(wb), free(wh), free(want), free(got);
            }
}

/* Shapes that reach every tail of the kernels: rows short of a block of 3, 4, 6 or 8, columns short of a
 * panel of 16 or 48, K short of a vector, of a k block (256, 512), odd; then many rows (several row
 * blocks of the AVX-512 packing) on fewer shapes, as the naive reference is slow there. */
static void test_matmul(const nt_kernels *kernels) {
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 20};
    static const int64_t Ns[] = {1, 3, 4, 5, 17, 33, 50};
    static const int64_t Ks[] = {1, 7, 8, 9, 16, 31, 64, 513, 1100};
    test_matmul_shapes(kernels, Ms, COUNT(Ms), Ns, COUNT(Ns), Ks, COUNT(Ks));
    static const int64_t many_Ms[] = {129, 270}, many_Ns[] = {50, 100}, many_Ks[] = {7, 1100};
    test_matmul_shapes(kernels, many_Ms, COUNT(many_Ms), many_Ns, COUNT(many_Ns), many_Ks, COUNT(many_Ks));
}

/* Rows in float32 through the seam, and the storage checks a model makes of every tensor. */
static void test_tensor_seam(void) {
    float wf[3 * 5];
    uint16_t wb[3 * 5], wh[3 * 5];
    for (int i = 0; i < 15; i++) {
        wf[i] = random_float();
        wb[i] = to_bf16(wf[i]);
        wh[i] = to_f16(wf[i]);
    }
    const void *weights[NT_DTYPE_COUNT] = {wf, wb, wh};
    for (int d = 0; d < NT_DTYPE_COUNT; d++) {
        nt_tensor w = matrix(weights[d], (nt_dtype)d, 3, 5);
        float row[5], span[2];
        nt_tensor_row_to_f32(row, &w, 2);
        check_close("row_to_f32", row, wf + 10, 5, 2e-3f);
        nt_tensor_span_to_f32(span, &w, 1, 3, 2);
        check_close("span_to_f32", span, wf + 8, 2, 2e-3f);
        nt_error err;
        const char *bad = NULL;
        if (nt_tensor_check_storage(&err, &w, "w") != NT_OK) bad = "a valid tensor refused";
        nt_tensor t = w;
        t.nbytes -= 1;
        if (nt_tensor_check_storage(&err, &t, "w") == NT_OK) bad = "a short buffer accepted";
        t = w;
        t.data = (const char *)w.data + 1;
        if (nt_tensor_check_storage(&err, &t, "w") == NT_OK) bad = "a misaligned buffer accepted";
        t = w;
        t.scales = wf;
        t.group_size = 5;
        if (nt_tensor_check_storage(&err, &t, "w") == NT_OK) bad = "scales accepted for a float dtype";
        if (bad) {
            fprintf(stderr, "FAIL tensor %s: %s\n", nt_dtype_name((nt_dtype)d), bad);
            failures++;
        }
    }
    nt_tensor unknown = matrix(wf, NT_DTYPE_F32, 3, 5);
    unknown.dtype = NT_DTYPE_COUNT;
    nt_error err;
    if (nt_tensor_check_storage(&err, &unknown, "w") == NT_OK || nt_dtype_get(NT_DTYPE_COUNT) != NULL ||
        nt_dtype_bytes(NT_DTYPE_BF16, 3) != 6) {
        fprintf(stderr, "FAIL dtype table bounds\n");
        failures++;
    }
}

static void test_dot_axpy(const nt_kernels *kernels) {
    for (int64_t n = 0; n < 70; n++) {
        float a[70] = {0}, b[70] = {0}, y[70] = {0}, want_y[70] = {0};
        double want = 0.0;
        for (int64_t i = 0; i < n; i++) {
            a[i] = random_float();
            b[i] = random_float();
            y[i] = want_y[i] = random_float();
            want += (double)a[i] * b[i];
            want_y[i] += 0.5f * a[i];
        }
        float got = kernels->dot(a, b, n), want_f = (float)want;
        check_close("dot", &got, &want_f, 1, 1e-5f);
        kernels->axpy(y, 0.5f, a, n);
        check_close("axpy", y, want_y, n, 1e-6f);
    }
}

static void test_half_conversion(void) {
    /* every half value, against a float computed from its fields */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
        float want;
        if (exponent == 0x1f) continue;
        if (exponent == 0)
            want = ldexpf((float)mantissa, -24);
        else
            want = ldexpf((float)(mantissa | 0x400), (int)exponent - 25);
        if (h & 0x8000) want = -want;
        float got = nt_f16_to_f32((uint16_t)h);
        if (got != want) {
            fprintf(stderr, "FAIL f16 0x%04x: got %g want %g\n", h, got, want);
            failures++;
            return;
        }
    }
    if (!isinf(nt_f16_to_f32(0x7c00)) || !isnan(nt_f16_to_f32(0x7e00))) {
        fprintf(stderr, "FAIL f16 inf/nan\n");
        failures++;
    }
}

typedef struct {
    int64_t *marks;
} marks_job;

static void mark_range(void *ctx, int64_t begin, int64_t end) {
    marks_job *job = ctx;
    for (int64_t i = begin; i < end; i++) job->marks[i] += i;
}

static int pool_covers_once(nt_threadpool *pool, int64_t n, int64_t grain) {
    int64_t *marks = calloc((size_t)n + 1, sizeof *marks);
    marks_job job = {marks};
    nt_threadpool_parallel_for(pool, mark_range, &job, n, grain);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= marks[i] == i;
    free(marks);
    return ok;
}

static void test_threadpool(void) {
    nt_threadpool *pool;
    nt_error err;
    if (nt_threadpool_create(&pool, &err, 3) != NT_OK) {
        fprintf(stderr, "FAIL threadpool create: %s\n", err.message);
        failures++;
        return;
    }
    for (int64_t n = 0; n < 200; n += 7)
        for (int64_t grain = 1; grain < 40; grain += 13)
            if (!pool_covers_once(pool, n, grain)) {
                fprintf(stderr, "FAIL threadpool n=%lld grain=%lld\n", (long long)n, (long long)grain);
                failures++;
            }
    pid_t child = fork();
    if (child == 0) _exit(pool_covers_once(pool, 1000, 1) && pool_covers_once(pool, 5000, 3) ? 0 : 1);
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAIL threadpool after fork\n");
        failures++;
    }
    if (!pool_covers_once(pool, 1000, 1)) {
        fprintf(stderr, "FAIL threadpool in parent after fork\n");
        failures++;
    }
    nt_threadpool_free(pool);
    nt_threadpool_free(NULL);
}

int main(void) {
    nt_error err;
    test_half_conversion();
    test_tensor_seam();
    /* every kernel set this CPU runs, against the naive reference */
    for (int i = 0; i < nt_kernel_set_count; i++) {
        const nt_kernels *set = nt_kernel_sets[i];
        if (!set->supported()) {
            printf("skipping the %s kernels: this CPU lacks them\n", set->name);
            continue;
        }
        test_matmul(set);
        test_dot_axpy(set);
    }
    const nt_kernels *kernels;
    if (nt_kernels_select(&kernels, &err, "sse9") != NT_ERROR_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL unknown kernel name accepted\n");
        failures++;
    }
    if (nt_kernels_select(&kernels, &err, "auto") != NT_OK || !kernels->supported() ||
        nt_kernels_select(&kernels, &err, "portable") != NT_OK || kernels != &nt_kernels_portable) {
        fprintf(stderr, "FAIL auto or portable kernels not chosen\n");
        failures++;
    }
    test_threadpool();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
