"""``cupy.cuda.runtime`` of the stand-in: the device count and the current device."""

from __future__ import annotations

from .. import _standin

_ERRORS = {100: "cudaErrorNoDevice: no CUDA-capable device is detected",
           101: "cudaErrorInvalidDevice: invalid device ordinal"}


class CUDARuntimeError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(_ERRORS.get(status, f"cudaError {status}"))


def getDeviceCount() -> int:
    count = _standin.device_count()
    if count < 1:
        raise CUDARuntimeError(100)
    return count


def getDevice() -> int:
    return _standin.current_device()


def setDevice(device: int) -> None:
    _standin.set_current_device(int(device))


def deviceSynchronize() -> None:
    _standin.synchronizing("cupy.cuda.runtime.deviceSynchronize")
