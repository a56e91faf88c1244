"""anyxp.sklearn: scikit-learn's estimator checks, meta-estimators, pandas, labels,
partial_fit, accuracy beside scikit-learn's own MLP, and array API dispatch (torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import _check_name, parametrize_with_checks

import anyxp as ax
from anyxp.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# small, float64 (deterministic) instances for scikit-learn's checks
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01, backend="numpy", dtype="float64"),
    MLPRegressor(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01, backend="numpy", dtype="float64"),
]


@pytest.fixture(scope="module")
def numpy_session(pytestconfig: pytest.Config) -> None:
    """The estimator checks and the slower tests run in the numpy session only (they
    train on NumPy whatever the session's backend); the backend tests run in every one."""
    from conftest import backend_name

    if backend_name(pytestconfig) != "numpy":
        pytest.skip("scikit-learn integration runs in the numpy session")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator: Any, check: Any, numpy_session: None) -> None:
    if "array_api" in _check_name(check):
        pytest.skip("array API checks need SCIPY_ARRAY_API=1 before scipy is imported: "
                    "test_array_api_estimator_checks runs them in a subprocess")
    check(estimator)


ARRAY_API_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    from unittest import SkipTest
    from sklearn.utils.estimator_checks import estimator_checks_generator, _check_name
    from anyxp.sklearn import MLPClassifier, MLPRegressor
    warnings.simplefilter("ignore")
    results = {}
    for est in (MLPClassifier(hidden_layer_sizes=(10,), max_iter=10, learning_rate_init=0.01),
                MLPRegressor(hidden_layer_sizes=(10,), max_iter=10, learning_rate_init=0.01)):
        for e, check in estimator_checks_generator(est, legacy=True):
            if "array_api" not in _check_name(check):
                continue
            key = type(est).__name__ + " " + repr(check.keywords)
            try:
                check(e)
                results[key] = "passed"
            except SkipTest as exc:
                results[key] = "skipped: " + str(exc)[:80]
            except Exception as exc:
                results[key] = "failed: " + type(exc).__name__ + ": " + str(exc)[:200]
    print(json.dumps(results))
    """
)


DISPATCH_SCRIPT = textwrap.dedent(
    """
    import numpy as np, sklearn, torch
    from anyxp.sklearn import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)); y = np.argmax(x @ rng.normal(size=(5, 3)), axis=1)
    X, Y = torch.asarray(x), torch.asarray(y)
    out = {}
    with sklearn.config_context(array_api_dispatch=True):
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01,
                            random_state=0).fit(X, Y)
        pred, proba = clf.predict(X), clf.predict_proba(X)
        out["backend"] = clf.network_.backend.name
        out["device"] = str(clf.network_.backend.device)
        out["types"] = [type(pred).__module__, type(proba).__module__, type(clf.classes_).__module__]
        out["score"] = clf.score(X, Y)
        reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(X, X[:, 0])
        out["reg"] = [reg.network_.backend.name, type(reg.predict(X)).__module__, list(reg.predict(X).shape)]
    print(json.dumps({"checks": results, "dispatch": out}))
    """
)


@pytest.fixture(scope="module")
def array_api_run(numpy_session: None) -> dict[str, Any]:
    """scikit-learn's array API checks and a torch dispatch run, in one subprocess:
    SCIPY_ARRAY_API=1 must be set before scipy is imported."""
    pytest.importorskip("torch")
    pytest.importorskip("array_api_strict")
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "ANYXP_BACKEND": "auto"}
    env.pop("ANYXP_CUPY_STANDIN", None)
    script = ARRAY_API_SCRIPT.replace("print(json.dumps(results))", "") + DISPATCH_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_array_api_estimator_checks(array_api_run: dict[str, Any]) -> None:
    """scikit-learn's array API checks (numpy, array_api_strict on two devices, torch on
    the CPU, mixed namespaces, same-namespace errors), with ``backend="auto"`` so that
    torch and array-api-strict inputs train on their own library. scikit-learn's CuPy
    check errors on a machine without a GPU before it reaches the estimator."""
    results = array_api_run["checks"]
    passed = [k for k, v in results.items() if v == "passed"]
    assert any("torch" in k for k in passed) and any("array_api_strict" in k for k in passed), results
    failed = {k: v for k, v in results.items() if v.startswith("failed")}
    no_gpu = ax.get_backend("auto").name != "cupy"
    for key, outcome in failed.items():
        assert no_gpu and "cupy" in key and "CUDA" in outcome, (key, outcome)


def test_array_api_dispatch_torch_trains_on_torch(array_api_run: dict[str, Any]) -> None:
    """With array_api_dispatch, torch inputs train on torch (its device) and predict
    returns torch tensors."""
    out = array_api_run["dispatch"]
    assert out["backend"] == "torch" and out["device"] == "cpu"
    assert out["types"] == ["torch", "torch", "torch"]
    assert out["score"] > 0.8
    assert out["reg"] == ["torch", "torch", [120]]


def test_backend_of_the_session(backend: ax.Backend, small_classification: Any) -> None:
    """The estimator trains on any backend (``backend=``): NumPy in, NumPy out."""
    x, y = small_classification
    device = None if backend.name == "numpy" else backend.device
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=80, learning_rate_init=0.01, random_state=0,
                        backend=backend, device=device).fit(x, y)
    assert clf.network_.backend == backend
    assert isinstance(clf.predict(x), np.ndarray) and clf.predict_proba(x).dtype == np.float32
    assert clf.score(x, y) > 0.85
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=30, random_state=0, backend=backend, device=device)
    assert reg.fit(x, x[:, 0]).predict(x).shape == (120,)


def test_fitted_attributes(digits: Any, numpy_session: None) -> None:
    xtr, _, ytr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=5, random_state=0).fit(xtr, ytr)
    assert clf.n_features_in_ == 64 and clf.n_iter_ == 5 and clf.n_outputs_ == 10 and clf.n_layers_ == 4
    assert [c.shape for c in clf.coefs_] == [(64, 32), (32, 16), (16, 10)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (10,)]
    assert all(isinstance(a, np.ndarray) for a in clf.coefs_ + clf.intercepts_)
    assert isinstance(clf.network_, ax.Network)
    assert isinstance(clf.classes_, np.ndarray) and list(clf.classes_) == list(range(10))
    assert len(clf.loss_curve_) == 5 and clf.loss_ == clf.loss_curve_[-1] == pytest.approx(min(clf.loss_curve_))
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None
    assert clf.out_activation_ == "softmax"
    proba = clf.predict_proba(xtr[:7])
    assert proba.shape == (7, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(clf.predict_log_proba(xtr[:7]), np.log(proba))
    es = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, early_stopping=True, n_iter_no_change=3,
                       random_state=0).fit(xtr, ytr)
    assert es.best_loss_ is None and len(es.validation_scores_) == es.n_iter_ < 200
    assert es.best_validation_score_ == max(es.validation_scores_)


def test_loss_matches_sklearn_definitions() -> None:
    """loss_ is scikit-learn's: log-loss + 0.5 alpha ||W||^2 / batch, and squared error / 2."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = (x[:, 0] > 0).astype(int)
    for alpha in (0.0, 0.5):
        clf = MLPClassifier(hidden_layer_sizes=(6,), alpha=alpha, batch_size=50, max_iter=1, shuffle=False,
                            learning_rate_init=1e-12, dtype="float64", backend="numpy", random_state=0).fit(x, y)
        p = clf.predict_proba(x)[:, 1]
        expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        expected += 0.5 * alpha * sum(float(np.sum(w * w)) for w in clf.coefs_) / 50
        assert clf.loss_ == pytest.approx(expected, rel=1e-6)
    reg = MLPRegressor(hidden_layer_sizes=(6,), batch_size=50, max_iter=1, alpha=0.0, learning_rate_init=1e-12,
                       dtype="float64", backend="numpy", random_state=0).fit(x, x[:, :2])
    assert reg.loss_ == pytest.approx(np.mean((reg.predict(x) - x[:, :2]) ** 2) / 2, rel=1e-6)


