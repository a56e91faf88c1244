"""``cupy.cuda.memory`` of the stand-in: the pointer NCCL takes (a host address here)."""

from __future__ import annotations

from typing import Any as _Any


class MemoryPointer:
    """Where an array's first element lies: ``ptr``, inside the allocation ``mem``."""

    def __init__(self, mem: _Any, offset: int) -> None:
        self.mem = mem
        self.ptr = mem.ptr + offset
        self.device_id = mem.device_id

    @property
    def device(self) -> _Any:
        from .device import Device

        return Device(self.device_id)
