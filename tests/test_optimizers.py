"""Optimizers against two independent references: a plain NumPy transcription of
PyTorch's documented update rules, and torch.optim itself where torch is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import anyxp as ax
from anyxp.backend import PARALLEL_MIN_ELEMENTS, Backend

pytestmark = pytest.mark.on_device  # optimizers and properties are tested as components

SHAPES = [(4, 3), (3,), (3, 2)]
STEPS = 6


def reference(kind: str, params: list[np.ndarray], grads: list[list[np.ndarray]], cfg: dict) -> list[list[np.ndarray]]:
    """Parameters after each step, by the textbook (PyTorch-documented) formulas."""
    out = []
    for p0, gs in zip(params, grads, strict=True):
        p, history = p0.copy(), []
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        buf = None
        for t, g in enumerate(gs, start=1):
            wd = cfg.get("weight_decay", 1e-2 if kind == "adamw" else 0.0)  # PyTorch defaults
            if kind == "sgd":
                g = g + wd * p
                mom = cfg.get("momentum", 0.0)
                if mom:
                    buf = g.copy() if buf is None else mom * buf + (1 - cfg.get("dampening", 0.0)) * g
                    g = g + mom * buf if cfg.get("nesterov") else buf
                p = p - cfg["lr"] * g
            elif kind in ("adam", "adamw"):
                b1, b2 = cfg.get("betas", (0.9, 0.999))
                if kind == "adamw":
                    p = p * (1 - cfg["lr"] * wd)
                else:
                    g = g + wd * p
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
                p = p - cfg["lr"] * m_hat / (np.sqrt(v_hat) + cfg.get("eps", 1e-8))
            elif kind == "rmsprop":
                g = g + wd * p
                alpha = cfg.get("alpha", 0.99)
                v = alpha * v + (1 - alpha) * g * g
                avg = np.sqrt(v) + cfg.get("eps", 1e-8)
                mom = cfg.get("momentum", 0.0)
                if mom:
                    buf = (np.zeros_like(p) if buf is None else buf) * mom + g / avg
                    p = p - cfg["lr"] * buf
                else:
                    p = p - cfg["lr"] * g / avg
            history.append(p.copy())
        out.append(history)
    return out


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    ("adam", {"lr": 1e-2}),
    ("adam", {"lr": 2e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", {"lr": 1e-2}),
    ("adamw", {"lr": 1e-2, "weight_decay": 0.3, "betas": (0.85, 0.95)}),
    ("rmsprop", {"lr": 1e-2}),
    ("rmsprop", {"lr": 1e-2, "alpha": 0.9, "momentum": 0.9, "weight_decay": 0.05}),
]
CLASSES = {"sgd": ax.SGD, "adam": ax.Adam, "adamw": ax.AdamW, "rmsprop": ax.RMSprop}


def problem(seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) for _ in range(STEPS)] for s in SHAPES]
    return params, grads


def run_anyxp(backend: Backend, kind: str, cfg: dict, dtype: str) -> list[list[np.ndarray]]:
    params, grads = problem()
    dt = backend.float_dtype(dtype)
    p_dev = [backend.asarray(p, dtype=dt) for p in params]
    g_dev = [backend.xp.zeros_like(p) for p in p_dev]
    opt = CLASSES[kind](**cfg)
    opt.setup(p_dev, g_dev, backend)
    history: list[list[np.ndarray]] = [[] for _ in SHAPES]
    for t in range(STEPS):
        for i, g in enumerate(g_dev):
            g[...] = backend.asarray(grads[i][t], dtype=dt)
        opt.step()
        for i, p in enumerate(p_dev):
            assert p.dtype == dt
            history[i].append(np.array(backend.to_numpy(p)))
    for state in opt.states:
        for buf in state.values():
            assert backend.is_native(buf) and buf.dtype == dt
    return history


@pytest.mark.parametrize(("kind", "cfg"), CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 2e-5)])
def test_matches_numpy_reference(backend: Backend, kind: str, cfg: dict, dtype: str, rtol: float) -> None:
    params, grads = problem()
    expected = reference(kind, params, grads, cfg)
    got = run_anyxp(backend, kind, cfg, dtype)
    for exp_p, got_p in zip(expected, got, strict=True):
        for e, g in zip(exp_p, got_p, strict=True):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize(("kind", "cfg"), CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_matches_torch_optim(backend: Backend, kind: str, cfg: dict) -> None:
    import torch

    params, grads = problem()
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    torch_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                 "rmsprop": torch.optim.RMSprop}[kind]
    opt = torch_cls(tensors, **cfg)
    expected: list[list[np.ndarray]] = [[] for _ in SHAPES]
    for t in range(STEPS):
        for i, p in enumerate(tensors):
            p.grad = torch.tensor(grads[i][t], dtype=torch.float64)
        opt.step()
        for i, p in enumerate(tensors):
            expected[i].append(p.detach().numpy().copy())
    got = run_anyxp(backend, kind, cfg, "float64")
    for exp_p, got_p in zip(expected, got, strict=True):
        for e, g in zip(exp_p, got_p, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kind", "cfg"), CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_kernels_agree_with_the_array_api_reference(backend: Backend, kind: str, cfg: dict, dtype: str) -> None:
    """The backend's kernels (NumPy/CuPy out= ufuncs on threads, PyTorch's fused Adam)
    against the pure Array API update, on a buffer big enough to be split."""
    n = 2 * PARALLEL_MIN_ELEMENTS + 17
    rng = np.random.default_rng(1)
    p0, grads = rng.normal(size=n), [rng.normal(size=n) for _ in range(3)]
    results = []
    for fast in (True, False):
        variant = Backend(backend.name, backend.library, backend.device, fast_kernels=fast)
        dt = variant.float_dtype(dtype)
        p, g = variant.asarray(p0.copy(), dtype=dt), variant.xp.zeros((n,), dtype=dt, device=variant.device)
        opt = CLASSES[kind](**cfg)
        opt.setup([p], [g], variant)
        assert len(opt._chunks) == variant.threads
        for grad in grads:
            g[...] = variant.asarray(grad, dtype=dt)
            opt.step()
        results.append(variant.to_numpy(p))
    if backend.name in ("numpy", "array_api_strict"):
        np.testing.assert_array_equal(results[0], results[1])  # same operations, same order
    else:
        rtol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(results[0], results[1], rtol=rtol, atol=rtol)


def test_network_optimizer_updates_the_layers_in_place(backend: Backend, small_classification) -> None:
    x, y = small_classification
    net = ax.Network([ax.Dense(8, "relu"), ax.Dense(3, "softmax")], input_size=5,
                     optimizer=ax.Adam(lr=1e-2), backend=backend, seed=0)
    net.build()
    before = net.get_weights()
    net.fit(x, y, epochs=1, batch_size=40, verbose=0)
    after = net.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    flat = backend.to_numpy(net._theta)
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in after]), flat)
    assert net.optimizer.steps == 3
    for buf in net.optimizer.state_arrays().values():
        assert backend.is_native(buf)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ax.SGD(lr=-1), "lr"),
        (lambda: ax.SGD(lr=0.1, nesterov=True), "Nesterov"),
        (lambda: ax.Adam(betas=(1.0, 0.9)), "betas"),
        (lambda: ax.RMSprop(alpha=1.5), "alpha"),
        (lambda: ax.AdamW(weight_decay=float("nan")), "weight_decay"),
    ],
)
def test_bad_hyperparameters_are_named(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_unknown_optimizer_lists_the_valid_ones() -> None:
    valid = "sgd, adam, adamw, rmsprop, adagrad, adamax, nadam, radam, lion"
    with pytest.raises(ValueError, match=rf"unknown optimizer 'adadelta'.*{valid}"):
        ax.Network([ax.Dense(2)], optimizer="adadelta")
