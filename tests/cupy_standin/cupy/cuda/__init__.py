"""``cupy.cuda`` of the stand-in: devices (the per-thread current device), streams, and
the memory pointer that NCCL takes."""

from __future__ import annotations

from .. import _standin
from . import runtime  # noqa: F401
from .device import Device  # noqa: F401
from .memory import MemoryPointer  # noqa: F401
from .pinned_memory import alloc_pinned_memory  # noqa: F401
from .stream import Stream, get_current_stream  # noqa: F401


def is_available() -> bool:
    return _standin.device_count() > 0
