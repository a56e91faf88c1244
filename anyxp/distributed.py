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

import socket
from typing import Any

import numpy as np

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
        self._bound: dict[str, Communicator] = {}

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
                self._bound[key] = NCCLCommunicator(self, backend)
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


class NCCLCommunicator(Communicator):
    """NCCL through CuPy; the unique id travels over MPI; collectives on the current stream."""

    def __init__(self, mpi: MPICommunicator, backend: Backend) -> None:
        from cupy.cuda import nccl

        self.nccl, self.mpi, self.backend = nccl, mpi, backend
        self.rank, self.size = mpi.rank, mpi.size
        uid = nccl.get_unique_id() if mpi.rank == 0 else None
        uid = mpi.comm.bcast(uid, root=0)
        with backend.activate():
            self.comm = nccl.NcclCommunicator(mpi.size, uid, mpi.rank)

    def _dtype(self, buffer: Any) -> int:
        return {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64}[str(buffer.dtype)]

    def allreduce_sum_(self, buffer: Any) -> None:
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._dtype(buffer),
                            self.nccl.NCCL_SUM, stream)

    def broadcast_(self, buffer: Any, root: int = 0) -> None:
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        self.comm.bcast(buffer.data.ptr, buffer.size, self._dtype(buffer), root, stream)

    def allreduce_floats(self, values: list[float]) -> list[float]:
        return self.mpi.allreduce_floats(values)


def init(comm: Any = None) -> MPICommunicator:
    """The MPI world (or ``comm``, an mpi4py communicator) for ``fit(..., comm=...)``.

    The transport for the network's arrays is picked when training starts.
    """
    return MPICommunicator(comm)


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's contiguous part of the global batch [lo, hi): sizes differ by <= 1."""
    n = hi - lo
    return lo + n * rank // size, lo + n * (rank + 1) // size
