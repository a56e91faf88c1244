"""Pickling and copying a Network: the payload is the checkpoint format, nothing else."""

from __future__ import annotations

import copy
import io
import json
import pickle
import pickletools
import warnings
import zipfile

import numpy as np
import pytest

import anyxp as ax
from anyxp import checkpoint
from anyxp.backend import backend_problem


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)


def network(backend: ax.Backend, dtype: str = "float32", input_size: int | None = 5) -> ax.Network:
    return ax.Network(
        [ax.Dense(8, ax.LeakyReLU(0.2)), ax.Dropout(0.25), ax.Dense(6, "tanh"), ax.Dropout(0.1),
         ax.Dense(3, "softmax")],
        input_size=input_size, optimizer=ax.Adam(lr=1e-2), backend=backend, dtype=dtype, seed=7, name="pickled",
    )


def trained(backend: ax.Backend, dtype: str = "float32") -> ax.Network:
    x, y = data()
    net = network(backend, dtype)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return net


def via_pickle(net: ax.Network) -> ax.Network:
    return pickle.loads(pickle.dumps(net))


def via_joblib(net: ax.Network, tmp_path) -> ax.Network:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "net.joblib"
    joblib.dump(net, path)
    return joblib.load(path)


COPIERS = {
    "pickle": lambda net, tmp_path: via_pickle(net),
    "deepcopy": lambda net, tmp_path: copy.deepcopy(net),
    "copy": lambda net, tmp_path: copy.copy(net),
    "joblib": via_joblib,
}


def assert_same_weights(a: ax.Network, b: ax.Network) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert wa.dtype == wb.dtype
        np.testing.assert_array_equal(wa, wb)


def assert_same_state(a: ax.Network, b: ax.Network) -> None:
    assert_same_weights(a, b)
    assert a.optimizer.steps == b.optimizer.steps
    sa, sb = a.optimizer.state_arrays(), b.optimizer.state_arrays()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(a.backend.to_numpy(sa[key]), b.backend.to_numpy(sb[key]))
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


@pytest.mark.parametrize("how", list(COPIERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_built_network_round_trips_and_trains_on_identically(backend, how, dtype, tmp_path) -> None:
    x, y = data()
    net = trained(backend, dtype)
    clone = COPIERS[how](net, tmp_path)
    assert clone is not net and clone.built
    assert clone.backend.name == backend.name
    assert str(clone.backend.device) == str(backend.device)
    assert clone.name == "pickled" and clone.dtype_name == dtype and clone.seed == net.seed
    assert [repr(layer) for layer in clone.layers] == [repr(layer) for layer in net.layers]
    assert_same_state(net, clone)
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))  # bit for bit
    # the copy is independent, and continues training exactly as the original does
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert clone.optimizer.steps != net.optimizer.steps
    clone.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert_same_state(net, clone)
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))


@pytest.mark.parametrize("how", list(COPIERS))
def test_unbuilt_network_round_trips(backend, how, tmp_path) -> None:
    x, y = data()
    net = network(backend, input_size=None)  # knowing its input size, it would be built at construction
    clone = COPIERS[how](net, tmp_path)
    assert not clone.built and clone.input_size is None
    assert [repr(layer) for layer in clone.layers] == [repr(layer) for layer in net.layers]
    assert clone.backend.name == backend.name and str(clone.backend.device) == str(backend.device)
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    clone.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert_same_state(net, clone)
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))


def test_unbuilt_network_without_input_size_or_layers(backend) -> None:
    x, y = data()
    net = ax.Network([ax.Dense(4, "relu"), ax.Dense(3, "softmax")], backend=backend, seed=3)
    clone = via_pickle(net)
    assert clone.input_size is None and not clone.built
    net.fit(x, y, epochs=1, verbose=0)
    clone.fit(x, y, epochs=1, verbose=0)
    assert_same_state(net, clone)
    empty = via_pickle(ax.Network(backend=backend, seed=1))
    assert empty.layers == [] and empty.seed == 1 and empty.backend.name == backend.name


