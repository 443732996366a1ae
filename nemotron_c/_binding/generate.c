/* _core.Generator: a thin wrapper over nt_generator. Policy (defaults, validation) lives in
 * nemotron_c/generation.py; this file parses the resolved config, holds the output buffers and runs
 * steps with the GIL released, checking for signals (Ctrl-C) between steps. */
#include "binding.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    nt_generator *generator;
    PyObject *model;          /* keeps the model alive */
    CacheObject *cache;       /* a caller's cache the generator extends, or NULL */
    Py_buffer outputs[5];     /* sequences, scores, logits, sequence_scores, beam_indices */
    int busy;
} GeneratorObject;

static int dict_int(PyObject *d, const char *key, int64_t *out) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "generation config lacks '%s'", key);
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static int dict_double(PyObject *d, const char *key, double *out) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "generation config lacks '%s'", key);
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* a 1-D int64 buffer from the dict, held in view; sets *data and *n */
static int dict_tokens(PyObject *d, const char *key, Py_buffer *view, const int64_t **data, int64_t *n) {
    PyObject *v = PyDict_GetItemString(d, key);
    *data = NULL;
    *n = 0;
    if (v == NULL || v == Py_None) return 0;
    if (nt_py_get_buffer(v, view, key, 1, 'q', 0) < 0) return -1;
    *data = view->buf;
    *n = view->shape[0];
    return 0;
}

static void release_all(Py_buffer *views, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (views[i].obj != NULL) PyBuffer_Release(&views[i]);
}

/* Generator(model, input_ids int64 (N,T), attention_mask uint8 (N,T) | None, config dict,
 *           sequences int64, scores f32 | None, logits f32 | None, sequence_scores f32 | None,
 *           beam_indices int64 | None, cache=None) -- output shapes as nt_generation_outputs; cache: a
 *           Cache of this model holding the prompts' first positions */
