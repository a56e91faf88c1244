"""ONNX export: onnxruntime runs the exported graph and matches `Network.predict`."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp as ax
from anyxp import activations
from anyxp.__main__ import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}

# one instance of every activation class (several settings where the formula branches)
ACTIVATIONS = {
    **{cls.__name__: cls() for cls in sorted(set(activations.ACTIVATIONS.values()), key=lambda c: c.__name__)},
    "LeakyReLU(0.2)": ax.LeakyReLU(0.2),
    "LeakyReLU(1.5)": ax.LeakyReLU(1.5),
    "ELU(0.5)": ax.ELU(0.5),
}


def fresh(act: activations.Activation) -> activations.Activation:
    return type(act)(**act.get_config())


def network(backend, layers, dtype: str, input_size: int = 6) -> ax.Network:
    net = ax.Network(layers, input_size=input_size, backend=backend, dtype=dtype, seed=3, loss="mse")
    net.build()
    # a larger first kernel: pre-activations reach the saturating / overflowing ranges (|z| ~ 20)
    weights = net.get_weights()
    weights[0] = weights[0] * 4
    net.set_weights(weights)
    return net


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run(["output"], {"input": x})[0]


def assert_matches(net: ax.Network, path, batch_sizes=(1, 7, 1000)) -> None:
    sess = session(path)
    tol = TOLERANCE[net.dtype_name]
    rng = np.random.default_rng(11)
    for n in batch_sizes:  # one file, any batch size
        x = rng.normal(size=(n, net.input_size)).astype(net.dtype_name)
        got, expected = run(sess, x), np.asarray(net.predict(x))
        assert got.dtype == np.dtype(net.dtype_name) and got.shape == expected.shape == (n, net.output_size)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def check_model(path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_in_dense_layers(backend, act, dtype, tmp_path) -> None:
    a = ACTIVATIONS[act]
    net = network(backend, [ax.Dense(12, fresh(a)), ax.Dropout(0.3), ax.Dense(5, fresh(a))], dtype)
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    model = check_model(path)
    assert "Dropout" not in {node.op_type for node in model.graph.node}
    assert_matches(net, path)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_as_a_layer(backend, act, dtype, tmp_path) -> None:
    a = ACTIVATIONS[act]
    net = network(backend, [ax.Dense(12), fresh(a), ax.Dropout(0.2), ax.Dense(5, use_bias=False), fresh(a)], dtype)
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    check_model(path)
    assert_matches(net, path)


def test_the_graph_uses_onnx_operators(backend, tmp_path) -> None:
    layers = [ax.Dense(8, "relu"), ax.Dropout(0.5), ax.Dense(8, "leaky_relu"), ax.Dense(8, "sigmoid"),
              ax.Dense(8, "tanh"), ax.Dense(8, "elu"), ax.Dense(8, "softplus"), ax.Dense(8, "gelu"),
              ax.Dense(3, "softmax")]
    net = network(backend, layers, "float32")
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    model = check_model(path)
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "LeakyRelu", "Gemm", "Sigmoid", "Gemm", "Tanh", "Gemm", "Elu",
                   "Gemm", "Softplus", "Gemm", "Gelu", "Gemm", "Softmax", "Identity"]
    assert model.opset_import[0].version == 21 and model.ir_version == 10
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")  # dynamic
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert_matches(net, path)
    # float64: the activations onnxruntime lacks in float64 come from elementary operators
    layers64 = [ax.Dense(8, "elu"), ax.Dense(8, "softplus"), ax.Dense(8, "gelu"), ax.Dense(3, "leaky_relu")]
    net64 = network(backend, layers64, "float64")
    net64.export_onnx(path)
    ops = {node.op_type for node in check_model(path).graph.node}
    assert not ops & {"Elu", "Softplus", "Gelu", "LeakyRelu"}
    assert_matches(net64, path)


def test_the_graph_uses_onnx_operators_for_the_newer_activations(backend, tmp_path) -> None:
    def layers() -> list[ax.Layer]:
        return [ax.Dense(8, "silu"), ax.Dense(8, "selu"), ax.Dense(8, "mish"), ax.Dense(8, "hard_sigmoid"),
                ax.Dense(3, "log_softmax")]

    net = network(backend, layers(), "float32")
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    model = check_model(path)
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["Gemm", "Sigmoid", "Mul", "Gemm", "Selu", "Gemm", "Mish", "Gemm", "HardSigmoid", "Gemm",
                   "LogSoftmax", "Identity"]
    attrs = {node.op_type: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
             for node in model.graph.node}
    assert attrs["HardSigmoid"] == pytest.approx({"alpha": 1 / 6, "beta": 0.5})
    assert attrs["Selu"] == pytest.approx({"alpha": activations.SELU_ALPHA, "gamma": activations.SELU_SCALE})
    assert attrs["LogSoftmax"] == {"axis": -1}
    assert_matches(net, path)
    net.export_onnx(path, opset=17)  # before Mish: x * tanh(softplus(x))
    ops = [node.op_type for node in check_model(path).graph.node]
    assert "Mish" not in ops and ops[ops.index("Softplus") + 1] == "Tanh"
    assert_matches(net, path)
    # float64: onnxruntime has no float64 Selu, HardSigmoid, Softplus (Mish's)
    net64 = network(backend, layers(), "float64")
    net64.export_onnx(path)
    ops = {node.op_type for node in check_model(path).graph.node}
    assert not ops & {"Selu", "HardSigmoid", "Mish", "Softplus"} and "LogSoftmax" in ops
    assert_matches(net64, path)


# every combination of the optional gamma (scale) and beta (center)
NORMALIZATIONS = {
    "LayerNorm": lambda: ax.LayerNorm(),
    "LayerNorm(eps=1e-3, center=False)": lambda: ax.LayerNorm(1e-3, center=False),
    "LayerNorm(scale=False)": lambda: ax.LayerNorm(scale=False),
    "LayerNorm(center=False, scale=False)": lambda: ax.LayerNorm(center=False, scale=False),
    "BatchNorm": lambda: ax.BatchNorm(),
    "BatchNorm(momentum=0.3, eps=1e-3, center=False)": lambda: ax.BatchNorm(0.3, 1e-3, center=False),
    "BatchNorm(scale=False)": lambda: ax.BatchNorm(scale=False),
    "BatchNorm(center=False, scale=False)": lambda: ax.BatchNorm(center=False, scale=False),
}


def trained(backend, layers, dtype: str, input_size: int = 6) -> ax.Network:
    """A network trained a few epochs on shifted, scaled data: BatchNorm's running estimates
    (and every gamma, beta) are far from their initial values."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(96, input_size)) * 3.0 + 2.0
    y = np.tanh(x @ rng.normal(size=(input_size, layers[-1].units)))
    net = ax.Network(layers, input_size=input_size, backend=backend, dtype=dtype, seed=3, loss="mse")
    net.fit(x, y, epochs=4, batch_size=16, verbose=0)
    return net


