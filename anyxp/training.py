"""The training loop: data moved to the device once, batches taken there, metrics
accumulated there, and a few Python floats brought back once per epoch.

Everything here runs with the network's device current: its callers are `Network`'s
entry points, which make it current (``_on_device``), and `check_gradients`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .callbacks import Callback, History
from .distributed import fit_facts, shard
from .errors import TrainingDivergedError
from .layers import Dropout
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
    labels: Any = None  # class index per sample (argmax of t), for accuracy


@dataclass
class Data:
    """Validated host (or already-native) features, targets and weights."""

    x: Any
    t: np.ndarray
    w: np.ndarray | None

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
        labels = None
        if "accuracy" in net.metrics and net._accuracy_by_argmax(self.t.shape[1]):
            labels = b.asarray(np.argmax(self.t, axis=1))
        return DeviceData(x, t, w, int(self.x.shape[0]), labels)


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
    comm: Any = None,
) -> History:
    epochs = as_int(epochs, "epochs", minimum=0)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    validation_split = as_real(validation_split, "validation_split", minimum=0, maximum=1, open_max=True)
    if validation_split and validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    shuffle = as_bool(shuffle, "shuffle")
    verbose = _verbosity(verbose)
    callbacks = _callback_list(callbacks)

    data = prepare_data(net, x, y, sample_weight=sample_weight, class_weight=class_weight)
    val = None
    if validation_split:
        at = int(data.x.shape[0] * (1.0 - validation_split))
        if at < 1 or at >= data.x.shape[0]:
            raise ValueError(
                f"validation_split={validation_split} leaves no training or no validation "
                f"samples out of {data.x.shape[0]}"
            )
        data, val = data.split(at)
    elif validation_data is not None:
        if not isinstance(validation_data, tuple | list):
            raise TypeError(f"validation_data must be a tuple (x_val, y_val), got {type(validation_data).__name__}")
        if len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val)")
        vx, vy, *vw = validation_data
        val = prepare_data(
            net, vx, vy, sample_weight=vw[0] if vw else None,
            names=("validation_data x", "validation_data y"), expected_features=data.x.shape[1],
        )

    net.build(data.x.shape[1])
    if comm is not None:  # before any transport is set up: disagreeing ranks all raise, none hangs
        val_n = 0 if val is None else int(val.x.shape[0])
        comm.agree(fit_facts(net, comm, int(data.x.shape[0]), val_n, batch_size, epochs, shuffle))
    train_dev = data.to_device(net)
    val_dev = val.to_device(net) if val is not None else None
    if comm is not None:
        comm = comm.bind(net.backend)
        comm.broadcast_(net._theta)  # every rank starts from rank 0's weights
        verbose = verbose if comm.is_main else 0
    # a diverging step overflows: the loop detects it and raises one clear error, so
    # NumPy's floating-point warnings would only be noise before it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = _train(net, train_dev, val_dev, epochs, batch_size, shuffle, callbacks, verbose, comm)
    net.history = history
    return history


def _verbosity(verbose: Any) -> int:
    """0, 1 or 2 (False and True count as 0 and 1)."""
    level = int(verbose) if isinstance(verbose, bool | np.bool_) else as_int(verbose, "verbose")
    if level not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return level


def _callback_list(callbacks: Any) -> list[Callback]:
    """A list of `Callback` instances (None: none)."""
    try:
        items = [] if callbacks is None else list(callbacks)
    except TypeError:
        items = None
    if items is None or isinstance(callbacks, Callback | str):
        raise TypeError(f"callbacks must be a list of Callback instances, got {type(callbacks).__name__}")
    for cb in items:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
    return items


def _batches(
    net: Network, data: DeviceData, batch_size: int, order: Any, comm: Any = None
) -> Iterator[tuple[int, int, Any, Any, Any]]:
    """(start, stop, x, targets, weights) of each (global) batch, taken on the device;
    with ``comm``, x/targets/weights are this rank's shard (x is None for an empty one)."""
    xp = net.xp
    x, t, w, n = data.x, data.t, data.w, data.n
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        a, b = (lo, hi) if comm is None else shard(lo, hi, comm.rank, comm.size)
        if a == b:
            yield lo, hi, None, None, None
        elif order is None:
            yield lo, hi, x[a:b, ...], t[a:b, ...], (None if w is None else w[a:b])
        else:
            idx = order[a:b]
            wb = None if w is None else xp.take(w, idx, axis=0)
            yield lo, hi, xp.take(x, idx, axis=0), xp.take(t, idx, axis=0), wb


