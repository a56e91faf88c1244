"""Every public entry point converts and validates its inputs one way (`anyxp.validation`).

What a user may reasonably pass works: lists, nested lists, pandas (nullable dtypes
included), torch tensors (``requires_grad`` too), the backend's own arrays, NumPy scalars
for hyperparameters. What cannot work is a ``ValueError`` or ``TypeError`` whose message
names the argument, and leaves the network's training state (weights, optimizer state
and steps, RNG state) and the caller's data unchanged. Explicit cases first, then a
hypothesis suite of hostile inputs for fit / evaluate / predict / set_weights / constructors.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyxp as ax
from anyxp.backend import is_array, to_numpy

HAS_PANDAS = importlib.util.find_spec("pandas") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
N, FEATURES, CLASSES = 12, 4, 3

# --------------------------------------------------------------------------- helpers


def network(backend: ax.Backend, dtype: str = "float32", *, trained: bool = True, **kwargs: Any) -> ax.Network:
    """A 4-6-3 classifier; ``trained``: one epoch done, so the optimizer has state and steps."""
    kwargs.setdefault("optimizer", ax.Adam(lr=0.01))
    net = ax.Network([ax.Dense(6, "relu"), ax.Dense(CLASSES, "softmax")], input_size=FEATURES,
                     backend=backend, dtype=dtype, seed=0, **kwargs)
    if trained:
        x, y = dataset()
        net.fit(x, y, epochs=1, batch_size=5, verbose=0)
    return net


def dataset(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, FEATURES)), np.arange(n) % CLASSES


def state_of(net: ax.Network) -> dict[str, Any]:
    """Everything a refused call must leave alone (host copies)."""
    state: dict[str, Any] = {"built": net.built, "rng": net.rng.bit_generator.state, "input_size": net.input_size}
    if net.built:
        state["weights"] = net.get_weights()
        state["optimizer"] = {k: np.array(to_numpy(v), copy=True) for k, v in net.optimizer.state_arrays().items()}
        state["steps"] = net.optimizer.steps
    return state


def assert_same_state(net: ax.Network, before: dict[str, Any]) -> None:
    after = state_of(net)
    assert after.keys() == before.keys()
    for key, value in before.items():
        if key == "weights":
            for a, b in zip(value, after[key], strict=True):
                np.testing.assert_array_equal(a, b)
        elif key == "optimizer":
            assert value.keys() == after[key].keys()
            for name, array in value.items():
                np.testing.assert_array_equal(array, after[key][name])
        else:
            assert after[key] == value, key


def frozen(value: Any) -> Any:
    """A host copy of user data (arrays, frames, tensors, lists, dicts) to compare with later."""
    if type(value).__module__.startswith("pandas"):
        return ("pandas", value.copy(deep=True))
    if isinstance(value, np.ndarray) or is_array(value):
        grad = getattr(value, "requires_grad", None), getattr(value, "grad", None) is None
        return ("array", np.array(to_numpy(value), copy=True), type(value), grad)
    if isinstance(value, list | tuple):
        return (type(value), [frozen(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [("scalar", repr(k)) for k in value] + [frozen(v) for v in value.values()])
    return ("scalar", repr(value))


def assert_unchanged(value: Any, before: Any) -> None:
    """``value`` still equals its `frozen` copy ``before`` (NaN equal to NaN)."""
    _same(frozen(value), before)


def _same(now: Any, before: Any) -> None:
    assert now[0] == before[0]
    if before[0] == "pandas":
        dtypes = [str(getattr(obj, "dtypes" if obj.ndim == 2 else "dtype")) for obj in (now[1], before[1])]
        assert now[1].equals(before[1]) and dtypes[0] == dtypes[1]
    elif before[0] == "array":
        assert now[1].dtype == before[1].dtype and now[2:] == before[2:]
        np.testing.assert_array_equal(now[1], before[1])
    elif before[0] == "scalar":
        assert now[1] == before[1]
    else:
        assert len(now[1]) == len(before[1])
        for a, b in zip(now[1], before[1], strict=True):
            _same(a, b)


def refuses(net: ax.Network, call: Callable[[], Any], error: type[Exception], pattern: str, *data: Any) -> str:
    """``call`` raises ``error`` matching ``pattern``; the network and ``data`` are unchanged."""
    before, copies = state_of(net), [frozen(d) for d in data]
    with pytest.raises(error, match=pattern) as info:
        call()
    assert type(info.value) in (ValueError, TypeError), type(info.value)  # no subclass surprises
    assert_same_state(net, before)
    for value, copy in zip(data, copies, strict=True):
        assert_unchanged(value, copy)
    return str(info.value)


def ids_of(table: list[tuple]) -> list[str]:
    """Test ids from the expected messages (the last item of each row)."""
    return [row[-1].strip("^$")[:40] for row in table]


def pd() -> Any:
    return pytest.importorskip("pandas")


def torch() -> Any:
    return pytest.importorskip("torch")


def trained_weights(net: ax.Network) -> list[np.ndarray]:
    return [np.array(w) for w in net.get_weights()]


# --------------------------------------------------------------------------- containers


CONTAINERS = ["list", "tuple_rows", "native", "pandas", "pandas_nullable", "torch", "torch_requires_grad"]


def contain(a: np.ndarray, container: str, backend: ax.Backend) -> Any:
    """``a`` as the user might hold it."""
    if container == "list":
        return a.tolist()
    if container == "tuple_rows":
        return tuple(tuple(row) for row in a.tolist()) if a.ndim == 2 else tuple(a.tolist())
    if container == "native":
        return backend.asarray(a)
    if container.startswith("pandas"):
        pandas = pd()
        obj = pandas.DataFrame(a, columns=[f"f{j}" for j in range(a.shape[1])]) if a.ndim == 2 else pandas.Series(a)
        if container == "pandas_nullable":
            obj = obj.astype({"f": "Float64", "i": "Int64", "b": "boolean"}[a.dtype.kind])
        return obj
    if container.startswith("torch"):
        t = torch().asarray(a)
        return t.requires_grad_(True) if container == "torch_requires_grad" and a.dtype.kind == "f" else t
    return a


@pytest.mark.parametrize("container", CONTAINERS)
def test_every_container_trains_like_numpy(backend: ax.Backend, container: str) -> None:
    """x, y and sample_weight from lists, pandas (nullable too), torch, the backend's own
    arrays: the same weights, evaluation and predictions as NumPy; the inputs untouched."""
    x, y = dataset()
    w = np.linspace(0.5, 2.0, N)
    reference = network(backend, trained=False)
    reference.fit(x, y, sample_weight=w, epochs=2, batch_size=5, verbose=0)
    net = network(backend, trained=False)
    args = [contain(x, container, backend), contain(y, container, backend), contain(w, container, backend)]
    copies = [frozen(a) for a in args]
    net.fit(args[0], args[1], sample_weight=args[2], epochs=2, batch_size=5, verbose=0)
    for a, b in zip(trained_weights(reference), trained_weights(net), strict=True):
        np.testing.assert_array_equal(a, b)
    assert net.evaluate(args[0], args[1], sample_weight=args[2]) == reference.evaluate(x, y, sample_weight=w)
    np.testing.assert_array_equal(np.asarray(to_numpy(net.predict(args[0]))), reference.predict(x))
    np.testing.assert_array_equal(np.asarray(to_numpy(net.predict_classes(args[0]))), reference.predict_classes(x))
    for a, copy in zip(args, copies, strict=True):
        assert_unchanged(a, copy)


@pytest.mark.parametrize("container", ["list", "native", "torch_requires_grad", "generator"])
def test_set_weights_takes_nested_lists_and_any_array(backend: ax.Backend, container: str) -> None:
    net = network(backend)
    new = [np.full(w.shape, i + 0.5) for i, w in enumerate(net.get_weights())]
    weights = (w for w in new) if container == "generator" else [contain(w, container, backend) for w in new]
    net.set_weights(weights)
    for a, b in zip(net.get_weights(), new, strict=True):
        np.testing.assert_array_equal(a, b.astype(np.float32))


def test_torch_tensors_that_require_grad(backend: ax.Backend) -> None:
    """requires_grad=True is fine everywhere (anyxp computes its own gradients); the
    caller's tensors keep requires_grad and get no .grad."""
    th = torch()
    x, y = dataset()
    tx = th.tensor(x, requires_grad=True)
    tw = th.ones(N, dtype=th.float64, requires_grad=True)
    net = network(backend, trained=False)
    net.fit(tx, th.tensor(y), sample_weight=tw, epochs=1, verbose=0)
    net.evaluate(tx, th.tensor(y), sample_weight=tw)
    out = net.predict(tx)
    assert isinstance(out, th.Tensor) and not out.requires_grad
    net.set_weights([th.tensor(w, requires_grad=True) for w in net.get_weights()])
    assert tx.requires_grad and tx.grad is None and tw.grad is None


