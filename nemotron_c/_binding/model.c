/* _core.Model and _core.Cache: thin wrappers over nt_model and nt_cache; forward and score run through the
 * cancellable runner of common.c, so Ctrl-C stops them. */
#include "binding.h"

#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------- Model */

static void release_views(ModelObject *self) {
    nt_py_release(self->views, (size_t)self->n_views);
    PyMem_Free(self->views);
    self->views = NULL;
    self->n_views = 0;
}

/* Model(config: dict, tensors: list[(buffer | None, dtype_code, shape[, scales[, bf16_values]])], kernels: str,
 *       num_threads: int)
 * config holds the nt_config fields by name (_core.CONFIG_FIELDS), inv_freq and long_inv_freq as float32 buffers.
 * A dtype whose DTYPE_INFO line is `scaled` (int8, int4) takes its float32 scales (rows, cols / block_size) as a
 * fourth item (None for the others); a true fifth item says a float32 tensor holds only bfloat16 values
 * (nt_tensor.bf16_values). */
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
    Py_buffer *config_views = NULL;
    nt_config c;
    memset(&c, 0, sizeof c);
    Py_ssize_t n = PyList_GET_SIZE(tensors);
    nt_tensor *views = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof *views);
    /* views[i] holds tensor i's buffer, views[n + i] its scales */
    self->views = PyMem_Calloc((size_t)(n > 0 ? 2 * n : 1), sizeof *self->views);
    int result = -1;
    if (views == NULL || self->views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (nt_py_read_fields(&c, nt_config_fields, nt_config_field_count, config, &config_views, "core config") < 0)
        goto done;
    self->n_views = 2 * n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(tensors, i), *buffer, *shape, *scales = Py_None;
        int dtype, bf16_values = 0;
        if (!PyArg_ParseTuple(item, "OiO!|Op;each tensor must be (buffer, dtype_code, shape[, scales[, bf16_values]])",
                              &buffer, &dtype, &PyTuple_Type, &shape, &scales, &bf16_values))
            goto done;
        if (buffer == Py_None) continue;
        if (scales != Py_None) {
            nt_py_array scales_spec = {"scales", 'f', 2, 0, {-1, -1}};
            const nt_dtype_info *info = nt_dtype_get((nt_dtype)dtype);
            if (nt_py_get_array(scales, &self->views[n + i], &scales_spec) < 0) goto done;
            views[i].scales = self->views[n + i].buf;
            views[i].scales_nbytes = (size_t)self->views[n + i].len;
            views[i].group_size = info ? info->block_size : 0; /* the core refuses an unknown dtype */
        }
        if (PyObject_GetBuffer(buffer, &self->views[i], PyBUF_C_CONTIGUOUS) != 0) goto done;
        Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
        if (ndim < 1 || ndim > 2) {
            PyErr_Format(PyExc_ValueError, "tensor %zd must be 1-D or 2-D", i);
            goto done;
        }
        views[i].data = self->views[i].buf;
        views[i].nbytes = (size_t)self->views[i].len;
        views[i].dtype = (nt_dtype)dtype;
        views[i].bf16_values = bf16_values;
        views[i].ndim = (int)ndim;
        for (Py_ssize_t d = 0; d < ndim; d++) {
            views[i].shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
            if (views[i].shape[d] == -1 && PyErr_Occurred()) goto done;
        }
    }
    /* the lengths the table cannot state: inv_freq's and long_inv_freq's follow from rotary_dim */
    for (size_t i = 0; i < nt_config_field_count; i++)
        if ((nt_config_fields[i].offset == offsetof(nt_config, inv_freq) ||
             nt_config_fields[i].offset == offsetof(nt_config, long_inv_freq)) &&
            config_views[i].buf != NULL && config_views[i].shape[0] != c.rotary_dim / 2) {
            PyErr_Format(PyExc_ValueError, "%s must hold rotary_dim / 2 values", nt_config_fields[i].name);
            goto done;
        }

    nt_error err = {0};
    nt_status status;
    Py_BEGIN_ALLOW_THREADS
    status = nt_model_create(&self->model, &err, &c, views, n, kernels, num_threads);
    Py_END_ALLOW_THREADS
    if (status != NT_OK) nt_py_raise(&err);
    else result = 0;

