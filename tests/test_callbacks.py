"""Callbacks and the epoch metrics they monitor, on the backend under test.

- `ReduceLROnPlateau` and `LearningRateScheduler` against Keras 3's own callbacks (where
  Keras imports, on its torch backend): both are fed the same monitored values, hook by
  hook, and must set the same learning rates (to float32 rounding: Keras keeps the rate
  in a float32 variable);
- the epoch metrics against scikit-learn, in float64: with one batch per epoch, no
  shuffling and no dropout, an epoch's training metrics are those of the outputs before
  its single update, i.e. of ``net.predict(x)`` taken just before a one-epoch fit; the
  val_ metrics and ``evaluate`` are those of ``net.predict(x_val)`` after it;
- "auto" modes (auc, f1, r2 go up), monitors the fit does not compute, `ModelCheckpoint`'s
  file names, best-only saving, batch frequency and main-process-only writing, `CSVLogger`'s
  columns, and the metric errors raised at construction.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp.metrics import METRICS

TOL = {"rel": 1e-6, "abs": 1e-6}


# --------------------------------------------------------------------------- helpers


class Recorder(ax.Callback):
    """Records the epochs begun and, at each epoch's end, ``predict(x)`` (when given x)."""

    def __init__(self, x: np.ndarray | None = None) -> None:
        self.x = x
        self.begun: list[int] = []
        self.predictions: list[np.ndarray] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.begun.append(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.x is not None:
            self.predictions.append(np.asarray(self.network.predict(self.x)))


class BatchLosses(ax.Callback):
    """The loss of every batch, in order (over epochs)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.losses.append(logs["loss"])


def tiny_net(backend: ax.Backend, lr: Any = 0.1, **kwargs: Any) -> ax.Network:
    kwargs.setdefault("loss", "mse")
    return ax.Network([ax.Dense(1)], input_size=2, optimizer=ax.SGD(lr=lr), backend=backend, seed=0, **kwargs)


def classification_data(n: int = 60, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.argmax(x @ rng.normal(size=(4, classes)) + rng.normal(size=(n, classes)), axis=1)
    return x, y


def classifier(backend: ax.Backend, classes: int = 3, lr: float = 0.05, **kwargs: Any) -> ax.Network:
    kwargs.setdefault("metrics", ["accuracy", "f1", "auc"])
    return ax.Network([ax.Dense(8, "tanh"), ax.Dense(classes, "softmax")], input_size=4, loss="cross_entropy",
                      optimizer=ax.Adam(lr=lr), backend=backend, dtype="float64", seed=1, **kwargs)


def improvements(values: list[float], mode: str) -> list[int]:
    """Epochs whose value beats every earlier one (strictly, as min_delta=0)."""
    best, epochs = math.inf if mode == "min" else -math.inf, []
    for epoch, value in enumerate(values):
        if (value < best) if mode == "min" else (value > best):
            best = value
            epochs.append(epoch)
    return epochs


# --------------------------------------------------------------------------- Keras as oracle


@pytest.fixture(scope="module")
def keras() -> Any:
    """Keras 3 on its torch backend (the backend is fixed when Keras is first imported)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    return keras


def keras_rates(keras: Any, cb: Any, values: list[float], monitor: str) -> list[float]:
    """The learning rate after each epoch's hooks, Keras's callback on a tiny Keras model."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    cb.set_model(model)
    cb.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {monitor: value})
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    return rates


def anyxp_rates(backend: ax.Backend, cb: ax.Callback, values: list[float], monitor: str) -> list[float]:
    """The same for anyxp's callback, its hooks called directly on a tiny network."""
    net = tiny_net(backend)
    cb.set_context(net, {"metrics": ["loss", monitor]})
    cb.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {monitor: value})
        rates.append(net.optimizer.lr)
    return rates