def _train(
    net: Network,
    data: DeviceData,
    val: DeviceData | None,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    callbacks: list[Callback],
    verbose: int,
    comm: Any = None,
) -> History:
    history = History()
    all_callbacks = [history, *callbacks]
    accuracy = "accuracy" in net.metrics
    metric_names = ["loss", *(["accuracy"] if accuracy else [])]
    if val is not None:
        metric_names += [f"val_{m}" for m in metric_names]
    steps = -(-data.n // batch_size)  # exact for any integer batch_size
    params = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "samples": data.n,
              "metrics": metric_names, "is_main_process": comm is None or comm.is_main}
    for cb in all_callbacks:
        cb.set_context(net, params)
    batch_callbacks = [cb for cb in all_callbacks if cb.wants_batches]

    net.stop_training = False
    for cb in all_callbacks:
        cb.on_train_begin()
    try:
        _epochs(net, data, val, epochs, batch_size, shuffle, all_callbacks, batch_callbacks, verbose, comm)
    except BaseException:
        for cb in all_callbacks:
            cb.on_train_abort()
        raise
    for cb in all_callbacks:
        cb.on_train_end()
    return history


class _EpochAccumulator:
    """Per-batch loss sums (and predictions) written into device buffers, one cheap
    store per batch; reduced and brought to the host once per epoch."""

    def __init__(self, net: Network, data: DeviceData, steps: int, sharded: bool) -> None:
        xp, dev = net.xp, net.backend.device
        self.net, self.data, self.xp = net, data, xp
        self.losses = xp.zeros((steps,), dtype=net.dtype, device=dev)
        accuracy = "accuracy" in net.metrics
        self.by_argmax = accuracy and data.labels is not None and not sharded
        self.by_batch = accuracy and not self.by_argmax
        if self.by_argmax:
            self.predictions = xp.zeros((data.n,), dtype=data.labels.dtype, device=dev)
        if self.by_batch:
            self.correct = xp.zeros((steps,), dtype=net.dtype, device=dev)

    def add(self, b: int, lo: int, hi: int, loss_sum: Any, out: Any, tb: Any) -> None:
        if out is None:  # an empty shard of a distributed batch
            self.losses[b] = 0.0
            if self.by_batch:
                self.correct[b] = 0.0
            return
        self.losses[b] = loss_sum
        if self.by_argmax:
            self.predictions[lo:hi] = self.xp.argmax(out, axis=1)
        elif self.by_batch:
            self.correct[b] = self.net._correct(out, tb)

    def totals(self, order: Any) -> tuple[Any, ...]:
        xp = self.xp
        totals = [xp.sum(self.losses)]
        if self.by_argmax:
            labels = self.data.labels if order is None else xp.take(self.data.labels, order, axis=0)
            totals.append(xp.sum(xp.astype(self.predictions == labels, self.net.dtype)))
        elif self.by_batch:
            totals.append(xp.sum(self.correct))
        return tuple(totals)


