"""`load` on hostile files: bounded memory, every field checked, only CheckpointError.

Files are written with a small zip writer of our own (below), so a test can state any
member, compression, size or CRC it likes, whatever zipfile would write.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import anyxp as ax

HEADER = "anyxp.json.npy"
GIB = 1 << 30


# ------------------------------------------------------------------------------ writing files
def zip_bytes(members: dict[str, bytes | tuple[int, bytes, int, int]]) -> bytes:
    """A zip archive of ``members``: bytes are stored; ``(method, data, crc, size)`` is
    written as given (compressed data, declared CRC and uncompressed size)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, member in members.items():
        method, data, crc, size = member if isinstance(member, tuple) else (0, member, zlib.crc32(member), len(member))
        raw, offset = name.encode(), out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0))
        out.write(raw + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                                  size, len(raw), 0, 0, 0, 0, 0, offset))
        central.write(raw)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), central.tell(), start, 0))
    return out.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: Any, descr: Any, fortran: Any = False) -> bytes:
    """A .npy header (version 1.0) claiming anything."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buffer.getvalue()


def npy_data(blob: bytes) -> bytes:
    """The data of a version 1.0 .npy file, after its header."""
    return blob[10 + struct.unpack("<H", blob[8:10])[0] :]


def header_npy(header: dict[str, Any] | str) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    return npy(np.frombuffer(text.encode(), dtype=np.uint8))


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def header_of(members: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(np.load(io.BytesIO(members[HEADER])).tobytes())


def zeros_bomb(prefix: bytes, size: int) -> tuple[int, bytes, int, int]:
    """A deflate member: ``prefix`` then zeros up to ``size`` bytes (one 1 MiB block
    compressed once and repeated: each ends in a full flush, so copies stand alone)."""
    block = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    piece = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()
    count = -(-(size - len(prefix)) // len(block))
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    return 8, head + piece * count + tail, crc, len(prefix) + count * len(block)


# ------------------------------------------------------------------------------ the original
def make_net(backend: Any) -> ax.Network:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    net = ax.Network([ax.Dense(8, ax.LeakyReLU(0.2)), ax.Dropout(0.1), ax.Dense(3, "softmax")],
                     input_size=5, optimizer=ax.Adam(lr=1e-2), backend=backend, dtype="float64", seed=4,
                     name="original")
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return net


@pytest.fixture(scope="module")
def original(backend: ax.Backend, tmp_path_factory: pytest.TempPathFactory) -> tuple[ax.Network, Path]:
    net = make_net(backend)
    path = tmp_path_factory.mktemp("original") / "net.npz"
    net.save(path)
    return net, path


def same_network(a: ax.Network, b: ax.Network) -> bool:
    state_a = {k: a.backend.to_numpy(v) for k, v in a.optimizer.state_arrays().items()}
    state_b = {k: b.backend.to_numpy(v) for k, v in b.optimizer.state_arrays().items()}
    return (
        [layer.get_config() for layer in a.layers] == [layer.get_config() for layer in b.layers]
        and all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
        and state_a.keys() == state_b.keys() and all(np.array_equal(state_a[k], state_b[k]) for k in state_a)
        and (a.name, a.seed, a.dtype_name, a.metrics, a.input_size) == (b.name, b.seed, b.dtype_name, b.metrics,
                                                                         b.input_size)
        and (a.optimizer.name, a.optimizer.get_config(), a.optimizer.steps)
        == (b.optimizer.name, b.optimizer.get_config(), b.optimizer.steps)
        and a.loss.get_config() == b.loss.get_config() and type(a.loss) is type(b.loss)
        and a.rng.bit_generator.state == b.rng.bit_generator.state
    )


def write(path: Path, members: dict[str, Any]) -> Path:
    path.write_bytes(zip_bytes(members))
    return path


# ------------------------------------------------------------------------------ class 4: each field
def edit_header(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        header = header_of(members)
        change(header)
        members[HEADER] = header_npy(header)

    return edit


def edit_array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        members[name] = npy(change(np.load(io.BytesIO(members[name]))))

    return edit


def raw_header(text: str | bytes) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        raw = text.encode() if isinstance(text, str) else text
        members[HEADER] = npy(np.frombuffer(raw, dtype=np.uint8))

    return edit


def spliced(key: str, raw: str) -> Callable[[dict[str, bytes]], None]:
    """The header with the value of top-level ``key`` replaced by raw JSON text."""

    def edit(members: dict[str, bytes]) -> None:
        header = header_of(members)
        header[key] = "@@@"
        raw_header(json.dumps(header).replace('"@@@"', raw))(members)

    return edit


def put(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the value at a path in the header (the last argument is the value)."""
    *path, value = path_and_value

    def change(header: dict[str, Any]) -> None:
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def setitem(index: Any, value: Any) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[index] = value
        return a

    return change


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda header: header.pop(key)


