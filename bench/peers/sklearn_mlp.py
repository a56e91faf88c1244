"""scikit-learn's MLPClassifier, trained one epoch at a time with partial_fit."""

from __future__ import annotations

import warnings

import numpy as np


class SklearnMLP:
    def __init__(self, sizes: tuple[int, ...], hidden: str, optimizer: str, lr: float, seed: int = 0) -> None:
        from sklearn.neural_network import MLPClassifier

        self.model = MLPClassifier(
            hidden_layer_sizes=sizes[1:-1], activation="relu" if hidden == "relu" else "logistic",
            solver=optimizer, learning_rate_init=lr, alpha=0.0, momentum=0.0, nesterovs_momentum=False,
            batch_size=0, shuffle=True, random_state=seed,
        )
        self.classes = np.arange(sizes[-1])

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
                    limit: int | None = None) -> None:
        n = x.shape[0] if limit is None else min(limit, x.shape[0])
        self.model.batch_size = batch_size
        idx = rng.permutation(x.shape[0])[:n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.partial_fit(x[idx], y[idx], classes=self.classes)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)
