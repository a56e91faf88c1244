"""Where a training step's time goes: matrix products, optimizer, everything else.

    python -m bench.profile_step W3 W4

For anyxp (NumPy backend, float32) and the hand-written NumPy peer it times one step,
the optimizer alone, and the step's matrix products run on their own (same shapes), so
the table shows how close each is to its GEMM floor.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import anyxp as ax
from bench import workloads
from bench.peers.numpy_mlp import NumpyMLP


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best.append((time.perf_counter() - start) / repeats)
    return 1e3 * min(best)


def gemm_floor(w: workloads.Workload, rng: np.random.Generator) -> Callable[[], None]:
    """The 3L - 1 matrix products of one step (forward, weight gradients, input gradients)."""
    b = w.batch_size
    acts = [rng.standard_normal((b, s), dtype=np.float32) for s in w.sizes]
    weights = [rng.standard_normal((i, o), dtype=np.float32) for i, o in zip(w.sizes[:-1], w.sizes[1:], strict=True)]

    def run() -> None:
        for i, wt in enumerate(weights):
            acts[i] @ wt
            acts[i].T @ acts[i + 1]
            if i:
                acts[i + 1] @ wt.T

    return run


def profile(name: str) -> list[str]:
    w = workloads.WORKLOADS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((w.batch_size, w.sizes[0]), dtype=np.float32)
    y = np.eye(w.sizes[-1], dtype=np.float32)[rng.integers(0, w.sizes[-1], w.batch_size)]
    layers = [ax.Dense(u, w.hidden) for u in w.sizes[1:-1]] + [ax.Dense(w.sizes[-1], "softmax")]
    optimizer = ax.Adam(lr=w.lr) if w.optimizer == "adam" else ax.SGD(lr=w.lr)
    net = ax.Network(layers, input_size=w.sizes[0], optimizer=optimizer, backend="numpy", seed=0).build()
    hand = NumpyMLP(w.sizes, w.hidden, w.optimizer, w.lr)
    repeats = max(3, int(2000 / w.batch_size))

    def anyxp_step() -> None:
        net._forward_backward(x, y, None)
        net.optimizer.step()

    floor = _ms(gemm_floor(w, rng), repeats)
    rows = []
    for label, step, opt in (("anyxp [numpy]", anyxp_step, net.optimizer.step),
                             ("hand NumPy", lambda: hand.train_batch(x, y), hand.step)):
        total, opt_ms = _ms(step, repeats), _ms(opt, repeats)
        rows.append(f"| {name} | {label} | {total:.2f} | {floor:.2f} ({100 * floor / total:.0f}%) | "
                    f"{opt_ms:.2f} ({100 * opt_ms / total:.0f}%) | {total - floor - opt_ms:.2f} |")
    return rows


def main(argv: list[str]) -> int:
    names = argv or ["W3", "W4"]
    print("| workload | implementation | step ms | GEMMs alone ms (share) | optimizer ms (share) | rest ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name in names:
        for row in profile(name):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
