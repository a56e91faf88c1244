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
