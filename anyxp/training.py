"""The training loop: data moved to the device once, batches taken there, metrics
accumulated there, and a few Python floats brought back once per epoch.

Everything here runs with the network's device current: its callers are `Network`'s
entry points, which make it current (``_on_device``), and `check_gradients`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import data as data_module
from . import kernels
from .backend import numpy_namespace, to_numpy
from .backup import BackupAndRestore
from .callbacks import Callback, History
from .data import (
    ArraySource,
    HostBatch,
    IteratorSource,
    SequenceSource,
    in_memory,
    is_batch_source,
    is_on_disk,
    read_ahead,
)
from .data import Sequence as BatchSequence
from .distributed import fit_facts, shard
from .errors import TrainingDivergedError
from .layers import Dropout
from .normalization import BatchNorm
from .progress import Progress
from .validation import as_bool, as_features, as_int, as_real, as_targets, sample_weights

if TYPE_CHECKING:
    from .network import Network


# --------------------------------------------------------------------------- data


@dataclass
class DeviceData:
    """Features, targets (n, outputs) and optional sample weights on the device."""

    x: Any
    t: Any
    w: Any
    n: int
    keeps_targets = False  # the epoch's targets are taken from ``t`` in the epoch's order
    replayable = True

    def steps(self, batch_size: int) -> int:
        return -(-self.n // batch_size)  # exact for any integer batch_size

    def epoch_order(self, net: Network, shuffle: bool) -> Any:
        """The epoch's permutation (on the device), drawn from the network's generator."""
        return net.backend.asarray(net.rng.permutation(self.n)) if shuffle else None

    def batches(self, net: Network, order: Any, batch_size: int, comm: Any = None) -> Iterator[Batch]:
        return _batches(net, self, batch_size, order, comm)

    def epoch_end(self) -> None: ...


@dataclass
class StreamData:
    """A source read batch by batch on the host (`anyxp.data`), each batch moved to the
    device as it is needed, read ahead by a thread."""

    source: Any
    n: int | None  # samples per epoch (None: known once read)
    keeps_targets = True  # the epoch's targets and weights are kept from its batches

    @property
    def replayable(self) -> bool:
        return self.source.replayable

    def steps(self, batch_size: int) -> int:
        return -(-self.n // batch_size) if isinstance(self.source, ArraySource) else self.source.steps

    def epoch_order(self, net: Network, shuffle: bool) -> Any:
        """The epoch's permutation on the host: of the samples (the in-memory fit's draw),
        or of a `Sequence`'s batches; a generator is never shuffled."""
        if not shuffle or isinstance(self.source, IteratorSource):
            return None
        return net.rng.permutation(self.n if isinstance(self.source, ArraySource) else self.source.steps)

    def batches(self, net: Network, order: Any, batch_size: int, comm: Any = None) -> Iterator[Batch]:
        backend, dtype = net.backend, net.dtype

        def to_device(batch: HostBatch) -> Batch:
            if batch.x is None:  # an empty shard of a data-parallel batch
                return batch.lo, batch.hi, batch.a, batch.z, None, None, None
            with backend.activate():  # the reader thread's current device (CuPy's is per thread)
                w = None if batch.w is None else backend.upload(batch.w, dtype)
                return (batch.lo, batch.hi, batch.a, batch.z, backend.upload(batch.x, dtype),
                        backend.upload(batch.t, dtype), w)

        return read_ahead(self.source.batches(order, batch_size, comm), to_device)

    def epoch_end(self) -> None:
        end = getattr(self.source, "epoch_end", None)
        if end is not None:
            end()


Batch = tuple[int, int, int, int, Any, Any, Any]  # lo, hi, a, z, x, targets, weights (device)


@dataclass
class Data:
    """Validated host (or already-native) features, targets and weights."""

    x: Any
    t: np.ndarray
    w: np.ndarray | None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def split(self, at: int) -> tuple[Data, Data]:
        w = self.w
        return (
            Data(self.x[:at, ...], self.t[:at], None if w is None else w[:at]),
            Data(self.x[at:, ...], self.t[at:], None if w is None else w[at:]),
        )

    def to_device(self, net: Network) -> DeviceData:
        b = net.backend
        w = None if self.w is None else b.asarray(self.w, dtype=net.dtype)
        x, t = b.asarray(self.x, dtype=net.dtype), b.asarray(self.t, dtype=net.dtype)
        return DeviceData(x, t, w, int(self.x.shape[0]))


