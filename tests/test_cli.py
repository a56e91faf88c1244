"""The command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import anyxp as ax
from anyxp.__main__ import main


def test_info_lists_every_backend(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("numpy", "cupy", "torch", "array_api_strict", "auto ->", "OPENBLAS_CORETYPE"):
        assert name in out


def test_train_prints_the_table_and_saves(backend, tmp_path, capsys) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    model, png = tmp_path / "digits.npz", tmp_path / "curves.png"
    device = None if backend.name != "array_api_strict" else "device1"
    args = ["train", "--backend", backend.name, "--quiet", "--save", str(model), "--plot", str(png)]
    if device:
        args += ["--device", device]
    assert main(args) == 0
    out = capsys.readouterr().out
    for expected in ("| backend", backend.name, "| device", "| epochs", "| time", "| train", "| val", "| test"):
        assert expected in out, expected
    test_row = next(line for line in out.splitlines() if line.startswith("| test"))
    assert float(test_row.split("|")[3].strip().rstrip("%")) >= 95.0
    net = ax.load(model, backend="numpy")
    assert net.predict(np.zeros((1, 64))).shape == (1, 10)
    assert png.stat().st_size > 1000


def test_module_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "anyxp", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("anyxp ")


def test_errors_are_reported_without_a_traceback(capsys, monkeypatch) -> None:
    monkeypatch.setenv("ANYXP_STRICT_BACKEND", "1")
    monkeypatch.setattr(ax.backend, "_problem_cache", {"cupy": "simulated: no GPU"})
    assert main(["train", "--backend", "cupy", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("anyxp: error: backend 'cupy' is unavailable: simulated: no GPU")
    assert "Traceback" not in err


def test_bad_arguments_exit_with_usage(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--backend", "jax"])
    assert info.value.code == 2
    assert "invalid choice: 'jax'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--save", "--plot"])
@pytest.mark.parametrize("where", ["missing-folder", "a-directory"])
def test_destinations_are_checked_before_training(tmp_path, capsys, monkeypatch, option: str, where: str) -> None:
    """A destination that cannot be written fails at once, not after the training."""
    from anyxp import experiments

    monkeypatch.setattr(experiments, "digits_run", lambda **kwargs: pytest.fail("trained before checking"))
    target = tmp_path / "missing" / "out.npz" if where == "missing-folder" else tmp_path
    assert main(["train", "--quiet", option, str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"anyxp: error: {option} {target}: ")
    assert ("does not exist" if where == "missing-folder" else "is a directory") in err


def test_zeros_on_the_command_line_are_not_replaced_by_defaults(monkeypatch, capsys) -> None:
    from anyxp import experiments

    seen = {}

    def record(**kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(experiments, "digits_run", record)
    assert main(["train", "--quiet", "--epochs", "0", "--lr", "0", "--batch-size", "0"]) == 1
    assert (seen["epochs"], seen["lr"], seen["batch_size"]) == (0, 0.0, 0)


def test_ctrl_c_is_a_short_message(monkeypatch, capsys) -> None:
    from anyxp import experiments

    def interrupted(**kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "digits_run", interrupted)
    assert main(["train", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err == "anyxp: interrupted\n"