def test_pandas_nullable_frames_and_missing_values(backend: ax.Backend) -> None:
    pandas = pd()
    x, y = dataset()
    frame = pandas.DataFrame({"a": x[:, 0], "b": (x[:, 1] * 10).round().astype(int), "c": x[:, 2] > 0, "d": x[:, 3]})
    nullable = frame.astype({"a": "Float64", "b": "Int64", "c": "boolean", "d": "float32"})
    reference, net = network(backend, trained=False), network(backend, trained=False)
    reference.fit(frame.to_numpy(dtype=float), y, epochs=1, verbose=0)
    net.fit(nullable, pandas.Series(y, dtype="Int64"), epochs=1, verbose=0)
    for a, b in zip(trained_weights(reference), trained_weights(net), strict=True):
        np.testing.assert_array_equal(a, b)
    holes = nullable.copy()
    holes.loc[3, "b"] = pandas.NA
    missing = r"^x column 'b' has a missing value in row 3$"
    refuses(net, lambda: net.fit(holes, y, verbose=0), ValueError, missing, holes)
    refuses(net, lambda: net.predict(holes), ValueError, "x column 'b' has a missing value in row 3", holes)
    labels = pandas.Series(y, dtype="Int64")
    labels[5] = pandas.NA
    refuses(net, lambda: net.fit(x, labels, verbose=0), ValueError, r"^y has a missing value in row 5$", labels)
    weights = pandas.Series(np.ones(N), dtype="Float64")
    weights[2] = pandas.NA
    refuses(net, lambda: net.evaluate(x, y, sample_weight=weights), ValueError,
            "sample_weight has a missing value in row 2", weights)
    named = frame.assign(name=["a"] * N)
    refuses(net, lambda: net.predict(named), TypeError, "x column 'name' must hold real numbers", named)
    cats = frame.astype({"b": "category"})
    refuses(net, lambda: net.predict(cats), TypeError, "x column 'b' must hold real numbers", cats)


@pytest.mark.parametrize("call", ["fit", "predict", "evaluate", "validation_data"])
@pytest.mark.parametrize("container", ["numpy", "list", "native", "torch", "pandas"])
def test_complex_features_are_refused(backend: ax.Backend, call: str, container: str) -> None:
    """The imaginary part is never dropped silently."""
    x, y = dataset()
    c = contain(x + 1j, container, backend)
    net = network(backend)
    calls = {
        "fit": lambda: net.fit(c, y, verbose=0),
        "predict": lambda: net.predict(c),
        "evaluate": lambda: net.evaluate(c, y),
        "validation_data": lambda: net.fit(x, y, validation_data=(c, y), verbose=0),
    }
    name = "validation_data x" if call == "validation_data" else "x"
    if container == "pandas":
        name += " column 'f0'"
    refuses(net, calls[call], TypeError, f"^{name} holds complex numbers; only real numbers can be used$", c)


def test_complex_targets_weights_and_parameters_are_refused(backend: ax.Backend) -> None:
    x, y = dataset()
    net = network(backend)
    yc, wc = backend.asarray(y + 0j), np.ones(N) + 0j
    refuses(net, lambda: net.fit(x, yc, verbose=0), TypeError, "^y holds complex numbers", yc)
    refuses(net, lambda: net.evaluate(x, y, sample_weight=wc), TypeError, "^sample_weight holds complex numbers", wc)
    weights = [w + 0j for w in net.get_weights()]
    refuses(net, lambda: net.set_weights(weights), TypeError, r"^weight 0 \(Dense kernel\) holds complex numbers",
            weights)


@pytest.mark.parametrize("where", ["fit", "predict", "evaluate", "validation_data", "native"])
def test_float64_values_that_overflow_float32(backend: ax.Backend, where: str) -> None:
    """The finiteness check runs after the cast to the network's dtype: an error naming
    the row, not NaN predictions or "lower the learning rate"."""
    x, y = dataset()
    x[3, 2] = 1e39
    net = network(backend)
    name = "validation_data x" if where == "validation_data" else "x"
    held = backend.asarray(x) if where == "native" else x
    calls = {
        "fit": lambda: net.fit(held, y, verbose=0),
        "native": lambda: net.fit(held, y, verbose=0),
        "predict": lambda: net.predict(held),
        "evaluate": lambda: net.evaluate(held, y),
        "validation_data": lambda: net.fit(dataset()[0], y, validation_data=(held, y), verbose=0),
    }
    refuses(net, calls[where], ValueError, rf"^{name} row 3 overflows float32 \(max 3\.4e38\)$", held)
    wide = network(backend, "float64")  # a float64 network takes them
    out = wide.predict(held)
    assert np.isfinite(np.asarray(to_numpy(out))).all()


