/*
 * Speed of each matmul kernel at Minitron-4B's widths, in GFLOP/s and in GB/s of weights read:
 *   make -C csrc bench                       every kernel set
 *   make -C csrc bench BENCH_ARGS="avx512"   the sets named
 *   make -C csrc bench BENCH_ARGS="avx512 float32 512"   the sets, dtypes and numbers of rows named
 * One thread, then two threads splitting the columns: for the decode shapes (up to 16 rows) their speed-up and the
 * GB/s of weights they reach together (a decode step's bound), for the prefill shapes their speed-up with each thread
 * packing the rows of x for itself, and with two threads packing x together first (matmul_packed), as
 * model/forward.c does.
 * Prefill shapes are judged by GFLOP/s against the FMA peak (benchmarks/fma_peak.c), decode shapes by
 * GB/s (of weights and their scales) against the memory bandwidth. The last shape, 128 rows of 3072 (1.5 MB in
 * float32), fits a core's L2 (2 MiB on a Sapphire Rapids; a Zen 5 EPYC's 1 MiB leaves it to L3) and is run at
 * decode sizes only (up to 16 rows): its speed is what the kernel's arithmetic allows when memory is no limit, so a
 * decode kernel whose speed on the big shapes is well below it is bound by memory.
 * Then the blocked attention of one key/value head and its 3 query heads (Minitron-4B's groups, head_dim 128),
 * one thread: a 4096-token prompt (GFLOP/s of its two products, causal half), and one new token after 4096
 * cached ones (GB/s of keys and values read).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "kernels/kernels.h"

enum { COLUMN_BLOCK = 48 }; /* as MATMUL_COLUMN_BLOCK in model/forward.c */
/* Decode shapes read a different copy of w at each call, as a decode step reads every layer's weights once: the same
 * 56-113 MB again and again would be partly served by a large L3 (32 MiB on an EPYC) and overstate the speed. */
enum { COPIES = 4 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    nt_matmul_fn fn;
    const nt_kernels *packing; /* or NULL: the set's rows packed once by pack_rows, then matmul_packed */
    float *y, *packed;
    const float *x;
    const nt_tensor *w;
    const nt_tensor *copies; /* or NULL: w, at every call; else call c reads copies[c % COPIES] */
    int64_t M, N;
} job;

static void columns(void *ctx, int64_t begin, int64_t end) {
    const job *j = ctx;
    int64_t n_end = end * COLUMN_BLOCK < j->N ? end * COLUMN_BLOCK : j->N;
    if (j->packing != NULL)
        j->packing->matmul_packed[j->w->dtype](j->y, j->packed, j->w, j->M, begin * COLUMN_BLOCK, n_end);
    else
        j->fn(j->y, j->x, j->w, j->M, begin * COLUMN_BLOCK, n_end);
}

static void pack_blocks(void *ctx, int64_t begin, int64_t end) {
    const job *j = ctx;
    j->packing->packing[j->w->dtype]->pack_rows(j->packed, j->x, j->M, j->w->shape[1], begin, end);
}

/* The weights as the Python side holds them: NumPy asks the kernel for huge pages (madvise) for arrays of 4 MiB
 * and more, and a decode kernel's speed depends on it (TLB misses every 4 KiB otherwise). */
