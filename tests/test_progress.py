"""The progress display of fit (anyxp.progress), driven directly: no training needed."""

from __future__ import annotations

import io
import re
import time

import pytest

from anyxp.progress import Progress, format_logs

LOGS = {"loss": 0.12345, "accuracy": 0.95, "val_loss": 0.2, "learning_rate": 1e-3}


def run(progress: Progress, epochs: range, batches: int, *, sleep: float = 0.0) -> None:
    for epoch in epochs:
        progress.epoch_begin(epoch)
        for _ in range(batches):
            progress.batch_done()
            if sleep:
                time.sleep(sleep)
        progress.epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": epoch / 1000})
    progress.close()


def test_format_logs() -> None:
    assert format_logs(LOGS) == "loss=0.1235 accuracy=0.9500 val_loss=0.2000 learning_rate=0.001"
    assert format_logs({"learning_rate": 3e-5, "lr": 0.0123456}) == "learning_rate=3e-05 lr=0.01235"
    assert format_logs({}) == ""


def test_many_short_epochs_leave_one_line() -> None:
    out = io.StringIO()
    run(Progress(1, epochs=300, steps=3, file=out), range(300), 3)
    text = out.getvalue()
    assert text.count("\n") <= 3  # one bar over the epochs, not 300 bars
    assert "batch" not in text  # no epoch ran long enough for its batch bar
    last = text.rstrip("\n").split("\r")[-1]
    assert "300/300" in last and "epoch" in last
    assert "loss=0.0033 accuracy=0.2990" in last  # the last epoch's logs


def test_resumed_fit_counts_from_initial_epoch() -> None:
    out = io.StringIO()
    run(Progress(1, epochs=10, steps=2, initial_epoch=7, file=out), range(7, 10), 2)
    text = out.getvalue()
    assert "7/10" in text.split("\r")[1]
    assert "10/10" in text.split("\r")[-1] and "loss=0.1000" in text.split("\r")[-1]


def test_slow_epoch_shows_then_clears_its_batch_bar() -> None:
    out = io.StringIO()
    progress = Progress(1, epochs=2, steps=3, file=out, batch_bar_delay=0)
    progress.epoch_begin(0)
    progress.batch_done()
    bar = progress._batch_bar
    assert bar is not None and "Epoch 1/2" in out.getvalue() and "1/3" in out.getvalue()
    progress.batch_done()
    progress.batch_done()
    assert bar.n == 3
    progress.epoch_end(0, {"loss": 0.5})
    assert progress._batch_bar is None and bar.disable  # closed
    text = out.getvalue()
    # leave=False: its line (one below the epoch bar) is overwritten by blanks, cursor back up
    assert re.search(r"\n\r {10,}\x1b\[A", text[text.rindex("batch/s") :])
    run(progress, range(1, 2), 3)
    assert out.getvalue().count("Epoch 2/2") >= 1 and out.getvalue().endswith("\n")


def test_batch_bar_waits_for_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default delay, an epoch's batch bar appears once it has run 0.5 s."""
    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    progress = Progress(1, epochs=2, steps=10, file=out)
    progress.epoch_begin(0)
    for _ in range(10):  # a fast epoch: no time passes
        progress.batch_done()
    assert progress._batch_bar is None
    progress.epoch_end(0, {"loss": 1.0})
    assert "batch" not in out.getvalue()
    progress.epoch_begin(1)
    for b in range(10):  # 0.2 s a batch: due after the third
        clock[0] += 0.2
        progress.batch_done()
        if b == 1:
            assert progress._batch_bar is None
        if b == 2:
            assert progress._batch_bar is not None and progress._batch_bar.n == 3
    assert progress._batch_bar.n == 10 and "Epoch 2/2" in out.getvalue()
    progress.epoch_end(1, {"loss": 0.5})
    progress.close()
    assert progress._batch_bar is None


def test_verbose_2_prints_one_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    run(Progress(2, epochs=3, steps=4), range(3), 4)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines() == [
        "Epoch 1/3 - loss=1.0000 accuracy=0.0000",
        "Epoch 2/3 - loss=0.5000 accuracy=0.0010",
        "Epoch 3/3 - loss=0.3333 accuracy=0.0020",
    ]
    out = io.StringIO()
    run(Progress(2, epochs=2, steps=1, file=out), range(2), 1)
    assert out.getvalue().count("\n") == 2 and capsys.readouterr().out == ""


def test_verbose_0_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    run(Progress(0, epochs=5, steps=3, file=out, batch_bar_delay=0), range(5), 3, sleep=0.001)
    run(Progress(0, epochs=5, steps=3), range(5), 3)
    assert out.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_close_is_idempotent_and_clears_an_aborted_epoch() -> None:
    out = io.StringIO()
    progress = Progress(1, epochs=5, steps=4, file=out, batch_bar_delay=0)
    epoch_bar = progress._epoch_bar
    with pytest.raises(RuntimeError, match="diverged"):
        try:
            progress.epoch_begin(0)
            progress.epoch_end(0, {"loss": 0.25})
            progress.epoch_begin(1)
            progress.batch_done()
            raise RuntimeError("diverged")
        finally:
            progress.close()
    batch_bar_shown = out.getvalue()
    assert "Epoch 2/5" in batch_bar_shown and progress._batch_bar is None and epoch_bar.disable
    assert re.search(r"\n\r {10,}\x1b\[A", batch_bar_shown[batch_bar_shown.rindex("Epoch 2/5") :])
    assert "1/5" in batch_bar_shown.split("\r")[-1] and "loss=0.2500" in batch_bar_shown.split("\r")[-1]
    progress.close()
    progress.epoch_end(1, {"loss": 0.1})  # too late: ignored
    assert out.getvalue() == batch_bar_shown
    with Progress(1, epochs=1, steps=1, file=out) as again:
        again.epoch_begin(0)
    again.close()
