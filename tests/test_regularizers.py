"""Weight regularizers (anyxp.regularizers): Keras 3's penalties and gradients, in the
loss `fit` and `evaluate` report and in the parameters' gradients, checked against
Keras, a hand-written formula, central differences and a PyTorch training loop; saved
in checkpoints (and hostile headers refused); the same in data-parallel training."""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_distributed import run_ranks

import anyxp as ax
from anyxp.backend import to_numpy
from anyxp.regularizers import L1, L1L2, L2, Regularizer, get_regularizer

REGULARIZERS = [L1(0.03), L2(0.02), L1L2(l1=0.01, l2=0.05), L1L2(), L1()]


def weights() -> np.ndarray:
    """float64 weights with an exact zero (where L1's gradient is 0, as Keras's is)."""
    w = np.random.default_rng(3).normal(size=(4, 5))
    w[1, 2] = 0.0
    return w


def by_hand(reg: Regularizer, w: np.ndarray) -> tuple[float, np.ndarray]:
    """The penalty and its gradient from Keras's definitions, written out."""
    return reg.l1 * np.sum(np.abs(w)) + reg.l2 * np.sum(w**2), reg.l1 * np.sign(w) + 2 * reg.l2 * w


def host(value: Any) -> np.ndarray:
    return np.asarray(value if isinstance(value, float) else to_numpy(value))


# --------------------------------------------------------------------------- 1. the penalties


@pytest.mark.on_device
@pytest.mark.parametrize("reg", REGULARIZERS, ids=repr)
def test_penalty_and_gradient_are_the_formula(backend: ax.Backend, reg: Regularizer) -> None:
    w = weights()
    on_device = backend.asarray(w, dtype=backend.float_dtype("float64"))
    penalty, gradient = reg.penalty(backend.xp, on_device), reg.gradient(backend.xp, on_device)
    want_penalty, want_gradient = by_hand(reg, w)
    np.testing.assert_allclose(host(penalty), want_penalty, rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.broadcast_to(host(gradient), w.shape), want_gradient, rtol=1e-14, atol=0)
    if reg.l1 or reg.l2:  # device arrays of the weights' dtype, not host values
        for value in (penalty, gradient):
            assert backend.is_native(value) and value.dtype == on_device.dtype


@pytest.fixture(scope="module")
def keras64() -> Iterator[Any]:
    """Keras 3 on its torch backend, computing in float64 (restored after)."""
    if "keras" not in sys.modules:  # the backend is fixed at Keras's import
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:  # not installed, or its backend cannot load
        pytest.skip(f"keras cannot be imported: {exc}")
    if int(keras.__version__.split(".")[0]) < 3 or keras.backend.backend() != "torch":
        pytest.skip(f"Keras 3 on torch needed, found {keras.__version__} on {keras.backend.backend()}")
    before = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx(before)


@pytest.mark.on_device
@pytest.mark.parametrize("reg", REGULARIZERS, ids=repr)
def test_penalty_and_gradient_match_keras(keras64: Any, backend: ax.Backend, reg: Regularizer) -> None:
    import torch

    w = weights()
    theirs = getattr(keras64.regularizers, type(reg).__name__)(**reg.get_config())
    tensor = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    their_penalty = theirs(tensor)
    if their_penalty.requires_grad:  # Keras's L1L2() is a constant 0
        their_penalty.backward()
    their_gradient = np.zeros_like(w) if tensor.grad is None else tensor.grad.numpy()
    on_device = backend.asarray(w, dtype=backend.float_dtype("float64"))
    np.testing.assert_allclose(host(reg.penalty(backend.xp, on_device)), float(their_penalty.detach()), rtol=1e-14)
    ours = np.broadcast_to(host(reg.gradient(backend.xp, on_device)), w.shape)
    np.testing.assert_allclose(ours, their_gradient, rtol=1e-14, atol=0)


def test_names_follow_keras() -> None:
    assert get_regularizer("l1") == L1(0.01)
    assert get_regularizer("L2") == L2(0.01)
    assert get_regularizer("l1_l2") == L1L2(0.0, 0.0) == get_regularizer("L1L2")
    assert get_regularizer({"name": "L1L2", "l1": 0.5, "l2": 0.25}) == L1L2(l1=0.5, l2=0.25)
    reg = L2(0.3)
    assert get_regularizer(reg) is reg and get_regularizer(None) is None
    assert L1(0.1) != L1L2(l1=0.1)  # the same penalty, another class (and saved name)


# --------------------------------------------------------------------------- 2. in training

DATA_SEED = 7


