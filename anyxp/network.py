"""`Network`: a stack of layers with a loss and an optimizer, Keras-like."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

from .activations import Activation, get_activation
from .backend import Backend, dtype_name, get_backend, is_array, to_numpy
from .base import Layer
from .callbacks import Callback, History
from .data import in_memory, is_on_disk
from .layers import Dense, Dropout, bind_dropout
from .losses import Loss, get_loss
from .metrics import Metric, get_metric
from .optimizers import Optimizer, get_optimizer, optimizer_from_config
from .training import EVAL_BATCH, prepare_features
from .validation import as_int, as_weight_list, check_batch_size


def _on_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a `Network` method with the network's device current: CuPy creates arrays on
    the current device whatever ``device=`` says, so every entry point that creates or
    touches the network's arrays goes through this (a no-op on other backends)."""

    @functools.wraps(method)
    def on_device(self: Network, *args: Any, **kwargs: Any) -> Any:
        with self.backend.activate():
            return method(self, *args, **kwargs)

    return on_device


class Network:
    """A multilayer perceptron on any Array API backend.

    >>> import anyxp as ax
    >>> net = ax.Network([ax.Dense(20, "relu"), ax.Dense(3, "softmax")], input_size=4,
    ...                  loss="cross_entropy", optimizer=ax.Adam(lr=1e-2), seed=0)
    >>> history = net.fit(x, y, epochs=5, verbose=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Iterable[Layer] | None = None,
        *,
        input_size: int | None = None,
        loss: str | Loss = "cross_entropy",
        optimizer: str | Optimizer = "adam",
        backend: Any = "auto",
        device: Any = None,
        dtype: str = "float32",
        seed: int | None = None,
        name: str | None = None,
        metrics: Sequence[str | Metric] | None = None,
    ) -> None:
        layers = _layer_list(layers)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.backend: Backend = get_backend(backend, device=device)
        self.xp = self.backend.xp
        self.dtype_name = dtype_name(dtype)
        self.dtype = self.backend.float_dtype(self.dtype_name)
        self.loss = get_loss(loss)
        self.optimizer = get_optimizer(optimizer)
        self.metrics = _resolve_metrics(metrics, self.loss)
        seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else as_int(seed, "seed", minimum=0)
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.name = name or "network"
        self.layers: list[Layer] = []
        self.input_size: int | None = None
        if input_size is not None:
            self.input_size = as_int(input_size, "input_size", minimum=1)
        self.stop_training = False
        self.history: History | None = None
        self._theta: Any = None
        self._grad: Any = None
        self._built_at_construction = False  # and untouched since: add() may build again
        for layer in layers:
            self.add(layer)
        self._check_metrics()
        if self.layers and self._known_input_size() is not None:
            self.build()  # as Keras builds a model whose input shape it knows
            self._built_at_construction = True

    # ------------------------------------------------------------------ structure
    def add(self, layer: Layer) -> Network:
        """Append a layer (before the network is built); returns the network."""
        if not isinstance(layer, Layer):
            raise TypeError(f"add() takes a Layer, got {type(layer).__name__}")
        if layer.built:
            raise ValueError(f"{layer!r} already belongs to a built network")
        if self.built and not self._built_at_construction:
            raise RuntimeError("cannot add layers to a built network; create a new Network")
        self._check_sizes([*self.layers, layer], self.input_size)
        if self.built:  # built by the constructor, never used: build again with the new layer
            self._unbuild()
            self.layers.append(layer)
            self._check_metrics()
            self.build()
            self._built_at_construction = True
            return self
        self.layers.append(layer)
        return self

    def _known_input_size(self) -> int | None:
        first = self.layers[0] if self.layers else None
        return self.input_size or getattr(first, "declared_input_size", None)

    def _unbuild(self) -> None:
        """Forget the weights the constructor drew, and draw them again from the same
        generator state: a network built layer by layer gets the weights of one built at once."""
        for layer in self.layers:
            layer.built = False
        self.rng.bit_generator.state = self._rng_before_build
        self._theta = self._grad = None

    def _check_metrics(self) -> None:
        """Each metric fits the loss and the output count (when known)."""
        outputs = self.output_size if self.layers else None
        if outputs is None:
            return
        task = self._task_for(outputs)
        check_task = task if self.loss.link is not None else "regression"
        for metric in self.metrics:
            metric.check(outputs, check_task)
    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def _check_sizes(self, layers: list[Layer], input_size: int | None) -> int | None:
        """Propagate feature counts; raise naming both layers where they disagree."""
        size = input_size
        if layers and isinstance(layers[0], Dense) and layers[0].declared_input_size is not None:
            declared = layers[0].declared_input_size
            if size is not None and size != declared:
                raise ValueError(
                    f"input_size={size} but layer 0 ({layers[0]!r}) declares input_size={declared}"
                )
            size = declared
        for i, layer in enumerate(layers):
            if i > 0 and isinstance(layer, Dense) and layer.declared_input_size is not None:
                declared = layer.declared_input_size
                if size is not None and size != declared:
                    raise ValueError(
                        f"layer {i} ({layer!r}) declares input_size={declared}, but layer {i - 1} "
                        f"({layers[i - 1]!r}) outputs {size} features"
                    )
            if isinstance(layer, Dense):
                size = layer.units
        return size

    @property
    def output_size(self) -> int | None:
        return self._check_sizes(self.layers, self.input_size) if self.layers else None

    @_on_device
    def build(self, input_size: int | None = None) -> Network:
        """Create the weights (drawn from the seeded host generator) for ``input_size``."""
        if self.built:
            return self
        if not self.layers:
            raise ValueError("the network has no layers; add some with net.add(...)")
        self._built_at_construction = False
        size = input_size if input_size is not None else self.input_size
        first = self.layers[0]
        if size is None and isinstance(first, Dense):
            size = first.declared_input_size
        if size is None:
            raise ValueError("input_size is unknown: pass input_size= or call fit/predict first")
        size = as_int(size, "input_size", minimum=1)
        self._check_sizes(self.layers, size)
        self._check_metrics()
        self.input_size = size
        if not any(layer.param_names for layer in self.layers):
            raise ValueError("the network has no trainable layer (add a Dense layer)")
        self._rng_before_build = self.rng.bit_generator.state
        for layer in self.layers:
            layer.build(size, self.backend, self.dtype, self.rng)
            size = layer.output_size
        self._flatten_parameters()
        bind_dropout(self.layers, self.seed, self.optimizer)  # masks keyed by seed, counted by updates
        self.loss.bind(self.xp, self.dtype)
        last = self.layers[-1]
        self._fused = (
            not self.loss.from_logits
            and self.loss.link is not None
            and last.output_activation == self.loss.link
        )
        self._logits = self._fused or self.loss.from_logits
        self._task = self._task_for(self.output_size)
        self._link = get_activation(self.loss.link).bind(self.backend, self.dtype) if self.loss.link else None
        self._trainable_from = next(i for i, layer in enumerate(self.layers) if layer.param_names)
        self._regularized = [(layer, name, reg) for layer in self.layers for name, reg in layer.regularizers.items()]
        return self

    def _flatten_parameters(self) -> None:
        """Re-home every parameter (and gradient) as a view of one flat buffer, so the
        optimizer updates all of them with a handful of whole-buffer operations; the
        non-trainable state likewise into a second one (``_state``)."""
        xp, dev = self.xp, self.backend.device
        total = sum(layer.num_parameters for layer in self.layers)
        theta = xp.empty((total,), dtype=self.dtype, device=dev)
        grad = xp.zeros((total,), dtype=self.dtype, device=dev)
        self._state = xp.empty((sum(layer.num_state for layer in self.layers),), dtype=self.dtype, device=dev)
        self._rehome(self._state, lambda layer: layer.state_names)
        tensor_grads = []  # each tensor's gradient, a flat view (clipnorm clips each by its norm)
        for layer, pname, part, shape in self._rehome(theta, lambda layer: layer.param_names):
            setattr(layer, "grad_" + pname, xp.reshape(grad[part], shape))
            tensor_grads.append(grad[part])
        self._theta, self._grad = theta, grad
        self._replay_snapshot: Any = None
        self.optimizer.setup([theta], [grad], self.backend, tensors=tensor_grads)

    def _rehome(
        self, buffer: Any, names_of: Callable[[Layer], tuple[str, ...]]
    ) -> list[tuple[Layer, str, slice, tuple[int, ...]]]:
        """Copy each layer's arrays named by ``names_of(layer)`` into consecutive parts of
        the flat ``buffer`` and put views of those parts in their place; returns where
        each went (layer, name, part of the buffer, shape)."""
        placed, offset = [], 0
        for layer in self.layers:
            for name in names_of(layer):
                value = getattr(layer, name)
                shape = tuple(value.shape)
                part = slice(offset, offset + int(np.prod(shape)))
                view = self.xp.reshape(buffer[part], shape)
                view[...] = value
                setattr(layer, name, view)
                placed.append((layer, name, part, shape))
                offset = part.stop
        return placed

    # ------------------------------------------------------------------ parameters
    @property
    def num_parameters(self) -> int:
        return sum(layer.num_parameters for layer in self.layers)

    @property
    def num_state(self) -> int:
        """Non-trainable values (BatchNorm's running statistics)."""
        return sum(layer.num_state for layer in self.layers)

    @_on_device
    def get_weights(self) -> list[np.ndarray]:
        """Host NumPy copies of the weights in layer order: each layer's parameters
        (kernel, then bias), then its non-trainable state (as Keras orders them)."""
        self._require_built()
        return [np.array(to_numpy(getattr(layer, n))) for layer in self.layers for n in layer.weight_shapes()]

    @_on_device
    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load weights (as from `get_weights`); validated in full before any is written."""
        self._require_built()
        targets = [(layer, n) for layer in self.layers for n in layer.weight_shapes()]
        expected = [(f"{type(layer).__name__} {n}", tuple(getattr(layer, n).shape)) for layer, n in targets]
        arrays = as_weight_list(weights, expected, self.dtype_name)
        self._built_at_construction = False
        for (layer, pname), host in zip(targets, arrays, strict=True):
            getattr(layer, pname)[...] = self.backend.asarray(host, dtype=self.dtype)

    @_on_device
    def snapshot_parameters(self) -> Any:
        """A device copy of all parameters and non-trainable state, one flat array of
        ``num_parameters + num_state`` values (for `restore_parameters`)."""
        self._require_built()
        return self.xp.concat([self._theta, self._state])

    @_on_device
    def restore_parameters(self, snapshot: Any) -> None:
        self._built_at_construction = False
        self._theta[...] = snapshot[: self._theta.shape[0]]
        self._state[...] = snapshot[self._theta.shape[0] :]

    @_on_device
    def _snapshot_state(self, into: Any = None) -> tuple[Any, dict[str, Any], int]:
        """Parameters, optimizer state and step count (device copies; written into the
        buffers of an earlier snapshot ``into`` when given, to avoid allocating)."""
        arrays = self.optimizer.state_arrays()
        if into is None:
            state = {k: self.xp.asarray(v, copy=True) for k, v in arrays.items()}
            return self.snapshot_parameters(), state, self.optimizer.steps
        theta, state, _ = into
        theta[: self._theta.shape[0]] = self._theta
        theta[self._theta.shape[0] :] = self._state
        for key, value in arrays.items():
            state[key][...] = value
        return theta, state, self.optimizer.steps

    @_on_device
    def _restore_state(self, snapshot: tuple[Any, dict[str, Any], int]) -> None:
        theta, state, steps = snapshot
        self.restore_parameters(theta)
        self.optimizer.load_state_arrays(state, steps)

    def _require_built(self) -> None:
        if not self.built:
            raise RuntimeError("the network is not built yet: call fit/predict or build(input_size)")

    # ------------------------------------------------------------------ computing
    def _forward(self, x: Any, training: bool) -> Any:
        """The outputs the loss takes: logits when the loss is fused with the last activation."""
        layers = self.layers
        for layer in layers[:-1]:
            x = layer.forward(x, training)
        last = layers[-1]
        return last.forward_logits(x, training) if self._fused else last.forward(x, training)

    def _backward(self, d: Any) -> None:
        layers, stop = self.layers, self._trainable_from
        last = len(layers) - 1
        need = last > stop
        d = layers[last].backward_logits(d, need) if self._fused else layers[last].backward(d, need)
        for i in range(last - 1, stop - 1, -1):
            d = layers[i].backward(d, i > stop)

    def _forward_backward(self, xb: Any, tb: Any, wb: Any) -> tuple[Any, Any]:
        """One batch: forward, loss, backward into the gradient buffer. Returns the sum of
        the per-sample losses (a 0-d device array) and the outputs."""
        out = self._forward(xb, True)
        loss_sum, d = self.loss.sum_and_grad(out, tb, wb, logits=self._logits)
        self._backward(d)
        if self._regularized:  # the batch's mean loss gets the penalty: its sum, penalty x batch
            loss_sum = loss_sum + self._penalty() * xb.shape[0]
            for layer, name, reg in self._regularized:
                grad = getattr(layer, "grad_" + name)
                grad += reg.gradient(self.xp, getattr(layer, name))
        return loss_sum, out

    def _penalty(self) -> Any:
        """The regularizers' penalty (0-d device array; 0.0 without regularizers)."""
        return sum((reg.penalty(self.xp, getattr(layer, name)) for layer, name, reg in self._regularized), 0.0)

    def _accuracy_by_argmax(self, outputs: int) -> bool:
        """Accuracy compares argmaxes (one-of-k outputs), else thresholds each output."""
        return outputs > 1 and self.loss.name != "binary_cross_entropy"

    def _task_for(self, outputs: int) -> str:
        """What the metrics compare: "multiclass" (argmax of several outputs), "binary"
        (one thresholded output) or "multilabel" (several thresholded outputs)."""
        if self._accuracy_by_argmax(outputs):
            return "multiclass"
        return "binary" if outputs == 1 else "multilabel"

    def _probabilities(self, out: Any) -> Any:
        """The predictions ``predict`` returns, from the outputs the loss takes."""
        return self._link.apply(out) if self._logits else out

    # ------------------------------------------------------------------ public API
    @_on_device
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[Any, Any] | tuple[Any, Any, Any] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        stream: bool | None = None,
        comm: Any = None,
    ) -> History:
        """Train; returns a `History`. Calling ``fit`` again continues training.

        ``initial_epoch`` (as in Keras): the epoch to start at, counting from 0; training
        runs until epoch ``epochs`` (a total, not a count of more epochs).
        ``x`` may live on disk (`numpy.memmap`, h5py, zarr) or be a source of batches (an
        `anyxp.data.Sequence`, or a generator with ``steps_per_epoch``): see `anyxp.data`.
        ``stream``: True reads batches as needed instead of moving the data to the device
        whole; None (default) streams sources of batches, and arrays on disk that would
        take more than half of the available memory.
        With ``comm`` (`anyxp.distributed.init()`), train data-parallel across processes:
        ``batch_size`` is the global batch, split into per-rank shards.
        """
        from .training import fit

        self._built_at_construction = False
        return fit(
            self, x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
            validation_split=validation_split, shuffle=shuffle, class_weight=class_weight,
            sample_weight=sample_weight, callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, stream=stream, comm=comm,
        )

    @_on_device
    def evaluate(
        self, x: Any, y: Any = None, *, batch_size: int | None = None, sample_weight: Any = None,
        steps: int | None = None, stream: bool | None = None,
    ) -> dict[str, float]:
        """Loss (and metrics) on ``(x, y)``: ``{"loss": ..., "accuracy": ...}``. ``x`` may
        live on disk or be a source of batches (with ``steps`` for a generator), as in `fit`."""
        from .training import _features, evaluate_data, prepare_data, stream_data

        batch_size = check_batch_size(batch_size)
        data = stream_data(self, x, y, sample_weight, None, stream, steps)
        if data is not None:
            self.build(_features(self, data))
            return evaluate_data(self, data, batch_size)
        x, y, sample_weight = in_memory(x), in_memory(y), in_memory(sample_weight)
        data = prepare_data(self, x, y, sample_weight=sample_weight, names=("x", "y"))
        self.build(data.x.shape[1])
        return evaluate_data(self, data.to_device(self), batch_size)

    @_on_device
    def predict(self, x: Any, *, batch_size: int | None = None, out: Any = None) -> Any:
        """Outputs for ``x``, as arrays of the caller's library (NumPy in, NumPy out).

        An ``x`` on disk (memmap, h5py, zarr) is read batch by batch; ``out`` (an array or
        memmap of shape (samples, outputs)) receives the outputs instead of a new array."""
        batch_size = check_batch_size(batch_size) or EVAL_BATCH
        if out is not None or is_on_disk(x):
            from .training import predict_stream

            return predict_stream(self, x, batch_size, out)
        x_in = x
        x = prepare_features(self, x)
        self.build(x.shape[1])
        x_dev = self.backend.asarray(x, dtype=self.dtype)
        parts = []
        for lo in range(0, x_dev.shape[0], batch_size):
            a = x_dev[lo : min(lo + batch_size, x_dev.shape[0]), ...]
            for layer in self.layers:
                a = layer.forward(a, False)
            parts.append(a)
        out = parts[0] if len(parts) == 1 else self.xp.concat(parts, axis=0)
        return _in_callers_library(out, x_in, self.backend)

    @_on_device
    def predict_classes(self, x: Any, *, batch_size: int | None = None) -> Any:
        """Predicted class per sample: argmax, or a 0.5 threshold for one output."""
        out = self.predict(x, batch_size=batch_size)
        xp = array_api_compat.array_namespace(out)
        if out.shape[1] == 1:
            return xp.astype(out[:, 0] > 0.5, xp.int64)
        return xp.argmax(out, axis=1)

    def summary(self, print_fn: Any = print) -> str:
        """Layers, output shapes, parameter counts, dtype, backend and device."""
        rows = [("Layer", "Output shape", "Params")]
        size = self.input_size
        for i, layer in enumerate(self.layers):
            if layer.built:
                size = layer.output_size
            elif isinstance(layer, Dense):
                size = layer.units
            label = f"{i}: {type(layer).__name__}"
            if isinstance(layer, Dense):
                label += f"({layer.units}, {layer.activation.name})"
            elif isinstance(layer, Dropout):
                label += f"({layer.rate})"
            shape = f"(None, {size if size is not None else '?'})"
            rows.append((label, shape, f"{layer.num_parameters + layer.num_state:,}" if layer.built else "?"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 4)
        text = [f'Network "{self.name}"', line]
        text += ["  ".join(r[c].ljust(widths[c]) for c in range(3)) for r in rows[:1]]
        text.append(line)
        text += ["  ".join(r[c].ljust(widths[c]) for c in range(3)) for r in rows[1:]]
        text.append(line)
        params = f"{self.num_parameters + self.num_state:,}" if self.built else "? (not built)"
        text.append(f"Total params: {params}")
        if self.built and self.num_state:
            text.append(f"Trainable params: {self.num_parameters:,}  Non-trainable params: {self.num_state:,}")
        text.append(f"Input size: {self.input_size}  dtype: {self.dtype_name}")
        text.append(f"Loss: {self.loss!r}  Optimizer: {self.optimizer!r}")
        text.append(f"Backend: {self.backend.name} {self.backend.version}  device: {self.backend.device}")
        result = "\n".join(text)
        if print_fn is not None:
            print_fn(result)
        return result

    def save(self, path: str | Path) -> None:
        """Write architecture, weights, optimizer state, dtype and format version to one
        ``.npz`` file (no pickle)."""
        from .checkpoint import save

        save(self, path)

    def export_onnx(self, path: str | Path, *, opset: int | None = None) -> None:
        """Write the inference graph to an ONNX file (needs ``pip install 'anyxp[onnx]'``);
        see `anyxp.onnx.export`."""
        from .onnx import export

        export(self, path, opset=opset)

    # ------------------------------------------------------------------ pickling and copying
    def __reduce__(self) -> tuple[Any, tuple[bytes, str, str | None]]:
        """Pickle as the checkpoint format (header and raw arrays, never pickled arrays or
        library objects), with the backend's name and device: `checkpoint.from_pickle`
        rebuilds it, falling back (with a warning) where that backend cannot run."""
        from .checkpoint import from_pickle, pickle_args

        return from_pickle, pickle_args(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Network:
        """An independent network on the same backend and device, through the checkpoint
        format: weights, optimizer state and steps, RNG state (and a copy of the history)."""
        from .checkpoint import dumps, loads

        copy = loads(dumps(self), backend=self.backend)
        memo[id(self)] = copy
        if self.history is not None:
            import copy as copy_module

            copy.history = copy_module.deepcopy(self.history, memo)
        return copy

    def __copy__(self) -> Network:
        """A network shares no buffers with another: `copy.copy` is `copy.deepcopy`."""
        return self.__deepcopy__({})

    def to(self, backend: Any, device: Any = None) -> Network:
        """Move the weights and optimizer state to another backend/device (in place)."""
        new = get_backend(backend, device=device)
        if not self.built:
            self.backend, self.xp = new, new.xp
            self.dtype = new.float_dtype(self.dtype_name)
            return self
        weights = self.get_weights()
        state = {k: to_numpy(v) for k, v in self.optimizer.state_arrays().items()}
        steps = self.optimizer.steps
        self.backend, self.xp = new, new.xp
        self.dtype = new.float_dtype(self.dtype_name)
        rng_state = self.rng.bit_generator.state
        for layer in self.layers:
            layer.built = False
        self.build(self.input_size)
        self.rng.bit_generator.state = rng_state
        self.set_weights(weights)
        with new.activate():
            self.optimizer.load_state_arrays(state, steps)
        return self

    @_on_device
    def collapse(self) -> Network:
        """An equivalent one-layer network, when every hidden activation is the identity.

        The final activation is kept; Dropout layers (identity at inference) are skipped.
        """
        self._require_built()
        body = [layer for layer in self.layers if not isinstance(layer, Dropout)]
        final = body.pop() if isinstance(body[-1], Activation) else body[-1].activation
        for layer in body:
            if isinstance(layer, Dense):
                act = layer.activation.name
            elif isinstance(layer, Activation):
                act = layer.name
            else:
                raise ValueError(f"cannot collapse a network with a {type(layer).__name__} layer")
            keeps_final = layer is body[-1] and final is getattr(layer, "activation", None)
            if act != "linear" and not keeps_final:
                raise ValueError(f"cannot collapse: {layer!r} has the non-identity activation {act!r}")
        kernel, bias = np.eye(self.input_size), np.zeros(self.input_size)
        for layer in body:
            if isinstance(layer, Dense):
                w = to_numpy(layer.kernel).astype(np.float64)
                b = to_numpy(layer.bias).astype(np.float64) if layer.use_bias else 0.0
                kernel, bias = kernel @ w, bias @ w + b
        single = Dense(kernel.shape[1], type(final)(**final.get_config()), input_size=self.input_size)
        net = Network(
            [single], loss=get_loss(self.loss),
            optimizer=optimizer_from_config(self.optimizer.name, self.optimizer.get_config()),
            backend=self.backend, dtype=self.dtype_name, seed=self.seed, name=f"{self.name}_collapsed",
            metrics=self.metrics,
        )
        net.build(self.input_size)
        net.set_weights([kernel, bias])
        return net

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{layers}], input_size={self.input_size}, backend={self.backend.name!r})"


