/*
 * A small fork-safe thread pool.
 *
 * GCC's OpenMP runtime hangs in a child process that forks after using it, which Python users do
 * (multiprocessing, Dask, gunicorn). This pool starts its threads on first use and remembers the
 * process that started them: a forked child, whose copy has no threads, starts its own.
 *
 * A job is split into chunks. Threads claim chunks with a compare-and-swap on one word holding the
 * job's number and the next chunk, so a thread that wakes late can never take a chunk of a job that
 * is over. The caller works too and returns once every chunk is done: it never waits for a thread
 * that has not started, which matters when the machine is busy and a worker is descheduled.
 * Workers spin briefly before sleeping, because a decode step issues hundreds of short jobs and a
 * futex wake for each costs more than the work.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "nemotron.h"

enum { SPIN_ITERATIONS = 4000, SPINS_BEFORE_YIELD = 256 };
#define CLOSED 0xffffffffu /* chunk index of a finished job: above any job's chunk count */

struct nt_threadpool {
    int num_threads;    /* including the caller's */
    pid_t owner_pid;    /* process whose workers are running; 0 before the first use */
    pthread_t *workers; /* (num_threads - 1) */
    int num_started;

    pthread_mutex_t call_lock; /* one job at a time */
    pthread_mutex_t lock;      /* guards sleeping and waking */
    pthread_cond_t wake;
    atomic_int sleepers;
    atomic_int shutdown;

    /* (job number << 32) | next chunk; job numbers only grow */
    _Atomic uint64_t claim;
    atomic_int_fast64_t chunks_done;

    /* the current job, written before its number is published */
    nt_range_fn fn;
    void *ctx;
    int64_t n, chunk, num_chunks;
};

static void cpu_relax(int spins) {
    if (spins % SPINS_BEFORE_YIELD == SPINS_BEFORE_YIELD - 1) {
        sched_yield(); /* let a descheduled thread of ours run on a busy machine */
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Runs chunks of job `job` until none is left. */
static void run_chunks(nt_threadpool *pool, uint64_t job) {
    uint64_t state = atomic_load_explicit(&pool->claim, memory_order_acquire);
    for (;;) {
        if (state >> 32 != job) return;
        int64_t index = (int64_t)(state & 0xffffffffu);
        if (index >= pool->num_chunks) return;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &state, state + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int64_t begin = index * pool->chunk;
        int64_t end = begin + pool->chunk < pool->n ? begin + pool->chunk : pool->n;
        pool->fn(pool->ctx, begin, end);
        atomic_fetch_add_explicit(&pool->chunks_done, 1, memory_order_release);
        state = atomic_load_explicit(&pool->claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    nt_threadpool *pool = arg;
    uint64_t seen = atomic_load(&pool->claim) >> 32;
    for (;;) {
        int spins = 0;
        uint64_t job;
        while ((job = atomic_load_explicit(&pool->claim, memory_order_acquire) >> 32) == seen) {
            if (atomic_load_explicit(&pool->shutdown, memory_order_relaxed)) return NULL;
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax(spins);
                continue;
            }
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->claim) >> 32 == seen && !atomic_load(&pool->shutdown))
                pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
            spins = 0;
        }
        seen = job;
        run_chunks(pool, job);
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
    atomic_store(&pool->sleepers, 0);
    atomic_store(&pool->shutdown, 0);
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
        }
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
    if (pool->owner_pid == getpid()) {
        pthread_mutex_lock(&pool->lock);
        atomic_store(&pool->shutdown, 1);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
        for (int i = 0; i < pool->num_started; i++) pthread_join(pool->workers[i], NULL);
    }
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

    /* several chunks per thread balance uneven work without making chunks tiny */
    int64_t per_thread = (n + (int64_t)pool->num_threads * 4 - 1) / ((int64_t)pool->num_threads * 4);
    pool->chunk = per_thread > grain ? per_thread : grain;
    pool->num_chunks = (n + pool->chunk - 1) / pool->chunk;
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n = n;
    atomic_store_explicit(&pool->chunks_done, 0, memory_order_relaxed);
    uint64_t job = (atomic_load(&pool->claim) >> 32) + 1;
    atomic_store_explicit(&pool->claim, job << 32, memory_order_release);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }

    run_chunks(pool, job);
    int spins = 0;
    while (atomic_load_explicit(&pool->chunks_done, memory_order_acquire) < pool->num_chunks) cpu_relax(++spins);
    /* close the job before the next one rewrites its fields: a late thread's claim now fails */
    atomic_store_explicit(&pool->claim, (job << 32) | CLOSED, memory_order_release);
    pthread_mutex_unlock(&pool->call_lock);
}
