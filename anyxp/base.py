"""`Layer`: the interface every layer (and activation layer) implements."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend

SIZE_PROBE_LIMIT = 1 << 16  # features: the largest input `Layer.size_for` probes by drawing


class Layer:
    """A differentiable function with (optionally) trainable parameters.

    Subclasses implement `forward` and `backward` side by side. Parameters are
    attributes named in ``param_names``; their gradients live beside them as
    ``grad_<name>``, overwritten by each `backward`. Non-trainable state (BatchNorm's
    running statistics) is named in ``state_names``: saved, moved and restored with the
    parameters, never touched by the optimizer. A `Network` may re-home all of them into
    flat buffers (views), so a layer never replaces them, it only writes into them.
    """

    param_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    regularizers: dict[str, Any] = {}  # noqa: RUF012 (never mutated) parameter name -> `Regularizer`

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
        for name, value in self.initial_state(self.input_size).items():
            setattr(self, name, backend.asarray(value, dtype=dtype))
        self.built = True

    def compute_output_size(self, input_size: int) -> int:
        return input_size

    def size_for(self, input_size: int) -> tuple[int, int]:
        """How many parameters and non-trainable values this layer has for inputs of
        ``input_size`` features, without building it: `load` bounds a file's declared
        size by it before allocating anything. anyxp's layers count; this default (for
        layers of your own) draws the initial values on the host, for inputs of at most
        `SIZE_PROBE_LIMIT` features; define it to count instead."""
        if not (self.param_names or self.state_names):
            return 0, 0
        if input_size > SIZE_PROBE_LIMIT:
            raise ValueError(f"cannot bound the size of a {type(self).__name__} layer for {input_size} inputs: "
                             "define its size_for(input_size)")
        params = self.initial_parameters(input_size, np.random.default_rng(0))
        state = self.initial_state(input_size)
        return sum(int(np.size(v)) for v in params.values()), sum(int(np.size(v)) for v in state.values())

    def initial_parameters(self, input_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Host (NumPy float64) initial values of the parameters, by name."""
        return {}

    def initial_state(self, input_size: int) -> dict[str, np.ndarray]:
        """Host initial values of the non-trainable state, by name (``state_names``)."""
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

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of what `Network.get_weights` returns of this layer: the parameters,
        then the non-trainable state (as Keras orders them)."""
        return {n: tuple(getattr(self, n).shape) for n in (*self.param_names, *self.state_names)}

    @property
    def num_parameters(self) -> int:
        """Trainable parameters."""
        return sum(int(np.prod(s)) for s in self.parameter_shapes().values()) if self.built else 0

    @property
    def num_state(self) -> int:
        """Non-trainable values (running statistics)."""
        return sum(int(np.prod(getattr(self, n).shape)) for n in self.state_names) if self.built else 0

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
