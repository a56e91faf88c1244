"""Metrics: epoch metrics computed on the device, and host helpers.

An epoch metric is computed in two halves, so that an epoch costs one device->host copy:

- `Metric.statistics(xp, pred, target, weight, task)` reduces the epoch's predictions to a
  short vector of sums on the device (standard Array API operations only, no host sync);
- `Metric.finish(stats, task)` turns the host (float64) copy of that vector into a float.

The values equal scikit-learn's functions on the same predictions (``accuracy_score``,
``precision_score``, ``recall_score``, ``f1_score``, ``roc_auc_score``,
``top_k_accuracy_score``, ``mean_absolute_error``, ``mean_squared_error``, ``r2_score``).

``task`` says how predictions and targets are read (the caller derives it from the loss):

- ``"binary"``: one output; true/predicted class is ``> 0.5``, the score is the output;
- ``"multiclass"``: K > 1 one-of-K outputs; classes are argmax-ed (with K == 2 the binary
  metrics take class 1 as positive and ``pred[:, 1]`` as its score);
- ``"multilabel"``: K > 1 independent outputs, each thresholded at 0.5;
- ``"regression"``: real targets (classification metrics refuse it).

The host functions `accuracy` and `confusion_matrix` take labels or one-hot rows of any
library and copy them to NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from . import kernels
from .backend import to_numpy
from .validation import as_int

TASKS = ("binary", "multiclass", "multilabel", "regression")
_CLASSIFICATION_LOSSES = "cross_entropy or binary_cross_entropy"

# --------------------------------------------------------------------------- host functions


def _labels(y: Any, name: str) -> np.ndarray:
    y = np.asarray(to_numpy(y))
    if y.ndim == 2:
        y = np.argmax(y, axis=1) if y.shape[1] > 1 else (y[:, 0] > 0.5)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels or 2-D one-hot/probabilities, got shape {y.shape}")
    return y.astype(np.int64)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal labels (one-hot rows or probabilities are argmax-ed first)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}")
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of class i predicted as class j (as scikit-learn)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}")
    if t.size and min(t.min(), p.min()) < 0:
        raise ValueError("labels must be >= 0")
    k = num_classes if num_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and max(t.max(), p.max()) >= k:
        raise ValueError(f"a label is >= num_classes={k}")
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


# --------------------------------------------------------------------------- device helpers


def _vector(xp: Any, parts: list[Any]) -> Any:
    """Concatenate 0-d and 1-D device arrays into one 1-D array."""
    return xp.concat([xp.reshape(part, (-1,)) for part in parts])


def _weighted_sum(xp: Any, values: Any, weight: Any | None) -> Any:
    """Column sums of ``values`` ((n,) or (n, C), float) weighted per sample."""
    if weight is not None:
        values = values * (weight if values.ndim == 1 else weight[:, None])
    return xp.sum(values, axis=0)


def _total_weight(xp: Any, pred: Any, weight: Any | None) -> Any:
    """Σ w as a 1-element array (n when unweighted; n is known on the host)."""
    if weight is None:
        return xp.full((1,), float(pred.shape[0]), dtype=pred.dtype, device=array_api_compat.device(pred))
    return xp.reshape(xp.sum(weight), (1,))


def _as_float(xp: Any, mask: Any, like: Any) -> Any:
    return xp.astype(mask, like.dtype)


def _class_ranks(xp: Any, x: Any) -> Any:
    """K for column 0 ... 1 for the last column of x, in x's dtype."""
    return xp.arange(x.shape[1], 0, -1, dtype=x.dtype, device=array_api_compat.device(x))


def _first_largest(xp: Any, x: Any) -> tuple[Any, Any]:
    """Each row's largest entries ranked by column (`_class_ranks`; 0 elsewhere), and their
    row maxima: the rank of the first largest column. Element-wise work and reductions
    over rows keep x's memory order, and NumPy runs them many times faster than
    ``argmax`` or ``where`` along short rows (the metrics get class-major arrays)."""
    ranked = _as_float(xp, x == xp.max(x, axis=1, keepdims=True), x) * _class_ranks(xp, x)
    return ranked, xp.max(ranked, axis=1, keepdims=True)


