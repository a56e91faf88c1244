"""State of the CuPy stand-in that real CuPy keeps in the driver: the devices, the
current device of each thread, and what the tests count (host syncs).

Nothing here exists in real CuPy (the module name starts with an underscore, so the
name check skips it). Tests read and reset:

    cupy._standin.syncs        # what synchronised device and host, in order ("get", "__float__", ...)
    cupy._standin.reset()      # forget them
    cupy._standin.without_nccl()  # a context in which cupy.cuda.nccl reports available == False
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from collections.abc import Iterator

IS_STANDIN = True

# Everything that made the host wait for the device, in order (cleared by reset()).
syncs: list[str] = []

_thread = threading.local()


def device_count() -> int:
    """``CUPY_STANDIN_DEVICES`` (default 2): how many GPUs the stand-in pretends to have."""
    return int(os.environ.get("CUPY_STANDIN_DEVICES", "2"))


def current_device() -> int:
    """The calling thread's current device (0 until a ``Device`` is entered or used)."""
    return getattr(_thread, "device", 0)


def set_current_device(device_id: int) -> None:
    from .cuda.runtime import CUDARuntimeError

    if not 0 <= device_id < device_count():
        raise CUDARuntimeError(101)  # cudaErrorInvalidDevice
    _thread.device = device_id


def synchronizing(what: str) -> None:
    """Record a device->host synchronisation; raise if `cupyx.allow_synchronize(False)`."""
    if not sync_allowed():
        from cupyx import DeviceSynchronized

        raise DeviceSynchronized()
    syncs.append(what)


def sync_allowed() -> bool:
    return getattr(_thread, "sync_allowed", True)


def set_sync_allowed(allowed: bool) -> None:
    _thread.sync_allowed = allowed


def reset() -> None:
    syncs.clear()


@contextlib.contextmanager
def without_nccl() -> Iterator[None]:
    """``cupy.cuda.nccl`` as it imports where libnccl is missing: ``available`` only."""
    import cupy.cuda

    bare = types.ModuleType("cupy.cuda.nccl")
    bare.available = False
    saved = sys.modules.get("cupy.cuda.nccl"), getattr(cupy.cuda, "nccl", None)
    sys.modules["cupy.cuda.nccl"] = bare
    cupy.cuda.nccl = bare
    try:
        yield
    finally:
        module, attribute = saved
        if module is None:
            sys.modules.pop("cupy.cuda.nccl", None)
        else:
            sys.modules["cupy.cuda.nccl"] = module
        if attribute is None:
            del cupy.cuda.nccl
        else:
            cupy.cuda.nccl = attribute
