"""Run under ``mpirun -n 2 python -m mpi4py -m pytest tests/mpi`` (nox -s distributed):
BatchNorm in data-parallel training normalises with the global batch's statistics, so two
processes train to the weights and running statistics of one process."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

MPI = pytest.importorskip("mpi4py.MPI")

import anyxp as ax  # noqa: E402
from anyxp import cuda, distributed  # noqa: E402
from anyxp.backend import backend_problem  # noqa: E402

pytestmark = pytest.mark.skipif(
    MPI.COMM_WORLD.Get_size() < 2, reason="needs several MPI processes: nox -s distributed"
)

STACKS = {
    # use_bias=False before the BatchNorm: with Adam, that bias's analytically zero
    # gradient would turn summation-order rounding into lr-sized updates
    "middle": lambda: [ax.Dense(12, use_bias=False), ax.BatchNorm(), ax.ReLU(), ax.Dense(8), ax.LayerNorm(),
                       ax.Dense(3, "softmax")],
    "first": lambda: [ax.BatchNorm(momentum=0.2), ax.Dense(12, "tanh"), ax.BatchNorm(center=False),
                      ax.Dense(3, "softmax")],
}


def make_net(backend: str, stack: str, optimizer: str) -> ax.Network:
    opt = ax.Adam(lr=0.01) if optimizer == "adam" else ax.SGD(lr=0.1, momentum=0.9)
    return ax.Network(STACKS[stack](), input_size=6, optimizer=opt, backend=backend, dtype="float64", seed=5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "cupy"])
def test_two_processes_match_one_with_batch_norm(backend: str, stack: str, optimizer: str) -> None:
    """98 samples, global batch 16: the last batch of 2 leaves each rank one sample,
    whose statistics alone would be degenerate."""
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    if backend == "cupy" and (problem := backend_problem("cupy") or cuda.nccl_problem()):
        pytest.skip(problem)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(98, 6)) * 2.0 + 0.5
    y = np.argmax(x @ rng.normal(size=(6, 3)), axis=1)
    val = (x[:30], y[:30])
    single = make_net(backend, stack, optimizer)
    expected = single.fit(x, y, epochs=3, batch_size=16, validation_data=val, verbose=0)
    comm = distributed.init()
    net = make_net(backend, stack, optimizer)
    history = net.fit(x, y, epochs=3, batch_size=16, validation_data=val, verbose=0, comm=comm)
    assert net.num_state > 0
    for got, want in zip(net.get_weights(), single.get_weights(), strict=True):  # running stats included
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-10)
    np.testing.assert_allclose(net.predict(x), single.predict(x), rtol=1e-10, atol=1e-12)
    flat = np.concatenate([w.ravel() for w in net.get_weights()])
    for other in MPI.COMM_WORLD.allgather(flat):  # every rank holds the same weights, bit for bit
        np.testing.assert_array_equal(other, flat)


def test_a_last_batch_of_one_sample_is_refused_on_every_rank() -> None:
    """Checked before any collective: every rank raises, none hangs."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(33, 6))
    y = np.argmax(x @ rng.normal(size=(6, 3)), axis=1)
    comm = distributed.init()
    net = make_net("numpy", "middle", "sgd")
    before = net.get_weights()
    with pytest.raises(ValueError, match="leave a last batch of 1"):
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, comm=comm)
    for got, want in zip(net.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    MPI.COMM_WORLD.Barrier()
