"""Huber, KLDivergence, Poisson and label smoothing for CrossEntropy / BinaryCrossEntropy:
names, configs, argument errors, float64 gradients (fused and unfused, from logits, with
sample weights), PyTorch's and Keras 3's definitions to 1e-10, float32, no host syncs,
training and save/load, on the backend under test."""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs

import anyxp as ax
from anyxp.losses import LOSSES, BinaryCrossEntropy, CrossEntropy, Huber, KLDivergence, Loss, Poisson, get_loss

HEADER = "anyxp.json.npy"  # the checkpoint's JSON header member
TOL = 1e-6  # finite differences against the analytic gradient (relative, as check_gradients)
REF = 1e-10  # against PyTorch / Keras in float64
N, K = 6, 4


# --------------------------------------------------------------------------- helpers
def f64(backend: ax.Backend, a: Any, dtype: str = "float64") -> Any:
    return backend.asarray(np.asarray(a, dtype=dtype), dtype=backend.float_dtype(dtype))


def bound(loss: Loss, backend: ax.Backend, dtype: str = "float64") -> Loss:
    return type(loss)(**loss.get_config()).bind(backend.xp, backend.float_dtype(dtype))


def host(backend: ax.Backend, a: Any) -> np.ndarray:
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    return 0.0 if scale == 0 else float(np.abs(analytic - numeric).max() / scale)


def numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def ours(
    backend: ax.Backend, loss: Loss, out: np.ndarray, y: np.ndarray, w: np.ndarray | None, logits: bool
) -> tuple[float, np.ndarray, float]:
    """(value from value_and_grad, its gradient, value from value()) in float64, on the backend."""
    loss = bound(loss, backend)
    o, t = f64(backend, out), f64(backend, y)
    wd = None if w is None else f64(backend, w)
    value, grad = loss.value_and_grad(o, t, wd, logits=logits)
    plain = loss.value(o, t, wd, logits=logits)
    return float(host(backend, value)), host(backend, grad), float(host(backend, plain))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def data(kind: str, n: int = N, k: int = K, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, targets) of one kind, away from every kink by more than the FD step."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(k)[rng.integers(0, k, size=n)]
    if kind == "real":  # |out - y| spread over [0.05, 3]: both sides of delta = 0.3, 1, 2.5
        out = rng.normal(size=(n, k))
        return out, out + rng.uniform(0.05, 3.0, size=(n, k)) * rng.choice([-1, 1], size=(n, k))
    if kind == "probabilities":
        return softmax(rng.normal(size=(n, k))), onehot
    if kind == "soft_probabilities":
        return softmax(rng.normal(size=(n, k))), rng.dirichlet(np.ones(k), size=n)
    if kind == "logits":
        return rng.normal(scale=3.0, size=(n, k)), onehot
    if kind == "binary_probabilities":
        return rng.uniform(0.05, 0.95, size=(n, k)), rng.integers(0, 2, size=(n, k)).astype(float)
    if kind == "binary_logits":
        return rng.normal(scale=3.0, size=(n, k)), rng.integers(0, 2, size=(n, k)).astype(float)
    if kind == "kl":  # targets with zeros (clipped to 1e-7 in the loss) and soft rows
        y = rng.dirichlet(np.ones(k), size=n)
        y[0] = np.eye(k)[1]
        y[1, 2] = 0.0
        y[1] /= y[1].sum()
        return softmax(rng.normal(size=(n, k))), y
    if kind == "rates":
        rates = rng.uniform(0.2, 4.0, size=(n, k))
        return rates, rng.poisson(rates * 1.3).astype(float)
    raise ValueError(kind)


def weights(n: int = N) -> np.ndarray:
    w = np.random.default_rng(9).uniform(0.2, 2.0, size=n)
    w[2] = 0.0
    return w


# (loss, data kind, logits): logits=True with from_logits=False is the path a network whose
# last activation is the loss's link takes (the fused softmax / sigmoid gradient p - y)
GRADIENT_CASES = [
    (Huber(), "real", False),
    (Huber(delta=0.3), "real", False),
    (Huber(delta=2.5), "real", False),
    (CrossEntropy(label_smoothing=0.1), "probabilities", False),
    (CrossEntropy(label_smoothing=0.1), "soft_probabilities", False),
    (CrossEntropy(label_smoothing=0.1), "logits", True),
    (CrossEntropy(label_smoothing=1.0), "logits", True),
    (CrossEntropy(label_smoothing=0.25, from_logits=True), "logits", True),
    (BinaryCrossEntropy(label_smoothing=0.2), "binary_probabilities", False),
    (BinaryCrossEntropy(label_smoothing=0.2), "binary_logits", True),
    (BinaryCrossEntropy(label_smoothing=1.0), "binary_logits", True),
    (BinaryCrossEntropy(label_smoothing=0.05, from_logits=True), "binary_logits", True),
    (KLDivergence(), "kl", False),
    (KLDivergence(), "soft_probabilities", False),
    (Poisson(), "rates", False),
]


