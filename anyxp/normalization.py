"""Normalisation layers: `LayerNorm` and `BatchNorm`, forward and backward side by side.

`BatchNorm` follows PyTorch's ``BatchNorm1d``: while training it normalises with the
batch's mean and biased variance and moves the running estimates towards the batch's
mean and unbiased variance (``momentum`` is the weight of the new value); at inference
it uses the running estimates. The running estimates are non-trainable state
(``state_names``): saved, moved and restored with the weights.

In data-parallel training a `BatchNorm` uses the statistics of the global batch, as
PyTorch's ``SyncBatchNorm``: two all-reduces of per-feature sums in the forward pass (the
mean, then the squared deviations) and one of the two per-feature gradient sums in the
backward pass, so N processes train exactly as one. A rank whose shard of a batch is empty
still takes part in every all-reduce (`BatchNorm.join`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer
from .validation import as_bool, as_real


class _Normalization(Layer):
    """Shared parts: ``gamma`` (scale) and ``beta`` (center), each optional."""

    def __init__(self, eps: float, center: bool, scale: bool) -> None:
        super().__init__()
        self.eps = as_real(eps, f"{type(self).__name__} eps", minimum=0, open_min=True)
        self.center = as_bool(center, f"{type(self).__name__} center")
        self.scale = as_bool(scale, f"{type(self).__name__} scale")
        self.param_names = (("gamma",) if self.scale else ()) + (("beta",) if self.center else ())

    def initial_parameters(self, input_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        params = {}
        if self.scale:
            params["gamma"] = np.ones(input_size)
        if self.center:
            params["beta"] = np.zeros(input_size)
        return params

    def size_for(self, input_size: int) -> tuple[int, int]:
        return input_size * len(self.param_names), input_size * len(self.state_names)

    def _affine(self, x_hat: Any) -> Any:
        y = x_hat * self.gamma if self.scale else x_hat
        return y + self.beta if self.center else y

    def _parameter_gradients(self, dy: Any, x_hat: Any, axis: int) -> Any:
        """Write dgamma, dbeta (summed over ``axis``); return dL/dx_hat."""
        xp = self.xp
        if self.scale:
            self.grad_gamma[...] = xp.sum(dy * x_hat, axis=axis)
        if self.center:
            self.grad_beta[...] = xp.sum(dy, axis=axis)
        return dy * self.gamma if self.scale else dy

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps, "center": self.center, "scale": self.scale}


class LayerNorm(_Normalization):
    """Normalise each sample over its features: ``gamma * (x - mean) / sqrt(var + eps) +
    beta`` (biased variance), as ``torch.nn.LayerNorm(features)``.

    >>> layer = LayerNorm()
    """

    def __init__(self, eps: float = 1e-5, *, center: bool = True, scale: bool = True) -> None:
        super().__init__(eps, center, scale)

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = self.xp
        d = x - xp.mean(x, axis=1, keepdims=True)
        inv_std = 1.0 / xp.sqrt(xp.mean(d * d, axis=1, keepdims=True) + self.eps)
        x_hat = d * inv_std
        if training:
            self._x_hat, self._inv_std = x_hat, inv_std
        return self._affine(x_hat)

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        xp, x_hat = self.xp, self._x_hat
        dx_hat = self._parameter_gradients(dy, x_hat, axis=0)
        if not need_input_grad:
            return None
        mean_dx_hat = xp.mean(dx_hat, axis=1, keepdims=True)
        mean_dx_hat_x_hat = xp.mean(dx_hat * x_hat, axis=1, keepdims=True)
        return self._inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)


class BatchNorm(_Normalization):
    """Normalise each feature over the batch, as ``torch.nn.BatchNorm1d`` (see the module
    docstring): ``momentum`` weighs the new batch in the running estimates.

    >>> layers = [Dense(64), BatchNorm(), ReLU()]  # doctest: +SKIP
    """

    state_names = ("running_mean", "running_var")

    def __init__(
        self, momentum: float = 0.1, eps: float = 1e-5, *, center: bool = True, scale: bool = True
    ) -> None:
        super().__init__(eps, center, scale)
        self.momentum = as_real(momentum, "BatchNorm momentum", minimum=0, maximum=1)
        self.sync: tuple[Any, int] | None = None  # (communicator, global batch size) in data-parallel training

    def initial_state(self, input_size: int) -> dict[str, np.ndarray]:
        return {"running_mean": np.zeros(input_size), "running_var": np.ones(input_size)}

    def _batch_sum(self, values: Any) -> Any:
        """Per-feature sum over the (global) batch."""
        total = self.xp.sum(values, axis=0)
        if self.sync is not None:
            self.sync[0].allreduce_sum_(total)
        return total

    def _batch_size(self, x: Any) -> int:
        n = x.shape[0] if self.sync is None else self.sync[1]
        if n < 2:
            raise ValueError(f"BatchNorm needs more than 1 sample per training batch (as PyTorch), got {n}")
        return n

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = self.xp
        if not training:
            return self._affine((x - self.running_mean) / xp.sqrt(self.running_var + self.eps))
        n = self._batch_size(x)
        mean = self._batch_sum(x) / n
        d = x - mean
        var = self._batch_sum(d * d) / n
        self._update_running(mean, var, n)
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._x_hat = d * self._inv_std
        return self._affine(self._x_hat)

    def _update_running(self, mean: Any, var: Any, n: int) -> None:
        m = self.momentum
        self.running_mean[...] = (1.0 - m) * self.running_mean + m * mean
        self.running_var[...] = (1.0 - m) * self.running_var + (m * n / (n - 1)) * var

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        xp, x_hat = self.xp, self._x_hat
        dx_hat = self._parameter_gradients(dy, x_hat, axis=0)
        if not need_input_grad and self.sync is None:
            return None
        n = x_hat.shape[0]
        sums = xp.concat([xp.sum(dx_hat, axis=0), xp.sum(dx_hat * x_hat, axis=0)])
        if self.sync is not None:  # this rank's dy is its shard's mean gradient: scale to the global batch
            comm, n_global = self.sync
            sums = sums * (n / n_global)
            comm.allreduce_sum_(sums)
            sums = sums * (n_global / n) if n else sums
            n = n_global
            if not need_input_grad:
                return None
        features = x_hat.shape[1]
        mean_dx_hat, mean_dx_hat_x_hat = sums[:features] / n, sums[features:] / n
        return self._inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)

    def join(self, features: int) -> None:
        """Take part in a data-parallel step's forward all-reduces with an empty shard,
        updating the running estimates as every other rank does (see `join_backward`)."""
        xp, dev = self.xp, self.backend.device
        n = self._batch_size(xp.zeros((0, features), dtype=self.dtype, device=dev))
        mean = self._batch_sum(xp.zeros((0, features), dtype=self.dtype, device=dev)) / n
        var = self._batch_sum(xp.zeros((0, features), dtype=self.dtype, device=dev)) / n
        self._update_running(mean, var, n)

    def join_backward(self, features: int) -> None:
        """The backward all-reduce of a rank with an empty shard (its sums are zero)."""
        sums = self.xp.zeros((2 * features,), dtype=self.dtype, device=self.backend.device)
        self.sync[0].allreduce_sum_(sums)

    def get_config(self) -> dict[str, Any]:
        return {"momentum": self.momentum, **super().get_config()}
