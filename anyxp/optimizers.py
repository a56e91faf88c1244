"""Optimizers with PyTorch's names, defaults and update rules (and Lion, which PyTorch
lacks: the paper's rule, as Keras 3 runs it).

An optimizer updates pairs of (parameter, gradient) buffers in place. A `Network`
hands it one flat buffer of all its parameters and one of all its gradients, so a
step is a handful of whole-buffer operations whatever the depth; on NumPy the buffers
are split into contiguous chunks updated on several threads (NumPy releases the GIL).
State (moments, momentum buffers) lives on the device beside the parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from . import kernels
from .backend import PARALLEL_MIN_ELEMENTS, Backend
from .schedules import LearningRateSchedule, as_learning_rate, schedule_from_config
from .validation import as_bool, as_real

State = dict[str, Any]
LearningRate = float | Callable[[int], float]
CLIP_EPS = kernels.CLIP_EPS


class Optimizer:
    """Base class: learning rate (a number or a schedule), gradient clipping, state
    handling and chunking; subclasses write `update`.

    ``lr`` is a number or a schedule ``step -> lr`` (`anyxp.schedules`, or any callable),
    where ``step`` counts updates from 0. Gradient clipping, as Keras names it (at most
    one): ``clipvalue`` clamps each element to ``[-clipvalue, clipvalue]``; ``clipnorm``
    scales each parameter tensor whose norm exceeds it; ``global_clipnorm`` scales all of
    them together. The norms scale as PyTorch's ``clip_grad_norm_``: by
    ``max_norm / (norm + 1e-6)`` when below 1, on the device, with no host sync.
    """

    name = "optimizer"
    state_names: tuple[str, ...] = ()
    clipvalue: float | None
    clipnorm: float | None
    global_clipnorm: float | None

    def __init__(
        self,
        lr: LearningRate,
        weight_decay: float = 0.0,
        *,
        clipvalue: float | None = None,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        self.learning_rate = as_learning_rate(lr)
        rate = self.learning_rate
        self._lr = rate if isinstance(rate, float) else _scheduled(rate, 0)
        self.weight_decay = as_real(weight_decay, "weight_decay", minimum=0)
        clips = {"clipvalue": clipvalue, "clipnorm": clipnorm, "global_clipnorm": global_clipnorm}
        given = [name for name, value in clips.items() if value is not None]
        if len(given) > 1:
            raise ValueError(f"pass at most one of clipvalue, clipnorm and global_clipnorm, got {', '.join(given)}")
        for name, value in clips.items():
            setattr(self, name, None if value is None else as_real(value, name, minimum=0, open_min=True))
        self.steps = 0
        self.backend: Backend | None = None
        self.params: list[Any] = []
        self.grads: list[Any] = []
        self.states: list[State] = []
        self._chunks: list[tuple[Any, Any, State, Any]] = []
        self._chunk_kernel: kernels.ChunkKernel | None = None
        self._whole_kernel: Any = None
        self._clip: Callable[[], None] | None = None  # clips the gradients as asked (None: no clipping)
        # a factor of this step's gradients that the update applies: NumPy's Adam and
        # PyTorch's fused float32 Adam take global_clipnorm's factor into their update
        # instead of scaling the gradients first (`kernels.clip_kernel`)
        self._grad_scale = 1.0
        self._tensor_grads: list[Any] = []

    # -- the learning rate -------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the current (or, between steps, the last) update."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not isinstance(self.learning_rate, float):
            raise ValueError(
                f"cannot set the learning rate of {type(self).__name__}: a schedule drives it "
                f"({self.learning_rate!r}); create the optimizer with a number to set it by hand"
            )
        self.learning_rate = self._lr = as_real(value, "lr", minimum=0)

    @property
    def current_lr(self) -> float:
        """The learning rate the next update will use (``schedule(steps)``)."""
        rate = self.learning_rate
        return rate if isinstance(rate, float) else _scheduled(rate, self.steps)

    @property
    def clipping(self) -> bool:
        return self.clipvalue is not None or self.clipnorm is not None or self.global_clipnorm is not None

    # -- wiring ----------------------------------------------------------------------------
    def setup(
        self, params: list[Any], grads: list[Any], backend: Backend, tensors: Sequence[Any] | None = None
    ) -> None:
        """Attach to parameter/gradient buffers; state starts at zero, steps at 0.
        ``tensors``: the gradient of each parameter tensor, as views into ``grads`` (for
        ``clipnorm``; by default each buffer is one tensor)."""
        self.backend = backend
        self.params, self.grads = list(params), list(grads)
        self._tensor_grads = list(tensors) if tensors is not None else list(self.grads)
        xp = backend.xp
        self.states = [{n: xp.zeros_like(p) for n in self.state_names} for p in self.params]
        self.steps = 0
        self._whole_kernel = kernels.whole_buffer_kernel(self)
        self._chunk_kernel = kernels.chunk_kernel(self)
        self._clip = (kernels.clip_kernel(self) or self._clip_on_device) if self.clipping else None
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
        """Apply one update to every parameter buffer from its gradient buffer (clipped
        first when clipping is asked for: in place, or by a factor the update applies)."""
        if not isinstance(self.learning_rate, float):
            self._lr = _scheduled(self.learning_rate, self.steps)
        self.steps += 1
        if self._clip is not None:
            self._clip()
        self.prepare_step()
        if self._whole_kernel is not None:
            self._whole_kernel()
        elif len(self._chunks) == 1:
            self._update_chunk(self._chunks[0])
        else:
            self.backend.map_parallel(self._update_chunk, self._chunks)
        self._grad_scale = 1.0

    def _update_chunk(self, chunk: tuple[Any, Any, State, Any]) -> None:
        p, g, state, scratch = chunk
        if self._chunk_kernel is not None:
            self._chunk_kernel(p, g, state, scratch)
        else:
            self.update(p, g, state)

    def clip_gradients(self) -> None:
        """Clip the gradients as `step` does first (nothing without clipping): in place, or
        as a factor for the update (`kernels.clip_kernel`)."""
        if self._clip is not None:
            self._clip()

    def _clip_on_device(self) -> None:
        """The Array API clipping: on the device, no host sync."""
        xp = self.backend.xp
        if self.clipvalue is not None:
            for g in self.grads:
                g[...] = xp.minimum(xp.maximum(g, -self.clipvalue), self.clipvalue)
        elif self.clipnorm is not None:
            for g in self._tensor_grads:
                g *= _clip_scale(xp, xp.sum(g * g), self.clipnorm)
        else:  # sum(g * g): pairwise sums (vecdot adds one term after another in float32)
            total = sum(xp.sum(g * g) for g in self.grads)
            scale = _clip_scale(xp, total, self.global_clipnorm)
            for g in self.grads:
                g *= scale

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
        if not isinstance(self.learning_rate, float):  # the rate of the last update, as before the save
            self._lr = _scheduled(self.learning_rate, max(self.steps - 1, 0))

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments; a schedule as ``{"schedule": name, "config": {...}}``
        (a user's own function is kept as is: it cannot be saved)."""
        rate = self.learning_rate
        if isinstance(rate, LearningRateSchedule):
            rate = {"schedule": rate.name, "config": rate.get_config()}
        config: dict[str, Any] = {"lr": rate, "weight_decay": self.weight_decay}
        for key in ("clipvalue", "clipnorm", "global_clipnorm"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def __repr__(self) -> str:
        config = {**self.get_config(), "lr": self.learning_rate}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
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
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
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
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
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
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, **clipping)


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
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
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