def test_other_arguments_that_overflow_float32(backend: ax.Backend) -> None:
    x, y = dataset()
    mse = ax.Network([ax.Dense(2)], input_size=FEATURES, loss="mse", backend=backend, seed=0)
    targets = np.zeros((N, 2))
    targets[4, 1] = -1e39
    refuses(mse, lambda: mse.fit(x, targets, verbose=0), ValueError, r"^y row 4 overflows float32", targets)
    net = network(backend)
    w = np.ones(N)
    w[7] = 1e39
    refuses(net, lambda: net.fit(x, y, sample_weight=w, verbose=0), ValueError,
            r"^sample_weight row 7 overflows float32", w)
    weights = [w.astype(np.float64) for w in net.get_weights()]
    weights[2][5, 1] = 1e300
    refuses(net, lambda: net.set_weights(weights), ValueError,
            r"^weight 2 \(Dense kernel\) row 5 overflows float32", weights)


def test_nan_and_inf_still_name_the_row(backend: ax.Backend) -> None:
    x, y = dataset()
    net = network(backend)
    x[6, 0] = np.nan
    refuses(net, lambda: net.fit(backend.asarray(x), y, verbose=0), ValueError, "^x contains NaN in row 6$", x)
    x[6, 0], x[2, 3] = 0.0, -np.inf
    refuses(net, lambda: net.predict(x.astype(np.float32)), ValueError, "^x contains inf in row 2$", x)


BAD_CLASS_WEIGHTS = [
    ({3: 2.0}, ValueError, r"^class_weight key 3 is not a class; the classes are the integers 0\.\.2$"),
    ({-1: 2.0}, ValueError, "class_weight key -1 is not a class"),
    ({1.5: 2.0}, ValueError, "class_weight key 1.5 is not a class"),
    ({"1": 2.0}, ValueError, "class_weight key '1' is not a class"),
    ({True: 2.0}, ValueError, "class_weight key True is not a class"),
    ({None: 2.0}, ValueError, "class_weight key None is not a class"),
    ({float("nan"): 2.0}, ValueError, "class_weight key nan is not a class"),
    ({1: -1.0}, ValueError, r"class_weight\[1\] must be a finite number >= 0"),
    ({1: float("nan")}, ValueError, r"class_weight\[1\] must be a finite number"),
    ({1: float("inf")}, ValueError, r"class_weight\[1\] must be a finite number"),
    ({1: "2"}, TypeError, r"class_weight\[1\] must be a real number"),
    ({1: None}, TypeError, r"class_weight\[1\] must be a real number"),
    ({0: 0.0, 1: 0, 2: 0.0}, ValueError, "^class_weight gives every sample weight 0$"),
    ([1.0, 2.0, 3.0], TypeError, r"class_weight must be a dict \{class: weight\}, got list"),
]


@pytest.mark.parametrize(("class_weight", "error", "message"), BAD_CLASS_WEIGHTS, ids=ids_of(BAD_CLASS_WEIGHTS))
def test_class_weight_keys_must_be_classes(backend: ax.Backend, class_weight: Any, error: type, message: str) -> None:
    x, y = dataset()
    net = network(backend)
    refuses(net, lambda: net.fit(x, y, class_weight=class_weight, verbose=0), error, message, class_weight, x, y)


def test_class_weight_weighs_each_class(backend: ax.Backend) -> None:
    """{class: weight} is sample_weight by class; 1.0 and np.int64(1) name class 1."""
    x, y = dataset()
    by_class, by_sample, by_float = (network(backend, trained=False) for _ in range(3))
    by_class.fit(x, y, class_weight={np.int64(1): 0.0, 2: 3.0}, epochs=2, verbose=0)
    by_float.fit(x, np.eye(3)[y], class_weight={1.0: 0.0, 2.0: np.float32(3.0)}, epochs=2, verbose=0)
    by_sample.fit(x, y, sample_weight=np.array([1.0, 0.0, 3.0])[y], epochs=2, verbose=0)
    for a, b, c in zip(*(trained_weights(n) for n in (by_class, by_sample, by_float)), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    mse = ax.Network([ax.Dense(1)], input_size=FEATURES, loss="mse", backend=backend, seed=0)
    refuses(mse, lambda: mse.fit(x, y * 0.5, class_weight={0: 1.0}, verbose=0), ValueError,
            "class_weight needs class targets")


BAD_SAMPLE_WEIGHTS = [
    (np.ones(N - 1), ValueError, r"^sample_weight must have shape \(12,\) \(one weight per sample\), got \(11,\)"),
    (np.ones((N, 1)), ValueError, r"sample_weight must have shape"),
    (np.where(np.arange(N) == 4, -1.0, 1.0), ValueError, r"^sample_weight row 4 is negative \(-1\)$"),
    (np.where(np.arange(N) == 8, np.nan, 1.0), ValueError, "^sample_weight contains NaN in row 8$"),
    (np.zeros(N), ValueError, "^sample_weight is 0 for every sample$"),
    (np.array(["1"] * N), TypeError, "^sample_weight must hold real numbers, got dtype <U1$"),
    (np.ones(N, dtype=object), TypeError, "sample_weight must hold real numbers, got dtype object"),
    ([1.0] * (N - 1) + [None], TypeError, "sample_weight must hold real numbers"),
    (2.0, ValueError, r"sample_weight must have shape \(12,\)"),
]


@pytest.mark.parametrize(("weights", "error", "message"), BAD_SAMPLE_WEIGHTS,
                         ids=ids_of(BAD_SAMPLE_WEIGHTS))
@pytest.mark.parametrize("call", ["fit", "evaluate", "validation_data"])
def test_bad_sample_weights(backend: ax.Backend, weights: Any, error: type, message: str, call: str) -> None:
    x, y = dataset()
    net = network(backend)
    calls = {
        "fit": lambda: net.fit(x, y, sample_weight=weights, verbose=0),
        "evaluate": lambda: net.evaluate(x, y, sample_weight=weights),
        "validation_data": lambda: net.fit(x, y, validation_data=(x, y, weights), verbose=0),
    }
    if call == "validation_data":
        message = message.replace("sample_weight", "validation_data sample_weight", 1)
    refuses(net, calls[call], error, message, weights, x, y)


BAD_ARRAYS = [
    (None, TypeError, "^x must be an array, got None$"),
    ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], ValueError, "^x cannot be read as an array"),
    ([["a", "b", "c", "d"]], TypeError, r"^x must hold real numbers, got dtype <U1$"),
    ([[1.0, None, 2.0, 3.0]], TypeError, "^x must hold real numbers, got dtype object$"),
    (np.zeros((2, 4), dtype="datetime64[s]"), TypeError, r"x must hold real numbers, got dtype datetime64\[s\]"),
    (np.zeros((2, 4, 1)), ValueError, r"^x must be 2-D \(samples, features\), got shape \(2, 4, 1\)$"),
    (np.zeros(4), ValueError, r"x must be 2-D"),
    (3.0, ValueError, r"x must be 2-D .*got shape \(\)"),
    (np.zeros((0, 4)), ValueError, r"^x is empty \(0 samples\)$"),
    (np.zeros((3, 0)), ValueError, "^x has 0 features$"),
    (np.zeros((3, 5)), ValueError, "^x has 5 features, but the network expects 4$"),
]


