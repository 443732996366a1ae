/* Shared pieces of the CPython binding of nemotron_c._core. The core (csrc/) knows nothing of Python; every
 * method here parses its arguments, checks buffers, releases the GIL around one core call and maps the status
 * to an exception. The helpers all of them use live in common.c. */
#ifndef NT_BINDING_H
#define NT_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "nemotron.h"

/* _core.Model: the core model and the weight buffers it points into. */
typedef struct {
    PyObject_HEAD
    nt_model *model;
    Py_buffer *views; /* (n_views) buffers of the weights, held for the model's lifetime */
    Py_ssize_t n_views;
} ModelObject;

/* _core.Cache: a KV cache made for one Model. */
typedef struct {
    PyObject_HEAD
    nt_cache *cache;
    PyObject *model; /* keeps the model alive */
    int busy;        /* a call is using the cache with the GIL released */
    int held;        /* a Generator extends it between its steps: forwards, crops and selects are refused */
} CacheObject;

extern PyTypeObject ModelType, CacheType;

/* ---------------------------------------------------------------- common.c */

extern PyObject *FormatError; /* malformed files: a ValueError */

/* Raises the Python exception for a failed core call and returns NULL. */
PyObject *nt_py_raise(const nt_error *err);

enum { NT_PY_WRITABLE = 1, NT_PY_OPTIONAL = 2 };

/* What an array argument must be: C-contiguous, `ndim` dimensions, items of struct format `format`
 * ('q' int64, 'i' int32, 'f' float32, 'B' uint8, 'b' int8) and, for each dimension whose wanted size is >= 0,
 * that size. */
typedef struct {
    const char *name; /* the argument's name, for messages */
    char format;
    int ndim;
    int flags;        /* NT_PY_WRITABLE, NT_PY_OPTIONAL (None is then accepted and leaves view->buf NULL) */
    int64_t shape[5];
} nt_py_array;

/* Fills `view` from obj through the buffer protocol; returns -1 with TypeError or ValueError set on a mismatch.
 * Release with nt_py_release (a view left unfilled is skipped). */
int nt_py_get_array(PyObject *obj, Py_buffer *view, const nt_py_array *spec);
void nt_py_release(Py_buffer *views, size_t n);
void nt_py_free_views(Py_buffer *views, size_t n); /* releases n views and frees the array (NULL: nothing) */

/* Fills the struct at `object` through a settings table from `values`, a dict of {field name: value} or NULL:
 * a field it lacks or maps to None takes the table's default, arrays that share a count must be as long as each
 * other, and the arrays' buffers are held in *views (one per field; nt_py_free_views them, also after a failure). `what` names
 * the struct in messages. Returns -1 with an exception set for a missing required field, a wrong value or an
 * unknown name. */
int nt_py_read_fields(void *object, const nt_field *fields, size_t n, PyObject *values, Py_buffer **views,
                      const char *what);

/* {name: default} of a settings table (None for arrays and required fields), for the module's constants. */
PyObject *nt_py_field_defaults(const nt_field *fields, size_t n);

/* Sets RuntimeError and returns -1 when the Model was never initialised. */
int nt_py_check_model(ModelObject *self);

/* The cache argument of a call: *out is NULL for None, else a Cache (of any model: the core checks its shape) not
 * in use by another call. Returns -1 with an exception set otherwise. */
int nt_py_get_cache(PyObject *obj, CacheObject **out);

/* A long core call: it returns a status and stops with NT_ERROR_INTERRUPTED soon after *cancel turns non-zero. */
typedef nt_status (*nt_py_job)(void *ctx, nt_error *err, const volatile int *cancel);

/* Runs job(ctx) with the GIL released so that Ctrl-C interrupts it: the job runs on a worker thread while this
 * one watches for signals and, on one, raises the job's cancel flag. `cache` (or NULL) is marked busy meanwhile.
 * Returns 0, or -1 with the core's error or the signal handler's exception (KeyboardInterrupt) set. */
int nt_py_run(nt_py_job job, void *ctx, CacheObject *cache);

/* From inside a job: runs call(arg) holding the GIL on the thread that called nt_py_run (which waits for the job),
 * and returns once it has run; as Transformers calls logits processors on the thread that called generate(), with
 * its thread-locals, context variables and NumPy error state. Outside a job (a job run in place), on this thread. */
void nt_py_call_on_caller(void (*call)(void *), void *arg);

/* ---------------------------------------------------------------- the types, one file each */

int nt_py_register_model(PyObject *module);     /* model.c: Model and Cache */
int nt_py_register_generator(PyObject *module); /* generate.c */
int nt_py_register_tokenizer(PyObject *module); /* tokenizer.c */

#endif
