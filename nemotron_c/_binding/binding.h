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

int nt_py_register_model(PyObject *module);
int nt_py_register_tokenizer(PyObject *module);

#endif
