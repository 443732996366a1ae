/*
 * One fork-safe thread pool for the whole process.
 *
 * Every model and tokenizer holds a handle that says how many threads its calls may use (num_threads, the
 * caller's thread included); the workers behind the handles are shared, started on first use and never more
 * than the largest num_threads asked for minus one. One call at a time has the workers; a call made meanwhile
 * from another thread runs on its own thread rather than waiting.
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

enum { SPIN_ITERATIONS = 4000, SPINS_BEFORE_YIELD = 256, MAX_THREADS = 1024 };
#define CLOSED 0xffffffffu /* chunk index of a finished job: above any job's chunk count */

/* The process's workers, shared by every handle. */
static struct {
    /* written under start_lock, read without it by every call: atomics (pid_t is an int on Linux) */
    atomic_int owner_pid;                /* process whose workers are running; 0 before the first use */
    pthread_t workers[MAX_THREADS - 1];
    atomic_int num_started;
    atomic_int start_failed; /* pthread_create failed: run with the workers there are, and stop trying */

    pthread_mutex_t call_lock; /* one job at a time */
    pthread_mutex_t lock;      /* guards sleeping and waking */
    pthread_cond_t wake;
    atomic_int sleepers;

    /* (job number << 32) | next chunk; job numbers only grow */
    _Atomic uint64_t claim;
    atomic_int_fast64_t chunks_done;
    /* (job number << 32) | workers that joined it, so that a late worker cannot count against the next job */
    _Alignas(64) _Atomic uint64_t joined; /* a line of its own: workers write it while the caller polls chunks_done */

    /* the current job, written before its number is published */
    nt_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    /* these two are read by a worker before its claim or join is known to be for the current job (the CAS then
     * fails on a stale one): atomic, so that the next job's writes do not race with those reads */
    atomic_int_fast64_t num_chunks;
    _Atomic uint64_t max_workers; /* the caller's num_threads - 1 */
} shared;

