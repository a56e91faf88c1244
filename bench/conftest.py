"""pytest-benchmark sessions: ``pytest bench --backend=numpy`` (nox -s "bench(backend='numpy')")."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", default=None, help="numpy | torch | cupy (default: $ANYXP_BACKEND or numpy)")


@pytest.fixture(scope="session")
def backend_name(pytestconfig: pytest.Config) -> str:
    name = pytestconfig.getoption("--backend") or os.environ.get("ANYXP_BACKEND") or "numpy"
    from anyxp.backend import backend_problem

    if backend_problem(name):
        pytest.skip(f"backend {name!r} is not usable here: {backend_problem(name)}")
    return name


@pytest.fixture(scope="session")
def full_mode() -> bool:
    """BENCH_FULL=1: whole epochs; otherwise the quick mode (a quarter epoch on W3/W4)."""
    return os.environ.get("BENCH_FULL", "") == "1"