def case_id(case: Any) -> str:
    if isinstance(case, Loss):
        return repr(case).replace(" ", "")
    return str(case)


# --------------------------------------------------------------------------- names and configs
def test_names_resolve() -> None:
    assert LOSSES["huber"] is Huber
    assert LOSSES["kl_divergence"] is KLDivergence and LOSSES["kld"] is KLDivergence
    assert LOSSES["poisson"] is Poisson
    for spec, cls in [("huber", Huber), (" KLD ", KLDivergence), ("Kl_Divergence", KLDivergence),
                      ("poisson", Poisson), (Poisson, Poisson)]:
        assert type(get_loss(spec)) is cls
    assert (Huber.name, KLDivergence.name, Poisson.name) == ("huber", "kl_divergence", "poisson")
    for cls in (Huber, KLDivergence, Poisson):  # the checkpoint stores .name and reads LOSSES[name]
        assert LOSSES[cls.name] is cls
        assert cls.link is None


CONFIG_CASES = [
    Huber(), Huber(delta=0.25), Huber(delta=np.float32(2.0)), Huber(3),
    CrossEntropy(label_smoothing=0.1), CrossEntropy(label_smoothing=1, from_logits=True),
    BinaryCrossEntropy(label_smoothing=np.float64(0.3)), BinaryCrossEntropy(label_smoothing=0.2, from_logits=True),
    KLDivergence(), Poisson(),
]


@pytest.mark.parametrize("loss", CONFIG_CASES, ids=case_id)
def test_config_round_trip(loss: Loss) -> None:
    config = loss.get_config()
    assert json.loads(json.dumps(config)) == config  # JSON, as the checkpoint stores it
    assert all(type(v) in (bool, float) for v in config.values())
    again = LOSSES[loss.name](**config)
    assert type(again) is type(loss) and again.get_config() == config
    copy = get_loss(loss)
    assert copy is not loss and copy.get_config() == config
    assert repr(again) == repr(loss)