static void *huge_alloc(size_t bytes) {
    size_t huge = (size_t)1 << 21;
    void *p = aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
    if (p != NULL) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best wall time of a few runs (fewer when one run is long) of `calls` calls each, per call, and the best CPU time
 * of the process (every thread's) per call in *cpu: on a machine others share, CPU time is the steadier figure. */
static double best_time(nt_threadpool *pool, const job *given, int calls, double *cpu) {
    job copy = *given, *j = &copy;
    double best = 1e9, spent = 0.0;
    *cpu = 1e9;
    for (int r = 0; r < 5 && (r < 2 || spent < 1.0); r++) {
        double start = now(), start_cpu = cpu_now();
        for (int c = 0; c < calls; c++) {
            if (j->copies != NULL) j->w = &j->copies[c % COPIES];
            if (j->packing != NULL) /* as model/forward.c: the threads pack x together, then split the columns */
                nt_threadpool_parallel_for(pool, pack_blocks, (void *)j,
                                           (j->M + j->packing->packing[j->w->dtype]->row_block - 1) /
                                               j->packing->packing[j->w->dtype]->row_block,
                                           4);
            nt_threadpool_parallel_for(pool, columns, (void *)j, (j->N + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1);
        }
        double elapsed = (now() - start) / calls, used = (cpu_now() - start_cpu) / calls;
        spent += elapsed;
        if (elapsed < best) best = elapsed;
        if (used < *cpu) *cpu = used;
    }
    return best;
}

/* Whether name is among the arguments, or no argument is of its kind (kind_of tells which are). */
static int wanted(const char *name, int (*kind_of)(const char *), int argc, char **argv) {
    int any = 0;
    for (int i = 1; i < argc; i++)
        if (kind_of(argv[i])) {
            any = 1;
            if (strcmp(argv[i], name) == 0) return 1;
        }
    return !any;
}

static int is_set(const char *arg) {
    for (int t = 0; t < nt_kernel_set_count; t++)
        if (strcmp(arg, nt_kernel_sets[t]->name) == 0) return 1;
    return 0;
}

static int is_dtype(const char *arg) {
    for (int d = 0; d < NT_DTYPE_COUNT; d++)
        if (strcmp(arg, nt_dtype_name((nt_dtype)d)) == 0) return 1;
    return 0;
}

static int is_rows(const char *arg) { return arg[0] >= '0' && arg[0] <= '9'; }

static void bench_attention(const nt_kernels *set) {
    enum { G = 3, D = 128, LONG = 4096 };
    float *q = malloc(sizeof(float) * LONG * G * D), *out = malloc(sizeof(float) * LONG * G * D);
    float *keys = malloc(sizeof(float) * LONG * D), *values = malloc(sizeof(float) * LONG * D);
    float *work = malloc(sizeof(float) * nt_attention_work_floats(G, D));
    if (!q || !out || !keys || !values || !work) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < LONG * G * D; i++) q[i] = (float)(i % 11) * 0.01f;
    for (int64_t i = 0; i < LONG * D; i++) keys[i] = values[i] = (float)(i % 13) * 0.01f;
    static const int64_t Ts[][2] = {{LONG, 0}, {1, LONG - 1}}; /* (T, P) */
    for (size_t c = 0; c < 2; c++) {
        nt_attention_args a = {.q = q, .out = out, .stride = G * D, .keys = keys, .values = values,
                               .T = Ts[c][0], .P = Ts[c][1], .G = G, .D = D, .scale = 0.088f};
        double best = 1e9, spent = 0.0;
        for (int r = 0; r < 5 && (r < 2 || spent < 1.0); r++) {
            double start = now();
            nt_attention_blocked(set, &a, 0, a.T, work);
            double elapsed = now() - start;
            spent += elapsed;
            if (elapsed < best) best = elapsed;
        }
        double pairs = a.T == 1 ? (double)LONG : (double)LONG * (LONG + 1) / 2; /* (query, key) products */
        printf("%-9s attention T=%lld P=%lld: %8.1f GFLOP/s %8.1f GB/s %9.3f ms\n", set->name, (long long)a.T,
               (long long)a.P, 4.0 * G * D * pairs / best / 1e9, 2.0 * sizeof(float) * (a.P + a.T) * D / best / 1e9,
               1e3 * best);
    }
    free(q), free(out), free(keys), free(values), free(work);
}

int main(int argc, char **argv) {
    /* (N, K): up_proj, down_proj, a matrix in L2 */
    static const int64_t shapes[][2] = {{9216, 3072}, {3072, 9216}, {128, 3072}};
    static const int64_t Ms[] = {1, 2, 4, 8, 16, 128, 512, 2048};
    const int64_t max_M = 2048, max_elements = 9216 * 3072;
    float *x = malloc(sizeof(float) * max_M * 9216), *y = malloc(sizeof(float) * max_M * 9216);
    float *w = huge_alloc(sizeof(float) * max_elements * COPIES);
    float *scales = malloc(sizeof(float) * (max_elements / NT_Q4_GROUP));
    nt_threadpool *one, *two;
    nt_error err;
    if (!x || !y || !w || !scales || nt_threadpool_create(&one, &err, 1) != NT_OK || nt_threadpool_create(&two, &err, 2) != NT_OK) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < max_M * 9216; i++) x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < max_elements * COPIES; i++) w[i] = (float)(i % 5) * 0.1f; /* also valid small halves */
    for (int64_t i = 0; i < max_elements / NT_Q4_GROUP; i++) scales[i] = 0.01f;
    float *packed = aligned_alloc(64, sizeof(float) * (2 * max_M * 9216 + 64)); /* x packed (amx: 1.5 floats a value) */
    printf("%-9s %-5s %5s %5s %5s %9s %8s %9s %12s %12s %12s %12s\n", "kernels", "dtype", "M", "N", "K", "GFLOP/s",
           "GB/s", "CPU GF/s", "2 threads x", "CPU GF/s", "packed 2t x", "CPU GF/s");
    for (int t = 0; t < nt_kernel_set_count; t++) {
        const nt_kernels *set = nt_kernel_sets[t];
        if (!set->supported() || !wanted(set->name, is_set, argc, argv)) continue;
        for (int d = 0; d < NT_DTYPE_COUNT; d++) {
            if (set->matmul[d] == NULL || !wanted(nt_dtype_name((nt_dtype)d), is_dtype, argc, argv)) continue;
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                int64_t N = shapes[s][0], K = shapes[s][1];
                nt_tensor wt = {.data = w, .dtype = (nt_dtype)d, .ndim = 2, .shape = {N, K}};
                wt.nbytes = (size_t)nt_dtype_bytes(wt.dtype, N * K);
                int64_t group = nt_dtype_get(wt.dtype)->block_size;
                if (nt_dtype_get(wt.dtype)->scaled) {
                    wt.scales = scales;
                    wt.group_size = group;
                    wt.scales_nbytes = sizeof(float) * (size_t)(N * K / group);
                }
                double bytes = (double)(wt.nbytes + wt.scales_nbytes);
                int in_l2 = N < 1024;
                for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                    int64_t M = Ms[i];
                    if (in_l2 && M > 16) break;
                    char rows[24];
                    snprintf(rows, sizeof rows, "%lld", (long long)M);
                    if (!wanted(rows, is_rows, argc, argv)) continue;
                    nt_tensor copies[COPIES];
                    for (int c = 0; c < COPIES; c++) {
                        copies[c] = wt;
                        copies[c].data = w + c * max_elements;
                    }
                    int decode = M <= 16 && !in_l2;
                    job j = {.fn = set->matmul[d], .y = y, .packed = packed, .x = x, .w = &wt, .M = M, .N = N,
                             .copies = decode ? copies : NULL};
                    int calls = in_l2 ? 200 : decode ? COPIES : 1;
                    double cpu, single = best_time(one, &j, calls, &cpu), flops = 2.0 * M * N * K;
                    printf("%-9s %-5s %5lld %5lld %5lld %9.1f %8.1f %9.1f", set->name, nt_dtype_name(wt.dtype),
                           (long long)M, (long long)N, (long long)K, flops / single / 1e9, bytes / single / 1e9,
                           flops / cpu / 1e9);
                    if (decode) {
                        double both = best_time(two, &j, calls, &cpu);
                        printf(" %12.2f %8.1f GB/s", single / both, bytes / both / 1e9);
                    }
                    if (M >= 128) {
                        double both = best_time(two, &j, 1, &cpu);
                        printf(" %12.2f %12.1f", single / both, flops / cpu / 1e9);
                        /* a w the set declines goes to the next set in forward.c: nothing to time here */
                        if (packed != NULL && set->matmul_packed[d] != NULL && M >= set->packing[d]->min_rows &&
                            (set->takes == NULL || set->takes(&wt, M))) {
                            j.packing = set;
                            both = best_time(two, &j, 1, &cpu);
                            printf(" %12.2f %12.1f", single / both, flops / cpu / 1e9);
                        }
                    }
                    printf(in_l2 ? "  (in L2)\n" : "\n");
                    fflush(stdout);
                }
            }
        }
    }
    for (int t = 0; t < nt_kernel_set_count; t++) {
        const nt_kernels *completed; /* with the attention kernels it borrows */
        if (nt_kernel_sets[t]->supported() && wanted(nt_kernel_sets[t]->name, is_set, argc, argv) &&
            nt_kernels_select(&completed, &err, nt_kernel_sets[t]->name) == NT_OK)
            bench_attention(completed);
    }
    nt_threadpool_free(one), nt_threadpool_free(two);
    free(x), free(y), free(w), free(scales), free(packed);
    return 0;
}
