"""Data-parallel training over MPI (NumPy), NCCL (CuPy) and torch.distributed (torch).

Launch one process per CPU socket or GPU with an engine you already run::

    mpirun -n 4 python -m mpi4py train.py        # python -m mpi4py: an error on one rank
                                                   # aborts the whole job instead of hanging

and in ``train.py``::

    import anyxp as ax
    from anyxp import distributed

    comm = distributed.init()                      # MPI.COMM_WORLD (the ``mpi`` extra)
    net = ax.Network([...], backend="auto", seed=0)  # the same seed on every rank
    net.fit(x, y, batch_size=256, comm=comm)       # 256 = the global batch
    if comm.is_main:
        net.save("model.npz")

Every rank starts from rank 0's weights; each epoch's seeded permutation is cut into
global batches and each global batch into disjoint per-rank shards; after each backward
pass one all-reduce sums the flat gradient buffer (each rank's share weighted by its
shard size), so the update equals the single-process one for the same global batch.
Metrics are reduced once per epoch; only rank 0 prints and writes logs.

The transport follows the network's backend: MPI all-reduce on NumPy buffers; NCCL on
CuPy arrays (the NCCL unique id is broadcast over MPI, the all-reduce runs on the
current stream); torch.distributed for torch tensors (gloo on CPU, NCCL on CUDA; the
rendezvous address is broadcast over MPI).
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .backend import Backend


class Communicator:
    """What training needs from a process group: rank, size, and three collectives on the
    backend's arrays (in place)."""

    rank = 0
    size = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_sum_(self, buffer: Any) -> None:
        """Sum ``buffer`` over all ranks, in place."""
        raise NotImplementedError

    def broadcast_(self, buffer: Any, root: int = 0) -> None:
        """Overwrite ``buffer`` with rank ``root``'s, in place."""
        raise NotImplementedError

    def allreduce_floats(self, values: list[float]) -> list[float]:
        """Sum a few host floats over all ranks (epoch metrics)."""
        raise NotImplementedError

    def bind(self, backend: Backend) -> Communicator:
        """The communicator to use for arrays of ``backend`` (may be another object)."""
        return self

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (a few small host objects), in rank order."""
        raise NotImplementedError

    def transport_problem(self, backend: Backend) -> str | None:
        """Why this process cannot exchange ``backend``'s arrays with the others, or None."""
        return None

    def agree(self, facts: dict[str, Any]) -> None:
        """Check, before any transport is set up, that every rank holds the same ``facts``:
        one allgather, then every rank raises the same `DistributedMismatchError` (naming
        what differs and on which ranks) or none, so no rank is left waiting."""
        problem = disagreement(self.allgather(facts))
        if problem is not None:
            raise DistributedMismatchError(f"distributed fit: {problem}")


class MPICommunicator(Communicator):
    """MPI through mpi4py, on NumPy buffers (host memory)."""

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError("distributed training needs mpi4py: pip install 'anyxp[mpi]'") from None
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this host
        self.local_rank = node.Get_rank()
        node.Free()
        global _local_rank
        _local_rank = self.local_rank
        self._bound: dict[str, Communicator] = {}

    def allgather(self, value: Any) -> list[Any]:
        return self.comm.allgather(value)

    def transport_problem(self, backend: Backend) -> str | None:
        return transport_problem(backend)

    def allreduce_sum_(self, buffer: Any) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, _host_view(buffer), op=self.MPI.SUM)

    def broadcast_(self, buffer: Any, root: int = 0) -> None:
        self.comm.Bcast(_host_view(buffer), root=root)

    def allreduce_floats(self, values: list[float]) -> list[float]:
        array = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return [float(v) for v in array]

    def bind(self, backend: Backend) -> Communicator:
        key = f"{backend.name}:{backend.device}"
        if key not in self._bound:
            if backend.name == "numpy":
                self._bound[key] = self
            elif backend.name == "torch":
                self._bound[key] = TorchCommunicator(self, backend)
            elif backend.name == "cupy":
                from .cuda import NCCLCommunicator

                self._bound[key] = NCCLCommunicator(self, backend)  # cuda-only
            else:
                raise ValueError(
                    f"distributed training runs on numpy (MPI), torch (torch.distributed) and cupy "
                    f"(NCCL); the {backend.name!r} backend has no transport"
                )
        return self._bound[key]


def _host_view(buffer: Any) -> np.ndarray:
    if not isinstance(buffer, np.ndarray):
        raise TypeError(f"MPI transport needs NumPy buffers, got {type(buffer).__name__}")
    return buffer


