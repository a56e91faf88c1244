"""``cupy.cuda.device`` of the stand-in: the per-thread current device."""

from __future__ import annotations

import threading as _threading
from typing import Any as _Any

from .. import _standin


class Device:
    """A CUDA device; ``with Device(i):`` makes it current for the calling thread
    (re-entrant: each exit restores the device that was current at the entry)."""

    def __init__(self, device: _Any = None) -> None:
        self.id = _standin.current_device() if device is None else int(device)
        self._entered = _threading.local()

    def __int__(self) -> int:
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def __enter__(self) -> Device:
        previous = _standin.current_device()
        _standin.set_current_device(self.id)  # raises for a device that does not exist
        self._entered.__dict__.setdefault("stack", []).append(previous)
        return self

    def __exit__(self, *args: _Any) -> None:
        _standin.set_current_device(self._entered.stack.pop())

    def use(self) -> None:
        _standin.set_current_device(self.id)

    def synchronize(self) -> None:
        _standin.synchronizing(f"Device({self.id}).synchronize")

    @property
    def compute_capability(self) -> str:
        return "90"

    @property
    def mem_info(self) -> tuple[int, int]:
        return 80 << 30, 80 << 30
