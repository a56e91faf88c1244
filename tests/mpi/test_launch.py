"""Launching with mpirun from a single process: a failing rank aborts the whole job
promptly, and ``anyxp train --distributed`` runs the digits job on two processes."""

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
