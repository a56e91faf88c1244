"""Callbacks: hooks into the training loop, with Keras's names and semantics.

Per-batch hooks cost a host sync per batch (their ``logs`` hold Python floats), so
the loop calls them only for callbacks that override them. A callback with state to
resume from (`EarlyStopping`, `ReduceLROnPlateau`, `ModelCheckpoint`) gives it through
``get_state`` / ``set_state``, which `BackupAndRestore` saves and restores.
"""

from __future__ import annotations

import csv
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .validation import as_int, as_real

if TYPE_CHECKING:
    from .network import Network

Logs = dict[str, float]


class Callback:
    """Base class; override any hook. ``self.network`` is set before training."""

    network: Network
    params: dict[str, Any]

    def set_context(self, network: Network, params: dict[str, Any]) -> None:
        self.network = network
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_train_abort(self) -> None:
        """Training stopped with an exception (e.g. `TrainingDivergedError`)."""

    def get_state(self) -> dict[str, Any]:
        """What a resumed fit needs of this callback (`BackupAndRestore`): numbers,
        strings, booleans, None, or device arrays of the network's parameter count."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back what `get_state` gave (its arrays as host NumPy arrays)."""

    @property
    def wants_batches(self) -> bool:
        cls = type(self)
        return (
            cls.on_batch_end is not Callback.on_batch_end
            or cls.on_batch_begin is not Callback.on_batch_begin
        )


