"""Components of one's own: a `Layer`, an `Activation`, a `Loss` and an initializer
function train on every backend and pass the gradient check; `anyxp.register` makes them
savable (checkpoints, pickling) and refuses names anyxp uses; a file naming a class that
is not registered is refused without running anything; the README's example runs."""

from __future__ import annotations

import builtins
import io
import json
import math
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import anyxp as ax
from anyxp import activations, checkpoint, initializers, losses

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def registries() -> Iterator[None]:
    """Each test registers what it needs; whatever it registered is forgotten after it
    (registration is otherwise for the life of the process)."""
    tables = (checkpoint.LAYER_TYPES, activations.ACTIVATIONS, losses.LOSSES, initializers.INITIALIZERS)
    saved = [dict(table) for table in tables]
    yield
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)


# --------------------------------------------------------------------------- the components


class CustomScale(ax.Layer):
    """y = x * w + b, one learned factor and offset per feature; w drawn around ``center``."""

    def __init__(self, center: float = 1.0) -> None:
        super().__init__()
        self.center = float(center)
        self.param_names = ("w", "b")

    def initial_parameters(self, input_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"w": rng.uniform(self.center - 0.5, self.center + 0.5, size=input_size), "b": np.zeros(input_size)}

    def forward(self, x: Any, training: bool = False) -> Any:
        if training:
            self._x = x
        return x * self.w + self.b

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        self.grad_w[...] = self.xp.sum(dy * self._x, axis=0)
        self.grad_b[...] = self.xp.sum(dy, axis=0)
        return dy * self.w if need_input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {"center": self.center}


class ScaledTanh(ax.Activation):
    """alpha * tanh(x)."""

    name = "custom_scaled_tanh"

    def __init__(self, alpha: float = 1.5) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def apply(self, z: Any) -> Any:
        return self.alpha * self.xp.tanh(z)

    def derivative(self, z: Any, a: Any, da: Any) -> Any:
        t = self.xp.tanh(z)
        return da * (self.alpha * (1.0 - t * t))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class LogCosh(ax.Loss):
    """mean over outputs of log(cosh(out - y)), without overflow."""

    name = "custom_log_cosh"

    def per_sample(self, out: Any, y: Any, logits: bool, need_grad: bool) -> tuple[Any, Any]:
        xp = self.xp
        d = out - y
        ad = xp.abs(d)
        per = xp.mean(ad + xp.log1p(xp.exp(-2.0 * ad)) - math.log(2.0), axis=1)
        return per, (xp.tanh(d) * (1.0 / out.shape[1]) if need_grad else None)


def custom_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    limit = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-limit, limit, size=shape)


def register_all() -> None:
    for obj in (CustomScale, ScaledTanh, LogCosh, custom_uniform):
        ax.register(obj)


def make_net(backend: ax.Backend, dtype: str = "float32") -> ax.Network:
    return ax.Network(
        [ax.Dense(8, ScaledTanh(1.2), init=custom_uniform), CustomScale(center=1.0), ScaledTanh(0.9),
         ax.Dense(2, init=custom_uniform)],
        input_size=3, loss=LogCosh(), optimizer=ax.Adam(lr=0.02), backend=backend, dtype=dtype, seed=3,
    )


