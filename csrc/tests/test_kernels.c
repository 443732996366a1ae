/*
 * Every kernel set the CPU runs against the naive reference, on odd shapes and every weight dtype;
 * the tensor seam's row views and storage checks; the int8 quantizer against its reference and its rule;
 * the thread pool against a serial loop, before and after fork().
 * Prints the first mismatches and the largest difference; exits non-zero on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"

static int failures = 0;

static uint32_t rng_state = 12345;
static float random_float(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* in [1, 2) with all 23 bits of the mantissa random (random_float has 16) */
static float random_mantissa(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return 1.0f + (float)(rng_state >> 9) * 0x1p-23f;
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

/* scales: those of a quantized matrix, ignored for the other dtypes */
static nt_tensor matrix(const void *data, const float *scales, nt_dtype dtype, int64_t N, int64_t K) {
    nt_tensor t = {.data = data, .dtype = dtype, .ndim = 2, .shape = {N, K}};
    t.nbytes = (size_t)nt_dtype_bytes(dtype, N * K);
    int64_t group = nt_dtype_get(dtype)->block_size;
    if (nt_dtype_get(dtype)->scaled) {
        t.scales = scales;
        t.group_size = group;
        t.scales_nbytes = (size_t)(N * K / group) * sizeof(float);
    }
    return t;
}

/* A quantized matrix (N, K) and its scales from float weights, by the reference quantizer. */
static void quantize(void *q, float *scales, nt_dtype dtype, const float *w, int64_t N, int64_t K) {
    nt_tensor src = matrix(w, NULL, NT_DTYPE_F32, N, K);
    nt_error err;
    if (nt_quantize_naive(q, scales, &err, dtype, &src) != NT_OK) {
        fprintf(stderr, "FAIL quantize: %s\n", err.message);
        failures++;
    }
}

/* The float weights wf (N, K) in dtype: wf itself for float32, else converted into halves (bfloat16, float16) or
 * quantized into quantized and scales (int8, int4). */
static const void *weights_in(nt_dtype dtype, const float *wf, int64_t N, int64_t K, uint16_t *halves,
                              void *quantized, float *scales) {
    if (dtype == NT_DTYPE_BF16 || dtype == NT_DTYPE_F16) {
        for (int64_t i = 0; i < N * K; i++) halves[i] = dtype == NT_DTYPE_BF16 ? to_bf16(wf[i]) : to_f16(wf[i]);
        return halves;
    }
    if (dtype == NT_DTYPE_Q8 || dtype == NT_DTYPE_Q4) {
        quantize(quantized, scales, dtype, wf, N, K);
        return quantized;
    }
    return wf;
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
                float *wfb = malloc(sizeof(float) * N * K); /* float32 of bfloat16 values */
                uint16_t *wb = malloc(2 * N * K), *wh = malloc(2 * N * K);
                int8_t *wq = malloc(N * K);
                uint8_t *w4 = malloc(N * K / 2 + 1);
                float *scales = malloc(sizeof(float) * (N * K / NT_Q8_GROUP + 1));
                float *scales4 = malloc(sizeof(float) * (N * K / NT_Q4_GROUP + 1));
                float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
                for (int64_t i = 0; i < M * K; i++) x[i] = random_float();
                for (int64_t i = 0; i < N * K; i++) {
                    wf[i] = random_float();
                    wb[i] = to_bf16(wf[i]);
                    wh[i] = to_f16(wf[i]);
                    wfb[i] = nt_bf16_to_f32(wb[i]);
                }
                if (K % NT_Q8_GROUP == 0) quantize(wq, scales, NT_DTYPE_Q8, wf, N, K);
                if (K % NT_Q4_GROUP == 0) quantize(w4, scales4, NT_DTYPE_Q4, wf, N, K);
                const void *weights[NT_DTYPE_COUNT] = {wf, wb, wh, wq, w4};
                const float *scales_of[NT_DTYPE_COUNT] = {[NT_DTYPE_Q8] = scales, [NT_DTYPE_Q4] = scales4};
                /* every dtype, then float32 again with bfloat16 values (nt_tensor.bf16_values) */
                for (int e = 0; e <= NT_DTYPE_COUNT; e++) {
                    int d = e < NT_DTYPE_COUNT ? e : NT_DTYPE_F32;
                    if (kernels->matmul[d] == NULL || K % nt_dtype_get((nt_dtype)d)->block_size != 0) continue;
                    nt_tensor w = matrix(e < NT_DTYPE_COUNT ? weights[d] : wfb, scales_of[d], (nt_dtype)d, N, K);
                    w.bf16_values = e == NT_DTYPE_COUNT;
                    char what[128];
                    snprintf(what, sizeof what, "%s matmul %s%s M=%lld N=%lld K=%lld", kernels->name,
                             nt_dtype_name((nt_dtype)d), w.bf16_values ? " (bfloat16 values)" : "", (long long)M,
                             (long long)N, (long long)K);
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
                    const nt_row_packing *packing = kernels->packing[d];
                    if (packing == NULL || kernels->matmul_packed[d] == NULL || M < packing->min_rows ||
                        (kernels->takes != NULL && !kernels->takes(&w, M)))
                        continue; /* forward.c then goes to the next set (nt_kernels_for) */
                    /* x packed once, in two ranges of row blocks, as forward.c's threads pack it */
                    snprintf(what, sizeof what, "%s matmul_packed %s M=%lld N=%lld K=%lld", kernels->name,
                             nt_dtype_name((nt_dtype)d), (long long)M, (long long)N, (long long)K);
                    size_t bytes = sizeof(float) * (size_t)packing->packed_floats(M, K);
                    if (bytes == 0) continue; /* a shape the set does not pack: forward.c calls matmul */
                    float *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
                    int64_t blocks = (M + packing->row_block - 1) / packing->row_block;
                    packing->pack_rows(packed, x, M, K, blocks / 2, blocks);
                    packing->pack_rows(packed, x, M, K, 0, blocks / 2);
                    for (int64_t i = 0; i < M * N; i++) got[i] = NAN;
                    if (!kernels->matmul_packed[d](got, packed, &w, M, 0, N / 2) ||
                        !kernels->matmul_packed[d](got, packed, &w, M, N / 2, N))
                        fprintf(stderr, "FAIL %s: no memory for its panel\n", what), failures++;
                    check_close(what, got, want, M * N, 1e-5f * (float)K);
                    kernels->matmul_packed[d](got, packed, &block, M, 0, N - v0);
                    for (int64_t m = 0; m < M; m++)
                        check_close(what, got + m * (N - v0), want + m * N + v0, N - v0, 1e-5f * (float)K);
                    free(packed);
                }
                free(wfb), free(x), free(wf), free(wb), free(wh), free(wq), free(w4), free(scales), free(scales4);
                free(want), free(got);
            }
}

