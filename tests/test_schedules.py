"""Learning-rate schedules (anyxp.schedules): Keras 3's formulas, configs, checks.

Pure host code, no backend. Three kinds of test:

- against the formulas of Keras's docs, written out here, at chosen steps (exact values
  where the arithmetic is exact);
- against Keras itself where it is installed (``pytest.importorskip``), with its torch
  backend and ``floatx`` float64, so the two agree to 1e-12: with Keras's default float32
  they agree only to float32 rounding, and at a restart of `CosineDecayRestarts` with
  ``t_mul=1.5`` float32 even puts step 25 at the end of the previous period;
- configs, registry, `as_learning_rate` and every error message.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from anyxp.schedules import (
    SCHEDULES,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    as_learning_rate,
    schedule_from_config,
)

POSITIVE = "must be an integer >= 1 (a positive integer), got"
NONNEG = "must be a finite number >= 0, got"
IGNORED = "name must be a string or None (it is ignored), got"
LR_KINDS = "lr must be a number >= 0, a learning-rate schedule or a function step -> lr, got"

NAMES = [
    "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay",
    "CosineDecayRestarts",
]

# (name, positional args, keyword args): what the oracle, the round trips and the pickling test
CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("ExponentialDecay", (0.1, 10, 0.5), {}),
    ("ExponentialDecay", (0.1, 10, 0.5), {"staircase": True}),
    ("ExponentialDecay", (0.3, 7, 0.96), {"staircase": True}),
    ("ExponentialDecay", (0.01, 7, 1.1), {}),  # a growth, overflowing to inf far out
    ("PiecewiseConstantDecay", ([10], [0.1, 0.01]), {}),
    ("PiecewiseConstantDecay", ([10, 20, 35], [1.0, 0.5, 0.1, 0.01]), {}),
    ("PolynomialDecay", (0.1, 10), {}),
    ("PolynomialDecay", (0.1, 10, 0.01, 0.5), {"cycle": True}),
    ("PolynomialDecay", (0.1, 10, 0.01, 2.0), {}),
    ("PolynomialDecay", (0.1, 13, 0.0, 3.0), {"cycle": True}),
    ("PolynomialDecay", (0.01, 10, 0.1), {}),  # increasing
    ("InverseTimeDecay", (0.1, 10, 0.5), {}),
    ("InverseTimeDecay", (0.1, 10, 0.5), {"staircase": True}),
    ("InverseTimeDecay", (0.2, 3, 2.0), {}),
    ("CosineDecay", (0.1, 100), {}),
    ("CosineDecay", (0.1, 100), {"alpha": 0.1}),
    ("CosineDecay", (0.0, 100), {"alpha": 0.1, "warmup_target": 0.2, "warmup_steps": 20}),
    ("CosineDecay", (0.05, 30), {"warmup_target": 0.2, "warmup_steps": 17}),
    ("CosineDecay", (0.3, 100), {"warmup_target": 0.1, "warmup_steps": 10}),  # a warmup down
    ("CosineDecay", (0.05, 100), {"warmup_target": 0.2, "warmup_steps": 0}),
    ("CosineDecay", (0.05, 100), {"warmup_steps": 10}),  # ignored without warmup_target
    ("CosineDecayRestarts", (0.1, 10), {}),
    ("CosineDecayRestarts", (0.1, 10), {"t_mul": 1.0, "m_mul": 0.5, "alpha": 0.1}),
    ("CosineDecayRestarts", (0.1, 10), {"t_mul": 1.5, "m_mul": 0.8, "alpha": 0.05}),
    ("CosineDecayRestarts", (0.1, 10), {"t_mul": 2.0, "m_mul": 0.5}),
    ("CosineDecayRestarts", (0.1, 7), {"t_mul": 3.0, "m_mul": 0.9}),
    ("CosineDecayRestarts", (0.1, 4), {"t_mul": 1.0, "m_mul": 1.2, "alpha": 0.2}),
]

# every step to 160, then each boundary of the cases above (multiples of the decay steps,
# restarts of t_mul 1.5, 2, 3) with its neighbours, and steps far beyond; below 2**24, where
# Keras (which takes a float32 ceil in PolynomialDecay's cycle even with floatx float64) is exact
FAR_STEPS = sorted(
    {s + d for s in (199, 200, 310, 630, 700, 1093, 1270, 2550, 3276, 5110) for d in (-1, 0, 1)}
    | {10_000, 12_345, 100_000, 10**6, 2**24 - 1}
)
STEPS = list(range(161)) + FAR_STEPS


def make(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LearningRateSchedule:
    return SCHEDULES[name](*args, **kwargs)


def case_id(case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> str:
    name, args, kwargs = case
    return f"{name}{args}{kwargs or ''}".replace(" ", "")


# --------------------------------------------------------------------------- Keras as oracle


@pytest.fixture(scope="module")
def keras64() -> Iterator[Any]:
    """Keras 3 on its torch backend, computing in float64 (restored after)."""
    if "keras" not in sys.modules:  # the backend is fixed at Keras's import
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:  # not installed, or its torch backend cannot load
        pytest.skip(f"keras cannot be imported: {exc}")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    before = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx(before)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_keras(keras64: Any, case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    name, args, kwargs = case
    ours = make(name, args, kwargs)
    theirs = getattr(keras64.optimizers.schedules, name)(*args, **kwargs)
    for step in STEPS:
        expected = float(theirs(step))
        got = ours(step)
        assert isinstance(got, float)
        assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-15), (name, step, got, expected)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reads_keras_configs(keras64: Any, case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    """Keras's own get_config (with its ``name``) builds the same schedule."""
    name, args, kwargs = case
    config = getattr(keras64.optimizers.schedules, name)(*args, **kwargs).get_config()
    assert isinstance(config["name"], str)
    rebuilt = schedule_from_config(name, config)
    assert rebuilt.get_config() == make(name, args, kwargs).get_config()