def _resolve_metrics(metrics: Sequence[str | Metric] | str | Metric | None, loss: Loss) -> list[Metric]:
    """The metric objects (``None``: accuracy for a classification loss, else none)."""
    if metrics is None:
        return [get_metric("accuracy")] if loss.link is not None else []
    if isinstance(metrics, str | Metric):
        metrics = [metrics]
    elif not isinstance(metrics, Iterable):
        raise TypeError(f"metrics must be a list of names, got {type(metrics).__name__}")
    resolved = [get_metric(m) for m in metrics]
    names = [m.name for m in resolved]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"metrics lists {', '.join(map(repr, twice))} more than once")
    return resolved


def _layer_list(layers: Any) -> list[Layer]:
    """The ``layers`` argument as a list (each is checked by `Network.add`)."""
    if layers is None:
        return []
    if isinstance(layers, Layer | str):
        raise TypeError(f"layers must be a list of Layer objects, got {type(layers).__name__}")
    try:
        return list(layers)
    except TypeError:
        raise TypeError(f"layers must be a list of Layer objects, got {type(layers).__name__}") from None


def _in_callers_library(out: Any, x_in: Any, backend: Backend) -> Any:
    """Return ``out`` in the array library ``x_in`` came in (NumPy for lists)."""
    if backend.is_native(x_in):
        return out
    host = to_numpy(out)
    if isinstance(x_in, np.ndarray) or not is_array(x_in):
        return host
    xp_in = array_api_compat.array_namespace(x_in)
    return xp_in.asarray(host, device=array_api_compat.device(x_in))
