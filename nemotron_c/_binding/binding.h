/* Shared pieces of the CPython binding of nemotron_c._core. The core (csrc/) knows nothing of Python;
 * everything here only parses arguments, checks buffers, releases the GIL and maps statuses. */
#ifndef NT_BINDING_H
#define NT_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "nemotron.h"

/* Raises the Python exception for a failed core call and returns NULL. */
PyObject *nt_py_raise(const nt_error *err);

/* Gets a C-contiguous buffer of `ndim` dimensions whose items have struct format `format` (one
 * character, "=" "<" "@" prefixes ignored). `name` names the argument in error messages. Returns -1
 * with an exception set on mismatch. */
int nt_py_get_buffer(PyObject *obj, Py_buffer *view, const char *name, int ndim, char format, int writable);

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
} CacheObject;

extern PyTypeObject ModelType, CacheType;

/* Sets RuntimeError and returns -1 when the Model was never initialised. */
int nt_py_check_model(ModelObject *self);

int nt_py_register_model(PyObject *module);
int nt_py_register_score(PyObject *module); /* score.c */
int nt_py_register_generator(PyObject *module); /* generate.c */
int nt_py_register_tokenizer(PyObject *module);

#endif
