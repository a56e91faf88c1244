"""The CuPy stand-in (tests/cupy_standin) against the real CuPy package, and its CuPy-like
behaviour.

Names and signatures: every public name the stand-in defines (module functions and
classes, ufuncs, the methods and attributes of its classes) must exist in the real CuPy
with the same kind, and the stand-in's parameters must be ones CuPy takes, in CuPy's
order. Both sides are described in subprocesses (this file run as a script), so the
real CuPy is imported without the stand-in on the path; importing it needs no GPU.
Where ``inspect.signature`` cannot read a CuPy callable (Cython), the first line of its
docstring (``Class.method(self, a, b=None)``) gives the parameters; NCCL's names come
from the docstrings inside its extension module where libnccl is absent.

In the ``cupy_proxy`` nox session (``ANYXP_REQUIRE_REAL_CUPY=1``) a missing real CuPy is
a failure, not a skip.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

STANDIN = Path(__file__).resolve().parent / "cupy_standin"
MODULES = ["cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.device", "cupy.cuda.stream", "cupy.cuda.memory",
           "cupy.cuda.nccl", "cupy.random", "cupy.linalg", "cupy.fft", "cupyx"]
# class members that every class has, or that say nothing about the API
CLASS_SKIP = {"__module__", "__doc__", "__dict__", "__weakref__", "__slots__", "__init__", "__annotations__",
              "__hash__", "__qualname__", "__firstlineno__", "__static_attributes__", "__array_priority__"}


# --------------------------------------------------------------------------- describing (subprocesses)


def _params(obj: Any) -> list[list[Any]] | None:
    """[[name, kind, has_default], ...] without self, or None when unreadable."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return _params_from_doc(getattr(obj, "__doc__", None) or "")
    return [[p.name, p.kind.name, p.default is not p.empty] for p in sig.parameters.values() if p.name != "self"]


def _params_from_doc(doc: str) -> list[list[Any]] | None:
    """Parameters from a Cython docstring's first line: ``Name.meth(self, int a, b=None, *, c=1)``."""
    match = re.match(r"\s*[\w.]+\((.*)\)", doc.strip().splitlines()[0] if doc.strip() else "")
    if match is None:
        return None
    return _parse_params(match.group(1))


def _parse_params(text: str) -> list[list[Any]]:
    params, kind = [], "POSITIONAL_OR_KEYWORD"
    for raw in [p.strip() for p in text.split(",") if p.strip()]:
        if raw == "/":
            params = [[n, "POSITIONAL_ONLY", d] for n, _, d in params]
            continue
        if raw == "*":
            kind = "KEYWORD_ONLY"
            continue
        if raw.startswith("**"):
            params.append([raw[2:], "VAR_KEYWORD", False])
            continue
        if raw.startswith("*"):
            params.append([raw[1:], "VAR_POSITIONAL", False])
            kind = "KEYWORD_ONLY"
            continue
        declaration, has_default = raw.split("=")[0].strip(), "=" in raw
        name = declaration.split()[-1]  # drop Cython types: "int device_id" -> "device_id"
        if name != "self":
            params.append([name, kind, has_default])
    return params


def _kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if type(obj).__name__ == "ufunc":
        return "ufunc"
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return "value"


def _numpy_name(obj: Any) -> str | None:
    """``numpy.<name>`` when ``obj`` is one of NumPy's own objects (CuPy re-exports dtypes)."""
    import numpy

    if isinstance(obj, type | numpy.ufunc) or callable(obj):
        name = getattr(obj, "__name__", None)
        if name and getattr(numpy, name, None) is obj:
            return f"numpy.{name}"
    return None


