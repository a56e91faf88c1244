"""The activations silu (swish), selu, mish, hard_sigmoid and log_softmax: names, layers,
gradients, PyTorch's (and Keras 3's) definitions, float32 stability, no host syncs, and
save/load, on the backend under test."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs

import anyxp as ax
from anyxp import activations as acts
from anyxp.activations import ACTIVATIONS, get_activation
from anyxp.checkpoint import LAYER_TYPES

NEW_NAMES = {
    "silu": acts.SiLU,
    "swish": acts.SiLU,
    "selu": acts.SELU,
    "mish": acts.Mish,
    "hard_sigmoid": acts.HardSigmoid,
    "log_softmax": acts.LogSoftmax,
}
NEW_CLASSES = [acts.SiLU, acts.SELU, acts.Mish, acts.HardSigmoid, acts.LogSoftmax]
CANONICAL = {"silu", "selu", "mish", "hard_sigmoid", "log_softmax"}
TORCH_FUNCTIONS = {  # name -> torch.nn.functional's function
    "silu": "silu",
    "selu": "selu",
    "mish": "mish",
    "hard_sigmoid": "hardsigmoid",
    "log_softmax": "log_softmax",
}


def built(layer: ax.Layer, backend: ax.Backend, inputs: int, dtype: str = "float64") -> ax.Layer:
    layer.build(inputs, backend, backend.float_dtype(dtype), np.random.default_rng(1))
    return layer


def gradient_inputs(n: int = 4, features: int = 6, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    """Away from the kinks (0 for SELU, +-3 for hard_sigmoid) by more than the
    finite-difference step; scale 3 puts some entries in hard_sigmoid's flat parts."""
    x = np.random.default_rng(seed).normal(scale=scale, size=(n, features))
    x[np.abs(x) < 1e-2] = 0.5
    x[np.abs(np.abs(x) - 3.0) < 1e-2] *= 1.1
    return x


def reference_inputs() -> np.ndarray:
    """Rows of 7: ordinary values, the kinks themselves, and large magnitudes."""
    rng = np.random.default_rng(11)
    special = [0.0, -0.0, 3.0, -3.0, 2.999, -2.999, 3.001, -3.001, 1e-300, -1e-300,
               20.0, -20.0, 25.0, -25.0, 40.0, -40.0, 80.0, -80.0, 700.0, -700.0, 1e4]
    values = np.concatenate([rng.normal(scale=4.0, size=70), np.linspace(-50.0, 50.0, 98), special,
                             [-1e4, 123.0, -0.5, 0.25, 7.0, -7.0, 1e-8]])
    return values.reshape(-1, 7)


def stability_inputs() -> np.ndarray:
    """float32 values up to 1e4 in magnitude, with rows of very different spreads."""
    x = np.concatenate([np.linspace(-1e4, 1e4, 63), [0.0, 3.0, -3.0, 1e4, -1e4, 88.0, -88.0, 89.0, -89.0,
                                                     104.0, -104.0, 1e-30, -1e-30, 9999.5, -9999.5]])
    rng = np.random.default_rng(2)
    return np.concatenate([x, rng.uniform(-1e4, 1e4, size=78)]).reshape(-1, 6).astype(np.float32)


# ------------------------------------------------------------------------------- names, config
def test_names_and_classes() -> None:
    for name, cls in NEW_NAMES.items():
        assert ACTIVATIONS[name] is cls
        activation = get_activation(name)
        assert type(activation) is cls and activation.get_config() == {}
        assert get_activation(f"  {name.upper()} ").name == cls.name  # names are case- and space-blind
        assert type(get_activation(cls)) is cls and type(get_activation(cls())) is cls
        assert issubclass(cls, ax.Activation)
    assert {cls.name for cls in NEW_CLASSES} == CANONICAL
    assert get_activation("swish").name == "silu"  # the alias saves as the canonical name


def test_checkpoint_knows_the_new_layer_types() -> None:
    for cls in NEW_CLASSES:
        assert LAYER_TYPES[cls.__name__] is cls


def test_exported_from_anyxp() -> None:
    for cls in NEW_CLASSES:
        assert getattr(ax, cls.__name__, None) is cls, cls.__name__
        assert cls.__name__ in ax.__all__


@pytest.mark.parametrize(
    ("name", "init"),
    [("selu", "lecun_normal"), ("silu", "he_normal"), ("swish", "he_normal"), ("mish", "he_normal"),
     ("hard_sigmoid", "glorot_uniform"), ("log_softmax", "glorot_uniform")],
)
def test_dense_default_initializer(name: str, init: str) -> None:
    assert ax.Dense(8, name).init == init
    assert ax.Dense(8, NEW_NAMES[name]()).init == init
    assert ax.Dense(8, name, init="orthogonal").init == "orthogonal"  # an explicit choice wins


