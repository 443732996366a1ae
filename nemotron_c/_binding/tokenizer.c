/* _core.Tokenizer: a thin wrapper over nt_tokenizer. nemotron_c/tokenization.py reads the files and hands
 * over the tables; this file only converts them, releases the GIL and maps statuses. */
#include "binding.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    nt_tokenizer *tok;
    nt_threadpool *pool; /* created on the first large batch */
} TokenizerObject;

/* Reads one (type, a, b, start, stop, prepend_scheme, split[, strings]) tuple; the strings borrow from the tuple,
 * the array of `strings` is PyMem-allocated into *strings. */
static int read_step(PyObject *item, nt_tokenizer_step *step, const char ***strings) {
    int type, scheme, split;
    long long start, stop;
    const char *a, *b;
    PyObject *list = NULL;
    if (!PyArg_ParseTuple(item, "izzLLii|O!", &type, &a, &b, &start, &stop, &scheme, &split, &PyList_Type, &list))
        return -1;
    *step = (nt_tokenizer_step){(nt_tokenizer_step_type)type, a, b, start, stop, (nt_prepend_scheme)scheme, split,
                                NULL, 0};
    if (list != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(list);
        *strings = PyMem_Calloc((size_t)n + 1, sizeof **strings);
        if (*strings == NULL) return PyErr_NoMemory(), -1;
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *s = PyList_GET_ITEM(list, k);
            Py_ssize_t len;
            (*strings)[k] = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &len) : NULL;
            if ((*strings)[k] == NULL) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Split strings must be str");
                return -1;
            }
            if ((size_t)len != strlen((*strings)[k])) {
                PyErr_SetString(PyExc_ValueError, "Split strings must not hold NUL");
                return -1;
            }
        }
        step->strings = *strings;
        step->n_strings = n;
    }
    return 0;
}

/* Fills *out (and *strings, each step's Split strings) from a list of step tuples; the caller frees both
 * with free_steps even on failure. */
static int read_steps(PyObject *list, const char *name, nt_tokenizer_step **out, const char ****strings, int64_t *n) {
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of step tuples", name);
        return -1;
    }
    *n = PyList_GET_SIZE(list);
    *out = PyMem_Calloc((size_t)*n + 1, sizeof **out);
    *strings = PyMem_Calloc((size_t)*n + 1, sizeof **strings);
    if (*out == NULL || *strings == NULL) return PyErr_NoMemory(), -1;
    for (int64_t i = 0; i < *n; i++)
        if (read_step(PyList_GET_ITEM(list, i), &(*out)[i], &(*strings)[i]) < 0) return -1;
    return 0;
}

static void free_steps(nt_tokenizer_step *steps, const char ***strings, int64_t n) {
    if (strings != NULL)
        for (int64_t i = 0; i < n; i++) PyMem_Free((void *)strings[i]);
    PyMem_Free((void *)strings);
    PyMem_Free(steps);
}

/* Tokenizer(pieces: bytes, piece_offsets: int64[V+1], piece_ids: int32[V], merges: int32[M, 2], unk_id, byte_fallback,
 *           fuse_unk, added: list[(content, id, special, lstrip, rstrip, single_word, normalized)],
 *           normalizer, pre_tokenizer, decoder: list[(type, a, b, start, stop, prepend_scheme, split)]) */
