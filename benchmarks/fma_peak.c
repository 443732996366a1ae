/*
 * Float32 FMA peak of one core and of THREADS threads at once, for AVX2 (ymm) and AVX-512 (zmm): the ceiling
 * the matmul kernels are measured against (csrc/tests/bench_kernels.c, benchmarks/run.py). Built and run by
 * `make -C csrc bench` (one core), by benchmarks/run.py (at run time, with the system compiler), or alone:
 *   cc -O2 -pthread benchmarks/fma_peak.c -o fma_peak && ./fma_peak [THREADS [REPEATS]]
 * Twelve independent chains of fused multiply-adds hide the FMA latency on every current x86 core. Each figure
 * is the best of REPEATS runs (default 1); with THREADS > 1 every thread runs the same loop at the same time
 * and the figure is their total.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { CHAINS = 12, ITERATIONS = 20000000, MAX_THREADS = 1024 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Each function returns GFLOP/s; the sum it computes is stored so that the loop cannot be dropped. */
#define FMA_PEAK(NAME, TARGET, VEC, LANES, SET1, FMADD, ADD, FIRST)                                  \
    __attribute__((target(TARGET))) static double NAME(float *sink) {                               \
        VEC acc[CHAINS], a = SET1(0.999999f), b = SET1(1e-7f);                                     \
        for (int c = 0; c < CHAINS; c++) acc[c] = SET1((float)c);                                  \
        double start = now();                                                                       \
        for (long i = 0; i < ITERATIONS; i++) {                                                     \
            _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] = FMADD(acc[c], a, b); \
            __asm__ volatile("" : "+v"(a));                                                         \
        }                                                                                           \
        double elapsed = now() - start;                                                             \
        for (int c = 1; c < CHAINS; c++) acc[0] = ADD(acc[0], acc[c]);                              \
        *sink += FIRST(acc[0]);                                                                     \
        return 2.0 * LANES * CHAINS * (double)ITERATIONS / elapsed / 1e9;                           \
    }

FMA_PEAK(peak_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32)
FMA_PEAK(peak_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32)

typedef double (*peak_fn)(float *sink);

struct worker {
    pthread_t thread;
    peak_fn fn;
    double gflops;
    float sink;
};

static void *run_worker(void *arg) {
    struct worker *w = arg;
    w->gflops = w->fn(&w->sink);
    return NULL;
}

/* Total GFLOP/s of `threads` threads running fn at once (the calling thread is one of them); 0 if a thread
 * could not be started. */
static double peak_threads(peak_fn fn, int threads, float *sink) {
    struct worker workers[MAX_THREADS] = {{0}};
    int started = 1;
    for (int t = 1; t < threads; t++, started++) {
        workers[t].fn = fn;
        if (pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]) != 0) break;
    }
    workers[0].gflops = fn(&workers[0].sink);
    double total = workers[0].gflops;
    for (int t = 1; t < started; t++) {
        pthread_join(workers[t].thread, NULL);
        total += workers[t].gflops;
        *sink += workers[t].sink;
    }
    *sink += workers[0].sink;
    return started == threads ? total : 0.0;
}

static double best_of(peak_fn fn, int threads, int repeats, float *sink) {
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        double g = peak_threads(fn, threads, sink);
        if (g > best) best = g;
    }
    return best;
}

static void report(const char *title, int threads, int repeats, float *sink) {
    printf("%s\n", title);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("  avx2   %7.1f GFLOP/s\n", best_of(peak_avx2, threads, repeats, sink));
    if (__builtin_cpu_supports("avx512f"))
        printf("  avx512 %7.1f GFLOP/s\n", best_of(peak_avx512, threads, repeats, sink));
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int repeats = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > MAX_THREADS || repeats < 1) {
        fprintf(stderr, "usage: %s [THREADS (1..%d) [REPEATS]]\n", argv[0], MAX_THREADS);
        return 2;
    }
    float sink = 0.0f;
    __builtin_cpu_init();
    report("float32 FMA peak, one core", 1, repeats, &sink);
    if (threads > 1) {
        char title[64];
        snprintf(title, sizeof title, "float32 FMA peak, %d threads at once", threads);
        report(title, threads, repeats, &sink);
    }
    return sink == 12345.0f; /* never: keeps sink alive */
}
