"""``cupy.linalg`` of the stand-in: only what array-api-compat imports."""

from __future__ import annotations

from typing import Any as _Any

import numpy as _np

from ._core import _run


def lstsq(a: _Any, b: _Any, rcond: _Any = None) -> _Any:
    return _run(_np.linalg.lstsq, a, b, rcond=rcond)
