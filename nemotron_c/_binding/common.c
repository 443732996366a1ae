/* What every method of the binding uses: statuses as exceptions, array and cache arguments, and the runner that
 * lets Ctrl-C stop a long core call. */
#include "binding.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

PyObject *FormatError; /* module.c creates it: malformed files, a ValueError */

PyObject *nt_py_raise(const nt_error *err) {
    PyObject *type;
    switch (err->status) {
    case NT_ERROR_INVALID_ARGUMENT: type = PyExc_ValueError; break;
    case NT_ERROR_FORMAT: type = FormatError; break;
    case NT_ERROR_UNSUPPORTED: type = PyExc_ValueError; break;
    case NT_ERROR_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
    case NT_ERROR_INTERRUPTED: type = PyExc_KeyboardInterrupt; break;
    case NT_ERROR_NOT_FINITE: type = PyExc_RuntimeError; break; /* as torch's refusal */
    default: type = PyExc_RuntimeError; break;
    }
    PyErr_SetString(type, err->message[0] ? err->message : "nemotron_c core error");
    return NULL;
}

/* ---------------------------------------------------------------- arrays */

static char item_format(const char *format) {
    if (format == NULL) return 'B';
    while (*format == '=' || *format == '<' || *format == '@') format++;
    if (format[0] == '\0' || format[1] != '\0') return '?';
    /* 'l' and 'q' are both 8 bytes on the platforms we build for; the size is checked too */
    return format[0] == 'l' ? 'q' : format[0];
}

static const char *shape_text(char *text, size_t size, int ndim, const Py_ssize_t *got, const int64_t *want) {
    size_t used = 0;
    for (int d = 0; d < ndim && used < size; d++) {
        long long n = got ? (long long)got[d] : (long long)want[d];
        used += (size_t)snprintf(text + used, size - used, "%s%s", d ? ", " : "(", n < 0 ? "any" : "");
        if (n >= 0 && used < size) used += (size_t)snprintf(text + used, size - used, "%lld", n);
    }
    if (used < size) snprintf(text + used, size - used, ")");
    return text;
}

int nt_py_get_array(PyObject *obj, Py_buffer *view, const nt_py_array *spec) {
    memset(view, 0, sizeof *view);
    if (obj == NULL || obj == Py_None) {
        if (spec->flags & NT_PY_OPTIONAL) return 0;
        PyErr_Format(PyExc_TypeError, "%s is required", spec->name);
        return -1;
    }
    int writable = spec->flags & NT_PY_WRITABLE;
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) != 0) {
        memset(view, 0, sizeof *view);
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", spec->name, writable ? " writable" : "");
        return -1;
    }
    size_t item_size = spec->format == 'q' ? 8 : spec->format == 'B' || spec->format == 'b' ? 1 : 4;
    if (view->ndim != spec->ndim || item_format(view->format) != spec->format || (size_t)view->itemsize != item_size) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-D array of format '%c' (got %d-D, format '%s')", spec->name,
                     spec->ndim, spec->format, view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    for (int d = 0; d < spec->ndim; d++)
        if (spec->shape[d] >= 0 && view->shape[d] != spec->shape[d]) {
            char want[128], got[128];
            PyErr_Format(PyExc_ValueError, "%s must have shape %s, got %s", spec->name,
                         shape_text(want, sizeof want, spec->ndim, NULL, spec->shape),
                         shape_text(got, sizeof got, spec->ndim, view->shape, NULL));
            PyBuffer_Release(view);
            return -1;
        }
    return 0;
}

void nt_py_release(Py_buffer *views, size_t n) {
    for (size_t i = 0; views != NULL && i < n; i++)
        if (views[i].obj != NULL) PyBuffer_Release(&views[i]);
}

void nt_py_free_views(Py_buffer *views, size_t n) {
    nt_py_release(views, n);
    PyMem_Free(views);
}

/* ---------------------------------------------------------------- models and caches */

int nt_py_check_model(ModelObject *self) {
    if (self->model == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Model is not initialised");
        return -1;
    }
    return 0;
}

int nt_py_get_cache(PyObject *obj, CacheObject **out) {
    *out = NULL;
    if (obj == NULL || obj == Py_None) return 0;
    /* any model's: the core refuses one of another shape */
    if (!PyObject_TypeCheck(obj, &CacheType)) {
        PyErr_SetString(PyExc_TypeError, "cache must be a Cache");
        return -1;
    }
    if (((CacheObject *)obj)->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this cache is in use by another call");
        return -1;
    }
    if (((CacheObject *)obj)->held) {
        PyErr_SetString(PyExc_RuntimeError, "this cache is being extended by a generate() in progress");
        return -1;
    }
    *out = (CacheObject *)obj;
    return 0;
}

/* ---------------------------------------------------------------- the cancellable runner */

/* How often the waiting thread looks for signals: the delay a Ctrl-C adds at most, besides the job's own
 * response to its cancel flag (one layer of the forward pass). */
enum { WATCH_MS = 50 };

