"""Run under ``mpirun -n 2 python -m mpi4py -m pytest tests/mpi`` (nox -s distributed; the
cupy case under nox -s cupy_proxy, on the stand-in's NCCL): two processes with global
batch B train exactly as one process with batch B."""

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


def make_net(backend: str) -> ax.Network:
    return ax.Network([ax.Dense(16, "relu"), ax.Dense(8, "tanh"), ax.Dense(3, "softmax")], input_size=6,
                      optimizer=ax.Adam(lr=0.01), backend=backend, dtype="float64", seed=5)


@pytest.mark.parametrize("backend", ["numpy", "torch", "cupy"])
def test_two_processes_match_one(backend: str) -> None:
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    if backend == "cupy" and (problem := backend_problem("cupy") or cuda.nccl_problem()):
        pytest.skip(problem)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 6))
    y = np.argmax(x @ rng.normal(size=(6, 3)), axis=1)
    val = (x[:50], y[:50])
    single = make_net(backend)
    expected = single.fit(x, y, epochs=3, batch_size=32, validation_data=val, verbose=0)
    comm = distributed.init()
    net = make_net(backend)
    if backend == "cupy":  # on this rank's own GPU
        assert net.backend.device.id == comm.local_rank % net.backend.library.cuda.runtime.getDeviceCount()
    history = net.fit(x, y, epochs=3, batch_size=32, validation_data=val, verbose=0, comm=comm)
    for got, want in zip(net.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-10)
    flat = np.concatenate([w.ravel() for w in net.get_weights()])
    for other in MPI.COMM_WORLD.allgather(flat):  # every rank holds the same weights, bit for bit
        np.testing.assert_array_equal(other, flat)
