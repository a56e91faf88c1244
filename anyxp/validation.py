"""Checks and conversions of user data at the boundary (once per call, never per batch).

Every check names the argument, and where it helps the row and the expected value;
none of them modifies the caller's data.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .backend import Backend, is_array, to_numpy


def as_host_or_native(x: Any, backend: Backend, name: str) -> Any:
    """Arrays of the backend's library stay where they are; anything else -> NumPy."""
    if backend.is_native(x):
        return x
    try:
        if isinstance(x, np.ndarray):
            return x
        if is_array(x):
            return to_numpy(x)
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None


def check_features(x: Any, name: str, expected: int | None) -> None:
    """``x`` is a non-empty 2-D array of numbers with ``expected`` columns, all finite."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if expected is not None and x.shape[1] != expected:
        raise ValueError(f"{name} has {x.shape[1]} features, but the network expects {expected}")
    if isinstance(x, np.ndarray) and not (
        np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_
    ):
        raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")
    check_finite(x, name)


def check_finite(x: Any, name: str) -> None:
    """Raise naming the first row that holds NaN or inf."""
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return
    # one pass: NaN and inf propagate into the sum; only if it is not finite (or the sum
    # overflowed) look element by element
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is expected here
        if bool(xp.isfinite(xp.sum(x))) or bool(xp.all(xp.isfinite(x))):
            return
    host = to_numpy(x)
    bad = ~np.isfinite(host)
    rows = bad.reshape(bad.shape[0], -1).any(axis=1) if host.ndim > 1 else bad
    row = int(np.argmax(rows))
    what = "NaN" if np.isnan(host[row]).any() else "inf"
    raise ValueError(f"{name} contains {what} in row {row}")


def check_lengths(x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x_name} and {y_name} have different lengths: {x.shape[0]} and {y.shape[0]}")


def targets_for(y: Any, outputs: int, loss_name: str, name: str = "y") -> tuple[np.ndarray, bool]:
    """Host targets of shape (n, outputs) from labels, one-hot or real targets.

    Returns the targets and whether ``y`` held integer class labels. Integer labels
    (1-D) become one-hot rows when the network has several outputs.
    """
    y = to_numpy(y) if not isinstance(y, np.ndarray) else y
    if y.ndim == 0:
        raise ValueError(f"{name} must be an array of targets, got a scalar")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"{name} must hold numbers, got dtype {y.dtype}")
    check_finite(y, name)
    if y.ndim == 1 and outputs > 1:
        labels = _as_labels(y, name)
        bad = np.flatnonzero((labels < 0) | (labels >= outputs))
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{name} has label {labels[row]} in row {row}; labels must be integers in "
                f"[0, {outputs}) for a network with {outputs} outputs"
            )
        return np.eye(outputs)[labels], True
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != outputs:
        raise ValueError(
            f"{name} has shape {tuple(y.shape)}; expected ({y.shape[0]}, {outputs}) targets "
            f"or 1-D integer labels for a network with {outputs} outputs"
        )
    if loss_name in ("cross_entropy", "binary_cross_entropy"):
        bad = np.flatnonzero(((y < 0) | (y > 1)).any(axis=1))
        if bad.size:
            raise ValueError(
                f"{name} row {int(bad[0])} has targets outside [0, 1], which {loss_name} needs"
            )
    if loss_name == "cross_entropy":
        sums = y.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{name} row {row} sums to {sums[row]:.4g}; cross_entropy targets must be one-hot rows "
                "or probability distributions (or 1-D integer labels)"
            )
        is_labels = bool(np.isin(y, (0, 1)).all())
        return y, is_labels
    is_labels = loss_name == "binary_cross_entropy" and bool(np.isin(y, (0, 1)).all())
    return y, is_labels


def _as_labels(y: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return y.astype(np.int64)
    labels = np.rint(y)
    bad = np.flatnonzero(labels != y)
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{name} has a non-integer class label {y[row].item()!r} in row {row}")
    return labels.astype(np.int64)


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def sample_weights(
    n: int, labels: np.ndarray | None, class_weight: dict | None, sample_weight: Any
) -> np.ndarray | None:
    """Per-sample weights from ``sample_weight`` and/or ``class_weight`` (or None)."""
    weights = None
    if sample_weight is not None:
        weights = np.asarray(to_numpy(sample_weight), dtype=np.float64)
        if weights.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {weights.shape}")
        check_finite(weights, "sample_weight")
        if (weights < 0).any():
            raise ValueError(f"sample_weight row {int(np.argmax(weights < 0))} is negative")
    if class_weight is not None:
        if labels is None:
            raise ValueError("class_weight needs class targets (labels or one-hot)")
        if not isinstance(class_weight, dict):
            raise ValueError(f"class_weight must be a dict {{class: weight}}, got {type(class_weight).__name__}")
        table = np.ones(max([int(labels.max()) + 1, *(int(k) + 1 for k in class_weight)]))
        for cls, w in class_weight.items():
            if not np.isfinite(w) or w < 0:
                raise ValueError(f"class_weight[{cls!r}] must be a finite number >= 0, got {w!r}")
            table[int(cls)] = float(w)
        per_class = table[labels]
        weights = per_class if weights is None else weights * per_class
    return weights
