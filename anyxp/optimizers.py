"""Optimizers with PyTorch's names, defaults and update rules.

An optimizer updates pairs of (parameter, gradient) buffers in place. A `Network`
hands it one flat buffer of all its parameters and one of all its gradients, so a
step is a handful of whole-buffer operations whatever the depth; on NumPy the buffers
are split into contiguous chunks updated on several threads (NumPy releases the GIL).
State (moments, momentum buffers) lives on the device beside the parameters.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from . import kernels
from .backend import PARALLEL_MIN_ELEMENTS, Backend
from .validation import as_bool, as_real

State = dict[str, Any]


class Optimizer:
    """Base class: state handling and chunking; subclasses write `update`."""

    name = "optimizer"
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = as_real(lr, "lr", minimum=0)
        self.weight_decay = as_real(weight_decay, "weight_decay", minimum=0)
        self.steps = 0
        self.backend: Backend | None = None
        self.params: list[Any] = []
        self.grads: list[Any] = []
        self.states: list[State] = []
        self._chunks: list[tuple[Any, Any, State, Any]] = []
        self._chunk_kernel: kernels.ChunkKernel | None = None
        self._whole_kernel: Any = None

    # -- wiring ----------------------------------------------------------------------------
    def setup(self, params: list[Any], grads: list[Any], backend: Backend) -> None:
        """Attach to parameter/gradient buffers; state starts at zero, steps at 0."""
        self.backend = backend
        self.params, self.grads = list(params), list(grads)
        xp = backend.xp
        self.states = [{n: xp.zeros_like(p) for n in self.state_names} for p in self.params]
        self.steps = 0
        self._whole_kernel = kernels.whole_buffer_kernel(self)
        self._chunk_kernel = kernels.chunk_kernel(self)
        self._make_chunks()

    def _make_chunks(self) -> None:
        """Contiguous pieces of each buffer, one per thread (NumPy), with scratch space
        for the ``out=`` kernels."""
        threads = self.backend.threads
        xp = self.backend.xp
        self._chunks = []
        for p, g, state in zip(self.params, self.grads, self.states, strict=True):
            n = p.shape[0] if p.ndim == 1 else 0
            bounds = [0, n]
            if threads > 1 and n >= PARALLEL_MIN_ELEMENTS:
                bounds = [n * i // threads for i in range(threads + 1)]
            for lo, hi in itertools.pairwise(bounds):
                piece = (p[lo:hi], g[lo:hi], {k: s[lo:hi] for k, s in state.items()}) if n else (p, g, state)
                scratch = xp.empty_like(piece[0]) if self._chunk_kernel is not None else None
                self._chunks.append((*piece, scratch))

    # -- the step --------------------------------------------------------------------------
    def step(self) -> None:
        """Apply one update to every parameter buffer from its gradient buffer."""
        self.steps += 1
        self.prepare_step()
        if self._whole_kernel is not None:
            self._whole_kernel()
        elif len(self._chunks) == 1:
            self._update_chunk(self._chunks[0])
        else:
            self.backend.map_parallel(self._update_chunk, self._chunks)

    def _update_chunk(self, chunk: tuple[Any, Any, State, Any]) -> None:
        p, g, state, scratch = chunk
        if self._chunk_kernel is not None:
            self._chunk_kernel(p, g, state, scratch)
        else:
            self.update(p, g, state)

    def prepare_step(self) -> None:
        """Compute this step's host-side scalars (bias corrections...)."""

    def update(self, p: Any, g: Any, state: State) -> None:
        raise NotImplementedError

    # -- state -----------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, Any]:
        """The state buffers by name (``"m/0"``: state ``m`` of buffer 0)."""
        return {f"{k}/{i}": v for i, st in enumerate(self.states) for k, v in st.items()}

    def load_state_arrays(self, arrays: dict[str, Any], steps: int) -> None:
        """Copy saved state (host or device arrays) into the state buffers."""
        expected = self.state_arrays()
        if set(arrays) != set(expected):
            raise ValueError(
                f"optimizer state has entries {sorted(arrays)}, expected {sorted(expected)}"
            )
        for key, buf in expected.items():
            value = self.backend.asarray(arrays[key], dtype=buf.dtype)
            if tuple(value.shape) != tuple(buf.shape):
                raise ValueError(f"optimizer state {key!r} has shape {tuple(value.shape)}, expected {tuple(buf.shape)}")
            buf[...] = value
        self.steps = int(steps)

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def _decayed(self, p: Any, g: Any) -> Any:
        """PyTorch's coupled (L2) weight decay: g + weight_decay * p."""
        return g + self.weight_decay * p if self.weight_decay else g


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as in PyTorch.

    >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    name = "sgd"

    def __init__(
        self,
        lr: float = 1e-3,
        momentum: float = 0.0,
        *,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = as_real(momentum, "momentum", minimum=0)
        self.dampening = as_real(dampening, "dampening", minimum=0, maximum=1)
        self.nesterov = as_bool(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        self.state_names = ("momentum_buffer",) if self.momentum else ()

    def update(self, p: Any, g: Any, state: State) -> None:
        g = self._decayed(p, g)
        if self.momentum:
            buf = state["momentum_buffer"]
            if self.steps == 1:
                buf[...] = g  # PyTorch: the buffer starts as the first gradient
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba), with PyTorch's bias corrections and L2 ``weight_decay``.

    >>> opt = Adam(lr=2e-3)
    """

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.betas = _betas(betas)
        self.eps = as_real(eps, "eps", minimum=0)

    def prepare_step(self) -> None:
        # PyTorch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps); multiplied through by
        # sqrt(bc2) this is one pass fewer: p -= (lr sqrt(bc2) / bc1) * m / (sqrt(v) + eps sqrt(bc2))
        b1, b2 = self.betas
        bias2_sqrt = math.sqrt(1.0 - b2**self.steps)
        self._step_scaled = self.lr * bias2_sqrt / (1.0 - b1**self.steps)
        self._eps_scaled = self.eps * bias2_sqrt

    def update(self, p: Any, g: Any, state: State) -> None:
        b1, b2 = self.betas
        if self.decoupled:
            if self.weight_decay:
                p *= 1.0 - self.lr * self.weight_decay
        else:
            g = self._decayed(p, g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = self.backend.xp.sqrt(v)
        denom += self._eps_scaled
        step = m / denom
        step *= self._step_scaled
        p -= step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``), as in PyTorch.

    >>> opt = AdamW(lr=1e-3, weight_decay=1e-2)
    """

    name = "adamw"
    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop as in PyTorch: ``p -= lr * g / (sqrt(v) + eps)``, optional momentum.

    >>> opt = RMSprop(lr=1e-2)
    """

    name = "rmsprop"

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.alpha = as_real(alpha, "alpha", minimum=0, maximum=1, open_max=True)
        self.eps = as_real(eps, "eps", minimum=0)
        self.momentum = as_real(momentum, "momentum", minimum=0)
        self.state_names = ("square_avg", "momentum_buffer") if self.momentum else ("square_avg",)

    def update(self, p: Any, g: Any, state: State) -> None:
        g = self._decayed(p, g)
        v = state["square_avg"]
        v *= self.alpha
        v += (1.0 - self.alpha) * (g * g)
        avg = self.backend.xp.sqrt(v)
        avg += self.eps
        if self.momentum:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            p -= self.lr * buf
        else:
            step = g / avg
            step *= self.lr
            p -= step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum}


def _betas(betas: Any) -> tuple[float, float]:
    """Adam's (beta1, beta2), each in [0, 1)."""
    try:
        pair = None if isinstance(betas, str) else tuple(betas)
    except TypeError:
        pair = None
    if pair is None:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {type(betas).__name__} {betas!r}")
    if len(pair) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {len(pair)} values")
    b1, b2 = (as_real(b, f"betas[{i}]", minimum=0, maximum=1, open_max=True) for i, b in enumerate(pair))
    return b1, b2


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(spec: str | Optimizer) -> Optimizer:
    """An optimizer from a name (defaults as in PyTorch) or an instance (used as is)."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in OPTIMIZERS:
        return OPTIMIZERS[spec.strip().lower()]()
    raise ValueError(f"unknown optimizer {spec!r}; valid names are {', '.join(OPTIMIZERS)}")


def optimizer_from_config(name: str, config: dict[str, Any]) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZERS)}")
    config = dict(config)
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    return OPTIMIZERS[name](**config)
