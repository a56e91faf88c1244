"""The backend selector: which array library runs the math, and on which device.

Everything outside this module talks to an array library only through a `Backend`:
its Array API namespace ``xp``, its ``device``, and a few conversions at the
boundary (host data in, host data out). Nothing here runs at ``import anyxp``:
libraries are imported, and GPUs probed, only when a backend is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from . import cuda
from .errors import BackendFallbackWarning, BackendUnavailableError

BACKEND_NAMES = ("numpy", "cupy", "torch", "array_api_strict")
FLOAT_DTYPES = ("float32", "float64")

# Element count above which whole-buffer element-wise work (the optimizer) is split
# across threads on NumPy; below it, thread hand-off costs more than it saves.
PARALLEL_MIN_ELEMENTS = 1 << 16


# --------------------------------------------------------------------------- probing


def _module_problem(module: str, extra: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'anyxp[{extra}]')"
    return None


_PROBES = {
    "numpy": lambda: None,
    "cupy": cuda.cupy_problem,
    "torch": lambda: _module_problem("torch", "torch"),
    "array_api_strict": lambda: _module_problem("array_api_strict", "strict"),
}
_problem_cache: dict[str, str | None] = {}


def backend_problem(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None; probed once per process."""
    if name not in _problem_cache:
        _problem_cache[name] = _PROBES[name]()
    return _problem_cache[name]


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend can run here, and why not."""

    name: str
    available: bool
    reason: str


def available_backends() -> dict[str, BackendStatus]:
    """Each known backend, whether it is usable on this machine, and why not.

    >>> available_backends()["numpy"].available
    True
    """
    result = {}
    for name in BACKEND_NAMES:
        problem = backend_problem(name)
        result[name] = BackendStatus(name, problem is None, problem or "usable")
    return result


# --------------------------------------------------------------------------- the Backend


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported library (or a list) to a host NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return cuda.to_host(x)  # cuda-only
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    namespace = _namespace_or_none(x)
    if namespace is not None and array_api_compat.is_array_api_strict_namespace(namespace):
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def _namespace_or_none(x: Any) -> Any:
    try:
        return array_api_compat.array_namespace(x)
    except TypeError:
        return None


def is_array(x: Any) -> bool:
    """True for an array of any library array-api-compat knows (NumPy, CuPy, torch, ...)."""
    return _namespace_or_none(x) is not None


class Backend:
    """An array library and a device: where a network's arrays live and its math runs.

    Obtain one with `get_backend`; a `Network` resolves its backend once.

    >>> b = get_backend("numpy")
    >>> b.to_numpy(b.asarray([1.0, 2.0], dtype=b.float_dtype("float32"))).dtype
    dtype('float32')
    """

    def __init__(self, name: str, library: ModuleType, device: Any, *, fast_kernels: bool = True):
        self.name = name
        self.library = library
        self.namespace = _namespace_module(name, library)  # what array_namespace() returns
        self.xp = FastNumpyNamespace(self.namespace) if name == "numpy" and fast_kernels else self.namespace
        self.device = device
        self.version = getattr(library, "__version__", "?")
        # Backend-specific kernels (``out=`` matmul, threads); False runs the pure
        # Array API reference path, which the tests compare against.
        self.fast_kernels = fast_kernels
        self._bind_kernels()

    # -- identity ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Backend({self.name} {self.version}, device={self.device!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Backend)
            and other.name == self.name
            and str(other.device) == str(self.device)
        )

    def __hash__(self) -> int:
        return hash((self.name, str(self.device)))

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy" or (self.name == "torch" and self.device.type == "cuda")

    # -- dtypes --------------------------------------------------------------------------
    def float_dtype(self, name: str | Any) -> Any:
        """The namespace's float dtype for ``"float32"`` / ``"float64"`` (or a dtype)."""
        name = dtype_name(name)
        return getattr(self.xp, name)

    # -- conversions at the boundary -----------------------------------------------------
    def is_native(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library (on any of its devices)."""
        return _namespace_or_none(x) is self.namespace

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Host data, foreign arrays or native arrays -> an array on this device (one copy at most)."""
        xp = self.xp
        if self.is_native(x):
            if dtype is not None and x.dtype != dtype:
                x = xp.astype(x, dtype)
            if str(array_api_compat.device(x)) != str(self.device):
                x = array_api_compat.to_device(x, self.device)
            return x
        if _namespace_or_none(x) is not None and not isinstance(x, np.ndarray):
            x = to_numpy(x)  # another library's array: through the host
        if self.name == "torch" and isinstance(x, np.ndarray) and not x.flags.writeable:
            x = np.array(x)  # torch would share a read-only buffer (a memmap opened "r"), with a warning
        with self.activate():
            return xp.asarray(x, dtype=dtype, device=self.device)

    def upload(self, host: np.ndarray, dtype: Any) -> Any:
        """A host batch (already of ``dtype``) to the device, as a streamed fit moves it:
        through pinned memory and an asynchronous copy on CuPy and on torch CUDA."""
        if self.name == "cupy":
            return cuda.upload(np.ascontiguousarray(host), dtype, self.device)  # cuda-only
        if self.name == "torch" and self.device.type == "cuda":
            pinned = self.library.from_numpy(np.ascontiguousarray(host)).pin_memory()
            return pinned.to(self.device, dtype=dtype, non_blocking=True)
        return self.asarray(host, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A host NumPy copy (or view, for NumPy) of one of this backend's arrays."""
        return to_numpy(x)

    def synchronize(self) -> None:
        """Wait until queued device work is done (a no-op on CPU backends)."""
        if self.name == "cupy":
            cuda.synchronize(self.device)  # cuda-only
        elif self.name == "torch" and self.device.type == "cuda":
            self.library.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make this backend's device current (CuPy ignores ``device=`` on creation)."""
        if self.name == "cupy":
            with self.device:  # cuda-only
                yield  # cuda-only
        else:
            yield

    # -- backend kernels behind standard interfaces --------------------------------------
    # matmul_into(a, b, out): out[...] = a @ b, without the temporary where out= exists
    # affine(x, kernel, bias): x @ kernel + bias (bias may be None), fused where possible
    # sum_rows_into(a, out): out[...] = sum(a, axis=0), without the temporary
    # Chosen once in __init__ (no per-call branching: small networks make millions of calls).

    def _bind_kernels(self) -> None:
        lib, xp = self.library, self.xp
        fast = self.fast_kernels and self.name in ("numpy", "cupy", "torch")

        def matmul_into(a: Any, b: Any, out: Any) -> None:
            out[...] = a @ b

        def affine(x: Any, kernel: Any, bias: Any) -> Any:
            z = x @ kernel
            if bias is not None:
                z += bias
            return z

        def sum_rows_into(a: Any, out: Any) -> None:
            out[...] = xp.sum(a, axis=0)

        if fast:
            def matmul_into(a: Any, b: Any, out: Any) -> None:
                lib.matmul(a, b, out=out)

        if fast and self.name == "torch":
            def affine(x: Any, kernel: Any, bias: Any) -> Any:
                return x @ kernel if bias is None else lib.addmm(bias, x, kernel)

            def sum_rows_into(a: Any, out: Any) -> None:
                lib.sum(a, dim=0, out=out)
        elif fast:
            def sum_rows_into(a: Any, out: Any) -> None:
                lib.add.reduce(a, axis=0, out=out)

        self.matmul_into, self.affine, self.sum_rows_into = matmul_into, affine, sum_rows_into

    @property
    def threads(self) -> int:
        """Threads for whole-buffer element-wise work (NumPy releases the GIL), see
        `host_threads`; 1 on other libraries."""
        if not self.fast_kernels or self.name != "numpy":
            return 1
        return host_threads()

    def map_parallel(self, fn: Any, items: list[Any]) -> None:
        """Run ``fn`` on each item, across threads when this backend benefits."""
        if self.threads == 1:  # inline: a GPU's current device is per thread
            for item in items:
                fn(item)
            return
        host_map(fn, items)


def host_threads() -> int:
    """Threads for NumPy's work on the host: ``ANYXP_NUM_THREADS`` if set (e.g. 1 per
    process under MPI), else up to 4 cores."""
    if os.environ.get("ANYXP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["ANYXP_NUM_THREADS"]))
    return max(1, min(4, os.cpu_count() or 1))


_host_pool: ThreadPoolExecutor | None = None


def host_map(fn: Any, items: list[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, across `host_threads` threads (one shared pool)
    where there are several items: for NumPy work, which releases the GIL."""
    global _host_pool
    threads = host_threads()
    if len(items) < 2 or threads == 1:
        return [fn(item) for item in items]
    if _host_pool is None:
        _host_pool = ThreadPoolExecutor(threads, thread_name_prefix="anyxp")
    return list(_host_pool.map(fn, items))


class FastNumpyNamespace:
    """array-api-compat's NumPy namespace with the hot reductions (and take / argmax /
    take_along_axis) dispatched straight to their ufuncs and methods: ``numpy.sum`` and friends are Python
    wrappers that cost more than the work itself on the small arrays of small networks. Same results, same dtypes
    (the tests run the plain namespace too, via ``fast_kernels=False``)."""

    def __init__(self, namespace: ModuleType) -> None:
        self.__dict__.update({k: v for k, v in vars(namespace).items() if not k.startswith("__")})
        self.__name__ = namespace.__name__
        self._plain = namespace
        add, maximum = np.add.reduce, np.maximum.reduce

        def fast_sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
            if dtype is None and x.dtype.kind == "f":
                return add(x, axis=axis, keepdims=keepdims)
            return namespace.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

        def fast_max(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
            return maximum(x, axis=axis, keepdims=keepdims)

        def fast_take(x: Any, indices: Any, /, *, axis: Any = None) -> Any:
            return x.take(indices, axis=axis)

        def fast_argmax(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
            return x.argmax(axis=axis, keepdims=keepdims)

        def fast_take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
            """Along the rows of a 2-D array (indices in [0, n), as argsort's): one flat
            take, a few times faster than NumPy's fancy indexing; else NumPy's."""
            if x.ndim != 2 or axis not in (1, -1) or indices.ndim != 2 or indices.shape[0] != x.shape[0]:
                return namespace.take_along_axis(x, indices, axis=axis)
            rows = np.arange(0, x.size, x.shape[1])[:, None]  # each row's offset in the flat array
            return np.ravel(x).take(indices + rows)

        self.sum, self.max, self.take, self.argmax = fast_sum, fast_max, fast_take, fast_argmax
        self.take_along_axis = fast_take_along_axis

    def __repr__(self) -> str:
        return f"<anyxp fast namespace over {self.__name__}>"


@functools.cache
def numpy_namespace() -> FastNumpyNamespace:
    """The NumPy namespace the NumPy backend computes with (fast kernels on)."""
    return FastNumpyNamespace(_namespace_module("numpy", np))


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a name or a float dtype of any library."""
    name = dtype if isinstance(dtype, str) else str(dtype).rsplit(".", 1)[-1]
    name = name.replace("'>", "").replace("<class '", "")
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    return name


def _namespace_module(name: str, library: ModuleType) -> Any:
    """The Array API namespace that ``array_namespace`` returns for this library's arrays."""
    if name == "array_api_strict":
        return library
    return importlib.import_module(f"array_api_compat.{name}")


# --------------------------------------------------------------------------- resolution

_fallback_warned = False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _name_of_namespace(spec: Any) -> str | None:
    for name, test in (
        ("numpy", array_api_compat.is_numpy_namespace),
        ("cupy", array_api_compat.is_cupy_namespace),
        ("torch", array_api_compat.is_torch_namespace),
        ("array_api_strict", array_api_compat.is_array_api_strict_namespace),
    ):
        try:
            if test(spec):
                return name
        except Exception:
            continue
    return None


def get_backend(spec: Any = "auto", *, device: Any = None, strict: bool = False) -> Backend:
    """Resolve a backend: a name, an array namespace or module, or a `Backend`.

    ``"auto"`` means the ``ANYXP_BACKEND`` environment variable if set, else CuPy when
    a CUDA device is usable, else NumPy. ``"cupy"`` on a machine without a usable GPU
    falls back to NumPy with one `BackendFallbackWarning` per process, unless
    ``strict=True`` (or ``ANYXP_STRICT_BACKEND=1``), which raises
    `BackendUnavailableError` instead.

    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(spec, Backend):
        if device is None or str(device) == str(spec.device):
            return spec
        spec = spec.name
    if not isinstance(spec, str):
        name = _name_of_namespace(spec)
        if name is None:
            raise ValueError(
                f"backend {spec!r} is not a supported array namespace; "
                f"use one of {('auto', *BACKEND_NAMES)}"
            )
        spec = name
    name = spec.strip().lower().replace("-", "_")
    if name == "auto":
        env = os.environ.get("ANYXP_BACKEND", "").strip()
        if env and env.lower() != "auto":
            return get_backend(env, device=device, strict=strict)
        name = "cupy" if backend_problem("cupy") is None else "numpy"
    if name not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {spec!r}; valid backends are {', '.join(('auto', *BACKEND_NAMES))}"
        )
    problem = backend_problem(name)
    if problem is not None:
        if name == "cupy" and not (strict or _env_flag("ANYXP_STRICT_BACKEND")):
            _warn_fallback(problem)
            return get_backend("numpy")
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {problem}")
    return _make_backend(name, device)


def _warn_fallback(reason: str) -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    warnings.warn(
        f"backend='cupy' is not usable here ({reason}); running on NumPy instead. To require "
        "the GPU, set ANYXP_STRICT_BACKEND=1 or pass backend=anyxp.get_backend('cupy', strict=True).",
        BackendFallbackWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside the anyxp package (the user's line)."""
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _make_backend(name: str, device: Any) -> Backend:
    library = importlib.import_module(name)
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend has one device, 'cpu'; got device={device!r}")
        return Backend(name, library, "cpu")
    if name == "torch":
        dev = library.device("cpu" if device is None else _torch_device_spec(device))
        if dev.type == "cuda" and not library.cuda.is_available():
            raise BackendUnavailableError(f"torch device {device!r} requested, but CUDA is not available")
        if dev.type == "cuda" and dev.index is None:  # this process's GPU, as for CuPy
            from .distributed import local_rank

            dev = library.device("cuda", local_rank() % library.cuda.device_count())
        return Backend(name, library, dev)
    if name == "cupy":
        try:  # cuda-only
            return Backend(name, library, cuda.device(library, _cuda_index(device)))  # cuda-only
        except ValueError as exc:  # cuda-only
            raise BackendUnavailableError(str(exc)) from None  # cuda-only
    # array_api_strict
    if device is None:
        dev = library.Device("CPU_DEVICE")
    elif isinstance(device, str):
        dev = library.Device(device)
    else:
        dev = device
    return Backend(name, library, dev)


def _torch_device_spec(device: Any) -> Any:
    return f"cuda:{device}" if isinstance(device, int) else device


def _cuda_index(device: Any) -> int | None:
    """A CUDA device index from ``3``, ``"cuda:3"``, a device object; None (this
    process's GPU) for None, ``"cuda"`` or ``"gpu"``."""
    if device is None or isinstance(device, int):
        return device
    text = str(device)
    if text in ("cuda", "gpu"):
        return None
    if text.startswith(("cuda:", "gpu:")):
        return int(text.split(":", 1)[1])
    if hasattr(device, "id"):
        return int(device.id)
    raise ValueError(f"cannot read a CUDA device from {device!r}; use an int or 'cuda:N'")
