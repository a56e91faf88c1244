"""scikit-learn estimators: `MLPClassifier` and `MLPRegressor`, drop-ins for sklearn's.

They take scikit-learn's constructor parameters and defaults (``hidden_layer_sizes=(100,)``,
``activation="relu"``, ``solver="adam"``, ``alpha=1e-4``, ``batch_size="auto"``, ...) plus
``backend``, ``device`` and ``dtype``, and train an anyxp `Network` (``network_``).

Semantics follow scikit-learn where it is cheap:

- output layer: softmax for multiclass, logistic for binary and multilabel targets,
  identity for regression;
- ``loss_`` / ``loss_curve_`` are scikit-learn's values: log-loss (summed over the outputs
  of a multilabel target), and for regression squared error with scikit-learn's 0.5
  factor, ``mean((y - p)**2) / 2`` (its gradient is ``(p - y) / batch``, as scikit-learn's);
- ``alpha`` is an L2 penalty on the kernels only (not the biases): each batch adds
  ``alpha / batch * W`` to the kernel gradients and ``0.5 * alpha * ||W||^2 / batch`` to the
  batch loss, exactly as scikit-learn does. It is applied on the device inside the
  training step (a private `Network` subclass overrides ``_forward_backward``), with no
  host work per batch; the optimizers' ``weight_decay`` would also decay the biases.
- ``tol`` / ``n_iter_no_change`` stop on the training loss, or, with ``early_stopping``,
  on the validation score (accuracy / R^2) of a held-out ``validation_fraction``
  (stratified for classifiers); the best weights are restored at the end. One host read
  per epoch.
- solvers ``"adam"`` and ``"sgd"`` (constant learning rate, ``momentum``,
  ``nesterovs_momentum``); ``"lbfgs"`` and learning-rate schedules are not offered.
- initial weights: Glorot-uniform, drawn from ``random_state`` (an int, a
  ``RandomState`` or None for a fresh seed), which also drives the shuffling.

With ``sklearn.set_config(array_api_dispatch=True)`` and ``backend="auto"``, arrays of
another Array API library (torch, CuPy, array-api-strict) train on that library and
device, and ``predict`` / ``predict_proba`` return arrays of it.

>>> from anyxp.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
>>> clf.fit(X, y).score(X, y)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import array_api_compat
import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._array_api import check_same_namespace, get_namespace
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .backend import is_array, to_numpy
from .callbacks import Callback
from .layers import Dense
from .losses import MSE, BinaryCrossEntropy
from .network import Network
from .optimizers import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


# --------------------------------------------------------------------------- pieces


class _SummedBinaryCrossEntropy(BinaryCrossEntropy):
    """Binary cross-entropy summed (not averaged) over the outputs, as scikit-learn's
    multilabel log-loss (the same for one output)."""

    checkpoint_class = BinaryCrossEntropy  # saved as its parent; unpickling puts it back

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        per, grad = super().per_sample(out, y, logits, need_grad)
        k = out.shape[1]
        if k == 1:
            return per, grad
        return per * k, (grad * k if need_grad else None)


class _HalfSquaredError(MSE):
    """scikit-learn's squared loss: ``mean((p - y)**2) / 2`` per sample (over outputs),
    with scikit-learn's gradient ``p - y`` per sample."""

    checkpoint_class = MSE  # saved as its parent; unpickling puts it back

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        diff = out - y
        per = self.xp.mean(diff * diff, axis=1) * 0.5
        return per, (diff if need_grad else None)


