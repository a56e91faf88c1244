"""ONNX export: a network's inference graph, built with ``onnx.helper`` (``pip install
'anyxp[onnx]'``).

One ``Gemm`` (``MatMul`` without a bias) per `Dense`, ONNX's own operator per activation
(``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``, ``Softmax``, ``LogSoftmax``, ``Elu``,
``Selu``, ``Softplus``, ``HardSigmoid(alpha=1/6, beta=0.5)``, ``Mish`` from opset 18,
``Gelu(approximate="tanh")`` from opset 20; `SiLU` is ``Mul(x, Sigmoid(x))``), nothing for
`Dropout` (the identity at inference). `LayerNorm` is a ``LayerNormalization`` (from opset
17) and `BatchNorm` a ``BatchNormalization`` in inference mode, with its running estimates
(an absent ``gamma`` or ``beta``, ``scale=False`` or ``center=False``, is a constant 1 or
0). The input ``"input"`` is ``(batch, input_size)`` with a dynamic batch dimension, the
output ``"output"`` is ``(batch, output_size)``, both of the network's dtype.

onnxruntime's CPU kernels lack float64 ``Elu``, ``Selu``, ``HardSigmoid``, ``Softplus``
(so ``Mish``) and (at opsets 20-21) ``LeakyRelu``, and its float64 ``Gelu`` is accurate to
about 1e-7 only, its float64 ``LayerNormalization`` and ``BatchNormalization`` to about
1e-13: in float64 graphs (and for ``Gelu``, ``Mish`` and ``LayerNormalization`` before
their opsets) those are built from elementary operators, in the stable forms anyxp
computes them in, so that onnxruntime matches `Network.predict` to float64 rounding.

The model's IR version is the lowest that its opset needs (10 for the default opset 21),
not the newest that the installed ``onnx`` writes, which runtimes may refuse.

>>> net.export_onnx("model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import activations
from .layers import Dense, Dropout
from .normalization import BatchNorm, LayerNorm

if TYPE_CHECKING:
    from .network import Network

DEFAULT_OPSET = 21  # onnx >= 1.16 and onnxruntime >= 1.18 know it; IR version 10
MIN_OPSET = 13  # Softmax over one axis, Gemm with an optional bias
INPUT, OUTPUT = "input", "output"


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package: pip install 'anyxp[onnx]' ({exc})") from None
    return onnx


def export(net: Network, path: str | Path, *, opset: int | None = None) -> None:
    """Write ``net``'s inference graph to ``path`` (atomically, as `Network.save` does)."""
    from .checkpoint import write_atomically

    model = to_onnx(net, opset=opset)
    data = model.SerializeToString()
    write_atomically(path, lambda f: f.write(data))


