"""Sessions per backend: ``nox -s tests`` runs the suite on every backend.

- ``tests(backend='numpy' | 'array_api_strict' | 'torch' | 'cupy')``: the one pytest
  suite, on that backend (array_api_strict on its non-default device ``device1``).
  The cupy session skips, before installing CuPy, where no NVIDIA driver is present.
- ``bench(backend='numpy' | 'torch' | 'cupy')``: pytest-benchmark, storage per backend.
- ``bench_report``: all backends and peers interleaved in one run; markdown + PNG.
- ``distributed``: data-parallel tests under ``mpirun -n 2`` (numpy over MPI, torch over gloo).
- ``lint``: ruff.
Arguments after ``--`` reach pytest: ``nox -s tests -- -k gradients``.
"""

from __future__ import annotations

import ctypes

import nox

nox.options.default_venv_backend = "virtualenv"  # plain pip: honours pip's find-links (torch CPU wheel)
nox.options.sessions = ["tests", "distributed", "lint"]

BACKENDS = ["numpy", "array_api_strict", "torch", "cupy"]
EXTRAS = {
    "numpy": "test",
    "array_api_strict": "test,strict",
    "torch": "test,torch",
    "cupy": "test,cupy",
}


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
    if backend == "cupy" and (problem := nvidia_driver_problem()):
        session.skip(problem)
    session.install("-e", f".[{EXTRAS[backend]}]")
    session.run(
        "pytest", f"--backend={backend}", *session.posargs,
        env={"ANYXP_BACKEND": backend, "ARRAY_API_STRICT_API_VERSION": "2024.12"},
    )


@nox.session
def distributed(session: nox.Session) -> None:
    """Data-parallel tests under ``mpirun -n 2`` (MPI from the mpich wheel: no system MPI),
    on numpy and torch (gloo), then the launch tests (abort on error, the CLI)."""
    session.install("-e", ".[test,mpi,torch]")
    session.run("mpirun", "-n", "2", "python", "-m", "mpi4py", "-m", "pytest", "tests/mpi", "-q",
                "-p", "no:cacheprovider", *session.posargs)
    session.run("pytest", "tests/mpi", *session.posargs)


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
