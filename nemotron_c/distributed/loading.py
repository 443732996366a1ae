"""One model and tokenizer per worker process, however many tasks the process runs.

Data engines hand a worker a pickled copy of the callable for every task (Dask, Spark) or build it once per
actor (Ray). Either way the weights should be read once per process: the loaders below keep what they read in a
process-wide table keyed by the loading arguments. The weights are memory-mapped, so the worker processes of one
node share their pages (benchmarks/bench_distributed.py measures it).
"""
import os
import pickle
import threading

from ..model.modeling import AutoModelForCausalLM
from ..tokenizer.tokenization import AutoTokenizer

_loaded = {}
_lock = threading.Lock()  # engines with several threads per worker (Dask) may ask for the same model at once


def load_model(path, dtype, num_threads, load_kwargs):
    key = ("model", os.fspath(path), str(dtype), num_threads, frozen(load_kwargs))
    return cached(key, lambda: AutoModelForCausalLM.from_pretrained(path, dtype=dtype, num_threads=num_threads,
                                                                    **load_kwargs))


def load_tokenizer(path, load_kwargs):
    key = ("tokenizer", os.fspath(path), frozen(load_kwargs))
    return cached(key, lambda: AutoTokenizer.from_pretrained(path, **load_kwargs))


def frozen(load_kwargs):
    """The loading keywords as a key equal for equal values. Engines unpickle a new copy of the arguments for each
    task, so neither a dict (device_map={"": "cpu"}: no hash, a TypeError) nor an object's identity (config=: a new
    load, kept, for every task) can key the table; their pickles can."""
    return tuple(sorted((name, _key_of(value)) for name, value in load_kwargs.items()))


def _key_of(value):
    if isinstance(value, (str, bytes, int, float, type(None))):
        return value
    try:
        return type(value).__qualname__, pickle.dumps(value)
    except Exception:  # no pickle (a lambda, a lock): no engine could ship it, so this process's object is the one
        try:
            hash(value)
            return value
        except TypeError:
            return "id", id(value)


def cached(key, load):
    with _lock:
        if key not in _loaded:
            _loaded[key] = load()
        return _loaded[key]


def worker_threads(num_threads):
    """Threads per model call in this worker process, so that workers x threads fill the node without
    oversubscribing it: the argument when given; else None when NEMOTRON_C_NUM_THREADS is set (the core reads it);
    else OMP_NUM_THREADS, which Ray sets for each actor to the CPUs it reserved (num_cpus), Dask's nanny sets to 1
    for each worker process and PySpark sets to spark.task.cpus; else None (one thread per available CPU: right
    for one worker per node)."""
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
        return num_threads
    if os.environ.get("NEMOTRON_C_NUM_THREADS"):
        return None
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return int(omp) if omp.isdigit() and int(omp) > 0 else None