def _epochs(
    net: Network, data: DeviceData, val: DeviceData | None, epochs: int, batch_size: int,
    shuffle: bool, all_callbacks: list[Callback], batch_callbacks: list[Callback], verbose: int,
    comm: Any = None,
) -> None:
    metric_names = all_callbacks[0].params["metrics"]
    steps = all_callbacks[0].params["steps"]
    # dropout masks: a function of (seed, layer, optimizer.steps, element); nothing to reseed
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    optimizer, step_fn = net.optimizer, net._forward_backward
    accumulator = _EpochAccumulator(net, data, steps, sharded=comm is not None)
    for epoch in range(epochs):
        for cb in all_callbacks:
            cb.on_epoch_begin(epoch)
        # for a replay if this epoch diverges; the buffers are reused from fit to fit
        snapshot = net._replay_snapshot = net._snapshot_state(net._replay_snapshot)
        order = net.backend.asarray(net.rng.permutation(data.n)) if shuffle else None
        bar = _progress_bar(verbose, steps, epoch, epochs)
        for b, (lo, hi, xb, tb, wb) in enumerate(_batches(net, data, batch_size, order, comm)):
            if batch_callbacks:
                for cb in batch_callbacks:
                    cb.on_batch_begin(b)
            for layer in dropouts:  # a shard's masks are its rows of the global batch's masks
                layer.row_offset = 0 if comm is None else shard(lo, hi, comm.rank, comm.size)[0] - lo
            if comm is None:
                loss_sum, out = step_fn(xb, tb, wb)
            else:
                loss_sum, out = _sharded_gradients(net, comm, xb, tb, wb, hi - lo)
            optimizer.step()
            accumulator.add(b, lo, hi, loss_sum, out, tb)
            if batch_callbacks and out is not None:  # asked for: one sync per batch (this rank's shard)
                _batch_end(net, batch_callbacks, b, out.shape[0], loss_sum, out, tb)
            if bar is not None:
                bar.update(1)
        names = metric_names[: 2 if "accuracy" in net.metrics else 1]
        # the epoch's sums and one check that every weight is finite, in one transfer: the
        # loss of a step is computed before its update, so the last update of an epoch (or
        # the only one of a full batch) can blow up with every loss finite
        *sums, finite = _to_host(net, [*accumulator.totals(order)[: len(names)], _all_finite(net)], comm)
        logs = {name: value / data.n for name, value in zip(names, sums, strict=True)}
        weights_finite = finite == (1 if comm is None else comm.size)
        if not (math.isfinite(logs["loss"]) and weights_finite):
            if bar is not None:
                bar.close()
            if comm is not None:  # every rank sees the same reduced values: all stop here
                net._restore_state(snapshot)
                what = f"the loss became {logs['loss']}" if not math.isfinite(logs["loss"]) else \
                    "the weights became non-finite"
                raise TrainingDivergedError(
                    f"training diverged: {what} in epoch {epoch + 1}/{epochs}; "
                    "the network keeps the weights from the start of that epoch", epoch=epoch + 1, batch=0,
                )
            _locate_divergence(net, data, batch_size, order, snapshot, epoch, epochs)
        if val is not None:
            logs.update({f"val_{k}": v for k, v in evaluate_arrays(net, val, None, comm).items()})
        _finish_bar(bar, verbose, logs, epoch, epochs)
        for cb in all_callbacks:
            cb.on_epoch_end(epoch, logs)
        if net.stop_training:
            break


def _sharded_gradients(net: Network, comm: Any, xb: Any, tb: Any, wb: Any, global_size: int) -> tuple[Any, Any]:
    """This rank's share of a global batch's gradient, summed over ranks in one all-reduce
    of the flat buffer: each rank weighs its shard's mean gradient by shard / batch."""
    if xb is None:
        net._grad[...] = 0.0
        loss_sum, out = None, None
    else:
        loss_sum, out = net._forward_backward(xb, tb, wb)
        if xb.shape[0] != global_size:
            net._grad *= xb.shape[0] / global_size
    comm.allreduce_sum_(net._grad)
    return loss_sum, out


def _batch_end(net: Network, callbacks: list[Callback], b: int, size: int, loss_sum: Any, out: Any, tb: Any) -> None:
    logs = {"loss": float(net.backend.to_numpy(loss_sum)) / size}
    if "accuracy" in net.metrics:
        logs["accuracy"] = float(net.backend.to_numpy(net._correct(out, tb))) / size
    for cb in callbacks:
        cb.on_batch_end(b, logs)


