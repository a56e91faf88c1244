"""Checkpoints: one ``.npz`` file, no pickle, readable on any backend.

The file is a zip archive (as `numpy.savez` writes it) of ``.npy`` members: a JSON header
(architecture, loss, optimizer, dtype, seed, RNG state, format version) as a uint8 array
named ``anyxp.json``, the weights as ``weight/<i>`` and the optimizer state as
``optimizer/<name>``.

`load` treats the file as untrusted. It reads the zip itself, not through `numpy.load`:
the header first (at most `MAX_HEADER_BYTES`), whose every field is checked (types,
finite numbers, known names, sizes) before anything is built; then exactly the members
that header implies, refusing any other member, any compression but stored/deflate, and
any member whose ``.npy`` header disagrees with the network (dtype float32/float64, the
exact shape) or whose size disagrees with that ``.npy`` header, before allocating; data
is read through a bounded reader. A header must not declare more array bytes than the
file holds (`save` stores arrays uncompressed; a deflated member is read, but counts
as if it were not), so a hostile file costs a small multiple of its own size in memory,
plus at most a few tens of MB for the JSON header. Weights and optimizer state must be
finite. Every problem is a `CheckpointError` naming the file and the field; an error
opening the file (permissions...) stays an `OSError`.

`save` writes a temporary file beside the target, then renames it over the target, so
the old file survives a failed save; it saves through a symbolic link to the link's
target, and gives a new file the permissions ``open(path, "w")`` would (0o666 less the
umask), or keeps the mode of the file it replaces.

`dumps` and `loads` are the same format in memory (bytes): what pickling, copying and
sending a `Network` go through. They also hold a network that is not built yet: its
header carries ``"built": false`` (and ``input_size`` may be null, the layer list empty,
``optimizer.steps`` must be 0), and the archive holds no other member. Files without
that field are built networks, as every version-1 file before it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import math
import os
import re
import secrets
import stat
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.lib import format as npy_format

from . import activations, layers, normalization
from .backend import Backend, get_backend, to_numpy
from .errors import BackendFallbackWarning, BackendUnavailableError, CheckpointError
from .losses import LOSSES
from .metrics import metric_from_config
from .optimizers import OPTIMIZERS, optimizer_from_config
from .regularizers import REGULARIZERS

if TYPE_CHECKING:
    from .network import Network

FORMAT = "anyxp-checkpoint"
FORMAT_VERSION = 1
HEADER = "anyxp.json"

LAYER_TYPES: dict[str, Any] = {
    "Dense": layers.Dense,
    "Dropout": layers.Dropout,
    "LayerNorm": normalization.LayerNorm,
    "BatchNorm": normalization.BatchNorm,
    **{cls.__name__: cls for cls in set(activations.ACTIVATIONS.values())},
}

# Limits on what a file may declare (a header of 1000 layers takes about 150 kB)
MAX_HEADER_BYTES = 1 << 20  # the JSON header
MAX_LAYERS = 1024  # building is quadratic in the layer count
MAX_NESTING = 8  # a valid header nests 5 deep (layers[i].config.activation.alpha)
MAX_STEPS = 2**63 - 1  # optimizer steps: bias corrections raise b**steps
MAX_SCHEDULE_POINTS = 10_000  # boundaries / values of a piecewise-constant schedule
NPY_HEADER_LIMIT = 10_000  # the longest .npy header accepted (numpy's own default)
NPY_PREAMBLE = 12  # magic string, version and header length before a .npy header
READ_CHUNK = 1 << 20
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NONNEGATIVE_STATE = ("exp_avg_sq", "square_avg", "sum", "exp_inf")  # of squares or magnitudes

REQUIRED_FIELDS: dict[str, str] = {
    "format": "str", "version": "int", "name": "str", "dtype": "str", "input_size": "count",
    "seed": "natural", "metrics": "list", "layers": "list", "loss": "dict", "optimizer": "dict",
}
OPTIONAL_FIELDS: dict[str, str] = {
    "anyxp_version": "str", "saved_from_backend": "str", "rng_state": "dict", "built": "bool", "training": "dict",
}
MAX_TRAINING_ARRAYS = 16  # parameter-sized arrays of a training state (best weights...)
ARRAY_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# what the values of layer, loss and optimizer configs must be; other keys take a JSON
# scalar, which the constructor then checks
CONFIG_FIELDS: dict[str, str] = {
    "units": "count", "input_size": "count", "use_bias": "bool", "init": "str", "activation": "activation",
    "rate": "number", "seed": "int", "alpha": "number", "lr": "learning_rate", "weight_decay": "number",
    "clipvalue": "number", "clipnorm": "number", "global_clipnorm": "number",
    "momentum": "number", "dampening": "number", "eps": "number", "nesterov": "bool", "betas": "numbers",
    "from_logits": "bool", "kernel_regularizer": "regularizer", "bias_regularizer": "regularizer",
}


@dataclasses.dataclass
class TrainingState:
    """What `BackupAndRestore` keeps beside the network: ``header`` (JSON: the epoch, the
    history, the callbacks' states) and ``arrays`` (each of the network's parameter
    count, e.g. `EarlyStopping`'s best weights), by name."""

    header: dict[str, Any]
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------ saving
def save(net: Network, path: str | Path, training: TrainingState | None = None) -> None:
    """Write ``net`` to ``path`` atomically (a temporary file, then a rename); with
    ``training``, the state of the fit in progress too (`BackupAndRestore`)."""
    net._require_built()
    arrays = _arrays(net, training)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def dumps(net: Network) -> bytes:
    """``net`` in the checkpoint format, as bytes (the bytes `save` writes to a file);
    an unbuilt network too (its architecture and settings, no arrays)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(net))
    return buffer.getvalue()


def _arrays(net: Network, training: TrainingState | None = None) -> dict[str, np.ndarray]:
    """The archive's members: the header, then (for a built network) weights and state,
    and the training state's arrays."""
    _check_savable(net)
    arrays = {HEADER: np.frombuffer(_header_json(net, training).encode(), dtype=np.uint8)}
    if net.built:
        for i, w in enumerate(net.get_weights()):
            arrays[f"weight/{i}"] = w
        for key, value in net.optimizer.state_arrays().items():
            arrays[f"optimizer/{key}"] = to_numpy(value)
    if training is not None:
        for name, value in training.arrays.items():
            arrays[f"training/{name}"] = to_numpy(value)
    return arrays


def _check_savable(net: Network) -> None:
    """Every class and function the header names is anyxp's own or registered."""
    hint = "register it first with anyxp.register(...)"
    for i, layer in enumerate(net.layers):
        if LAYER_TYPES.get(type(layer).__name__) is not type(layer):
            raise TypeError(f"cannot store layer {i} ({layer!r}) in a checkpoint: the format names only anyxp's "
                            f"own layer types and registered ones; {hint}")
        act = getattr(layer, "activation", None)
        if act is not None and activations.ACTIVATIONS.get(act.name) is not type(act):
            raise TypeError(f"cannot store layer {i}'s activation {act!r} in a checkpoint: {hint}")
        if not isinstance(layer.get_config().get("init", ""), str):
            raise TypeError(f"cannot store layer {i}'s initializer {layer.init!r} in a checkpoint: {hint}")
        for reg in layer.regularizers.values():
            if REGULARIZERS.get(reg.name) is not type(reg):
                raise TypeError(f"cannot store layer {i}'s regularizer {reg!r} in a checkpoint: it holds only "
                                f"anyxp's {', '.join(REGULARIZERS)}")
    saved_as = LOSSES.get(net.loss.name)
    if saved_as is None or (saved_as is not type(net.loss)
                            and type(net.loss).__dict__.get("checkpoint_class") is not saved_as):
        raise TypeError(f"cannot store the loss {net.loss!r} in a checkpoint: {hint}")


def _header_json(net: Network, training: TrainingState | None = None) -> str:
    from . import __version__

    optimizer = net.optimizer.get_config()
    if callable(optimizer["lr"]):
        if training is None:
            raise ValueError(
                f"cannot save a network whose learning rate is a function of your own ({optimizer['lr']!r}): "
                "the checkpoint stores schedules by their configuration; use one of anyxp.schedules"
            )
        optimizer["lr"] = net.optimizer.lr  # the resumed fit keeps its own function

    built = net.built
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "anyxp_version": __version__,
        "name": net.name,
        "dtype": net.dtype_name,
        "input_size": net.input_size,
        "seed": net.seed,
        "metrics": [_metric_entry(metric) for metric in net.metrics],
        "saved_from_backend": net.backend.name,
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in net.layers],
        "loss": {"name": net.loss.name, "config": net.loss.get_config()},
        "optimizer": {
            "name": net.optimizer.name,
            "config": optimizer,
            "steps": net.optimizer.steps if built else 0,  # building starts the count at 0
        },
        "rng_state": net.rng.bit_generator.state,
    }
    if not built:
        header["built"] = False
    if training is not None:
        header["training"] = {**training.header, "arrays": sorted(training.arrays)}
    return json.dumps(header, default=_json_scalar, allow_nan=False)


