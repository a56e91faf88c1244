"""Classification metrics on host arrays (any library's arrays are copied to NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_numpy


def _labels(y: Any, name: str) -> np.ndarray:
    y = np.asarray(to_numpy(y))
    if y.ndim == 2:
        y = np.argmax(y, axis=1) if y.shape[1] > 1 else (y[:, 0] > 0.5)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels or 2-D one-hot/probabilities, got shape {y.shape}")
    return y.astype(np.int64)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal labels (one-hot rows or probabilities are argmax-ed first)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}")
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of class i predicted as class j (as scikit-learn)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}")
    if t.size and min(t.min(), p.min()) < 0:
        raise ValueError("labels must be >= 0")
    k = num_classes if num_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and max(t.max(), p.max()) >= k:
        raise ValueError(f"a label is >= num_classes={k}")
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix
