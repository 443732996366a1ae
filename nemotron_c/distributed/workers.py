"""BatchScorer and BatchGenerator: what a data engine's worker runs over each batch of rows.

A batch is a pandas DataFrame or a mapping of equally long columns (Ray Data's "numpy" batches: a dict of
arrays). It holds a text column ("text", tokenized by the worker) or a token id column ("input_ids": one id list
or array per row). The worker returns the batch with its columns and the result columns appended, in the same
type and row order, so that rows keep whatever ids they carry through the engine.

Each result depends only on its own row: scores equal model.score on all the rows in one process, and the
generated tokens equal model.generate on each prompt alone, whatever the partitioning, up to float32 rounding
(a sequence's scores may move in the last bits with the batch it is computed in: model.score's own contract).
"""
import os
import sys
import warnings
from collections.abc import Mapping

import numpy as np

from ..generation.scoring import positive_int
from ..generation.utils import as_token_list, prepare_generation_config
from .loading import load_model, load_tokenizer, worker_threads

SCORE_COLUMNS = {"sum_logprob": np.float64, "mean_logprob": np.float64, "perplexity": np.float64,
                 "num_tokens": np.int64}


class BatchWorker:
    """Loading, pickling and the batch plumbing BatchScorer and BatchGenerator share. An instance holds only its
    arguments: it pickles small (Dask and Spark send it with every task) and loads the model and tokenizer on its
    first batch, once per worker process (nemotron_c/distributed/loading.py)."""

    def __init__(self, model, tokenizer, num_threads, dtype, text_column, input_ids_column, batch_size,
                 add_special_tokens, model_kwargs, tokenizer_kwargs):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a checkpoint directory or Hub id (each worker loads it), not "
                            f"{type(model).__name__}")
        if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            raise TypeError(f"tokenizer must be a directory or Hub id, not {type(tokenizer).__name__}")
        worker_threads(num_threads)  # refuses a bad value here rather than in every worker
        self.model_path = os.fspath(model)
        self.tokenizer_path = self.model_path if tokenizer is None else os.fspath(tokenizer)
        self.num_threads = num_threads
        self.dtype = dtype
        self.text_column = text_column
        self.input_ids_column = input_ids_column
        self.batch_size = positive_int(batch_size, "batch_size")
        self.add_special_tokens = add_special_tokens
        self.model_kwargs = dict(model_kwargs or {})
        self.tokenizer_kwargs = dict(tokenizer_kwargs or {})

    @property
    def model(self):
        """This process's model (loaded on first use)."""
        return load_model(self.model_path, self.dtype, worker_threads(self.num_threads), self.model_kwargs)

    @property
    def tokenizer(self):
        """This process's tokenizer (loaded on first use)."""
        return load_tokenizer(self.tokenizer_path, self.tokenizer_kwargs)

    def __call__(self, batch):
        """The batch with the result columns appended (see the module docstring)."""
        kind, values = self._inputs(batch)
        results = self._run(kind, values) if values else self._empty(kind)
        return append_columns(batch, results)

    def meta(self, frame):
        """An empty pandas DataFrame with the columns and dtypes of the output for `frame` (a pandas or Dask
        DataFrame): Dask's map_partitions(..., meta=) argument, which spares the driver a trial run."""
        import pandas

        empty = pandas.DataFrame({name: pandas.Series(dtype=dtype) for name, dtype in frame.dtypes.items()})
        return self(empty)

    def _inputs(self, batch):
        """("text", [str]) or ("input_ids", [1-D int array]) from the batch's input column."""
        columns = list(batch.columns) if is_data_frame(batch) else list(batch) if isinstance(batch, Mapping) else None
        if columns is None:
            raise TypeError(f"a batch must be a pandas DataFrame or a mapping of columns (Ray Data's batch_format "
                            f"'numpy' or 'pandas'), not {type(batch).__name__}")
        if self.text_column in columns:
            texts = list(input_column(batch, self.text_column))
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    # Dask's map_partitions without meta= first runs on a made-up partition of such rows
                    hint = " (with Dask, give map_partitions meta=worker.meta(ddf))" if _missing(text) else ""
                    raise TypeError(f"row {i} of column {self.text_column!r} holds {text!r}, not a text{hint}")
            return "text", texts
        if self.input_ids_column in columns:
            ids = []
            for i, row in enumerate(input_column(batch, self.input_ids_column)):
                array = np.asarray(row)
                if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
                    raise TypeError(f"row {i} of column {self.input_ids_column!r} must be a list of token ids, got "
                                    f"{type(row).__name__} of dtype {array.dtype} and shape {array.shape}")
                if array.size and array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
                    # the cast to int64 would wrap it to a negative id, and the error would name that one
                    raise ValueError(f"row {i} of column {self.input_ids_column!r} holds token id {array.max()}, "
                                     "which does not fit a 64-bit signed integer")
                ids.append(array.astype(np.int64))
            return "input_ids", ids
        raise ValueError(f"the batch has neither a {self.text_column!r} nor an {self.input_ids_column!r} column "
                         f"(its columns: {columns}); set text_column= or input_ids_column=")

    def _token_ids(self, kind, values):
        if kind == "input_ids":
            return values
        encoded = self.tokenizer(values, add_special_tokens=self.add_special_tokens)["input_ids"]
        return [np.asarray(ids, dtype=np.int64) for ids in encoded]


