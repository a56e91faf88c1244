"""``cupy.random`` of the stand-in: ``default_rng(seed).random(...)``.

Like cuRAND's states, a generator's state lives on the device that was current when it
was made, and drawing while another device is current raises. The numbers come from
NumPy's PCG64 (real CuPy's XORWOW draws others: compare no values across the two).
"""

from __future__ import annotations

from typing import Any as _Any

import numpy as _np

from .._core import _check_device
from .._core import ndarray as _ndarray


class XORWOW:
    def __init__(self, seed: _Any = None, *, size: int = -1) -> None:
        self._numpy = _np.random.Generator(_np.random.PCG64(seed))
        self._state = _ndarray._wrap(_np.zeros(1, dtype=_np.uint64))  # on the current device


class Generator:
    def __init__(self, bit_generator: XORWOW) -> None:
        self._bit_generator = bit_generator

    def random(self, size: _Any = None, dtype: _Any = _np.float64, out: _Any = None) -> _ndarray:
        _check_device(self._bit_generator._state)
        values = self._bit_generator._numpy.random(size, dtype=dtype)
        if out is None:
            return _ndarray._wrap(_np.asarray(values))
        _check_device(out)
        out._a[...] = values
        return out


def default_rng(seed: _Any = None) -> Generator:
    return Generator(XORWOW(seed))