def test_configs_and_defaults() -> None:
    assert Huber().get_config() == {"delta": 1.0} and Huber().delta == 1.0
    assert repr(Huber(delta=0.5)) == "Huber(delta=0.5)"
    assert KLDivergence().get_config() == {} and Poisson().get_config() == {}
    # no smoothing: configs (and checkpoints) of the cross-entropies are as before
    assert CrossEntropy().get_config() == {} and CrossEntropy(label_smoothing=0.0).get_config() == {}
    assert BinaryCrossEntropy(from_logits=True).get_config() == {"from_logits": True}
    assert CrossEntropy(label_smoothing=0.1).get_config() == {"label_smoothing": 0.1}
    assert BinaryCrossEntropy(label_smoothing=0.2, from_logits=True).get_config() == {
        "from_logits": True, "label_smoothing": 0.2}
    assert repr(CrossEntropy(label_smoothing=0.1)) == "CrossEntropy(label_smoothing=0.1)"
    assert CrossEntropy().label_smoothing == 0.0 and BinaryCrossEntropy().label_smoothing == 0.0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Huber(delta=0), ValueError, r"delta must be a finite number > 0, got 0"),
        (lambda: Huber(delta=-1.0), ValueError, "delta must be a finite number > 0"),
        (lambda: Huber(delta=float("inf")), ValueError, "delta must be a finite number > 0"),
        (lambda: Huber(delta=float("nan")), ValueError, "delta"),
        (lambda: Huber(delta="1"), TypeError, "delta must be a real number"),
        (lambda: Huber(delta=True), TypeError, "delta must be a real number"),
        (lambda: Huber(delta=None), TypeError, "delta"),
        (lambda: CrossEntropy(label_smoothing=-0.1), ValueError, r"label_smoothing must be in \[0, 1\], got -0.1"),
        (lambda: CrossEntropy(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
        (lambda: CrossEntropy(label_smoothing=float("nan")), ValueError, "label_smoothing"),
        (lambda: CrossEntropy(label_smoothing="0.1"), TypeError, "label_smoothing must be a real number"),
        (lambda: BinaryCrossEntropy(label_smoothing=-1e-9), ValueError, r"label_smoothing must be in \[0, 1\]"),
        (lambda: BinaryCrossEntropy(label_smoothing=1.0001), ValueError, r"label_smoothing must be in \[0, 1\]"),
        (lambda: BinaryCrossEntropy(label_smoothing=False), TypeError, "label_smoothing"),
        (lambda: CrossEntropy(label_smoothing=0.1, from_logits=1), TypeError, "from_logits"),
        (lambda: Huber(1.0, from_logits=True), TypeError, "from_logits"),
        (lambda: KLDivergence(from_logits=True), TypeError, "from_logits"),
        (lambda: Poisson(eps=1e-3), TypeError, "eps"),
        (lambda: CrossEntropy(0.1), TypeError, "positional"),
    ],
)
def test_bad_arguments(make: Callable[[], Loss], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("loss", "key", "value", "match"),
    [
        (CrossEntropy(label_smoothing=0.1), "label_smoothing", 1.5, r"label_smoothing must be in \[0, 1\], got 1\.5"),
        (BinaryCrossEntropy(), "label_smoothing", -0.5, r"label_smoothing must be in \[0, 1\]"),
        (Huber(), "delta", 0.0, "delta must be a finite number > 0"),
        (Huber(), "delta", "1", "delta must be a real number"),
        (KLDivergence(), "delta", 1.0, "unexpected keyword argument 'delta'"),
    ],
)
def test_bad_loss_config_in_a_checkpoint(backend: ax.Backend, tmp_path, loss: Loss, key: str, value: Any,
                                         match: str) -> None:
    """The checkpoint rebuilds the loss with LOSSES[name](**config): the constructor's checks
    apply, and the error names the field."""
    net = ax.Network([ax.Dense(3, "softmax")], input_size=2, loss=loss, backend=backend, seed=0)
    net.build()
    path = tmp_path / "net.npz"
    net.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(np.load(io.BytesIO(members[HEADER])).tobytes())
    assert header["loss"] == {"name": loss.name, "config": loss.get_config()}
    header["loss"]["config"][key] = value
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members[HEADER] = buffer.getvalue()
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(ax.CheckpointError, match=r"loss\.config: .*" + match):
        ax.load(bad, backend=backend)


# --------------------------------------------------------------------------- gradients
@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("loss", "kind", "logits"), GRADIENT_CASES, ids=case_id)
def test_gradients(backend: ax.Backend, loss: Loss, kind: str, logits: bool, weighted: bool) -> None:
    out, y = data(kind)
    w = weights() if weighted else None
    value, grad, plain = ours(backend, loss, out, y, w, logits)
    assert abs(value - plain) <= 1e-12 * max(1.0, abs(plain))  # the fused sum agrees with value()
    numeric = numeric_gradient(lambda o: ours(backend, loss, o, y, w, logits)[2], out)
    assert relative_error(grad, numeric) < TOL
    if weighted:
        assert np.all(grad[2] == 0.0)  # a sample of weight 0 has no gradient


@pytest.mark.on_device
@pytest.mark.parametrize(("loss", "kind"), [(c[0], c[1]) for c in GRADIENT_CASES if not c[2] or c[0].from_logits],
                         ids=case_id)
def test_check_gradients_agrees(backend: ax.Backend, loss: Loss, kind: str) -> None:
    """anyxp's own checker (from_logits decides what the outputs are)."""
    out, y = data(kind)
    assert ax.check_gradients(loss, f64(backend, out), y) < TOL


NETWORK_CASES = [
    ([ax.Dense(6, "tanh"), ax.Dense(3, "softmax")], CrossEntropy(label_smoothing=0.2), "labels"),  # fused
    ([ax.Dense(6, "tanh"), ax.Dense(3), ax.Softmax()], CrossEntropy(label_smoothing=0.2), "labels"),  # fused too
    ([ax.Dense(6, "tanh"), ax.Dense(3, "softmax"), ax.Identity()], CrossEntropy(label_smoothing=0.2), "labels"),
    ([ax.Dense(6, "tanh"), ax.Dense(3)], CrossEntropy(label_smoothing=0.3, from_logits=True), "labels"),
    ([ax.Dense(6, "elu"), ax.Dense(2, "sigmoid")], BinaryCrossEntropy(label_smoothing=0.1), "binary"),  # fused
    ([ax.Dense(6, "elu"), ax.Dense(2, "sigmoid"), ax.Identity()], BinaryCrossEntropy(label_smoothing=0.1), "binary"),
    ([ax.Dense(6, "elu"), ax.Dense(2)], BinaryCrossEntropy(label_smoothing=0.4, from_logits=True), "binary"),
    ([ax.Dense(6, "tanh"), ax.Dense(3, "linear")], Huber(delta=0.5), "real"),
    ([ax.Dense(6, "tanh"), ax.Dense(3, "softmax")], KLDivergence(), "distributions"),
    ([ax.Dense(6, "tanh"), ax.Dense(3, "softplus")], Poisson(), "counts"),
]
NETWORK_IDS = ["ce-fused", "ce-softmax-layer", "ce-unfused", "ce-logits", "bce-fused", "bce-unfused", "bce-logits",
               "huber", "kld", "poisson"]