static int Tokenizer_init(TokenizerObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"pieces", "piece_offsets", "piece_ids", "merges", "unk_id", "byte_fallback",
                               "fuse_unk", "added", "normalizer", "pre_tokenizer", "decoder", "ignore_merges", NULL};
    Py_buffer pieces, offsets = {0}, ids = {0}, merges = {0};
    PyObject *o_offsets, *o_ids, *o_merges, *added, *normalizer, *pre_tokenizer, *decoder;
    int unk_id, byte_fallback, fuse_unk, ignore_merges = 0;
    if (self->tok != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Tokenizer is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*OOOippO!O!O!O!|p", keywords, &pieces, &o_offsets, &o_ids,
                                     &o_merges, &unk_id, &byte_fallback, &fuse_unk, &PyList_Type, &added,
                                     &PyList_Type, &normalizer, &PyList_Type, &pre_tokenizer, &PyList_Type, &decoder,
                                     &ignore_merges))
        return -1;
    int rc = -1;
    nt_added_token *tokens = NULL;
    nt_tokenizer_step *steps[3] = {NULL, NULL, NULL};
    const char ***step_strings[3] = {NULL, NULL, NULL};
    int64_t n_steps[3] = {0, 0, 0};
    const nt_py_array ids_spec = {"piece_ids", 'i', 1, 0, {-1}}, merges_spec = {"merges", 'i', 2, 0, {-1, 2}};
    if (nt_py_get_array(o_ids, &ids, &ids_spec) < 0 || nt_py_get_array(o_merges, &merges, &merges_spec) < 0) goto done;
    int64_t n_pieces = ids.shape[0];
    const nt_py_array offsets_spec = {"piece_offsets", 'q', 1, 0, {n_pieces + 1}};
    if (nt_py_get_array(o_offsets, &offsets, &offsets_spec) < 0) goto done;
    const int64_t *off = offsets.buf;
    if (off[n_pieces] > pieces.len) {
        PyErr_SetString(PyExc_ValueError, "piece_offsets run past the pieces");
        goto done;
    }
    Py_ssize_t n_added = PyList_GET_SIZE(added);
    tokens = PyMem_Calloc((size_t)n_added + 1, sizeof *tokens);
    if (tokens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_added; i++) {
        const char *content;
        Py_ssize_t len;
        int id, special, lstrip, rstrip, single_word, normalized;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(added, i), "s#ipppp" "p", &content, &len, &id, &special, &lstrip,
                              &rstrip, &single_word, &normalized))
            goto done;
        tokens[i] = (nt_added_token){content, (size_t)len, id, special, lstrip, rstrip, single_word, normalized};
    }
    if (read_steps(normalizer, "normalizer", &steps[0], &step_strings[0], &n_steps[0]) < 0 ||
        read_steps(pre_tokenizer, "pre_tokenizer", &steps[1], &step_strings[1], &n_steps[1]) < 0 ||
        read_steps(decoder, "decoder", &steps[2], &step_strings[2], &n_steps[2]) < 0)
        goto done;
    nt_tokenizer_spec spec = {
        .pieces = pieces.buf, .piece_offsets = off, .piece_ids = ids.buf, .n_pieces = n_pieces,
        .merges = merges.buf, .n_merges = merges.shape[0], .unk_id = unk_id, .byte_fallback = byte_fallback,
        .fuse_unk = fuse_unk, .ignore_merges = ignore_merges, .added = tokens, .n_added = n_added, .normalizer = steps[0],
        .n_normalizer = n_steps[0], .pre_tokenizer = steps[1], .n_pre_tokenizer = n_steps[1],
        .decoder = steps[2], .n_decoder = n_steps[2],
    };
    nt_error err = {0};
    nt_status st;
    Py_BEGIN_ALLOW_THREADS
    st = nt_tokenizer_create(&self->tok, &err, &spec);
    Py_END_ALLOW_THREADS
    if (st != NT_OK) {
        nt_py_raise(&err);
        goto done;
    }
    rc = 0;
done:
    PyBuffer_Release(&pieces);
    nt_py_release(&offsets, 1);
    nt_py_release(&ids, 1);
    nt_py_release(&merges, 1);
    PyMem_Free(tokens);
    for (int k = 0; k < 3; k++) free_steps(steps[k], step_strings[k], n_steps[k]);
    return rc;
}

