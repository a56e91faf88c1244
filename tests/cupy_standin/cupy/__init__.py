"""A CuPy stand-in for machines without a GPU: NumPy underneath, CuPy's names and
signatures on top (checked against the real CuPy package by tests/test_cupy_standin.py),
and CuPy's behaviour where code written for CuPy can get it wrong: arrays belong to the
device current at their creation, kernels need their operands on the current device,
the host is reached only through ``get()``, and every device->host sync is recorded
(``cupy._standin.syncs``) or, under ``cupyx.allow_synchronize(False)``, refused.

Only what array-api-compat's CuPy namespace, anyxp and its tests use is here: a name
that is missing raises AttributeError rather than doing something CuPy would not.
It is put first on ``sys.path`` by ``pytest --cupy-standin`` (tests/conftest.py).
"""
# ruff: noqa: F811  (CuPy's parameter names, such as dtype, shadow the module's names)

from __future__ import annotations

import builtins as _builtins
from typing import Any as _Any

import numpy as _np

# dtypes, type hierarchy and constants: CuPy re-exports NumPy's own objects
from numpy import (  # noqa: F401
    bool,
    bool_,
    complex64,
    complex128,
    complexfloating,
    dtype,
    e,
    finfo,
    float16,
    float32,
    float64,
    floating,
    generic,
    iinfo,
    inexact,
    inf,
    int8,
    int16,
    int32,
    int64,
    integer,
    intp,
    isdtype,
    issubdtype,
    nan,
    newaxis,
    number,
    pi,
    signedinteger,
    uint8,
    uint16,
    uint32,
    uint64,
    unsignedinteger,
)

from . import _standin, cuda  # noqa: F401
from ._core import _host_or_device, _run, _unwrap, _view, ndarray, ufunc

__version__ = "14.2.0+standin"

# --------------------------------------------------------------------------- ufuncs

_UFUNCS = """
abs absolute acos acosh add arccos arccosh arcsin arcsinh arctan arctan2 arctanh asin asinh atan atan2
atanh bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not bitwise_or
bitwise_right_shift bitwise_xor cbrt ceil conj conjugate copysign cos cosh deg2rad degrees divide divmod
equal exp exp2 expm1 fabs float_power floor floor_divide fmax fmin fmod frexp gcd greater greater_equal
heaviside hypot invert isfinite isinf isnan lcm ldexp left_shift less less_equal log log10 log1p log2
logaddexp logaddexp2 logical_and logical_not logical_or logical_xor maximum minimum mod modf multiply
negative nextafter not_equal positive pow power rad2deg radians reciprocal remainder right_shift rint sign
signbit sin sinh sqrt square subtract tan tanh true_divide trunc
""".split()  # noqa: SIM905
for _name in _UFUNCS:
    globals()[_name] = ufunc._of(_name, getattr(_np, _name))


def matmul(x1: _Any, x2: _Any, /, *, dtype: _Any = None, out: _Any = None) -> ndarray:
    """``x1 @ x2``; with ``out=``, CuPy writes in place when ``out`` is C-contiguous and
    of the result's dtype (the stand-in refuses anything else)."""
    if out is not None:
        result = _np.result_type(x1.dtype, x2.dtype) if dtype is None else _np.dtype(dtype)
        if out.dtype != result or not out.flags.c_contiguous:
            raise ValueError(f"matmul out= must be C-contiguous {result}, got {out.dtype}")
    return _run(_np.matmul, x1, x2, dtype=dtype, out=out)


# --------------------------------------------------------------------------- creation
# On the current device, whatever the arguments: as CuPy (array-api-compat ignores device=).


def array(obj: _Any, dtype: _Any = None, copy: _Any = True, order: str = "K", subok: _Any = False,
          ndmin: int = 0, *, blocking: _Any = False) -> ndarray:
    if isinstance(obj, ndarray):
        if obj._device == _standin.current_device() and not copy and (dtype is None or obj.dtype == dtype):
            return obj
        # another device's array is copied peer to peer; one on this device by a kernel
        return ndarray._wrap(_np.array(obj._a, dtype=dtype, order=order, ndmin=ndmin))
    return ndarray._wrap(_np.array(_host_or_device(obj), dtype=dtype, order=order, ndmin=ndmin))


def asarray(a: _Any, dtype: _Any = None, order: _Any = None, *, copy: _Any = None, blocking: _Any = False) -> ndarray:
    return array(a, dtype, copy=_builtins.bool(copy), order=order or "K")


def ascontiguousarray(a: _Any, dtype: _Any = None) -> ndarray:
    if isinstance(a, ndarray) and a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
        return a
    return array(a, dtype, order="C")


