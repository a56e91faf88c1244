"""`BackupAndRestore` and ``fit(initial_epoch=...)``: a fit killed (``kill -9``, in the
middle of an epoch or of a save) or crashed resumes from its last completed epoch and
ends with the weights of an uninterrupted fit (bit for bit on NumPy); the callbacks'
states survive the crash; broken, foreign and hostile backups are refused."""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp.backup import BACKUP_FILE
from anyxp.checkpoint import load_training

HEADER = "anyxp.json.npy"

# ------------------------------------------------------------------------------ a child process
# trains, optionally SIGKILLs itself in the middle of an epoch (``kill_batch``) or in the
# middle of writing a save (``kill_save``: the n-th np.savez), and writes what it ended with
SCRIPT = textwrap.dedent(
    """
    import io, json, os, signal, sys
    from pathlib import Path

    import numpy as np

    import anyxp as ax

    cfg = json.loads(sys.argv[1])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)

    if cfg["kill_save"]:
        real_savez, count = np.savez, [0]

        def savez(file, *args, **kwds):
            count[0] += 1
            if count[0] == cfg["kill_save"]:  # half of the archive written, then killed
                buffer = io.BytesIO()
                real_savez(buffer, *args, **kwds)
                data = buffer.getvalue()
                file.write(data[: len(data) // 2])
                file.flush()
                os.fsync(file.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return real_savez(file, *args, **kwds)

        np.savez = savez

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = np.argmax(x @ rng.normal(size=(6, 3)) + 0.5 * rng.normal(size=(300, 3)), axis=1)
    x_val, y_val = rng.normal(size=(80, 6)), rng.integers(0, 3, size=80)  # noise: val_loss soon worsens

    if cfg["variant"] == "schedule":
        optimizer = ax.Adam(lr=ax.schedules.ExponentialDecay(0.02, 30, 0.6), global_clipnorm=1.0)
        extra = []
    else:
        optimizer = ax.Adam(lr=0.02, global_clipnorm=1.0)
        extra = [ax.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)]
    net = ax.Network([ax.Dense(24, "relu"), ax.Dropout(0.3), ax.Dense(12, "tanh"), ax.Dense(3, "softmax")],
                     input_size=6, optimizer=optimizer, dtype=cfg["dtype"], seed=7, backend="numpy",
                     metrics=["accuracy", "auc"])


    class Record(ax.Callback):
        # the epochs begun (appended at once: a kill loses nothing), and the state at the
        # end of the last epoch, before EarlyStopping puts the best weights back
        def on_epoch_begin(self, epoch, logs=None):
            with open(out / "begun.txt", "a") as f:
                f.write(f"{epoch}\\n")
            self.epoch = epoch

        def on_train_end(self, logs=None):
            arrays = {f"last_weight_{i}": w for i, w in enumerate(self.network.get_weights())}
            for key, value in self.network.optimizer.state_arrays().items():
                arrays["last_state_" + key.replace("/", "_")] = np.asarray(value)
            arrays["steps"] = np.asarray(self.network.optimizer.steps)
            arrays["lr"] = np.asarray(self.network.optimizer.lr)
            np.savez(out / "last.npz", **arrays)
            (out / "rng.json").write_text(json.dumps(self.network.rng.bit_generator.state))


    class Killer(ax.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_batch_end(self, batch, logs=None):
            if [self.epoch, batch] == cfg["kill_batch"]:
                os.kill(os.getpid(), signal.SIGKILL)


    stop = ax.EarlyStopping(monitor="val_loss", patience=100, restore_best_weights=True)
    callbacks = [Record(), stop, *extra, ax.BackupAndRestore(cfg["backup"])]
    if cfg["kill_batch"]:
        callbacks.insert(0, Killer())
    history = net.fit(x, y, epochs=cfg["epochs"], batch_size=16, shuffle=True, validation_data=(x_val, y_val),
                      callbacks=callbacks, verbose=0)
    np.savez(out / "final.npz", **{f"weight_{i}": w for i, w in enumerate(net.get_weights())})
    (out / "history.json").write_text(json.dumps({"epoch": history.epoch, "history": history.history,
                                                  "best_epoch": stop.best_epoch, "wait": stop.wait}))
    """
)

EPOCHS, KILL_EPOCH, KILL_BATCH = 12, 5, 7  # 300 samples, batch 16: 19 batches per epoch


def run_child(tmp: Path, name: str, *, dtype: str, variant: str, backup: Path, kill_batch: Any = None,
              kill_save: int = 0) -> tuple[subprocess.CompletedProcess, Path]:
    script = tmp / "train.py"
    if not script.exists():
        script.write_text(SCRIPT)
    out = tmp / name
    cfg = {"out": str(out), "dtype": dtype, "variant": variant, "backup": str(backup), "epochs": EPOCHS,
           "kill_batch": kill_batch, "kill_save": kill_save}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc, out


