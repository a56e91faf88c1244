"""Epoch metrics: device statistics + host finish equal scikit-learn on every task, make no
host sync, and refuse what they cannot measure."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs, make_backend
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import anyxp as ax
from anyxp.metrics import (
    AUC,
    METRICS,
    Accuracy,
    F1Score,
    Metric,
    R2Score,
    TopKAccuracy,
    get_metric,
    metric_from_config,
)

skm = pytest.importorskip("sklearn.metrics")

CASES = [("binary", 1), ("multiclass", 2), ("multiclass", 4), ("multilabel", 3), ("regression", 1),
         ("regression", 3)]
SEEDS = range(4)

# --------------------------------------------------------------------------- data and references


def make_case(task: str, k: int, seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Host (pred, target) with ties in the scores (within rows and across rows) and every
    class (every column's both kinds) present."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        target = rng.normal(size=(n, k))
        return target + 0.5 * rng.normal(size=(n, k)), target
    if task == "multiclass":
        labels = rng.integers(0, k, n)
        labels[:k] = np.arange(k)
        onehot = np.eye(k)[labels]
        raw = rng.integers(1, 4, (n, k)) + 2 * onehot * (rng.random(n) < 0.5)[:, None]
        return raw / raw.sum(axis=1, keepdims=True), onehot
    target = (rng.random((n, k)) < 0.4).astype(float)
    target[:2] = [[0.0] * k, [1.0] * k]
    pred = np.round(np.clip(0.5 * target + 0.6 * rng.random((n, k)), 0, 1), 1)  # tenths: 0.5 included
    return pred, target


def make_weight(seed: int, n: int = 60) -> np.ndarray:
    return np.random.default_rng(seed + 100).uniform(0.1, 3.0, n)


def _labels(task: str, y: np.ndarray) -> np.ndarray:
    return (y > 0.5).astype(int) if task == "multilabel" else \
        np.argmax(y, axis=1) if task == "multiclass" else (y[:, 0] > 0.5).astype(int)


def _prf(score: Callable[..., float]) -> Callable[..., float]:
    def reference(task: str, pred: np.ndarray, target: np.ndarray, w: np.ndarray | None) -> float:
        average = "binary" if pred.shape[1] <= 2 and task != "multilabel" else "macro"
        return score(_labels(task, target), _labels(task, pred), average=average, sample_weight=w)

    return reference


def _accuracy(task: str, pred: np.ndarray, target: np.ndarray, w: np.ndarray | None) -> float:
    if task == "regression":
        task = "multiclass" if pred.shape[1] > 1 else "binary"
    if task == "multilabel":  # Keras' binary accuracy: per-sample mean of element matches
        return float(np.average(np.mean((target > 0.5) == (pred > 0.5), axis=1), weights=w))
    return skm.accuracy_score(_labels(task, target), _labels(task, pred), sample_weight=w)


def _auc(task: str, pred: np.ndarray, target: np.ndarray, w: np.ndarray | None) -> float:
    y = _labels(task, target)
    if task == "binary":
        return skm.roc_auc_score(y, pred[:, 0], sample_weight=w)
    if task == "multiclass" and pred.shape[1] == 2:
        return skm.roc_auc_score(y, pred[:, 1], sample_weight=w)
    return skm.roc_auc_score(y, pred, multi_class="ovr", average="macro", sample_weight=w)


def _regression(score: Callable[..., float]) -> Callable[..., float]:
    return lambda task, pred, target, w: score(target, pred, sample_weight=w)


REFERENCES: dict[str, Callable[..., float]] = {
    "accuracy": _accuracy,
    "precision": _prf(skm.precision_score),
    "recall": _prf(skm.recall_score),
    "f1": _prf(skm.f1_score),
    "auc": _auc,
    "mae": _regression(skm.mean_absolute_error),
    "mse": _regression(skm.mean_squared_error),
    "r2": _regression(skm.r2_score),
}


def top_k_mirror(pred: np.ndarray, y: np.ndarray, k: int, w: np.ndarray | None) -> float:
    """scikit-learn's own top-k ranking (mergesort, reversed), for K == 2 where its function
    takes 1-D scores only."""
    top = np.argsort(pred, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.average((top == y[:, None]).any(axis=1), weights=w))


def compute(backend: ax.Backend, metric: Metric, task: str, pred: np.ndarray, target: np.ndarray,
            w: np.ndarray | None, dtype: str = "float64") -> float:
    """The metric as the training loop runs it: check, device statistics, host finish."""
    metric.check(outputs=pred.shape[1], task=task)
    float_dtype = backend.float_dtype(dtype)
    arrays = [None if a is None else backend.asarray(a, dtype=float_dtype) for a in (pred, target, w)]
    stats = metric.statistics(backend.xp, *arrays, task)
    assert_native(backend, stats, dtype)
    assert stats.ndim == 1
    return metric.finish(backend.to_numpy(stats).astype(np.float64), task)


def _valid(name: str, task: str) -> bool:
    return not (METRICS[name].classification and task == "regression")


# --------------------------------------------------------------------------- equal to scikit-learn


SKLEARN_CASES = [(name, task, k) for name in REFERENCES for task, k in CASES if _valid(name, task)]


@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("name", "task", "k"), SKLEARN_CASES, ids=[f"{n}-{t}-{k}" for n, t, k in SKLEARN_CASES])
def test_metric_equals_sklearn(backend: ax.Backend, name: str, task: str, k: int, weighted: bool) -> None:
    metric = get_metric(name)
    for seed in SEEDS:
        pred, target = make_case(task, k, seed)
        w = make_weight(seed) if weighted else None
        expected = REFERENCES[name](task, pred, target, w)
        assert compute(backend, metric, task, pred, target, w) == pytest.approx(expected, abs=1e-6), seed


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_top_k_accuracy_equals_sklearn(backend: ax.Backend, k: int, weighted: bool) -> None:
    metric = TopKAccuracy(k=k)
    for seed in SEEDS:
        pred, target = make_case("multiclass", 4, seed)  # integer-based scores: many ties in rows
        w = make_weight(seed) if weighted else None
        y = np.argmax(target, axis=1)
        expected = skm.top_k_accuracy_score(y, pred, k=k, labels=range(4), sample_weight=w)
        assert compute(backend, metric, "multiclass", pred, target, w) == pytest.approx(expected, abs=1e-6)
        pred2, target2 = make_case("multiclass", 2, seed)
        got = compute(backend, metric, "multiclass", pred2, target2, w)
        assert got == pytest.approx(top_k_mirror(pred2, np.argmax(target2, axis=1), k, w), abs=1e-6)


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_auc_and_top_k_with_arbitrary_ties(backend: ax.Backend, data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 25))
    levels = st.integers(0, 4)  # few distinct scores: ties everywhere
    scores = np.array(data.draw(st.lists(st.lists(levels, min_size=3, max_size=3), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    w = np.array(data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.5]), min_size=n, max_size=n)))
    pred, target = (scores + 1) / (scores + 1).sum(axis=1, keepdims=True), np.eye(3)[labels]
    k = data.draw(st.integers(1, 3))
    expected = skm.top_k_accuracy_score(labels, pred, k=k, labels=range(3), sample_weight=w)
    assert compute(backend, TopKAccuracy(k=k), "multiclass", pred, target, w) == pytest.approx(expected, abs=1e-9)
    binary = (labels == 0).astype(float)[:, None]
    assume(0 < binary.sum() < n)
    expected = skm.roc_auc_score(binary[:, 0], scores[:, 0], sample_weight=w)
    got = compute(backend, AUC(), "binary", scores[:, :1] / 4.0, binary, w)
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_zero_division_and_absent_classes_as_sklearn(backend: ax.Backend, name: str) -> None:
    """0.0 where a denominator is 0; the macro average runs over classes in y_true or
    y_pred, even those whose samples all weigh 0."""
    metric, reference = get_metric(name), REFERENCES[name]
    rng = np.random.default_rng(0)
    labels, guesses = rng.integers(0, 3, 30), rng.integers(0, 3, 30)  # class 4 of 5 never appears
    labels[0] = guesses[0] = 3  # class 3 appears once, with zero weight below
    pred, target = np.eye(5)[guesses] * 0.7 + 0.06, np.eye(5)[labels]
    w = rng.uniform(0.5, 2.0, 30)
    w[0] = 0.0
    cases = [
        ("multiclass", pred, target, None),
        ("multiclass", pred, target, w),
        ("binary", np.full((5, 1), 0.2), np.array([[0.0], [1.0], [0.0], [1.0], [0.0]]), None),  # no positive guess
        ("binary", np.full((4, 1), 0.2), np.zeros((4, 1)), None),  # nothing positive at all
        ("multilabel", np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([[1.0, 0.0], [0.0, 0.0]]), None),
    ]
    for task, p, t, weight in cases:
        expected = reference(task, p, t, weight)
        assert compute(backend, metric, task, p, t, weight) == pytest.approx(expected, abs=1e-12), task


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_r2_edge_cases_as_sklearn(backend: ax.Backend) -> None:
    """force_finite: a constant output scores 1.0 if predicted exactly, else 0.0; NaN for one sample."""
    target = np.array([[1.0, 2.0, 3.0], [1.0, 2.5, 3.0], [1.0, 4.0, 3.0]])
    pred = np.array([[1.0, 2.0, 3.5], [1.0, 3.0, 3.0], [1.0, 3.5, 3.0]])
    w = np.array([1.0, 2.0, 0.5])
    for weight in (None, w):
        got = compute(backend, R2Score(), "regression", pred, target, weight)
        assert got == pytest.approx(skm.r2_score(target, pred, sample_weight=weight), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(skm.r2_score(target[:1], pred[:1]))
    assert np.isnan(compute(backend, R2Score(), "regression", pred[:1], target[:1], None))


@pytest.mark.on_device
def test_auc_skips_undefined_classes(backend: ax.Backend) -> None:
    """A multilabel column with one kind of sample is left out of the mean (sklearn raises);
    NaN when no column is defined."""
    pred = np.array([[0.9, 0.2], [0.3, 0.6], [0.6, 0.1], [0.2, 0.7]])
    target = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    assert compute(backend, AUC(), "multilabel", pred, target, None) == pytest.approx(
        skm.roc_auc_score(target[:, 0], pred[:, 0]))
    assert np.isnan(compute(backend, AUC(), "binary", pred[:, :1], np.ones((4, 1)), None))


@pytest.mark.on_device
@pytest.mark.parametrize(("task", "k"), CASES[:4], ids=[f"{t}-{k}" for t, k in CASES[:4]])
def test_float32_statistics_stay_float32_and_close(backend: ax.Backend, task: str, k: int) -> None:
    pred, target = make_case(task, k, 0)
    w = make_weight(0)
    for name in METRICS:
        metric = get_metric(name)
        if task != "multiclass" and name == "top_k_accuracy":
            continue
        single = compute(backend, metric, task, pred, target, w, dtype="float32")
        double = compute(backend, metric, task, pred.astype(np.float32), target, w.astype(np.float32))
        assert single == pytest.approx(double, abs=1e-5), name


@pytest.mark.on_device
def test_additive_statistics_add_over_shards(backend: ax.Backend) -> None:
    """Metrics marked ``additive`` may be summed over batches or ranks before `finish`."""
    pred, target = make_case("multiclass", 4, 1)
    w = make_weight(1)
    xp, f64 = backend.xp, backend.float_dtype("float64")
    for name in METRICS:
        metric = get_metric(name)
        parts = [[backend.asarray(a[s], dtype=f64) for a in (pred, target, w)] for s in (slice(0, 25), slice(25, None))]
        halves = sum(backend.to_numpy(metric.statistics(xp, *part, "multiclass")) for part in parts)
        whole = backend.to_numpy(metric.statistics(xp, *[backend.asarray(a, dtype=f64) for a in (pred, target, w)],
                                                   "multiclass"))
        assert metric.additive == bool(np.allclose(halves, whole, rtol=1e-12, atol=1e-12)), name


# --------------------------------------------------------------------------- no host sync


class _NoClipSign:
    """A namespace without array-api-compat's syncing clip and sign."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        if name in ("clip", "sign"):
            raise AssertionError(f"metrics must not call xp.{name} (a host sync on CuPy)")
        return getattr(self._xp, name)


