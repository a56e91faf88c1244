"""The counter-based generator behind Dropout (anyxp.random): the same bits as an
independent NumPy reference and on every backend, sound statistics, and masks that make
training reproducible (across backends, through divergence replay, save/load and shards)
with no generator and no host sync."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_native, count_host_syncs

import anyxp as ax
from anyxp import random as axr
from anyxp.layers import bind_dropout

M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15


# --------------------------------------------------------------------------- reference


def splitmix64(state: int) -> int:
    """SplitMix64's output for ``state`` (Steele, Lea & Flood; Vigna's splitmix64.c)."""
    z = (state + GOLDEN) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def chain(*words: int) -> int:
    key = 0
    for w in words:
        key = splitmix64(key ^ (w % 2**64))
    return key


def lowbias32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 in plain uint64 arithmetic, reduced to 32 bits after each product."""
    m = np.uint64(M32)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & m
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & m
    return x ^ (x >> np.uint64(16))


def reference_bits(shape: tuple[int, ...], stream: int, counter: int, row_offset: int = 0) -> np.ndarray:
    key = chain(stream, counter)
    k0, k1 = np.uint64(key & M32), np.uint64(key >> 32)
    row = int(np.prod(shape[1:]))
    index = np.arange(row_offset * row, (row_offset + shape[0]) * row, dtype=np.uint64).reshape(shape)
    return lowbias32(lowbias32(index ^ k0) ^ k1)


def reference_mask(shape: tuple[int, ...], rate: float, network_seed: int, position: int, counter: int) -> np.ndarray:
    bits = reference_bits(shape, chain(network_seed, 0, position), counter)
    return np.where(bits >= np.uint64(round(rate * 2**32)), 1.0 / (1.0 - rate), 0.0)


# --------------------------------------------------------------------------- helpers


def dropout(backend: ax.Backend, rate: float, dtype: str = "float64", *, seed: int | None = None,
            network_seed: int = 0, position: int = 1) -> ax.Dropout:
    layer = ax.Dropout(rate, seed=seed)
    layer.build(4, backend, backend.float_dtype(dtype), np.random.default_rng(0))
    layer.bind_stream(network_seed, position)
    return layer


def bits_on(backend: ax.Backend, shape: tuple[int, ...], stream: int, counter: int, offset: int = 0) -> np.ndarray:
    index = axr.element_index(backend.xp, shape, backend.device, offset)
    return backend.to_numpy(axr.random_bits(index, axr.step_key(stream, counter))).astype(np.uint64)


def keeps(backend: ax.Backend, layer: ax.Dropout, shape: tuple[int, ...], counter: int) -> np.ndarray:
    return backend.to_numpy(layer.mask(shape, counter)) != 0


def dropout_net(backend: ax.Backend, dtype: str = "float64", rate: float = 0.3, seed: int = 5,
                optimizer: ax.Optimizer | None = None) -> ax.Network:
    return ax.Network([ax.Dense(16, "gelu"), ax.Dropout(rate), ax.Dense(3, "softmax")], input_size=5,
                      optimizer=optimizer or ax.Adam(lr=1e-2), backend=backend, dtype=dtype, seed=seed)


def assert_same_weights(a: ax.Network, b: ax.Network, rtol: float = 1e-9) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wb, wa, rtol=rtol, atol=rtol * 1e-3)


# --------------------------------------------------------------------------- the bits


def test_key_derivation_is_splitmix64() -> None:
    """Known answers of SplitMix64 from state 1234567 (Vigna's splitmix64.c)."""
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423,
                4593380528125082431, 16408922859458223821]
    assert [axr.derive_key(1234567 + k * GOLDEN) for k in range(5)] == expected
    assert [splitmix64(1234567 + k * GOLDEN) for k in range(5)] == expected
    assert axr.derive_key(3, -1, 2**70 + 5) == chain(3, -1, 2**70 + 5)
    assert axr.step_key(77, 9) == (chain(77, 9) & M32, chain(77, 9) >> 32)


