"""`check_gradients`: analytic gradients against central differences, in float64."""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from .backend import to_numpy
from .base import Layer
from .layers import Dense, Dropout
from .losses import Loss


def check_gradients(obj: Any, x: Any, y: Any = None, *, eps: float = 1e-6) -> float:
    """The largest relative error between analytic and central-difference gradients.

    ``obj`` is a `Network` (with targets ``y``; gradients of the loss with respect to
    every parameter), a built `Layer` (gradients of ``sum(forward(x) * r)`` for a fixed
    random ``r``, with respect to ``x`` and every parameter) or a `Loss` (``x`` are the
    outputs, ``y`` the targets). The check runs in float64 on the object's own backend,
    on a float64 copy if needed; the object is not changed. For each gradient array the
    error is ``max|analytic - numeric| / max(max|analytic|, max|numeric|)``; the result
    is the largest over all arrays (about 1e-9 for a correct float64 gradient).

    >>> check_gradients(Dense(3, "tanh"), x)  # doctest: +SKIP
    """
    from .backend import get_backend
    from .network import Network

    # every check runs with the object's device current (CuPy creates arrays there)
    if isinstance(obj, Network):
        with obj.backend.activate():
            return _check_network(obj, x, y, eps)
    if isinstance(obj, Layer):
        if not obj.built:
            raise ValueError(f"build {obj!r} first: layer.build(input_size, backend, dtype, rng)")
        with obj.backend.activate():
            return _check_layer(obj, x, eps)
    if isinstance(obj, Loss):
        if y is None:
            raise ValueError("check_gradients(loss, outputs, targets) needs the targets")
        backend = _backend_of(x) or get_backend("numpy")
        with backend.activate():
            return _check_loss(obj, x, y, eps, backend)
    raise TypeError(f"check_gradients takes a Network, Layer or Loss, got {type(obj).__name__}")


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric))) / scale


def _numeric_gradient(f: Any, array: Any, eps: float) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to each entry of ``array``."""
    grad = np.zeros(tuple(array.shape))
    for idx in product(*(range(s) for s in array.shape)):
        original = float(to_numpy(array[idx]))
        array[idx] = original + eps
        plus = f()
        array[idx] = original - eps
        minus = f()
        array[idx] = original
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def _scalar(value: Any) -> float:
    return float(to_numpy(value))


def _check_layer(layer: Layer, x: Any, eps: float) -> float:
    backend = layer.backend
    xp = backend.xp
    f64 = backend.float_dtype("float64")
    layer = _float64_layer(layer)
    x64 = backend.asarray(np.array(to_numpy(x), dtype=np.float64), dtype=f64)
    out = layer.forward(x64, training=True)
    r = backend.asarray(np.random.default_rng(0).standard_normal(tuple(out.shape)), dtype=f64)

    def objective() -> float:
        return _scalar(xp.sum(layer.forward(x64, training=True) * r))

    layer.forward(x64, training=True)
    dx = np.array(to_numpy(layer.backward(r, need_input_grad=True)))
    analytic = [np.array(to_numpy(g)) for g in layer.gradients()]
    errors = [_relative_error(dx, _numeric_gradient(objective, x64, eps))]
    for param, grad in zip(layer.parameters(), analytic, strict=True):
        errors.append(_relative_error(grad, _numeric_gradient(objective, param, eps)))
    return max(errors)


def copy_layer(layer: Layer) -> Layer:
    """A new, unbuilt layer configured as ``layer`` (a Dense keeps its activation's and
    initializer's own objects: they need not be registered)."""
    config = {k: v for k, v in layer.get_config().items() if k != "input_size"}
    if isinstance(layer, Dense):
        act = layer.activation
        config.update(activation=type(act)(**act.get_config()), init=layer.init)
    return type(layer).from_config(config)


def _float64_layer(layer: Layer) -> Layer:
    """A float64 copy of a built layer (same parameters, same fixed dropout mask)."""
    backend = layer.backend
    f64 = backend.float_dtype("float64")
    copy = copy_layer(layer)
    copy.build(layer.input_size, backend, f64, np.random.default_rng(0))
    for name in layer.param_names:
        getattr(copy, name)[...] = backend.asarray(to_numpy(getattr(layer, name)), dtype=f64)
    if isinstance(layer, Dropout) and layer.fixed_mask is not None:
        copy.fixed_mask = backend.asarray(to_numpy(layer.fixed_mask), dtype=f64)
    return copy


def _check_loss(loss: Loss, out: Any, y: Any, eps: float, backend: Any) -> float:
    f64 = backend.float_dtype("float64")
    loss = type(loss)(**loss.get_config()).bind(backend.xp, f64)
    out64 = backend.asarray(np.array(to_numpy(out), dtype=np.float64), dtype=f64)
    y64 = backend.asarray(np.array(to_numpy(y), dtype=np.float64), dtype=f64)
    logits = loss.from_logits
    _, grad = loss.value_and_grad(out64, y64, logits=logits)

    def objective() -> float:
        return _scalar(loss.value(out64, y64, logits=logits))

    return _relative_error(to_numpy(grad), _numeric_gradient(objective, out64, eps))


def _backend_of(x: Any) -> Any:
    from .backend import get_backend

    try:
        import array_api_compat

        xp = array_api_compat.array_namespace(x)
    except TypeError:
        return None
    return get_backend(xp, device=array_api_compat.device(x))


def _check_network(net: Any, x: Any, y: Any, eps: float) -> float:
    from .training import prepare_data

    if y is None:
        raise ValueError("check_gradients(network, x, y) needs the targets y")
    net64 = _float64_network(net, np.asarray(to_numpy(x)).shape[1])
    data = prepare_data(net64, x, y).to_device(net64)
    # dropout masks are a function of the optimizer's update count (bound at build), which
    # no evaluation changes: every evaluation uses the same masks, and no generator is involved

    def objective() -> float:
        out = net64._forward(data.x, True)
        return _scalar(net64.loss.value(out, data.t, data.w, logits=net64._logits) + net64._penalty())

    state = net64.xp.asarray(net64._state, copy=True)  # training-mode passes move running statistics
    try:
        net64._forward_backward(data.x, data.t, data.w)
        analytic = np.array(to_numpy(net64._grad))
        return _relative_error(analytic, _numeric_gradient(objective, net64._theta, eps))
    finally:
        net64._state[...] = state


def _float64_network(net: Any, input_size: int) -> Any:
    from .network import Network

    if net.built and net.dtype_name == "float64":
        return net
    layers = [copy_layer(layer) for layer in net.layers]
    copy = Network(
        layers, input_size=net.input_size or input_size, loss=net.loss, optimizer="sgd",
        backend=net.backend, dtype="float64", seed=net.seed, metrics=net.metrics,
    )
    copy.build(net.input_size or input_size)
    if net.built:
        copy.set_weights(net.get_weights())
    return copy
