"""What only a GPU can show, on the cupy backend: the real CuPy on a GPU, or the CuPy
stand-in on any machine (``pytest --backend=cupy --cupy-standin``). Skipped elsewhere.

- an epoch's steps make no host sync (``cupyx.allow_synchronize(False)`` around them);
- a checkpoint goes from CuPy to CuPy bit for bit;
- a network on device 1, while device 0 stays current, keeps every array on device 1
  through fit / predict / evaluate / save / load / set_weights / check_gradients / to();
- the backend's fast kernels (``out=`` matmuls, reductions, ufunc optimizer steps) give
  what the pure Array API path gives;
- under ``mpirun -n 2``: NCCL data parallelism matches one process (``nox -s cupy_proxy``
  runs it on the stand-in's NCCL, emulated over MPI).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp import cuda, distributed

# cupyx.allow_synchronize is deprecated in CuPy (it warns on every use) but still the way
# to make a sync raise; the stand-in warns alike.
pytestmark = pytest.mark.filterwarnings("ignore:cupyx.allow_synchronize will be removed:UserWarning")


@pytest.fixture
def gpu(backend: ax.Backend) -> ax.Backend:
    """The session's cupy backend (device 1 where there are two GPUs)."""
    if backend.name != "cupy":
        pytest.skip("needs the cupy backend: a GPU, or pytest --backend=cupy --cupy-standin")
    return backend


@pytest.fixture
def cupy(gpu: ax.Backend) -> Any:
    return gpu.library


def classifier(backend: Any, optimizer: Any = None, dtype: str = "float32", seed: int = 0, **kw: Any) -> ax.Network:
    return ax.Network([ax.Dense(16, "gelu"), ax.Dropout(0.2), ax.Dense(8, "tanh"), ax.Dense(3, "softmax")],
                      input_size=5, optimizer=optimizer or ax.Adam(lr=0.01), backend=backend, dtype=dtype,
                      seed=seed, **kw)


def device_ids(net: ax.Network) -> set[int]:
    """The devices of everything the network holds on the device."""
    arrays = [net._theta, net._grad, *net.optimizer.state_arrays().values()]
    arrays += [p for layer in net.layers for p in layer.parameters()]
    return {int(a.device.id) for a in arrays}


# --------------------------------------------------------------------------- no host sync


class NoSyncInEpochs(ax.Callback):
    """``cupyx.allow_synchronize(False)`` from each epoch's start to its end: any sync
    there raises ``DeviceSynchronized``, except in anyxp's one way to the host,
    ``anyxp.cuda.to_host`` (``.get()``), which the test lets through and counts."""

    def __init__(self, cupyx: Any) -> None:
        self.cupyx, self.context = cupyx, None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.context = self.cupyx.allow_synchronize(False)
        self.context.__enter__()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.on_train_abort()

    def on_train_abort(self) -> None:
        if self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None


@pytest.fixture
def transfers(cupy: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """The shapes of what anyxp copies to the host (allowed, counted)."""
    import cupyx

    seen: list[tuple[int, ...]] = []
    real = cuda.to_host

    def counted(x: Any) -> Any:
        seen.append(tuple(x.shape))
        with cupyx.allow_synchronize(True):
            return real(x)

    monkeypatch.setattr(cuda, "to_host", counted)
    yield seen


OPTIMIZERS = [lambda: ax.SGD(lr=0.1, momentum=0.9, nesterov=True), lambda: ax.Adam(), lambda: ax.AdamW(),
              lambda: ax.RMSprop(momentum=0.5)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=["sgd-nesterov", "adam", "adamw", "rmsprop"])
def test_an_epoch_makes_no_host_sync_but_its_transfers(gpu: ax.Backend, transfers: list[tuple[int, ...]],
                                                      small_classification: Any, optimizer: Any) -> None:
    import cupyx

    x, y = small_classification
    net = classifier(gpu, optimizer())
    net.build()
    history = net.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:30], y[:30]), verbose=0,
                      callbacks=[NoSyncInEpochs(cupyx)])
    assert len(transfers) == 3 * 2, transfers  # each epoch: the training sums, the validation sums
    assert all(len(shape) == 1 and shape[0] <= 4 for shape in transfers), transfers  # a few numbers each
    assert all(np.isfinite(v) for values in history.history.values() for v in values)