class _PenalizedNetwork(Network):
    """A `Network` with scikit-learn's ``alpha``: an L2 penalty on the Dense kernels
    (not the biases), added on the device inside each training step."""

    alpha: float = 0.0

    def _forward_backward(self, xb: Any, tb: Any, wb: Any) -> tuple[Any, Any]:
        loss_sum, out = super()._forward_backward(xb, tb, wb)
        alpha = self.alpha
        if alpha:
            xp = self.xp
            scale = alpha / xb.shape[0]
            penalty = None
            for layer in self.layers:
                if isinstance(layer, Dense):
                    kernel = layer.kernel
                    layer.grad_kernel += kernel * scale
                    square = xp.sum(kernel * kernel)
                    penalty = square if penalty is None else penalty + square
            # the batch loss gets 0.5 * alpha * ||W||^2 / batch: its sum over the batch, this
            loss_sum = loss_sum + penalty * (0.5 * alpha)
        return loss_sum, out

    # The checkpoint format (which pickling and copying use) names only anyxp's public
    # classes: it rebuilds a plain `Network` with the built-in loss this class's loss
    # derives from. These put the estimator's class, alpha and loss back around it.
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        _, args = super().__reduce__()
        return _unpickle_penalized, (args, self.alpha, type(self.loss).__name__)

    def __deepcopy__(self, memo: dict[int, Any]) -> _PenalizedNetwork:
        copy = _penalized(super().__deepcopy__(memo), self.alpha, type(self.loss).__name__)
        memo[id(self)] = copy
        return copy


def _penalized(net: Network, alpha: float, loss_name: str) -> _PenalizedNetwork:
    """``net`` (rebuilt from the checkpoint format) as a `_PenalizedNetwork` with ``alpha``
    and the estimator's own loss class."""
    penalized = _PenalizedNetwork.__new__(_PenalizedNetwork)
    penalized.__dict__.update(net.__dict__)
    penalized.alpha = alpha
    if loss_name in _PRIVATE_LOSSES:
        penalized.loss = _PRIVATE_LOSSES[loss_name]().bind(penalized.xp, penalized.dtype)
    return penalized


def _unpickle_penalized(args: tuple[Any, ...], alpha: float, loss_name: str) -> _PenalizedNetwork:
    from .checkpoint import from_pickle

    return _penalized(from_pickle(*args), alpha, loss_name)


_PRIVATE_LOSSES = {cls.__name__: cls for cls in (_SummedBinaryCrossEntropy, _HalfSquaredError)}


class _EpochEnd(Callback):
    """Hands each epoch's loss (one host float, already brought by History) to the estimator."""

    def __init__(self, estimator: _BaseMLP, state: dict[str, Any]) -> None:
        self.estimator, self.state = estimator, state

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.estimator._epoch_end(self.network, (logs or {})["loss"], self.state):
            self.network.stop_training = True


def _dispatch() -> bool:
    return bool(get_config().get("array_api_dispatch", False))


def _float_dtypes(x: Any) -> list[Any]:
    """float64 and float32 of ``x``'s namespace (NumPy's without array API dispatch)."""
    xp, _ = get_namespace(x)
    return [xp.float64, xp.float32]


def _host(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(to_numpy(x)) if is_array(x) else np.asarray(x)


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, np.ndarray):
        return x[idx]
    xp = array_api_compat.array_namespace(x)
    return xp.take(x, xp.asarray(idx, device=array_api_compat.device(x)), axis=0)


# --------------------------------------------------------------------------- estimators


