"""Element-wise activation functions, each with its derivative beside it.

Every activation is also a layer (``ReLU()`` between two ``Dense`` layers) and can be
named as ``Dense(units, activation="relu")``. All are written from standard Array API
functions and are stable for large |x| (no overflow, no NaN).
"""

from __future__ import annotations

import math
from typing import Any

from .base import Layer
from .validation import as_real


class Activation(Layer):
    """Base class: ``apply(z) -> a`` and ``derivative(z, a, da) -> dz``."""

    name = "activation"

    def apply(self, z: Any) -> Any:
        raise NotImplementedError

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        """dL/dz given z, a = apply(z) and dL/da."""
        raise NotImplementedError

    def forward(self, x: Any, training: bool = False) -> Any:
        a = self.apply(x)
        if training:  # inference touches no training state (predict may run beside fit)
            self._z, self._a = x, a
        return a

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        return self.derivative(self._z, self._a, dy)

    @property
    def output_activation(self) -> str:
        return self.name

    def forward_logits(self, x: Any, training: bool = False) -> Any:
        return x

    def backward_logits(self, dz: Any, need_input_grad: bool = True) -> Any:
        return dz

    def bind(self, backend: Any, dtype: Any) -> Activation:
        """Attach a backend without building a layer (used inside `Dense`)."""
        self.backend, self.xp, self.dtype = backend, backend.xp, dtype
        return self


class Identity(Activation):
    """f(x) = x (``"linear"``)."""

    name = "linear"

    def apply(self, z: Any) -> Any:
        return z

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        return da


class ReLU(Activation):
    """f(x) = max(x, 0)."""

    name = "relu"

    def apply(self, z: Any) -> Any:
        return self.xp.maximum(z, 0.0)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # a multiply by the 0/1 mask: several times faster than where() on CPU
        return da * self.xp.astype(a > 0, da.dtype)