class History(Callback):
    """Per-epoch logs of a `fit`: ``history.history["val_loss"][-1]``; ``.epoch``.

    ``plot()`` draws the loss and metrics, training and validation, and marks the epoch
    whose weights `EarlyStopping` kept (needs matplotlib).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.kept_epoch: int | None = None  # whose weights EarlyStopping restored
        self.kept_monitor: str | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Any:
        """Plot the curves; save a PNG to ``path`` if given. Returns the figure."""
        from .plotting import plot_history

        return plot_history(self, path, title=title)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the network gets the weights of the best epoch back
    at the end of training. ``mode="auto"`` knows which metrics go up (accuracy,
    precision, recall, f1, auc, r2).

    >>> stop = EarlyStopping(monitor="val_loss", patience=3)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        mode: str = "auto",
    ) -> None:
        self.monitor = _monitor_name(monitor)
        self.patience = as_int(patience, "patience", minimum=0)
        self.min_delta = abs(as_real(min_delta, "min_delta"))
        self.restore_best_weights = restore_best_weights
        self.mode = monitor_mode(self.monitor, mode)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        require_monitor(type(self).__name__, self.monitor, self.params)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_weights: Any = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if improved(self.mode, value, self.best, self.min_delta):  # NaN never improves (as in Keras)
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.network.snapshot_parameters()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.network.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.network.restore_parameters(self.best_weights)
            history = self.network.history
            if history is not None:
                history.kept_epoch, history.kept_monitor = self.best_epoch, self.monitor

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def set_state(self, state: dict[str, Any]) -> None:
        best, wait = _state_value(state, "best", float), _state_value(state, "wait", int)
        best_epoch = _state_value(state, "best_epoch", int, optional=True)
        stopped_epoch = _state_value(state, "stopped_epoch", int, optional=True)
        weights = state.get("best_weights")
        if weights is not None and (not hasattr(weights, "shape") or tuple(weights.shape) !=
                                    (self.network.num_parameters + self.network.num_state,)):
            raise ValueError("EarlyStopping's best_weights are not the network's parameters")
        self.best, self.wait, self.best_epoch, self.stopped_epoch = best, wait, best_epoch, stopped_epoch
        self.best_weights = None if weights is None else self.network.backend.asarray(
            weights, dtype=self.network.dtype)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``
    (``schedule(epoch)`` also works), as Keras does. The optimizer must have a number
    as its rate, not a schedule of its own.

    >>> cb = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch and epoch % 10 == 0 else lr)
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler takes a function schedule(epoch, lr), got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = _accepts_two_arguments(schedule)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        _require_settable_rate(type(self).__name__, self.network)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.network.optimizer
        value = self.schedule(epoch, optimizer.lr) if self._takes_lr else self.schedule(epoch)
        try:
            optimizer.lr = value
        except TypeError as exc:
            raise ValueError(f"LearningRateScheduler: schedule returned {value!r} at epoch {epoch}: {exc}") from None
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {optimizer.lr}.")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by
    ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs; never below
    ``min_lr``. Keras's semantics and defaults.

    >>> cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        self.monitor = _monitor_name(monitor)
        self.factor = as_real(factor, "factor", minimum=0, maximum=1, open_max=True)
        self.patience = as_int(patience, "patience", minimum=0)
        self.verbose = verbose
        self.mode = monitor_mode(self.monitor, mode)
        self.min_delta = abs(as_real(min_delta, "min_delta"))
        self.cooldown = as_int(cooldown, "cooldown", minimum=0)
        self.min_lr = as_real(min_lr, "min_lr", minimum=0)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        require_monitor(type(self).__name__, self.monitor, self.params)
        _require_settable_rate(type(self).__name__, self.network)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if improved(self.mode, current, self.best, self.min_delta):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.network.optimizer
                if optimizer.lr > self.min_lr:
                    optimizer.lr = max(optimizer.lr * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {optimizer.lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict[str, Any]) -> None:
        best, wait = _state_value(state, "best", float), _state_value(state, "wait", int)
        self.best, self.wait, self.cooldown_counter = best, wait, _state_value(state, "cooldown_counter", int)


class ModelCheckpoint(Callback):
    """Save the network (`Network.save`, atomically) at the end of every epoch, or every
    ``save_freq`` batches; with ``save_best_only``, only when ``monitor`` improves.
    ``filepath`` may hold ``{epoch}`` (from 1) and log keys: ``"ckpt-{epoch:03d}-{val_loss:.4f}.npz"``.
    In data-parallel training only the main process writes.

    >>> cb = ModelCheckpoint("best.npz", monitor="val_accuracy", save_best_only=True)
    """

    def __init__(
        self,
        filepath: str | Path,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
    ) -> None:
        if not isinstance(filepath, str | Path):
            raise TypeError(f"ModelCheckpoint filepath must be a path, got {type(filepath).__name__}")
        self.filepath = str(filepath)
        self.monitor = _monitor_name(monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.mode = monitor_mode(self.monitor, mode)
        if save_freq != "epoch":
            save_freq = as_int(save_freq, "save_freq ('epoch' or a number of batches)", minimum=1)
        self.save_freq = save_freq
        self.best = math.inf if self.mode == "min" else -math.inf
        self._batches_since_save = 0
        self._epoch = 0

    @property
    def wants_batches(self) -> bool:
        return self.save_freq != "epoch"

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.save_best_only and self.save_freq == "epoch":
            require_monitor(type(self).__name__, self.monitor, self.params)
        self._main = self.params.get("is_main_process", True)
        self._batches_since_save = 0
        # a bad pattern fails now, not at the first save: the keys the logs will hold
        names = self.params.get("metrics", [])
        if self.save_freq == "epoch":
            self.filepath_for(0, dict.fromkeys([*names, "learning_rate"], 0.0))
        else:  # batch logs: no validation values, no learning rate
            self.filepath_for(0, dict.fromkeys([n for n in names if not n.startswith("val_")], 0.0), 0)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, logs or {}, batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def filepath_for(self, epoch: int, logs: Logs, batch: int | None = None) -> Path:
        """``filepath`` filled in for ``epoch`` (0-based; written from 1) and ``logs``."""
        fields = {**logs, "epoch": epoch + 1} if batch is None else {**logs, "epoch": epoch + 1, "batch": batch + 1}
        try:
            return Path(self.filepath.format(**fields))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint filepath {self.filepath!r} cannot be filled in: {exc!r}; it may hold "
                f"{{epoch}}{', {batch}' if self.save_freq != 'epoch' else ''} and the keys "
                f"{', '.join(sorted(logs))}"
            ) from None

    def _save(self, epoch: int, logs: Logs, batch: int | None = None) -> None:
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None or math.isnan(current) or not improved(self.mode, current, self.best, 0.0):
                return
            self.best = current
        path = self.filepath_for(epoch, logs, batch)
        if self._main:
            self.network.save(path)
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "batches_since_save": self._batches_since_save}

    def set_state(self, state: dict[str, Any]) -> None:
        best, batches = _state_value(state, "best", float), _state_value(state, "batches_since_save", int)
        self.best, self._batches_since_save = best, batches


def monitor_mode(monitor: str, mode: str) -> str:
    """"min" or "max": ``mode``, or for "auto" whether the monitored metric goes up."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    from .metrics import METRICS

    name = monitor.removeprefix("val_")
    goes_up = METRICS[name].higher_is_better if name in METRICS else "acc" in name
    return "max" if goes_up else "min"


