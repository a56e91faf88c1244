"""Checks and conversions of user input at the boundary (once per call, never per batch).

One function per kind of input, used by every public entry point:

- `as_features`: ``x`` of fit / evaluate / predict and of ``validation_data``
- `as_targets`: ``y``
- `as_sample_weight`, `as_class_weight` (combined by `sample_weights`)
- `as_weight_list`: the arrays of ``set_weights``
- `as_real`, `as_int`, `as_bool`: scalar hyperparameters

Each takes lists, nested lists, NumPy arrays, pandas DataFrames and Series (nullable
dtypes included, when they hold no missing value), torch tensors (``requires_grad`` or
not) and arrays of any library array-api-compat knows. What it cannot take raises a
``TypeError`` when the input is not (real) numbers at all (strings, objects, complex
numbers, a bool where a number is meant) and a ``ValueError`` when it is numbers of the
wrong shape or value; either message names the argument (and the row, the column or
the key where one is at fault). Nothing here modifies the caller's data.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from .backend import Backend, is_array, to_numpy

# --------------------------------------------------------------------------- scalars


def as_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """A finite real number (Python or NumPy; not a bool) in the given range, as a Python float.

    >>> as_real(np.float32(0.5), "rate", minimum=0, maximum=1, open_max=True)
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = float("inf")
    low_ok = minimum is None or (number > minimum if open_min else number >= minimum)
    high_ok = maximum is None or (number < maximum if open_max else number <= maximum)
    if not (np.isfinite(number) and low_ok and high_ok):
        raise ValueError(f"{name} must be {_range_text(minimum, maximum, open_min, open_max)}, got {value!r}")
    return number


def as_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """An integer (Python or NumPy; not a bool, not a float) >= ``minimum``, as a Python int.

    >>> as_int(np.int64(3), "epochs", minimum=0)
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
        if minimum == 1:
            expected += " (a positive integer)"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def as_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (a NumPy bool too); anything else is a TypeError.

    >>> as_bool(np.bool_(False), "shuffle")
    False
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int | None:
    """None, or an integer >= 1."""
    return None if batch_size is None else as_int(batch_size, name, minimum=1)


def _range_text(minimum: float | None, maximum: float | None, open_min: bool, open_max: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_min else '['}{minimum:g}, {maximum:g}{')' if open_max else ']'}"
    if minimum is not None:
        return f"a finite number {'>' if open_min else '>='} {minimum:g}"
    if maximum is not None:
        return f"a finite number {'<' if open_max else '<='} {maximum:g}"
    return "a finite number"


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"


# --------------------------------------------------------------------------- arrays


def as_features(x: Any, name: str, backend: Backend, dtype: str, expected: int | None = None) -> Any:
    """``x`` as a 2-D array of the network's ``dtype`` ("float32" / "float64"), all finite:
    the backend's own array (detached) or host NumPy. No copy where ``x`` already is one.

    >>> from anyxp import get_backend
    >>> as_features([[1, 2], [3, 4]], "x", get_backend("numpy"), "float32").dtype
    dtype('float32')
    """
    a = _as_array(x, name, backend)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has 0 features")
    if expected is not None and a.shape[1] != expected:
        raise ValueError(f"{name} has {a.shape[1]} features, but the network expects {expected}")
    return _cast_finite(a, name, dtype, backend)


def as_targets(
    y: Any, name: str, *, n: int, outputs: int, loss_name: str, dtype: str, x_name: str = "x"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Host targets of shape (n, outputs) in ``dtype``, and the class of each sample when
    ``y`` holds classes (integer labels, one-hot rows, 0/1 for binary cross-entropy), else None.

    Class labels (1-D, or a single column of them) become one-hot rows when the network
    has several outputs.
    """
    a = _as_array(y, name)
    if a.ndim == 0:
        raise ValueError(f"{name} must be an array of targets, got a scalar")
    if a.shape[0] != n:
        raise ValueError(f"{x_name} and {name} have different lengths: {n} and {a.shape[0]}")
    if a.ndim > 2:
        raise ValueError(f"{name} must be 1-D labels or 2-D targets, got shape {a.shape}")
    check_finite(a, name)
    classes = loss_name in _CLASS_LOSSES
    if outputs > 1 and (a.ndim == 1 or (a.shape[1] == 1 and (classes or a.dtype.kind in "biu"))):
        labels = _as_labels(a.reshape(-1), name, outputs)
        return np.eye(outputs, dtype=dtype)[labels], labels
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.shape[1] != outputs:
        raise ValueError(
            f"{name} has shape {a.shape}; expected ({n}, {outputs}) targets "
            f"or 1-D integer labels for a network with {outputs} outputs"
        )
    _check_target_values(a, name, loss_name)
    t = _cast_finite(a, name, dtype)
    if not (classes and bool(np.isin(a, (0, 1)).all())):
        return t, None
    return t, (np.argmax(a, axis=1) if outputs > 1 else a[:, 0].astype(np.int64))