# --------------------------------------------------------------------------- the formulas


def test_exponential_decay() -> None:
    staircase = ExponentialDecay(0.1, 10, 0.5, staircase=True)
    assert [staircase(s) for s in (0, 9, 10, 19, 20, 25)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    smooth = ExponentialDecay(0.1, 10, 0.5)
    assert smooth(0) == 0.1
    assert smooth(20) == 0.025
    for step in (1, 5, 13, 999):
        assert smooth(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-15)
    assert ExponentialDecay(0.1, 10, 0.0)(0) == 0.1  # 0 ** 0
    assert ExponentialDecay(0.1, 10, 0.0)(1) == 0.0
    assert ExponentialDecay(0.1, 1, 10.0)(400) == math.inf  # overflow, as a float would


def test_piecewise_constant_boundaries_belong_to_the_interval_they_close() -> None:
    sched = PiecewiseConstantDecay([100, 110], [1.0, 0.5, 0.1])
    got = {s: sched(s) for s in (0, 99, 100, 101, 109, 110, 111, 10**9)}
    assert got == {0: 1.0, 99: 1.0, 100: 1.0, 101: 0.5, 109: 0.5, 110: 0.5, 111: 0.1, 10**9: 0.1}
    assert PiecewiseConstantDecay([0], [1.0, 2.0])(0) == 1.0
    assert PiecewiseConstantDecay([0], [1.0, 2.0])(1) == 2.0
    many = PiecewiseConstantDecay(list(range(0, 1000, 10)), [float(i) for i in range(101)])
    for step in (0, 1, 10, 11, 555, 990, 991):
        assert many(step) == float(-(-step // 10)) == (step + 9) // 10


def test_polynomial_decay() -> None:
    def formula(step: int, initial: float, decay_steps: int, end: float, power: float) -> float:
        step = min(step, decay_steps)
        return (initial - end) * (1 - step / decay_steps) ** power + end

    assert PolynomialDecay(1.0, 10, 0.0, power=2.0)(5) == 0.25
    default = PolynomialDecay(0.1, 100)  # end_learning_rate 1e-4, power 1
    for step in (0, 1, 50, 99, 100, 101, 10**6):
        assert default(step) == pytest.approx(formula(step, 0.1, 100, 1e-4, 1.0), rel=1e-14)
    assert default(100) == default(10**6) == pytest.approx(1e-4, rel=1e-12)
    sqrt = PolynomialDecay(0.1, 10, 0.01, power=0.5)
    for step in range(15):
        assert sqrt(step) == pytest.approx(formula(step, 0.1, 10, 0.01, 0.5), rel=1e-14)


def test_polynomial_decay_cycle() -> None:
    # the period is decay_steps * ceil(step / decay_steps), decay_steps at step 0
    sched = PolynomialDecay(1.0, 10, 0.0, cycle=True)
    assert sched(0) == 1.0
    assert sched(5) == 0.5
    assert sched(10) == 0.0  # the end of the first period...
    assert sched(11) == pytest.approx(1 - 11 / 20, rel=1e-15)  # ...then the second
    assert sched(20) == 0.0
    assert sched(21) == pytest.approx(1 - 21 / 30, rel=1e-15)
    assert sched(10**6) == 0.0
    assert sched(10**6 + 1) == pytest.approx(1 - (10**6 + 1) / (10**6 + 10), rel=1e-9)


def test_inverse_time_decay() -> None:
    assert InverseTimeDecay(0.1, 1, 0.5)(2) == 0.05
    smooth = InverseTimeDecay(0.1, 10, 0.5)
    for step in (0, 3, 10, 77, 10**5):
        assert smooth(step) == pytest.approx(0.1 / (1 + 0.5 * step / 10), rel=1e-15)
    stairs = InverseTimeDecay(1.0, 10, 1.0, staircase=True)
    assert [stairs(s) for s in (0, 9, 10, 19, 20)] == [1.0, 1.0, 0.5, 0.5, pytest.approx(1 / 3, rel=1e-15)]
    assert InverseTimeDecay(0.1, 10, 0.0)(10**6) == 0.1


def test_cosine_decay() -> None:
    def formula(step: int, initial: float, decay_steps: int, alpha: float) -> float:
        step = min(step, decay_steps)
        return initial * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)

    sched = CosineDecay(1.0, 10)
    assert [sched(s) for s in (0, 5, 10, 11, 10**6)] == [1.0, 0.5, 0.0, 0.0, 0.0]
    floor = CosineDecay(0.5, 100, alpha=0.1)
    assert floor(100) == floor(5000) == pytest.approx(0.05, rel=1e-15)
    for step in (1, 25, 50, 99):
        assert floor(step) == pytest.approx(formula(step, 0.5, 100, 0.1), rel=1e-14)


def test_cosine_decay_warmup() -> None:
    # linear from initial_learning_rate to warmup_target over warmup_steps, then the cosine
    # from warmup_target to alpha * warmup_target over decay_steps more
    sched = CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    got = [sched(s) for s in (0, 1, 2, 3, 4, 9, 14, 15, 1000)]
    assert got == [0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.0, 0.0, 0.0]
    # the warmup starts from initial_learning_rate (Keras's docstring omits the "+ initial")
    lifted = CosineDecay(0.2, 10, alpha=0.5, warmup_target=1.0, warmup_steps=4)
    assert lifted(0) == 0.2
    assert lifted(2) == pytest.approx(0.2 + 0.8 * 2 / 4, rel=1e-15)
    assert lifted(4) == 1.0
    assert lifted(14) == lifted(99) == 0.5  # alpha times warmup_target
    # a target and no warmup steps: the decay starts from the target
    assert CosineDecay(0.3, 10, warmup_target=1.0)(0) == 1.0
    assert CosineDecay(0.3, 10, warmup_target=1.0)(5) == 0.5
    # warmup_steps without a target: ignored, as in Keras
    ignored = CosineDecay(1.0, 10, warmup_steps=4)
    assert [ignored(s) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    # Keras's positional order, name (ignored) fourth
    assert CosineDecay(0.0, 10, 0.0, "warm", 1.0, 4)(2) == 0.5


def test_cosine_decay_restarts() -> None:
    # periods of 10, 20, 40, 80...: restarts at 10, 30, 70, 150, each at m_mul times the last
    sched = CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5)
    assert [sched(s) for s in (0, 5, 10, 20, 30, 50, 70, 150)] == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625]
    assert sched(29) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 19 / 20)), rel=1e-14)
    # the default t_mul is 2 and m_mul 1
    default = CosineDecayRestarts(0.1, 10)
    assert [default(s) for s in (0, 10, 30, 70)] == [0.1, 0.1, 0.1, 0.1]
    # t_mul 1: equal periods; alpha is a floor that m_mul does not scale
    equal = CosineDecayRestarts(1.0, 10, t_mul=1.0, m_mul=0.5, alpha=0.2)
    assert equal(0) == 1.0
    assert equal(10) == pytest.approx(0.8 * 0.5 + 0.2, rel=1e-15)
    assert equal(15) == pytest.approx(0.8 * 0.5 * 0.5 + 0.2, rel=1e-15)
    assert equal(10 * 200) == pytest.approx(0.8 * 0.5**200 + 0.2, rel=1e-15)
    # t_mul 1.5 over 20 steps: restarts at 20, 50, 95
    fractional = CosineDecayRestarts(1.0, 20, t_mul=1.5, m_mul=0.8, alpha=0.05)
    for i, start in enumerate((0, 20, 50, 95)):
        assert fractional(start) == pytest.approx(0.95 * 0.8**i + 0.05, rel=1e-14)