def improved(mode: str, value: float, best: float, min_delta: float) -> bool:
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def require_monitor(who: str, monitor: str, params: dict[str, Any]) -> None:
    """Raise unless the fit's logs will hold ``monitor``."""
    available = [*params.get("metrics", []), "learning_rate"]
    if monitor not in available:
        raise ValueError(
            f"{who} monitors {monitor!r}, which this fit does not compute; available: {', '.join(available)}"
            + (" (pass validation_data or validation_split for val_ metrics)" if monitor.startswith("val_") else "")
        )


def _state_value(state: dict[str, Any], key: str, kind: type, optional: bool = False) -> Any:
    """``state[key]`` as a ``kind`` (float: a number or "inf"/"-inf"/"nan"; int: >= 0),
    or a ValueError naming it."""
    value = state.get(key)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"the saved state {key!r} is {value!r}, expected {'a number' if kind is float else 'a count'}")


def _require_settable_rate(who: str, network: Network) -> None:
    rate = network.optimizer.learning_rate
    if not isinstance(rate, float):
        raise ValueError(f"{who} sets the learning rate, but a schedule drives this optimizer's ({rate!r}); "
                         "give the optimizer a number as lr, or drop the callback")


def _monitor_name(monitor: Any) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be the name of a logged value such as 'val_loss', got {monitor!r}")
    return monitor


def _accepts_two_arguments(fn: Callable[..., Any]) -> bool:
    """Whether ``fn(epoch, lr)`` is a valid call (else Keras's older ``fn(epoch)``)."""
    try:
        inspect.signature(fn).bind(0, 0.0)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): try the two-argument form
        return True
    return True


class CSVLogger(Callback):
    """Write one CSV row per epoch (``per_batch=True``: one per batch, as the tutorials'
    cost/accuracy logs did).

    >>> logger = CSVLogger("training.csv")
    """

    def __init__(self, path: str | Path, *, per_batch: bool = False, append: bool = False) -> None:
        self.path = Path(path)
        self.per_batch = per_batch
        self.append = append
        self._file: Any = None
        self._writer: Any = None
        self._active = False
        self._epoch = 0

    @property
    def wants_batches(self) -> bool:
        return self.per_batch

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._writer = None
        if not self.params.get("is_main_process", True):
            self._active = False
            return
        self._active = True
        folder = self.path.parent
        if self.path.is_dir() or not folder.is_dir():
            what = "is a directory" if self.path.is_dir() else f"the folder {folder} does not exist"
            raise ValueError(f"CSVLogger: cannot write {self.path}: {what}")

    def _open(self) -> None:
        """Open the log at its first row: a fit that fails before its first epoch ends
        leaves an existing log as it was (Keras truncates it at the start of training)."""
        exists = self.path.exists() and self.path.stat().st_size > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._write_header = not (self.append and exists)

    def _write(self, row: dict[str, Any]) -> None:
        if not self._active:
            return
        if self._file is None:
            self._open()
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            if self._write_header:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.per_batch:
            self._write({"epoch": self._epoch, "batch": batch, **(logs or {})})

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.per_batch:
            self._write({"epoch": epoch, **(logs or {})})

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    on_train_abort = on_train_end
