/* _core.Generator: a thin wrapper over nt_generator. Policy (defaults, validation) lives in
 * nemotron_c/generation.py; this file reads the resolved settings through the core's table, holds the output
 * buffers and runs steps through the cancellable runner of common.c. */
#include "binding.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    nt_generator *generator;
    PyObject *model;      /* keeps the model alive */
    CacheObject *cache;   /* a caller's cache the generator extends, or NULL */
    Py_buffer outputs[7]; /* sequences, scores, logits, sequence_scores, beam_indices, running_parents,
                             running_tokens */
    int64_t rows;         /* N */
    int busy;
    PyObject *hook;       /* the caller's processors: hook(stage, ids bytes, rows, length, scores bytes) -> scores */
    PyObject *stop_hook;  /* beam search's stopping criteria: stop_hook(ids bytes, rows, length) -> hits (rows) */
    PyObject *hook_error; /* the exception a hook raised on the worker thread, re-raised by run() */
} GeneratorObject;

/* the length of a token-list setting (0 when absent), for the checks the table cannot state */
static int64_t setting_length(const Py_buffer *views, size_t offset) {
    for (size_t i = 0; i < nt_generation_config_field_count; i++)
        if (nt_generation_config_fields[i].offset == offset) return views[i].buf ? views[i].shape[0] : 0;
    return 0;
}

enum { INPUT_IDS, ATTENTION_MASK, POSITION_IDS, SEQUENCES, SCORES, LOGITS, SEQUENCE_SCORES, BEAM_INDICES,
       RUNNING_PARENTS, RUNNING_TOKENS, CACHE, N_ARGS };
static const char *const ARG_NAMES[N_ARGS] = {"input_ids", "attention_mask", "position_ids", "sequences", "scores",
                                              "logits", "sequence_scores", "beam_indices", "running_parents",
                                              "running_tokens", "cache"};

/* Generator(model, *, input_ids int64 (N,T), attention_mask uint8 (N,T) = None, position_ids int64 (N,T) = None,
 *           sequences int64,
 *           scores f32 = None, logits f32 = None, sequence_scores f32 = None, beam_indices int64 = None,
 *           running_parents int64 = None, running_tokens int64 = None,
 *           cache = None, **settings) -- output shapes as nt_generation_outputs; cache: a Cache of this model
 *           holding the prompts' first positions; settings: nt_generation_config's fields by name
 *           (_core.GENERATION_SETTINGS), each absent one at its default. */