def results(out: Path) -> dict[str, Any]:
    with np.load(out / "final.npz") as final, np.load(out / "last.npz") as last:
        arrays = {**{k: final[k] for k in final.files}, **{k: last[k] for k in last.files}}
    history = json.loads((out / "history.json").read_text())
    return {"arrays": arrays, "history": history, "rng": json.loads((out / "rng.json").read_text())}


def begun(out: Path) -> list[int]:
    return [int(line) for line in (out / "begun.txt").read_text().split()]


def assert_same_results(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["arrays"].keys() == want["arrays"].keys()
    for key, value in want["arrays"].items():
        assert got["arrays"][key].dtype == value.dtype, key
        np.testing.assert_array_equal(got["arrays"][key], value, err_msg=key)  # bit for bit
    assert got["history"]["epoch"] == want["history"]["epoch"] == list(range(EPOCHS))
    assert got["history"]["history"].keys() == want["history"]["history"].keys()
    for key, values in want["history"]["history"].items():  # every key, every epoch, exactly
        np.testing.assert_array_equal(got["history"]["history"][key], values, err_msg=key)
    assert (got["history"]["best_epoch"], got["history"]["wait"]) == (want["history"]["best_epoch"],
                                                                       want["history"]["wait"])
    assert got["rng"] == want["rng"]


_references: dict[tuple[str, str], dict[str, Any]] = {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The uninterrupted run of (dtype, variant), computed once per module."""

    def get(dtype: str, variant: str) -> dict[str, Any]:
        key = (dtype, variant)
        if key not in _references:
            tmp = tmp_path_factory.mktemp(f"reference-{dtype}-{variant}")
            backup = tmp / "backup"
            proc, out = run_child(tmp, "out", dtype=dtype, variant=variant, backup=backup)
            assert proc.returncode == 0, proc.stderr
            assert not backup.exists()  # deleted, and its folder with it
            assert begun(out) == list(range(EPOCHS))
            _references[key] = results(out)
        return _references[key]

    return get


def numpy_only(backend: ax.Backend) -> None:
    if backend.name != "numpy":
        pytest.skip("the child processes train on NumPy (the in-process tests cover every backend)")


@pytest.mark.parametrize("variant", ["schedule", "plateau"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kill_9_mid_epoch_resumes_bit_for_bit(backend: ax.Backend, tmp_path: Path, reference, dtype: str,
                                              variant: str) -> None:
    numpy_only(backend)
    want = reference(dtype, variant)
    # the run is one that exercises what is restored: the best epoch (whose weights
    # EarlyStopping keeps) comes before the kill, and the rate changes from epoch to epoch
    val_loss = want["history"]["history"]["val_loss"]
    assert int(np.argmin(val_loss)) < KILL_EPOCH
    rates = want["history"]["history"]["learning_rate"]
    assert len(set(rates[: KILL_EPOCH + 1])) > 1 and len(set(rates[KILL_EPOCH:])) > 1

    backup = tmp_path / "backup"
    proc, out = run_child(tmp_path, "killed", dtype=dtype, variant=variant, backup=backup,
                          kill_batch=[KILL_EPOCH, KILL_BATCH])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert begun(out) == list(range(KILL_EPOCH + 1))
    assert not (out / "final.npz").exists()
    path = backup / BACKUP_FILE
    assert path.is_file()
    _, training = load_training(path, "numpy")
    assert training is not None and training.header["epoch"] == KILL_EPOCH - 1  # the last completed epoch

    proc, out = run_child(tmp_path, "resumed", dtype=dtype, variant=variant, backup=backup)
    assert proc.returncode == 0, proc.stderr
    assert begun(out) == list(range(KILL_EPOCH, EPOCHS))  # from the epoch that was killed
    assert_same_results(results(out), want)
    assert not path.exists() and not backup.exists()


@pytest.mark.parametrize(("dtype", "kill_save"), [("float32", 4), ("float64", 4), ("float64", 1)])
def test_kill_9_during_a_save_keeps_the_previous_backup(backend: ax.Backend, tmp_path: Path, reference,
                                                        dtype: str, kill_save: int) -> None:
    numpy_only(backend)
    want = reference(dtype, "schedule")
    backup = tmp_path / "backup"
    proc, out = run_child(tmp_path, "killed", dtype=dtype, variant="schedule", backup=backup, kill_save=kill_save)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # save n happens at the end of epoch n-1 (0-based), the kill during it
    assert begun(out) == list(range(kill_save))
    path = backup / BACKUP_FILE
    assert [p.name for p in backup.iterdir() if p.name.endswith(".tmp")]  # the half-written file
    if kill_save == 1:
        assert not path.exists()  # nothing completed: the restart starts from scratch
    else:
        _, training = load_training(path, "numpy")  # the previous backup, whole
        assert training is not None and training.header["epoch"] == kill_save - 2
        assert training.header["history"]["epoch"] == list(range(kill_save - 1))

    proc, out = run_child(tmp_path, "resumed", dtype=dtype, variant="schedule", backup=backup)
    assert proc.returncode == 0, proc.stderr
    assert begun(out) == list(range(max(kill_save - 1, 0), EPOCHS))
    assert_same_results(results(out), want)
    assert not path.exists()
    # what may stay: the killed save's half-written temporary file (nothing removes it)
    assert not backup.exists() or all(p.name.endswith(".tmp") for p in backup.iterdir())


# ------------------------------------------------------------------------------ in process, every backend
class Crashed(RuntimeError):
    pass


class CrashAt(ax.Callback):
    """Raise in the middle of epoch ``epoch`` (after batch 2): a crash mid-epoch."""

    def __init__(self, epoch: int) -> None:
        self.at = epoch
        self.aborted = False

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.epoch == self.at and batch == 2:
            raise Crashed(f"crash in epoch {self.epoch}")

    def on_train_abort(self) -> None:
        self.aborted = True


class Seen(ax.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.ended: list[int] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.initial_epoch = self.params["initial_epoch"]

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.ended.append(epoch)


def make_net(backend: ax.Backend, dtype: str = "float64", *, variant: str = "schedule", units: int = 16,
             seed: int = 3) -> ax.Network:
    if variant == "schedule":
        optimizer = ax.Adam(lr=ax.schedules.ExponentialDecay(0.05, 20, 0.7), global_clipnorm=2.0)
    else:
        optimizer = ax.Adam(lr=0.05, global_clipnorm=2.0)
    return ax.Network([ax.Dense(units, "relu"), ax.Dropout(0.2), ax.Dense(3, "softmax")], input_size=5,
                      optimizer=optimizer, backend=backend, dtype=dtype, seed=seed, metrics=["accuracy"])


@pytest.fixture
def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """120 separable training samples; 40 validation samples with noise labels."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(120, 5))
    y = np.argmax(x @ rng.normal(size=(5, 3)), axis=1)
    return (x, y), (rng.normal(size=(40, 5)), rng.integers(0, 3, size=40))


def tolerance(backend: ax.Backend, dtype: str) -> dict[str, float]:
    if backend.name == "numpy":
        return {"rtol": 0.0, "atol": 0.0}
    return {"rtol": 1e-6, "atol": 1e-7} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-13}


def assert_close(got: Any, want: Any, tol: dict[str, float], what: str = "") -> None:
    if tol["rtol"] == 0:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, err_msg=what, **tol)