done:
    PyMem_Free(views);
    nt_py_free_views(config_views, nt_config_field_count);
    if (result < 0) release_views(self);
    return result;
}

static void Model_dealloc(ModelObject *self) {
    nt_model_free(self->model);
    release_views(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* What forward and score share: (B, T) tokens or (B, T, H) embeddings, (B, T) positions, a (B, S) mask and the
 * cache that holds the S - T earlier positions. */
typedef struct {
    Py_buffer ids, embeds, positions, mask;
    CacheObject *cache;
    int64_t B, T, S;
} call_inputs;

static int read_inputs(ModelObject *self, call_inputs *in, PyObject *ids, PyObject *embeds, PyObject *positions,
                       PyObject *mask, PyObject *cache) {
    const nt_config *c = nt_model_config(self->model);
    nt_py_array ids_spec = {"input_ids", 'i', 2, embeds ? NT_PY_OPTIONAL : 0, {-1, -1}};
    if (nt_py_get_array(ids, &in->ids, &ids_spec) < 0) return -1;
    int have_ids = in->ids.buf != NULL;
    if (!have_ids && embeds == Py_None) {
        PyErr_SetString(PyExc_TypeError, "input_ids or inputs_embeds is required");
        return -1;
    }
    nt_py_array embeds_spec = {"inputs_embeds", 'f', 3, have_ids ? NT_PY_OPTIONAL : 0,
                               {have_ids ? in->ids.shape[0] : -1, have_ids ? in->ids.shape[1] : -1, c->hidden_size}};
    if (nt_py_get_array(embeds, &in->embeds, &embeds_spec) < 0) return -1;
    in->B = have_ids ? in->ids.shape[0] : in->embeds.shape[0];
    in->T = have_ids ? in->ids.shape[1] : in->embeds.shape[1];
    if (nt_py_get_cache(cache, &in->cache) < 0) return -1;
    in->S = (in->cache ? nt_cache_length(in->cache->cache) : 0) + in->T;
    nt_py_array positions_spec = {"position_ids", 'q', 2, 0, {in->B, in->T}};
    nt_py_array mask_spec = {"attention_mask", 'B', 2, NT_PY_OPTIONAL, {in->B, in->S}};
    return nt_py_get_array(positions, &in->positions, &positions_spec) < 0 ||
                   nt_py_get_array(mask, &in->mask, &mask_spec) < 0
               ? -1
               : 0;
}

typedef struct {
    nt_model *model;
    call_inputs *in;
    Py_buffer keep, logits, last_hidden, all_hidden, attentions, targets, logprobs;
} model_call;

static nt_status run_forward(void *ctx, nt_error *err, const volatile int *cancel) {
    model_call *m = ctx;
    call_inputs *in = m->in;
    nt_forward_options options = {in->embeds.buf, m->attentions.buf};
    return nt_model_forward(m->model, err, m->logits.buf, m->last_hidden.buf, m->all_hidden.buf, in->ids.buf,
                            in->positions.buf, in->mask.buf, m->keep.buf, m->keep.shape[0], in->B, in->T,
                            in->cache ? in->cache->cache : NULL, &options, cancel);
}

static nt_status run_score(void *ctx, nt_error *err, const volatile int *cancel) {
    model_call *m = ctx;
    call_inputs *in = m->in;
    return nt_model_score(m->model, err, m->logprobs.buf, in->ids.buf, in->positions.buf, in->mask.buf,
                          m->targets.buf, in->B, in->T, in->cache ? in->cache->cache : NULL, cancel);
}

static PyObject *finish_call(call_inputs *in, model_call *m, int status) {
    Py_buffer *views[] = {&in->ids, &in->embeds, &in->positions, &in->mask, &m->keep, &m->logits, &m->last_hidden,
                          &m->all_hidden, &m->attentions, &m->targets, &m->logprobs};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) nt_py_release(views[i], 1);
    return status < 0 ? NULL : Py_NewRef(Py_None);
}

/* forward(*, input_ids int32 (B,T) | inputs_embeds float32 (B,T,H), position_ids int64 (B,T),
 *         attention_mask uint8 (B,S) = None, cache = None, keep_positions int64 (K),
 *         logits float32 (B,K,V) = None, last_hidden float32 (B,T,H) = None,
 *         all_hidden float32 (L+1,B,T,H) = None, attentions float32 (L,B,NH,T,S) = None)
 * Fills the outputs given, in place (see nt_model_forward). */
static PyObject *Model_forward(ModelObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"input_ids", "inputs_embeds", "position_ids", "attention_mask", "cache",
                               "keep_positions", "logits", "last_hidden", "all_hidden", "attentions", NULL};
    PyObject *ids = NULL, *embeds = NULL, *positions = NULL, *mask = NULL, *cache = NULL, *keep = NULL,
             *outs[4] = {NULL};
    if (nt_py_check_model(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOOOOOO:forward", keywords, &ids, &embeds, &positions,
                                     &mask, &cache, &keep, &outs[0], &outs[1], &outs[2], &outs[3]))
        return NULL;
    const nt_config *c = nt_model_config(self->model);
    call_inputs in = {0};
    model_call m = {.model = self->model, .in = &in};
    if (read_inputs(self, &in, ids, embeds ? embeds : Py_None, positions, mask, cache) < 0)
        return finish_call(&in, &m, -1);
    nt_py_array keep_spec = {"keep_positions", 'q', 1, 0, {-1}};
    if (nt_py_get_array(keep, &m.keep, &keep_spec) < 0) return finish_call(&in, &m, -1);
    int64_t B = in.B, T = in.T, S = in.S, K = m.keep.shape[0], H = c->hidden_size, L = c->num_hidden_layers;
    const int flags = NT_PY_WRITABLE | NT_PY_OPTIONAL;
    const nt_py_array specs[4] = {
        {"logits", 'f', 3, flags, {B, K, c->vocab_size}},
        {"last_hidden", 'f', 3, flags, {B, T, H}},
        {"all_hidden", 'f', 4, flags, {L + 1, B, T, H}},
        {"attentions", 'f', 5, flags, {L, B, c->num_attention_heads, T, S}},
    };
    Py_buffer *views[4] = {&m.logits, &m.last_hidden, &m.all_hidden, &m.attentions};
    for (int i = 0; i < 4; i++)
        if (nt_py_get_array(outs[i], views[i], &specs[i]) < 0) return finish_call(&in, &m, -1);
    return finish_call(&in, &m, nt_py_run(run_forward, &m, in.cache));
}

