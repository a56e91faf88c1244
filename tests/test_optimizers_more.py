"""Adagrad, Adamax, NAdam and RAdam against torch.optim, Lion against a NumPy transcription
of its rule and against Keras 3's keras.optimizers.Lion: float64, 1e-10, over many steps of
random gradients, with several hyperparameter sets, schedules and clipping; their state
through save/load, their configs, their errors, their host syncs, and whole networks
trained with each on every backend."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import count_host_syncs

import anyxp as ax
from anyxp.backend import PARALLEL_MIN_ELEMENTS, Backend
from anyxp.optimizers import (
    OPTIMIZERS,
    Adagrad,
    Adamax,
    Lion,
    NAdam,
    RAdam,
    get_optimizer,
    optimizer_from_config,
)
from anyxp.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay

SHAPES = [(4, 3), (3,), (2, 5)]
STEPS = 50
CLASSES: dict[str, type[ax.Optimizer]] = {
    "adagrad": Adagrad, "adamax": Adamax, "nadam": NAdam, "radam": RAdam, "lion": Lion,
}
TORCH_NAMES = {"adagrad": "Adagrad", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}
Schedule = Callable[[], Callable[[int], float]]


class Case:
    """One run: optimizer, its keyword arguments, optional clipping and schedule."""

    def __init__(self, kind: str, cfg: dict[str, Any], clip: tuple[str, float] | None = None,
                 schedule: Schedule | None = None) -> None:
        self.kind, self.cfg, self.clip, self.schedule = kind, cfg, clip, schedule

    def __repr__(self) -> str:
        parts = [self.kind, *(f"{k}={v}" for k, v in self.cfg.items())]
        if self.clip:
            parts.append(f"{self.clip[0]}={self.clip[1]}")
        if self.schedule:
            parts.append("schedule")
        return "-".join(str(p).replace(" ", "") for p in parts)

    def anyxp_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.cfg)
        if self.clip:
            kwargs[self.clip[0]] = self.clip[1]
        if self.schedule:
            kwargs["lr"] = self.schedule()
        return kwargs

    def optimizer(self) -> ax.Optimizer:
        return CLASSES[self.kind](**self.anyxp_kwargs())


def exponential() -> Callable[[int], float]:
    return ExponentialDecay(0.05, decay_steps=10, decay_rate=0.5)


def cosine() -> Callable[[int], float]:
    return CosineDecay(0.0, decay_steps=30, alpha=0.1, warmup_target=0.02, warmup_steps=10)


def piecewise() -> Callable[[int], float]:
    return PiecewiseConstantDecay([5, 20], [1e-3, 3e-3, 5e-4])


TORCH_CASES = [
    Case("adagrad", {}),
    Case("adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.5,
                     "eps": 1e-6}),
    Case("adagrad", {"lr": 0.05, "lr_decay": 0.05}, clip=("clipnorm", 1.0)),
    Case("adagrad", {"initial_accumulator_value": 0.1}, schedule=exponential),
    Case("adamax", {}),
    Case("adamax", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-4, "weight_decay": 0.1}),
    Case("adamax", {"lr": 0.01}, clip=("global_clipnorm", 2.0)),
    Case("adamax", {"weight_decay": 0.01}, clip=("clipvalue", 0.5), schedule=cosine),
    Case("nadam", {}),
    Case("nadam", {"lr": 0.01, "weight_decay": 0.1}),
    Case("nadam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "momentum_decay": 0.05,
                   "betas": (0.85, 0.99)}),
    Case("nadam", {"momentum_decay": 0.0, "eps": 1e-3}),
    Case("nadam", {"decoupled_weight_decay": True, "weight_decay": 0.05}, clip=("clipvalue", 0.5),
         schedule=exponential),
    Case("nadam", {}, clip=("clipnorm", 1.0)),
    Case("radam", {}),  # beta2 = 0.999: unrectified for 5 steps, rectified after
    Case("radam", {"lr": 0.01, "betas": (0.9, 0.9), "weight_decay": 0.1}),
    Case("radam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "eps": 1e-4}),
    Case("radam", {"lr": 0.01, "betas": (0.8, 0.6)}),  # rho_inf = 4: never rectified
    Case("radam", {"weight_decay": 0.01}, clip=("global_clipnorm", 2.0), schedule=cosine),
    Case("radam", {}, clip=("clipnorm", 1.0)),
]
LION_CASES = [
    Case("lion", {}),
    Case("lion", {"lr": 1e-3, "betas": (0.95, 0.98), "weight_decay": 0.1}),
    Case("lion", {"lr": 1e-3, "betas": (0.0, 1.0)}),  # signSGD, momentum never updated
    Case("lion", {"weight_decay": 0.5}, schedule=piecewise),
    Case("lion", {"lr": 1e-3}, clip=("clipvalue", 0.5)),
    Case("lion", {"lr": 1e-3, "weight_decay": 0.1}, clip=("clipnorm", 1.0), schedule=piecewise),
    Case("lion", {"lr": 1e-3}, clip=("global_clipnorm", 2.0)),
]


def problem(seed: int = 0, steps: int = STEPS) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Parameters and each step's gradients (some elements over clipvalue 0.5, every tensor's
    norm over 1.0 most steps, the global norm over 2.0)."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) for s in SHAPES] for _ in range(steps)]
    return params, grads


def run_anyxp(backend: Backend, opt: ax.Optimizer, params: list[np.ndarray], grads: list[list[np.ndarray]],
              dtype: str = "float64") -> list[list[np.ndarray]]:
    """The parameters after every step (one buffer per tensor: clipnorm is per buffer)."""
    dt = backend.float_dtype(dtype)
    p_dev = [backend.asarray(p.copy(), dtype=dt) for p in params]  # NumPy's asarray would update `params`
    g_dev = [backend.xp.zeros_like(p) for p in p_dev]
    opt.setup(p_dev, g_dev, backend)
    history = []
    for step in grads:
        for g, value in zip(g_dev, step, strict=True):
            g[...] = backend.asarray(value, dtype=dt)
        opt.step()
        history.append([np.array(backend.to_numpy(p)) for p in p_dev])
    for p in p_dev:
        assert backend.is_native(p) and p.dtype == dt
    for state in opt.states:
        assert set(state) == set(opt.state_names)
        for buf in state.values():
            assert backend.is_native(buf) and buf.dtype == dt
    return history


@contextlib.contextmanager
def torch_float64() -> Iterator[Any]:
    """torch with float64 as its default dtype: torch.optim keeps host scalars (NAdam's
    mu_product, the step counts) in the default dtype; anyxp keeps them in Python floats."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch
    finally:
        torch.set_default_dtype(before)