# a loss that improves, plateaus, improves by less than min_delta, gets worse, ...
LOSSES = [1.0, 0.8, 0.8, 0.79995, 0.85, 0.7, 0.7, 0.7, 0.7, 0.6999, 0.69, 0.69, 0.69, 0.68, 0.69,
          0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
# a score that goes up with plateaus (accuracy, auc)
SCORES = [0.5, 0.6, 0.6, 0.60005, 0.55, 0.7, 0.7, 0.7, 0.71, 0.71, 0.71, 0.71, 0.8, 0.8, 0.79,
          0.8, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
# a noisy decrease, rounded so that equal values occur
WALK = [round(v, 2) for v in 1.0 - 0.01 * np.arange(40) + 0.05 * np.random.default_rng(3).normal(size=40)]

PLATEAU_CASES = [
    ("val_loss", LOSSES, {"factor": 0.5, "patience": 2}),
    ("val_loss", LOSSES, {"factor": 0.5, "patience": 2, "cooldown": 2}),
    ("val_loss", LOSSES, {"factor": 0.1, "patience": 1, "min_lr": 0.005}),  # the floor is reached
    ("val_loss", LOSSES, {"factor": 0.5, "patience": 3, "min_delta": 0.02, "cooldown": 1, "min_lr": 0.01}),
    ("val_loss", LOSSES, {"factor": 0.2, "patience": 0}),
    ("val_loss", LOSSES, {"factor": 0.5, "patience": 1, "min_delta": 0.0}),
    ("val_loss", LOSSES, {"factor": 0.5, "patience": 1, "min_delta": 1e-3, "mode": "max"}),  # told, not auto
    ("loss", WALK, {"factor": 0.7, "patience": 2, "cooldown": 1}),
    ("loss", WALK, {"factor": 0.3, "patience": 3, "min_delta": 0.03, "cooldown": 3, "min_lr": 1e-3}),
    ("val_accuracy", SCORES, {"factor": 0.5, "patience": 2}),
    ("val_accuracy", SCORES, {"factor": 0.5, "patience": 1, "cooldown": 1, "min_delta": 0.005}),
    ("val_auc", SCORES, {"factor": 0.25, "patience": 2, "min_lr": 0.01}),
    ("val_auc", SCORES, {"factor": 0.5, "patience": 2, "mode": "min"}),  # told, not auto
    ("val_f1", SCORES, {"factor": 0.5, "patience": 3, "cooldown": 2, "min_delta": 0.05}),
]


KERAS_NOISE = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own torch-to-NumPy


@KERAS_NOISE
@pytest.mark.parametrize(("monitor", "values", "kwargs"), PLATEAU_CASES)
def test_reduce_lr_on_plateau_matches_keras(
    keras: Any, backend: ax.Backend, monitor: str, values: list[float], kwargs: dict[str, Any]
) -> None:
    ours = ax.ReduceLROnPlateau(monitor=monitor, **kwargs)
    expected_mode = kwargs.get("mode", "min" if monitor.endswith("loss") else "max")
    assert ours.mode == expected_mode
    # Keras's "auto" looks the direction up in the compiled model's metrics: tell it
    theirs = keras.callbacks.ReduceLROnPlateau(monitor=monitor, **{**kwargs, "mode": expected_mode})
    got = anyxp_rates(backend, ours, values, monitor)
    want = keras_rates(keras, theirs, values, monitor)
    assert got == pytest.approx(want, rel=1e-6)
    assert len(set(want)) > 1  # the case reduces the rate at least once


def test_reduce_lr_on_plateau_respects_min_lr_exactly(backend: ax.Backend) -> None:
    cb = ax.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.03)
    rates = anyxp_rates(backend, cb, [1.0] * 8, "loss")
    assert rates == pytest.approx([0.1, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03], rel=1e-12)
    assert min(rates) == 0.03


SCHEDULES: dict[str, Callable[..., float]] = {
    "epoch_and_lr": lambda epoch, lr: lr * 0.5 if epoch else lr,
    "epoch_only": lambda epoch: 0.1 / (1 + epoch),
}
EXPECTED_RATES = {"epoch_and_lr": [0.1, 0.05, 0.025, 0.0125], "epoch_only": [0.1, 0.05, 0.1 / 3, 0.025]}


@KERAS_NOISE
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_learning_rate_scheduler_matches_keras(keras: Any, backend: ax.Backend, name: str) -> None:
    net = tiny_net(backend)
    ours = ax.LearningRateScheduler(SCHEDULES[name])
    ours.set_context(net, {"metrics": ["loss"]})
    ours.on_train_begin()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    theirs = keras.callbacks.LearningRateScheduler(SCHEDULES[name])
    theirs.set_model(model)
    got, want = [], []
    for epoch in range(4):
        ours.on_epoch_begin(epoch)
        theirs.on_epoch_begin(epoch)
        got.append(net.optimizer.lr)
        want.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    assert got == pytest.approx(want, rel=1e-6)
    assert got == pytest.approx(EXPECTED_RATES[name], rel=1e-12)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_learning_rate_scheduler_in_a_fit(backend: ax.Backend, name: str) -> None:
    """History logs each epoch's rate, and the updates use it: the same weights as a net
    fitted one epoch at a time with the rate set by hand (and not those of a fixed rate)."""
    x, y = classification_data()

    def net() -> ax.Network:
        return ax.Network([ax.Dense(6, "tanh"), ax.Dense(3, "softmax")], input_size=4, optimizer=ax.SGD(lr=0.1),
                          backend=backend, dtype="float64", seed=2)

    scheduled = net()
    history = scheduled.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0,
                            callbacks=[ax.LearningRateScheduler(SCHEDULES[name])])
    assert history.history["learning_rate"] == pytest.approx(EXPECTED_RATES[name], rel=1e-12)
    by_hand, fixed = net(), net()
    for rate in EXPECTED_RATES[name]:
        by_hand.optimizer.lr = rate
        by_hand.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    fixed.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    for ours, hand, constant in zip(scheduled.get_weights(), by_hand.get_weights(), fixed.get_weights(), strict=True):
        np.testing.assert_allclose(ours, hand, rtol=1e-12, atol=1e-14)
        assert not np.allclose(ours, constant, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- schedule-driven optimizers


@pytest.mark.parametrize("make", [
    lambda: ax.ReduceLROnPlateau(monitor="loss"),
    lambda: ax.LearningRateScheduler(lambda epoch, lr: lr),
], ids=["ReduceLROnPlateau", "LearningRateScheduler"])
def test_rate_callbacks_refuse_a_scheduled_optimizer(backend: ax.Backend, make: Callable[[], ax.Callback]) -> None:
    x, y = classification_data()
    schedule = ax.schedules.ExponentialDecay(0.1, 10, 0.5)
    net = ax.Network([ax.Dense(3, "softmax")], input_size=4, optimizer=ax.SGD(lr=schedule), backend=backend, seed=0)
    weights = net.get_weights()
    callback, recorder = make(), Recorder()
    with pytest.raises(ValueError, match=rf"{type(callback).__name__} sets the learning rate, but a schedule drives"):
        net.fit(x, y, epochs=2, verbose=0, callbacks=[callback, recorder])
    assert recorder.begun == []
    assert net.optimizer.steps == 0 and net.optimizer.learning_rate is schedule
    for before, after in zip(weights, net.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


# --------------------------------------------------------------------------- epoch metrics vs scikit-learn

CLASSIFICATION = ["accuracy", "precision", "recall", "f1", "auc"]
KINDS = {  # outputs, their activation, loss, metrics
    "sigmoid": (1, "sigmoid", "binary_cross_entropy", CLASSIFICATION),
    "softmax2": (2, "softmax", "cross_entropy", CLASSIFICATION),
    "softmax4": (4, "softmax", "cross_entropy", [*CLASSIFICATION, ax.TopKAccuracy(2)]),
    "regression": (2, None, "mse", ["mae", "mse", "r2"]),
}


def metric_data(kind: str, n: int = 64, n_val: int = 40) -> tuple[np.ndarray, ...]:
    """Train and validation features and targets with some label noise, and weights for both."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n + n_val, 4))
    if kind == "regression":
        y = x @ rng.normal(size=(4, 2)) + 0.5 * rng.normal(size=(n + n_val, 2))
    else:
        k = 4 if kind == "softmax4" else 2
        y = np.argmax(x @ rng.normal(size=(4, k)) + rng.normal(size=(n + n_val, k)), axis=1)
    w = rng.uniform(0.2, 3.0, size=n + n_val)
    return x[:n], y[:n], w[:n], x[n:], y[n:], w[n:]


def metric_net(backend: ax.Backend, kind: str, optimizer: Any = None) -> ax.Network:
    outputs, activation, loss, metrics = KINDS[kind]
    return ax.Network([ax.Dense(6, "tanh"), ax.Dense(outputs, activation)], input_size=4, loss=loss, metrics=metrics,
                      optimizer=optimizer or ax.Adam(lr=0.05), backend=backend, dtype="float64", seed=3)


def sklearn_metrics(kind: str, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> dict[str, float]:
    """scikit-learn's values of the kind's metrics for targets y and predictions p."""
    skm = pytest.importorskip("sklearn.metrics")
    if kind == "regression":
        return {"mae": skm.mean_absolute_error(y, p, sample_weight=w),
                "mse": skm.mean_squared_error(y, p, sample_weight=w),
                "r2": skm.r2_score(y, p, sample_weight=w)}
    if kind == "sigmoid":
        labels, scores, average, auc_kw = (p[:, 0] > 0.5).astype(int), p[:, 0], "binary", {}
    elif kind == "softmax2":
        labels, scores, average, auc_kw = np.argmax(p, axis=1), p[:, 1], "binary", {}
    else:
        labels, scores, average, auc_kw = np.argmax(p, axis=1), p, "macro", {"multi_class": "ovr", "average": "macro"}
    assert len(set(labels)) > 1, "the net predicts one class only: precision would be 0/0"
    values = {
        "accuracy": skm.accuracy_score(y, labels, sample_weight=w),
        "precision": skm.precision_score(y, labels, average=average, sample_weight=w),
        "recall": skm.recall_score(y, labels, average=average, sample_weight=w),
        "f1": skm.f1_score(y, labels, average=average, sample_weight=w),
        "auc": skm.roc_auc_score(y, scores, sample_weight=w, **auc_kw),
    }
    if kind == "softmax4":
        values["top_k_accuracy"] = skm.top_k_accuracy_score(y, p, k=2, labels=range(4), sample_weight=w)
    return values


def assert_metrics(logs: dict[str, float], expected: dict[str, float], prefix: str = "") -> None:
    for name, value in expected.items():
        assert logs[prefix + name] == pytest.approx(value, **TOL), (prefix + name, logs[prefix + name], value)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_epoch_metrics_equal_sklearn(backend: ax.Backend, kind: str, weighted: bool) -> None:
    x, y, w, xv, yv, wv = metric_data(kind)
    if not weighted:
        w = wv = None
    net = metric_net(backend, kind)
    before, val_before = np.asarray(net.predict(x)), np.asarray(net.predict(xv))
    val = (xv, yv) if wv is None else (xv, yv, wv)
    history = net.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, sample_weight=w, validation_data=val,
                      verbose=0)
    logs = {key: values[0] for key, values in history.history.items()}
    train = sklearn_metrics(kind, y, before, w)
    assert set(logs) == {"loss", *train, "val_loss", *(f"val_{name}" for name in train), "learning_rate"}
    assert_metrics(logs, train)
    after = np.asarray(net.predict(xv))
    assert not np.allclose(after, val_before, rtol=1e-3)  # the update moved the val predictions
    expected = sklearn_metrics(kind, yv, after, wv)
    assert_metrics(logs, expected, "val_")
    evaluated = net.evaluate(xv, yv, sample_weight=wv)
    assert set(evaluated) == {"loss", *expected}
    assert_metrics(evaluated, expected)
    assert evaluated["loss"] == pytest.approx(logs["val_loss"], rel=1e-12)


@pytest.mark.parametrize("kind", ["sigmoid", "softmax4"])
def test_epoch_metrics_weighted_by_class_weight(backend: ax.Backend, kind: str) -> None:
    x, y, w, *_ = metric_data(kind)
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5, 3: 2.0} if kind == "softmax4" else {0: 1.0, 1: 4.0}
    net = metric_net(backend, kind)
    before = np.asarray(net.predict(x))
    history = net.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, sample_weight=w, class_weight=class_weight,
                      verbose=0)
    per_sample = w * np.array([class_weight[label] for label in y])
    logs = {key: values[0] for key, values in history.history.items()}
    assert_metrics(logs, sklearn_metrics(kind, y, before, per_sample))
    unweighted = sklearn_metrics(kind, y, before, w)
    assert any(abs(logs[name] - value) > 1e-3 for name, value in unweighted.items())  # the class weights count


@pytest.mark.parametrize("kind", list(KINDS))
def test_epoch_metrics_follow_shuffled_batches(backend: ax.Backend, kind: str) -> None:
    """With a learning rate of 0 the weights stay put, so an epoch of shuffled batches of 7
    (the last one short) still measures net.predict(x): outputs, targets and weights must be
    kept in step through the shuffle."""
    x, y, w, *_ = metric_data(kind)
    net = metric_net(backend, kind, optimizer=ax.SGD(lr=0.0))
    before = np.asarray(net.predict(x))
    history = net.fit(x, y, epochs=2, batch_size=7, shuffle=True, sample_weight=w, verbose=0)
    expected = sklearn_metrics(kind, y, before, w)
    for epoch in range(2):
        assert_metrics({key: values[epoch] for key, values in history.history.items()}, expected)


@pytest.mark.parametrize("kind", list(KINDS))
def test_epoch_metrics_in_range_while_training(backend: ax.Backend, kind: str) -> None:
    x, y, w, xv, yv, _ = metric_data(kind)
    net = metric_net(backend, kind)
    history = net.fit(x, y, epochs=3, batch_size=10, shuffle=True, sample_weight=w, validation_data=(xv, yv),
                      verbose=0)
    for key, values in history.history.items():
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
        name = key.removeprefix("val_")
        if name in ("mae", "mse", "loss", "learning_rate"):
            assert min(values) >= 0, key
        elif name == "r2":
            assert max(values) <= 1, key
        else:
            assert all(0 <= v <= 1 for v in values), key


# --------------------------------------------------------------------------- auto modes and monitors

MODES = [("val_auc", "max"), ("val_f1", "max"), ("val_r2", "max"), ("auc", "max"), ("val_precision", "max"),
         ("recall", "max"), ("val_accuracy", "max"), ("val_top_k_accuracy", "max"), ("val_loss", "min"),
         ("loss", "min"), ("val_mae", "min"), ("mse", "min")]
MONITORING = {
    "EarlyStopping": lambda monitor, **kw: ax.EarlyStopping(monitor=monitor, **kw),
    "ReduceLROnPlateau": lambda monitor, **kw: ax.ReduceLROnPlateau(monitor=monitor, **kw),
    "ModelCheckpoint": lambda monitor, **kw: ax.ModelCheckpoint("unused.npz", monitor=monitor, save_best_only=True,
                                                                **kw),
}


@pytest.mark.parametrize("which", list(MONITORING))
@pytest.mark.parametrize(("monitor", "mode"), MODES)
def test_auto_mode_knows_which_way_metrics_go(which: str, monitor: str, mode: str) -> None:
    assert MONITORING[which](monitor).mode == mode
    other = "min" if mode == "max" else "max"
    assert MONITORING[which](monitor, mode=other).mode == other


def test_every_registered_metric_has_a_direction() -> None:
    """The auto table covers every metric name Network accepts (a new metric must say)."""
    goes_down = {"mae", "mse"}
    for name, cls in METRICS.items():
        assert ax.EarlyStopping(monitor=f"val_{name}").mode == ("min" if name in goes_down else "max"), name
        assert cls.higher_is_better == (name not in goes_down), name


def auc_fit_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Noisy labels and a small validation set: the val metrics go up and down."""
    x, y = classification_data(n=90, classes=3, seed=11)
    flip = np.random.default_rng(5).random(90) < 0.3
    y = np.where(flip, (y + 1) % 3, y)
    return x[:60], y[:60], x[60:], y[60:]


def test_checkpoint_best_val_auc_saves_when_it_goes_up(backend: ax.Backend, tmp_path: Path) -> None:
    x, y, xv, yv = auc_fit_data()
    net = classifier(backend, lr=0.2)
    recorder = Recorder(x)
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "auc-{epoch}.npz"), monitor="val_auc", save_best_only=True)
    history = net.fit(x, y, epochs=10, batch_size=20, validation_data=(xv, yv), verbose=0,
                      callbacks=[checkpoint, recorder])
    aucs = history.history["val_auc"]
    saved = improvements(aucs, "max")
    assert 1 < len(saved) < len(aucs), aucs  # the fit has epochs that improve and epochs that do not
    assert sorted(os.listdir(tmp_path)) == sorted(f"auc-{epoch + 1}.npz" for epoch in saved)
    assert checkpoint.best == max(aucs)
    last = ax.load(tmp_path / f"auc-{saved[-1] + 1}.npz", backend=backend)
    np.testing.assert_allclose(last.predict(x), recorder.predictions[saved[-1]], rtol=1e-12, atol=1e-14)


