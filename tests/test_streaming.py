"""Data larger than memory (anyxp.data): fit / evaluate / predict on arrays on disk
(memmap, h5py, zarr), on a `Sequence` and on a generator, read ahead by a thread.

A streamed array must train exactly as the in-memory one (same seed, same weights and
History: bit for bit on NumPy); bad input must fail naming the batch, keep the weights
of the last good step and leave no reader thread behind; reads stay one batch at a time,
in increasing row order, and in data-parallel training each rank reads only its shards.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_distributed import ThreadCommunicator, run_ranks

import anyxp as ax
import anyxp.data
from anyxp.distributed import shard
from anyxp.training import EVAL_BATCH, StreamData

READER = "anyxp-reader"  # the name of read_ahead's thread
METRICS = ["accuracy", "auc", "f1"]


# --------------------------------------------------------------------------- helpers


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READER]


@pytest.fixture(autouse=True)
def no_reader_thread_outlives_the_test() -> Iterator[None]:
    """Whatever a test did (a fit, an evaluate, a predict, an error), no reader is left."""
    assert not reader_threads(), "a reader thread was running before the test"
    yield
    assert not reader_threads(), "a reader thread outlived the test"


def dataset(n: int = 150, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 features, labels of 3 classes, positive sample weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(features, 3)), axis=1)
    return x, y, rng.uniform(0.5, 2.0, size=n)


def on_disk(folder: Path, name: str, array: np.ndarray) -> np.memmap:
    """``array`` saved as .npy and opened read-only as a memmap."""
    path = folder / f"{name}.npy"
    np.save(path, array)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    return mapped


def make_net(backend: ax.Backend, dtype: str = "float32", metrics: list[str] | None = None,
             dropout: bool = True) -> ax.Network:
    layers = [ax.Dense(16, "relu"), *([ax.Dropout(0.2)] if dropout else []), ax.Dense(3, "softmax")]
    return ax.Network(layers, input_size=5, backend=backend, dtype=dtype, seed=3,
                      metrics=METRICS if metrics is None else metrics, optimizer=ax.Adam(lr=1e-2))


def assert_same_weights(backend: ax.Backend, got: ax.Network, want: ax.Network, rtol: float = 1e-6) -> None:
    """Bit for bit on NumPy; to float32 rounding on the other backends."""
    for a, b in zip(got.get_weights(), want.get_weights(), strict=True):
        if backend.name == "numpy":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def assert_same_logs(backend: ax.Backend, got: dict[str, Any], want: dict[str, Any], rtol: float = 1e-6) -> None:
    assert got.keys() == want.keys()
    for key in want:
        if backend.name == "numpy":
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=rtol, err_msg=key)


class DiskProxy:
    """An array on disk as anyxp sees one (``shape``, ``dtype``, row slicing) that records
    every read (the thread, the rows); its ``fail_at``-th read (from 1) raises the OSError
    of a file that vanished."""

    def __init__(self, array: Any, fail_at: int | None = None) -> None:
        self.array, self.shape, self.dtype, self.fail_at = array, array.shape, array.dtype, fail_at
        self.reads: list[tuple[str, np.ndarray]] = []

    def __getitem__(self, index: Any) -> Any:
        rows = np.atleast_1d(np.arange(self.shape[0])[index])
        self.reads.append((threading.current_thread().name, rows))
        if len(self.reads) == self.fail_at:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x.npy")
        return self.array[index]


class WeightsPerBatch(ax.Callback):
    """The weights after every step (and the reader threads alive meanwhile)."""

    def __init__(self) -> None:
        self.weights: list[list[np.ndarray]] = []
        self.readers_seen = 0

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        self.weights.append(self.network.get_weights())
        self.readers_seen = max(self.readers_seen, len(reader_threads()))


def assert_kept_last_good_step(net: ax.Network, recorder: WeightsPerBatch, good_steps: int) -> None:
    assert len(recorder.weights) == good_steps
    for got, want in zip(net.get_weights(), recorder.weights[-1], strict=True):
        np.testing.assert_array_equal(got, want)


class Batches(ax.data.Sequence):
    """``x``, ``y`` (and ``w``) in batches of ``size``; records the batches asked for and
    the epoch ends; ``__getitem__(fail_at)`` raises."""

    def __init__(self, x: Any, y: Any, w: Any = None, size: int = 16, fail_at: int | None = None) -> None:
        self.x, self.y, self.w, self.size, self.fail_at = x, y, w, size, fail_at
        self.asked: list[int] = []
        self.epoch_ends = 0

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        self.asked.append(i)
        if i == self.fail_at:
            raise RuntimeError("the shard server is down")
        rows = slice(i * self.size, (i + 1) * self.size)
        return (self.x[rows], self.y[rows]) if self.w is None else (self.x[rows], self.y[rows], self.w[rows])

    def on_epoch_end(self) -> None:
        self.epoch_ends += 1


def batches_of(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, size: int, epochs: int) -> Iterator[tuple]:
    """The in-memory unshuffled fit's batches, ``epochs`` times over: a generator."""
    for _ in range(epochs):
        for lo in range(0, len(x), size):
            rows = slice(lo, lo + size)
            yield (x[rows], y[rows]) if w is None else (x[rows], y[rows], w[rows])