/* Shapes that reach every tail of the kernels: rows short of a block of 3, 4, 6 or 8, columns short of a
 * panel of 16 or 48, K short of a vector, of a k block (256, 512), odd; then many rows (several row
 * blocks of the AVX-512 packing) on fewer shapes, as the naive reference is slow there. */
static void test_matmul(const nt_kernels *kernels) {
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20};
    static const int64_t Ns[] = {1, 3, 4, 5, 17, 33, 50};
    /* int8 rows are whole groups of 64, int4 rows of 32: they run on the multiples (int4 also on 32, 96 and 544,
     * no multiples of 64), 4160 being more than a portable span */
    static const int64_t Ks[] = {1, 7, 8, 9, 16, 31, 32, 64, 96, 192, 513, 544, 1100, 1088, 4160};
    test_matmul_shapes(kernels, Ms, COUNT(Ms), Ns, COUNT(Ns), Ks, COUNT(Ks));
    static const int64_t many_Ms[] = {129, 270}, many_Ns[] = {50, 100}, many_Ks[] = {7, 1088, 1100};
    test_matmul_shapes(kernels, many_Ms, COUNT(many_Ms), many_Ns, COUNT(many_Ns), many_Ks, COUNT(many_Ks));
    /* more rows than a row block of the AVX-512 packing (512), the last one partial */
    static const int64_t most_Ms[] = {1031}, most_Ns[] = {50}, most_Ks[] = {1100, 1088};
    test_matmul_shapes(kernels, most_Ms, COUNT(most_Ms), most_Ns, COUNT(most_Ns), most_Ks, COUNT(most_Ks));
}

/* A row of y is the same bits whatever rows of x come with it (a sequence decodes alike alone and in a batch):
 * the float dtypes, whose decode kernel sums each output in one order whatever the rows per pass. int8 and int4
 * take other kernels at 1 to 3 rows (kernels/matmul_avx512.c), so they are only close across M. */
static void test_matmul_rows_alone_k(const nt_kernels *kernels, const int64_t K) {
    enum { M = 13, N = 50 }; /* passes of 7 and 6 rows; a block and a part; chunks and a tail */
    float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K);
    uint16_t *wb = malloc(2 * N * K), *wh = malloc(2 * N * K);
    float *together = malloc(sizeof(float) * M * N), *alone = malloc(sizeof(float) * M * N);
    for (int64_t i = 0; i < M * K; i++) x[i] = random_float();
    for (int64_t i = 0; i < N * K; i++) {
        wf[i] = random_float();
        wb[i] = to_bf16(wf[i]);
        wh[i] = to_f16(wf[i]);
    }
    const void *weights[] = {[NT_DTYPE_F32] = wf, [NT_DTYPE_BF16] = wb, [NT_DTYPE_F16] = wh};
    for (int d = 0; d <= NT_DTYPE_F16; d++) {
        if (kernels->matmul[d] == NULL) continue;
        nt_tensor w = matrix(weights[d], NULL, (nt_dtype)d, N, K);
        kernels->matmul[d](together, x, &w, M, 0, N);
        /* the amx set sends fewer than 5 rows of bfloat16 to the avx512 kernels: its rows go in 5 or 7 */
        int64_t fewest = strcmp(kernels->name, "amx") == 0 ? 5 : 1;
        for (int64_t m = 0; m + fewest <= M; m++) {
            int64_t rows = m + fewest + 2 <= M && m % 2 ? fewest + 2 : fewest; /* alone, or with the next two */
            kernels->matmul[d](alone, x + m * K, &w, rows, 0, N);
            char what[96];
            snprintf(what, sizeof what, "%s matmul %s row %lld of %lld rows alone", kernels->name,
                     nt_dtype_name((nt_dtype)d), (long long)m, (long long)rows);
            check_close(what, alone, together + m * N, rows * N, 0.0f);
        }
    }
    free(x), free(wf), free(wb), free(wh), free(together), free(alone);
}

/* A matmul reads nothing past w: w ends where an inaccessible page begins, so that a read past it faults (the tile
 * unit's loads, which AddressSanitizer does not watch, read whole rows of 16). Every dtype, column ranges as the
 * threads split them. */
static void test_matmul_reads_within_rows(const nt_kernels *kernels, const int M) {
    enum { MAX_M = 9, N = 21, K = 64 };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    float x[MAX_M * K], wf[N * K], scales[N * K / NT_Q4_GROUP], want[MAX_M * N], got[MAX_M * N];
    uint16_t halves[N * K];
    uint8_t quantized[N * K];
    float wb_wide[N * K];
    for (int i = 0; i < M * K; i++) x[i] = random_float();
    for (int i = 0; i < N * K; i++) wf[i] = random_float();
    for (int e = 0; e <= NT_DTYPE_COUNT; e++) { /* then float32 of bfloat16 values */
        int d = e < NT_DTYPE_COUNT ? e : NT_DTYPE_F32;
        if (kernels->matmul[d] == NULL) continue;
        const void *data = weights_in((nt_dtype)d, wf, N, K, halves, quantized, scales);
        if (e == NT_DTYPE_COUNT) {
            for (int i = 0; i < N * K; i++) wb_wide[i] = nt_bf16_to_f32(to_bf16(wf[i]));
            data = wb_wide;
        }
        size_t bytes = (size_t)nt_dtype_bytes((nt_dtype)d, N * K), span = (bytes + page - 1) / page * page;
        char *map = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED || mprotect(map + span, page, PROT_NONE) != 0) {
            fprintf(stderr, "FAIL mmap for the guard page\n");
            failures++;
            return;
        }
        memcpy(map + span - bytes, data, bytes);
        nt_tensor w = matrix(map + span - bytes, scales, (nt_dtype)d, N, K);
        w.bf16_values = e == NT_DTYPE_COUNT;
        nt_matmul_naive(want, x, &w, M);
        kernels->matmul[d](got, x, &w, M, 0, 8);
        kernels->matmul[d](got, x, &w, M, 8, N);
        char what[96];
        snprintf(what, sizeof what, "%s matmul %s before a guard page, %d rows", kernels->name,
                 nt_dtype_name((nt_dtype)d), M);
        check_close(what, got, want, M * N, 1e-5f * (float)K);
        munmap(map, span + page);
    }
}