static int Generator_init(GeneratorObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *model;
    if (!PyArg_ParseTuple(args, "O!", &ModelType, &model)) return -1;
    if (self->generator != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Generator is already initialised");
        return -1;
    }
    if (nt_py_check_model((ModelObject *)model) < 0) return -1;
    PyObject *settings = kwargs ? PyDict_Copy(kwargs) : PyDict_New(), *arg[N_ARGS] = {NULL};
    if (settings == NULL) return -1;
    Py_buffer ids = {0}, mask = {0}, positions = {0}, *setting_views = NULL;
    CacheObject *cache = NULL;
    nt_generation_config c;
    memset(&c, 0, sizeof c);
    int result = -1;
    for (int i = 0; i < N_ARGS; i++) {
        arg[i] = Py_XNewRef(PyDict_GetItemString(settings, ARG_NAMES[i]));
        if (arg[i] != NULL && PyDict_DelItemString(settings, ARG_NAMES[i]) < 0) goto done;
    }
    if (nt_py_get_cache(arg[CACHE], &cache) < 0 ||
        nt_py_read_fields(&c, nt_generation_config_fields, nt_generation_config_field_count, settings,
                          &setting_views, "generation config") < 0)
        goto done;
    nt_py_array ids_spec = {"input_ids", 'q', 2, 0, {-1, -1}};
    if (nt_py_get_array(arg[INPUT_IDS], &ids, &ids_spec) < 0) goto done;
    int64_t N = ids.shape[0], T = ids.shape[1];
    nt_py_array mask_spec = {"attention_mask", 'B', 2, NT_PY_OPTIONAL, {N, T}};
    if (nt_py_get_array(arg[ATTENTION_MASK], &mask, &mask_spec) < 0) goto done;
    nt_py_array positions_spec = {"position_ids", 'q', 2, NT_PY_OPTIONAL, {N, T}};
    if (nt_py_get_array(arg[POSITION_IDS], &positions, &positions_spec) < 0) goto done;
    int64_t n_padding = setting_length(setting_views, offsetof(nt_generation_config, prompt_padding));
    if (c.prompt_padding != NULL && n_padding != N) {
        PyErr_SetString(PyExc_ValueError, "prompt_padding must hold one value per row");
        goto done;
    }
    if ((c.n_bad_words > 0 && c.bad_word_ends[c.n_bad_words - 1] >
                                  setting_length(setting_views, offsetof(nt_generation_config, bad_words))) ||
        (c.n_sequence_bias > 0 && c.sequence_bias_ends[c.n_sequence_bias - 1] >
                                      setting_length(setting_views, offsetof(nt_generation_config, sequence_bias)))) {
        PyErr_SetString(PyExc_ValueError, "bad_word_ends or sequence_bias_ends point past their tokens");
        goto done;
    }

    const nt_config *mc = nt_model_config(((ModelObject *)model)->model);
    int64_t NB = c.num_beams > 0 ? c.num_beams : 1, B = N / NB, G = c.max_length - T, V = mc->vocab_size;
    int beams = NB > 1;
    const int flags = NT_PY_WRITABLE | NT_PY_OPTIONAL;
    const nt_py_array specs[7] = {
        {"sequences", 'q', beams ? 3 : 2, NT_PY_WRITABLE, {beams ? B : N, beams ? NB : c.max_length, c.max_length}},
        {"scores", 'f', 3, flags, {G, N, V}},
        {"logits", 'f', 3, flags, {G, N, V}},
        {"sequence_scores", 'f', 2, flags, {B, NB}},
        {"beam_indices", 'q', 3, flags, {B, NB, G}},
        {"running_parents", 'q', 2, flags, {G, N}},
        {"running_tokens", 'q', 2, flags, {G, N}},
    };
    for (int i = 0; i < 7; i++)
        if (nt_py_get_array(arg[SEQUENCES + i], &self->outputs[i], &specs[i]) < 0) goto done;
    nt_generation_outputs o = {self->outputs[0].buf, self->outputs[1].buf, self->outputs[2].buf,
                               self->outputs[3].buf, self->outputs[4].buf, self->outputs[5].buf,
                               self->outputs[6].buf};
    nt_error err = {0};
    nt_status status;
    if (cache) cache->held = 1; /* before the GIL goes: no other call may change it while the generator reads it */
    Py_BEGIN_ALLOW_THREADS
    status = nt_generator_create(&self->generator, &err, ((ModelObject *)model)->model, &c, &o, ids.buf,
                                 mask.buf, positions.buf, N, T, cache ? cache->cache : NULL);
    Py_END_ALLOW_THREADS
    if (status != NT_OK) {
        if (cache) cache->held = 0;
        nt_py_raise(&err);
        goto done;
    }
    self->rows = N;
    self->model = Py_NewRef(model);
    self->cache = cache ? (CacheObject *)Py_NewRef((PyObject *)cache) : NULL;
    result = 0;

done:
    if (result < 0) nt_py_release(self->outputs, 7);
    nt_py_release(&ids, 1);
    nt_py_release(&mask, 1);
    nt_py_release(&positions, 1);
    nt_py_free_views(setting_views, nt_generation_config_field_count);
    for (int i = 0; i < N_ARGS; i++) Py_XDECREF(arg[i]);
    Py_DECREF(settings);
    return result;
}

/* A caller's cache is held from the generator's creation until it is done (or gone). */
static void release_cache(GeneratorObject *self) {
    if (self->cache) self->cache->held = 0;
}