static PyObject *ids_to_list(const int32_t *ids, int64_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) return NULL;
    for (int64_t i = 0; i < n; i++) {
        /* tens of millions of ids from one huge text take seconds: Ctrl-C is looked for meanwhile */
        PyObject *v = i % (1 << 20) == (1 << 20) - 1 && PyErr_CheckSignals() < 0 ? NULL : PyLong_FromLong(ids[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static int check_ready(TokenizerObject *self) {
    if (self->tok != NULL) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Tokenizer is not initialised");
    return -1;
}

/* the UTF-8 of a str argument, held by it; NULL with TypeError set for anything else */
static const char *text_utf8(PyObject *text, Py_ssize_t *len) {
    if (PyUnicode_Check(text)) return PyUnicode_AsUTF8AndSize(text, len);
    PyErr_Format(PyExc_TypeError, "text must be a str, not %.100s", Py_TYPE(text)->tp_name);
    return NULL;
}

/* Texts and id arrays longer than this go through the cancellable runner (nt_py_run), so that Ctrl-C stops them
 * within one; shorter ones take well under a millisecond and run on the calling thread, without its hand-over. */
#define NT_PY_LONG_INPUT (1 << 16)

typedef struct {
    const nt_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t **ids;
    int64_t *n, **positions, **offsets, *n_matches; /* positions NULL: no matches wanted */
    char **texts;
} encode_job;

static nt_status run_encode(void *ctx, nt_error *err, const volatile int *cancel) {
    encode_job *j = ctx;
    if (j->positions == NULL) return nt_tokenizer_encode(j->tok, err, j->ids, j->n, j->text, j->len, cancel);
    return nt_tokenizer_encode_matches(j->tok, err, j->ids, j->n, j->positions, j->texts, j->offsets, j->n_matches,
                                       j->text, j->len, cancel);
}

/* runs job on this thread, or on the cancellable runner when the input is long; -1 with an exception set */
static int run_tokenizer_job(nt_py_job job, void *ctx, size_t size) {
    if (size > NT_PY_LONG_INPUT) return nt_py_run(job, ctx, NULL);
    nt_error err = {0};
    nt_status st;
    Py_BEGIN_ALLOW_THREADS
    st = job(ctx, &err, NULL);
    Py_END_ALLOW_THREADS
    if (st != NT_OK) {
        nt_py_raise(&err);
        return -1;
    }
    return 0;
}

/* encode(text: str) -> list[int], without special tokens around it. */
static PyObject *Tokenizer_encode(TokenizerObject *self, PyObject *text) {
    Py_ssize_t len;
    const char *utf8 = check_ready(self) < 0 ? NULL : text_utf8(text, &len);
    if (utf8 == NULL) return NULL;
    int32_t *ids;
    int64_t n;
    encode_job job = {self->tok, utf8, (size_t)len, &ids, &n, NULL, NULL, NULL, NULL};
    if (run_tokenizer_job(run_encode, &job, (size_t)len) < 0) return NULL;
    PyObject *list = ids_to_list(ids, n);
    free(ids);
    return list;
}

/* encode_matches(text: str) -> (list[int], list[(position, matched text)]): the ids, and for each added token
 * the text it took in. */
static PyObject *Tokenizer_encode_matches(TokenizerObject *self, PyObject *text) {
    Py_ssize_t len;
    const char *utf8 = check_ready(self) < 0 ? NULL : text_utf8(text, &len);
    if (utf8 == NULL) return NULL;
    int32_t *ids;
    int64_t n, n_matches, *positions, *offsets;
    char *texts;
    encode_job job = {self->tok, utf8, (size_t)len, &ids, &n, &positions, &offsets, &n_matches, &texts};
    if (run_tokenizer_job(run_encode, &job, (size_t)len) < 0) return NULL;
    PyObject *result = NULL, *matches = NULL, *id_list = ids_to_list(ids, n);
    if (id_list == NULL || (matches = PyList_New((Py_ssize_t)n_matches)) == NULL) goto done;
    for (int64_t k = 0; k < n_matches; k++) {
        PyObject *item = Py_BuildValue("(Ls#)", (long long)positions[k], texts + offsets[k],
                                       (Py_ssize_t)(offsets[k + 1] - offsets[k]));
        if (item == NULL) goto done;
        PyList_SET_ITEM(matches, (Py_ssize_t)k, item);
    }
    result = PyTuple_Pack(2, id_list, matches);
done:
    Py_XDECREF(id_list);
    Py_XDECREF(matches);
    free(ids);
    free(positions);
    free(texts);
    free(offsets);
    return result;
}

typedef struct {
    const nt_tokenizer *tok;
    int32_t **ids;
    int64_t *offsets;
    const char *const *texts;
    const size_t *lens;
    int64_t B;
    nt_threadpool *pool;
} encode_batch_job;

static nt_status run_encode_batch(void *ctx, nt_error *err, const volatile int *cancel) {
    encode_batch_job *j = ctx;
    return nt_tokenizer_encode_batch(j->tok, err, j->ids, j->offsets, j->texts, j->lens, j->B, j->pool, cancel);
}

/* encode_batch(texts: sequence of str, threads: bool = True) -> list[list[int]]; Ctrl-C stops it between texts */
static PyObject *Tokenizer_encode_batch(TokenizerObject *self, PyObject *args) {
    PyObject *texts;
    int threads = 1;
    if (check_ready(self) < 0 || !PyArg_ParseTuple(args, "O|p", &texts, &threads)) return NULL;
    /* a tuple holds the strings alive (and unchanged) while the GIL is released */
    PyObject *seq = PySequence_Tuple(texts);
    if (seq == NULL) return NULL;
    Py_ssize_t B = PyTuple_GET_SIZE(seq);
    const char **ptrs = PyMem_Calloc((size_t)B + 1, sizeof *ptrs);
    size_t *lens = PyMem_Calloc((size_t)B + 1, sizeof *lens);
    int64_t *offsets = PyMem_Calloc((size_t)B + 1, sizeof *offsets);
    PyObject *result = NULL;
    int32_t *ids = NULL;
    if (ptrs == NULL || lens == NULL || offsets == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t b = 0; b < B; b++) {
        PyObject *t = PyTuple_GET_ITEM(seq, b);
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "texts[%zd] must be a str, not %.100s", b, Py_TYPE(t)->tp_name);
            goto done;
        }
        Py_ssize_t len;
        ptrs[b] = PyUnicode_AsUTF8AndSize(t, &len);
        if (ptrs[b] == NULL) goto done;
        lens[b] = (size_t)len;
    }
    nt_error err = {0};
    nt_status st = NT_OK;
    if (threads && self->pool == NULL && B > 1) {
        /* created with the GIL held, so two threads cannot both create it */
        st = nt_threadpool_create(&self->pool, &err, 0);
        if (st != NT_OK) {
            nt_py_raise(&err);
            goto done;
        }
    }
    encode_batch_job job = {self->tok, &ids, offsets, ptrs, lens, B, threads ? self->pool : NULL};
    if (nt_py_run(run_encode_batch, &job, NULL) < 0) goto done;
    result = PyList_New(B);
    if (result == NULL) goto done;
    for (Py_ssize_t b = 0; b < B; b++) {
        /* millions of ids become Python ints here, a second for 50 MB of text: Ctrl-C is looked for meanwhile */
        PyObject *list = b % 64 == 63 && PyErr_CheckSignals() < 0
                             ? NULL : ids_to_list(ids + offsets[b], offsets[b + 1] - offsets[b]);
        if (list == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, b, list);
    }
done:
    free(ids);
    PyMem_Free(ptrs);
    PyMem_Free(lens);
    PyMem_Free(offsets);
    Py_DECREF(seq);
    return result;
}

typedef struct {
    const nt_tokenizer *tok;
    char **text;
    size_t *len;
    const int32_t *ids;
    int64_t n_ids;
    int skip_special;
} decode_job;

static nt_status run_decode(void *ctx, nt_error *err, const volatile int *cancel) {
    decode_job *j = ctx;
    return nt_tokenizer_decode(j->tok, err, j->text, j->len, j->ids, j->n_ids, j->skip_special, cancel);
}

/* decode(ids: int32[N] buffer, skip_special: bool) -> str */
static PyObject *Tokenizer_decode(TokenizerObject *self, PyObject *args) {
    PyObject *o_ids;
    int skip_special = 0;
    if (check_ready(self) < 0 || !PyArg_ParseTuple(args, "O|p", &o_ids, &skip_special)) return NULL;
    Py_buffer ids;
    const nt_py_array spec = {"ids", 'i', 1, 0, {-1}};
    if (nt_py_get_array(o_ids, &ids, &spec) < 0) return NULL;
    char *text;
    size_t len;
    decode_job job = {self->tok, &text, &len, ids.buf, ids.shape[0], skip_special};
    int failed = run_tokenizer_job(run_decode, &job, (size_t)ids.shape[0]) < 0;
    PyBuffer_Release(&ids);
    if (failed) return NULL;
    PyObject *result = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    free(text);
    return result;
}

static void Tokenizer_dealloc(TokenizerObject *self) {
    nt_tokenizer_free(self->tok);
    if (self->pool != NULL) nt_threadpool_free(self->pool);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Tokenizer_methods[] = {
    {"encode", (PyCFunction)Tokenizer_encode, METH_O, "encode(text) -> list[int] (no special tokens added)"},
    {"encode_matches", (PyCFunction)Tokenizer_encode_matches, METH_O,
     "encode_matches(text) -> (ids, [(position, matched text)]) for the added tokens"},
    {"encode_batch", (PyCFunction)Tokenizer_encode_batch, METH_VARARGS,
     "encode_batch(texts, threads=True) -> list[list[int]]"},
    {"decode", (PyCFunction)Tokenizer_decode, METH_VARARGS, "decode(ids: int32 array, skip_special=False) -> str"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TokenizerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nemotron_c._core.Tokenizer",
    .tp_basicsize = sizeof(TokenizerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A BPE tokenizer built from tables read by nemotron_c.tokenization (private).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tokenizer_init,
    .tp_dealloc = (destructor)Tokenizer_dealloc,
    .tp_methods = Tokenizer_methods,
};

int nt_py_register_tokenizer(PyObject *module) {
    if (PyType_Ready(&TokenizerType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Tokenizer", (PyObject *)&TokenizerType) < 0) return -1;
    if (PyModule_AddIntConstant(module, "STEP_PREPEND", NT_TOKENIZER_STEP_PREPEND) < 0 ||
        PyModule_AddIntConstant(module, "STEP_REPLACE", NT_TOKENIZER_STEP_REPLACE) < 0 ||
        PyModule_AddIntConstant(module, "STEP_METASPACE", NT_TOKENIZER_STEP_METASPACE) < 0 ||
        PyModule_AddIntConstant(module, "STEP_BYTE_FALLBACK", NT_TOKENIZER_STEP_BYTE_FALLBACK) < 0 ||
        PyModule_AddIntConstant(module, "STEP_FUSE", NT_TOKENIZER_STEP_FUSE) < 0 ||
        PyModule_AddIntConstant(module, "STEP_STRIP", NT_TOKENIZER_STEP_STRIP) < 0 ||
        PyModule_AddIntConstant(module, "STEP_TRIM", NT_TOKENIZER_STEP_TRIM) < 0 ||
        PyModule_AddIntConstant(module, "STEP_COLLAPSE", NT_TOKENIZER_STEP_COLLAPSE) < 0 ||
        PyModule_AddIntConstant(module, "STEP_REPLACE_PREFIX", NT_TOKENIZER_STEP_REPLACE_PREFIX) < 0 ||
        PyModule_AddIntConstant(module, "STEP_SPLIT", NT_TOKENIZER_STEP_SPLIT) < 0 ||
        PyModule_AddIntConstant(module, "PREPEND_ALWAYS", NT_PREPEND_SCHEME_ALWAYS) < 0 ||
        PyModule_AddIntConstant(module, "PREPEND_FIRST", NT_PREPEND_SCHEME_FIRST) < 0 ||
        PyModule_AddIntConstant(module, "PREPEND_NEVER", NT_PREPEND_SCHEME_NEVER) < 0)
        return -1;
    return 0;
}
