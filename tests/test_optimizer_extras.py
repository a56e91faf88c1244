"""Learning-rate schedules and gradient clipping in the optimizers, end to end through
`Network.fit`: against torch.optim with torch.nn.utils' clipping (float64, 1e-10),
their errors, their survival through save/load and pickling, and their host syncs."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import count_host_syncs

import anyxp as ax
from anyxp.backend import PARALLEL_MIN_ELEMENTS, Backend
from anyxp.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay

EPOCHS, BATCH, SAMPLES = 2, 16, 40  # batches of 16, 16 and 8: 3 updates per epoch
STEPS_PER_EPOCH = -(-SAMPLES // BATCH)

# the same keyword arguments in anyxp and torch.optim; weight decay everywhere, so that
# clipping is seen to act on the gradient before the decay term is added (as in torch)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adam": ("Adam", {"lr": 0.02, "weight_decay": 0.01}),
    "adamw": ("AdamW", {"lr": 0.02, "weight_decay": 0.05}),
    "rmsprop": ("RMSprop", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.01}),
}
# between the gradients' sizes on `data()`: the per-tensor norms are about 0.07-0.7 (kernels
# above 0.25, biases mostly below), the global norm about 0.6-0.9, elements up to about 0.33
CLIPS = {"clipvalue": 0.1, "clipnorm": 0.25, "global_clipnorm": 0.5}


def data(n: int = SAMPLES, classes: int = 3, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, np.argmax(x @ rng.normal(size=(5, classes)), axis=1)


def make_optimizer(kind: str, **overrides: Any) -> ax.Optimizer:
    name, config = OPTIMIZERS[kind]
    return getattr(ax, name)(**{**config, **overrides})


def network(backend: ax.Backend, optimizer: ax.Optimizer, **kwargs: Any) -> ax.Network:
    return ax.Network([ax.Dense(7, "tanh"), ax.Dense(3, "softmax")], input_size=5, loss="cross_entropy",
                      optimizer=optimizer, backend=backend, dtype="float64", seed=0, **kwargs)


def torch_fit(
    weights: list[np.ndarray], kind: str, x: np.ndarray, y: np.ndarray, *,
    clip: tuple[str, float] | None = None, schedule: Callable[[int], float] | None = None,
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """The same training in PyTorch (unshuffled batches, mean cross-entropy as anyxp's):
    the final weights in anyxp's layout (kernels (in, out)) and every step's unclipped
    gradients (torch's layout)."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    params = list(model.parameters())  # kernel, bias, kernel, bias: get_weights' order
    with torch.no_grad():
        for p, w in zip(params, weights, strict=True):
            p.copy_(torch.from_numpy(w.T.copy() if w.ndim == 2 else w))
    name, config = OPTIMIZERS[kind]
    opt = getattr(torch.optim, name)(params, **config)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    grads, step = [], 0
    for _ in range(EPOCHS):
        for lo in range(0, len(x), BATCH):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[lo : lo + BATCH]), yt[lo : lo + BATCH]).backward()
            grads.append([p.grad.detach().numpy().copy() for p in params])
            if clip is not None:
                how, threshold = clip
                if how == "clipvalue":
                    torch.nn.utils.clip_grad_value_(params, threshold)
                elif how == "clipnorm":
                    for p in params:
                        torch.nn.utils.clip_grad_norm_(p, threshold)
                else:
                    torch.nn.utils.clip_grad_norm_(params, threshold)
            if schedule is not None:
                for group in opt.param_groups:
                    group["lr"] = schedule(step)
            opt.step()
            step += 1
    final = [p.detach().numpy().copy() for p in params]
    return [w.T.copy() if w.ndim == 2 else w for w in final], grads


def assert_weights_close(got: list[np.ndarray], expected: list[np.ndarray], rtol: float = 1e-10) -> None:
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12)


# --------------------------------------------------------------------------- clipping vs torch


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_clipping_matches_torch(backend: ax.Backend, kind: str, clip: str) -> None:
    pytest.importorskip("torch")
    x, y = data()
    threshold = CLIPS[clip]
    net = network(backend, make_optimizer(kind, **{clip: threshold}))
    expected, grads = torch_fit(net.get_weights(), kind, x, y, clip=(clip, threshold))
    net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
    assert net.optimizer.steps == len(grads) == EPOCHS * STEPS_PER_EPOCH
    # the threshold is crossed, so the comparison cannot pass with clipping ignored
    if clip == "clipvalue":
        assert any(max(np.abs(g).max() for g in step) > threshold for step in grads)
    elif clip == "clipnorm":  # some tensors clipped and others not in one step: per tensor, not global
        norms = [[np.linalg.norm(g) for g in step] for step in grads]
        assert any(min(n) < threshold < max(n) for n in norms), norms
    else:
        assert any(math.sqrt(sum(np.sum(g * g) for g in step)) > threshold for step in grads)
    assert_weights_close(net.get_weights(), expected)


