"""Every activation, loss and layer (and a whole network) against central differences,
in float64, on the backend under test."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp as ax
from anyxp.activations import ACTIVATIONS

TOL = 1e-6
ACTIVATION_LAYERS = [
    ax.Identity(), ax.ReLU(), ax.LeakyReLU(0.1), ax.Sigmoid(), ax.Tanh(), ax.Softmax(),
    ax.GELU(), ax.ELU(0.7), ax.ELU(2.0), ax.LeakyReLU(1.5), ax.Softplus(),
    ax.SiLU(), ax.SELU(), ax.Mish(), ax.HardSigmoid(), ax.LogSoftmax(),
]


def built(layer: ax.Layer, backend: ax.Backend, inputs: int, dtype: str = "float64") -> ax.Layer:
    layer.build(inputs, backend, backend.float_dtype(dtype), np.random.default_rng(1))
    return layer


def inputs(n: int = 4, features: int = 5, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(scale=scale, size=(n, features))
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of the kinks of ReLU-like functions
    return x


def test_every_named_activation_is_covered() -> None:
    assert {type(a) for a in ACTIVATION_LAYERS} == set(ACTIVATIONS.values())


@pytest.mark.parametrize("activation", ACTIVATION_LAYERS, ids=lambda a: a.name)
def test_activation_gradients(backend: ax.Backend, activation: ax.Activation) -> None:
    layer = built(type(activation)(**activation.get_config()), backend, 5)
    assert ax.check_gradients(layer, inputs()) < TOL


@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS) - {"identity"}))
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_gradients(backend: ax.Backend, activation: str, use_bias: bool) -> None:
    layer = built(ax.Dense(3, activation, use_bias=use_bias), backend, 5)
    assert len(layer.parameters()) == (2 if use_bias else 1)
    assert ax.check_gradients(layer, inputs()) < TOL


def test_dropout_gradients_with_a_fixed_mask(backend: ax.Backend) -> None:
    layer = built(ax.Dropout(0.5), backend, 5)
    keep = np.random.default_rng(3).random((4, 5)) >= 0.5
    layer.fixed_mask = backend.asarray(keep * 2.0, dtype=backend.float_dtype("float64"))
    assert ax.check_gradients(layer, inputs()) < TOL


LOSS_CASES = [
    (ax.MSE(), "real"),
    (ax.MAE(), "real"),
    (ax.CrossEntropy(), "probabilities"),
    (ax.CrossEntropy(from_logits=True), "logits"),
    (ax.BinaryCrossEntropy(), "binary_probabilities"),
    (ax.BinaryCrossEntropy(from_logits=True), "logits"),
]


def loss_inputs(kind: str, n: int = 6, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    if kind == "real":
        out = rng.normal(size=(n, k))
        return out, out + rng.uniform(0.2, 1.0, size=(n, k)) * rng.choice([-1, 1], size=(n, k))
    onehot = np.eye(k)[rng.integers(0, k, size=n)]
    if kind == "probabilities":
        e = np.exp(rng.normal(size=(n, k)))
        return e / e.sum(axis=1, keepdims=True), onehot
    if kind == "binary_probabilities":
        return rng.uniform(0.05, 0.95, size=(n, k)), rng.integers(0, 2, size=(n, k)).astype(float)
    return rng.normal(scale=3.0, size=(n, k)), onehot


@pytest.mark.parametrize(("loss", "kind"), LOSS_CASES, ids=lambda c: repr(c) if isinstance(c, ax.Loss) else c)
def test_loss_gradients(backend: ax.Backend, loss: ax.Loss, kind: str) -> None:
    out, y = loss_inputs(kind)
    out_dev = backend.asarray(out, dtype=backend.float_dtype("float64"))
    assert ax.check_gradients(loss, out_dev, y) < TOL


@pytest.mark.parametrize(
    ("layers", "loss", "targets"),
    [
        ([ax.Dense(6, "tanh"), ax.Dense(3, "softmax")], "cross_entropy", "labels"),  # fused softmax
        ([ax.Dense(6, "relu"), ax.Dense(3), ax.Softmax()], "cross_entropy", "labels"),  # softmax layer
        ([ax.Dense(6, "elu"), ax.Dense(2, "sigmoid")], "binary_cross_entropy", "binary"),  # fused sigmoid
        ([ax.Dense(6, "gelu"), ax.Dropout(0.3), ax.Dense(3, "linear")], "mse", "real"),
        ([ax.Dense(6, "softplus"), ax.Dense(3, use_bias=False)], "mae", "real"),
    ],
    ids=["ce-fused", "ce-softmax-layer", "bce-fused", "mse-dropout", "mae"],
)
def test_network_gradients(backend: ax.Backend, layers: list, loss: str, targets: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 4))
    y = {
        "labels": rng.integers(0, 3, size=8),
        "binary": rng.integers(0, 2, size=(8, 2)).astype(float),
        "real": rng.normal(size=(8, 3)),
    }[targets]
    net = ax.Network(layers, input_size=4, loss=loss, backend=backend, dtype="float32", seed=0)
    net.build()
    before = net.get_weights()
    assert ax.check_gradients(net, x, y) < TOL  # checked on a float64 copy
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.on_device
def test_fused_cross_entropy_is_finite_for_huge_logits(backend: ax.Backend) -> None:
    f32 = backend.float_dtype("float32")
    loss = ax.CrossEntropy(from_logits=True).bind(backend.xp, f32)
    z = backend.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype=f32)
    y = backend.asarray([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=f32)
    value, grad = loss.value_and_grad(z, y, logits=True)
    value, grad = float(backend.to_numpy(value)), backend.to_numpy(grad)
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, 1e4, rtol=1e-6)  # sample 0: 2e4 nats, sample 1: 0
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


@pytest.mark.on_device
def test_fused_binary_cross_entropy_is_finite_for_huge_logits(backend: ax.Backend) -> None:
    f32 = backend.float_dtype("float32")
    loss = ax.BinaryCrossEntropy(from_logits=True).bind(backend.xp, f32)
    z = backend.asarray([[1e4], [-1e4], [1e4]], dtype=f32)
    y = backend.asarray([[1.0], [0.0], [0.0]], dtype=f32)
    value, grad = loss.value_and_grad(z, y, logits=True)
    np.testing.assert_allclose(float(backend.to_numpy(value)), 1e4 / 3, rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(grad)[:, 0], [0.0, 0.0, 1 / 3], atol=1e-7)


def test_check_gradients_catches_a_wrong_gradient(backend: ax.Backend) -> None:
    """The checker itself can fail: a layer with a deliberately wrong derivative."""

    class BrokenTanh(ax.Tanh):
        def derivative(self, z, a, da):  # type: ignore[no-untyped-def]
            return da * (1.0 - a)  # wrong

    layer = built(BrokenTanh(), backend, 5)
    assert ax.check_gradients(layer, inputs()) > 1e-2


def test_check_gradients_rejects_unbuilt_layers_and_missing_targets(backend: ax.Backend) -> None:
    with pytest.raises(ValueError, match="build"):
        ax.check_gradients(ax.Dense(3), inputs())
    with pytest.raises(ValueError, match="targets"):
        ax.check_gradients(ax.MSE(), backend.asarray(inputs()))
    with pytest.raises(TypeError, match="Network, Layer or Loss"):
        ax.check_gradients("dense", inputs())