def _argmax(xp: Any, x: Any) -> Any:
    """Each row's argmax: its first largest column (K for a row of NaN)."""
    _, best = _first_largest(xp, x)
    return x.shape[1] - xp.astype(best[:, 0], xp.int64)


def _one_hot_argmax(xp: Any, x: Any) -> Any:
    """Boolean (n, K): row i is True at argmax x[i] (the first maximum; none for NaN)."""
    ranked, best = _first_largest(xp, x)
    return (ranked == best) & (ranked > 0.0)


def _prepare(xp: Any, pred: Any, target: Any, weight: Any | None) -> tuple[Any, Any, Any | None]:
    """Targets and weights in pred's dtype (no copy where they already are)."""
    target = xp.astype(target, pred.dtype, copy=False)
    if weight is not None:
        weight = xp.astype(xp.reshape(weight, (-1,)), pred.dtype, copy=False)
    return pred, target, weight


def _memberships(xp: Any, x: Any, task: str) -> Any:
    """Boolean (n, C) memberships of the C scored classes, of targets or predictions."""
    if task == "binary":
        return x[:, 0:1] > 0.5
    if task == "multilabel":
        return x > 0.5
    if x.shape[1] == 2:  # multiclass, K == 2: class 1 is the positive class
        return _argmax(xp, x)[:, None] == 1
    return _one_hot_argmax(xp, x)


def _indicators(xp: Any, pred: Any, target: Any, task: str) -> tuple[Any, Any]:
    """Boolean (n, C) true and predicted memberships of the C scored classes."""
    return _memberships(xp, target, task), _memberships(xp, pred, task)


def _scores(xp: Any, pred: Any, target: Any, task: str) -> tuple[Any, Any]:
    """Boolean (n, C) true memberships and the (n, C) scores of the C scored classes."""
    truth = _memberships(xp, target, task)
    if task == "multiclass" and pred.shape[1] == 2:
        return truth, pred[:, 1:2]
    return truth, pred


def _mann_whitney(xp: Any, scores: Any, positive: Any, weight: Any | None) -> tuple[Any, Any]:
    """For each column (class) c of the (n, C) ``scores`` and boolean ``positive``:
    Σ_pos w_i (W_neg below s_i + ½ W_neg equal to s_i), and W_pos * W_neg; their ratio is
    the (trapezoidal) ROC AUC. The classes are sorted and counted together, each as a row
    of the transposed (C, n) arrays (contiguous rows, with the columns the metrics get)."""
    kernel = kernels.mann_whitney_kernel(xp)
    if kernel is not None:
        return kernel(scores, positive, weight)
    scores, positive = xp.permute_dims(scores, (1, 0)), xp.permute_dims(positive, (1, 0))
    order = xp.argsort(scores, axis=1, stable=False)  # ties are grouped below: any order will do
    sorted_positive = xp.take_along_axis(positive, order, axis=1)
    w_pos = _as_float(xp, sorted_positive, scores)
    if weight is None:  # counts: exact integer running sums (and fast ones)
        w_neg = 1.0 - w_pos
        below = xp.cumulative_sum(xp.astype(~sorted_positive, xp.int32), axis=1, dtype=xp.int32,
                                  include_initial=True)
    else:
        w = xp.reshape(xp.take(weight, xp.reshape(order, (-1,))), order.shape)
        w_pos, w_neg = w * w_pos, w * (1.0 - w_pos)
        below = xp.cumulative_sum(w_neg, axis=1, include_initial=True)  # below[:, j]: Σ w_neg of the j lowest
    first, after = _tie_groups(xp, xp.take_along_axis(scores, order, axis=1))
    beside = xp.astype(xp.take_along_axis(below, first, axis=1) + xp.take_along_axis(below, after, axis=1),
                       scores.dtype, copy=False)
    return xp.sum(w_pos * beside, axis=1) * 0.5, xp.sum(w_pos, axis=1) * xp.sum(w_neg, axis=1)


