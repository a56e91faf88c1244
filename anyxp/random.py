"""Counter-based random bits for dropout masks, in standard Array API integer arithmetic.

There is no generator state: the bits of a mask are a pure function of a 64-bit key and
each element's index, ``bits[i] = mix32(mix32(i ^ k0) ^ k1)`` with ``(k0, k1)`` the two
halves of ``step_key(stream, counter)``. The key is derived on the host (Python integers,
no device work) from a stream (network seed and layer) and a counter (the optimizer's
update count), so nothing is ever reseeded, an epoch replays exactly from saved training
state, and every backend (NumPy, CuPy, PyTorch, array-api-strict) gives the same bits.

Why this construction: on a GPU each array operation is a kernel launch, so the cost of
a mask is its operation count. Philox-4x32-10 in int64 arithmetic (its 32x32->64-bit
products split into 16-bit halves) would take over a hundred operations per mask. Two
rounds of ``lowbias32`` (C. Wellons' hash-prospector: ``x ^= x >> 16; x *= 0x7feb352d;
x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16``, a bijection of 32-bit integers and one of
the least biased two-multiply hashes that search found), each keyed by an xor, take 22
operations and pass the uniformity and independence checks of tests/test_random.py. The
host-side key derivation is SplitMix64 (Steele, Lea and Flood, as in Java's
SplittableRandom), so the keys of neighbouring counters or layers are unrelated.

Integers are held in int64, whose arithmetic every backend supports. Every value stays
exact: 32-bit values times a multiplier reduced to ``|m| < 2**31`` (``0x846ca68b - 2**32``
is congruent to it modulo ``2**32``) stay inside int64, ``& 0xFFFFFFFF`` takes the low 32
bits of the two's-complement product, and shifts only ever see non-negative values.
"""

from __future__ import annotations

from typing import Any

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF
MAX_ELEMENTS = 1 << 32  # element indices are 32-bit

# lowbias32's multipliers, each reduced to |m| < 2**31 modulo 2**32 (products of 32-bit values fit in int64)
_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B - (1 << 32)


def _splitmix64(z: int) -> int:
    """One SplitMix64 output for the state ``z`` (host integers)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def derive_key(*words: int) -> int:
    """A 64-bit key from a sequence of integers (any sign or size, taken modulo 2**64)."""
    key = 0
    for word in words:
        key = _splitmix64(key ^ (word & MASK64))
    return key


def step_key(stream: int, counter: int) -> tuple[int, int]:
    """The two 32-bit round keys for ``counter`` in ``stream`` (host integers)."""
    key = derive_key(stream, counter)
    return key & MASK32, key >> 32


def keep_threshold(rate: float) -> int:
    """An element is kept where its bits are ``>= keep_threshold(rate)``: P(drop) = rate
    to within 2**-33, decided in integers whatever the float dtype."""
    return min(round(rate * (1 << 32)), 1 << 32)


def element_index(xp: Any, shape: tuple[int, ...], device: Any, offset: int = 0) -> Any:
    """int64 row-major indices of an array of ``shape`` whose first row is row ``offset``
    of a larger batch (so a shard of a batch gets the batch's bits)."""
    row = 1
    for size in shape[1:]:
        row *= size
    start = offset * row
    stop = start + row * (shape[0] if shape else 1)
    if stop > MAX_ELEMENTS:
        raise ValueError(f"random bits for at most 2**32 elements per batch, got {stop}")
    return xp.reshape(xp.arange(start, stop, dtype=xp.int64, device=device), shape)


def mix32(x: Any) -> Any:
    """lowbias32 on 32-bit values held in an int64 array (10 operations)."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & MASK32
    return x ^ (x >> 16)


def random_bits(index: Any, keys: tuple[int, int]) -> Any:
    """Uniform 32-bit values (int64 array, 22 operations) for int64 element ``index``
    values < 2**32 under the round keys ``keys`` (from `step_key`)."""
    k0, k1 = keys
    return mix32(mix32(index ^ k0) ^ k1)
