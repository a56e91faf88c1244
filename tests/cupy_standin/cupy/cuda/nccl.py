"""``cupy.cuda.nccl`` of the stand-in. As in CuPy, it imports whether or not NCCL is
there, and says which in ``available``; without it the module holds nothing else.
``CUPY_STANDIN_NCCL=0`` (or ``cupy._standin.without_nccl()``) makes it missing."""

from __future__ import annotations

import os as _os

available = _os.environ.get("CUPY_STANDIN_NCCL", "1") != "0"

if available:
    from ._nccl import *  # noqa: F403