def test_early_stopping_on_val_f1_keeps_the_highest(backend: ax.Backend) -> None:
    x, y, xv, yv = auc_fit_data()
    net = classifier(backend, lr=0.2)
    stop = ax.EarlyStopping(monitor="val_f1", patience=100, restore_best_weights=True)
    history = net.fit(x, y, epochs=10, batch_size=20, validation_data=(xv, yv), verbose=0, callbacks=[stop])
    f1 = history.history["val_f1"]
    best = int(np.argmax(f1))  # the first of equal maxima, as EarlyStopping keeps the first
    assert best != len(f1) - 1 and min(f1) < max(f1), f1  # restoring the best is not keeping the last
    assert stop.best_epoch == best and history.kept_epoch == best and history.kept_monitor == "val_f1"
    assert net.evaluate(xv, yv)["f1"] == pytest.approx(max(f1), rel=1e-12)


def test_reduce_lr_on_val_r2_tracks_the_highest(backend: ax.Backend) -> None:
    x, y, _, xv, yv, _ = metric_data("regression")
    net = metric_net(backend, "regression", optimizer=ax.SGD(lr=0.3))
    reduce = ax.ReduceLROnPlateau(monitor="val_r2", factor=0.5, patience=1, min_delta=0.0)
    history = net.fit(x, y, epochs=6, batch_size=16, validation_data=(xv, yv), verbose=0, callbacks=[reduce])
    r2 = history.history["val_r2"]
    assert reduce.mode == "max" and reduce.best == max(r2)
    # the rate falls only after an epoch that did not raise val_r2 (patience 1)
    rates = history.history["learning_rate"]
    ups = set(improvements(r2, "max"))
    for epoch in range(len(r2) - 1):
        assert (rates[epoch + 1] < rates[epoch]) == (epoch not in ups), (epoch, r2, rates)


