"""NCCL emulated over MPI (mpi4py's ``COMM_WORLD``), for the data-parallel tests under
``mpirun -n 2`` on the stand-in: the collectives take device pointers, as NCCL's do, and
reach the (host) buffers behind them through ctypes. One process per GPU, as NCCL
demands: two ranks on one device fail with NCCL's "Duplicate GPU detected"."""

from __future__ import annotations

import ctypes
import hashlib
import os
import socket

import numpy as np

from .. import _standin

__all__ = ["NCCL_CHAR", "NCCL_DOUBLE", "NCCL_FLOAT", "NCCL_FLOAT16", "NCCL_FLOAT32", "NCCL_FLOAT64", "NCCL_HALF",
           "NCCL_INT", "NCCL_INT8", "NCCL_INT32", "NCCL_INT64", "NCCL_MAX", "NCCL_MIN", "NCCL_PROD", "NCCL_SUM",
           "NCCL_UINT8", "NCCL_UINT32", "NCCL_UINT64", "NcclCommunicator", "NcclError", "get_unique_id"]

# nccl.h's values
NCCL_INT8 = NCCL_CHAR = 0
NCCL_UINT8 = 1
NCCL_INT32 = NCCL_INT = 2
NCCL_UINT32 = 3
NCCL_INT64 = 4
NCCL_UINT64 = 5
NCCL_FLOAT16 = NCCL_HALF = 6
NCCL_FLOAT32 = NCCL_FLOAT = 7
NCCL_FLOAT64 = NCCL_DOUBLE = 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3

_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_UINT32: np.uint32,
           NCCL_INT64: np.int64, NCCL_UINT64: np.uint64, NCCL_FLOAT16: np.float16,
           NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}
_ERRORS = {4: "NCCL_ERROR_INVALID_ARGUMENT: invalid argument", 5: "NCCL_ERROR_INVALID_USAGE: invalid usage"}


class NcclError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(_ERRORS.get(status, f"NCCL error {status}"))


def _error(status: int, detail: str) -> NcclError:
    error = NcclError(status)
    error.add_note(detail)  # what NCCL's log (NCCL_DEBUG=WARN) would say
    return error


def get_unique_id() -> bytes:
    return os.urandom(128)  # ncclUniqueId: 128 bytes (a tuple of ints before CuPy 14)


def _buffer(ptr: int, count: int, datatype: int) -> np.ndarray:
    """The ``count`` elements at device pointer ``ptr`` (a host address in the stand-in)."""
    if not isinstance(ptr, int) or ptr == 0:
        raise TypeError(f"a device pointer (int) is needed, got {ptr!r}")
    if datatype not in _DTYPES:
        raise _error(4, f"datatype {datatype}")
    dtype = np.dtype(_DTYPES[datatype])
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(ptr), dtype=dtype, count=count)


class NcclCommunicator:
    """The ranks that passed the same unique id; each on its current device."""

    def __init__(self, ndev: int, commId: bytes, rank: int) -> None:
        from mpi4py import MPI

        if not isinstance(commId, bytes) or len(commId) != 128:
            raise TypeError("commId must be the 128 bytes from get_unique_id()")
        self._MPI = MPI
        color = int.from_bytes(hashlib.sha256(commId).digest()[:4], "little") & 0x7FFFFFFF
        self._comm = MPI.COMM_WORLD.Split(color, rank)  # collective, like ncclCommInitRank
        if self._comm.Get_size() != ndev or self._comm.Get_rank() != rank:
            raise _error(5, f"{self._comm.Get_size()} ranks joined with ndev={ndev}")
        self._device = _standin.current_device()
        where = self._comm.allgather((socket.gethostname(), self._device))
        for other, place in enumerate(where):
            if other != rank and place == where[rank]:
                raise _error(5, f"Duplicate GPU detected : rank {rank} and rank {other} both on CUDA device "
                                f"{self._device}")

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int) -> None:
        MPI = self._MPI
        mpi_op = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN}[op]
        recv = _buffer(recvbuf, count, datatype)
        send = MPI.IN_PLACE if sendbuf == recvbuf else _buffer(sendbuf, count, datatype)
        self._comm.Allreduce(send, recv, op=mpi_op)

    def bcast(self, buff: int, count: int, datatype: int, root: int, stream: int) -> None:
        self._comm.Bcast(_buffer(buff, count, datatype), root=root)

    def rank_id(self) -> int:
        return self._comm.Get_rank()

    def size(self) -> int:
        return self._comm.Get_size()

    def device_id(self) -> int:
        return self._device

    def destroy(self) -> None:
        self._comm.Free()