# --------------------------------------------------------------------------- same seed, same result


@pytest.fixture
def disk(tmp_path: Path) -> dict[str, Any]:
    """Training and validation data in memory and as memmaps."""
    x, y, w = dataset(150)
    vx, vy, vw = dataset(40, seed=1)
    memory = {"x": x, "y": y, "w": w, "vx": vx, "vy": vy, "vw": vw}
    return {"memory": memory, "mapped": {k: on_disk(tmp_path, k, v) for k, v in memory.items()}}


def small_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where any copy in memory is too big: stream=None streams arrays on disk."""
    monkeypatch.setattr(anyxp.data, "_available_memory", lambda: 1)


VALIDATION = {
    "validation_split": lambda d: {"validation_split": 0.2},
    "validation_data": lambda d: {"validation_data": (d["vx"], d["vy"], d["vw"])},
    "class_weight+validation_data": lambda d: {"validation_data": (d["vx"], d["vy"]),
                                               "class_weight": {0: 1.0, 1: 2.5, 2: 0.5}},
    "class_weight+validation_split": lambda d: {"validation_split": 0.2, "class_weight": {0: 1.0, 1: 2.5, 2: 0.5}},
}


@pytest.mark.parametrize("stream", [True, None], ids=["stream=True", "stream=None,small-memory"])
@pytest.mark.parametrize("validation", [
    *list(VALIDATION)[:3],
    "class_weight+validation_split",
])
def test_streamed_memmap_fit_equals_the_in_memory_fit(
    backend: ax.Backend, disk: dict, monkeypatch: pytest.MonkeyPatch, stream: bool | None, validation: str
) -> None:
    """Shuffled, with Dropout, sample weights (on disk too), metrics and validation."""
    if stream is None:
        small_memory(monkeypatch)
    mem, mapped = disk["memory"], disk["mapped"]
    want = make_net(backend)
    expected = want.fit(mem["x"], mem["y"], sample_weight=mem["w"], epochs=3, batch_size=16, verbose=0,
                        **VALIDATION[validation](mem))
    got = make_net(backend)
    watch = WeightsPerBatch()
    history = got.fit(mapped["x"], mapped["y"], sample_weight=mapped["w"], epochs=3, batch_size=16, verbose=0,
                      stream=stream, callbacks=[watch], **VALIDATION[validation](mapped))
    assert watch.readers_seen == 1  # it did stream
    assert not reader_threads()
    assert_same_weights(backend, got, want)
    assert_same_logs(backend, history.history, expected.history)
    assert "val_f1" in history.history


def test_a_small_memmap_is_not_streamed_by_default(backend: ax.Backend, disk: dict) -> None:
    watch = WeightsPerBatch()
    make_net(backend).fit(disk["mapped"]["x"], disk["mapped"]["y"], epochs=1, batch_size=64, verbose=0,
                          callbacks=[watch])
    assert watch.readers_seen == 0


def test_the_size_decision_is_anyxp_data_too_big_for_memory(
    backend: ax.Backend, disk: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anyxp.data, "too_big_for_memory", lambda nbytes: True)
    watch = WeightsPerBatch()
    make_net(backend).fit(disk["mapped"]["x"], disk["mapped"]["y"], epochs=1, batch_size=64, verbose=0,
                          callbacks=[watch])
    assert watch.readers_seen == 1


def test_a_small_disk_array_without_numpy_conversion_is_read_whole(backend: ax.Backend, disk: dict) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    net = make_net(backend)
    net.fit(mem["x"], mem["y"], epochs=1, batch_size=16, verbose=0)
    want = net.evaluate(mem["x"], mem["y"])
    assert_same_logs(backend, net.evaluate(DiskProxy(mapped["x"]), mapped["y"]), want)


def h5py_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / "data.h5", "w") as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value, chunks=(16, *value.shape[1:]))
    f = h5py.File(folder / "data.h5", "r")
    return {name: f[name] for name in arrays}


def zarr_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    zarr = pytest.importorskip("zarr")
    opened = {}
    for name, value in arrays.items():
        z = zarr.create_array(store=folder / f"{name}.zarr", shape=value.shape, dtype=value.dtype,
                              chunks=(16, *value.shape[1:]))
        z[...] = value
        opened[name] = zarr.open_array(folder / f"{name}.zarr", mode="r")
    return opened


@pytest.mark.parametrize("kind", ["h5py", "zarr"])
def test_h5py_and_zarr_arrays_train_evaluate_and_predict_as_in_memory(
    backend: ax.Backend, tmp_path: Path, kind: str
) -> None:
    x, y, w = dataset(100)
    stored = (h5py_arrays if kind == "h5py" else zarr_arrays)(tmp_path, {"x": x, "y": y, "w": w})
    assert ax.data.is_on_disk(stored["x"]) and not ax.data.is_batch_source(stored["x"])
    want, got = make_net(backend), make_net(backend)
    expected = want.fit(x, y, sample_weight=w, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    history = got.fit(stored["x"], stored["y"], sample_weight=stored["w"], epochs=2, batch_size=16,
                      validation_split=0.25, verbose=0, stream=True)  # shuffled: point selections
    assert_same_weights(backend, got, want)
    assert_same_logs(backend, history.history, expected.history)
    assert_same_logs(backend, got.evaluate(stored["x"], stored["y"], sample_weight=stored["w"], stream=True),
                     want.evaluate(x, y, sample_weight=w))
    np.testing.assert_allclose(got.predict(stored["x"], batch_size=32), want.predict(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_evaluate_on_a_memmap_equals_evaluate_in_memory(backend: ax.Backend, disk: dict, batch_size: int | None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    net = make_net(backend)
    net.fit(mem["x"], mem["y"], epochs=1, batch_size=16, verbose=0)
    want = net.evaluate(mem["x"], mem["y"], sample_weight=mem["w"], batch_size=batch_size)
    small = net.evaluate(mapped["x"], mapped["y"], sample_weight=mapped["w"], batch_size=batch_size)
    assert_same_logs(backend, small, want)  # a small memmap is read whole
    streamed = net.evaluate(mapped["x"], mapped["y"], sample_weight=mapped["w"], batch_size=batch_size, stream=True)
    small_memory(monkeypatch)  # stream=None streams it now
    auto = net.evaluate(mapped["x"], mapped["y"], sample_weight=mapped["w"], batch_size=batch_size)
    for got in (streamed, auto):
        if batch_size is None:  # one batch: the same operations
            assert_same_logs(backend, got, want)
        else:  # the batches' loss sums are added in another order
            assert got.keys() == want.keys()
            np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-6)


def test_predict_writes_into_the_callers_memmap(backend: ax.Backend, disk: dict, tmp_path: Path) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    net = make_net(backend)
    net.fit(mem["x"], mem["y"], epochs=1, batch_size=16, verbose=0)
    want = net.predict(mem["x"], batch_size=32)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(150, 3))
    got = net.predict(mapped["x"], batch_size=32, out=out)
    assert got is out
    out.flush()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-6, atol=1e-7)
    if backend.name == "numpy":
        np.testing.assert_array_equal(out, want)
    into = np.full((150, 3), np.nan, dtype=np.float32)
    assert net.predict(mem["x"], batch_size=64, out=into) is into  # an in-memory x and out too
    np.testing.assert_allclose(into, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(net.predict(mapped["x"]), want, rtol=1e-6, atol=1e-7)  # a new array
    for shape in [(150, 2), (149, 3), (150,)]:
        with pytest.raises(ValueError, match=r"out has shape .*expected \(150, 3\)"):
            net.predict(mapped["x"], out=np.zeros(shape, dtype=np.float32))


# --------------------------------------------------------------------------- Sequence and generator


def test_a_sequence_of_the_in_memory_batches_trains_as_the_arrays(backend: ax.Backend) -> None:
    x, y, w = dataset(150)
    want, got = make_net(backend), make_net(backend)
    expected = want.fit(x, y, sample_weight=w, epochs=3, batch_size=16, shuffle=False, verbose=0)
    seq = Batches(x, y, w, size=16)
    history = got.fit(seq, None, epochs=3, shuffle=False, verbose=0)
    assert seq.asked == list(range(10)) * 3 and seq.epoch_ends == 3
    assert_same_weights(backend, got, want)
    assert_same_logs(backend, history.history, expected.history)
    assert_same_logs(backend, got.evaluate(Batches(x, y, w, size=16)), want.evaluate(x, y, sample_weight=w,
                                                                                     batch_size=16))


def test_a_sequence_is_shuffled_by_batch_each_epoch(backend: ax.Backend) -> None:
    x, y, _ = dataset(150)
    seq = Batches(x, y, size=16)
    make_net(backend).fit(seq, None, epochs=3, verbose=0)
    assert seq.epoch_ends == 3
    orders = [seq.asked[i * 10 : (i + 1) * 10] for i in range(3)]
    assert all(sorted(order) == list(range(10)) for order in orders), orders
    assert any(order != list(range(10)) for order in orders) and orders[0] != orders[1], orders
    # the same seed, the same order
    again = Batches(x, y, size=16)
    make_net(backend).fit(again, None, epochs=3, verbose=0)
    assert again.asked == seq.asked


def test_a_generator_with_steps_per_epoch_trains_as_the_arrays(backend: ax.Backend) -> None:
    """A generator is never shuffled: it trains as the unshuffled arrays, validation included."""
    x, y, w = dataset(150)
    vx, vy, _ = dataset(40, seed=1)
    want, got = make_net(backend), make_net(backend)
    expected = want.fit(x, y, sample_weight=w, epochs=3, batch_size=16, shuffle=False, validation_data=(vx, vy),
                        verbose=0)
    history = got.fit(batches_of(x, y, w, 16, epochs=3), None, steps_per_epoch=10, epochs=3,
                      validation_data=(vx, vy), verbose=0)
    assert_same_weights(backend, got, want)
    assert_same_logs(backend, history.history, expected.history)
    loss = got.evaluate(batches_of(x, y, None, 50, epochs=1), steps=3)["loss"]
    np.testing.assert_allclose(loss, got.evaluate(x, y)["loss"], rtol=1e-6)


# --------------------------------------------------------------------------- data-parallel


@pytest.mark.parametrize("size", [2, 3])
def test_data_parallel_streaming_equals_one_process_and_reads_only_its_shards(
    backend: ax.Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """98 samples in global batches of 16: unequal shards, and an empty one for 3 ranks."""
    if backend.name != "numpy":
        pytest.skip("the data-parallel logic is backend-independent; tested on NumPy")
    x, y, _ = dataset(98)
    vx, vy, _ = dataset(30, seed=1)
    x, vx = x.astype(np.float64), vx.astype(np.float64)
    mapped = {k: on_disk(tmp_path, k, v) for k, v in {"x": x, "y": y, "vx": vx, "vy": vy}.items()}
    single = make_net(backend, "float64")
    expected = single.fit(x, y, epochs=3, batch_size=16, validation_data=(vx, vy), verbose=0)
    train = [DiskProxy(mapped["x"]) for _ in range(size)]  # each rank's view of the files
    val = [DiskProxy(mapped["vx"]) for _ in range(size)]
    orders: dict[int, list[np.ndarray]] = {}  # each network's epoch permutations
    draw = StreamData.epoch_order

    def recorded(self: StreamData, net: ax.Network, shuffle: bool) -> Any:
        order = draw(self, net, shuffle)
        orders.setdefault(id(net), []).append(order)
        return order

    monkeypatch.setattr(StreamData, "epoch_order", recorded)

    def work(comm: ThreadCommunicator) -> Any:
        net = make_net(backend, "float64")
        history = net.fit(train[comm.rank], mapped["y"], epochs=3, batch_size=16, verbose=0, stream=True,
                          validation_data=(val[comm.rank], mapped["vy"]), comm=comm)
        return net.get_weights(), history.history, orders[id(net)]

    results = run_ranks(size, work)
    for weights, history, _ in results:
        for got, want in zip(weights, single.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for key, values in expected.history.items():
            np.testing.assert_allclose(history[key], values, rtol=1e-10, err_msg=key)

    def shards(n: int, rank: int, batch: int) -> list[tuple[int, int]]:
        """This rank's non-empty shards of the global batches of an epoch."""
        parts = [shard(lo, min(n, lo + batch), rank, size) for lo in range(0, n, batch)]
        return [(a, z) for a, z in parts if a < z]

    # each rank read, in its reader thread, exactly its shards' rows of the epoch's
    # permutation (in increasing order), and nothing else; validation, unshuffled, in one
    # global batch
    for rank, (_, _, permutations) in enumerate(results):
        assert len(permutations) == 3 and all(p is not None for p in permutations)
        want_rows = [np.sort(p[a:z]) for p in permutations for a, z in shards(98, rank, 16)]
        assert [thread for thread, _ in train[rank].reads] == [READER] * len(want_rows)
        for (_, got_rows), rows in zip(train[rank].reads, want_rows, strict=True):
            np.testing.assert_array_equal(got_rows, rows)
        want_rows = [np.arange(a, z) for a, z in shards(30, rank, EVAL_BATCH)] * 3
        assert [thread for thread, _ in val[rank].reads] == [READER] * len(want_rows)
        for (_, got_rows), rows in zip(val[rank].reads, want_rows, strict=True):
            np.testing.assert_array_equal(got_rows, rows)
    for epoch in range(3):  # the ranks' permutations agree (and so their shards are disjoint)
        for _, _, permutations in results[1:]:
            np.testing.assert_array_equal(permutations[epoch], results[0][2][epoch])


