"""Backend kernels behind the optimizers' standard interface.

The Array API updates in `anyxp.optimizers` are the reference and the fallback. Where a
library offers a faster way to run the very same update, it is used instead, and the
tests check that both agree:

- NumPy and CuPy: ufuncs with ``out=`` into a preallocated scratch buffer (the standard
  has no ``out=``), so a step allocates nothing; NumPy runs the chunks on threads.
- PyTorch: its fused Adam/AdamW (``torch.optim.adam.adam(..., fused=True)``), one call
  over the whole flat buffer.
- NumPy gradient clipping: the norm is one BLAS dot product read on the host (NumPy's
  "device" is the host: no sync to avoid), and the gradient is scaled only when the
  norm exceeds the limit (PyTorch multiplies by exactly 1.0 otherwise: the same values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

CLIP_EPS = 1e-6  # PyTorch's clip_grad_norm_ scales by max_norm / (norm + 1e-6)

if TYPE_CHECKING:
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
    """NumPy's gradient clipping (see the module docstring), or None."""
    backend = opt.backend
    if not backend.fast_kernels or backend.name != "numpy" or not opt.clipping:
        return None
    lib = backend.library
    if opt.clipvalue is not None:

        def clip_values() -> None:
            for g in opt.grads:
                lib.clip(g, -opt.clipvalue, opt.clipvalue, out=g)

        return clip_values
    per_tensor = opt.clipnorm is not None
    groups = [[g] for g in opt._tensor_grads] if per_tensor else [opt.grads]

    def clip_norms() -> None:
        limit = opt.clipnorm if per_tensor else opt.global_clipnorm
        for group in groups:
            norm = math.sqrt(sum(float(lib.dot(g.reshape(-1), g.reshape(-1))) for g in group))  # any shape
            scale = limit / (norm + CLIP_EPS)
            if scale < 1.0:
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

    def fused_step() -> None:
        for t in steps:  # the functional increments it to opt.steps
            t.fill_(opt.steps - 1)
        b1, b2 = opt.betas
        adam(opt.params, opt.grads, exp_avgs, exp_avg_sqs, [], steps, fused=True,
             decoupled_weight_decay=opt.decoupled, amsgrad=False, beta1=b1, beta2=b2, lr=opt.lr,
             weight_decay=opt.weight_decay, eps=opt.eps, maximize=False)

    return fused_step


def _ufunc_adam(lib: Any, opt: Any, p: Any, g: Any, state: dict[str, Any], s: Any) -> None:
    b1, b2 = opt.betas
    if opt.decoupled:
        if opt.weight_decay:
            p *= 1.0 - opt.lr * opt.weight_decay
    elif opt.weight_decay:
        g = g + opt.weight_decay * p
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m *= b1
    lib.multiply(g, 1.0 - b1, out=s)
    m += s
    v *= b2
    lib.multiply(g, g, out=s)
    s *= 1.0 - b2
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
