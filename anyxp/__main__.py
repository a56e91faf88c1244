"""The command line: ``anyxp train``, ``anyxp reproduce``, ``anyxp export``, ``anyxp info``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .backend import BACKEND_NAMES, available_backends, get_backend
from .errors import AnyxpError


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _scores_rows(run: Any) -> list[list[str]]:
    rows = []
    for split in ("train", "val", "test"):
        if split in run.scores:
            s = run.scores[split]
            rows.append([split, _fmt(s["loss"]), f"{100 * s['accuracy']:.2f}%" if "accuracy" in s else "-"])
    return rows


def _given(value: Any, default: Any) -> Any:
    """The value given on the command line (0 included), else the job's default."""
    return default if value is None else value


def _check_destination(path: str, option: str) -> None:
    """Refuse, before any training, a destination that could not be written at the end."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise ValueError(f"{option} {path}: is a directory")
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"{option} {path}: not writable")


def cmd_train(args: argparse.Namespace) -> int:
    from . import experiments

    if args.save:
        _check_destination(args.save, "--save")
    if args.plot:
        _check_destination(args.plot, "--plot")
        if importlib.util.find_spec("matplotlib") is None:
            raise ImportError("--plot needs matplotlib: pip install 'anyxp[plot]'")

    verbose = 0 if args.quiet else 1
    common = dict(backend=args.backend, device=args.device, dtype=args.dtype, seed=args.seed, verbose=verbose)
    comm = None
    if args.distributed:
        from . import distributed

        comm = distributed.init()
    if args.dataset == "digits":
        run = experiments.digits_run(
            epochs=_given(args.epochs, 500), batch_size=_given(args.batch_size, 25), lr=_given(args.lr, 0.1),
            patience=args.patience, comm=comm, **common,
        )
    elif args.dataset == "fashion-mnist":
        run = experiments.fashion_mnist_run(
            epochs=_given(args.epochs, 10), batch_size=_given(args.batch_size, 128), lr=_given(args.lr, 1e-3),
            comm=comm, **common,
        )
    elif comm is not None:
        raise SystemExit("--distributed runs the digits or fashion-mnist job")
    else:
        run = experiments.sign_vector_run(
            "14-100-40-4", epochs=_given(args.epochs, 10), batch_size=_given(args.batch_size, 32),
            lr=args.lr, **common,
        )
    net = run.network
    if comm is not None and not comm.is_main:
        return 0  # rank 0 prints and saves
    print()
    print(f"{run.name}: {run.settings}")
    info = [
        ["backend", f"{net.backend.name} {net.backend.version}"],
        ["device", str(net.backend.device)],
        ["processes", str(comm.size if comm is not None else 1)],
        ["dtype", net.dtype_name],
        ["epochs", str(run.epochs)],
        ["time (warmed up)", f"{run.seconds:.2f} s"],
    ]
    print(experiments.format_table(["", "value"], info))
    print()
    print(experiments.format_table(["split", "loss", "accuracy"], _scores_rows(run)))
    if args.save:
        net.save(args.save)
        print(f"\nsaved the network to {args.save}")
    if args.plot:
        run.history.plot(args.plot, title=run.name)
        print(f"saved the training curves to {args.plot}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import experiments

    runs = experiments.reproduce(backend=args.backend, device=args.device, verbose=0 if args.quiet else 1)
    rows = []
    for run in runs:
        split = "test" if "test" in run.scores else "train"
        acc = run.scores[split]["accuracy"]
        rows.append([run.name, run.settings, str(run.epochs), f"{run.seconds:.1f} s",
                     f"{100 * acc:.2f}% ({split})", run.published])
    backend = runs[0].network.backend
    print(f"\nanyxp {__version__} on {backend.name} {backend.version} ({backend.device})\n")
    print(experiments.format_table(
        ["experiment", "settings", "epochs", "time (warmed up)", "accuracy", "published"], rows))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    print(f"anyxp {__version__}, Python {platform.python_version()}, {platform.platform()}")
    print(f"numpy {np.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '-')}")
    for name, status in available_backends().items():
        line = f"  {name:17s} {'yes' if status.available else 'no '}  {status.reason}"
        if status.available:
            try:
                backend = get_backend(name)
                line += f"  [{backend.version}, device {backend.device}]"
            except Exception as exc:  # report, never crash
                line += f"  [{type(exc).__name__}: {exc}]"
        print(line)
    print(f"auto -> {get_backend('auto')!r}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load

    _check_destination(args.onnx, "MODEL.onnx")
    net = load(args.model, backend="numpy")  # the weights only pass through the host
    net.export_onnx(args.onnx, opset=args.opset)
    print(f"exported {args.model} ({net.name}, {net.dtype_name}) to {args.onnx}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anyxp", description="Train multilayer perceptrons on any array backend.")
    parser.add_argument("--version", action="version", version=f"anyxp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    backends = ["auto", *BACKEND_NAMES]

    def backend_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default="auto", choices=backends, help="array backend (default: auto)")
        p.add_argument("--device", default=None, help="device, e.g. cuda:1 (default: the library's)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train the digits network and print its scores")
    backend_args(train)
    train.add_argument("--dataset", default="digits", choices=["digits", "sign-vectors", "fashion-mnist"],
                       help="fashion-mnist reads Debian's dataset-fashion-mnist files")
    train.add_argument("--epochs", type=int, default=None, help="max epochs (digits: 500, early stopping)")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--patience", type=int, default=20, help="early-stopping patience (digits)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--save", metavar="PATH", help="save the trained network (.npz)")
    train.add_argument("--plot", metavar="PNG", help="save the training curves as a PNG")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI: mpirun -n 2 python -m mpi4py -m anyxp train --distributed")
    train.set_defaults(func=cmd_train)

    rep = sub.add_parser("reproduce", help="run the tutorials' experiments beside their published results")
    backend_args(rep)
    rep.set_defaults(func=cmd_reproduce)

    export = sub.add_parser("export", help="write a saved network's inference graph as ONNX (anyxp[onnx])")
    export.add_argument("model", metavar="MODEL.npz", help="a network saved with Network.save")
    export.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 21)")
    export.set_defaults(func=cmd_export)

    info = sub.add_parser("info", help="version, backends and devices")
    info.set_defaults(func=cmd_info)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None) is not None and args.device.isdigit():
        args.device = int(args.device)
    try:
        return args.func(args)
    except (AnyxpError, ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        print(f"anyxp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("anyxp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
