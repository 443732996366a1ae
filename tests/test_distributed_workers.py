"""BatchScorer and BatchGenerator on their own (no engine): results equal model.score / model.generate in one
process whatever the partitioning, in each batch type; loading once per process; what they refuse."""
import pickle

import numpy as np
import pandas
import pytest
import transformers
from helpers.distributed import assert_same_scores, frame, path, reference, with_input_ids  # noqa: F401 (fixtures)

import nemotron_c
from nemotron_c.distributed import BatchGenerator, BatchScorer, worker_threads
from nemotron_c.distributed import loading


def partitions(frame, sizes):
    """`frame` cut into consecutive pieces of the given sizes (the last takes the rest)."""
    bounds = np.cumsum([0] + list(sizes))
    return [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [frame.iloc[bounds[-1]:]]


def as_numpy_batch(part):
    """As Ray Data's default batch_format "numpy" gives it: a dict of arrays (object arrays for lists)."""
    batch = {}
    for name in part.columns:
        values = part[name].tolist()
        if values and isinstance(values[0], list):
            column = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):
                column[i] = np.asarray(v)
        else:
            column = np.asarray(values)
        batch[name] = column
    return batch


@pytest.mark.parametrize("sizes", [[], [1, 2, 5, 40, 100], [37] * 8], ids=["whole", "uneven", "even"])
@pytest.mark.parametrize("batch_type", ["pandas", "numpy"])
def test_scores_equal_model_score_whatever_the_partitioning(path, frame, reference, sizes, batch_type):
    scorer = BatchScorer(path, batch_size=8)
    outputs = []
    for part in partitions(frame, sizes):
        if batch_type == "pandas":
            out = scorer(part)
            assert list(out.index) == list(part.index) and list(out.columns[:2]) == ["id", "text"]
        else:
            out = pandas.DataFrame(scorer(as_numpy_batch(part)))
        outputs.append(out)
    assert_same_scores(pandas.concat(outputs, ignore_index=True), reference)


def test_token_id_column_scores_as_the_texts_do(path, frame, reference):
    ids = with_input_ids(frame, path)
    scorer = BatchScorer(path)
    out = pandas.concat([scorer(part) for part in partitions(ids, [100, 50])], ignore_index=True)
    assert_same_scores(out, reference)
    out = pandas.DataFrame(scorer(as_numpy_batch(ids)))
    assert_same_scores(out, reference)
    assert list(out["input_ids"][5]) == ids["input_ids"][5]


def test_score_options_reach_model_score(path, frame):
    texts = frame["text"].tolist()[:40]
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    expected = model.score(texts, tokenizer=nemotron_c.AutoTokenizer.from_pretrained(path), max_length=7,
                           add_special_tokens=False)
    out = BatchScorer(path, max_length=7, add_special_tokens=False, chunk_size=3)(frame.iloc[:40])
    assert_same_scores(out, expected)


def alone(model, prompt, max_new_tokens, **kwargs):
    """model.generate on one prompt: its new token ids."""
    return model.generate(np.array([prompt]), max_new_tokens=max_new_tokens, **kwargs)[0, len(prompt):]


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 2, "repetition_penalty": 1.3},
                                    {"do_sample": True, "seed": 5, "top_k": 20}, {"stop_strings": ["66", "e"]},
                                    # the same settings inside a generation_config=, which the worker did not read:
                                    # sampling then depended on the partitioning, stop_strings failed for want of
                                    # the tokenizer
                                    {"generation_config": nemotron_c.GenerationConfig(do_sample=True, top_k=20),
                                     "seed": 5},
                                    {"generation_config": nemotron_c.GenerationConfig(stop_strings=["66", "e"])}],
                         ids=["greedy", "beam", "sample", "stop_strings", "sample_config", "stop_strings_config"])
def test_generation_equals_generate_on_each_prompt_alone(path, frame, kwargs):
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(path)
    rows = frame.iloc[[0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 20, 21, 22, 23, 25]]
    prompts = tokenizer(rows["text"].tolist())["input_ids"]
    stops = "stop_strings" in kwargs or getattr(kwargs.get("generation_config"), "stop_strings", None)
    extra = {"tokenizer": tokenizer} if stops else {}
    expected = [alone(model, p, 6, **kwargs, **extra) for p in prompts]
    if stops:
        assert min(len(e) for e in expected) < 6  # some rows do stop early
    generator = BatchGenerator(path, max_new_tokens=6, batch_size=5, **kwargs)
    out = pandas.concat([generator(part) for part in partitions(rows, [3, 11])])
    assert out["generated_text"].tolist() == tokenizer.batch_decode([e.tolist() for e in expected],
                                                                    skip_special_tokens=True)
    out = generator(as_numpy_batch(with_input_ids(rows, path)))
    assert len(out["generated_ids"]) == len(expected) == len(rows)
    for ours, theirs in zip(out["generated_ids"], expected):
        np.testing.assert_array_equal(ours, theirs)


