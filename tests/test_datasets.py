"""Datasets: digits, sign vectors, IDX files, the seeded splitter; metrics."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import anyxp as ax
from anyxp import datasets


def test_digits() -> None:
    pytest.importorskip("sklearn")
    x, y = datasets.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert sorted(np.unique(y)) == list(range(10))


def test_sign_vectors_follow_the_rule() -> None:
    x, y = datasets.sign_vectors(14)
    assert x.shape == (16384, 14) and set(np.unique(x)) == {-1.0, 1.0}
    assert len({tuple(row) for row in x.astype(int)}) == 16384  # every vector once
    assert np.bincount(y).tolist() == [4096] * 4
    a = (x[:, :7] == 1).sum(axis=1)
    b = (x[:, 7:] == 1).sum(axis=1)
    np.testing.assert_array_equal(y, (a + 2 * (b >= 4)) % 4)
    x6, y6 = datasets.sign_vectors(6)
    a6, b6 = (x6[:, :3] == 1).sum(axis=1), (x6[:, 3:] == 1).sum(axis=1)
    np.testing.assert_array_equal(y6, (a6 + 2 * (b6 > 1.5)) % 4)
    with pytest.raises(ValueError, match="n_bits"):
        datasets.sign_vectors(1)


def test_split_is_seeded_and_complete() -> None:
    x, y = np.arange(100.0).reshape(50, 2), np.arange(50)
    parts = datasets.split(x, y, (0.6, 0.2, 0.2), seed=3)
    assert [len(p[1]) for p in parts] == [30, 10, 10]
    assert sorted(np.concatenate([p[1] for p in parts])) == list(range(50))
    for px, py in parts:
        np.testing.assert_array_equal(px[:, 0], 2 * py)
    again = datasets.split(x, y, (0.6, 0.2, 0.2), seed=3)
    np.testing.assert_array_equal(parts[0][1], again[0][1])
    assert not np.array_equal(parts[0][1], datasets.split(x, y, (0.6, 0.2, 0.2), seed=4)[0][1])
    with pytest.raises(ValueError, match="sum to 1"):
        datasets.split(x, y, (0.5, 0.2))
    with pytest.raises(ValueError, match="different lengths"):
        datasets.split(x, y[:3])


def write_idx(path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    write_idx(tmp_path / "img", images, compress=compress)
    write_idx(tmp_path / "lab", labels, compress=compress)
    x, y = datasets.load_idx(tmp_path / "img", tmp_path / "lab")
    assert x.shape == (7, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.reshape(7, 12) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_idx_errors(tmp_path) -> None:
    images = np.zeros((5, 2, 2), dtype=np.uint8)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab4", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"holds 5 images but .* holds 4 labels"):
        datasets.load_idx(tmp_path / "img", tmp_path / "lab4")
    (tmp_path / "short").write_bytes((tmp_path / "img").read_bytes()[:-3])
    with pytest.raises(ValueError, match="size mismatch"):
        datasets.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(ValueError, match="bad magic number 12340801"):
        datasets.read_idx(tmp_path / "magic")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="unknown IDX data type 0x07"):
        datasets.read_idx(tmp_path / "type")
    (tmp_path / "gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="corrupt gzip"):
        datasets.read_idx(tmp_path / "gz")
    write_idx(tmp_path / "lab2d", np.zeros((5, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 1-D labels"):
        datasets.load_idx(tmp_path / "img", tmp_path / "lab2d")


def test_fashion_mnist_from_a_folder(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8),
                  compress=True)
    x, y, x_test, y_test = datasets.load_fashion_mnist(tmp_path)
    assert x.shape == (6, 784) and x_test.shape == (4, 784) and y.dtype == y_test.dtype == np.int64
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(tmp_path / "missing")


@pytest.mark.skipif(datasets.fashion_mnist_files() is None, reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files_load() -> None:
    x, y, x_test, y_test = datasets.load_fashion_mnist()
    assert x.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert x.min() >= 0.0 and x.max() == 1.0


def test_confusion_matrix_and_accuracy(backend: ax.Backend) -> None:
    y = np.array([0, 1, 2, 2, 1])
    pred = np.array([0, 2, 2, 2, 1])
    m = ax.confusion_matrix(y, backend.asarray(pred))
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    assert ax.confusion_matrix(y, np.eye(3)[pred], num_classes=4).shape == (4, 4)
    assert ax.accuracy(y, pred) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="different lengths"):
        ax.confusion_matrix(y, pred[:3])
    with pytest.raises(ValueError, match="num_classes=2"):
        ax.confusion_matrix(y, pred, num_classes=2)


def test_history_plot(tmp_path, backend: ax.Backend) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    net = ax.Network([ax.Dense(4, "relu"), ax.Dense(2, "softmax")], input_size=3, backend=backend, seed=0)
    history = net.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    fig = history.plot(tmp_path / "curves.png", title="demo")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert [ax_.get_ylabel() for ax_ in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].lines) == 2  # training and validation