def test_alpha_penalizes_kernels_not_biases() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4))
    y = x @ rng.normal(size=4)
    norms = []
    for alpha in (0.0, 10.0):
        reg = MLPRegressor(hidden_layer_sizes=(8,), alpha=alpha, max_iter=60, learning_rate_init=0.01,
                           random_state=0, backend="numpy").fit(x, y)
        norms.append(sum(float(np.sum(w * w)) for w in reg.coefs_))
    assert norms[1] < 0.5 * norms[0]


def test_pipeline_grid_search_n_jobs(digits: Any, numpy_session: None) -> None:
    xtr, xte, ytr, yte = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, learning_rate_init=0.01, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(xtr, ytr)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(16,), (32,)]
    assert grid.score(xte, yte) > 0.9


def test_cross_val_score_and_clone(digits: Any, numpy_session: None) -> None:
    xtr, _, ytr, _ = digits
    est = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0)
    scores = cross_val_score(est, xtr, ytr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    est.fit(xtr, ytr)
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "network_")
    again = clone(est).fit(xtr, ytr)  # same random_state: the same network
    assert np.array_equal(again.predict_proba(xtr[:20]), est.predict_proba(xtr[:20]))


def test_pandas_feature_names_and_string_labels() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3))
    labels = np.array(["cat", "dog", "emu"])[np.argmax(x, axis=1)]
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0)
    clf.fit(frame, pd.Series(labels))
    assert list(clf.feature_names_in_) == ["a", "b", "c"]
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    pred = clf.predict(frame)
    assert pred.dtype.kind in "OU" and set(pred) <= {"cat", "dog", "emu"} and clf.score(frame, labels) > 0.85
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(x)
    binary = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=0.01, random_state=0)
    binary.fit(frame, np.where(x[:, 0] > 0, "yes", "no"))
    assert binary.predict_proba(frame).shape == (150, 2) and set(binary.predict(frame)) <= {"yes", "no"}