def to_onnx(net: Network, *, opset: int | None = None) -> Any:
    """``net``'s inference graph as an ``onnx.ModelProto``, checked by ``onnx.checker``."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    from . import __version__

    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        opset = min(DEFAULT_OPSET, newest)
    elif isinstance(opset, bool) or not isinstance(opset, int | np.integer):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    opset = int(opset)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (this onnx's newest), got {opset}")
    net._require_built()
    dtype = np.dtype(net.dtype_name)
    graph = _Graph(dtype, opset)
    x = INPUT
    for i, layer in enumerate(net.layers):
        x = _layer_rule(layer, i)(graph, x, layer)
    if x == INPUT:  # a graph output must be a node's output
        x = graph.op("Identity", [x], "identity")
    graph.nodes.append(helper.make_node("Identity", [x], [OUTPUT], name="output"))

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inputs = [helper.make_tensor_value_info(INPUT, elem, ["batch", net.input_size])]
    outputs = [helper.make_tensor_value_info(OUTPUT, elem, ["batch", net.output_size])]
    weights = net.get_weights()
    initializers = [onnx.numpy_helper.from_array(np.asarray(w, dtype=dtype), name) for name, w in
                    zip(graph.weight_names, weights, strict=True)]
    initializers += [onnx.numpy_helper.from_array(value, name) for name, value in graph.constants]
    proto = helper.make_graph(graph.nodes, net.name, inputs, outputs, initializer=initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        proto, opset_imports=opset_ids, producer_name="anyxp", producer_version=__version__,
        doc_string=f"anyxp network {net.name!r}: {net!r}",
    )
    model.ir_version = helper.find_min_ir_version_for(opset_ids)
    onnx.checker.check_model(model, full_check=True)
    return model


class _Graph:
    """The nodes and constants of the graph being built, with unique names."""

    def __init__(self, dtype: np.dtype, opset: int) -> None:
        self.dtype, self.opset = dtype, opset
        self.float64 = dtype == np.float64
        self.nodes: list[Any] = []
        self.weight_names: list[str] = []  # in the order of Network.get_weights()
        self.constants: list[tuple[str, np.ndarray]] = []
        self._constant_names: dict[float, str] = {}
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def weight(self, hint: str) -> str:
        name = self.name(hint)
        self.weight_names.append(name)
        return name

    def const(self, value: float) -> str:
        """A scalar constant of the graph's dtype (one initializer per value)."""
        key = float(value)
        if key not in self._constant_names:
            name = f"const_{len(self._constant_names)}"
            self._constant_names[key] = name
            self.constants.append((name, np.asarray(key, dtype=self.dtype)))
        return self._constant_names[key]

    def tensor(self, hint: str, value: np.ndarray) -> str:
        """A constant tensor of the graph's dtype (an initializer that is not a weight)."""
        name = self.name(hint)
        self.constants.append((name, np.asarray(value, dtype=self.dtype)))
        return name

    def int64s(self, hint: str, values: list[int]) -> str:
        """A constant int64 vector (axes, shapes)."""
        name = self.name(hint)
        self.constants.append((name, np.asarray(values, dtype=np.int64)))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out


# ------------------------------------------------------------------------------ layers
LayerRule = Callable[[_Graph, str, Any], str]


def _dense(g: _Graph, x: str, layer: Dense) -> str:
    kernel = g.weight("kernel")
    inputs = [x, kernel, g.weight("bias")] if layer.use_bias else [x, kernel]
    z = g.op("Gemm" if layer.use_bias else "MatMul", inputs, "dense")
    return _activation_rule(layer.activation, f"{layer!r}")(g, z, layer.activation)


def _dropout(g: _Graph, x: str, layer: Dropout) -> str:
    return x  # the identity at inference


def _affine_weights(g: _Graph, layer: LayerNorm | BatchNorm) -> tuple[str | None, str | None]:
    """gamma's and beta's names (None for an absent one), bound in get_weights' order."""
    names = {n: g.weight(n) for n in layer.param_names}  # ("gamma", "beta"), each optional
    return names.get("gamma"), names.get("beta")


def _affine(g: _Graph, x_hat: str, gamma: str | None, beta: str | None, features: int) -> str:
    """x_hat * gamma + beta, as anyxp's _Normalization._affine (no node for an absent one)."""
    y = g.op("Mul", [x_hat, _not_a_scale(g, gamma, x_hat, features)]) if gamma is not None else x_hat
    return g.op("Add", [y, beta]) if beta is not None else y


def _not_a_scale(g: _Graph, factor: str, like: str, features: int) -> str:
    """A per-feature constant factor (or divisor) of ``like``, expanded to ``like``'s shape
    where it has a single element: onnxruntime folds a one-element constant factor of a
    MatMul's input or output into the MatMul's float32 scale (1e-8 off in float64)."""
    if features != 1:
        return factor
    return g.op("Expand", [factor, g.op("Shape", [like])], "expand")


def _reduce_mean(g: _Graph, x: str) -> str:
    """The mean over the last axis, kept (axes became an input at opset 18)."""
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.int64s("axes", [-1])], keepdims=1)
    return g.op("ReduceMean", [x], axes=[-1], keepdims=1)


def _layer_norm(g: _Graph, x: str, layer: LayerNorm) -> str:
    gamma, beta = _affine_weights(g, layer)
    if not g.float64 and g.opset >= 17:
        features = layer.input_size
        scale = gamma if gamma is not None else g.tensor("ones", np.ones(features))
        inputs = [x, scale] if beta is None else [x, scale, beta]
        return g.op("LayerNormalization", inputs, "layer_norm", axis=-1, epsilon=float(layer.eps))
    # as anyxp: d = x - mean(x); x_hat = d * (1 / sqrt(mean(d * d) + eps)) (biased variance)
    d = g.op("Sub", [x, _reduce_mean(g, x)])
    var = _reduce_mean(g, g.op("Mul", [d, d]))
    inv_std = g.op("Div", [g.const(1.0), g.op("Sqrt", [g.op("Add", [var, g.const(layer.eps)])])])
    return _affine(g, g.op("Mul", [d, inv_std]), gamma, beta, layer.input_size)


