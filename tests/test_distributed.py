"""Data-parallel training logic, on every backend, with an in-process communicator:
ranks are threads, collectives meet at a barrier. (The MPI transport itself is tested
under mpirun in tests/mpi, by the ``distributed`` nox session.)"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

import anyxp as ax
from anyxp import distributed
from anyxp.distributed import Communicator, DistributedMismatchError, disagreement, shard


class ThreadGroup:
    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list = [None] * size


class ThreadCommunicator(Communicator):
    """Rank ``rank`` of a group of threads; sums in rank order, so every rank gets
    bit-identical results, as MPI's deterministic reductions give."""

    def __init__(self, group: ThreadGroup, rank: int) -> None:
        self.group, self.rank, self.size = group, rank, group.size
        self.backend: ax.Backend | None = None
        self.calls = 0

    def bind(self, backend: ax.Backend) -> Communicator:
        self.backend = backend
        return self

    def _exchange(self, value: np.ndarray) -> list[np.ndarray]:
        self.group.slots[self.rank] = value
        self.group.barrier.wait()
        values = list(self.group.slots)
        self.group.barrier.wait()
        return values

    def allreduce_sum_(self, buffer) -> None:  # type: ignore[no-untyped-def]
        self.calls += 1
        values = self._exchange(np.array(self.backend.to_numpy(buffer)))
        total = values[0].copy()
        for v in values[1:]:
            total += v
        buffer[...] = self.backend.asarray(total, dtype=buffer.dtype)

    def broadcast_(self, buffer, root: int = 0) -> None:  # type: ignore[no-untyped-def]
        values = self._exchange(np.array(self.backend.to_numpy(buffer)))
        buffer[...] = self.backend.asarray(values[root], dtype=buffer.dtype)

    def allreduce_floats(self, values: list[float]) -> list[float]:
        return [float(v) for v in np.sum(self._exchange(np.asarray(values, dtype=np.float64)), axis=0)]

    def allgather(self, value):  # type: ignore[no-untyped-def]
        # thread ranks share one GPU by design (an in-process double): not a misassignment
        return self._exchange({**value, "_gpu": None})


def run_ranks(size: int, work) -> list:  # type: ignore[no-untyped-def]
    group = ThreadGroup(size)
    results: list = [None] * size
    errors: list = []

    def target(rank: int) -> None:
        try:
            results[rank] = work(ThreadCommunicator(group, rank))
        except BaseException as exc:  # surface a rank's failure in the test
            errors.append(exc)
            group.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def make_net(backend: ax.Backend, optimizer: ax.Optimizer) -> ax.Network:
    return ax.Network([ax.Dense(12, "tanh"), ax.Dense(3, "softmax")], input_size=5, optimizer=optimizer,
                      backend=backend, dtype="float64", seed=11)


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 5))
    return x, np.argmax(x @ rng.normal(size=(5, 3)), axis=1)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("optimizer", [lambda: ax.SGD(lr=0.1, momentum=0.9), lambda: ax.Adam(lr=0.01)],
                         ids=["sgd-momentum", "adam"])