def _tie_groups(xp: Any, sorted_rows: Any) -> tuple[Any, Any]:
    """For each position of each sorted row of a (C, n) array, where its run of equal
    values starts and where the next run starts (searchsorted left and right, in linear
    time after one stable argsort of booleans, with static shapes)."""
    k, n = sorted_rows.shape
    device = array_api_compat.device(sorted_rows)
    starts_run = xp.concat([xp.ones((k, 1), dtype=xp.bool, device=device),
                            sorted_rows[:, 1:] != sorted_rows[:, :-1]], axis=1)
    # the run index of each position (int32 running sums: NumPy's are many times faster)
    run = xp.astype(xp.cumulative_sum(xp.astype(starts_run, xp.int32), axis=1, dtype=xp.int32), xp.int64) - 1
    # the positions where runs start, in order, first; the other positions read n
    order = xp.argsort(xp.astype(~starts_run, xp.int8), axis=1, stable=True)
    starts = xp.where(xp.take_along_axis(starts_run, order, axis=1), order, n)
    following = run + 1
    after = xp.take_along_axis(starts, xp.minimum(following, n - 1), axis=1)
    return xp.take_along_axis(starts, run, axis=1), xp.where(following < n, after, n)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


# --------------------------------------------------------------------------- metric objects


class Metric:
    """An epoch metric: `statistics` on the device, `finish` on the host.

    >>> import array_api_compat.numpy as xp
    >>> pred, target = xp.asarray([[0.9, 0.1], [0.4, 0.6]]), xp.asarray([[1.0, 0.0], [1.0, 0.0]])
    >>> metric = get_metric("accuracy")
    >>> metric.check(outputs=2, task="multiclass")
    >>> metric.finish(to_numpy(metric.statistics(xp, pred, target, None, "multiclass")), "multiclass")
    0.5
    """

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    classification: ClassVar[bool] = False  # needs a classification task (refuses "regression")
    additive: ClassVar[bool] = True  # statistics of disjoint parts of the data sum to the whole's

    def check(self, outputs: int, task: str) -> None:
        """Raise ValueError if this metric cannot measure a network with ``outputs`` outputs
        trained for ``task``."""
        outputs = as_int(outputs, "outputs", minimum=1)
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        if task == "binary" and outputs != 1:
            raise ValueError(f"task 'binary' needs 1 output, got {outputs}")
        if task in ("multiclass", "multilabel") and outputs < 2:
            raise ValueError(f"task {task!r} needs at least 2 outputs, got {outputs}")
        if self.classification and task == "regression":
            raise ValueError(f"metric {self.name!r} needs a classification loss ({_CLASSIFICATION_LOSSES}), "
                             "not a regression task")

    def statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        """Sufficient statistics of the whole epoch: a 1-D device array in pred's dtype."""
        if self.classification and task == "regression":
            self.check(pred.shape[1], task)
        return self._statistics(xp, *_prepare(xp, pred, target, weight), task)

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        raise NotImplementedError

    @property
    def statistics_key(self) -> Hashable:
        """Metrics with equal keys have equal statistics: computed once for all of them."""
        return (type(self), tuple(sorted(self.get_config().items())))

    def finish(self, stats: Any, task: str) -> float:
        """The metric's value from the host copy of `statistics`."""
        return float(self._finish(np.asarray(stats, dtype=np.float64).reshape(-1), task))

    def _finish(self, stats: np.ndarray, task: str) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (simple values) for `metric_from_config`."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class Accuracy(Metric):
    """Weighted fraction of correct predictions: argmax match (multiclass), threshold match
    (binary), mean of per-output threshold matches (multilabel, Keras' binary accuracy).
    A regression task is read as multiclass (K > 1) or binary (K == 1).

    >>> Accuracy()
    Accuracy()
    """

    name = "accuracy"

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        if task == "regression":
            task = "multiclass" if pred.shape[1] > 1 else "binary"
        if task == "multiclass":
            correct = _as_float(xp, _argmax(xp, target) == _argmax(xp, pred), pred)
        else:
            correct = xp.mean(_as_float(xp, (target > 0.5) == (pred > 0.5), pred), axis=1)
        return _vector(xp, [_weighted_sum(xp, correct, weight), _total_weight(xp, pred, weight)])

    def _finish(self, stats: np.ndarray, task: str) -> float:
        return _ratio(stats[0], stats[1])


