"""Backend kernels behind the optimizers' standard interface.

The Array API updates in `anyxp.optimizers` are the reference and the fallback. Where a
library offers a faster way to run the very same update, it is used instead, and the
tests check that both agree:

- NumPy and CuPy: ufuncs with ``out=`` into a preallocated scratch buffer (the standard
  has no ``out=``), so a step allocates nothing; NumPy runs the chunks on threads.
- PyTorch: its fused Adam/AdamW (``torch.optim.adam.adam(..., fused=True)``), one call
  over the whole flat buffer.
- Gradient clipping on NumPy and PyTorch's CPU: the norm is one dot product read on the
  host (the "device" is the host: no sync to avoid), and the gradient is scaled only when
  the norm exceeds the limit (PyTorch multiplies by exactly 1.0 otherwise: the same values);
  NumPy's Adam takes a global factor into its update's coefficients instead, and PyTorch's
  fused float32 Adam into its gradient unscaling (``grad_scale``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

CLIP_EPS = 1e-6  # PyTorch's clip_grad_norm_ scales by max_norm / (norm + 1e-6)

if TYPE_CHECKING:
    from .backend import Backend
    from .optimizers import Optimizer

ChunkKernel = Callable[[Any, Any, dict[str, Any], Any], None]


def chunk_kernel(opt: Optimizer) -> ChunkKernel | None:
    """A per-chunk ``(p, g, state, scratch)`` update using ``out=`` ufuncs, or None."""
    backend = opt.backend
    if not backend.fast_kernels or backend.name not in ("numpy", "cupy"):
        return None
    lib = backend.library
    if opt.name in ("adam", "adamw"):
        return lambda p, g, state, scratch: _ufunc_adam(lib, opt, p, g, state, scratch)
    if opt.name == "sgd":
        return lambda p, g, state, scratch: _ufunc_sgd(lib, opt, p, g, state, scratch)
    return None


def clip_kernel(opt: Optimizer) -> Callable[[], None] | None:
    """Gradient clipping on a host backend (NumPy, PyTorch on the CPU), or None: the
    norms are dot products over flat views made once, read on the host (the device is
    the host: no sync to avoid), and a gradient is scaled only when its factor is < 1."""
    backend = opt.backend
    if not backend.fast_kernels or backend.name not in ("numpy", "torch") or backend.is_gpu or not opt.clipping:
        return None
    lib = backend.library
    if opt.clipvalue is not None:
        limit = opt.clipvalue

        def clip_values() -> None:
            for g in opt.grads:
                lib.clip(g, -limit, limit, out=g)

        return clip_values
    per_tensor = opt.clipnorm is not None
    limit = opt.clipnorm if per_tensor else opt.global_clipnorm
    groups = [[g] for g in opt._tensor_grads] if per_tensor else [opt.grads]
    pairs = [(group, [g.reshape(-1) for g in group]) for group in groups]  # flat views, made once
    dot = lib.dot
    # NumPy's Adam takes the global factor into its update's coefficients, PyTorch's fused
    # float32 Adam into its gradient unscaling: no pass of its own over the gradients
    fold = not per_tensor and opt.name in ("adam", "adamw") and (
        opt._chunk_kernel is not None or getattr(opt._whole_kernel, "takes_clip_factor", False))

    def clip_norms() -> None:
        for group, views in pairs:
            squares = float(dot(views[0], views[0])) if len(views) == 1 else sum(float(dot(v, v)) for v in views)
            scale = limit / (math.sqrt(squares) + CLIP_EPS)
            if fold:
                opt._grad_scale = scale if scale < 1.0 else 1.0
            elif scale < 1.0:
                for g in group:
                    g *= scale

    return clip_norms


def whole_buffer_kernel(opt: Optimizer) -> Callable[[], None] | None:
    """A step over all buffers at once (PyTorch's fused Adam/AdamW), or None."""
    backend = opt.backend
    if not backend.fast_kernels or backend.name != "torch" or opt.name not in ("adam", "adamw"):
        return None
    torch = backend.library
    from torch.optim.adam import adam

    dtype = opt.params[0].dtype
    steps = [torch.zeros((), dtype=dtype, device=backend.device) for _ in opt.params]
    exp_avgs = [s["exp_avg"] for s in opt.states]
    exp_avg_sqs = [s["exp_avg_sq"] for s in opt.states]
    # a global clipping factor c, as the kernel's gradient unscaling: it divides the
    # gradients (in place) by grad_scale = 1 / c, a float32 scalar: float32 networks only
    unscale = torch.ones((), dtype=torch.float32, device=backend.device) if dtype == torch.float32 else None

    def fused_step() -> None:
        for t in steps:  # the functional increments it to opt.steps
            t.fill_(opt.steps - 1)
        b1, b2 = opt.betas
        grad_scale = None
        if opt._grad_scale != 1.0:
            grad_scale = unscale.fill_(1.0 / opt._grad_scale)
        adam(opt.params, opt.grads, exp_avgs, exp_avg_sqs, [], steps, fused=True, grad_scale=grad_scale,
             decoupled_weight_decay=opt.decoupled, amsgrad=False, beta1=b1, beta2=b2, lr=opt.lr,
             weight_decay=opt.weight_decay, eps=opt.eps, maximize=False)

    fused_step.takes_clip_factor = unscale is not None  # type: ignore[attr-defined]
    return fused_step


def _ufunc_adam(lib: Any, opt: Any, p: Any, g: Any, state: dict[str, Any], s: Any) -> None:
    b1, b2 = opt.betas
    c = opt._grad_scale  # the gradients' clipping factor, applied through the coefficients
    if opt.decoupled:
        if opt.weight_decay:
            p *= 1.0 - opt.lr * opt.weight_decay
    elif opt.weight_decay:
        g = (g * c if c != 1.0 else g) + opt.weight_decay * p
        c = 1.0
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m *= b1
    lib.multiply(g, (1.0 - b1) * c, out=s)
    m += s
    v *= b2
    lib.multiply(g, g, out=s)
    s *= (1.0 - b2) * c * c
    v += s
    lib.sqrt(v, out=s)
    s += opt._eps_scaled
    lib.divide(m, s, out=s)
    s *= opt._step_scaled
    p -= s


def _ufunc_sgd(lib: Any, opt: Any, p: Any, g: Any, state: dict[str, Any], s: Any) -> None:
    if opt.weight_decay:
        g = g + opt.weight_decay * p
    if opt.momentum:
        buf = state["momentum_buffer"]
        if opt.steps == 1:
            buf[...] = g
        else:
            buf *= opt.momentum
            lib.multiply(g, 1.0 - opt.dampening, out=s)
            buf += s
        if opt.nesterov:
            lib.multiply(buf, opt.momentum, out=s)
            s += g
            g = s
        else:
            g = buf
    lib.multiply(g, opt.lr, out=s)
    p -= s


# --------------------------------------------------------------------------- epoch metrics


def metrics_on_numpy(backend: Backend) -> bool:
    """Whether the epoch metrics' statistics run on NumPy views of the epoch's arrays: on
    NumPy, and on PyTorch's CPU (zero-copy views), whose sorts and reductions along short
    rows are several times slower than NumPy's on these shapes."""
    return backend.fast_kernels and backend.name in ("numpy", "torch") and not backend.is_gpu


def mann_whitney_kernel(xp: Any) -> Callable[[Any, Any, Any], tuple[Any, Any]] | None:
    """NumPy's AUC statistics (see `anyxp.metrics._mann_whitney`), or None."""
    from .backend import FastNumpyNamespace

    return _numpy_mann_whitney if isinstance(xp, FastNumpyNamespace) else None


def _numpy_mann_whitney(scores: Any, positive: Any, weight: Any) -> tuple[Any, Any]:
    """The AUC statistics of each column of the (n, C) ``scores``, as the Array API
    version computes them, with NumPy's running minimum and maximum finding each run of
    equal scores (the standard has neither). One class per task, on the host threads
    (NumPy's argsort, most of the work, releases the GIL); each over one row, small
    enough to stay in the allocator's heap, with integer counts where there are no
    weights: several times faster than over all classes at once."""
    import numpy as np

    from .backend import host_map

    weight = None if weight is None else np.asarray(weight, dtype=np.float64)

    def one_class(c: int) -> tuple[float, float]:
        column = np.ascontiguousarray(scores[:, c])
        order = np.argsort(column)  # any order among ties: each run is counted as a whole
        sorted_scores = column.take(order)
        pos = positive[:, c].take(order)
        if weight is None:  # exact integer counts
            w_pos, w_neg = pos, ~pos
            through = np.cumsum(w_neg, dtype=np.int64)  # negatives among the j + 1 lowest
            high, low = np.iinfo(np.int64).max, -1
        else:
            w = weight.take(order)
            w_pos, w_neg = np.where(pos, w, 0.0), np.where(pos, 0.0, w)
            through = np.cumsum(w_neg)
            high, low = np.inf, -np.inf
        ends = np.ones(column.shape, dtype=bool)  # the last position of each run of equal scores
        np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=ends[:-1])
        starts = np.ones(column.shape, dtype=bool)
        starts[1:] = ends[:-1]
        # negatives up to the end of each position's run, and before its start (nondecreasing)
        up_to_end = np.minimum.accumulate(np.where(ends, through, high)[::-1])[::-1]
        before_start = np.maximum.accumulate(np.where(starts, through - w_neg, low))
        beside = up_to_end + before_start
        numerator = np.sum(beside, where=pos) if weight is None else np.dot(beside, w_pos)
        return float(numerator) * 0.5, float(np.sum(w_pos)) * float(np.sum(w_neg))

    numerators, denominators = zip(*host_map(one_class, list(range(scores.shape[1]))), strict=True)
    return np.asarray(numerators, dtype=scores.dtype), np.asarray(denominators, dtype=scores.dtype)