def describe_standin() -> list[dict[str, Any]]:
    """Every public name of the stand-in: where, what kind, which parameters."""
    sys.path.insert(0, str(STANDIN))
    import cupy

    entries: list[dict[str, Any]] = []
    samples = {cupy.cuda.Device: cupy.cuda.Device(0), cupy.cuda.Stream: cupy.cuda.Stream(),
               cupy.cuda.MemoryPointer: cupy.zeros(1).data, cupy.ufunc: cupy.add,
               cupy.random.Generator: cupy.random.default_rng(0), cupy.random.XORWOW: cupy.random.XORWOW(0)}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or name == "annotations":
                continue
            path = f"{module_name}.{name}"
            kind = _kind(obj)
            entry = {"path": path, "kind": kind, "numpy": _numpy_name(obj)}
            if kind in ("function", "class") and entry["numpy"] is None:
                entry["params"] = _params(obj)
            entries.append(entry)
            if kind == "class" and entry["numpy"] is None:
                entries += _describe_members(path, obj, samples.get(obj))
    return entries


def _describe_members(path: str, cls: type, sample: Any) -> list[dict[str, Any]]:
    entries = []
    for name, member in sorted(vars(cls).items()):
        if name in CLASS_SKIP or (name.startswith("_") and not name.startswith("__")):
            continue
        if isinstance(member, property):
            entries.append({"path": f"{path}.{name}", "kind": "attribute"})
        elif isinstance(member, classmethod | staticmethod) or callable(member):
            entries.append({"path": f"{path}.{name}", "kind": "function", "params": _params(getattr(cls, name))})
        else:
            entries.append({"path": f"{path}.{name}", "kind": "attribute"})
    for name in sorted(vars(sample) if sample is not None else ()):
        if not name.startswith("_"):
            entries.append({"path": f"{path}.{name}", "kind": "attribute", "instance": True})
    return entries


def describe_real(paths: list[str]) -> dict[str, Any]:
    """The real CuPy's kind and parameters for each dotted path (None where absent)."""
    warnings.simplefilter("ignore")  # CuPy warns that NCCL, cuTENSOR, ... are not installed
    import cupy

    result: dict[str, Any] = {"__version__": cupy.__version__, "__file__": cupy.__file__}
    nccl = importlib.import_module("cupy.cuda.nccl")
    binary = None if nccl.available else _nccl_from_extension()
    for path in paths:
        if binary is not None and path.startswith("cupy.cuda.nccl."):
            result[path] = binary.get(path.removeprefix("cupy.cuda.nccl."))
            continue
        result[path] = _resolve(path)
    return result


def _real_instances() -> dict[str, Any]:
    """Instances of CuPy classes that exist without a GPU, for their instance attributes."""
    import cupy

    return {"cupy.cuda.Stream": cupy.cuda.Stream.null, "cupy.cuda.stream.Stream": cupy.cuda.Stream.null,
            "cupy.cuda.Device": cupy.cuda.Device(0), "cupy.cuda.device.Device": cupy.cuda.Device(0)}


def _resolve(path: str) -> dict[str, Any] | None:
    owner_path, attr = path.rsplit(".", 1)
    instance = _real_instances().get(owner_path)
    if instance is not None and not hasattr(type(instance), attr) and attr in dir(instance):
        return {"kind": "attribute"}
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        owner = None
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                return None
            owner, obj = obj, getattr(obj, attr)
        kind = _kind(obj)
        entry = {"kind": kind, "numpy": _numpy_name(obj)}
        if isinstance(owner, type) and not callable(obj):
            entry["kind"] = "attribute"  # a getset descriptor read from the class
        if kind in ("function", "class") and entry["numpy"] is None:
            entry["params"] = _params(obj)
        return entry
    return None


