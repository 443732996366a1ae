"""Fixtures every test module may use. Nothing here imports torch: the modules that compare with Transformers
import tests/helpers/transformers_reference.py themselves, so the others run where torch is not installed."""
import pytest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """Checkpoints(...) -> the directory of a tiny random Transformers checkpoint, each made once a session."""
    from helpers.transformers_reference import Checkpoints  # torch, only for the tests that ask for this fixture

    return Checkpoints(str(tmp_path_factory.mktemp("checkpoints")))


@pytest.fixture(params=["auto", "portable"])
def kernels(request, monkeypatch):
    """Runs a test with the CPU's best kernels and again with the portable C ones."""
    monkeypatch.setenv("NEMOTRON_C_KERNELS", request.param)
    return request.param