/* at the rows of amx's integer tiles for int8 (5) and of its bfloat16 ones (9) */
static void test_matmul_reads_within(const nt_kernels *kernels) {
    test_matmul_reads_within_rows(kernels, 5);
    test_matmul_reads_within_rows(kernels, 9);
}

/* The largest |y - exact| over the sum of the magnitudes of the products (the relative error for positive operands),
 * y (M, N) = x (M, K) @ w (N, K)^T, the exact sums in double. */
static double worst_error(const float *y, const float *x, const float *w, int M, int N, int K) {
    double worst = 0.0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double exact = 0.0, magnitude = 0.0;
            for (int k = 0; k < K; k++) {
                exact += (double)x[m * K + k] * (double)w[n * K + k];
                magnitude += fabs((double)x[m * K + k] * (double)w[n * K + k]);
            }
            double error = fabs((double)y[m * N + n] - exact) / magnitude;
            if (!(error <= worst)) worst = error;
        }
    return worst;
}

/* int8 weights against the exact sums of the dequantized weights (each q * scale in float32, as the naive reference
 * has them) times x, x's values with full mantissas and random signs and, in each row, one value 1000 times the
 * others: the amx set splits each row of x in integer planes against its largest value (kernels/matmul_amx.c), the
 * other sets widen the weights. Every set is within 4e-7 of the sums of magnitudes here (1e-6 asked); three planes
 * instead of four are 4e-5 off. Then a row's bits: the same in every batch of 3 to 8 rows on amx. 17 groups, 37
 * rows: a batch of groups and a tile of rows short. */
static void test_matmul_int8_exact(const nt_kernels *kernels) {
    enum { MAX_M = 9, N = 37, K = 17 * NT_Q8_GROUP };
    static float x[MAX_M * K], wf[N * K], wd[N * K], scales[N * K / NT_Q8_GROUP], y[MAX_M * N], alone[MAX_M * N];
    static int8_t wq[N * K];
    for (int i = 0; i < MAX_M * K; i++) x[i] = (random_float() < 0 ? -1.0f : 1.0f) * random_mantissa();
    for (int m = 0; m < MAX_M; m++) x[m * K + (m * 389 + 7) % K] *= 1000.0f;
    for (int i = 0; i < N * K; i++) wf[i] = random_float();
    quantize(wq, scales, NT_DTYPE_Q8, wf, N, K);
    for (int i = 0; i < N * K; i++) wd[i] = (float)wq[i] * scales[i / NT_Q8_GROUP];
    nt_tensor w = matrix(wq, scales, NT_DTYPE_Q8, N, K);
    for (int M = 1; M <= MAX_M; M++) {
        kernels->matmul[NT_DTYPE_Q8](y, x, &w, M, 0, 16);
        kernels->matmul[NT_DTYPE_Q8](y, x, &w, M, 16, N);
        double worst = worst_error(y, x, wd, M, N, K);
        if (!(worst <= 1e-6)) {
            fprintf(stderr, "FAIL %s matmul int8, %d rows: %.2g off the exact sums, relative\n", kernels->name, M,
                    worst);
            failures++;
        }
    }
    if (strcmp(kernels->name, "amx") != 0) return;
    kernels->matmul[NT_DTYPE_Q8](y, x, &w, 8, 0, N);
    for (int rows = 3; rows <= 7; rows++)
        for (int m = 0; m + rows <= 8; m++) {
            kernels->matmul[NT_DTYPE_Q8](alone, x + m * K, &w, rows, 0, N);
            char what[96];
            snprintf(what, sizeof what, "amx matmul int8 rows %d.. in a batch of %d, against 8", m, rows);
            check_close(what, alone, y + m * N, rows * N, 0.0f);
        }
}

/* A row of x holding an infinity or a NaN: its outputs are not finite where the naive reference's are not (an
 * infinity may come out as a NaN: the amx set's parts of x are inf - inf), the other rows' are unharmed; every
 * dtype, at the row counts of each kernel. */
static void test_matmul_not_finite(const nt_kernels *kernels) {
    enum { N = 20, K = 128 };
    float x[8 * K], wf[N * K], scales[N * K / NT_Q4_GROUP], want[8 * N], got[8 * N];
    uint16_t halves[N * K];
    uint8_t quantized[N * K];
    for (int i = 0; i < N * K; i++) wf[i] = random_float();
    for (int d = 0; d < NT_DTYPE_COUNT; d++) {
        if (kernels->matmul[d] == NULL) continue;
        nt_tensor w = matrix(weights_in((nt_dtype)d, wf, N, K, halves, quantized, scales), scales, (nt_dtype)d, N, K);
        for (int M = 1; M <= 8; M++) {
            for (int i = 0; i < M * K; i++) x[i] = random_float();
            x[(M - 1) * K + 5] = M % 2 ? INFINITY : NAN;
            nt_matmul_naive(want, x, &w, M);
            kernels->matmul[d](got, x, &w, M, 0, N);
            char what[96];
            snprintf(what, sizeof what, "%s matmul %s, %d rows, the last not finite", kernels->name,
                     nt_dtype_name((nt_dtype)d), M);
            /* packed: served, or declined (forward.c then calls matmul, above) */
            const nt_row_packing *packing = kernels->packing[d];
            if (packing != NULL && kernels->matmul_packed[d] != NULL && M >= packing->min_rows &&
                (kernels->takes == NULL || kernels->takes(&w, M)) && packing->packed_floats(M, K) > 0) {
                float *packed = aligned_alloc(64, ((size_t)packing->packed_floats(M, K) * 4 + 63) / 64 * 64);
                float served[8 * N];
                packing->pack_rows(packed, x, M, K, 0, (M + packing->row_block - 1) / packing->row_block);
                if (kernels->matmul_packed[d](served, packed, &w, M, 0, N)) {
                    char packed_what[128];
                    snprintf(packed_what, sizeof packed_what, "%s, packed", what);
                    check_close(packed_what, served, want, (M - 1) * N, 1e-5f * (float)K);
                    for (int n = 0; n < N; n++)
                        if (isfinite(served[(M - 1) * N + n]) && !isfinite(want[(M - 1) * N + n])) {
                            fprintf(stderr, "FAIL %s: packed, column %d gives %g\n", what, n, served[(M - 1) * N + n]);
                            failures++;
                            break;
                        }
                }
                free(packed);
            }
            check_close(what, got, want, (M - 1) * N, 1e-5f * (float)K);
            for (int n = 0; n < N; n++)
                if (isfinite(got[(M - 1) * N + n]) && !isfinite(want[(M - 1) * N + n])) {
                    fprintf(stderr, "FAIL %s: column %d gives %g, the reference %g\n", what, n, got[(M - 1) * N + n],
                            want[(M - 1) * N + n]);
                    failures++;
                    break;
                }
        }
    }
}

