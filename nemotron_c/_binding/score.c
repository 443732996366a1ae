/* _core.score: the binding of nt_model_score (batch scoring without (B, T, V) logits). */
#include "binding.h"

/* score(model, input_ids int32 (B,T), position_ids int64 (B,T), attention_mask uint8 (B,S) | None,
 *       targets int32 (B,T), cache | None, logprobs float32 (B,T) written in place) */
static PyObject *score(PyObject *module, PyObject *args) {
    PyObject *model_obj, *ids_obj, *pos_obj, *mask_obj, *targets_obj, *cache_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "O!OOOOOO", &ModelType, &model_obj, &ids_obj, &pos_obj, &mask_obj, &targets_obj,
                          &cache_obj, &out_obj))
        return NULL;
    ModelObject *model = (ModelObject *)model_obj;
    if (nt_py_check_model(model) < 0) return NULL;
    Py_buffer ids = {0}, pos = {0}, mask = {0}, targets = {0}, out = {0};
    CacheObject *cache = NULL;
    PyObject *result = NULL;

    if (nt_py_get_buffer(ids_obj, &ids, "input_ids", 2, 'i', 0) < 0) goto done;
    int64_t B = ids.shape[0], T = ids.shape[1];
    struct { PyObject *obj; Py_buffer *view; const char *name; char format; int writable; } same_shape[] = {
        {pos_obj, &pos, "position_ids", 'q', 0},
        {targets_obj, &targets, "targets", 'i', 0},
        {out_obj, &out, "logprobs", 'f', 1},
    };
    for (size_t i = 0; i < sizeof same_shape / sizeof same_shape[0]; i++) {
        if (nt_py_get_buffer(same_shape[i].obj, same_shape[i].view, same_shape[i].name, 2, same_shape[i].format,
                             same_shape[i].writable) < 0)
            goto done;
        if (same_shape[i].view->shape[0] != B || same_shape[i].view->shape[1] != T) {
            PyErr_Format(PyExc_ValueError, "%s must have the shape of input_ids", same_shape[i].name);
            goto done;
        }
    }
    if (cache_obj != Py_None) {
        if (!PyObject_TypeCheck(cache_obj, &CacheType) || ((CacheObject *)cache_obj)->model != model_obj) {
            PyErr_SetString(PyExc_TypeError, "cache must be a Cache made for this model");
            goto done;
        }
        if (((CacheObject *)cache_obj)->busy) {
            PyErr_SetString(PyExc_RuntimeError, "this cache is in use by another call");
            goto done;
        }
        cache = (CacheObject *)cache_obj;
    }
    int64_t S = (cache ? nt_cache_length(cache->cache) : 0) + T;
    if (mask_obj != Py_None) {
        if (nt_py_get_buffer(mask_obj, &mask, "attention_mask", 2, 'B', 0) < 0) goto done;
        if (mask.shape[0] != B || mask.shape[1] != S) {
            PyErr_Format(PyExc_ValueError, "attention_mask must have shape (%lld, %lld)", (long long)B, (long long)S);
            goto done;
        }
    }

    nt_error err = {0};
    nt_status status;
    if (cache) cache->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = nt_model_score(model->model, &err, out.buf, ids.buf, pos.buf, mask.buf, targets.buf, B, T,
                            cache ? cache->cache : NULL, NULL);
    Py_END_ALLOW_THREADS
    if (cache) cache->busy = 0;
    if (status != NT_OK) {
        nt_py_raise(&err);
        goto done;
    }
    result = Py_NewRef(Py_None);

done:;
    Py_buffer *views[] = {&ids, &pos, &mask, &targets, &out};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (views[i]->obj != NULL) PyBuffer_Release(views[i]);
    return result;
}

static PyMethodDef score_methods[] = {
    {"score", score, METH_VARARGS, "Log-probabilities of target tokens into a caller-allocated (B, T) array."},
    {NULL},
};

int nt_py_register_score(PyObject *module) { return PyModule_AddFunctions(module, score_methods); }
