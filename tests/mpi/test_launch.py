"""Launching with mpirun from a single process: a failing rank aborts the whole job
promptly, ranks that disagree on what they must share all fail at once with the same
clear message (never a hang), and ``anyxp train --distributed`` runs the digits job on
two processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py")
from mpi4py import MPI

pytestmark = pytest.mark.skipif(MPI.COMM_WORLD.Get_size() > 1, reason="launches mpirun itself")


def mpirun() -> str:
    local = Path(sys.executable).parent / "mpirun"
    found = str(local) if local.exists() else shutil.which("mpirun")
    if found is None:
        pytest.skip("mpirun is not installed (pip install 'anyxp[mpi]')")
    return found


def test_a_failing_rank_aborts_the_job() -> None:
    code = (
        "from mpi4py import MPI\n"
        "comm = MPI.COMM_WORLD\n"
        "if comm.rank == 1:\n"
        "    raise RuntimeError('rank 1 failed on purpose')\n"
        "comm.Barrier()  # rank 0 would wait here forever without the abort\n"
    )
    job = subprocess.run([mpirun(), "-n", "2", sys.executable, "-m", "mpi4py", "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert job.returncode != 0
    assert "rank 1 failed on purpose" in job.stdout + job.stderr


def test_train_distributed_runs_the_digits_job(tmp_path) -> None:
    pytest.importorskip("sklearn")
    model = tmp_path / "digits.npz"
    job = subprocess.run(
        [mpirun(), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "anyxp", "train", "--distributed",
         "--quiet", "--save", str(model)],
        capture_output=True, text=True, timeout=300,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert job.stdout.count("| test") == 1  # only rank 0 prints
    processes = next(line for line in job.stdout.splitlines() if line.startswith("| processes"))
    assert processes.split("|")[2].strip() == "2"
    test_row = next(line for line in job.stdout.splitlines() if line.startswith("| test"))
    assert float(test_row.split("|")[3].strip().rstrip("%")) >= 95.0
    assert model.exists()


# A job that runs without ``-m mpi4py``, so that each rank shows its own error.
JOB = """
import pathlib
import sys
import numpy as np
import anyxp as ax
from anyxp import distributed

case, out = sys.argv[1], pathlib.Path(sys.argv[2])
comm = distributed.init()
other = comm.rank == 1
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4))
y = np.argmax(x @ rng.normal(size=(4, 3)), axis=1)
backend, dtype, seed, n = "numpy", "float32", 0, 64
if other and case == "backend":
    backend = "torch"
if other and case == "dtype":
    dtype = "float64"
if other and case == "seed":
    seed = 1
if other and case == "samples":
    n = 63
if other and case == "transport":
    distributed.transport_problem = lambda backend: "simulated: NCCL is not available"
net = ax.Network([ax.Dense(8, "relu"), ax.Dense(3, "softmax")], input_size=4, backend=backend, dtype=dtype, seed=seed)
try:
    net.fit(x[:n], y[:n], epochs=1, batch_size=16, verbose=0, comm=comm)
except distributed.DistributedMismatchError as exc:
    (out / f"rank{comm.rank}").write_text(f"raised: {exc}")
    sys.exit(3)
(out / f"rank{comm.rank}").write_text("trained")
"""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("backend", "backend differs (rank 0: 'numpy', rank 1: 'torch')"),
        ("dtype", "dtype differs (rank 0: 'float32', rank 1: 'float64')"),
        ("seed", "seed (generator state) differs"),
        ("samples", "sample count differs (rank 0: 64, rank 1: 63)"),
        ("transport", "transport differs (rank 0: 'available', rank 1: 'simulated: NCCL is not available')"),
    ],
)
def test_disagreeing_ranks_all_fail_with_one_message(case: str, expected: str, tmp_path: Path) -> None:
    if case == "backend":
        pytest.importorskip("torch")
    job = subprocess.run([mpirun(), "-n", "2", sys.executable, "-c", JOB, case, str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode != 0, job.stdout + job.stderr
    outcomes = {(tmp_path / f"rank{r}").read_text() for r in (0, 1)}
    assert len(outcomes) == 1, outcomes  # both ranks raised, with the same message
    message = outcomes.pop()
    assert message.startswith("raised: distributed fit: the ranks disagree: ")
    assert expected in message


def test_agreeing_ranks_train(tmp_path: Path) -> None:
    job = subprocess.run([mpirun(), "-n", "2", sys.executable, "-c", JOB, "none", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stdout + job.stderr
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["trained", "trained"]
