"""After `fit`, the weights are finite, always, or `TrainingDivergedError` is raised with
the last finite weights restored, whatever the step at which the blow-up happens: the
first, one in the middle, the last step of the last epoch, the only step of a full batch,
with mini-batches and with one batch, on every backend (issue 9, class 1)."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp as ax

N = 48


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4))
    return x, np.argmax(x @ rng.normal(size=(4, 3)), axis=1)


def network(backend: ax.Backend, dtype: str = "float64") -> ax.Network:
    return ax.Network([ax.Dense(8, "tanh"), ax.Dropout(0.2), ax.Dense(3, "softmax")], input_size=4,
                      optimizer=ax.Adam(lr=1e-2), backend=backend, dtype=dtype, seed=0)


def blow_up_at(net: ax.Network, step: int) -> dict[str, np.ndarray]:
    """Make optimizer update number ``step`` write inf into the weights (as an overflowing
    update would), every time that update runs (the replay runs it again). Returns a dict
    that receives the weights from just before that update."""
    before: dict[str, np.ndarray] = {}
    original = net.optimizer.step

    def step_then_blow_up() -> None:
        if net.optimizer.steps + 1 == step:
            before["theta"] = np.array(net.backend.to_numpy(net._theta))
            original()
            net._theta[0] = float("inf")
        else:
            original()

    net.optimizer.step = step_then_blow_up  # type: ignore[method-assign]
    return before


@pytest.mark.parametrize(
    ("batch_size", "epochs", "step", "epoch", "batch"),
    [
        (16, 3, 1, 1, 1),  # the first step
        (16, 3, 5, 2, 2),  # the middle of an epoch
        (16, 3, 9, 3, 3),  # the last step of the last epoch: every loss of the run is finite
        (N, 1, 1, 1, 1),  # a full batch, one epoch: the only update
        (N, 4, 4, 4, 1),  # a full batch, the last of several epochs
    ],
    ids=["first", "middle", "last-of-last-epoch", "full-batch-only-step", "full-batch-last-epoch"],
)
def test_a_blow_up_at_any_step_leaves_the_last_finite_weights(
    backend: ax.Backend, batch_size: int, epochs: int, step: int, epoch: int, batch: int
) -> None:
    x, y = data()
    net = network(backend)
    before = blow_up_at(net, step)
    with pytest.raises(ax.TrainingDivergedError, match="weights became non-finite") as info:
        net.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    assert (info.value.epoch, info.value.batch) == (epoch, batch)
    theta = np.array(net.backend.to_numpy(net._theta))
    assert np.isfinite(theta).all()
    np.testing.assert_array_equal(theta, before["theta"])  # exactly the weights before that update
    assert net.optimizer.steps == step - 1
    assert all(np.isfinite(a).all() for a in map(net.backend.to_numpy, net.optimizer.state_arrays().values()))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_real_overflow_on_the_only_update_is_caught(backend: ax.Backend) -> None:
    """A full-batch run whose single SGD update overflows float32: the loss (computed
    before the update) is finite, the weights after it are not. The user sees the one
    clear error, no NumPy overflow warning before it."""
    x, y = data()
    x = x * 1e3  # gradients of a few hundred: lr * gradient overflows float32
    net = ax.Network([ax.Dense(8, "linear"), ax.Dense(3, "softmax")], input_size=4, optimizer=ax.SGD(lr=1e37),
                     backend=backend, dtype="float32", seed=0)
    net.build()
    initial = net.get_weights()
    with pytest.raises(ax.TrainingDivergedError, match=r"weights became non-finite at epoch 1/1, batch 1/1"):
        net.fit(x, y, epochs=1, batch_size=N, verbose=0)
    for got, want in zip(net.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_finite_run_is_untouched_by_the_check(backend: ax.Backend) -> None:
    """The per-epoch check adds no replay and no difference to a healthy run."""
    x, y = data()
    net = network(backend)
    history = net.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert net.optimizer.steps == 9 and len(history.history["loss"]) == 3
    assert all(np.isfinite(w).all() for w in net.get_weights())
