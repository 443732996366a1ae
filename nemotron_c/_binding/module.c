/* nemotron_c._core: the module, its exception type and the core's tables as constants. */
#include "binding.h"

#include <string.h>

static PyStructSequence_Field dtype_fields[] = {
    {"code", "the core's nt_dtype value"},
    {"itemsize", "bytes of one element (of one block of block_size elements for a blocked dtype)"},
    {"block_size", "elements stored together: 1, or the group of a quantized dtype that shares a scale"},
    {"scaled", "whether a tensor of this dtype comes with float32 scales, one per block of each row"},
    {NULL, NULL},
};
static PyStructSequence_Desc dtype_desc = {"nemotron_c._core.DType", "A line of the core's dtype table.", dtype_fields,
                                           4};

/* The core's dtype table as DTYPE_INFO {name: DType(code, itemsize, block_size, scaled)}: the one list
 * Python uses. */
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
            PyStructSequence_SetItem(record, 3, PyBool_FromLong(info->scaled));
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

/* quantize(data, scales float32 (N, K / block_size), weights, weights_code, shape (N, K), dtype_code,
 *          num_threads=0)
 * Quantizes weights (a buffer of shape x weights_code: float32, bfloat16 or float16) to dtype_code into the
 * caller's data (int8 (N, K) for int8, uint8 (N, K / 2) for int4: the table's bytes of a row) and scales (see
 * nt_quantize). */
static PyObject *quantize(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"data", "scales", "weights", "weights_code", "shape", "dtype_code", "num_threads",
                               NULL};
    PyObject *data, *scales, *weights;
    int weights_code, dtype, num_threads = 0;
    long long N, K;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOi(LL)i|i:quantize", keywords, &data, &scales, &weights,
                                     &weights_code, &N, &K, &dtype, &num_threads))
        return NULL;
    const nt_dtype_info *info = nt_dtype_get((nt_dtype)dtype);
    if (info == NULL || !info->scaled) {
        PyErr_Format(PyExc_ValueError, "dtype code %d is not a quantized dtype", dtype);
        return NULL;
    }
    Py_buffer views[3]; /* data, scales, weights */
    memset(views, 0, sizeof views);
    /* a width that is not whole groups gets the core's message rather than a shape mismatch */
    long long groups = K >= 0 && K % info->block_size == 0 ? K / info->block_size : -1;
    nt_py_array data_spec = {"data", dtype == NT_DTYPE_Q8 ? 'b' : 'B', 2, NT_PY_WRITABLE,
                             {N, groups < 0 ? -1 : groups * (long long)info->block_bytes}};
    nt_py_array scales_spec = {"scales", 'f', 2, NT_PY_WRITABLE, {N, groups}};
    nt_threadpool *pool = NULL;
    nt_error err = {0};
    nt_status status = NT_OK;
    if (nt_py_get_array(data, &views[0], &data_spec) < 0 || nt_py_get_array(scales, &views[1], &scales_spec) < 0)
        goto done;
    if (PyObject_GetBuffer(weights, &views[2], PyBUF_C_CONTIGUOUS) != 0) goto done;
    nt_tensor src = {.data = views[2].buf, .dtype = (nt_dtype)weights_code, .ndim = 2, .shape = {N, K},
                     .nbytes = (size_t)views[2].len};
    Py_BEGIN_ALLOW_THREADS
    status = nt_threadpool_create(&pool, &err, num_threads);
    if (status == NT_OK) status = nt_quantize(views[0].buf, views[1].buf, &err, (nt_dtype)dtype, &src, pool);
    nt_threadpool_free(pool);
    Py_END_ALLOW_THREADS
    if (status != NT_OK) nt_py_raise(&err);
done:
    nt_py_release(views, 3);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

/* topk(indices int64 (k,), values float32 (n,))
 * Writes torch.topk(values, k).indices into indices (nt_topk): the tie order of Transformers' beam search. */
static PyObject *topk(PyObject *module, PyObject *args) {
    PyObject *indices, *values;
    if (!PyArg_ParseTuple(args, "OO:topk", &indices, &values)) return NULL;
    Py_buffer views[2];
    memset(views, 0, sizeof views);
    nt_py_array indices_spec = {"indices", 'q', 1, NT_PY_WRITABLE, {-1}};
    nt_py_array values_spec = {"values", 'f', 1, 0, {-1}};
    int64_t *scratch = NULL;
    if (nt_py_get_array(indices, &views[0], &indices_spec) < 0 || nt_py_get_array(values, &views[1], &values_spec) < 0)
        goto done;
    int64_t k = views[0].shape[0], n = views[1].shape[0];
    if (k < 1 || k > n) {
        PyErr_Format(PyExc_ValueError, "topk: k = %lld must be in [1, %lld]", (long long)k, (long long)n);
        goto done;
    }
    scratch = malloc((size_t)nt_topk_scratch(n, k) * sizeof(int64_t) + 1);
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    nt_topk(views[0].buf, scratch, views[1].buf, n, k);
    Py_END_ALLOW_THREADS
done:
    free(scratch);
    nt_py_release(views, 2);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

/* sort(order int64 (n,), values float32 (n,), descending)
 * Writes torch.sort(values, descending=descending).indices into order (nt_sort). */
static PyObject *sort(PyObject *module, PyObject *args) {
    PyObject *order, *values;
    int descending;
    if (!PyArg_ParseTuple(args, "OOp:sort", &order, &values, &descending)) return NULL;
    Py_buffer views[2];
    memset(views, 0, sizeof views);
    nt_py_array order_spec = {"order", 'q', 1, NT_PY_WRITABLE, {-1}};
    nt_py_array values_spec = {"values", 'f', 1, 0, {-1}};
    if (nt_py_get_array(order, &views[0], &order_spec) < 0 || nt_py_get_array(values, &views[1], &values_spec) < 0)
        goto done;
    if (views[0].shape[0] != views[1].shape[0]) {
        PyErr_Format(PyExc_ValueError, "sort: order holds %lld indices for %lld values", (long long)views[0].shape[0],
                     (long long)views[1].shape[0]);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    nt_sort(views[0].buf, views[1].buf, views[1].shape[0], descending);
    Py_END_ALLOW_THREADS
done:
    nt_py_release(views, 2);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef module_methods[] = {
    {"sort", sort, METH_VARARGS, "Writes torch.sort(values, descending).indices, ties in torch's order, into order (n,)."},
    {"topk", topk, METH_VARARGS, "Writes torch.topk(values, k).indices, ties in torch's order, into indices (k,)."},
    {"quantize", (PyCFunction)(void (*)(void))quantize, METH_VARARGS | METH_KEYWORDS,
     "Quantizes float weights to a quantized dtype with per-group scales, into caller-allocated arrays."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "nemotron_c._core", "The C core of nemotron_c (private: use the nemotron_c package).", -1,
    module_methods, NULL, NULL, NULL, NULL,
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
