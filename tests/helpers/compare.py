"""Comparing arrays with the first mismatch named (no torch needed)."""
import numpy as np


def assert_close(ours, reference, atol=1e-4, what="values"):
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != {reference.shape}"
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else None
    assert diff.size == 0 or diff.max() <= atol, (
        f"{what}: max abs difference {diff.max():.3g} at {worst} (ours {ours[worst]}, reference {reference[worst]})"
    )