@pytest.mark.parametrize(("x", "error", "message"), BAD_ARRAYS, ids=ids_of(BAD_ARRAYS))
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "unbuilt"])
def test_bad_features(backend: ax.Backend, x: Any, error: type, message: str, trained: bool) -> None:
    net = network(backend, trained=trained)
    _, y = dataset()  # x is checked first, whatever y holds
    refuses(net, lambda: net.predict(x), error, message, x)
    refuses(net, lambda: net.fit(x, y, verbose=0), error, message, x)
    refuses(net, lambda: net.evaluate(x, y), error, message, x)


BAD_TARGETS = [
    (None, TypeError, "^y must be an array, got None$"),
    (np.array(["a"] * N), TypeError, "^y must hold real numbers"),
    (np.arange(N) + 0.5j, TypeError, "^y holds complex numbers"),
    (np.zeros((N, 3, 1)), ValueError, r"^y must be 1-D labels or 2-D targets, got shape \(12, 3, 1\)$"),
    (np.float64(1.0), ValueError, "^y must be an array of targets, got a scalar$"),
    (np.zeros((N, 2)), ValueError, r"^y has shape \(12, 2\); expected \(12, 3\)"),
    (np.arange(N - 1) % 3, ValueError, "^x and y have different lengths: 12 and 11$"),
    (np.full((N, 1), 0.5), ValueError, r"^y has a non-integer class label 0.5 in row 0$"),
    (np.eye(CLASSES)[np.arange(N) % CLASSES] * 2, ValueError, r"^y row 0 has targets outside \[0, 1\]"),
]


@pytest.mark.parametrize(("y", "error", "message"), BAD_TARGETS, ids=ids_of(BAD_TARGETS))
def test_bad_targets(backend: ax.Backend, y: Any, error: type, message: str) -> None:
    x, _ = dataset()
    net = network(backend)
    refuses(net, lambda: net.fit(x, y, verbose=0), error, message, x, y)
    refuses(net, lambda: net.evaluate(x, y), error, message, x, y)