class _ConfusionMetric(Metric):
    """Per-class weighted TP, predicted and true totals; binary or macro average."""

    classification = True

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        truth, predicted = _indicators(xp, pred, target, task)
        hit = _as_float(xp, truth & predicted, pred)
        present = xp.sum(_as_float(xp, truth | predicted, pred), axis=0)  # unweighted, as sklearn's labels
        sums = [_weighted_sum(xp, _as_float(xp, m, pred), weight) for m in (truth, predicted)]
        return _vector(xp, [_weighted_sum(xp, hit, weight), sums[1], sums[0], present])

    statistics_key = "confusion"  # precision, recall and f1 share them

    def _finish(self, stats: np.ndarray, task: str) -> float:
        tp, pred_sum, true_sum, present = stats.reshape(4, -1)
        scores = self._per_class(tp, pred_sum, true_sum)
        if task == "multiclass" and scores.size > 1:  # macro over labels in y_true or y_pred
            scores = scores[present > 0]
        return float(np.mean(scores)) if scores.size else math.nan

    @staticmethod
    def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """numerator / denominator, 0.0 where the denominator is 0 (sklearn's zero_division)."""
        safe = np.where(denominator != 0, denominator, 1.0)
        return np.where(denominator != 0, numerator / safe, 0.0)

    def _per_class(self, tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Precision(_ConfusionMetric):
    """scikit-learn's ``precision_score``: binary (class 1) or macro average.

    >>> Precision()
    Precision()
    """

    name = "precision"

    def _per_class(self, tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray) -> np.ndarray:
        return self._divide(tp, pred_sum)


class Recall(_ConfusionMetric):
    """scikit-learn's ``recall_score``: binary (class 1) or macro average.

    >>> Recall()
    Recall()
    """

    name = "recall"

    def _per_class(self, tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray) -> np.ndarray:
        return self._divide(tp, true_sum)


class F1Score(_ConfusionMetric):
    """scikit-learn's ``f1_score``: binary (class 1) or macro average.

    >>> F1Score()
    F1Score()
    """

    name = "f1"

    def _per_class(self, tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray) -> np.ndarray:
        return self._divide(2.0 * tp, pred_sum + true_sum)


class AUC(Metric):
    """scikit-learn's ``roc_auc_score``: binary, one-vs-rest macro (multiclass K > 2) or
    macro over columns (multilabel). Classes with positives only or negatives only are
    left out of the average (scikit-learn raises there); NaN if none is left.

    >>> AUC()
    AUC()
    """

    name = "auc"
    classification = True
    additive = False

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        truth, scores = _scores(xp, pred, target, task)
        return _vector(xp, list(_mann_whitney(xp, scores, truth, weight)))

    def _finish(self, stats: np.ndarray, task: str) -> float:
        numerators, denominators = stats.reshape(2, -1)
        defined = denominators > 0
        return float(np.mean(numerators[defined] / denominators[defined])) if defined.any() else math.nan


class TopKAccuracy(Metric):
    """scikit-learn's ``top_k_accuracy_score`` (multiclass only): the true class is among the
    k highest scores; among equal scores the higher class index ranks first, as there.

    >>> TopKAccuracy(k=3)
    TopKAccuracy(k=3)
    """

    name = "top_k_accuracy"
    classification = True

    def __init__(self, k: int = 5) -> None:
        self.k = as_int(k, "k", minimum=1)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k}

    def check(self, outputs: int, task: str) -> None:
        super().check(outputs, task)
        if task != "multiclass":
            raise ValueError(f"metric {self.name!r} needs task 'multiclass' (one-of-K outputs with "
                             f"cross_entropy), got {task!r}")

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        if task != "multiclass":
            self.check(pred.shape[1], task)
        total = _total_weight(xp, pred, weight)
        if self.k >= pred.shape[1]:  # every class is among the top k
            return _vector(xp, [total, total])
        ranked, true_rank = _first_largest(xp, target)  # ranks run K (class 0) down to 1
        true_score = xp.sum(pred * _as_float(xp, (ranked == true_rank) & (ranked > 0.0), pred), axis=1,
                            keepdims=True)
        tied = _as_float(xp, pred == true_score, pred) * _class_ranks(xp, pred)
        later = (tied > 0.0) & (tied < true_rank)  # ties with the true score in a later class rank first
        ahead = (pred > true_score) | later
        hit = _as_float(xp, xp.sum(_as_float(xp, ahead, pred), axis=1) < self.k, pred)
        return _vector(xp, [_weighted_sum(xp, hit, weight), total])

    def _finish(self, stats: np.ndarray, task: str) -> float:
        return _ratio(stats[0], stats[1])


