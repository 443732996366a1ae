/*
 * A small fork-safe thread pool.
 *
 * GCC's OpenMP runtime hangs in a child process that forks after using it, which Python users do
 * (multiprocessing, Dask, gunicorn). This pool starts its threads on first use and remembers the
 * process that started them: a forked child, whose copy has no threads, starts its own.
 *
 * One parallel_for runs at a time per pool; workers take chunks from a shared atomic counter, and
 * the calling thread works too. Workers spin briefly before sleeping, because a decode step issues
 * hundreds of short parallel_for calls and a futex wake for each costs more than the work.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nemotron.h"

enum { SPIN_ITERATIONS = 20000 };

struct nt_threadpool {
    int num_threads;  /* including the caller's */
    pid_t owner_pid;  /* process whose workers are running; 0 before the first use */
    pthread_t *workers; /* (num_threads - 1) */
    int num_started;
    uint_fast64_t start_generation; /* the generation new workers start from */

    pthread_mutex_t call_lock; /* one parallel_for at a time */
    pthread_mutex_t lock;      /* guards sleeping and waking */
    pthread_cond_t wake;
    pthread_cond_t finished;

    atomic_uint_fast64_t generation; /* bumped once per job */
    atomic_int shutdown;
    atomic_int busy_workers;          /* workers still inside the current job */

    /* the current job */
    nt_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_int_fast64_t next;
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunks(nt_threadpool *pool) {
    for (;;) {
        int64_t begin = atomic_fetch_add(&pool->next, pool->chunk);
        if (begin >= pool->n) return;
        int64_t end = begin + pool->chunk < pool->n ? begin + pool->chunk : pool->n;
        pool->fn(pool->ctx, begin, end);
    }
}

static void *worker_main(void *arg) {
    nt_threadpool *pool = arg;
    uint_fast64_t seen = pool->start_generation;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
               !atomic_load(&pool->shutdown)) {
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->lock);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->shutdown))
                pthread_cond_wait(&pool->wake, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->shutdown)) return NULL;
        seen = atomic_load(&pool->generation);
        run_chunks(pool);
        if (atomic_fetch_sub(&pool->busy_workers, 1) == 1) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->finished);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

static int online_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
    long count = sysconf(_SC_NPROCESSORS_ONLN);
    return count > 0 ? (int)count : 1;
}

static void init_sync(nt_threadpool *pool) {
    pthread_mutex_init(&pool->call_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->finished, NULL);
}

nt_status nt_threadpool_create(nt_threadpool **out, nt_error *err, int num_threads) {
    *out = NULL;
    if (num_threads <= 0) num_threads = online_cpus();
    if (num_threads > 1024)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "num_threads=%d is more than 1024", num_threads);
    nt_threadpool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the thread pool");
    pool->workers = calloc((size_t)num_threads, sizeof *pool->workers);
    if (pool->workers == NULL) {
        free(pool);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the thread pool");
    }
    pool->num_threads = num_threads;
    init_sync(pool);
    *out = pool;
    return NT_OK;
}

int nt_threadpool_size(const nt_threadpool *pool) { return pool->num_threads; }

static void stop_workers(nt_threadpool *pool) {
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->shutdown, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->num_started; i++) pthread_join(pool->workers[i], NULL);
    pool->num_started = 0;
    atomic_store(&pool->shutdown, 0);
}

/* Starts the workers in this process. In a forked child the parent's workers do not exist and the
 * locks may have been copied while held, so both are made anew. If a thread cannot be started the
 * pool runs with the ones it has (at worst only the caller). */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void reset_start_lock_in_child(void) { pthread_mutex_init(&start_lock, NULL); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, reset_start_lock_in_child); }

static void ensure_workers(nt_threadpool *pool) {
    pid_t pid = getpid();
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&start_lock);
    if (pool->owner_pid != pid) {
        if (pool->owner_pid != 0) {
            init_sync(pool);
            pool->num_started = 0;
            atomic_store(&pool->shutdown, 0);
        }
        pool->start_generation = atomic_load(&pool->generation);
        for (int i = 0; i < pool->num_threads - 1; i++) {
            if (pthread_create(&pool->workers[i], NULL, worker_main, pool) != 0) break;
            pool->num_started++;
        }
        pool->owner_pid = pid;
    }
    pthread_mutex_unlock(&start_lock);
}

void nt_threadpool_free(nt_threadpool *pool) {
    if (pool == NULL) return;
    if (pool->owner_pid == getpid()) stop_workers(pool);
    free(pool->workers);
    free(pool);
}

void nt_threadpool_parallel_for(nt_threadpool *pool, nt_range_fn fn, void *ctx, int64_t n, int64_t grain) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (pool == NULL || pool->num_threads <= 1 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    if (pool->owner_pid != getpid()) ensure_workers(pool);
    pthread_mutex_lock(&pool->call_lock);
    if (pool->num_started == 0) {
        pthread_mutex_unlock(&pool->call_lock);
        fn(ctx, 0, n);
        return;
    }

    /* several chunks per thread balance uneven rows without making chunks tiny */
    int64_t per_thread = (n + (int64_t)pool->num_threads * 4 - 1) / ((int64_t)pool->num_threads * 4);
    pool->chunk = per_thread > grain ? per_thread : grain;
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n = n;
    atomic_store(&pool->next, 0);
    atomic_store(&pool->busy_workers, pool->num_started);

    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    run_chunks(pool);

    int spins = 0;
    while (atomic_load_explicit(&pool->busy_workers, memory_order_acquire) > 0) {
        if (++spins < SPIN_ITERATIONS) {
            cpu_relax();
            continue;
        }
        pthread_mutex_lock(&pool->lock);
        while (atomic_load(&pool->busy_workers) > 0) pthread_cond_wait(&pool->finished, &pool->lock);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->call_lock);
}
