/*
 * Streaming-read bandwidth of one thread and of THREADS threads at once: the ceiling of a decode step, which
 * reads every weight once (benchmarks/run.py compares its GB/s with these). Built by benchmarks/run.py at run
 * time with the system compiler, or alone:
 *   cc -O3 -march=native -pthread benchmarks/read_bandwidth.c -o read_bandwidth
 *   ./read_bandwidth [MIB [THREADS [REPEATS]]]
 * Reads a buffer of MIB mebibytes (default 1024: far beyond any last-level cache) summing it as 64-bit
 * integers, which the compiler vectorizes without reassociating floats. With THREADS > 1 each thread reads
 * its own slice, first touched by that thread (its NUMA node's memory); the figure is all bytes over the
 * time of the slowest. Each figure is the best of REPEATS passes (default 3).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_THREADS = 1024 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct slice {
    pthread_t thread;
    pthread_barrier_t *start;
    uint64_t *data;
    size_t count;
    uint64_t sum;
    double seconds;
};

static uint64_t read_all(const uint64_t *restrict data, size_t count) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) sum += data[i];
    return sum;
}

static void *read_slice(void *arg) {
    struct slice *s = arg;
    pthread_barrier_wait(s->start);
    double t0 = now();
    s->sum += read_all(s->data, s->count);
    s->seconds = now() - t0;
    return NULL;
}

static void *touch_slice(void *arg) {
    struct slice *s = arg;
    for (size_t i = 0; i < s->count; i++) s->data[i] = i;
    return NULL;
}

/* Runs fn on every slice, one thread each (the calling thread takes slice 0); 0 on success. */
static int run_slices(struct slice *slices, int threads, void *(*fn)(void *)) {
    int started = 1, status = 0;
    for (int t = 1; t < threads; t++, started++)
        if (pthread_create(&slices[t].thread, NULL, fn, &slices[t]) != 0) {
            status = -1;
            break;
        }
    if (status == 0) fn(&slices[0]);
    for (int t = 1; t < started; t++) pthread_join(slices[t].thread, NULL);
    return status;
}

/* Best GB/s over `repeats` passes of `threads` threads reading `bytes` bytes; 0 on failure. */
static double bandwidth(size_t bytes, int threads, int repeats, uint64_t *sink) {
    size_t count = bytes / sizeof(uint64_t), per = count / (size_t)threads;
    uint64_t *data = NULL;
    if (posix_memalign((void **)&data, 4096, count * sizeof(uint64_t)) != 0) return 0.0;
    struct slice *slices = calloc((size_t)threads, sizeof *slices);
    pthread_barrier_t start;
    if (!slices || pthread_barrier_init(&start, NULL, (unsigned)threads) != 0) {
        free(slices);
        free(data);
        return 0.0;
    }
    for (int t = 0; t < threads; t++) {
        slices[t].start = &start;
        slices[t].data = data + (size_t)t * per;
        slices[t].count = per;
    }
    double best = 0.0;
    if (run_slices(slices, threads, touch_slice) == 0)
        for (int r = 0; r < repeats; r++) {
            if (run_slices(slices, threads, read_slice) != 0) break;
            double slowest = 0.0;
            for (int t = 0; t < threads; t++) {
                if (slices[t].seconds > slowest) slowest = slices[t].seconds;
                *sink += slices[t].sum;
            }
            double gbs = (double)per * (double)threads * sizeof(uint64_t) / slowest / 1e9;
            if (gbs > best) best = gbs;
        }
    pthread_barrier_destroy(&start);
    free(slices);
    free(data);
    return best;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    if (mib < 1 || mib > (1L << 20) || threads < 1 || threads > MAX_THREADS || repeats < 1) {
        fprintf(stderr, "usage: %s [MIB (1..%ld) [THREADS (1..%d) [REPEATS]]]\n", argv[0], 1L << 20, MAX_THREADS);
        return 2;
    }
    size_t bytes = (size_t)mib << 20;
    uint64_t sink = 0;
    printf("read bandwidth, %ld MiB\n", mib);
    printf("  1 thread  %7.1f GB/s\n", bandwidth(bytes, 1, repeats, &sink));
    if (threads > 1) printf("  %d threads %7.1f GB/s\n", threads, bandwidth(bytes, threads, repeats, &sink));
    return sink == 12345; /* almost never: keeps the sums alive */
}