@pytest.mark.on_device
@pytest.mark.parametrize(("shape", "stream", "counter", "offset"), [
    ((1, 1), 0, 0, 0), ((7, 5), 12345, 3, 0), ((32, 33), 2**64 - 1, 2**40, 0), ((5, 3), 99, 1, 11), ((300,), 7, 2, 0),
])
def test_bits_match_a_numpy_reference(backend: ax.Backend, shape, stream: int, counter: int, offset: int) -> None:
    got = bits_on(backend, shape, stream, counter, offset)
    assert got.shape == shape and got.max() < 2**32
    np.testing.assert_array_equal(got, reference_bits(shape, stream, counter, offset))


@pytest.mark.on_device
def test_mix32_is_a_bijection_with_full_avalanche(backend: ax.Backend) -> None:
    xp = backend.xp
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, size=4096, dtype=np.uint64)
    x[:3] = [0, 1, M32]
    out = backend.to_numpy(axr.mix32(xp.asarray(x.astype(np.int64), device=backend.device))).astype(np.uint64)
    np.testing.assert_array_equal(out, lowbias32(x))
    assert len(np.unique(out)) == len(np.unique(x))
    flipped = backend.to_numpy(axr.mix32(xp.asarray((x ^ np.uint64(1)).astype(np.int64), device=backend.device)))
    changed = np.unpackbits((out ^ flipped.astype(np.uint64)).astype(">u4").view(np.uint8)).mean()
    assert abs(changed - 0.5) < 0.01  # one input bit flips half of the output bits


@pytest.mark.on_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_masks_match_the_reference_and_numpy(backend: ax.Backend, rate: float, dtype: str) -> None:
    numpy = ax.get_backend("numpy")
    for shape, counter in [((16, 8), 0), ((5, 13), 1), ((64, 3), 123456)]:
        expected = reference_mask(shape, rate, 0, 1, counter)
        mine = backend.to_numpy(dropout(backend, rate, dtype).mask(shape, counter))
        theirs = numpy.to_numpy(dropout(numpy, rate, dtype).mask(shape, counter))
        np.testing.assert_array_equal(mine, expected.astype(dtype))
        np.testing.assert_array_equal(mine, theirs)


# --------------------------------------------------------------------------- statistics


@pytest.mark.on_device
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_fraction_is_binomial(backend: ax.Backend, rate: float) -> None:
    layer = dropout(backend, rate)
    n = 128 * 64
    for counter in range(3):
        kept = keeps(backend, layer, (128, 64), counter).sum()
        expected, sd = n * (1 - rate), np.sqrt(n * rate * (1 - rate))
        assert abs(kept - expected) < 5 * sd, (counter, kept, expected)


def _assert_uncorrelated(a: np.ndarray, b: np.ndarray) -> None:
    assert not np.array_equal(a, b)
    r = np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]
    assert abs(r) < 5 / np.sqrt(a.size), r


@pytest.mark.on_device
def test_masks_are_uncorrelated_across_steps_layers_and_elements(backend: ax.Backend) -> None:
    shape = (128, 64)
    first, second = dropout(backend, 0.5, position=1), dropout(backend, 0.5, position=3)
    step0, step1 = keeps(backend, first, shape, 0), keeps(backend, first, shape, 1)
    _assert_uncorrelated(step0, step1)  # consecutive counters
    _assert_uncorrelated(step0, keeps(backend, second, shape, 0))  # another layer, same step
    _assert_uncorrelated(step0, keeps(backend, dropout(backend, 0.5, network_seed=1), shape, 0))  # another net
    _assert_uncorrelated(step0[:, :-1], step0[:, 1:])  # neighbouring elements
    _assert_uncorrelated(step0[:-1, :], step0[1:, :])  # neighbouring rows
    own = keeps(backend, dropout(backend, 0.5, seed=7, position=1), shape, 0)
    np.testing.assert_array_equal(own, keeps(backend, dropout(backend, 0.5, seed=7, position=4), shape, 0))
    _assert_uncorrelated(own, keeps(backend, dropout(backend, 0.5, seed=8, position=1), shape, 0))


def _chi_square(values: np.ndarray, buckets: int) -> float:
    counts = np.bincount(values, minlength=buckets)
    expected = values.size / buckets
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.on_device
def test_bits_are_uniform(backend: ax.Backend) -> None:
    """Chi-square over 16 buckets (dof 15: 99.99% below 44) of the high, middle and low
    nibbles, and of pairs of neighbouring values (dof 255: 99.99% below 347)."""
    for stream, counter in [(0, 0), (1, 0), (0, 1), (2**63, 10**6)]:
        bits = bits_on(backend, (256, 256), stream, counter).ravel()
        for shift in (28, 14, 0):
            chi2 = _chi_square(((bits >> np.uint64(shift)) & np.uint64(15)).astype(np.int64), 16)
            assert 1.0 < chi2 < 44.0, (stream, counter, shift, chi2)
        top = (bits >> np.uint64(28)).astype(np.int64)
        pairs = top[0::2] * 16 + top[1::2]
        assert 150.0 < _chi_square(pairs, 256) < 347.0


