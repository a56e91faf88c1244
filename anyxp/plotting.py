"""Training curves with matplotlib (the ``plot`` extra), like the tutorials' figures."""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

MARKERS_UP_TO = 30  # epochs; beyond this the curves are drawn as plain lines
MAX_PANELS = 4  # metrics drawn: loss first, then the others in the order fit logged them
NOT_PLOTTED = frozenset({"learning_rate", "lr"})  # a schedule, not a metric
KEPT_GID = "kept_epoch"  # the gid of the artists that mark the epoch EarlyStopping kept


def plot_history(history: Any, path: str | Path | None = None, *, title: str | None = None) -> Any:
    """One panel per metric (loss, accuracy, ...), training and validation; saved to ``path`` if given.

    Where ``history.kept_epoch`` is an epoch index (the epoch whose weights EarlyStopping
    restored) a dashed vertical line marks it on every panel, and a point marks it on the
    monitored curve (``history.kept_monitor`` where it names a drawn curve, else every curve).
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'anyxp[plot]'") from None
    curves = history.history
    panels = metric_panels(curves)
    if not panels:
        raise ValueError(f"nothing to plot: the history has no metric curves (keys: {list(curves)})")
    rows, cols = (2, 2) if len(panels) == 4 else (1, len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    epochs = [e + 1 for e in history.epoch]  # drawn 1-based, from initial_epoch + 1 on a resumed fit
    marker = "o" if len(epochs) <= MARKERS_UP_TO else None  # many epochs: lines, not blobs
    kept = _kept_epoch(history)
    monitor = getattr(history, "kept_monitor", None)
    if monitor not in {k for m in panels for k in (m, f"val_{m}") if k in curves}:
        monitor = None  # not drawn (or not named): mark every curve
    for ax, metric in zip(axes.flat, panels, strict=True):
        drawn = {metric: ax.plot(epochs, curves[metric], marker=marker, label="training")[0]}
        if f"val_{metric}" in curves:
            val = ax.plot(epochs, curves[f"val_{metric}"], marker=marker, label="validation")[0]
            drawn[f"val_{metric}"] = val
        if kept is not None:
            _mark_kept(ax, kept, history.epoch, curves, drawn, monitor)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def metric_panels(curves: dict[str, Any]) -> list[str]:
    """The metrics drawn, one panel each: every training key but the learning rate, loss first."""
    metrics = [k for k in curves if not k.startswith("val_") and k not in NOT_PLOTTED]
    metrics.sort(key=lambda m: m != "loss")  # stable: the others keep their order
    return metrics[:MAX_PANELS]


def _kept_epoch(history: Any) -> int | None:
    kept = getattr(history, "kept_epoch", None)
    return int(kept) if isinstance(kept, Integral) and not isinstance(kept, bool) else None


def _mark_kept(ax: Any, kept: int, epoch_list: list[int], curves: dict[str, Any], drawn: dict[str, Any],
               monitor: str | None) -> None:
    """The dashed line at the kept epoch, and a ring on the monitored curve(s) at that epoch."""
    x = kept + 1
    ax.axvline(x, color="0.35", linestyle="--", linewidth=1, label=f"kept (epoch {x})", gid=KEPT_GID)
    if kept not in epoch_list:
        return  # an epoch this history did not record: the line only
    i = list(epoch_list).index(kept)
    marked = list(drawn) if monitor is None else [monitor] if monitor in drawn else []
    for key in marked:
        ax.scatter([x], [curves[key][i]], s=60, facecolors="none", edgecolors=drawn[key].get_color(),
                   linewidths=1.5, zorder=3, gid=KEPT_GID)
