"""Data larger than memory: arrays on disk and batch sources, read ahead of the device.

`fit`, `evaluate` and `predict` take, besides in-memory arrays:

- arrays that live on disk: `numpy.memmap`, `h5py.Dataset`, `zarr.Array` (anything with
  ``shape``, ``dtype`` and row slicing), for ``x``, ``y`` and ``sample_weight``;
- a `Sequence` (``len()`` batches, ``seq[i]`` is batch ``i``: Keras's ``PyDataset``
  idea), shuffled by batch and resumable;
- an iterable of ``(x, y)`` / ``(x, y, sample_weight)`` batches (a generator), with
  ``steps_per_epoch``.

Streamed, each batch is read on the host (a shuffled batch's rows in increasing order,
which a disk serves well, then put back in the permutation's order), converted and
checked there (NaN/inf, shapes: no device sync), and copied to the device, by a reader
thread that works one or two batches ahead of the training step (`read_ahead`). An
array streams the batches the in-memory fit would take, from the same permutation: the
same seed gives the same weights, bit for bit on NumPy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .backend import is_array
from .validation import as_features, as_targets, sample_weights

READ_AHEAD = 2  # batches the reader thread may hold ready
STREAM_FRACTION = 0.5  # stream an on-disk array whose in-memory copy would take more of the available memory


class Sequence:
    """A source of batches by index, as Keras's ``PyDataset``: ``len(seq)`` batches,
    ``seq[i]`` is ``(x, y)`` or ``(x, y, sample_weight)`` for batch ``i``. ``fit``
    shuffles the batch order (with the network's generator) when ``shuffle=True``, and
    calls ``on_epoch_end()`` after each epoch.

    >>> class Rows(Sequence):
    ...     def __init__(self, x, y, batch): self.x, self.y, self.batch = x, y, batch
    ...     def __len__(self): return -(-len(self.x) // self.batch)
    ...     def __getitem__(self, i):
    ...         rows = slice(i * self.batch, (i + 1) * self.batch)
    ...         return self.x[rows], self.y[rows]
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def on_epoch_end(self) -> None:
        """Called after every epoch (e.g. to reshuffle within the source)."""


def is_on_disk(a: Any) -> bool:
    """Whether ``a`` is an array read from disk by slicing: a `numpy.memmap`, an h5py
    dataset, a zarr array (an in-memory NumPy array or a device array is not)."""
    if isinstance(a, np.memmap):
        return True
    if isinstance(a, np.ndarray | list | tuple | str | bytes) or is_array(a) or isinstance(a, Sequence):
        return False
    shape = getattr(a, "shape", None)
    return (hasattr(a, "dtype") and hasattr(a, "__getitem__") and isinstance(shape, tuple)
            and len(shape) in (1, 2) and type(a).__module__.partition(".")[0] != "pandas")


def is_batch_source(x: Any) -> bool:
    """A `Sequence`, or an iterable of batches that is not an array (a generator...)."""
    if isinstance(x, Sequence):
        return True
    if isinstance(x, np.ndarray | list | tuple | str | bytes | dict) or is_array(x) or is_on_disk(x):
        return False
    return isinstance(x, Iterable) and not hasattr(x, "shape")


def too_big_for_memory(nbytes: int) -> bool:
    """Whether an in-memory copy of ``nbytes`` would take more than `STREAM_FRACTION` of
    the memory available now (Linux ``MemAvailable``; elsewhere, of the physical memory)."""
    return nbytes > STREAM_FRACTION * _available_memory()


def _available_memory() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: never stream by size


def read_rows(a: Any, rows: np.ndarray) -> np.ndarray:
    """``a[rows]`` as host NumPy, for increasing ``rows``: a slice where they are
    contiguous, else the array's own point selection (h5py and zarr need increasing rows)."""
    if rows.size and int(rows[-1]) - int(rows[0]) + 1 == rows.size:
        part = a[int(rows[0]) : int(rows[-1]) + 1]
    elif hasattr(a, "get_orthogonal_selection"):  # zarr
        part = a.get_orthogonal_selection((rows,) + (slice(None),) * (len(a.shape) - 1))
    else:
        part = a[rows]
    return np.asarray(part)


def read_in_order(a: Any, rows: np.ndarray) -> np.ndarray:
    """``a[rows]`` for rows in any order: read in increasing order, then put back."""
    order = np.argsort(rows, kind="stable")
    sorted_part = read_rows(a, rows[order])
    part = np.empty_like(sorted_part)
    part[order] = sorted_part
    return part


@dataclasses.dataclass
class HostBatch:
    """One batch read, converted and checked on the host: rows ``lo:hi`` of the epoch
    (this rank's ``a:z`` of them in data-parallel training)."""

    index: int
    lo: int
    hi: int
    a: int
    z: int
    x: np.ndarray
    t: np.ndarray
    w: np.ndarray | None


class BatchConverter:
    """Converts and checks a batch's raw x, y and sample_weight for a network, with
    errors naming the batch."""

    def __init__(self, net: Any, class_weight: Any = None, source: str = "x") -> None:
        self.net, self.class_weight, self.source = net, class_weight, source
        self.features: int | None = None

    def __call__(self, where: str, x: Any, y: Any, w: Any = None) -> tuple[Any, Any, Any]:
        net = self.net
        expected = self.features or net.input_size or getattr(net.layers[0], "declared_input_size", None)
        xb = as_features(x, f"{self.source} ({where})", None, net.dtype_name, expected)
        if self.features is None:
            self.features = int(xb.shape[1])
        n = int(xb.shape[0])
        outputs = net._check_sizes(net.layers, self.features)
        tb, labels = as_targets(y, f"y ({where})", n=n, outputs=outputs, loss_name=net.loss.name,
                                dtype=net.dtype_name, x_name=f"x ({where})")
        wb = sample_weights(n, labels, max(outputs, 2), self.class_weight, w, net.dtype_name,
                            f"sample_weight ({where})")
        return xb, tb, wb


def check_lengths(x: Any, y: Any, sample_weight: Any, names: tuple[str, str] = ("x", "y")) -> int:
    """The sample count of on-disk (or in-memory) ``x``, ``y``, ``sample_weight``: equal
    first dimensions, or a ValueError naming them."""
    n = int(x.shape[0])
    for name, other in ((names[1], y), ("sample_weight", sample_weight)):
        if other is not None and int(other.shape[0]) != n:
            raise ValueError(f"{names[0]} and {name} have different lengths: {n} and {int(other.shape[0])}")
    if n == 0:
        raise ValueError(f"{names[0]} is empty (0 samples)")
    return n


class ArraySource:
    """Batches of arrays (on disk, or in memory) read by rows: the batches the in-memory
    fit takes from the same permutation."""

    replayable = True

    def __init__(self, net: Any, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None,
                 names: tuple[str, str] = ("x", "y"), start: int = 0, stop: int | None = None) -> None:
        total = check_lengths(x, y, sample_weight, names)
        if len(x.shape) != 2:
            raise ValueError(f"{names[0]} must be 2-D (samples, features), got shape {tuple(x.shape)}")
        self.start, self.stop = start, total if stop is None else stop
        self.n = self.stop - self.start
        self.x, self.y, self.w = x, y, sample_weight
        self.class_weight, self.names = class_weight, names
        self.convert = BatchConverter(net, class_weight, names[0])

    def split(self, at: int) -> tuple[ArraySource, ArraySource]:
        """The first ``at`` rows, and the rest (as `validation_split` splits)."""
        net = self.convert.net
        return (ArraySource(net, self.x, self.y, self.w, self.class_weight, self.names, self.start, self.start + at),
                ArraySource(net, self.x, self.y, self.w, None, ("validation x", "validation y"),
                            self.start + at, self.stop))

    def batches(self, order: np.ndarray | None, batch_size: int, comm: Any = None) -> Iterator[HostBatch]:
        from .distributed import shard

        for index, lo in enumerate(range(0, self.n, batch_size)):
            hi = min(self.n, lo + batch_size)
            a, z = (lo, hi) if comm is None else shard(lo, hi, comm.rank, comm.size)
            rows = self.start + (np.arange(a, z) if order is None else order[a:z])
            if a == z:
                yield HostBatch(index, lo, hi, a, z, None, None, None)  # type: ignore[arg-type]
                continue
            where = f"batch {index + 1}"
            try:
                parts = [None if v is None else read_in_order(v, rows) for v in (self.x, self.y, self.w)]
            except OSError as exc:
                raise OSError(f"reading {where} (rows {int(rows.min())}-{int(rows.max())}) failed: {exc}") from exc
            for name, part in zip((*self.names, "sample_weight"), parts, strict=True):
                _check_rows(part, rows, name, where)
            yield HostBatch(index, lo, hi, a, z, *self.convert(where, *parts))


class _BatchesOneByOne:
    """Shared by the sources of whole batches: each batch unpacked, converted, checked and
    placed by its rows in the epoch. Subclasses say how batch ``index`` is fetched."""

    n = None  # samples per epoch: known once read

    def _fetch(self, index: int, order: np.ndarray | None) -> tuple[str, Any]:
        """(how to name the batch in errors, the raw batch)."""
        raise NotImplementedError

    def batches(self, order: np.ndarray | None, batch_size: int, comm: Any = None) -> Iterator[HostBatch]:
        lo = 0
        for index in range(self.steps):
            where, batch = self._fetch(index, order)
            xb, tb, wb = self.convert(where, *_unpack(batch, where))
            hi = lo + int(xb.shape[0])
            yield HostBatch(index, lo, hi, lo, hi, xb, tb, wb)
            lo = hi


class SequenceSource(_BatchesOneByOne):
    """Batches of a `Sequence`, in a shuffled or the natural order of its indices."""

    replayable = True

    def __init__(self, net: Any, seq: Sequence, class_weight: Any = None) -> None:
        self.seq = seq
        self.steps = len(seq)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"the Sequence has {self.steps!r} batches; it needs at least 1")
        self.convert = BatchConverter(net, class_weight)

    def _fetch(self, index: int, order: np.ndarray | None) -> tuple[str, Any]:
        i = index if order is None else int(order[index])
        where = f"batch {i} of the Sequence"
        try:
            return where, self.seq[i]
        except Exception as exc:
            raise ValueError(f"reading {where} raised {type(exc).__name__}: {exc}") from exc

    def epoch_end(self) -> None:
        self.seq.on_epoch_end()

    def peek_features(self) -> int:
        """The feature count, from batch 0."""
        return _feature_count(self.seq[0], "batch 0 of the Sequence")


class IteratorSource(_BatchesOneByOne):
    """``steps_per_epoch`` batches per epoch drawn from an iterable (a generator); it
    cannot be shuffled or replayed."""

    replayable = False

    def __init__(
        self, net: Any, iterable: Iterable[Any], steps_per_epoch: int | None, class_weight: Any = None
    ) -> None:
        if steps_per_epoch is None:
            try:
                steps_per_epoch = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError("a generator of batches needs steps_per_epoch= (batches per epoch)") from None
        self.steps = steps_per_epoch
        self.iterator = iter(iterable)
        self.convert = BatchConverter(net, class_weight)

    def _fetch(self, index: int, order: np.ndarray | None) -> tuple[str, Any]:
        try:
            return f"batch {index + 1} of the generator", next(self.iterator)
        except StopIteration:
            raise ValueError(f"the batch source ran out after {index} of the {self.steps} batches of "
                             "this epoch (steps_per_epoch)") from None

    def epoch_end(self) -> None:
        """Nothing to do: the next epoch continues the iterable."""

    def peek_features(self) -> int:
        """The feature count, from the first batch (kept for the first step)."""
        try:
            first = next(self.iterator)
        except StopIteration:
            raise ValueError("the batch source is empty") from None
        self.iterator = itertools.chain([first], self.iterator)
        return _feature_count(first, "batch 1 of the generator")


def _feature_count(batch: Any, where: str) -> int:
    x, _, _ = _unpack(batch, where)
    return int(np.shape(x)[1]) if len(np.shape(x)) == 2 else 0


def _check_rows(part: np.ndarray | None, rows: np.ndarray, name: str, where: str) -> None:
    """NaN or inf in the rows read: an error naming the array's own row (as the in-memory
    fit names it) and the batch."""
    if part is None or part.dtype.kind != "f":
        return
    finite = np.isfinite(part)
    if finite.all():
        return
    i = int(np.argmin(finite.reshape(part.shape[0], -1).all(axis=1)))
    what = "NaN" if np.isnan(part[i]).any() else "inf"
    raise ValueError(f"{where}: {name} contains {what} in row {int(rows[i])}")


def in_memory(a: Any) -> Any:
    """An array on disk read whole (for the in-memory path); anything else as it is."""
    return np.asarray(a[:]) if is_on_disk(a) and not isinstance(a, np.ndarray) else a


def _unpack(batch: Any, where: str) -> tuple[Any, Any, Any]:
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        raise ValueError(f"{where} must be a tuple (x, y) or (x, y, sample_weight), got {type(batch).__name__}")
    x, y, *w = batch
    return x, y, (w[0] if w else None)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def read_ahead(batches: Iterator[Any], transfer: Callable[[Any], Any] = lambda b: b,
               depth: int = READ_AHEAD) -> Iterator[Any]:
    """``transfer(batch)`` for each batch, computed by a reader thread up to ``depth``
    batches ahead of the caller. An error in the thread is raised here; when the caller
    stops (an error, a break, Ctrl-C) the thread is told to stop and joined: it never
    outlives the loop."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(transfer(batch)):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the caller, raised there
            put(_Failed(exc))

    thread = threading.Thread(target=read, name="anyxp-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()  # unblock a put
            thread.join(timeout=0.05)
        with contextlib.suppress(AttributeError):
            batches.close()  # type: ignore[attr-defined]