def test_broken_generators_fail_the_uniformity_check() -> None:
    """The check above has teeth: the bare index fails it, and so does a multiplicative
    hash of the index (too even alone, far from even in pairs)."""
    index = np.arange(256 * 256, dtype=np.uint64)
    assert _chi_square((index >> np.uint64(28)).astype(np.int64), 16) > 44.0
    weak = (index * np.uint64(0x9E3779B1)) & np.uint64(M32)
    top = (weak >> np.uint64(28)).astype(np.int64)
    assert _chi_square(top, 16) < 1.0
    assert _chi_square(top[0::2] * 16 + top[1::2], 256) > 347.0


# --------------------------------------------------------------------------- the layer


@pytest.mark.on_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mask_dtype_and_device(backend: ax.Backend, dtype: str) -> None:
    layer = dropout(backend, 0.4, dtype)
    x = backend.asarray(np.ones((6, 4)), dtype=backend.float_dtype(dtype))
    y = layer.forward(x, training=True)
    assert_native(backend, y, dtype)
    assert_native(backend, layer.mask((6, 4)), dtype)
    assert_native(backend, layer.backward(x), dtype)
    assert set(np.unique(backend.to_numpy(y))) <= {0.0, np.float32(1 / 0.6) if dtype == "float32" else 1 / 0.6}
    assert layer.forward(x, training=False) is x


@pytest.mark.on_device
def test_a_shard_gets_its_rows_of_the_batch_mask(backend: ax.Backend) -> None:
    layer = dropout(backend, 0.5)
    whole = backend.to_numpy(layer.mask((10, 4), 3))
    layer.row_offset = 6
    np.testing.assert_array_equal(backend.to_numpy(layer.mask((4, 4), 3)), whole[6:])


@pytest.mark.on_device
def test_masks_follow_the_optimizer_step(backend: ax.Backend) -> None:
    net = dropout_net(backend)
    net.build()
    layer = net.layers[1]
    bind_dropout(net.layers, net.seed, net.optimizer)
    x = backend.asarray(np.ones((8, 16)), dtype=net.dtype)
    first = backend.to_numpy(layer.forward(x, training=True))
    np.testing.assert_array_equal(backend.to_numpy(layer.forward(x, training=True)), first)  # no hidden state
    net.optimizer.steps += 1
    assert not np.array_equal(backend.to_numpy(layer.forward(x, training=True)), first)
    np.testing.assert_array_equal(first, reference_mask((8, 16), 0.3, net.seed, 1, 0))


# --------------------------------------------------------------------------- training


def test_training_with_dropout_matches_numpy(backend: ax.Backend, small_classification) -> None:
    x, y = small_classification
    runs = []
    for b in (ax.get_backend("numpy"), backend):
        net = dropout_net(b)
        history = net.fit(x, y, epochs=4, batch_size=16, shuffle=True, verbose=0)
        runs.append((net, history.history["loss"]))
    (reference, ref_loss), (mine, my_loss) = runs
    assert_same_weights(reference, mine, 1e-9)
    np.testing.assert_allclose(my_loss, ref_loss, rtol=1e-9)
    plain = dropout_net(ax.get_backend("numpy"), rate=0.0)  # the masks did act
    plain.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert not np.allclose(plain.get_weights()[0], reference.get_weights()[0])


