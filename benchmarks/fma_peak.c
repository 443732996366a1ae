/*
 * Float32 FMA peak of one core, for AVX2 (ymm) and AVX-512 (zmm): the ceiling the matmul kernels are
 * measured against (csrc/tests/bench_kernels.c). Built and run by `make -C csrc bench`, or alone:
 *   cc -O2 benchmarks/fma_peak.c -o fma_peak && ./fma_peak
 * Twelve independent chains of fused multiply-adds hide the FMA latency on every current x86 core.
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { CHAINS = 12, ITERATIONS = 20000000 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Each function returns GFLOP/s; the sum it computes is printed so that the loop cannot be dropped. */
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

int main(void) {
    float sink = 0.0f;
    __builtin_cpu_init();
    printf("float32 FMA peak, one core\n");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("  avx2   %7.1f GFLOP/s\n", peak_avx2(&sink));
    if (__builtin_cpu_supports("avx512f")) printf("  avx512 %7.1f GFLOP/s\n", peak_avx512(&sink));
    return sink == 12345.0f; /* never: keeps sink alive */
}