# --------------------------------------------------------------------------- bad input


def test_a_generator_with_inconsistent_features_names_the_batch(backend: ax.Backend) -> None:
    x, y, _ = dataset(80)
    bad = np.zeros((16, 4), dtype=np.float32)

    def batches() -> Iterator[tuple]:
        for lo in range(0, 80, 16):
            yield (bad if lo == 48 else x[lo : lo + 16]), y[lo : lo + 16]

    net, watch = make_net(backend), WeightsPerBatch()
    with pytest.raises(ValueError, match=r"x \(batch 4 of the generator\) has 4 features, but the network expects 5"):
        net.fit(batches(), None, steps_per_epoch=5, callbacks=[watch], verbose=0)
    assert not reader_threads()
    assert_kept_last_good_step(net, watch, 3)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_a_late_batch_of_a_memmap_names_batch_and_row(
    backend: ax.Backend, tmp_path: Path, value: float
) -> None:
    x, y, _ = dataset(150)
    x[100, 2] = value  # batch 7 (rows 96-111), its row 4
    net, watch = make_net(backend), WeightsPerBatch()
    what = "NaN" if np.isnan(value) else "inf"
    with pytest.raises(ValueError, match=rf"batch 7: x contains {what} in row 100"):
        net.fit(on_disk(tmp_path, "x", x), y, batch_size=16, shuffle=False, stream=True, callbacks=[watch], verbose=0)
    assert not reader_threads()
    assert_kept_last_good_step(net, watch, 6)