def clip_torch(torch: Any, params: list[Any], clip: tuple[str, float] | None) -> None:
    if clip is None:
        return
    how, threshold = clip
    if how == "clipvalue":
        torch.nn.utils.clip_grad_value_(params, threshold)
    elif how == "clipnorm":
        for p in params:
            torch.nn.utils.clip_grad_norm_(p, threshold)
    else:
        torch.nn.utils.clip_grad_norm_(params, threshold)


def run_torch(case: Case, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    with torch_float64() as torch:
        tensors = [torch.tensor(p, requires_grad=True) for p in params]
        schedule = case.schedule() if case.schedule else None
        cfg = dict(case.cfg)
        if schedule is not None:
            cfg["lr"] = schedule(0)
        opt = getattr(torch.optim, TORCH_NAMES[case.kind])(tensors, **cfg)
        history = []
        for t, step in enumerate(grads):
            for p, g in zip(tensors, step, strict=True):
                p.grad = torch.tensor(g)
            clip_torch(torch, tensors, case.clip)
            if schedule is not None:
                for group in opt.param_groups:
                    group["lr"] = schedule(t)
            opt.step()
            history.append([p.detach().numpy().copy() for p in tensors])
    return history


def clip_numpy(grads: list[np.ndarray], clip: tuple[str, float] | None) -> list[np.ndarray]:
    """torch.nn.utils' clipping, as anyxp does it (scale by max_norm / (norm + 1e-6))."""
    if clip is None:
        return grads
    how, threshold = clip
    if how == "clipvalue":
        return [np.clip(g, -threshold, threshold) for g in grads]
    if how == "clipnorm":
        return [g * min(1.0, threshold / (np.linalg.norm(g) + 1e-6)) for g in grads]
    scale = min(1.0, threshold / (math.sqrt(sum(np.sum(g * g) for g in grads)) + 1e-6))
    return [g * scale for g in grads]


def run_lion_numpy(case: Case, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Lion as the paper writes it (and Keras 3 runs it): decoupled decay, then the sign
    of the interpolation, then the momentum."""
    cfg = case.cfg
    b1, b2 = cfg.get("betas", (0.9, 0.99))
    wd = cfg.get("weight_decay", 0.0)
    schedule = case.schedule() if case.schedule else None
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    history = []
    for t, step in enumerate(grads):
        lr = schedule(t) if schedule else cfg.get("lr", 1e-4)
        step = clip_numpy(step, case.clip)
        for i, g in enumerate(step):
            update = np.sign(b1 * ms[i] + (1 - b1) * g)
            ps[i] = ps[i] - lr * (update + wd * ps[i])
            ms[i] = b2 * ms[i] + (1 - b2) * g
        history.append([p.copy() for p in ps])
    return history


def assert_histories_close(got: list[list[np.ndarray]], expected: list[list[np.ndarray]], rtol: float = 1e-10,
                           atol: float = 1e-12) -> None:
    assert len(got) == len(expected)
    for t, (got_step, exp_step) in enumerate(zip(got, expected, strict=True)):
        for g, e in zip(got_step, exp_step, strict=True):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"after step {t + 1}")


def moved(history: list[list[np.ndarray]], params: list[np.ndarray]) -> float:
    return max(float(np.abs(p - p0).max()) for p, p0 in zip(history[-1], params, strict=True))


# --------------------------------------------------------------------------- against torch.optim


@pytest.mark.on_device
@pytest.mark.parametrize("case", TORCH_CASES, ids=repr)
def test_matches_torch_optim(backend: Backend, case: Case) -> None:
    params, grads = problem()
    expected = run_torch(case, params, grads)
    got = run_anyxp(backend, case.optimizer(), params, grads)
    assert moved(expected, params) > 1e-3  # the comparison is not between two standing starts
    assert_histories_close(got, expected)


def test_the_torch_cases_exercise_what_they_claim() -> None:
    """RAdam's cases cross rho_t > 5 (at step 6 for beta2 = 0.999 and 0.9) or never do
    (beta2 = 0.6: rho_inf = 4); the clipping thresholds act on the problem's gradients."""
    radam = RAdam()
    states = [radam.rectification(t) is not None for t in range(1, STEPS + 1)]
    assert states[:5] == [False] * 5 and all(states[5:])
    assert not any(RAdam(betas=(0.8, 0.6)).rectification(t) for t in range(1, 10_000))
    assert [RAdam(betas=(0.9, 0.9)).rectification(t) is not None for t in (5, 6)] == [False, True]
    _, grads = problem()
    assert all(max(np.abs(g).max() for g in step) > 0.5 for step in grads[:10])
    assert sum(np.linalg.norm(g) > 1.0 for step in grads for g in step) > STEPS
    assert all(math.sqrt(sum(np.sum(g * g) for g in step)) > 2.0 for step in grads)


@pytest.mark.parametrize("kind", list(TORCH_NAMES))
def test_defaults_are_torchs(kind: str) -> None:
    """Each default is torch.optim's (and what ``get_optimizer(name)`` builds)."""
    with torch_float64() as torch:
        torch_defaults = getattr(torch.optim, TORCH_NAMES[kind])([torch.zeros(1, requires_grad=True)]).defaults
    config = get_optimizer(kind).get_config()
    for key, value in config.items():
        theirs = torch_defaults[key]
        assert (list(theirs) if key == "betas" else theirs) == value, key
    assert isinstance(get_optimizer(kind), CLASSES[kind])


# --------------------------------------------------------------------------- Lion


@pytest.mark.on_device
@pytest.mark.parametrize("case", LION_CASES, ids=repr)
def test_lion_matches_its_formula(backend: Backend, case: Case) -> None:
    params, grads = problem()
    expected = run_lion_numpy(case, params, grads)
    got = run_anyxp(backend, case.optimizer(), params, grads)
    assert moved(expected, params) > 1e-3
    assert_histories_close(got, expected)


@pytest.fixture(scope="module")
def keras64() -> Iterator[Any]:
    """Keras 3 on its torch backend, computing in float64 (restored after)."""
    if "keras" not in sys.modules:  # the backend is fixed at Keras's import
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:  # not installed, or its torch backend cannot load
        pytest.skip(f"keras cannot be imported: {exc}")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    before = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx(before)


KERAS_LION_CASES = [c for c in LION_CASES if c.clip is None or c.clip[0] == "clipvalue"]  # Keras's norms differ


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("case", KERAS_LION_CASES, ids=repr)
def test_lion_matches_keras(backend: Backend, keras64: Any, case: Case) -> None:
    keras = keras64
    cfg = case.cfg
    b1, b2 = cfg.get("betas", (0.9, 0.99))
    if b1 == 0.0:
        pytest.skip("Keras refuses beta_1 = 0 (it degenerates to signSGD)")
    schedule = case.schedule() if case.schedule else None
    if isinstance(schedule, PiecewiseConstantDecay):
        config = schedule.get_config()
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(config["boundaries"], config["values"])
    else:
        lr = cfg.get("lr", 1e-4)
    kwargs: dict[str, Any] = {"learning_rate": lr, "beta_1": b1, "beta_2": b2}
    if cfg.get("weight_decay"):
        kwargs["weight_decay"] = cfg["weight_decay"]
    if case.clip:
        kwargs[case.clip[0]] = case.clip[1]
    theirs = keras.optimizers.Lion(**kwargs)
    params, grads = problem()
    variables = [keras.Variable(p, dtype="float64") for p in params]
    expected = []
    for step in grads:
        theirs.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in step], variables)
        expected.append([np.array(keras.ops.convert_to_numpy(v), dtype=np.float64) for v in variables])
    got = run_anyxp(backend, case.optimizer(), params, grads)
    assert_histories_close(got, expected)