@pytest.mark.parametrize(("t_mul", "first"), [(2.0, 1), (3.0, 1), (1.5, 2**30), (1.25, 4**20)])
def test_cosine_decay_restarts_find_every_restart(t_mul: float, first: int) -> None:
    """Every restart that falls on a step (below 2**53) starts its period at the full rate,
    far out too, where the float log of Keras's formula lands on either side of it."""
    sched = CosineDecayRestarts(1.0, first, t_mul=t_mul)
    t = Fraction(t_mul)
    previous, start, length, checked = None, Fraction(0), Fraction(first), 0
    while start < 2**53:
        if start.denominator == 1:
            step = int(start)
            assert sched(step) == 1.0, (step, sched(step))
            if previous is not None and step - 1 > previous:  # step - 1 ends the previous period
                done = float((step - 1 - previous) / (length / t))
                assert sched(step - 1) == pytest.approx(0.5 * (1 + math.cos(math.pi * done)), rel=1e-9, abs=1e-12)
                assert sched(step - 1) < 1.0
            checked += 1
        previous, start, length = start, start + length, length * t
    assert checked >= 20


def test_float_results_and_numpy_steps() -> None:
    sched = PiecewiseConstantDecay([5], [1, 2])  # integer values come back as floats
    assert type(sched(0)) is float
    assert sched(0) == 1.0
    assert sched(np.int64(6)) == 2.0
    assert sched(np.uint8(3)) == 1.0
    for name, args, kwargs in CASES:
        assert type(make(name, args, kwargs)(np.int32(7))) is float