def test_nan_in_a_shuffled_memmap_names_the_files_row(backend: ax.Backend, tmp_path: Path) -> None:
    x, y, _ = dataset(150)
    x[100, 2] = np.nan
    with pytest.raises(ValueError, match=r"row 100\b"):
        make_net(backend).fit(x, y, verbose=0)  # in memory: the row of x
    with pytest.raises(ValueError, match=r"batch \d+\b.*row 100\b"):
        make_net(backend).fit(on_disk(tmp_path, "x", x), y, batch_size=16, stream=True, verbose=0)


def test_a_sequence_that_raises_names_the_batch_and_chains_the_cause(backend: ax.Backend) -> None:
    x, y, _ = dataset(150)
    net, watch = make_net(backend), WeightsPerBatch()
    seq = Batches(x, y, size=16, fail_at=5)
    message = r"reading batch 5 of the Sequence raised RuntimeError: the shard server is down"
    with pytest.raises(ValueError, match=message) as info:
        net.fit(seq, None, shuffle=False, callbacks=[watch], verbose=0)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not reader_threads()
    assert_kept_last_good_step(net, watch, 5)
    assert seq.epoch_ends == 0


def test_a_bad_sequence_batch_is_named_by_its_index(backend: ax.Backend) -> None:
    x, y, _ = dataset(150)

    class Narrow(Batches):
        def __getitem__(self, i: int) -> tuple[Any, ...]:
            xb, yb = super().__getitem__(i)
            return (xb[:, :4] if i == 3 else xb), yb

    with pytest.raises(ValueError, match=r"batch 3\b.*4 features"):
        make_net(backend).fit(Narrow(x, y, size=16), None, shuffle=False, verbose=0)