def network_targets(kind: str, x: np.ndarray, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(x.shape[1], 3))
    z = x @ w
    if kind == "labels":
        return np.argmax(z + 0.3 * rng.normal(size=z.shape), axis=1)
    if kind == "binary":
        return (z[:, :2] + 0.3 * rng.normal(size=(len(x), 2)) > 0).astype(float)
    if kind == "real":
        return np.sin(z) + 0.1 * rng.normal(size=z.shape)
    if kind == "distributions":
        return softmax(z)
    if kind == "counts":
        return rng.poisson(np.exp(0.5 * z)).astype(float)
    raise ValueError(kind)


@pytest.mark.parametrize(("layers", "loss", "targets"), NETWORK_CASES, ids=NETWORK_IDS)
def test_network_gradients(backend: ax.Backend, layers: list, loss: Loss, targets: str) -> None:
    x = np.random.default_rng(3).normal(size=(8, 4))
    y = network_targets(targets, x)
    net = ax.Network([type(layer).from_config(layer.get_config()) for layer in layers], input_size=4,
                     loss=loss, backend=backend, dtype="float32", seed=0)
    net.build()
    fused = layers[-1].output_activation == loss.link and not loss.from_logits
    assert net._fused == fused
    assert ax.check_gradients(net, x, y) < TOL
    w = np.random.default_rng(4).uniform(0.5, 2.0, size=8)
    net64 = ax.Network([type(layer).from_config(layer.get_config()) for layer in layers], input_size=4,
                       loss=loss, backend=backend, dtype="float64", seed=0)
    net64.build()
    from anyxp.training import prepare_data

    d = prepare_data(net64, x, y, sample_weight=w).to_device(net64)
    theta = host(backend, net64._theta).copy()  # not a view of the buffer the objective writes

    def objective(t: np.ndarray) -> float:
        net64._theta[...] = f64(backend, t)
        return float(host(backend, net64.loss.value(net64._forward(d.x, True), d.t, d.w, logits=net64._logits)))

    with backend.activate():
        numeric = numeric_gradient(objective, theta)
        net64._theta[...] = f64(backend, theta)
        net64._forward_backward(d.x, d.t, d.w)
        assert relative_error(host(backend, net64._grad), numeric) < TOL  # with sample weights


# --------------------------------------------------------------------------- PyTorch as oracle
@pytest.fixture(scope="module")
def torch64() -> Any:
    return pytest.importorskip("torch")


def torch_grad(torch: Any, f: Callable[[Any], Any], out: np.ndarray) -> tuple[float, np.ndarray]:
    t = torch.tensor(out, dtype=torch.float64, requires_grad=True)
    value = f(t)
    value.backward()
    return float(value.detach()), t.grad.numpy()


def weighted_mean(torch: Any, per: Any, w: np.ndarray | None) -> Any:
    """Keras's sample weighting (anyxp's): sum(w_i * loss_i) / n."""
    if w is None:
        return per.mean()
    return (per * torch.tensor(w, dtype=torch.float64)).sum() / per.shape[0]


def assert_matches(backend: ax.Backend, loss: Loss, out: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                   logits: bool, value: float, grad: np.ndarray | None) -> None:
    v, g, plain = ours(backend, loss, out, y, w, logits)
    np.testing.assert_allclose(v, value, rtol=REF, atol=REF)
    np.testing.assert_allclose(plain, value, rtol=REF, atol=REF)
    if grad is not None:
        np.testing.assert_allclose(g, grad, rtol=REF, atol=REF)