typedef struct {
    nt_py_job job;
    void *ctx;
    volatile int cancel;
    nt_status status;
    nt_error err;
    int finished;
    void (*call)(void *); /* a Python call the job asks the waiting thread to make (nt_py_call_on_caller) */
    void *call_arg;
    int call_done;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the job finished, a call is asked for, or it is done */
} run_state;

/* The run whose job this thread is running, for nt_py_call_on_caller. */
static _Thread_local run_state *running;

static void finish(run_state *run, nt_status status) {
    pthread_mutex_lock(&run->lock);
    run->status = status;
    run->finished = 1;
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock); /* the caller may free run from here on */
}

static nt_status run_job(run_state *run) {
    running = run;
    nt_status status = run->job(run->ctx, &run->err, &run->cancel);
    running = NULL;
    return status;
}

static void *run_worker(void *arg) {
    run_state *run = arg;
    finish(run, run_job(run));
    return NULL;
}

/* One thread kept to run jobs, so that a call does not pay for starting a thread (tens of microseconds, as
 * much as a small model's decode step); a call made while it is busy, from another Python thread, starts a
 * thread of its own. A forked child starts its own runner. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    run_state *job; /* handed over, not yet taken */
    int busy;
    pid_t pid;      /* process the runner runs in; 0 before the first call */
} runner = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static void *runner_main(void *unused) {
    pthread_mutex_lock(&runner.lock);
    for (;;) {
        while (runner.job == NULL) pthread_cond_wait(&runner.wake, &runner.lock);
        run_state *run = runner.job;
        runner.job = NULL;
        pthread_mutex_unlock(&runner.lock);
        nt_status status = run_job(run);
        pthread_mutex_lock(&runner.lock);
        runner.busy = 0;
        finish(run, status);
    }
    return unused;
}

static void reset_runner_in_child(void) {
    pthread_mutex_init(&runner.lock, NULL);
    pthread_cond_init(&runner.wake, NULL);
    runner.job = NULL;
    runner.busy = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, reset_runner_in_child); }

/* hands run to the kept runner; returns 0 when it is busy or cannot be started */
static int hand_to_runner(run_state *run) {
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&runner.lock);
    pthread_t thread;
    if (runner.pid != getpid() && pthread_create(&thread, NULL, runner_main, NULL) == 0) {
        pthread_detach(thread);
        runner.pid = getpid();
    }
    int taken = runner.pid == getpid() && !runner.busy;
    if (taken) {
        runner.busy = 1;
        runner.job = run;
        pthread_cond_signal(&runner.wake);
    }
    pthread_mutex_unlock(&runner.lock);
    return taken;
}

/* waits up to WATCH_MS for the worker; returns whether it has finished */
static int wait_a_while(run_state *run) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += WATCH_MS * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&run->lock);
    while (!run->finished && run->call == NULL && pthread_cond_timedwait(&run->cond, &run->lock, &deadline) == 0) {
    }
    int finished = run->finished;
    pthread_mutex_unlock(&run->lock);
    return finished;
}

/* On the waiting thread, holding the GIL: makes the call the job asked for, if any, then lets the job go on. An
 * exception already set here (a signal's) is kept aside meanwhile. */
static void serve_call(run_state *run) {
    pthread_mutex_lock(&run->lock);
    void (*call)(void *) = run->call;
    run->call = NULL;
    pthread_mutex_unlock(&run->lock);
    if (call == NULL) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    call(run->call_arg);
    PyErr_Restore(type, value, traceback);
    pthread_mutex_lock(&run->lock);
    run->call_done = 1;
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

void nt_py_call_on_caller(void (*call)(void *), void *arg) {
    run_state *run = running;
    if (run == NULL) { /* the caller's own thread, the GIL released around the job */
        PyGILState_STATE gil = PyGILState_Ensure();
        call(arg);
        PyGILState_Release(gil);
        return;
    }
    pthread_mutex_lock(&run->lock);
    run->call_arg = arg;
    run->call_done = 0;
    run->call = call;
    pthread_cond_broadcast(&run->cond);
    while (!run->call_done) pthread_cond_wait(&run->cond, &run->lock);
    pthread_mutex_unlock(&run->lock);
}

int nt_py_run(nt_py_job job, void *ctx, CacheObject *cache) {
    run_state run;
    memset(&run, 0, sizeof run);
    run.job = job;
    run.ctx = ctx;
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.cond, NULL);
    if (cache) cache->busy = 1;
    int interrupted = 0, kept = hand_to_runner(&run);
    pthread_t worker;
    if (!kept && pthread_create(&worker, NULL, run_worker, &run) != 0) {
        /* no thread to spare: run here, which only a signal delivered after the call can interrupt */
        Py_BEGIN_ALLOW_THREADS
        run.status = job(ctx, &run.err, NULL);
        Py_END_ALLOW_THREADS
    } else {
        for (;;) {
            int finished;
            Py_BEGIN_ALLOW_THREADS
            finished = wait_a_while(&run);
            Py_END_ALLOW_THREADS
            serve_call(&run);
            if (finished) break;
            if (!interrupted && PyErr_CheckSignals() < 0) {
                interrupted = 1;
                run.cancel = 1;
            }
        }
        if (!kept) {
            Py_BEGIN_ALLOW_THREADS
            pthread_join(worker, NULL);
            Py_END_ALLOW_THREADS
        }
    }
    if (!interrupted && PyErr_CheckSignals() < 0) interrupted = 1;
    pthread_cond_destroy(&run.cond);
    pthread_mutex_destroy(&run.lock);
    if (cache) cache->busy = 0;
    if (interrupted) return -1; /* the signal handler's exception is set */
    if (run.status != NT_OK) return nt_py_raise(&run.err), -1;
    return 0;
}

