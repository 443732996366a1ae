/* _core.Model and _core.Cache: thin wrappers over nt_model and nt_cache. */
#include "binding.h"

#include <string.h>

/* ---------------------------------------------------------------- Model */

static int read_int(PyObject *config, const char *key, int64_t *out) {
    PyObject *value = PyDict_GetItemString(config, key);
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "core config lacks '%s'", key);
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int read_float(PyObject *config, const char *key, float *out) {
    PyObject *value = PyDict_GetItemString(config, key);
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "core config lacks '%s'", key);
        return -1;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) return -1;
    *out = (float)v;
    return 0;
}

static void release_views(ModelObject *self) {
    for (Py_ssize_t i = 0; i < self->n_views; i++)
        if (self->views[i].obj != NULL) PyBuffer_Release(&self->views[i]);
    PyMem_Free(self->views);
    self->views = NULL;
    self->n_views = 0;
}

/* Model(config: dict, tensors: list[(buffer | None, dtype_code, shape)], kernels: str, num_threads: int)
 * config holds the nt_config fields by name, inv_freq as a float32 buffer. */
static int Model_init(ModelObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"config", "tensors", "kernels", "num_threads", NULL};
    PyObject *config, *tensors;
    const char *kernels = "auto";
    int num_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!|si", keywords, &PyDict_Type, &config, &PyList_Type, &tensors,
                                     &kernels, &num_threads))
        return -1;
    if (self->model != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Model is already initialised");
        return -1;
    }

    nt_config c;
    memset(&c, 0, sizeof c);
    int64_t act, attention_bias, mlp_bias, tie;
    if (read_int(config, "vocab_size", &c.vocab_size) || read_int(config, "hidden_size", &c.hidden_size) ||
        read_int(config, "intermediate_size", &c.intermediate_size) ||
        read_int(config, "num_hidden_layers", &c.num_hidden_layers) ||
        read_int(config, "num_attention_heads", &c.num_attention_heads) ||
        read_int(config, "num_key_value_heads", &c.num_key_value_heads) ||
        read_int(config, "head_dim", &c.head_dim) || read_int(config, "rotary_dim", &c.rotary_dim) ||
        read_float(config, "rope_attention_scaling", &c.rope_attention_scaling) ||
        read_float(config, "norm_eps", &c.norm_eps) || read_int(config, "hidden_act", &act) ||
        read_int(config, "attention_bias", &attention_bias) || read_int(config, "mlp_bias", &mlp_bias) ||
        read_int(config, "tie_word_embeddings", &tie))
        return -1;
    c.hidden_act = (nt_activation)act;
    c.attention_bias = attention_bias != 0;
    c.mlp_bias = mlp_bias != 0;
    c.tie_word_embeddings = tie != 0;

    PyObject *inv_freq_obj = PyDict_GetItemString(config, "inv_freq");
    if (inv_freq_obj == NULL) {
        PyErr_SetString(PyExc_KeyError, "core config lacks 'inv_freq'");
        return -1;
    }
    Py_buffer inv_freq;
    if (nt_py_get_buffer(inv_freq_obj, &inv_freq, "inv_freq", 1, 'f', 0) < 0) return -1;
    if (inv_freq.shape[0] != c.rotary_dim / 2) {
        PyBuffer_Release(&inv_freq);
        PyErr_SetString(PyExc_ValueError, "inv_freq must hold rotary_dim / 2 values");
        return -1;
    }
    c.inv_freq = inv_freq.buf;

    Py_ssize_t n = PyList_GET_SIZE(tensors);
    nt_tensor *views = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof *views);
    self->views = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof *self->views);
    if (views == NULL || self->views == NULL) {
        PyMem_Free(views);
        PyBuffer_Release(&inv_freq);
        PyErr_NoMemory();
        return -1;
    }
    self->n_views = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(tensors, i), *buffer, *shape;
        int dtype;
        if (!PyArg_ParseTuple(item, "OiO!;each tensor must be (buffer, dtype_code, shape)", &buffer, &dtype,
                              &PyTuple_Type, &shape))
            goto fail;
        if (buffer == Py_None) continue;
        if (PyObject_GetBuffer(buffer, &self->views[i], PyBUF_C_CONTIGUOUS) != 0) goto fail;
        Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
        if (ndim < 1 || ndim > 2) {
            PyErr_Format(PyExc_ValueError, "tensor %zd must be 1-D or 2-D", i);
            goto fail;
        }
        views[i].data = self->views[i].buf;
        views[i].nbytes = (size_t)self->views[i].len;
        views[i].dtype = (nt_dtype)dtype;
        views[i].ndim = (int)ndim;
        for (Py_ssize_t d = 0; d < ndim; d++) {
            views[i].shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
            if (views[i].shape[d] == -1 && PyErr_Occurred()) goto fail;
        }
    }

    nt_error err = {0};
    nt_status status;
    Py_BEGIN_ALLOW_THREADS
    status = nt_model_create(&self->model, &err, &c, views, n, kernels, num_threads);
    Py_END_ALLOW_THREADS
    PyMem_Free(views);
    PyBuffer_Release(&inv_freq);
    if (status != NT_OK) {
        release_views(self);
        nt_py_raise(&err);
        return -1;
    }
    return 0;