/* score(*, input_ids int32 (B,T), position_ids int64 (B,T), targets int32 (B,T), logprobs float32 (B,T),
 *       attention_mask uint8 (B,S) = None, cache = None)
 * Writes the log-probability of each target into logprobs (see nt_model_score). */
static PyObject *Model_score(ModelObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"input_ids", "position_ids", "targets", "logprobs", "attention_mask", "cache", NULL};
    PyObject *ids = NULL, *positions = NULL, *targets = NULL, *logprobs = NULL, *mask = NULL, *cache = NULL;
    if (nt_py_check_model(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOO:score", keywords, &ids, &positions, &targets,
                                     &logprobs, &mask, &cache))
        return NULL;
    call_inputs in = {0};
    model_call m = {.model = self->model, .in = &in};
    if (read_inputs(self, &in, ids, NULL, positions, mask, cache) < 0) return finish_call(&in, &m, -1);
    nt_py_array targets_spec = {"targets", 'i', 2, 0, {in.B, in.T}};
    nt_py_array logprobs_spec = {"logprobs", 'f', 2, NT_PY_WRITABLE, {in.B, in.T}};
    if (nt_py_get_array(targets, &m.targets, &targets_spec) < 0 ||
        nt_py_get_array(logprobs, &m.logprobs, &logprobs_spec) < 0)
        return finish_call(&in, &m, -1);
    return finish_call(&in, &m, nt_py_run(run_score, &m, in.cache));
}

static PyObject *Model_get_kernels(ModelObject *self, void *closure) {
    if (nt_py_check_model(self) < 0) return NULL;
    return PyUnicode_FromString(nt_model_kernels_name(self->model));
}

static PyObject *Model_get_num_threads(ModelObject *self, void *closure) {
    if (nt_py_check_model(self) < 0) return NULL;
    return PyLong_FromLong(nt_model_num_threads(self->model));
}

static PyObject *Model_get_cache_dtype(ModelObject *self, void *closure) {
    if (nt_py_check_model(self) < 0) return NULL;
    return PyLong_FromLong((long)nt_model_cache_dtype(self->model));
}