def test_statistics_make_no_host_sync() -> None:
    """On array_api_strict's device1, with data-dependent shapes forbidden, every metric's
    statistics for every task run without one device->host conversion."""
    pytest.importorskip("array_api_strict")
    import array_api_strict

    strict = make_backend("array_api_strict")
    xp = _NoClipSign(strict.xp)
    metrics = [get_metric(name) for name in METRICS] + [TopKAccuracy(k=2)]
    runs = []
    for task, k in CASES:
        pred, target = make_case(task, k, 0)
        for weight in (None, make_weight(0)):
            arrays = [None if a is None else strict.asarray(a, dtype=strict.xp.float64) for a in (pred, target, weight)]
            runs += [(m, task, arrays) for m in metrics if _valid(m.name, task)
                     and (task == "multiclass" or m.name != "top_k_accuracy")]
    flags = array_api_strict.get_array_api_strict_flags()
    array_api_strict.set_array_api_strict_flags(data_dependent_shapes=False)
    try:
        with count_host_syncs() as syncs:
            results = [metric.statistics(xp, *arrays, task) for metric, task, arrays in runs]
    finally:
        array_api_strict.set_array_api_strict_flags(**flags)
    assert syncs == []
    assert len(runs) > 50
    for stats in results:
        assert_native(strict, stats, "float64")