static void Generator_dealloc(GeneratorObject *self) {
    release_cache(self);
    Py_XDECREF(self->hook);
    Py_XDECREF(self->stop_hook);
    Py_XDECREF(self->hook_error);
    nt_generator_free(self->generator);
    nt_py_release(self->outputs, 7);
    Py_XDECREF(self->model);
    Py_XDECREF((PyObject *)self->cache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_ready(GeneratorObject *self) {
    if (self->generator == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Generator is not initialised");
        return -1;
    }
    if (self->busy || (self->cache && self->cache->busy)) {
        PyErr_SetString(PyExc_RuntimeError, "this Generator or its cache is in use by another call");
        return -1;
    }
    return 0;
}

typedef struct {
    nt_generator *generator;
    long long max_steps;
} run_call;

static nt_status run_steps(void *ctx, nt_error *err, const volatile int *cancel) {
    run_call *call = ctx;
    return nt_generator_run(call->generator, err, call->max_steps, cancel);
}

/* run(max_steps=-1) -> done: steps until done or max_steps (< 0: no limit). Ctrl-C raises KeyboardInterrupt
 * within one layer of the forward pass; the Generator is then finished and the model unaffected. */
static PyObject *Generator_run(GeneratorObject *self, PyObject *args) {
    run_call call = {self->generator, -1};
    if (!PyArg_ParseTuple(args, "|L", &call.max_steps) || check_ready(self) < 0) return NULL;
    self->busy = 1;
    int status = nt_py_run(run_steps, &call, self->cache);
    self->busy = 0;
    if (self->hook_error != NULL) {
        /* the hook's own exception, unless Ctrl-C came meanwhile */
        if (status < 0 && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
            PyObject *error = Py_NewRef(self->hook_error);
            PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(error)), error, PyException_GetTraceback(error));
        }
        Py_CLEAR(self->hook_error);
    }
    int done = nt_generator_done(self->generator);
    if (status < 0 || done) release_cache(self); /* after an error the generator is finished too */
    return status < 0 ? NULL : PyBool_FromLong(done);
}

/* stop_rows(rows uint8 (N)): marks rows finished, as a stopping criterion does */
static PyObject *Generator_stop_rows(GeneratorObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer rows;
    if (!PyArg_ParseTuple(args, "O", &obj) || check_ready(self) < 0) return NULL;
    const nt_py_array spec = {"rows", 'B', 1, 0, {self->rows}};
    if (nt_py_get_array(obj, &rows, &spec) < 0) return NULL;
    nt_error err = {0};
    nt_status status = nt_generator_stop_rows(self->generator, &err, rows.buf);
    PyBuffer_Release(&rows);
    if (nt_generator_done(self->generator)) release_cache(self);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

/* take_cache() -> Cache: the generator's cache, which the Generator gives up (it is finished afterwards) */
static PyObject *Generator_take_cache(GeneratorObject *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    CacheObject *cache = (CacheObject *)CacheType.tp_alloc(&CacheType, 0);
    if (cache == NULL) return NULL;
    cache->cache = nt_generator_take_cache(self->generator);
    if (cache->cache == NULL) {
        Py_DECREF(cache);
        PyErr_SetString(PyExc_RuntimeError, "the cache was already taken, or is the caller's");
        return NULL;
    }
    cache->model = Py_NewRef(self->model);
    return (PyObject *)cache;
}

/* prefilled(logits f32 (N, V), context, uncached=0) -- nt_generator_prefilled: the cache given holds the whole
 * prompt but its first `uncached` tokens, whose last logits these are; the rows' first `context` positions are
 * embeddings, not tokens */
static PyObject *Generator_prefilled(GeneratorObject *self, PyObject *args) {
    PyObject *obj;
    long long context, uncached = 0;
    if (!PyArg_ParseTuple(args, "OL|L", &obj, &context, &uncached) || check_ready(self) < 0) return NULL;
    const nt_config *mc = nt_model_config(((ModelObject *)self->model)->model);
    const nt_py_array spec = {"logits", 'f', 2, 0, {self->rows, mc->vocab_size}};
    Py_buffer logits;
    if (nt_py_get_array(obj, &logits, &spec) < 0) return NULL;
    nt_error err = {0};
    nt_status status = nt_generator_prefilled(self->generator, &err, logits.buf, context, uncached);
    PyBuffer_Release(&logits);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

/* The exception a hook raised (set), kept for run() to raise on the calling thread. */
static nt_status keep_hook_error(GeneratorObject *self, nt_error *err, const char *what) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) PyException_SetTraceback(value, traceback);
    Py_XSETREF(self->hook_error, value);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return nt_error_set(err, NT_ERROR_INTERNAL, "%s", what);
}

