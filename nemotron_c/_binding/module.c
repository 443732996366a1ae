/* nemotron_c._core: the module, its exception type and the core's tables as constants. */
#include "binding.h"

static PyStructSequence_Field dtype_fields[] = {
    {"code", "the core's nt_dtype value"},
    {"itemsize", "bytes of one element (of one block of block_size elements for a blocked dtype)"},
    {"block_size", "elements stored together: 1, or the group of a quantized dtype that shares a scale"},
    {NULL, NULL},
};
static PyStructSequence_Desc dtype_desc = {"nemotron_c._core.DType", "A line of the core's dtype table.", dtype_fields,
                                           3};

/* The core's dtype table as DTYPE_INFO {name: DType(code, itemsize, block_size)}: the one list Python uses. */
static int add_dtypes(PyObject *module) {
    PyTypeObject *type = PyStructSequence_NewType(&dtype_desc);
    PyObject *infos = PyDict_New();
    int ok = type != NULL && infos != NULL;
    for (int code = 0; ok && code < NT_DTYPE_COUNT; code++) {
        const nt_dtype_info *info = nt_dtype_get((nt_dtype)code);
        PyObject *record = PyStructSequence_New(type), *value = PyLong_FromLong(code);
        ok = record != NULL && value != NULL;
        if (ok) {
            PyStructSequence_SetItem(record, 0, Py_NewRef(value));
            PyStructSequence_SetItem(record, 1, PyLong_FromSize_t(info->block_bytes));
            PyStructSequence_SetItem(record, 2, PyLong_FromLongLong(info->block_size));
            ok = !PyErr_Occurred() && PyDict_SetItemString(infos, info->name, record) == 0;
        }
        Py_XDECREF(record);
        Py_XDECREF(value);
    }
    ok = ok && PyModule_AddObjectRef(module, "DTYPE_INFO", infos) == 0;
    Py_XDECREF(infos);
    Py_XDECREF(type);
    return ok ? 0 : -1;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "nemotron_c._core", "The C core of nemotron_c (private: use the nemotron_c package).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

/* PyModule_AddObjectRef for a new reference (or NULL with an exception set), which it gives up */
static int add_new(PyObject *module, const char *name, PyObject *value) {
    int result = value == NULL ? -1 : PyModule_AddObjectRef(module, name, value);
    Py_XDECREF(value);
    return result;
}

PyMODINIT_FUNC PyInit__core(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    FormatError = PyErr_NewExceptionWithDoc("nemotron_c._core.FormatError",
                                            "A checkpoint or tokenizer file is malformed.", PyExc_ValueError, NULL);
    if (FormatError == NULL || PyModule_AddObjectRef(module, "FormatError", FormatError) < 0 ||
        add_new(module, "CONFIG_FIELDS", nt_py_field_defaults(nt_config_fields, nt_config_field_count)) < 0 ||
        add_new(module, "GENERATION_SETTINGS",
                     nt_py_field_defaults(nt_generation_config_fields, nt_generation_config_field_count)) < 0 ||
        nt_py_register_model(module) < 0 || nt_py_register_generator(module) < 0 ||
        nt_py_register_tokenizer(module) < 0 || add_dtypes(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