# --------------------------------------------------------------------------- refusals, registry, config


def test_classification_metrics_refuse_regression() -> None:
    for name in ("precision", "recall", "f1", "auc", "top_k_accuracy"):
        with pytest.raises(ValueError, match=rf"'{name}' needs a classification loss \(cross_entropy"):
            get_metric(name).check(outputs=1, task="regression")
    for name in ("accuracy", "mae", "mse", "r2"):  # accuracy is never refused
        get_metric(name).check(outputs=3, task="regression")


@pytest.mark.on_device
def test_statistics_refuse_what_check_refuses(backend: ax.Backend) -> None:
    pred = backend.asarray(np.full((3, 1), 0.5), dtype=backend.float_dtype("float64"))
    with pytest.raises(ValueError, match="'auc' needs a classification loss"):
        AUC().statistics(backend.xp, pred, pred, None, "regression")
    with pytest.raises(ValueError, match="needs task 'multiclass'"):
        TopKAccuracy().statistics(backend.xp, pred, pred, None, "binary")


@pytest.mark.parametrize(("outputs", "task"), [(1, "binary"), (3, "multilabel")])
def test_top_k_needs_multiclass(outputs: int, task: str) -> None:
    with pytest.raises(ValueError, match=f"'top_k_accuracy' needs task 'multiclass'.*got '{task}'"):
        TopKAccuracy(k=1).check(outputs=outputs, task=task)
    TopKAccuracy(k=9).check(outputs=3, task="multiclass")  # k >= K is allowed: every sample is a hit


