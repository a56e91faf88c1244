"""GPU cost proxies that hold without a GPU: array operations per training step (each is
a kernel launch on a GPU) and host syncs per epoch, counted on array_api_strict; ATen
operations per step for the PyTorch peer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.workloads import Workload

SYNC_METHODS = ("__float__", "__bool__", "__int__", "__index__", "__array__", "__dlpack__", "to_device")
_DUNDERS = (
    "__add__", "__sub__", "__mul__", "__truediv__", "__matmul__", "__pow__", "__neg__", "__abs__",
    "__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rmatmul__",
    "__iadd__", "__isub__", "__imul__", "__itruediv__",
    "__gt__", "__ge__", "__lt__", "__le__", "__eq__", "__ne__", "__invert__", "__and__", "__or__",
    "__getitem__", "__setitem__",
)


@contextlib.contextmanager
def count_strict_calls() -> Iterator[dict[str, int]]:
    """Count top-level array_api_strict operations (functions and array operators) and
    host syncs; calls made inside another counted call are not counted again."""
    import array_api_strict as xps

    array_cls = type(xps.asarray(0.0))
    counts = {"ops": 0, "syncs": 0}
    depth = threading.local()
    patched: list[tuple[Any, str, Any]] = []

    def wrap(fn: Any, key: str) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            level = getattr(depth, "level", 0)
            if level == 0:
                counts[key] += 1
            depth.level = level + 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth.level = level

        return counted

    for name in dir(xps):
        fn = getattr(xps, name)
        if callable(fn) and not isinstance(fn, type) and not name.startswith("_") and name not in (
            "set_array_api_strict_flags", "get_array_api_strict_flags", "reset_array_api_strict_flags",
            "ArrayAPIStrictFlags", "Device", "isdtype", "finfo", "iinfo", "result_type", "can_cast",
        ):
            patched.append((xps, name, fn))
    for name in _DUNDERS:
        if hasattr(array_cls, name):
            patched.append((array_cls, name, getattr(array_cls, name)))
    syncs = [(array_cls, n, getattr(array_cls, n)) for n in SYNC_METHODS if hasattr(array_cls, n)]
    for owner, name, fn in patched:
        setattr(owner, name, wrap(fn, "ops"))
    for owner, name, fn in syncs:
        setattr(owner, name, wrap(fn, "syncs"))
    try:
        yield counts
    finally:
        for owner, name, fn in patched + syncs:
            setattr(owner, name, fn)


def anyxp_counts(w: Workload, batch_norm: bool = False) -> dict[str, int]:
    """Operations per training step (the loop body: batch gather, forward, loss,
    backward, optimizer, metric accumulation) and host syncs per epoch; with
    ``batch_norm``, each hidden layer is a Dense-BatchNorm-activation block."""
    import array_api_strict

    import anyxp as ax

    backend = ax.get_backend("array_api_strict", device=array_api_strict.Device("device1"))
    act = w.hidden
    if batch_norm:
        hidden = [layer for u in w.sizes[1:-1]
                  for layer in (ax.Dense(u, use_bias=False), ax.BatchNorm(), ax.activations.get_activation(act))]
    else:
        hidden = [ax.Dense(u, act) for u in w.sizes[1:-1]]
    layers = [*hidden, ax.Dense(w.sizes[-1], "softmax")]
    opt = ax.SGD(lr=w.lr) if w.optimizer == "sgd" else ax.Adam(lr=w.lr)
    net = ax.Network(layers, input_size=w.sizes[0], optimizer=opt, backend=backend, seed=0)
    rng = np.random.default_rng(0)
    n1, n3 = w.batch_size, 3 * w.batch_size
    x = rng.standard_normal((n3, w.sizes[0])).astype(np.float32)
    y = rng.integers(0, w.sizes[-1], size=n3)
    x_dev = backend.asarray(x, dtype=net.dtype)
    y_dev = backend.asarray(np.eye(w.sizes[-1])[y], dtype=net.dtype)
    net.fit(x_dev[:n1, ...], y_dev[:n1, ...], epochs=1, batch_size=w.batch_size, verbose=0)  # warm-up
    totals = []
    for n in (n1, n3):
        with count_strict_calls() as counts:
            net.fit(x_dev[:n, ...], y_dev[:n, ...], epochs=1, batch_size=w.batch_size, verbose=0)
        totals.append(dict(counts))
    return {
        "ops_per_step": (totals[1]["ops"] - totals[0]["ops"]) // 2,
        "syncs_per_epoch": totals[1]["syncs"],
        "syncs_per_step": (totals[1]["syncs"] - totals[0]["syncs"]) // 2,
    }


def torch_counts(w: Workload, fused: bool, batch_norm: bool = False) -> int | None:
    """ATen operations dispatched in one training step of the PyTorch peer (with
    ``batch_norm``: Linear-BatchNorm1d-activation hidden blocks)."""
    try:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:
        return None
    from bench.peers.torch_mlp import TorchMLP

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.count += 1
            return func(*args, **(kwargs or {}))

    model = TorchMLP(w.sizes, w.hidden, w.optimizer, w.lr, fused=fused, batch_norm=batch_norm)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((w.batch_size, w.sizes[0])).astype(np.float32)
    y = rng.integers(0, w.sizes[-1], size=w.batch_size)
    xt, yt = model.to_device(x, y)
    model.train_epoch(xt, yt, w.batch_size, rng)  # warm-up: optimizer state exists
    with Counter() as counter:
        model.train_epoch(xt, yt, w.batch_size, rng)
    del torch
    return counter.count


def operation_counts(w: Workload) -> dict[str, Any]:
    result: dict[str, Any] = {}
    try:
        result["anyxp"] = anyxp_counts(w)
        result["anyxp_batch_norm"] = anyxp_counts(w, batch_norm=True)
    except ImportError:
        result["anyxp"] = result["anyxp_batch_norm"] = None
    result["torch"] = torch_counts(w, fused=False)
    result["torch_batch_norm"] = torch_counts(w, fused=False, batch_norm=True)
    if w.optimizer == "adam":
        result["torch_fused"] = torch_counts(w, fused=True)
    return result