_CLASS_LOSSES = ("cross_entropy", "binary_cross_entropy")


def _check_target_values(y: np.ndarray, name: str, loss_name: str) -> None:
    """Cross-entropies need targets in [0, 1], and cross_entropy rows summing to 1."""
    if loss_name not in _CLASS_LOSSES:
        return
    bad = np.flatnonzero(((y < 0) | (y > 1)).any(axis=1))
    if bad.size:
        raise ValueError(f"{name} row {int(bad[0])} has targets outside [0, 1], which {loss_name} needs")
    if loss_name == "cross_entropy":
        sums = y.sum(axis=1, dtype=np.float64)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{name} row {row} sums to {sums[row]:.4g}; cross_entropy targets must be one-hot rows "
                "or probability distributions (or 1-D integer labels)"
            )


def _as_labels(y: np.ndarray, name: str, outputs: int) -> np.ndarray:
    """Integer class labels in [0, outputs) from integer, bool or integral float values."""
    if y.dtype.kind == "f":
        bad = np.flatnonzero(np.rint(y) != y)
        if bad.size:
            row = int(bad[0])
            raise ValueError(f"{name} has a non-integer class label {y[row].item()!r} in row {row}")
    bad = np.flatnonzero((y < 0) | (y >= outputs))  # before the cast: no wrap-around
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{name} has label {y[row].item()!r} in row {row}; labels must be integers in "
            f"[0, {outputs}) for a network with {outputs} outputs"
        )
    return y.astype(np.int64)


def as_sample_weight(sample_weight: Any, n: int, name: str = "sample_weight") -> np.ndarray | None:
    """None, or host float64 weights of shape (n,): finite, >= 0, not all 0."""
    if sample_weight is None:
        return None
    w = _as_array(sample_weight, name)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per sample), got {w.shape}")
    check_finite(w, name)
    w = w.astype(np.float64, copy=False)
    negative = np.flatnonzero(w < 0)
    if negative.size:
        raise ValueError(f"{name} row {int(negative[0])} is negative ({w[negative[0]]:g})")
    if not w.any():
        raise ValueError(f"{name} is 0 for every sample")
    return w


def as_class_weight(
    class_weight: Any, labels: np.ndarray | None, classes: int, name: str = "class_weight"
) -> np.ndarray | None:
    """None, or host float64 per-sample weights from ``{class: weight}``: every key a class
    in [0, classes) (an integer; 1.0 counts as 1), every weight finite and >= 0."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"{name} must be a dict {{class: weight}}, got {_describe(class_weight)}")
    if labels is None:
        raise ValueError(f"{name} needs class targets (integer labels, one-hot rows or 0/1 targets)")
    table = np.ones(classes)
    for key, value in class_weight.items():
        table[_class_key(key, classes, name)] = as_real(value, f"{name}[{key!r}]", minimum=0)
    return table[labels]


def _class_key(key: Any, classes: int, name: str) -> int:
    integral = (
        not isinstance(key, bool)
        and isinstance(key, numbers.Real)
        and np.isfinite(float(key))
        and float(key) == int(key)
    )
    if not integral or not 0 <= int(key) < classes:
        raise ValueError(f"{name} key {key!r} is not a class; the classes are the integers 0..{classes - 1}")
    return int(key)


def sample_weights(
    n: int,
    labels: np.ndarray | None,
    classes: int,
    class_weight: Any,
    sample_weight: Any,
    dtype: str,
    name: str = "sample_weight",
) -> np.ndarray | None:
    """Per-sample weights in ``dtype`` from ``sample_weight`` and/or ``class_weight`` (or None)."""
    w = as_sample_weight(sample_weight, n, name)
    per_class = as_class_weight(class_weight, labels, classes)
    if per_class is not None:
        w = per_class if w is None else w * per_class
        if not w.any():
            given = "class_weight gives" if sample_weight is None else f"{name} and class_weight give"
            raise ValueError(f"{given} every sample weight 0")
    if w is None:
        return None
    what = name if class_weight is None else ("class_weight" if sample_weight is None else f"{name} times class_weight")
    return _cast_finite(w, what, dtype)


def as_weight_list(weights: Any, expected: Sequence[tuple[str, tuple[int, ...]]], dtype: str) -> list[np.ndarray]:
    """Host arrays in ``dtype`` for ``set_weights``, all checked before any is used:
    ``expected`` holds each parameter's label (``"Dense kernel"``) and shape."""
    if isinstance(weights, str | bytes | Mapping) or is_array(weights):
        raise TypeError(f"weights must be a list of arrays (as from get_weights), got {_describe(weights)}")
    try:
        weights = list(weights)
    except TypeError:
        raise TypeError(f"weights must be a list of arrays (as from get_weights), got {_describe(weights)}") from None
    if len(weights) != len(expected):
        raise ValueError(f"set_weights got {len(weights)} arrays, the network has {len(expected)}")
    arrays = []
    for i, (w, (label, shape)) in enumerate(zip(weights, expected, strict=True)):
        name = f"weight {i} ({label})"
        a = _as_array(w, name)
        if a.shape != tuple(shape):
            raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
        arrays.append(_cast_finite(a, name, dtype))
    return arrays