def _metric_entry(metric: Any) -> str | dict[str, Any]:
    """A metric as its name, or ``{"name": ..., "config": {...}}`` when it has settings."""
    config = metric.get_config()
    return {"name": metric.name, "config": config} if config else metric.name


def _json_scalar(value: Any) -> Any:
    """The Python scalar for a NumPy scalar (``np.int64`` seed, ``np.float32`` lr...)."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"cannot store {value!r} (a {type(value).__name__}) in a checkpoint header")


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a new file beside ``path``, then rename it over ``path``.

    The old file stays whole until the new one is complete and synced; a symbolic link
    is written through (its target is replaced, the link kept); a new file gets the
    permissions ``open(path, "w")`` would give it, a replaced one keeps its mode.
    """
    target = _through_links(Path(path))
    mode = _existing_mode(target)
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(target.parent)


def _through_links(path: Path) -> Path:
    """The file a (chain of) symbolic link(s) points to, or ``path`` itself."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # realpath gave up: a loop
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
    return target


def _existing_mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _create_beside(target: Path) -> tuple[int, Path]:
    """A new, exclusively created file in ``target``'s directory, with mode 0o666 (the
    umask applies, as for any new file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".anyxp-{secrets.token_hex(8)}.tmp")
        with contextlib.suppress(FileExistsError):
            return os.open(tmp, flags, 0o666), tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (where a directory can be opened and synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ loading
def load(path: str | Path, backend: Any = "auto", device: Any = None) -> Network:
    """Read a network saved with `Network.save`, onto ``backend``.

    Raises `CheckpointError` naming the file, the field and the problem for a
    truncated, foreign, inconsistent or hostile file (see the module's docstring).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    target = get_backend(backend, device=device)  # the caller's argument: its errors are not the file's
    try:
        with open(path, "rb") as f:
            return _read_archive(f, os.fstat(f.fileno()).st_size, target)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def loads(data: bytes | bytearray | memoryview, backend: Any = "auto", device: Any = None) -> Network:
    """The network in ``data`` (as `dumps` returns it), onto ``backend``; as untrusted
    as a file given to `load`, with the same checks and errors."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"loads() takes bytes, got {type(data).__name__}")
    target = get_backend(backend, device=device)
    data = bytes(data)
    try:
        return _read_archive(io.BytesIO(data), len(data), target)
    except CheckpointError as exc:
        raise CheckpointError(f"in-memory checkpoint: {exc}") from None


def load_training(path: str | Path, backend: Any) -> tuple[Network, TrainingState | None]:
    """`load`, and the training state the file holds (None for a plain checkpoint)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            found: list[TrainingState | None] = []
            net = _read_archive(f, os.fstat(f.fileno()).st_size, get_backend(backend), found)
            return net, found[0]
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _read_archive(f: IO[bytes], size: int, target: Backend, training: list | None = None) -> Network:
    with _untrusted("not a readable anyxp checkpoint"):
        archive = zipfile.ZipFile(f)
    with archive:
        return _read_network(archive, size, target, training)


# ------------------------------------------------------------------------------ pickling
def pickle_args(net: Network) -> tuple[bytes, str, str | None]:
    """What `Network.__reduce__` hands `from_pickle`: the checkpoint bytes, the backend's
    name and its device as a string (None for the backend's default)."""
    return dumps(net), net.backend.name, device_spec(net.backend)


def device_spec(backend: Backend) -> str | None:
    """``backend``'s device as a string `get_backend` reads back (None: the default)."""
    device = backend.device
    if backend.name == "numpy":
        return None
    if backend.name == "array_api_strict":
        return str(getattr(device, "_device", device))
    if backend.name == "cupy":
        return f"cuda:{int(device.id)}"
    return str(device)


def from_pickle(payload: bytes, backend: str, device: str | None) -> Network:
    """Rebuild a pickled `Network` (the reconstructor `Network.__reduce__` names).

    The backend is resolved as `load` resolves it: ``"cupy"`` where no GPU is usable
    falls back to NumPy with a `BackendFallbackWarning`; a device that does not exist
    here (``"cuda:1"`` on a one-GPU machine, ``"cuda:0"`` for a CPU-only PyTorch) falls
    back to the backend's default device, with the same warning.
    """
    if not isinstance(backend, str) or not (device is None or isinstance(device, str)):
        raise CheckpointError(f"pickled network: backend {backend!r} / device {device!r} are not names")
    try:
        target = get_backend(backend, device=device)
    except (BackendUnavailableError, ValueError) as exc:
        if device is None:
            raise
        warnings.warn(f"the pickled network's device {device!r} is not usable here ({exc}); "
                      f"using {backend}'s default device instead", BackendFallbackWarning, stacklevel=2)
        target = get_backend(backend)
    return loads(payload, backend=target)


@contextlib.contextmanager
def _untrusted(field: str) -> Iterator[None]:
    """Turn any error that parsing untrusted bytes raises into a `CheckpointError`
    naming ``field`` (zipfile, zlib, the .npy and JSON parsers raise many kinds)."""
    try:
        yield
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:
        raise _bad(field, f"{type(exc).__name__}: {exc}") from None


def _bad(field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{field}: {problem}")


def _read_network(archive: zipfile.ZipFile, file_size: int, backend: Any, training: list | None = None) -> Network:
    """The network; with a list ``training``, append the training state to it."""
    names = _member_names(archive)
    if f"{HEADER}.npy" not in names:
        raise CheckpointError("not an anyxp checkpoint (no anyxp.json header)")
    header = _read_header(archive)
    net = _network_from(header, backend, file_size)
    if not header.get("built", True):
        _check_members(names, {f"{HEADER}.npy"})
        _restore_rng(net, header)
        return net
    weight_shapes = [shape for layer in net.layers for shape in layer.weight_shapes().values()]
    state_shapes = {key: tuple(v.shape) for key, v in net.optimizer.state_arrays().items()}
    expected = {f"{HEADER}.npy"} | {f"weight/{i}.npy" for i in range(len(weight_shapes))}
    expected |= {f"optimizer/{key}.npy" for key in state_shapes}
    training_arrays = header.get("training", {}).get("arrays", [])
    expected |= {f"training/{name}.npy" for name in training_arrays}
    _check_members(names, expected)
    weights = [_read_floats(archive, f"weight/{i}", shape) for i, shape in enumerate(weight_shapes)]
    state = {key: _read_floats(archive, f"optimizer/{key}", shape) for key, shape in state_shapes.items()}
    for key, value in state.items():
        if key.split("/")[0] in NONNEGATIVE_STATE and (value < 0).any():
            raise _bad(f"optimizer/{key}", "holds negative values (it sums, averages or takes the maximum of "
                                           "squares or magnitudes)")
    snapshot = (net.num_parameters + net.num_state,)  # `Network.snapshot_parameters`
    arrays = {name: _read_floats(archive, f"training/{name}", snapshot) for name in training_arrays}
    net.set_weights(weights)
    with net.backend.activate():  # CuPy creates arrays on the current device
        net.optimizer.load_state_arrays(state, header["optimizer"]["steps"])
    _restore_rng(net, header)
    if training is not None:
        training.append(None if "training" not in header else TrainingState(
            {k: v for k, v in header["training"].items() if k != "arrays"}, arrays))
    return net


def _restore_rng(net: Network, header: dict[str, Any]) -> None:
    if "rng_state" in header:
        with _constructing("rng_state"):
            net.rng.bit_generator.state = header["rng_state"]


def _member_names(archive: zipfile.ZipFile) -> set[str]:
    names = archive.namelist()
    unique = set(names)
    if len(unique) != len(names):
        twice = sorted(name for name in unique if names.count(name) > 1)
        raise _bad("members", f"{_few(twice)} appear more than once")
    return unique


def _check_members(names: set[str], expected: set[str]) -> None:
    missing = sorted(expected - names)
    if missing:
        raise _bad(missing[0].removesuffix(".npy"), "missing")
    extra = sorted(names - expected)
    if extra:
        raise _bad("members", f"unexpected {_few(extra)} (the header implies {len(expected)} members)")


def _few(names: list[str]) -> str:
    shown = ", ".join(repr(name[:100]) for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ----------------------------------------------------------------- reading .npy members
class _Bounded:
    """A reader of at most ``limit`` bytes of ``raw``, counting what it has given."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw, self.limit, self.consumed = raw, limit, 0

    def read(self, n: int | None = -1) -> bytes:
        left = self.limit - self.consumed
        n = left if n is None or n < 0 else min(n, left)
        data = self.raw.read(n) if n > 0 else b""
        self.consumed += len(data)
        return data


_NPY_HEADER_LOCK = threading.Lock()
_NPY_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def _read_floats(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The finite float32/float64 array of exactly ``shape`` in member ``name``."""
    array = _read_npy(archive, name, FLOAT_DTYPES, shape, math.prod(shape))
    if not np.isfinite(array).all():
        raise _bad(name, f"contains {'NaN' if np.isnan(array).any() else 'inf'}")
    return array


def _read_npy(
    archive: zipfile.ZipFile, name: str, dtypes: tuple[np.dtype, ...], shape: tuple[int, ...] | None, max_items: int
) -> np.ndarray:
    """Member ``name`` as an array of one of ``dtypes``, of ``shape`` (or any 1-D shape
    up to ``max_items``), checking sizes before allocating and reading at most those."""
    limit = max_items * max(d.itemsize for d in dtypes) + NPY_PREAMBLE + NPY_HEADER_LIMIT
    with _untrusted(name):
        info = archive.getinfo(f"{name}.npy")
        _check_zip_entry(info, name, limit)
        with archive.open(info) as raw:
            reader = _Bounded(raw, info.file_size)
            version = npy_format.read_magic(reader)
            if version not in _NPY_HEADER_READERS:
                raise _bad(name, f".npy format version {version} is not supported")
            with _NPY_HEADER_LOCK:  # NumPy parses it with ast, which CPython 3.11 cannot run in two threads at once
                found, fortran, dtype = _NPY_HEADER_READERS[version](reader, max_header_size=NPY_HEADER_LIMIT)
            _check_layout(name, found, dtype, shape, dtypes, max_items)
            nbytes = math.prod(found) * dtype.itemsize
            if reader.consumed + nbytes != info.file_size:
                raise _bad(name, f"holds {info.file_size - reader.consumed} bytes of data, "
                                 f"its shape {found} and dtype {dtype} take {nbytes}")
            array = _read_exactly(reader, name, found, dtype, fortran)
            if raw.read(1):
                raise _bad(name, "holds more data than its size declares")
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _check_zip_entry(info: zipfile.ZipInfo, name: str, limit: int) -> None:
    if info.flag_bits & 0x1:
        raise _bad(name, "is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _bad(name, f"uses compression method {info.compress_type} (only stored or deflate are read)")
    if info.file_size > limit:
        raise _bad(name, f"expands to {info.file_size} bytes, more than the {limit} its array may take")


def _check_layout(
    name: str, found: tuple[int, ...], dtype: np.dtype, shape: tuple[int, ...] | None,
    dtypes: tuple[np.dtype, ...], max_items: int,
) -> None:
    if dtype.hasobject:
        raise _bad(name, "holds Python objects (pickle), which are never loaded")
    if dtype.newbyteorder("=") not in dtypes:
        raise _bad(name, f"has dtype {dtype}, expected {' or '.join(str(d) for d in dtypes)}")
    if shape is not None and tuple(found) != tuple(shape):
        raise _bad(name, f"has shape {tuple(found)}, expected {tuple(shape)}")
    if shape is None and (len(found) != 1 or not 0 <= found[0] <= max_items):
        raise _bad(name, f"has shape {tuple(found)}, expected one dimension of at most {max_items}")


def _read_exactly(
    reader: _Bounded, name: str, shape: tuple[int, ...], dtype: np.dtype, fortran: bool
) -> np.ndarray:
    flat = np.empty(math.prod(shape), dtype=dtype)
    into = flat.view(np.uint8)
    done = 0
    while done < into.size:
        chunk = reader.read(min(READ_CHUNK, into.size - done))
        if not chunk:
            raise _bad(name, f"is truncated after {done} of {into.size} bytes")
        into[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        done += len(chunk)
    return flat.reshape(shape, order="F" if fortran else "C")


# ------------------------------------------------------------------- the JSON header
def _read_header(archive: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_npy(archive, HEADER, (np.dtype(np.uint8),), None, MAX_HEADER_BYTES)
    with _untrusted(HEADER):
        header = json.loads(raw.tobytes().decode("utf-8"))
    _check_tree(header)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError("not an anyxp checkpoint (wrong format tag)")
    version = header.get("version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise _bad("version", f"checkpoint format version {version!r} is not supported "
                              f"(this anyxp reads version {FORMAT_VERSION})")
    _check_fields(header)
    return header


def _check_tree(header: Any) -> None:
    """Every number finite, nothing nested deeper than a header ever is (iteratively)."""
    stack: list[tuple[Any, str, int]] = [(header, HEADER, 0)]
    while stack:
        value, field, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _bad(field, f"nests deeper than {MAX_NESTING} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(field, f"is {value}, expected a finite number")
        if isinstance(value, dict):
            stack.extend((v, f"{field}.{k}" if depth else k, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{field}[{i}]", depth + 1) for i, v in enumerate(value))


def _check_fields(header: dict[str, Any]) -> None:
    """The header's own fields, by name and kind; configs are checked as they are used."""
    for key in header:
        if key not in REQUIRED_FIELDS and key not in OPTIONAL_FIELDS:
            raise _bad(key[:100], "is not a field of an anyxp checkpoint")
    for key, kind in OPTIONAL_FIELDS.items():
        if key in header:
            _check_kind(header[key], kind, key)
    built = header.get("built", True)
    for key, kind in REQUIRED_FIELDS.items():
        if key not in header:
            raise _bad(key, "missing")
        if not built and key == "input_size" and header[key] is None:
            continue  # an unbuilt network may not know its input size yet
        _check_kind(header[key], kind, key)
    if header["dtype"] not in ("float32", "float64"):
        raise _bad("dtype", f"is {header['dtype']!r}, expected 'float32' or 'float64'")
    for i, metric in enumerate(header["metrics"]):
        if not isinstance(metric, str | dict):
            raise _bad(f"metrics[{i}]", f"is {str(metric)[:60]}, expected a name or {{name, config}}")
        if isinstance(metric, dict):
            _check_entry(metric, f"metrics[{i}]", ("name", "config"))
    fewest = 1 if built else 0
    if not fewest <= len(header["layers"]) <= MAX_LAYERS:
        raise _bad("layers", f"holds {len(header['layers'])} layers, expected {fewest} to {MAX_LAYERS}")
    _check_entry(header["loss"], "loss", ("name", "config"))
    _check_entry(header["optimizer"], "optimizer", ("name", "config", "steps"))
    steps = header["optimizer"]["steps"]
    _check_kind(steps, "natural", "optimizer.steps")
    if steps > MAX_STEPS:
        raise _bad("optimizer.steps", f"is {steps}, more than {MAX_STEPS}")
    if not built and steps != 0:
        raise _bad("optimizer.steps", f"is {steps}, but the network is not built (expected 0)")
    if "rng_state" in header:
        _check_rng_state(header["rng_state"])
    if "training" in header:
        if not built:
            raise _bad("training", "is present, but the network is not built")
        _check_training(header["training"])


def _check_training(training: dict[str, Any]) -> None:
    """The training state's JSON (its meaning is `BackupAndRestore`'s to check): known
    fields of JSON scalars, histories of numbers, a few well-named arrays."""
    known = {"epoch": "natural", "stopped": "bool", "history": "dict", "callbacks": "list", "arrays": "list"}
    for key in training:
        if key not in known:
            raise _bad(f"training.{key[:100]}", "is not a field of an anyxp checkpoint")
    for key, kind in known.items():
        if key not in training:
            raise _bad(f"training.{key}", "missing")
        _check_kind(training[key], kind, f"training.{key}")
    for key, values in training["history"].items():
        if not isinstance(values, list) or not all(v is None or _is_number(v) for v in values):
            raise _bad(f"training.history.{key[:100]}", "is not a list of numbers")
    for i, entry in enumerate(training["callbacks"]):
        _check_entry(entry, f"training.callbacks[{i}]", ("class", "config"))
    names = training["arrays"]
    if len(names) > MAX_TRAINING_ARRAYS or len(set(map(str, names))) != len(names):
        raise _bad("training.arrays", f"must name at most {MAX_TRAINING_ARRAYS} distinct arrays")
    for name in names:
        if not isinstance(name, str) or not ARRAY_NAME.fullmatch(name):
            raise _bad("training.arrays", f"holds {str(name)[:100]!r}, not an array name")


def _check_entry(entry: Any, field: str, keys: tuple[str, ...], list_items: int = 0) -> None:
    """A ``{"name"/"class": str, "config": {...}, ...}`` entry of the header; with
    ``list_items``, config values may also be lists of up to that many numbers."""
    _check_kind(entry, "dict", field)
    for key in entry:
        if key not in keys:
            raise _bad(f"{field}.{key[:100]}", "is not a field of an anyxp checkpoint")
    for key in keys:
        if key not in entry:
            raise _bad(f"{field}.{key}", "missing")
    _check_kind(entry[keys[0]], "str", f"{field}.{keys[0]}")
    _check_config(entry["config"], f"{field}.config", list_items)


def _check_config(config: Any, field: str, list_items: int = 0) -> None:
    _check_kind(config, "dict", field)
    for key, value in config.items():
        if list_items and isinstance(value, list):
            if len(value) > list_items or not all(map(_is_number, value)):
                raise _bad(f"{field}.{key[:100]}", f"is not a list of at most {list_items} finite numbers")
            continue
        _check_kind(value, CONFIG_FIELDS.get(key, "scalar"), f"{field}.{key[:100]}")


def _check_rng_state(state: Any) -> None:
    """NumPy's PCG64 state: ``{"bit_generator": "PCG64", "state": {"state", "inc"},
    "has_uint32", "uinteger"}``, every number in range."""
    keys = {"bit_generator", "state", "has_uint32", "uinteger"}
    if set(state) != keys or state["bit_generator"] != "PCG64":
        raise _bad("rng_state", "is not the state of a PCG64 generator")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"}:
        raise _bad("rng_state.state", "is not a PCG64 state ({'state': ..., 'inc': ...})")
    for field, value, bound in (
        ("rng_state.state.state", inner["state"], 2**128),
        ("rng_state.state.inc", inner["inc"], 2**128),
        ("rng_state.has_uint32", state["has_uint32"], 2),
        ("rng_state.uinteger", state["uinteger"], 2**32),
    ):
        _check_kind(value, "natural", field)
        if value >= bound:
            raise _bad(field, f"is {value}, expected less than {bound}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "count": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "natural": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "number": (_is_number, "a finite number"),
    "numbers": (lambda v: isinstance(v, list) and len(v) <= 16 and all(map(_is_number, v)), "a list of numbers"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "scalar": (lambda v: v is None or isinstance(v, str | bool) or _is_number(v), "a string, number or boolean"),
}


def _check_kind(value: Any, kind: str, field: str) -> None:
    if kind == "regularizer":  # {"name": "L2", "l2": number, ...}
        _check_kind(value, "dict", field)
        kind = "activation"
    if kind == "activation":  # a name, or {"name": ..., parameter: number, ...}
        if isinstance(value, dict):
            _check_kind(value.get("name"), "str", f"{field}.name")
            for key, param in value.items():
                if key != "name":
                    _check_kind(param, "number", f"{field}.{key[:100]}")
            return
        kind = "str"
    if kind == "learning_rate":  # a number, or {"schedule": name, "config": {...}}
        if isinstance(value, dict):
            _check_entry(value, field, ("schedule", "config"), list_items=MAX_SCHEDULE_POINTS)
            return
        kind = "number"
    test, expected = _KINDS[kind]
    if not test(value):
        shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:60]}..."
        raise _bad(field, f"is {shown}, expected {expected}")


# ------------------------------------------------------------------- building the network
@contextlib.contextmanager
def _constructing(field: str) -> Iterator[None]:
    """Name ``field`` in the errors that anyxp's constructors raise for the (checked)
    values of a header: they say what is wrong, the field says where."""
    try:
        yield
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise _bad(field, str(exc)) from None


def _network_from(header: dict[str, Any], backend: Any, file_size: int) -> Network:
    """The network the header describes, built (with fresh weights), after checking that
    the file can hold the arrays it declares; unbuilt where the header says so."""
    from .network import Network, _resolve_metrics

    layer_list = [_layer_from(entry, i) for i, entry in enumerate(header["layers"])]
    loss_name, loss_config = header["loss"]["name"], header["loss"]["config"]
    if loss_name not in LOSSES:
        raise _bad("loss.name", f"unknown loss {loss_name[:100]!r}")
    with _constructing("loss.config"):
        loss = LOSSES[loss_name](**loss_config)
    opt = header["optimizer"]
    if opt["name"] not in OPTIMIZERS:
        raise _bad("optimizer.name", f"unknown optimizer {opt['name'][:100]!r}")
    with _constructing("optimizer.config"):
        optimizer = optimizer_from_config(opt["name"], opt["config"])
    with _constructing("metrics"):
        metrics = [entry if isinstance(entry, str) else metric_from_config(entry["name"], entry["config"])
                   for entry in header["metrics"]]
        _resolve_metrics(metrics, loss)
    with _constructing("layers"):
        net = Network(  # layers added one by one: a network knowing its input size is built at construction
            None, input_size=header["input_size"], loss=loss, optimizer=optimizer, backend=backend,
            dtype=header["dtype"], seed=header["seed"], name=header["name"], metrics=metrics,
        )
        for layer in layer_list:
            net.add(layer)
    if not header.get("built", True):
        return net
    kept = len(header.get("training", {}).get("arrays", []))  # copies of the parameters and state
    _check_declared_size(net, len(optimizer.state_names), kept, file_size)
    with _constructing("layers"):
        net.build(header["input_size"])
    return net


def _layer_from(entry: Any, i: int) -> Any:
    field = f"layers[{i}]"
    _check_entry(entry, field, ("class", "config"))
    cls = LAYER_TYPES.get(entry["class"])
    if cls is None:
        raise _bad(f"{field}.class", f"unknown layer type {entry['class'][:100]!r} (a layer of your own must be "
                                     "registered with anyxp.register before loading)")
    with _constructing(field):
        return cls.from_config(dict(entry["config"]))


def _check_declared_size(net: Network, states: int, kept: int, file_size: int) -> None:
    """Refuse a header whose arrays (weights, non-trainable state, ``states`` optimizer
    buffers of the parameters' size and ``kept`` training-state copies of both) take more
    bytes than the file holds: `save` stores them uncompressed. Counted, not allocated."""
    params = values = 0
    size = net.input_size
    for i, layer in enumerate(net.layers):
        with _constructing(f"layers[{i}]"):
            count, state = layer.size_for(size)
            size = layer.compute_output_size(size)
        params, values = params + count, values + state
    nbytes = (params * (1 + states) + values + kept * (params + values)) * np.dtype(net.dtype_name).itemsize
    if nbytes > file_size:
        raise _bad("layers", f"declare {params} parameters, {nbytes} bytes of arrays with the optimizer "
                             f"state: more than the whole file ({file_size} bytes)")
