"""LayerNorm and BatchNorm: PyTorch's numbers (forward, gradients, running statistics,
20 training steps), central differences, the running statistics as non-trainable state
(on the device, in checkpoints, moved, restored by EarlyStopping and by the divergence
rollback, in get_weights / set_weights, pickled and copied), data-parallel training on the
global batch's statistics, the one-sample batch refused, summary(), float32, host syncs."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs, make_backend
from test_distributed import run_ranks

import anyxp as ax
from anyxp.backend import backend_problem

F = 6  # features of the layer-level tests
COMBOS = [(True, True), (True, False), (False, True), (False, False)]
COMBO_IDS = ["center-scale", "center", "scale", "plain"]


def host(backend: ax.Backend, array: Any) -> np.ndarray:
    return np.array(backend.to_numpy(array))


def norm_net(backend: ax.Backend, norm: ax.Layer, dtype: str = "float64") -> ax.Network:
    """``norm`` first, then a Dense layer (so that the network has a trainable layer
    whatever ``center`` and ``scale``)."""
    return ax.Network([norm, ax.Dense(2)], input_size=F, loss="mse", optimizer=ax.SGD(lr=0.1),
                      backend=backend, dtype=dtype, seed=0)


def randomize(net: ax.Network, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random gamma, beta, running mean and (positive) running variance for the first
    layer, written with set_weights; returns them by name."""
    names = list(net.layers[0].weight_shapes())
    weights = net.get_weights()
    values = {
        "gamma": 1.0 + 0.5 * rng.standard_normal(F), "beta": rng.standard_normal(F),
        "running_mean": rng.standard_normal(F), "running_var": rng.uniform(0.5, 2.0, F),
    }
    for i, name in enumerate(names):
        weights[i] = values[name]
    net.set_weights(weights)
    return {name: values[name] for name in names}


def bn_net(backend: ax.Backend, optimizer: ax.Optimizer | None = None, dtype: str = "float64",
           seed: int = 11, **bn: Any) -> ax.Network:
    return ax.Network(
        [ax.Dense(8, use_bias=False), ax.BatchNorm(**bn), ax.ReLU(), ax.Dense(3, "softmax")], input_size=5,
        optimizer=optimizer or ax.SGD(lr=0.1, momentum=0.9), backend=backend, dtype=dtype, seed=seed,
    )


def data(n: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) * 2.0 + 0.5
    return x, np.argmax(x @ rng.normal(size=(5, 3)), axis=1)


def assert_weights_equal(got: list[np.ndarray], want: list[np.ndarray], **tol: float) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        if tol:
            np.testing.assert_allclose(a, b, **tol)
        else:
            np.testing.assert_array_equal(a, b)


def running_stats(net: ax.Network) -> list[np.ndarray]:
    return [host(net.backend, getattr(layer, name)) for layer in net.layers for name in layer.state_names]


class Recorder(ax.Callback):
    """The weights (with the running statistics) at each epoch's end, and at each batch's
    beginning (``batches=True``)."""

    def __init__(self, batches: bool = False) -> None:
        self.batches = batches
        self.epoch_end: list[list[np.ndarray]] = []
        self.batch_begin: dict[tuple[int, int], list[np.ndarray]] = {}
        self.epoch = -1

    @property
    def wants_batches(self) -> bool:
        return self.batches

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.batch_begin[(self.epoch, batch)] = self.network.get_weights()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epoch_end.append(self.network.get_weights())


# --------------------------------------------------------------------------- PyTorch's numbers