def member(name: str, value: bytes | None) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        if value is None:
            del members[name]
        else:
            members[name] = value

    return edit


def recompressed(name: str, method: int) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, Any]) -> None:
        import bz2

        data = members[name]
        members[name] = (method, bz2.compress(data), zlib.crc32(data), len(data))

    return edit


RELU = {"class": "ReLU", "config": {}}
CASES: dict[str, tuple[Callable[[dict[str, bytes]], None], str]] = {
    # arrays
    "weight inf": (edit_array("weight/0.npy", setitem((0, 0), np.inf)), r"weight/0: contains inf"),
    "weight NaN": (edit_array("weight/1.npy", setitem(2, np.nan)), r"weight/1: contains NaN"),
    "weight complex": (edit_array("weight/0.npy", lambda a: a.astype(np.complex128)),
                       r"weight/0: has dtype complex128, expected float32 or float64"),
    "weight int": (edit_array("weight/2.npy", lambda a: a.astype(np.int64)), r"weight/2: has dtype int64"),
    "weight object": (member("weight/0.npy", npy_header((5, 8), "|O")), r"weight/0: holds Python objects"),
    "weight shape": (edit_array("weight/0.npy", lambda a: a[:2]), r"weight/0: has shape \(2, 8\), expected \(5, 8\)"),
    "weight huge shape": (member("weight/0.npy", npy_header((10**9, 8), "<f8") + bytes(320)),
                          r"weight/0: has shape \(1000000000, 8\)"),
    "weight short": (member("weight/0.npy", npy_header((5, 8), "<f8") + bytes(100)),
                     r"weight/0: holds 100 bytes of data, its shape \(5, 8\) and dtype float64 take 320"),
    "weight npy v3": (member("weight/0.npy", b"\x93NUMPY\x03\x00" + bytes(400)), r"weight/0: .npy format version"),
    "weight not npy": (member("weight/0.npy", b"hello"), r"weight/0: ValueError"),
    "state NaN": (edit_array("optimizer/exp_avg/0.npy", setitem(3, np.nan)), r"optimizer/exp_avg/0: contains NaN"),
    "state -inf": (edit_array("optimizer/exp_avg/0.npy", setitem(0, -np.inf)), r"optimizer/exp_avg/0: contains inf"),
    "state negative square": (edit_array("optimizer/exp_avg_sq/0.npy", setitem(1, -1.0)),
                              r"optimizer/exp_avg_sq/0: holds negative values"),
    "state complex": (edit_array("optimizer/exp_avg/0.npy", lambda a: a.astype(np.complex64)),
                      r"optimizer/exp_avg/0: has dtype complex64"),
    # members
    "missing weight": (member("weight/2.npy", None), r"weight/2: missing"),
    "missing state": (member("optimizer/exp_avg_sq/0.npy", None), r"optimizer/exp_avg_sq/0: missing"),
    "extra member": (member("evil.npy", npy(np.zeros(3))), r"members: unexpected 'evil.npy'"),
    "extra weight": (member("weight/7.npy", npy(np.zeros(3))), r"members: unexpected 'weight/7.npy'"),
    "bz2 member": (recompressed("weight/0.npy", 12), r"weight/0: uses compression method 12"),
    # the optimizer
    "negative steps": (edit_header(put("optimizer", "steps", -1)), r"optimizer\.steps: is -1, expected an integer >="),
    "float steps": (edit_header(put("optimizer", "steps", 2.5)), r"optimizer\.steps: is 2\.5"),
    "huge steps": (edit_header(put("optimizer", "steps", 2**64)), r"optimizer\.steps: is 18446744073709551616, more"),
    "NaN lr": (edit_header(put("optimizer", "config", "lr", math.nan)), r"optimizer\.config\.lr: is nan"),
    "inf eps": (edit_header(put("optimizer", "config", "eps", math.inf)), r"optimizer\.config\.eps: is inf"),
    "string lr": (edit_header(put("optimizer", "config", "lr", "0.1")), r"optimizer\.config\.lr: is '0\.1'"),
    "bool lr": (edit_header(put("optimizer", "config", "lr", True)), r"optimizer\.config\.lr: is True"),
    "negative lr": (edit_header(put("optimizer", "config", "lr", -1)), r"optimizer\.config: lr must be"),
    "short betas": (edit_header(put("optimizer", "config", "betas", [0.9])), r"optimizer\.config: "),
    "unknown option": (edit_header(put("optimizer", "config", "evil", 1)), r"optimizer\.config: .*evil"),
    "nested option": (edit_header(put("optimizer", "config", "evil", [1])), r"optimizer\.config\.evil: is \[1\]"),
    "unknown optimizer": (edit_header(put("optimizer", "name", "os.system")), r"optimizer\.name: unknown optimizer"),
    "optimizer list": (edit_header(put("optimizer", [])), r"optimizer: is \[\], expected an object"),
    "steps missing": (edit_header(lambda h: h["optimizer"].pop("steps")), r"optimizer\.steps: missing"),
    # the loss and metrics
    "unknown loss": (edit_header(put("loss", "name", "evil")), r"loss\.name: unknown loss 'evil'"),
    "loss option": (edit_header(put("loss", "config", "from_logits", "yes")), r"loss\.config\.from_logits: is 'yes'"),
    "unknown metric": (edit_header(put("metrics", ["accuracy", "evil"])), r"metrics: unknown metric 'evil'"),
    "metric number": (edit_header(put("metrics", [3])), r"metrics\[0\]: is 3, expected a name or \{name, config\}"),
    # layers
    "string units": (edit_header(put("layers", 0, "config", "units", "8")), r"layers\[0\]\.config\.units: is '8'"),
    "zero units": (edit_header(put("layers", 2, "config", "units", 0)), r"layers\[2\]\.config\.units: is 0"),
    "float units": (edit_header(put("layers", 2, "config", "units", 3.0)), r"layers\[2\]\.config\.units: is 3\.0"),
    "bool use_bias": (edit_header(put("layers", 0, "config", "use_bias", "no")), r"layers\[0\]\.config\.use_bias"),
    "NaN alpha": (edit_header(put("layers", 0, "config", "activation", "alpha", math.nan)),
                  r"layers\[0\]\.config\.activation\.alpha: is nan"),
    "unknown activation": (edit_header(put("layers", 0, "config", "activation", {"name": "evil"})),
                           r"layers\[0\]: unknown activation 'evil'"),
    "activation number": (edit_header(put("layers", 2, "config", "activation", 3)),
                          r"layers\[2\]\.config\.activation: is 3"),
    "init number": (edit_header(put("layers", 0, "config", "init", 3)), r"layers\[0\]\.config\.init: is 3"),
    "unknown init": (edit_header(put("layers", 0, "config", "init", "evil")), r"layers\[0\]: unknown initializer"),
    "NaN rate": (edit_header(put("layers", 1, "config", "rate", math.nan)), r"layers\[1\]\.config\.rate: is nan"),
    "rate 2": (edit_header(put("layers", 1, "config", "rate", 2)), r"layers\[1\]: Dropout rate must be"),
    "unknown layer": (edit_header(put("layers", 1, "class", "os.system")), r"layers\[1\]\.class: unknown layer type"),
    "layer list": (edit_header(put("layers", 1, [])), r"layers\[1\]: is \[\], expected an object"),
    "layer extra key": (edit_header(put("layers", 1, "evil", 1)), r"layers\[1\]\.evil: is not a field"),
    "no layers": (edit_header(put("layers", [])), r"layers: holds 0 layers"),
    "too many layers": (edit_header(lambda h: h["layers"].extend([RELU] * 1100)), r"layers: holds 1103 layers"),
    "sizes disagree": (edit_header(put("layers", 2, "config", "input_size", 7)), r"layers: layer 2 .*declares"),
    "no trainable layer": (edit_header(put("layers", [RELU])), r"layers: the network has no trainable layer"),
    # the rest of the header
    "bool input_size": (edit_header(put("input_size", True)), r"input_size: is True, expected a positive integer"),
    "negative input_size": (edit_header(put("input_size", -5)), r"input_size: is -5"),
    "dtype": (edit_header(put("dtype", "float16")), r"dtype: is 'float16', expected 'float32' or 'float64'"),
    "negative seed": (edit_header(put("seed", -1)), r"seed: is -1, expected an integer >= 0"),
    "name number": (edit_header(put("name", 5)), r"name: is 5, expected a string"),
    "missing optimizer": (edit_header(drop("optimizer")), r"optimizer: missing"),
    "extra field": (edit_header(put("evil", 1)), r"evil: is not a field of an anyxp checkpoint"),
    "version true": (edit_header(put("version", True)), r"version: checkpoint format version True"),
    "rng generator": (edit_header(put("rng_state", "bit_generator", "MT19937")), r"rng_state: is not the state of"),
    "rng number": (edit_header(put("rng_state", 5)), r"rng_state: is 5, expected an object"),
    "rng inc": (edit_header(put("rng_state", "state", "inc", 2**130)), r"rng_state\.state\.inc: is"),
    "rng float": (edit_header(put("rng_state", "uinteger", 0.5)), r"rng_state\.uinteger: is 0\.5"),
    "not JSON": (raw_header("{'format': "), r"anyxp\.json: JSONDecodeError"),
    "not UTF-8": (raw_header(b"\xff\xfe{}"), r"anyxp\.json: UnicodeDecodeError"),
    "header list": (raw_header("[1, 2]"), r"not an anyxp checkpoint \(wrong format tag\)"),
    "deep nesting": (spliced("name", "[" * 100_000 + "]" * 100_000), r"anyxp\.json: RecursionError"),
    "nesting": (spliced("name", "[" * 20 + "]" * 20), r"name(\[0\])+: nests deeper than 8 levels"),
    "huge integer": (spliced("seed", "9" * 5000), r"anyxp\.json: ValueError"),
    "NaN literal": (spliced("input_size", "NaN"), r"input_size: is nan"),
    "overflowing float": (spliced("name", "1e999"), r"name: is inf"),
    "header not uint8": (member(HEADER, npy(np.zeros(4))), r"anyxp\.json: has dtype float64, expected uint8"),
    "header 2-D": (member(HEADER, npy(np.zeros((2, 2), np.uint8))), r"anyxp\.json: has shape \(2, 2\)"),
    "header too long": (member(HEADER, npy(np.full(2 << 20, 32, np.uint8))), r"anyxp\.json: expands to"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_field_is_named(original: tuple[ax.Network, Path], tmp_path: Path, case: str) -> None:
    edit, message = CASES[case]
    members = members_of(original[1])
    edit(members)
    bad = write(tmp_path / "bad.npz", members)
    with pytest.raises(ax.CheckpointError, match=message) as info:
        ax.load(bad, backend=original[0].backend)
    assert str(info.value).startswith(f"{bad}: ")


def test_duplicate_members_are_refused(original: tuple[ax.Network, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        with zipfile.ZipFile(bad, "w") as zf:
            for name, data in members_of(original[1]).items():
                zf.writestr(name, data)
            zf.writestr("weight/0.npy", npy(np.zeros((5, 8))))
    with pytest.raises(ax.CheckpointError, match=r"members: 'weight/0\.npy' appear more than once"):
        ax.load(bad, backend=original[0].backend)


def test_the_writers_own_members_load(original: tuple[ax.Network, Path], tmp_path: Path) -> None:
    """Our zip writer is faithful: rewriting a checkpoint's members loads the same network,
    and so do deflated members (np.savez_compressed) and a big-endian weight."""
    net, path = original
    members = members_of(path)
    assert same_network(ax.load(write(tmp_path / "same.npz", members), backend=net.backend), net)
    compressed = tmp_path / "compressed.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(compressed, **arrays)
    assert same_network(ax.load(compressed, backend=net.backend), net)
    members["weight/0.npy"] = npy(np.load(io.BytesIO(members["weight/0.npy"])).astype(">f8"))
    assert same_network(ax.load(write(tmp_path / "big-endian.npz", members), backend=net.backend), net)


# ------------------------------------------------------------------------------ class 2: bombs
def bombs(original: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Hostile files that would take gigabytes if read as they claim, and the error each
    must give."""
    members = members_of(original)
    header = header_of(members)
    weight = members["weight/0.npy"]
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, changes: dict[str, Any], message: str) -> None:
        files[name] = (write(folder / f"{name}.npz", {**members, **changes}), message)

    prefix = npy_header((5, 8), "<f8")
    add("deflate bomb", {"weight/0.npy": zeros_bomb(prefix, GIB + 4096)},
        r"weight/0: expands to \d+ bytes, more than the 10332 its array may take")
    huge_shape = npy_header((GIB // 8,), "<f8")
    add("deflate bomb of its shape", {"weight/0.npy": zeros_bomb(huge_shape, len(huge_shape) + GIB)},
        r"weight/0: expands to")
    method, data, crc, _ = zeros_bomb(weight[: len(prefix)], GIB)
    add("lying size", {"weight/0.npy": (method, data, crc, len(weight))}, r"weight/0: BadZipFile: Bad CRC-32")
    json_prefix = npy_header((GIB,), "|u1")
    add("header bomb", {HEADER: zeros_bomb(json_prefix, len(json_prefix) + GIB)}, r"anyxp\.json: expands to")
    big = copy.deepcopy(header)
    big["layers"][0]["config"]["units"] = 10**9
    big["layers"][2]["config"]["input_size"] = 10**9
    add("units", {HEADER: header_npy(big)}, r"layers: declare 9000000003 parameters")
    big = copy.deepcopy(header)
    big["input_size"] = big["layers"][0]["config"]["input_size"] = 10**9
    add("input_size", {HEADER: header_npy(big)}, r"layers: declare 8000000035 parameters")
    add("npy shape", {"weight/0.npy": npy_header((10**9, 8), "<f8") + npy_data(weight)},
        r"weight/0: has shape \(1000000000, 8\), expected \(5, 8\)")
    return files


LIMITED_LOAD = """
import json, re, resource, sys
import numpy as np
import anyxp as ax

backend = ax.get_backend(sys.argv[1])
files = json.loads(sys.argv[2])
ax.load(files.pop("original"), backend=backend)  # warm up: what a good file needs first
page = resource.getpagesize()
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * page
resource.setrlimit(resource.RLIMIT_AS, (used + 600 * 2**20, resource.RLIM_INFINITY))
try:
    np.ones(2**30 // 8)
    print("control: 1 GiB allocated under the limit")
except MemoryError:
    pass
for name, path in files.items():
    try:
        ax.load(path, backend=backend)
        print(f"{name}: loaded")
    except ax.CheckpointError as exc:
        print(f"{name}: CheckpointError {exc}")
    except BaseException as exc:
        print(f"{name}: {type(exc).__name__} {exc}")
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc to set a memory limit")
def test_bombs_cost_bounded_memory(original: tuple[ax.Network, Path], tmp_path: Path) -> None:
    """Each hostile file is refused in a process allowed 600 MB more than it uses after
    loading a good checkpoint: less than any of them would take if read as it claims."""
    net, path = original
    files = bombs(path, tmp_path)
    assert all(p.stat().st_size < 3 << 20 for p, _ in files.values())  # small files
    paths = {"original": str(path)} | {name: str(p) for name, (p, _) in files.items()}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "ARRAY_API_STRICT_API_VERSION": "2024.12"}
    result = subprocess.run([sys.executable, "-c", LIMITED_LOAD, net.backend.name, json.dumps(paths)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert "control" not in lines, "the memory limit does not hold"
    for name, (bomb, message) in files.items():
        assert lines[name].startswith(f"CheckpointError {bomb}: "), (name, lines[name])
        assert re.search(message, lines[name]), (name, lines[name])


# ------------------------------------------------------------------------------ fuzzing
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load_or_refuse(path: Path, backend: ax.Backend) -> ax.Network | None:
    """The loaded network, or None for a CheckpointError; anything else fails the test."""
    try:
        net = ax.load(path, backend=backend)
    except ax.CheckpointError as exc:
        assert str(exc).startswith(f"{path}: ")
        event(f"refused: {str(exc)[len(str(path)) + 2 :].split(':')[0]}")
        return None
    event("loaded")
    assert all(np.isfinite(w).all() for w in net.get_weights())
    assert isinstance(net.optimizer.steps, int) and net.optimizer.steps >= 0
    return net


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 16)),
)


def mutate(data: bytes, how: tuple[Any, ...]) -> bytes:
    at = how[1] % (len(data) + 1)
    if how[0] == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ how[2]]) + data[at + 1 :]
    if how[0] == "truncate":
        return data[:at]
    if how[0] == "insert":
        return data[:at] + how[2] + data[at:]
    if how[0] == "delete":
        return data[:at] + data[at + how[2] :]
    return data


@FUZZ
@given(hows=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_bytes_load_the_same_or_are_refused(
    original: tuple[ax.Network, Path], tmp_path_factory: pytest.TempPathFactory, hows: list[tuple[Any, ...]]
) -> None:
    net, path = original
    data = path.read_bytes()
    for how in hows:
        data = mutate(data, how)
    bad = tmp_path_factory.getbasetemp() / "mutated-bytes.npz"
    bad.write_bytes(data)
    loaded = load_or_refuse(bad, net.backend)
    assert loaded is None or same_network(loaded, net)


NASTY = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, -1, 1, 3, 2**31, 2**64, 10**12, -(10**30)]),
    st.sampled_from([0.5, -0.0, 1e300, math.nan, math.inf, -math.inf]), st.text(max_size=8),
    st.sampled_from(["float32", "relu", "Dense", "PCG64", "accuracy", "adam"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
RAW_JSON = st.sampled_from(["[" * 5000 + "]" * 5000, "{" * 3000, "9" * 5000, "1e999", "-Infinity", "NaN", "", "}"])


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths_of(v, (*prefix, i))
    return found


@st.composite
def header_edits(draw: st.DrawFn, header: dict[str, Any]) -> str:
    """The header's JSON text with a few values replaced, keys dropped or added, or raw text spliced in."""
    header = copy.deepcopy(header)
    raw = None
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(header)[1:]))
        parent = header
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "drop", "add", "raw"]))
        if action == "drop" and isinstance(parent, dict):
            parent.pop(path[-1])
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=5))] = draw(NASTY)
        elif action == "raw" and raw is None:
            raw = draw(RAW_JSON)
            parent[path[-1]] = "@@@"
        else:
            parent[path[-1]] = draw(NASTY)
        if not paths_of(header)[1:]:
            break
    text = json.dumps(header)
    return text.replace('"@@@"', raw) if raw is not None else text