/* A hook's arguments and status, for the call made on the caller's thread (nt_py_call_on_caller). */
typedef struct {
    GeneratorObject *self;
    nt_error *err;
    int stage;
    const int64_t *ids;
    int64_t stride, rows, length, V;
    float *scores;
    uint8_t *hits;
    nt_status status;
} hook_call;

/* The stop hook, on the caller's thread as the processor hook: stop_hook(ids, rows, length) with a copy of the
 * candidates (int64 bytes), what it returns (a uint8 or bool buffer of (rows)) copied into hits. */
static void stop_hook_body(void *arg) {
    hook_call *c = arg;
    GeneratorObject *self = c->self;
    nt_error *err = c->err;
    const int64_t *ids = c->ids;
    int64_t rows = c->rows, length = c->length;
    uint8_t *hits = c->hits;
    nt_status status = NT_OK;
    PyObject *id_bytes = PyBytes_FromStringAndSize((const char *)ids,
                                                   (Py_ssize_t)(rows * length) * (Py_ssize_t)sizeof(int64_t));
    PyObject *result = id_bytes == NULL ? NULL
                                        : PyObject_CallFunction(self->stop_hook, "OLL", id_bytes, (long long)rows,
                                                                (long long)length);
    if (result != NULL) {
        Py_buffer view;
        const nt_py_array spec = {"the stopping criteria's hits", 'B', 1, 0, {rows}};
        if (nt_py_get_array(result, &view, &spec) == 0) {
            memcpy(hits, view.buf, (size_t)rows);
            PyBuffer_Release(&view);
        }
    }
    if (PyErr_Occurred()) status = keep_hook_error(self, err, "a stopping criterion raised");
    Py_XDECREF(result);
    Py_XDECREF(id_bytes);
    c->status = status;
}

static nt_status call_stop_hook(void *ctx, nt_error *err, const int64_t *ids, int64_t rows, int64_t length,
                                uint8_t *hits) {
    hook_call c = {.self = ctx, .err = err, .ids = ids, .rows = rows, .length = length, .hits = hits};
    nt_py_call_on_caller(stop_hook_body, &c);
    return c.status;
}

/* set_stop_hook(hook): beam search's stopping criteria, hook(ids bytes, rows, length) -> uint8 hits (rows) over
 * every step's candidates; before the first step */
static PyObject *Generator_set_stop_hook(GeneratorObject *self, PyObject *args) {
    PyObject *hook;
    if (!PyArg_ParseTuple(args, "O", &hook) || check_ready(self) < 0) return NULL;
    if (!PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "the stop hook must be callable");
        return NULL;
    }
    nt_error err = {0};
    nt_status status = nt_generator_set_stop_hook(self->generator, &err, call_stop_hook, self);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_XSETREF(self->stop_hook, Py_NewRef(hook));
    Py_RETURN_NONE;
}

/* The processor hook, on the thread that called run() (which waits for the step meanwhile), as Transformers runs
 * processors: hook(stage, ids, rows, length, scores) called with copies of the rows' ids (int64) and of the scores
 * (float32) as bytes, and what it returns (a float32 buffer of (rows, V)) copied back. */