def _nccl_from_extension() -> dict[str, Any]:
    """NCCL's API as its Cython extension documents it (no libnccl needed to read it)."""
    spec = importlib.util.find_spec("cupy_backends.cuda.libs")
    library = next(Path(spec.submodule_search_locations[0]).glob("nccl*.so"))
    text = library.read_bytes().decode("latin-1")
    api: dict[str, Any] = {"available": {"kind": "value"}}
    for constant in set(re.findall(r"\bNCCL_[A-Z0-9_]+\b", text)):
        api[constant] = {"kind": "value"}
    for owner, method, params in re.findall(r"(?:^|[\x00\n])(NcclCommunicator|NcclError|[a-z_]+|group\w+)"
                                            r"(?:\.(\w+))?\(([^()\x00\n]*)\)", text):
        if owner in ("NcclCommunicator", "NcclError"):
            api.setdefault(owner, {"kind": "class", "params": None})
            if method == "__init__" or not method:
                api[owner]["params"] = _parse_params(params)
            else:
                api[f"{owner}.{method}"] = {"kind": "function", "params": _parse_params(params)}
        elif not method and owner in ("get_unique_id", "get_version", "get_build_version", "groupStart", "groupEnd"):
            api[owner] = {"kind": "function", "params": _parse_params(params)}
    return api


def run_described(side: str, payload: Any = None) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, __file__, side], input=json.dumps(payload), capture_output=True,
                         text=True, env=env, cwd=Path(__file__).parent.parent)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- comparing