def _all_finite(net: Network) -> Any:
    """1 if every parameter is finite, else 0 (a 0-d device array; one pass, no sync)."""
    xp = net.xp
    return xp.astype(xp.all(xp.isfinite(net._theta)), net.dtype)


def _to_host(net: Network, values: list[Any], comm: Any = None) -> list[float]:
    """A few 0-d device values as Python floats: one transfer (and, across processes, one
    reduction of a few floats), once per epoch."""
    xp = net.xp
    stacked = xp.stack([xp.asarray(value, dtype=net.dtype) for value in values])
    floats = [float(v) for v in net.backend.to_numpy(stacked)]
    return floats if comm is None else comm.allreduce_floats(floats)


def _floats(net: Network, names: list[str], sums: tuple[Any, ...], n: int, comm: Any = None) -> dict[str, float]:
    """The means ``sums / n`` of the first ``len(names)`` sums, named."""
    values = _to_host(net, list(sums[: len(names)]), comm)
    return {name: value / n for name, value in zip(names, values, strict=True)}


def _locate_divergence(
    net: Network, data: DeviceData, batch_size: int, order: Any, snapshot: Any,
    epoch: int, epochs: int,
) -> None:
    """The epoch's loss or weights are not finite: replay it from its start, checking each
    step on the host, and stop before the first step that is not finite. Raises, with the
    network's weights finite: those from before the bad step (or from the epoch's start)."""
    xp = net.xp
    net._restore_state(snapshot)  # with the optimizer's step count: the same dropout masks
    steps = -(-data.n // batch_size)  # exact for any integer batch_size
    for b, (_, _, xb, tb, wb) in enumerate(_batches(net, data, batch_size, order)):
        before = net._snapshot_state()
        loss, _ = net._forward_backward(xb, tb, wb)
        value = float(net.backend.to_numpy(loss))
        bad = not math.isfinite(value)
        if not bad:
            net.optimizer.step()
            bad = not bool(xp.all(xp.isfinite(net._theta)))
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


def evaluate_arrays(net: Network, data: DeviceData, batch_size: int | None, comm: Any = None) -> dict[str, float]:
    """Loss and metrics over device data, accumulated on the device; one transfer.
    With ``comm``, each rank evaluates its contiguous share and the sums are reduced."""
    batch_size = batch_size or EVAL_BATCH
    accuracy = "accuracy" in net.metrics
    loss_sum: Any = 0.0
    correct_sum: Any = 0.0
    part = data
    if comm is not None:
        lo, hi = shard(0, data.n, comm.rank, comm.size)
        w = None if data.w is None else data.w[lo:hi]
        part = DeviceData(data.x[lo:hi, ...], data.t[lo:hi, ...], w, hi - lo)
    for lo, hi, xb, tb, wb in _batches(net, part, batch_size, None):
        out = net._forward(xb, False)
        loss_sum = loss_sum + net.loss.value(out, tb, wb, logits=net._logits) * (hi - lo)
        if accuracy:
            correct_sum = correct_sum + net._correct(out, tb)
    names = ["loss", *(["accuracy"] if accuracy else [])]
    return _floats(net, names, (loss_sum, correct_sum), data.n, comm)


# --------------------------------------------------------------------------- display


def _progress_bar(verbose: int, steps: int, epoch: int, epochs: int) -> Any:
    if verbose != 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=True,
                dynamic_ncols=True, mininterval=0.2)


def _format_logs(logs: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in logs.items())


def _finish_bar(bar: Any, verbose: int, logs: dict[str, float], epoch: int, epochs: int) -> None:
    if bar is not None:
        bar.set_postfix_str(_format_logs(logs), refresh=False)
        bar.close()
    elif verbose == 2:
        print(f"Epoch {epoch + 1}/{epochs} - {_format_logs(logs)}")
