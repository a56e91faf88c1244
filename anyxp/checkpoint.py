"""Checkpoints: one ``.npz`` file, no pickle, readable on any backend.

The file holds a JSON header (architecture, loss, optimizer, dtype, format version)
as a uint8 array named ``anyxp.json``, the weights as ``weight/<i>`` and the optimizer
state as ``optimizer/<name>``. It is read with ``allow_pickle=False``, so loading an
untrusted file cannot run code; every field is validated before a network is made.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import activations, layers
from .backend import to_numpy
from .errors import CheckpointError
from .losses import LOSSES, get_loss
from .optimizers import optimizer_from_config

if TYPE_CHECKING:
    from .network import Network

FORMAT = "anyxp-checkpoint"
FORMAT_VERSION = 1
HEADER = "anyxp.json"

LAYER_TYPES: dict[str, Any] = {
    "Dense": layers.Dense,
    "Dropout": layers.Dropout,
    **{cls.__name__: cls for cls in set(activations.ACTIVATIONS.values())},
}


def save(net: Network, path: str | Path) -> None:
    """Write ``net`` to ``path`` atomically (a temporary file, then a rename)."""
    from . import __version__

    net._require_built()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "anyxp_version": __version__,
        "name": net.name,
        "dtype": net.dtype_name,
        "input_size": net.input_size,
        "seed": net.seed,
        "metrics": net.metrics,
        "saved_from_backend": net.backend.name,
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in net.layers],
        "loss": {"name": net.loss.name, "config": net.loss.get_config()},
        "optimizer": {
            "name": net.optimizer.name,
            "config": net.optimizer.get_config(),
            "steps": net.optimizer.steps,
        },
        "rng_state": net.rng.bit_generator.state,
    }
    arrays = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, w in enumerate(net.get_weights()):
        arrays[f"weight/{i}"] = w
    for key, value in net.optimizer.state_arrays().items():
        arrays[f"optimizer/{key}"] = to_numpy(value)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".anyxp-", suffix=".npz", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, backend: Any = "auto", device: Any = None) -> Network:
    """Read a network saved with `Network.save`, onto ``backend``.

    Raises `CheckpointError` naming the file and the problem for a truncated,
    foreign or inconsistent file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable anyxp checkpoint: {exc}") from None
    try:
        return _network_from(files, backend, device)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} holds an invalid anyxp checkpoint: {exc}") from None


def _network_from(files: dict[str, np.ndarray], backend: Any, device: Any) -> Network:
    from .network import Network

    if HEADER not in files:
        raise CheckpointError("not an anyxp checkpoint (no anyxp.json header)")
    try:
        header = json.loads(files[HEADER].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError("not an anyxp checkpoint (wrong format tag)")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {header.get('version')!r} is not supported "
            f"(this anyxp reads version {FORMAT_VERSION})"
        )
    layer_list = []
    for entry in header["layers"]:
        cls = LAYER_TYPES.get(entry["class"])
        if cls is None:
            raise CheckpointError(f"unknown layer type {entry['class']!r}")
        layer_list.append(cls.from_config(dict(entry["config"])))
    loss_name = header["loss"]["name"]
    if loss_name not in LOSSES:
        raise CheckpointError(f"unknown loss {loss_name!r}")
    opt = header["optimizer"]
    net = Network(
        layer_list,
        input_size=header["input_size"],
        loss=get_loss(LOSSES[loss_name](**header["loss"]["config"])),
        optimizer=optimizer_from_config(opt["name"], opt["config"]),
        backend=backend,
        device=device,
        dtype=header["dtype"],
        seed=header["seed"],
        name=header["name"],
        metrics=header["metrics"],
    )
    net.build(header["input_size"])
    count = len(net.get_weights())
    weights = []
    for i in range(count):
        key = f"weight/{i}"
        if key not in files:
            raise CheckpointError(f"missing {key}")
        weights.append(files[key])
    extra = [k for k in files if k.startswith("weight/") and int(k.split("/")[1]) >= count]
    if extra:
        raise CheckpointError(f"unexpected arrays {extra}")
    net.set_weights(weights)
    state = {k.split("/", 1)[1]: v for k, v in files.items() if k.startswith("optimizer/")}
    with net.backend.activate():  # CuPy creates arrays on the current device
        net.optimizer.load_state_arrays(state, int(opt["steps"]))
    if "rng_state" in header:
        net.rng.bit_generator.state = header["rng_state"]
    return net