def test_clipping_changes_the_result(backend: ax.Backend) -> None:
    """Against the same network unclipped: the thresholds above do act."""
    x, y = data()
    results = []
    for clip in ({}, *({k: v} for k, v in CLIPS.items())):
        net = network(backend, make_optimizer("sgd", **clip))
        net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
        results.append(np.concatenate([w.ravel() for w in net.get_weights()]))
    for i in range(len(results)):
        for j in range(i):
            assert not np.allclose(results[i], results[j], rtol=1e-6, atol=0), (i, j)


@pytest.mark.on_device
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("clip", list(CLIPS))
def test_fast_clipping_agrees_with_the_array_api_reference(backend: ax.Backend, clip: str, dtype: str) -> None:
    """The backend's clipping kernel (NumPy's) against the pure Array API clipping, on one
    flat buffer of four tensors (one big enough to be split into chunks), some over the
    limit and some under; the tensors under it are left exactly as they were."""
    sizes = [30, 5, 2 * PARALLEL_MIN_ELEMENTS + 17, 3]
    scales = [0.01, 4.0, 1e-4, 0.2]  # norms about 0.06, 2-10, 0.04, 0.3-0.6
    rng = np.random.default_rng(2)
    p0 = rng.normal(size=sum(sizes))
    grads = [np.concatenate([s * rng.normal(size=n) for s, n in zip(scales, sizes, strict=True)]) for _ in range(2)]
    bounds = np.cumsum([0, *sizes])
    results = []
    for fast in (True, False):
        variant = Backend(backend.name, backend.library, backend.device, fast_kernels=fast)
        dt = variant.float_dtype(dtype)
        p, g = variant.asarray(p0.copy(), dtype=dt), variant.xp.zeros((sum(sizes),), dtype=dt, device=variant.device)
        opt = ax.SGD(lr=1.0, **{clip: 1.0})
        opt.setup([p], [g], variant, tensors=[g[int(a) : int(b)] for a, b in itertools.pairwise(bounds)])
        clipped = []
        for grad in grads:
            g[...] = variant.asarray(grad, dtype=dt)
            opt.step()
            clipped.append(np.array(variant.to_numpy(g)))
        results.append((np.array(variant.to_numpy(p)), clipped))
    (p_fast, g_fast), (p_ref, g_ref) = results
    # float32: the kernel sums the squares with one BLAS dot product, the reference pairwise
    # (xp.sum(g * g)): the two norms differ in their last digits (about 1e-5 relative)
    rtol = 1e-12 if dtype == "float64" else 1e-4
    # a float32 norm of 131,127 squares of very different sizes, summed as a dot product, is
    # good to about 1e-4 (as torch.linalg.vector_norm's, which torch's clip_grad_norm_ uses)
    norm_rtol = 1e-10 if dtype == "float64" else 1e-3

    def clipped_norm(raw: np.ndarray) -> float:  # scaled by 1 / (norm + 1e-6), as in torch
        norm = np.linalg.norm(raw.astype(np.float64))
        return norm / (norm + 1e-6)

    np.testing.assert_allclose(p_fast, p_ref, rtol=rtol, atol=rtol)
    for fast_grad, ref_grad, raw in zip(g_fast, g_ref, grads, strict=True):
        np.testing.assert_allclose(fast_grad, ref_grad, rtol=rtol, atol=rtol)
        raw = raw.astype(dtype)
        assert not np.allclose(ref_grad, raw)
        if clip == "clipnorm":  # tensors 0, 2, 3 are untouched, tensor 1 is brought to the limit
            for i in (0, 2, 3):
                np.testing.assert_array_equal(ref_grad[bounds[i] : bounds[i + 1]], raw[bounds[i] : bounds[i + 1]])
                np.testing.assert_array_equal(fast_grad[bounds[i] : bounds[i + 1]], raw[bounds[i] : bounds[i + 1]])
            assert np.linalg.norm(ref_grad[bounds[1] : bounds[2]]) == pytest.approx(
                clipped_norm(raw[bounds[1] : bounds[2]]), rel=norm_rtol)
        elif clip == "global_clipnorm":
            assert np.linalg.norm(ref_grad.astype(np.float64)) == pytest.approx(clipped_norm(raw), rel=norm_rtol)
        else:
            assert np.abs(ref_grad).max() == 1.0