/* set_cache_dtype(dtype_code): the dtype of the caches the model makes from now on */
static PyObject *Model_set_cache_dtype(ModelObject *self, PyObject *arg) {
    if (nt_py_check_model(self) < 0) return NULL;
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred()) return NULL;
    nt_error err = {0};
    if (code < 0 || code >= NT_DTYPE_COUNT)
        nt_error_set(&err, NT_ERROR_INVALID_ARGUMENT, "unknown dtype code %ld", code);
    else if (nt_model_set_cache_dtype(self->model, &err, (nt_dtype)code) == NT_OK)
        Py_RETURN_NONE;
    nt_py_raise(&err);
    return NULL;
}

/* rope_frequencies(length) -> list of float: the rotary inverse frequencies of a call of that length */
static PyObject *Model_rope_frequencies(ModelObject *self, PyObject *arg) {
    if (nt_py_check_model(self) < 0) return NULL;
    long long length = PyLong_AsLongLong(arg);
    if (length == -1 && PyErr_Occurred()) return NULL;
    if (length < 1) return PyErr_Format(PyExc_ValueError, "length must be positive, got %lld", length);
    int64_t half = nt_model_config(self->model)->rotary_dim / 2;
    float *inv_freq = PyMem_Malloc((size_t)(half > 0 ? half : 1) * sizeof(float));
    if (inv_freq == NULL) return PyErr_NoMemory();
    nt_model_rope_frequencies(self->model, length, inv_freq);
    PyObject *list = PyList_New(half);
    for (int64_t i = 0; list != NULL && i < half; i++) {
        PyObject *value = PyFloat_FromDouble(inv_freq[i]);
        if (value == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, value);
    }
    PyMem_Free(inv_freq);
    return list;
}

static PyMethodDef Model_methods[] = {
    {"rope_frequencies", (PyCFunction)Model_rope_frequencies, METH_O,
     "The rotary inverse frequencies of a call of that length (the largest position id + 1), leaving the length a "
     "dynamic rope keeps alone."},
    {"set_cache_dtype", (PyCFunction)Model_set_cache_dtype, METH_O,
     "Sets the dtype code of the caches the model makes from now on (float32 or bfloat16)."},
    {"forward", (PyCFunction)(void (*)(void))Model_forward, METH_VARARGS | METH_KEYWORDS,
     "One forward pass into caller-allocated outputs."},
    {"score", (PyCFunction)(void (*)(void))Model_score, METH_VARARGS | METH_KEYWORDS,
     "Log-probabilities of target tokens into a caller-allocated (B, T) array."},
    {NULL},
};

static PyGetSetDef Model_getset[] = {
    {"kernels", (getter)Model_get_kernels, NULL, "Name of the kernel set in use.", NULL},
    {"num_threads", (getter)Model_get_num_threads, NULL, "Threads used by each call.", NULL},
    {"cache_dtype", (getter)Model_get_cache_dtype, NULL, "Dtype code of the caches the model makes.", NULL},
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

static PyObject *Cache_get_num_layers(CacheObject *self, void *closure) {
    return PyLong_FromLongLong(self->cache ? nt_cache_num_layers(self->cache) : 0);
}

static PyObject *Cache_get_num_kv_heads(CacheObject *self, void *closure) {
    return PyLong_FromLongLong(self->cache ? nt_cache_num_kv_heads(self->cache) : 0);
}

static PyObject *Cache_get_head_dim(CacheObject *self, void *closure) {
    return PyLong_FromLongLong(self->cache ? nt_cache_head_dim(self->cache) : 0);
}

static PyObject *Cache_get_dtype(CacheObject *self, void *closure) {
    return PyLong_FromLong(self->cache ? (long)nt_cache_dtype(self->cache) : (long)NT_DTYPE_F32);
}

/* Sets RuntimeError and returns -1 unless the cache is initialised and no call is using it. */
static int cache_ready(CacheObject *self) {
    if (self->cache == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Cache is not initialised");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this cache is in use by another call");
        return -1;
    }
    return 0;
}

/* As cache_ready, for the calls that change the cache: not while a Generator extends it (between its steps, a
 * streamer's or a stopping criterion's Python code could otherwise crop or reorder what the next step reads). */