def test_lion_sign_keeps_nan_and_zero(backend: Backend) -> None:
    """sign(0) = 0 (no step where momentum and gradient cancel) and NaN stays NaN (as
    torch.sign and Keras): a NaN gradient is not silently turned into no update."""
    with backend.activate():
        dt = backend.float_dtype("float64")
        p = backend.asarray(np.array([1.0, 1.0, 1.0, 1.0]), dtype=dt)
        g = backend.asarray(np.array([2.0, -3.0, 0.0, np.nan]), dtype=dt)
        opt = Lion(lr=0.5)
        opt.setup([p], [g], backend)
        opt.step()
        np.testing.assert_array_equal(backend.to_numpy(p), [0.5, 1.5, 1.0, np.nan])


# --------------------------------------------------------------------------- NAdam's mu product


def torch_mu_products(b1: float, psi: float, steps: int) -> list[float]:
    product, products = 1.0, []
    for t in range(1, steps + 1):
        product *= b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        products.append(product)
    return products


@pytest.mark.parametrize(("b1", "psi"), [(0.9, 4e-3), (0.99, 0.5), (0.0, 4e-3), (0.999, 0.0)])
def test_nadam_mu_product_is_a_function_of_the_step(b1: float, psi: float) -> None:
    """Step by step, from scratch, and backwards: PyTorch's running product, to the bit
    while it matters (until 1 - product is 1 exactly)."""
    opt = NAdam(betas=(b1, 0.999), momentum_decay=psi)
    expected = torch_mu_products(b1, psi, 400)
    running = [opt.mu_product(t) for t in range(1, 401)]
    fresh = [NAdam(betas=(b1, 0.999), momentum_decay=psi).mu_product(t) for t in range(1, 401)]
    backwards = [opt.mu_product(t) for t in range(400, 0, -1)][::-1]
    for t, (e, r, f, b) in enumerate(zip(expected, running, fresh, backwards, strict=True), start=1):
        assert r == f == b, t
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        assert 1.0 - r == 1.0 - e and 1.0 - r * mu_next == 1.0 - e * mu_next, t
        if e >= 2.0**-60:
            assert r == e, t