class TorchCommunicator(Communicator):
    """torch.distributed: gloo for CPU tensors, NCCL for CUDA tensors; rendezvous over MPI."""

    def __init__(self, mpi: MPICommunicator, backend: Backend) -> None:
        import torch.distributed as dist

        self.dist, self.mpi = dist, mpi
        self.rank, self.size = mpi.rank, mpi.size
        if not dist.is_initialized():
            address = None
            one_host = len(set(mpi.comm.allgather(socket.gethostname()))) == 1  # collective: every rank
            if mpi.rank == 0:
                with socket.socket() as s:  # a free port on rank 0's host
                    s.bind(("", 0))
                    port = s.getsockname()[1]
                host = "127.0.0.1" if one_host else socket.gethostbyname(socket.gethostname())
                address = f"tcp://{host}:{port}"
            address = mpi.comm.bcast(address, root=0)
            engine = "nccl" if backend.is_gpu else "gloo"
            dist.init_process_group(engine, init_method=address, rank=mpi.rank, world_size=mpi.size)

    def allreduce_sum_(self, buffer: Any) -> None:
        self.dist.all_reduce(buffer, op=self.dist.ReduceOp.SUM)

    def broadcast_(self, buffer: Any, root: int = 0) -> None:
        self.dist.broadcast(buffer, src=root)

    def allreduce_floats(self, values: list[float]) -> list[float]:
        return self.mpi.allreduce_floats(values)


def init(comm: Any = None) -> MPICommunicator:
    """The MPI world (or ``comm``, an mpi4py communicator) for ``fit(..., comm=...)``.

    It also records this process's node-local rank, so that a GPU network created
    afterwards without an explicit device takes GPU ``local_rank % device_count``.
    The transport for the network's arrays is picked when training starts.
    """
    return MPICommunicator(comm)


# --------------------------------------------------------------------------- local rank

# Launchers' variables for the node-local rank (MPICH/Hydra, Open MPI, MVAPICH, Slurm, torchrun).
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK",
                        "SLURM_LOCALID", "LOCAL_RANK")
_local_rank: int | None = None  # set by init() from an MPI shared-memory split


def local_rank() -> int:
    """This process's rank among the processes of its host: from `init` when it ran, else
    from the launcher's environment, else 0 (a single process)."""
    if _local_rank is not None:
        return _local_rank
    for name in LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


# --------------------------------------------------------------------------- agreement


class DistributedMismatchError(ValueError):
    """The ranks of a data-parallel fit disagree on something they must share."""


def transport_problem(backend: Backend) -> str | None:
    """Why MPI-launched ranks cannot exchange ``backend``'s arrays here, or None."""
    if backend.name == "numpy":
        return None
    if backend.name == "cupy":
        from . import cuda

        return cuda.nccl_problem()  # cuda-only
    if backend.name == "torch":
        import torch.distributed as dist

        if not dist.is_available():
            return "this torch build has no torch.distributed"
        engine = "nccl" if backend.is_gpu else "gloo"
        usable = dist.is_nccl_available() if engine == "nccl" else dist.is_gloo_available()
        return None if usable else f"torch.distributed has no {engine} engine in this build"
    return f"the {backend.name!r} backend has no transport (use numpy, torch or cupy)"


def fit_facts(
    net: Any, comm: Communicator, samples: int, val_samples: int, batch_size: int, epochs: int, shuffle: bool
) -> dict[str, Any]:
    """What every rank of a data-parallel fit must share, and where its device is."""
    backend = net.backend
    state = repr(net.rng.bit_generator.state).encode()
    return {
        "backend": backend.name,
        "device kind": "gpu" if backend.is_gpu else "cpu",
        "dtype": net.dtype_name,
        "parameter count": net.num_parameters,
        "seed (generator state)": hashlib.sha256(state).hexdigest()[:16],
        "sample count": samples,
        "validation sample count": val_samples,
        "batch_size": batch_size,
        "epochs": epochs,
        "shuffle": bool(shuffle),
        "transport": comm.transport_problem(backend) or "available",
        "_gpu": (socket.gethostname(), str(backend.device)) if backend.is_gpu else None,
    }


_HINTS = {
    "backend": "pass the same backend= on every rank (an 'auto' that fell back to NumPy on some rank "
               "means CuPy is unusable there: see anyxp.available_backends())",
    "seed (generator state)": "create the Network with the same seed= on every rank",
    "sample count": "pass the same (x, y) on every rank",
}


def disagreement(facts: list[dict[str, Any]]) -> str | None:
    """What the ranks' facts (one dict per rank) disagree on, or None; the same text on
    every rank, since every rank computes it from the same gathered list."""
    problems = []
    for key in facts[0]:
        if key.startswith("_"):
            continue
        values = [rank_facts[key] for rank_facts in facts]
        if len(set(map(repr, values))) > 1:
            by_rank = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            hint = f" - {_HINTS[key]}" if key in _HINTS else ""
            problems.append(f"{key} differs ({by_rank}){hint}")
        elif key == "transport" and values[0] != "available":
            problems.append(f"no rank can reach the others: {values[0]}")
    gpus: dict[Any, list[int]] = {}
    for rank, rank_facts in enumerate(facts):
        if rank_facts["_gpu"] is not None:
            gpus.setdefault(rank_facts["_gpu"], []).append(rank)
    for (host, device), ranks in gpus.items():
        if len(ranks) > 1:
            problems.append(
                f"ranks {ranks} share GPU {device} on host {host} (NCCL needs one GPU per rank): create the "
                "Network after distributed.init() without device=, or give each rank its own device"
            )
    if not problems:
        return None
    return "the ranks disagree: " + "; ".join(problems)


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's contiguous part of the global batch [lo, hi): sizes differ by <= 1."""
    n = hi - lo
    return lo + n * rank // size, lo + n * (rank + 1) // size