@FUZZ
@given(data=st.data())
def test_mutated_headers_load_or_are_refused(
    original: tuple[ax.Network, Path], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    net, path = original
    members = members_of(path)
    members[HEADER] = header_npy(data.draw(header_edits(header_of(members))))
    load_or_refuse(write(tmp_path_factory.getbasetemp() / "mutated-header.npz", members), net.backend)


DESCRS = st.sampled_from(["<f8", ">f8", "<f4", "<f2", "<c16", "<i8", "|u1", "|b1", "|O", "<M8[s]", "|V8",
                          [("a", "<f8")], ("<f8", (2,)), "<U3", "S8"])
SHAPES = st.one_of(st.lists(st.integers(-2, 12), max_size=3).map(tuple),
                   st.sampled_from([(5, 8), (8,), (3,), (8, 3), (40,), (10**9, 8), (2**62, 2**62), ()]))


@FUZZ
@given(data=st.data())
def test_mutated_npy_headers_load_or_are_refused(
    original: tuple[ax.Network, Path], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    net, path = original
    members = members_of(path)
    name = data.draw(st.sampled_from(sorted(members)))
    array_data = npy_data(members[name])
    cut = data.draw(st.sampled_from([len(array_data), 0, 8, len(array_data) // 2, len(array_data) + 8]))
    array_data = (array_data + bytes(8))[:cut]
    shape, descr, fortran = data.draw(SHAPES), data.draw(DESCRS), data.draw(st.sampled_from([False, True, 1, None]))
    members[name] = npy_header(shape, descr, fortran) + array_data
    load_or_refuse(write(tmp_path_factory.getbasetemp() / "mutated-npy.npz", members), net.backend)
