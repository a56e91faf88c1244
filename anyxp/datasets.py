"""Datasets of the classic MLP tutorials, as host NumPy arrays ``(x, y)``.

- `load_digits`: the 1797 8x8 digits of scikit-learn (an extra), scaled to [0, 1].
- `sign_vectors`: all 2**n vectors of {-1, 1}**n with a 4-class rule (the joml task).
- `load_idx`: MNIST-format (IDX) files, raw or gzip, validated.
- `load_fashion_mnist`: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (or a folder).
- `split`: a seeded split into train/validation/test (or any fractions).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits: x (1797, 64) float32 in [0, 1], y int64 in 0..9."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError(
            "load_digits needs scikit-learn: pip install 'anyxp[datasets]'"
        ) from None
    digits = sk_load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return x, digits.target.astype(np.int64)


def sign_vectors(n_bits: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """All 2**n_bits vectors of {-1, 1}**n_bits (float32) and their class in 0..3.

    The vector is cut in two halves, the first of ``n_bits // 2`` coordinates and the
    second of the rest (``h`` coordinates). With ``a`` and ``b`` the number of +1
    entries in the first and the second half, the class is
    ``(a + 2 * [b > h / 2]) mod 4``; for n_bits = 14 that is ``(a + 2*[b >= 4]) mod 4``
    and each class holds 4096 vectors.
    """
    if not isinstance(n_bits, int) or not 2 <= n_bits <= 24:
        raise ValueError(f"n_bits must be an integer in [2, 24], got {n_bits!r}")
    codes = np.arange(2**n_bits, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(n_bits - 1, -1, -1)) & 1  # row i: binary digits of i
    x = (2 * bits - 1).astype(np.float32)
    first = n_bits // 2
    h = n_bits - first
    a = bits[:, :first].sum(axis=1)
    b = bits[:, first:].sum(axis=1)
    y = (a + 2 * (2 * b > h)) % 4
    return x, y.astype(np.int64)


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (raw or gzip) as an array; `ValueError` naming what is wrong."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = 4 + 4 * ndim + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX size mismatch: header {dims} needs {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def load_idx(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST / Fashion-MNIST IDX files -> x (n, rows*cols) float32 in [0, 1], y int64."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim < 2:
        raise ValueError(f"{images_path}: expected images (n, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected 1-D labels, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    return x, labels.astype(np.int64)


FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                  "t10k-labels-idx1-ubyte")


def fashion_mnist_files(root: str | Path | None = None) -> list[Path] | None:
    """The four Fashion-MNIST IDX files (raw or .gz) in ``root`` or Debian's folder, or None."""
    for folder in [Path(root)] if root is not None else FASHION_MNIST_DIRS:
        found = []
        for name in _FASHION_FILES:
            candidates = [folder / name, folder / f"{name}.gz"]
            found.append(next((c for c in candidates if c.exists()), None))
        if all(found):
            return found  # type: ignore[return-value]
    return None


def load_fashion_mnist(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST: (x_train, y_train, x_test, y_test), 784 features in [0, 1].

    Reads ``root`` or, by default, the files of Debian's ``dataset-fashion-mnist``
    package (``apt-get install dataset-fashion-mnist``); nothing is downloaded.
    """
    files = fashion_mnist_files(root)
    if files is None:
        where = root or ", ".join(map(str, FASHION_MNIST_DIRS))
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {where}: apt-get install dataset-fashion-mnist, "
            "or pass the folder holding train-images-idx3-ubyte(.gz) and the other three"
        )
    x_train, y_train = load_idx(files[0], files[1])
    x_test, y_test = load_idx(files[2], files[3])
    return x_train, y_train, x_test, y_test


def split(
    x: np.ndarray, y: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffle with ``seed`` and cut into one ``(x, y)`` pair per fraction (summing to 1)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y have different lengths: {x.shape[0]} and {y.shape[0]}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not f > 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    cuts = np.rint(np.cumsum(fractions) * x.shape[0]).astype(int)
    cuts[-1] = x.shape[0]
    parts, start = [], 0
    for stop in cuts:
        idx = order[start:stop]
        parts.append((x[idx], y[idx]))
        start = stop
    return parts