static int Generator_init(GeneratorObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *model, *ids_obj, *mask_obj, *config, *outs[5], *cache_obj = Py_None;
    if (!PyArg_ParseTuple(args, "O!OOO!OOOOO|O", &ModelType, &model, &ids_obj, &mask_obj, &PyDict_Type, &config,
                          &outs[0], &outs[1], &outs[2], &outs[3], &outs[4], &cache_obj))
        return -1;
    CacheObject *cache = NULL;
    if (cache_obj != Py_None) {
        if (!PyObject_TypeCheck(cache_obj, &CacheType) || ((CacheObject *)cache_obj)->model != model) {
            PyErr_SetString(PyExc_TypeError, "cache must be a Cache made for this model");
            return -1;
        }
        cache = (CacheObject *)cache_obj;
        if (cache->busy) {
            PyErr_SetString(PyExc_RuntimeError, "this cache is in use by another call");
            return -1;
        }
    }
    if (self->generator != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Generator is already initialised");
        return -1;
    }
    if (nt_py_check_model((ModelObject *)model) < 0) return -1;
    Py_buffer ids = {0}, mask = {0}, lists[10]; /* token arrays; [9] the sequence bias values */
    memset(lists, 0, sizeof lists);
    nt_generation_config c;
    memset(&c, 0, sizeof c);
    int result = -1;

    if (nt_py_get_buffer(ids_obj, &ids, "input_ids", 2, 'q', 0) < 0) goto done;
    int64_t N = ids.shape[0], T = ids.shape[1];
    if (mask_obj != Py_None) {
        if (nt_py_get_buffer(mask_obj, &mask, "attention_mask", 2, 'B', 0) < 0) goto done;
        if (mask.shape[0] != N || mask.shape[1] != T) {
            PyErr_SetString(PyExc_ValueError, "attention_mask must have the shape of input_ids");
            goto done;
        }
    }
    int64_t early, do_sample, seed, padding_n, remove_invalid, renormalize, n_values;
    double temperature, top_p, min_p, typical_p, repetition_penalty, length_penalty, decay_factor, epsilon, eta;
    if (dict_int(config, "max_length", &c.max_length) || dict_int(config, "min_length", &c.min_length) ||
        dict_int(config, "pad_token_id", &c.pad_token_id) ||
        dict_int(config, "beam_fill_token_id", &c.beam_fill_token_id) ||
        dict_double(config, "deadline", &c.deadline) ||
        dict_double(config, "repetition_penalty", &repetition_penalty) ||
        dict_int(config, "no_repeat_ngram_size", &c.no_repeat_ngram_size) ||
        dict_int(config, "begin_index", &c.begin_index) || dict_int(config, "do_sample", &do_sample) ||
        dict_double(config, "temperature", &temperature) || dict_int(config, "top_k", &c.top_k) ||
        dict_double(config, "top_p", &top_p) || dict_double(config, "min_p", &min_p) ||
        dict_double(config, "typical_p", &typical_p) ||
        dict_int(config, "min_tokens_to_keep", &c.min_tokens_to_keep) || dict_int(config, "seed", &seed) ||
        dict_int(config, "num_beams", &c.num_beams) || dict_double(config, "length_penalty", &length_penalty) ||
        dict_int(config, "early_stopping", &early) ||
        dict_int(config, "forced_bos_token_id", &c.forced_bos_token_id) ||
        dict_int(config, "remove_invalid_values", &remove_invalid) ||
        dict_int(config, "decay_start", &c.decay_start) || dict_double(config, "decay_factor", &decay_factor) ||
        dict_double(config, "epsilon_cutoff", &epsilon) || dict_double(config, "eta_cutoff", &eta) ||
        dict_int(config, "renormalize_logits", &renormalize))
        goto done;
    c.remove_invalid_values = remove_invalid != 0;
    c.decay_factor = (float)decay_factor;
    c.epsilon_cutoff = (float)epsilon;
    c.eta_cutoff = (float)eta;
    c.renormalize_logits = renormalize != 0;
    c.repetition_penalty = (float)repetition_penalty;
    c.do_sample = do_sample != 0;
    c.temperature = (float)temperature;
    c.top_p = (float)top_p;
    c.min_p = (float)min_p;
    c.typical_p = (float)typical_p;
    c.seed = (uint64_t)seed;
    c.length_penalty = (float)length_penalty;
    c.early_stopping = (nt_early_stopping)early;
    if (dict_tokens(config, "eos_token_ids", &lists[0], &c.eos_token_ids, &c.n_eos) ||
        dict_tokens(config, "bad_words", &lists[1], &c.bad_words, &padding_n) ||
        dict_tokens(config, "bad_word_ends", &lists[2], &c.bad_word_ends, &c.n_bad_words) ||
        dict_tokens(config, "suppress_tokens", &lists[3], &c.suppress_tokens, &c.n_suppress_tokens) ||
        dict_tokens(config, "begin_suppress_tokens", &lists[4], &c.begin_suppress_tokens,
                    &c.n_begin_suppress_tokens) ||
        dict_tokens(config, "prompt_padding", &lists[5], &c.prompt_padding, &padding_n) ||
        dict_tokens(config, "sequence_bias", &lists[6], &c.sequence_bias, &n_values) ||
        dict_tokens(config, "sequence_bias_ends", &lists[7], &c.sequence_bias_ends, &c.n_sequence_bias) ||
        dict_tokens(config, "forced_eos_token_ids", &lists[8], &c.forced_eos_token_ids, &c.n_forced_eos))
        goto done;
    if (c.n_sequence_bias > 0) {
        Py_buffer *bias_values = &lists[9];
        PyObject *v = PyDict_GetItemString(config, "sequence_bias_values");
        if (v == NULL || nt_py_get_buffer(v, bias_values, "sequence_bias_values", 1, 'f', 0) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "generation config lacks 'sequence_bias_values'");
            goto done;
        }
        c.sequence_bias_values = bias_values->buf;
        if (bias_values->shape[0] != c.n_sequence_bias || c.sequence_bias_ends[c.n_sequence_bias - 1] > n_values) {
            PyErr_SetString(PyExc_ValueError, "sequence bias arrays are inconsistent");
            goto done;
        }
    }
    if (c.prompt_padding != NULL && padding_n != N) {
        PyErr_SetString(PyExc_ValueError, "prompt_padding must hold one value per row");
        goto done;
    }
    if (c.n_bad_words > 0 && c.bad_word_ends[c.n_bad_words - 1] > lists[1].shape[0]) {
        PyErr_SetString(PyExc_ValueError, "bad_word_ends point past bad_words");
        goto done;
    }

    const nt_config *mc = nt_model_config(((ModelObject *)model)->model);
    int64_t NB = c.num_beams > 0 ? c.num_beams : 1, B = N / NB, G = c.max_length - T, V = mc->vocab_size;
    int beams = NB > 1;
    struct { const char *name; int ndim; char format; int64_t shape[3]; } specs[5] = {
        {"sequences", beams ? 3 : 2, 'q', {beams ? B : N, beams ? NB : c.max_length, c.max_length}},
        {"scores", 3, 'f', {G, N, V}},
        {"logits", 3, 'f', {G, N, V}},
        {"sequence_scores", 2, 'f', {B, NB, 0}},
        {"beam_indices", 3, 'q', {B, NB, G}},
    };
    for (int i = 0; i < 5; i++) {
        if (outs[i] == Py_None) {
            if (i == 0) {
                PyErr_SetString(PyExc_TypeError, "sequences is required");
                goto done;
            }
            continue;
        }
        if (nt_py_get_buffer(outs[i], &self->outputs[i], specs[i].name, specs[i].ndim, specs[i].format, 1) < 0)
            goto done;
        for (int d = 0; d < specs[i].ndim; d++)
            if (self->outputs[i].shape[d] != specs[i].shape[d]) {
                PyErr_Format(PyExc_ValueError, "%s has the wrong shape", specs[i].name);
                goto done;
            }
    }
    nt_generation_outputs o = {self->outputs[0].buf, self->outputs[1].buf, self->outputs[2].buf,
                               self->outputs[3].buf, self->outputs[4].buf};
    nt_error err = {0};
    nt_status status;
    Py_BEGIN_ALLOW_THREADS
    status = nt_generator_create(&self->generator, &err, ((ModelObject *)model)->model, &c, &o, ids.buf,
                                 mask.buf, N, T, cache ? cache->cache : NULL);
    Py_END_ALLOW_THREADS
    if (status != NT_OK) {
        nt_py_raise(&err);
        goto done;
    }
    self->model = Py_NewRef(model);
    self->cache = cache ? (CacheObject *)Py_NewRef((PyObject *)cache) : NULL;
    result = 0;

