"""Training curves with matplotlib (the ``plot`` extra), like the tutorials' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKERS_UP_TO = 30  # epochs; beyond this the curves are drawn as plain lines


def plot_history(history: Any, path: str | Path | None = None, *, title: str | None = None) -> Any:
    """Loss (and accuracy) per epoch, training and validation; saved to ``path`` if given."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'anyxp[plot]'") from None
    curves = history.history
    panels = [m for m in ("loss", "accuracy") if m in curves]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    marker = "o" if len(epochs) <= MARKERS_UP_TO else None  # many epochs: lines, not blobs
    for ax, metric in zip(axes[0], panels, strict=True):
        ax.plot(epochs, curves[metric], marker=marker, label="training")
        if f"val_{metric}" in curves:
            ax.plot(epochs, curves[f"val_{metric}"], marker=marker, label="validation")
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