# --------------------------------------------------------------------------- conversion


def _as_array(value: Any, name: str, backend: Backend | None = None) -> Any:
    """Host NumPy from anything array-like; with ``backend``, its own arrays stay (detached).
    The dtype is checked: bool, integer or real floating."""
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if backend is not None and not isinstance(value, np.ndarray) and backend.is_native(value):
        return _native(value, name)
    if _is_pandas(value):
        return _from_pandas(value, name)
    try:
        if isinstance(value, np.ndarray):
            host = value
        elif is_array(value):
            host = to_numpy(value)  # torch (detached), CuPy, array-api-strict, ...
        else:
            host = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None
    if host.dtype.kind == "c":
        raise TypeError(f"{name} holds complex numbers; only real numbers can be used")
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {host.dtype}")
    return host


def _native(x: Any, name: str) -> Any:
    if array_api_compat.is_torch_array(x):
        x = x.detach()  # requires_grad=True is fine: anyxp computes its own gradients
    xp = array_api_compat.array_namespace(x)
    if xp.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"{name} holds complex numbers; only real numbers can be used")
    if not xp.isdtype(x.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] == "pandas" and hasattr(value, "to_numpy")


def _from_pandas(value: Any, name: str) -> np.ndarray:
    """A DataFrame or Series as NumPy: numeric and bool columns, nullable ones included,
    with no missing value; errors name the column."""
    from pandas.api import types

    columns = list(value.items()) if value.ndim == 2 else [(None, value)]
    for label, column in columns:
        where = name if label is None else f"{name} column {label!r}"
        if types.is_complex_dtype(column.dtype):
            raise TypeError(f"{where} holds complex numbers; only real numbers can be used")
        if not (types.is_bool_dtype(column.dtype) or types.is_numeric_dtype(column.dtype)):
            raise TypeError(f"{where} must hold real numbers, got dtype {column.dtype}")
    missing = np.asarray(value.isna())
    if missing.any():
        first = np.argwhere(missing)[0]
        where = name if value.ndim == 1 else f"{name} column {columns[int(first[1])][0]!r}"
        raise ValueError(f"{where} has a missing value in row {int(first[0])}")
    dtypes = {column.dtype for _, column in columns}
    if len(dtypes) == 1 and isinstance(next(iter(dtypes)), np.dtype):
        host = value.to_numpy()
    elif all(types.is_bool_dtype(d) for d in dtypes):
        host = value.to_numpy(dtype=np.bool_)
    elif all(types.is_bool_dtype(d) or types.is_signed_integer_dtype(d) for d in dtypes):
        host = value.to_numpy(dtype=np.int64)  # nullable integers stay integers (class labels)
    else:
        host = value.to_numpy(dtype=np.float64)
    # a frame's own block is a read-only, column-major view: rows are what batches take
    return host if host.flags.writeable and host.flags.c_contiguous else np.array(host, order="C")


def _cast_finite(a: Any, name: str, dtype: str, backend: Backend | None = None) -> Any:
    """``a`` in ``dtype`` (no copy if it already is), checked finite after the cast."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, naming the row
        if isinstance(a, np.ndarray):
            cast = a.astype(dtype, copy=False)
            floating = a.dtype.kind == "f"
        else:
            xp = array_api_compat.array_namespace(a)
            target = backend.float_dtype(dtype) if backend is not None else getattr(xp, dtype)
            cast = a if a.dtype == target else xp.astype(a, target)
            floating = xp.isdtype(a.dtype, "real floating")
    if floating:
        check_finite(cast, name, source=a)
    return cast


def check_finite(x: Any, name: str, source: Any = None) -> None:
    """Raise naming the first row that holds NaN or inf; ``source`` is ``x`` before a cast,
    to tell values that overflowed the cast from those that were not finite before it."""
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
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
    before = host[row] if source is None else to_numpy(source[row, ...])
    if np.isfinite(before).all():
        limit = f"{float(np.finfo(host.dtype).max):.1e}".replace("e+", "e")
        raise ValueError(f"{name} row {row} overflows {host.dtype} (max {limit})")
    what = "NaN" if np.isnan(before).any() else "inf"
    raise ValueError(f"{name} contains {what} in row {row}")
