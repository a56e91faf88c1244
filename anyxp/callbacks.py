"""Callbacks: hooks into the training loop, as in Keras.

Per-batch hooks cost a host sync per batch (their ``logs`` hold Python floats), so
the loop calls them only for callbacks that override them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    @property
    def wants_batches(self) -> bool:
        cls = type(self)
        return (
            cls.on_batch_end is not Callback.on_batch_end
            or cls.on_batch_begin is not Callback.on_batch_begin
        )


class History(Callback):
    """Per-epoch metrics of a `fit`: ``history.history["val_loss"][-1]``; ``.epoch``.

    ``plot()`` draws loss and accuracy, training and validation (needs matplotlib).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

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
    at the end of training.

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
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode

    def on_train_begin(self, logs: Logs | None = None) -> None:
        available = self.params.get("metrics", [])
        if self.monitor not in available:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which this fit does not compute; "
                f"available: {', '.join(available)}"
                + (" (pass validation_data or validation_split for val_ metrics)"
                   if self.monitor.startswith("val_") else "")
            )
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_weights: Any = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value):
            return
        if self._improved(value):
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