/* Weights and x with full mantissas, positive, so that the bits a lesser split drops add up, against the exact sums:
 * every set is within 1e-6 of them (2e-7 here).
 * - bfloat16 weights, 16 rows: every set widens the weights, the amx one splits x in three bfloat16 parts
 *   (kernels/matmul_amx.c); two parts of x instead of three are 8e-6 off.
 * - float32 weights of any value, 40 rows (prefill's; the amx set's tiles from 17): the amx set splits both in three
 *   bfloat16 parts and sums the six products whose parts' orders add to at most 2, the other sets multiply in
 *   float32; three products (orders up to 1) are 2e-5 off, w in one part (bfloat16) 3e-3. */
static void test_matmul_exact_products(const nt_kernels *kernels, nt_dtype dtype, int M) {
    enum { MAX_M = 40, N = 20, K = 96 };
    static float x[MAX_M * K], wf[N * K], y[MAX_M * N];
    static uint16_t wb[N * K];
    for (int i = 0; i < M * K; i++) x[i] = random_mantissa();
    for (int i = 0; i < N * K; i++) {
        wf[i] = random_mantissa();
        if (dtype == NT_DTYPE_BF16) wf[i] = nt_bf16_to_f32(wb[i] = to_bf16(wf[i]));
    }
    nt_tensor w = matrix(dtype == NT_DTYPE_BF16 ? (const void *)wb : wf, NULL, dtype, N, K);
    kernels->matmul[dtype](y, x, &w, M, 0, N);
    double worst = worst_error(y, x, wf, M, N, K);
    if (!(worst <= 1e-6)) {
        fprintf(stderr, "FAIL %s matmul %s: %.2g off the exact sums, relative\n", kernels->name, nt_dtype_name(dtype),
                worst);
        failures++;
    }
}

static void test_matmul_rows_alone(const nt_kernels *kernels) {
    test_matmul_rows_alone_k(kernels, 1100);
    test_matmul_rows_alone_k(kernels, 1088); /* whole steps of 32 for the amx set */
}

/* The set a model gets: every entry filled; its own where it has one; a dtype's matmul_packed and packing those
 * of the set whose matmul it has (the layout of the packed rows is that set's). */
static void test_completed(const nt_kernels *set, const nt_kernels *completed) {
    const char *bad = NULL;
    if (completed->matmul_nn == NULL || completed->exp_shifted == NULL) bad = "an attention kernel missing";
    if (set->matmul_nn != NULL && completed->matmul_nn != set->matmul_nn) bad = "matmul_nn not its own";
    if (completed->takes != NULL && completed->next == NULL) bad = "a set that declines some w with no next set";
    for (int d = 0; d < NT_DTYPE_COUNT; d++) {
        if (set->matmul[d] != NULL &&
            (completed->matmul_packed[d] != set->matmul_packed[d] || completed->packing[d] != set->packing[d]))
            bad = "a matmul_packed or packing beside a matmul it was not made for";
        if ((completed->matmul_packed[d] == NULL) != (completed->packing[d] == NULL))
            bad = "a matmul_packed without its packing, or the reverse";
    }
    if (bad != NULL) {
        fprintf(stderr, "FAIL the %s kernels as completed: %s\n", set->name, bad);
        failures++;
    }
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
        if (nt_dtype_get((nt_dtype)d)->scaled) continue; /* test_q8_seam */
        nt_tensor w = matrix(weights[d], NULL, (nt_dtype)d, 3, 5);
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
    nt_tensor unknown = matrix(wf, NULL, NT_DTYPE_F32, 3, 5);
    unknown.dtype = NT_DTYPE_COUNT;
    nt_error err;
    if (nt_tensor_check_storage(&err, &unknown, "w") == NT_OK || nt_dtype_get(NT_DTYPE_COUNT) != NULL ||
        nt_dtype_bytes(NT_DTYPE_BF16, 3) != 6) {
        fprintf(stderr, "FAIL dtype table bounds\n");
        failures++;
    }
}

static void expect_refused(const char *what, const nt_tensor *t) {
    nt_error err;
    if (nt_tensor_check_storage(&err, t, "w") != NT_ERROR_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL int8 storage: %s accepted\n", what);
        failures++;
    }
}

/* int8 rows through the seam (each element its int8 times its group's scale), and what the storage checks
 * refuse of an int8 tensor. */
