"""`BackupAndRestore`: a fit interrupted (a crash, ``kill -9``) resumes where its last
completed epoch ended, and finishes with the weights an uninterrupted fit would have.

At the end of every epoch, after every other callback has seen it, the complete
training state goes into one checkpoint file (`anyxp.checkpoint`, written atomically:
a kill during a save leaves the previous backup): weights, optimizer state and step
count (the schedule's position and the dropout masks follow from it), the network's
random generator (the shuffles), the epoch, the `History`, and the state of the
callbacks that have one (`Callback.get_state`). A `fit` started again with the same
``backup_dir`` reads it back into the network and the callbacks before its first epoch.
The file is deleted when the fit completes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import is_array, to_numpy
from .callbacks import Callback, History, Logs
from .checkpoint import TrainingState, load_training, save

if TYPE_CHECKING:
    from .network import Network

BACKUP_FILE = "backup.npz"


class BackupAndRestore(Callback):
    """Back up the training state at every epoch's end into ``backup_dir``; resume from it.

    >>> net.fit(x, y, epochs=100, callbacks=[BackupAndRestore("backup")])  # doctest: +SKIP

    Start the same script again after a crash: the fit continues after the last
    completed epoch. ``delete_checkpoint=False`` keeps the backup after a completed fit.
    """

    def __init__(self, backup_dir: str | Path, *, delete_checkpoint: bool = True) -> None:
        if not isinstance(backup_dir, str | Path):
            raise TypeError(f"backup_dir must be a path, got {type(backup_dir).__name__}")
        self.backup_dir = Path(backup_dir)
        self.path = self.backup_dir / BACKUP_FILE
        self.delete_checkpoint = bool(delete_checkpoint)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._main = self.params.get("is_main_process", True)
        if self.backup_dir.exists() and not self.backup_dir.is_dir():
            raise ValueError(f"BackupAndRestore: backup_dir {self.backup_dir} is a file, not a folder")
        if self._main:
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.backup_dir.glob(".anyxp-*.tmp"):  # a save killed half-way
                stale.unlink(missing_ok=True)

    def restore(self, callbacks: list[Callback], default: int) -> int:
        """Read the backup (if there is one) into the network and ``callbacks`` (the
        first is the fit's `History`); the epoch to start at. Everything is read and
        checked before the network changes."""
        if not self.path.exists():
            return default
        net = self.network
        saved, training = load_training(self.path, net.backend)
        if training is None:
            raise ValueError(f"BackupAndRestore: {self.path} is a checkpoint without training state")
        _check_same_network(net, saved, self.path)
        try:
            history = _history_from(training.header["history"])
            states = _callback_states(callbacks)
            found = {entry["class"]: entry["config"] for entry in training.header["callbacks"]}
            for key, callback in states.items():
                if key not in found:
                    raise ValueError(f"it holds no state for {key}; was it written by a fit with other callbacks?")
                try:
                    callback.set_state({name: _decode(value, training.arrays) for name, value in found[key].items()})
                except (ValueError, TypeError, KeyError) as exc:
                    raise ValueError(f"{key}: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"BackupAndRestore: {self.path}: {exc}") from None
        net.set_weights(saved.get_weights())
        with net.backend.activate():
            state = {k: to_numpy(v) for k, v in saved.optimizer.state_arrays().items()}
            net.optimizer.load_state_arrays(state, saved.optimizer.steps)
        if isinstance(net.optimizer.learning_rate, float):  # as ReduceLROnPlateau... left it
            net.optimizer.lr = saved.optimizer.lr
        net.rng.bit_generator.state = saved.rng.bit_generator.state
        callbacks[0].epoch, callbacks[0].history = history  # type: ignore[attr-defined]
        if training.header["stopped"]:  # a callback had stopped training: it stays stopped
            return max(default, self.params["epochs"])
        return int(training.header["epoch"]) + 1

    def save(self, epoch: int, callbacks: list[Callback]) -> None:
        """Write the state after epoch ``epoch`` (0-based) has ended for every callback."""
        if not self._main:
            return
        arrays: dict[str, Any] = {}
        entries = [{"class": key, "config": _encode(key, cb.get_state(), arrays)}
                   for key, cb in _callback_states(callbacks).items()]
        history: History = callbacks[0]  # type: ignore[assignment]
        header = {"epoch": epoch, "stopped": bool(self.network.stop_training), "callbacks": entries,
                  "history": _history_json(history)}
        save(self.network, self.path, TrainingState(header, arrays))

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.delete_checkpoint and self._main:
            self.path.unlink(missing_ok=True)
            if self.backup_dir.is_dir() and not any(self.backup_dir.iterdir()):
                self.backup_dir.rmdir()


def _callback_states(callbacks: list[Callback]) -> dict[str, Callback]:
    """The callbacks with a state, by class name and position among their class:
    ``"EarlyStopping/0"``."""
    keyed: dict[str, Callback] = {}
    counts: dict[str, int] = {}
    for cb in callbacks:
        if type(cb).get_state is Callback.get_state:
            continue
        name = type(cb).__name__
        keyed[f"{name}/{counts.get(name, 0)}"] = cb
        counts[name] = counts.get(name, 0) + 1
    return keyed


def _encode(key: str, state: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    """A callback's state as JSON values: arrays are stored beside (``{"array": name}``
    becomes the string ``"array:<name>"``), infinities and NaN as strings."""
    encoded: dict[str, Any] = {}
    for name, value in state.items():
        if is_array(value):
            array_name = f"{key.replace('/', '_')}_{name}"
            arrays[array_name] = value
            encoded[name] = f"array:{array_name}"
        elif isinstance(value, float) and not math.isfinite(value):
            encoded[name] = str(value)  # "inf", "-inf", "nan": float() reads them back
        else:
            encoded[name] = value
    return encoded


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, str) and value.startswith("array:"):
        name = value.removeprefix("array:")
        if name not in arrays:
            raise ValueError(f"BackupAndRestore: the backup names an array {name!r} it does not hold")
        return arrays[name]
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def _history_json(history: History) -> dict[str, Any]:
    values = {key: [v if math.isfinite(v) else None for v in vals] for key, vals in history.history.items()}
    return {"epoch": list(history.epoch), **{f"value/{k}": v for k, v in values.items()}}


def _history_from(saved: dict[str, list[Any]]) -> tuple[list[int], dict[str, list[float]]]:
    """The saved history's epochs and curves (checked: every curve as long as the epochs)."""
    epochs = saved.get("epoch", [])
    if not all(isinstance(e, int) and e >= 0 for e in epochs):
        raise ValueError("its history's epochs are not integers >= 0")
    values = {k.removeprefix("value/"): v for k, v in saved.items() if k.startswith("value/")}
    if any(len(v) != len(epochs) for v in values.values()):
        raise ValueError("its history has curves of different lengths")
    return list(epochs), {k: [math.nan if v is None else float(v) for v in vals] for k, vals in values.items()}


def _check_same_network(net: Network, saved: Network, path: Path) -> None:
    """The backup must come from this network's architecture, loss and optimizer type."""

    def shape(n: Network) -> Any:
        return ([(type(layer).__name__, layer.get_config()) for layer in n.layers], n.input_size,
                n.loss.name, n.optimizer.name, n.dtype_name, n.num_parameters)

    if shape(net) != shape(saved):
        raise ValueError(
            f"BackupAndRestore: {path} was written by another network ({saved!r}, {saved.loss.name}, "
            f"{saved.optimizer.name}, {saved.dtype_name}); this fit trains {net!r}, {net.loss.name}, "
            f"{net.optimizer.name}, {net.dtype_name}. Delete the backup or use another backup_dir."
        )