@pytest.mark.parametrize("which", list(MONITORING))
@pytest.mark.parametrize(("monitor", "validation", "available"), [
    ("val_auc", False, "loss, accuracy, f1, auc, learning_rate"),
    ("val_precision", True, "loss, accuracy, f1, auc, val_loss, val_accuracy, val_f1, val_auc, learning_rate"),
    ("r2", True, "loss, accuracy, f1, auc, val_loss, val_accuracy, val_f1, val_auc, learning_rate"),
])
def test_monitoring_what_the_fit_does_not_compute_fails_at_fit_start(
    backend: ax.Backend, tmp_path: Path, which: str, monitor: str, validation: bool, available: str
) -> None:
    x, y = classification_data()
    net = classifier(backend)
    weights = net.get_weights()
    callback = MONITORING[which](monitor)
    if isinstance(callback, ax.ModelCheckpoint):
        callback.filepath = str(tmp_path / "ckpt.npz")
    recorder = Recorder()
    with pytest.raises(ValueError, match=f"{which} monitors '{monitor}', which this fit does not compute") as info:
        net.fit(x, y, epochs=2, verbose=0, validation_data=(x, y) if validation else None,
                callbacks=[callback, recorder])
    assert f"available: {available}" in str(info.value)
    assert ("pass validation_data" in str(info.value)) == monitor.startswith("val_")
    assert recorder.begun == [] and os.listdir(tmp_path) == []
    for before, after in zip(weights, net.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


# --------------------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_names_each_epoch_and_stores_its_weights(backend: ax.Backend, tmp_path: Path) -> None:
    x, y = classification_data()
    net = classifier(backend)
    recorder = Recorder(x)
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.3f}.npz"))
    history = net.fit(x, y, epochs=3, batch_size=20, validation_split=0.25, verbose=0,
                      callbacks=[checkpoint, recorder])
    names = [f"ckpt-{epoch + 1:02d}-{loss:.3f}.npz" for epoch, loss in enumerate(history.history["val_loss"])]
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    for name, predictions in zip(names, recorder.predictions, strict=True):
        loaded = ax.load(tmp_path / name, backend=backend)
        np.testing.assert_allclose(loaded.predict(x), predictions, rtol=1e-12, atol=1e-14)
    assert not np.allclose(recorder.predictions[0], recorder.predictions[-1])  # the epochs differ


