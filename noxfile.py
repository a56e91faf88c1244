"""Sessions per backend: ``nox -s tests`` runs the suite on every backend.

- ``tests(backend='numpy' | 'array_api_strict' | 'torch' | 'cupy')``: the one pytest
  suite, on that backend (array_api_strict on its non-default device ``device1``).
  The cupy session skips, before installing CuPy, where no NVIDIA driver is present.
- ``lint``: ruff.
Arguments after ``--`` reach pytest: ``nox -s tests -- -k gradients``.
"""

from __future__ import annotations

import ctypes

import nox

nox.options.default_venv_backend = "virtualenv"  # plain pip: honours pip's find-links (torch CPU wheel)
nox.options.sessions = ["tests", "lint"]

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
def lint(session: nox.Session) -> None:
    """ruff over the package, tests, benchmarks and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "anyxp", "tests", "bench", "noxfile.py")
