"""Everything that runs only when the backend is CuPy (a CUDA GPU) or the transport NCCL.

It lives in one module so that it is imported only when CuPy is asked for, and so that
CI, which has no GPU, can show that every line of it runs: the ``cupy_proxy`` nox session
runs the test suite against a CuPy stand-in (names and signatures checked against the
real CuPy wheel) and measures this file's coverage. The few CuPy-only lines elsewhere
carry the comment ``# cuda-only`` and are measured with it.

The probe answers one question, "can this process train on a GPU?", once per process:
the driver library first (cheap, no CUDA initialisation), then CuPy's import and device
count, then a tiny element-wise kernel (NVRTC), a matrix product (cuBLAS), a reduction
and a device-to-host copy, each of which a driver-only machine can fail.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from typing import Any

import numpy as np

from .distributed import Communicator

INSTALL_HINT = "pip install 'anyxp[cupy]'"


# --------------------------------------------------------------------------- the probe


def driver_problem() -> str | None:
    """Why the NVIDIA driver library cannot be loaded, or None. Initialises nothing."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver: libcuda.so.1 could not be loaded (this machine has no CUDA GPU)"
    return None


def cupy_problem() -> str | None:
    """Why CuPy cannot train here, or None when it can (see the module docstring)."""
    problem = driver_problem()
    if problem is not None:
        return problem
    if importlib.util.find_spec("cupy") is None:
        return f"CuPy is not installed ({INSTALL_HINT})"
    try:
        cupy = importlib.import_module("cupy")
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, a broken install: report, never crash
        return f"CuPy cannot reach a CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return "the NVIDIA driver reports no CUDA device"
    return training_problem(cupy)


# The CUDA libraries a training step needs beside the driver (the bare cupy-cuda12x wheel
# brings neither), and what to say when one is missing.
_LIBRARIES = (
    ("nvrtc", "CuPy cannot compile kernels: NVRTC (libnvrtc.so.12) not found"),
    ("cublas", "CuPy cannot multiply matrices: cuBLAS (libcublas/libcublasLt) not found"),
)


def _explain(step: str, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    for library, message in _LIBRARIES:
        if library in lowered:
            return f"{message} ({text}); {INSTALL_HINT}"
    return f"CuPy cannot {step} on the GPU ({text}); {INSTALL_HINT}"


def training_problem(cupy: Any) -> str | None:
    """Run what one training step needs on device 0: an element-wise kernel, a matmul, a
    reduction and a copy to the host; None when all four work and give the right numbers."""
    step = "select device 0"
    try:
        with cupy.cuda.Device(0):
            step = "allocate memory"
            a = cupy.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
            step = "compile and run an element-wise kernel"
            b = a * 2.0 + 1.0
            step = "multiply matrices"
            c = cupy.matmul(b, b.T)
            step = "reduce an array"
            total = cupy.sum(c, axis=0)
            step = "copy results to the host"
            host = total.get()
    except Exception as exc:
        return _explain(step, exc)
    expected = np.array([[1, 3, 5], [7, 9, 11]], dtype=np.float32)
    if not np.allclose(host, (expected @ expected.T).sum(axis=0)):
        return f"CuPy computed a wrong result on device 0 ({host}); the GPU or its libraries are broken"
    return None


# --------------------------------------------------------------------------- devices


def device(cupy: Any, index: int | None) -> Any:
    """CuPy's device ``index``; None means this process's GPU: the node-local rank modulo
    the device count (0 outside data-parallel training; see `distributed.local_rank`)."""
    from .distributed import local_rank

    count = int(cupy.cuda.runtime.getDeviceCount())
    if index is None:
        index = local_rank() % count
    if not 0 <= index < count:
        raise ValueError(f"CUDA device {index} does not exist here ({count} device(s))")
    return cupy.cuda.Device(index)


def to_host(x: Any) -> np.ndarray:
    """A host copy of a CuPy array: ``.get()`` is CuPy's one way to the host."""
    return x.get()


def synchronize(cuda_device: Any) -> None:
    cuda_device.synchronize()


def upload(host: np.ndarray, dtype: Any, cuda_device: Any) -> Any:
    """A streamed batch to the GPU: staged in pinned host memory and copied on a copy
    stream of its own, so that the copy overlaps the step running on the compute stream.
    Called by the reader thread, which waits for its copy (the training step never does)."""
    import cupy

    with cuda_device:
        stream = cupy.cuda.Stream(non_blocking=True)
        pinned = cupy.cuda.alloc_pinned_memory(host.nbytes)
        staging = np.frombuffer(pinned, dtype=host.dtype, count=host.size).reshape(host.shape)
        staging[...] = host
        out = cupy.empty(host.shape, dtype=dtype)
        out.set(staging, stream=stream)
        stream.synchronize()  # the pinned buffer is reused once the copy is done
        return out


# --------------------------------------------------------------------------- NCCL


def nccl_problem() -> str | None:
    """Why NCCL cannot run here, or None (CuPy imports without libnccl, then reports
    ``nccl.available == False``; ``get_unique_id`` would raise on rank 0 only)."""
    try:
        from cupy.cuda import nccl
    except Exception as exc:
        return f"cupy.cuda.nccl cannot be imported ({type(exc).__name__}: {exc})"
    if not getattr(nccl, "available", False):
        return "NCCL is not available to CuPy (pip install 'anyxp[cupy-mpi]' brings nvidia-nccl-cu12)"
    return None


class NCCLCommunicator(Communicator):
    """NCCL through CuPy; the unique id travels over MPI; collectives on the current stream."""

    def __init__(self, mpi: Any, backend: Any) -> None:
        from cupy.cuda import nccl

        self.nccl, self.mpi, self.backend = nccl, mpi, backend
        self.cupy = backend.library
        self.rank, self.size = mpi.rank, mpi.size
        uid = nccl.get_unique_id() if mpi.rank == 0 else None
        uid = mpi.comm.bcast(uid, root=0)
        with backend.activate():
            self.comm = nccl.NcclCommunicator(mpi.size, uid, mpi.rank)
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allreduce_sum_(self, buffer: Any) -> None:
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._types[str(buffer.dtype)],
                            self.nccl.NCCL_SUM, stream)

    def broadcast_(self, buffer: Any, root: int = 0) -> None:
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(buffer.data.ptr, buffer.size, self._types[str(buffer.dtype)], root, stream)

    def allreduce_floats(self, values: list[float]) -> list[float]:
        return self.mpi.allreduce_floats(values)