def test_a_generator_that_runs_out_early_says_so(backend: ax.Backend) -> None:
    x, y, _ = dataset(112)  # 7 batches of 16 for 2 epochs of 5 steps
    net, watch = make_net(backend), WeightsPerBatch()
    with pytest.raises(ValueError, match=r"ran out after 2 of the 5 batches of this epoch \(steps_per_epoch\)"):
        net.fit(batches_of(x, y, None, 16, epochs=1), None, steps_per_epoch=5, epochs=2, callbacks=[watch],
                verbose=0)
    assert not reader_threads()
    assert_kept_last_good_step(net, watch, 7)
    assert len(net.history.history["loss"]) == 1  # the first epoch ended


def caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """``error`` is a ``kind``, or was raised from one."""
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False


def test_a_file_that_vanishes_mid_epoch_stops_fit_cleanly(backend: ax.Backend, tmp_path: Path) -> None:
    x, y, _ = dataset(150)
    source = DiskProxy(on_disk(tmp_path, "x", x), fail_at=4)  # x's read of batch 4 (y is in memory)
    net, watch = make_net(backend), WeightsPerBatch()
    with pytest.raises((OSError, ValueError)) as info:
        net.fit(source, y, batch_size=16, stream=True, callbacks=[watch], verbose=0)
    assert caused_by(info.value, FileNotFoundError)
    assert not reader_threads()
    assert_kept_last_good_step(net, watch, 3)
    assert len(source.reads) == 4  # nothing read after the failure


