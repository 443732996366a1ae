"""The kernel sets a test loops over, and a model loaded on one of them (skipped where this CPU lacks it)."""
import pytest

import nemotron_c

SETS = ["amx", "avx512", "avx2", "portable"]


def skip_if_cpu_lacks(error, kernels):
    """Skips the test when `error` says this CPU cannot run the kernel set (the amx set without AMX, the avx512 set
    on an AVX2-only CPU: the other sets still run the same comparison there); returns otherwise, for the caller to
    re-raise."""
    if "this CPU cannot run" in str(error):
        pytest.skip(f"this CPU lacks the {kernels} kernels")


def load_on(path, kernels, monkeypatch, **kwargs):
    """The model on the named kernel set; skips when this CPU lacks it."""
    monkeypatch.setenv("NEMOTRON_C_KERNELS", kernels)
    try:
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ValueError as error:
        skip_if_cpu_lacks(error, kernels)
        raise
    # the set asked for, not another one that would make every set's test the same test
    assert kernels == "auto" or model.kernels == kernels, (model.kernels, kernels)
    return model