@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("delta", [1.0, 0.3, 2.5, 7.0])
def test_huber_matches_torch(backend: ax.Backend, torch64: Any, delta: float, weighted: bool) -> None:
    torch = torch64
    out, y = data("real", n=9, k=5, seed=1)
    y[0, :3] = out[0, :3] + np.array([delta, -delta, 0.0])  # the boundary itself, and no error
    w = weights(9) if weighted else None
    yt = torch.tensor(y, dtype=torch.float64)
    if w is None:
        value, grad = torch_grad(torch, lambda o: torch.nn.HuberLoss(delta=delta)(o, yt), out)
    else:
        per = lambda o: torch.nn.HuberLoss(delta=delta, reduction="none")(o, yt).mean(dim=1)  # noqa: E731
        value, grad = torch_grad(torch, lambda o: weighted_mean(torch, per(o), w), out)
    assert_matches(backend, Huber(delta=delta), out, y, w, False, value, grad)


@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
@pytest.mark.parametrize("ls", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("from_logits", [False, True], ids=["fused", "from_logits"])
def test_cross_entropy_smoothing_matches_torch(
    backend: ax.Backend, torch64: Any, ls: float, targets: str, from_logits: bool, weighted: bool
) -> None:
    """torch.nn.CrossEntropyLoss(label_smoothing=) on logits, class indices or probabilities;
    anyxp from logits, fused (a network ending in softmax) or from_logits=True."""
    torch = torch64
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(7, 5))
    labels = rng.integers(0, 5, size=7)
    y = np.eye(5)[labels] if targets == "labels" else rng.dirichlet(np.ones(5), size=7)
    target = torch.tensor(labels) if targets == "labels" else torch.tensor(y, dtype=torch.float64)
    w = weights(7) if weighted else None
    ce = torch.nn.CrossEntropyLoss(label_smoothing=ls, reduction="none")
    value, grad = torch_grad(torch, lambda o: weighted_mean(torch, ce(o, target), w), z)
    assert_matches(backend, CrossEntropy(label_smoothing=ls, from_logits=from_logits), z, y, w, True, value, grad)


@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ls", [0.1, 0.6])
def test_cross_entropy_smoothing_on_probabilities_matches_torch(
    backend: ax.Backend, torch64: Any, ls: float, weighted: bool
) -> None:
    """The unfused loss on probabilities p is torch's on logits log(p): the values agree;
    its gradient is that of -sum(y_smooth * log p) with respect to p."""
    torch = torch64
    z = np.random.default_rng(4).normal(size=(7, 5))
    p = softmax(z)
    labels = np.random.default_rng(5).integers(0, 5, size=7)
    y = np.eye(5)[labels]
    w = weights(7) if weighted else None
    ce = torch.nn.CrossEntropyLoss(label_smoothing=ls, reduction="none")
    value = float(weighted_mean(torch, ce(torch.tensor(np.log(p)), torch.tensor(labels)), w))
    smooth = torch.tensor(y * (1 - ls) + ls / 5)
    _, grad = torch_grad(torch, lambda q: weighted_mean(torch, -(smooth * torch.log(q)).sum(dim=1), w), p)
    assert_matches(backend, CrossEntropy(label_smoothing=ls), p, y, w, False, value, grad)


# --------------------------------------------------------------------------- Keras as oracle
@pytest.fixture(scope="module")
def keras64() -> Iterator[Any]:
    """Keras 3 on its torch backend, computing in float64 (restored after)."""
    if "keras" not in sys.modules:  # the backend is fixed at Keras's import
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:  # not installed, or its backend cannot load
        pytest.skip(f"keras cannot be imported: {exc}")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    if keras.backend.backend() != "torch":
        pytest.skip(f"the Keras oracle runs on Keras's torch backend, this process has {keras.backend.backend()}")
    before = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx(before)


