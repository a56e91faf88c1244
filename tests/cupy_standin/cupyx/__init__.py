"""``cupyx`` of the stand-in: sync detection (``allow_synchronize``, deprecated in CuPy
but still there), with CuPy's warning and exception."""

from __future__ import annotations

import contextlib as _contextlib
import warnings as _warnings
from collections.abc import Iterator as _Iterator

from cupy import _standin as _standin


class DeviceSynchronized(RuntimeError):
    """Raised when device synchronization is detected while disallowed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "Device synchronization was detected while disallowed.")


@_contextlib.contextmanager
def allow_synchronize(allow: bool) -> _Iterator[None]:
    """Allow or disallow device synchronization in the current thread (get(), float(), ...)."""
    _warnings.warn("cupyx.allow_synchronize will be removed in future releases as it "
                  "is not possible to reliably detect synchronizations.", stacklevel=3)
    old = _standin.sync_allowed()
    _standin.set_sync_allowed(allow)
    try:
        yield
    finally:
        _standin.set_sync_allowed(old)