def data(n: int, seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, np.argmax(x @ rng.normal(size=(4, 3)), axis=1)


def regularized_net(backend: ax.Backend, optimizer: Any = None, **regs: Regularizer | None) -> ax.Network:
    """tanh(4 -> 6), softmax(6 -> 3), with random (non-zero) biases."""
    regs = {"k0": L1L2(l1=0.01, l2=0.03), "b0": L2(0.02), "k1": L1(0.02), "b1": None, **regs}
    net = ax.Network(
        [ax.Dense(6, "tanh", kernel_regularizer=regs["k0"], bias_regularizer=regs["b0"]),
         ax.Dense(3, "softmax", kernel_regularizer=regs["k1"], bias_regularizer=regs["b1"])],
        input_size=4, optimizer=optimizer or ax.SGD(lr=0.1), backend=backend, dtype="float64", seed=5,
    )
    rng = np.random.default_rng(9)
    net.set_weights([w if w.ndim == 2 else rng.normal(scale=0.3, size=w.shape) for w in net.get_weights()])
    return net


def loss_by_hand(net: ax.Network, w: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of the network with weights ``w``, plus its penalty."""
    k0, b0, k1, b1 = w
    z = np.tanh(x @ k0 + b0) @ k1 + b1
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    data_loss = -np.mean(log_p[np.arange(len(y)), y])
    by_name = {"kernel": 0, "bias": 1}
    penalty = sum(by_hand(reg, w[2 * i + by_name[name]])[0]
                  for i, layer in enumerate(net.layers) for name, reg in layer.regularizers.items())
    return data_loss + penalty


def test_network_gradients_include_the_penalty(backend: ax.Backend) -> None:
    """Central differences of the loss `fit` minimizes (mean loss + penalty): the
    penalty's gradient is in the parameters' gradients."""
    net = regularized_net(backend, b1=L1L2(l1=0.02, l2=0.01))
    x, y = data(12, seed=11)
    assert ax.check_gradients(net, x, y) < 1e-6


def test_fit_and_evaluate_report_mean_loss_plus_penalty(backend: ax.Backend) -> None:
    net = regularized_net(backend)
    x, y = data(30)
    val = data(20, seed=8)
    before = net.get_weights()
    history = net.fit(x, y, epochs=1, batch_size=30, shuffle=False, validation_data=val, verbose=0)
    after = net.get_weights()
    assert not np.allclose(before[0], after[0])
    # one full batch: its loss is computed at the weights before the update
    np.testing.assert_allclose(history.history["loss"][0], loss_by_hand(net, before, x, y), rtol=1e-12)
    np.testing.assert_allclose(history.history["val_loss"][0], loss_by_hand(net, after, *val), rtol=1e-12)
    np.testing.assert_allclose(net.evaluate(x, y)["loss"], loss_by_hand(net, after, x, y), rtol=1e-12)
    np.testing.assert_allclose(net.evaluate(x, y, batch_size=7)["loss"], loss_by_hand(net, after, x, y), rtol=1e-12)


def torch_sgd(net: ax.Network, x: np.ndarray, y: np.ndarray, *, lr: float, epochs: int, batch_size: int,
              penalty: Callable[[list[Any]], Any] | None, weight_decay: float = 0.0) -> tuple[list[np.ndarray], list]:
    """Train a PyTorch copy of ``net`` (same weights, same batches, no shuffling) with
    ``penalty(params)`` added to the loss, or torch SGD's weight decay on the kernels."""
    torch = pytest.importorskip("torch")
    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in net.get_weights()]
    optimizer = torch.optim.SGD([{"params": params[0::2], "weight_decay": weight_decay},
                                 {"params": params[1::2]}], lr=lr)
    xt, yt = torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for lo in range(0, len(x), batch_size):
            xb, yb = xt[lo : lo + batch_size], yt[lo : lo + batch_size]
            logits = torch.tanh(xb @ params[0] + params[1]) @ params[2] + params[3]
            loss = torch.nn.functional.cross_entropy(logits, yb)
            if penalty is not None:
                loss = loss + penalty(params)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(xb)
        losses.append(total / len(x))
    return [p.detach().numpy() for p in params], losses


def test_trained_weights_match_torch_with_the_penalty_in_its_loss(backend: ax.Backend) -> None:
    net = regularized_net(backend, optimizer=ax.SGD(lr=0.05))
    x, y = data(40)

    def penalty(p: list[Any]) -> Any:  # regularized_net's: L1L2(0.01, 0.03), L2(0.02), L1(0.02)
        return 0.01 * p[0].abs().sum() + 0.03 * (p[0] ** 2).sum() + 0.02 * (p[1] ** 2).sum() + 0.02 * p[2].abs().sum()

    want, want_losses = torch_sgd(net, x, y, lr=0.05, epochs=3, batch_size=16, penalty=penalty)
    history = net.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    for got, expected in zip(net.get_weights(), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history.history["loss"], want_losses, rtol=1e-10)


def test_l2_is_torch_weight_decay_of_twice_l2_for_plain_sgd(backend: ax.Backend) -> None:
    """Keras's L2 has no 1/2: its gradient is 2 * l2 * w, torch's weight decay wd * w."""
    l2 = 0.025
    net = regularized_net(backend, optimizer=ax.SGD(lr=0.1), k0=L2(l2), b0=None, k1=L2(l2))
    x, y = data(40)
    want, _ = torch_sgd(net, x, y, lr=0.1, epochs=2, batch_size=16, penalty=None, weight_decay=2 * l2)
    net.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for got, expected in zip(net.get_weights(), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- 3. checkpoints


def test_checkpoint_keeps_the_regularizers(backend: ax.Backend, tmp_path: Path) -> None:
    net = regularized_net(backend, optimizer=ax.SGD(lr=0.05, momentum=0.9))
    x, y = data(30)
    net.fit(x, y, epochs=2, batch_size=10, verbose=0)
    net.save(tmp_path / "net.npz")
    loaded = ax.load(tmp_path / "net.npz", backend=backend)
    regs = [(layer.kernel_regularizer, layer.bias_regularizer) for layer in loaded.layers]
    assert regs == [(L1L2(l1=0.01, l2=0.03), L2(0.02)), (L1(0.02), None)]
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in net.layers]
    assert loaded.evaluate(x, y)["loss"] == pytest.approx(net.evaluate(x, y)["loss"], rel=1e-12)
    net.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)  # and they keep acting
    loaded.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    for got, want in zip(loaded.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


HEADER = "anyxp.json.npy"


def edited(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the checkpoint at ``path`` with its JSON header changed."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(np.load(io.BytesIO(members[HEADER])).tobytes())
    change(header)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members[HEADER] = buffer.getvalue()
    out = path.with_name("edited.npz")
    with zipfile.ZipFile(out, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return out


def kernel_regularizer(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(header: dict[str, Any]) -> None:
        header["layers"][0]["config"]["kernel_regularizer"] = value

    return change


FIELD = r"layers\[0\]\.config\.kernel_regularizer"
HOSTILE = {
    "string value": ({"name": "L1L2", "l1": "0.01", "l2": 0.03}, FIELD + r"\.l1: is '0\.01', expected a finite number"),
    "list value": ({"name": "L2", "l2": [0.02]}, FIELD + r"\.l2: is \[0\.02\], expected a finite number"),
    "bool value": ({"name": "L2", "l2": True}, FIELD + r"\.l2: is True, expected a finite number"),
    "NaN value": ({"name": "L2", "l2": float("nan")}, FIELD + r"\.l2: is nan"),
    "a list": ([0.01, 0.03], FIELD + r": is \[0\.01, 0\.03\], expected an object"),
    "a name": ("l2", FIELD + r": is 'l2', expected an object"),
    "no name": ({"l2": 0.01}, FIELD + r"\.name: is None, expected a string"),
    "name number": ({"name": 2, "l2": 0.01}, FIELD + r"\.name: is 2, expected a string"),
    # the constructor's errors name the layer (as an unknown activation's do)
    "unknown name": ({"name": "os.system", "l2": 0.01}, r"layers\[0\]: unknown regularizer 'os\.system'"),
    "negative": ({"name": "L2", "l2": -0.5}, r"layers\[0\]: L2 l2 must be"),
    "foreign key": ({"name": "L2", "l2": 0.1, "l1": 0.1}, r"layers\[0\]: .*'l1'"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=str)
def test_hostile_regularizer_configs_are_refused(backend: ax.Backend, tmp_path: Path, case: str) -> None:
    value, message = HOSTILE[case]
    regularized_net(backend).save(tmp_path / "net.npz")
    path = edited(tmp_path / "net.npz", kernel_regularizer(value))
    with pytest.raises(ax.CheckpointError, match=message) as info:
        ax.load(path, backend=backend)
    assert str(path) in str(info.value)


def test_a_bias_regularizer_on_a_layer_without_bias_is_refused_in_a_file(backend: ax.Backend, tmp_path: Path) -> None:
    net = ax.Network([ax.Dense(3, use_bias=False, kernel_regularizer="l2")], input_size=4, backend=backend)
    net.save(tmp_path / "net.npz")

    def change(header: dict[str, Any]) -> None:
        header["layers"][0]["config"]["bias_regularizer"] = {"name": "L2", "l2": 0.01}

    with pytest.raises(ax.CheckpointError, match=r"layers\[0\]: Dense bias_regularizer needs use_bias=True"):
        ax.load(edited(tmp_path / "net.npz", change), backend=backend)


class Smooth(Regularizer):
    """A regularizer of one's own: l2 * sum(w ** 4)."""

    name = "smooth"

    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def penalty(self, xp: Any, w: Any) -> Any:
        return self.l2 * xp.sum(w**4)

    def gradient(self, xp: Any, w: Any) -> Any:
        return (4.0 * self.l2) * w**3


def test_a_regularizer_of_ones_own_trains(backend: ax.Backend) -> None:
    net = regularized_net(backend, k0=Smooth(0.05))
    assert ax.check_gradients(net, *data(10, seed=3)) < 1e-6


def test_saving_a_regularizer_of_ones_own_is_refused(backend: ax.Backend, tmp_path: Path) -> None:
    net = regularized_net(backend, k0=Smooth(0.05))
    with pytest.raises(TypeError, match=r"regulari"):
        net.save(tmp_path / "net.npz")
    assert not (tmp_path / "net.npz").exists()


# --------------------------------------------------------------------------- 4. errors


ERRORS: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    "negative l1": (lambda: L1(-0.1), ValueError, r"L1 l1 must be .*>= 0, got -0\.1"),
    "negative l2": (lambda: L2(-1), ValueError, r"L2 l2 must be .*>= 0, got -1"),
    "negative L1L2 l2": (lambda: L1L2(l1=0.1, l2=-0.2), ValueError, r"L1L2 l2 must be"),
    "inf": (lambda: L2(float("inf")), ValueError, r"L2 l2 must be a finite number"),
    "string l1": (lambda: L1("0.1"), TypeError, r"L1 l1 must be a real number"),
    "bool l2": (lambda: L2(True), TypeError, r"L2 l2 must be a real number"),
    "unknown name": (lambda: get_regularizer("l3"), ValueError,
                     r"unknown regularizer 'l3'; valid names are l1, l2, l1_l2"),
    "unknown saved name": (lambda: get_regularizer({"name": "L3"}), ValueError, r"unknown regularizer 'L3'"),
    "a number": (lambda: get_regularizer(0.01), TypeError,
                 r"a regularizer must be None, a name or a Regularizer, got float"),
    "Dense unknown name": (lambda: ax.Dense(3, kernel_regularizer="ridge"), ValueError, r"unknown regularizer 'ridge'"),
    "Dense number": (lambda: ax.Dense(3, bias_regularizer=0.1), TypeError, r"got float"),
    "no bias, by name": (lambda: ax.Dense(3, use_bias=False, bias_regularizer="l2"), ValueError,
                         r"Dense bias_regularizer needs use_bias=True"),
    "no bias, instance": (lambda: ax.Dense(3, use_bias=False, bias_regularizer=L1(0.1)), ValueError,
                          r"needs use_bias=True"),
}


@pytest.mark.parametrize("case", ERRORS, ids=str)
def test_errors(case: str) -> None:
    make, error, message = ERRORS[case]
    with pytest.raises(error, match=message):
        make()


def test_no_bias_regularizer_without_bias_is_fine() -> None:
    layer = ax.Dense(3, use_bias=False, kernel_regularizer="l1")
    assert layer.regularizers == {"kernel": L1(0.01)}
    assert "bias_regularizer" not in layer.get_config()


# --------------------------------------------------------------------------- 5. data-parallel


def test_data_parallel_matches_one_process(backend: ax.Backend) -> None:
    """49 samples in global batches of 16: unequal shards, and an empty one (last batch 1)."""
    x, y = data(49)
    val = data(15, seed=8)
    single = regularized_net(backend, optimizer=ax.SGD(lr=0.05, momentum=0.9))
    expected = single.fit(x, y, epochs=2, batch_size=16, validation_data=val, verbose=0).history

    def work(comm: Any) -> tuple[list[np.ndarray], dict[str, list[float]]]:
        net = regularized_net(backend, optimizer=ax.SGD(lr=0.05, momentum=0.9))
        history = net.fit(x, y, epochs=2, batch_size=16, validation_data=val, verbose=0, comm=comm)
        return net.get_weights(), history.history

    for weights, history in run_ranks(2, work):
        for got, want in zip(weights, single.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(history[key], expected[key], rtol=1e-10)
