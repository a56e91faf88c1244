"""One suite, run once per backend: ``pytest --backend=torch`` (or ANYXP_BACKEND).

``pytest --backend=cupy --cupy-standin`` (or ANYXP_CUPY_STANDIN=1) runs it on a machine
without a GPU against the CuPy stand-in in tests/cupy_standin (see its docstring): the
stand-in is put first on sys.path before anything imports cupy, and the driver check
is told that a driver is present.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp.backend import backend_problem

STRICT_DEVICE = "device1"  # the non-default device: arrays created elsewhere fail
CUPY_DEVICE = 1  # likewise for CuPy where there are two GPUs (the stand-in has two)
STANDIN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_standin")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=None,
        help="numpy | torch | array_api_strict | cupy (default: $ANYXP_BACKEND or numpy)",
    )
    parser.addoption(
        "--cupy-standin",
        action="store_true",
        default=os.environ.get("ANYXP_CUPY_STANDIN", "").strip().lower() in ("1", "true", "yes", "on"),
        help="run cupy on the stand-in in tests/cupy_standin (no GPU needed; default: $ANYXP_CUPY_STANDIN)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--cupy-standin"):
        install_cupy_standin()


def install_cupy_standin() -> None:
    """Make ``import cupy`` find the stand-in, and anyxp's probe find a driver."""
    loaded = sys.modules.get("cupy")
    if loaded is not None and not getattr(loaded, "_standin", None):
        raise pytest.UsageError(f"--cupy-standin: the real cupy was imported already ({loaded.__file__})")
    if STANDIN_PATH not in sys.path:
        sys.path.insert(0, STANDIN_PATH)
    import ctypes

    from anyxp import backend, cuda

    real_check, real_cdll = cuda.driver_problem, ctypes.CDLL

    def standin_driver_problem() -> str | None:
        """No driver is needed; a test that simulates a missing one (by replacing
        ctypes.CDLL) still gets the real check."""
        return real_check() if cuda.ctypes.CDLL is not real_cdll else None

    cuda.driver_problem = standin_driver_problem
    backend._problem_cache.clear()


def cupy_standin() -> Any:
    """The stand-in's bookkeeping (``cupy._standin``) when cupy is the stand-in, else None."""
    if STANDIN_PATH not in sys.path:
        return None
    import cupy

    return cupy._standin


def backend_name(config: pytest.Config) -> str:
    return config.getoption("--backend") or os.environ.get("ANYXP_BACKEND") or "numpy"


def pytest_report_header(config: pytest.Config) -> str:
    return f"anyxp backend under test: {backend_name(config)}"


def make_backend(name: str) -> ax.Backend:
    problem = backend_problem(name)
    if problem is not None:
        pytest.skip(f"backend {name!r} is not usable here: {problem}")
    if name == "array_api_strict":
        import array_api_strict

        array_api_strict.set_array_api_strict_flags(api_version="2024.12")
        return ax.get_backend(name, device=array_api_strict.Device(STRICT_DEVICE))
    if name == "cupy":
        import cupy

        device = CUPY_DEVICE if cupy.cuda.runtime.getDeviceCount() > CUPY_DEVICE else 0
        return ax.get_backend(name, device=device, strict=True)
    return ax.get_backend(name, strict=True)


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> ax.Backend:
    """The backend this session tests (array_api_strict lives on its device1, cupy on
    device 1 where there are two GPUs)."""
    return make_backend(backend_name(pytestconfig))


@pytest.fixture
def xp(backend: ax.Backend) -> Any:
    return backend.xp


@pytest.fixture(autouse=True)
def on_device(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``on_device`` call components (layers, losses, optimizers) directly,
    as a user of components would: with the backend's device current, as CuPy requires of
    every kernel (the network's own entry points make it current themselves, and the
    unmarked tests prove it)."""
    if request.node.get_closest_marker("on_device") is None:
        yield
        return
    with request.getfixturevalue("backend").activate():
        yield


def assert_native(backend: ax.Backend, array: Any, dtype: str) -> None:
    """``array`` is this backend's, on its device, of float ``dtype``."""
    assert backend.is_native(array), type(array)
    assert array.dtype == backend.float_dtype(dtype), array.dtype
    import array_api_compat

    assert str(array_api_compat.device(array)) == str(backend.device)


@pytest.fixture
def small_classification() -> tuple[np.ndarray, np.ndarray]:
    """120 samples, 5 features, 3 classes that a small net separates."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(120, 5))
    y = np.argmax(x @ rng.normal(size=(5, 3)), axis=1)
    return x, y


SYNC_METHODS = ("__float__", "__bool__", "__int__", "__index__", "__array__", "__dlpack__", "to_device")


@contextlib.contextmanager
def count_host_syncs() -> Iterator[list[str]]:
    """Count array_api_strict conversions that would be device->host syncs on a GPU."""
    import array_api_strict

    cls = type(array_api_strict.asarray(0.0))
    calls: list[str] = []
    originals = {name: getattr(cls, name) for name in SYNC_METHODS if hasattr(cls, name)}

    def wrap(name: str, fn: Any) -> Any:
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(self, *args, **kwargs)

        return counted

    for name, fn in originals.items():
        setattr(cls, name, wrap(name, fn))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(cls, name, fn)
