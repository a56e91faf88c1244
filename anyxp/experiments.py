"""The tutorials' experiments: the networks, settings and published results that
``anyxp train`` and ``anyxp reproduce`` run (and the tests check)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import datasets
from .activations import get_activation
from .callbacks import EarlyStopping, History
from .initializers import default_initializer
from .layers import Dense
from .network import Network
from .optimizers import SGD, Adam


@dataclass
class Run:
    """One trained network and what it scored."""

    name: str
    network: Network
    history: History
    seconds: float
    scores: dict[str, dict[str, float]]  # split -> {"loss": ..., "accuracy": ...}
    settings: str = ""
    published: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history.epoch)


def digits_splits(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The digits, 60/20/20 train/validation/test, seeded."""
    x, y = datasets.load_digits()
    return datasets.split(x, y, (0.6, 0.2, 0.2), seed=seed)


def sign_vector_splits(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """All 16384 sign vectors of length 14, 80/20 train/test, seeded."""
    x, y = datasets.sign_vectors(14)
    return datasets.split(x, y, (0.8, 0.2), seed=seed)


def _train(
    name: str,
    make: Callable[[], Network],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    epochs: int,
    batch_size: int,
    callbacks: list[Any] | None = None,
    verbose: int = 0,
    settings: str = "",
    published: str = "",
    comm: Any = None,
) -> Run:
    x, y = splits["train"]
    val = splits.get("val")
    _warm_up(make, x, y, batch_size, val)
    net = make()
    start = time.perf_counter()
    history = net.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=val,
                      callbacks=callbacks or [], verbose=verbose, comm=comm)
    net.backend.synchronize()
    seconds = time.perf_counter() - start
    scores = {split: net.evaluate(*data) for split, data in splits.items()}
    return Run(name, net, history, seconds, scores, settings, published)


def _warm_up(make: Callable[[], Network], x: Any, y: Any, batch_size: int, val: Any) -> None:
    """Train a throwaway copy on two batches, so that the timed run leaves out one-off
    costs: CuPy compiles each kernel on its first use, thread pools start."""
    n = min(len(x), 2 * batch_size)
    spare = make()
    spare.fit(x[:n], y[:n], epochs=1, batch_size=batch_size, verbose=0,
              validation_data=None if val is None else (val[0][:n], val[1][:n]))
    spare.backend.synchronize()


def digits_run(
    *, backend: Any = "auto", device: Any = None, dtype: str = "float32", epochs: int = 500,
    batch_size: int = 25, lr: float = 0.1, patience: int = 20, seed: int = 0, verbose: int = 0,
    comm: Any = None,
) -> Run:
    """64-20-20-10, sigmoid hidden, softmax + cross-entropy, SGD, early stopping on validation
    (data-parallel over ``comm``'s processes when given)."""
    train, val, test = digits_splits(seed)

    def make() -> Network:
        return Network(
            [Dense(20, "sigmoid"), Dense(20, "sigmoid"), Dense(10, "softmax")], input_size=64,
            loss="cross_entropy", optimizer=SGD(lr=lr), backend=backend, device=device,
            dtype=dtype, seed=seed, name="digits-64-20-20-10",
        )

    return _train(
        "digits 64-20-20-10", make, {"train": train, "val": val, "test": test},
        epochs=epochs, batch_size=batch_size, verbose=verbose,
        callbacks=[EarlyStopping("val_loss", patience=patience, restore_best_weights=True)],
        settings=f"SGD lr={lr}, batch {batch_size}, early stopping (patience {patience})",
        published="96% test accuracy", comm=comm,
    )


# The joml article's sign-vector networks (Adam lr 0.002, batch 32, 10 epochs). The
# 28-hidden-layer net stays at chance with plain He init and ReLU (in PyTorch too); with
# ELU, GELU, LeakyReLU or softplus it trains for some seeds only. tanh with orthogonal
# init (which keeps signal norms through the 28 layers) and lr 0.001 passes 94% for
# every seed tried, in float32 and float64.
SIGN_VECTOR_NETS = {
    "14-100-40-4": {"hidden": [100, 40], "activation": "relu", "init": None, "lr": 2e-3},
    "14-28x6-4": {"hidden": [28] * 6, "activation": "relu", "init": None, "lr": 2e-3},
    "14-14x28-4": {"hidden": [14] * 28, "activation": "tanh", "init": "orthogonal", "lr": 1e-3},
}


