"""Every loss the models compute, as Transformers' loss_utils defines them, in float64 over NumPy arrays."""
import numpy as np

from .inputs import to_numpy

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def causal_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, shift_labels=None, ignore_index=-100):
    """Transformers' ForCausalLMLoss: cross-entropy of each position's logits against the next label (or against
    shift_labels, already shifted, when given): the mean, or the sum over num_items_in_batch when given."""
    B, K, V = logits.shape
    if shift_labels is not None:
        shift = integer_labels(shift_labels, "shift_labels", (B, K))
    else:
        labels = integer_labels(labels, "labels", (B, K))
        shift = np.full_like(labels, ignore_index)
        shift[:, :-1] = labels[:, 1:]
    shift = shift.reshape(-1)
    keep = shift != ignore_index
    if np.any((shift[keep] < 0) | (shift[keep] >= vocab_size)):
        raise ValueError(f"labels must lie in [0, {vocab_size}) or equal {ignore_index}")
    return cross_entropy(logits.reshape(-1, V), shift, ignore_index, num_items_in_batch)


def integer_labels(labels, name, shape):
    """labels as int64 of `shape` (B, K); a 1-D array is one sequence."""
    labels = to_numpy(labels, name)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {labels.dtype}")
    if labels.ndim == 1:
        labels = labels[None, :]
    if labels.shape != shape:
        raise ValueError(f"{name} has shape {labels.shape}, expected {shape} like the logits")
    return labels.astype(np.int64)


def items_count(num_items_in_batch):
    """num_items_in_batch as a float: a number, or a one-element array or tensor, as Transformers takes it."""
    value = num_items_in_batch
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    array = to_numpy(value, "num_items_in_batch")
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise TypeError(f"num_items_in_batch must be a number of tokens, got {value!r}")
    return float(array.reshape(-1)[0])


def cross_entropy(logits, targets, ignore_index, num_items_in_batch=None):
    """-log_softmax(logits)[target] over the kept rows: their mean as torch's cross_entropy (NaN when none is
    kept), or with num_items_in_batch their sum divided by it, as Transformers' fixed_cross_entropy."""
    keep = targets != ignore_index
    rows = logits.reshape(len(targets), -1)[keep].astype(np.float64)
    losses = np.zeros(0)
    if rows.shape[0]:
        peak = rows.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
        losses = log_z - rows[np.arange(rows.shape[0]), targets[keep]]
    if num_items_in_batch is None:
        return np.float32(np.mean(losses) if losses.size else np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 items: inf or NaN, as torch's division gives
        return np.float32(np.float64(losses.sum()) / items_count(num_items_in_batch))


def numeric_labels(labels, name):
    array = to_numpy(labels, name)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def class_index_labels(labels, name, count, num_labels, ignore_index=-100):
    """labels flattened to (count,) int64 class indices in [0, num_labels) or ignore_index."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices for classification, got dtype {labels.dtype}")
    flat = labels.reshape(-1).astype(np.int64)
    if flat.size != count:
        raise ValueError(f"{name} has shape {labels.shape} ({flat.size} values), expected {count} class indices")
    bad = (flat != ignore_index) & ((flat < 0) | (flat >= num_labels))
    if bad.any():
        raise ValueError(
            f"{name} holds {int(flat[bad][0])}, outside [0, {num_labels}) (use {ignore_index} to ignore a position)"
        )
    return flat


def sequence_classification_loss(pooled, labels, config):
    """Transformers' ForSequenceClassificationLoss on pooled logits (B, num_labels).

    As Transformers does, a config without problem_type gets one from the first labels it sees
    (num_labels 1: regression; int64/int32 labels: single-label; otherwise multi-label) and keeps it.
    Differences, on purpose: int32 labels are accepted for single-label classification (torch's
    cross-entropy rejects them) and labels whose shape does not match raise instead of broadcasting.
    """
    labels = numeric_labels(labels, "labels")
    B, num_labels = pooled.shape
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (np.int64, np.int32):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    problem = config.problem_type
    if problem == "regression":
        target = labels.astype(np.float64)
        prediction = pooled.astype(np.float64)
        if num_labels == 1:
            prediction, target = prediction.squeeze(), target.squeeze()
        if prediction.shape != target.shape:
            raise ValueError(f"labels has shape {labels.shape}, regression over {num_labels} value(s) needs "
                             f"{tuple(pooled.shape) if num_labels > 1 else (B,)}")
        return np.float32(np.mean((prediction - target) ** 2))
    if problem == "single_label_classification":
        return cross_entropy(pooled, class_index_labels(labels, "labels", B, num_labels), -100)
    if problem == "multi_label_classification":
        if not np.issubdtype(labels.dtype, np.floating):
            raise TypeError(f"multi_label_classification needs float labels of 0s and 1s, got dtype {labels.dtype}")
        if labels.shape != pooled.shape:
            raise ValueError(f"labels has shape {labels.shape}, multi-label classification needs {pooled.shape}")
        x, y = pooled.astype(np.float64), labels.astype(np.float64)
        # binary cross-entropy with logits, in its stable form max(x, 0) - x*y + log(1 + exp(-|x|))
        return np.float32(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))
    raise ValueError(f"config.problem_type must be one of {', '.join(PROBLEM_TYPES)} or None, got {problem!r}")


def token_classification_loss(logits, labels, num_labels):
    """Transformers' ForTokenClassification: cross-entropy over every position, -100 ignored."""
    labels = numeric_labels(labels, "labels")
    B, T, _ = logits.shape
    if labels.size != B * T:  # any shape of B * T labels, as Transformers' labels.view(-1) takes them
        raise ValueError(f"labels has shape {labels.shape}, expected {(B, T)} like input_ids")
    return cross_entropy(logits, class_index_labels(labels.reshape(-1), "labels", B * T, num_labels), -100)


def question_answering_loss(start_logits, end_logits, start_positions, end_positions, num_items_in_batch=None):
    """Transformers' ForQuestionAnsweringLoss: mean of the start and end cross-entropies.

    Positions are clamped into [0, T]; T (a position past the input) is then ignored, as in Transformers,
    so negative positions count as position 0.
    """
    B, T = start_logits.shape
    losses = []
    for name, logits, positions in (("start_positions", start_logits, start_positions),
                                    ("end_positions", end_logits, end_positions)):
        positions = numeric_labels(positions, name)
        if not np.issubdtype(positions.dtype, np.integer):
            raise TypeError(f"{name} must hold integer token positions, got dtype {positions.dtype}")
        if positions.ndim > 1 and positions.shape[-1] == 1:
            positions = positions[..., 0]
        if positions.shape != (B,):
            raise ValueError(f"{name} has shape {positions.shape}, expected ({B},): one position per sequence")
        losses.append(cross_entropy(logits, np.clip(positions.astype(np.int64), 0, T), T, num_items_in_batch))
    return np.float32((np.float64(losses[0]) + np.float64(losses[1])) / 2)
