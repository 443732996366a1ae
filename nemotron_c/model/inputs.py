"""Turning what a Transformers script passes (NumPy arrays, nested lists, torch tensors) into checked arrays."""
import numpy as np


def to_numpy(value, name):
    """NumPy view of an array-like; torch tensors are detached and moved to the CPU."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            array = np.array(value)
        except ValueError:
            raise ValueError(f"{name} is a ragged nested list; pad its rows to one length") from None
        if array.dtype.kind in "fO":  # NumPy's fallback for Python ints beyond int64, where a message is due
            beyond = _int_beyond_int64(value)
            if beyond is not None:
                raise ValueError(f"{name} holds {beyond}, which does not fit a 64-bit integer")
        return array
    if isinstance(value, np.integer):
        return np.array(value)
    raise TypeError(f"{name} must be a NumPy array, a torch tensor or a nested list, not {type(value).__name__}")


INT64_MAX = 2**63 - 1


def _int_beyond_int64(value):
    """The first int of a nested list outside int64 if every leaf is an int, else None."""
    stack, beyond = [value], None
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif not isinstance(item, int):
            return None
        elif beyond is None and not -INT64_MAX - 1 <= item <= INT64_MAX:
            beyond = item
    return beyond


def check_int64(array, name):
    """Refuses a uint64 array holding values beyond int64, which a cast would turn negative."""
    if array.dtype == np.uint64 and array.size and int(array.max()) > INT64_MAX:
        raise ValueError(f"{name} holds {int(array.max())}, which does not fit a 64-bit integer")


def as_token_ids(value, name="input_ids", vocab_size=None):
    """(B, T) int64 ids from a 1-D or 2-D integer array-like; ids checked against vocab_size."""
    ids = to_numpy(value, name)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        if ids.size == 0 and ids.dtype == np.float64:  # np.array([]) or [[]]
            ids = ids.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (batch, sequence), got shape {ids.shape}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {ids.shape})")
    if vocab_size is not None:  # before the cast to int64, which would wrap uint64 ids past 2**63
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"{name} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    check_int64(ids, name)
    return np.ascontiguousarray(ids, dtype=np.int64)  # a Fortran-ordered or strided array is as good


def as_attention_mask(value, shape):
    """(B, S) uint8 mask of zeros and ones, of exactly `shape`."""
    mask = to_numpy(value, "attention_mask")
    if mask.ndim == 1 and shape[0] == 1:
        mask = mask[None, :]
    if mask.ndim != 2:
        raise ValueError(f"attention_mask must be 2-D (batch, sequence), got shape {mask.shape}")
    if mask.shape != tuple(shape):
        raise ValueError(f"attention_mask has shape {mask.shape}, expected {tuple(shape)} (batch, past + new tokens)")
    if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise TypeError(f"attention_mask must hold integers or booleans, got dtype {mask.dtype}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def as_position_ids(value, shape):
    """(B, T) int64 positions; a single row or a 1-D array is broadcast over the batch."""
    positions = to_numpy(value, "position_ids")
    if positions.dtype == np.bool_ or not np.issubdtype(positions.dtype, np.integer):
        raise TypeError(f"position_ids must hold integers, got dtype {positions.dtype}")
    check_int64(positions, "position_ids")
    if positions.ndim == 1:
        positions = positions[None, :]
    if positions.ndim != 2 or positions.shape[1] != shape[1] or positions.shape[0] not in (1, shape[0]):
        raise ValueError(f"position_ids has shape {positions.shape}, expected {tuple(shape)}")
    return np.ascontiguousarray(np.broadcast_to(positions, shape), dtype=np.int64)


def check_embeddings(value, hidden_size):
    """(B, T, H) embeddings from a 2-D (one sequence) or 3-D float array-like, checked but not yet copied: a
    broadcast view declares a batch it holds no memory for, which the other inputs' checks should see first."""
    embeds = to_numpy(value, "inputs_embeds")
    if not np.issubdtype(embeds.dtype, np.floating):
        raise TypeError(f"inputs_embeds must hold floats, got dtype {embeds.dtype}")
    if embeds.ndim == 2:
        embeds = embeds[None]
    if embeds.ndim != 3 or embeds.shape[2] != hidden_size or 0 in embeds.shape:
        raise ValueError(f"inputs_embeds must have shape (batch, sequence, {hidden_size}), got {embeds.shape}")
    return embeds


def as_embeddings(value, hidden_size):
    """(B, T, H) float32 embeddings, contiguous (check_embeddings's, copied)."""
    return np.ascontiguousarray(check_embeddings(value, hidden_size), dtype=np.float32)