@pytest.mark.on_device
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "weight_decay"), [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_a_folded_clipping_factor_equals_clipping_first(backend: ax.Backend, name: str, weight_decay: float,
                                                        dtype: str) -> None:
    """NumPy's Adam takes global_clipnorm's factor into its update's coefficients, PyTorch's
    fused float32 Adam into its gradient unscaling: the parameters equal those of the
    reference (the gradients scaled first, then the Array API update), over steps where
    the factor acts and steps where it does not."""
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=2 * PARALLEL_MIN_ELEMENTS + 9)  # big enough for NumPy's chunks
    grads = [scale * rng.normal(size=p0.shape) / math.sqrt(p0.size) for scale in (3.0, 0.1, 5.0, 0.2)]
    results = []
    for fast, clip in ((True, 1.0), (False, 1.0), (True, None)):
        variant = Backend(backend.name, backend.library, backend.device, fast_kernels=fast)
        dt = variant.float_dtype(dtype)
        p, g = variant.asarray(p0.copy(), dtype=dt), variant.xp.zeros(p0.shape, dtype=dt, device=variant.device)
        opt = make_optimizer(name, global_clipnorm=clip, weight_decay=weight_decay)
        opt.setup([p], [g], variant)
        for grad in grads:
            g[...] = variant.asarray(grad, dtype=dt)
            opt.step()
        results.append(np.array(variant.to_numpy(p)))
    folded, reference, unclipped = results
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(folded, reference, rtol=rtol, atol=rtol)
    assert not np.allclose(folded, unclipped, rtol=1e-3, atol=0)  # the factor acted


@pytest.mark.on_device
def test_clip_gradients_alone_leaves_no_factor_for_a_later_step(backend: ax.Backend) -> None:
    """`clip_gradients` may fold a factor for the next update; a later step whose own
    gradients are under the limit uses none of it."""
    rng = np.random.default_rng(6)
    p0, big, small = rng.normal(size=50), 10.0 * rng.normal(size=50), 0.01 * rng.normal(size=50)
    results = []
    for clip_first in (True, False):
        dt = backend.float_dtype("float64")
        p, g = backend.asarray(p0.copy(), dtype=dt), backend.xp.zeros((50,), dtype=dt, device=backend.device)
        opt = make_optimizer("adam", global_clipnorm=1.0)
        opt.setup([p], [g], backend)
        if clip_first:
            g[...] = backend.asarray(big, dtype=dt)
            opt.clip_gradients()
        g[...] = backend.asarray(small, dtype=dt)
        opt.step()
        results.append(np.array(backend.to_numpy(p)))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("clip", list(CLIPS))
def test_a_large_threshold_changes_nothing(backend: ax.Backend, clip: str) -> None:
    x, y = data()
    results = []
    for options in ({}, {clip: 1e6}):
        net = network(backend, make_optimizer("adam", **options))
        net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
        results.append(net.get_weights())
    for a, b in zip(*results, strict=True):  # norms scale by min(1, ...) = 1 exactly
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- schedules vs torch


def _inverse_time(step: int) -> float:
    return 0.02 / (1 + step)


SCHEDULES: dict[str, tuple[Callable[[], Callable[[int], float]], str]] = {
    "exponential": (lambda: ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5), "sgd"),
    "piecewise": (lambda: PiecewiseConstantDecay([1, 3], [0.05, 0.02, 0.005]), "adam"),
    "cosine-warmup": (lambda: CosineDecay(0.0, decay_steps=3, alpha=0.1, warmup_target=0.03, warmup_steps=2),
                      "adamw"),
    "lambda": (lambda: (lambda step: 0.02 / (1 + step)), "rmsprop"),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(backend: ax.Backend, name: str) -> None:
    pytest.importorskip("torch")
    factory, kind = SCHEDULES[name]
    schedule = factory()
    total = EPOCHS * STEPS_PER_EPOCH
    assert len({schedule(s) for s in range(total)}) > 2  # the rate does change during the fit
    x, y = data()
    net = network(backend, make_optimizer(kind, lr=schedule))
    opt = net.optimizer
    assert opt.learning_rate is schedule
    assert opt.lr == opt.current_lr == schedule(0)
    expected, _ = torch_fit(net.get_weights(), kind, x, y, schedule=factory())
    history = net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
    assert opt.steps == total
    assert opt.lr == schedule(total - 1)  # the last update's
    assert opt.current_lr == schedule(total)  # the next one's
    assert history.history["learning_rate"] == [schedule(STEPS_PER_EPOCH * (e + 1)) for e in range(EPOCHS)]
    assert_weights_close(net.get_weights(), expected)


