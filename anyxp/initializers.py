"""Weight initializers, drawn on the host from a seeded NumPy generator.

Drawing on the host (then moving once) makes one seed give identical initial weights
on every backend. Each initializer maps ``(rng, fan_in, fan_out, shape)`` to a float64
NumPy array.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, int, int, tuple[int, ...]], np.ndarray]



def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def lecun_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    limit = math.sqrt(3.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def lecun_normal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(1.0 / fan_in), size=shape)


def orthogonal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    """A (semi-)orthogonal matrix (Saxe et al.): keeps signal norms through deep stacks."""
    rows, cols = shape
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


def zeros(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal,
    "zeros": zeros,
}
ALIASES = {
    "glorot": "glorot_uniform",
    "xavier": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "he": "he_normal",
    "kaiming": "he_normal",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "lecun": "lecun_normal",
}
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "silu", "mish")


def default_initializer(activation: str) -> str:
    """He for the ReLU family, LeCun normal for SELU (which self-normalises only with it),
    Glorot otherwise (as Keras/PyTorch users expect)."""
    if activation == "selu":
        return "lecun_normal"
    return "he_normal" if activation in RELU_FAMILY else "glorot_uniform"


def resolve_initializer(name: str | Initializer) -> str | Initializer:
    """The canonical name of an initializer (a function ``(rng, fan_in, fan_out, shape)
    -> ndarray`` is kept as it is); `ValueError` listing the valid ones."""
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"init must be a name or a function (rng, fan_in, fan_out, shape) -> array, got {name!r}")
    if name in INITIALIZERS:  # a registered function's own name
        return name
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in INITIALIZERS:
        valid = ", ".join([*INITIALIZERS, *ALIASES])
        raise ValueError(f"unknown initializer {name!r}; valid names are {valid}")
    return key
