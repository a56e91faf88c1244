"""Sessions per backend: ``nox -s tests`` runs the suite on every backend.

- ``tests(backend='numpy' | 'array_api_strict' | 'torch' | 'cupy')``: the one pytest
  suite, on that backend (array_api_strict on its non-default device ``device1``, cupy
  on device 1 where there are two GPUs). The cupy session skips, before installing
  CuPy, where no NVIDIA driver is present; where one is, a GPU that cannot train fails
  it (``ANYXP_STRICT_BACKEND=1``) instead of falling back to NumPy.
- ``cupy_proxy``: every CuPy-only line without a GPU: the suite on the CuPy stand-in
  (tests/cupy_standin), the data-parallel tests on its NCCL under ``mpirun -n 2``, and
  the line coverage of ``anyxp/cuda.py`` and of the lines marked ``# cuda-only``.
- ``bench(backend='numpy' | 'torch' | 'cupy')``: pytest-benchmark, storage per backend.
- ``bench_report``: all backends and peers interleaved in one run; markdown + PNG.
- ``distributed``: data-parallel tests under ``mpirun -n 2`` (numpy over MPI, torch over gloo).
- ``lint``: ruff.
Arguments after ``--`` reach pytest: ``nox -s tests -- -k gradients``.
"""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"  # plain pip: honours pip's find-links (torch CPU wheel)
nox.options.sessions = ["tests", "distributed", "cupy_proxy", "lint"]

BACKENDS = ["numpy", "array_api_strict", "torch", "cupy"]
EXTRAS = {
    "numpy": "test",
    "array_api_strict": "test,strict",
    "torch": "test,torch,keras",  # Keras on torch: the oracle of the Keras-named pieces
    "cupy": "test,cupy",
}
# What a GPU run needs beyond the bare wheel: CuPy 14 no longer brings NVRTC or cuBLAS.
GPU_PACKAGES = ["cupy-cuda12x[ctk]>=14"]


