"""`register`: your own layers, activations, losses and initializers, known by name to
checkpoints (`save` / `load`, pickling) as anyxp's own are.

A subclass of `Layer`, `Activation` or `Loss` trains without registering; registering
lets a checkpoint name it, and `load` rebuild it from its ``get_config()`` (numbers,
strings and booleans: the file is still untrusted, and no code is read from it). A file
naming a class that is not registered is a `CheckpointError` naming it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from . import activations, initializers, losses
from .base import Layer

T = TypeVar("T")


def register(obj: T) -> T:
    """Make ``obj`` known to checkpoints, by name; returns it (usable as a decorator).

    - a `Layer` subclass: by its class name;
    - an `Activation` subclass: also by its ``name``, for ``Dense(units, "name")``;
    - a `Loss` subclass: by its ``name``, for ``Network(loss="name")``;
    - a function ``(rng, fan_in, fan_out, shape) -> ndarray``: an initializer, by its
      ``__name__``, for ``Dense(init=fn)`` or ``Dense(init="name")``.

    Registering a name that anyxp (or an earlier registration) gives to something else is
    a `ValueError`: built-in names are never replaced.

    >>> @register
    ... class Scale(Layer): ...  # doctest: +SKIP
    """
    from .checkpoint import LAYER_TYPES

    entries: list[tuple[dict[str, Any], str, str]] = []  # (table, name, what): all checked, then added
    if isinstance(obj, type) and issubclass(obj, Layer):
        if issubclass(obj, activations.Activation):
            entries.append((activations.ACTIVATIONS, _name_of(obj), "activation"))
        entries.append((LAYER_TYPES, obj.__name__, "layer type"))
    elif isinstance(obj, type) and issubclass(obj, losses.Loss):
        entries.append((losses.LOSSES, _name_of(obj), "loss"))
    elif callable(obj) and not isinstance(obj, type):
        entries.append((initializers.INITIALIZERS, getattr(obj, "__name__", ""), "initializer"))
    else:
        raise TypeError(
            f"register takes a Layer, Activation or Loss subclass or an initializer function, got {obj!r}"
        )
    for table, name, what in entries:
        _check_free(table, name, obj, what)
    for table, name, _ in entries:
        table[name] = obj
    return obj


def _name_of(cls: type) -> str:
    name = getattr(cls, "name", None)
    inherited = any(getattr(base, "name", None) == name for base in cls.__mro__[1:])
    if not isinstance(name, str) or not name or inherited:
        raise ValueError(f"{cls.__name__} needs a class attribute name = '...' of its own to be registered")
    return name


def _check_free(table: dict[str, Any], name: str, obj: Any, what: str) -> None:
    if not name or name.startswith("<"):
        raise ValueError(f"cannot register {obj!r}: it has no usable name")
    known = table.get(name)
    if known is not None and known is not obj:
        raise ValueError(f"cannot register {obj!r} as the {what} {name!r}: that name is taken by {known!r}")
