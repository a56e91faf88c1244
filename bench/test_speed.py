"""Training speed per backend, tracked by pytest-benchmark (storage kept per backend).

The side-by-side comparison with every peer, interleaved in one process, is
``python -m bench.report --run`` (nox -s bench_report); these sessions track each
backend's own numbers over time. Timings are recorded, never asserted.
"""

from __future__ import annotations

import pytest

from bench import run, workloads

WORKLOADS = ["W1", "W2", "W3", "W4"]


def _samples(w: workloads.Workload, n: int, full: bool) -> int:
    return n if full else max(w.batch_size, int(n * w.quick_epochs))


def _bench(benchmark, cell: run.Cell, w: workloads.Workload, samples: int) -> None:
    passes = max(1, 60_000 // samples) if w.name in ("W1", "W2") else 1
    cell.train(samples, 1)  # warm-up
    cell.sync()

    def one_round() -> None:
        cell.train(samples, passes)
        cell.sync()

    benchmark.pedantic(one_round, rounds=3, iterations=1)
    benchmark.extra_info.update({
        "workload": w.name, "implementation": cell.label, "samples_per_round": samples * passes,
        "samples_per_s_median": samples * passes / benchmark.stats.stats.median,
        "accuracy": cell.accuracy(),
    })


@pytest.mark.parametrize("name", WORKLOADS)
def test_anyxp(benchmark, backend_name: str, full_mode: bool, name: str) -> None:
    w = workloads.WORKLOADS[name]
    data = workloads.load(w)
    cell = run.anyxp_cell(w, data, backend_name, "float32", 0)
    _bench(benchmark, cell, w, _samples(w, data[0].shape[0], full_mode))


@pytest.mark.parametrize("name", WORKLOADS)
def test_peer(benchmark, backend_name: str, full_mode: bool, name: str) -> None:
    """The best peer on the same library: hand NumPy, or PyTorch eager (fused Adam)."""
    w = workloads.WORKLOADS[name]
    data = workloads.load(w)
    if backend_name == "numpy":
        cell = run.numpy_peer_cell(w, data, "float32", 0)
    elif backend_name == "torch":
        cell = run.torch_peer_cell(w, data, 0, fused=w.optimizer == "adam")
    else:
        pytest.skip(f"no same-library peer for {backend_name}")
    _bench(benchmark, cell, w, _samples(w, data[0].shape[0], full_mode))