fail:
    PyMem_Free(views);
    PyBuffer_Release(&inv_freq);
    release_views(self);
    return -1;
}

static void Model_dealloc(ModelObject *self) {
    nt_model_free(self->model);
    release_views(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

int nt_py_check_model(ModelObject *self) {
    if (self->model == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Model is not initialised");
        return -1;
    }
    return 0;
}

/* forward(input_ids int32 (B,T) | None, position_ids int64 (B,T), attention_mask uint8 (B,S) | None,
 *         keep_positions int64 (K), cache | None, logits float32 (B,K,V) | None,
 *         last_hidden float32 (B,T,H) | None, all_hidden float32 (L+1,B,T,H) | None,
 *         inputs_embeds float32 (B,T,H) | None, attentions float32 (L,B,NH,T,S) | None) */
static PyObject *Model_forward(ModelObject *self, PyObject *args) {
    PyObject *ids_obj, *pos_obj, *mask_obj, *keep_obj, *cache_obj, *logits_obj, *last_obj, *all_obj, *embeds_obj,
        *attentions_obj;
    if (nt_py_check_model(self) < 0 ||
        !PyArg_ParseTuple(args, "OOOOOOOOOO", &ids_obj, &pos_obj, &mask_obj, &keep_obj, &cache_obj, &logits_obj,
                          &last_obj, &all_obj, &embeds_obj, &attentions_obj))
        return NULL;
    const nt_config *c = nt_model_config(self->model);
    Py_buffer ids = {0}, pos = {0}, mask = {0}, keep = {0}, logits = {0}, last = {0}, all = {0}, embeds = {0},
              attentions = {0};
    PyObject *result = NULL;
    CacheObject *cache = NULL;
    int64_t B, T;

    if (ids_obj != Py_None) {
        if (nt_py_get_buffer(ids_obj, &ids, "input_ids", 2, 'i', 0) < 0) goto done;
        B = ids.shape[0], T = ids.shape[1];
    } else if (embeds_obj != Py_None) {
        if (nt_py_get_buffer(embeds_obj, &embeds, "inputs_embeds", 3, 'f', 0) < 0) goto done;
        B = embeds.shape[0], T = embeds.shape[1];
        if (embeds.shape[2] != c->hidden_size) {
            PyErr_Format(PyExc_ValueError, "inputs_embeds must have %lld features", (long long)c->hidden_size);
            goto done;
        }
    } else {
        PyErr_SetString(PyExc_ValueError, "either input_ids or inputs_embeds is needed");
        goto done;
    }
    if (nt_py_get_buffer(pos_obj, &pos, "position_ids", 2, 'q', 0) < 0) goto done;
    if (pos.shape[0] != B || pos.shape[1] != T) {
        PyErr_SetString(PyExc_ValueError, "position_ids must have the shape of input_ids");
        goto done;
    }
    if (cache_obj != Py_None) {
        if (!PyObject_TypeCheck(cache_obj, &CacheType) || ((CacheObject *)cache_obj)->model != (PyObject *)self) {
            PyErr_SetString(PyExc_TypeError, "cache must be a Cache made for this model");
            goto done;
        }
        cache = (CacheObject *)cache_obj;
        if (cache->busy) {
            PyErr_SetString(PyExc_RuntimeError, "this cache is in use by another call");
            cache = NULL;
            goto done;
        }
    }
    int64_t S = (cache ? nt_cache_length(cache->cache) : 0) + T;
    if (mask_obj != Py_None) {
        if (nt_py_get_buffer(mask_obj, &mask, "attention_mask", 2, 'B', 0) < 0) goto done;
        if (mask.shape[0] != B || mask.shape[1] != S) {
            PyErr_Format(PyExc_ValueError, "attention_mask must have shape (%lld, %lld)", (long long)B, (long long)S);
            goto done;
        }
    }
    if (nt_py_get_buffer(keep_obj, &keep, "keep_positions", 1, 'q', 0) < 0) goto done;
    int64_t K = keep.shape[0];
    struct { PyObject *obj; Py_buffer *view; const char *name; int ndim; int writable; int64_t shape[5]; } arrays[] = {
        {logits_obj, &logits, "logits", 3, 1, {B, K, c->vocab_size}},
        {last_obj, &last, "last_hidden", 3, 1, {B, T, c->hidden_size}},
        {all_obj, &all, "all_hidden", 4, 1, {c->num_hidden_layers + 1, B, T, c->hidden_size}},
        {attentions_obj, &attentions, "attentions", 5, 1, {c->num_hidden_layers, B, c->num_attention_heads, T, S}},
        {ids_obj != Py_None ? embeds_obj : Py_None, &embeds, "inputs_embeds", 3, 0, {B, T, c->hidden_size}},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) {
        if (arrays[i].obj == Py_None) continue;
        if (nt_py_get_buffer(arrays[i].obj, arrays[i].view, arrays[i].name, arrays[i].ndim, 'f', arrays[i].writable) < 0)
            goto done;
        for (int d = 0; d < arrays[i].ndim; d++)
            if (arrays[i].view->shape[d] != arrays[i].shape[d]) {
                PyErr_Format(PyExc_ValueError, "%s has the wrong shape", arrays[i].name);
                goto done;
            }
    }
    nt_forward_options options = {embeds.buf, attentions.buf};

    nt_error err = {0};
    nt_status status;
    if (cache) cache->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = nt_model_forward(self->model, &err, logits.buf, last.buf, all.buf, ids.buf, pos.buf, mask.buf,
                              keep.buf, K, B, T, cache ? cache->cache : NULL, &options, NULL);
    Py_END_ALLOW_THREADS
    if (cache) cache->busy = 0;
    if (status != NT_OK) {
        nt_py_raise(&err);
        goto done;
    }
    result = Py_NewRef(Py_None);

done:;
    Py_buffer *views[] = {&ids, &pos, &mask, &keep, &logits, &last, &all, &embeds, &attentions};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (views[i]->obj != NULL) PyBuffer_Release(views[i]);
    return result;
}

static PyObject *Model_get_kernels(ModelObject *self, void *closure) {
    if (nt_py_check_model(self) < 0) return NULL;
    return PyUnicode_FromString(nt_model_kernels_name(self->model));
}

static PyObject *Model_get_num_threads(ModelObject *self, void *closure) {
    if (nt_py_check_model(self) < 0) return NULL;
    return PyLong_FromLong(nt_model_num_threads(self->model));
}

static PyMethodDef Model_methods[] = {
    {"forward", (PyCFunction)Model_forward, METH_VARARGS, "One forward pass into caller-allocated outputs."},
    {NULL},
};

static PyGetSetDef Model_getset[] = {
    {"kernels", (getter)Model_get_kernels, NULL, "Name of the kernel set in use.", NULL},
    {"num_threads", (getter)Model_get_num_threads, NULL, "Threads used by each call.", NULL},
    {NULL},
};

PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nemotron_c._core.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Nemotron decoder built from weight buffers (private).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = Model_methods,
    .tp_getset = Model_getset,
};

/* ---------------------------------------------------------------- Cache */

/* Cache(model, batch_size, capacity=0) */
static int Cache_init(CacheObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "batch_size", "capacity", NULL};
    PyObject *model;
    long long batch_size, capacity = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!L|L", keywords, &ModelType, &model, &batch_size, &capacity))
        return -1;
    if (self->cache != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Cache is already initialised");
        return -1;
    }
    if (nt_py_check_model((ModelObject *)model) < 0) return -1;
    nt_error err = {0};
    nt_status status;
    Py_BEGIN_ALLOW_THREADS
    status = nt_cache_create(&self->cache, &err, ((ModelObject *)model)->model, batch_size, capacity);
    Py_END_ALLOW_THREADS
    if (status != NT_OK) {
        nt_py_raise(&err);
        return -1;
    }
    self->model = Py_NewRef(model);
    return 0;
}