class _BaseMLP(BaseEstimator):
    """Shared by `MLPClassifier` and `MLPRegressor`."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        backend: Any = "auto",
        device: Any = None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.device = device
        self.dtype = dtype

    # -- subclasses ------------------------------------------------------------------------
    _is_classifier = False

    def _encode_targets(self, y: Any, first: bool, classes: Any, x_like: Any) -> tuple[np.ndarray, int, str, Any]:
        """(host targets for the network, outputs, output activation, loss)."""
        raise NotImplementedError

    def _validation_score(self, net: Network, x_val: Any, t_val: np.ndarray) -> float:
        raise NotImplementedError

    # -- validation ------------------------------------------------------------------------
    def _check_params(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}") from None
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd' (no 'lbfgs' in anyxp), got {self.solver!r}")
        checks = [
            ("alpha", self.alpha, 0.0, math.inf), ("learning_rate_init", self.learning_rate_init, 0.0, math.inf),
            ("tol", self.tol, 0.0, math.inf), ("momentum", self.momentum, 0.0, 1.0),
            ("validation_fraction", self.validation_fraction, 0.0, 1.0), ("beta_1", self.beta_1, 0.0, 1.0),
            ("beta_2", self.beta_2, 0.0, 1.0), ("epsilon", self.epsilon, 0.0, math.inf),
        ]
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
                raise ValueError(f"{name} must be a real number in [{low}, {high}], got {value!r}")
        if self.learning_rate_init <= 0:
            raise ValueError(f"learning_rate_init must be > 0, got {self.learning_rate_init!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        bs = self.batch_size
        if not (bs == "auto" or (isinstance(bs, numbers.Integral) and not isinstance(bs, bool) and bs >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {bs!r}")
        if self.early_stopping and not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        return sizes

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> _BaseMLP:
        """Train for up to ``max_iter`` epochs (continues from the last fit with ``warm_start``)."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> _BaseMLP:
        sizes = self._check_params()
        fitted = hasattr(self, "network_")
        first = not (fitted and (incremental or self.warm_start))
        X, y = validate_data(
            self, X, y, reset=first, dtype=_float_dtypes(X), multi_output=True,
            y_numeric=not self._is_classifier,
        )
        targets, outputs, out_act, loss = self._encode_targets(y, first, classes, X)
        n = int(X.shape[0])
        dispatch = _dispatch()
        if first:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)) \
                if self.random_state is not None else None
            backend, device = self.backend, self.device
            if dispatch and backend == "auto" and not isinstance(X, np.ndarray):
                backend, device = array_api_compat.array_namespace(X), array_api_compat.device(X)
            if self.solver == "adam":
                opt: Any = Adam(self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
            else:
                nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
                opt = SGD(self.learning_rate_init, self.momentum, nesterov=nesterov)
            act = _ACTIVATIONS[self.activation]
            layers = [Dense(s, act, init="glorot_uniform") for s in sizes]
            layers.append(Dense(outputs, out_act, init="glorot_uniform"))
            net = _PenalizedNetwork(layers, input_size=X.shape[1], loss=loss, optimizer=opt, backend=backend,
                                    device=device, dtype=self.dtype, seed=seed, metrics=[])
            net.build(X.shape[1])
            self.network_ = net
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_: list[float] = []
            self.best_loss_: float | None = None if self.early_stopping else math.inf
            self.validation_scores_: list[float] | None = [] if self.early_stopping else None
            self.best_validation_score_: float | None = -math.inf if self.early_stopping else None
            self.n_outputs_ = outputs
            self.n_layers_ = len(sizes) + 2
            self.out_activation_ = {"linear": "identity", "sigmoid": "logistic"}.get(out_act, out_act)
            # an empty array in X's namespace and device, for `check_same_namespace` in predict
            if dispatch and not isinstance(X, np.ndarray):
                xp_x = array_api_compat.array_namespace(X)
                self._ref = xp_x.zeros((0,), dtype=X.dtype, device=array_api_compat.device(X))
            else:
                self._ref = np.zeros((0,), dtype=X.dtype)
        net = self.network_
        net.alpha = float(self.alpha)
        net.optimizer.lr = float(self.learning_rate_init)

        batch = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if batch > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          stacklevel=3)
            batch = n
        x_train, t_train, val = X, targets, None
        if self.early_stopping and not incremental:
            stratify = targets if self._is_classifier and targets.ndim == 1 else None
            idx_train, idx_val = train_test_split(
                np.arange(n), random_state=net.seed, test_size=self.validation_fraction, stratify=stratify
            )
            if len(idx_val) < 2:
                raise ValueError(f"validation set too small (validation_fraction={self.validation_fraction}, "
                                 f"{n} samples): {len(idx_val)} samples")
            x_train, t_train = _take(X, idx_train), targets[idx_train]
            val = (_take(X, idx_val), targets[idx_val])
        state = {"no_improvement": 0, "val": val, "best": None, "incremental": incremental}
        epochs = 1 if incremental else self.max_iter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. torch's non-writable numpy warning
            net.fit(x_train, t_train, epochs=epochs, batch_size=batch, shuffle=bool(self.shuffle),
                    callbacks=[_EpochEnd(self, state)], verbose=0)
        if val is not None and state["best"] is not None:
            net.restore_parameters(state["best"])
        self.t_ += int(x_train.shape[0]) * state.get("epochs", 0)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        weights = net.get_weights()
        self.coefs_ = weights[0::2]
        self.intercepts_ = weights[1::2]
        if not incremental and not state.get("converged") and state.get("epochs", 0) == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                "hasn't converged yet.", ConvergenceWarning, stacklevel=3,
            )
        return self

    def _epoch_end(self, net: Network, loss: float, state: dict[str, Any]) -> bool:
        """Record an epoch; True to stop (scikit-learn's ``_update_no_improvement_count``)."""
        self.n_iter_ += 1
        state["epochs"] = state.get("epochs", 0) + 1
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        if state["incremental"]:
            if self.best_loss_ is not None and loss < self.best_loss_:
                self.best_loss_ = loss
            return False
        if state["val"] is not None:
            score = self._validation_score(net, *state["val"])
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                state["no_improvement"] += 1
            else:
                state["no_improvement"] = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                state["best"] = net.snapshot_parameters()
        else:
            if loss > self.best_loss_ - self.tol:
                state["no_improvement"] += 1
            else:
                state["no_improvement"] = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss
        if state["no_improvement"] > self.n_iter_no_change:
            state["converged"] = True
            if self.verbose:
                what = "Validation score" if state["val"] is not None else "Training loss"
                print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                      "consecutive epochs. Stopping.")
            return True
        return False

    # -- prediction ------------------------------------------------------------------------
    def _outputs(self, X: Any, method: str) -> Any:
        """The network's outputs for ``X`` (arrays of X's library under array API dispatch)."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=_float_dtypes(X))
        check_same_namespace(X, self, attribute="_ref", method=method)
        return self.network_.predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by anyxp: scikit-learn's ``MLPClassifier``
    parameters, attributes and methods (see the module docstring for the semantics).

    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
    >>> clf.fit(X, y).predict_proba(X[:3])  # doctest: +SKIP
    """

    _is_classifier = True

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; ``classes`` (all the labels) is required on the first call."""
        if not hasattr(self, "network_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, incremental=True, classes=classes)

    def _encode_targets(self, y: Any, first: bool, classes: Any, x_like: Any) -> tuple[np.ndarray, int, str, Any]:
        y = _host(y)
        check_classification_targets(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                          "of y to (n_samples,), for example using ravel().", DataConversionWarning, stacklevel=4)
            y = y.ravel()
        if first:
            lb = LabelBinarizer()
            lb.fit(_host(classes) if classes is not None else y)
            self._label_binarizer = lb
            classes_ = lb.classes_
            native = x_like is not None and _dispatch() and not isinstance(x_like, np.ndarray)
            if native and classes_.dtype.kind in "biuf":
                xp = array_api_compat.array_namespace(x_like)
                classes_ = xp.asarray(classes_, device=array_api_compat.device(x_like))
            self.classes_ = classes_
        lb = self._label_binarizer
        if classes is not None and hasattr(self, "network_") and not first and \
                not np.array_equal(_host(classes), lb.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call to partial_fit; "
                             f"was {lb.classes_!r}")
        unseen = np.setdiff1d(unique_labels(y), lb.classes_) if lb.y_type_ != "multilabel-indicator" else []
        if len(unseen):
            raise ValueError(f"y has labels {unseen!r} not among the classes {lb.classes_!r}")
        if (first and lb.y_type_ == "multilabel-indicator") or lb.y_type_ == "multilabel-indicator":
            t = np.asarray(y, dtype=self.dtype)
            return t, t.shape[1], "sigmoid", _SummedBinaryCrossEntropy()
        if len(lb.classes_) <= 2:
            t = lb.transform(y).astype(self.dtype)
            return t, 1, "sigmoid", _SummedBinaryCrossEntropy()
        labels = np.searchsorted(lb.classes_, y)
        return labels, len(lb.classes_), "softmax", "cross_entropy"

    def _validation_score(self, net: Network, x_val: Any, t_val: np.ndarray) -> float:
        out = _host(net.predict(x_val))
        if t_val.ndim == 1:  # multiclass: label indices
            return float(np.mean(np.argmax(out, axis=1) == t_val))
        return float(np.mean(np.all((out > 0.5) == (t_val > 0.5), axis=1)))

    def _proba(self, X: Any, method: str) -> Any:
        out = self._outputs(X, method)
        if out.shape[1] == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            if isinstance(out, np.ndarray):
                return np.concatenate([1.0 - out, out], axis=1)
            xp = array_api_compat.array_namespace(out)
            return xp.concat([1.0 - out, out], axis=1)
        return out

    def predict(self, X: Any) -> Any:
        """Class labels (of ``classes_``; 0/1 rows for multilabel targets)."""
        out = self._outputs(X, "predict")
        lb = self._label_binarizer
        native = not isinstance(out, np.ndarray)
        xp = array_api_compat.array_namespace(out)
        if lb.y_type_ == "multilabel-indicator":
            pred = xp.astype(out > 0.5, xp.int64)
            return pred
        if native and not isinstance(self.classes_, np.ndarray):
            idx = xp.astype(out[:, 0] > 0.5, xp.int64) if out.shape[1] == 1 else xp.argmax(out, axis=1)
            return xp.take(self.classes_, idx, axis=0)
        host = _host(out)
        idx = (host[:, 0] > 0.5).astype(np.int64) if host.shape[1] == 1 else np.argmax(host, axis=1)
        labels = lb.classes_[idx]
        if native and labels.dtype.kind in "biuf":
            return xp.asarray(labels, device=array_api_compat.device(out))
        return labels

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, shape (samples, classes)."""
        return self._proba(X, "predict_proba")

    def predict_log_proba(self, X: Any) -> Any:
        """The logarithm of `predict_proba`."""
        p = self._proba(X, "predict_log_proba")
        xp = array_api_compat.array_namespace(p)
        return xp.log(p)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor trained by anyxp: scikit-learn's ``MLPRegressor``
    parameters, attributes and methods; ``loss_`` is ``mean((y - p)**2) / 2`` (+ penalty).

    >>> reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=100, random_state=0)
    >>> reg.fit(X, y).predict(X[:3])  # doctest: +SKIP
    """

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``."""
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y: Any, first: bool, classes: Any, x_like: Any) -> tuple[np.ndarray, int, str, Any]:
        y = _host(y)
        t = np.asarray(y, dtype=self.dtype)
        self._y_1d = t.ndim == 1 if first else self._y_1d
        t = t.reshape(-1, 1) if t.ndim == 1 else t
        if not first and t.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {t.shape[1]} outputs, but the regressor was fitted with {self.n_outputs_}")
        return t, t.shape[1], "linear", _HalfSquaredError()

    def _validation_score(self, net: Network, x_val: Any, t_val: np.ndarray) -> float:
        return float(r2_score(t_val, _host(net.predict(x_val))))

    def predict(self, X: Any) -> Any:
        """Predicted targets: shape (samples,) for a 1-D y in fit, else (samples, outputs)."""
        out = self._outputs(X, "predict")
        if self._y_1d:
            return out[:, 0] if not isinstance(out, np.ndarray) else out.ravel()
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