def test_schedule_with_clipping_matches_torch(backend: ax.Backend) -> None:
    pytest.importorskip("torch")
    x, y = data()
    schedule = ExponentialDecay(0.05, decay_steps=3, decay_rate=0.3, staircase=True)
    net = network(backend, make_optimizer("adam", lr=schedule, global_clipnorm=0.5))
    expected, _ = torch_fit(net.get_weights(), "adam", x, y, clip=("global_clipnorm", 0.5), schedule=schedule)
    history = net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
    assert history.history["learning_rate"] == [0.05 * 0.3, 0.05 * 0.3**2]
    assert_weights_close(net.get_weights(), expected)


def test_constant_rate_is_logged_and_settable(backend: ax.Backend) -> None:
    x, y = data()
    net = network(backend, ax.SGD(lr=0.1))
    history = net.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert history.history["learning_rate"] == [0.1]
    net.optimizer.lr = 0.03
    assert net.optimizer.lr == net.optimizer.current_lr == 0.03
    history = net.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert history.history["learning_rate"] == [0.03]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_at_most_one_clipping_option(kind: str) -> None:
    with pytest.raises(ValueError, match=r"at most one of clipvalue, clipnorm and global_clipnorm, "
                                         r"got clipvalue, global_clipnorm"):
        make_optimizer(kind, clipvalue=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match=r"at most one of .* got clipnorm, global_clipnorm"):
        make_optimizer(kind, clipnorm=1.0, global_clipnorm=1.0)


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("value", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_clipping_thresholds_must_be_positive_and_finite(clip: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{clip} must be .*got {value!r}"):
        ax.Adam(**{clip: value})


@pytest.mark.parametrize("clip", list(CLIPS))
def test_clipping_thresholds_must_be_numbers(clip: str) -> None:
    with pytest.raises(TypeError, match=rf"^{clip} must be a real number"):
        ax.SGD(**{clip: "1.0"})


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_a_scheduled_rate_cannot_be_set(kind: str) -> None:
    for lr in (ExponentialDecay(0.1, 10, 0.5), _inverse_time):
        opt = make_optimizer(kind, lr=lr)
        with pytest.raises(ValueError, match=r"cannot set the learning rate .* a schedule drives it"):
            opt.lr = 0.1
        assert opt.learning_rate is lr and opt.lr == lr(0)


@pytest.mark.parametrize(("bad", "shown"), [(-0.1, r"-0\.1"), (float("nan"), "nan"), ("fast", "'fast'")])
def test_a_bad_scheduled_rate_names_the_step(backend: ax.Backend, bad: Any, shown: str) -> None:
    def schedule(step: int) -> Any:
        return 0.01 if step < 4 else bad

    x, y = data()
    net = network(backend, ax.SGD(lr=schedule))
    with pytest.raises(ValueError, match=rf"schedule .* returned {shown} at step 4"):
        net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
    assert net.optimizer.steps == 4  # the bad rate is never used
    with pytest.raises(ValueError, match=rf"returned {shown} at step 0"):
        ax.Adam(lr=lambda step: bad)


@pytest.mark.parametrize("how", ["save", "pickle"])
def test_a_function_of_your_own_cannot_be_saved(backend: ax.Backend, how: str, tmp_path) -> None:
    net = network(backend, ax.RMSprop(lr=lambda step: 0.01, clipnorm=1.0))
    with pytest.raises(ValueError, match=r"learning rate is a function of your own.*use one of anyxp\.schedules"):
        if how == "save":
            net.save(tmp_path / "net.npz")
        else:
            pickle.dumps(net)
    assert not (tmp_path / "net.npz").exists()


# --------------------------------------------------------------------------- save / load


ROUND_TRIPS = {
    "sgd": lambda: ax.SGD(lr=PiecewiseConstantDecay([2, 5], [0.1, 0.05, 0.01]), momentum=0.9, nesterov=True,
                          clipnorm=0.25),
    "adamw": lambda: ax.AdamW(lr=CosineDecay(0.0, 6, alpha=0.2, warmup_target=0.02, warmup_steps=3),
                              global_clipnorm=0.5),
    "rmsprop": lambda: ax.RMSprop(lr=ExponentialDecay(0.01, 4, 0.5), momentum=0.3, weight_decay=1e-3,
                                  clipvalue=0.1),
}


@pytest.mark.parametrize("how", ["save", "pickle"])
@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
def test_schedule_and_clipping_survive_a_round_trip(backend: ax.Backend, kind: str, how: str, tmp_path) -> None:
    x, y = data()
    net = network(backend, ROUND_TRIPS[kind]())
    net.fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    if how == "save":
        net.save(tmp_path / "net.npz")
        clone = ax.load(tmp_path / "net.npz", backend=backend)
    else:
        clone = pickle.loads(pickle.dumps(net))
    original, loaded = net.optimizer, clone.optimizer
    assert type(loaded) is type(original)
    assert loaded.get_config() == original.get_config()
    assert type(loaded.learning_rate) is type(original.learning_rate)
    assert loaded.steps == original.steps == 2 * STEPS_PER_EPOCH
    assert loaded.current_lr == original.current_lr
    histories = [model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0) for model in (net, clone)]
    assert histories[0].history["learning_rate"] == histories[1].history["learning_rate"] == [
        original.learning_rate(s * STEPS_PER_EPOCH) for s in (3, 4)]
    assert loaded.steps == original.steps == 4 * STEPS_PER_EPOCH
    assert loaded.lr == original.lr
    for a, b in zip(net.get_weights(), clone.get_weights(), strict=True):
        if backend.name == "numpy":
            np.testing.assert_array_equal(b, a)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", ["save", "pickle", "deepcopy"])
def test_a_loaded_optimizer_reports_the_last_updates_rate(backend: ax.Backend, how: str, tmp_path) -> None:
    """``lr`` is the rate of the last update, also on a copy that has not trained since
    it was loaded (not the schedule's first rate)."""
    x, y = data()
    schedule = ExponentialDecay(0.1, 2, 0.5)
    net = network(backend, ax.SGD(lr=schedule))
    net.fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    if how == "save":
        net.save(tmp_path / "net.npz")
        clone = ax.load(tmp_path / "net.npz", backend=backend)
    else:
        clone = pickle.loads(pickle.dumps(net)) if how == "pickle" else copy.deepcopy(net)
    last = schedule(2 * STEPS_PER_EPOCH - 1)
    assert net.optimizer.lr == last
    assert clone.optimizer.current_lr == net.optimizer.current_lr
    assert clone.optimizer.lr == last, f"the loaded optimizer reports {clone.optimizer.lr} = schedule(0)"


# --------------------------------------------------------------------------- host syncs

SYNC_METRICS = ["accuracy", "precision", "recall", "f1", "auc", "top_k_accuracy", "mae", "mse", "r2"]


@pytest.mark.parametrize("clip", list(CLIPS))
def test_scheduled_clipped_training_syncs_once_per_epoch(backend: ax.Backend, clip: str) -> None:
    """With a schedule, clipping and every metric: no sync in a training step, and as many
    in a fit of 4 batches an epoch as in one of 8, and as in one without either."""
    if backend.name != "array_api_strict":
        pytest.skip("host syncs are counted on array_api_strict")
    x, y = data(n=64, classes=4)
    xv, yv = data(n=24, classes=4, seed=6)

    def classifier(plain: bool = False) -> ax.Network:
        optimizer = ax.Adam(lr=0.01) if plain else ax.Adam(lr=ExponentialDecay(0.01, 4, 0.5), **{clip: CLIPS[clip]})
        return ax.Network([ax.Dense(8, "relu"), ax.Dense(4, "softmax")], input_size=5, optimizer=optimizer,
                          backend=backend, seed=0, metrics=SYNC_METRICS)

    net = classifier()
    xb, tb = backend.asarray(x[:16], dtype=net.dtype), backend.asarray(np.eye(4)[y[:16]], dtype=net.dtype)
    with backend.activate(), count_host_syncs() as syncs:
        for _ in range(3):
            net._forward_backward(xb, tb, None)
            net.optimizer.step()
    assert syncs == []
    assert net.optimizer.steps == 3

    counts = []
    for batch_size, plain in ((16, False), (8, False), (8, True)):  # 4 and 8 batches per epoch
        net = classifier(plain)
        with count_host_syncs() as syncs:
            history = net.fit(x, y, epochs=2, batch_size=batch_size, validation_data=(xv, yv), verbose=0)
        assert net.optimizer.steps == 2 * 64 // batch_size
        assert set(SYNC_METRICS) <= set(history.history)
        counts.append(len(syncs))
    assert counts[0] == counts[1] == counts[2], counts  # and as many as without schedule or clipping
    assert 0 < counts[0] <= 2 * 2 * 2  # 2 epochs x (training, validation) x one transfer (at most 2 calls)
