"""A hand-vectorised NumPy MLP: the tutorials' approach, done carefully.

Preallocated buffers, ``out=`` everywhere, in-place activations and updates, no
recomputation; softmax + cross-entropy fused; SGD or Adam (PyTorch's rules).
"""

from __future__ import annotations

import itertools

import numpy as np


class NumpyMLP:
    def __init__(self, sizes: tuple[int, ...], hidden: str, optimizer: str, lr: float, seed: int = 0,
                 dtype: type = np.float32) -> None:
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.hidden = hidden
        self.W, self.b = [], []
        for fan_in, fan_out in itertools.pairwise(sizes):
            if hidden == "relu":
                w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            self.W.append(w.astype(dtype))
            self.b.append(np.zeros(fan_out, dtype=dtype))
        self.params = [p for pair in zip(self.W, self.b, strict=True) for p in pair]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.optimizer, self.lr, self.t = optimizer, lr, 0
        if optimizer == "adam":
            self.m = [np.zeros_like(p) for p in self.params]
            self.v = [np.zeros_like(p) for p in self.params]
            self.tmp = [np.zeros_like(p) for p in self.params]
        self._buffers: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def _buffers_for(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if n not in self._buffers:
            acts = [np.empty((n, w.shape[1]), dtype=self.dtype) for w in self.W]
            deltas = [np.empty((n, w.shape[0]), dtype=self.dtype) for w in self.W[1:]]
            self._buffers[n] = (acts, deltas)
        return self._buffers[n]

    def forward(self, x: np.ndarray, acts: list[np.ndarray]) -> np.ndarray:
        a = x
        last = len(self.W) - 1
        for i, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            z = acts[i]
            np.dot(a, w, out=z)
            z += b
            if i < last:
                if self.hidden == "relu":
                    np.maximum(z, 0, out=z)
                else:  # sigmoid, in place
                    np.negative(z, out=z)
                    np.exp(z, out=z)
                    z += 1
                    np.reciprocal(z, out=z)
            a = z
        # softmax in place
        a -= a.max(axis=1, keepdims=True)
        np.exp(a, out=a)
        a /= a.sum(axis=1, keepdims=True)
        return a

    def train_batch(self, x: np.ndarray, y_onehot: np.ndarray) -> None:
        n = x.shape[0]
        acts, deltas = self._buffers_for(n)
        p = self.forward(x, acts)
        delta = p
        delta -= y_onehot
        delta *= 1.0 / n
        for i in range(len(self.W) - 1, -1, -1):
            a_prev = x if i == 0 else acts[i - 1]
            np.dot(a_prev.T, delta, out=self.grads[2 * i])
            np.sum(delta, axis=0, out=self.grads[2 * i + 1])
            if i > 0:
                d_prev = deltas[i - 1]
                np.dot(delta, self.W[i].T, out=d_prev)
                if self.hidden == "relu":
                    d_prev *= a_prev > 0
                else:
                    d_prev *= a_prev
                    d_prev *= 1 - a_prev
                delta = d_prev
        self.step()

    def step(self) -> None:
        self.t += 1
        if self.optimizer == "sgd":
            for p, g in zip(self.params, self.grads, strict=True):
                g *= self.lr
                p -= g
            return
        b1, b2, eps = 0.9, 0.999, 1e-8
        step_size = self.lr / (1 - b1**self.t)
        bias2 = np.sqrt(1 - b2**self.t)
        for p, g, m, v, tmp in zip(self.params, self.grads, self.m, self.v, self.tmp, strict=True):
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bias2
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def train_epoch(self, x: np.ndarray, y_onehot: np.ndarray, batch_size: int, rng: np.random.Generator,
                    limit: int | None = None) -> None:
        n = x.shape[0] if limit is None else min(limit, x.shape[0])
        order = rng.permutation(x.shape[0])[:n]
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            self.train_batch(x[idx], y_onehot[idx])

    def predict(self, x: np.ndarray) -> np.ndarray:
        acts, _ = self._buffers_for(x.shape[0])
        return self.forward(x.astype(self.dtype, copy=False), acts).copy()
