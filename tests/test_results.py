"""The tutorials' results, reached on the backend under test with fixed seeds."""

from __future__ import annotations

import pytest

from anyxp import experiments

pytestmark = pytest.mark.slow


def test_digits_network_reaches_95_percent(backend) -> None:
    pytest.importorskip("sklearn")
    run = experiments.digits_run(backend=backend, seed=0)
    assert run.scores["test"]["accuracy"] >= 0.95, run.scores
    assert run.epochs < 500  # early stopping stopped it
    assert run.network.backend is backend


@pytest.mark.parametrize("name", list(experiments.SIGN_VECTOR_NETS))
def test_sign_vector_networks_reach_90_percent(backend, name: str) -> None:
    if name == "14-14x28-4" and backend.name == "array_api_strict":
        pytest.skip("28 hidden layers x 4100 steps: covered on numpy and torch (10x slower on strict)")
    run = experiments.sign_vector_run(name, backend=backend, seed=0)
    assert run.scores["test"]["accuracy"] >= 0.90, run.scores


def test_the_deep_sign_vector_net_stays_at_chance_with_plain_he_relu(backend) -> None:
    """The article's difficulty, reproduced: ReLU with He init does not train 28 layers."""
    if backend.name != "numpy":
        pytest.skip("one backend is enough to show the failure mode")
    run = experiments.sign_vector_run("14-14x28-4", backend=backend, seed=0, activation="relu", lr=2e-3)
    assert run.scores["test"]["accuracy"] < 0.5


def test_mse_digits_network_fits_the_training_set(backend) -> None:
    pytest.importorskip("sklearn")
    run = experiments.mse_digits_run(backend=backend, seed=0)
    assert run.scores["train"]["accuracy"] >= 0.98, run.scores