static void hook_body(void *arg) {
    hook_call *c = arg;
    GeneratorObject *self = c->self;
    nt_error *err = c->err;
    const int64_t *ids = c->ids;
    int64_t stride = c->stride, rows = c->rows, length = c->length, V = c->V;
    float *scores = c->scores;
    int stage = c->stage;
    nt_status status = NT_OK;
    PyObject *id_bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(rows * length) * (Py_ssize_t)sizeof(int64_t));
    PyObject *score_bytes = PyBytes_FromStringAndSize((const char *)scores,
                                                      (Py_ssize_t)(rows * V) * (Py_ssize_t)sizeof(float));
    PyObject *result = NULL;
    if (id_bytes != NULL && score_bytes != NULL) {
        int64_t *dst = (int64_t *)PyBytes_AS_STRING(id_bytes);
        for (int64_t r = 0; r < rows; r++) memcpy(dst + r * length, ids + r * stride, (size_t)length * sizeof(int64_t));
        result = PyObject_CallFunction(self->hook, "iOLLO", stage, id_bytes, (long long)rows, (long long)length,
                                       score_bytes);
    }
    if (result != NULL) {
        Py_buffer view;
        const nt_py_array spec = {"the scores of the logits processors", 'f', 2, 0, {rows, V}};
        if (nt_py_get_array(result, &view, &spec) == 0) {
            memcpy(scores, view.buf, (size_t)(rows * V) * sizeof(float));
            PyBuffer_Release(&view);
        }
    }
    if (PyErr_Occurred()) status = keep_hook_error(self, err, "a logits processor raised");
    Py_XDECREF(result);
    Py_XDECREF(id_bytes);
    Py_XDECREF(score_bytes);
    c->status = status;
}

static nt_status call_hook(void *ctx, nt_error *err, int stage, const int64_t *ids, int64_t stride, int64_t rows,
                           int64_t length, float *scores, int64_t V) {
    hook_call c = {.self = ctx, .err = err, .stage = stage, .ids = ids, .stride = stride, .rows = rows,
                   .length = length, .V = V, .scores = scores};
    nt_py_call_on_caller(hook_body, &c);
    return c.status;
}

/* set_processor_hook(hook, stages): hook(stage, ids bytes, rows, length, scores bytes) -> float32 (rows, V), called
 * after each stage of the bit set `stages` (nt_processor_stage) of every step; before the first step */
static PyObject *Generator_set_processor_hook(GeneratorObject *self, PyObject *args) {
    PyObject *hook;
    unsigned long stages;
    if (!PyArg_ParseTuple(args, "Ok", &hook, &stages) || check_ready(self) < 0) return NULL;
    if (!PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "the processor hook must be callable");
        return NULL;
    }
    nt_error err = {0};
    nt_status status = nt_generator_set_processor_hook(self->generator, &err, call_hook, self, (uint32_t)stages);
    if (status != NT_OK) return nt_py_raise(&err);
    Py_XSETREF(self->hook, Py_NewRef(hook));
    Py_RETURN_NONE;
}

/* process(ids int64 (N, length), scores f32 (N, V)) -- nt_generator_process: the step's logits processors on
 * scores in place, for rows of those tokens; the generator is unchanged. On the calling thread, GIL held (a
 * processor hook takes it again). */