def test_ranks_match_one_process_with_the_same_global_batch(backend: ax.Backend, size: int, optimizer) -> None:
    """98 samples, global batch 16: shards of unequal size, and an empty one (size 3, last batch 2)."""
    x, y = data(98)
    val = data(30)
    single = make_net(backend, optimizer())
    expected = single.fit(x, y, epochs=3, batch_size=16, validation_data=val, verbose=0)

    def work(comm: ThreadCommunicator):  # type: ignore[no-untyped-def]
        net = make_net(backend, optimizer())
        if comm.rank == 1:
            net.build()
            net.set_weights([w + 0.5 for w in net.get_weights()])  # rank 0's weights must win
        history = net.fit(x, y, epochs=3, batch_size=16, validation_data=val, verbose=0, comm=comm)
        return net.get_weights(), history.history, comm.calls

    results = run_ranks(size, work)
    for weights, history, calls in results:
        # one all-reduce per step (7 global batches per epoch), and per epoch one of the
        # training outputs and one of the validation outputs, for the metrics
        assert calls == 3 * (7 + 2)
        for got, want in zip(weights, single.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for key, values in expected.history.items():
            np.testing.assert_allclose(history[key], values, rtol=1e-10)
    for weights, _, _ in results[1:]:  # ranks agree bit for bit
        for a, b in zip(results[0][0], weights, strict=True):
            np.testing.assert_array_equal(a, b)


def test_ranks_with_different_seeds_are_refused(backend: ax.Backend) -> None:
    x, y = data(40)

    def work(comm: ThreadCommunicator):  # type: ignore[no-untyped-def]
        net = ax.Network([ax.Dense(3, "softmax")], input_size=5, backend=backend, seed=comm.rank)
        net.fit(x, y, epochs=1, batch_size=8, verbose=0, comm=comm)

    with pytest.raises(DistributedMismatchError, match=r"disagree: seed \(generator state\) differs"):
        run_ranks(2, work)


def facts(**changes):  # type: ignore[no-untyped-def]
    base = {"backend": "cupy", "device kind": "gpu", "dtype": "float32", "sample count": 10,
            "transport": "available", "_gpu": ("node-a", "<CUDA Device 0>")}
    return {**base, **changes}


def test_disagreement_names_what_differs_and_where() -> None:
    assert disagreement([facts(), facts(_gpu=("node-a", "<CUDA Device 1>"))]) is None
    assert disagreement([facts(), facts(_gpu=("node-b", "<CUDA Device 0>"))]) is None
    text = disagreement([facts(), facts(dtype="float64", _gpu=("node-b", "<CUDA Device 0>")),
                         facts(_gpu=("node-c", "<CUDA Device 0>"))])
    assert text == "the ranks disagree: dtype differs (rank 0: 'float32', rank 1: 'float64', rank 2: 'float32')"
    shared = disagreement([facts(), facts(_gpu=("node-b", "<CUDA Device 0>")), facts()])
    assert shared is not None and "ranks [0, 2] share GPU <CUDA Device 0> on host node-a" in shared
    none_can = disagreement([facts(transport="NCCL missing", _gpu=None)] * 2)
    assert none_can == "the ranks disagree: no rank can reach the others: NCCL missing"


def test_local_rank_comes_from_init_or_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "_local_rank", None)
    for name in distributed.LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.local_rank() == 0
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")
    assert distributed.local_rank() == 3
    monkeypatch.setenv("MPI_LOCALRANKID", "1")  # MPICH's, checked first
    assert distributed.local_rank() == 1
    monkeypatch.setattr(distributed, "_local_rank", 2)  # from init()'s shared-memory split
    assert distributed.local_rank() == 2


def test_torch_cuda_without_an_index_takes_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "_local_rank", 3)
    assert ax.get_backend("torch", device="cuda").device == torch.device("cuda", 1)
    assert ax.get_backend("torch", device="cuda:0").device == torch.device("cuda", 0)


def test_shards_are_disjoint_and_cover_the_batch() -> None:
    for lo, hi, size in [(0, 16, 2), (16, 32, 3), (96, 98, 3), (0, 1, 4)]:
        parts = [shard(lo, hi, r, size) for r in range(size)]
        assert parts[0][0] == lo and parts[-1][1] == hi
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
        sizes = [b - a for a, b in parts]
        assert max(sizes) - min(sizes) <= 1


def test_only_the_main_rank_prints_and_logs(backend: ax.Backend, tmp_path, capsys) -> None:
    x, y = data(40)

    def work(comm: ThreadCommunicator):  # type: ignore[no-untyped-def]
        net = make_net(backend, ax.SGD(lr=0.1))
        log = ax.CSVLogger(tmp_path / f"rank{comm.rank}.csv")
        net.fit(x, y, epochs=2, batch_size=8, verbose=2, callbacks=[log], comm=comm)

    run_ranks(2, work)
    out = capsys.readouterr().out
    assert out.count("Epoch 1/2") == 1 and out.count("Epoch 2/2") == 1
    assert (tmp_path / "rank0.csv").exists() and not (tmp_path / "rank1.csv").exists()


def test_unsupported_transport_is_named() -> None:
    pytest.importorskip("mpi4py")
    pytest.importorskip("array_api_strict")
    from anyxp.distributed import MPICommunicator

    comm = MPICommunicator()
    with pytest.raises(ValueError, match="array_api_strict"):
        comm.bind(ax.get_backend("array_api_strict"))