def optimizer_state(net: ax.Network) -> dict[str, np.ndarray]:
    return {k: np.array(net.backend.to_numpy(v)) for k, v in net.optimizer.state_arrays().items()}


EPOCHS_IN_PROCESS = 30


@pytest.mark.parametrize("same_network", [False, True], ids=["fresh-network", "same-network"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_crash_resumes_with_early_stopping_state(backend: ax.Backend, data, tmp_path: Path, dtype: str,
                                                   same_network: bool) -> None:
    (x, y), val = data
    tol = tolerance(backend, dtype)

    def fit(net: ax.Network, backup: Path, *extra: ax.Callback) -> tuple[ax.History, ax.EarlyStopping]:
        stop = ax.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
        history = net.fit(x, y, epochs=EPOCHS_IN_PROCESS, batch_size=16, validation_data=val,
                          callbacks=[*extra, stop, ax.BackupAndRestore(backup)], verbose=0)
        return history, stop

    ref = make_net(backend, dtype)
    ref_history, ref_stop = fit(ref, tmp_path / "reference")
    # stopped early: the crash goes between the best epoch and the stop, where the
    # wait count and the best weights are what decide
    assert ref_stop.stopped_epoch is not None and ref_stop.stopped_epoch < EPOCHS_IN_PROCESS - 1
    best = ref_stop.best_epoch
    assert best is not None and ref_stop.stopped_epoch == best + 3
    crash_epoch = best + 2

    backup = tmp_path / "backup"
    net = make_net(backend, dtype)
    crash = CrashAt(crash_epoch)
    with pytest.raises(Crashed):
        fit(net, backup, crash)
    assert crash.aborted
    _, training = load_training(backup / BACKUP_FILE, backend)  # kept, at the last completed epoch
    assert training is not None and training.header["epoch"] == crash_epoch - 1
    state = {entry["class"]: entry["config"] for entry in training.header["callbacks"]}["EarlyStopping/0"]
    assert state["wait"] == 1 and state["best_epoch"] == best
    assert set(training.arrays) == {"EarlyStopping_0_best_weights"}

    if not same_network:
        net = make_net(backend, dtype)
    seen = Seen()
    history, stop = fit(net, backup, seen)
    assert seen.epochs == list(range(crash_epoch, ref_stop.stopped_epoch + 1))
    assert (stop.stopped_epoch, stop.best_epoch, stop.wait) == (ref_stop.stopped_epoch, best, ref_stop.wait)
    assert_close(stop.best, ref_stop.best, tol)
    assert_close(backend.to_numpy(stop.best_weights), backend.to_numpy(ref_stop.best_weights), tol)
    for got, want in zip(net.get_weights(), ref.get_weights(), strict=True):  # the best epoch's
        assert got.dtype == want.dtype == np.dtype(dtype)
        assert_close(got, want, tol)
    ref_state = optimizer_state(ref)
    assert net.optimizer.steps == ref.optimizer.steps
    for key, value in optimizer_state(net).items():
        assert_close(value, ref_state[key], tol, key)
    assert net.rng.bit_generator.state == ref.rng.bit_generator.state
    assert history.epoch == ref_history.epoch == list(range(ref_stop.stopped_epoch + 1))
    assert history.history.keys() == ref_history.history.keys()
    for key, values in ref_history.history.items():
        assert_close(history.history[key], values, tol, key)
    assert history.kept_epoch == best
    assert not backup.exists()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_crash_resumes_with_reduce_lr_on_plateau_state(backend: ax.Backend, data, tmp_path: Path,
                                                         dtype: str) -> None:
    (x, y), val = data
    tol = tolerance(backend, dtype)
    epochs, crash_epoch = 10, 6

    def fit(net: ax.Network, backup: Path, *extra: ax.Callback) -> tuple[ax.History, ax.ReduceLROnPlateau]:
        plateau = ax.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
        history = net.fit(x, y, epochs=epochs, batch_size=16, validation_data=val,
                          callbacks=[*extra, plateau, ax.BackupAndRestore(backup)], verbose=0)
        return history, plateau

    ref = make_net(backend, dtype, variant="plateau")
    ref_history, ref_plateau = fit(ref, tmp_path / "reference")
    rates = ref_history.history["learning_rate"]
    assert len(set(rates[:crash_epoch])) > 1 and len(set(rates[crash_epoch:])) > 1  # reduced before and after

    backup = tmp_path / "backup"
    with pytest.raises(Crashed):
        fit(make_net(backend, dtype, variant="plateau"), backup, CrashAt(crash_epoch))
    net = make_net(backend, dtype, variant="plateau")
    history, plateau = fit(net, backup)
    assert net.optimizer.lr == ref.optimizer.lr < 0.05
    assert (plateau.wait, plateau.cooldown_counter) == (ref_plateau.wait, ref_plateau.cooldown_counter)
    assert_close(plateau.best, ref_plateau.best, tol)
    assert history.history["learning_rate"] == rates  # the rates are host floats, exactly
    for key, values in ref_history.history.items():
        assert_close(history.history[key], values, tol, key)
    for got, want in zip(net.get_weights(), ref.get_weights(), strict=True):
        assert_close(got, want, tol)


def test_model_checkpoint_best_survives_a_crash(backend: ax.Backend, data, tmp_path: Path) -> None:
    """ModelCheckpoint(save_best_only) keeps its best value: the resumed fit does not
    overwrite the best file with a worse epoch."""
    (x, y), val = data
    backup = tmp_path / "backup"

    def fit(net: ax.Network, log: Seen, *extra: ax.Callback) -> ax.ModelCheckpoint:
        ckpt = ax.ModelCheckpoint(tmp_path / "best-{epoch}.npz", monitor="val_loss", save_best_only=True)
        net.fit(x, y, epochs=8, batch_size=16, validation_data=val, callbacks=[*extra, log, ckpt,
                                                                                ax.BackupAndRestore(backup)],
                verbose=0)
        return ckpt

    ref_seen = Seen()
    ref = fit(make_net(backend), ref_seen)
    ref_files = sorted(p.name for p in tmp_path.glob("best-*.npz"))
    for p in tmp_path.glob("best-*.npz"):
        p.unlink()
    with pytest.raises(Crashed):
        fit(make_net(backend), Seen(), CrashAt(5))
    resumed = fit(make_net(backend), Seen())
    assert resumed.best == pytest.approx(ref.best, rel=1e-12)
    assert sorted(p.name for p in tmp_path.glob("best-*.npz")) == ref_files


# ------------------------------------------------------------------------------ initial_epoch
def test_initial_epoch_runs_the_remaining_epochs(backend: ax.Backend, data) -> None:
    (x, y), _ = data
    net = make_net(backend)
    seen = Seen()
    history = net.fit(x, y, epochs=5, initial_epoch=3, batch_size=16, callbacks=[seen], verbose=0)
    assert history.epoch == [3, 4] and seen.epochs == seen.ended == [3, 4]
    assert seen.initial_epoch == 3
    assert all(len(v) == 2 for v in history.history.values())
    assert net.optimizer.steps == 2 * math.ceil(120 / 16)

    history = net.fit(x, y, epochs=5, initial_epoch=np.int64(4), batch_size=16, verbose=0)
    assert history.epoch == [4]


@pytest.mark.parametrize("initial_epoch", [5, 9])
def test_initial_epoch_at_or_after_epochs_trains_nothing(backend: ax.Backend, data, tmp_path: Path,
                                                         initial_epoch: int) -> None:
    (x, y), _ = data
    net = make_net(backend)
    before = net.get_weights()
    seen = Seen()
    backup = tmp_path / "backup"
    history = net.fit(x, y, epochs=5, initial_epoch=initial_epoch, callbacks=[seen, ax.BackupAndRestore(backup)],
                      verbose=0)
    assert history.epoch == [] and history.history == {} and seen.epochs == []
    assert net.optimizer.steps == 0
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not backup.exists()


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (1.5, ValueError), (2.0, ValueError),
                                              ("2", TypeError), (True, TypeError), (None, TypeError)])
