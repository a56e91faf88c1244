"""save / load: round trips across backends, no pickle, clear errors for bad files."""

from __future__ import annotations

import io
import json
import os
import stat
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
        ("pickle", r"anyxp\.json: holds Python objects \(pickle\), which are never loaded"),
        ("wrong-version", "format version 99 is not supported"),
        ("wrong-shape", r"weight/0: has shape \(2, 8\), expected \(5, 8\)"),
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
    assert str(info.value).startswith(f"{bad}: ")


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ax.load(tmp_path / "nope.npz")


def _disk_full(*args, **kwargs):
    raise OSError("disk full")


def _fails_half_way(file, *args, **kwargs):
    file.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("disk full")


def _interrupted(file, *args, **kwargs):
    file.write(b"PK\x03\x04")
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "name", "failure"),
    [
        (np, "savez", _disk_full),  # before writing anything
        (np, "savez", _fails_half_way),
        (np, "savez", _interrupted),
        (os, "fsync", _disk_full),  # the new file written, not yet on disk
        (os, "replace", _disk_full),  # the new file complete, the rename fails
    ],
    ids=["nothing-written", "half-written", "interrupted", "fsync", "rename"],
)
def test_failed_save_keeps_the_old_file(backend: ax.Backend, tmp_path, monkeypatch, module, name, failure) -> None:
    net, _, _ = trained(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(module, name, failure)
    with pytest.raises((OSError, KeyboardInterrupt)):
        net.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert ax.load(path, backend=backend).optimizer.steps == net.optimizer.steps


def test_save_writes_through_a_symlink(backend: ax.Backend, tmp_path) -> None:
    net, x, _ = trained(backend)
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target = real_dir / "net.npz"
    target.write_bytes(b"an older checkpoint")
    link = link_dir / "latest.npz"
    link.symlink_to(target)
    chain = link_dir / "chain.npz"
    chain.symlink_to(link)
    net.save(chain)
    assert chain.is_symlink() and link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in real_dir.iterdir()) == ["net.npz"]  # the temporary file was beside the target
    assert sorted(p.name for p in link_dir.iterdir()) == ["chain.npz", "latest.npz"]
    np.testing.assert_array_equal(ax.load(target, backend=backend).predict(x), net.predict(x))
    dangling = link_dir / "new.npz"
    dangling.symlink_to(real_dir / "new-target.npz")
    net.save(dangling)  # as open(path, "w") would: the target is created
    assert dangling.is_symlink() and (real_dir / "new-target.npz").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_respect_the_umask(backend: ax.Backend, tmp_path, umask: int) -> None:
    net, _, _ = trained(backend)
    old = os.umask(umask)
    try:
        net.save(tmp_path / "new.npz")
        existing = tmp_path / "existing.npz"
        existing.write_bytes(b"")
        os.chmod(existing, 0o640)
        net.save(existing)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.npz").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640  # a replaced file keeps its mode


def test_numpy_scalars_in_the_header_save_and_load(backend: ax.Backend, tmp_path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 2, size=30)
    layers = [ax.Dense(np.int64(6), ax.LeakyReLU(np.float32(0.1))), ax.Dropout(np.float32(0.2), seed=np.int64(3)),
              ax.Dense(2, "softmax")]
    net = ax.Network(layers, input_size=4, optimizer=ax.Adam(lr=1e-2), backend=backend, seed=np.int64(7))
    net.fit(x, y, epochs=1, batch_size=10, verbose=0)
    net.optimizer.lr = np.float32(0.01)  # as a user's schedule might set it
    net.optimizer.betas = (np.float32(0.9), np.float64(0.99))
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = ax.load(path, backend=backend)
    assert loaded.seed == 7 and type(loaded.seed) is int
    assert loaded.optimizer.lr == float(np.float32(0.01)) and loaded.optimizer.betas == (float(np.float32(0.9)), 0.99)
    assert loaded.layers[1].seed == 3
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
