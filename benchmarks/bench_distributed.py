"""Scoring throughput on one machine: one process's model.score against BatchScorer on Dask and Ray Data with
1 and 2 worker processes, and the memory of each Dask worker process after the job (the weights are
memory-mapped, so the workers of a node share their pages: compare RSS with PSS, from /proc/self/smaps_rollup).

    python benchmarks/bench_distributed.py [--rows 128] [--engines dask,ray]

The same random checkpoint (made on the fly with Transformers, float32 safetensors) and the same rows of token
ids (random lengths) for all. Each engine splits the rows into 4 partitions; a worker gets cpus / workers
threads. Dask's workers stay up between jobs, so its time is a second job's (model loaded); Ray Data starts its
actors for each job (and ends them), so its time includes their start and the model's load, as a user's job's.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nemotron_c.distributed import BatchScorer  # noqa: E402

MEMORY_FIELDS = ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty")


def smaps_rollup():
    """{field: bytes} of this process's /proc/self/smaps_rollup (Linux)."""
    values = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in MEMORY_FIELDS:
                values[name] = int(rest.split()[0]) * 1024
    return values


def run_dask(path, frame, workers, threads, parts):
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           worker_dashboard_address=None)
    # Dask would turn the object column of id lists into strings
    with Client(cluster) as client, dask.config.set({"dataframe.convert-string": False}):
        scorer = BatchScorer(path, num_threads=threads)
        warm_up = dd.from_pandas(frame.iloc[:8], npartitions=workers)
        warm_up.map_partitions(scorer, meta=scorer.meta(warm_up)).compute()  # loads the model in each worker
        ddf = dd.from_pandas(frame, npartitions=parts)
        start = time.perf_counter()
        out = ddf.map_partitions(scorer, meta=scorer.meta(ddf)).compute()
        seconds = time.perf_counter() - start
        memory = client.run(smaps_rollup)  # the workers, with the model loaded and used
    cluster.close()
    return seconds, out, memory


def run_ray(path, frame, workers, threads, parts):
    import ray

    blocks = np.array_split(np.arange(len(frame)), parts)
    ds = ray.data.from_pandas([frame.iloc[b] for b in blocks])
    start = time.perf_counter()
    out = ds.map_batches(BatchScorer, fn_constructor_kwargs={"model": path, "num_threads": threads},
                         compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                         batch_size=len(blocks[0])).to_pandas()
    return time.perf_counter() - start, out, {}  # the actors are gone when the job ends


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--min-length", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--engines", default="dask,ray")
    args = parser.parse_args()

    import pandas
    import torch
    import transformers

    import nemotron_c

    cpus = len(os.sched_getaffinity(0))
    transformers.logging.set_verbosity_error()
    config = transformers.NemotronConfig(vocab_size=args.vocab, hidden_size=args.hidden,
                                         intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                                         num_attention_heads=8, num_key_value_heads=4)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.min_length, args.max_length + 1, size=args.rows)
    ids = [rng.integers(0, args.vocab, size=n) for n in lengths]
    frame = pandas.DataFrame({"id": np.arange(args.rows), "input_ids": ids})
    print(f"{args.rows} rows of {args.min_length}-{args.max_length} tokens ({lengths.sum()} in all), {cpus} CPUs")

    with tempfile.TemporaryDirectory() as path:
        transformers.NemotronForCausalLM(config).save_pretrained(path)
        weights = os.path.getsize(os.path.join(path, "model.safetensors"))
        print(f"checkpoint: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}: "
              f"model.safetensors {weights / 2**20:.1f} MiB (float32)\n")

        model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, num_threads=cpus)
        model.score(ids[:4])  # pages the weights in, starts the threads
        single = np.inf
        for _ in range(2):  # the best of two: the machine may be shared
            start = time.perf_counter()
            reference = model.score(ids)
            single = min(single, time.perf_counter() - start)
        print(f"{'one process, model.score':<34} {args.rows / single:8.1f} texts/s   {single:6.2f} s")
        del model

        runners = {"dask": run_dask, "ray": run_ray}
        engines = [e for e in args.engines.split(",") if e]
        if "ray" in engines:
            import ray

            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
        for engine in engines:
            for workers in (1, 2):
                threads = max(1, cpus // workers)
                seconds, out, memory = runners[engine](path, frame, workers, threads, parts=4)
                out = out.sort_values("id")
                worst = np.nanmax(np.abs(out["sum_logprob"].to_numpy() - reference.sum_logprob))
                label = f"{engine}, {workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
                print(f"{label:<34} {args.rows / seconds:8.1f} texts/s   {seconds:6.2f} s   "
                      f"(max |sum_logprob - model.score| {worst:.2g})")
                for worker, m in memory.items():
                    print(f"{'':<6}worker process: RSS {m['Rss'] / 2**20:6.1f} MiB  PSS {m['Pss'] / 2**20:6.1f} MiB  "
                          f"shared clean {m['Shared_Clean'] / 2**20:6.1f} MiB  private "
                          f"{(m['Private_Clean'] + m['Private_Dirty']) / 2**20:6.1f} MiB")
        if "ray" in engines:
            ray.shutdown()


if __name__ == "__main__":
    main()
