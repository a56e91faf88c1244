"""anyxp.sklearn.MLPClassifier beside scikit-learn's MLPClassifier: the same data, the same
settings, fit time and test accuracy.

    .venv/bin/python -m bench.sklearn_compare            # digits and W3 (a few minutes)
    .venv/bin/python -m bench.sklearn_compare --quick    # digits, and W3 on a quarter of the data

Both run on NumPy on the CPU (anyxp float32, its default; scikit-learn float32 input,
which it keeps). W3 is bench/workloads.py's MNIST-shaped 784-512-512-10 ReLU Adam
problem (synthetic, teacher-labelled), batch 128, for a fixed number of epochs
(``tol=0``: both run every epoch).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLP

from anyxp.sklearn import MLPClassifier

from .workloads import W3, load


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split((x / 16.0).astype(np.float32), y, test_size=0.25, random_state=0,
                                          stratify=y)
    return xtr, ytr, xte, yte


def _run(cls: type, params: dict, data: tuple[np.ndarray, ...], repeats: int) -> tuple[float, float]:
    xtr, ytr, xte, yte = data
    times, score = [], 0.0
    for _ in range(repeats):
        est = cls(**params)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(xtr, ytr)
        times.append(time.perf_counter() - t0)
        score = est.score(xte, yte)
    return min(times), score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="W3 on 15,000 samples, 2 epochs")
    args = parser.parse_args()

    cases = []
    cases.append(("digits 64-100-10 relu adam, 200 epochs", _digits(),
                  {"hidden_layer_sizes": (100,), "max_iter": 200, "tol": 0.0, "random_state": 0}, 3))
    xtr, ytr, xte, yte = load(W3)
    if args.quick:
        xtr, ytr = xtr[:15000], ytr[:15000]
    epochs = 2 if args.quick else 5
    cases.append((f"W3 {xtr.shape[0]}x784-512-512-10 relu adam, batch 128, {epochs} epochs", (xtr, ytr, xte, yte),
                  {"hidden_layer_sizes": (512, 512), "batch_size": W3.batch_size, "learning_rate_init": W3.lr,
                   "max_iter": epochs, "tol": 0.0, "random_state": 0}, 1))
    header = ("workload", "anyxp s", "sklearn s", "speedup", "anyxp acc", "sklearn acc")
    print("{:58s} {:>9s} {:>10s} {:>8s} {:>10s} {:>12s}".format(*header))
    for title, data, params, repeats in cases:
        ours_t, ours_acc = _run(MLPClassifier, {**params, "backend": "numpy"}, data, repeats)
        theirs_t, theirs_acc = _run(SkMLP, params, data, repeats)
        print(f"{title:58s} {ours_t:9.2f} {theirs_t:10.2f} {theirs_t / ours_t:7.1f}x {ours_acc:10.4f} "
              f"{theirs_acc:12.4f}", flush=True)


if __name__ == "__main__":
    main()