# --------------------------------------------------------------------------- configs


def test_registry() -> None:
    assert list(SCHEDULES) == NAMES
    for name, cls in SCHEDULES.items():
        assert cls.name == name
        assert issubclass(cls, LearningRateSchedule)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_config_round_trip(case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    name, args, kwargs = case
    sched = make(name, args, kwargs)
    config = sched.get_config()
    assert "name" not in config
    assert sched.name == name
    text = json.dumps(config, allow_nan=False)
    assert json.loads(text) == config
    for value in config.values():
        assert value is None or isinstance(value, bool | int | float | list)
    rebuilt = schedule_from_config(name, json.loads(text))
    assert type(rebuilt) is type(sched)
    assert rebuilt.get_config() == config
    assert [rebuilt(s) for s in STEPS] == [sched(s) for s in STEPS]
    copied = pickle.loads(pickle.dumps(sched))
    assert copied.get_config() == config
    assert repr(copied) == repr(sched)


def test_configs_and_repr() -> None:
    assert ExponentialDecay(0.1, 10.0, 0.5, staircase=np.bool_(True)).get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "staircase": True,
    }
    assert PiecewiseConstantDecay((10, np.int64(20)), np.array([1.0, 0.5, 0.1])).get_config() == {
        "boundaries": [10, 20], "values": [1.0, 0.5, 0.1],
    }
    assert PolynomialDecay(1, 10).get_config() == {
        "initial_learning_rate": 1.0, "decay_steps": 10, "end_learning_rate": 0.0001, "power": 1.0, "cycle": False,
    }
    assert InverseTimeDecay(0.1, 1, 0.5).get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5, "staircase": False,
    }
    assert CosineDecay(0.1, 100, name="ignored").get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 100, "alpha": 0.0, "warmup_target": None, "warmup_steps": 0,
    }
    assert CosineDecayRestarts(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0,
    }
    assert repr(ExponentialDecay(0.1, 10, 0.5)) == (
        "ExponentialDecay(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=False)"
    )
    piecewise = PiecewiseConstantDecay([5], [0.1, 0.01])
    assert repr(piecewise) == "PiecewiseConstantDecay(boundaries=[5], values=[0.1, 0.01])"
    # a config holds copies: changing it changes nothing
    sched = PiecewiseConstantDecay([5], [0.1, 0.01])
    sched.get_config()["values"][0] = 9.0
    assert sched(0) == 0.1