def test_the_transfers_are_gets_and_do_not_grow_with_batches(gpu: ax.Backend, small_classification: Any) -> None:
    """Counted by the stand-in: every sync of a whole fit, not only those in the epochs."""
    from conftest import cupy_standin

    standin = cupy_standin()
    if standin is None:
        pytest.skip("counts every sync only on the stand-in")
    x, y = small_classification
    counts = []
    for batch_size in (60, 8):  # 2 and 15 batches per epoch
        net = classifier(gpu)
        net.build()
        standin.reset()
        net.fit(x, y, epochs=2, batch_size=batch_size, validation_data=(x[:30], y[:30]), verbose=0)
        counts.append(list(standin.syncs))
    assert counts[0] == counts[1] == ["get"] * 4, counts  # 2 epochs x (training, validation)


def test_a_training_step_makes_no_host_sync(gpu: ax.Backend, small_classification: Any) -> None:
    import cupyx

    from anyxp.training import _EpochOutputs

    x, y = small_classification
    for optimizer in OPTIMIZERS:
        net = classifier(gpu, optimizer(), metrics=["accuracy"])
        net.build()
        with gpu.activate():
            xb = gpu.asarray(x[:32], dtype=net.dtype)
            tb = gpu.asarray(np.eye(3)[y[:32]], dtype=net.dtype)
            outputs = _EpochOutputs(net, 3 * 32, 3, None, keep_targets=True)
            with cupyx.allow_synchronize(False):
                for b in range(3):  # and the batch stored for the epoch's metrics, as the loop does
                    loss_sum, out = net._forward_backward(xb, tb, None)
                    net.optimizer.step()
                    outputs.add(b, 32 * b, 32 * (b + 1), 32 * b, 32 * (b + 1), loss_sum, out, tb, None)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_from_cupy_to_cupy(gpu: ax.Backend, small_classification: Any, tmp_path: Any) -> None:
    x, y = small_classification
    net = classifier(gpu, dtype="float64")
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = ax.load(path, backend="cupy", device=gpu.device)
    assert loaded.backend == gpu and device_ids(loaded) == {gpu.device.id}
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    mine, theirs = net.optimizer.state_arrays(), loaded.optimizer.state_arrays()
    assert mine.keys() == theirs.keys() and loaded.optimizer.steps == net.optimizer.steps
    for key in mine:
        np.testing.assert_array_equal(gpu.to_numpy(mine[key]), gpu.to_numpy(theirs[key]))
    h1 = net.fit(x, y, epochs=1, batch_size=16, verbose=0)  # both continue alike
    h2 = loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- device 1


def test_a_network_on_device_1_keeps_everything_there(cupy: Any, small_classification: Any, tmp_path: Any) -> None:
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, y = small_classification
    assert cupy.cuda.runtime.getDevice() == 0

    def check(net: ax.Network, what: str) -> None:
        assert cupy.cuda.runtime.getDevice() == 0, f"{what} left device {cupy.cuda.runtime.getDevice()} current"
        assert device_ids(net) == {1}, f"{what}: arrays on devices {device_ids(net)}"

    net = classifier("cupy", device=1, dtype="float64")
    assert net.backend.device.id == 1
    net.build()
    check(net, "build")
    net.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    check(net, "fit")
    out = net.predict(x)
    assert isinstance(out, np.ndarray) and out.shape == (120, 3)  # NumPy in, NumPy out
    with cupy.cuda.Device(1):
        x1 = cupy.asarray(x)
    out1 = net.predict(x1)  # CuPy in, CuPy out, on the input's device
    assert isinstance(out1, cupy.ndarray) and out1.device.id == 1
    np.testing.assert_allclose(out1.get(), out, rtol=1e-12)
    scores = net.evaluate(x, y)
    assert set(scores) == {"loss", "accuracy"}
    check(net, "predict / evaluate")
    net.save(tmp_path / "net.npz")
    loaded = ax.load(tmp_path / "net.npz", backend="cupy", device=1)
    check(loaded, "load")
    loaded.set_weights(net.get_weights())
    check(loaded, "set_weights")
    assert ax.check_gradients(loaded, x[:4], y[:4]) < 1e-6
    check(loaded, "check_gradients")
    loaded.to("numpy")
    assert loaded.backend.name == "numpy"
    loaded.to("cupy", device=1)
    check(loaded, "to('numpy') then to('cupy', device=1)")
    np.testing.assert_allclose(loaded.predict(x), out, rtol=1e-12)


def test_cupy_inputs_on_device_1_are_taken_where_they_are(cupy: Any, small_classification: Any) -> None:
    """CuPy in (on the network's device 1, device 0 current), CuPy out, nothing moved."""
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, y = small_classification
    with cupy.cuda.Device(1):
        xd, yd = cupy.asarray(x), cupy.asarray(y)
    net = classifier("cupy", device=1, dtype="float64")
    net.fit(xd, yd, epochs=1, batch_size=16, validation_data=(xd[:30], yd[:30]), verbose=0)
    assert set(net.evaluate(xd, yd)) == {"loss", "accuracy"}
    classes = net.predict_classes(xd)
    assert isinstance(classes, cupy.ndarray) and classes.device.id == 1 and classes.shape == (120,)
    assert cupy.cuda.runtime.getDevice() == 0 and device_ids(net) == {1}


