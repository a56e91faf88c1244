"""``cupy.cuda.pinned_memory`` of the stand-in: page-locked host memory is a plain buffer."""

from __future__ import annotations


def alloc_pinned_memory(size: int) -> bytearray:
    """Page-locked host memory in CuPy; a plain buffer here (``np.frombuffer`` reads both)."""
    return bytearray(size)
