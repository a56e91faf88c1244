"""`Layer`: the interface every layer (and activation layer) implements."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend


class Layer:
    """A differentiable function with (optionally) trainable parameters.

    Subclasses implement `forward` and `backward` side by side. Parameters are
    attributes named in ``param_names``; their gradients live beside them as
    ``grad_<name>``, overwritten by each `backward`. A `Network` may re-home both into
    flat buffers (views), so a layer never replaces them, it only writes into them.
    """

    param_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.built = False
        self.input_size: int | None = None
        self.output_size: int | None = None
        self.backend: Backend | None = None
        self.xp: Any = None
        self.dtype: Any = None

    # -- building ------------------------------------------------------------------------
    def build(self, input_size: int, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        """Create the parameters for inputs of ``input_size`` features on ``backend``."""
        self.input_size = int(input_size)
        self.output_size = self.compute_output_size(self.input_size)
        self.backend = backend
        self.xp = backend.xp
        self.dtype = dtype
        for name, value in self.initial_parameters(self.input_size, rng).items():
            array = backend.asarray(value, dtype=dtype)
            setattr(self, name, array)
            setattr(self, "grad_" + name, self.xp.zeros_like(array))
        self.built = True

    def compute_output_size(self, input_size: int) -> int:
        return input_size

    def initial_parameters(self, input_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Host (NumPy float64) initial values of the parameters, by name."""
        return {}

    # -- computing -----------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        """Given dL/dy, write the parameter gradients and return dL/dx (or None)."""
        raise NotImplementedError

    # -- output activation (for losses fused with softmax / sigmoid) ---------------------
    @property
    def output_activation(self) -> str:
        """Name of the element-wise function this layer ends with ("linear" if none)."""
        return "linear"

    def forward_logits(self, x: Any, training: bool = False) -> Any:
        """Forward pass without the final activation (for fused losses)."""
        raise NotImplementedError(f"{type(self).__name__} has no separate output activation")

    def backward_logits(self, dz: Any, need_input_grad: bool = True) -> Any:
        """Backward pass from dL/d(pre-activation) (for fused losses)."""
        raise NotImplementedError(f"{type(self).__name__} has no separate output activation")

    # -- parameters ----------------------------------------------------------------------
    def parameters(self) -> list[Any]:
        return [getattr(self, n) for n in self.param_names]

    def gradients(self) -> list[Any]:
        return [getattr(self, "grad_" + n) for n in self.param_names]

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(getattr(self, n).shape) for n in self.param_names}

    @property
    def num_parameters(self) -> int:
        return sum(int(np.prod(s)) for s in self.parameter_shapes().values()) if self.built else 0

    # -- configuration -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (with ``input_size`` once built)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)