@pytest.mark.parametrize(("outputs", "task", "match"), [
    (1, "clustering", "task must be one of"),
    (2, "binary", "'binary' needs 1 output"),
    (1, "multiclass", "needs at least 2 outputs"),
    (0, "regression", "outputs must be"),
])
def test_check_refuses_inconsistent_tasks(outputs: int, task: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Accuracy().check(outputs=outputs, task=task)


def test_get_metric() -> None:
    assert set(METRICS) == {"accuracy", "precision", "recall", "f1", "auc", "top_k_accuracy", "mae", "mse", "r2"}
    assert get_metric("top_k_accuracy") == TopKAccuracy(k=5)
    f1 = F1Score()
    assert get_metric(f1) is f1
    with pytest.raises(ValueError, match=r"unknown metric 'roc'; valid metrics are: accuracy, .*top_k_accuracy"):
        get_metric("roc")
    with pytest.raises(TypeError, match="a name or a Metric"):
        get_metric(3)  # type: ignore[arg-type]
    for name, lower in [("mae", True), ("mse", True), ("r2", False), ("auc", False), ("accuracy", False)]:
        assert get_metric(name).higher_is_better is not lower, name


def test_top_k_validates_k() -> None:
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        TopKAccuracy(k=0)
    with pytest.raises(ValueError, match="k must be an integer"):
        TopKAccuracy(k=2.0)  # type: ignore[arg-type]
    for bad in (True, "3"):
        with pytest.raises(TypeError, match="k must be an integer"):
            TopKAccuracy(k=bad)  # type: ignore[arg-type]


def test_config_round_trip_and_repr() -> None:
    for metric in [get_metric(name) for name in METRICS] + [TopKAccuracy(k=3)]:
        again = metric_from_config(metric.name, metric.get_config())
        assert again == metric and type(again) is type(metric)
        assert hash(again) == hash(metric)
    assert repr(TopKAccuracy(k=3)) == "TopKAccuracy(k=3)"
    assert repr(F1Score()) == "F1Score()"
    assert TopKAccuracy(k=3) != TopKAccuracy(k=4)


@pytest.mark.parametrize(("name", "config", "error", "match"), [
    ("__import__('os')", {}, ValueError, "unknown metric"),
    (["accuracy"], {}, ValueError, "unknown metric"),
    ("f1", [], ValueError, "must be a mapping"),
    ("f1", {1: 2}, ValueError, "must be a mapping"),
    ("f1", {"k": 3}, ValueError, "takes no argument 'k'"),
    ("top_k_accuracy", {"k": 3, "average": "macro"}, ValueError, r"no argument 'average' \(it takes: k\)"),
    ("top_k_accuracy", {"k": -1}, ValueError, "k must be an integer >= 1"),
    ("top_k_accuracy", {"k": "os.system('x')"}, TypeError, "k must be an integer"),
])
def test_metric_from_config_refuses_hostile_input(name: Any, config: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        metric_from_config(name, config)


def test_host_functions_keep_their_behaviour() -> None:
    assert ax.accuracy([0, 1, 2, 2], np.eye(3)[[0, 2, 2, 2]]) == 0.75
    assert ax.confusion_matrix([0, 1, 1], [0, 0, 1]).tolist() == [[1, 0], [1, 1]]


@pytest.mark.on_device
@pytest.mark.parametrize("class_major", [False, True], ids=["rows", "class-major"])
def test_argmax_helpers_equal_numpy_argmax_with_ties(backend: ax.Backend, class_major: bool) -> None:
    """The metrics' argmax (max, then the first column holding it) is NumPy's argmax, ties
    within rows included, in either memory order; a NaN row has none."""
    from anyxp.metrics import _argmax, _one_hot_argmax
    from anyxp.training import _class_major

    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(200, 5)).astype(np.float64)  # ties in most rows
    x[7] = np.nan
    dev = backend.asarray(x, dtype=backend.float_dtype("float64"))
    if class_major:
        dev = _class_major(backend.xp, dev)
    expected = np.argmax(x, axis=1)
    expected[7] = 5
    np.testing.assert_array_equal(backend.to_numpy(_argmax(backend.xp, dev)), expected)
    one_hot = backend.to_numpy(_one_hot_argmax(backend.xp, dev))
    np.testing.assert_array_equal(one_hot, expected[:, None] == np.arange(5)[None, :])


@pytest.mark.on_device
@pytest.mark.parametrize(("task", "k"), CASES, ids=[f"{t}-{k}" for t, k in CASES])
def test_statistics_do_not_depend_on_memory_order(backend: ax.Backend, task: str, k: int) -> None:
    """The training loop hands the metrics class-major arrays (column after column): every
    metric's statistics equal those of row-major arrays, weighted or not."""
    from anyxp.training import _class_major

    pred, target = make_case(task, k, 2)
    xp, dt = backend.xp, backend.float_dtype("float64")
    rows = [backend.asarray(a, dtype=dt) for a in (pred, target)]
    columns = [_class_major(xp, a) for a in rows]
    for w in (None, backend.asarray(make_weight(2), dtype=dt)):
        for name in METRICS:
            metric = get_metric(name)
            if not _valid(name, task) or (name == "top_k_accuracy" and task != "multiclass"):
                continue
            a = backend.to_numpy(metric.statistics(xp, *rows, w, task))
            b = backend.to_numpy(metric.statistics(xp, *columns, w, task))
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_numpy_auc_kernel_equals_the_array_api_statistics(dtype: type, weighted: bool) -> None:
    """NumPy's AUC kernel (running minimum and maximum over each class's sorted row) and the
    Array API version (stable argsort of run starts) give the same statistics, with many
    ties, a class without negatives and one without positives."""
    import array_api_compat.numpy as plain

    from anyxp.backend import numpy_namespace
    from anyxp.metrics import _mann_whitney

    rng = np.random.default_rng(4)
    scores = (rng.integers(-25, 25, size=(3000, 5)) / 25).astype(dtype)  # many ties, both signs
    positive = rng.random((3000, 5)) < 0.3
    positive[:, 3], positive[:, 4] = True, False
    w = rng.uniform(0.1, 2.0, 3000).astype(dtype) if weighted else None
    fast = [np.asarray(a) for a in _mann_whitney(numpy_namespace(), scores, positive, w)]
    reference = [np.asarray(a) for a in _mann_whitney(plain, scores, positive, w)]
    for got, want in zip(fast, reference, strict=True):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert fast[1][3] == 0 and fast[1][4] == 0  # W_pos * W_neg: those classes are left out