def test_rows_that_end_early_are_cut_after_their_end(path, frame):
    """A row that meets eos keeps its eos and not the padding its batch adds after it while others go on."""
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    prompts = with_input_ids(frame.iloc[:12], path)
    free = [alone(model, p, 8) for p in prompts["input_ids"]]
    eos = int(free[0][2])  # prompt 0 then ends at its third new token
    expected = [alone(model, p, 8, eos_token_id=eos) for p in prompts["input_ids"]]
    assert len(expected[0]) == 3 and max(len(e) for e in expected) == 8
    for kwargs in ({"eos_token_id": eos}, {"generation_config": nemotron_c.GenerationConfig(eos_token_id=eos)}):
        out = BatchGenerator(path, max_new_tokens=8, batch_size=12, **kwargs)(prompts)
        assert len(out["generated_ids"]) == len(expected) == 12
        for ours, theirs in zip(out["generated_ids"], expected):
            np.testing.assert_array_equal(ours, theirs)


def test_instances_pickle_as_their_arguments_and_load_once_per_process(path, frame, reference, monkeypatch):
    scorer = BatchScorer(path, batch_size=4)
    scorer(frame.iloc[:3])
    assert len(pickle.dumps(scorer)) < 2000  # the model is not in it
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy.model is scorer.model and copy.tokenizer is scorer.tokenizer
    assert_same_scores(copy(frame), reference)
    # the per-process table is what keeps it: emptied, the next batch loads again
    first = scorer.model
    monkeypatch.setattr(loading, "_loaded", {})
    assert copy.model is not first