def _forbid_generators(monkeypatch: pytest.MonkeyPatch, backend: ax.Backend, host_too: bool) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a random generator was created")

    monkeypatch.setattr(ax.Backend, "uniform_sampler", refuse, raising=False)
    if backend.name == "cupy":
        monkeypatch.setattr(backend.library.random, "default_rng", refuse)
    if host_too:
        monkeypatch.setattr(np.random, "Generator", refuse)
        monkeypatch.setattr(np.random, "default_rng", refuse)
    try:
        import torch

        monkeypatch.setattr(torch, "Generator", refuse)
    except ImportError:
        pass


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_check_gradients_with_dropout_creates_no_generator(backend: ax.Backend, dtype: str, monkeypatch) -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    net = ax.Network([ax.Dense(6, "gelu"), ax.Dropout(0.5), ax.Dense(3, "linear")], input_size=4, loss="mse",
                     backend=backend, dtype=dtype, seed=0)
    net.build()
    with monkeypatch.context() as m:
        # a float32 network is checked on a float64 copy, whose weights come from a host generator
        _forbid_generators(m, backend, host_too=dtype == "float64")
        first = ax.check_gradients(net, x, y)
        again = ax.check_gradients(net, x, y)
    assert first < 1e-6
    assert again == first  # the same masks in every evaluation, every call


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_replay_reproduces_the_dropout_masks(backend: ax.Backend) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = x @ rng.normal(size=(3, 1))
    net = ax.Network([ax.Dense(8, "linear"), ax.Dropout(0.25), ax.Dense(1)], input_size=3, loss="mse",
                     optimizer=ax.SGD(lr=2.0), backend=backend, dtype="float64", seed=0)
    seen: list[list[np.ndarray]] = []

    class Recorder(ax.Callback):
        def on_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
            seen.append(self.network.get_weights())

    with pytest.raises(ax.TrainingDivergedError, match=r"epoch \d+/100, batch \d+/8") as info:
        net.fit(x, y, epochs=100, batch_size=8, callbacks=[Recorder()], verbose=0)
    err = info.value
    failing = seen[(err.epoch - 1) * 8 + err.batch - 1]  # the replay stopped where the first pass was
    for w, expected in zip(net.get_weights(), failing, strict=True):
        np.testing.assert_array_equal(w, expected)


def test_save_load_continues_with_the_same_masks(backend: ax.Backend, small_classification, tmp_path) -> None:
    x, y = small_classification
    straight = dropout_net(backend, optimizer=ax.SGD(lr=0.1, momentum=0.9))
    straight.fit(x, y, epochs=3, batch_size=16, verbose=0)
    resumed = dropout_net(backend, optimizer=ax.SGD(lr=0.1, momentum=0.9))
    resumed.fit(x, y, epochs=2, batch_size=16, verbose=0)
    resumed.save(tmp_path / "net.npz")
    loaded = ax.load(tmp_path / "net.npz", backend=backend)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(straight.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("size", [2, 3])
def test_ranks_with_dropout_match_one_process(backend: ax.Backend, size: int) -> None:
    from test_distributed import ThreadCommunicator, run_ranks

    rng = np.random.default_rng(2)
    x = rng.normal(size=(98, 5))
    y = np.argmax(x @ rng.normal(size=(5, 3)), axis=1)
    single = dropout_net(backend, optimizer=ax.SGD(lr=0.1, momentum=0.9))
    single.fit(x, y, epochs=2, batch_size=16, verbose=0)

    def work(comm: ThreadCommunicator):  # type: ignore[no-untyped-def]
        net = dropout_net(backend, optimizer=ax.SGD(lr=0.1, momentum=0.9))
        net.fit(x, y, epochs=2, batch_size=16, verbose=0, comm=comm)
        return net

    for net in run_ranks(size, work):
        assert_same_weights(single, net, 1e-10)


def test_dropout_training_makes_no_host_sync(small_classification) -> None:
    pytest.importorskip("array_api_strict")
    from conftest import make_backend

    strict = make_backend("array_api_strict")
    x, y = small_classification
    net = dropout_net(strict, dtype="float32")
    net.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)  # binds the masks to the optimizer
    xb = strict.asarray(x[:32], dtype=net.dtype)
    tb = strict.asarray(np.eye(3)[y[:32]], dtype=net.dtype)
    with count_host_syncs() as syncs:
        for _ in range(3):
            net._forward_backward(xb, tb, None)
            net.optimizer.step()
    assert syncs == []
    counts = []
    for rate in (0.0, 0.3):  # and a whole fit syncs as often as without dropout
        net = dropout_net(strict, dtype="float32", rate=rate)
        with count_host_syncs() as syncs:
            net.fit(x, y, epochs=2, batch_size=8, verbose=0)
        counts.append(len(syncs))
    assert counts[0] == counts[1], counts
