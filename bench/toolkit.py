"""What the training toolkit costs: a learning-rate schedule, gradient clipping and the
full epoch-metric set, beside plain anyxp, as a share of the training step.

    python -m bench.toolkit                                # W2 and W3, NumPy and PyTorch
    python -m bench.toolkit --workloads W2 --backends numpy --repeats 30

Per workload and library (float32, the workload's rows per epoch, Adam):

- **whole fits**: one-epoch fits of six networks: plain anyxp (``metrics=["accuracy"]``),
  a second plain one, one with an ExponentialDecay schedule, one with
  ``global_clipnorm=1.0``, one with all nine epoch metrics, and the toolkit: one with all
  three. Six new networks in each of ``repeats`` rounds, each warmed up by one epoch, then
  timed over one. Each cost is the median of the paired ratios to plain anyxp's epochs,
  minus 1; the second plain network's is what this machine's noise alone shows. The
  toolkit's is the number the target is about.
- **parts alone**, as a breakdown, each over plain anyxp's step time (its median epoch
  over its steps): the schedule's evaluation and the clipping (of the fit's last
  gradients, put back before each call), per step; the epoch-end statistics of all nine
  metrics minus those of ``accuracy`` alone, per epoch, spread over its steps. Alone, in
  warm caches, small host-side steps cost less than inside a fit.

It prints a markdown table and writes ``bench/results/toolkit.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import RESULTS, available, machine_facts
from bench.workloads import WORKLOADS, Workload, load

TARGET = 0.03  # issue 10: schedules, clipping and the full metric set together under 3% of the step
TOOLKIT_METRICS = ["accuracy", "precision", "recall", "f1", "auc", "top_k_accuracy", "mae", "mse", "r2"]


def median_time(fn: Callable[[], Any], repeats: int, number: int = 1) -> float:
    """Median seconds per call of ``fn`` (``number`` calls per sample), after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


# the networks of each round: (a schedule, global_clipnorm, all nine metrics)
KINDS = {"plain": (False, False, False), "plain again": (False, False, False), "schedule": (True, False, False),
         "clipping": (False, True, False), "all metrics": (False, False, True), "toolkit": (True, True, True)}


def network(w: Workload, backend: str, schedule: bool, clipping: bool, all_metrics: bool) -> Any:
    import anyxp as ax

    layers = [ax.Dense(units, "relu") for units in w.sizes[1:-1]] + [ax.Dense(w.sizes[-1], "softmax")]
    lr = ax.schedules.ExponentialDecay(w.lr, 1000, 0.96) if schedule else w.lr
    clipping = {"global_clipnorm": 1.0} if clipping else {}
    return ax.Network(layers, input_size=w.sizes[0], optimizer=ax.Adam(lr=lr, **clipping), backend=backend,
                      dtype="float32", seed=0, metrics=TOOLKIT_METRICS if all_metrics else ["accuracy"])


def measure(w: Workload, backend: str, repeats: int) -> dict[str, Any]:
    from anyxp.optimizers import _scheduled
    from anyxp.training import _metric_statistics

    xtr, ytr, _, _ = load(w)
    n = int(w.n_train * w.quick_epochs)
    steps = -(-n // w.batch_size)
    x = xtr[:n].astype(np.float32)
    y = np.eye(w.sizes[-1], dtype=np.float32)[ytr[:n]]
    be = network(w, backend, *KINDS["plain"]).backend
    x_dev, y_dev = be.asarray(x, dtype=be.float_dtype("float32")), be.asarray(y, dtype=be.float_dtype("float32"))

    def epoch(net: Any) -> float:
        start = time.perf_counter()
        net.fit(x_dev, y_dev, epochs=1, batch_size=w.batch_size, verbose=0)
        be.synchronize()
        return time.perf_counter() - start

    # new networks in each repeat: where a network's buffers lie in memory moves its speed by
    # a percent or two for as long as it lives, which must not pass for a cost of the toolkit
    times: dict[str, list[float]] = {name: [] for name in KINDS}
    for _ in range(repeats):
        nets = {name: network(w, backend, *kind) for name, kind in KINDS.items()}
        for net in nets.values():  # warm up (and move the schedule off step 0)
            epoch(net)
        for name, net in nets.items():
            times[name].append(epoch(net))
    plain, full = nets["plain"], nets["toolkit"]
    step = statistics.median(times["plain"]) / steps

    def paired(name: str) -> float:
        return statistics.median(a / b for a, b in zip(times[name], times["plain"], strict=True)) - 1

    # the parts alone, on the buffers the fits used: the last step's gradients, put back
    # before each clipping (so that it scales them as in the fit), and the epoch's outputs
    opt = full.optimizer
    saved = [be.asarray(be.to_numpy(g).copy(), dtype=g.dtype) for g in opt.grads]

    def put_back() -> None:
        for g, value in zip(opt.grads, saved, strict=True):
            g[...] = value

    def put_back_and_clip() -> None:
        put_back()
        opt.clip_gradients()

    schedule_s = median_time(lambda: _scheduled(opt.learning_rate, opt.steps), 9, 2000)
    clip_s = median_time(put_back_and_clip, 9, 200) - median_time(put_back, 9, 200)
    outputs = be.asarray(np.asarray(be.to_numpy(full._forward(x_dev, training=False))), dtype=full.dtype)
    metrics_all = median_time(lambda: be.to_numpy(_metric_statistics(full, outputs, y_dev, None)[0][0]), repeats)
    metrics_one = median_time(lambda: be.to_numpy(_metric_statistics(plain, outputs, y_dev, None)[0][0]), repeats)
    return {
        "workload": w.name, "library": backend, "rows": n, "steps": steps, "step_us": step * 1e6,
        "whole_fit": {name: paired(name) for name in KINDS if name != "plain"},
        "parts": {"schedule": schedule_s / step, "clipping": clip_s / step,
                  "metrics": (metrics_all - metrics_one) / steps / step},
        "schedule_us": schedule_s * 1e6, "clipping_us": clip_s * 1e6,
        "metrics_ms_per_epoch": (metrics_all - metrics_one) * 1e3, "repeats": repeats,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| workload | library | step | schedule | clipping | all metrics | **toolkit** | noise | parts alone: "
             "schedule, clipping, metrics |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        whole, p = r["whole_fit"], r["parts"]
        verdict = "under" if whole["toolkit"] < TARGET else "over"
        lines.append(
            f"| {r['workload']} | {r['library']} | {r['step_us']:,.0f} µs | {whole['schedule']:+.1%} | "
            f"{whole['clipping']:+.1%} | {whole['all metrics']:+.1%} | **{whole['toolkit']:+.1%}** ({verdict} 3%) | "
            f"{whole['plain again']:+.1%} | {p['schedule']:.2%} ({r['schedule_us']:.2f} µs), {p['clipping']:.2%} "
            f"({r['clipping_us']:.1f} µs), {p['metrics']:.2%} ({r['metrics_ms_per_epoch']:.2f} ms per epoch) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W2,W3")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS / "toolkit.json")
    args = parser.parse_args(argv)
    results = []
    for name in args.workloads.split(","):
        for backend in args.backends.split(","):
            if available(backend):
                results.append(measure(WORKLOADS[name], backend, args.repeats))
                print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_facts(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
