"""Spark: df.mapInPandas with the same BatchScorer, on a local[2] session started here (pyspark is a test
dependency; Spark needs a Java runtime, which the machines this project runs on have)."""
import os
import sys

import pytest
from helpers.distributed import assert_same_scores, frame, path, reference  # noqa: F401 (fixtures)

from nemotron_c.distributed import BatchScorer

from pyspark.sql import SparkSession

SCHEMA = "id long, text string, sum_logprob double, mean_logprob double, perplexity double, num_tokens long"


@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this interpreter (and its PYTHONPATH)
    session = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    yield session
    session.stop()


def test_map_in_pandas_equals_one_process(spark, path, frame, reference):
    scorer = BatchScorer(path)
    df = spark.createDataFrame(frame).repartition(4)
    out = df.mapInPandas(lambda frames: map(scorer, frames), schema=SCHEMA).toPandas().sort_values("id")
    assert out["text"].tolist() == frame["text"].tolist()
    assert_same_scores(out.reset_index(drop=True), reference)
