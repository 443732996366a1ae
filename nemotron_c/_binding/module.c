/* nemotron_c._core: module definition and the mapping of core statuses to Python exceptions. */
#include "binding.h"

#include <string.h>

static PyObject *FormatError; /* raised for malformed files; a ValueError */

PyObject *nt_py_raise(const nt_error *err) {
    PyObject *type;
    switch (err->status) {
    case NT_ERROR_INVALID_ARGUMENT: type = PyExc_ValueError; break;
    case NT_ERROR_FORMAT: type = FormatError; break;
    case NT_ERROR_UNSUPPORTED: type = PyExc_ValueError; break;
    case NT_ERROR_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
    case NT_ERROR_INTERRUPTED: type = PyExc_KeyboardInterrupt; break;
    default: type = PyExc_RuntimeError; break;
    }
    PyErr_SetString(type, err->message[0] ? err->message : "nemotron_c core error");
    return NULL;
}

static char item_format(const char *format) {
    if (format == NULL) return 'B';
    while (*format == '=' || *format == '<' || *format == '@') format++;
    if (format[0] == '\0' || format[1] != '\0') return '?';
    /* 'l' and 'q' are both 8 bytes on the platforms we build for; the size is checked too */
    return format[0] == 'l' ? 'q' : format[0] == 'i' ? 'i' : format[0];
}

int nt_py_get_buffer(PyObject *obj, Py_buffer *view, const char *name, int ndim, char format, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", name, writable ? " writable" : "");
        return -1;
    }
    size_t want_size = format == 'f' ? 4 : format == 'q' ? 8 : format == 'i' ? 4 : 1;
    if (view->ndim != ndim || item_format(view->format) != format || (size_t)view->itemsize != want_size) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-D array of format '%c' (got %d-D, format '%s')", name, ndim,
                     format, view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyStructSequence_Field dtype_fields[] = {
    {"code", "the core's nt_dtype value"},
    {"itemsize", "bytes of one element (of one block of block_size elements for a blocked dtype)"},
    {"block_size", "elements stored together: 1, or the group of a quantized dtype that shares a scale"},
    {NULL, NULL},
};
static PyStructSequence_Desc dtype_desc = {"nemotron_c._core.DType", "A line of the core's dtype table.", dtype_fields,
                                           3};

/* The core's dtype table as DTYPES {name: code} and DTYPE_INFO {name: DType(code, itemsize, block_size)}. */
static int add_dtypes(PyObject *module) {
    PyTypeObject *type = PyStructSequence_NewType(&dtype_desc);
    PyObject *codes = PyDict_New(), *infos = PyDict_New();
    int ok = type != NULL && codes != NULL && infos != NULL;
    for (int code = 0; ok && code < NT_DTYPE_COUNT; code++) {
        const nt_dtype_info *info = nt_dtype_get((nt_dtype)code);
        PyObject *record = PyStructSequence_New(type), *value = PyLong_FromLong(code);
        ok = record != NULL && value != NULL;
        if (ok) {
            PyStructSequence_SetItem(record, 0, Py_NewRef(value));
            PyStructSequence_SetItem(record, 1, PyLong_FromSize_t(info->block_bytes));
            PyStructSequence_SetItem(record, 2, PyLong_FromLongLong(info->block_size));
            ok = !PyErr_Occurred() && PyDict_SetItemString(codes, info->name, value) == 0 &&
                 PyDict_SetItemString(infos, info->name, record) == 0;
        }
        Py_XDECREF(record);
        Py_XDECREF(value);
    }
    ok = ok && PyModule_AddObjectRef(module, "DTYPES", codes) == 0 &&
         PyModule_AddObjectRef(module, "DTYPE_INFO", infos) == 0;
    Py_XDECREF(codes);
    Py_XDECREF(infos);
    Py_XDECREF(type);
    return ok ? 0 : -1;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "nemotron_c._core", "The C core of nemotron_c (private: use the nemotron_c package).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    FormatError = PyErr_NewExceptionWithDoc("nemotron_c._core.FormatError",
                                            "A checkpoint or tokenizer file is malformed.", PyExc_ValueError, NULL);
    if (FormatError == NULL || PyModule_AddObjectRef(module, "FormatError", FormatError) < 0 ||
        nt_py_register_model(module) < 0 || nt_py_register_score(module) < 0 ||
        nt_py_register_generator(module) < 0 || nt_py_register_tokenizer(module) < 0 || add_dtypes(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