def test_the_payload_is_the_checkpoint_format(backend, tmp_path) -> None:
    net = trained(backend)
    reconstructor, (payload, name, _) = net.__reduce__()
    assert reconstructor is checkpoint.from_pickle
    assert name == backend.name
    net.save(tmp_path / "net.npz")
    # the same members with the same contents as the file save writes
    saved, dumped = np.load(tmp_path / "net.npz"), np.load(io.BytesIO(payload))
    assert sorted(saved.files) == sorted(dumped.files)
    for key in saved.files:
        np.testing.assert_array_equal(saved[key], dumped[key])
    # the pickle stream names one global (the reconstructor) and holds only bytes and strings
    globals_ = [arg for op, arg, _ in pickletools.genops(pickle.dumps(net, protocol=3)) if op.name == "GLOBAL"]
    assert globals_ == ["anyxp.checkpoint from_pickle"]
    for protocol in range(3, pickle.HIGHEST_PROTOCOL + 1):
        ops = [op.name for op, _, _ in pickletools.genops(pickle.dumps(net, protocol=protocol))]
        assert ops.count("REDUCE") == 1  # the reconstructor's one call
        assert not set(ops) & {"BUILD", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ"}


def test_the_history_is_copied_by_deepcopy(backend) -> None:
    net = trained(backend)
    clone = copy.deepcopy(net)
    assert clone.history is not net.history
    assert clone.history.history == net.history.history


def test_in_memory_dump_and_load(backend) -> None:
    net = trained(backend, "float64")
    loaded = checkpoint.loads(checkpoint.dumps(net), backend=backend)
    assert_same_state(net, loaded)
    with pytest.raises(TypeError, match="takes bytes"):
        checkpoint.loads("not bytes")


@pytest.mark.parametrize("where", ["start", "middle", "end", "truncated", "empty"])
def test_corrupted_payload_raises_checkpoint_error(backend, where) -> None:
    net = trained(backend)
    _, (payload, _, _) = net.__reduce__()
    bad = bytearray(payload)
    if where == "truncated":
        bad = bad[: len(bad) // 2]
    elif where == "empty":
        bad = bytearray()
    else:
        at = {"start": 40, "middle": len(bad) // 2, "end": len(bad) - 30}[where]
        bad[at : at + 8] = bytes(b ^ 0xA5 for b in bad[at : at + 8])
    stream = pickle.dumps(net)
    assert stream.count(payload) == 1
    if len(bad) == len(payload):  # through pickle itself: the same stream, bytes corrupted
        with pytest.raises(ax.CheckpointError):
            pickle.loads(stream.replace(payload, bytes(bad)))
    with pytest.raises(ax.CheckpointError):
        checkpoint.from_pickle(bytes(bad), backend.name, checkpoint.device_spec(backend))


def test_bad_backend_arguments_are_refused() -> None:
    payload = checkpoint.dumps(ax.Network([ax.Dense(2)], input_size=2, backend="numpy"))
    with pytest.raises(ax.CheckpointError, match="not names"):
        checkpoint.from_pickle(payload, 3, None)
    with pytest.raises(ValueError, match="unknown backend"):
        checkpoint.from_pickle(payload, "nonesuch", None)


def test_unbuilt_header_is_validated_strictly() -> None:
    net = ax.Network([ax.Dense(2)], backend="numpy", seed=0)
    payload = checkpoint.dumps(net)

    def with_header(change) -> bytes:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        header = json.loads(np.load(io.BytesIO(archive.read("anyxp.json.npy"))).tobytes())
        change(header)
        out = io.BytesIO()
        np.savez(out, **{"anyxp.json": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)})
        return out.getvalue()

    assert not checkpoint.loads(with_header(lambda h: None)).built
    with pytest.raises(ax.CheckpointError, match=r"optimizer\.steps"):
        checkpoint.loads(with_header(lambda h: h["optimizer"].update(steps=3)))
    with pytest.raises(ax.CheckpointError, match="built"):
        checkpoint.loads(with_header(lambda h: h.update(built="no")))
    with pytest.raises(ax.CheckpointError, match="input_size"):  # null only when not built
        checkpoint.loads(with_header(lambda h: h.pop("built")))
    with pytest.raises(ax.CheckpointError, match="missing"):  # a built network's arrays
        checkpoint.loads(with_header(lambda h: h.update(built=True, input_size=2)))
    # an unbuilt payload holding arrays is refused
    extra = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(payload)) as src:
        header = np.load(io.BytesIO(src.read("anyxp.json.npy")))
    np.savez(extra, **{"anyxp.json": header, "weight/0": np.zeros((2, 2), np.float32)})
    with pytest.raises(ax.CheckpointError, match="unexpected"):
        checkpoint.loads(extra.getvalue())


def test_custom_layers_cannot_be_pickled() -> None:
    class Twice(ax.Layer):
        def forward(self, x, training=False):
            return 2 * x

    net = ax.Network([ax.Dense(2), Twice()], input_size=2, backend="numpy")
    with pytest.raises(TypeError, match="Twice"):
        pickle.dumps(net)


def test_a_cupy_payload_unpickles_on_a_cpu_machine(backend, monkeypatch) -> None:
    net = trained(backend)
    x, _ = data()
    monkeypatch.setattr(ax.backend, "_problem_cache", {"cupy": "simulated: no GPU"})
    monkeypatch.setattr(ax.backend, "_fallback_warned", False)
    monkeypatch.delenv("ANYXP_STRICT_BACKEND", raising=False)
    _, (payload, _, _) = net.__reduce__()
    with pytest.warns(ax.BackendFallbackWarning, match="simulated: no GPU"):
        clone = checkpoint.from_pickle(payload, "cupy", "cuda:1")
    assert clone.backend.name == "numpy"
    assert_same_weights(net, clone)
    np.testing.assert_allclose(clone.predict(x), np.asarray(net.backend.to_numpy(net.predict(x))), rtol=1e-6)


def test_a_missing_device_falls_back_to_the_default(monkeypatch) -> None:
    if backend_problem("torch"):
        pytest.skip(backend_problem("torch"))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: cuda:0 exists")
    net = ax.Network([ax.Dense(3)], input_size=2, backend="torch", seed=0).build()
    _, (payload, _, _) = net.__reduce__()
    with pytest.warns(ax.BackendFallbackWarning, match="cuda:0"):
        clone = checkpoint.from_pickle(payload, "torch", "cuda:0")
    assert clone.backend.name == "torch" and str(clone.backend.device) == "cpu"
    assert_same_weights(net, clone)


def test_pickling_warns_of_nothing(backend) -> None:
    net = trained(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clone = via_pickle(net)
    assert_same_weights(net, clone)