def test_a_column_of_labels_counts_as_labels(backend: ax.Backend) -> None:
    x, y = dataset()
    a, b = network(backend, trained=False), network(backend, trained=False)
    a.fit(x, y, epochs=1, verbose=0)
    b.fit(x, y.reshape(-1, 1), epochs=1, verbose=0)
    for wa, wb in zip(trained_weights(a), trained_weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


# --------------------------------------------------------------------------- scalars


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers(backend: ax.Backend, tmp_path) -> None:
    net = ax.Network([ax.Dense(np.int64(6), "relu", input_size=np.int32(4), use_bias=np.bool_(True)),
                      ax.Dropout(np.float32(0.25), seed=np.int64(7)), ax.Dense(CLASSES, ax.LeakyReLU(np.float32(0.2))),
                      ax.Dense(CLASSES, "softmax")],
                     input_size=np.int64(4), optimizer=ax.SGD(lr=np.float32(0.1), momentum=np.float64(0.9),
                                                              nesterov=np.bool_(True)),
                     backend=backend, seed=np.int64(3))
    assert type(net.seed) is int and net.seed == 3 and type(net.input_size) is int
    assert type(net.optimizer.lr) is float and net.optimizer.lr == float(np.float32(0.1))
    assert type(net.layers[0].units) is int and type(net.layers[1].rate) is float and type(net.layers[1].seed) is int
    x, y = dataset()
    history = net.fit(x, y, epochs=np.int64(2), batch_size=np.int32(5), validation_split=np.float32(0.25),
                      shuffle=np.bool_(False), verbose=np.int64(0))
    assert len(history.history["loss"]) == 2
    net.predict(x, batch_size=np.int64(5))
    net.evaluate(x, y, batch_size=np.uint8(5))
    net.save(tmp_path / "net.npz")  # an np.int64 seed once broke the JSON header
    assert ax.load(tmp_path / "net.npz", backend=backend).seed == 3
    adam = ax.Adam(lr=np.float16(0.5), betas=np.array([0.8, 0.9]), eps=np.float32(1e-7))
    assert adam.betas == (0.8, 0.9) and all(type(v) is float for v in (adam.lr, *adam.betas, adam.eps))


NAN, INF = float("nan"), float("inf")
X_OTHER, Y_OTHER = dataset(seed=1)
BAD_HYPERPARAMETERS = [
    (lambda: ax.SGD(lr=NAN), ValueError, "^lr must be a finite number >= 0, got nan$"),
    (lambda: ax.SGD(lr=INF), ValueError, "^lr must be a finite number >= 0"),
    (lambda: ax.SGD(lr=True), TypeError, "^lr must be a number >= 0, a learning-rate schedule .* got bool True$"),
    (lambda: ax.SGD(lr="0.1"), TypeError, "^lr must be a number >= 0, a learning-rate schedule .* got str '0.1'$"),
    (lambda: ax.SGD(lr=0.1 + 0j), TypeError, "^lr must be a number >= 0, a learning-rate schedule"),
    (lambda: ax.SGD(momentum=NAN), ValueError, "^momentum must be"),
    (lambda: ax.SGD(momentum=0.9, dampening=NAN), ValueError, r"^dampening must be in \[0, 1\]"),
    (lambda: ax.SGD(momentum=0.9, nesterov="yes"), TypeError, "^nesterov must be True or False"),
    (lambda: ax.Adam(betas=(NAN, 0.9)), ValueError, r"^betas\[0\] must be in \[0, 1\), got nan$"),
    (lambda: ax.Adam(betas=(0.9, 1.0)), ValueError, r"^betas\[1\] must be in \[0, 1\)"),
    (lambda: ax.Adam(betas=0.9), TypeError, r"^betas must be a pair \(beta1, beta2\)"),
    (lambda: ax.Adam(betas=(0.9,)), ValueError, r"^betas must be a pair \(beta1, beta2\), got 1 values$"),
    (lambda: ax.Adam(eps=NAN), ValueError, "^eps must be"),
    (lambda: ax.AdamW(weight_decay=-1e-3), ValueError, "^weight_decay must be a finite number >= 0"),
    (lambda: ax.RMSprop(alpha=NAN), ValueError, r"^alpha must be in \[0, 1\)"),
    (lambda: ax.RMSprop(momentum=INF), ValueError, "^momentum must be"),
    (lambda: ax.Network([ax.Dense(2)], seed=-1), ValueError, "^seed must be an integer >= 0, got -1$"),
    (lambda: ax.Network([ax.Dense(2)], seed=1.5), ValueError, "^seed must be an integer >= 0, got 1.5$"),
    (lambda: ax.Network([ax.Dense(2)], seed="1"), TypeError, "^seed must be an integer, got str '1'$"),
    (lambda: ax.Network([ax.Dense(2)], seed=True), TypeError, "^seed must be an integer, got bool True$"),
    (lambda: ax.Network([ax.Dense(2)], input_size=0), ValueError, "^input_size must be an integer >= 1"),
    (lambda: ax.Network([ax.Dense(2)], input_size=4.0), ValueError, "^input_size must be an integer >= 1"),
    (lambda: ax.Network([ax.Dense(2)], name=5), TypeError, "^name must be a string, got int$"),
    (lambda: ax.Network(ax.Dense(2)), TypeError, "^layers must be a list of Layer objects, got Dense$"),
    (lambda: ax.Network([ax.Dense(2), "relu"]), TypeError, "takes a Layer, got str"),
    (lambda: ax.Network([ax.Dense(2)], metrics=5), TypeError, "^metrics must be a list of names, got int$"),
    (lambda: ax.Dense("3"), TypeError, "^Dense units must be an integer, got str '3'$"),
    (lambda: ax.Dense(3.0), ValueError, r"^Dense units must be an integer >= 1 \(a positive integer\), got 3.0$"),
    (lambda: ax.Dense(True), TypeError, "^Dense units must be an integer, got bool"),
    (lambda: ax.Dense(3, use_bias="no"), TypeError, "^Dense use_bias must be True or False, got str 'no'$"),
    (lambda: ax.Dense(3, input_size=0), ValueError, "^Dense input_size must be an integer >= 1"),
    (lambda: ax.Dropout(NAN), ValueError, r"^Dropout rate must be in \[0, 1\), got nan$"),
    (lambda: ax.Dropout("0.5"), TypeError, "^Dropout rate must be a real number, got str '0.5'$"),
    (lambda: ax.Dropout(0.5, seed=1.5), ValueError, "^Dropout seed must be an integer, got 1.5$"),
    (lambda: ax.LeakyReLU(NAN), ValueError, "^LeakyReLU alpha must be a finite number, got nan$"),
    (lambda: ax.ELU(-1.0), ValueError, "^ELU alpha must be a finite number >= 0, got -1.0$"),
    (lambda: ax.ELU("1"), TypeError, "^ELU alpha must be a real number"),
    (lambda: ax.CrossEntropy(from_logits="no"), TypeError, "^from_logits must be True or False, got str 'no'$"),
    (lambda: ax.BinaryCrossEntropy(from_logits=1), TypeError, "^from_logits must be True or False, got int 1$"),
]


@pytest.mark.parametrize(("factory", "error", "message"), BAD_HYPERPARAMETERS,
                         ids=ids_of(BAD_HYPERPARAMETERS))
def test_bad_hyperparameters_name_the_argument(factory: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message) as info:
        factory()
    assert type(info.value) is error


BAD_FIT_OPTIONS = [
    ({"shuffle": "no"}, TypeError, "^shuffle must be True or False, got str 'no'$"),
    ({"shuffle": 1}, TypeError, "^shuffle must be True or False, got int 1$"),
    ({"shuffle": None}, TypeError, "^shuffle must be True or False, got NoneType None$"),
    ({"epochs": 1.5}, ValueError, "^epochs must be an integer >= 0, got 1.5$"),
    ({"epochs": "2"}, TypeError, "^epochs must be an integer, got str '2'$"),
    ({"epochs": True}, TypeError, "^epochs must be an integer, got bool True$"),
    ({"epochs": None}, TypeError, "^epochs must be an integer"),
    ({"batch_size": None}, TypeError, "^batch_size must be an integer, got NoneType None$"),
    ({"batch_size": np.float64(8.0)}, ValueError, "^batch_size must be an integer >= 1"),
    ({"validation_split": NAN}, ValueError, r"^validation_split must be in \[0, 1\), got nan$"),
    ({"validation_split": "0.1"}, TypeError, "^validation_split must be a real number"),
    ({"validation_split": True}, TypeError, "^validation_split must be a real number, got bool True$"),
    ({"validation_split": 0.2, "validation_data": (X_OTHER, Y_OTHER)}, ValueError,
     "pass validation_data or validation_split, not both"),
    ({"verbose": "1"}, TypeError, "^verbose must be an integer, got str '1'$"),
    ({"verbose": 3}, ValueError, "^verbose must be 0, 1 or 2, got 3$"),
    ({"verbose": 1.0}, ValueError, "^verbose must be an integer"),
    ({"callbacks": ax.EarlyStopping()}, TypeError,
     "^callbacks must be a list of Callback instances, got EarlyStopping$"),
    ({"callbacks": [print]}, TypeError, "^callbacks must be Callback instances"),
    ({"callbacks": 3}, TypeError, "^callbacks must be a list of Callback instances, got int$"),
    ({"validation_data": "data"}, TypeError, "^validation_data must be a tuple"),
    ({"validation_data": (X_OTHER,)}, ValueError, r"^validation_data must be \(x_val, y_val\)"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_FIT_OPTIONS, ids=ids_of(BAD_FIT_OPTIONS))
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "unbuilt"])
def test_bad_fit_options_change_nothing(backend: ax.Backend, change: dict, error: type, message: str,
                                        trained: bool) -> None:
    x, y = dataset()
    net = network(backend, trained=trained)
    refuses(net, lambda: net.fit(x, y, **{"verbose": 0, **change}), error, message, x, y)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", True, NAN])
def test_bad_batch_size_for_predict_and_evaluate(backend: ax.Backend, batch_size: Any) -> None:
    x, y = dataset()
    net = network(backend)
    error = TypeError if isinstance(batch_size, str | bool) else ValueError
    refuses(net, lambda: net.predict(x, batch_size=batch_size), error, "^batch_size must be an integer", x)
    refuses(net, lambda: net.evaluate(x, y, batch_size=batch_size), error, "^batch_size must be an integer", x, y)


def test_shuffle_false_keeps_the_order_and_spends_no_random_numbers(backend: ax.Backend) -> None:
    x, y = dataset()
    net = network(backend)
    before = net.rng.bit_generator.state
    net.fit(x, y, epochs=2, shuffle=np.bool_(False), verbose=0)
    assert net.rng.bit_generator.state == before
    net.fit(x, y, epochs=1, shuffle=True, verbose=0)
    assert net.rng.bit_generator.state != before