static void test_q8_seam(void) {
    enum { N = 3, K = 3 * NT_Q8_GROUP };
    int8_t q[N * K];
    float scales[N * K / NT_Q8_GROUP], want[K], got[K];
    for (int i = 0; i < N * K; i++) q[i] = (int8_t)(i % 255 - 127);
    for (int i = 0; i < N * K / NT_Q8_GROUP; i++) scales[i] = 0.5f + (float)i;
    nt_tensor w = matrix(q, scales, NT_DTYPE_Q8, N, K);
    for (int k = 0; k < K; k++) want[k] = (float)q[2 * K + k] * scales[2 * (K / NT_Q8_GROUP) + k / NT_Q8_GROUP];
    nt_tensor_row_to_f32(got, &w, 2);
    check_close("int8 row_to_f32", got, want, K, 0.0f);
    nt_tensor_span_to_f32(got, &w, 2, NT_Q8_GROUP, NT_Q8_GROUP);
    check_close("int8 span_to_f32", got, want + NT_Q8_GROUP, NT_Q8_GROUP, 0.0f);
    nt_tensor rows = nt_tensor_rows(&w, 1, 2); /* rows 1 and 2 carry their own scales */
    nt_tensor_row_to_f32(got, &rows, 1);
    check_close("int8 rows view", got, want, K, 0.0f);

    nt_error err;
    if (nt_tensor_check_storage(&err, &w, "w") != NT_OK || nt_tensor_check_storage(&err, &rows, "w") != NT_OK) {
        fprintf(stderr, "FAIL int8 storage: a valid tensor refused: %s\n", err.message);
        failures++;
    }
    nt_tensor t = w;
    t.scales = NULL;
    expect_refused("missing scales", &t);
    t = w;
    t.scales_nbytes -= sizeof(float);
    expect_refused("short scales", &t);
    t.scales_nbytes += 2 * sizeof(float);
    expect_refused("long scales", &t);
    t = w;
    t.scales_nbytes -= 1;
    expect_refused("scales of a partial float", &t);
    t = w;
    t.group_size = 32;
    expect_refused("another group size", &t);
    t = w;
    t.scales = (const float *)((const char *)scales + 1);
    expect_refused("misaligned scales", &t);
    t = matrix(q, scales, NT_DTYPE_Q8, 1, K - 8);
    t.nbytes = K - 8;
    expect_refused("rows that are not whole groups", &t);
    /* sizes whose products overflow: shape (2^40, 2^30 x 64) */
    t = w;
    t.shape[0] = (int64_t)1 << 40;
    t.shape[1] = (int64_t)NT_Q8_GROUP << 30;
    expect_refused("a shape whose size overflows", &t);
    t.shape[0] = -1;
    expect_refused("a negative shape", &t);
}

/* int4 rows through the seam: byte j of a group holds element j (low nibble) and j + 16 (high), each as q + 8 */
static void test_q4_seam(void) {
    enum { N = 3, K = 2 * NT_Q4_GROUP };
    uint8_t q[N * K / 2];
    float scales[N * K / NT_Q4_GROUP], want[K], got[K];
    for (int i = 0; i < N * K / 2; i++) q[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < N * K / NT_Q4_GROUP; i++) scales[i] = 0.25f - (float)i;
    nt_tensor w = matrix(q, scales, NT_DTYPE_Q4, N, K);
    for (int g = 0; g < K / NT_Q4_GROUP; g++)
        for (int j = 0; j < NT_Q4_GROUP / 2; j++) {
            uint8_t byte = q[2 * K / 2 + g * NT_Q4_GROUP / 2 + j];
            float scale = scales[2 * (K / NT_Q4_GROUP) + g];
            want[g * NT_Q4_GROUP + j] = (float)((int)(byte & 15) - 8) * scale;
            want[g * NT_Q4_GROUP + NT_Q4_GROUP / 2 + j] = (float)((int)(byte >> 4) - 8) * scale;
        }
    nt_tensor_row_to_f32(got, &w, 2);
    check_close("int4 row_to_f32", got, want, K, 0.0f);
    nt_tensor_span_to_f32(got, &w, 2, NT_Q4_GROUP, NT_Q4_GROUP);
    check_close("int4 span_to_f32", got, want + NT_Q4_GROUP, NT_Q4_GROUP, 0.0f);
    nt_tensor rows = nt_tensor_rows(&w, 2, 1);
    nt_tensor_row_to_f32(got, &rows, 0);
    check_close("int4 rows view", got, want, K, 0.0f);
    nt_error err;
    if (nt_tensor_check_storage(&err, &w, "w") != NT_OK || nt_dtype_bytes(NT_DTYPE_Q4, 3 * NT_Q4_GROUP) != 48 ||
        nt_dtype_bytes(NT_DTYPE_Q4, 48) != -1) {
        fprintf(stderr, "FAIL int4 storage: a valid tensor refused, or its bytes miscounted\n");
        failures++;
    }
    nt_tensor t = w;
    t.group_size = NT_Q8_GROUP;
    expect_refused("int4 with int8's group size", &t);
    t = w;
    t.nbytes = N * K;
    expect_refused("int4 with a byte per element", &t);
    t = matrix(q, scales, NT_DTYPE_Q4, 1, NT_Q4_GROUP + 16);
    t.nbytes = (NT_Q4_GROUP + 16) / 2;
    expect_refused("int4 rows that are not whole groups", &t);
}

/* The threaded quantizer against the reference bit for bit, to each quantized dtype from every float dtype. */
static void test_quantize_matches_naive(nt_threadpool *pool) {
    enum { N = 37, K = 5 * NT_Q8_GROUP };
    static float wf[N * K], scales[N * K / NT_Q4_GROUP], want_scales[N * K / NT_Q4_GROUP];
    static uint16_t wb[N * K], wh[N * K];
    static int8_t q[N * K], want_q[N * K];
    for (int i = 0; i < N * K; i++) {
        wf[i] = i >= K && i < K + NT_Q8_GROUP ? 0.0f : random_float() * (float)(1 + i % 7); /* a group of zeros */
        wb[i] = to_bf16(wf[i] / 8.0f);
        wh[i] = to_f16(wf[i] / 8.0f);
    }
    const void *sources[] = {wf, wb, wh};
    static const nt_dtype targets[] = {NT_DTYPE_Q8, NT_DTYPE_Q4};
    nt_error err;
    for (size_t t = 0; t < COUNT(targets); t++)
        for (int d = 0; d < 3; d++) {
            nt_tensor src = matrix(sources[d], NULL, (nt_dtype)d, N, K);
            memset(q, 0x55, sizeof q);
            memset(scales, 0x55, sizeof scales);
            memset(want_q, 0x55, sizeof want_q);
            memset(want_scales, 0x55, sizeof want_scales);
            nt_status a = nt_quantize_naive(want_q, want_scales, &err, targets[t], &src);
            nt_status b = nt_quantize(q, scales, &err, targets[t], &src, pool);
            if (a != NT_OK || b != NT_OK || memcmp(q, want_q, sizeof q) != 0 ||
                memcmp(scales, want_scales, sizeof scales) != 0) {
                fprintf(stderr, "FAIL quantize %s to %s: threaded and naive differ\n", nt_dtype_name((nt_dtype)d),
                        nt_dtype_name(targets[t]));
                failures++;
            }
        }
    /* the int4 data of the last run: row 1's first group is zeros: scale +0, every nibble 8 */
    if (scales[K / NT_Q4_GROUP] != 0.0f || signbit(scales[K / NT_Q4_GROUP]) || (uint8_t)q[K / 2] != 0x88 ||
        (uint8_t)q[K / 2 + NT_Q4_GROUP / 2 - 1] != 0x88) {
        fprintf(stderr, "FAIL quantize: an int4 group of zeros\n");
        failures++;
    }
}

