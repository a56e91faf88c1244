"""All-reduce cost against compute, data-parallel over MPI (NumPy backend, float32).

    mpirun -n 2 python -m mpi4py -m bench.distributed [--quick]

Per workload (W3, W4) it measures, in the same run: one all-reduce of the flat gradient
buffer, one local training step (forward, backward, optimizer) on the per-rank shard of
the global batch, the data-parallel training rate, and the single-process rate (rank 0
alone with all the machine's cores, the other ranks asleep), and prints the scaling
efficiency ``rate(n processes) / (n * rate(1 process))``. In the parallel runs each rank
gets cores / n threads (BLAS and anyxp's own), as one would set them in production.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import anyxp as ax
from anyxp import distributed
from bench import workloads


def _network(w: workloads.Workload) -> ax.Network:
    layers = [ax.Dense(u, w.hidden) for u in w.sizes[1:-1]] + [ax.Dense(w.sizes[-1], "softmax")]
    return ax.Network(layers, input_size=w.sizes[0], optimizer=ax.Adam(lr=w.lr), backend="numpy", seed=0,
                      metrics=[]).build()


def _sleep_until_all_arrive(mpi: object) -> None:
    """A barrier that sleeps instead of spinning (MPICH busy-waits, stealing a core)."""
    request = mpi.Ibarrier()
    while not request.Test():
        time.sleep(0.005)


def measure(w: workloads.Workload, comm: distributed.MPICommunicator, samples: int) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    mpi = comm.comm
    cores = os.cpu_count() or 1
    per_rank = max(1, cores // comm.size)
    os.environ["ANYXP_NUM_THREADS"] = str(per_rank)
    limits = threadpool_limits(per_rank)
    x, y, _, _ = workloads.load(w)
    x, y = x[:samples], y[:samples]
    net = _network(w)  # built under the per-rank thread limit
    grad = net._grad
    for _ in range(3):
        comm.allreduce_sum_(grad)
    mpi.Barrier()
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        comm.allreduce_sum_(grad)
    allreduce_ms = 1e3 * (time.perf_counter() - start) / reps

    local = w.batch_size // comm.size
    xb = x[:local]
    tb = np.eye(w.sizes[-1], dtype=np.float32)[y[:local]]
    net._forward_backward(xb, tb, None)
    start = time.perf_counter()
    for _ in range(5):
        net._forward_backward(xb, tb, None)
        net.optimizer.step()
    step_ms = 1e3 * (time.perf_counter() - start) / 5

    net.fit(x[: 4 * w.batch_size], y[: 4 * w.batch_size], batch_size=w.batch_size, verbose=0, comm=comm)
    mpi.Barrier()
    start = time.perf_counter()
    net.fit(x, y, batch_size=w.batch_size, verbose=0, comm=comm)
    parallel_rate = samples / (time.perf_counter() - start)

    single_rate = _alone(w, x, y, mpi, comm.rank)  # rank 0, cores / n threads
    limits.restore_original_limits()
    os.environ.pop("ANYXP_NUM_THREADS")
    all_cores_rate = _alone(w, x, y, mpi, comm.rank)  # rank 0 with every core
    return {
        "gradient_MB": grad.size * 4 / 1e6, "allreduce_ms": allreduce_ms, "local_step_ms": step_ms,
        "allreduce_share": allreduce_ms / (allreduce_ms + step_ms),
        "rate_parallel": parallel_rate, "rate_single": single_rate, "rate_single_all_cores": all_cores_rate,
        "efficiency": parallel_rate / (comm.size * single_rate),
    }


def _alone(w: workloads.Workload, x: np.ndarray, y: np.ndarray, mpi: object, rank: int) -> float:
    """Training rate of rank 0 on its own while the other ranks sleep."""
    rate = 0.0
    if rank == 0:
        alone = _network(w)
        alone.fit(x[: 4 * w.batch_size], y[: 4 * w.batch_size], batch_size=w.batch_size, verbose=0)
        start = time.perf_counter()
        alone.fit(x, y, batch_size=w.batch_size, verbose=0)
        rate = x.shape[0] / (time.perf_counter() - start)
    _sleep_until_all_arrive(mpi)
    return mpi.bcast(rate, root=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workloads", default="W3,W4")
    args = parser.parse_args(argv)
    comm = distributed.init()
    rows = {}
    for name in args.workloads.split(","):
        w = workloads.WORKLOADS[name]
        samples = int(w.n_train * (w.quick_epochs if args.quick else 1.0))
        rows[name] = measure(w, comm, samples)
    if comm.is_main:
        print(f"{comm.size} processes, NumPy backend, float32\n")
        per = max(1, (os.cpu_count() or 1) // comm.size)
        print(f"| workload | gradient MB | all-reduce ms/step | local step ms | all-reduce share "
              f"| samples/s, 1 process x {per} core(s) | samples/s, {comm.size} processes x {per} "
              f"| scaling efficiency | samples/s, 1 process, all cores |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(f"| {name} | {r['gradient_MB']:.1f} | {r['allreduce_ms']:.2f} | {r['local_step_ms']:.2f} | "
                  f"{100 * r['allreduce_share']:.0f}% | {r['rate_single']:,.0f} | {r['rate_parallel']:,.0f} | "
                  f"{100 * r['efficiency']:.0f}% | {r['rate_single_all_cores']:,.0f} |")
        print("\n" + json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
