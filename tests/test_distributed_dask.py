"""Dask: ddf.map_partitions(BatchScorer(...)) on a distributed LocalCluster of 2 worker processes started here,
each loading the model once; Parquet and JSON lines in and out, results equal to one process's, and a worker
killed mid-job (its nanny restarts it; the scheduler runs its partition again)."""
import os
import sys

import cloudpickle
import dask
import dask.dataframe as dd
import pytest
from distributed import Client, LocalCluster
from helpers import distributed as distributed_helpers
from helpers.distributed import (DiesOnce, assert_complete, assert_same_scores, frame, generated_alone,
                                 path, read_output, reference, single_process_scores, with_input_ids,
                                 write_parts)  # noqa: F401 (fixtures)

from nemotron_c.distributed import BatchGenerator, BatchScorer

# the workers unpickle this module's functions and DiesOnce by value: they cannot import the tests' modules
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(distributed_helpers)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           worker_dashboard_address=None)
    with Client(cluster) as client:
        yield client
    cluster.close()


def loaded_models(client):
    """{worker address: the keys of the models its process holds}."""
    def keys():
        from nemotron_c.distributed import loading
        return [key for key in loading._loaded if key[0] == "model"]
    return client.run(keys)


def test_parquet_scored_on_two_workers_equals_one_process(client, path, frame, reference, tmp_path):
    ddf = dd.read_parquet(write_parts(frame, str(tmp_path / "in"), parts=6, fmt="parquet"))
    scorer = BatchScorer(path, batch_size=8)
    scored = ddf.map_partitions(scorer, meta=scorer.meta(ddf))
    scored.to_parquet(str(tmp_path / "out"), write_index=False)
    out = read_output(str(tmp_path / "out"))
    assert out["text"].tolist() == frame["text"].tolist()
    assert_same_scores(out, reference)
    # six partitions over two processes, one model each: loaded once per worker, not once per task
    held = loaded_models(client)
    assert len(held) == 2 and all(len(keys) == 1 for keys in held.values()), held


def test_token_ids_in_json_lines_scored_and_written_back(client, path, frame, reference, tmp_path):
    source = write_parts(with_input_ids(frame, path), str(tmp_path / "in"), parts=3, fmt="jsonl")
    # Dask turns object columns into strings by default, the id lists with them (README)
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.read_json(os.path.join(source, "*.jsonl"), lines=True, orient="records")
        scorer = BatchScorer(path)
        ddf.map_partitions(scorer, meta=scorer.meta(ddf)).to_json(str(tmp_path / "out" / "*.jsonl"))
    assert_same_scores(read_output(str(tmp_path / "out")), reference)


def test_generation_equals_generate_on_each_prompt_alone(client, path, frame):
    rows = frame.iloc[[0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13]]
    expected = generated_alone(path, rows["text"].tolist(), max_new_tokens=5)
    ddf = dd.from_pandas(rows, npartitions=3)
    generator = BatchGenerator(path, max_new_tokens=5, batch_size=3)
    out = ddf.map_partitions(generator, meta=generator.meta(ddf)).compute().sort_values("id")
    assert out["generated_text"].tolist() == expected


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(client, path, frame, reference, tmp_path):
    marker = str(tmp_path / "killed")
    ddf = dd.read_parquet(write_parts(frame, str(tmp_path / "in"), parts=6, fmt="parquet"))
    scorer = DiesOnce(marker, path)
    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        ddf.map_partitions(scorer, meta=scorer.meta(ddf)).to_parquet(str(tmp_path / "out"), write_index=False)
    assert os.path.exists(marker), "no worker was killed"
    out = read_output(str(tmp_path / "out"))
    assert_complete(out)
    assert_same_scores(out, reference)


def test_empty_and_one_row_partitions_score_as_one_process(client, path, frame):
    """Partitions a filter leaves empty or with one row (the empty text of row 3 among them) give their rows'
    scores, in input order, and the empty ones no row."""
    keep = [0, 3, 60, 61, 62, 299]
    ddf = dd.from_pandas(frame, npartitions=10)
    ddf = ddf[ddf["id"].isin(keep)]
    assert sorted(ddf.map_partitions(len).compute().tolist()) == [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]
    scorer = BatchScorer(path)
    out = ddf.map_partitions(scorer, meta=scorer.meta(ddf)).compute()
    assert out["id"].tolist() == keep
    expected = single_process_scores(path, frame["text"][keep].tolist())
    assert_same_scores(out.assign(id=range(len(keep))), expected)  # assert_same_scores wants ids 0, 1, ...