# --------------------------------------------------------------------------- fast kernels


def test_fast_kernels_match_the_array_api_reference(gpu: ax.Backend) -> None:
    plain = ax.Backend(gpu.name, gpu.library, gpu.device, fast_kernels=False)
    assert gpu.fast_kernels and not plain.fast_kernels
    rng = np.random.default_rng(0)
    xp = gpu.xp
    for dtype in ("float32", "float64"):
        dt = gpu.float_dtype(dtype)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        with gpu.activate():
            a, w = gpu.asarray(rng.normal(size=(33, 17)), dtype=dt), gpu.asarray(rng.normal(size=(17, 9)), dtype=dt)
            bias = gpu.asarray(rng.normal(size=(9,)), dtype=dt)
            results = []
            for variant in (gpu, plain):
                out = xp.empty((33, 9), dtype=dt)
                variant.matmul_into(a, w, out)
                rows = xp.empty((17,), dtype=dt)
                variant.sum_rows_into(a, rows)
                results.append([out, rows, variant.affine(a, w, bias), variant.affine(a, w, None)])
        for fast, reference in zip(*results, strict=True):
            assert fast.dtype == dt and fast.device == gpu.device
            np.testing.assert_allclose(gpu.to_numpy(fast), gpu.to_numpy(reference), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("optimizer", [lambda: ax.SGD(lr=0.1, momentum=0.9), lambda: ax.Adam(lr=0.01),
                                       lambda: ax.AdamW(lr=0.01, weight_decay=0.1)], ids=["sgd", "adam", "adamw"])
def test_fast_kernels_train_like_the_reference(gpu: ax.Backend, small_classification: Any, optimizer: Any) -> None:
    x, y = small_classification
    plain = ax.Backend(gpu.name, gpu.library, gpu.device, fast_kernels=False)
    results = []
    for variant in (gpu, plain):
        net = classifier(variant, optimizer(), dtype="float64", seed=1)
        history = net.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
        results.append((net.get_weights(), history.history))
    (w_fast, h_fast), (w_plain, h_plain) = results
    for a, b in zip(w_fast, w_plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for key in h_fast:
        np.testing.assert_allclose(h_fast[key], h_plain[key], rtol=1e-12)


# --------------------------------------------------------------------------- the probe


def test_the_probe_runs_its_training_step_on_this_cupy(cupy: Any) -> None:
    assert cuda.training_problem(cupy) is None
    assert cupy.cuda.runtime.getDevice() == 0  # the probe leaves the current device alone
    missing = cupy.cuda.runtime.getDeviceCount()
    with pytest.raises(ax.BackendUnavailableError, match=f"CUDA device {missing} does not exist"):
        ax.get_backend("cupy", device=missing)


# --------------------------------------------------------------------------- NCCL (mpirun -n 2)


def world_size() -> int:
    try:
        from mpi4py import MPI
    except ImportError:
        return 1
    return MPI.COMM_WORLD.Get_size()


needs_ranks = pytest.mark.skipif(world_size() < 2, reason="needs mpirun -n 2 (nox -s cupy_proxy on the stand-in)")


@needs_ranks
def test_without_nccl_every_rank_says_so(gpu: ax.Backend, small_classification: Any) -> None:
    from conftest import cupy_standin

    standin = cupy_standin()
    if standin is None:
        pytest.skip("NCCL is made missing only on the stand-in")
    x, y = small_classification
    comm = distributed.init()
    net = classifier("cupy")
    with standin.without_nccl(), pytest.raises(distributed.DistributedMismatchError, match="NCCL is not available"):
        net.fit(x, y, epochs=1, batch_size=32, verbose=0, comm=comm)


@needs_ranks
def test_nccl_refuses_two_ranks_on_one_gpu(cupy: Any) -> None:
    """NCCL's own check, below anyxp's (real NCCL refuses it the same way)."""
    from cupy.cuda import nccl
    from mpi4py import MPI

    uid = MPI.COMM_WORLD.bcast(nccl.get_unique_id() if MPI.COMM_WORLD.Get_rank() == 0 else None, root=0)
    with cupy.cuda.Device(0), pytest.raises(nccl.NcclError, match="Duplicate GPU detected"):
        nccl.NcclCommunicator(MPI.COMM_WORLD.Get_size(), uid, MPI.COMM_WORLD.Get_rank())

