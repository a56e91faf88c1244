"""Property-based checks of activations and losses (hypothesis), on the backend under test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import anyxp as ax
from anyxp.activations import SELU_ALPHA, SELU_SCALE

pytestmark = pytest.mark.on_device  # optimizers and properties are tested as components

FLOATS = st.floats(-1e4, 1e4, allow_nan=False, width=64)
MATRICES = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=FLOATS)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    # z - logsumexp(z) written as (z - max) - log(sum(exp(z - max))): z - (max + log(sum))
    # would round max + log(sum) to an ulp of max (up to 1e-12 here), the shifted form is exact
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def bound(activation: ax.Activation, backend: ax.Backend) -> ax.Activation:
    return activation.bind(backend, backend.float_dtype("float64"))


@SETTINGS
@given(z=MATRICES)
@pytest.mark.parametrize("name", sorted(ax.activations.ACTIVATIONS))
def test_activations_are_finite_and_match_numpy(backend, name: str, z: np.ndarray) -> None:
    act = bound(ax.activations.get_activation(name), backend)
    out = backend.to_numpy(act.apply(backend.asarray(z, dtype=backend.float_dtype("float64"))))
    assert np.isfinite(out).all()
    with np.errstate(over="ignore"):
        expected = {
            "linear": z, "identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
            "leaky_relu": np.where(z > 0, z, 0.01 * z),
            "sigmoid": np.exp(-np.logaddexp(0, -z)),
            "softplus": np.logaddexp(0, z),
            "elu": np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            "softmax": softmax(z),
            "gelu": 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
            "silu": z * np.exp(-np.logaddexp(0, -z)), "swish": z * np.exp(-np.logaddexp(0, -z)),
            "selu": SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0))),
            "mish": z * np.tanh(np.logaddexp(0, z)),
            "hard_sigmoid": np.clip(z / 6 + 0.5, 0, 1),
            "log_softmax": log_softmax(z),
        }[name]
    atol = {
        # sigmoid and softplus' derivative use (1 + tanh(z/2)) / 2: exact to ~1 ulp of 1 (absolute)
        "sigmoid": 1e-15,
        # z times that sigmoid: off by |z| * 1e-16 where sigmoid(z) < 1e-16 is rounded (|z| < 40)
        "silu": 1e-14, "swish": 1e-14,
        # anyxp's (z + 3) / 6 and z / 6 + 1/2 round differently: ~1 ulp of 1 (absolute)
        "hard_sigmoid": 1e-15,
        # log of the row's sum (>= 1), summed in the backend's order: ~1 ulp of 1 (absolute)
        "log_softmax": 1e-15,
    }.get(name, 1e-300)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=atol)


@SETTINGS
@given(z=MATRICES, data=st.data())
def test_cross_entropy_from_logits_matches_log_softmax(backend, z: np.ndarray, data) -> None:
    k = z.shape[1]
    labels = data.draw(arrays(np.int64, z.shape[0], elements=st.integers(0, k - 1)))
    y = np.eye(k)[labels]
    f64 = backend.float_dtype("float64")
    loss = ax.CrossEntropy(from_logits=True).bind(backend.xp, f64)
    value, grad = loss.value_and_grad(backend.asarray(z, dtype=f64), backend.asarray(y, dtype=f64), logits=True)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    expected = -np.mean(log_p[np.arange(len(z)), labels])
    np.testing.assert_allclose(float(backend.to_numpy(value)), expected, rtol=1e-10, atol=1e-12)
    g = backend.to_numpy(grad)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)  # softmax minus one-hot rows sum to 0
    np.testing.assert_allclose(g, (np.exp(log_p) - y) / len(z), atol=1e-12)


@SETTINGS
@given(out=MATRICES, data=st.data())
def test_regression_losses_are_nonnegative_and_zero_at_the_target(backend, out: np.ndarray, data) -> None:
    f64 = backend.float_dtype("float64")
    y = data.draw(arrays(np.float64, out.shape, elements=FLOATS))
    for loss in (ax.MSE(), ax.MAE()):
        loss.bind(backend.xp, f64)
        o, t = backend.asarray(out, dtype=f64), backend.asarray(y, dtype=f64)
        assert float(backend.to_numpy(loss(o, t))) >= 0.0
        assert float(backend.to_numpy(loss(o, o))) == 0.0
    mse_loss = ax.MSE().bind(backend.xp, f64)
    mse = float(backend.to_numpy(mse_loss(backend.asarray(out, dtype=f64), backend.asarray(y, dtype=f64))))
    np.testing.assert_allclose(mse, np.mean((out - y) ** 2), rtol=1e-12)