def normalization_state(net: ax.Network) -> list[np.ndarray]:
    """Every normalization layer's gamma, beta and running estimates, on the host."""
    return [np.asarray(layer.backend.to_numpy(getattr(layer, name))) for layer in net.layers
            if isinstance(layer, ax.LayerNorm | ax.BatchNorm) for name in layer.weight_shapes()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm", list(NORMALIZATIONS))
def test_normalization_layers(backend, norm, dtype, tmp_path) -> None:
    make = NORMALIZATIONS[norm]
    layers = [ax.Dense(8), make(), ax.ReLU(), ax.Dense(5, use_bias=False), make(), ax.Dense(3, "tanh")]
    net = trained(backend, layers, dtype)
    state = normalization_state(net)
    initial = [np.ones_like(s) if name in ("gamma", "running_var") else np.zeros_like(s) for s, name in
               zip(state, [n for layer in net.layers[1::3] for n in layer.weight_shapes()], strict=True)]
    assert all(not np.allclose(s, i) for s, i in zip(state, initial, strict=True))  # trained, not trivial
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    ops = {node.op_type for node in check_model(path).graph.node}
    standard = "LayerNormalization" if norm.startswith("LayerNorm") else "BatchNormalization"
    assert (standard in ops) == (dtype == "float32")  # float64: from elementary operators
    assert_matches(net, path)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_normalization_layers_at_other_opsets(backend, opset, dtype, tmp_path) -> None:
    layers = [ax.Dense(8, "gelu"), ax.LayerNorm(), ax.Dense(8, use_bias=False), ax.BatchNorm(momentum=0.5),
              ax.Dense(4, "selu"), ax.LayerNorm(center=False), ax.Dense(3)]
    net = trained(backend, layers, dtype)
    path = tmp_path / "net.onnx"
    net.export_onnx(path, opset=opset)
    ops = {node.op_type for node in check_model(path).graph.node}
    assert ("LayerNormalization" in ops) == (dtype == "float32" and opset >= 17)
    assert_matches(net, path)


def test_weights_are_bound_in_get_weights_order(backend, tmp_path) -> None:
    layers = [ax.Dense(4), ax.BatchNorm(), ax.Dense(4, use_bias=False), ax.LayerNorm(scale=False),
              ax.BatchNorm(center=False), ax.Dense(2)]
    net = trained(backend, layers, "float64")
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in check_model(path).graph.initializer}
    names = [n for layer in net.layers for n in layer.weight_shapes()]
    bound = [name for name in initializers if not name.startswith(("const_", "axes_"))]
    assert [name.rsplit("_", 1)[0] for name in bound] == names
    for name, weight in zip(bound, net.get_weights(), strict=True):
        np.testing.assert_array_equal(initializers[name], weight)