def sign_vector_run(
    net_name: str, *, backend: Any = "auto", device: Any = None, dtype: str = "float32",
    epochs: int = 10, batch_size: int = 32, lr: float | None = None, seed: int = 0, verbose: int = 0,
    activation: str | None = None, init: str | None = None,
) -> Run:
    """One of the joml sign-vector networks: Adam, batch 32, 10 epochs."""
    spec = SIGN_VECTOR_NETS[net_name]
    act = activation or spec["activation"]
    init = init if init is not None else (spec["init"] if activation is None else None)
    lr = lr if lr is not None else spec["lr"]
    train, test = sign_vector_splits(seed)

    def make() -> Network:
        layers = [Dense(units, act, init=init) for units in spec["hidden"]]
        return Network(
            [*layers, Dense(4, "softmax")], input_size=14, loss="cross_entropy",
            optimizer=Adam(lr=lr), backend=backend, device=device, dtype=dtype, seed=seed,
            name=f"sign-vectors-{net_name}",
        )

    init_name = init or default_initializer(get_activation(act).name)
    return _train(
        f"sign vectors {net_name}", make, {"train": train, "test": test},
        epochs=epochs, batch_size=batch_size, verbose=verbose,
        settings=f"{get_activation(act).name}, {init_name} init, Adam lr={lr}, batch {batch_size}, {epochs} epochs",
        published="> 90% test accuracy",
    )


def mse_digits_run(
    *, backend: Any = "auto", device: Any = None, dtype: str = "float32", epochs: int = 100,
    batch_size: int = 15, lr: float = 1e-3, seed: int = 0, verbose: int = 0,
) -> Run:
    """64-15-10, ReLU hidden, sigmoid output, MSE on one-hot targets, all 1797 digits."""
    x, y = datasets.load_digits()

    def make() -> Network:
        return Network(
            [Dense(15, "relu"), Dense(10, "sigmoid")], input_size=64, loss="mse",
            optimizer=Adam(lr=lr), backend=backend, device=device, dtype=dtype, seed=seed,
            metrics=["accuracy"], name="digits-mse-64-15-10",
        )

    return _train(
        "digits MSE 64-15-10", make, {"train": (x, y)}, epochs=epochs, batch_size=batch_size,
        verbose=verbose, settings=f"ReLU/sigmoid, MSE, Adam lr={lr}, batch {batch_size}, {epochs} epochs",
        published="~100% training accuracy",
    )


def fashion_mnist_run(
    *, backend: Any = "auto", device: Any = None, dtype: str = "float32", epochs: int = 10,
    batch_size: int = 128, lr: float = 1e-3, patience: int = 3, seed: int = 0, verbose: int = 0,
    comm: Any = None,
) -> Run:
    """784-512-512-10 ReLU, Adam, on Fashion-MNIST (Debian's files); the last 10000
    training images validate, for early stopping."""
    x, y, x_test, y_test = datasets.load_fashion_mnist()
    train, val = (x[:50000], y[:50000]), (x[50000:], y[50000:])

    def make() -> Network:
        return Network(
            [Dense(512, "relu"), Dense(512, "relu"), Dense(10, "softmax")], input_size=784,
            optimizer=Adam(lr=lr), backend=backend, device=device, dtype=dtype, seed=seed,
            name="fashion-mnist-784-512-512-10",
        )

    return _train(
        "Fashion-MNIST 784-512-512-10", make, {"train": train, "val": val, "test": (x_test, y_test)},
        epochs=epochs, batch_size=batch_size, verbose=verbose,
        callbacks=[EarlyStopping("val_loss", patience=patience)],
        settings=f"ReLU, Adam lr={lr}, batch {batch_size}, early stopping (patience {patience})",
        published="", comm=comm,
    )


def reproduce(*, backend: Any = "auto", device: Any = None, verbose: int = 0) -> list[Run]:
    """Every published experiment, in order."""
    runs = [digits_run(backend=backend, device=device, verbose=verbose)]
    runs += [sign_vector_run(name, backend=backend, device=device, verbose=verbose) for name in SIGN_VECTOR_NETS]
    runs.append(mse_digits_run(backend=backend, device=device, verbose=verbose))
    return runs


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)