def data(n: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, np.sin(x @ rng.normal(size=(3, 2)))


# --------------------------------------------------------------------------- 1. training


def test_custom_components_train(backend: ax.Backend) -> None:
    net = make_net(backend)
    x, y = data()
    history = net.fit(x, y, epochs=25, batch_size=16, verbose=0)
    losses_ = history.history["loss"]
    assert all(map(math.isfinite, losses_)) and losses_[-1] < 0.5 * losses_[0]
    assert net.predict(x).dtype == np.float32
    np.testing.assert_allclose(net.evaluate(x, y)["loss"], float(np.mean(log_cosh(net.predict(x) - y))),
                               rtol=1e-5)


def log_cosh(d: np.ndarray) -> np.ndarray:
    return np.log(np.cosh(d.astype(np.float64)))


def test_network_gradients(backend: ax.Backend) -> None:
    net = make_net(backend, dtype="float64")
    x, y = data(10, seed=5)
    assert ax.check_gradients(net, x, y) < 1e-6


@pytest.mark.on_device
def test_layer_and_loss_gradients(backend: ax.Backend) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 5))
    ax.register(ScaledTanh)  # for the Dense layer: see test_gradients_of_unregistered_activations_in_dense
    for layer in (CustomScale(center=0.7), ScaledTanh(2.0), ax.Dense(4, ScaledTanh(0.5), init=custom_uniform)):
        layer.build(5, backend, backend.float_dtype("float64"), np.random.default_rng(0))
        assert ax.check_gradients(layer, x) < 1e-6, layer
    out = backend.asarray(rng.normal(size=(6, 2)), dtype=backend.float_dtype("float64"))
    targets = backend.asarray(rng.normal(size=(6, 2)), dtype=backend.float_dtype("float64"))
    assert ax.check_gradients(LogCosh(), out, targets) < 1e-6


@pytest.mark.on_device
@pytest.mark.parametrize("what", ["float64 Dense layer", "float32 network"])
def test_gradients_of_unregistered_activations_in_dense(backend: ax.Backend, what: str) -> None:
    x, y = data(10, seed=5)
    if what == "float32 network":
        assert ax.check_gradients(make_net(backend), x, y) < 1e-6
    else:
        layer = ax.Dense(4, ScaledTanh(0.5))
        layer.build(3, backend, backend.float_dtype("float64"), np.random.default_rng(0))
        assert ax.check_gradients(layer, x) < 1e-6


def test_summary_lists_the_custom_layer(backend: ax.Backend) -> None:
    text = make_net(backend).summary(print_fn=None)
    assert re.search(r"^1: CustomScale +\(None, 8\) +16 *$", text, re.MULTILINE), text
    assert re.search(r"^2: ScaledTanh +\(None, 8\) +0 *$", text, re.MULTILINE), text
    assert "Total params: 66\n" in text, text  # 3*8+8, 2*8, 0, 8*2+2
    assert "LogCosh()" in text


def test_size_is_probed_from_the_initial_parameters() -> None:
    assert CustomScale().size_for(5) == (10, 0)
    assert ScaledTanh().size_for(5) == (0, 0)
    with pytest.raises(ValueError, match=r"define its size_for"):
        CustomScale().size_for(1 << 17)


# --------------------------------------------------------------------------- 2. saving


UNREGISTERED = {  # what is left unregistered -> what the error names
    "layer": (CustomScale, r"layer 1 \(CustomScale\(center=1\.0\)\)"),
    "activation": (ScaledTanh, r"layer 0's activation ScaledTanh\(alpha=1\.2\)"),
    "loss": (LogCosh, r"the loss LogCosh\(\)"),
    "initializer": (custom_uniform, r"layer 0's initializer <function custom_uniform"),
}


@pytest.mark.parametrize("left_out", UNREGISTERED)
def test_saving_needs_registering(backend: ax.Backend, tmp_path: Path, left_out: str) -> None:
    missing, names = UNREGISTERED[left_out]
    for obj in (CustomScale, ScaledTanh, LogCosh, custom_uniform):
        if obj is not missing:
            ax.register(obj)
    net = make_net(backend)
    path = tmp_path / "net.npz"
    with pytest.raises(TypeError, match=names + r".*anyxp\.register"):
        net.save(path)
    assert list(tmp_path.iterdir()) == []  # not even a temporary file
    with pytest.raises(TypeError, match=r"anyxp\.register"):
        pickle.dumps(net)
    ax.register(missing)
    net.save(path)
    assert path.exists()


