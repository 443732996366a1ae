/* nemotron_c._core: the module, its exception type and the core's tables as constants. */
#include "binding.h"

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
        nt_py_register_tokenizer(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
