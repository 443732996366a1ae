/*
 * Single-thread speed of each matmul kernel, in GFLOP/s and in GB/s of weights read:
 *   make -C csrc bench
 * Prefill shapes are judged by GFLOP/s against the FMA peak, decode shapes by GB/s against the
 * memory bandwidth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU time: steadier when the machine is shared */
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    const int64_t N = 4096, K = 1024;
    const int64_t Ms[] = {1, 4, 128};
    float *x = malloc(sizeof(float) * 128 * K), *y = malloc(sizeof(float) * 128 * N);
    void *w = malloc(sizeof(float) * N * K);
    for (int64_t i = 0; i < 128 * K; i++) x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < N * K; i++) ((float *)w)[i] = (float)(i % 5) * 0.1f; /* also valid small halves */
    printf("%-9s %-9s %5s %10s %10s\n", "kernels", "dtype", "M", "GFLOP/s", "GB/s");
    for (int t = 0; t < nt_kernel_set_count; t++) {
        const nt_kernels *set = nt_kernel_sets[t];
        if (!set->supported()) continue;
        for (int d = 0; d < NT_DTYPE_COUNT; d++) {
            if (set->matmul[d] == NULL) continue;
            nt_tensor wt = {.data = w, .dtype = (nt_dtype)d, .ndim = 2, .shape = {N, K}};
            wt.nbytes = (size_t)nt_dtype_bytes(wt.dtype, N * K);
            for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                int64_t M = Ms[i];
                double best = 1e9;
                for (int r = 0; r < 5; r++) {
                    double start = now();
                    set->matmul[d](y, x, &wt, M, 0, N);
                    double elapsed = now() - start;
                    if (elapsed < best) best = elapsed;
                }
                printf("%-9s %-9s %5lld %10.1f %10.1f\n", set->name, nt_dtype_name(wt.dtype), (long long)M,
                       2.0 * M * N * K / best / 1e9, (double)wt.nbytes / best / 1e9);
            }
        }
    }
    free(x), free(y), free(w);
    return 0;
}
