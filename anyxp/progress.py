"""The progress display of ``fit``: verbose 0 (silent), 1 (bars) or 2 (one line per epoch).

With ``verbose=1`` one tqdm bar counts the epochs and shows the latest epoch's logs; a
second, transient bar counts the batches of an epoch, but only once that epoch has run
for ``batch_bar_delay`` seconds, and is cleared when the epoch ends: a run of many short
epochs leaves one line on screen, a run of long epochs shows where each one stands.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

__all__ = ["BATCH_BAR_DELAY", "Progress", "format_logs"]

BATCH_BAR_DELAY = 0.5  # seconds into an epoch before its batch bar appears
MININTERVAL = 0.2  # seconds between redraws of a bar
_NEVER = math.inf  # no batch bar due
_SHORT_FORMAT = frozenset({"learning_rate", "lr"})  # tiny values: 0.001, 3e-05, not 0.0010, 0.0000


def format_logs(logs: dict[str, float]) -> str:
    """``loss=0.1234 accuracy=0.9500 learning_rate=0.001``: 4 decimals, rates in short form."""
    return " ".join(f"{k}={v:.4g}" if k in _SHORT_FORMAT else f"{k}={v:.4f}" for k, v in logs.items())


class Progress:
    """What ``fit`` shows while it trains; call in this order::

        progress = Progress(verbose, epochs=epochs, steps=steps, initial_epoch=initial_epoch)
        try:
            for epoch in range(initial_epoch, epochs):
                progress.epoch_begin(epoch)
                for batch in ...:
                    progress.batch_done()
                progress.epoch_end(epoch, logs)
        finally:
            progress.close()

    ``file`` receives the bars (default: tqdm's, stderr) and the lines of ``verbose=2``
    (default: stdout). ``batch_bar_delay`` is how long an epoch runs before its batch bar
    is drawn (0: from the first batch on).
    """

    def __init__(
        self,
        verbose: int,
        *,
        epochs: int,
        steps: int | None,
        initial_epoch: int = 0,
        file: IO[str] | None = None,
        batch_bar_delay: float = BATCH_BAR_DELAY,
    ) -> None:
        self.verbose = int(verbose)
        self.epochs = epochs
        self.steps = steps
        self.file = file
        self.batch_bar_delay = float(batch_bar_delay)
        self._epoch = initial_epoch
        self._batches = 0  # done in this epoch
        self._epoch_start = 0.0
        self._deadline = _NEVER  # when this epoch's batch bar is due
        self._epoch_bar: Any = None
        self._batch_bar: Any = None
        self._closed = False
        if self.verbose == 1:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._epoch_bar = tqdm(
                total=epochs, initial=initial_epoch, unit="epoch", leave=True, dynamic_ncols=True,
                mininterval=MININTERVAL, file=file,
            )

    # ------------------------------------------------------------------ the loop's calls

    def epoch_begin(self, epoch: int) -> None:
        """An epoch starts; its batch bar, if it runs long enough, counts from here."""
        self._epoch = epoch
        if self._epoch_bar is not None:
            self._close_batch_bar()
            self._batches = 0
            self._epoch_start = time.perf_counter()
            self._deadline = self._epoch_start + self.batch_bar_delay

    def batch_done(self) -> None:
        """One batch trained: a count and, until the batch bar is up, a look at the clock."""
        if self._batch_bar is not None:
            self._batch_bar.update(1)
            return
        self._batches += 1
        if self._deadline < _NEVER and time.perf_counter() >= self._deadline:
            self._open_batch_bar()

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """An epoch's logs: the epoch bar's postfix (verbose=1) or one line (verbose=2)."""
        if self._closed:
            return
        if self._epoch_bar is not None:
            self._close_batch_bar()
            self._deadline = _NEVER
            bar = self._epoch_bar
            bar.set_postfix_str(format_logs(logs), refresh=False)
            bar.update(max(epoch + 1 - bar.n, 0))  # redraws at most every MININTERVAL seconds
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {format_logs(logs)}", file=self.file or sys.stdout)

    def close(self) -> None:
        """Clear the batch bar and leave the epoch bar as it stands; safe to call again."""
        if self._closed:
            return
        self._closed = True
        self._deadline = _NEVER
        try:
            self._close_batch_bar()
        finally:
            if self._epoch_bar is not None:
                self._epoch_bar.close()  # leave=True: a last redraw with the latest logs

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the batch bar

    def _open_batch_bar(self) -> None:
        """This epoch has run ``batch_bar_delay`` seconds: draw its bar below the epoch bar.

        Made here, not in ``epoch_begin``, so short epochs never build one (a tqdm bar costs
        tens of microseconds to make, a notebook widget far more); and made anew each slow
        epoch, as ``tqdm.reset`` redraws at once, which would bring back every short epoch.
        """
        self._deadline = _NEVER
        if self._closed or self._epoch_bar is None:
            return
        bar = self._tqdm(
            total=self.steps, initial=self._batches, desc=f"Epoch {self._epoch + 1}/{self.epochs}", unit="batch",
            leave=False, dynamic_ncols=True, mininterval=MININTERVAL, file=self.file,
        )
        bar.start_t -= time.perf_counter() - self._epoch_start  # elapsed since the epoch began (tqdm's clock)
        bar.refresh()
        self._batch_bar = bar

    def _close_batch_bar(self) -> None:
        bar, self._batch_bar = self._batch_bar, None
        if bar is not None:
            bar.close()  # leave=False: its line is cleared