class BatchScorer(BatchWorker):
    """Scores each row's text (or token ids) with a causal language model, as model.score does; appends the
    columns sum_logprob, mean_logprob, perplexity (float64; NaN for a sequence of one token) and num_tokens
    (the tokens scored: all but the first).

        # Ray Data: one instance per actor
        ds.map_batches(BatchScorer, fn_constructor_kwargs={"model": path},
                       compute=ray.data.ActorPoolStrategy(size=2), batch_size=256)
        # Dask: the instance is sent with each task and loads the model once per worker process
        scorer = BatchScorer(path)
        ddf.map_partitions(scorer, meta=scorer.meta(ddf))
        # Spark
        df.mapInPandas(lambda frames: map(scorer, frames), schema=...)

    model: a checkpoint directory or Hub id, read in each worker; tokenizer: its directory or Hub id when not the
    model's (needed for a text column only). num_threads: threads per call in each worker (see
    nemotron_c.distributed.loading.worker_threads for the default: the CPUs the engine gave the worker). dtype,
    model_kwargs: for from_pretrained; tokenizer_kwargs: for AutoTokenizer.from_pretrained. batch_size, max_length,
    chunk_size, add_special_tokens: as in model.score (batch_size is the sequences per forward pass inside a
    batch, not the engine's batch size).
    """

    def __init__(self, model, tokenizer=None, *, num_threads=None, dtype=None, text_column="text",
                 input_ids_column="input_ids", batch_size=16, max_length=None, chunk_size=1024,
                 add_special_tokens=True, model_kwargs=None, tokenizer_kwargs=None):
        super().__init__(model, tokenizer, num_threads, dtype, text_column, input_ids_column, batch_size,
                         add_special_tokens, model_kwargs, tokenizer_kwargs)
        self.max_length = None if max_length is None else positive_int(max_length, "max_length")
        self.chunk_size = positive_int(chunk_size, "chunk_size")

    def _run(self, kind, values):
        scores = self.model.score(self._token_ids(kind, values), batch_size=self.batch_size,
                                  max_length=self.max_length, chunk_size=self.chunk_size)
        return {name: np.asarray(getattr(scores, name), dtype=dtype) for name, dtype in SCORE_COLUMNS.items()}

    def _empty(self, kind):
        return {name: np.zeros(0, dtype=dtype) for name, dtype in SCORE_COLUMNS.items()}