BAD_WEIGHT_LISTS = [
    (lambda w: None, TypeError, "^weights must be a list of arrays"),
    (lambda w: w[0], TypeError, "^weights must be a list of arrays .*got ndarray"),
    (lambda w: {i: a for i, a in enumerate(w)}, TypeError, "^weights must be a list of arrays"),
    (lambda w: 5, TypeError, "^weights must be a list of arrays"),
    (lambda w: w[:-1], ValueError, "^set_weights got 3 arrays, the network has 4$"),
    (lambda w: [w[0].tolist()[:-1], *w[1:]], ValueError, r"^weight 0 \(Dense kernel\) has shape \(3, 6\)"),
    (lambda w: [[[1.0, 2.0], [3.0]], *w[1:]], ValueError, r"^weight 0 \(Dense kernel\) cannot be read as an array"),
    (lambda w: [w[0], w[1].astype(str), *w[2:]], TypeError, r"^weight 1 \(Dense bias\) must hold real numbers"),
    (lambda w: [w[0], None, *w[2:]], TypeError, r"^weight 1 \(Dense bias\) must be an array, got None$"),
    (lambda w: [*w[:3], np.full(3, np.inf)], ValueError, r"^weight 3 \(Dense bias\) contains inf in row 0$"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_WEIGHT_LISTS, ids=ids_of(BAD_WEIGHT_LISTS))
def test_bad_weight_lists_change_nothing(backend: ax.Backend, change: Callable, error: type, message: str) -> None:
    net = network(backend)
    weights = change([w + 1.0 for w in net.get_weights()])
    refuses(net, lambda: net.set_weights(weights), error, message, weights)


# --------------------------------------------------------------------------- hypothesis

HOSTILE = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large, HealthCheck.filter_too_much])
SCALARS = [-1, 0, 1, 2, 3, 2.5, 0.25, NAN, INF, -INF, "1", None, True, False, np.int64(2), np.int32(1),
           np.uint8(1), np.float32(0.25), np.float64(0.5), np.bool_(True), np.bool_(False), 10**30, 10**400,
           [1], 1 + 0j, 1e300]


def _bool(v: Any) -> bool:
    return isinstance(v, bool | np.bool_)


def _int(v: Any, minimum: int | None = None) -> bool:
    return isinstance(v, numbers.Integral) and not _bool(v) and (minimum is None or v >= minimum)


def _real(v: Any, low: float | None = None, high: float | None = None, open_high: bool = False) -> bool:
    if _bool(v) or not isinstance(v, numbers.Real):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    return math.isfinite(f) and (low is None or f >= low) and (high is None or (f < high if open_high else f <= high))


@dataclass
class Case:
    """One argument as drawn: its value, and whether it is fine (``bad`` is None), fine
    but possibly diverging (``huge``), or wrong (its name must be in the message)."""

    value: Any
    bad: str | None = None
    huge: bool = False
    kind: str = "ok"


def _name_pattern(name: str) -> str:
    return r"\b" + re.escape(name) + r"\b" if name in ("x", "y") else re.escape(name)


FEATURE_KINDS = ["ok", "ok", "ok", "int", "bool", "nan", "inf", "huge", "complex", "strings", "object", "1-D",
                 "3-D", "0-d", "features", "no_features", "length", "empty", "none", "ragged"]


def draw_features(data: st.DataObject, backend: ax.Backend, n: int, dtype: str, hostile: bool,
                  name: str = "x") -> Case:
    a = data.draw(hnp.arrays(np.float64, (n, FEATURES), elements=st.floats(-5, 5)), label=name)
    kind = data.draw(st.sampled_from(FEATURE_KINDS if hostile else ["ok", "int", "bool"]), label=f"{name} kind")
    row, col = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, FEATURES - 1))
    bad: str | None = name
    huge = False
    if kind in ("ok", "int", "bool"):
        a, bad = {"ok": a, "int": np.rint(a).astype(np.int64), "bool": a > 0}[kind], None
    elif kind in ("nan", "inf", "huge"):
        a[row, col] = {"nan": np.nan, "inf": -np.inf, "huge": 1e39}[kind]
        if kind == "huge" and dtype == "float64":
            bad, huge = None, True
    else:
        a = {
            "complex": lambda: a + 1j, "strings": lambda: a.astype(str), "object": lambda: a.astype(object),
            "1-D": lambda: a[0], "3-D": lambda: a[..., None], "0-d": lambda: a[0, 0], "features": lambda: a[:, :3],
            "no_features": lambda: a[:, :0], "length": lambda: a[:-1], "empty": lambda: a[:0],
            "none": lambda: None, "ragged": lambda: [*a.tolist()[:-1], [1.0]],
        }[kind]()
    return Case(_held(data, backend, a), bad, huge, kind)


def _held(data: st.DataObject, backend: ax.Backend, a: Any) -> Any:
    """``a`` in a container the user might use (where that container can hold it)."""
    if not isinstance(a, np.ndarray):
        return a
    choices = ["numpy"] if a.dtype.kind == "O" else ["numpy", "list"]  # a list of objects may be numbers
    if a.dtype.kind in "biufc":
        choices += ["native"] + (["torch", "torch_requires_grad"] if HAS_TORCH else [])
    if HAS_PANDAS and a.ndim in (1, 2) and a.dtype.kind in "biufcUO" and a.size:
        choices += ["pandas"] + (["pandas_nullable"] if a.dtype.kind in "biuf" else [])
    container = data.draw(st.sampled_from(choices), label="container")
    if container == "native" and backend.name == "array_api_strict" and a.dtype.kind == "c" and a.ndim == 0:
        return a
    if container == "pandas_nullable" and a.dtype.kind in "iu":
        a = a.astype(np.int64)
    return a if container == "numpy" else contain(a, container, backend)


TARGET_KINDS = ["ok", "ok", "ok", "one-hot", "column", "float", "bool", "label", "negative", "fraction", "nan",
                "complex", "strings", "3-D", "width", "length", "empty", "none", "scalar"]


def draw_targets(data: st.DataObject, backend: ax.Backend, n: int, hostile: bool, name: str = "y") -> Case:
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, CLASSES - 1)), label=name)
    kind = data.draw(st.sampled_from(TARGET_KINDS if hostile else TARGET_KINDS[:7]), label=f"{name} kind")
    row = data.draw(st.integers(0, n - 1))
    ok = {"ok": labels, "one-hot": np.eye(CLASSES)[labels], "column": labels[:, None],
          "float": labels.astype(np.float64), "bool": labels > 1}
    if kind in ok:
        return Case(_held(data, backend, ok[kind]), None)
    if kind in ("label", "negative", "fraction", "nan"):
        y = labels.astype(np.float64)
        y[row] = {"label": CLASSES, "negative": -1, "fraction": 0.5, "nan": np.nan}[kind]
        return Case(_held(data, backend, y), name)
    y = {"complex": lambda: labels + 0j, "strings": lambda: labels.astype(str), "3-D": lambda: labels[:, None, None],
         "width": lambda: np.eye(CLASSES + 1)[labels], "length": lambda: np.append(labels, 0),
         "empty": lambda: labels[:0],
         "none": lambda: None, "scalar": lambda: labels[0]}[kind]()
    return Case(_held(data, backend, y), name)


WEIGHT_KINDS = ["none", "none", "ok", "ok", "int", "negative", "nan", "huge", "zeros", "length", "2-D", "complex",
                "strings", "scalar"]


