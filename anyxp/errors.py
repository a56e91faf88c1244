"""The exceptions and warnings anyxp raises, in one place."""

from __future__ import annotations


class AnyxpError(Exception):
    """Base class of anyxp's own errors."""


class BackendUnavailableError(AnyxpError, RuntimeError):
    """A backend was required (``strict=True``) but cannot run here; the message says why."""


class BackendFallbackWarning(UserWarning):
    """``backend="cupy"`` could not run here, so anyxp ran on NumPy instead."""


class TrainingDivergedError(AnyxpError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and batch."""

    def __init__(self, message: str, *, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class CheckpointError(AnyxpError, ValueError):
    """A file is not a readable anyxp checkpoint (truncated, foreign or inconsistent)."""