static int cache_mutable(CacheObject *self) {
    if (cache_ready(self) < 0) return -1;
    if (self->held) {
        PyErr_SetString(PyExc_RuntimeError, "this cache is being extended by a generate() in progress");
        return -1;
    }
    return 0;
}

/* crop(length): keeps the first `length` positions (see nt_cache_crop) */
static PyObject *Cache_crop(CacheObject *self, PyObject *args) {
    long long length;
    if (!PyArg_ParseTuple(args, "L:crop", &length) || cache_mutable(self) < 0) return NULL;
    nt_error err = {0};
    if (nt_cache_crop(self->cache, &err, length) != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

/* select(rows int64 (n)): the cache then holds sequences rows[0], ..., rows[n-1] (see nt_cache_select) */
static PyObject *Cache_select(CacheObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer rows;
    if (!PyArg_ParseTuple(args, "O:select", &obj) || cache_mutable(self) < 0) return NULL;
    const nt_py_array spec = {"rows", 'q', 1, 0, {-1}};
    if (nt_py_get_array(obj, &rows, &spec) < 0) return NULL;
    nt_error err = {0};
    nt_status status;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = nt_cache_select(self->cache, &err, rows.buf, rows.shape[0]);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&rows);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

/* copy() -> Cache: a new cache of the same model with these contents */
static PyObject *Cache_copy(CacheObject *self, PyObject *unused) {
    if (cache_ready(self) < 0) return NULL;
    CacheObject *copy = (CacheObject *)CacheType.tp_alloc(&CacheType, 0);
    if (copy == NULL) return NULL;
    nt_error err = {0};
    nt_status status;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = nt_cache_copy(&copy->cache, &err, self->cache);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (status != NT_OK) {
        Py_DECREF(copy);
        return nt_py_raise(&err);
    }
    copy->model = Py_NewRef(self->model);
    return (PyObject *)copy;
}

/* read(layer, values, out float32 (B, NKV, P, D)): fills out with the layer's keys (values false) or values,
 * bfloat16 ones widened to float32 */
static PyObject *Cache_read(CacheObject *self, PyObject *args) {
    long long layer;
    int values;
    PyObject *obj;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "LpO:read", &layer, &values, &obj) || cache_ready(self) < 0) return NULL;
    const nt_py_array spec = {"out", 'f', 4, NT_PY_WRITABLE,
                              {nt_cache_batch_size(self->cache), nt_cache_num_kv_heads(self->cache),
                               nt_cache_length(self->cache), nt_cache_head_dim(self->cache)}};
    if (nt_py_get_array(obj, &out, &spec) < 0) return NULL;
    nt_error err = {0};
    nt_status status;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = nt_cache_read(self->cache, &err, layer, values, out.buf, (int64_t)(out.len / (Py_ssize_t)sizeof(float)));
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&out);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

static PyMethodDef Cache_methods[] = {
    {"crop", (PyCFunction)Cache_crop, METH_VARARGS, "Keeps the first `length` positions of every sequence."},
    {"select", (PyCFunction)Cache_select, METH_VARARGS,
     "Keeps the sequences listed in rows (int64), in that order, repeats allowed."},
    {"copy", (PyCFunction)Cache_copy, METH_NOARGS, "A new Cache of the same model with these contents."},
    {"read", (PyCFunction)Cache_read, METH_VARARGS,
     "Fills out (float32 (B, NKV, P, D)) with a layer's keys (values=False) or values."},
    {NULL},
};

static PyGetSetDef Cache_getset[] = {
    {"length", (getter)Cache_get_length, NULL, "Positions held per sequence.", NULL},
    {"batch_size", (getter)Cache_get_batch_size, NULL, "Sequences held.", NULL},
    {"num_layers", (getter)Cache_get_num_layers, NULL, "Layers held.", NULL},
    {"num_key_value_heads", (getter)Cache_get_num_kv_heads, NULL, "Key/value heads of a layer.", NULL},
    {"head_dim", (getter)Cache_get_head_dim, NULL, "Values of a key or value head.", NULL},
    {"dtype", (getter)Cache_get_dtype, NULL, "Dtype code of the keys and values stored.", NULL},
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
    .tp_methods = Cache_methods,
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
