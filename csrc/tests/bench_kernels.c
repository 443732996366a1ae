/*
 * Speed of each matmul kernel at Minitron-4B's widths, in GFLOP/s and in GB/s of weights read:
 *   make -C csrc bench                       every kernel set
 *   make -C csrc bench BENCH_ARGS="avx512"   the sets named
 * One thread, then (for the prefill shapes) two threads splitting the columns as model/forward.c does.
 * Prefill shapes are judged by GFLOP/s against the FMA peak (benchmarks/fma_peak.c), decode shapes by
 * GB/s (of weights and their scales) against the memory bandwidth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

enum { COLUMN_BLOCK = 48 }; /* as MATMUL_COLUMN_BLOCK in model/forward.c */

/* One thread is timed by the process's CPU time, which on a shared machine leaves out the time it was not
 * running (memory stalls still count); several by the wall clock. */
static double now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    nt_matmul_fn fn;
    float *y;
    const float *x;
    const nt_tensor *w;
    int64_t M, N;
} job;

static void columns(void *ctx, int64_t begin, int64_t end) {
    const job *j = ctx;
    int64_t n_end = end * COLUMN_BLOCK < j->N ? end * COLUMN_BLOCK : j->N;
    j->fn(j->y, j->x, j->w, j->M, begin * COLUMN_BLOCK, n_end);
}

/* Best time of a few runs (fewer when one run is long); the "2 threads x" column divides one by the other. */
static double best_time(nt_threadpool *pool, const job *j) {
    clockid_t clock = nt_threadpool_size(pool) == 1 ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
    double best = 1e9, spent = 0.0;
    for (int r = 0; r < 7 && (r < 3 || spent < 1.0); r++) {
        double start = now(clock);
        nt_threadpool_parallel_for(pool, columns, (void *)j, (j->N + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1);
        double elapsed = now(clock) - start;
        spent += elapsed;
        if (elapsed < best) best = elapsed;
    }
    return best;
}

static int wanted(const char *name, int argc, char **argv) {
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    static const int64_t shapes[][2] = {{9216, 3072}, {3072, 9216}}; /* (N, K): up_proj, down_proj */
    static const int64_t Ms[] = {1, 2, 4, 8, 16, 128, 512};
    const int64_t max_M = 512, max_elements = 9216 * 3072;
    float *x = malloc(sizeof(float) * max_M * 9216), *y = malloc(sizeof(float) * max_M * 9216);
    float *w = malloc(sizeof(float) * max_elements), *scales = malloc(sizeof(float) * (max_elements / NT_Q8_GROUP));
    nt_threadpool *one, *two;
    nt_error err;
    if (!x || !y || !w || !scales || nt_threadpool_create(&one, &err, 1) != NT_OK || nt_threadpool_create(&two, &err, 2) != NT_OK) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < max_M * 9216; i++) x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < max_elements; i++) w[i] = (float)(i % 5) * 0.1f; /* also valid small halves */
    for (int64_t i = 0; i < max_elements / NT_Q8_GROUP; i++) scales[i] = 0.01f;
    printf("%-9s %-5s %5s %5s %5s %9s %8s %12s\n", "kernels", "dtype", "M", "N", "K", "GFLOP/s", "GB/s",
           "2 threads x");
    for (int t = 0; t < nt_kernel_set_count; t++) {
        const nt_kernels *set = nt_kernel_sets[t];
        if (!set->supported() || !wanted(set->name, argc, argv)) continue;
        for (int d = 0; d < NT_DTYPE_COUNT; d++) {
            if (set->matmul[d] == NULL) continue;
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                int64_t N = shapes[s][0], K = shapes[s][1];
                nt_tensor wt = {.data = w, .dtype = (nt_dtype)d, .ndim = 2, .shape = {N, K}};
                wt.nbytes = (size_t)nt_dtype_bytes(wt.dtype, N * K);
                if (nt_dtype_get(wt.dtype)->scaled) {
                    wt.scales = scales;
                    wt.group_size = NT_Q8_GROUP;
                    wt.scales_nbytes = sizeof(float) * (size_t)(N * K / NT_Q8_GROUP);
                }
                double bytes = (double)(wt.nbytes + wt.scales_nbytes);
                for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                    int64_t M = Ms[i];
                    job j = {set->matmul[d], y, x, &wt, M, N};
                    double single = best_time(one, &j);
                    printf("%-9s %-5s %5lld %5lld %5lld %9.1f %8.1f", set->name, nt_dtype_name(wt.dtype), (long long)M,
                           (long long)N, (long long)K, 2.0 * M * N * K / single / 1e9, bytes / single / 1e9);
                    if (M >= 128) printf(" %12.2f", single / best_time(two, &j));
                    printf("\n");
                    fflush(stdout);
                }
            }
        }
    }
    nt_threadpool_free(one), nt_threadpool_free(two);
    free(x), free(y), free(w), free(scales);
    return 0;
}
