"""Loss functions, each with its gradient beside it.

Losses reduce as PyTorch's defaults do: the mean over the batch, and over the outputs
for MSE, MAE and binary cross-entropy, so a learning rate means the same thing in both
libraries. Sample weights follow Keras: ``sum(w_i * loss_i) / n``.

`CrossEntropy` and `BinaryCrossEntropy` take probabilities (the output of a final
softmax / sigmoid, as in Keras) or, with ``from_logits=True``, logits (as in
PyTorch). When a network ends in the matching activation, the loss is computed from
its logits with log-softmax (log-sigmoid) and the fused gradient ``(p - y) / n``:
finite even for logits of +-1e4. Both take ``label_smoothing`` (PyTorch's and Keras's
``y * (1 - ls) + ls / k`` over k classes; Keras's ``y * (1 - ls) + ls / 2`` for the
binary one), applied to the targets before the loss and its (fused) gradient.

`Huber` is PyTorch's ``HuberLoss`` (and Keras's ``Huber``), `KLDivergence` and `Poisson`
are Keras's, with Keras's epsilon (1e-7) in every dtype.
"""

from __future__ import annotations

from typing import Any

from .activations import sigmoid
from .validation import as_bool, as_real

_EPS = {"float32": 1e-7, "float64": 1e-15}
KERAS_EPSILON = 1e-7  # keras.config.epsilon(): KLDivergence and Poisson use it in any dtype

# array-api-compat's ``clip`` and ``sign`` assign through boolean masks, and a boolean-mask
# assignment is a blocking host sync on CuPy: these two are written with comparisons,
# ``minimum`` and ``maximum`` instead (no data-dependent shape anywhere in a training step).


def _clip(xp: Any, x: Any, low: float, high: float) -> Any:
    return xp.minimum(xp.maximum(x, low), high)


def _sign(xp: Any, x: Any) -> Any:
    return xp.astype(x > 0, x.dtype) - xp.astype(x < 0, x.dtype)