done:
    if (result < 0) release_all(self->outputs, 5);
    if (ids.obj) PyBuffer_Release(&ids);
    if (mask.obj) PyBuffer_Release(&mask);
    release_all(lists, 10);
    return result;
}

static void Generator_dealloc(GeneratorObject *self) {
    nt_generator_free(self->generator);
    release_all(self->outputs, 5);
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

/* A run of steps on a worker thread, so that the caller's thread can wait with the GIL released and still
 * notice Ctrl-C: it wakes every WATCH_MS to check for signals and, on one, raises the cancel flag that the
 * forward pass checks between layers. */
enum { WATCH_MS = 50 };

typedef struct {
    nt_generator *generator;
    long long max_steps;
    volatile int cancel;
    nt_status status;
    nt_error err;
    int finished;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} run_job;

static void *run_worker(void *arg) {
    run_job *job = arg;
    job->status = nt_generator_run(job->generator, &job->err, job->max_steps, &job->cancel);
    pthread_mutex_lock(&job->lock);
    job->finished = 1;
    pthread_cond_signal(&job->cond);
    pthread_mutex_unlock(&job->lock);
    return NULL;
}

/* waits up to WATCH_MS for the worker; returns whether it has finished */
static int wait_a_while(run_job *job) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += WATCH_MS * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&job->lock);
    while (!job->finished && pthread_cond_timedwait(&job->cond, &job->lock, &deadline) == 0) {
    }
    int finished = job->finished;
    pthread_mutex_unlock(&job->lock);
    return finished;
}

/* run(max_steps=-1) -> done: steps until done or max_steps (< 0: no limit). Ctrl-C raises KeyboardInterrupt
 * within one layer of the forward pass; the Generator is then finished and the model unaffected. */
static PyObject *Generator_run(GeneratorObject *self, PyObject *args) {
    long long max_steps = -1;
    if (!PyArg_ParseTuple(args, "|L", &max_steps) || check_ready(self) < 0) return NULL;
    run_job job;
    memset(&job, 0, sizeof job);
    job.generator = self->generator;
    job.max_steps = max_steps;
    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.cond, NULL);
    pthread_t worker;
    self->busy = 1;
    if (self->cache) self->cache->busy = 1;
    int threaded = pthread_create(&worker, NULL, run_worker, &job) == 0, interrupted = 0;
    if (!threaded) { /* no thread to spare: run here, checking for signals between steps only */
        for (long long i = 0; (max_steps < 0 || i < max_steps) && !nt_generator_done(self->generator); i++) {
            Py_BEGIN_ALLOW_THREADS
            job.status = nt_generator_run(self->generator, &job.err, 1, NULL);
            Py_END_ALLOW_THREADS
            if (job.status != NT_OK || (interrupted = PyErr_CheckSignals() < 0)) break;
        }
    } else {
        for (;;) {
            int finished;
            Py_BEGIN_ALLOW_THREADS
            finished = wait_a_while(&job);
            Py_END_ALLOW_THREADS
            if (finished) break;
            if (!interrupted && PyErr_CheckSignals() < 0) {
                interrupted = 1;
                job.cancel = 1;
            }
        }
        Py_BEGIN_ALLOW_THREADS
        pthread_join(worker, NULL);
        Py_END_ALLOW_THREADS
        if (!interrupted && PyErr_CheckSignals() < 0) interrupted = 1;
    }
    pthread_cond_destroy(&job.cond);
    pthread_mutex_destroy(&job.lock);
    self->busy = 0;
    if (self->cache) self->cache->busy = 0;
    if (interrupted) return NULL; /* KeyboardInterrupt is set; a step cut short has finished the Generator */
    if (job.status != NT_OK) return nt_py_raise(&job.err);
    return PyBool_FromLong(nt_generator_done(self->generator));
}

/* stop_rows(rows uint8 (N)): marks rows finished, as a stopping criterion does */
static PyObject *Generator_stop_rows(GeneratorObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer rows;
    if (!PyArg_ParseTuple(args, "O", &obj) || check_ready(self) < 0) return NULL;
    if (nt_py_get_buffer(obj, &rows, "rows", 1, 'B', 0) < 0) return NULL;
    nt_error err = {0};
    nt_status status = nt_generator_stop_rows(self->generator, &err, rows.buf);
    PyBuffer_Release(&rows);
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