def prepare_data(
    net: Network,
    x: Any,
    y: Any,
    *,
    sample_weight: Any = None,
    class_weight: dict | None = None,
    names: tuple[str, str] = ("x", "y"),
    expected_features: int | None = None,
) -> Data:
    """Convert and validate ``(x, y)`` (and weights) against the network, in its dtype;
    labels become targets. Changes no state; the caller's arrays are never written."""
    x = prepare_features(net, x, names[0], expected_features)
    outputs = net._check_sizes(net.layers, x.shape[1])
    n = int(x.shape[0])
    t, labels = as_targets(
        y, names[1], n=n, outputs=outputs, loss_name=net.loss.name, dtype=net.dtype_name, x_name=names[0]
    )
    weight_name = names[0].removesuffix("x") + "sample_weight"  # "validation_data sample_weight"
    w = sample_weights(n, labels, max(outputs, 2), class_weight, sample_weight, net.dtype_name, weight_name)
    return Data(x, t, w)


def prepare_features(net: Network, x: Any, name: str = "x", expected: int | None = None) -> Any:
    """``x`` converted and validated for ``net`` (`as_features`): a 2-D array in the
    network's dtype with as many columns as the network takes, if it knows."""
    if not net.layers:
        raise ValueError("the network has no layers; add some with net.add(...)")
    first = net.layers[0]
    declared = getattr(first, "declared_input_size", None)
    expected = expected or net.input_size or declared
    return as_features(x, name, net.backend, net.dtype_name, expected)


# --------------------------------------------------------------------------- fit


def fit(
    net: Network,
    x: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int,
    validation_data: Any,
    validation_split: float,
    shuffle: bool,
    class_weight: dict | None,
    sample_weight: Any,
    callbacks: Sequence[Callback],
    verbose: int,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    stream: bool | None = None,
    comm: Any = None,
) -> History:
    epochs = as_int(epochs, "epochs", minimum=0)
    initial_epoch = as_int(initial_epoch, "initial_epoch", minimum=0)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    validation_split = as_real(validation_split, "validation_split", minimum=0, maximum=1, open_max=True)
    if validation_split and validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    shuffle = as_bool(shuffle, "shuffle")
    verbose = _verbosity(verbose)
    callbacks = _callback_list(callbacks)
    if steps_per_epoch is not None:
        steps_per_epoch = as_int(steps_per_epoch, "steps_per_epoch", minimum=1)
    if stream is not None:
        stream = as_bool(stream, "stream")

    train = stream_data(net, x, y, sample_weight, class_weight, stream, steps_per_epoch)
    if train is None:
        x, y, sample_weight = in_memory(x), in_memory(y), in_memory(sample_weight)
        train, val = _in_memory(net, x, y, sample_weight, class_weight, validation_data, validation_split)
    else:
        train, val = _streamed_validation(net, train, validation_data, validation_split, class_weight, stream)
    features = _features(net, train)
    net.build(features)
    if train.n is not None:
        _check_batch_norm_batches(net, train.n, batch_size)
    if comm is not None:  # before any transport is set up: disagreeing ranks all raise, none hangs
        if train.n is None or (val is not None and val.n is None):
            raise ValueError("data-parallel training streams arrays (memmap, h5py, zarr), "
                             "not a Sequence or a generator")
        val_n = 0 if val is None else val.n
        comm.agree(fit_facts(net, comm, train.n, val_n, batch_size, epochs, shuffle))
    if isinstance(train, Data):
        train = train.to_device(net)
    if isinstance(val, Data):
        val = val.to_device(net)
    if comm is not None:
        comm = comm.bind(net.backend)
        comm.broadcast_(net._theta)  # every rank starts from rank 0's weights
        verbose = verbose if comm.is_main else 0
    loop = _Loop(net, train, val, epochs, initial_epoch, batch_size, shuffle, callbacks, verbose, comm)
    # a diverging step overflows: the loop detects it and raises one clear error, so
    # NumPy's floating-point warnings would only be noise before it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return loop.run()


