"""Layers: `Dense` and `Dropout` (activation layers live in `anyxp.activations`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import random
from .activations import ACTIVATIONS, Activation, get_activation
from .backend import Backend
from .base import Layer
from .initializers import INITIALIZERS, Initializer, default_initializer, resolve_initializer
from .regularizers import Regularizer, get_regularizer, regularizer_config
from .validation import as_bool, as_int, as_real


def registered_name(table: dict[str, Any], obj: Any) -> str | None:
    """The name under which ``obj`` itself is in ``table`` (None: not registered)."""
    return next((name for name, known in table.items() if known is obj), None)


class Dense(Layer):
    """A fully connected layer: ``activation(x @ kernel + bias)``.

    ``kernel`` has shape (inputs, units). The default initializer suits the
    activation: He for the ReLU family, LeCun normal for SELU, Glorot otherwise.
    ``kernel_regularizer`` / ``bias_regularizer`` (`anyxp.regularizers`) add their
    penalty to the loss and its gradient to the parameter's.

    >>> layer = Dense(10, "relu", input_size=64)
    """

    def __init__(
        self,
        units: int,
        activation: str | Activation | None = None,
        *,
        use_bias: bool = True,
        init: str | Initializer | None = None,
        input_size: int | None = None,
        kernel_regularizer: Regularizer | str | None = None,
        bias_regularizer: Regularizer | str | None = None,
    ) -> None:
        super().__init__()
        self.units = as_int(units, "Dense units", minimum=1)
        self.activation = get_activation(activation)
        self.use_bias = as_bool(use_bias, "Dense use_bias")
        self.init = resolve_initializer(init or default_initializer(self.activation.name))
        self.param_names = ("kernel", "bias") if self.use_bias else ("kernel",)
        self.declared_input_size = None if input_size is None else as_int(input_size, "Dense input_size", minimum=1)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer) if self.use_bias else None
        if bias_regularizer is not None and not self.use_bias:
            raise ValueError("Dense bias_regularizer needs use_bias=True")
        self.regularizers = {name: reg for name, reg in (("kernel", self.kernel_regularizer),
                                                         ("bias", self.bias_regularizer)) if reg is not None}

    def compute_output_size(self, input_size: int) -> int:
        return self.units

    def size_for(self, input_size: int) -> tuple[int, int]:
        return input_size * self.units + (self.units if self.use_bias else 0), 0

    def initial_parameters(self, input_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        shape = (input_size, self.units)
        init = INITIALIZERS[self.init] if isinstance(self.init, str) else self.init
        kernel = np.asarray(init(rng, input_size, self.units, shape), dtype=np.float64)
        if kernel.shape != shape or not np.isfinite(kernel).all():
            problem = "non-finite values" if kernel.shape == shape else f"an array of shape {kernel.shape}"
            raise ValueError(f"the initializer {init!r} returned {problem} for a kernel of shape {shape}")
        params = {"kernel": kernel}
        if self.use_bias:
            params["bias"] = np.zeros(self.units)
        return params

    def build(self, input_size: int, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        super().build(input_size, backend, dtype, rng)
        self.activation.bind(backend, dtype)

    # -- forward and backward, side by side ----------------------------------------------
    def forward_logits(self, x: Any, training: bool = False) -> Any:
        z = self.backend.affine(x, self.kernel, self.bias if self.use_bias else None)
        if training:
            self._x = x
        return z

    def backward_logits(self, dz: Any, need_input_grad: bool = True) -> Any:
        self.backend.matmul_into(self._x.mT, dz, self.grad_kernel)
        if self.use_bias:
            self.backend.sum_rows_into(dz, self.grad_bias)
        return dz @ self.kernel.mT if need_input_grad else None

    def forward(self, x: Any, training: bool = False) -> Any:
        z = self.backend.affine(x, self.kernel, self.bias if self.use_bias else None)
        a = self.activation.apply(z)
        if training:
            self._x, self._z, self._a = x, z, a
        return a

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        dz = self.activation.derivative(self._z, self._a, dy)
        return self.backward_logits(dz, need_input_grad)

    @property
    def output_activation(self) -> str:
        return self.activation.name

    def get_config(self) -> dict[str, Any]:
        act = self.activation
        init = self.init if isinstance(self.init, str) else registered_name(INITIALIZERS, self.init) or self.init
        config: dict[str, Any] = {
            "units": self.units,
            "activation": act.name if not act.get_config() else {"name": act.name, **act.get_config()},
            "use_bias": self.use_bias,
            "init": init,
        }
        size = self.input_size if self.built else self.declared_input_size
        if size is not None:
            config["input_size"] = size
        for name, reg in self.regularizers.items():
            config[f"{name}_regularizer"] = regularizer_config(reg)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Dense:
        config = dict(config)
        act = config.get("activation")
        if isinstance(act, dict):
            act = dict(act)
            name = act.pop("name")
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}")
            config["activation"] = ACTIVATIONS[name](**act)
        return cls(**config)


class Dropout(Layer):
    """Inverted dropout: zero a fraction ``rate`` of the inputs while training and scale
    the rest by 1 / (1 - rate); the identity at inference.

    Masks come from the counter-based generator of `anyxp.random`: a pure function of the
    network's seed, the layer (its position, or its own ``seed`` if given), the optimizer's
    update count and the element's index in the batch. Nothing is reseeded, and the same
    seed gives the same masks on every backend.
    Set ``fixed_mask`` to an array to use that mask instead (e.g. for gradient checks).

    >>> layer = Dropout(0.2)
    """

    def __init__(self, rate: float, *, seed: int | None = None) -> None:
        super().__init__()
        self.rate = as_real(rate, "Dropout rate", minimum=0, maximum=1, open_max=True)
        self.seed = None if seed is None else as_int(seed, "Dropout seed")
        self.fixed_mask: Any = None
        self.bind_stream(0, 0)

    def bind_stream(self, network_seed: int, position: int, clock: Any = None) -> None:
        """Key the masks by ``network_seed`` and ``position`` (or by this layer's own
        ``seed``), and count them by ``clock.steps`` (the network's optimizer; 0 without)."""
        layer_words = (0, position) if self.seed is None else (1, self.seed)
        self._stream = random.derive_key(network_seed, *layer_words)
        self._clock = clock
        self.row_offset = 0  # the batch's first row in the global batch (set for data-parallel shards)

    def build(self, input_size: int, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        super().build(input_size, backend, dtype, rng)
        self._threshold = random.keep_threshold(self.rate)
        xp = self.xp
        self._scale = xp.asarray(1.0 / (1.0 - self.rate), dtype=dtype, device=backend.device)
        self._zero = xp.asarray(0.0, dtype=dtype, device=backend.device)
        self._indices: dict[tuple[int, ...], Any] = {}

    def mask(self, shape: tuple[int, ...], counter: int | None = None) -> Any:
        """The scaled mask (0 or 1 / (1 - rate)) for inputs of ``shape`` at update
        ``counter`` (default: the clock's current count); 24 array operations."""
        if counter is None:
            counter = 0 if self._clock is None else self._clock.steps
        index = self._index(shape)
        bits = random.random_bits(index, random.step_key(self._stream, counter))
        return self.xp.where(bits >= self._threshold, self._scale, self._zero)

    def _index(self, shape: tuple[int, ...]) -> Any:
        """Element indices for ``shape`` at the current row offset, cached (a few batch shapes)."""
        key = (self.row_offset, *shape)
        index = self._indices.get(key)
        if index is None:
            if len(self._indices) >= 8:
                self._indices.clear()
            with self.backend.activate():
                index = random.element_index(self.xp, shape, self.backend.device, self.row_offset)
            self._indices[key] = index
        return index

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training:  # inference touches no training state (predict may run beside fit)
            return x
        if self.rate == 0.0 and self.fixed_mask is None:
            self._mask = None
            return x
        self._mask = self.fixed_mask if self.fixed_mask is not None else self.mask(tuple(x.shape))
        return x * self._mask

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        return dy if self._mask is None else dy * self._mask

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"rate": self.rate}
        if self.seed is not None:
            config["seed"] = self.seed
        return config


def bind_dropout(layers: Sequence[Layer], network_seed: int, clock: Any) -> list[Dropout]:
    """Key every `Dropout` among a network's ``layers`` by the network's seed and the
    layer's position, counted by ``clock.steps`` (its optimizer); returns those layers."""
    dropouts = []
    for position, layer in enumerate(layers):
        if isinstance(layer, Dropout):
            layer.bind_stream(network_seed, position, clock)
            dropouts.append(layer)
    return dropouts