def incompatibility(mine: list[list[Any]] | None, real: list[list[Any]] | None, dunder: bool) -> str | None:
    """Why a call that suits the stand-in would not suit CuPy, or None."""
    if mine is None or real is None:
        return None  # unreadable: existence is all that is checked
    if any(kind == "VAR_POSITIONAL" for _, kind, _ in real) and dunder:
        return None
    r_pos = [p for p in real if p[1] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    r_named = {p[0] for p in real if p[1] in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    r_varpos = any(p[1] == "VAR_POSITIONAL" for p in real)
    r_varkw = any(p[1] == "VAR_KEYWORD" for p in real)
    m_pos = [p for p in mine if p[1] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    for i, (name, kind, _) in enumerate(m_pos):
        if i < len(r_pos):
            if name != r_pos[i][0] and not dunder and kind != "POSITIONAL_ONLY":
                return f"positional parameter {i} is {name!r}, CuPy's is {r_pos[i][0]!r}"
        elif not r_varpos:
            return f"takes {len(m_pos)} positional parameters, CuPy at most {len(r_pos)}"
        elif kind == "POSITIONAL_OR_KEYWORD" and name not in r_named and not r_varkw:
            return f"{name!r} may be passed by keyword, CuPy has no such keyword"
    for name, kind, _ in mine:
        if kind == "KEYWORD_ONLY" and name not in r_named and not r_varkw:
            return f"keyword {name!r} is not one of CuPy's"
        if kind == "VAR_POSITIONAL" and not r_varpos:
            return "takes *args, CuPy does not"
        if kind == "VAR_KEYWORD" and not r_varkw:
            return "takes **kwargs, CuPy does not"
    return None


def compare(standin: list[dict[str, Any]], real: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, unchecked): names missing from CuPy or differing, and what could only be
    checked for existence."""
    problems, unchecked = [], []
    for entry in standin:
        path, theirs = entry["path"], real.get(entry["path"])
        if theirs is None:
            if entry.get("instance"):
                unchecked.append(f"{path} (an instance attribute: set in __init__, not visible without a GPU)")
            else:
                problems.append(f"{path}: not in CuPy")
            continue
        kinds = {entry["kind"], theirs["kind"]}
        if entry["kind"] != theirs["kind"] and kinds not in ({"function", "class"}, {"attribute", "value"},
                                                             {"function", "attribute"}):
            problems.append(f"{path}: a {entry['kind']} in the stand-in, a {theirs['kind']} in CuPy")
            continue
        if entry.get("numpy") != theirs.get("numpy"):
            problems.append(f"{path}: {entry.get('numpy')} in the stand-in, {theirs.get('numpy')} in CuPy")
            continue
        if "params" in entry:
            if theirs.get("params") is None:
                unchecked.append(f"{path} (CuPy's parameters are unreadable)")
                continue
            name = path.rsplit(".", 1)[-1]
            why = incompatibility(entry["params"], theirs["params"], name.startswith("__"))
            if why:
                problems.append(f"{path}: {why} (stand-in {entry['params']}, CuPy {theirs['params']})")
    return problems, unchecked


# --------------------------------------------------------------------------- the tests

def test_standin_names_and_signatures_are_cupys() -> None:
    standin = run_described("standin")
    assert "error" not in standin, standin
    real = run_described("real", [entry["path"] for entry in standin])
    if "error" in real:
        if os.environ.get("ANYXP_REQUIRE_REAL_CUPY") == "1":
            pytest.fail(f"the real CuPy is needed to check the stand-in's names: {real['error']}")
        pytest.skip(f"the real CuPy is not importable here ({real['error']})")
    problems, unchecked = compare(standin, real)
    assert problems == [], f"the stand-in differs from CuPy {real['__version__']}:\n" + "\n".join(problems)
    assert len(standin) > 250  # the walk found the stand-in's names
    assert len(unchecked) < len(standin) // 10, unchecked  # nearly everything is checked beyond existence


def test_the_comparison_catches_what_it_should() -> None:
    """The checker itself: wrong names, extra keywords, wrong kinds, missing names."""
    a_b = [["a", "POSITIONAL_OR_KEYWORD", False], ["b", "POSITIONAL_OR_KEYWORD", True]]
    assert incompatibility(a_b, a_b, False) is None
    assert incompatibility(a_b[:1], a_b, False) is None  # a subset is fine
    assert "'x'" in incompatibility([["x", "POSITIONAL_OR_KEYWORD", False]], a_b, False)
    assert "keyword 'k'" in incompatibility([["k", "KEYWORD_ONLY", True]], a_b, False)
    assert incompatibility([["k", "KEYWORD_ONLY", True]], [*a_b, ["kw", "VAR_KEYWORD", False]], False) is None
    assert "at most 2" in incompatibility([*a_b, ["c", "POSITIONAL_OR_KEYWORD", True]], a_b, False)
    assert incompatibility([["x1", "POSITIONAL_ONLY", False]], [["args", "VAR_POSITIONAL", False]], False) is None
    assert _parse_params("self, intptr_t sendbuf, size_t count, *, int op=0, **kw") == [
        ["sendbuf", "POSITIONAL_OR_KEYWORD", False], ["count", "POSITIONAL_OR_KEYWORD", False],
        ["op", "KEYWORD_ONLY", True], ["kw", "VAR_KEYWORD", False]]
    problems, _ = compare([{"path": "cupy.nothing", "kind": "function", "params": []},
                           {"path": "cupy.add", "kind": "function", "params": []}],
                          {"cupy.add": {"kind": "ufunc"}})
    assert problems == ["cupy.nothing: not in CuPy", "cupy.add: a function in the stand-in, a ufunc in CuPy"]


# -- behaviour: only where cupy is the stand-in (pytest --cupy-standin) -----------------------


@pytest.fixture
def cp() -> Any:
    from conftest import cupy_standin

    if cupy_standin() is None:
        pytest.skip("cupy is not the stand-in here (pytest --cupy-standin)")
    import cupy

    cupy._standin.reset()
    yield cupy
    cupy._standin.reset()


def test_implicit_conversion_to_numpy_raises_as_in_cupy(cp: Any) -> None:
    x = cp.arange(3.0)
    message = "Implicit conversion to a NumPy array is not allowed. Please use `.get()`"
    with pytest.raises(TypeError, match=re.escape(message)):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(3)  # NumPy arrays are not kernel operands
    with pytest.raises(TypeError, match="Unsupported type"):
        np.ones(3) + x
    assert cp._standin.syncs == []


def test_every_way_to_the_host_is_counted(cp: Any) -> None:
    x = cp.asarray(np.array([1.5, -2.0, 3.0], dtype=np.float32))
    np.testing.assert_array_equal(x.get(), [1.5, -2.0, 3.0])
    np.testing.assert_array_equal(cp.asnumpy(x), [1.5, -2.0, 3.0])
    total = x.sum()
    assert isinstance(total, cp.ndarray) and total.shape == ()  # reductions stay on the device
    assert float(total) == 2.5 and int(x[0]) == 1 and bool(x[2]) and x[1].item() == -2.0
    assert x.tolist() == [1.5, -2.0, 3.0]
    f"{total:.1f}"
    assert cp._standin.syncs == ["get", "get", "__float__", "__int__", "__bool__", "item", "tolist", "__format__"]
    cp._standin.reset()
    positive = x > 0
    assert x[positive].shape == (2,)  # the result's size comes from the host
    x[positive] = 0.0
    cp.where(positive)
    assert cp._standin.syncs == ["boolean mask index", "boolean mask index", "nonzero"]
    cp._standin.reset()
    y = x[1:] * 2 + cp.exp(x[:2])  # views, kernels and host->device copies do not sync
    y[...] = np.array([1.0, 2.0])
    cp.add.reduce(cp.ones((4, 2)), axis=0, out=cp.empty(2))
    assert cp._standin.syncs == []


def test_allow_synchronize_false_refuses_syncs(cp: Any) -> None:
    import cupyx

    x = cp.ones(3)
    with pytest.warns(UserWarning, match="allow_synchronize will be removed"), cupyx.allow_synchronize(False):
        y = x * 2  # kernels are fine
        for sync in (y.get, lambda: float(y[0]), lambda: y[y > 1], lambda: cp.cuda.Device(0).synchronize()):
            with pytest.raises(cupyx.DeviceSynchronized):
                sync()
    assert y.get().tolist() == [2.0, 2.0, 2.0]  # allowed again afterwards


@pytest.fixture
def two_devices(cp: Any) -> Any:
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("CUPY_STANDIN_DEVICES=1")
    return cp


def test_arrays_belong_to_the_device_current_at_their_creation(two_devices: Any) -> None:
    cp = two_devices
    a = cp.zeros(3)
    with cp.cuda.Device(1) as dev:
        b = cp.ones(3)
        with cp.cuda.Device(0):  # re-entrant
            assert cp.cuda.runtime.getDevice() == 0
        assert cp.cuda.runtime.getDevice() == 1 and dev.id == 1
        assert b.device == cp.cuda.Device(1) and b.data.device_id == 1
        peer = a.copy()  # a copy lands on the current device
        assert peer.device.id == 1 and cp.asarray(a).device.id == 1
        with pytest.raises(ValueError, match=r"resides \(0\) is different from the current device \(1\)"):
            a + b
    assert cp.cuda.runtime.getDevice() == 0 and a.device.id == 0
    with pytest.raises(ValueError, match="Peer access is unavailable"):
        b * 2  # b's device is not current
    with pytest.raises(ValueError, match="Peer access is unavailable"):
        b[...] = 1.0
    assert b[1:].device.id == 1 and b.reshape(3, 1).T.shape == (1, 3)  # views launch nothing
    assert cp.zeros_like(b).device.id == 0  # *_like reads only the shape: on the current device
    with pytest.raises(Exception, match="invalid device ordinal"):
        cp.cuda.Device(cp.cuda.runtime.getDeviceCount()).use()


def test_ufuncs_out_and_reduce_as_in_cupy(cp: Any) -> None:
    a = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    out = cp.empty((3,), dtype=cp.float32)
    assert cp.add.reduce(a, axis=0, out=out) is out
    np.testing.assert_array_equal(out.get(), [3, 5, 7])
    s = cp.empty_like(a)
    cp.multiply(a, 2.0, out=s)
    cp.multiply(a, 2.0, s)  # out given positionally
    np.testing.assert_array_equal(s.get(), 2 * np.arange(6).reshape(2, 3))
    assert (a * 2.0).dtype == cp.float32  # Python scalars are weak: no upcast
    m = cp.empty((2, 2), dtype=cp.float32)
    cp.matmul(a, a.T, out=m)
    np.testing.assert_array_equal(m.get(), np.arange(6).reshape(2, 3) @ np.arange(6).reshape(2, 3).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        cp.matmul(a, a.T, out=cp.empty((2, 2), dtype=cp.float64))
    with np.errstate(all="raise"):
        assert cp.isnan(cp.log(cp.asarray([-1.0]))).all()  # no floating-point warnings on a GPU
    assert np.exp(a).device.id == 0 and isinstance(np.sum(a), cp.ndarray)  # NumPy's functions dispatch


def test_random_state_lives_on_one_device(two_devices: Any) -> None:
    cp = two_devices
    rng = cp.random.default_rng(0)
    assert rng.random((2, 3), dtype=cp.float32).dtype == cp.float32
    with cp.cuda.Device(1), pytest.raises(ValueError, match="Peer access is unavailable"):
        rng.random((2,))


def test_nccl_can_be_made_missing(cp: Any) -> None:
    from cupy.cuda import nccl

    from anyxp import cuda

    assert nccl.available and cuda.nccl_problem() is None
    with cp._standin.without_nccl():
        from cupy.cuda import nccl as missing

        assert missing.available is False and not hasattr(missing, "NcclCommunicator")
        assert "NCCL is not available" in cuda.nccl_problem()
    assert cp.cuda.nccl is nccl


def test_nccl_collectives_reach_the_buffers_behind_the_pointers(cp: Any) -> None:
    mpi = pytest.importorskip("mpi4py.MPI")
    if mpi.COMM_WORLD.Get_size() != 1:
        pytest.skip("a one-rank communicator")
    from cupy.cuda import nccl

    comm = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)
    x = cp.arange(6, dtype=cp.float64)
    view = x[2:]  # a pointer into the middle of an allocation
    assert view.data.ptr == x.data.ptr + 16
    stream = cp.cuda.get_current_stream().ptr
    comm.allReduce(view.data.ptr, view.data.ptr, view.size, nccl.NCCL_FLOAT64, nccl.NCCL_SUM, stream)
    comm.bcast(x.data.ptr, x.size, nccl.NCCL_FLOAT64, 0, stream)
    np.testing.assert_array_equal(x.get(), np.arange(6))
    out = cp.zeros(6, dtype=cp.float64)
    comm.allReduce(x.data.ptr, out.data.ptr, 6, nccl.NCCL_FLOAT64, nccl.NCCL_MAX, stream)
    np.testing.assert_array_equal(out.get(), np.arange(6))
    with pytest.raises(nccl.NcclError, match="invalid argument"):
        comm.bcast(x.data.ptr, 1, 99, 0, stream)
    assert (comm.rank_id(), comm.size(), comm.device_id()) == (0, 1, 0)
    comm.destroy()


# -- the CuPy-only branches that neither a GPU run nor the stand-in reaches by itself ------


def test_the_driver_check_passes_where_the_library_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyxp import cuda

    monkeypatch.setattr(cuda.ctypes, "CDLL", lambda name: object())  # also what the stand-in's check honours
    assert cuda.driver_problem() is None


def test_the_probe_says_when_cupy_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyxp import cuda

    monkeypatch.setattr(cuda, "driver_problem", lambda: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(cuda.importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real_find_spec(name, *a))
    assert cuda.cupy_problem() == f"CuPy is not installed ({cuda.INSTALL_HINT})"


def test_nccl_that_cannot_be_imported_is_a_reason(cp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from anyxp import cuda

    monkeypatch.delattr(cp.cuda, "nccl", raising=False)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", None)  # "import cupy.cuda.nccl" raises
    assert cuda.nccl_problem().startswith("cupy.cuda.nccl cannot be imported (ModuleNotFoundError")


if __name__ == "__main__":  # the subprocesses of test_standin_names_and_signatures_are_cupys
    side = sys.argv[1]
    payload = json.loads(sys.stdin.read() or "null")
    print(json.dumps(describe_standin() if side == "standin" else describe_real(payload)))
