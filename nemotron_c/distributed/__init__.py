"""Scoring and generation over a corpus on data engines (Ray Data, Dask, Spark): engine-neutral callable classes
that each worker process loads once and maps over batches of rows. README: "Scoring a large corpus".

    import ray, nemotron_c.distributed as nd
    ds = ray.data.read_parquet("corpus/")
    ds = ds.map_batches(nd.BatchScorer, fn_constructor_kwargs={"model": path},
                        compute=ray.data.ActorPoolStrategy(size=2), batch_size=256)
    ds.write_parquet("scores/")

nemotron_c itself needs none of the engines (pip install "nemotron_c[ray]" or "nemotron_c[dask]").
"""
from .loading import worker_threads
from .workers import BatchGenerator, BatchScorer

__all__ = ["BatchGenerator", "BatchScorer", "worker_threads"]