def test_initial_epoch_must_be_a_natural_number(backend: ax.Backend, data, value: Any, error: type) -> None:
    (x, y), _ = data
    net = make_net(backend)
    before = net.get_weights()
    with pytest.raises(error, match="initial_epoch"):
        net.fit(x, y, epochs=5, initial_epoch=value, verbose=0)
    assert net.optimizer.steps == 0
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_backup_wins_over_initial_epoch(backend: ax.Backend, data, tmp_path: Path) -> None:
    (x, y), _ = data
    backup = tmp_path / "backup"
    with pytest.raises(Crashed):
        make_net(backend).fit(x, y, epochs=6, batch_size=16, callbacks=[CrashAt(3), ax.BackupAndRestore(backup)],
                              verbose=0)
    seen = Seen()
    history = make_net(backend).fit(x, y, epochs=6, initial_epoch=1, batch_size=16,
                                    callbacks=[seen, ax.BackupAndRestore(backup)], verbose=0)
    assert seen.epochs == [3, 4, 5]
    assert history.epoch == [0, 1, 2, 3, 4, 5]  # the restored history goes on


# ------------------------------------------------------------------------------ errors
def crashed_backup(backend: ax.Backend, data: Any, backup: Path, *, epoch: int = 2, **net_kwargs: Any) -> Path:
    """A backup written at the end of epoch ``epoch - 1`` by a fit that then crashed."""
    (x, y), val = data
    with pytest.raises(Crashed):
        make_net(backend, **net_kwargs).fit(
            x, y, epochs=10, batch_size=16, validation_data=val,
            callbacks=[CrashAt(epoch), ax.EarlyStopping(patience=50), ax.BackupAndRestore(backup)], verbose=0)
    path = backup / BACKUP_FILE
    assert path.is_file()
    return path