/* The int8 rule on chosen values, and what nt_quantize refuses. */
static void test_quantize_q8(nt_threadpool *pool) {
    enum { N = 37, K = 5 * NT_Q8_GROUP };
    static float wf[N * K], scales[N * K / NT_Q8_GROUP];
    static int8_t q[N * K];
    for (int i = 0; i < N * K; i++) wf[i] = random_float();
    nt_error err;
    /* max |w| = 127 gives scale 1: ties go to even, the extremes to +-127 */
    float g[NT_Q8_GROUP] = {127.0f, -127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.49f, 126.6f};
    static const int8_t g_want[] = {127, -127, 2, 4, -2, 0, 0, 1, 127};
    int8_t gq[NT_Q8_GROUP];
    float gscale;
    nt_tensor one = matrix(g, NULL, NT_DTYPE_F32, 1, NT_Q8_GROUP);
    if (nt_quantize(gq, &gscale, &err, NT_DTYPE_Q8, &one, NULL) != NT_OK || gscale != 1.0f ||
        memcmp(gq, g_want, sizeof g_want) != 0) {
        fprintf(stderr, "FAIL quantize: the rounding rule\n");
        failures++;
    }
    /* a subnormal group: the scale loses precision, the values stay clamped in range */
    for (int k = 0; k < NT_Q8_GROUP; k++) g[k] = ldexpf((float)(k % 2 ? 190 : -190), -149);
    if (nt_quantize(gq, &gscale, &err, NT_DTYPE_Q8, &one, NULL) != NT_OK || gq[0] != -127 || gq[1] != 127) {
        fprintf(stderr, "FAIL quantize: a subnormal group (scale %g, q %d %d)\n", gscale, gq[0], gq[1]);
        failures++;
    }
    /* what it refuses */
    g[3] = NAN;
    nt_status refused[5];
    refused[0] = nt_quantize(gq, &gscale, &err, NT_DTYPE_Q8, &one, NULL);
    wf[5 * K + 7] = INFINITY;
    nt_tensor src = matrix(wf, NULL, NT_DTYPE_F32, N, K);
    refused[1] = nt_quantize(q, scales, &err, NT_DTYPE_Q8, &src, pool);
    int row_named = strstr(err.message, "row 5 ") != NULL;
    src = matrix(wf, NULL, NT_DTYPE_F32, 1, NT_Q8_GROUP + 8);
    refused[2] = nt_quantize(q, scales, &err, NT_DTYPE_Q8, &src, pool);
    src = matrix(q, scales, NT_DTYPE_Q8, 1, NT_Q8_GROUP);
    refused[3] = nt_quantize(q, scales, &err, NT_DTYPE_Q8, &src, pool);
    src = matrix(wf, NULL, NT_DTYPE_F32, 1, NT_Q8_GROUP);
    refused[4] = nt_quantize(q, scales, &err, NT_DTYPE_BF16, &src, pool);
    for (int i = 0; i < 5; i++)
        if (refused[i] != NT_ERROR_INVALID_ARGUMENT || !row_named) {
            fprintf(stderr, "FAIL quantize: refusal %d (%s)\n", i, err.message);
            failures++;
        }
}

/* The int4 rule on chosen values: the weight of largest magnitude m maps to -8 (scale m / -8), ties to even,
 * -m clamps to 7, a subnormal group stays in range; a width of 48 is refused. */
static void test_quantize_q4(void) {
    enum { HALF = NT_Q4_GROUP / 2 };
    float g[NT_Q4_GROUP] = {0};
    static const float values[] = {-16.0f, 16.0f, 5.0f, 7.0f, -5.0f, -1.0f, 1.0f, 2.98f, 14.0f, 3.0f, -3.0f};
    static const int want[] = {-8, 7, 2, 4, -2, 0, 0, 1, 7, 2, -2}; /* m = -16 first: scale 2 */
    memcpy(g + 2, values, sizeof values); /* elements 2.. in the low nibbles */
    g[HALF + 1] = 9.0f;                   /* 4.5: ties to 4 */
    uint8_t gq[HALF];
    float gscale;
    nt_error err;
    nt_tensor one = matrix(g, NULL, NT_DTYPE_F32, 1, NT_Q4_GROUP);
    int ok = nt_quantize(gq, &gscale, &err, NT_DTYPE_Q4, &one, NULL) == NT_OK && gscale == 2.0f &&
             (gq[0] & 15) == 8 && (gq[HALF - 1] >> 4) == 8 && (gq[1] >> 4) == 8 + 4;
    for (size_t i = 0; i < COUNT(want); i++) ok &= (gq[2 + i] & 15) == want[i] + 8;
    if (!ok) {
        fprintf(stderr, "FAIL quantize int4: the rounding rule (scale %g)\n", gscale);
        failures++;
    }
    g[2] = 16.0f, g[3] = -16.0f; /* now m = +16 is first: scale -2, +16 -> -8 and -16 -> 7 */
    if (nt_quantize(gq, &gscale, &err, NT_DTYPE_Q4, &one, NULL) != NT_OK || gscale != -2.0f || (gq[2] & 15) != 0 ||
        (gq[3] & 15) != 15) {
        fprintf(stderr, "FAIL quantize int4: the sign of the scale (scale %g)\n", gscale);
        failures++;
    }
    for (int k = 0; k < NT_Q4_GROUP; k++) g[k] = ldexpf((float)(k % 2 ? 30 : -29), -149);
    /* m = 30 x 2^-149, scale -3.75 x 2^-149 rounds to -4 x 2^-149: 30 -> -7.5 -> -8, -29 -> 7.25 -> 7 */
    if (nt_quantize(gq, &gscale, &err, NT_DTYPE_Q4, &one, NULL) != NT_OK || gq[0] != 0xff || gq[1] != 0x00) {
        fprintf(stderr, "FAIL quantize int4: a subnormal group (scale %g, q %d)\n", gscale, gq[0] & 15);
        failures++;
    }
    nt_tensor odd = matrix(g, NULL, NT_DTYPE_F32, 1, 48);
    if (nt_quantize(gq, &gscale, &err, NT_DTYPE_Q4, &odd, NULL) != NT_ERROR_INVALID_ARGUMENT ||
        strstr(err.message, "group size 32") == NULL) {
        fprintf(stderr, "FAIL quantize int4: a width of 48 accepted (%s)\n", err.message);
        failures++;
    }
}

