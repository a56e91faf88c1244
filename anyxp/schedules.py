"""Learning-rate schedules with Keras 3's names, arguments, defaults and formulas.

A schedule is a callable ``schedule(step) -> float`` where ``step`` counts optimizer
updates from 0 (the first update uses ``schedule(0)``). It is evaluated on the host in
Python floats (float64, the `math` module), never on an array library:

>>> sched = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
>>> sched(0), sched(9), sched(10), sched(25)
(0.1, 0.1, 0.05, 0.025)

The formulas are those of ``keras/src/optimizers/schedules/learning_rate_schedule.py``
in https://github.com/keras-team/keras (Keras 3; read at commit 3422977a, the same file
as in the keras 3.15.1 release). Keras computes in the dtype of ``initial_learning_rate``
(float32); anyxp computes in float64 with exact integer arithmetic where Keras floors or
takes ceilings of ``step / decay_steps``, so results agree with Keras to float32 rounding.
Points worth knowing, all as in Keras:

- `PiecewiseConstantDecay`: ``values[0]`` while ``step <= boundaries[0]``, ``values[i]``
  while ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` once
  ``step > boundaries[-1]`` (each boundary belongs to the interval that ends at it).
- `PolynomialDecay` with ``cycle=True``: the decay period is ``decay_steps`` times
  ``ceil(step / decay_steps)``, with the multiplier 1 at step 0; so at every multiple
  of ``decay_steps`` the rate reaches ``end_learning_rate`` and jumps back up at the next step.
- `CosineDecay` with ``warmup_target``: a linear warmup
  ``initial_learning_rate + (warmup_target - initial_learning_rate) * step / warmup_steps``
  while ``step < warmup_steps`` (Keras's docstring leaves out the ``initial_learning_rate +``;
  its code has it), then a cosine decay from ``warmup_target`` to ``alpha * warmup_target`` over
  ``decay_steps`` more steps, constant after. Without ``warmup_target`` there is no warmup
  and ``warmup_steps`` is ignored; with ``warmup_target`` and ``warmup_steps=0`` the decay
  starts from ``warmup_target``.
- `CosineDecayRestarts`: the ``alpha`` floor (a fraction of ``initial_learning_rate``) is
  not scaled by ``m_mul``; a restart's first step has the full (``m_mul``-scaled) rate.

Keras's ``name`` argument (the TensorFlow name scope) is accepted at the same position,
for compatibility, and ignored: it is not stored, and `get_config` leaves it out. The class
attribute ``name`` is the registry key (``"ExponentialDecay"``...) instead. Arguments are
checked more strictly than Keras does: step counts are integers (an integral float such as
``1000.0`` is accepted), learning rates, decay rates, powers and factors are finite and
>= 0, boundaries strictly increase, ``t_mul >= 1``.

`schedule_from_config` rebuilds a schedule from `LearningRateSchedule.get_config` (a
config from Keras's own ``get_config`` is accepted too: its ``name`` is ignored). It only
looks names up in `SCHEDULES` and passes checked values to constructors: a checkpoint's
header may be hostile, and nothing in it is evaluated.
"""

from __future__ import annotations

import abc
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .validation import _describe, as_bool, as_int, as_real

MAX_STEP = 2**63 - 1  # steps and step counts fit an int64, as optimizer step counters do


class LearningRateSchedule(abc.ABC):
    """Base class: a callable ``step -> learning rate`` with a config for checkpoints.

    Subclasses set ``name`` (the `SCHEDULES` key), implement `__call__` (a step already
    checked by `_check_step`) and `get_config` (the constructor's arguments as JSON values:
    numbers, lists of numbers, bools, None).
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def __call__(self, step: int) -> float:
        """The learning rate of update number ``step`` (from 0)."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, as JSON-serialisable values."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        """An instance from `get_config`'s dict; unknown or missing keys are a TypeError."""
        return cls(**_checked_keys(cls, config))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------- checks


