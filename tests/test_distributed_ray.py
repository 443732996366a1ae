"""Ray Data batch inference with BatchScorer and BatchGenerator as Ray documents it (map_batches with a callable
class on a pool of actors), on a local Ray instance with 2 CPUs started here: Parquet and JSON lines in and out,
results equal to one process's, and an actor killed mid-job (Ray restarts it and retries the batch)."""
import os

import pytest
import ray
import ray.cloudpickle
from helpers import distributed as distributed_helpers
from helpers.distributed import (DiesOnce, assert_complete, assert_same_scores, frame, generated_alone,
                                 path, read_output, reference, with_input_ids, write_parts)  # noqa: F401 (fixtures)

from nemotron_c.distributed import BatchGenerator, BatchScorer

# the actors unpickle DiesOnce by value: they cannot import the tests' helpers
ray.cloudpickle.register_pickle_by_value(distributed_helpers)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray must not reach the network
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def two_actors():
    """map_batches arguments for a pool of 2 actors taking half a CPU each: actors holding both CPUs would starve
    the read tasks forever (Ray starts the pool first). Each still gets OMP_NUM_THREADS=1, hence one thread."""
    return {"compute": ray.data.ActorPoolStrategy(size=2), "num_cpus": 0.5}


def test_parquet_scored_on_two_actors_equals_one_process(path, frame, reference, tmp_path):
    source = write_parts(frame, str(tmp_path / "in"), parts=4, fmt="parquet")
    ds = ray.data.read_parquet(source).repartition(4)  # small files make one block: 4 to share
    ds = ds.map_batches(BatchScorer, fn_constructor_kwargs={"model": path, "batch_size": 8}, batch_size=32,
                        **two_actors())
    ds.write_parquet(str(tmp_path / "out"))
    out = read_output(str(tmp_path / "out"))
    assert list(out.columns) == ["id", "text", "sum_logprob", "mean_logprob", "perplexity", "num_tokens"]
    assert out["text"].tolist() == frame["text"].tolist()
    assert_same_scores(out, reference)


def test_token_ids_in_json_lines_scored_and_written_back(path, frame, reference, tmp_path):
    source = write_parts(with_input_ids(frame, path), str(tmp_path / "in"), parts=3, fmt="jsonl")
    ds = ray.data.read_json(source, lines=True).repartition(3)
    ds = ds.map_batches(BatchScorer, fn_constructor_kwargs={"model": path}, batch_size=50, **two_actors())
    ds.write_json(str(tmp_path / "out"))
    assert_same_scores(read_output(str(tmp_path / "out")), reference)


def test_generation_equals_generate_on_each_prompt_alone(path, frame, tmp_path):
    rows = frame.iloc[[0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13]]
    expected = generated_alone(path, rows["text"].tolist(), max_new_tokens=5)
    ds = ray.data.read_parquet(write_parts(rows, str(tmp_path / "in"), parts=2, fmt="parquet")).repartition(2)
    ds = ds.map_batches(BatchGenerator, fn_constructor_kwargs={"model": path, "max_new_tokens": 5},
                        batch_size=4, **two_actors())
    out = ds.to_pandas().sort_values("id")
    assert out["generated_text"].tolist() == expected


def test_an_actor_killed_mid_job_loses_and_duplicates_nothing(path, frame, reference, tmp_path):
    marker = str(tmp_path / "killed")
    ds = ray.data.read_parquet(write_parts(frame, str(tmp_path / "in"), parts=6, fmt="parquet")).repartition(6)
    ds = ds.map_batches(DiesOnce, fn_constructor_kwargs={"model": path, "marker": marker}, batch_size=25,
                        **two_actors())
    ds.write_parquet(str(tmp_path / "out"))
    assert os.path.exists(marker), "no actor was killed"
    out = read_output(str(tmp_path / "out"))
    assert_complete(out)
    assert_same_scores(out, reference)
