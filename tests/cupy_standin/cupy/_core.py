"""The stand-in's array and ufunc: a NumPy array in host memory that behaves, where a
library can tell, like a ``cupy.ndarray`` in the memory of one CUDA device.

What is emulated, because it is where code written for CuPy goes wrong:
- an array belongs to the device that was current when it was made; a kernel (any
  arithmetic, reduction, gather, copy into it) needs every array operand on the current
  device, or raises ``ValueError`` as CuPy does between GPUs without peer access. Views (slicing,
  reshape, transpose) and reading ``shape``/``dtype`` launch nothing and work anywhere;
- the host is reached only through ``get()`` (and ``cupy.asnumpy``); ``__array__`` raises
  ``TypeError``; ``float()``/``int()``/``bool()``/``item()``/``tolist()``/printing work on
  small arrays but are device->host syncs, recorded in ``cupy._standin.syncs``, as is
  boolean-mask indexing (CuPy copies the mask's count to the host); under
  ``cupyx.allow_synchronize(False)`` each of them raises ``DeviceSynchronized``;
- NumPy arrays are not accepted where CuPy wants device arrays (``TypeError``);
- reductions and indexing return 0-d arrays, never scalars; no floating-point warnings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import cupy as _cp  # partially initialised while this module loads; used at call time

from . import _standin
from .cuda import Device, MemoryPointer

_SCALARS = (bool, int, float, complex, np.generic)


def _check_device(x: ndarray) -> None:
    """CuPy's check of a kernel's array argument (``_check_peer_access``), on GPUs without
    peer access (with it, CuPy enables it, warns and goes on, slowly)."""
    current = _standin.current_device()
    if x._device != current:
        raise ValueError(
            f"The device where the array resides ({x._device}) is different from the current device "
            f"({current}). Peer access is unavailable between these devices."
        )


def _unwrap(obj: Any) -> Any:
    """An operand of a kernel, for NumPy: our arrays (checked to live on the current
    device) become their NumPy arrays; NumPy arrays are refused as CuPy refuses them."""
    if isinstance(obj, ndarray):
        _check_device(obj)
        return obj._a
    if isinstance(obj, np.ndarray):
        raise TypeError(f"Unsupported type {type(obj)}")
    if isinstance(obj, list | tuple):
        return type(obj)(_unwrap(o) for o in obj)
    return obj  # scalars, dtypes, axes, None


def _host_or_device(obj: Any) -> Any:
    """Data that may come from the host (a copy to the device is fine) or the device."""
    if isinstance(obj, ndarray):
        _check_device(obj)
        return obj._a
    if isinstance(obj, list | tuple):
        return type(obj)(_host_or_device(o) for o in obj)
    return obj


def _wrap(result: Any, device: int | None = None) -> Any:
    if isinstance(result, np.ndarray | np.generic):
        return ndarray._wrap(np.asarray(result), device)
    if isinstance(result, list | tuple):
        return type(result)(_wrap(r, device) for r in result)
    return result


def _out(out: Any) -> np.ndarray:
    if not isinstance(out, ndarray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(out)}")
    _check_device(out)
    return out._a


def _run(fn: Any, *args: Any, out: Any = None, **kwargs: Any) -> Any:
    """NumPy's ``fn`` as a kernel on the current device: its array operands must live there."""
    if out is not None:
        kwargs["out"] = _out(out)
    with np.errstate(all="ignore"):  # a GPU raises no floating-point warnings
        result = fn(*(_unwrap(a) for a in args), **kwargs)
    return out if out is not None else _wrap(result)


def _view(x: ndarray, a: np.ndarray) -> ndarray:
    """A result that NumPy made without copying is a view, on ``x``'s device (no kernel);
    one that needed a copy ran a kernel, on the current device."""
    if not np.may_share_memory(a, x._a):
        _check_device(x)
    return ndarray._wrap(a, x._device)


class _Allocation:
    """The device allocation an array lives in (host memory in the stand-in)."""

    def __init__(self, owner: np.ndarray, device_id: int) -> None:
        self.owner = owner  # keeps the memory alive while a pointer to it exists
        self.ptr = owner.ctypes.data
        self.device_id = device_id


IMPLICIT_CONVERSION = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
)


