"""The Network API: construction, sizes, weights, summary, move, collapse, and every
bad input getting a clear error that leaves the network and the data unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp as ax


def net_for(backend: ax.Backend, **kwargs) -> ax.Network:
    return ax.Network([ax.Dense(6, "relu"), ax.Dense(3, "softmax")], input_size=4,
                      backend=backend, seed=0, **kwargs)


def data(n: int = 30, features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)), rng.integers(0, classes, size=n)


def test_layer_by_layer_construction_and_inferred_input_size(backend: ax.Backend) -> None:
    net = ax.Network(backend=backend, seed=1)
    assert net.add(ax.Dense(5, "tanh")) is net
    net.add(ax.Dense(2, "softmax"))
    assert not net.built
    x, y = data(classes=2)
    net.fit(x, y, epochs=1, verbose=0)
    assert net.built and net.input_size == 4
    assert [w.shape for w in net.get_weights()] == [(4, 5), (5,), (5, 2), (2,)]
    assert net.layers[0].kernel.shape == (4, 5)
    with pytest.raises(RuntimeError, match="built"):
        net.add(ax.Dense(3))


def test_incompatible_explicit_sizes_name_both_layers() -> None:
    with pytest.raises(ValueError, match=r"layer 1 \(Dense\(units=4.*input_size=7.*layer 0 \(Dense\(units=10"):
        ax.Network([ax.Dense(10), ax.Dense(4, input_size=7)])
    with pytest.raises(ValueError, match="input_size=5 but layer 0"):
        ax.Network([ax.Dense(10, input_size=3)], input_size=5)
    net = ax.Network([ax.Dense(10, input_size=3), ax.Dense(2, input_size=10)])
    assert net.build().input_size == 3


def test_same_seed_same_weights(backend: ax.Backend) -> None:
    a, b, c = net_for(backend), net_for(backend), net_for(backend, name="other")
    c.seed = 1
    a.build(), b.build()
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    other = ax.Network([ax.Dense(6, "relu"), ax.Dense(3, "softmax")], input_size=4, backend=backend, seed=1)
    other.build()
    assert not np.array_equal(other.get_weights()[0], a.get_weights()[0])


def test_initializers_follow_the_activation(backend: ax.Backend) -> None:
    assert ax.Dense(3, "relu").init == "he_normal"
    assert ax.Dense(3, "elu").init == "he_normal"
    assert ax.Dense(3, "sigmoid").init == "glorot_uniform"
    assert ax.Dense(3, init="xavier_normal").init == "glorot_normal"
    net = ax.Network([ax.Dense(400, "relu", init="he_uniform"), ax.Dense(300, init="zeros")],
                     input_size=500, backend=backend, seed=0)
    net.build()
    k1, _, k2, _ = net.get_weights()
    limit = np.sqrt(6 / 500)
    assert np.abs(k1).max() <= limit and np.abs(k1).max() > 0.95 * limit
    assert k1.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert not k2.any()
    with pytest.raises(ValueError, match=r"unknown initializer 'truncated_normal'.*he_normal"):
        ax.Dense(3, init="truncated_normal")


@pytest.mark.parametrize(("rows", "cols"), [(14, 14), (20, 8), (8, 20)])
def test_orthogonal_initializer(backend: ax.Backend, rows: int, cols: int) -> None:
    net = ax.Network([ax.Dense(cols, "tanh", init="orthogonal")], input_size=rows, backend=backend,
                     dtype="float64", seed=0)
    kernel = net.build().get_weights()[0]
    gram = kernel.T @ kernel if rows >= cols else kernel @ kernel.T
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-12)


def test_get_and_set_weights(backend: ax.Backend) -> None:
    net = net_for(backend)
    net.build()
    weights = net.get_weights()
    weights[0][:] = 0.5  # a host copy: changing it changes nothing
    assert not np.all(net.get_weights()[0] == 0.5)
    new = [np.full_like(w, i + 1.0) for i, w in enumerate(weights)]
    net.set_weights(new)
    for w, expected in zip(net.get_weights(), new, strict=True):
        np.testing.assert_array_equal(w, expected)
    x, _ = data()
    np.testing.assert_allclose(net.predict(x), np.full((30, 3), 1 / 3), rtol=1e-6)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (lambda w: w[:-1], "got 3 arrays, the network has 4"),
        (lambda w: [w[0].T, *w[1:]], r"weight 0 \(Dense kernel\) has shape \(6, 4\), expected \(4, 6\)"),
        (lambda w: [w[0], w[1], w[2], np.full(3, np.nan)], r"weight 3 \(Dense bias\) contains NaN"),
    ],
)
def test_set_weights_validates_everything_first(backend: ax.Backend, weights, message: str) -> None:
    net = net_for(backend)
    net.build()
    before = net.get_weights()
    candidate = [w + 1.0 for w in before]
    with pytest.raises(ValueError, match=message):
        net.set_weights(weights(candidate))
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_summary_names_layers_shapes_params_and_backend(backend: ax.Backend) -> None:
    net = ax.Network([ax.Dense(6, "relu"), ax.Dropout(0.1), ax.Dense(3, "softmax")],
                     input_size=4, backend=backend, seed=0, name="demo")
    net.build()
    lines: list[str] = []
    text = net.summary(print_fn=lines.append)
    assert lines == [text]
    for expected in ("demo", "Dense(6, relu)", "Dropout(0.1)", "(None, 6)", "(None, 3)", "30", "21",
                     "Total params: 51", "float32", backend.name, str(backend.device)):
        assert expected in text, expected


def test_move_between_backends(backend: ax.Backend) -> None:
    x, y = data()
    net = ax.Network([ax.Dense(6, "relu"), ax.Dense(3, "softmax")], input_size=4,
                     backend="numpy", dtype="float64", seed=0, optimizer=ax.Adam(lr=0.01))
    net.fit(x, y, epochs=2, batch_size=8, verbose=0)
    expected = net.predict(x)
    state = {k: np.array(v) for k, v in net.optimizer.state_arrays().items()}
    assert net.to(backend) is net
    assert net.backend == backend and backend.is_native(net.layers[0].kernel)
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-12)
    for k, v in net.optimizer.state_arrays().items():
        assert backend.is_native(v)
        np.testing.assert_array_equal(backend.to_numpy(v), state[k])
    net.fit(x, y, epochs=1, verbose=0)  # and it keeps training there
    assert net.optimizer.steps == 2 * 4 + 1


def test_collapse_linear_network(backend: ax.Backend) -> None:
    x, _ = data()
    net = ax.Network([ax.Dense(7), ax.Dropout(0.3), ax.Dense(5, "linear"), ax.Dense(3, "softmax")],
                     input_size=4, backend=backend, dtype="float64", seed=0)
    net.build()
    single = net.collapse()
    assert len(single.layers) == 1 and single.layers[0].activation.name == "softmax"
    np.testing.assert_allclose(single.predict(x), net.predict(x), rtol=1e-10)
    with pytest.raises(ValueError, match="non-identity activation 'relu'"):
        net_for(backend).build().collapse()


UNKNOWN_NAMES = [
    (lambda: ax.Network([ax.Dense(2)], loss="hinge"), "unknown loss 'hinge'.*mse.*cross_entropy"),
    (lambda: ax.Dense(2, "swishy"), "unknown activation 'swishy'.*relu.*softmax"),
    (lambda: ax.Network([ax.Dense(2)], metrics=["f2"]), "unknown metric 'f2'; valid metrics are: accuracy, precision"),
    (lambda: ax.Network([ax.Dense(2)], dtype="float16"), "dtype must be one of"),
    (lambda: ax.Dropout(1.0), r"rate must be in \[0, 1\)"),
    (lambda: ax.Dense(0), "positive integer"),
]


@pytest.mark.parametrize(("factory", "message"), UNKNOWN_NAMES)
def test_unknown_names_list_the_valid_ones(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def _nan_at(array: np.ndarray, row: int, value: float = np.nan) -> np.ndarray:
    array = array.copy()
    array[row, 1] = value
    return array


X, Y = data()
BAD_FITS = [
    ({"x": X[:20]}, "x and y have different lengths: 20 and 30"),
    ({"x": X[:, :3]}, "x has 3 features, but the network expects 4"),
    ({"x": _nan_at(X, 7)}, "x contains NaN in row 7"),
    ({"x": _nan_at(X, 11, np.inf)}, "x contains inf in row 11"),
    ({"y": np.where(np.arange(30) == 5, np.nan, Y)}, "y contains NaN in row 5"),
    ({"y": np.where(np.arange(30) == 9, 3, Y)}, r"label 3 in row 9; labels must be integers in \[0, 3\)"),
    ({"y": np.where(np.arange(30) == 2, -1, Y)}, r"label -1 in row 2"),
    ({"y": Y + 0.5}, r"non-integer class label \d\.5 in row 0"),
    ({"x": X[:0], "y": Y[:0]}, "x is empty"),
    ({"x": X[0]}, "x must be 2-D"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"epochs": -1}, "epochs must be an integer >= 0"),
    ({"validation_split": 1.0}, r"validation_split must be in \[0, 1\)"),
    ({"validation_split": -0.1}, r"validation_split must be in \[0, 1\)"),
    ({"validation_data": (X[:5, :2], Y[:5])}, "validation_data x has 2 features"),
    ({"validation_data": (X[:5], Y[:4])}, "validation_data x and validation_data y have different lengths"),
    ({"sample_weight": np.ones(29)}, r"sample_weight must have shape \(30,\)"),
    ({"class_weight": {0: -1.0}}, "class_weight"),
    ({"y": np.eye(4)[np.arange(30) % 4]}, r"y has shape \(30, 4\); expected \(30, 3\)"),
    ({"verbose": 5}, "verbose must be 0, 1 or 2"),
    ({"y": np.eye(3)[Y] * 0.7}, "y row 0 sums to 0.7; cross_entropy targets must be one-hot rows"),
    ({"y": np.eye(3)[Y] * 1.5}, r"y row 0 has targets outside \[0, 1\]"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FITS, ids=[m[:40] for _, m in BAD_FITS])
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "fresh"])
def test_bad_fit_input_changes_nothing(backend: ax.Backend, change: dict, message: str, trained: bool) -> None:
    net = net_for(backend)  # knows its input size: built at construction
    if trained:
        net.fit(X, Y, epochs=1, verbose=0)
    weights = net.get_weights()
    steps = net.optimizer.steps
    rng_state = net.rng.bit_generator.state
    args = {"x": X, "y": Y, "epochs": 1, "verbose": 0, **change}
    copies = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=message):
        net.fit(x, y, **args)
    for k, v in copies.items():  # the caller's arrays are untouched
        np.testing.assert_array_equal({"x": x, "y": y, **args}[k], v)
    for a, b in zip(weights, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert net.optimizer.steps == steps and net.rng.bit_generator.state == rng_state


def test_bad_predict_and_evaluate_input(backend: ax.Backend) -> None:
    net = net_for(backend)
    net.build()
    with pytest.raises(ValueError, match="x has 5 features, but the network expects 4"):
        net.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="x contains NaN in row 1"):
        net.predict(_nan_at(np.zeros((3, 4)), 1))
    with pytest.raises(ValueError, match="x and y have different lengths"):
        net.evaluate(X, Y[:3])
    with pytest.raises(ValueError, match="batch_size"):
        net.predict(X, batch_size=-2)


@pytest.mark.on_device
def test_finite_check_survives_an_overflowing_sum(backend: ax.Backend) -> None:
    """Huge but finite inputs pass (the one-pass sum overflows; the exact check runs)."""
    from anyxp.validation import check_finite

    huge = backend.asarray(np.full((3, 4), 3e38), dtype=backend.float_dtype("float32"))
    check_finite(huge, "x")
    with pytest.raises(ValueError, match="x contains inf in row 2"):
        check_finite(np.vstack([np.ones((2, 4)), np.full((1, 4), np.inf)]), "x")


def test_plots_draw_lines_for_many_epochs(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    history = ax.History()
    for epoch in range(351):
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.2 / (epoch + 1)})
    fig = history.plot(tmp_path / "many.png")
    assert all(line.get_marker() in (None, "None", "") for line in fig.axes[0].get_lines())
    short = ax.History()
    for epoch in range(5):
        short.on_epoch_end(epoch, {"loss": 1.0})
    assert all(line.get_marker() == "o" for line in short.plot(tmp_path / "few.png").axes[0].get_lines())


def test_a_network_knowing_its_input_size_is_built_at_construction(backend: ax.Backend, tmp_path) -> None:
    """As Keras builds a model whose input shape it knows: weights, summary, save and
    gradient checks work before any fit."""
    for net in (net_for(backend, dtype="float64"),
                ax.Network([ax.Dense(6, "relu", input_size=4), ax.Dense(3, "softmax")], backend=backend,
                           seed=0, dtype="float64")):
        assert net.built and [w.shape for w in net.get_weights()] == [(4, 6), (6,), (6, 3), (3,)]
        assert "Total params: 51" in net.summary(print_fn=None)
        net.save(tmp_path / "fresh.npz")
        for a, b in zip(ax.load(tmp_path / "fresh.npz", backend=backend).get_weights(), net.get_weights(),
                        strict=True):
            np.testing.assert_array_equal(a, b)
        x, y = data(5)
        assert ax.check_gradients(net, x, y) < 1e-6
    unknown = ax.Network([ax.Dense(6, "relu"), ax.Dense(3, "softmax")], backend=backend, seed=0)
    assert not unknown.built


def test_adding_to_a_fresh_network_draws_the_weights_of_one_built_at_once(backend: ax.Backend) -> None:
    at_once = net_for(backend)
    step_by_step = ax.Network([ax.Dense(6, "relu")], input_size=4, backend=backend, seed=0)
    assert step_by_step.built
    step_by_step.add(ax.Dense(3, "softmax"))
    assert step_by_step.built
    for a, b in zip(at_once.get_weights(), step_by_step.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x, y = data()
    step_by_step.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(RuntimeError, match="cannot add layers to a built network"):
        step_by_step.add(ax.Dense(2))
    given = net_for(backend)
    given.set_weights([w + 1.0 for w in given.get_weights()])
    with pytest.raises(RuntimeError, match="cannot add layers to a built network"):
        given.add(ax.Dense(2))  # the weights the user set are never redrawn
