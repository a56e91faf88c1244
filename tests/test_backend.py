"""The backend selector: names, namespaces, auto, the CuPy fallback and its warning."""

from __future__ import annotations

import subprocess
import sys
import time
import types
import warnings

import numpy as np
import pytest

import anyxp as ax
from anyxp import backend as backend_module


@pytest.fixture
def fresh_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget cached probes and the once-per-process warning for this test."""
    monkeypatch.setattr(backend_module, "_problem_cache", {})
    monkeypatch.setattr(backend_module, "_fallback_warned", False)
    monkeypatch.delenv("ANYXP_BACKEND", raising=False)
    monkeypatch.delenv("ANYXP_STRICT_BACKEND", raising=False)


@pytest.fixture
def cupy_unusable(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> str:
    reason = "simulated: CuPy cannot reach a CUDA device"
    monkeypatch.setitem(backend_module._PROBES, "cupy", lambda: reason)
    return reason


def test_the_backend_under_test_is_what_it_says(backend: ax.Backend) -> None:
    assert backend.name in ax.backend.BACKEND_NAMES
    assert backend.name in repr(backend) and backend.version in repr(backend)
    assert str(backend.device) in repr(backend)
    x = backend.asarray([[1.0, 2.0]], dtype=backend.float_dtype("float32"))
    assert backend.is_native(x)
    np.testing.assert_array_equal(backend.to_numpy(x), [[1.0, 2.0]])
    backend.synchronize()


def test_asarray_converts_host_and_foreign_arrays(backend: ax.Backend) -> None:
    f64 = backend.float_dtype("float64")
    host = np.arange(6.0).reshape(2, 3)
    x = backend.asarray(host, dtype=f64)
    assert x.dtype == f64
    np.testing.assert_array_equal(backend.to_numpy(x), host)
    numpy_backend = ax.get_backend("numpy")
    back = numpy_backend.asarray(x)  # a foreign array comes in through the host
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    assert backend.asarray(x) is x or backend.to_numpy(backend.asarray(x)).tolist() == host.tolist()


@pytest.mark.parametrize("name", ["numpy", "torch", "array_api_strict"])
def test_names_and_namespaces_resolve(name: str) -> None:
    if backend_module.backend_problem(name):
        pytest.skip(backend_module.backend_problem(name))
    b = ax.get_backend(name)
    assert b.name == name
    assert ax.get_backend(b.library).name == name
    assert ax.get_backend(b.xp).name == name
    assert ax.get_backend(b) is b


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'jax'.*numpy.*cupy.*torch.*array_api_strict"):
        ax.get_backend("jax")
    with pytest.raises(ValueError, match="not a supported array namespace"):
        ax.get_backend(types.ModuleType("not_an_array_library"))


def test_auto_without_a_gpu_is_numpy(cupy_unusable: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns: choosing NumPy is its job
        assert ax.get_backend("auto").name == "numpy"


def test_auto_follows_the_environment(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYXP_BACKEND", "array_api_strict")
    if backend_module.backend_problem("array_api_strict"):
        pytest.skip("array_api_strict is not installed")
    assert ax.get_backend().name == "array_api_strict"
    monkeypatch.setenv("ANYXP_BACKEND", "numpy")
    assert ax.get_backend("auto").name == "numpy"
    monkeypatch.setenv("ANYXP_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown backend 'nonsense'"):
        ax.get_backend()


def test_cupy_falls_back_to_numpy_with_one_warning(cupy_unusable: str) -> None:
    with pytest.warns(ax.BackendFallbackWarning, match="simulated") as record:
        first = ax.get_backend("cupy")
        second = ax.get_backend("cupy")
        net = ax.Network([ax.Dense(2)], input_size=3, backend="cupy")
    assert len(record) == 1
    assert "strict=True" in str(record[0].message) and "ANYXP_STRICT_BACKEND" in str(record[0].message)
    assert record[0].filename == __file__  # points at the user's line, not at anyxp's
    assert first.name == second.name == net.backend.name == "numpy"


def test_cupy_strict_raises_with_the_reason(cupy_unusable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ax.BackendUnavailableError, match="simulated"):
        ax.get_backend("cupy", strict=True)
    monkeypatch.setenv("ANYXP_STRICT_BACKEND", "1")
    with pytest.raises(ax.BackendUnavailableError, match="simulated"):
        ax.get_backend("cupy")


def test_probe_reports_cupy_present_but_unusable(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy installed, a driver library present, but no device: a reason, no crash."""

    def no_device() -> int:
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend_module.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(backend_module.ctypes, "CDLL", lambda name: object())
    reason = backend_module._cupy_problem()
    assert reason is not None and "cudaErrorNoDevice" in reason


def test_probe_without_driver_names_libcuda(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(backend_module.ctypes, "CDLL", missing)
    reason = backend_module._cupy_problem()
    assert reason is not None and "libcuda.so.1" in reason


def test_available_backends_says_why(fresh_probes: None) -> None:
    start = time.perf_counter()
    status = ax.available_backends()
    assert time.perf_counter() - start < 5  # generous: a probe must never hang
    assert set(status) == set(ax.backend.BACKEND_NAMES)
    assert status["numpy"].available and status["numpy"].reason == "usable"
    for s in status.values():
        assert s.available or s.reason


def test_import_is_lazy() -> None:
    """``import anyxp`` imports neither CuPy nor torch, and probes nothing."""
    code = (
        "import sys, anyxp, anyxp.backend as b; "
        "print(sorted(m for m in ('cupy', 'torch', 'array_api_strict') if m in sys.modules), b._problem_cache)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] {}"


def test_numpy_backend_rejects_a_gpu_device() -> None:
    with pytest.raises(ValueError, match="one device"):
        ax.get_backend("numpy", device="cuda:0")