class LeakyReLU(Activation):
    """f(x) = x for x > 0, alpha * x otherwise."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = as_real(alpha, "LeakyReLU alpha")

    def apply(self, z: Any) -> Any:
        if 0.0 <= self.alpha <= 1.0:
            return self.xp.maximum(z, self.alpha * z)
        return self.xp.where(z > 0, z, self.alpha * z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        slope = self.xp.astype(z > 0, da.dtype)
        slope *= 1.0 - self.alpha
        slope += self.alpha
        return da * slope

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Sigmoid(Activation):
    """f(x) = 1 / (1 + exp(-x)), computed as (1 + tanh(x / 2)) / 2: no overflow, and
    accurate to about one unit in the last place of 1 (absolute, not relative, for
    outputs near 0; the losses fused with a sigmoid work from logits instead)."""

    name = "sigmoid"

    def apply(self, z: Any) -> Any:
        return sigmoid(self.xp, z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        return da * a * (1.0 - a)


class Tanh(Activation):
    """f(x) = tanh(x)."""

    name = "tanh"

    def apply(self, z: Any) -> Any:
        return self.xp.tanh(z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        return da * (1.0 - a * a)


class Softmax(Activation):
    """Softmax over the last axis, shifted by the row maximum."""

    name = "softmax"

    def apply(self, z: Any) -> Any:
        xp = self.xp
        e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        return a * (da - self.xp.sum(da * a, axis=-1, keepdims=True))


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Activation):
    """Gaussian error linear unit, tanh approximation (the standard has no erf)."""

    name = "gelu"

    def apply(self, z: Any) -> Any:
        t = self.xp.tanh(_GELU_C * (z + 0.044715 * z * z * z))
        return 0.5 * z * (1.0 + t)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        z2 = z * z
        t = self.xp.tanh(_GELU_C * (z + 0.044715 * z2 * z))
        dt = (1.0 - t * t) * (_GELU_C * (1.0 + 3 * 0.044715 * z2))
        return da * (0.5 * (1.0 + t) + 0.5 * z * dt)


class ELU(Activation):
    """f(x) = x for x > 0, alpha * (exp(x) - 1) otherwise."""

    name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = as_real(alpha, "ELU alpha", minimum=0)

    def apply(self, z: Any) -> Any:
        xp = self.xp
        negative = xp.expm1(xp.minimum(z, 0.0))
        negative *= self.alpha
        return negative + xp.maximum(z, 0.0)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # 1 for z > 0, alpha * exp(z) = a + alpha otherwise
        xp = self.xp
        slope = xp.exp(xp.minimum(z, 0.0))
        slope *= self.alpha
        return xp.where(z > 0, da, da * slope)

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Activation):
    """f(x) = log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|))."""

    name = "softplus"

    def apply(self, z: Any) -> Any:
        return softplus(self.xp, z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        return da * sigmoid(self.xp, z)


class SiLU(Activation):
    """f(x) = x * sigmoid(x) (``"silu"``, also named ``"swish"``), with the overflow-free
    sigmoid below: finite value and gradient for any finite x."""

    name = "silu"

    def apply(self, z: Any) -> Any:
        return z * sigmoid(self.xp, z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # s + z * s * (1 - s) = s + a * (1 - s): no product of z with a huge factor
        s = sigmoid(self.xp, z)
        slope = 1.0 - s
        slope *= a
        slope += s
        return da * slope


# PyTorch's (and Keras's) constants of Klambauer et al. (2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class SELU(Activation):
    """f(x) = scale * x for x > 0, scale * alpha * (exp(x) - 1) otherwise (self-normalising
    with `lecun_normal` weights, the default of ``Dense(units, "selu")``)."""

    name = "selu"

    def apply(self, z: Any) -> Any:
        xp = self.xp
        negative = xp.expm1(xp.minimum(z, 0.0))
        negative *= SELU_SCALE * SELU_ALPHA
        return negative + SELU_SCALE * xp.maximum(z, 0.0)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # scale for z > 0, scale * alpha * exp(z) otherwise (as PyTorch's, also at z = 0)
        xp = self.xp
        slope = xp.exp(xp.minimum(z, 0.0))
        slope *= SELU_SCALE * SELU_ALPHA
        return xp.where(z > 0, da * SELU_SCALE, da * slope)


class Mish(Activation):
    """f(x) = x * tanh(softplus(x)), with softplus as max(x, 0) + log1p(exp(-|x|))."""

    name = "mish"

    def apply(self, z: Any) -> Any:
        return z * self.xp.tanh(softplus(self.xp, z))

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # tanh(sp) + z * sigmoid(z) * (1 - tanh(sp)^2), sp = softplus(z), sp' = sigmoid(z)
        xp = self.xp
        t = xp.tanh(softplus(xp, z))
        slope = t * t
        slope -= 1.0
        slope *= sigmoid(xp, z)
        slope *= z  # z times 0 where |z| is huge: tanh(sp) = 1 or sigmoid(z) = 0 exactly
        return da * (t - slope)


class HardSigmoid(Activation):
    """f(x) = relu6(x + 3) / 6 = min(max(x / 6 + 1/2, 0), 1): Keras 3's (and PyTorch's)
    definition; Keras 2's was 0.2 * x + 0.5 clipped to [0, 1]. The derivative is 1/6
    for -3 < x < 3 and 0 elsewhere (0 at x = +-3, as PyTorch's; PyTorch's float64
    backward multiplies by float32(1/6), 3e-8 off, where this one is exact)."""

    name = "hard_sigmoid"

    def apply(self, z: Any) -> Any:
        xp = self.xp
        a = xp.minimum(xp.maximum(z + 3.0, 0.0), 6.0)
        a /= 6.0
        return a

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        slope = self.xp.astype(self.xp.abs(z) < 3.0, da.dtype)
        slope /= 6.0
        return da * slope


class LogSoftmax(Activation):
    """log(softmax(x)) over the last axis: x - max(x) - log(sum(exp(x - max(x))))."""

    name = "log_softmax"

    def apply(self, z: Any) -> Any:
        xp = self.xp
        shifted = z - xp.max(z, axis=-1, keepdims=True)
        shifted -= xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        return shifted

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        # da - softmax(z) * sum(da), with softmax(z) = exp(a) <= 1
        xp = self.xp
        return da - xp.exp(a) * xp.sum(da, axis=-1, keepdims=True)


def softplus(xp: Any, z: Any) -> Any:
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def sigmoid(xp: Any, z: Any) -> Any:
    """Logistic function without overflow: (1 + tanh(z / 2)) / 2, in 4 operations."""
    s = xp.tanh(z * 0.5)
    s *= 0.5
    s += 0.5
    return s


ACTIVATIONS: dict[str, type[Activation]] = {
    "linear": Identity,
    "identity": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
    "gelu": GELU,
    "elu": ELU,
    "softplus": Softplus,
    "silu": SiLU,
    "swish": SiLU,
    "selu": SELU,
    "mish": Mish,
    "hard_sigmoid": HardSigmoid,
    "log_softmax": LogSoftmax,
}


def get_activation(spec: str | Activation | None) -> Activation:
    """An activation from a name (``"relu"``), an instance, or None (identity)."""
    if spec is None:
        return Identity()
    if isinstance(spec, Activation):
        return type(spec)(**spec.get_config())
    if isinstance(spec, type) and issubclass(spec, Activation):
        return spec()
    if isinstance(spec, str):
        for key in (spec, spec.strip().lower()):  # a registered name as given, then anyxp's lower case
            if key in ACTIVATIONS:
                return ACTIVATIONS[key]()
    raise ValueError(f"unknown activation {spec!r}; valid names are {', '.join(ACTIVATIONS)}")