class Loss:
    """Base class: per-sample losses and their gradients; the reduction is shared."""

    name = "loss"
    link: str | None = None  # the output activation this loss fuses with

    def __init__(self, *, from_logits: bool = False) -> None:
        self.from_logits = as_bool(from_logits, "from_logits")
        self.xp: Any = None

    def bind(self, xp: Any, dtype: Any) -> Loss:
        self.xp = xp
        self.eps = _EPS["float32" if dtype == xp.float32 else "float64"]
        return self

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        """(loss of each sample, d(loss_i)/d(out_i) or None)."""
        raise NotImplementedError

    def sum_and_grad(self, out: Any, y: Any, weight: Any = None, *, logits: bool = False) -> tuple[Any, Any]:
        """The sum of the (weighted) per-sample losses (0-d array) and the gradient of
        the batch loss (their mean) with respect to ``out``."""
        per, grad = self.per_sample(out, y, logits, need_grad=True)
        scale = 1.0 / out.shape[0]
        if weight is None:
            grad *= scale
            return self.xp.sum(per), grad
        return self.xp.sum(per * weight), grad * (weight[:, None] * scale)

    def value_and_grad(self, out: Any, y: Any, weight: Any = None, *, logits: bool = False) -> tuple[Any, Any]:
        """The batch loss (0-d array) and dL/d(out); ``logits`` says what ``out`` is."""
        total, grad = self.sum_and_grad(out, y, weight, logits=logits)
        return total / out.shape[0], grad

    def value(self, out: Any, y: Any, weight: Any = None, *, logits: bool = False) -> Any:
        """The batch loss (0-d array)."""
        per, _ = self.per_sample(out, y, logits, need_grad=False)
        if weight is None:
            return self.xp.mean(per)
        return self.xp.sum(per * weight) / out.shape[0]

    def __call__(self, out: Any, y: Any, weight: Any = None) -> Any:
        return self.value(out, y, weight, logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": True} if self.from_logits else {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MSE(Loss):
    """Mean squared error, averaged over outputs and batch."""

    name = "mse"

    def __init__(self) -> None:
        super().__init__()

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        diff = out - y
        k = out.shape[1]
        per = self.xp.mean(diff * diff, axis=1)
        return per, (diff * (2.0 / k) if need_grad else None)

    def get_config(self) -> dict[str, Any]:
        return {}


class MAE(Loss):
    """Mean absolute error, averaged over outputs and batch."""

    name = "mae"

    def __init__(self) -> None:
        super().__init__()

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        diff = out - y
        per = self.xp.mean(self.xp.abs(diff), axis=1)
        return per, (_sign(self.xp, diff) * (1.0 / out.shape[1]) if need_grad else None)

    def get_config(self) -> dict[str, Any]:
        return {}


class Huber(Loss):
    """Huber loss, averaged over outputs and batch (``torch.nn.HuberLoss(delta=...)``,
    ``keras.losses.Huber(delta=...)``): ``0.5 * d**2`` where ``|d| <= delta``, else
    ``delta * (|d| - 0.5 * delta)``, for ``d = out - y``. Its gradient is ``d`` clipped to
    ``[-delta, delta]``."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = as_real(delta, "delta", minimum=0, open_min=True)

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp, delta = self.xp, self.delta
        diff = out - y
        a = xp.abs(diff)
        q = xp.minimum(a, delta)  # |d| in the quadratic zone, delta beyond it
        per = xp.mean(q * (a - 0.5 * q), axis=1)  # 0.5 d^2, or delta * (|d| - delta / 2)
        return per, (_clip(xp, diff, -delta, delta) * (1.0 / out.shape[1]) if need_grad else None)

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta}


class _Smoothed(Loss):
    """A cross-entropy with ``label_smoothing``: targets ``y * (1 - ls) + ls * share``."""

    def __init__(self, *, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits=from_logits)
        self.label_smoothing = as_real(label_smoothing, "label_smoothing", minimum=0, maximum=1)

    def _share(self, k: int) -> float:
        raise NotImplementedError

    def _smooth(self, y: Any) -> Any:
        ls = self.label_smoothing
        if ls == 0.0:
            return y
        return y * (1.0 - ls) + ls * self._share(y.shape[1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.label_smoothing:
            config["label_smoothing"] = self.label_smoothing
        return config


class CrossEntropy(_Smoothed):
    """Categorical cross-entropy for one-hot or probability targets (rows summing to 1,
    which `Network.fit` checks; integer labels become one-hot rows).

    ``label_smoothing`` mixes the targets with the uniform distribution, as
    ``torch.nn.CrossEntropyLoss(label_smoothing=)`` and Keras's do: ``y * (1 - ls) + ls / k``.
    """

    name = "cross_entropy"
    link = "softmax"

    def _share(self, k: int) -> float:
        return 1.0 / k

    def _log_softmax_parts(self, z: Any) -> tuple[Any, Any, Any]:
        xp = self.xp
        shifted = z - xp.max(z, axis=1, keepdims=True)
        e = xp.exp(shifted)
        return shifted, e, xp.sum(e, axis=1, keepdims=True)

    def sum_and_grad(self, out: Any, y: Any, weight: Any = None, *, logits: bool = False) -> tuple[Any, Any]:
        if not logits or weight is not None:
            return super().sum_and_grad(out, y, weight, logits=logits)
        # fused softmax + cross-entropy: -sum(y * log_softmax), and the gradient (p - y) / n
        # (rows of y sum to 1, smoothed or not)
        xp = self.xp
        y = self._smooth(y)
        shifted, e, total = self._log_softmax_parts(out)
        neg_log_p = xp.log(total) - shifted
        neg_log_p *= y
        loss = xp.sum(neg_log_p)
        grad = e / total
        grad -= y
        grad *= 1.0 / out.shape[0]
        return loss, grad

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp = self.xp
        y = self._smooth(y)
        if logits:
            shifted, e, total = self._log_softmax_parts(out)
            per = xp.log(total)[:, 0] - xp.sum(y * shifted, axis=1)
            return per, ((e / total) - y if need_grad else None)
        p = _clip(xp, out, self.eps, 1.0)
        per = -xp.sum(y * xp.log(p), axis=1)
        return per, (-y / p if need_grad else None)


class BinaryCrossEntropy(_Smoothed):
    """Binary cross-entropy for 0/1 (or probability) targets, averaged over outputs.

    ``label_smoothing`` pulls the targets towards 1/2, as
    ``keras.losses.BinaryCrossentropy(label_smoothing=)`` does: ``y * (1 - ls) + ls / 2``.
    """

    name = "binary_cross_entropy"
    link = "sigmoid"

    def _share(self, k: int) -> float:
        return 0.5

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp = self.xp
        k = out.shape[1]
        y = self._smooth(y)
        if logits:
            # softplus(z) - y * z, written without overflow
            terms = xp.maximum(out, 0.0) - y * out + xp.log1p(xp.exp(-xp.abs(out)))
            per = xp.mean(terms, axis=1)
            return per, ((sigmoid(xp, out) - y) * (1.0 / k) if need_grad else None)
        p = _clip(xp, out, self.eps, 1.0 - self.eps)
        per = -xp.mean(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p), axis=1)
        return per, ((p - y) / (p * (1.0 - p)) * (1.0 / k) if need_grad else None)


class KLDivergence(Loss):
    """Kullback-Leibler divergence of the outputs (probabilities) from the targets, as
    ``keras.losses.KLDivergence``: ``sum(y * log(y / p))`` over the outputs, both clipped
    to ``[1e-7, 1]``, averaged over the batch. The gradient is that of the clipped
    function: 0 where an output lies outside ``[1e-7, 1]``."""

    name = "kl_divergence"

    def __init__(self) -> None:
        super().__init__()

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp, eps = self.xp, KERAS_EPSILON
        yc = _clip(xp, y, eps, 1.0)
        p = _clip(xp, out, eps, 1.0)
        per = xp.sum(yc * xp.log(yc / p), axis=1)
        if not need_grad:
            return per, None
        inside = xp.astype((out >= eps) & (out <= 1.0), out.dtype)
        return per, -(yc / p) * inside

    def get_config(self) -> dict[str, Any]:
        return {}


class Poisson(Loss):
    """Poisson negative log-likelihood (up to a constant), as ``keras.losses.Poisson``:
    ``p - y * log(p + 1e-7)``, averaged over outputs and batch; the outputs are rates
    (> 0: end the network in softplus or exp)."""

    name = "poisson"

    def __init__(self) -> None:
        super().__init__()

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp = self.xp
        shifted = out + KERAS_EPSILON
        per = xp.mean(out - y * xp.log(shifted), axis=1)
        return per, ((1.0 - y / shifted) * (1.0 / out.shape[1]) if need_grad else None)

    def get_config(self) -> dict[str, Any]:
        return {}


LOSSES: dict[str, type[Loss]] = {
    "mse": MSE,
    "mean_squared_error": MSE,
    "mae": MAE,
    "mean_absolute_error": MAE,
    "cross_entropy": CrossEntropy,
    "categorical_crossentropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
    "huber": Huber,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "poisson": Poisson,
}


def get_loss(spec: str | Loss) -> Loss:
    """A loss from a name (``"cross_entropy"``) or an instance (copied)."""
    if isinstance(spec, Loss):
        return type(spec)(**spec.get_config())
    if isinstance(spec, type) and issubclass(spec, Loss):
        return spec()
    if isinstance(spec, str):
        for key in (spec, spec.strip().lower()):  # a registered name as given, then anyxp's lower case
            if key in LOSSES:
                return LOSSES[key]()
    raise ValueError(f"unknown loss {spec!r}; valid names are {', '.join(LOSSES)}")