def fit_expecting(backend: ax.Backend, data: Any, backup: Path, error: type, match: str,
                  **net_kwargs: Any) -> ax.Network:
    """Fit with ``backup``; it must raise ``error`` (``match``) and leave the network as built."""
    (x, y), val = data
    net = make_net(backend, **net_kwargs)
    before, state = net.get_weights(), optimizer_state(net)
    rng_state = net.rng.bit_generator.state
    with pytest.raises(error, match=match) as info:
        net.fit(x, y, epochs=10, batch_size=16, validation_data=val,
                callbacks=[ax.EarlyStopping(patience=50), ax.BackupAndRestore(backup)], verbose=0)
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert net.optimizer.steps == 0 and net.rng.bit_generator.state == rng_state
    for key, value in optimizer_state(net).items():
        np.testing.assert_array_equal(value, state[key])
    net.last_error = info.value  # type: ignore[attr-defined]
    return net


@pytest.mark.parametrize("other", [{"units": 8}, {"dtype": "float32"}], ids=["architecture", "dtype"])
def test_a_backup_of_another_network_is_refused(backend: ax.Backend, data, tmp_path: Path, other) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    net = fit_expecting(backend, data, backup, ValueError, "Delete the backup or use another backup_dir", **other)
    assert str(path) in str(net.last_error)  # type: ignore[attr-defined]
    assert not isinstance(net.last_error, ax.CheckpointError)  # type: ignore[attr-defined]
    assert path.is_file()  # the user's to delete