def test_partial_fit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = np.argmax(x[:, :3], axis=1) + 10
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(x, y)
    for _ in range(30):
        clf.partial_fit(x[:100], y[:100], classes=[10, 11, 12])
        clf.partial_fit(x[100:], y[100:])
    assert clf.n_iter_ == 60 and len(clf.loss_curve_) == 60
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(x, y) > 0.85
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(x, y, classes=[10, 11])
    reg = MLPRegressor(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(3):
        reg.partial_fit(x, x[:, 0])
    assert reg.n_iter_ == 3


def test_multilabel_and_multioutput() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, :3] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=150, learning_rate_init=0.01, random_state=0).fit(x, y)
    assert clf.out_activation_ == "logistic" and clf.predict(x).shape == (200, 3)
    assert clf.predict_proba(x).shape == (200, 3) and clf.score(x, y) > 0.8
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(x, x[:, :2])
    assert reg.predict(x).shape == (200, 2) and reg.out_activation_ == "identity"


def test_bad_parameters_raise() -> None:
    x, y = np.zeros((10, 2)), np.arange(10) % 2
    for params in ({"solver": "lbfgs"}, {"activation": "gelu"}, {"hidden_layer_sizes": (0,)},
                   {"batch_size": 0}, {"max_iter": 0}, {"alpha": -1.0}):
        with pytest.raises(ValueError, match=next(iter(params))):
            MLPClassifier(**params).fit(x, y)


def test_accuracy_on_digits_beside_sklearn(digits: Any, numpy_session: None) -> None:
    """The same settings reach the same accuracy as scikit-learn's MLPClassifier."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    xtr, xte, ytr, yte = digits
    settings = {"hidden_layer_sizes": (32,), "max_iter": 30, "learning_rate_init": 0.01, "random_state": 0}
    ours = MLPClassifier(**settings).fit(xtr, ytr).score(xte, yte)
    theirs = SkMLP(**settings).fit(xtr, ytr).score(xte, yte)
    assert ours >= 0.95 and theirs >= 0.95
    assert abs(ours - theirs) < 0.03


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_a_pickled_estimator_continues_as_the_original(kind: str) -> None:
    """The network travels in the checkpoint format, which names only anyxp's public
    classes; the estimator's network class, alpha and scikit-learn loss come back with it,
    so partial_fit after a pickle or deepcopy continues exactly as the original does."""
    import copy
    import pickle

    x, y = load_digits(return_X_y=True)
    x, y = x[:300] / 16.0, y[:300]
    if kind == "regression":
        est: Any = MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, alpha=0.3, random_state=0)
        y = x[:, :2]
    else:
        est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, alpha=0.1, random_state=0)
        y = y % 2 if kind == "binary" else y
    est.fit(x, y)
    for other in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        assert type(other.network_) is type(est.network_)
        assert type(other.network_.loss) is type(est.network_.loss)
        assert other.network_.alpha == est.network_.alpha
    twin = pickle.loads(pickle.dumps(est))
    est.partial_fit(x, y)
    twin.partial_fit(x, y)
    assert twin.loss_ == est.loss_
    for a, b in zip(twin.coefs_ + twin.intercepts_, est.coefs_ + est.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