def test_checkpoint_best_only_writes_on_improvement(backend: ax.Backend, tmp_path: Path) -> None:
    x, y, xv, yv = auc_fit_data()
    net = classifier(backend, lr=0.3)
    recorder = Recorder(x)
    every = ax.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), save_best_only=True)  # val_loss, min
    single = ax.ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True)
    history = net.fit(x, y, epochs=8, batch_size=20, validation_data=(xv, yv), verbose=0,
                      callbacks=[every, single, recorder])
    losses = history.history["val_loss"]
    saved = improvements(losses, "min")
    assert 1 < len(saved) < len(losses), losses
    assert sorted(os.listdir(tmp_path)) == sorted(["best.npz", *(f"best-{epoch + 1}.npz" for epoch in saved)])
    best = ax.load(tmp_path / "best.npz", backend=backend)  # overwritten at each improvement: the best epoch's
    np.testing.assert_allclose(best.predict(x), recorder.predictions[saved[-1]], rtol=1e-12, atol=1e-14)


def test_checkpoint_every_three_batches(backend: ax.Backend, tmp_path: Path) -> None:
    """save_freq counts batches across epochs (as Keras): 2 epochs of 5 batches save after
    batches 3, 6 and 9, i.e. epoch 1 batch 3, epoch 2 batches 1 and 4; the batch logs name them."""
    x, y = classification_data(n=40)
    net = classifier(backend)
    losses = BatchLosses()
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "{epoch}-{loss:.9f}.npz"), save_freq=3)
    net.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[checkpoint, losses])
    assert len(losses.losses) == 10
    expected = [f"{epoch}-{losses.losses[i]:.9f}.npz" for epoch, i in ((1, 2), (2, 5), (2, 8))]
    assert sorted(os.listdir(tmp_path)) == sorted(expected)