/* A handle: what one model or tokenizer may use of the shared workers. */
struct nt_threadpool {
    int num_threads; /* including the caller's */
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
static void run_chunks(uint64_t job) {
    uint64_t state = atomic_load_explicit(&shared.claim, memory_order_acquire);
    for (;;) {
        if (state >> 32 != job) return;
        int64_t index = (int64_t)(state & 0xffffffffu);
        if (index >= atomic_load_explicit(&shared.num_chunks, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak_explicit(&shared.claim, &state, state + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int64_t begin = index * shared.chunk;
        int64_t end = begin + shared.chunk < shared.n ? begin + shared.chunk : shared.n;
        shared.fn(shared.ctx, begin, end);
        atomic_fetch_add_explicit(&shared.chunks_done, 1, memory_order_release);
        state = atomic_load_explicit(&shared.claim, memory_order_acquire);
    }
}

/* Takes one of job's worker places; fails when the job is over or has as many workers as its caller allows. */
static int join_job(uint64_t job) {
    uint64_t state = atomic_load_explicit(&shared.joined, memory_order_acquire);
    for (;;) {
        if (state >> 32 != job || (state & 0xffffffffu) >= atomic_load_explicit(&shared.max_workers, memory_order_relaxed))
            return 0;
        if (atomic_compare_exchange_weak_explicit(&shared.joined, &state, state + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    }
}

static void *worker_main(void *arg) {
    uint64_t seen = atomic_load(&shared.claim) >> 32;
    for (;;) {
        int spins = 0;
        uint64_t job;
        while ((job = atomic_load_explicit(&shared.claim, memory_order_acquire) >> 32) == seen) {
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax(spins);
                continue;
            }
            pthread_mutex_lock(&shared.lock);
            atomic_fetch_add(&shared.sleepers, 1);
            while (atomic_load(&shared.claim) >> 32 == seen) pthread_cond_wait(&shared.wake, &shared.lock);
            atomic_fetch_sub(&shared.sleepers, 1);
            pthread_mutex_unlock(&shared.lock);
            spins = 0;
        }
        seen = job;
        if (join_job(job)) run_chunks(job);
    }
    return arg;
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

/* NEMOTRON_C_NUM_THREADS when set, else one thread per CPU this process may run on */
static nt_status default_threads(int *out, nt_error *err) {
    const char *text = getenv("NEMOTRON_C_NUM_THREADS");
    if (text == NULL || text[0] == '\0') {
        *out = online_cpus();
        return NT_OK;
    }
    char *end;
    long n = strtol(text, &end, 10);
    if (*end != '\0' || n < 1 || n > MAX_THREADS)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "NEMOTRON_C_NUM_THREADS=%.40s is not a number of threads in [1, %d]", text, MAX_THREADS);
    *out = (int)n;
    return NT_OK;
}

nt_status nt_threadpool_create(nt_threadpool **out, nt_error *err, int num_threads) {
    *out = NULL;
    if (num_threads <= 0) {
        nt_status status = default_threads(&num_threads, err);
        if (status != NT_OK) return status;
    }
    if (num_threads > MAX_THREADS)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "num_threads=%d is more than %d", num_threads,
                            MAX_THREADS);
    nt_threadpool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the thread pool");
    pool->num_threads = num_threads;
    *out = pool;
    return NT_OK;
}

void nt_threadpool_free(nt_threadpool *pool) { free(pool); }

int nt_threadpool_size(const nt_threadpool *pool) { return pool->num_threads; }

/* Starts workers until there are `wanted` in this process. In a forked child the parent's workers do not exist
 * and the locks may have been copied while held, so both are made anew. If a thread cannot be started the jobs
 * run with the ones there are (at worst only the caller's). */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void reset_start_lock_in_child(void) { pthread_mutex_init(&start_lock, NULL); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, reset_start_lock_in_child); }

static void ensure_workers(int wanted) {
    pid_t pid = getpid();
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&start_lock);
    if (shared.owner_pid != pid) {
        pthread_mutex_init(&shared.call_lock, NULL);
        pthread_mutex_init(&shared.lock, NULL);
        pthread_cond_init(&shared.wake, NULL);
        atomic_store(&shared.sleepers, 0);
        shared.num_started = 0;
        shared.start_failed = 0;
        shared.owner_pid = pid;
    }
    while (shared.num_started < wanted && !shared.start_failed) {
        if (pthread_create(&shared.workers[shared.num_started], NULL, worker_main, NULL) != 0) shared.start_failed = 1;
        else shared.num_started++;
    }
    pthread_mutex_unlock(&start_lock);
}

void nt_threadpool_parallel_for(nt_threadpool *pool, nt_range_fn fn, void *ctx, int64_t n, int64_t grain) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int num_threads = pool == NULL ? 1 : pool->num_threads;
    if (num_threads <= 1 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    if (shared.owner_pid != getpid() || (shared.num_started < num_threads - 1 && !shared.start_failed))
        ensure_workers(num_threads - 1);
    /* another call holds the workers: this one runs on its caller's thread rather than waiting */
    if (shared.num_started == 0 || pthread_mutex_trylock(&shared.call_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }

    /* several chunks per thread balance uneven work without making chunks tiny */
    int64_t per_thread = (n + (int64_t)num_threads * 4 - 1) / ((int64_t)num_threads * 4);
    shared.chunk = per_thread > grain ? per_thread : grain;
    int64_t num_chunks = (n + shared.chunk - 1) / shared.chunk;
    atomic_store_explicit(&shared.num_chunks, num_chunks, memory_order_relaxed);
    shared.fn = fn;
    shared.ctx = ctx;
    shared.n = n;
    atomic_store_explicit(&shared.max_workers, (uint64_t)(num_threads - 1), memory_order_relaxed);
    atomic_store_explicit(&shared.chunks_done, 0, memory_order_relaxed);
    uint64_t job = (atomic_load(&shared.claim) >> 32) + 1;
    atomic_store_explicit(&shared.joined, job << 32, memory_order_release);
    atomic_store_explicit(&shared.claim, job << 32, memory_order_release);
    if (atomic_load(&shared.sleepers) > 0) {
        pthread_mutex_lock(&shared.lock);
        pthread_cond_broadcast(&shared.wake);
        pthread_mutex_unlock(&shared.lock);
    }

    run_chunks(job);
    int spins = 0;
    while (atomic_load_explicit(&shared.chunks_done, memory_order_acquire) < num_chunks) cpu_relax(++spins);
    /* close the job before the next one rewrites its fields: a late thread's claim now fails */
    atomic_store_explicit(&shared.claim, (job << 32) | CLOSED, memory_order_release);
    pthread_mutex_unlock(&shared.call_lock);
}