def draw_sample_weight(data: st.DataObject, backend: ax.Backend, n: int, dtype: str, hostile: bool,
                       name: str = "sample_weight") -> Case:
    w = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.1, 3.0)), label=name)
    kind = data.draw(st.sampled_from(WEIGHT_KINDS if hostile else WEIGHT_KINDS[:5]), label=f"{name} kind")
    row = data.draw(st.integers(0, n - 1))
    if kind == "none":
        return Case(None)
    if kind in ("ok", "int"):
        return Case(_held(data, backend, w if kind == "ok" else np.ceil(w).astype(np.int32)))
    if kind in ("negative", "nan", "huge"):
        w[row] = {"negative": -0.5, "nan": np.nan, "huge": 1e39}[kind]
        fine = kind == "huge" and dtype == "float64"
        return Case(_held(data, backend, w), None if fine else name, huge=fine)
    w = {"zeros": lambda: w * 0, "length": lambda: w[1:], "2-D": lambda: w[:, None], "complex": lambda: w + 1j,
         "strings": lambda: w.astype(str), "scalar": lambda: 1.0}[kind]()
    return Case(_held(data, backend, w), name)


CLASS_WEIGHT_KINDS = ["none", "none", "ok", "ok", "key", "value", "list"]
BAD_KEYS = [3, -1, 1.5, "0", True, None, NAN, 10**30]
BAD_VALUES = [-1.0, NAN, INF, "1", None, True, [1.0], 1 + 0j]


def draw_class_weight(data: st.DataObject, hostile: bool) -> Case:
    kind = data.draw(st.sampled_from(CLASS_WEIGHT_KINDS if hostile else CLASS_WEIGHT_KINDS[:4]),
                     label="class_weight kind")
    keys = data.draw(st.lists(st.sampled_from([0, 1, 2, np.int64(1), 2.0]), max_size=3))
    table: dict[Any, Any] = {k: data.draw(st.sampled_from([0.5, 1, 2.0, np.float32(1.5)])) for k in keys}
    if kind == "none":
        return Case(None)
    if kind == "ok":
        return Case(table)
    if kind == "key":  # the bad key first: a later True would otherwise update a key 1 already there
        table = {data.draw(st.sampled_from(BAD_KEYS)): 1.0, **table}
    elif kind == "value":
        table[data.draw(st.sampled_from([0, 1, 2]))] = data.draw(st.sampled_from(BAD_VALUES))
    else:
        return Case(list(table.values()), "class_weight")
    return Case(table, "class_weight")


def draw_scalar(data: st.DataObject, name: str, hostile: bool, valid: Callable[[Any], bool], default: Any,
                exclude: tuple = ()) -> Case:
    """The default, or (``hostile``) any value of SCALARS."""
    if not hostile:
        return Case(default)
    pool = [v for v in SCALARS if not any(type(v) is type(e) and v == e for e in exclude)]
    value = data.draw(st.sampled_from(pool), label=name)
    return Case(value, None if valid(value) else name)


def check_contract(net: ax.Network, call: Callable[[], Any], cases: dict[str, Case],
                   extra_bad: tuple[str, ...] = ()) -> Any:
    """Bad arguments -> ValueError / TypeError naming one of them, nothing changed; good
    ones -> a result (or, for huge-but-representable data, possibly a divergence)."""
    bad = [c.bad for c in cases.values() if c.bad] + list(extra_bad)
    before, copies = state_of(net), {k: frozen(c.value) for k, c in cases.items()}
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        assert bad, f"valid input refused: {exc!r}"
        assert type(exc) in (ValueError, TypeError), type(exc)
        assert any(re.search(_name_pattern(name), str(exc)) for name in bad), f"{exc} does not name any of {bad}"
        assert_same_state(net, before)
        event(f"refused: {type(exc).__name__}")
        result = None
    except ax.TrainingDivergedError:
        assert any(c.huge for c in cases.values()) and not bad
        event("diverged")
        result = None
    else:
        assert not bad, f"accepted bad {bad}"
        event("accepted")
    for key, case in cases.items():  # never written, whatever happened
        assert_unchanged(case.value, copies[key])
    return result


FIT_ARGUMENTS = ["x", "y", "sample_weight", "class_weight", "epochs", "batch_size", "shuffle", "verbose",
                 "validation_split", "validation_data"]


def hostile_arguments(data: st.DataObject, names: list[str]) -> list[str]:
    """None, one or two of ``names``, to receive hostile values (the rest get good ones)."""
    return data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True), label="hostile")