def test_another_optimizer_is_refused(backend: ax.Backend, data, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    (x, y), val = data
    net = ax.Network([ax.Dense(16, "relu"), ax.Dropout(0.2), ax.Dense(3, "softmax")], input_size=5,
                     optimizer=ax.SGD(lr=0.1), backend=backend, dtype="float64", seed=3, metrics=["accuracy"])
    before = net.get_weights()
    with pytest.raises(ValueError, match=r"another network.*Delete the backup") as info:
        net.fit(x, y, epochs=4, callbacks=[ax.EarlyStopping(patience=50), ax.BackupAndRestore(backup)],
                validation_data=val, verbose=0)
    assert str(path) in str(info.value)
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backup_dir_that_is_a_file(backend: ax.Backend, data, tmp_path: Path) -> None:
    (x, y), _ = data
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    net = make_net(backend)
    before = net.get_weights()
    with pytest.raises(ValueError, match=r"not-a-folder.*is a file"):
        net.fit(x, y, epochs=2, callbacks=[ax.BackupAndRestore(target)], verbose=0)
    assert target.read_text() == "x"
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="backup_dir"):
        ax.BackupAndRestore(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most one BackupAndRestore"):
        net.fit(x, y, epochs=1, callbacks=[ax.BackupAndRestore(tmp_path / "a"), ax.BackupAndRestore(tmp_path / "b")],
                verbose=0)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_backup_is_a_checkpoint_error(backend: ax.Backend, data, tmp_path: Path, damage: str) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    blob = path.read_bytes()
    path.write_bytes({"truncated": blob[: len(blob) * 2 // 3], "garbage": os.urandom(len(blob)),
                      "empty": b""}[damage])
    net = fit_expecting(backend, data, backup, ax.CheckpointError, re.escape(str(path)))
    assert str(net.last_error).startswith(str(path))  # type: ignore[attr-defined]
    assert path.is_file()  # kept: the user decides


def test_a_plain_checkpoint_as_backup_is_refused(backend: ax.Backend, data, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    make_net(backend).save(backup / BACKUP_FILE)
    fit_expecting(backend, data, backup, ValueError, "without training state")


def test_the_backup_is_removed_after_a_completed_fit(backend: ax.Backend, data, tmp_path: Path) -> None:
    (x, y), _ = data
    backup = tmp_path / "deep" / "backup"  # parents are created
    seen_files: list[bool] = []

    class Look(ax.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            seen_files.append((backup / BACKUP_FILE).is_file())

    make_net(backend).fit(x, y, epochs=3, batch_size=32, callbacks=[Look(), ax.BackupAndRestore(backup)], verbose=0)
    assert seen_files == [False, True, True]  # written at every epoch's end
    assert not backup.exists() and (tmp_path / "deep").is_dir()

    # a folder holding other files stays; the backup goes
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    make_net(backend).fit(x, y, epochs=2, batch_size=32, callbacks=[ax.BackupAndRestore(backup)], verbose=0)
    assert sorted(p.name for p in backup.iterdir()) == ["notes.txt"]


def test_delete_checkpoint_false_keeps_the_backup(backend: ax.Backend, data, tmp_path: Path) -> None:
    (x, y), _ = data
    backup = tmp_path / "backup"
    net = make_net(backend)
    net.fit(x, y, epochs=3, batch_size=32, callbacks=[ax.BackupAndRestore(backup, delete_checkpoint=False)],
            verbose=0)
    saved, training = load_training(backup / BACKUP_FILE, backend)
    assert training is not None and training.header["epoch"] == 2
    for a, b in zip(saved.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # a fit started again with it: every epoch is done, nothing trains, the weights stay
    again = make_net(backend)
    history = again.fit(x, y, epochs=3, batch_size=32,
                        callbacks=[ax.BackupAndRestore(backup, delete_checkpoint=False)], verbose=0)
    assert history.epoch == [0, 1, 2]
    for a, b in zip(again.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (backup / BACKUP_FILE).is_file()


# ------------------------------------------------------------------------------ hostile training headers
def rewrite(path: Path, change: Any, members_change: Any = None) -> None:
    """Rewrite the backup at ``path`` with its JSON header changed by ``change(header)``."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(np.load(io.BytesIO(members[HEADER])).tobytes())
    change(header)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members[HEADER] = buffer.getvalue()
    if members_change is not None:
        members_change(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


def set_arrays(names: list[str]) -> Any:
    def change(header: dict[str, Any]) -> None:
        header["training"]["arrays"] = names

    return change


def rename_member(old: str, new: str) -> Any:
    def change(members: dict[str, bytes]) -> None:
        members[new] = members.pop(old)

    return change


HOSTILE = {
    "dotdot-array": (set_arrays(["../x"]), rename_member("training/EarlyStopping_0_best_weights.npy",
                                                           "training/../x.npy"), "training.arrays"),
    "slash-array": (set_arrays(["a/b"]), None, "training.arrays"),
    "unknown-field": (lambda h: h["training"].update(extra=1), None, "training.extra"),
    "missing-epoch": (lambda h: h["training"].pop("epoch"), None, "training.epoch"),
    "negative-epoch": (lambda h: h["training"].update(epoch=-1), None, "training.epoch"),
    "history-strings": (lambda h: h["training"]["history"].update({"value/loss": ["a"]}), None,
                        "training.history.value/loss"),
    "callbacks-not-list": (lambda h: h["training"].update(callbacks={}), None, "training.callbacks"),
    "callback-extra-key": (lambda h: h["training"]["callbacks"][0].update(x=1), None, "training.callbacks[0].x"),
    "array-not-in-archive": (set_arrays(["EarlyStopping_0_best_weights", "ghost"]), None, "training/ghost"),
    "array-not-declared": (set_arrays([]), None, "members"),
    "too-many-arrays": (set_arrays([f"a{i}" for i in range(17)]), None, "training.arrays"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_training_headers_are_checkpoint_errors(backend: ax.Backend, data, tmp_path: Path,
                                                        case: str) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    change, members_change, field = HOSTILE[case]
    rewrite(path, change, members_change)
    net = fit_expecting(backend, data, backup, ax.CheckpointError, re.escape(field))
    assert str(net.last_error).startswith(str(path))  # type: ignore[attr-defined]


def test_the_rewritten_backup_still_loads(backend: ax.Backend, data, tmp_path: Path) -> None:
    """The rewriting above changes nothing by itself: the hostile cases fail for their edit."""
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    rewrite(path, lambda h: None)
    (x, y), val = data
    seen = Seen()
    make_net(backend).fit(x, y, epochs=4, batch_size=16, validation_data=val,
                          callbacks=[seen, ax.EarlyStopping(patience=50), ax.BackupAndRestore(backup)], verbose=0)
    assert seen.epochs == [2, 3]


def test_a_backup_without_a_callbacks_state_is_refused(backend: ax.Backend, data, tmp_path: Path) -> None:
    """A fit with a stateful callback the backup knows nothing of: refused before any change."""
    (x, y), val = data
    backup = tmp_path / "backup"
    with pytest.raises(Crashed):
        make_net(backend).fit(x, y, epochs=6, batch_size=16, validation_data=val,
                              callbacks=[CrashAt(2), ax.BackupAndRestore(backup)], verbose=0)
    fit_expecting(backend, data, backup, ValueError, "EarlyStopping/0")


def test_a_callback_state_naming_a_missing_array_is_refused(backend: ax.Backend, data, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)

    def change(header: dict[str, Any]) -> None:
        header["training"]["callbacks"][0]["config"]["best_weights"] = "array:ghost"

    rewrite(path, change)
    fit_expecting(backend, data, backup, ValueError, "ghost")


@pytest.mark.parametrize("state", [{"wait": "abc"}, {"best": "high"}, {"wait": None}, {"best_epoch": "x"}],
                         ids=["wait-string", "best-string", "wait-null", "best-epoch-string"])
def test_a_hostile_callback_state_is_refused_before_any_change(backend: ax.Backend, data, tmp_path: Path,
                                                               state: dict[str, Any]) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)

    def change(header: dict[str, Any]) -> None:
        header["training"]["callbacks"][0]["config"].update(state)

    rewrite(path, change)
    fit_expecting(backend, data, backup, ValueError, "EarlyStopping")


def test_history_of_unequal_lengths_is_refused_before_any_change(backend: ax.Backend, data, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = crashed_backup(backend, data, backup)
    rewrite(path, lambda h: h["training"]["history"]["value/loss"].append(1.0))
    fit_expecting(backend, data, backup, ValueError, "different lengths")


# ------------------------------------------------------------------------------ data-parallel
def test_only_the_main_process_writes(backend: ax.Backend, tmp_path: Path) -> None:
    net = make_net(backend)
    history = ax.History()
    history.on_epoch_end(0, {"loss": 1.0})
    backup = tmp_path / "backup"

    worker = ax.BackupAndRestore(backup)
    worker.set_context(net, {"is_main_process": False})
    worker.on_train_begin()
    worker.save(0, [history])
    assert not backup.exists()  # no folder, no file

    main = ax.BackupAndRestore(backup)
    main.set_context(net, {"is_main_process": True})
    main.on_train_begin()
    main.save(0, [history])
    assert (backup / BACKUP_FILE).is_file()
    worker.on_train_end()  # a worker never deletes what the main process wrote
    assert (backup / BACKUP_FILE).is_file()
    main.on_train_end()
    assert not backup.exists()


def test_data_parallel_ranks_resume_from_the_main_ranks_backup(backend: ax.Backend, data, tmp_path: Path) -> None:
    """Thread ranks sharing one backup_dir (a shared file system): rank 0 writes it, all
    ranks resume from it, and end as an uninterrupted data-parallel fit."""
    from test_distributed import run_ranks

    (x, y), val = data

    def work(backup: Path, crash: int | None):  # type: ignore[no-untyped-def]
        def rank(comm):  # type: ignore[no-untyped-def]
            net = ax.Network([ax.Dense(12, "tanh"), ax.Dropout(0.1), ax.Dense(3, "softmax")], input_size=5,
                             optimizer=ax.Adam(lr=0.01), backend=backend, dtype="float64", seed=11)
            extra = [] if crash is None else [CrashAt(crash)]
            history = net.fit(x, y, epochs=5, batch_size=16, validation_data=val, verbose=0, comm=comm,
                              callbacks=[*extra, ax.ReduceLROnPlateau(patience=1), ax.BackupAndRestore(backup)])
            return net.get_weights(), history.history

        return rank

    reference = run_ranks(2, work(tmp_path / "reference", None))
    backup = tmp_path / "backup"
    writes: list[str] = []
    real_save = ax.BackupAndRestore.save

    with pytest.raises(Crashed):
        run_ranks(2, work(backup, 3))
    assert (backup / BACKUP_FILE).is_file()
    _, training = load_training(backup / BACKUP_FILE, backend)
    assert training is not None and training.header["epoch"] == 2

    def counting_save(self: ax.BackupAndRestore, epoch: int, callbacks: list[ax.Callback]) -> None:
        if self._main:
            writes.append(f"epoch {epoch}")
        real_save(self, epoch, callbacks)

    ax.BackupAndRestore.save = counting_save  # type: ignore[method-assign]
    try:
        resumed = run_ranks(2, work(backup, None))
    finally:
        ax.BackupAndRestore.save = real_save  # type: ignore[method-assign]
    assert writes == ["epoch 3", "epoch 4"]  # one writer
    assert not backup.exists()
    for (weights, history), (ref_weights, ref_history) in zip(resumed, reference, strict=True):
        for a, b in zip(weights, ref_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        for key, values in ref_history.items():
            np.testing.assert_allclose(history[key], values, rtol=1e-12)


# ------------------------------------------------------------------------------ crashes at the edges
class CrashAtTrainEnd(ax.Callback):
    """A crash after the last epoch's backup was written, before the fit deleted it."""

    def on_train_end(self, logs: Any = None) -> None:
        raise Crashed("crash at the end")


def test_a_crash_after_early_stopping_stopped_does_not_train_on(backend: ax.Backend, data, tmp_path: Path) -> None:
    (x, y), val = data

    def fit(net: ax.Network, backup: Path, *extra: ax.Callback) -> tuple[ax.History, ax.EarlyStopping, Seen]:
        stop, seen = ax.EarlyStopping(monitor="val_loss", patience=2), Seen()
        history = net.fit(x, y, epochs=EPOCHS_IN_PROCESS, batch_size=16, validation_data=val,
                          callbacks=[*extra, seen, stop, ax.BackupAndRestore(backup)], verbose=0)
        return history, stop, seen

    ref = make_net(backend)
    ref_history, ref_stop, _ = fit(ref, tmp_path / "reference")
    assert ref_stop.stopped_epoch is not None and ref_stop.stopped_epoch < EPOCHS_IN_PROCESS - 1
    backup = tmp_path / "backup"
    with pytest.raises(Crashed):
        fit(make_net(backend), backup, CrashAtTrainEnd())
    assert (backup / BACKUP_FILE).is_file()
    net = make_net(backend)
    history, stop, seen = fit(net, backup)
    assert stop.stopped_epoch == ref_stop.stopped_epoch
    assert seen.epochs == []  # the fit had stopped: nothing more to train
    assert history.epoch == ref_history.epoch
    for a, b in zip(net.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_model_checkpoint_every_n_batches_keeps_its_rhythm(backend: ax.Backend, data, tmp_path: Path) -> None:
    """save_freq=5 with 8 batches an epoch: the resumed fit saves at the same batches."""
    (x, y), _ = data

    def fit(folder: Path, backup: Path, *extra: ax.Callback) -> None:
        folder.mkdir(exist_ok=True)
        ckpt = ax.ModelCheckpoint(folder / "ck-{epoch}-{loss:.5f}.npz", save_freq=5)
        make_net(backend).fit(x, y, epochs=4, batch_size=16, callbacks=[*extra, ckpt, ax.BackupAndRestore(backup)],
                              verbose=0)

    fit(tmp_path / "reference", tmp_path / "b1")
    with pytest.raises(Crashed):
        fit(tmp_path / "resumed", tmp_path / "b2", CrashAt(2))
    fit(tmp_path / "resumed", tmp_path / "b2")
    names = sorted(p.name for p in (tmp_path / "reference").iterdir())
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == names
