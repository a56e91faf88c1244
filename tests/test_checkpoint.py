"""save / load: round trips across backends, no pickle, clear errors for bad files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import anyxp as ax
from anyxp.backend import backend_problem


def trained(backend, tmp_path=None) -> tuple[ax.Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)
    net = ax.Network([ax.Dense(8, ax.LeakyReLU(0.2)), ax.Dropout(0.1), ax.Dense(3, "softmax")],
                     input_size=5, optimizer=ax.AdamW(lr=1e-2, betas=(0.8, 0.9)), backend=backend,
                     dtype="float64", seed=4, name="saved")
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return net, x, y


@pytest.mark.parametrize("target", ["numpy", "torch", "array_api_strict"])
def test_round_trip_to_every_backend(backend: ax.Backend, target: str, tmp_path) -> None:
    if backend_problem(target):
        pytest.skip(backend_problem(target))
    net, x, y = trained(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = ax.load(path, backend=target)
    assert loaded.backend.name == target and loaded.name == "saved" and loaded.dtype_name == "float64"
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the weights: bit for bit
    if target == backend.name:
        np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    else:  # another library's kernels: the same up to float64 rounding
        np.testing.assert_allclose(loaded.predict(x), net.predict(x), rtol=1e-13, atol=1e-15)
    assert loaded.optimizer.get_config() == net.optimizer.get_config()
    assert loaded.optimizer.steps == net.optimizer.steps
    for key, value in net.optimizer.state_arrays().items():
        np.testing.assert_array_equal(loaded.backend.to_numpy(loaded.optimizer.state_arrays()[key]),
                                      backend.to_numpy(value))
    assert loaded.layers[0].activation.alpha == 0.2 and loaded.layers[1].rate == 0.1
    # training continues identically from the checkpoint
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    if target == backend.name:
        for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-12)


def test_checkpoint_holds_no_pickle(backend: ax.Backend, tmp_path) -> None:
    net, _, _ = trained(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert "anyxp.json.npy" in names
        header = json.loads(np.load(io.BytesIO(zf.read("anyxp.json.npy"))).tobytes())
        for name in names:
            assert np.load(io.BytesIO(zf.read(name)), allow_pickle=False).dtype != object
    assert header["format"] == "anyxp-checkpoint" and header["version"] == 1
    assert header["dtype"] == "float64" and header["layers"][0]["class"] == "Dense"


def _corrupt(path, tmp_path, how: str):
    data = path.read_bytes()
    bad = tmp_path / f"bad-{how}.npz"
    if how == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif how == "foreign":
        np.savez(bad, weights=np.zeros(3))
    elif how == "text":
        bad.write_text("hello, not a checkpoint")
    elif how == "pickle":
        np.savez(bad, **{"anyxp.json": np.array([{"a": 1}], dtype=object)})
    elif how == "wrong-version":
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(arrays["anyxp.json"].tobytes())
        header["version"] = 99
        arrays["anyxp.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(bad, **arrays)
    elif how == "wrong-shape":
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["weight/0"] = arrays["weight/0"][:2]
        np.savez(bad, **arrays)
    elif how == "unknown-layer":
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(arrays["anyxp.json"].tobytes())
        header["layers"][0]["class"] = "os.system"
        arrays["anyxp.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(bad, **arrays)
    return bad


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "not a readable anyxp checkpoint"),
        ("foreign", "not an anyxp checkpoint"),
        ("text", "not a readable anyxp checkpoint"),
        ("pickle", "not a readable anyxp checkpoint"),
        ("wrong-version", "format version 99 is not supported"),
        ("wrong-shape", r"weight 0 .* has shape \(2, 8\), expected \(5, 8\)"),
        ("unknown-layer", "unknown layer type 'os.system'"),
    ],
)
def test_bad_files_get_clear_errors(backend: ax.Backend, tmp_path, how: str, message: str) -> None:
    net, _, _ = trained(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    bad = _corrupt(path, tmp_path, how)
    with pytest.raises(ax.CheckpointError, match=message) as info:
        ax.load(bad, backend=backend)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ax.load(tmp_path / "nope.npz")


def test_failed_save_keeps_the_old_file(backend: ax.Backend, tmp_path, monkeypatch) -> None:
    net, _, _ = trained(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]
