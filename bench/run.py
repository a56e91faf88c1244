"""Interleaved benchmark: anyxp on each backend and its peers, side by side, in one run.

    python -m bench.run --quick                 # a few minutes on a 2-core machine
    python -m bench.run                         # full epochs, more repeats
    python -m bench.run --workloads W1,W3 --repeats 5

Per workload it trains every implementation for a warm-up round, then ``repeats``
timed rounds, interleaved (A B C A B C ...), so that machine noise hits all alike.
It writes ``bench/results/latest.json``; ``python -m bench.report`` turns that into the
markdown table and the PNG chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import counting, workloads
from bench.workloads import Workload

RESULTS = Path(__file__).parent / "results"


@dataclass
class Cell:
    """One implementation on one workload."""

    impl: str  # "anyxp" or a peer name
    library: str  # numpy / torch / cupy / sklearn
    dtype: str
    train: Callable[[int, int], None]  # (n, passes): train on the first n samples, passes times
    accuracy: Callable[[], float]
    sync: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.impl} [{self.library} {self.dtype}]"


def anyxp_cell(w: Workload, data: tuple, backend: str, dtype: str, seed: int) -> Cell:
    import anyxp as ax

    xtr, ytr, xte, yte = data
    act = "relu" if w.hidden == "relu" else "sigmoid"
    layers = [ax.Dense(units, act) for units in w.sizes[1:-1]] + [ax.Dense(w.sizes[-1], "softmax")]
    opt = ax.SGD(lr=w.lr) if w.optimizer == "sgd" else ax.Adam(lr=w.lr)
    net = ax.Network(layers, input_size=w.sizes[0], optimizer=opt, backend=backend, dtype=dtype, seed=seed,
                     metrics=["accuracy"])
    be = net.backend
    x_dev = be.asarray(xtr, dtype=net.dtype)
    y_dev = be.asarray(np.eye(w.sizes[-1], dtype=np.float32)[ytr], dtype=net.dtype)

    def train(n: int, passes: int = 1) -> None:
        net.fit(x_dev[:n, ...], y_dev[:n, ...], epochs=passes, batch_size=w.batch_size, verbose=0)

    return Cell("anyxp", backend, dtype, train, lambda: net.evaluate(xte, yte)["accuracy"],
                be.synchronize)


def numpy_peer_cell(w: Workload, data: tuple, dtype: str, seed: int) -> Cell:
    from bench.peers.numpy_mlp import NumpyMLP

    xtr, ytr, xte, yte = data
    dt = np.float32 if dtype == "float32" else np.float64
    model = NumpyMLP(w.sizes, w.hidden, w.optimizer, w.lr, seed, dt)
    x, y1h = xtr.astype(dt, copy=False), np.eye(w.sizes[-1], dtype=dt)[ytr]
    rng = np.random.default_rng(seed)

    def train(n: int, passes: int = 1) -> None:
        for _ in range(passes):
            model.train_epoch(x, y1h, w.batch_size, rng, limit=n)

    return Cell("hand NumPy", "numpy", dtype, train, lambda: float(np.mean(model.predict(xte).argmax(1) == yte)))


def torch_peer_cell(w: Workload, data: tuple, seed: int, fused: bool, device: str = "cpu") -> Cell:
    from bench.peers.torch_mlp import TorchMLP

    xtr, ytr, xte, yte = data
    model = TorchMLP(w.sizes, w.hidden, w.optimizer, w.lr, seed, fused=fused, device=device)
    x, y = model.to_device(xtr, ytr)
    xt, _ = model.to_device(xte, yte)
    rng = np.random.default_rng(seed)

    def train(n: int, passes: int = 1) -> None:
        for _ in range(passes):
            model.train_epoch(x, y, w.batch_size, rng, limit=n)

    name = "PyTorch eager" + (" fused Adam" if fused else "")
    lib = "torch" if device == "cpu" else "torch-cuda"
    return Cell(name, lib, "float32", train, lambda: float(np.mean(model.predict(xt).argmax(1) == yte)),
                model.synchronize)


def sklearn_cell(w: Workload, data: tuple, seed: int) -> Cell:
    from bench.peers.sklearn_mlp import SklearnMLP

    xtr, ytr, xte, yte = data
    model = SklearnMLP(w.sizes, w.hidden, w.optimizer, w.lr, seed)
    rng = np.random.default_rng(seed)

    def train(n: int, passes: int = 1) -> None:
        for _ in range(passes):
            model.train_epoch(xtr, ytr, w.batch_size, rng, limit=n)

    return Cell("scikit-learn MLP", "sklearn", "float64", train,
                lambda: float(np.mean(model.predict(xte).argmax(1) == yte)))


def available(name: str) -> bool:
    from anyxp.backend import backend_problem

    return backend_problem(name) is None


def make_cells(w: Workload, data: tuple, backends: list[str], seed: int, peers: bool) -> list[Cell]:
    cells = []
    for backend in backends:
        if not available(backend):
            continue
        cells.append(anyxp_cell(w, data, backend, "float32", seed))
        if backend == "numpy":
            cells.append(anyxp_cell(w, data, backend, "float64", seed))
    if not peers:
        return cells
    cells.append(numpy_peer_cell(w, data, "float32", seed))
    cells.append(numpy_peer_cell(w, data, "float64", seed))
    if available("torch"):
        cells.append(torch_peer_cell(w, data, seed, fused=False))
        if w.optimizer == "adam":
            cells.append(torch_peer_cell(w, data, seed, fused=True))
        import torch

        if torch.cuda.is_available():
            cells.append(torch_peer_cell(w, data, seed, fused=w.optimizer == "adam", device="cuda"))
    try:
        import sklearn  # noqa: F401

        if w.name in ("W1", "W2", "W3"):  # sklearn's W4 epoch takes minutes on 2 cores
            cells.append(sklearn_cell(w, data, seed))
    except ImportError:
        pass
    return cells


def gemm_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best GFLOP/s of an n x n x n matrix product, per library and dtype."""
    peaks = {}
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        out = np.empty((n, n), dtype=dtype)
        np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
        best = min(_timed(lambda a=a, b=b, out=out: np.matmul(a, b, out=out)) for _ in range(repeats))
        peaks[f"numpy {dtype}"] = 2 * n**3 / best / 1e9
        if available("torch"):
            import torch

            ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            torch.mm(ta, tb, out=tout)
            best = min(_timed(lambda ta=ta, tb=tb, tout=tout: torch.mm(ta, tb, out=tout)) for _ in range(repeats))
            peaks[f"torch {dtype}"] = 2 * n**3 / best / 1e9
    return peaks


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib(workload: str, impl: str, samples: int) -> float | None:
    """Peak resident memory of a fresh process that loads the data and trains once."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the (big) parent
    code = (
        "from bench.run import _memory_probe; "
        f"_memory_probe({workload!r}, {impl!r}, {samples}); "
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=900)
    if out.returncode != 0:
        return None
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def _memory_probe(workload: str, impl: str, samples: int) -> None:
    w = workloads.WORKLOADS[workload]
    data = workloads.load(w)
    make = anyxp_cell if impl == "anyxp" else numpy_peer_cell
    args = (w, data, "numpy", "float32", 0) if impl == "anyxp" else (w, data, "float32", 0)
    make(*args).train(samples)


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "CUPY_TF32": os.environ.get("CUPY_TF32"),
    }
    try:
        from threadpoolctl import threadpool_info

        facts["blas"] = [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for i in threadpool_info() if i.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    if available("torch"):
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def run_workload(w: Workload, *, quick: bool, repeats: int, backends: list[str], seed: int,
                 peers: bool = True, memory: bool = True) -> dict[str, Any]:
    data = workloads.load(w, seed)
    n = data[0].shape[0]
    samples = max(w.batch_size, int(n * (w.quick_epochs if quick else 1.0)))
    # small workloads: several passes per timed round, so each round lasts long enough
    passes = max(1, int(0.3 * 200_000 / max(samples, 1))) if w.name in ("W1", "W2") else 1
    cells = make_cells(w, data, backends, seed, peers)
    for cell in cells:  # warm-up round (first calls, caches, thread pools)
        cell.train(samples)
        cell.sync()
    for _ in range(repeats):
        for cell in cells:
            start = time.perf_counter()
            cell.train(samples, passes)
            cell.sync()
            cell.times.append(time.perf_counter() - start)
    rows = []
    for cell in cells:
        rates = [samples * passes / t for t in cell.times]
        rows.append({
            "impl": cell.impl, "library": cell.library, "dtype": cell.dtype, "label": cell.label,
            "samples_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "gflops": statistics.median(rates) * w.flops_per_sample() / 1e9,
            "accuracy": cell.accuracy(),
        })
    result: dict[str, Any] = {"workload": asdict(w), "samples": samples, "passes": passes,
                              "repeats": repeats, "rows": rows}
    result["ops"] = counting.operation_counts(w)
    if memory and w.name == "W3":
        result["peak_rss_mib"] = {impl: peak_rss_mib(w.name, impl, samples) for impl in ("anyxp", "hand NumPy")}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter epoch on W3/W4, 3 repeats")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backends", default="numpy,torch,cupy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    from anyxp.datasets import fashion_mnist_files

    if "FMNIST" not in names and fashion_mnist_files() is not None and not args.quick:
        names.append("FMNIST")
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "machine": machine_facts(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "workloads": []}
    print(f"machine: {json.dumps(report['machine'])}", flush=True)
    report["gemm_peak_gflops"] = gemm_peak()
    print(f"GEMM peak GFLOP/s: {report['gemm_peak_gflops']}", flush=True)
    for name in names:
        w = workloads.WORKLOADS[name]
        t0 = time.perf_counter()
        result = run_workload(w, quick=args.quick, repeats=repeats, seed=args.seed,
                              backends=[b.strip() for b in args.backends.split(",")], memory=not args.no_memory)
        report["workloads"].append(result)
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        for row in result["rows"]:
            print(f"  {row['label']:40s} {row['samples_per_s']:>12,.0f} samples/s  acc {row['accuracy']:.3f}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