def _batch_norm(g: _Graph, x: str, layer: BatchNorm) -> str:
    gamma, beta = _affine_weights(g, layer)
    mean, var = g.weight("running_mean"), g.weight("running_var")  # the state, after the parameters
    if not g.float64:
        features = layer.input_size
        scale = gamma if gamma is not None else g.tensor("ones", np.ones(features))
        bias = beta if beta is not None else g.tensor("zeros", np.zeros(features))
        return g.op("BatchNormalization", [x, scale, bias, mean, var], "batch_norm", epsilon=float(layer.eps))
    # as anyxp at inference: (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    std = g.op("Sqrt", [g.op("Add", [var, g.const(layer.eps)])])
    d = g.op("Sub", [x, mean])
    x_hat = g.op("Div", [d, _not_a_scale(g, std, d, layer.input_size)])
    return _affine(g, x_hat, gamma, beta, layer.input_size)


def _standalone_activation(g: _Graph, x: str, layer: activations.Activation) -> str:
    return _activation_rule(layer, f"{layer!r}")(g, x, layer)


def _layer_rule(layer: Any, i: int) -> LayerRule:
    cls = type(layer)
    if cls in LAYER_RULES:
        return LAYER_RULES[cls]
    if cls in ACTIVATION_RULES:
        return _standalone_activation
    raise ValueError(f"cannot export layer {i} ({layer!r}) to ONNX: anyxp has no export rule for "
                     f"{cls.__name__} layers (it exports {', '.join(_exportable())})")


def _activation_rule(act: Any, where: str) -> Callable[[_Graph, str, Any], str]:
    rule = ACTIVATION_RULES.get(type(act))
    if rule is None:
        raise ValueError(f"cannot export {where} to ONNX: anyxp has no export rule for the "
                         f"{type(act).__name__} activation")
    return rule


def _exportable() -> list[str]:
    return [cls.__name__ for cls in LAYER_RULES] + [cls.__name__ for cls in ACTIVATION_RULES]


# ------------------------------------------------------------------------------ activations
# Each matches the formula of its class in anyxp.activations.
def _identity(g: _Graph, x: str, act: Any) -> str:
    return x


def _relu(g: _Graph, x: str, act: Any) -> str:
    return g.op("Relu", [x])


def _leaky_relu(g: _Graph, x: str, act: activations.LeakyReLU) -> str:
    if not g.float64:
        return g.op("LeakyRelu", [x], alpha=float(act.alpha))
    scaled = g.op("Mul", [x, g.const(act.alpha)])
    if 0.0 <= act.alpha <= 1.0:  # as anyxp: max(x, alpha * x)
        return g.op("Max", [x, scaled], "leaky_relu")
    return g.op("Where", [g.op("Greater", [x, g.const(0.0)]), x, scaled], "leaky_relu")


def _sigmoid(g: _Graph, x: str, act: Any) -> str:
    return g.op("Sigmoid", [x])


def _tanh(g: _Graph, x: str, act: Any) -> str:
    return g.op("Tanh", [x])


def _softmax(g: _Graph, x: str, act: Any) -> str:
    return g.op("Softmax", [x], axis=-1)


def _log_softmax(g: _Graph, x: str, act: Any) -> str:
    return g.op("LogSoftmax", [x], axis=-1)


def _silu(g: _Graph, x: str, act: Any) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x])], "silu")


