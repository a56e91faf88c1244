"""``cupy.cuda.stream`` of the stand-in. It runs every operation at once, so a stream
only carries a handle (``ptr``; 0 for the null stream) and the current-stream context."""

from __future__ import annotations

import itertools as _itertools
import threading as _threading
from typing import Any as _Any

from .. import _standin

_handles = _itertools.count(0x7F0000001000, 0x100)  # fake, distinct, non-zero
_current = _threading.local()


class Stream:
    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: _Any = None) -> None:
        self.ptr = 0 if null else next(_handles)
        self.device_id = _standin.current_device()
        self._previous: list[Stream] = []

    def __repr__(self) -> str:
        return f"<Stream {self.ptr:#x} (device {self.device_id})>"

    def __enter__(self) -> Stream:
        self._previous.append(get_current_stream())
        self.use()
        return self

    def __exit__(self, *args: _Any) -> None:
        self._previous.pop().use()

    def use(self) -> Stream:
        _current.__dict__.setdefault("streams", {})[self.device_id] = self
        return self

    def synchronize(self) -> None:
        _standin.synchronizing("Stream.synchronize")


Stream.null = Stream(null=True)


def get_current_stream(device_id: int = -1) -> Stream:
    """The current stream of ``device_id`` (the current device when -1); null by default."""
    device_id = _standin.current_device() if device_id < 0 else device_id
    return _current.__dict__.get("streams", {}).get(device_id, Stream.null)