@pytest.mark.parametrize("entry", ["fit", "evaluate", "predict"])
def test_a_file_that_vanishes_is_reported_with_the_batch(backend: ax.Backend, entry: str) -> None:
    x, y, _ = dataset(150)
    source, net = DiskProxy(x, fail_at=4), make_net(backend)
    call = {
        "fit": lambda: net.fit(source, y, batch_size=16, shuffle=False, stream=True, verbose=0),
        "evaluate": lambda: net.evaluate(source, y, batch_size=16, stream=True),
        "predict": lambda: net.predict(source, batch_size=16),
    }[entry]
    with pytest.raises((OSError, ValueError), match=r"batch 4\b") as info:
        call()
    assert caused_by(info.value, FileNotFoundError)
    assert not reader_threads()


def test_ctrl_c_in_a_callback_stops_the_reader(backend: ax.Backend, tmp_path: Path) -> None:
    x, y, _ = dataset(150)

    class Interrupt(WeightsPerBatch):
        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            super().on_batch_end(batch, logs)
            if batch == 3:
                raise KeyboardInterrupt

    net, watch = make_net(backend), Interrupt()
    source = DiskProxy(on_disk(tmp_path, "x", x))
    with pytest.raises(KeyboardInterrupt):
        net.fit(source, y, batch_size=16, stream=True, epochs=2, callbacks=[watch], verbose=0)
    assert watch.readers_seen == 1 and not reader_threads()
    assert_kept_last_good_step(net, watch, 4)
    # it stopped reading too: at most the 4 batches trained on, those queued, one being
    # queued and one read as the stop was signalled (of the 2 epochs' 20)
    assert len(source.reads) <= 4 + anyxp.data.READ_AHEAD + 2