def _check_step(step: Any) -> int:
    """The step as a Python int in [0, 2**63): an int or NumPy integer, not a bool or a float."""
    if type(step) is int and 0 <= step <= MAX_STEP:  # the optimizer's own count: checked cheaply
        return step
    step = as_int(step, "step", minimum=0)
    if step > MAX_STEP:
        raise ValueError(f"step must be below 2**63, got {step}")
    return step


def _count(value: Any, name: str, minimum: int) -> int:
    """A number of steps: an integer (or an integral float, as Keras's examples pass) in
    [minimum, 2**63), as a Python int."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    count = as_int(value, name, minimum=minimum)
    if count > MAX_STEP:
        raise ValueError(f"{name} must be below 2**63, got {count}")
    return count


def _rate(value: Any, name: str) -> float:
    """A finite real number >= 0, as a Python float."""
    return as_real(value, name, minimum=0)


def _check_name(name: Any) -> None:
    """Keras's ``name`` argument: a string or None, ignored."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None (it is ignored), got {_describe(name)}")


def _number_list(value: Any, name: str) -> list[Any]:
    """A list or tuple (or 1-D NumPy array), as a list; strings and mappings are a TypeError."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {_describe(value)}")
    return list(value)


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` (base >= 0), inf where it overflows (as Keras's float would)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------- schedules


class _RateDecay(LearningRateSchedule):
    """Shared by `ExponentialDecay` and `InverseTimeDecay`: the same arguments, and the
    decay's progress ``step / decay_steps`` (floored with ``staircase``)."""

    name = "_RateDecay"

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str | None = None,
    ) -> None:
        _check_name(name)
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _count(decay_steps, "decay_steps", 1)
        self.decay_rate = _rate(decay_rate, "decay_rate")
        self.staircase = as_bool(staircase, "staircase")

    def _progress(self, step: int) -> float:
        step = _check_step(step)
        return step // self.decay_steps if self.staircase else step / self.decay_steps

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase``,
    the exponent is ``floor(step / decay_steps)`` (the rate drops every ``decay_steps``).

    >>> ExponentialDecay(0.1, 10, 0.5)(5)  # 0.1 * 0.5 ** 0.5
    0.07071067811865477
    """

    name = "ExponentialDecay"

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate * _power(self.decay_rate, self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after ``boundaries[-1]``.

    Boundaries are strictly increasing integers >= 0 (at least one); values are learning
    rates (finite, >= 0), one more than the boundaries.

    >>> sched = PiecewiseConstantDecay([100, 110], [1.0, 0.5, 0.1])
    >>> sched(100), sched(101), sched(110), sched(111)
    (1.0, 0.5, 0.5, 0.1)
    """

    name = "PiecewiseConstantDecay"

    def __init__(self, boundaries: Sequence[int], values: Sequence[float], name: str | None = None) -> None:
        _check_name(name)
        boundaries = _number_list(boundaries, "boundaries")
        values = _number_list(values, "values")
        if not boundaries:
            raise ValueError("boundaries must hold at least one step")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"values must hold one more element than boundaries: got {len(boundaries)} boundaries "
                f"and {len(values)} values"
            )
        self.boundaries = [_count(b, f"boundaries[{i}]", 0) for i, b in enumerate(boundaries)]
        for i in range(1, len(self.boundaries)):
            if self.boundaries[i] <= self.boundaries[i - 1]:
                raise ValueError(
                    f"boundaries must be strictly increasing, got boundaries[{i - 1}]={self.boundaries[i - 1]} "
                    f"and boundaries[{i}]={self.boundaries[i]}"
                )
        self.values = [_rate(v, f"values[{i}]") for i, v in enumerate(values)]

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        # the first boundary >= step closes the interval holding step (bisect_left)
        lo, hi = 0, len(self.boundaries)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.boundaries[mid] < step:
                lo = mid + 1
            else:
                hi = mid
        return self.values[lo]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` in ``decay_steps`` steps:
    ``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``.

    With ``cycle``, no minimum: the period is ``decay_steps * ceil(step / decay_steps)``
    (``decay_steps`` at step 0), so the rate decays again after each multiple of ``decay_steps``,
    from a rate that is lower at each cycle.

    >>> PolynomialDecay(1.0, 10, 0.0, power=2.0)(5)
    0.25
    """

    name = "PolynomialDecay"

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str | None = None,
    ) -> None:
        _check_name(name)
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _count(decay_steps, "decay_steps", 1)
        self.end_learning_rate = _rate(end_learning_rate, "end_learning_rate")
        self.power = _rate(power, "power")
        self.cycle = as_bool(cycle, "cycle")

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        if self.cycle:
            multiplier = 1 if step == 0 else -(-step // self.decay_steps)  # ceil, exactly
            p = step / (self.decay_steps * multiplier)
        else:
            p = min(step, self.decay_steps) / self.decay_steps
        start, end = self.initial_learning_rate, self.end_learning_rate
        return (start - end) * math.pow(1.0 - p, self.power) + end

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
        }


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``; with
    ``staircase``, ``floor(step / decay_steps)`` in place of ``step / decay_steps``.

    >>> InverseTimeDecay(0.1, 1, 0.5)(2)
    0.05
    """

    name = "InverseTimeDecay"

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate / (1.0 + self.decay_rate * self._progress(step))


def _cosine(fraction: float, alpha: float) -> float:
    """``(1 - alpha) * 0.5 * (1 + cos(pi * fraction)) + alpha``: 1 at 0, alpha at 1."""
    return (1.0 - alpha) * (0.5 * (1.0 + math.cos(math.pi * fraction))) + alpha


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup, then a cosine decay to ``alpha`` times its start, constant after.

    Without ``warmup_target``: ``initial_learning_rate * d(min(step, decay_steps) / decay_steps)``
    where ``d(x) = (1 - alpha) * 0.5 * (1 + cos(pi * x)) + alpha`` (``warmup_steps`` is then
    ignored, as in Keras). With it: ``initial_learning_rate + (warmup_target -
    initial_learning_rate) * step / warmup_steps`` while ``step < warmup_steps``, then
    ``warmup_target * d(min(step - warmup_steps, decay_steps) / decay_steps)``.
    ``name`` is Keras's (a name scope), accepted at Keras's position and ignored.

    >>> CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)(2)
    0.5
    """

    name = "CosineDecay"

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str | None = None,
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        _check_name(name)
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _count(decay_steps, "decay_steps", 1)
        self.alpha = _rate(alpha, "alpha")
        self.warmup_target = None if warmup_target is None else _rate(warmup_target, "warmup_target")
        self.warmup_steps = _count(warmup_steps, "warmup_steps", 0)

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        if self.warmup_target is None:
            return self.initial_learning_rate * _cosine(min(step, self.decay_steps) / self.decay_steps, self.alpha)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        decayed = min(step - self.warmup_steps, self.decay_steps)
        return self.warmup_target * _cosine(decayed / self.decay_steps, self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """SGDR (Loshchilov & Hutter): cosine decays with warm restarts. Period ``i`` (from 0)
    lasts ``first_decay_steps * t_mul ** i`` steps; its rate is
    ``initial_learning_rate * ((1 - alpha) * m_mul ** i * 0.5 * (1 + cos(pi * x)) + alpha)``
    where ``x`` in [0, 1) is the fraction of the period done. ``t_mul >= 1``.

    >>> sched = CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5)
    >>> sched(0), sched(5), sched(10), sched(30)
    (1.0, 0.5, 0.5, 0.25)
    """

    name = "CosineDecayRestarts"

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str | None = None,
    ) -> None:
        _check_name(name)
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.first_decay_steps = _count(first_decay_steps, "first_decay_steps", 1)
        self.t_mul = as_real(t_mul, "t_mul", minimum=1)
        self.m_mul = _rate(m_mul, "m_mul")
        self.alpha = _rate(alpha, "alpha")

    def _period(self, step: int) -> tuple[int, float]:
        """The restart index ``i`` of ``step`` and the fraction of period ``i`` done."""
        if self.t_mul == 1.0:
            i, done = divmod(step, self.first_decay_steps)
            return i, done / self.first_decay_steps
        t = self.t_mul
        fraction = step / self.first_decay_steps  # in units of the first period

        def start(i: int) -> float:  # where period i starts: 1 + t + ... + t**(i-1)
            return (_power(t, i) - 1.0) / (t - 1.0)

        i = math.floor(math.log1p(fraction * (t - 1.0)) / math.log(t))  # Keras's formula...
        while i > 0 and start(i) > fraction:  # ...corrected where rounding crossed a restart
            i -= 1
        while start(i + 1) <= fraction:
            i += 1
        return i, (fraction - start(i)) / _power(t, i)

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        i, fraction = self._period(step)
        m_fac = _power(self.m_mul, i)
        cosine = 0.5 * m_fac * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
        }


# --------------------------------------------------------------------------- registry

SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    cls.name: cls
    for cls in (
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}


def _checked_keys(cls: type[LearningRateSchedule], config: Any) -> dict[str, Any]:
    """``config`` as keyword arguments of ``cls``: a dict of string keys, each a parameter
    of ``cls``, with every required parameter present; else a TypeError naming the keys."""
    if not isinstance(config, Mapping):
        raise TypeError(f"the config of {cls.name} must be a dict, got {_describe(config)}")
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind in named]
    valid = [p.name for p in params]
    for key in config:
        if not isinstance(key, str):
            raise TypeError(f"the config of {cls.name} has a key that is not a string: {_describe(key)}")
        if key not in valid:
            raise TypeError(
                f"the config of {cls.name} has an unknown key {key[:100]!r}; valid keys are {', '.join(valid)}"
            )
    missing = [p.name for p in params if p.default is p.empty and p.name not in config]
    if missing:
        raise TypeError(f"the config of {cls.name} lacks {', '.join(missing)}")
    return dict(config)


def schedule_from_config(name: str, config: Mapping[str, Any]) -> LearningRateSchedule:
    """The schedule ``SCHEDULES[name]`` built from ``config`` (as `get_config` gives it).

    An unknown name is a ValueError naming the valid ones; a config that is not a dict of
    the constructor's keyword arguments is a TypeError; a bad value is the TypeError or
    ValueError the constructor raises. Nothing is evaluated: the input may be hostile.
    """
    if not isinstance(name, str) or name not in SCHEDULES:
        shown = name[:100] if isinstance(name, str) else name
        what = repr(shown) if isinstance(name, str) else _describe(name)
        raise ValueError(f"unknown learning-rate schedule {what}; valid names are {', '.join(SCHEDULES)}")
    return SCHEDULES[name].from_config(config)


def as_learning_rate(lr: Any) -> float | Callable[[int], float]:
    """An optimizer's ``lr``: a real number >= 0 (as a Python float), a
    `LearningRateSchedule`, or any other callable ``step -> learning rate`` (as is).

    >>> as_learning_rate(1e-3), as_learning_rate(lambda step: 0.1 / (1 + step))(9)
    (0.001, 0.01)
    """
    if isinstance(lr, LearningRateSchedule):
        return lr
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        return as_real(lr, "lr", minimum=0)
    if isinstance(lr, type):
        raise TypeError(
            f"lr must be a number, a learning-rate schedule or a function step -> lr, got the class "
            f"{lr.__name__}: create an instance (e.g. {lr.__name__}(...))"
        )
    if callable(lr):
        return lr
    raise TypeError(
        f"lr must be a number >= 0, a learning-rate schedule or a function step -> lr, got {_describe(lr)}"
    )
