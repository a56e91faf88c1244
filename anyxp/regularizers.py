"""Weight regularizers, with Keras's names and definitions: a penalty added to the loss
that `fit` and `evaluate` report, and its gradient added to the parameter's gradient.

    L1(l1=0.01):          l1 * sum(|w|)
    L2(l2=0.01):          l2 * sum(w ** 2)
    L1L2(l1=0.0, l2=0.0): both

>>> Dense(64, "relu", kernel_regularizer=L2(1e-4))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .validation import as_real


class Regularizer:
    """``penalty(xp, w)`` (a 0-d array) and its ``gradient(xp, w)``, side by side."""

    name = "regularizer"

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = as_real(l1, f"{type(self).__name__} l1", minimum=0)
        self.l2 = as_real(l2, f"{type(self).__name__} l2", minimum=0)

    def penalty(self, xp: Any, w: Any) -> Any:
        total = 0.0
        if self.l1:
            total = total + self.l1 * xp.sum(xp.abs(w))
        if self.l2:
            total = total + self.l2 * xp.sum(w * w)
        return total

    def gradient(self, xp: Any, w: Any) -> Any:
        grad = 0.0
        if self.l1:  # l1 * sign(w), with sign(0) = 0 (compat's sign would sync on CuPy)
            grad = grad + self.l1 * (xp.astype(w > 0, w.dtype) - xp.astype(w < 0, w.dtype))
        if self.l2:
            grad = grad + (2.0 * self.l2) * w
        return grad

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.get_config().items())))


class L1(Regularizer):
    """``l1 * sum(|w|)`` (Keras's default l1=0.01)."""

    name = "L1"

    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w ** 2)`` (Keras's default l2=0.01; no factor 1/2, as in Keras)."""

    name = "L2"

    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)`` (Keras's defaults: both 0)."""

    name = "L1L2"


REGULARIZERS: dict[str, type[Regularizer]] = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}  # Keras's string names


def get_regularizer(spec: Any) -> Regularizer | None:
    """None, a `Regularizer`, a name (``"l2"``: Keras's defaults) or a saved
    ``{"name": "L2", "l2": 0.01}``."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, str):
        cls = _NAMES.get(spec.strip().lower()) or REGULARIZERS.get(spec.strip())
        if cls is None:
            raise ValueError(f"unknown regularizer {spec!r}; valid names are l1, l2, l1_l2")
        return cls()
    if isinstance(spec, dict):
        config = dict(spec)
        name = config.pop("name", None)
        if name not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {str(name)[:100]!r}; valid names are {', '.join(REGULARIZERS)}")
        return REGULARIZERS[name](**config)
    raise TypeError(f"a regularizer must be None, a name or a Regularizer, got {type(spec).__name__}")


def regularizer_config(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """What a layer's config stores: ``{"name": ..., **config}`` (None: none)."""
    return None if regularizer is None else {"name": regularizer.name, **regularizer.get_config()}