def test_nadam_mu_product_of_a_huge_step_count_is_quick() -> None:
    """A checkpoint may say 2**62 steps: the product is not multiplied out step by step."""
    for betas, psi in (((0.9, 0.999), 4e-3), ((0.999999, 0.999), 10.0)):
        opt = NAdam(betas=betas, momentum_decay=psi)
        start = time.perf_counter()
        for steps in (10**7, 2**62, 5, 2**62 - 1):
            product = opt.mu_product(steps)
            assert 0.0 <= product < 1.0
        assert time.perf_counter() - start < 5.0
    slow = NAdam(betas=(0.999999, 0.999), momentum_decay=10.0)  # mu_t is beta1 from step ~92 on
    expected = torch_mu_products(0.999999, 10.0, 200)[-1] * 0.999999 ** (10**6 - 200)
    assert slow.mu_product(10**6) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- the fast paths


@pytest.mark.on_device
@pytest.mark.parametrize("kind", list(CLASSES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_updates_agree_with_one_buffer(backend: Backend, kind: str, dtype: str) -> None:
    """NumPy splits a big buffer into chunks updated on threads; the same operations on
    one whole buffer (fast kernels off) give the same values."""
    n = 2 * PARALLEL_MIN_ELEMENTS + 17
    rng = np.random.default_rng(1)
    p0, grads = rng.normal(size=n), [rng.normal(size=n) for _ in range(4)]
    results = []
    for fast in (True, False):
        variant = Backend(backend.name, backend.library, backend.device, fast_kernels=fast)
        dt = variant.float_dtype(dtype)
        p, g = variant.asarray(p0.copy(), dtype=dt), variant.xp.zeros((n,), dtype=dt, device=variant.device)
        opt = CLASSES[kind](weight_decay=0.01, clipnorm=1e4)  # the norm is about 360: no clipping
        opt.setup([p], [g], variant)
        assert len(opt._chunks) == variant.threads
        for grad in grads:
            g[...] = variant.asarray(grad, dtype=dt)
            opt.step()
        results.append(variant.to_numpy(p))
    if backend.name in ("numpy", "array_api_strict"):
        np.testing.assert_array_equal(results[0], results[1])
    else:
        rtol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(results[0], results[1], rtol=rtol, atol=rtol)


@pytest.mark.on_device
@pytest.mark.parametrize("kind", list(CLASSES))
def test_float32_follows_float64(backend: Backend, kind: str) -> None:
    """float32 parameters and state stay float32 (no Python float promotes them) and
    follow the float64 run."""
    params, grads = problem(steps=20)
    opt = {"lion": lambda: Lion(lr=1e-3, weight_decay=0.1)}.get(kind, lambda: CLASSES[kind](weight_decay=0.1))
    high = run_anyxp(backend, opt(), params, grads, "float64")
    low = run_anyxp(backend, opt(), params, grads, "float32")
    assert_histories_close(low, high, rtol=1e-4, atol=1e-5)


@contextlib.contextmanager
def no_host_sync(backend: Backend) -> Iterator[list[str]]:
    """Counts (array_api_strict) or refuses (CuPy, real or stand-in) device->host syncs."""
    if backend.name == "array_api_strict":
        with count_host_syncs() as syncs:
            yield syncs
    elif backend.name == "cupy":
        import cupyx

        with cupyx.allow_synchronize(False):
            yield []
    else:
        pytest.skip("host syncs are counted on array_api_strict and refused on CuPy")


@pytest.mark.filterwarnings("ignore:cupyx.allow_synchronize will be removed:UserWarning")
def test_a_step_makes_no_host_sync(backend: Backend) -> None:
    """Every host-side scalar (bias corrections, RAdam's branch, NAdam's product) is
    computed from the step count: no step reads the device, clipped and scheduled too."""
    params, grads = problem(steps=8)
    for kind, cls in CLASSES.items():
        for clip in ("clipvalue", "clipnorm", "global_clipnorm"):
            opt = cls(lr=ExponentialDecay(0.01, 2, 0.5), **{clip: 1.0})
            dt = backend.float_dtype("float64")
            with backend.activate():
                p_dev = [backend.asarray(p.copy(), dtype=dt) for p in params]
                g_dev = [backend.asarray(g, dtype=dt) for g in grads[0]]
                opt.setup(p_dev, g_dev, backend)
                with no_host_sync(backend) as syncs:
                    for _ in range(8):  # RAdam crosses rho_t > 5 on the way
                        opt.step()
            assert syncs == [], (kind, clip, syncs)


# --------------------------------------------------------------------------- networks


def data(n: int = 40, classes: int = 3, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, np.argmax(x @ rng.normal(size=(5, classes)), axis=1)


def network(backend: Backend, optimizer: ax.Optimizer, **kwargs: Any) -> ax.Network:
    return ax.Network([ax.Dense(7, "tanh"), ax.Dense(3, "softmax")], input_size=5, loss="cross_entropy",
                      optimizer=optimizer, backend=backend, dtype="float64", seed=0, **kwargs)


NETWORK_CASES = [
    Case("adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1},
         clip=("clipnorm", 0.25)),
    Case("adamax", {"lr": 0.02, "weight_decay": 0.01}, clip=("global_clipnorm", 0.5), schedule=exponential),
    Case("nadam", {"lr": 0.02, "weight_decay": 0.01, "decoupled_weight_decay": True}, clip=("clipvalue", 0.1)),
    Case("radam", {"lr": 0.02, "weight_decay": 0.01}, schedule=exponential),
]


@pytest.mark.parametrize("case", NETWORK_CASES, ids=repr)
def test_network_training_matches_torch(backend: Backend, case: Case) -> None:
    """Through Network.fit (one flat buffer, clipnorm per parameter tensor): the same
    training in PyTorch, 4 epochs of 3 unshuffled batches."""
    x, y = data()
    net = network(backend, case.optimizer())
    weights = net.get_weights()
    with torch_float64() as torch:
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
        params = list(model.parameters())
        with torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(torch.from_numpy(w.T.copy() if w.ndim == 2 else w))
        schedule = case.schedule() if case.schedule else None
        cfg = {**case.cfg, **({"lr": schedule(0)} if schedule else {})}
        opt = getattr(torch.optim, TORCH_NAMES[case.kind])(params, **cfg)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        step = 0
        for _ in range(4):
            for lo in range(0, len(x), 16):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[lo : lo + 16]), yt[lo : lo + 16]).backward()
                clip_torch(torch, params, case.clip)
                if schedule is not None:
                    for group in opt.param_groups:
                        group["lr"] = schedule(step)
                opt.step()
                step += 1
        expected = [p.detach().numpy().copy() for p in params]
    net.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    assert net.optimizer.steps == step == 12
    for got, want in zip(net.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want.T if want.ndim == 2 else want, rtol=1e-10, atol=1e-12)


TRAINING = {
    "adagrad": lambda: Adagrad(lr=0.1),
    "adamax": lambda: Adamax(lr=0.02),
    "nadam": lambda: NAdam(lr=0.01),
    "radam": lambda: RAdam(lr=0.01),
    "lion": lambda: Lion(lr=2e-3, weight_decay=0.01),
}


@pytest.mark.parametrize("kind", list(TRAINING))
def test_a_network_learns(backend: Backend, kind: str, small_classification) -> None:
    x, y = small_classification
    net = ax.Network([ax.Dense(16, "relu"), ax.Dense(3, "softmax")], input_size=5, optimizer=TRAINING[kind](),
                     backend=backend, seed=0)
    history = net.fit(x, y, epochs=15, batch_size=20, verbose=0)
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
    assert net.optimizer.steps == 15 * 6
    for buf in net.optimizer.state_arrays().values():
        assert backend.is_native(buf)
    assert net.optimizer.name == kind and set(net.optimizer.states[0]) == set(net.optimizer.state_names)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_a_network_takes_each_name(backend: Backend, kind: str) -> None:
    net = ax.Network([ax.Dense(3, "softmax")], input_size=5, optimizer=kind, backend=backend, seed=0)
    assert type(net.optimizer) is OPTIMIZERS[kind] and net.optimizer.name == kind


# --------------------------------------------------------------------------- save / load


ROUND_TRIPS = {
    "adagrad": lambda: Adagrad(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2, clipnorm=0.5),
    "adamax": lambda: Adamax(lr=ExponentialDecay(0.02, 4, 0.5), weight_decay=1e-3),
    "nadam": lambda: NAdam(lr=0.01, weight_decay=0.01, decoupled_weight_decay=True, momentum_decay=0.05,
                           global_clipnorm=0.5),
    "nadam-slow-mu": lambda: NAdam(lr=0.01, betas=(0.99, 0.999), momentum_decay=2.0),  # the product matters
    "radam": lambda: RAdam(lr=PiecewiseConstantDecay([3, 8], [0.02, 0.01, 0.005]), clipvalue=0.1),
    "lion": lambda: Lion(lr=CosineDecay(0.0, 10, warmup_target=3e-3, warmup_steps=2), weight_decay=0.1,
                         clipnorm=0.5),
}


@pytest.mark.parametrize("how", ["save", "pickle"])
@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
def test_training_continues_after_a_round_trip(backend: Backend, kind: str, how: str, tmp_path) -> None:
    """Saved mid-training (RAdam still unrectified, NAdam's product still above 2**-60),
    loaded, both trained on: the same weights (bit for bit on NumPy)."""
    x, y = data()
    net = network(backend, ROUND_TRIPS[kind]())
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)  # 3 steps
    if kind == "nadam-slow-mu":
        assert net.optimizer.mu_product(3) > 2.0**-60
    if how == "save":
        net.save(tmp_path / "net.npz")
        clone = ax.load(tmp_path / "net.npz", backend=backend)
    else:
        clone = pickle.loads(pickle.dumps(net))
    original, loaded = net.optimizer, clone.optimizer
    assert type(loaded) is type(original) and loaded.get_config() == original.get_config()
    assert loaded.steps == original.steps == 3
    assert set(loaded.state_arrays()) == set(original.state_arrays())
    for key, value in original.state_arrays().items():
        np.testing.assert_array_equal(backend.to_numpy(loaded.state_arrays()[key]), backend.to_numpy(value))
    if kind.startswith("nadam"):
        loaded._mu_cache = ((0.0, 0.0), 0, 1.0)  # as a fresh process would have it (pickle copies the cache)
    for model in (net, clone):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert loaded.steps == original.steps == 12
    for a, b in zip(net.get_weights(), clone.get_weights(), strict=True):
        if backend.name == "numpy":
            np.testing.assert_array_equal(b, a)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_adagrad_sums_start_at_the_initial_value(backend: Backend, tmp_path) -> None:
    net = network(backend, Adagrad(initial_accumulator_value=0.25))
    for buf in net.optimizer.state_arrays().values():
        np.testing.assert_array_equal(backend.to_numpy(buf), 0.25)
    x, y = data()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    net.save(tmp_path / "net.npz")
    clone = ax.load(tmp_path / "net.npz", backend=backend)
    for key, value in net.optimizer.state_arrays().items():  # the loaded sums, not the initial value again
        np.testing.assert_array_equal(backend.to_numpy(clone.optimizer.state_arrays()[key]), backend.to_numpy(value))
        assert (backend.to_numpy(value) > 0.25).any()


