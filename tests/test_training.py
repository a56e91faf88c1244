"""fit / evaluate / predict on the backend under test: dtypes, devices, host syncs,
determinism across backends, callbacks, early stopping, divergence."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs

import anyxp as ax


def classifier(backend: ax.Backend, dtype: str = "float32", seed: int = 0, **kwargs) -> ax.Network:
    kwargs.setdefault("optimizer", ax.Adam(lr=1e-2))
    return ax.Network([ax.Dense(16, "relu"), ax.Dense(8, "tanh"), ax.Dense(3, "softmax")],
                      input_size=5, backend=backend, dtype=dtype, seed=seed, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_and_device_are_kept_end_to_end(backend: ax.Backend, dtype: str, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend, dtype)
    net.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for layer in net.layers:
        for array in [*layer.parameters(), *layer.gradients()]:
            assert_native(backend, array, dtype)
    for array in net.optimizer.state_arrays().values():
        assert_native(backend, array, dtype)
    x_dev = backend.asarray(x, dtype=backend.float_dtype(dtype))
    out = net.predict(x_dev)
    assert_native(backend, out, dtype)  # native in, native out
    with backend.activate():  # direct calls into the network's internals
        logits = net._forward(x_dev, True)
        loss, grad = net.loss.value_and_grad(logits, backend.asarray(np.eye(3)[y], dtype=net.dtype), logits=True)
    assert_native(backend, logits, dtype)
    assert loss.dtype == net.dtype and grad.dtype == net.dtype


def test_predict_returns_the_callers_library(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend)
    net.fit(x, y, epochs=1, verbose=0)
    out = net.predict(x)
    assert isinstance(out, np.ndarray) and out.shape == (120, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    as_list = net.predict(x.tolist())
    assert isinstance(as_list, np.ndarray)
    np.testing.assert_allclose(as_list, out, rtol=1e-6)
    native = net.predict(backend.asarray(x))
    assert backend.is_native(native)
    np.testing.assert_allclose(backend.to_numpy(native), out, rtol=1e-5, atol=1e-6)
    small = net.predict(x, batch_size=7)  # several batches, last one partial
    np.testing.assert_allclose(small, out, rtol=1e-5, atol=1e-6)
    classes = net.predict_classes(x)
    np.testing.assert_array_equal(classes, out.argmax(axis=1))


def test_a_training_step_makes_no_host_sync(small_classification) -> None:
    """Counted on array_api_strict (device1): forward, loss, backward, optimizer, and the
    batch's loss and outputs stored for the epoch's metrics, as the training loop does."""
    pytest.importorskip("array_api_strict")
    from conftest import make_backend

    from anyxp.training import _EpochOutputs

    strict = make_backend("array_api_strict")
    x, y = small_classification
    for optimizer in (ax.SGD(lr=0.1, momentum=0.9, nesterov=True), ax.Adam(), ax.AdamW(), ax.RMSprop(momentum=0.5)):
        net = ax.Network([ax.Dense(16, "gelu"), ax.Dropout(0.2), ax.Dense(3, "softmax")], input_size=5,
                         optimizer=optimizer, backend=strict, seed=0, metrics=["accuracy"])
        net.build()
        xb = strict.asarray(x[:32], dtype=net.dtype)
        tb = strict.asarray(np.eye(3)[y[:32]], dtype=net.dtype)
        outputs = _EpochOutputs(net, 3 * 32, 3, None, keep_targets=True)
        with count_host_syncs() as syncs:
            for b in range(3):
                loss_sum, out = net._forward_backward(xb, tb, None)
                net.optimizer.step()
                outputs.add(b, 32 * b, 32 * (b + 1), 32 * b, 32 * (b + 1), loss_sum, out, tb, None)
        assert syncs == [], f"{type(optimizer).__name__}: host syncs in a step: {syncs}"


def test_host_syncs_per_epoch_do_not_grow_with_batches(small_classification) -> None:
    pytest.importorskip("array_api_strict")
    from conftest import make_backend

    strict = make_backend("array_api_strict")
    x, y = small_classification
    counts = []
    for batch_size in (60, 8):  # 2 and 15 batches per epoch
        net = classifier(strict)
        net.build()
        with count_host_syncs() as syncs:
            net.fit(x, y, epochs=2, batch_size=batch_size, validation_data=(x[:30], y[:30]), verbose=0)
        counts.append(len(syncs))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 2 * 2 * 2  # 2 epochs x (training, validation) x one transfer (2 calls)


def test_same_seed_same_weights_and_batches_across_backends(backend: ax.Backend, small_classification) -> None:
    """float64 loss curves agree with NumPy's to 1e-6 relative over several epochs."""
    x, y = small_classification
    reference = classifier(ax.get_backend("numpy"), "float64", seed=3)
    mine = classifier(backend, "float64", seed=3)
    reference.build()
    mine.build()
    for a, b in zip(reference.get_weights(), mine.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    h_ref = reference.fit(x, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0)
    h_mine = mine.fit(x, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0)
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(h_mine.history[key], h_ref.history[key], rtol=1e-6)
    for a, b in zip(reference.get_weights(), mine.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)


def test_history_and_continued_fit(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend)
    h1 = net.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:40], y[:40]), verbose=0)
    assert h1.epoch == [0, 1, 2]
    assert set(h1.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert all(len(v) == 3 for v in h1.history.values())
    steps = net.optimizer.steps
    h2 = net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert net.optimizer.steps == steps + 2 * math.ceil(120 / 16)  # last partial batch used
    assert h2.history["loss"][-1] < h1.history["loss"][0]
    assert net.history is h2


def test_evaluate_matches_a_numpy_computation(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend, "float64")
    net.fit(x, y, epochs=2, verbose=0)
    scores = net.evaluate(x, y, batch_size=50)
    p = net.predict(x)
    assert scores["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(120), y])), rel=1e-9)
    assert scores["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))


def test_sample_and_class_weights(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend, "float64")
    net.build()
    unweighted = net.evaluate(x, y)["loss"]
    assert net.evaluate(x, y, sample_weight=np.full(120, 2.0))["loss"] == pytest.approx(2 * unweighted)
    a, b = classifier(backend, "float64"), classifier(backend, "float64")
    a.fit(x, y, epochs=1, batch_size=120, class_weight={0: 1.0, 1: 3.0, 2: 0.5}, shuffle=False, verbose=0)
    weights = np.array([1.0, 3.0, 0.5])[y]
    b.fit(x, y, epochs=1, batch_size=120, sample_weight=weights, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-12)


def test_early_stopping_restores_the_best_weights(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    # a validation set whose labels are noise: val_loss soon gets worse
    rng = np.random.default_rng(0)
    x_val, y_val = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    net = classifier(backend, "float64", optimizer=ax.Adam(lr=0.05))
    seen: list[list[np.ndarray]] = []

    class Recorder(ax.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            seen.append(self.network.get_weights())

    stop = ax.EarlyStopping(monitor="val_loss", patience=2)
    history = net.fit(x, y, epochs=50, batch_size=16, validation_data=(x_val, y_val),
                      callbacks=[Recorder(), stop], verbose=0)
    epochs_run = len(history.epoch)
    assert epochs_run < 50 and stop.stopped_epoch == epochs_run - 1
    best = int(np.argmin(history.history["val_loss"]))
    assert stop.best_epoch == best and epochs_run == best + 1 + 2
    for w, w_best in zip(net.get_weights(), seen[best], strict=True):
        np.testing.assert_array_equal(w, w_best)
    assert net.evaluate(x_val, y_val)["loss"] == pytest.approx(history.history["val_loss"][best], rel=1e-9)


def test_early_stopping_needs_its_metric(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    net = classifier(backend)
    net.build()
    before = net.get_weights()
    with pytest.raises(ValueError, match=r"val_loss.*validation_data"):
        net.fit(x, y, epochs=2, callbacks=[ax.EarlyStopping()], verbose=0)
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_csv_logger_per_epoch_and_per_batch(backend: ax.Backend, small_classification, tmp_path) -> None:
    x, y = small_classification
    net = classifier(backend)
    epochs_csv, batches_csv = tmp_path / "epochs.csv", tmp_path / "batches.csv"
    history = net.fit(x, y, epochs=3, batch_size=50, validation_split=0.2, verbose=0,
                      callbacks=[ax.CSVLogger(epochs_csv), ax.CSVLogger(batches_csv, per_batch=True)])
    rows = list(csv.DictReader(epochs_csv.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])
    batch_rows = list(csv.DictReader(batches_csv.open()))
    assert len(batch_rows) == 3 * 2  # 96 training samples in batches of 50
    assert set(batch_rows[0]) == {"epoch", "batch", "loss", "accuracy"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in batch_rows)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # one clear error, no NumPy warnings before it
def test_divergence_stops_with_the_last_finite_weights(backend: ax.Backend) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = x @ rng.normal(size=(3, 1))
    net = ax.Network([ax.Dense(8, "linear"), ax.Dense(1)], input_size=3, loss="mse",
                     optimizer=ax.SGD(lr=5.0), backend=backend, dtype="float64", seed=0)
    seen: list[list[np.ndarray]] = []

    class Recorder(ax.Callback):
        def on_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
            seen.append(self.network.get_weights())

    with pytest.raises(ax.TrainingDivergedError, match=r"epoch \d+/100, batch \d+/8") as info:
        net.fit(x, y, epochs=100, batch_size=8, callbacks=[Recorder()], verbose=0)
    err = info.value
    weights = net.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    # the weights from before the failing batch of the failing epoch
    failing = seen[(err.epoch - 1) * 8 + err.batch - 1]
    for w, expected in zip(weights, failing, strict=True):
        np.testing.assert_array_equal(w, expected)


def test_verbose_modes_print_what_they_promise(backend: ax.Backend, small_classification, capsys) -> None:
    x, y = small_classification
    classifier(backend).fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2 - loss=" in out and "Epoch 2/2 - loss=" in out
    classifier(backend).fit(x, y, epochs=1, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    classifier(backend).fit(x, y, epochs=3, verbose=1)
    err = capsys.readouterr().err  # tqdm writes its bar to stderr: one bar over the epochs
    assert "3/3" in err and "loss=" in err and "val_loss" not in err


def test_binary_and_regression_targets(backend: ax.Backend) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y_bin = (x[:, 0] + x[:, 1] > 0).astype(int)
    net = ax.Network([ax.Dense(8, "relu"), ax.Dense(1, "sigmoid")], input_size=4,
                     loss="binary_cross_entropy", optimizer=ax.Adam(lr=0.05), backend=backend, seed=0)
    net.fit(x, y_bin, epochs=20, batch_size=32, verbose=0)
    assert net.evaluate(x, y_bin)["accuracy"] > 0.9
    assert set(np.unique(net.predict_classes(x))) <= {0, 1}
    y_reg = x @ np.array([1.0, -2.0, 0.5, 0.0])
    reg = ax.Network([ax.Dense(16, "tanh"), ax.Dense(1)], input_size=4, loss="mse",
                     optimizer=ax.Adam(lr=0.02), backend=backend, seed=0)
    h = reg.fit(x, y_reg, epochs=30, batch_size=32, verbose=0)
    assert "accuracy" not in h.history
    assert h.history["loss"][-1] < 0.1 * h.history["loss"][0]


@pytest.mark.parametrize("optimizer", [lambda: ax.SGD(lr=0.1, momentum=0.9), lambda: ax.Adam(lr=0.01)],
                         ids=["sgd", "adam"])
def test_backend_kernels_train_like_the_array_api_reference(backend: ax.Backend, small_classification,
                                                            optimizer) -> None:
    """The same training with the backend's kernels (out= matmuls and reductions, fused
    bias add, NumPy's direct reductions, PyTorch's fused Adam) and with the pure Array API
    path (fast_kernels=False) gives the same weights and history."""
    x, y = small_classification
    plain = ax.Backend(backend.name, backend.library, backend.device, fast_kernels=False)
    results = []
    for variant in (backend, plain):
        net = ax.Network([ax.Dense(16, "relu"), ax.Dense(8, "sigmoid"), ax.Dense(3, "softmax")], input_size=5,
                         optimizer=optimizer(), backend=variant, dtype="float64", seed=1)
        history = net.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
        results.append((net.get_weights(), history.history))
    (w_fast, h_fast), (w_plain, h_plain) = results
    for a, b in zip(w_fast, w_plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for key in h_fast:
        np.testing.assert_allclose(h_fast[key], h_plain[key], rtol=1e-12)


@pytest.mark.parametrize(
    ("last", "loss", "targets"),
    [
        ("linear", "mae", "real"),
        ("softmax", ax.CrossEntropy(), "labels"),  # fused: logits
        (ax.Softmax(), "cross_entropy", "labels"),  # a standalone softmax layer: probabilities
        ("sigmoid", ax.BinaryCrossEntropy(), "binary"),
        (ax.Sigmoid(), "binary_cross_entropy", "binary"),
    ],
    ids=["mae", "ce-fused", "ce-probabilities", "bce-fused", "bce-probabilities"],
)
def test_training_uses_no_mask_assignment(backend: ax.Backend, monkeypatch: pytest.MonkeyPatch,
                                          last, loss, targets) -> None:  # type: ignore[no-untyped-def]
    """array-api-compat's clip and sign assign through boolean masks (a host sync each on
    CuPy): the training step must not call them, nor index with a boolean mask (made to
    raise on array_api_strict with data_dependent_shapes=False)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    y = {"real": x @ rng.normal(size=(4, 3)), "labels": rng.integers(0, 3, 40),
         "binary": (x[:, :3] > 0).astype(float)}[targets]
    layers = [ax.Dense(8, "tanh"), ax.Dense(3, last)] if isinstance(last, str) else \
        [ax.Dense(8, "tanh"), ax.Dense(3), last]
    net = ax.Network(layers, input_size=4, loss=loss, backend=backend, seed=0, dtype="float64")
    net.build()

    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("clip/sign from array-api-compat in a training step")

    for name in ("clip", "sign"):
        monkeypatch.setattr(net.xp, name, forbidden)
    strict = backend.name == "array_api_strict"
    if strict:
        import array_api_strict

        flags = array_api_strict.get_array_api_strict_flags()
        array_api_strict.set_array_api_strict_flags(data_dependent_shapes=False)
    try:
        history = net.fit(x, y, epochs=3, batch_size=8, validation_data=(x[:10], y[:10]), verbose=0)
        net.evaluate(x, y)
    finally:
        if strict:
            array_api_strict.set_array_api_strict_flags(**flags)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_predicting_between_forward_and_backward_changes_nothing(backend: ax.Backend, small_classification,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference touches no training state, so a `predict` from another thread while a
    network trains cannot change the result: here it runs deterministically at the worst
    moment, between each step's forward and backward passes (Dropout's mask and a
    standalone activation layer's cached input must stay the training step's)."""
    x, y = small_classification

    def make() -> ax.Network:
        return ax.Network([ax.Dense(16), ax.ReLU(), ax.Dropout(0.3), ax.Dense(3, "softmax")], input_size=5,
                          backend=backend, dtype="float64", seed=4)

    alone = make()
    alone.fit(x, y, epochs=3, batch_size=8, verbose=0)
    net = make()
    net.build()
    predictions = []
    sum_and_grad = net.loss.sum_and_grad

    def predict_then_sum_and_grad(*args, **kwargs):  # type: ignore[no-untyped-def]
        predictions.append(net.predict(x[:7]))  # a batch shape unlike training's
        return sum_and_grad(*args, **kwargs)

    monkeypatch.setattr(net.loss, "sum_and_grad", predict_then_sum_and_grad)
    net.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert len(predictions) == 3 * 15
    for got, want in zip(net.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_csv_logger_keeps_an_existing_log_until_it_has_a_row(backend: ax.Backend, small_classification,
                                                             tmp_path) -> None:
    x, y = small_classification
    log = tmp_path / "train.csv"
    log.write_text("epoch,loss\n0,0.5\n")
    net = classifier(backend)
    with pytest.raises(ValueError, match="batch_size"):
        net.fit(x, y, epochs=1, batch_size=0, callbacks=[ax.CSVLogger(log)], verbose=0)
    net.optimizer.step = lambda: (_ for _ in ()).throw(KeyboardInterrupt)  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):  # interrupted in the first epoch
        net.fit(x, y, epochs=1, callbacks=[ax.CSVLogger(log)], verbose=0)
    assert log.read_text() == "epoch,loss\n0,0.5\n"
    with pytest.raises(ValueError, match=r"CSVLogger: cannot write .*missing.*does not exist"):
        classifier(backend).fit(x, y, epochs=1, callbacks=[ax.CSVLogger(tmp_path / "missing" / "t.csv")],
                                verbose=0)
    fresh = classifier(backend)
    fresh.fit(x, y, epochs=2, callbacks=[ax.CSVLogger(log)], verbose=0)
    assert log.read_text().splitlines()[0].startswith("epoch,loss")
    assert len(log.read_text().splitlines()) == 3  # replaced once the first row was ready
