"""The benchmark workloads, defined once: data, architecture, optimizer, batch size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One training job: ``sizes`` are the layer widths from input to output."""

    name: str
    title: str
    sizes: tuple[int, ...]
    hidden: str  # hidden activation: "sigmoid" or "relu"
    optimizer: str  # "sgd" or "adam"
    lr: float
    batch_size: int
    n_train: int
    quick_epochs: float = 1.0  # fraction of the training set per timed repeat in quick mode
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def weights(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def flops_per_sample(self) -> float:
        """6 x weights: forward (2) + backward (4) multiply-adds per weight."""
        return 6.0 * sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))


W1 = Workload("W1", "digits 64-20-20-10 sigmoid, SGD", (64, 20, 20, 10), "sigmoid", "sgd", 0.1, 25, 1078)
W2 = Workload("W2", "sign vectors 14-100-40-4 ReLU, Adam", (14, 100, 40, 4), "relu", "adam", 2e-3, 32, 13107)
W3 = Workload("W3", "MNIST-shaped 784-512-512-10 ReLU, Adam", (784, 512, 512, 10), "relu", "adam", 1e-3, 128, 60000,
              quick_epochs=0.25)
W4 = Workload("W4", "wide 784-2048-2048-10 ReLU, Adam", (784, 2048, 2048, 10), "relu", "adam", 1e-3, 512, 20000,
              quick_epochs=0.5)
FASHION = Workload("FMNIST", "Fashion-MNIST 784-512-512-10 ReLU, Adam", (784, 512, 512, 10), "relu", "adam", 1e-3,
                   128, 60000, quick_epochs=0.25, notes="Debian dataset-fashion-mnist")
WORKLOADS = {w.name: w for w in (W1, W2, W3, W4, FASHION)}
def load(workload: Workload, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), float32 features and int64 labels."""
    from anyxp import datasets

    if workload.name == "W1":
        x, y = datasets.load_digits()
        (xtr, ytr), _, (xte, yte) = datasets.split(x, y, (0.6, 0.2, 0.2), seed=seed)
        return xtr, ytr, xte, yte
    if workload.name == "W2":
        x, y = datasets.sign_vectors(14)
        (xtr, ytr), (xte, yte) = datasets.split(x, y, (0.8, 0.2), seed=seed)
        return xtr, ytr, xte, yte
    if workload.name == "FMNIST":
        return datasets.load_fashion_mnist()
    rng = np.random.default_rng(seed)
    n_test = 2000
    x = rng.standard_normal((workload.n_train + n_test, workload.sizes[0]), dtype=np.float32)
    teacher = rng.standard_normal((workload.sizes[0], workload.sizes[-1]), dtype=np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int64)
    return x[: workload.n_train], y[: workload.n_train], x[workload.n_train :], y[workload.n_train :]