@pytest.mark.on_device
@pytest.mark.parametrize(("center", "scale"), COMBOS, ids=COMBO_IDS)
def test_layer_norm_equals_torch(backend: ax.Backend, center: bool, scale: bool) -> None:
    """Forward, input gradient and parameter gradients, float64, 1e-12; (True, True)
    against torch.nn.LayerNorm itself, the others against its functional form."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    net = norm_net(backend, ax.LayerNorm(eps=1e-5, center=center, scale=scale))
    params = randomize(net, rng)
    layer = net.layers[0]
    x = rng.normal(size=(7, F)) * 3.0 + 1.0
    dy = rng.normal(size=(7, F))

    xt = torch.tensor(x, requires_grad=True)
    if center and scale:
        module = torch.nn.LayerNorm(F, eps=1e-5, dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(params["gamma"]))
            module.bias.copy_(torch.from_numpy(params["beta"]))
        yt = module(xt)
        gamma_t, beta_t = module.weight, module.bias
    else:
        gamma_t = torch.tensor(params["gamma"], requires_grad=True) if scale else None
        beta_t = torch.tensor(params["beta"], requires_grad=True) if center else None
        yt = torch.nn.functional.layer_norm(xt, (F,), gamma_t, beta_t, eps=1e-5)
    yt.backward(torch.from_numpy(dy))

    y = layer.forward(backend.asarray(x, dtype=net.dtype), training=True)
    dx = layer.backward(backend.asarray(dy, dtype=net.dtype))
    tol = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(host(backend, y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(host(backend, dx), xt.grad.numpy(), **tol)
    if scale:
        np.testing.assert_allclose(host(backend, layer.grad_gamma), gamma_t.grad.numpy(), **tol)
    if center:
        np.testing.assert_allclose(host(backend, layer.grad_beta), beta_t.grad.numpy(), **tol)
    # no running statistics: inference is the same function
    np.testing.assert_allclose(host(backend, layer.forward(backend.asarray(x, dtype=net.dtype))),
                               yt.detach().numpy(), **tol)


@pytest.mark.on_device
@pytest.mark.parametrize(("center", "scale"), COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize(("momentum", "eps"), [(0.1, 1e-5), (0.3, 1e-3)], ids=["default", "m0.3"])
def test_batch_norm_layer_equals_torch(
    backend: ax.Backend, center: bool, scale: bool, momentum: float, eps: float
) -> None:
    """Training mode: output, input and parameter gradients, running statistics after the
    step; then inference with them; float64. (True, True) against torch.nn.BatchNorm1d,
    the others against its functional form."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    net = norm_net(backend, ax.BatchNorm(momentum=momentum, eps=eps, center=center, scale=scale))
    params = randomize(net, rng)
    layer = net.layers[0]
    x = rng.normal(size=(9, F)) * rng.uniform(0.5, 3.0, F) + rng.normal(size=F)
    dy = rng.normal(size=(9, F))

    rm_t, rv_t = torch.tensor(params["running_mean"]), torch.tensor(params["running_var"])
    xt = torch.tensor(x, requires_grad=True)
    if center and scale:
        module = torch.nn.BatchNorm1d(F, momentum=momentum, eps=eps, dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(params["gamma"]))
            module.bias.copy_(torch.from_numpy(params["beta"]))
            module.running_mean.copy_(rm_t)
            module.running_var.copy_(rv_t)
        yt = module(xt)
        gamma_t, beta_t, rm_t, rv_t = module.weight, module.bias, module.running_mean, module.running_var
    else:
        gamma_t = torch.tensor(params["gamma"], requires_grad=True) if scale else None
        beta_t = torch.tensor(params["beta"], requires_grad=True) if center else None
        yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, gamma_t, beta_t, training=True, momentum=momentum,
                                            eps=eps)
    yt.backward(torch.from_numpy(dy))

    y = layer.forward(backend.asarray(x, dtype=net.dtype), training=True)
    dx = layer.backward(backend.asarray(dy, dtype=net.dtype))
    tol = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(host(backend, y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(host(backend, dx), xt.grad.numpy(), **tol)
    if scale:
        np.testing.assert_allclose(host(backend, layer.grad_gamma), gamma_t.grad.numpy(), **tol)
    if center:
        np.testing.assert_allclose(host(backend, layer.grad_beta), beta_t.grad.numpy(), **tol)
    np.testing.assert_allclose(host(backend, layer.running_mean), rm_t.numpy(), **tol)
    np.testing.assert_allclose(host(backend, layer.running_var), rv_t.numpy(), **tol)

    x2 = rng.normal(size=(4, F))
    with torch.no_grad():
        if center and scale:
            module.eval()
            want = module(torch.from_numpy(x2)).numpy()
        else:
            want = torch.nn.functional.batch_norm(torch.from_numpy(x2), rm_t, rv_t, gamma_t, beta_t,
                                                  training=False, eps=eps).numpy()
    before = running_stats(net)
    got = layer.forward(backend.asarray(x2, dtype=net.dtype), training=False)
    np.testing.assert_allclose(host(backend, got), want, **tol)
    assert_weights_equal(running_stats(net), before)  # inference leaves them alone


@pytest.mark.parametrize(("momentum", "eps"), [(0.1, 1e-5), (0.3, 1e-3)], ids=["default", "m0.3"])
def test_twenty_training_steps_equal_torch(backend: ax.Backend, momentum: float, eps: float) -> None:
    """Dense(8, use_bias=False) -> BatchNorm -> ReLU -> Dense(3), SGD with momentum, the same
    20 batches in anyxp and torch: weights, running statistics, inference and training-mode
    outputs agree to 1e-10 (float64)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 5)) * 2.0 + 1.0
    t = np.tanh(x @ rng.normal(size=(5, 3)))
    net = ax.Network([ax.Dense(8, use_bias=False), ax.BatchNorm(momentum=momentum, eps=eps), ax.ReLU(),
                      ax.Dense(3)], input_size=5, loss="mse", optimizer=ax.SGD(lr=0.05, momentum=0.9),
                     backend=backend, dtype="float64", seed=3)
    k1, gamma, beta, rm, rv, k2, b2 = net.get_weights()
    gamma, beta = 1.0 + 0.3 * rng.standard_normal(8), 0.2 * rng.standard_normal(8)  # not the defaults
    net.set_weights([k1, gamma, beta, rm, rv, k2, b2])

    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8, bias=False, dtype=torch.float64),
        torch.nn.BatchNorm1d(8, momentum=momentum, eps=eps, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3, dtype=torch.float64),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(k1.T))
        model[1].weight.copy_(torch.from_numpy(gamma))
        model[1].bias.copy_(torch.from_numpy(beta))
        model[3].weight.copy_(torch.from_numpy(k2.T))
        model[3].bias.copy_(torch.from_numpy(b2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    for _ in range(4):
        for lo in range(0, 80, 16):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(xt[lo : lo + 16]), tt[lo : lo + 16]).backward()
            opt.step()

    net.fit(x, t, epochs=4, batch_size=16, shuffle=False, verbose=0)
    assert net.optimizer.steps == 20
    bn = model[1]
    want = [model[0].weight.T, bn.weight, bn.bias, bn.running_mean, bn.running_var, model[3].weight.T,
            model[3].bias]
    tol = {"rtol": 1e-10, "atol": 1e-12}
    assert_weights_equal(net.get_weights(), [w.detach().numpy() for w in want], **tol)
    model.eval()
    x_new = rng.normal(size=(30, 5)) * 2.0 + 1.0
    with torch.no_grad():
        np.testing.assert_allclose(net.predict(x_new), model(torch.from_numpy(x_new)).numpy(), **tol)
    # training mode (batch statistics), which also moves the running statistics once more
    model.train()
    with torch.no_grad():
        want_out = model(torch.from_numpy(x_new)).numpy()
    with net.backend.activate():
        a = backend.asarray(x_new, dtype=net.dtype)
        for layer in net.layers:
            a = layer.forward(a, True)
    np.testing.assert_allclose(host(backend, a), want_out, **tol)
    np.testing.assert_allclose(running_stats(net)[0], bn.running_mean.numpy(), **tol)
    np.testing.assert_allclose(running_stats(net)[1], bn.running_var.numpy(), **tol)


# --------------------------------------------------------------------------- central differences


@pytest.mark.on_device
@pytest.mark.parametrize(("center", "scale"), COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("kind", ["LayerNorm", "BatchNorm"])
def test_check_gradients(backend: ax.Backend, kind: str, center: bool, scale: bool) -> None:
    """The layer alone (training mode), float64. The inputs' seed is not check_gradients'
    own (0), whose projection would be nearly collinear with them."""
    rng = np.random.default_rng(5)
    net = norm_net(backend, getattr(ax, kind)(center=center, scale=scale))
    randomize(net, rng)
    x = rng.normal(size=(5, F)) * 2.0 + 0.3
    assert ax.check_gradients(net.layers[0], x) < 1e-7


def test_check_gradients_of_a_network_with_batch_norm(backend: ax.Backend) -> None:
    x, y = data(12, seed=6)
    net = ax.Network([ax.LayerNorm(), ax.Dense(8, use_bias=False), ax.BatchNorm(), ax.ReLU(),
                      ax.Dense(3, "softmax")], input_size=5, backend=backend, dtype="float32", seed=2)
    assert ax.check_gradients(net, x, y) < 1e-6  # on a float64 copy


def test_check_gradients_leaves_the_running_statistics_alone(backend: ax.Backend) -> None:
    x, y = data(12, seed=6)
    net = bn_net(backend)
    before = net.get_weights()
    ax.check_gradients(net, x, y)
    assert_weights_equal(net.get_weights(), before)


# --------------------------------------------------------------------------- non-trainable state


@pytest.mark.parametrize(("center", "scale"), COMBOS, ids=COMBO_IDS)
def test_weights_order_and_set_weights(backend: ax.Backend, center: bool, scale: bool) -> None:
    """get_weights: the layer's trainable arrays, then running_mean and running_var (as
    Keras orders them); set_weights writes the running statistics, which inference uses."""
    rng = np.random.default_rng(8)
    norm = ax.BatchNorm(center=center, scale=scale)
    net = norm_net(backend, norm)
    names = [*(["gamma"] if scale else []), *(["beta"] if center else []), "running_mean", "running_var"]
    assert list(norm.weight_shapes()) == names
    assert norm.size_for(F) == (norm.num_parameters, norm.num_state) == (F * (len(names) - 2), 2 * F)
    assert net.num_state == 2 * F and net.num_parameters == norm.num_parameters + F * 2 + 2
    initial = net.get_weights()
    assert len(initial) == len(names) + 2
    np.testing.assert_array_equal(initial[len(names) - 2], np.zeros(F))
    np.testing.assert_array_equal(initial[len(names) - 1], np.ones(F))
    values = randomize(net, rng)
    for name, value in values.items():
        np.testing.assert_array_equal(host(backend, getattr(norm, name)), value)
    x = rng.normal(size=(4, F))
    want = (x - values["running_mean"]) / np.sqrt(values["running_var"] + 1e-5)
    want = want * values.get("gamma", 1.0) + values.get("beta", 0.0)
    with net.backend.activate():
        got = host(backend, norm.forward(backend.asarray(x, dtype=net.dtype), False))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):  # the state is counted: one array short is refused
        net.set_weights(net.get_weights()[:-1])


def test_running_statistics_live_on_the_device(backend: ax.Backend) -> None:
    x, y = data(48)
    net = bn_net(backend)
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    norm = net.layers[1]
    for name in ("running_mean", "running_var", "gamma", "beta"):
        assert_native(backend, getattr(norm, name), "float64")
    assert_native(backend, net._state, "float64")
    np.testing.assert_array_equal(host(backend, net._state), np.concatenate(running_stats(net)))
    assert not np.array_equal(running_stats(net)[0], np.zeros(8))  # training moved them


def test_checkpoint_round_trip_keeps_the_running_statistics(backend: ax.Backend, tmp_path) -> None:
    x, y = data(48)
    net = bn_net(backend)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "bn.npz"
    net.save(path)
    loaded = ax.load(path, backend=backend)
    assert isinstance(loaded.layers[1], ax.BatchNorm) and loaded.num_state == 16
    assert_weights_equal(loaded.get_weights(), net.get_weights())
    assert_weights_equal(running_stats(loaded), running_stats(net))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)  # training continues identically
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert_weights_equal(loaded.get_weights(), net.get_weights(), rtol=1e-12, atol=1e-15)


def test_to_another_backend_moves_the_running_statistics(backend: ax.Backend) -> None:
    other_name = "array_api_strict" if backend.name != "array_api_strict" else "numpy"
    if backend_problem(other_name):
        pytest.skip(backend_problem(other_name))
    other = make_backend(other_name)
    x, y = data(48)
    net = bn_net(backend)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    stay = copy.deepcopy(net)
    weights, prediction = net.get_weights(), net.predict(x)
    net.to(other)
    assert net.backend.name == other_name
    norm = net.layers[1]
    assert_native(other, norm.running_mean, "float64")
    assert_native(other, norm.running_var, "float64")
    assert_weights_equal(net.get_weights(), weights)
    np.testing.assert_allclose(net.predict(x), prediction, rtol=1e-12, atol=1e-14)
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    stay.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert_weights_equal(net.get_weights(), stay.get_weights(), rtol=1e-10, atol=1e-12)


def test_pickle_and_deepcopy_keep_the_running_statistics(backend: ax.Backend) -> None:
    x, y = data(48)
    net = bn_net(backend)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net), copy.copy(net)):
        assert twin.backend.name == backend.name
        assert_weights_equal(twin.get_weights(), net.get_weights())
        np.testing.assert_array_equal(twin.predict(x), net.predict(x))
    twin = copy.deepcopy(net)
    before = running_stats(net)
    twin.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert_weights_equal(running_stats(net), before)  # no shared buffer
    assert not np.array_equal(running_stats(twin)[0], before[0])


def test_early_stopping_restores_the_running_statistics_of_the_best_epoch(backend: ax.Backend) -> None:
    """mode="max" on the (falling) loss: the first epoch is the best, training stops after
    two more, and the weights and running statistics of that first epoch come back."""
    x, y = data(64)
    net = bn_net(backend)
    record = Recorder()
    stop = ax.EarlyStopping(monitor="loss", mode="max", patience=2)
    history = net.fit(x, y, epochs=10, batch_size=16, callbacks=[record, stop], verbose=0)
    best = stop.best_epoch
    assert best is not None and best < len(history.history["loss"]) - 1
    assert len(record.epoch_end) == len(history.history["loss"])
    assert not np.array_equal(record.epoch_end[best][3], record.epoch_end[-1][3])  # the stats moved since
    assert_weights_equal(net.get_weights(), record.epoch_end[best])


@pytest.mark.parametrize("lr", [1e200, 1e100])
def test_divergence_rollback_restores_the_running_statistics(backend: ax.Backend, lr: float) -> None:
    """A huge learning rate: the network keeps the weights, running statistics included,
    from before the bad batch (``batch`` >= 1) or from the start of the bad epoch (0)."""
    x, y = data(48, seed=3)
    net = bn_net(backend, optimizer=ax.SGD(lr=lr), seed=1)
    record = Recorder(batches=True)
    with pytest.raises(ax.TrainingDivergedError) as info:
        net.fit(x, y, epochs=3, batch_size=16, callbacks=[record], verbose=0)
    epoch, batch = info.value.epoch, info.value.batch
    want = record.batch_begin[(epoch - 1, max(batch - 1, 0))]
    assert_weights_equal(net.get_weights(), want)
    assert all(np.isfinite(w).all() for w in net.get_weights())
    assert np.isfinite(host(backend, net._state)).all()


def overflowing_variance_net(backend: ax.Backend) -> ax.Network:
    """A first kernel so large that the batch variance of its outputs overflows: the
    running variance becomes inf while the loss and every parameter stay finite (the
    normalised output is 0)."""
    net = bn_net(backend, optimizer=ax.SGD(lr=0.1), seed=1)
    weights = net.get_weights()
    weights[0] = weights[0] * 1e160
    net.set_weights(weights)
    return net


def test_non_finite_running_statistics_are_rolled_back(backend: ax.Backend) -> None:
    x, y = data(48, seed=3)
    net = overflowing_variance_net(backend)
    initial = net.get_weights()
    with pytest.raises(ax.TrainingDivergedError) as info:
        net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert info.value.epoch == 1
    assert_weights_equal(net.get_weights(), initial)  # the first batch was the bad one


def test_non_finite_running_statistics_locate_the_bad_batch(backend: ax.Backend) -> None:
    x, y = data(48, seed=3)
    net = overflowing_variance_net(backend)
    with pytest.raises(ax.TrainingDivergedError, match="batch 1/3") as info:
        net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert (info.value.epoch, info.value.batch) == (1, 1)


# --------------------------------------------------------------------------- data-parallel


@pytest.mark.parametrize("size", [2, 3, 7])
@pytest.mark.parametrize("optimizer", [lambda: ax.SGD(lr=0.1, momentum=0.9), lambda: ax.Adam(lr=0.01)],
                         ids=["sgd-momentum", "adam"])
def test_ranks_train_on_the_global_batch_statistics(backend: ax.Backend, size: int, optimizer) -> None:
    """98 samples, global batch 16: shards of 1 to 8 samples, and empty ones (3 and 7
    ranks, last batch of 2): the weights and running statistics of one process."""
    x, y = data(98)
    val = data(30, seed=9)
    single = bn_net(backend, optimizer())
    expected = single.fit(x, y, epochs=2, batch_size=16, validation_data=val, verbose=0)

    def work(comm):  # type: ignore[no-untyped-def]
        net = bn_net(backend, optimizer())
        history = net.fit(x, y, epochs=2, batch_size=16, validation_data=val, verbose=0, comm=comm)
        return net.get_weights(), history.history

    results = run_ranks(size, work)
    for weights, history in results:
        assert_weights_equal(weights, single.get_weights(), rtol=1e-10, atol=1e-12)
        for key, values in expected.history.items():
            np.testing.assert_allclose(history[key], values, rtol=1e-10)
    for weights, _ in results[1:]:  # ranks agree bit for bit
        assert_weights_equal(weights, results[0][0])


def first_layer_norm_net(backend: ax.Backend, norm: ax.Layer) -> ax.Network:
    return ax.Network([norm, ax.Dense(8, "tanh"), ax.BatchNorm(), ax.Dense(3, "softmax")], input_size=5,
                      optimizer=ax.SGD(lr=0.1), backend=backend, dtype="float64", seed=1)


def ranks_match_one(backend: ax.Backend, make, size: int) -> None:  # type: ignore[no-untyped-def]
    x, y = data(98)
    single = make()
    single.fit(x, y, epochs=1, batch_size=16, verbose=0)

    def work(comm):  # type: ignore[no-untyped-def]
        net = make()
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, comm=comm)
        return net.get_weights()

    for weights in run_ranks(size, work):
        assert_weights_equal(weights, single.get_weights(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size", [2, 3])
def test_ranks_with_batch_norm_as_the_first_layer(backend: ax.Backend, size: int) -> None:
    """BatchNorm (with parameters) first: its backward computes no input gradient but
    still takes part in the backward all-reduce."""
    ranks_match_one(backend, lambda: first_layer_norm_net(backend, ax.BatchNorm()), size)


def test_ranks_with_a_parameter_free_batch_norm_first_and_no_empty_shard(backend: ax.Backend) -> None:
    ranks_match_one(backend, lambda: first_layer_norm_net(backend, ax.BatchNorm(center=False, scale=False)), 2)


def test_ranks_with_a_parameter_free_batch_norm_first_and_an_empty_shard(backend: ax.Backend) -> None:
    ranks_match_one(backend, lambda: first_layer_norm_net(backend, ax.BatchNorm(center=False, scale=False)), 3)


# --------------------------------------------------------------------------- one-sample batches


def test_a_last_batch_of_one_sample_is_refused_before_training(backend: ax.Backend) -> None:
    x, y = data(33)
    net = bn_net(backend)
    before, rng_state = net.get_weights(), net.rng.bit_generator.state
    with pytest.raises(ValueError, match=r"33 samples in batches of 16 leave a last batch of 1"):
        net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert_weights_equal(net.get_weights(), before)
    assert net.optimizer.steps == 0 and net.rng.bit_generator.state == rng_state
    with pytest.raises(ValueError, match="more than 1 sample"):
        net.fit(x[:1], y[:1], epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="more than 1 sample"):
        net.fit(x[:32], y[:32], epochs=1, batch_size=1, verbose=0)
    assert_weights_equal(net.get_weights(), before)
    net.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0)  # 2 batches of 16: fine
    assert net.optimizer.steps == 2
    # LayerNorm normalises each sample on its own: one-sample batches are fine
    ln = ax.Network([ax.Dense(8), ax.LayerNorm(), ax.Dense(3, "softmax")], input_size=5, backend=backend, seed=0)
    ln.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert ln.optimizer.steps == 3


@pytest.mark.on_device
def test_batch_norm_on_one_row_in_training_mode_raises(backend: ax.Backend) -> None:
    net = norm_net(backend, ax.BatchNorm())
    randomize(net, np.random.default_rng(0))
    layer, before = net.layers[0], running_stats(net)
    row = backend.asarray(np.ones((1, F)), dtype=net.dtype)
    with pytest.raises(ValueError, match="more than 1 sample per training batch"):
        layer.forward(row, training=True)
    assert_weights_equal(running_stats(net), before)
    assert tuple(layer.forward(row, training=False).shape) == (1, F)  # inference: fine
    assert net.predict(np.ones((1, F))).shape == (1, 2)


# --------------------------------------------------------------------------- anywhere, summary, dtype, syncs

STACKS = {
    "middle": lambda: [ax.Dense(64), ax.BatchNorm(), ax.ReLU(), ax.Dense(32), ax.LayerNorm(), ax.ReLU(),
                       ax.Dense(3, "softmax")],
    "first": lambda: [ax.BatchNorm(), ax.Dense(16, "relu"), ax.LayerNorm(), ax.Dense(3, "softmax")],
    "layernorm-first": lambda: [ax.LayerNorm(), ax.Dense(16), ax.BatchNorm(center=False, scale=False), ax.ReLU(),
                                ax.Dense(3, "softmax")],
    "before-output": lambda: [ax.Dense(16, "tanh"), ax.Dense(3), ax.BatchNorm(), ax.LayerNorm(),
                              ax.Dense(3, "softmax")],
}


@pytest.mark.parametrize("stack", list(STACKS))
def test_usable_anywhere_in_the_stack(backend: ax.Backend, small_classification, stack: str) -> None:
    x, y = small_classification
    net = ax.Network(STACKS[stack](), input_size=5, optimizer=ax.Adam(lr=1e-2), backend=backend, seed=0)
    history = net.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert history.history["accuracy"][-1] > 0.8
    assert net.predict(x[:1]).shape == (1, 3)


def test_summary_shows_trainable_and_non_trainable_params(backend: ax.Backend) -> None:
    net = ax.Network(STACKS["middle"](), input_size=5, backend=backend, seed=0)
    text = net.summary(print_fn=None)
    # Dense(64): 384; BatchNorm: 128 + 128 running; Dense(32): 2080; LayerNorm: 64; Dense(3): 99
    assert "Total params: 2,883" in text
    assert "Trainable params: 2,755  Non-trainable params: 128" in text
    rows = {line.split()[1]: line.split()[-1] for line in text.splitlines() if line[:1].isdigit()}
    assert rows["BatchNorm"] == "256" and rows["LayerNorm"] == "64"
    plain = ax.Network([ax.Dense(3, "softmax")], input_size=5, backend=backend, seed=0).summary(print_fn=None)
    assert "Non-trainable" not in plain


def test_float32_stays_float32(backend: ax.Backend) -> None:
    x, y = data(48)
    net = ax.Network([ax.Dense(8, use_bias=False), ax.BatchNorm(), ax.ReLU(), ax.LayerNorm(),
                      ax.Dense(3, "softmax")], input_size=5, backend=backend, dtype="float32", seed=0)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)  # float64 data in
    for layer in net.layers[1], net.layers[3]:
        for name in (*layer.param_names, *layer.state_names):
            assert_native(backend, getattr(layer, name), "float32")
    assert_native(backend, net._state, "float32")
    assert_native(backend, net._theta, "float32")
    assert all(w.dtype == np.float32 for w in net.get_weights())
    assert net.predict(x).dtype == np.float32
    out = net.predict(backend.asarray(x, dtype=backend.float_dtype("float64")))
    assert_native(backend, out, "float32")
    with net.backend.activate():
        a = backend.asarray(x[:16], dtype=net.dtype)
        for layer in net.layers:
            a = layer.forward(a, True)
    assert_native(backend, a, "float32")
    assert_native(backend, net._state, "float32")


def test_no_host_sync_per_training_step(backend: ax.Backend) -> None:
    if backend.name != "array_api_strict":
        pytest.skip("counts array_api_strict's conversions")
    x, y = data(64)
    net = bn_net(backend)
    net.build()
    xb = backend.asarray(x[:16], dtype=net.dtype)
    tb = backend.asarray(np.eye(3)[y[:16]], dtype=net.dtype)
    with backend.activate(), count_host_syncs() as syncs:
        for _ in range(3):
            net._forward_backward(xb, tb, None)
            net.optimizer.step()
    assert syncs == []
    counts = []
    for batch_size in (16, 8, 4):  # 4, 8 and 16 steps per epoch: the syncs are per epoch
        net = bn_net(backend)
        with count_host_syncs() as syncs:
            net.fit(x, y, epochs=2, batch_size=batch_size, validation_data=(x[:20], y[:20]), verbose=0)
        counts.append(len(syncs))
    assert counts[0] == counts[1] == counts[2], counts
    assert 0 < counts[0] <= 2 * 2 * 2, counts
