"""Turn ``bench/results/latest.json`` into one markdown table and a PNG chart.

    python -m bench.report                 # print the table, write bench/results/bench.png
    python -m bench.report --run --quick   # run the benchmark first (python -m bench.run)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.run import RESULTS
from bench.run import main as run_main

# the peer each anyxp backend is compared with: the best peer on the same library and dtype
PEERS = {("numpy", "float32"): ("numpy", "float32"), ("numpy", "float64"): ("numpy", "float64"),
         ("torch", "float32"): ("torch", "float32"), ("cupy", "float32"): ("torch-cuda", "float32")}


def _peak(report: dict[str, Any], library: str, dtype: str) -> float | None:
    """The machine's measured GEMM peak for ``dtype``: the best library's (CPU), or the
    GPU library's own on a GPU."""
    peaks = report.get("gemm_peak_gflops", {})
    if library in ("cupy", "torch-cuda"):
        return peaks.get(f"{library} {dtype}")
    cpu = [v for k, v in peaks.items() if k.endswith(dtype) and k.split()[0] in ("numpy", "torch")]
    return max(cpu) if cpu else None


def best_peer(rows: list[dict[str, Any]], library: str, dtype: str) -> dict[str, Any] | None:
    peers = [r for r in rows if not r["impl"].startswith("anyxp") and r["library"] == library
             and r["dtype"] == dtype]
    return max(peers, key=lambda r: r["samples_per_s"]) if peers else None


def markdown(report: dict[str, Any]) -> str:
    out = []
    m = report["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['num_threads']} threads, {b['architecture']})"
                     for b in m.get("blas", []))
    out.append(f"Mode: {report['mode']}; {report['started']}; {m['cpu']}, {m['cores']} cores; "
               f"numpy {m['numpy']} with {blas or '?'}; torch {m.get('torch', '-')} "
               f"({m.get('torch_threads', '-')} threads); OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}, "
               f"OPENBLAS_L2_SIZE={m['OPENBLAS_L2_SIZE']}.")
    peaks = report.get("gemm_peak_gflops", {})
    out.append("GEMM peak (2048^3, best of 5): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    out.append("")
    out.append("| workload | implementation | samples/s (median) | min–max | vs best peer | GFLOP/s "
               "| % of machine GEMM peak | accuracy |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for wl in report["workloads"]:
        w, rows = wl["workload"], wl["rows"]
        for r in rows:
            ratio = "-"
            if r["impl"] == "anyxp":
                key = PEERS.get((r["library"], r["dtype"]))
                peer = best_peer(rows, *key) if key else None
                if peer:
                    ratio = f"{r['samples_per_s'] / peer['samples_per_s']:.2f}x {peer['impl']}"
            peak = _peak(report, r["library"], r["dtype"])
            frac = f"{100 * r['gflops'] / peak:.0f}%" if peak else "-"
            name = f"**{r['label']}**" if r["impl"].startswith("anyxp") else r["label"]
            out.append(f"| {w['name']} | {name} | {r['samples_per_s']:,.0f} | {r['min']:,.0f}–{r['max']:,.0f} | "
                       f"{ratio} | {r['gflops']:.1f} | {frac} | {r['accuracy']:.3f} |")
    out.append("")
    out.append("GPU cost proxies (counted on array_api_strict, device1; PyTorch: ATen ops via TorchDispatchMode):")
    out.append("")
    out.append("| workload | anyxp ops/step | anyxp host syncs/step | anyxp syncs per fit (1 epoch) "
               "| PyTorch ATen ops/step | PyTorch fused-Adam ATen ops/step "
               "| with Dense-BatchNorm-activation blocks: anyxp ops/step (syncs/step) | PyTorch ATen ops/step |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for wl in report["workloads"]:
        ops = wl.get("ops", {})
        a, bn = ops.get("anyxp") or {}, ops.get("anyxp_batch_norm") or {}
        out.append(f"| {wl['workload']['name']} | {a.get('ops_per_step', '-')} | {a.get('syncs_per_step', '-')} | "
                   f"{a.get('syncs_per_epoch', '-')} | {ops.get('torch', '-')} | {ops.get('torch_fused', '-')} | "
                   f"{bn.get('ops_per_step', '-')} ({bn.get('syncs_per_step', '-')}) | "
                   f"{ops.get('torch_batch_norm', '-')} |")
    mem = [(wl["workload"]["name"], wl["peak_rss_mib"]) for wl in report["workloads"] if wl.get("peak_rss_mib")]
    if mem:
        out.append("")
        for name, rss in mem:
            parts = ", ".join(f"{k} {v:.0f} MiB" if v else f"{k} -" for k, v in rss.items())
            ratio = ""
            if rss.get("anyxp") and rss.get("hand NumPy"):
                ratio = f" (ratio {rss['anyxp'] / rss['hand NumPy']:.2f})"
            out.append(f"Peak RSS on {name} (fresh process: data + one training pass, float32): {parts}{ratio}.")
    return "\n".join(out)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wls = report["workloads"]
    fig, axes = plt.subplots(2, len(wls), figsize=(4.2 * len(wls), 7), squeeze=False)
    for col, wl in enumerate(wls):
        rows = wl["rows"]
        labels = [r["label"].replace(" [", "\n[") for r in rows]
        colors = ["tab:blue" if r["impl"] == "anyxp" else "tab:gray" for r in rows]
        ax = axes[0][col]
        ax.barh(labels, [r["samples_per_s"] for r in rows], color=colors)
        ax.set_title(wl["workload"]["name"] + ": samples/s")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax2 = axes[1][col]
        fracs = [100 * r["gflops"] / (_peak(report, r["library"], r["dtype"]) or float("inf")) for r in rows]
        ax2.barh(labels, fracs, color=colors)
        ax2.set_title("% of the machine's GEMM peak")
        ax2.invert_yaxis()
        ax2.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run the benchmark first")
    parser.add_argument("--quick", action="store_true", help="with --run: the quick mode")
    parser.add_argument("--input", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "bench.png")
    args, rest = parser.parse_known_args(argv)
    if args.run:
        run_main([*(["--quick"] if args.quick else []), "--out", str(args.input), *rest])
    if not args.input.exists():
        print(f"no results at {args.input}: run python -m bench.run first", file=sys.stderr)
        return 2
    report = json.loads(args.input.read_text())
    print(markdown(report))
    try:
        chart(report, args.png)
        print(f"\nchart: {args.png}")
    except ImportError:
        print("\n(matplotlib is not installed: no chart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
