"""The backend selector: names, namespaces, auto, the CuPy fallback and its warning."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import types
import warnings

import numpy as np
import pytest

import anyxp as ax
from anyxp import backend as backend_module
from anyxp import cuda as cuda_module


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


class FakeCupyArray:
    """Just enough of a CuPy array for the probe; ``fail`` maps a step to the error it raises."""

    def __init__(self, a: np.ndarray, fail: dict[str, Exception]) -> None:
        self.a, self.fail = a, fail

    def _run(self, step: str, result: np.ndarray) -> FakeCupyArray:
        if step in self.fail:
            raise self.fail[step]
        return FakeCupyArray(result, self.fail)

    def __mul__(self, other: float) -> FakeCupyArray:
        return self._run("kernel", self.a * other)

    def __add__(self, other: float) -> FakeCupyArray:
        return self._run("kernel", self.a + other)

    @property
    def T(self) -> FakeCupyArray:
        return FakeCupyArray(self.a.T, self.fail)

    def get(self) -> np.ndarray:
        if "get" in self.fail:
            raise self.fail["get"]
        return self.a + (1.0 if "wrong" in self.fail else 0.0)


def fake_cupy(fail: dict[str, Exception], devices: int = 1) -> types.ModuleType:
    """A module named cupy whose probe steps fail as ``fail`` says (the way CuPy 14 fails
    on a machine with the driver but without NVRTC or cuBLAS)."""
    calls = []

    def count() -> int:
        calls.append("getDeviceCount")
        if "count" in fail:
            raise fail["count"]
        return devices

    fake = types.ModuleType("cupy")
    fake.calls = calls
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count),
                                      Device=lambda i: contextlib.nullcontext())
    fake.asarray = lambda a: FakeCupyArray(np.asarray(a), fail)
    fake.matmul = lambda a, b: a._run("matmul", a.a @ b.a)
    fake.sum = lambda a, axis: a._run("reduce", a.a.sum(axis=axis))
    return fake


@pytest.fixture
def with_fake_cupy(fresh_probes: None, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Install a fake cupy behind a present driver; returns a function that builds it."""
    import importlib.util

    monkeypatch.setattr(cuda_module, "driver_problem", lambda: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "cupy" else real_find_spec(name, *a))

    def install(fail: dict[str, Exception], devices: int = 1) -> types.ModuleType:
        fake = fake_cupy(fail, devices)
        monkeypatch.setitem(sys.modules, "cupy", fake)
        return fake

    return install


NVRTC_MISSING = RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared "
                             "object file: No such file or directory")
CUBLAS_MISSING = ImportError("libcublasLt.so.12: cannot open shared object file: No such file or directory")


@pytest.mark.parametrize(
    ("fail", "devices", "expected"),
    [
        ({}, 1, None),
        ({"count": RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")}, 1,
         "CuPy cannot reach a CUDA device (RuntimeError: cudaErrorNoDevice"),
        ({}, 0, "the NVIDIA driver reports no CUDA device"),
        ({"kernel": NVRTC_MISSING}, 1, "CuPy cannot compile kernels: NVRTC (libnvrtc.so.12) not found"),
        ({"matmul": CUBLAS_MISSING}, 1, "CuPy cannot multiply matrices: cuBLAS (libcublas/libcublasLt) not found"),
        ({"reduce": RuntimeError("cudaErrorLaunchFailure")}, 1, "CuPy cannot reduce an array on the GPU"),
        ({"get": RuntimeError("cudaErrorIllegalAddress")}, 1, "CuPy cannot copy results to the host"),
        ({"wrong": RuntimeError()}, 1, "CuPy computed a wrong result on device 0"),
    ],
    ids=["usable", "no-device-error", "zero-devices", "no-nvrtc", "no-cublas", "reduce", "get", "wrong"],
)
def test_probe_says_exactly_what_is_missing(with_fake_cupy, fail, devices, expected) -> None:  # type: ignore[no-untyped-def]
    with_fake_cupy(fail, devices)
    reason = cuda_module.cupy_problem()
    if expected is None:
        assert reason is None
        return
    assert reason is not None and reason.startswith(expected), reason
    if fail.keys() & {"kernel", "matmul", "reduce", "get"}:
        assert reason.endswith("pip install 'anyxp[cupy]'")


def test_a_probe_failure_falls_back_once_or_raises_under_strict(with_fake_cupy) -> None:  # type: ignore[no-untyped-def]
    fake = with_fake_cupy({"kernel": NVRTC_MISSING})
    with pytest.warns(ax.BackendFallbackWarning, match=r"NVRTC \(libnvrtc.so.12\) not found"):
        assert ax.get_backend("cupy").name == "numpy"
        assert ax.get_backend("auto").name == "numpy"
    with pytest.raises(ax.BackendUnavailableError, match="CuPy cannot compile kernels"):
        ax.get_backend("cupy", strict=True)
    assert fake.calls == ["getDeviceCount"]  # probed once per process, then cached


def test_probe_without_driver_names_libcuda(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(cuda_module.ctypes, "CDLL", missing)
    reason = cuda_module.cupy_problem()
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


def test_submodules_are_attributes_imported_on_first_use() -> None:
    code = (
        "import sys, anyxp as ax; light = 'sklearn' not in sys.modules and 'anyxp.datasets' not in sys.modules; "
        "x, y = ax.datasets.load_digits(); print(light, x.shape, 'anyxp.sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "(1797,", "64)", "False"]
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = ax.nothing


def test_to_numpy_takes_lists() -> None:
    np.testing.assert_array_equal(backend_module.to_numpy([[1.0, 2.0], [3.0, 4.0]]), [[1.0, 2.0], [3.0, 4.0]])


def test_fast_take_along_axis_equals_numpys() -> None:
    """The NumPy fast namespace's take_along_axis (one flat take for 2-D rows) equals
    NumPy's, and hands other shapes and axes to it."""
    fast = ax.Backend("numpy", np, "cpu").xp
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 50))
    for index_dtype in (np.int32, np.int64):
        order = np.argsort(x, axis=1).astype(index_dtype)
        np.testing.assert_array_equal(fast.take_along_axis(x, order, axis=1), np.take_along_axis(x, order, axis=1))
        by_column = fast.take_along_axis(x.T, order.T, axis=0)  # not rows: NumPy's own
        np.testing.assert_array_equal(by_column, np.take_along_axis(x.T, order.T, axis=0))
    cube = rng.normal(size=(2, 3, 4))
    idx = np.argsort(cube, axis=-1)
    np.testing.assert_array_equal(fast.take_along_axis(cube, idx, axis=-1), np.take_along_axis(cube, idx, axis=-1))