def _selu(g: _Graph, x: str, act: Any) -> str:
    if not g.float64:
        return g.op("Selu", [x], alpha=activations.SELU_ALPHA, gamma=activations.SELU_SCALE)
    # scale * alpha * (exp(min(x, 0)) - 1) + scale * max(x, 0)
    zero = g.const(0.0)
    expm1 = g.op("Sub", [g.op("Exp", [g.op("Min", [x, zero])]), g.const(1.0)])
    negative = g.op("Mul", [expm1, g.const(activations.SELU_SCALE * activations.SELU_ALPHA)])
    positive = g.op("Mul", [g.op("Max", [x, zero]), g.const(activations.SELU_SCALE)])
    return g.op("Add", [negative, positive], "selu")


def _hard_sigmoid(g: _Graph, x: str, act: Any) -> str:
    if not g.float64:
        return g.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    # min(max((x + 3) / 6, 0), 1): anyxp's min(max(x + 3, 0), 6) / 6 to the bit (division by 6
    # is monotonic and exact at 0 and 6), and no division by a constant just before a MatMul,
    # which onnxruntime fuses into a float32 scale factor
    scaled = g.op("Div", [g.op("Add", [x, g.const(3.0)]), g.const(6.0)])
    return g.op("Min", [g.op("Max", [scaled, g.const(0.0)]), g.const(1.0)], "hard_sigmoid")


def _mish(g: _Graph, x: str, act: Any) -> str:
    if not g.float64 and g.opset >= 18:
        return g.op("Mish", [x])
    # x * tanh(softplus(x)), softplus in float64 from elementary operators
    return g.op("Mul", [x, g.op("Tanh", [_softplus(g, x, act)])], "mish")


_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu(g: _Graph, x: str, act: Any) -> str:
    if not g.float64 and g.opset >= 20:
        return g.op("Gelu", [x], approximate="tanh")
    # 0.5 * x * (1 + tanh(c * (x + 0.044715 * x^3)))
    cube = g.op("Mul", [g.op("Mul", [x, x]), x])
    inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715)])])
    t = g.op("Tanh", [g.op("Mul", [inner, g.const(_GELU_C)])])
    half_x = g.op("Mul", [x, g.const(0.5)])
    return g.op("Mul", [half_x, g.op("Add", [t, g.const(1.0)])], "gelu")


def _elu(g: _Graph, x: str, act: activations.ELU) -> str:
    if not g.float64:
        return g.op("Elu", [x], alpha=float(act.alpha))
    # alpha * (exp(min(x, 0)) - 1) + max(x, 0)
    zero = g.const(0.0)
    expm1 = g.op("Sub", [g.op("Exp", [g.op("Min", [x, zero])]), g.const(1.0)])
    return g.op("Add", [g.op("Mul", [expm1, g.const(act.alpha)]), g.op("Max", [x, zero])], "elu")


def _softplus(g: _Graph, x: str, act: Any) -> str:
    if not g.float64:
        return g.op("Softplus", [x])
    # max(x, 0) + log1p(exp(-|x|)), log1p(u) = u if 1 + u == 1 else log(1 + u) * u / ((1 + u) - 1)
    one = g.const(1.0)
    u = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])
    w = g.op("Add", [u, one])
    w_minus_1 = g.op("Sub", [w, one])
    exact = g.op("Equal", [w_minus_1, g.const(0.0)])
    safe = g.op("Where", [exact, one, w_minus_1])  # no division by zero (that branch is unused)
    corrected = g.op("Div", [g.op("Mul", [g.op("Log", [w]), u]), safe])
    log1p = g.op("Where", [exact, u, corrected])
    return g.op("Add", [g.op("Max", [x, g.const(0.0)]), log1p], "softplus")


LAYER_RULES: dict[type, LayerRule] = {
    Dense: _dense, Dropout: _dropout, LayerNorm: _layer_norm, BatchNorm: _batch_norm,
}
ACTIVATION_RULES: dict[type, Callable[[_Graph, str, Any], str]] = {
    activations.Identity: _identity,
    activations.ReLU: _relu,
    activations.LeakyReLU: _leaky_relu,
    activations.Sigmoid: _sigmoid,
    activations.Tanh: _tanh,
    activations.Softmax: _softmax,
    activations.GELU: _gelu,
    activations.ELU: _elu,
    activations.Softplus: _softplus,
    activations.SiLU: _silu,
    activations.SELU: _selu,
    activations.Mish: _mish,
    activations.HardSigmoid: _hard_sigmoid,
    activations.LogSoftmax: _log_softmax,
}
