"""The fuzz targets of fuzz/ (one per reader of outside data) over their seeds, their regression files and a
bounded seeded mutation run: bad input may raise the readers' documented exceptions, nothing else."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz.mutate import mutations  # noqa: E402
from fuzz.run import STRUCTURED  # noqa: E402
from fuzz.targets import TARGETS, run_one, seeds  # noqa: E402

ITERATIONS = 1000


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_and_regressions(target):
    found = seeds(target)
    assert any(name.startswith("corpus") for name, _ in found)
    for name, data in found:
        assert run_one(target, data) is None, name


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutations_find_nothing(target):
    tried = 0
    for i, data in enumerate(mutations(seeds(target), 0, ITERATIONS, STRUCTURED.get(target))):
        error = run_one(target, data)
        assert error is None, f"iteration {i}: {type(error).__name__}: {error} (replay: python fuzz/run.py {target})"
        tried += 1
    assert tried == ITERATIONS  # a generator that gives nothing would find nothing