def _in_memory(
    net: Network, x: Any, y: Any, sample_weight: Any, class_weight: Any, validation_data: Any,
    validation_split: float,
) -> tuple[Data, Data | None]:
    """Training and validation data converted in memory (to be moved to the device whole)."""
    val = None
    data = prepare_data(net, x, y, sample_weight=sample_weight, class_weight=class_weight)
    if validation_split:
        at = _split_point(data.n, validation_split)
        data, val = data.split(at)
        if class_weight is not None:  # it weighs the training rows only (as in Keras)
            plain = sample_weights(data.n + val.n, None, 2, None, sample_weight, net.dtype_name)
            val = Data(val.x, val.t, None if plain is None else plain[at:])
        return data, val
    if validation_data is not None:
        vx, vy, vw = (in_memory(part) for part in _validation_tuple(validation_data))
        val = prepare_data(
            net, vx, vy, sample_weight=vw, names=("validation_data x", "validation_data y"),
            expected_features=data.x.shape[1],
        )
    return data, val


def _split_point(n: int, validation_split: float) -> int:
    at = int(n * (1.0 - validation_split))
    if at < 1 or at >= n:
        raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples out of {n}")
    return at


def _validation_tuple(validation_data: Any) -> tuple[Any, Any, Any]:
    if not isinstance(validation_data, tuple | list):
        raise TypeError(f"validation_data must be a tuple (x_val, y_val), got {type(validation_data).__name__}")
    if len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val)")
    vx, vy, *vw = validation_data
    return vx, vy, (vw[0] if vw else None)


def stream_data(
    net: Network, x: Any, y: Any, sample_weight: Any, class_weight: Any, stream: bool | None,
    steps_per_epoch: int | None = None, names: tuple[str, str] = ("x", "y"),
) -> StreamData | None:
    """The data as a stream (`anyxp.data`), or None for the in-memory path: a batch
    source always streams; arrays stream when asked (``stream=True``), or when one lives
    on disk and a copy in memory would take more than half of the memory available."""
    if is_batch_source(x):
        if y is not None or sample_weight is not None:
            raise ValueError(f"{names[0]} is a source of batches, which hold the targets (and weights): "
                             f"pass {names[1]}=None")
        if stream is False:
            raise ValueError(f"{names[0]} is a source of batches: it is always streamed (stream=False cannot hold)")
        if isinstance(x, BatchSequence):
            return StreamData(SequenceSource(net, x, class_weight), None)
        return StreamData(IteratorSource(net, x, steps_per_epoch, class_weight), None)
    if steps_per_epoch is not None:
        raise ValueError("steps_per_epoch is for a generator of batches; arrays give their own")
    on_disk = any(is_on_disk(a) for a in (x, y, sample_weight))
    if stream is False or (stream is None and not on_disk) or y is None:
        return None
    if stream is None:
        width = int(x.shape[1]) if len(getattr(x, "shape", ())) == 2 else 1
        if not data_module.too_big_for_memory(int(x.shape[0]) * width * np.dtype(net.dtype_name).itemsize):
            return None
    source = ArraySource(net, x, y, sample_weight, class_weight, names)
    return StreamData(source, source.n)


def _streamed_validation(
    net: Network, train: StreamData, validation_data: Any, validation_split: float, class_weight: Any,
    stream: bool | None,
) -> tuple[StreamData, StreamData | Data | None]:
    """Validation data beside streamed training data: its last rows (``validation_split``,
    arrays only), or ``validation_data`` (a Sequence, or arrays, streamed when they live on
    disk or when asked)."""
    if validation_split:
        if not isinstance(train.source, ArraySource):
            raise ValueError("validation_split takes the last rows of arrays: pass validation_data with a Sequence "
                             "or a generator")
        at = _split_point(train.n, validation_split)
        head, tail = train.source.split(at)
        return StreamData(head, head.n), StreamData(tail, tail.n)
    if validation_data is None:
        return train, None
    if isinstance(validation_data, BatchSequence):
        return train, StreamData(SequenceSource(net, validation_data), None)
    vx, vy, vw = _validation_tuple(validation_data)
    names = ("validation_data x", "validation_data y")
    val = stream_data(net, vx, vy, vw, None, stream, names=names)
    if val is None:
        vx, vy, vw = in_memory(vx), in_memory(vy), in_memory(vw)
        val = prepare_data(net, vx, vy, sample_weight=vw, names=names, expected_features=_features(net, train))
    return train, val


def _features(net: Network, data: Data | StreamData) -> int:
    """The feature count of the data (a source's first batch is read for it if the
    network does not know it)."""
    if isinstance(data, Data):
        return int(data.x.shape[1])
    source = data.source
    if isinstance(source, ArraySource):
        return int(source.x.shape[1])
    known = net.input_size or getattr(net.layers[0], "declared_input_size", None)
    if known is not None:
        return known
    return source.peek_features()