def test_from_config_accepts_keras_name_key() -> None:
    config = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "staircase": True,
              "name": "ExponentialDecay"}
    assert schedule_from_config("ExponentialDecay", config)(25) == 0.025
    assert ExponentialDecay.from_config(config)(25) == 0.025


def test_unknown_schedule_names() -> None:
    valid = ", ".join(NAMES)
    with pytest.raises(ValueError, match=f"unknown learning-rate schedule 'Nope'; valid names are {valid}$"):
        schedule_from_config("Nope", {})
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'exponentialdecay'"):
        schedule_from_config("exponentialdecay", {})
    with pytest.raises(ValueError, match=r"unknown learning-rate schedule NoneType None; valid names are Exp"):
        schedule_from_config(None, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown learning-rate schedule list \['ExponentialDecay'\]"):
        schedule_from_config(["ExponentialDecay"], {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown learning-rate schedule 'xxxxx+'; valid") as info:
        schedule_from_config("x" * 10**6, {})
    assert len(str(info.value)) < 400  # a hostile name is not echoed whole


def test_bad_config_keys() -> None:
    good = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    valid = "initial_learning_rate, decay_steps, decay_rate, staircase, name"
    with pytest.raises(TypeError, match=f"ExponentialDecay has an unknown key 'rate'; valid keys are {valid}$"):
        schedule_from_config("ExponentialDecay", {**good, "rate": 0.5})
    with pytest.raises(TypeError, match=r"^the config of ExponentialDecay lacks decay_steps, decay_rate$"):
        schedule_from_config("ExponentialDecay", {"initial_learning_rate": 0.1})
    with pytest.raises(TypeError, match=r"CosineDecayRestarts lacks initial_learning_rate, first_decay_steps$"):
        schedule_from_config("CosineDecayRestarts", {})
    with pytest.raises(TypeError, match=r"the config of PolynomialDecay must be a dict, got list \[0.1, 10\]"):
        schedule_from_config("PolynomialDecay", [0.1, 10])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the config of PolynomialDecay must be a dict, got NoneType None"):
        schedule_from_config("PolynomialDecay", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="has a key that is not a string: int 3"):
        schedule_from_config("ExponentialDecay", {**good, 3: 1})
    with pytest.raises(TypeError, match="has an unknown key 'self'"):
        schedule_from_config("ExponentialDecay", {**good, "self": 1})
    with pytest.raises(TypeError, match="has an unknown key '__class__'"):
        schedule_from_config("ExponentialDecay", {**good, "__class__": "os.system"})


def test_hostile_config_values_are_checked_not_evaluated() -> None:
    good = {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    code = "__import__('os').system('false')"
    with pytest.raises(TypeError, match=r"initial_learning_rate must be a real number, got str \"__import__"):
        schedule_from_config("ExponentialDecay", {**good, "initial_learning_rate": code})
    with pytest.raises(TypeError, match="decay_steps must be an integer, got str '10'"):
        schedule_from_config("ExponentialDecay", {**good, "decay_steps": "10"})
    with pytest.raises(TypeError, match="decay_rate must be a real number, got dict"):
        schedule_from_config("ExponentialDecay", {**good, "decay_rate": {"a": 1}})
    with pytest.raises(TypeError, match="staircase must be True or False, got str 'yes'"):
        schedule_from_config("ExponentialDecay", {**good, "staircase": "yes"})
    with pytest.raises(TypeError, match="staircase must be True or False, got int 1"):
        schedule_from_config("ExponentialDecay", {**good, "staircase": 1})
    with pytest.raises(ValueError, match=f"initial_learning_rate {NONNEG} 1000000"):
        schedule_from_config("ExponentialDecay", {**good, "initial_learning_rate": 10**400})
    with pytest.raises(ValueError, match=r"decay_steps must be below 2\*\*63, got 1000000"):
        schedule_from_config("ExponentialDecay", {**good, "decay_steps": 10**400})
    with pytest.raises(TypeError, match="name must be a string or None"):
        schedule_from_config("ExponentialDecay", {**good, "name": [1]})
    with pytest.raises(TypeError, match="boundaries must be a list of numbers, got str"):
        schedule_from_config("PiecewiseConstantDecay", {"boundaries": "12", "values": [1, 2, 3]})
    with pytest.raises(TypeError, match="boundaries must be a list of numbers, got dict"):
        schedule_from_config("PiecewiseConstantDecay", {"boundaries": {"0": 1}, "values": [1, 2]})
    with pytest.raises(TypeError, match=r"boundaries\[0\] must be an integer, got list \[1\]"):
        schedule_from_config("PiecewiseConstantDecay", {"boundaries": [[1]], "values": [1, 2]})
    with pytest.raises(TypeError, match=r"values\[1\] must be a real number, got NoneType None"):
        schedule_from_config("PiecewiseConstantDecay", {"boundaries": [1], "values": [1, None]})
    with pytest.raises(TypeError, match=r"warmup_target must be a real number, got str '0\.1'"):
        schedule_from_config("CosineDecay", {"initial_learning_rate": 0, "decay_steps": 5, "warmup_target": "0.1"})
    # a long list of boundaries is fine
    sched = schedule_from_config("PiecewiseConstantDecay", {"boundaries": list(range(10**5)),
                                                            "values": [1.0] * (10**5 + 1)})
    assert sched(10**6) == 1.0


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("make_bad", "error", "message"),
    [
        (lambda: ExponentialDecay(0.1, 0, 0.5), ValueError, f"decay_steps {POSITIVE} 0"),
        (lambda: ExponentialDecay(0.1, -5, 0.5), ValueError, f"decay_steps {POSITIVE} -5"),
        (lambda: ExponentialDecay(0.1, 1.5, 0.5), ValueError, f"decay_steps {POSITIVE} 1.5"),
        (lambda: ExponentialDecay(0.1, math.inf, 0.5), ValueError, f"decay_steps {POSITIVE} inf"),
        (lambda: ExponentialDecay(0.1, True, 0.5), TypeError, "decay_steps must be an integer, got bool True"),
        (lambda: ExponentialDecay(0.1, 10, -0.5), ValueError, f"decay_rate {NONNEG} -0.5"),
        (lambda: ExponentialDecay(0.1, 10, math.nan), ValueError, f"decay_rate {NONNEG} nan"),
        (lambda: ExponentialDecay(-0.1, 10, 0.5), ValueError, f"initial_learning_rate {NONNEG} -0.1"),
        (lambda: ExponentialDecay(math.inf, 10, 0.5), ValueError, f"initial_learning_rate {NONNEG} inf"),
        (lambda: ExponentialDecay(0.1, 10, 0.5, staircase=None), TypeError,
         "staircase must be True or False, got NoneType None"),
        (lambda: ExponentialDecay(0.1, 10, 0.5, name=1), TypeError, f"{IGNORED} int 1"),
        (lambda: PiecewiseConstantDecay([], [0.1]), ValueError, "boundaries must hold at least one step"),
        (lambda: PiecewiseConstantDecay([10], [0.1]), ValueError,
         "values must hold one more element than boundaries: got 1 boundaries and 1 values"),
        (lambda: PiecewiseConstantDecay([10, 20], [0.1, 0.2, 0.3, 0.4]), ValueError,
         "values must hold one more element than boundaries: got 2 boundaries and 4 values"),
        (lambda: PiecewiseConstantDecay([10, 10], [0.1, 0.2, 0.3]), ValueError,
         "boundaries must be strictly increasing, got boundaries[0]=10 and boundaries[1]=10"),
        (lambda: PiecewiseConstantDecay([10, 20, 15], [0.1, 0.2, 0.3, 0.4]), ValueError,
         "boundaries must be strictly increasing, got boundaries[1]=20 and boundaries[2]=15"),
        (lambda: PiecewiseConstantDecay([-1], [0.1, 0.2]), ValueError, "boundaries[0] must be an integer >= 0, got -1"),
        (lambda: PiecewiseConstantDecay([2.5], [0.1, 0.2]), ValueError,
         "boundaries[0] must be an integer >= 0, got 2.5"),
        (lambda: PiecewiseConstantDecay([5], [0.1, -0.2]), ValueError, f"values[1] {NONNEG} -0.2"),
        (lambda: PiecewiseConstantDecay(5, [0.1]), TypeError, "boundaries must be a list of numbers, got int 5"),
        (lambda: PiecewiseConstantDecay([5], np.zeros((2, 1))), TypeError,
         "values must be a list of numbers, got ndarray array([[0.],\n       [0.]])"),
        (lambda: PolynomialDecay(0.1, 0), ValueError, f"decay_steps {POSITIVE} 0"),
        (lambda: PolynomialDecay(0.1, 10, -1e-4), ValueError, f"end_learning_rate {NONNEG} -0.0001"),
        (lambda: PolynomialDecay(0.1, 10, power=-1.0), ValueError, f"power {NONNEG} -1.0"),
        (lambda: PolynomialDecay(0.1, 10, cycle="no"), TypeError, "cycle must be True or False, got str 'no'"),
        (lambda: InverseTimeDecay(0.1, 10, -1.0), ValueError, f"decay_rate {NONNEG} -1.0"),
        (lambda: InverseTimeDecay(0.1, 0.0, 1.0), ValueError, f"decay_steps {POSITIVE} 0"),
        (lambda: CosineDecay(0.1, 0), ValueError, f"decay_steps {POSITIVE} 0"),
        (lambda: CosineDecay(0.1, 10, alpha=-0.1), ValueError, f"alpha {NONNEG} -0.1"),
        (lambda: CosineDecay(0.1, 10, warmup_target=-1.0), ValueError, f"warmup_target {NONNEG} -1.0"),
        (lambda: CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-1), ValueError,
         "warmup_steps must be an integer >= 0, got -1"),
        (lambda: CosineDecay(0.1, 10, 0.0, 0.5), TypeError, f"{IGNORED} float 0.5"),
        (lambda: CosineDecayRestarts(0.1, 0), ValueError,
         f"first_decay_steps {POSITIVE} 0"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.5), ValueError, "t_mul must be a finite number >= 1, got 0.5"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=math.inf), ValueError,
         "t_mul must be a finite number >= 1, got inf"),
        (lambda: CosineDecayRestarts(0.1, 10, m_mul=-1.0), ValueError, f"m_mul {NONNEG} -1.0"),
        (lambda: CosineDecayRestarts(0.1, 10, alpha="0"), TypeError, "alpha must be a real number, got str '0'"),
    ],
)
def test_bad_arguments(make_bad: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        make_bad()
    assert str(info.value) == message


def test_integral_float_step_counts_are_accepted() -> None:
    # Keras's InverseTimeDecay example passes decay_steps=1.0
    sched = InverseTimeDecay(0.1, 1.0, 0.5)
    assert sched.get_config()["decay_steps"] == 1
    assert type(sched.get_config()["decay_steps"]) is int
    assert PiecewiseConstantDecay([10.0, np.float32(20)], [1, 2, 3]).get_config()["boundaries"] == [10, 20]
    assert CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4.0)(2) == 0.5