class ndarray:
    """An array on the device that was current when it was created (host memory here)."""

    __slots__ = ("__weakref__", "_a", "_device")
    __array_priority__ = 100
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None,
                 order: str = "C") -> None:
        if memptr is not None or strides is not None:
            raise NotImplementedError("the CuPy stand-in allocates its own memory")
        self._a = np.empty(shape, dtype=dtype, order=order)
        self._device = _standin.current_device()

    @classmethod
    def _wrap(cls, a: np.ndarray, device: int | None = None) -> ndarray:
        x = object.__new__(cls)
        x._a = a
        x._device = _standin.current_device() if device is None else device
        return x

    # -- attributes (no kernel, no sync) -------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._wrap(self._a.T, self._device))
    mT = property(lambda self: ndarray._wrap(self._a.mT, self._device))

    @property
    def device(self) -> Device:
        return Device(self._device)

    @property
    def data(self) -> MemoryPointer:
        owner = self._a
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        return MemoryPointer(_Allocation(owner, self._device), self._a.ctypes.data - owner.ctypes.data)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    # -- to and from the host ------------------------------------------------------------
    def get(self, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> np.ndarray:
        _standin.synchronizing("get")
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        if not isinstance(arr, np.ndarray) or arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("set() needs a NumPy array of the same shape and dtype")
        self._a[...] = arr

    def __array__(self, dtype: Any = None) -> np.ndarray:
        raise TypeError(IMPLICIT_CONVERSION)

    def _scalar(self, what: str) -> Any:
        if self.size != 1:
            raise TypeError("only size-1 arrays can be converted to Python scalars")
        _standin.synchronizing(what)
        return self._a.reshape(()).item()

    def __float__(self) -> float:
        return float(self._scalar("__float__"))

    def __int__(self) -> int:
        return int(self._scalar("__int__"))

    def __complex__(self) -> complex:
        return complex(self._scalar("__complex__"))

    def __bool__(self) -> bool:
        if self.size > 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return bool(self._scalar("__bool__"))

    def item(self) -> Any:
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._scalar("item")

    def tolist(self) -> Any:
        _standin.synchronizing("tolist")
        return self._a.tolist()

    def __repr__(self) -> str:
        _standin.synchronizing("__repr__")
        return repr(self._a)

    def __str__(self) -> str:
        _standin.synchronizing("__str__")
        return str(self._a)

    def __format__(self, format_spec: str) -> str:
        _standin.synchronizing("__format__")
        return format(self._a.reshape(()).item() if self.size == 1 else self._a, format_spec)

    def __copy__(self) -> ndarray:
        with Device(self._device):
            return self.copy()

    def __deepcopy__(self, memo: Any) -> ndarray:
        return self.__copy__()

    def __reduce__(self) -> Any:
        return _cp.array, (self.get(),)

    # -- indexing --------------------------------------------------------------------------
    def _key(self, key: Any) -> tuple[tuple[Any, ...], bool]:
        """The key for NumPy and whether it is advanced (a gather/scatter kernel)."""
        items = key if isinstance(key, tuple) else (key,)
        advanced, plain = False, []
        for item in items:
            if isinstance(item, ndarray):
                advanced = True
                if item.dtype == np.bool_:  # the result's size: the mask's count, on the host
                    _standin.synchronizing("boolean mask index")
                plain.append(_unwrap(item))
            elif isinstance(item, np.ndarray | list):  # host indices: copied to the device
                advanced = True
                plain.append(item)
            else:
                plain.append(item)
        if not advanced and Ellipsis not in plain:
            plain.append(Ellipsis)  # NumPy then returns a 0-d view, not a scalar, as CuPy does
        return tuple(plain), advanced

    def __getitem__(self, slices: Any) -> ndarray:
        key, advanced = self._key(slices)
        if not advanced:
            return ndarray._wrap(self._a[key], self._device)  # a view: no kernel
        _check_device(self)
        return ndarray._wrap(self._a[key])

    def __setitem__(self, slices: Any, value: Any) -> None:
        _check_device(self)
        key, _ = self._key(slices)
        with np.errstate(all="ignore"):
            self._a[key] = _host_or_device(value)

    # -- NumPy's protocols: CuPy runs NumPy's functions on its arrays itself ----------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        mine = getattr(_cp, ufunc.__name__, None)
        if not isinstance(mine, _cp.ufunc) or method not in ("__call__", "reduce"):
            return NotImplemented
        out = kwargs.get("out")
        if isinstance(out, tuple):
            kwargs["out"] = out[0] if len(out) == 1 else out
        return mine(*inputs, **kwargs) if method == "__call__" else mine.reduce(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        mine = getattr(_cp, func.__name__, None)
        if mine is None or getattr(func, "__module__", "") != "numpy":
            return NotImplemented
        return mine(*args, **kwargs)

    # -- methods (as CuPy's, delegating to the functions) ------------------------------------
    def astype(self, dtype: Any, order: str = "K", casting: Any = None, subok: Any = None,
               copy: bool = True) -> ndarray:
        if not copy and self.dtype == np.dtype(dtype):
            return self
        _check_device(self)
        return ndarray._wrap(self._a.astype(dtype, order=order, casting=casting or "unsafe"))

    def copy(self, order: str = "C") -> ndarray:
        return ndarray._wrap(self._a.copy(order=order))  # onto the current device (a peer copy)

    def fill(self, value: Any) -> None:
        _check_device(self)
        self._a.fill(_unwrap(value))

    def reshape(self, *shape: Any, order: str = "C", copy: Any = None) -> ndarray:
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        return _view(self, self._a.reshape(shape, order=order, copy=copy))

    def ravel(self, order: str = "C") -> ndarray:
        return _view(self, self._a.ravel(order=order))

    def flatten(self, order: str = "C") -> ndarray:
        _check_device(self)
        return ndarray._wrap(self._a.flatten(order=order))

    def transpose(self, *axes: Any) -> ndarray:
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], tuple | list | type(None)) else axes
        return ndarray._wrap(self._a.transpose(axes or None), self._device)

    def squeeze(self, axis: Any = None) -> ndarray:
        return ndarray._wrap(self._a.squeeze(axis), self._device)

    def take(self, indices: Any, axis: Any = None, out: Any = None) -> ndarray:
        return _cp.take(self, indices, axis, out)

    def argmax(self, axis: Any = None, out: Any = None, dtype: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.argmax(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def argmin(self, axis: Any = None, out: Any = None, dtype: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.argmin(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.sum(self, axis, dtype, out, keepdims)

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.mean(self, axis, dtype, out, keepdims)

    def prod(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = None) -> ndarray:
        return _cp.prod(self, axis, dtype, out, bool(keepdims))

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.max(self, axis, out, keepdims)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.min(self, axis, out, keepdims)

    def all(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.all(self, axis, out, keepdims)

    def any(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> ndarray:
        return _cp.any(self, axis, out, keepdims)

    def var(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
            keepdims: bool = False) -> ndarray:
        return _cp.var(self, axis, dtype, out, ddof, keepdims)

    def std(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0,
            keepdims: bool = False) -> ndarray:
        return _cp.std(self, axis, dtype, out, ddof, keepdims)

    def cumsum(self, axis: Any = None, dtype: Any = None, out: Any = None) -> ndarray:
        return _cp.cumsum(self, axis, dtype, out)

    def clip(self, min: Any = None, max: Any = None, out: Any = None) -> ndarray:
        return _cp.clip(self, min, max, out)

    def dot(self, b: ndarray, out: Any = None) -> ndarray:
        return _cp.dot(self, b, out)

    def nonzero(self) -> tuple[ndarray, ...]:
        return _cp.nonzero(self)

    def argsort(self, axis: int = -1, kind: Any = None) -> ndarray:
        return _cp.argsort(self, axis, kind)

    def sort(self, axis: int = -1, kind: Any = None) -> None:
        _check_device(self)
        self._a.sort(axis=axis)

    # -- operators: the ufuncs --------------------------------------------------------------
    def __matmul__(self, other: Any) -> ndarray:
        return _cp.matmul(self, other)

    def __rmatmul__(self, other: Any) -> ndarray:
        return _cp.matmul(other, self)

    def __neg__(self) -> ndarray:
        return _cp.negative(self)

    def __pos__(self) -> ndarray:
        return _cp.positive(self)

    def __abs__(self) -> ndarray:
        return _cp.absolute(self)

    def __invert__(self) -> ndarray:
        return _cp.invert(self)


def _binary(name: str, ufunc: str) -> None:
    def forward(self: ndarray, other: Any) -> Any:
        return getattr(_cp, ufunc)(self, other)

    def reflected(self: ndarray, other: Any) -> Any:
        return getattr(_cp, ufunc)(other, self)

    def in_place(self: ndarray, other: Any) -> Any:
        return getattr(_cp, ufunc)(self, other, out=self)

    setattr(ndarray, f"__{name}__", forward)
    setattr(ndarray, f"__r{name}__", reflected)
    setattr(ndarray, f"__i{name}__", in_place)


for _name, _ufunc in {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
                      "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
                      "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift",
                      "rshift": "right_shift"}.items():
    _binary(_name, _ufunc)


def _comparison(name: str, ufunc: str) -> None:
    def compare(self: ndarray, other: Any) -> Any:
        if not isinstance(other, (ndarray, np.ndarray, *_SCALARS)):
            return NotImplemented
        return getattr(_cp, ufunc)(self, other)

    setattr(ndarray, f"__{name}__", compare)


for _name, _ufunc in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                      "ge": "greater_equal"}.items():
    _comparison(_name, _ufunc)

ndarray.__module__ = "cupy"


class ufunc:
    """An element-wise function (``cupy.exp``, ``cupy.add``, ...): NumPy's ufunc of the same
    name run as a kernel on the current device; ``out=`` and ``reduce`` as in CuPy."""

    @classmethod
    def _of(cls, name: str, numpy_ufunc: np.ufunc) -> ufunc:
        u = object.__new__(cls)
        u.name = u.__name__ = name
        u._numpy = numpy_ufunc
        u.nin, u.nout, u.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs
        return u

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def __call__(self, *args: Any, out: Any = None, dtype: Any = None, casting: str = "same_kind") -> Any:
        if len(args) == self.nargs and out is None:  # out given positionally
            *args, out = args
        if len(args) != self.nin:
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} "
                            f"or {self.nargs} (with outputs), but given {len(args)}.")
        return _run(self._numpy, *args, out=out, dtype=dtype, casting=casting)

    def reduce(self, array: Any, axis: Any = 0, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        if not isinstance(array, ndarray):
            raise TypeError(f"Unsupported type {type(array)}")
        return _run(self._numpy.reduce, array, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def accumulate(self, array: Any, axis: int = 0, dtype: Any = None, out: Any = None) -> Any:
        if not isinstance(array, ndarray):
            raise TypeError(f"Unsupported type {type(array)}")
        return _run(self._numpy.accumulate, array, axis=axis, dtype=dtype, out=out)


ufunc.__module__ = "cupy"