def test_threads_follow_the_argument_then_the_engines_setting(path, monkeypatch):
    monkeypatch.delenv("NEMOTRON_C_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray, Dask's nanny and PySpark set in their workers
    assert worker_threads(None) == 1 and worker_threads(2) == 2
    assert BatchScorer(path).model.num_threads == 1
    assert BatchScorer(path, num_threads=2).model.num_threads == 2
    monkeypatch.setenv("NEMOTRON_C_NUM_THREADS", "2")  # ours wins over OMP's
    assert worker_threads(None) is None
    assert BatchScorer(path).model.num_threads == 2


def test_meta_is_the_output_of_an_empty_frame(path, frame):
    for worker in (BatchScorer(path), BatchGenerator(path, max_new_tokens=2)):
        meta, out = worker.meta(frame), worker(frame.iloc[:3])
        assert len(meta) == 0 and list(meta.columns) == list(out.columns)
        assert [str(t) for t in meta.dtypes] == [str(t) for t in out.dtypes]


def test_an_empty_batch_loads_nothing(frame):
    out = BatchScorer("/no/such/checkpoint")(frame.iloc[:0])
    assert len(out) == 0 and "perplexity" in out.columns
    out = BatchGenerator("/no/such/checkpoint", max_new_tokens=3)({"text": np.array([], dtype=str)})
    assert list(out) == ["text", "generated_text"] and len(out["generated_text"]) == 0


@pytest.mark.parametrize("make, error, match", [
    (lambda p: BatchScorer(nemotron_c), TypeError, "checkpoint directory or Hub id"),
    (lambda p: BatchScorer(p, num_threads=0), ValueError, "num_threads must be a positive integer"),
    (lambda p: BatchScorer(p, batch_size=0), ValueError, "batch_size must be a positive integer"),
    (lambda p: BatchGenerator(p), TypeError, "max_new_tokens"),
    (lambda p: BatchGenerator(p, max_new_tokens=4, max_length=30), ValueError, "give max_new_tokens instead"),
    (lambda p: BatchGenerator(p, max_new_tokens=4, min_length=3), ValueError, "give min_new_tokens instead"),
    (lambda p: BatchGenerator(p, max_new_tokens=4, generation_config=nemotron_c.GenerationConfig(max_length=9)),
     ValueError, "give max_new_tokens instead"),
    (lambda p: BatchGenerator(p, max_new_tokens=4, attention_mask=[1]), ValueError, "set by BatchGenerator"),
    (lambda p: BatchGenerator(p, max_new_tokens=4, num_return_sequences=2), NotImplementedError, "one sequence"),
])
def test_bad_arguments_are_refused_on_the_driver(path, make, error, match):
    with pytest.raises(error, match=match):
        make(path)


@pytest.mark.parametrize("batch, error, match", [
    ({"id": np.arange(2), "body": np.array(["a", "b"])}, ValueError, "neither a 'text' nor an 'input_ids' column"),
    ({"text": np.array(["a", None], dtype=object)}, TypeError, "row 1 of column 'text' holds None"),
    # what Dask's map_partitions without meta= runs the worker on first
    ({"text": pandas.array(["a", None], dtype="string")}, TypeError, r"holds <NA>, not a text \(with Dask, give "
                                                                     r"map_partitions meta=worker.meta\(ddf\)\)"),
    ({"input_ids": np.array([[1.5, 2.0]])}, TypeError, "row 0 of column 'input_ids' must be a list of token ids"),
    ({"text": np.array(["a"]), "perplexity": np.zeros(1)}, ValueError, r"already has the column\(s\) \['perplexity'\]"),
    ([{"text": "a"}], TypeError, "pandas DataFrame or a mapping of columns"),
    # a column of one str was scored character by character, one row each
    ({"text": "abc"}, TypeError, "column 'text' must hold one value per row .* not a single str"),
    # the wrap to int64 made it -1, and the error named that id
    ({"input_ids": [np.array([1, 2 ** 64 - 1], dtype=np.uint64)]}, ValueError,
     "row 0 of column 'input_ids' holds token id 18446744073709551615, which does not fit"),
    # two columns named "text": their labels were scored as each row's text
    (pandas.DataFrame([["a b", "c"], ["d", "e f"]], columns=["text", "text"]), ValueError,
     "the batch has 2 columns named 'text'"),
])
def test_bad_batches_raise_naming_the_problem(path, batch, error, match):
    with pytest.raises(error, match=match):
        BatchScorer(path)(batch)


def test_an_empty_prompt_is_refused(path):
    with pytest.raises(ValueError, match="row 1 has an empty prompt"):
        BatchGenerator(path, max_new_tokens=2)({"input_ids": [[5, 6], []]})


def test_generated_text_keeps_trailing_nul_characters(path, frame):
    """A numpy str array, which the text column was built as, drops trailing NULs: a text ending in the byte-fallback
    token <0x00> lost it. The text is Transformers' decoding of the tokens model.generate gives."""
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    nul = hf_tokenizer.convert_tokens_to_ids("<0x00>")
    assert hf_tokenizer.decode([nul]) == "\x00"
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    rows = frame.iloc[:3]
    generator = BatchGenerator(path, max_new_tokens=3, batch_size=2, forced_eos_token_id=nul)
    prompts = hf_tokenizer(rows["text"].tolist())["input_ids"]
    expected = [hf_tokenizer.decode(alone(model, p, 3, forced_eos_token_id=nul), skip_special_tokens=True)
                for p in prompts]
    assert all(text.endswith("\x00") for text in expected)
    for batch in (rows, as_numpy_batch(rows)):
        assert list(generator(batch)["generated_text"]) == expected


def test_loading_arguments_without_a_hash_load_once(path, frame, reference):
    """A dict (device_map) or a config among model_kwargs made the table's key raise TypeError: unhashable; a
    pickled copy of the worker, as each Dask task gets, must find the same model."""
    config = nemotron_c.NemotronConfig.from_pretrained(path)
    scorer = BatchScorer(path, model_kwargs={"device_map": {"": "cpu"}, "config": config},
                         tokenizer_kwargs={"proxies": {}})
    assert_same_scores(scorer(frame), reference)
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy.model is scorer.model and copy.tokenizer is scorer.tokenizer


def test_loading_arguments_that_cannot_be_pickled_still_key_the_cache():
    """A keyword no engine could ship (a lock, a lambda) keys the process's cache by the object itself."""
    import threading

    from nemotron_c.distributed.loading import frozen

    lock, function = threading.Lock(), lambda: 1
    assert frozen({"a": lock, "b": function}) == frozen({"b": function, "a": lock})
    assert frozen({"a": lock}) != frozen({"a": threading.Lock()})
    assert frozen({"device_map": {"": "cpu"}}) == frozen({"device_map": {"": "cpu"}})  # equal values, new objects