def test_checkpoint_every_three_batches_names_the_batch(backend: ax.Backend, tmp_path: Path) -> None:
    x, y = classification_data(n=40)
    net = classifier(backend)
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "{epoch}-{batch}.npz"), save_freq=3)
    net.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["1-3.npz", "2-1.npz", "2-4.npz"]


def test_checkpoint_may_name_the_learning_rate(backend: ax.Backend, tmp_path: Path) -> None:
    x, y = classification_data()
    net = classifier(backend)
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "{epoch}-{learning_rate:.2f}.npz"))
    net.fit(x, y, epochs=2, batch_size=30, verbose=0, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["1-0.05.npz", "2-0.05.npz"]


def test_checkpoint_per_batch_pattern_with_val_keys_fails_before_any_epoch(
    backend: ax.Backend, tmp_path: Path
) -> None:
    x, y = classification_data(n=40)
    net = classifier(backend)
    recorder = Recorder()
    checkpoint = ax.ModelCheckpoint(str(tmp_path / "{epoch}-{val_loss:.3f}.npz"), save_freq=3)
    with pytest.raises(ValueError, match=r"ModelCheckpoint filepath .* cannot be filled in"):
        net.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=0, callbacks=[recorder, checkpoint])
    assert recorder.begun == [] and net.optimizer.steps == 0