def test_selu_weights_have_lecun_variance() -> None:
    layer = ax.Dense(400, "selu")
    layer.build(200, ax.get_backend("numpy"), np.float64, np.random.default_rng(0))
    np.testing.assert_allclose(np.var(layer.kernel), 1.0 / 200, rtol=0.02)


# ------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("cls", NEW_CLASSES, ids=lambda c: c.name)
def test_activation_layer_gradients(backend: ax.Backend, cls: type) -> None:
    layer = built(cls(), backend, 6)
    assert ax.check_gradients(layer, gradient_inputs()) < 1e-6


@pytest.mark.parametrize("name", sorted(NEW_NAMES))
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_gradients(backend: ax.Backend, name: str, use_bias: bool) -> None:
    layer = built(ax.Dense(5, name, use_bias=use_bias), backend, 6)
    assert ax.check_gradients(layer, gradient_inputs(scale=1.0)) < 1e-6


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_network_gradients(backend: ax.Backend, name: str) -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    net = ax.Network([ax.Dense(6, name), ax.Dense(5), NEW_NAMES[name](), ax.Dense(3)], input_size=4,
                     loss="mse", backend=backend, dtype="float32", seed=0)
    net.build()
    assert ax.check_gradients(net, x, y) < 1e-6


# ------------------------------------------------------------------------------- against PyTorch
def ours(backend: ax.Backend, name: str, x: np.ndarray, r: np.ndarray, dtype: str) -> tuple[Any, Any]:
    """Forward and input gradient (of sum(f(x) * r)) through the layer API, native arrays."""
    layer = built(NEW_NAMES[name](), backend, x.shape[-1], dtype)
    f = backend.float_dtype(dtype)
    out = layer.forward(backend.asarray(x, dtype=f), training=True)
    grad = layer.backward(backend.asarray(r, dtype=f))
    return out, grad


@pytest.mark.on_device
@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_matches_torch_in_float64(backend: ax.Backend, name: str) -> None:
    torch = pytest.importorskip("torch")
    x = reference_inputs()
    r = np.random.default_rng(3).normal(size=x.shape)
    fn = getattr(torch.nn.functional, TORCH_FUNCTIONS[name])
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = fn(xt, dim=-1) if name == "log_softmax" else fn(xt)
    (yt * torch.tensor(r, dtype=torch.float64)).sum().backward()
    want, want_grad = yt.detach().numpy(), xt.grad.numpy()

    out, grad = ours(backend, name, x, r, "float64")
    assert_native(backend, out, "float64")
    assert_native(backend, grad, "float64")
    np.testing.assert_allclose(backend.to_numpy(out), want, rtol=1e-12, atol=1e-12)
    if name == "hard_sigmoid":
        # PyTorch's hardsigmoid backward multiplies by float32(1/6) even in float64 (3e-8
        # off); the exact slope is that of Keras 3's formula (keras/src/backend/numpy/nn.py,
        # also its JAX backend), differentiated by autograd: 1/6 inside, 0 at +-3 and outside
        np.testing.assert_allclose(backend.to_numpy(grad), want_grad, rtol=5e-8, atol=1e-12)
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        h = xt / 6.0 + 0.5
        keras3 = torch.where(h <= 0.0, 0.0, torch.where(h >= 1.0, 1.0, h))
        (keras3 * torch.tensor(r, dtype=torch.float64)).sum().backward()
        np.testing.assert_allclose(backend.to_numpy(out), keras3.detach().numpy(), rtol=1e-15, atol=1e-16)
        want_grad = xt.grad.numpy()
    np.testing.assert_allclose(backend.to_numpy(grad), want_grad, rtol=1e-12, atol=1e-12)
    # a Dense layer names the same function
    dense = built(ax.Dense(7, name), backend, 7)
    eye = backend.asarray(np.eye(7), dtype=backend.float_dtype("float64"))
    dense.kernel[...] = eye
    via_dense = dense.forward(backend.asarray(x, dtype=backend.float_dtype("float64")))
    np.testing.assert_allclose(backend.to_numpy(via_dense), want, rtol=1e-12, atol=1e-12)