def _check_batch_norm_batches(net: Network, n: int, batch_size: int) -> None:
    """A BatchNorm cannot train on a batch of one sample (as in PyTorch): say so before
    the first update, not at the epoch's last batch."""
    last = n % batch_size or min(n, batch_size)
    if last == 1 and any(isinstance(layer, BatchNorm) for layer in net.layers):
        raise ValueError(
            f"BatchNorm needs more than 1 sample per training batch, and {n} samples in batches of "
            f"{batch_size} leave a last batch of 1: choose another batch_size (or drop a sample)"
        )


def _verbosity(verbose: Any) -> int:
    """0, 1 or 2 (False and True count as 0 and 1)."""
    level = int(verbose) if isinstance(verbose, bool | np.bool_) else as_int(verbose, "verbose")
    if level not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return level


def _callback_list(callbacks: Any) -> list[Callback]:
    """A list of `Callback` instances (None: none); at most one `BackupAndRestore`."""
    try:
        items = [] if callbacks is None else list(callbacks)
    except TypeError:
        items = None
    if items is None or isinstance(callbacks, Callback | str):
        raise TypeError(f"callbacks must be a list of Callback instances, got {type(callbacks).__name__}")
    for cb in items:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
    if sum(isinstance(cb, BackupAndRestore) for cb in items) > 1:
        raise ValueError("pass at most one BackupAndRestore callback")
    return items


def _batches(
    net: Network, data: DeviceData, batch_size: int, order: Any, comm: Any = None
) -> Iterator[tuple[int, int, int, int, Any, Any, Any]]:
    """(start, stop, a, b, x, targets, weights) of each (global) batch ``start:stop``,
    taken on the device; with ``comm``, x/targets/weights are this rank's shard, rows
    ``a:b`` of the epoch (x is None for an empty one)."""
    xp = net.xp
    x, t, w, n = data.x, data.t, data.w, data.n
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        a, b = (lo, hi) if comm is None else shard(lo, hi, comm.rank, comm.size)
        if a == b:
            yield lo, hi, a, b, None, None, None
        elif order is None:
            yield lo, hi, a, b, x[a:b, ...], t[a:b, ...], (None if w is None else w[a:b])
        else:
            idx = order[a:b]
            wb = None if w is None else xp.take(w, idx, axis=0)
            yield lo, hi, a, b, xp.take(x, idx, axis=0), xp.take(t, idx, axis=0), wb