def test_registered_components_round_trip(backend: ax.Backend, tmp_path: Path) -> None:
    register_all()
    net = make_net(backend)
    x, y = data()
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    net.save(tmp_path / "net.npz")
    copies = [ax.load(tmp_path / "net.npz", backend=backend), pickle.loads(pickle.dumps(net))]
    for copy in copies:
        assert [type(layer) for layer in copy.layers] == [ax.Dense, CustomScale, ScaledTanh, ax.Dense]
        assert [layer.get_config() for layer in copy.layers] == [layer.get_config() for layer in net.layers]
        assert copy.layers[0].get_config()["init"] == "custom_uniform"
        assert type(copy.layers[0].activation) is ScaledTanh and copy.layers[0].activation.alpha == 1.2
        assert type(copy.loss) is LogCosh
        np.testing.assert_array_equal(copy.predict(x), net.predict(x))
        copy.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)  # the optimizer state came too
    net.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for copy in copies:
        for got, want in zip(copy.get_weights(), net.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_registered_names_work_as_strings(backend: ax.Backend) -> None:
    register_all()
    net = ax.Network([ax.Dense(4, "custom_scaled_tanh", init="custom_uniform"), ax.Dense(2)], input_size=3,
                     loss="custom_log_cosh", backend=backend, seed=0)
    assert type(net.layers[0].activation) is ScaledTanh and type(net.loss) is LogCosh
    assert net.layers[0].init == "custom_uniform"


def test_registered_names_with_capitals_work(backend: ax.Backend, tmp_path: Path) -> None:
    camel_tanh = type("CamelTanh", (ax.Tanh,), {"name": "CamelTanh"})  # no config: saved by its name
    camel_loss = type("CamelLoss", (LogCosh,), {"name": "CamelLoss"})
    ax.register(camel_tanh)
    ax.register(camel_loss)
    net = ax.Network([ax.Dense(2, camel_tanh())], input_size=3, loss=camel_loss(), backend=backend, seed=0)
    net.save(tmp_path / "net.npz")
    assert type(ax.load(tmp_path / "net.npz", backend=backend).layers[0].activation) is camel_tanh
    assert type(ax.Dense(2, "CamelTanh").activation) is camel_tanh
    assert type(ax.Network([ax.Dense(2)], input_size=3, loss="CamelLoss").loss) is camel_loss


# --------------------------------------------------------------------------- 3. loading an unknown type

HEADER = "anyxp.json.npy"


def edited(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the checkpoint at ``path`` with its JSON header changed."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(np.load(io.BytesIO(members[HEADER])).tobytes())
    change(header)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members[HEADER] = buffer.getvalue()
    out = path.with_name("edited.npz")
    with zipfile.ZipFile(out, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return out


def test_a_file_from_a_process_that_registered_its_layer(backend: ax.Backend, tmp_path: Path) -> None:
    """Saved where ``ElsewhereScale`` was registered, loaded here, where it is not."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import anyxp as ax

        @ax.register
        class ElsewhereScale(ax.Layer):
            def __init__(self):
                super().__init__()
                self.param_names = ("w",)

            def initial_parameters(self, input_size, rng):
                return {"w": np.ones(input_size)}

            def forward(self, x, training=False):
                return x * self.w

        ax.Network([ax.Dense(4), ElsewhereScale(), ax.Dense(2)], input_size=3, backend="numpy").save(sys.argv[1])
    """)
    path = tmp_path / "elsewhere.npz"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=ROOT, timeout=120)
    with pytest.raises(ax.CheckpointError, match=r"layers\[1\]\.class: unknown layer type 'ElsewhereScale' "
                                                 r"\(a layer of your own must be registered"):
        ax.load(path, backend=backend)


def set_field(*keys: Any) -> Callable[[str], Callable[[dict[str, Any]], None]]:
    def with_value(value: str) -> Callable[[dict[str, Any]], None]:
        def change(header: dict[str, Any]) -> None:
            node = header
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = value

        return change

    return with_value


# where a file may name a class or function -> the error's field
NAMED = {
    "layer class": (set_field("layers", 1, "class"), r"layers\[1\]\.class: unknown layer type"),
    "activation": (set_field("layers", 0, "config", "activation"), r"layers\[0\]: unknown activation"),
    "initializer": (set_field("layers", 0, "config", "init"), r"layers\[0\]: unknown initializer"),
    "loss": (set_field("loss", "name"), r"loss\.name: unknown loss"),
}


@pytest.mark.parametrize("where", NAMED)
@pytest.mark.parametrize("name", ["NotRegistered", "probe_module_never_imported.Payload",
                                  "probe_module_never_imported"])
def test_a_file_naming_what_is_not_registered_runs_nothing(
    backend: ax.Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, name: str
) -> None:
    """The names are looked up in anyxp's tables, never imported: a module that the file
    names, and that would write a marker if imported, stays unimported."""
    register_all()
    make_net(backend).save(tmp_path / "net.npz")
    marker = tmp_path / "imported"
    (tmp_path / "probe_module_never_imported.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Payload:\n    def __init__(self, *a, **k):\n"
        f"        open({str(marker)!r}, 'a').write('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    imported: list[str] = []
    real_import = builtins.__import__

    def recording_import(module: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(module)
        return real_import(module, *args, **kwargs)

    change, message = NAMED[where]
    path = edited(tmp_path / "net.npz", change(name))
    monkeypatch.setattr(builtins, "__import__", recording_import)
    with pytest.raises(ax.CheckpointError, match=message + r" '" + re.escape(name)):
        ax.load(path, backend=backend)
    monkeypatch.undo()
    assert not marker.exists()
    assert "probe_module_never_imported" not in sys.modules
    assert not [module for module in imported if "probe" in module or "NotRegistered" in module]


# --------------------------------------------------------------------------- 4. register


def activation_named(name: str, class_name: str = "SomeActivation") -> type:
    return type(class_name, (ScaledTanh,), {"name": name})


def taken_zeros(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape)


taken_zeros.__name__ = "zeros"

REFUSED: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    "activation named relu": (lambda: activation_named("relu"), ValueError,
                              r"as the activation 'relu': that name is taken by <class 'anyxp\.activations\.ReLU'>"),
    "activation named swish": (lambda: activation_named("swish"), ValueError, r"'swish': that name is taken"),
    "layer class Dense": (lambda: type("Dense", (CustomScale,), {}), ValueError,
                          r"as the layer type 'Dense': that name is taken by <class 'anyxp\.layers\.Dense'>"),
    "layer class ReLU": (lambda: type("ReLU", (CustomScale,), {}), ValueError,
                         r"layer type 'ReLU': that name is taken"),
    "loss named mse": (lambda: type("MyMSE", (LogCosh,), {"name": "mse"}), ValueError,
                       r"as the loss 'mse': that name is taken"),
    "initializer named zeros": (lambda: taken_zeros, ValueError, r"as the initializer 'zeros': that name is taken"),
    "a lambda": (lambda: lambda rng, a, b, shape: np.zeros(shape), ValueError, r"it has no usable name"),
    "activation without its own name": (lambda: type("Sub", (ScaledTanh,), {}), ValueError,
                                        r"Sub needs a class attribute name = '\.\.\.' of its own"),
    "subclass of a built-in": (lambda: type("MyReLU", (ax.ReLU,), {}), ValueError, r"MyReLU needs a class attribute"),
    "loss without its own name": (lambda: type("MyLoss", (LogCosh,), {}), ValueError, r"MyLoss needs a class"),
    "a number": (lambda: 42, TypeError, r"register takes a Layer, Activation or Loss subclass or an initializer "
                                        r"function, got 42"),
    "a string": (lambda: "CustomScale", TypeError, r"got 'CustomScale'"),
    "None": (lambda: None, TypeError, r"got None"),
    "a class of another kind": (lambda: dict, TypeError, r"got <class 'dict'>"),
    "an instance": (lambda: CustomScale(), TypeError, r"got CustomScale\(center=1\.0\)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_register_refuses(case: str) -> None:
    make, error, message = REFUSED[case]
    before = [dict(t) for t in (checkpoint.LAYER_TYPES, activations.ACTIVATIONS, losses.LOSSES,
                                initializers.INITIALIZERS)]
    with pytest.raises(error, match=message):
        ax.register(make())
    after = [dict(t) for t in (checkpoint.LAYER_TYPES, activations.ACTIVATIONS, losses.LOSSES,
                               initializers.INITIALIZERS)]
    assert after == before  # nothing replaced, nothing added
    assert activations.ACTIVATIONS["relu"] is ax.ReLU and checkpoint.LAYER_TYPES["Dense"] is ax.Dense


def test_a_refused_registration_changes_nothing() -> None:
    clashing = activation_named("fresh_activation", class_name="Dense")
    with pytest.raises(ValueError, match=r"layer type 'Dense'"):
        ax.register(clashing)
    assert "fresh_activation" not in activations.ACTIVATIONS
    ax.register(activation_named("fresh_activation", class_name="FreshActivation"))


def test_register_twice_and_as_a_decorator() -> None:
    @ax.register
    class DecoratedScale(CustomScale):
        pass

    assert isinstance(DecoratedScale, type) and checkpoint.LAYER_TYPES["DecoratedScale"] is DecoratedScale
    for obj in (DecoratedScale, ScaledTanh, LogCosh, custom_uniform):
        assert ax.register(obj) is obj
        assert ax.register(obj) is obj  # again: the same object under the same name is fine
    assert activations.ACTIVATIONS["custom_scaled_tanh"] is ScaledTanh
    assert checkpoint.LAYER_TYPES["ScaledTanh"] is ScaledTanh  # an activation is a layer too
    assert losses.LOSSES["custom_log_cosh"] is LogCosh
    assert initializers.INITIALIZERS["custom_uniform"] is custom_uniform
    other = type("DecoratedScale", (CustomScale,), {})  # another class under a registered name
    with pytest.raises(ValueError, match=r"layer type 'DecoratedScale': that name is taken"):
        ax.register(other)


# --------------------------------------------------------------------------- 5. bad initializers


def transposed(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros((fan_out, fan_in))


def flat(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(fan_in * fan_out)


def with_nan(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    w = rng.normal(size=shape)
    w[1, 0] = np.nan
    return w


def with_inf(rng: Any, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, -np.inf)


@pytest.mark.parametrize(("init", "problem"), [
    (transposed, r"an array of shape \(3, 2\)"),
    (flat, r"an array of shape \(6,\)"),
    (with_nan, r"non-finite values"),
    (with_inf, r"non-finite values"),
], ids=["transposed", "flat", "NaN", "inf"])
def test_a_bad_initializer_is_named_at_build(backend: ax.Backend, init: Any, problem: str) -> None:
    net = ax.Network([ax.Dense(3, init=init), ax.Dense(1)], loss="mse", backend=backend)  # not built yet
    message = rf"the initializer <function {init.__name__} at .*> returned {problem} for a kernel of shape \(2, 3\)"
    with pytest.raises(ValueError, match=message):
        net.build(2)
    with pytest.raises(ValueError, match=message):
        ax.Network([ax.Dense(3, init=init)], input_size=2, backend=backend)
    ax.register(init)  # a registered one is named by its name in the file, and checked the same
    with pytest.raises(ValueError, match=message):
        ax.Network([ax.Dense(3, init=init.__name__)], input_size=2, backend=backend)


# --------------------------------------------------------------------------- 6. the README


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Write your own layer\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    assert match, "no ```python block in the README's 'Write your own layer' section"
    return match.group(1)


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_example(), "README.md: Write your own layer", "exec"), namespace)
    assert (tmp_path / "scaled.npz").exists()
    net, x = namespace["net"], namespace["x"]
    loaded = ax.load("scaled.npz", backend=net.backend)
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Scale", "Dense"]
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