@HOSTILE
@given(data=st.data())
def test_fit_takes_good_input_and_refuses_bad_input(backend: ax.Backend, data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    n = data.draw(st.integers(8, 16), label="n")
    net = network(backend, dtype, trained=data.draw(st.booleans(), label="trained"))
    hostile = hostile_arguments(data, FIT_ARGUMENTS)
    cases = {
        "x": draw_features(data, backend, n, dtype, "x" in hostile),
        "y": draw_targets(data, backend, n, "y" in hostile),
        "sample_weight": draw_sample_weight(data, backend, n, dtype, "sample_weight" in hostile),
        "class_weight": draw_class_weight(data, "class_weight" in hostile),
        "epochs": draw_scalar(data, "epochs", "epochs" in hostile, lambda v: _int(v, 0), 1,
                              exclude=(10**30, 10**400)),
        "batch_size": draw_scalar(data, "batch_size", "batch_size" in hostile, lambda v: _int(v, 1), 4,
                                  exclude=(10**400,)),
        "shuffle": draw_scalar(data, "shuffle", "shuffle" in hostile, _bool, True),
        "verbose": draw_scalar(data, "verbose", "verbose" in hostile,
                               lambda v: _bool(v) or (_int(v) and v in (0, 1, 2)), 0),
        "validation_split": draw_scalar(data, "validation_split", "validation_split" in hostile,
                                        lambda v: _real(v, 0, 1, open_high=True), 0.0),
    }
    extra: tuple[str, ...] = ()
    if "validation_data" in hostile or data.draw(st.integers(0, 3), label="validation_data?") == 0:
        vn, bad = data.draw(st.integers(2, 6)), "validation_data" in hostile
        vx = draw_features(data, backend, vn, dtype, bad, "validation_data x")
        vy, vw = draw_targets(data, backend, vn, bad, "validation_data y"), Case(None)
        if data.draw(st.booleans()):
            vw = draw_sample_weight(data, backend, vn, dtype, bad, "validation_data sample_weight")
        cases["validation_data"] = Case((vx.value, vy.value, *([vw.value] if vw.value is not None else [])),
                                        vx.bad or vy.bad or vw.bad, vx.huge or vw.huge)
        split = cases["validation_split"].value
        if _real(split) and float(split) != 0:
            extra = ("validation_split", "validation_data")
    args = {k: c.value for k, c in cases.items()}
    history = check_contract(net, lambda: net.fit(args.pop("x"), args.pop("y"), **args), cases, extra)
    if history is not None:
        assert net.built and len(history.history.get("loss", [])) <= int(cases["epochs"].value)


@HOSTILE
@given(data=st.data())
def test_evaluate_and_predict_take_good_input_and_refuse_bad_input(backend: ax.Backend, data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    n = data.draw(st.integers(2, 10), label="n")
    net = network(backend, dtype, trained=data.draw(st.booleans(), label="trained"))
    hostile = hostile_arguments(data, ["x", "y", "sample_weight", "batch_size"])
    x = draw_features(data, backend, n, dtype, "x" in hostile)
    batch_size = draw_scalar(data, "batch_size", "batch_size" in hostile, lambda v: v is None or _int(v, 1), None)
    if data.draw(st.booleans(), label="evaluate?"):
        cases = {"x": x, "y": draw_targets(data, backend, n, "y" in hostile), "batch_size": batch_size,
                 "sample_weight": draw_sample_weight(data, backend, n, dtype, "sample_weight" in hostile)}
        args = {k: c.value for k, c in cases.items()}
        logs = check_contract(net, lambda: net.evaluate(args.pop("x"), args.pop("y"), **args), cases)
        assert logs is None or set(logs) == {"loss", "accuracy"}
        return
    if x.kind == "length":  # fewer rows than the others: fine where there are no targets
        x.bad = None
    cases = {"x": x, "batch_size": batch_size}
    classes = data.draw(st.booleans(), label="predict_classes?")
    call = net.predict_classes if classes else net.predict
    out = check_contract(net, lambda: call(x.value, batch_size=batch_size.value), cases)
    if out is not None:
        rows = n - 1 if x.kind == "length" else n
        assert tuple(out.shape) == ((rows,) if classes else (rows, CLASSES))
        host = np.asarray(to_numpy(out))
        assert x.huge or classes or np.isfinite(host).all()
        if not is_array(x.value) or isinstance(x.value, np.ndarray):
            assert isinstance(out, np.ndarray)  # NumPy (lists, pandas) in, NumPy out
        else:
            assert type(out) is type(x.value) or backend.is_native(out)


@HOSTILE
@given(data=st.data())
def test_set_weights_takes_good_weights_and_refuses_bad_ones(backend: ax.Backend, data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    net = network(backend, dtype)
    shapes = [w.shape for w in net.get_weights()]
    arrays = [np.array(data.draw(st.lists(st.floats(-3, 3), min_size=math.prod(s), max_size=math.prod(s)))).reshape(s)
              for s in shapes]
    kind = data.draw(st.sampled_from(["ok", "ok", "int", "nan", "huge", "complex", "strings", "shape", "count",
                                      "none", "single", "ragged"]), label="kind")
    i = data.draw(st.integers(0, len(arrays) - 1), label="which")
    bad: str | None = f"weight {i}"
    if kind in ("ok", "int"):
        bad = None
        arrays = arrays if kind == "ok" else [np.rint(a).astype(np.int32) for a in arrays]
    elif kind in ("nan", "huge"):
        arrays[i].reshape(-1)[data.draw(st.integers(0, arrays[i].size - 1))] = np.nan if kind == "nan" else 1e39
        bad = None if kind == "huge" and dtype == "float64" else bad
    elif kind in ("complex", "strings", "shape", "none", "ragged"):
        arrays[i] = {"complex": lambda a: a + 1j, "strings": lambda a: a.astype(str), "shape": lambda a: a[:1],
                     "none": lambda a: None, "ragged": lambda a: [[1.0, 2.0], [1.0]]}[kind](arrays[i])
    else:
        bad = "weights"
    held: Any = [_held(data, backend, a) for a in arrays]
    held = {"count": lambda: held[:-1], "single": lambda: arrays[0]}.get(kind, lambda: held)()
    check_contract(net, lambda: net.set_weights(held), {"weights": Case(held, bad)})
    if bad is None:
        for got, want in zip(net.get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(got, np.asarray(want).astype(dtype))


REAL, INT, BOOL = float, int, bool
CONSTRUCTORS: list[tuple[str, Callable[[Any], Any], Callable[[Any], bool], Callable[[Any], Any], type]] = [
    ("lr", lambda v: ax.SGD(lr=v), lambda v: _real(v, 0), lambda o: o.lr, REAL),
    ("momentum", lambda v: ax.SGD(momentum=v), lambda v: _real(v, 0), lambda o: o.momentum, REAL),
    ("dampening", lambda v: ax.SGD(momentum=0.5, dampening=v), lambda v: _real(v, 0, 1), lambda o: o.dampening, REAL),
    ("nesterov", lambda v: ax.SGD(momentum=0.5, nesterov=v), _bool, lambda o: o.nesterov, BOOL),
    ("eps", lambda v: ax.Adam(eps=v), lambda v: _real(v, 0), lambda o: o.eps, REAL),
    ("weight_decay", lambda v: ax.AdamW(weight_decay=v), lambda v: _real(v, 0), lambda o: o.weight_decay, REAL),
    ("betas", lambda v: ax.Adam(betas=(0.9, v)), lambda v: _real(v, 0, 1, True), lambda o: o.betas[1], REAL),
    ("alpha", lambda v: ax.RMSprop(alpha=v), lambda v: _real(v, 0, 1, True), lambda o: o.alpha, REAL),
    ("Dense units", lambda v: ax.Dense(v), lambda v: _int(v, 1), lambda o: o.units, INT),
    ("Dense input_size", lambda v: ax.Dense(2, input_size=v), lambda v: v is None or _int(v, 1),
     lambda o: o.declared_input_size, INT),
    ("Dense use_bias", lambda v: ax.Dense(2, use_bias=v), _bool, lambda o: o.use_bias, BOOL),
    ("Dropout rate", lambda v: ax.Dropout(v), lambda v: _real(v, 0, 1, True), lambda o: o.rate, REAL),
    ("Dropout seed", lambda v: ax.Dropout(0.5, seed=v), lambda v: v is None or _int(v), lambda o: o.seed, INT),
    ("LeakyReLU alpha", lambda v: ax.LeakyReLU(v), _real, lambda o: o.alpha, REAL),
    ("ELU alpha", lambda v: ax.ELU(v), lambda v: _real(v, 0), lambda o: o.alpha, REAL),
    ("from_logits", lambda v: ax.CrossEntropy(from_logits=v), _bool, lambda o: o.from_logits, BOOL),
    ("seed", lambda v: ax.Network([ax.Dense(2)], seed=v), lambda v: v is None or _int(v, 0), lambda o: o.seed, INT),
    # without layers: a network with layers that knows its input size builds (allocates) at once
    ("input_size", lambda v: ax.Network(None, input_size=v), lambda v: v is None or _int(v, 1),
     lambda o: o.input_size, INT),
]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(which=st.sampled_from(CONSTRUCTORS), value=st.sampled_from(SCALARS))
def test_constructors_take_numbers_and_refuse_the_rest(which: tuple, value: Any) -> None:
    """Every hyperparameter: Python and NumPy numbers in range are stored as Python
    numbers; anything else is an error whose message starts with the argument's name."""
    name, make, valid, stored, kind = which
    if not valid(value):
        with pytest.raises((ValueError, TypeError)) as info:
            make(value)
        assert type(info.value) in (ValueError, TypeError) and str(info.value).startswith(name), str(info.value)
        return
    got = stored(make(value))
    if value is None:  # the default: None, or for a Network's seed a fresh random one
        assert got is None or (name == "seed" and type(got) is int)
        return
    assert type(got) is kind and (got == value or math.isclose(got, float(value)))