@pytest.mark.parametrize(("optimizer", "key"), [(Adagrad, "sum"), (Adamax, "exp_inf")])
def test_a_checkpoint_with_negative_nonnegative_state_is_refused(backend: Backend, tmp_path, optimizer: type,
                                                                 key: str) -> None:
    """Adagrad's sums of squares and Adamax's maxima of magnitudes cannot be negative: a
    file that says otherwise is refused (anyxp.checkpoint.NONNEGATIVE_STATE)."""
    x, y = data()
    net = network(backend, optimizer())
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    net.save(tmp_path / "net.npz")
    with zipfile.ZipFile(tmp_path / "net.npz") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = f"optimizer/{key}/0.npy"
    state = np.load(io.BytesIO(members[name]))
    state[1] = -1.0
    buffer = io.BytesIO()
    np.save(buffer, state)
    members[name] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        for member, blob in members.items():
            archive.writestr(member, blob)
    with pytest.raises(ax.CheckpointError, match=rf"optimizer/{key}/0: holds negative values"):
        ax.load(tmp_path / "bad.npz", backend=backend)


# --------------------------------------------------------------------------- configs and errors


CONFIGS = [
    Adagrad(lr=0.1, lr_decay=0.01, weight_decay=0.02, initial_accumulator_value=0.3, eps=1e-9, clipvalue=1.0),
    Adamax(lr=ExponentialDecay(0.02, 4, 0.5), betas=(0.8, 0.9), eps=1e-7, weight_decay=0.1, clipnorm=2.0),
    NAdam(lr=0.01, betas=(0.8, 0.9), eps=1e-7, weight_decay=0.1, momentum_decay=0.01, decoupled_weight_decay=True,
          global_clipnorm=3.0),
    RAdam(lr=CosineDecay(0.01, 100), betas=(0.85, 0.95), eps=1e-6, weight_decay=0.05, decoupled_weight_decay=True),
    Lion(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.3, clipvalue=0.5),
]