def diverging(n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Regression data whose rows from 100 on are huge: SGD(lr=10) blows up on them."""
    x, _, _ = dataset(n)
    x[100:] *= 1e6
    return x, np.random.default_rng(5).normal(size=(n, 1)).astype(np.float32)


def regressor(backend: ax.Backend) -> ax.Network:
    return ax.Network([ax.Dense(8, "relu"), ax.Dense(1)], input_size=5, loss="mse", backend=backend, seed=0,
                      optimizer=ax.SGD(lr=10.0))


def test_a_streamed_memmap_diverges_as_the_in_memory_fit(backend: ax.Backend, tmp_path: Path) -> None:
    """The replay reads the epoch again, from the same permutation: the same batch is named
    and the same weights are kept."""
    x, y = diverging()
    want, got = regressor(backend), regressor(backend)
    with pytest.raises(ax.TrainingDivergedError, match=r"at epoch 1/2, batch \d+/10") as expected:
        want.fit(x, y, batch_size=16, epochs=2, verbose=0)
    with pytest.raises(ax.TrainingDivergedError) as info:
        got.fit(on_disk(tmp_path, "x", x), on_disk(tmp_path, "y", y), batch_size=16, epochs=2, stream=True, verbose=0)
    assert str(info.value) == str(expected.value)
    assert not reader_threads()
    assert_same_weights(backend, got, want)


def test_a_diverging_generator_keeps_the_epochs_starting_weights(backend: ax.Backend) -> None:
    """A generator cannot be replayed: the network goes back to the epoch's start."""
    x, y = diverging()

    class EpochStart(ax.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.weights = self.network.get_weights()

    net, start = regressor(backend), EpochStart()
    with pytest.raises(ax.TrainingDivergedError, match=r"at epoch 1/1; .*weights from the start of that epoch"):
        net.fit(batches_of(x, y, None, 16, epochs=1), None, steps_per_epoch=10, callbacks=[start], verbose=0)
    assert not reader_threads()
    for got, want in zip(net.get_weights(), start.weights, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- memory and reading order


def test_a_shuffled_batch_is_read_in_increasing_row_order(backend: ax.Backend, disk: dict) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    proxies = {k: DiskProxy(mapped[k]) for k in ("x", "y", "w")}
    want, got = make_net(backend), make_net(backend)
    want.fit(mem["x"], mem["y"], sample_weight=mem["w"], epochs=2, batch_size=16, verbose=0)
    got.fit(proxies["x"], proxies["y"], sample_weight=proxies["w"], epochs=2, batch_size=16, stream=True, verbose=0)
    assert_same_weights(backend, got, want)
    for proxy in proxies.values():
        assert len(proxy.reads) == 2 * 10
        assert all(np.all(np.diff(rows) > 0) for _, rows in proxy.reads)
        assert {thread for thread, _ in proxy.reads} == {READER}
    first_epoch = np.concatenate([rows for _, rows in proxies["x"].reads[:10]])
    assert not np.array_equal(first_epoch, np.arange(150))  # it was shuffled
    np.testing.assert_array_equal(np.sort(first_epoch), np.arange(150))


@pytest.fixture
def big(tmp_path: Path) -> tuple[np.memmap, np.ndarray]:
    """200,000 x 64 float32 on disk: 51 MB, far more than a batch."""
    x = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(200_000, 64))
    rng = np.random.default_rng(0)
    for lo in range(0, 200_000, 50_000):
        x[lo : lo + 50_000] = rng.normal(size=(50_000, 64))
    x.flush()
    y = (np.load(tmp_path / "big.npy", mmap_mode="r")[:, 0] > 0).astype(np.int64)
    return np.load(tmp_path / "big.npy", mmap_mode="r"), y


def test_a_big_memmap_is_read_one_batch_at_a_time(backend: ax.Backend, big: tuple) -> None:
    x, y = big
    source = DiskProxy(x)
    net = ax.Network([ax.Dense(4, "relu"), ax.Dense(1, "sigmoid")], input_size=64, loss="binary_cross_entropy",
                     backend=backend, seed=0, metrics=["accuracy"])
    net.fit(source, y, batch_size=4096, stream=True, verbose=0)
    assert max(len(rows) for _, rows in source.reads) <= 4096
    assert sum(len(rows) for _, rows in source.reads) == 200_000  # each row once
    source.reads.clear()
    net.evaluate(source, y, batch_size=8192, stream=True)
    net.predict(source, batch_size=8192)
    assert max(len(rows) for _, rows in source.reads) <= 8192
    assert sum(len(rows) for _, rows in source.reads) == 2 * 200_000


MEMORY_PROBE = """
import sys, numpy as np, anyxp as ax
def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))
class Peak(ax.Callback):
    peak = 0
    def on_batch_end(self, batch, logs=None):
        Peak.peak = max(Peak.peak, anon())
x = np.load(sys.argv[1], mmap_mode="r")
y = (np.arange(x.shape[0]) % 2).astype(np.int64)
for stream in (True, False):
    net = ax.Network([ax.Dense(4, "relu"), ax.Dense(1, "sigmoid")], input_size=64, loss="binary_cross_entropy",
                     dtype="float64", seed=0)  # float64: an in-memory copy of the float32 file is 102 MB
    net.fit(x[:4096], y[:4096], batch_size=4096, verbose=0)  # warm up
    Peak.peak = before = anon()
    net.fit(x, y, batch_size=4096, stream=stream, callbacks=[Peak()], verbose=0)
    print(Peak.peak - before)
"""


def test_a_streamed_fit_keeps_host_memory_bounded(backend: ax.Backend, big: tuple, tmp_path: Path) -> None:
    """The peak growth of anonymous memory (RssAnon) in a fresh process: a few batches
    when streamed, the data's size when read whole (proof that the probe sees a copy)."""
    if backend.name != "numpy" or not Path("/proc/self/status").exists():
        pytest.skip("measured with NumPy on Linux")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ANYXP_BACKEND": "numpy"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(MEMORY_PROBE), str(tmp_path / "big.npy")],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    streamed, whole = (int(v) for v in run.stdout.split())
    size = 200_000 * 64 * 8  # in float64
    assert whole > size // 2, (streamed, whole)
    assert streamed < size // 4, (streamed, whole)  # about 6 batches of 2 MB (float64) on a 64-bit Linux


def test_the_reader_never_outlives_fit_evaluate_or_predict(backend: ax.Backend, disk: dict) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    source = DiskProxy(mapped["x"])
    net, watch = make_net(backend), WeightsPerBatch()
    net.fit(source, mapped["y"], batch_size=16, validation_data=(mapped["vx"], mapped["vy"]), stream=True,
            callbacks=[watch], verbose=0)
    assert watch.readers_seen == 1 and not reader_threads()
    net.evaluate(source, mapped["y"], batch_size=16, stream=True)
    assert not reader_threads()
    net.predict(source, batch_size=16)
    assert not reader_threads()
    net.fit(Batches(mem["x"], mem["y"]), None, verbose=0)
    net.fit(batches_of(mem["x"], mem["y"], None, 16, 1), None, steps_per_epoch=10, verbose=0)
    assert not reader_threads()
    assert {thread for thread, _ in source.reads} == {READER}  # it did read in the thread


# --------------------------------------------------------------------------- usage errors


def test_misuse_is_refused_with_a_clear_error(backend: ax.Backend, disk: dict) -> None:
    mem, mapped = disk["memory"], disk["mapped"]
    net = make_net(backend)
    seq = Batches(mem["x"], mem["y"])
    with pytest.raises(ValueError, match=r"x is a source of batches.*pass y=None"):
        net.fit(seq, mem["y"], verbose=0)
    with pytest.raises(ValueError, match=r"x is a source of batches.*pass y=None"):
        net.fit(batches_of(mem["x"], mem["y"], None, 16, 1), mem["y"], steps_per_epoch=10, verbose=0)
    with pytest.raises(ValueError, match=r"x is a source of batches.*pass y=None"):
        net.evaluate(seq, mem["y"])
    with pytest.raises(ValueError, match=r"always streamed \(stream=False cannot hold\)"):
        net.fit(batches_of(mem["x"], mem["y"], None, 16, 1), None, steps_per_epoch=10, stream=False, verbose=0)
    with pytest.raises(ValueError, match=r"a generator of batches needs steps_per_epoch="):
        net.fit(batches_of(mem["x"], mem["y"], None, 16, 1), None, verbose=0)
    for x, y in [(mem["x"], mem["y"]), (mapped["x"], mapped["y"])]:
        with pytest.raises(ValueError, match="steps_per_epoch is for a generator of batches"):
            net.fit(x, y, steps_per_epoch=3, verbose=0)
    with pytest.raises(ValueError, match="validation_split takes the last rows of arrays"):
        net.fit(seq, None, validation_split=0.2, verbose=0)
    assert seq.asked == [] and not reader_threads()


def test_data_parallel_training_refuses_a_sequence(backend: ax.Backend) -> None:
    x, y, _ = dataset(64)

    def work(comm: ThreadCommunicator) -> None:
        make_net(backend).fit(Batches(x, y), None, verbose=0, comm=comm)

    with pytest.raises(ValueError, match=r"data-parallel training streams arrays .*not a Sequence or a generator"):
        run_ranks(2, work)
