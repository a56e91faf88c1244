"""plot_history's panels and the epoch EarlyStopping kept (tests/test_network.py and
tests/test_datasets.py cover History.plot after a fit and the lines-beyond-30-epochs rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import PathCollection

from anyxp.plotting import KEPT_GID, MARKERS_UP_TO, MAX_PANELS, plot_history


class FakeHistory:
    def __init__(self, keys: list[str], epochs: int, *, first: int = 0, kept_epoch: object = None) -> None:
        self.epoch = list(range(first, first + epochs))
        self.history = {k: [1.0 / (e + 1) + i for e in self.epoch] for i, k in enumerate(keys)}
        self.kept_epoch = kept_epoch


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def kept_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == KEPT_GID]


def curves(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() != KEPT_GID]


def kept_points(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PathCollection) and c.get_gid() == KEPT_GID]


def test_one_panel_per_metric_loss_first_without_learning_rate(tmp_path: Path) -> None:
    keys = ["accuracy", "loss", "auc", "val_loss", "val_accuracy", "learning_rate", "val_auc"]
    fig = plot_history(FakeHistory(keys, 5), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "accuracy", "auc"]
    assert [len(curves(a)) for a in fig.axes] == [2, 2, 2]
    assert [line.get_label() for line in curves(fig.axes[0])] == ["training", "validation"]
    # a metric without its val_ curve, and a val_ curve without its metric (not a panel)
    fig = plot_history(FakeHistory(["loss", "precision", "val_recall"], 5))
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "precision"]
    assert [len(curves(a)) for a in fig.axes] == [1, 1]


def test_panels_are_capped(tmp_path: Path) -> None:
    keys = ["loss", "accuracy", "precision", "recall", "auc", "val_loss", "learning_rate"]
    fig = plot_history(FakeHistory(keys, 3), tmp_path / "p.png")
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "accuracy", "precision", "recall"][:MAX_PANELS]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_history(FakeHistory(["learning_rate"], 3))


@pytest.mark.parametrize("epochs", [MARKERS_UP_TO, MARKERS_UP_TO + 1, 351])
def test_markers_only_for_few_epochs(epochs: int) -> None:
    fig = plot_history(FakeHistory(["loss", "val_loss", "accuracy"], epochs, kept_epoch=epochs // 2))
    for a in fig.axes:
        want = "o" if epochs <= MARKERS_UP_TO else "None"
        assert [line.get_marker() for line in curves(a)] == [want] * len(curves(a))
        assert len(curves(a)[0].get_xdata()) == epochs


@pytest.mark.parametrize("first", [0, 40])  # 40: a fit resumed with initial_epoch=40
def test_kept_epoch_is_marked_on_every_panel(tmp_path: Path, first: int) -> None:
    kept = first + 11
    history = FakeHistory(["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"], 20, first=first,
                          kept_epoch=kept)
    fig = plot_history(history, tmp_path / "kept.png")
    assert len(fig.axes) == 2
    for a in fig.axes:
        assert list(curves(a)[0].get_xdata()) == list(range(first + 1, first + 21))
        (line,) = kept_lines(a)
        assert list(line.get_xdata()) == [kept + 1, kept + 1] and line.get_linestyle() == "--"
        assert line.get_label() == f"kept (epoch {kept + 1})"
        assert f"kept (epoch {kept + 1})" in [t.get_text() for t in a.get_legend().get_texts()]
        points = kept_points(a)  # no monitor named: a point on each curve at that epoch
        assert len(points) == 2
        metric = a.get_ylabel()
        want = [[kept + 1, history.history[k][11]] for k in (metric, f"val_{metric}")]
        assert sorted(list(p.get_offsets()[0]) for p in points) == [pytest.approx(w) for w in sorted(want)]


def test_kept_monitor_gets_the_point() -> None:
    history = FakeHistory(["loss", "accuracy", "val_loss", "val_accuracy"], 10, kept_epoch=4)
    history.kept_monitor = "val_loss"
    fig = plot_history(history)
    loss_panel, accuracy_panel = fig.axes
    (point,) = kept_points(loss_panel)
    assert tuple(point.get_offsets()[0]) == pytest.approx((5, history.history["val_loss"][4]))
    assert kept_points(accuracy_panel) == [] and len(kept_lines(accuracy_panel)) == 1
    history.kept_monitor = "val_auc"  # not drawn: a point on every curve
    assert [len(kept_points(a)) for a in plot_history(history).axes] == [2, 2]


@pytest.mark.parametrize("kept", [None, "3", 2.0, True])
def test_no_kept_mark_without_an_int(kept: object) -> None:
    fig = plot_history(FakeHistory(["loss", "val_loss", "accuracy"], 8, kept_epoch=kept))
    for a in fig.axes:
        assert kept_lines(a) == [] and kept_points(a) == []
        assert not any("kept" in t.get_text() for t in a.get_legend().get_texts())
    history = FakeHistory(["loss"], 8)
    del history.kept_epoch  # a History from before the attribute
    assert kept_lines(plot_history(history).axes[0]) == []


def test_kept_epoch_outside_the_history_draws_the_line_only() -> None:
    import numpy as np

    fig = plot_history(FakeHistory(["loss", "val_loss"], 8, first=10, kept_epoch=np.int64(3)))
    (line,) = kept_lines(fig.axes[0])
    assert list(line.get_xdata()) == [4, 4] and kept_points(fig.axes[0]) == []
