"""One suite, run once per backend: ``pytest --backend=torch`` (or ANYXP_BACKEND)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp.backend import backend_problem

STRICT_DEVICE = "device1"  # the non-default device: arrays created elsewhere fail


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=None,
        help="numpy | torch | array_api_strict | cupy (default: $ANYXP_BACKEND or numpy)",
    )


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
    return ax.get_backend(name, strict=True)


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> ax.Backend:
    """The backend this session tests (array_api_strict lives on its device1)."""
    return make_backend(backend_name(pytestconfig))


@pytest.fixture
def xp(backend: ax.Backend) -> Any:
    return backend.xp


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