def asnumpy(a: _Any, stream: _Any = None, order: str = "C", out: _Any = None, *, blocking: _Any = True) -> _np.ndarray:
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return _np.asarray(a, order=order)


def empty(shape: _Any, dtype: _Any = float, order: str = "C") -> ndarray:
    return ndarray._wrap(_np.empty(shape, dtype=dtype, order=order))


def zeros(shape: _Any, dtype: _Any = float, order: str = "C") -> ndarray:
    return ndarray._wrap(_np.zeros(shape, dtype=dtype, order=order))


def ones(shape: _Any, dtype: _Any = float, order: str = "C") -> ndarray:
    return ndarray._wrap(_np.ones(shape, dtype=dtype, order=order))


def full(shape: _Any, fill_value: _Any, dtype: _Any = None, order: str = "C") -> ndarray:
    return ndarray._wrap(_np.full(shape, _unwrap(fill_value), dtype=dtype, order=order))


def _like(fill: _Any, a: ndarray, dtype: _Any, order: str, shape: _Any) -> ndarray:
    # reads only a's shape and dtype: no kernel on a, and the result is on the current device
    result = _np.empty(a.shape if shape is None else shape, dtype=a.dtype if dtype is None else dtype,
                       order="C" if order == "K" else order)
    if fill is not None:
        result[...] = _unwrap(fill)
    return ndarray._wrap(result)


def empty_like(prototype: ndarray, dtype: _Any = None, order: str = "K", subok: _Any = None,
               shape: _Any = None) -> ndarray:
    return _like(None, prototype, dtype, order, shape)


def zeros_like(a: ndarray, dtype: _Any = None, order: str = "K", subok: _Any = None, shape: _Any = None) -> ndarray:
    return _like(0, a, dtype, order, shape)


def ones_like(a: ndarray, dtype: _Any = None, order: str = "K", subok: _Any = None, shape: _Any = None) -> ndarray:
    return _like(1, a, dtype, order, shape)


def full_like(a: ndarray, fill_value: _Any, dtype: _Any = None, order: str = "K", subok: _Any = None,
              shape: _Any = None) -> ndarray:
    return _like(fill_value, a, dtype, order, shape)


def arange(start: _Any, stop: _Any = None, step: _Any = 1, dtype: _Any = None) -> ndarray:
    return ndarray._wrap(_np.arange(start, stop, step, dtype=dtype))


def linspace(start: _Any, stop: _Any, num: int = 50, endpoint: _Any = True, retstep: _Any = False,
             dtype: _Any = None, axis: int = 0) -> _Any:
    return _run(_np.linspace, start, stop, num, endpoint, retstep, dtype, axis)


def eye(N: int, M: _Any = None, k: int = 0, dtype: _Any = float, order: str = "C") -> ndarray:
    return ndarray._wrap(_np.eye(N, M, k, dtype=dtype, order=order))


def copy(a: ndarray, order: str = "K") -> ndarray:
    return a.copy(order="C" if order == "K" else order)


def astype(x: ndarray, dtype: _Any, /, *, copy: _Any = True) -> ndarray:
    return x.astype(dtype, copy=copy)


# --------------------------------------------------------------------------- reductions