@pytest.mark.parametrize("pattern", ["ckpt-{nope}.npz", "ckpt-{epoch}-{val_loss:.3f}.npz", "ckpt-{0}.npz",
                                     "ckpt-{epoch:d}-{loss:q}.npz"])
def test_checkpoint_pattern_that_cannot_be_filled_fails_before_any_epoch(
    backend: ax.Backend, tmp_path: Path, pattern: str
) -> None:
    x, y = classification_data()
    net = classifier(backend)
    weights = net.get_weights()
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"ModelCheckpoint filepath .* cannot be filled in") as info:
        net.fit(x, y, epochs=2, verbose=0, callbacks=[ax.ModelCheckpoint(str(tmp_path / pattern)), recorder])
    assert "the keys accuracy, auc, f1, learning_rate, loss" in str(info.value)  # no validation: no val_loss
    assert recorder.begun == [] and os.listdir(tmp_path) == []
    for before, after in zip(weights, net.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("main", [True, False])
def test_checkpoint_writes_only_in_the_main_process(backend: ax.Backend, tmp_path: Path, main: bool) -> None:
    net = tiny_net(backend)
    for checkpoint in (ax.ModelCheckpoint(str(tmp_path / "every-{epoch}.npz")),
                       ax.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), monitor="loss", save_best_only=True),
                       ax.ModelCheckpoint(str(tmp_path / "batch-{epoch}.npz"), save_freq=2)):
        checkpoint.set_context(net, {"metrics": ["loss"], "is_main_process": main})
        checkpoint.on_train_begin()
        for epoch in range(2):
            checkpoint.on_epoch_begin(epoch)
            for batch in range(2):
                if checkpoint.wants_batches:  # as the training loop calls it
                    checkpoint.on_batch_end(batch, {"loss": 1.0})
            checkpoint.on_epoch_end(epoch, {"loss": 1.0 - epoch})
    expected = ["batch-1.npz", "batch-2.npz", "best-1.npz", "best-2.npz", "every-1.npz", "every-2.npz"]
    assert sorted(os.listdir(tmp_path)) == (expected if main else [])