@pytest.mark.parametrize("opt", CONFIGS, ids=lambda o: o.name)
def test_config_round_trip(opt: ax.Optimizer) -> None:
    config = opt.get_config()
    again = optimizer_from_config(opt.name, json.loads(json.dumps(config)))
    assert type(again) is type(opt)
    assert again.get_config() == config
    assert repr(again) == repr(opt)
    defaults = type(opt)()
    assert optimizer_from_config(opt.name, defaults.get_config()).get_config() == defaults.get_config()


def test_lion_defaults() -> None:
    assert Lion().get_config() == {"lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.99]}


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (lambda: Adagrad(lr=-0.1), ValueError, r"^lr must be"),
        (lambda: Adagrad(lr_decay=-1e-3), ValueError, r"^lr_decay must be a finite number >= 0, got -0\.001"),
        (lambda: Adagrad(initial_accumulator_value=-0.1), ValueError, r"^initial_accumulator_value must be"),
        (lambda: Adagrad(eps=float("nan")), ValueError, r"^eps must be"),
        (lambda: Adagrad(weight_decay=-1), ValueError, r"^weight_decay must be"),
        (lambda: Adagrad(lr_decay="0.1"), TypeError, r"^lr_decay must be a real number"),
        (lambda: Adamax(betas=(0.9, 1.0)), ValueError, r"^betas\[1\] must be"),
        (lambda: Adamax(betas=0.9), TypeError, r"^betas must be a pair"),
        (lambda: Adamax(eps=-1e-8), ValueError, r"^eps must be"),
        (lambda: NAdam(momentum_decay=-4e-3), ValueError, r"^momentum_decay must be"),
        (lambda: NAdam(decoupled_weight_decay=1), TypeError, r"decoupled_weight_decay"),
        (lambda: NAdam(betas=(-0.1, 0.9)), ValueError, r"^betas\[0\] must be"),
        (lambda: NAdam(betas=(0.9, 0.99, 0.999)), ValueError, r"^betas must be a pair"),
        (lambda: RAdam(decoupled_weight_decay="yes"), TypeError, r"decoupled_weight_decay"),
        (lambda: RAdam(betas=(1.0, 0.9)), ValueError, r"^betas\[0\] must be"),
        (lambda: RAdam(eps=float("inf")), ValueError, r"^eps must be"),
        (lambda: Lion(betas=(0.9, 1.01)), ValueError, r"^betas\[1\] must be"),
        (lambda: Lion(betas=(-0.5, 0.99)), ValueError, r"^betas\[0\] must be"),
        (lambda: Lion(weight_decay=float("nan")), ValueError, r"^weight_decay must be"),
        (lambda: Lion(lr=lambda step: -1.0), ValueError, r"schedule .* returned -1\.0 at step 0"),
        (lambda: Lion(clipnorm=0.0), ValueError, r"^clipnorm must be"),
        (lambda: NAdam(clipvalue=1.0, clipnorm=1.0), ValueError, r"at most one of clipvalue, clipnorm"),
        (lambda: RAdam(amsgrad=True), TypeError, r"amsgrad"),
    ],
)
def test_bad_hyperparameters_are_named(factory: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        factory()


@pytest.mark.parametrize("kind", list(CLASSES))
def test_lr_can_be_set_by_hand(kind: str) -> None:
    opt = CLASSES[kind](lr=0.5)
    opt.lr = 0.25
    assert opt.lr == opt.current_lr == opt.get_config()["lr"] == 0.25
    with pytest.raises(ValueError, match=r"^lr must be"):
        opt.lr = -1.0