@pytest.fixture
def keras_exact(keras64: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Keras with its torch backend's ``ops.mean`` kept in float64. Keras 3.15 promotes
    float64 with "float32" to float32 (``result_type("float64", "float32")``) and its torch
    ``mean`` casts to that before reducing, so Poisson, Huber and binary cross-entropy lose
    float64 precision in the mean over the outputs (to ~1e-8). Keras's formulas for each
    element stay Keras's; only that mean is computed in the inputs' dtype."""
    import torch
    from keras.src import backend as keras_backend

    original = keras_backend.numpy.mean

    def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = keras_backend.convert_to_tensor(x)
        if x.dtype != torch.float64 or axis in ((), []):
            return original(x, axis=axis, keepdims=keepdims)
        if axis is None:
            return torch.mean(x) if not keepdims else torch.mean(x, dim=tuple(range(x.ndim)), keepdim=True)
        return torch.mean(x, dim=(axis,) if isinstance(axis, int) else tuple(axis), keepdim=keepdims)

    monkeypatch.setattr(keras_backend.numpy, "mean", mean)
    return keras64


def keras_value_and_grad(
    keras: Any, loss: Any, out: np.ndarray, y: np.ndarray, w: np.ndarray | None
) -> tuple[float, np.ndarray]:
    """Keras's per-sample losses (reduction="none": in float64 throughout), reduced as
    Keras's sum_over_batch_size does: sum(w_i * loss_i) / n. (Keras's own reduction on its
    torch backend divides in float32, torch.where(x2 == 0, 0, 0-d tensor): see
    test_keras_batch_reduction for that path.)"""
    import torch

    def f(o: Any) -> Any:
        per = loss(torch.tensor(y, dtype=torch.float64), o)
        assert per.dtype == torch.float64 and tuple(per.shape) == (out.shape[0],)
        return weighted_mean(torch, per, w)

    return torch_grad(torch, f, out)


def test_keras_exact_mean_is_keras_mean(keras_exact: Any) -> None:
    """The patched mean is the mean, in float64, for every axis form the losses may pass."""
    import torch

    x = torch.tensor(np.random.default_rng(0).uniform(size=(5, 7)))
    for axis, keepdims in [(-1, False), (1, True), (None, False), ((0, 1), False)]:
        ours64 = keras_exact.ops.mean(x, axis=axis, keepdims=keepdims)
        assert ours64.dtype == torch.float64
        np.testing.assert_allclose(ours64.numpy(), np.mean(x.numpy(), axis=axis, keepdims=keepdims), rtol=1e-15)


KERAS_CASES: list[tuple[str, dict[str, Any], Callable[[], Loss], str, bool]] = [
    # (Keras class, its kwargs, the anyxp loss, data kind, anyxp's logits flag)
    ("KLDivergence", {}, KLDivergence, "kl", False),
    ("KLDivergence", {}, KLDivergence, "soft_probabilities", False),
    ("KLDivergence", {}, KLDivergence, "clipped", False),
    ("Poisson", {}, Poisson, "rates", False),
    ("Poisson", {}, Poisson, "small_rates", False),
    ("Huber", {"delta": 1.0}, Huber, "real", False),
    ("Huber", {"delta": 0.4}, lambda: Huber(delta=0.4), "real", False),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, lambda: BinaryCrossEntropy(label_smoothing=0.2),
     "binary_probabilities", False),
    ("BinaryCrossentropy", {"label_smoothing": 0.2, "from_logits": True},
     lambda: BinaryCrossEntropy(label_smoothing=0.2), "binary_logits", True),  # fused
    ("BinaryCrossentropy", {"label_smoothing": 0.7, "from_logits": True},
     lambda: BinaryCrossEntropy(label_smoothing=0.7, from_logits=True), "binary_logits", True),
    ("BinaryCrossentropy", {"label_smoothing": 1.0, "from_logits": True},
     lambda: BinaryCrossEntropy(label_smoothing=1.0, from_logits=True), "soft_binary_logits", True),
    ("CategoricalCrossentropy", {"label_smoothing": 0.15, "from_logits": True},
     lambda: CrossEntropy(label_smoothing=0.15), "logits", True),  # fused
    ("CategoricalCrossentropy", {"label_smoothing": 0.15, "from_logits": True},
     lambda: CrossEntropy(label_smoothing=0.15, from_logits=True), "soft_logits", True),
]


def keras_data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    if kind == "clipped":  # outputs below 1e-7 and exactly 0: Keras clips them (gradient 0)
        out, y = data("kl", seed=3)
        out[0, 0], out[1, 1], out[2, 3] = 1e-9, 0.0, 3e-8
        return out, y
    if kind == "small_rates":  # rates near 0, where the 1e-7 in log(p + 1e-7) matters
        out, y = data("rates", seed=4)
        out[0, :2], out[1, 0] = 1e-8, 0.0
        return out, y
    if kind == "soft_binary_logits":
        return rng.normal(scale=3.0, size=(N, K)), rng.uniform(size=(N, K))
    if kind == "soft_logits":
        return rng.normal(scale=3.0, size=(N, K)), rng.dirichlet(np.ones(K), size=N)
    return data(kind, seed=6)


@pytest.mark.on_device
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", KERAS_CASES, ids=lambda c: f"{c[0]}{c[1] or ''}-{c[3]}".replace(" ", ""))
def test_matches_keras(backend: ax.Backend, keras_exact: Any, case: tuple, weighted: bool) -> None:
    name, kwargs, make, kind, logits = case
    out, y = keras_data(kind)
    w = weights() if weighted else None
    theirs = getattr(keras_exact.losses, name)(reduction="none", dtype="float64", **kwargs)
    value, grad = keras_value_and_grad(keras64, theirs, out, y, w)
    assert_matches(backend, make(), out, y, w, logits, value, grad)
    if kind == "clipped":  # the gradient of the clipped function, as autograd's
        _, g, _ = ours(backend, make(), out, y, w, logits)
        assert g[0, 0] == 0.0 and g[1, 1] == 0.0 and g[2, 3] == 0.0


@pytest.mark.on_device
@pytest.mark.parametrize("name", ["KLDivergence", "Poisson", "Huber"])
def test_keras_batch_reduction(backend: ax.Backend, keras64: Any, name: str) -> None:
    """Keras's own call with sample_weight (sum_over_batch_size); its last division is in
    float32 on the torch backend, hence 1e-6 here."""
    import torch

    kind = {"KLDivergence": "kl", "Poisson": "rates", "Huber": "real"}[name]
    out, y = keras_data(kind)
    w = weights()
    theirs = getattr(keras64.losses, name)(dtype="float64")
    value = float(theirs(torch.tensor(y), torch.tensor(out), sample_weight=torch.tensor(w)))
    mine = {"KLDivergence": KLDivergence, "Poisson": Poisson, "Huber": Huber}[name]()
    np.testing.assert_allclose(ours(backend, mine, out, y, w, False)[0], value, rtol=1e-6)


@pytest.mark.on_device
def test_keras_epsilon_in_float32_and_float64(backend: ax.Backend) -> None:
    """KLDivergence and Poisson use Keras's epsilon 1e-7 in both dtypes (Keras's definition),
    not the per-dtype clip of the cross-entropies."""
    out = np.array([[0.0, 1.0], [1e-9, 1.0 - 1e-9]])
    y = np.array([[1.0, 0.0], [0.5, 0.5]])
    expected_kl = np.sum(np.clip(y, 1e-7, 1) * np.log(np.clip(y, 1e-7, 1) / np.clip(out, 1e-7, 1)), axis=1).mean()
    expected_poisson = np.mean(out - y * np.log(out + 1e-7))
    for dtype in ("float64", "float32"):
        kl = KLDivergence().bind(backend.xp, backend.float_dtype(dtype))
        po = Poisson().bind(backend.xp, backend.float_dtype(dtype))
        o, t = f64(backend, out, dtype), f64(backend, y, dtype)
        rtol = 1e-12 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(float(host(backend, kl.value(o, t))), expected_kl, rtol=rtol)
        np.testing.assert_allclose(float(host(backend, po.value(o, t))), expected_poisson, rtol=rtol)


# --------------------------------------------------------------------------- float32, syncs
FLOAT32_CASES = [(c[0], c[1], c[2]) for c in GRADIENT_CASES]


@pytest.mark.on_device
@pytest.mark.parametrize(("loss", "kind", "logits"), FLOAT32_CASES, ids=case_id)
def test_float32_stays_float32(backend: ax.Backend, loss: Loss, kind: str, logits: bool) -> None:
    f32 = backend.float_dtype("float32")
    out, y = data(kind)
    w = weights()
    lo = bound(loss, backend, "float32")
    o, t, wd = f64(backend, out, "float32"), f64(backend, y, "float32"), f64(backend, w, "float32")
    for weight in (None, wd):
        total, grad = lo.sum_and_grad(o, t, weight, logits=logits)
        value = lo.value(o, t, weight, logits=logits)
        assert total.dtype == f32 and value.dtype == f32
        assert_native(backend, grad, "float32")
        # and agrees with the float64 computation
        v64, g64, _ = ours(backend, loss, out, y, None if weight is None else w, logits)
        np.testing.assert_allclose(float(host(backend, value)), v64, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(backend, grad), g64, rtol=1e-4, atol=1e-6)


@pytest.mark.on_device
def test_smoothed_fused_losses_are_finite_for_huge_logits(backend: ax.Backend) -> None:
    f32 = backend.float_dtype("float32")
    z = backend.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype=f32)
    y = backend.asarray([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=f32)
    ce = CrossEntropy(label_smoothing=0.3).bind(backend.xp, f32)
    value, grad = ce.value_and_grad(z, y, logits=True)
    # sample 0: -(0.8 * -2e4 + 0.1 * -1e4 + 0.1 * 0 ... ) with log_softmax = [0, -2e4, -1e4]
    expected0 = 0.8 * 2e4 + 0.1 * 1e4
    expected1 = 0.1 * 2e4 + 0.1 * (1e4 - 5.0)
    np.testing.assert_allclose(float(host(backend, value)), (expected0 + expected1) / 2, rtol=1e-6)
    np.testing.assert_allclose(host(backend, grad), [[0.45, -0.4, -0.05], [-0.05, 0.1, -0.05]], atol=1e-6)
    bce = BinaryCrossEntropy(label_smoothing=0.2).bind(backend.xp, f32)
    value, grad = bce.value_and_grad(z[:, :1], y[:, 1:2], logits=True)  # targets 1 -> 0.9
    np.testing.assert_allclose(float(host(backend, value)), (0.1 * 1e4 + 0.9 * 1e4) / 2, rtol=1e-6)
    np.testing.assert_allclose(host(backend, grad)[:, 0], [0.05, -0.45], atol=1e-6)


def test_no_host_syncs_and_no_data_dependent_shapes(backend: ax.Backend) -> None:
    if backend.name != "array_api_strict":
        pytest.skip("counted on array_api_strict")
    import array_api_strict

    flags = array_api_strict.get_array_api_strict_flags()
    array_api_strict.set_array_api_strict_flags(data_dependent_shapes=False)
    try:
        with count_host_syncs() as syncs:
            for loss, kind, logits in FLOAT32_CASES:
                lo = bound(loss, backend, "float32")
                out, y = data(kind)
                o, t = f64(backend, out, "float32"), f64(backend, y, "float32")
                w = f64(backend, weights(), "float32")
                for weight in (None, w):
                    lo.sum_and_grad(o, t, weight, logits=logits)
                    lo.value(o, t, weight, logits=logits)
    finally:
        array_api_strict.set_array_api_strict_flags(**flags)
    assert syncs == []


# --------------------------------------------------------------------------- training, save / load
TRAIN_CASES = [
    ([ax.Dense(16, "tanh"), ax.Dense(3, "linear")], "huber", "real"),
    ([ax.Dense(16, "tanh"), ax.Dense(3, "linear")], Huber(delta=0.3), "real"),
    ([ax.Dense(16, "tanh"), ax.Dense(3, "softmax")], "kld", "distributions"),
    ([ax.Dense(16, "tanh"), ax.Dense(3, "softmax")], KLDivergence(), "distributions"),
    ([ax.Dense(16, "tanh"), ax.Dense(3, "softplus")], "poisson", "counts"),
    ([ax.Dense(16, "tanh"), ax.Dense(3, "softmax")], CrossEntropy(label_smoothing=0.1), "labels"),
    ([ax.Dense(16, "tanh"), ax.Dense(3)], CrossEntropy(label_smoothing=0.1, from_logits=True), "labels"),
    ([ax.Dense(16, "tanh"), ax.Dense(2, "sigmoid")], BinaryCrossEntropy(label_smoothing=0.2), "binary"),
    ([ax.Dense(16, "tanh"), ax.Dense(2)], BinaryCrossEntropy(label_smoothing=0.2, from_logits=True), "binary"),
]
TRAIN_IDS = ["huber", "huber-0.3", "kld-name", "kld", "poisson", "ce-smooth-fused", "ce-smooth-logits",
             "bce-smooth-fused", "bce-smooth-logits"]


@pytest.mark.parametrize(("layers", "loss", "targets"), TRAIN_CASES, ids=TRAIN_IDS)
def test_trains_and_round_trips(backend: ax.Backend, layers: list, loss: Any, targets: str, tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4))
    y = network_targets(targets, x)
    net = ax.Network([type(layer).from_config(layer.get_config()) for layer in layers], input_size=4,
                     loss=loss, optimizer=ax.Adam(lr=1e-2), backend=backend, seed=1)
    history = net.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = ax.load(path, backend=backend)
    assert type(loaded.loss) is type(net.loss)
    assert loaded.loss.name == net.loss.name and loaded.loss.get_config() == net.loss.get_config()
    assert loaded._fused == net._fused and loaded._logits == net._logits
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    assert loaded.evaluate(x, y) == net.evaluate(x, y)
    # training goes on from the loaded copy exactly as from the original
    more = dict(epochs=17, batch_size=16, verbose=0, initial_epoch=15)
    np.testing.assert_array_equal(loaded.fit(x, y, **more).history["loss"], net.fit(x, y, **more).history["loss"])