static void Cache_dealloc(CacheObject *self) {
    nt_cache_free(self->cache);
    Py_XDECREF(self->model);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Cache_get_length(CacheObject *self, void *closure) {
    return PyLong_FromLongLong(self->cache ? nt_cache_length(self->cache) : 0);
}

static PyObject *Cache_get_batch_size(CacheObject *self, void *closure) {
    return PyLong_FromLongLong(self->cache ? nt_cache_batch_size(self->cache) : 0);
}

static PyGetSetDef Cache_getset[] = {
    {"length", (getter)Cache_get_length, NULL, "Positions held per sequence.", NULL},
    {"batch_size", (getter)Cache_get_batch_size, NULL, "Sequences held.", NULL},
    {NULL},
};

PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nemotron_c._core.Cache",
    .tp_basicsize = sizeof(CacheObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keys and values of every layer for a batch of sequences (private).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Cache_init,
    .tp_dealloc = (destructor)Cache_dealloc,
    .tp_getset = Cache_getset,
};

int nt_py_register_model(PyObject *module) {
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&CacheType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObjectRef(module, "Cache", (PyObject *)&CacheType) < 0)
        return -1;
    static const struct { const char *name; nt_activation code; } ACTIVATION_CODES[] = {
        {"relu2", NT_ACT_RELU2}, {"relu", NT_ACT_RELU}, {"silu", NT_ACT_SILU}, {"gelu", NT_ACT_GELU},
        {"gelu_tanh", NT_ACT_GELU_TANH}, {"sigmoid", NT_ACT_SIGMOID}, {"gelu_clipped", NT_ACT_GELU_CLIPPED},
        {"quick_gelu", NT_ACT_QUICK_GELU}, {"leaky_relu", NT_ACT_LEAKY_RELU}, {"identity", NT_ACT_IDENTITY},
        {"mish", NT_ACT_MISH}, {"relu6", NT_ACT_RELU6}, {"tanh", NT_ACT_TANH}, {"hardswish", NT_ACT_HARDSWISH},
        {"laplace", NT_ACT_LAPLACE}, {"sqrt_softplus", NT_ACT_SQRT_SOFTPLUS},
    };
    PyObject *activations = PyDict_New();
    for (size_t i = 0; activations != NULL && i < sizeof ACTIVATION_CODES / sizeof *ACTIVATION_CODES; i++) {
        PyObject *code = PyLong_FromLong(ACTIVATION_CODES[i].code);
        if (code == NULL || PyDict_SetItemString(activations, ACTIVATION_CODES[i].name, code) < 0) Py_CLEAR(activations);
        Py_XDECREF(code);
    }
    if (activations == NULL || PyModule_AddObject(module, "ACTIVATIONS", activations) < 0) {
        Py_XDECREF(activations);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "GLOBAL_TENSOR_COUNT", NT_GLOBAL_COUNT) < 0 ||
        PyModule_AddIntConstant(module, "LAYER_TENSOR_COUNT", NT_LAYER_COUNT) < 0)
        return -1;
    return 0;
}