@pytest.mark.on_device
def test_hard_sigmoid_is_keras3s_definition(backend: ax.Backend) -> None:
    """Keras 3 (keras/src/backend/numpy/nn.py): clip(x / 6 + 0.5, 0, 1), the same function
    as relu6(x + 3) / 6; Keras 2's 0.2 * x + 0.5 is a different one."""
    x = reference_inputs()
    out, _ = ours(backend, "hard_sigmoid", x, np.ones_like(x), "float64")
    np.testing.assert_allclose(backend.to_numpy(out), np.clip(x / 6.0 + 0.5, 0.0, 1.0), rtol=1e-15, atol=1e-16)
    assert not np.allclose(backend.to_numpy(out), np.clip(0.2 * x + 0.5, 0.0, 1.0))


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forward_matches_keras3(backend: ax.Backend) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    x = reference_inputs()
    for name in sorted(NEW_NAMES):
        want = keras.ops.convert_to_numpy(getattr(keras.activations, name)(keras.ops.convert_to_tensor(x, "float64")))
        out, _ = ours(backend, name, x, np.ones_like(x), "float64")
        np.testing.assert_allclose(backend.to_numpy(out), want, rtol=1e-12, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------- float32
@pytest.mark.on_device
@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_float32_stays_float32_and_is_finite_up_to_1e4(backend: ax.Backend, name: str) -> None:
    x = stability_inputs()
    r = np.random.default_rng(4).normal(size=x.shape).astype(np.float32)
    out, grad = ours(backend, name, x, r, "float32")
    assert_native(backend, out, "float32")
    assert_native(backend, grad, "float32")
    out, grad = backend.to_numpy(out), backend.to_numpy(grad)
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    # and close to the float64 values
    out64, grad64 = ours(backend, name, x.astype(np.float64), r.astype(np.float64), "float64")
    out64, grad64 = backend.to_numpy(out64), backend.to_numpy(grad64)
    np.testing.assert_allclose(out, out64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, grad64, rtol=1e-5, atol=1e-5 * np.abs(r).max())
    # in a Dense layer and as a layer after one, through a whole float32 network
    net = ax.Network([ax.Dense(6, name), NEW_NAMES[name](), ax.Dense(2)], input_size=6, loss="mse",
                     backend=backend, dtype="float32", seed=0)
    history = net.fit(x * 1e-3, np.zeros((x.shape[0], 2)), epochs=1, batch_size=13, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(net.predict(x)).all()


@pytest.mark.on_device
def test_saturated_values_and_slopes(backend: ax.Backend) -> None:
    """At +-1e4 in float32, each function takes its limits exactly."""
    x = np.array([[-1e4, 1e4]], dtype=np.float32)
    expected = {  # name: (f(-1e4), f(1e4), f'(-1e4), f'(1e4))
        "silu": (0.0, 1e4, 0.0, 1.0),
        "mish": (0.0, 1e4, 0.0, 1.0),
        "selu": (-acts.SELU_SCALE * acts.SELU_ALPHA, acts.SELU_SCALE * 1e4, 0.0, acts.SELU_SCALE),
        "hard_sigmoid": (0.0, 1.0, 0.0, 0.0),
    }
    for name, (f_lo, f_hi, d_lo, d_hi) in expected.items():
        out, grad = ours(backend, name, x.T, np.ones_like(x.T), "float32")
        np.testing.assert_allclose(backend.to_numpy(out)[:, 0], np.float32([f_lo, f_hi]), rtol=1e-7, err_msg=name)
        np.testing.assert_allclose(backend.to_numpy(grad)[:, 0], np.float32([d_lo, d_hi]), rtol=1e-7, err_msg=name)
    out, grad = ours(backend, "log_softmax", x, np.float32([[1.0, 0.0]]), "float32")
    np.testing.assert_array_equal(backend.to_numpy(out), np.float32([[-2e4, 0.0]]))
    np.testing.assert_array_equal(backend.to_numpy(grad), np.float32([[1.0, -1.0]]))


# ------------------------------------------------------------------------------- no syncs
def test_no_host_syncs_and_no_data_dependent_shapes(backend: ax.Backend) -> None:
    if backend.name != "array_api_strict":
        pytest.skip("counted on array_api_strict")
    import array_api_strict

    x = backend.asarray(stability_inputs(), dtype=backend.float_dtype("float32"))
    layers = [built(cls(), backend, 6, "float32") for cls in NEW_CLASSES]
    flags = array_api_strict.get_array_api_strict_flags()
    array_api_strict.set_array_api_strict_flags(data_dependent_shapes=False)
    try:
        with count_host_syncs() as syncs:
            results = [layer.backward(layer.forward(x, training=True)) for layer in layers]
    finally:
        array_api_strict.set_array_api_strict_flags(**flags)
    assert syncs == []
    for grad in results:
        assert_native(backend, grad, "float32")


# ------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", sorted(NEW_NAMES))
def test_save_load_round_trip(backend: ax.Backend, name: str, tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 3))
    net = ax.Network([ax.Dense(6, name), ax.Dense(5), NEW_NAMES[name](), ax.Dense(3)], input_size=4,
                     loss="mse", optimizer=ax.Adam(lr=1e-2), backend=backend, dtype="float64", seed=3)
    net.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / f"{name}.npz"
    net.save(path)
    loaded = ax.load(path, backend=backend)
    canonical = NEW_NAMES[name].name
    assert type(loaded.layers[0].activation) is NEW_NAMES[name]
    assert loaded.layers[0].activation.name == canonical
    assert loaded.layers[0].init == net.layers[0].init
    assert type(loaded.layers[2]) is NEW_NAMES[name]
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