@pytest.mark.parametrize("norm", ["BatchNorm(center=False, scale=False)", "BatchNorm(scale=False)",
                                  "BatchNorm(momentum=0.3, eps=1e-3, center=False)", "LayerNorm(scale=False)"])
def test_a_single_feature_before_a_matmul(backend, norm, tmp_path) -> None:
    # onnxruntime folds a one-element constant factor next to a MatMul into the MatMul's
    # float32 scale factor: float64 graphs keep a one-feature normalization's factors apart
    layers = [ax.Dense(1, use_bias=False), NORMALIZATIONS[norm](), ax.Dense(4, use_bias=False), ax.Dense(2)]
    net = trained(backend, layers, "float64")
    path = tmp_path / "net.onnx"
    net.export_onnx(path)
    assert_matches(net, path)


@pytest.mark.parametrize("opset", [13, 17, 20, 22])
def test_other_opsets(backend, opset, tmp_path) -> None:
    layers = [ax.Dense(8, "gelu"), ax.Dense(8, ax.LeakyReLU(0.1)), ax.Dense(8, "elu"), ax.Dense(3, "softmax")]
    net = network(backend, layers, "float32")
    path = tmp_path / "net.onnx"
    net.export_onnx(path, opset=opset)
    model = check_model(path)
    assert model.opset_import[0].version == opset
    assert ("Gelu" in {node.op_type for node in model.graph.node}) == (opset >= 20)
    assert_matches(net, path)


def test_bad_opset(tmp_path) -> None:
    net = ax.Network([ax.Dense(2)], input_size=2, backend="numpy").build()
    with pytest.raises(ValueError, match="opset must be between 13"):
        net.export_onnx(tmp_path / "a.onnx", opset=9)
    with pytest.raises(TypeError, match="opset must be an integer"):
        net.export_onnx(tmp_path / "a.onnx", opset="21")
    assert not (tmp_path / "a.onnx").exists()


def test_unbuilt_network_is_refused(tmp_path) -> None:
    net = ax.Network([ax.Dense(2)], backend="numpy")
    with pytest.raises(RuntimeError, match="not built"):
        net.export_onnx(tmp_path / "a.onnx")


def test_a_layer_without_export_rule_is_named(tmp_path) -> None:
    class Twice(ax.Layer):
        def forward(self, x, training=False):
            return 2 * x

    class MyReLU(ax.ReLU):  # a subclass may compute something else: no rule is assumed
        name = "my_relu"

    net = ax.Network([ax.Dense(3), Twice()], input_size=2, backend="numpy").build()
    with pytest.raises(ValueError, match=r"layer 1 \(.*\).*no export rule for Twice"):
        net.export_onnx(tmp_path / "a.onnx")
    net = ax.Network([ax.Dense(3, MyReLU())], input_size=2, backend="numpy").build()
    with pytest.raises(ValueError, match="no export rule for the MyReLU activation"):
        net.export_onnx(tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_missing_onnx_is_a_clear_import_error(monkeypatch, tmp_path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    net = ax.Network([ax.Dense(2)], input_size=2, backend="numpy").build()
    with pytest.raises(ImportError, match=r"pip install 'anyxp\[onnx\]'"):
        net.export_onnx(tmp_path / "a.onnx")


def test_cli_export(backend, tmp_path, capsys) -> None:
    x = np.random.default_rng(0).normal(size=(40, 6))
    y = np.random.default_rng(1).integers(0, 3, size=40)
    net = ax.Network([ax.Dense(10, "gelu"), ax.Dropout(0.2), ax.Dense(3, "softmax")], input_size=6,
                     backend=backend, dtype="float64", seed=0)
    net.fit(x, y, epochs=2, verbose=0)
    saved, exported = tmp_path / "model.npz", tmp_path / "model.onnx"
    net.save(saved)
    assert main(["export", str(saved), str(exported)]) == 0
    assert "model.onnx" in capsys.readouterr().out
    check_model(exported)
    np.testing.assert_allclose(run(session(exported), x), np.asarray(net.predict(x)), rtol=1e-12, atol=1e-12)
    assert main(["export", str(saved), str(exported), "--opset", "17"]) == 0
    assert check_model(exported).opset_import[0].version == 17
    np.testing.assert_allclose(run(session(exported), x), np.asarray(net.predict(x)), rtol=1e-12, atol=1e-12)


def test_cli_export_errors(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path / "none.npz"), str(tmp_path / "m.onnx")]) == 1
    assert "none.npz" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["export", str(tmp_path / "bad.npz"), str(tmp_path / "m.onnx")]) == 1
    assert "bad.npz" in capsys.readouterr().err
    net = ax.Network([ax.Dense(2)], input_size=2, backend="numpy").build()
    net.save(tmp_path / "ok.npz")
    assert main(["export", str(tmp_path / "ok.npz"), str(tmp_path / "missing" / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
