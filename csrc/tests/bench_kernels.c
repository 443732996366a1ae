/*
 * Speed of each weight dtype's matmul on the projections of Nemotron-4 Mini (hidden 3072, intermediate 9216),
 * in GFLOP/s and in GB/s of weights (and scales) read, on one and two threads:
 *   make -C csrc bench                  the set "auto" picks
 *   build/tests/bench_kernels portable  another set
 * Decode (M = 1) is judged by GB/s against the read bandwidth printed first (a streaming sum over 1 GiB),
 * prefill (M = 128) by GFLOP/s against the FMA peak. Each run reads its weights from a new place of a 1 GiB
 * arena, so that they come from memory rather than from a last-level cache left warm by the previous run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

enum { ARENA_BYTES = 1 << 30, MATMUL_COLUMN_BLOCK = 16, RUNS = 7 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* wall time: the runs use several threads */
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the read-bandwidth probe: each thread sums its share of the arena's floats */
typedef struct {
    const float *data;
    double sums[64]; /* one per range, so that the compiler cannot drop the reads */
    int64_t n, ranges;
} sum_job;

static void sum_range(void *ctx, int64_t begin, int64_t end) {
    sum_job *job = ctx;
    int64_t chunk = job->n / job->ranges;
    for (int64_t r = begin; r < end; r++) {
        const float *p = job->data + r * chunk;
        float acc[16] = {0};
        for (int64_t i = 0; i + 16 <= chunk; i += 16)
            for (int j = 0; j < 16; j++) acc[j] += p[i + j];
        double sum = 0.0;
        for (int j = 0; j < 16; j++) sum += acc[j];
        job->sums[r] = sum;
    }
}

static double read_bandwidth(nt_threadpool *pool, const void *arena) {
    sum_job job = {.data = arena, .n = ARENA_BYTES / sizeof(float), .ranges = 64};
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double start = now();
        nt_threadpool_parallel_for(pool, sum_range, &job, job.ranges, 1);
        double elapsed = now() - start;
        if (elapsed < best) best = elapsed;
    }
    return ARENA_BYTES / best / 1e9;
}

/* ---- a matmul split over threads by blocks of columns, as the forward pass does */
typedef struct {
    nt_matmul_fn fn;
    float *y;
    const float *x;
    const nt_tensor *w;
    int64_t M, N;
} matmul_job;

static void matmul_range(void *ctx, int64_t begin, int64_t end) {
    const matmul_job *job = ctx;
    int64_t n_end = end * MATMUL_COLUMN_BLOCK < job->N ? end * MATMUL_COLUMN_BLOCK : job->N;
    job->fn(job->y, job->x, job->w, job->M, begin * MATMUL_COLUMN_BLOCK, n_end);
}

int main(int argc, char **argv) {
    nt_error err;
    const nt_kernels *set;
    if (nt_kernels_select(&set, &err, argc > 1 ? argv[1] : "auto") != NT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    const int64_t shapes[][2] = {{9216, 3072}, {3072, 9216}}; /* (N, K): up_proj, down_proj */
    const int64_t Ms[] = {1, 128};
    char *arena = malloc(ARENA_BYTES);
    float *scales = malloc(ARENA_BYTES / NT_Q8_GROUP * sizeof(float));
    float *x = malloc(sizeof(float) * 128 * 9216), *y = malloc(sizeof(float) * 128 * 9216);
    if (arena == NULL || scales == NULL || x == NULL || y == NULL) return 1;
    /* small floats whose bytes are also finite halves, bfloat16s and any int8 */
    for (int64_t i = 0; i < ARENA_BYTES / 4; i++) ((float *)arena)[i] = (float)(i % 5) * 0.1f;
    for (int64_t i = 0; i < ARENA_BYTES / NT_Q8_GROUP; i++) scales[i] = 0.01f;
    for (int64_t i = 0; i < 128 * 9216; i++) x[i] = (float)(i % 7) * 0.1f;

    printf("kernels %s\n", set->name);
    for (int threads = 1; threads <= 2; threads++) {
        nt_threadpool *pool;
        if (nt_threadpool_create(&pool, &err, threads) != NT_OK) return 1;
        printf("read bandwidth, %d thread(s): %.1f GB/s\n", threads, read_bandwidth(pool, arena));
        nt_threadpool_free(pool);
    }
    printf("%-9s %7s %5s %5s %7s %10s %10s\n", "dtype", "threads", "N", "K", "M", "GFLOP/s", "GB/s");
    for (int threads = 1; threads <= 2; threads++) {
        nt_threadpool *pool;
        if (nt_threadpool_create(&pool, &err, threads) != NT_OK) return 1;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
                for (int d = 0; d < NT_DTYPE_COUNT; d++) {
                    int64_t N = shapes[s][0], K = shapes[s][1], M = Ms[i];
                    nt_tensor w = {.dtype = (nt_dtype)d, .ndim = 2, .shape = {N, K}};
                    w.nbytes = (size_t)nt_dtype_bytes(w.dtype, N * K);
                    int64_t places = ARENA_BYTES / (int64_t)w.nbytes;
                    size_t read = w.nbytes;
                    if (nt_dtype_get(w.dtype)->scaled) {
                        w.group_size = NT_Q8_GROUP;
                        w.scales_nbytes = (size_t)(N * K / NT_Q8_GROUP) * sizeof(float);
                        read += w.scales_nbytes;
                    }
                    matmul_job job = {nt_kernels_matmul(set, w.dtype), y, x, &w, M, N};
                    double best = 1e9;
                    for (int r = 0; r < RUNS; r++) {
                        int64_t place = r % places;
                        w.data = arena + place * (int64_t)w.nbytes;
                        if (w.group_size) w.scales = scales + place * (N * K / NT_Q8_GROUP);
                        double start = now();
                        nt_threadpool_parallel_for(pool, matmul_range, &job,
                                                   (N + MATMUL_COLUMN_BLOCK - 1) / MATMUL_COLUMN_BLOCK, 1);
                        double elapsed = now() - start;
                        if (elapsed < best) best = elapsed;
                    }
                    printf("%-9s %7d %5lld %5lld %7lld %10.1f %10.1f\n", nt_dtype_name(w.dtype), threads, (long long)N,
                           (long long)K, (long long)M, 2.0 * M * N * K / best / 1e9, (double)read / best / 1e9);
                }
        nt_threadpool_free(pool);
    }
    free(arena), free(scales), free(x), free(y);
    return 0;
}