@pytest.mark.parametrize("sched", [make(*case) for case in CASES[::4]], ids=repr)
def test_bad_steps(sched: LearningRateSchedule) -> None:
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, got -1$"):
        sched(-1)
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, got 1.0$"):
        sched(1.0)
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, got np\.float64\(2\.0\)$"):
        sched(np.float64(2.0))
    with pytest.raises(TypeError, match=r"^step must be an integer, got bool True$"):
        sched(True)
    with pytest.raises(TypeError, match=r"^step must be an integer, got str '3'$"):
        sched("3")
    with pytest.raises(TypeError, match=r"^step must be an integer, got NoneType None$"):
        sched(None)
    with pytest.raises(TypeError, match=r"^step must be an integer, got ndarray array\(\[1, 2\]\)$"):
        sched(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"^step must be below 2\*\*63, got 9223372036854775808$"):
        sched(2**63)
    assert math.isfinite(sched(2**63 - 1))


def test_base_class_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        LearningRateSchedule()  # type: ignore[abstract]

    class Halving(LearningRateSchedule):
        name = "Halving"

        def __call__(self, step: int) -> float:
            return 0.5**step

        def get_config(self) -> dict[str, Any]:
            return {}

    sched = Halving()
    assert sched(3) == 0.125
    assert repr(sched) == "Halving()"
    assert as_learning_rate(sched) is sched