/* ---------------------------------------------------------------- settings tables */

static int read_scalar(void *member, const nt_field *f, PyObject *v) {
    switch (f->kind) {
    case NT_FIELD_INT64: *(int64_t *)member = v ? PyLong_AsLongLong(v) : (int64_t)f->default_value; break;
    case NT_FIELD_UINT64: *(uint64_t *)member = v ? PyLong_AsUnsignedLongLong(v) : (uint64_t)f->default_value; break;
    case NT_FIELD_INT: {
        long x = v ? PyLong_AsLong(v) : (long)f->default_value;
        if (x < INT_MIN || x > INT_MAX) PyErr_SetString(PyExc_OverflowError, "out of range");
        *(int *)member = (int)x;
        break;
    }
    case NT_FIELD_FLOAT: *(float *)member = (float)(v ? PyFloat_AsDouble(v) : f->default_value); break;
    default: *(double *)member = v ? PyFloat_AsDouble(v) : f->default_value; break;
    }
    if (!PyErr_Occurred()) return 0;
    int integer = f->kind == NT_FIELD_INT64 || f->kind == NT_FIELD_UINT64 || f->kind == NT_FIELD_INT;
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s must be %s, not %R", f->name,
                 integer ? "an integer in range" : "a float", v);
    return -1;
}

int nt_py_read_fields(void *object, const nt_field *fields, size_t n, PyObject *values, Py_buffer **views_out,
                      const char *what) {
    char *base = object;
    Py_buffer *views = *views_out = PyMem_Calloc(n, sizeof *views);
    if (views == NULL) return PyErr_NoMemory(), -1;
    for (size_t i = 0; i < n; i++)
        if (fields[i].count_offset >= 0) *(int64_t *)(base + fields[i].count_offset) = -1;
    Py_ssize_t found = 0;
    for (size_t i = 0; i < n; i++) {
        const nt_field *f = &fields[i];
        PyObject *v = values ? PyDict_GetItemString(values, f->name) : NULL;
        found += v != NULL;
        if (v == Py_None) v = NULL; /* None stands for the default */
        if (v == NULL && f->required) {
            PyErr_Format(PyExc_TypeError, "%s lacks '%s'", what, f->name);
            return -1;
        }
        if (f->kind != NT_FIELD_TOKENS && f->kind != NT_FIELD_FLOATS) {
            if (read_scalar(base + f->offset, f, v) < 0) return -1;
            continue;
        }
        nt_py_array spec = {f->name, f->kind == NT_FIELD_TOKENS ? 'q' : 'f', 1, NT_PY_OPTIONAL, {-1}};
        if (nt_py_get_array(v, &views[i], &spec) < 0) return -1;
        *(const void **)(base + f->offset) = views[i].buf;
        if (f->count_offset < 0) continue;
        int64_t *count = (int64_t *)(base + f->count_offset), length = views[i].buf ? views[i].shape[0] : 0;
        if (*count >= 0 && *count != length) {
            PyErr_Format(PyExc_ValueError, "%s must be as long as the arrays counted with it", f->name);
            return -1;
        }
        *count = length;
    }
    for (size_t i = 0; i < n; i++)
        if (fields[i].count_offset >= 0 && *(int64_t *)(base + fields[i].count_offset) < 0)
            *(int64_t *)(base + fields[i].count_offset) = 0;
    if (values == NULL || found == PyDict_GET_SIZE(values)) return 0;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(values, &pos, &key, &value)) {
        size_t i = 0;
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        while (name != NULL && i < n && strcmp(fields[i].name, name) != 0) i++;
        if (name == NULL || i == n) break;
    }
    PyErr_Format(PyExc_TypeError, "%s has no field %R", what, key);
    return -1;
}

PyObject *nt_py_field_defaults(const nt_field *fields, size_t n) {
    PyObject *defaults = PyDict_New();
    for (size_t i = 0; defaults != NULL && i < n; i++) {
        const nt_field *f = &fields[i];
        PyObject *value;
        if (f->required || f->kind == NT_FIELD_TOKENS || f->kind == NT_FIELD_FLOATS)
            value = Py_NewRef(Py_None);
        else if (f->kind == NT_FIELD_FLOAT || f->kind == NT_FIELD_DOUBLE)
            value = PyFloat_FromDouble(f->default_value);
        else
            value = PyLong_FromDouble(f->default_value);
        if (value == NULL || PyDict_SetItemString(defaults, f->name, value) < 0) Py_CLEAR(defaults);
        Py_XDECREF(value);
    }
    return defaults;
}