class _Loop:
    """One `fit`: the epochs, their callbacks and logs, the resume point."""

    def __init__(
        self, net: Network, data: DeviceData, val: DeviceData | None, epochs: int, initial_epoch: int,
        batch_size: int, shuffle: bool, callbacks: list[Callback], verbose: int, comm: Any,
    ) -> None:
        self.net, self.data, self.val, self.comm = net, data, val, comm
        self.epochs, self.initial_epoch, self.batch_size, self.shuffle = epochs, initial_epoch, batch_size, shuffle
        self.history = History()
        self.callbacks = [self.history, *callbacks]
        self.backup = next((cb for cb in callbacks if isinstance(cb, BackupAndRestore)), None)
        self.steps = data.steps(batch_size)
        names = ["loss", *(m.name for m in net.metrics)]
        self.metric_names = [*names, *(f"val_{m}" for m in names if val is not None)]
        self.params = {"epochs": epochs, "steps": self.steps, "batch_size": batch_size, "samples": data.n,
                       "metrics": self.metric_names, "is_main_process": comm is None or comm.is_main,
                       "initial_epoch": initial_epoch}
        self.verbose = verbose
        self.progress: Progress | None = None

    def run(self) -> History:
        net = self.net
        net.history = self.history  # callbacks (EarlyStopping) reach it, as in Keras
        for cb in self.callbacks:
            cb.set_context(net, self.params)
        net.stop_training = False
        try:
            for cb in self.callbacks:
                cb.on_train_begin()
            start = self.initial_epoch
            if self.backup is not None:  # after every on_train_begin: the restored states win
                start = self.backup.restore(self.callbacks, default=start)
            self.progress = Progress(self.verbose, epochs=self.epochs, steps=self.steps, initial_epoch=start)
            self._epochs(start)
        except BaseException:
            if self.progress is not None:
                self.progress.close()
            for cb in self.callbacks:
                cb.on_train_abort()
            raise
        self.progress.close()
        for cb in self.callbacks:
            cb.on_train_end()
        return self.history

    def _epochs(self, start: int) -> None:
        net, data = self.net, self.data
        outputs = _EpochOutputs(net, data.n, self.steps, self.comm, keep_targets=data.keeps_targets)
        for epoch in range(start, self.epochs):
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch)
            # for a replay if this epoch diverges; the buffers are reused from fit to fit
            snapshot = net._replay_snapshot = net._snapshot_state(net._replay_snapshot)
            order = data.epoch_order(net, self.shuffle)
            self.progress.epoch_begin(epoch)
            outputs.reset()
            self._train_batches(order, outputs)
            logs = self._epoch_logs(outputs, order, snapshot, epoch)
            data.epoch_end()  # after a replay of the epoch, if it diverged
            self.progress.epoch_end(epoch, logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.backup is not None:  # after every callback has seen the epoch end
                self.backup.save(epoch, self.callbacks)
            if net.stop_training:
                break

    def _train_batches(self, order: Any, outputs: _EpochOutputs) -> None:
        """One step per batch of the epoch, in ``order``."""
        net, comm = self.net, self.comm
        batch_callbacks = [cb for cb in self.callbacks if cb.wants_batches]
        # dropout masks: a function of (seed, layer, optimizer.steps, element); nothing to reseed
        dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
        optimizer, step_fn = net.optimizer, net._forward_backward
        with contextlib.closing(self.data.batches(net, order, self.batch_size, comm)) as batches:
            for b, (lo, hi, a, z, xb, tb, wb) in enumerate(batches):
                for cb in batch_callbacks:
                    cb.on_batch_begin(b)
                for layer in dropouts:  # a shard's masks are its rows of the global batch's masks
                    layer.row_offset = a - lo
                if comm is None:
                    loss_sum, out = step_fn(xb, tb, wb)
                else:
                    loss_sum, out = _sharded_gradients(net, comm, xb, tb, wb, hi - lo)
                optimizer.step()
                outputs.add(b, lo, hi, a, z, loss_sum, out, tb, wb)
                if batch_callbacks and out is not None:  # asked for: one sync per batch (this rank's shard)
                    _batch_end(net, batch_callbacks, b, loss_sum, out, tb, wb)
                self.progress.batch_done()

    def _epoch_logs(self, outputs: _EpochOutputs, order: Any, snapshot: Any, epoch: int) -> dict[str, float]:
        """The epoch's loss and metrics, the validation's, and the learning rate; raises
        `TrainingDivergedError` (weights restored) if the epoch diverged."""
        net, data, comm = self.net, self.data, self.comm
        # the loss sum, the metrics' statistics and one check that every weight is finite,
        # in one transfer: the loss of a step is computed before its update, so the last
        # update of an epoch (or the only one of a full batch) can blow up with every loss finite
        loss_sum, (stats, sizes) = outputs.totals(data, order)
        loss_total, finite, *stat_values = _to_host(net, [loss_sum, _all_finite(net), *stats], comm)
        logs = {"loss": loss_total / outputs.samples, **_finish_metrics(net, stat_values, sizes)}
        weights_finite = finite == (1 if comm is None else comm.size)
        if not (math.isfinite(logs["loss"]) and weights_finite):
            self.progress.close()
            if comm is not None:  # every rank sees the same reduced values: all stop here
                net._restore_state(snapshot)
                what = f"the loss became {logs['loss']}" if not math.isfinite(logs["loss"]) else \
                    "the weights became non-finite"
                raise TrainingDivergedError(
                    f"training diverged: {what} in epoch {epoch + 1}/{self.epochs}; "
                    "the network keeps the weights from the start of that epoch", epoch=epoch + 1, batch=0,
                )
            _locate_divergence(net, data, self.batch_size, order, snapshot, epoch, self.epochs)
        if self.val is not None:
            logs.update({f"val_{k}": v for k, v in evaluate_data(net, self.val, None, comm).items()})
        logs["learning_rate"] = net.optimizer.current_lr
        return logs


class _EpochOutputs:
    """The epoch's per-batch loss sums, and its outputs (with its targets and weights when
    the data is streamed) for the metrics: one cheap store per batch into device buffers
    (or, for a source of unknown length, a list of the batches' arrays); the metrics'
    statistics are computed once per epoch over all of it (``totals``)."""

    def __init__(self, net: Network, n: int | None, steps: int, comm: Any, keep_targets: bool = False) -> None:
        xp, dev = net.xp, net.backend.device
        self.net, self.xp, self.comm, self.n = net, xp, comm, n
        self.losses = xp.zeros((steps,), dtype=net.dtype, device=dev)
        self.samples = 0  # rows of the (global) batches seen this epoch
        self.keep = bool(net.metrics)
        self.keep_targets = keep_targets and self.keep
        self.outputs = self.targets = self.weights = None
        self.parts: list[tuple[Any, Any, Any]] = []
        if self.keep and n is not None:
            self.outputs = xp.zeros((n, net.output_size), dtype=net.dtype, device=dev)
            if self.keep_targets:
                self.targets = xp.zeros((n, net.output_size), dtype=net.dtype, device=dev)

    def reset(self) -> None:
        """Data-parallel: each rank fills its own rows and the rest must read 0 (summed)."""
        self.samples = 0
        self.parts = []
        if self.comm is not None:
            for buffer in (self.outputs, self.targets, self.weights):
                if buffer is not None:
                    buffer[...] = 0.0

    def add(self, b: int, lo: int, hi: int, a: int, z: int, loss_sum: Any, out: Any, tb: Any, wb: Any) -> None:
        """Batch ``b`` (rows ``lo:hi`` of the epoch, this rank's ``a:z``): its loss sum,
        outputs, and when kept, targets and weights."""
        self.samples = hi
        if out is None:  # an empty shard of a distributed batch
            self.losses[b] = 0.0
            return
        self.losses[b] = loss_sum
        if not self.keep:
            return
        if self.outputs is None:
            self.parts.append((out, tb, wb))
            return
        self.outputs[a:z, ...] = out
        if self.keep_targets:
            self.targets[a:z, ...] = tb
            if wb is not None:
                if self.weights is None:
                    self.weights = self.xp.zeros((self.n,), dtype=self.net.dtype, device=self.net.backend.device)
                self.weights[a:z] = wb

    def totals(self, data: Any, order: Any) -> tuple[Any, tuple[list[Any], list[int]]]:
        """The loss sum and the metrics' statistics (device arrays, and their sizes) of
        the epoch over ``data`` taken in ``order``."""
        xp = self.xp
        if not self.keep:
            return xp.sum(self.losses), ([], [])
        if self.outputs is None:  # a source of unknown length: its batches' arrays, joined
            outputs, targets, weights = self._joined()
        elif self.keep_targets:
            outputs, targets, weights = self.outputs, self.targets, self.weights
        else:
            outputs = self.outputs
            targets = data.t if order is None else xp.take(data.t, order, axis=0)
            weights = data.w if order is None or data.w is None else xp.take(data.w, order, axis=0)
        if self.comm is not None:  # every rank gets every rank's rows
            for buffer in (outputs, targets, weights) if self.keep_targets else (outputs,):
                if buffer is not None:
                    self.comm.allreduce_sum_(buffer)
        return xp.sum(self.losses), _metric_statistics(self.net, outputs, targets, weights, self.comm)

    def _joined(self) -> tuple[Any, Any, Any]:
        xp = self.xp
        outs, targets, weights = zip(*self.parts, strict=True)
        if all(w is None for w in weights):
            joined_weights = None
        else:  # a batch without weights weighs each sample 1
            joined_weights = xp.concat([xp.ones((o.shape[0],), dtype=o.dtype, device=self.net.backend.device)
                                        if w is None else w for o, w in zip(outs, weights, strict=True)])
        return xp.concat(list(outs)), xp.concat(list(targets)), joined_weights


def _metric_statistics(
    net: Network, outputs: Any, targets: Any, weights: Any, comm: Any = None
) -> tuple[list[Any], list[int]]:
    """Each metric's statistics over the outputs (probabilities: the loss's link is
    applied to logits), as a list of one 1-D device array (none without metrics), and
    how many each metric has. Data-parallel, every rank holds them all, and only rank 0's
    count in the sum the transfer makes."""
    if not net.metrics:
        return [], []
    xp = net.xp
    pred = net._probabilities(_class_major(xp, outputs))
    targets = _class_major(xp, targets)
    on_numpy = kernels.metrics_on_numpy(net.backend)
    if on_numpy:  # NumPy views of a CPU backend's arrays (no copy)
        xp = numpy_namespace()
        pred, targets, weights = (None if a is None else to_numpy(a) for a in (pred, targets, weights))
    computed: dict[Any, Any] = {}  # precision, recall and f1 share theirs
    for m in net.metrics:
        if m.statistics_key not in computed:
            stats = m.statistics(xp, pred, targets, weights, net._task)
            computed[m.statistics_key] = xp.reshape(xp.astype(stats, pred.dtype, copy=False), (-1,))
    parts = [computed[m.statistics_key] for m in net.metrics]
    stats = xp.concat(parts)
    if on_numpy:
        stats = net.backend.asarray(stats, dtype=net.dtype)
    if comm is not None and comm.rank != 0:
        stats = stats * 0.0
    return [stats], [int(p.shape[0]) for p in parts]


def _class_major(xp: Any, x: Any) -> Any:
    """The same (n, K) values, stored column after column (the transposed view of a (K, n)
    copy; no copy when they already are): NumPy reduces and sorts along contiguous columns
    many times faster than across short rows, and the metrics work column-wise."""
    n, k = x.shape
    return xp.permute_dims(xp.reshape(xp.reshape(xp.permute_dims(x, (1, 0)), (-1,)), (k, n)), (1, 0))


def _finish_metrics(net: Network, values: list[float], sizes: list[int]) -> dict[str, float]:
    """The metrics' values from their statistics, brought to the host as ``values``."""
    logs, at = {}, 0
    for metric, size in zip(net.metrics, sizes, strict=True):
        logs[metric.name] = metric.finish(np.asarray(values[at : at + size], dtype=np.float64), net._task)
        at += size
    return logs


def _sharded_gradients(net: Network, comm: Any, xb: Any, tb: Any, wb: Any, global_size: int) -> tuple[Any, Any]:
    """This rank's share of a global batch's gradient, summed over ranks in one all-reduce
    of the flat buffer: each rank weighs its shard's mean gradient by shard / batch.
    BatchNorm layers use the global batch's statistics (their own all-reduces)."""
    norms = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
    for layer in norms:
        layer.sync = (comm, global_size)
    try:
        if xb is None:
            net._grad[...] = 0.0
            loss_sum, out = None, None
            for layer in norms:  # an empty shard: take part in the layers' all-reduces, in order
                layer.join(layer.input_size)
            for layer in reversed(norms):  # the others' backward reaches only those after the first parameter
                if net.layers.index(layer) >= net._trainable_from:
                    layer.join_backward(layer.input_size)
        else:
            loss_sum, out = net._forward_backward(xb, tb, wb)
            if xb.shape[0] != global_size:
                net._grad *= xb.shape[0] / global_size
    finally:
        for layer in norms:
            layer.sync = None
    comm.allreduce_sum_(net._grad)
    return loss_sum, out


def _batch_end(net: Network, callbacks: list[Callback], b: int, loss_sum: Any, out: Any, tb: Any, wb: Any) -> None:
    """Per-batch logs (this batch's loss and metrics): one transfer."""
    size = out.shape[0]
    stats, sizes = _metric_statistics(net, out, tb, wb)
    loss, *values = _to_host(net, [loss_sum, *stats])
    logs = {"loss": loss / size, **_finish_metrics(net, values, sizes)}
    for cb in callbacks:
        cb.on_batch_end(b, logs)


def _all_finite(net: Network) -> Any:
    """1 if every parameter (and running statistic) is finite, else 0 (a 0-d device
    array; no sync)."""
    xp = net.xp
    finite = xp.all(xp.isfinite(net._theta)) & xp.all(xp.isfinite(net._state))
    return xp.astype(finite, net.dtype)


def _to_host(net: Network, values: list[Any], comm: Any = None) -> list[float]:
    """Device values (0-d or 1-d) as one list of Python floats: one transfer (and, across
    processes, one reduction of a few floats), once per epoch."""
    xp = net.xp
    dev = net.backend.device
    stacked = xp.concat([xp.reshape(xp.asarray(value, dtype=net.dtype, device=dev), (-1,)) for value in values])
    floats = [float(v) for v in net.backend.to_numpy(stacked)]
    return floats if comm is None else comm.allreduce_floats(floats)


def _locate_divergence(
    net: Network, data: DeviceData | StreamData, batch_size: int, order: Any, snapshot: Any,
    epoch: int, epochs: int,
) -> None:
    """The epoch's loss or weights are not finite: replay it from its start, checking each
    step on the host, and stop before the first step that is not finite. Raises, with the
    network's weights finite: those from before the bad step (or from the epoch's start;
    a generator cannot be replayed)."""
    net._restore_state(snapshot)  # with the optimizer's step count: the same dropout masks
    steps = data.steps(batch_size)
    replay = data.batches(net, order, batch_size) if data.replayable else (batch for batch in ())
    with contextlib.closing(replay) as batches:
        _replay(net, batches, snapshot, epoch, epochs, steps)


def _replay(net: Network, batches: Iterator[Batch], snapshot: Any, epoch: int, epochs: int, steps: int) -> None:
    """Step through the epoch's batches checking each on the host; raise at the first bad one."""
    for b, (*_, xb, tb, wb) in enumerate(batches):
        before = net._snapshot_state()
        loss, _ = net._forward_backward(xb, tb, wb)
        value = float(net.backend.to_numpy(loss))
        bad = not math.isfinite(value)
        if not bad:
            net.optimizer.step()
            bad = not bool(_all_finite(net))
        if bad:
            net._restore_state(before)
            what = f"the loss became {value}" if not math.isfinite(value) else "the weights became non-finite"
            raise TrainingDivergedError(
                f"training diverged: {what} at epoch {epoch + 1}/{epochs}, batch {b + 1}/{steps}; "
                "the network keeps the weights from before that batch (try a lower learning rate)",
                epoch=epoch + 1, batch=b + 1,
            )
    net._restore_state(snapshot)  # the replay did not reproduce the failure
    raise TrainingDivergedError(
        f"training diverged at epoch {epoch + 1}/{epochs}; the network keeps the weights "
        "from the start of that epoch", epoch=epoch + 1, batch=0,
    )


EVAL_BATCH = 8192  # samples per forward pass in evaluate / predict when not given


def evaluate_data(
    net: Network, data: DeviceData | StreamData, batch_size: int | None, comm: Any = None
) -> dict[str, float]:
    """Loss and metrics over device data or a stream, accumulated on the device; one
    transfer. With ``comm``, each rank evaluates its shard of each batch and the sums are
    reduced."""
    batch_size = batch_size or EVAL_BATCH
    outputs = _EpochOutputs(net, data.n, data.steps(batch_size), comm, keep_targets=data.keeps_targets)
    with contextlib.closing(data.batches(net, None, batch_size, comm)) as batches:
        for b, (lo, hi, a, z, xb, tb, wb) in enumerate(batches):
            out = None if xb is None else net._forward(xb, False)
            loss_sum = None if xb is None else net.loss.value(out, tb, wb, logits=net._logits) * (z - a)
            outputs.add(b, lo, hi, a, z, loss_sum, out, tb, wb)
    loss_sum, (stats, sizes) = outputs.totals(data, None)
    if net._regularized:  # once per sample: each rank its rows' share
        loss_sum = loss_sum + net._penalty() * (outputs.samples if comm is None else outputs.samples / comm.size)
    loss_total, *values = _to_host(net, [loss_sum, *stats], comm)
    return {"loss": loss_total / outputs.samples, **_finish_metrics(net, values, sizes)}


def predict_stream(net: Network, x: Any, batch_size: int, out: Any = None) -> Any:
    """`Network.predict` batch by batch from an array on disk (or in memory), the next
    batch read while the current one runs; into ``out`` when given, else a new host array."""
    if len(getattr(x, "shape", ())) != 2:
        raise ValueError(f"x must be 2-D (samples, features), got shape {tuple(getattr(x, 'shape', ()))}")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("x is empty (0 samples)")
    net.build(int(x.shape[1]))
    outputs = net.output_size
    if out is None:
        out = np.empty((n, outputs), dtype=net.dtype_name)
    elif tuple(getattr(out, "shape", ())) != (n, outputs):
        raise ValueError(f"out has shape {tuple(getattr(out, 'shape', ()))}, expected ({n}, {outputs})")
    backend = net.backend
    expected = net.input_size

    def read(lo: int) -> tuple[int, Any]:
        hi = min(n, lo + batch_size)
        try:
            rows = np.asarray(x[lo:hi])
        except OSError as exc:
            raise OSError(f"reading batch {lo // batch_size + 1} (x rows {lo}-{hi - 1}) failed: {exc}") from exc
        host = as_features(rows, f"x (rows {lo}-{hi - 1})", None, net.dtype_name, expected)
        with backend.activate():
            return lo, backend.asarray(host, dtype=net.dtype)

    with contextlib.closing(read_ahead(map(read, range(0, n, batch_size)))) as batches:
        for lo, xb in batches:
            a = xb
            for layer in net.layers:
                a = layer.forward(a, False)
            out[lo : lo + a.shape[0]] = backend.to_numpy(a)
    return out