class BatchGenerator(BatchWorker):
    """Continues each row's prompt with model.generate; appends generated_text (the new tokens decoded) for a text
    column, or generated_ids (the new token ids) for a token id column. A row's new tokens are those
    model.generate gives for its prompt alone: prompts are left-padded into batches of batch_size, and each row
    is cut after its first end-of-sequence token (what follows is padding).

        ds.map_batches(BatchGenerator, fn_constructor_kwargs={"model": path, "max_new_tokens": 64},
                       compute=ray.data.ActorPoolStrategy(size=2))

    max_new_tokens is required: max_length and min_length count the padding a batch adds, so they would make a
    row's result depend on its neighbours; min_new_tokens is the partition-proof spelling. Sampling
    (do_sample=True) and stop_strings run each prompt alone, so that a row's text with a given seed= does not
    depend on the partitioning either. Other keywords go to model.generate (num_beams, repetition_penalty, seed,
    ...). skip_special_tokens: for decoding. The loading arguments are BatchScorer's.
    """

    def __init__(self, model, tokenizer=None, *, max_new_tokens, num_threads=None, dtype=None, text_column="text",
                 input_ids_column="input_ids", batch_size=16, add_special_tokens=True, skip_special_tokens=True,
                 model_kwargs=None, tokenizer_kwargs=None, **generate_kwargs):
        super().__init__(model, tokenizer, num_threads, dtype, text_column, input_ids_column, batch_size,
                         add_special_tokens, model_kwargs, tokenizer_kwargs)
        self.max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
        given = generate_kwargs.get("generation_config")
        for name, instead in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
            if generate_kwargs.get(name) is not None or getattr(given, name, None) is not None:
                raise ValueError(f"{name} counts the left padding of a batch, so a row's result would depend on the "
                                 f"partitioning: give {instead} instead")
        for name in ("input_ids", "inputs", "attention_mask", "streamer"):
            if name in generate_kwargs:
                raise ValueError(f"{name} is set by BatchGenerator for each batch; it cannot be given")
        if generate_kwargs.get("num_return_sequences", 1) != 1:
            raise NotImplementedError("BatchGenerator returns one sequence per row: num_return_sequences must be 1")
        self.skip_special_tokens = skip_special_tokens
        self.generate_kwargs = generate_kwargs

    def _run(self, kind, values):
        prompts = self._token_ids(kind, values)
        for i, prompt in enumerate(prompts):
            if prompt.size == 0:
                raise ValueError(f"row {i} has an empty prompt: generation needs at least one token")
        new_tokens = self._generate(prompts)
        if kind == "input_ids":
            return {"generated_ids": object_array(new_tokens)}
        texts = self.tokenizer.batch_decode([t.tolist() for t in new_tokens],
                                            skip_special_tokens=self.skip_special_tokens)
        return {"generated_text": object_array(texts)}  # a numpy str array drops a text's trailing NUL characters

    def _empty(self, kind):
        if kind == "input_ids":
            return {"generated_ids": np.zeros(0, dtype=object)}
        return {"generated_text": np.zeros(0, dtype=str)}  # pandas makes both its str dtype

    def _generate(self, prompts):
        """Each prompt's new token ids (int64 arrays), in the order given."""
        model, kwargs = self.model, self.generate_kwargs
        # the settings generate will run with: a generation_config= given, then the keywords, over the model's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generation_config= beside keywords: generate warns once, itself
            config, _ = prepare_generation_config(model, kwargs.get("generation_config"),
                                                  {k: v for k, v in kwargs.items() if k != "generation_config"})
        eos = as_token_list(config.eos_token_id, "eos_token_id") or []
        pad = config.pad_token_id if config.pad_token_id is not None else eos[0] if eos else 0
        stop_strings = config.stop_strings
        rows_per_call = 1 if config.do_sample or stop_strings else self.batch_size
        call_kwargs = {**kwargs, "pad_token_id": pad, "max_new_tokens": self.max_new_tokens}
        if stop_strings:
            call_kwargs["tokenizer"] = self.tokenizer
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths together: less padding
        results = [None] * len(prompts)
        for start in range(0, len(prompts), rows_per_call):
            rows = order[start:start + rows_per_call]
            T = max(len(prompts[i]) for i in rows)
            ids = np.full((len(rows), T), pad, dtype=np.int64)
            mask = np.zeros((len(rows), T), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, T - len(prompts[i]):] = prompts[i]
                mask[r, T - len(prompts[i]):] = 1
            out = model.generate(ids, attention_mask=mask, **call_kwargs)
            sequences = out.sequences if hasattr(out, "sequences") else out
            for r, i in enumerate(rows):
                results[i] = until_end(np.asarray(sequences[r, T:], dtype=np.int64), eos)
        return results


def _missing(value):
    """None, NaN or pandas' NA: what Dask puts in a text column to infer a result's columns."""
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def until_end(tokens, eos):
    """The tokens up to and including the first end-of-sequence token (what follows it is padding)."""
    ends = np.flatnonzero(np.isin(tokens, eos)) if eos else []
    return tokens[:ends[0] + 1] if len(ends) else tokens


def input_column(batch, name):
    """The input column `name` of the batch, one value per row."""
    values = batch[name]
    if is_data_frame(values):
        # a DataFrame with two columns of that name gives both, and iterating over them yields their labels: the
        # label would be scored as every row's text
        raise ValueError(f"the batch has {values.shape[1]} columns named {name!r}; rename all but one")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        # a mapping's str value would be iterated character by character, each scored as a row
        raise TypeError(f"column {name!r} must hold one value per row (a list or array), not a single "
                        f"{type(values).__name__}")
    return values


def object_array(items):
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # one by one: equal-length arrays would otherwise make a 2-D array
        array[i] = item
    return array


def is_data_frame(batch):
    pandas = sys.modules.get("pandas")  # a DataFrame exists only if pandas was imported
    return pandas is not None and isinstance(batch, pandas.DataFrame)


def append_columns(batch, results):
    """`batch` with the result columns appended, in the batch's own type."""
    existing = list(batch.columns) if is_data_frame(batch) else list(batch)
    clash = [name for name in results if name in existing]
    if clash:
        raise ValueError(f"the batch already has the column(s) {clash} that would hold the results; rename them")
    if is_data_frame(batch):
        return batch.assign(**results)
    return {**batch, **results}