static void test_matmul_nn_exp_shifted(const nt_kernels *kernels) {
    /* every row count of a block and its tail, column counts around the vector widths, strided operands, x
     * read as it lies and transposed */
    static const int64_t Ms[] = {1, 3, 4, 6, 7, 13}, Ks[] = {1, 5, 64}, Ns[] = {1, 7, 8, 16, 17, 24, 33, 64, 65, 130};
    enum { PAD = 3, MAX = 64 * (130 + PAD) + 13 * (64 + PAD) };
    static float x[MAX], w[MAX], y[MAX], want[MAX];
    char what[112];
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
                for (int variant = 0; variant < 4; variant++) {
                    int accumulate = variant & 1, transposed = variant >> 1;
                    int64_t M = Ms[mi], K = Ks[ki], N = Ns[ni], ldw = N + PAD, ldy = N + PAD;
                    int64_t ldx = transposed ? 1 : K + PAD, kx = transposed ? M + PAD : 1;
                    for (int64_t i = 0; i < MAX; i++) {
                        x[i] = random_float();
                        w[i] = random_float();
                        y[i] = want[i] = random_float();
                    }
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            double sum = accumulate ? want[m * ldy + n] : 0.0;
                            for (int64_t k = 0; k < K; k++) sum += (double)x[m * ldx + k * kx] * w[k * ldw + n];
                            want[m * ldy + n] = (float)sum;
                        }
                    kernels->matmul_nn(y, x, w, M, K, N, ldx, kx, ldw, ldy, accumulate);
                    snprintf(what, sizeof what, "%s matmul_nn M=%lld K=%lld N=%lld accumulate=%d transposed=%d",
                             kernels->name, (long long)M, (long long)K, (long long)N, accumulate, transposed);
                    /* the padding between rows must be left alone: compare the whole of y */
                    check_close(what, y, want, M * ldy, 1e-4f);
                }
    for (int64_t n = 0; n < 70; n++) {
        float v[70], shift[70], want_v[70];
        for (int64_t i = 0; i < n; i++) {
            shift[i] = 4.0f * random_float();
            v[i] = i % 5 == 3 ? -INFINITY : shift[i] + 45.0f * random_float() - 45.0f;
            want_v[i] = expf(v[i] - shift[i]);
        }
        kernels->exp_shifted(v, shift, n);
        /* within 3 ulp of expf, exactly 0 for -inf, 0 allowed where expf is subnormal */
        for (int64_t i = 0; i < n; i++)
            if (!(fabsf(v[i] - want_v[i]) <= 3.6e-7f * want_v[i]) && !(v[i] == 0.0f && want_v[i] < 1.2e-38f)) {
                fprintf(stderr, "FAIL %s exp_shifted n=%lld: [%lld] got %g want %g\n", kernels->name, (long long)n,
                        (long long)i, v[i], want_v[i]);
                failures++;
            }
    }
}

/* The blocked attention against the naive one: head groups, head dims off the vector widths, prompts that end
 * mid-block, a past in the cache, left and right padding, a hole in the mask, rows with every key masked. */