# --------------------------------------------------------------------------- as_learning_rate


def test_as_learning_rate_numbers() -> None:
    for value, expected in [(0.1, 0.1), (1, 1.0), (0, 0.0), (np.float32(0.5), 0.5), (np.int64(2), 2.0)]:
        got = as_learning_rate(value)
        assert type(got) is float
        assert got == expected


def test_as_learning_rate_callables() -> None:
    sched = CosineDecay(0.1, 100)
    assert as_learning_rate(sched) is sched

    def mine(step: int) -> float:
        return 0.1 / (1 + step)

    assert as_learning_rate(mine) is mine
    fn = lambda step: 0.01  # noqa: E731
    assert as_learning_rate(fn) is fn
    partial = functools.partial(pow, 0.5)
    assert as_learning_rate(partial) is partial
    assert as_learning_rate(partial)(2) == 0.25


@pytest.mark.parametrize(
    ("lr", "error", "message"),
    [
        (-0.1, ValueError, f"lr {NONNEG} -0.1"),
        (math.nan, ValueError, f"lr {NONNEG} nan"),
        (math.inf, ValueError, f"lr {NONNEG} inf"),
        (np.float64(-1), ValueError, f"lr {NONNEG} np.float64(-1.0)"),
        (True, TypeError, f"{LR_KINDS} bool True"),
        ("0.1", TypeError, f"{LR_KINDS} str '0.1'"),
        (None, TypeError, f"{LR_KINDS} NoneType None"),
        ([0.1], TypeError, f"{LR_KINDS} list [0.1]"),
        (1j, TypeError, f"{LR_KINDS} complex 1j"),
        (np.array(0.1), TypeError,
         f"{LR_KINDS} ndarray array(0.1)"),
        ({"schedule": "CosineDecay"}, TypeError, f"{LR_KINDS} dict {{'schedule': 'CosineDecay'}}"),
        (ExponentialDecay, TypeError, "lr must be a number, a learning-rate schedule or a function step -> lr, "
         "got the class ExponentialDecay: create an instance (e.g. ExponentialDecay(...))"),
    ],
)
def test_as_learning_rate_rejects(lr: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        as_learning_rate(lr)
    assert str(info.value) == message