def nvidia_driver_problem() -> str | None:
    """Why CUDA cannot run here (checked without installing or importing CuPy)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found): the cupy backend needs a CUDA GPU"
    return None


@nox.session
@nox.parametrize("backend", BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """The test suite on one backend."""
    env = {"ANYXP_BACKEND": backend, "ARRAY_API_STRICT_API_VERSION": "2024.12"}
    options = []
    if backend == "cupy":
        if problem := nvidia_driver_problem():
            session.skip(problem)
        env["ANYXP_STRICT_BACKEND"] = "1"  # a driver without a usable GPU fails, never falls back
        env["ANYXP_REQUIRE_REAL_CUPY"] = "1"  # the stand-in's name check runs, never skips
        # between GPUs with peer access CuPy does not refuse another device's array: it
        # warns (and runs slowly); as an error, it shows what the stand-in refuses
        options = ["-W", "error::cupy._util.PerformanceWarning"]
        session.install(*GPU_PACKAGES)
    session.install("-e", f".[{EXTRAS[backend]}]")
    session.run("pytest", f"--backend={backend}", *options, *session.posargs, env=env)


@nox.session
def distributed(session: nox.Session) -> None:
    """Data-parallel tests under ``mpirun -n 2`` (MPI from the mpich wheel: no system MPI),
    on numpy and torch (gloo), then the launch tests (abort on error, the CLI)."""
    session.install("-e", ".[test,mpi,torch]")
    session.run("mpirun", "-n", "2", "python", "-m", "mpi4py", "-m", "pytest", "tests/mpi", "-q",
                "-p", "no:cacheprovider", *session.posargs)
    session.run("pytest", "tests/mpi", *session.posargs)


@nox.session
def cupy_proxy(session: nox.Session) -> None:
    """The suite with ``--backend=cupy`` on the CuPy stand-in (tests/cupy_standin: NumPy
    underneath, two emulated GPUs, the suite on device 1), then the data-parallel tests on
    its NCCL (emulated over MPI) under ``mpirun -n 2``; then the line coverage of the
    CuPy-only code: all of ``anyxp/cuda.py`` and the lines marked ``# cuda-only``.

    The bare cupy-cuda12x wheel (no CUDA libraries: it imports without a GPU) is installed
    only so that tests/test_cupy_standin.py can check the stand-in's names and signatures
    against the real CuPy; everything else runs on the stand-in."""
    session.install("-e", ".[test,mpi]", "cupy-cuda12x>=14", "coverage>=7")
    data = Path(session.create_tmp()).resolve() / ".coverage"
    for old in data.parent.glob(".coverage*"):
        old.unlink()
    env = {"ANYXP_BACKEND": "cupy", "ANYXP_CUPY_STANDIN": "1", "ANYXP_REQUIRE_REAL_CUPY": "1",
           "ARRAY_API_STRICT_API_VERSION": "2024.12", "COVERAGE_FILE": str(data)}
    measured = ["coverage", "run", "--parallel-mode", "--source=anyxp"]
    # the launch tests start mpirun jobs on NumPy: the distributed session runs them
    session.run(*measured, "-m", "pytest", "--backend=cupy", "--cupy-standin", "-p", "no:cacheprovider",
                "--ignore=tests/mpi/test_launch.py", *session.posargs, env=env)
    session.run("mpirun", "-n", "2", *measured, "-m", "mpi4py", "-m", "pytest", "--backend=cupy",
                "--cupy-standin", "-q", "-p", "no:cacheprovider", "tests/mpi/test_collective.py",
                "tests/test_cupy_gpu.py", "-k", "test_collective or nccl", env=env)
    session.run("coverage", "combine", "--quiet", env=env)
    session.run("coverage", "json", "--quiet", "-o", str(data.parent / "coverage.json"), env=env)
    report = json.loads((data.parent / "coverage.json").read_text())["files"]
    missed = cuda_only_lines_missed(report)
    session.run("coverage", "report", "--include=anyxp/cuda.py", "--show-missing", env=env)
    if missed:
        session.error("CuPy-only lines that no test ran:\n  " + "\n  ".join(missed))
    session.log("every CuPy-only line ran (anyxp/cuda.py and the lines marked # cuda-only)")


def cuda_only_lines_missed(report: dict) -> list[str]:
    """The lines of anyxp/cuda.py, and those marked ``# cuda-only`` elsewhere, that the
    coverage ``report`` (coverage json's "files"; --source lists unimported files too)
    shows as not run."""
    missed = []
    for path in sorted(Path("anyxp").glob("*.py")):
        lines = path.read_text().splitlines()
        not_run = set(report[str(path)]["missing_lines"])
        if path.name != "cuda.py":
            not_run &= {n for n, text in enumerate(lines, 1) if re.search(r"#\s*cuda-only", text)}
        missed += [f"{path}:{n}: {lines[n - 1].strip()}" for n in sorted(not_run)]
    return missed


BENCH_EXTRAS = {"numpy": "bench", "torch": "bench,torch", "cupy": "bench,cupy"}


@nox.session
@nox.parametrize("backend", list(BENCH_EXTRAS))
def bench(session: nox.Session, backend: str) -> None:
    """pytest-benchmark of anyxp and its same-library peer; storage kept per backend.
    Quick by default; ``BENCH_FULL=1`` for whole epochs."""
    if backend == "cupy" and (problem := nvidia_driver_problem()):
        session.skip(problem)
    session.install("-e", f".[{BENCH_EXTRAS[backend]},datasets]")
    session.run(
        "pytest", "bench", f"--backend={backend}", "-p", "no:cacheprovider",
        f"--benchmark-storage=.benchmarks/{backend}", "--benchmark-autosave",
        "--benchmark-columns=median,min,max,rounds", *session.posargs,
        env={"ANYXP_BACKEND": backend},
    )


@nox.session
def bench_report(session: nox.Session) -> None:
    """Every backend and peer interleaved in one process: the markdown table and the PNG.
    Quick mode by default (a few minutes); ``nox -s bench_report -- --full`` for all of it."""
    extras = "bench,torch,datasets,strict" + (",cupy" if nvidia_driver_problem() is None else "")
    session.install("-e", f".[{extras}]")
    full = "--full" in session.posargs
    rest = [a for a in session.posargs if a != "--full"]
    session.run("python", "-m", "bench.report", "--run", *([] if full else ["--quick"]), *rest)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, tests, benchmarks and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "anyxp", "tests", "bench", "noxfile.py")