static void test_attention(const nt_kernels *kernels) {
    static const struct { int64_t G, D, T, P, mask; } cases[] = {
        {1, 8, 1, 0, 0},    {3, 128, 1, 200, 0}, {2, 16, 37, 0, 1}, {3, 24, 70, 0, 2},  {5, 13, 33, 9, 3},
        {1, 128, 130, 0, 1}, {4, 40, 97, 64, 2}, {7, 20, 12, 130, 3}, {3, 128, 200, 0, 0}, {2, 33, 1, 70, 1},
        {97, 8, 3, 5, 1},
    };
    char what[96];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t G = cases[c].G, D = cases[c].D, T = cases[c].T, P = cases[c].P, S = P + T, NH = G + 1;
        /* q and out hold NH heads per token, the group at head 1: the stride is not G * D */
        float *q = malloc(sizeof(float) * T * NH * D), *keys = malloc(sizeof(float) * S * D);
        float *values = malloc(sizeof(float) * S * D), *got = calloc((size_t)(T * NH * D), sizeof(float));
        float *want = calloc((size_t)(T * NH * D), sizeof(float)), *weights = malloc(sizeof(float) * G * T * S);
        float *work = malloc(sizeof(float) * nt_attention_work_floats(G, D));
        uint8_t *mask = malloc((size_t)S);
        for (int64_t i = 0; i < T * NH * D; i++) q[i] = 2.0f * random_float();
        for (int64_t i = 0; i < S * D; i++) {
            keys[i] = 2.0f * random_float();
            values[i] = random_float();
        }
        for (int64_t j = 0; j < S; j++) {
            switch (cases[c].mask) {
            case 1: mask[j] = j >= S / 3; break;                       /* left padding: early rows see no key */
            case 2: mask[j] = j < S - 5; break;                        /* right padding */
            case 3: mask[j] = !(j >= 2 && j < 2 + S / 2) && j != 0; break; /* holes */
            default: mask[j] = 1;
            }
        }
        uint16_t *keys_bf16 = malloc(sizeof(uint16_t) * S * D), *values_bf16 = malloc(sizeof(uint16_t) * S * D);
        for (int64_t i = 0; i < S * D; i++) {
            keys_bf16[i] = nt_f32_to_bf16(keys[i]);
            values_bf16[i] = nt_f32_to_bf16(values[i]);
        }
        /* rows with no key zero (SDPA), then averaging every value (eager); float32 keys and values, then
         * bfloat16 ones (a bfloat16 cache) */
        for (int average = 0; average < 2; average++)
        for (int wide = 0; wide < 2; wide++) {
            nt_attention_args a = {.q = q + D, .out = want + D, .stride = NH * D, .keys = keys, .values = values,
                                   .kv_dtype = NT_DTYPE_F32, .mask = cases[c].mask ? mask : NULL, .T = T, .P = P,
                                   .G = G, .D = D, .scale = 1.0f / sqrtf((float)D), .masked_rows_average = average};
            if (wide) {
                a.keys = keys_bf16, a.values = values_bf16, a.kv_dtype = NT_DTYPE_BF16;
            }
            if (nt_attention_naive(&a, weights, 0, T) != NT_OK) failures++;
            a.out = got + D;
            /* in two calls that split the tokens mid-block, as the threads of the forward pass do */
            int64_t split = T / 2;
            nt_attention_blocked(kernels, &a, 0, split, work);
            nt_attention_blocked(kernels, &a, split, T, work);
            snprintf(what, sizeof what, "%s attention G=%lld D=%lld T=%lld P=%lld mask %d %s%s", kernels->name,
                     (long long)G, (long long)D, (long long)T, (long long)P, (int)cases[c].mask,
                     wide ? "bfloat16" : "float32", average ? " average" : "");
            check_close(what, got, want, T * NH * D, 2e-6f);
            /* a token that sees no key: zeros, or the mean of every value */
            for (int64_t t = 0; t < T && cases[c].mask; t++) {
                int sees = 0;
                for (int64_t j = 0; j <= P + t; j++) sees |= mask[j];
                if (sees) continue;
                for (int64_t d = 0; d < D; d++) {
                    float mean = 0.0f;
                    for (int64_t j = 0; j < S; j++)
                        mean += (wide ? nt_bf16_to_f32(values_bf16[j * D + d]) : values[j * D + d]) / (float)S;
                    float expected = average ? mean : 0.0f;
                    snprintf(what, sizeof what, "%s attention of a token that sees no key", kernels->name);
                    check_close(what, &want[(t * NH + 1) * D + d], &expected, 1, 1e-5f);
                }
            }
        }
        /* each row of weights sums to 1 */
        for (int64_t r = 0; r < G * T; r++) {
            float sum = 0.0f, one = 1.0f;
            for (int64_t j = 0; j < S; j++) sum += weights[r * S + j];
            check_close("attention weights sum", &sum, &one, 1, 1e-5f);
        }
        free(q), free(keys), free(values), free(got), free(want), free(weights), free(work), free(mask);
        free(keys_bf16), free(values_bf16);
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
    test_q8_seam();
    test_q4_seam();
    /* every kernel set this CPU runs, against the naive reference: its own matmuls, and the rest as the model
     * gets the set (completed by the next sets) */
    for (int i = 0; i < nt_kernel_set_count; i++) {
        const nt_kernels *set = nt_kernel_sets[i], *completed;
        if (!set->supported()) {
            printf("skipping the %s kernels: this CPU lacks them\n", set->name);
            continue;
        }
        if (nt_kernels_select(&completed, &err, set->name) != NT_OK) {
            fprintf(stderr, "FAIL the %s kernels cannot be selected: %s\n", set->name, err.message);
            failures++;
            continue;
        }
        test_completed(set, completed);
        test_matmul(set);
        test_matmul_rows_alone(set);
        test_matmul_exact_products(completed, NT_DTYPE_BF16, 16);
        test_matmul_exact_products(completed, NT_DTYPE_F32, 40);
        test_matmul_int8_exact(completed);
        test_matmul_not_finite(completed);
        test_matmul_reads_within(set);
        test_matmul_nn_exp_shifted(completed);
        test_attention(completed);
    }
    /* a set as selected has, for a dtype it lacks, the matmul of the next supported set that has one */
    for (int i = 0; i < nt_kernel_set_count; i++) {
        const nt_kernels *completed;
        if (nt_kernels_select(&completed, &err, nt_kernel_sets[i]->name) != NT_OK) continue; /* this CPU lacks it */
        for (int d = 0; d < NT_DTYPE_COUNT; d++) {
            int j = i;
            while (nt_kernel_sets[j]->matmul[d] == NULL || (j > i && !nt_kernel_sets[j]->supported())) j++;
            if (completed->matmul[d] != nt_kernel_sets[j]->matmul[d]) {
                fprintf(stderr, "FAIL the %s kernels' %s matmul is not the %s one\n", nt_kernel_sets[i]->name,
                        nt_dtype_name((nt_dtype)d), nt_kernel_sets[j]->name);
                failures++;
            }
        }
    }
    const nt_kernels *kernels;
    if (nt_kernels_select(&kernels, &err, "sse9") != NT_ERROR_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL unknown kernel name accepted\n");
        failures++;
    }
    if (nt_kernels_select(&kernels, &err, "auto") != NT_OK || !kernels->supported() ||
        nt_kernels_select(&kernels, &err, "portable") != NT_OK || strcmp(kernels->name, "portable") != 0) {
        fprintf(stderr, "FAIL auto or portable kernels not chosen\n");
        failures++;
    }
    test_threadpool();
    nt_threadpool *pool;
    if (nt_threadpool_create(&pool, &err, 3) == NT_OK) {
        test_quantize_matches_naive(pool);
        test_quantize_q8(pool);
        test_quantize_q4();
        nt_threadpool_free(pool);
    }
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