class _ErrorMetric(Metric):
    """Weighted mean over samples of an element-wise error, uniform over outputs."""

    higher_is_better = False

    def _error(self, xp: Any, difference: Any) -> Any:
        raise NotImplementedError

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        per_output = _weighted_sum(xp, self._error(xp, target - pred), weight)
        return _vector(xp, [per_output, _total_weight(xp, pred, weight)])

    def _finish(self, stats: np.ndarray, task: str) -> float:
        return _ratio(float(np.mean(stats[:-1])), stats[-1])


class MeanAbsoluteError(_ErrorMetric):
    """scikit-learn's ``mean_absolute_error`` (weighted, uniform over outputs).

    >>> MeanAbsoluteError()
    MeanAbsoluteError()
    """

    name = "mae"

    def _error(self, xp: Any, difference: Any) -> Any:
        return xp.abs(difference)


class MeanSquaredError(_ErrorMetric):
    """scikit-learn's ``mean_squared_error`` (weighted, uniform over outputs).

    >>> MeanSquaredError()
    MeanSquaredError()
    """

    name = "mse"

    def _error(self, xp: Any, difference: Any) -> Any:
        return difference * difference


class R2Score(Metric):
    """scikit-learn's ``r2_score`` (weighted, uniform over outputs, ``force_finite``): per
    output 1 - SS_res / SS_tot, 1.0 (perfect) or 0.0 where SS_tot is 0; NaN below 2 samples.

    >>> R2Score()
    R2Score()
    """

    name = "r2"
    additive = False

    def _statistics(self, xp: Any, pred: Any, target: Any, weight: Any | None, task: str) -> Any:
        total = _total_weight(xp, pred, weight)
        mean = _weighted_sum(xp, target, weight) / total  # two passes: no cancellation
        centred = target - mean[None, :]
        residual = target - pred
        ss_res = _weighted_sum(xp, residual * residual, weight)
        ss_tot = _weighted_sum(xp, centred * centred, weight)
        count = xp.full((1,), float(pred.shape[0]), dtype=pred.dtype, device=array_api_compat.device(pred))
        return _vector(xp, [ss_res, ss_tot, count])

    def _finish(self, stats: np.ndarray, task: str) -> float:
        if stats[-1] < 2:
            return math.nan
        ss_res, ss_tot = stats[:-1].reshape(2, -1)
        safe = np.where(ss_tot != 0, ss_tot, 1.0)
        scores = np.where(ss_tot != 0, 1.0 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(scores))


# --------------------------------------------------------------------------- registry

METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (Accuracy, Precision, Recall, F1Score, AUC, TopKAccuracy, MeanAbsoluteError, MeanSquaredError,
                R2Score)
}


def get_metric(spec: str | Metric) -> Metric:
    """A metric from its name (``"f1"``, ``"top_k_accuracy"`` is k=5) or a `Metric` itself."""
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a metric must be a name or a Metric, got {type(spec).__name__}")
    if spec not in METRICS:
        raise ValueError(f"unknown metric {spec!r}; valid metrics are: {', '.join(METRICS)}")
    return METRICS[spec]()


def metric_from_config(name: Any, config: Any) -> Metric:
    """Rebuild a metric from ``(metric.name, metric.get_config())`` read from a file (validated,
    never evaluated)."""
    if not isinstance(name, str) or name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics are: {', '.join(METRICS)}")
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise ValueError(f"the config of metric {name!r} must be a mapping of names, got {type(config).__name__}")
    cls = METRICS[name]
    allowed = set(cls().get_config())
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"metric {name!r} takes no argument {unknown[0]!r}"
                         + (f" (it takes: {', '.join(sorted(allowed))})" if allowed else ""))
    return cls(**dict(config))