class Adagrad(Optimizer):
    """Adagrad as in PyTorch: ``sum += g * g``, ``p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) * lr_decay)`` (steps counted from 1), L2 ``weight_decay``;
    the sums start at ``initial_accumulator_value``.

    >>> opt = Adagrad(lr=1e-2)
    """

    name = "adagrad"
    state_names = ("sum",)

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
        self.lr_decay = as_real(lr_decay, "lr_decay", minimum=0)
        self.initial_accumulator_value = as_real(initial_accumulator_value, "initial_accumulator_value", minimum=0)
        self.eps = as_real(eps, "eps", minimum=0)

    def setup(
        self, params: list[Any], grads: list[Any], backend: Backend, tensors: Sequence[Any] | None = None
    ) -> None:
        super().setup(params, grads, backend, tensors)
        if self.initial_accumulator_value:
            for state in self.states:
                state["sum"][...] = self.initial_accumulator_value

    def prepare_step(self) -> None:
        self._clr = self.lr / (1 + (self.steps - 1) * self.lr_decay)

    def update(self, p: Any, g: Any, state: State) -> None:
        g = self._decayed(p, g)
        total = state["sum"]
        total += g * g
        std = self.backend.xp.sqrt(total)
        std += self.eps
        step = g / std
        step *= self._clr
        p -= step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "lr_decay": self.lr_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm) as in PyTorch: ``exp_inf = max(beta2 *
    exp_inf, |g| + eps)``, ``p -= lr / (1 - beta1**t) * exp_avg / exp_inf``, L2
    ``weight_decay``.

    >>> opt = Adamax(lr=2e-3)
    """

    name = "adamax"
    state_names = ("exp_avg", "exp_inf")

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
        self.betas = _betas(betas)
        self.eps = as_real(eps, "eps", minimum=0)

    def prepare_step(self) -> None:
        self._clr = self.lr / (1.0 - self.betas[0] ** self.steps)

    def update(self, p: Any, g: Any, state: State) -> None:
        xp = self.backend.xp
        b1, b2 = self.betas
        g = self._decayed(p, g)
        m, u = state["exp_avg"], state["exp_inf"]
        m *= b1
        m += (1.0 - b1) * g
        u *= b2
        norm = xp.abs(g)
        norm += self.eps
        u[...] = xp.maximum(u, norm)
        step = m / u
        step *= self._clr
        p -= step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps}


_MU_TINY = 2.0**-60  # below it, 1 - mu_product (and 1 - mu_product * mu_next) round to exactly 1
_MU_LOOP = 100_000  # at most this many factors of NAdam's mu product are multiplied out in one call


class NAdam(Optimizer):
    """NAdam (Adam with Nesterov momentum, Dozat) as in PyTorch, with its momentum decay
    ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``; ``weight_decay`` is L2, or
    decoupled (``p *= 1 - lr * weight_decay``) with ``decoupled_weight_decay=True``.

    The product of the ``mu_t`` is a function of the step count: it is recomputed from
    ``steps`` (a loaded optimizer needs no more than its moments and its step count).

    >>> opt = NAdam(lr=2e-3)
    """

    name = "nadam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
        self.betas = _betas(betas)
        self.eps = as_real(eps, "eps", minimum=0)
        self.momentum_decay = as_real(momentum_decay, "momentum_decay", minimum=0)
        self.decoupled_weight_decay = as_bool(decoupled_weight_decay, "decoupled_weight_decay")
        self._mu_cache: tuple[tuple[float, float], int, float] = ((self.betas[0], self.momentum_decay), 0, 1.0)

    def _mu(self, step: int) -> float:
        return self.betas[0] * (1.0 - 0.5 * (0.96 ** (step * self.momentum_decay)))

    def mu_product(self, steps: int) -> float:
        """``mu_1 * ... * mu_steps``, multiplied out in PyTorch's order (continued from the
        last call's product when it is for fewer steps). Once it is below 2**-60 it stays
        where it is: 1 - product is 1 exactly either way, and only that enters the update."""
        key = (self.betas[0], self.momentum_decay)
        cached_key, t, product = self._mu_cache
        if cached_key != key or t > steps:
            t, product = 0, 1.0
        stop = min(steps, t + _MU_LOOP)
        while t < stop and product >= _MU_TINY:
            t += 1
            product *= self._mu(t)
        if t < steps and product >= _MU_TINY:  # mu_t == beta1 (to the last bit) from about 1000 steps on
            product *= self.betas[0] ** (steps - t)
        self._mu_cache = (key, steps, product)
        return product

    def prepare_step(self) -> None:
        t, lr = self.steps, self.lr
        mu, mu_next = self._mu(t), self._mu(t + 1)
        product = self.mu_product(t)
        self._bias2 = 1.0 - self.betas[1] ** t
        self._grad_scale = lr * (1.0 - mu) / (1.0 - product)
        self._avg_scale = lr * mu_next / (1.0 - product * mu_next)

    def update(self, p: Any, g: Any, state: State) -> None:
        b1, b2 = self.betas
        if self.decoupled_weight_decay:
            if self.weight_decay:
                p *= 1.0 - self.lr * self.weight_decay
        else:
            g = self._decayed(p, g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = self.backend.xp.sqrt(v / self._bias2)
        denom += self.eps
        step = g * self._grad_scale
        step += self._avg_scale * m
        step /= denom
        p -= step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "betas": list(self.betas),
            "eps": self.eps,
            "momentum_decay": self.momentum_decay,
            "decoupled_weight_decay": self.decoupled_weight_decay,
        }


class RAdam(Optimizer):
    """RAdam (rectified Adam, Liu et al.) as in PyTorch: while the variance of the
    adaptive rate is intractable (``rho_t <= 5``, the first steps) the update is
    ``lr * exp_avg / (1 - beta1**t)`` alone; after, Adam's, scaled by the rectification
    term. ``rho_t`` is a function of the step count, decided on the host. ``weight_decay``
    is L2, or decoupled with ``decoupled_weight_decay=True``.

    >>> opt = RAdam(lr=1e-3)
    """

    name = "radam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
        self.betas = _betas(betas)
        self.eps = as_real(eps, "eps", minimum=0)
        self.decoupled_weight_decay = as_bool(decoupled_weight_decay, "decoupled_weight_decay")

    def rectification(self, step: int) -> float | None:
        """PyTorch's variance rectification term at ``step`` (from 1), or None while
        ``rho_t <= 5`` (no adaptive rate yet)."""
        b2 = self.betas[1]
        bias2 = 1.0 - b2**step
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * step * (b2**step) / bias2
        if not rho_t > 5.0:
            return None
        return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

    def prepare_step(self) -> None:
        b1, b2 = self.betas
        t = self.steps
        rect = self.rectification(t)
        self._rectified = rect is not None
        scale = self.lr / (1.0 - b1**t)
        if rect is not None:
            scale *= rect * math.sqrt(1.0 - b2**t)
        self._scale = scale

    def update(self, p: Any, g: Any, state: State) -> None:
        b1, b2 = self.betas
        if self.decoupled_weight_decay:
            if self.weight_decay:
                p *= 1.0 - self.lr * self.weight_decay
        else:
            g = self._decayed(p, g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        if self._rectified:
            denom = self.backend.xp.sqrt(v)
            denom += self.eps
            step = m / denom
            step *= self._scale
        else:
            step = m * self._scale
        p -= step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "betas": list(self.betas),
            "eps": self.eps,
            "decoupled_weight_decay": self.decoupled_weight_decay,
        }


class Lion(Optimizer):
    """Lion (EvoLved Sign Momentum, Chen et al. 2023), as in Keras 3: decoupled weight
    decay ``p *= 1 - lr * weight_decay`` first, then ``p -= lr * sign(beta1 * m + (1 -
    beta1) * g)`` and ``m = beta2 * m + (1 - beta2) * g``. (PyTorch has no Lion; the
    names and defaults are those of the ``lion-pytorch`` package.) Its steps are all of
    size ``lr``: a rate 3-10x smaller than AdamW's suits it.

    >>> opt = Lion(lr=1e-4, weight_decay=1e-2)
    """

    name = "lion"
    state_names = ("exp_avg",)

    def __init__(
        self,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        **clipping: float | None,
    ) -> None:
        super().__init__(lr, weight_decay, **clipping)
        self.betas = _betas(betas, open_max=False)

    def update(self, p: Any, g: Any, state: State) -> None:
        xp = self.backend.xp
        b1, b2 = self.betas
        if self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        m = state["exp_avg"]
        c = m * b1
        c += (1.0 - b1) * g
        # sign(c) without compat's sign (a host sync on CuPy); NaN stays NaN
        c = xp.where(c > 0, 1.0, xp.where(c < 0, -1.0, c))
        c *= self.lr
        p -= c
        m *= b2
        m += (1.0 - b2) * g

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "betas": list(self.betas)}


def _scheduled(schedule: Callable[[int], float], step: int) -> float:
    """``schedule(step)``, checked: a finite number >= 0."""
    value = schedule(step)
    if type(value) is float and 0.0 <= value < math.inf:  # the usual case, checked cheaply
        return value
    try:
        return as_real(value, "lr", minimum=0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the learning-rate schedule {schedule!r} returned {value!r} at step {step}: {exc}") from None


def _clip_scale(xp: Any, squared_norm: Any, max_norm: float) -> Any:
    """PyTorch's ``clip_grad_norm_`` factor: ``min(1, max_norm / (norm + 1e-6))`` (0-d)."""
    return xp.minimum(max_norm / (xp.sqrt(squared_norm) + CLIP_EPS), 1.0)


def _betas(betas: Any, *, open_max: bool = True) -> tuple[float, float]:
    """Adam's (beta1, beta2), each in [0, 1) (or [0, 1] with ``open_max=False``)."""
    try:
        pair = None if isinstance(betas, str) else tuple(betas)
    except TypeError:
        pair = None
    if pair is None:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {type(betas).__name__} {betas!r}")
    if len(pair) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {len(pair)} values")
    b1, b2 = (as_real(b, f"betas[{i}]", minimum=0, maximum=1, open_max=open_max) for i, b in enumerate(pair))
    return b1, b2


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
    "adagrad": Adagrad, "adamax": Adamax, "nadam": NAdam, "radam": RAdam, "lion": Lion,
}


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
    if isinstance(config.get("lr"), dict):
        entry = config["lr"]
        if set(entry) != {"schedule", "config"} or not isinstance(entry["config"], dict):
            raise ValueError("lr must be a number or {'schedule': name, 'config': {...}}")
        config["lr"] = schedule_from_config(entry["schedule"], entry["config"])
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    return OPTIMIZERS[name](**config)