# --------------------------------------------------------------------------- CSVLogger


def test_csv_logger_columns_hold_metrics_val_metrics_and_rate(backend: ax.Backend, tmp_path: Path) -> None:
    x, y = classification_data()
    net = classifier(backend, metrics=["accuracy", "f1", "auc", ax.TopKAccuracy(2)])
    path = tmp_path / "log.csv"
    history = net.fit(x, y, epochs=2, batch_size=20, validation_split=0.25, verbose=0,
                      callbacks=[ax.CSVLogger(path), ax.LearningRateScheduler(lambda epoch: 0.05 / (1 + epoch))])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    names = ["loss", "accuracy", "f1", "auc", "top_k_accuracy"]
    assert reader.fieldnames == ["epoch", *names, *(f"val_{name}" for name in names), "learning_rate"]
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    for key, values in history.history.items():
        assert [float(row[key]) for row in rows] == values, key
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025], rel=1e-12)


# --------------------------------------------------------------------------- errors at construction


def test_classification_metric_with_a_regression_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="metric 'auc' needs a classification loss"):
        ax.Network([ax.Dense(2)], input_size=3, loss="mse", metrics=["auc"], backend="numpy")
    for name in ("precision", "recall", "f1", "top_k_accuracy"):
        with pytest.raises(ValueError, match=f"metric '{name}'"):
            ax.Network([ax.Dense(2)], loss="mse", metrics=[name], backend="numpy")


def test_top_k_accuracy_needs_one_of_k_outputs() -> None:
    with pytest.raises(ValueError, match=r"metric 'top_k_accuracy' needs task 'multiclass'.*'binary'"):
        ax.Network([ax.Dense(1, "sigmoid")], input_size=3, loss="binary_cross_entropy",
                   metrics=["top_k_accuracy"], backend="numpy")
    with pytest.raises(ValueError, match=r"metric 'top_k_accuracy' needs task 'multiclass'.*'multilabel'"):
        ax.Network([ax.Dense(3, "sigmoid")], loss="binary_cross_entropy", metrics=[ax.TopKAccuracy(2)],
                   backend="numpy")
    net = ax.Network([ax.Dense(3, "softmax")], loss="cross_entropy", metrics=[ax.TopKAccuracy(2)], backend="numpy")
    assert [m.name for m in net.metrics] == ["top_k_accuracy"]


def test_a_metric_is_checked_by_build_when_layers_are_added() -> None:
    net = ax.Network(loss="mse", metrics=["f1"], backend="numpy")  # no layers: nothing to check yet
    net.add(ax.Dense(2))
    with pytest.raises(ValueError, match="metric 'f1' needs a classification loss"):
        net.build(3)
    assert not net.built


def test_unknown_metric_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown metric 'nope'") as info:
        ax.Network([ax.Dense(3, "softmax")], metrics=["nope"], backend="numpy")
    listed = str(info.value).split("valid metrics are:")[1]
    for name in ("accuracy", "top_k_accuracy", "precision", "recall", "f1", "auc", "mae", "mse", "r2"):
        assert name in listed


@pytest.mark.parametrize("metrics", [["f1", "accuracy", "f1"], ["top_k_accuracy", ax.TopKAccuracy(3)]])
def test_duplicate_metric_names_are_refused(metrics: list[Any]) -> None:
    name = "f1" if "f1" in metrics else "top_k_accuracy"
    with pytest.raises(ValueError, match=f"metrics lists '{name}' more than once"):
        ax.Network([ax.Dense(3, "softmax")], metrics=metrics, backend="numpy")