def sum(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.sum, a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def prod(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.prod, a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def mean(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.mean, a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def var(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, ddof: int = 0,
        keepdims: _Any = False) -> ndarray:
    return _run(_np.var, a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)


def std(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, ddof: int = 0,
        keepdims: _Any = False) -> ndarray:
    return _run(_np.std, a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)


def max(a: ndarray, axis: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.max, a, axis=axis, out=out, keepdims=keepdims)


def min(a: ndarray, axis: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.min, a, axis=axis, out=out, keepdims=keepdims)


amax, amin = max, min


def all(a: ndarray, axis: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.all, a, axis=axis, out=out, keepdims=keepdims)


def any(a: ndarray, axis: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    return _run(_np.any, a, axis=axis, out=out, keepdims=keepdims)


def argmax(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    result = _run(_np.argmax, a, axis=axis, out=out, keepdims=keepdims)
    return result if dtype is None else result.astype(dtype, copy=False)


def argmin(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None, keepdims: _Any = False) -> ndarray:
    result = _run(_np.argmin, a, axis=axis, out=out, keepdims=keepdims)
    return result if dtype is None else result.astype(dtype, copy=False)


def cumsum(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None) -> ndarray:
    return _run(_np.cumsum, a, axis=axis, dtype=dtype, out=out)


def cumprod(a: ndarray, axis: _Any = None, dtype: _Any = None, out: _Any = None) -> ndarray:
    return _run(_np.cumprod, a, axis=axis, dtype=dtype, out=out)


def round(a: ndarray, decimals: int = 0, out: _Any = None) -> ndarray:
    return _run(_np.round, a, decimals, out=out)


around = round


def count_nonzero(a: ndarray, axis: _Any = None) -> ndarray:
    return _run(_np.count_nonzero, a, axis=axis)


# --------------------------------------------------------------------------- selection


def where(condition: ndarray, x: _Any = None, y: _Any = None) -> _Any:
    if x is None and y is None:
        return nonzero(condition)
    return _run(_np.where, condition, x, y)


def nonzero(a: ndarray) -> tuple[ndarray, ...]:
    _standin.synchronizing("nonzero")  # the result's size: a count, on the host
    return _run(_np.nonzero, a)


def clip(a: ndarray, a_min: _Any, a_max: _Any, out: _Any = None) -> ndarray:
    return _run(_np.clip, a, a_min, a_max, out=out)


def take(a: ndarray, indices: _Any, axis: _Any = None, out: _Any = None) -> ndarray:
    return _run(_np.take, a, indices, axis=axis, out=out)


def take_along_axis(a: ndarray, indices: ndarray, axis: _Any) -> ndarray:
    return _run(_np.take_along_axis, a, indices, axis=axis)


def sort(a: ndarray, axis: int = -1, kind: _Any = None) -> ndarray:
    return _run(_np.sort, a, axis=axis)


def argsort(a: ndarray, axis: int = -1, kind: _Any = None) -> ndarray:
    return _run(_np.argsort, a, axis=axis, kind="stable")


def searchsorted(a: ndarray, v: _Any, side: str = "left", sorter: _Any = None) -> ndarray:
    return _run(_np.searchsorted, a, v, side=side, sorter=sorter)


# --------------------------------------------------------------------------- shapes


def concatenate(tup: _Any, axis: _Any = 0, out: _Any = None, *, dtype: _Any = None,
                casting: str = "same_kind") -> ndarray:
    return _run(_np.concatenate, list(tup), axis=axis, out=out, dtype=dtype, casting=casting)


concat = concatenate


def stack(tup: _Any, axis: int = 0, out: _Any = None, *, dtype: _Any = None, casting: str = "same_kind") -> ndarray:
    return _run(_np.stack, list(tup), axis=axis, out=out, dtype=dtype, casting=casting)


def reshape(a: ndarray, newshape: _Any, order: str = "C", *, copy: _Any = None) -> ndarray:
    return a.reshape(newshape, order=order, copy=copy)


def ravel(a: ndarray, order: str = "C") -> ndarray:
    return a.ravel(order)


def transpose(a: ndarray, axes: _Any = None) -> ndarray:
    return a.transpose(axes)


def permute_dims(a: ndarray, axes: _Any = None) -> ndarray:
    return a.transpose(axes)


def matrix_transpose(x: ndarray, /) -> ndarray:
    return x.mT


def squeeze(a: ndarray, axis: _Any = None) -> ndarray:
    return a.squeeze(axis)


def expand_dims(a: ndarray, axis: _Any) -> ndarray:
    return _view(a, _np.expand_dims(a._a, axis))


def moveaxis(a: ndarray, source: _Any, destination: _Any) -> ndarray:
    return _view(a, _np.moveaxis(a._a, source, destination))


def swapaxes(a: ndarray, axis1: int, axis2: int) -> ndarray:
    return _view(a, _np.swapaxes(a._a, axis1, axis2))


def flip(a: ndarray, axis: _Any = None) -> ndarray:
    return _view(a, _np.flip(a._a, axis))


def broadcast_to(array: ndarray, shape: _Any) -> ndarray:
    return _view(array, _np.broadcast_to(array._a, shape))


def broadcast_arrays(*args: ndarray) -> list[ndarray]:
    return [_view(a, b) for a, b in zip(args, _np.broadcast_arrays(*(a._a for a in args)), strict=True)]


# --------------------------------------------------------------------------- linear algebra


def dot(a: ndarray, b: ndarray, out: _Any = None) -> ndarray:
    return _run(_np.dot, a, b, out=out)


def tensordot(a: ndarray, b: ndarray, axes: _Any = 2) -> ndarray:
    return _run(_np.tensordot, a, b, axes=axes)


# --------------------------------------------------------------------------- dtypes


def _dtype_of(x: _Any) -> _Any:
    return x.dtype if isinstance(x, ndarray) else x


def result_type(*arrays_and_dtypes: _Any) -> _np.dtype:
    return _np.result_type(*(_dtype_of(x) for x in arrays_and_dtypes))


def can_cast(from_: _Any, to: _Any, casting: str = "safe") -> _Any:
    return _np.can_cast(_dtype_of(from_), to, casting)


def isscalar(element: _Any) -> _Any:
    return _np.isscalar(element)


from . import fft, linalg, random  # noqa: E402, F401  (they use the names above)

del _name