static PyObject *Generator_process(GeneratorObject *self, PyObject *args) {
    PyObject *ids_obj, *scores_obj;
    if (!PyArg_ParseTuple(args, "OO", &ids_obj, &scores_obj) || check_ready(self) < 0) return NULL;
    const nt_config *mc = nt_model_config(((ModelObject *)self->model)->model);
    const nt_py_array id_spec = {"ids", 'q', 2, 0, {self->rows, -1}};
    const nt_py_array score_spec = {"scores", 'f', 2, NT_PY_WRITABLE, {self->rows, mc->vocab_size}};
    Py_buffer ids, scores;
    if (nt_py_get_array(ids_obj, &ids, &id_spec) < 0) return NULL;
    if (nt_py_get_array(scores_obj, &scores, &score_spec) < 0) {
        PyBuffer_Release(&ids);
        return NULL;
    }
    nt_error err = {0};
    self->busy = 1;
    nt_status status = nt_generator_process(self->generator, &err, ids.buf, (int64_t)ids.shape[1], scores.buf);
    self->busy = 0;
    PyBuffer_Release(&ids);
    PyBuffer_Release(&scores);
    if (self->hook_error != NULL) {
        PyObject *error = self->hook_error;
        self->hook_error = NULL;
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(error)), error, PyException_GetTraceback(error));
        return NULL;
    }
    if (status != NT_OK) return nt_py_raise(&err);
    Py_RETURN_NONE;
}

static PyObject *Generator_beam_output_length(GeneratorObject *self, PyObject *args) {
    long long n;
    if (!PyArg_ParseTuple(args, "L", &n) || check_ready(self) < 0) return NULL;
    return PyLong_FromLongLong(nt_generator_beam_output_length(self->generator, n));
}

static PyObject *Generator_get_length(GeneratorObject *self, void *closure) {
    return PyLong_FromLongLong(self->generator ? nt_generator_length(self->generator) : 0);
}

static PyObject *Generator_get_steps(GeneratorObject *self, void *closure) {
    return PyLong_FromLongLong(self->generator ? nt_generator_steps(self->generator) : 0);
}

static PyObject *Generator_get_done(GeneratorObject *self, void *closure) {
    return PyBool_FromLong(self->generator ? nt_generator_done(self->generator) : 1);
}

static PyMethodDef Generator_methods[] = {
    {"run", (PyCFunction)Generator_run, METH_VARARGS, "Runs decoding steps; returns whether generation is done."},
    {"stop_rows", (PyCFunction)Generator_stop_rows, METH_VARARGS, "Marks rows as finished."},
    {"take_cache", (PyCFunction)Generator_take_cache, METH_NOARGS, "Hands over the cache; the Generator is done."},
    {"prefilled", (PyCFunction)Generator_prefilled, METH_VARARGS,
     "Starts from a prompt the caller ran: its last logits, how many leading positions are embeddings and how many "
     "leading tokens are not in the cache."},
    {"set_stop_hook", (PyCFunction)Generator_set_stop_hook, METH_VARARGS,
     "Beam search: calls hook(ids, rows, length) -> hits over the candidates of every step."},
    {"set_processor_hook", (PyCFunction)Generator_set_processor_hook, METH_VARARGS,
     "Calls hook(stage, ids, rows, length, scores) -> scores after the given stages of every step."},
    {"process", (PyCFunction)Generator_process, METH_VARARGS,
     "Runs the step's logits processors on scores (N, V) in place, for rows of the given ids (N, length)."},
    {"beam_output_length", (PyCFunction)Generator_beam_output_length, METH_VARARGS,
     "New tokens of the longest of the first n hypotheses of every prompt."},
    {NULL},
};

static PyGetSetDef Generator_getset[] = {
    {"length", (getter)Generator_get_length, NULL, "Tokens per row so far, prompt included.", NULL},
    {"steps", (getter)Generator_get_steps, NULL, "Decoding steps made.", NULL},
    {"done", (getter)Generator_get_done, NULL, "Whether generation has finished.", NULL},
    {NULL},
};

PyTypeObject GeneratorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nemotron_c._core.Generator",
    .tp_basicsize = sizeof(GeneratorObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The decoding loop of generate() (private).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Generator_init,
    .tp_dealloc = (destructor)Generator_dealloc,
    .tp_methods = Generator_methods,
    .tp_getset = Generator_getset,
};

int nt_py_register_generator(PyObject *module) {
    if (PyType_Ready(&GeneratorType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Generator", (PyObject *)&GeneratorType);
}
