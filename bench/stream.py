"""Training on a memmap larger than memory can hold twice: one epoch of the W3 network
(784-512-512-10 ReLU, Adam, batch 128) streamed from a float32 memmap of ``--gb`` GB,
beside the same network on in-memory data that fits, measured in one run.

    python -m bench.stream --gb 8                # writes /var/tmp/anyxp-stream (kept for reruns)
    python -m bench.stream --gb 8 --dir /data --cold-fraction 0.1

Each training run is a fresh subprocess that samples its own ``RssAnon`` (anonymous
memory: not the memmap's file-backed pages) every 20 ms and reports the peak. The warm
run reads the file with the page cache holding it (it was just written or read); the
cold run first evicts the file's pages (``posix_fadvise(DONTNEED)``) and streams
``--cold-fraction`` of an epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FEATURES, CLASSES, BATCH = 784, 10, 128
CHUNK = 65_536  # rows written at a time


def write_data(folder: Path, gb: float) -> tuple[Path, Path]:
    """x (rows x 784 float32, standard normal) and y (labels of a fixed random teacher)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = int(gb * 1e9) // (FEATURES * 4)
    x_path, y_path = folder / "x.npy", folder / "y.npy"
    if x_path.exists() and y_path.exists() and np.load(x_path, mmap_mode="r").shape[0] == rows:
        return x_path, y_path
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    y = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.int64, shape=(rows,))
    for lo in range(0, rows, CHUNK):
        hi = min(rows, lo + CHUNK)
        block = rng.standard_normal((hi - lo, FEATURES), dtype=np.float32)
        x[lo:hi] = block
        y[lo:hi] = np.argmax(block @ teacher, axis=1)
    x.flush()
    y.flush()
    del x, y
    return x_path, y_path


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (the next read comes from the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def train(x_path: str, y_path: str, rows: int, stream: bool) -> dict[str, float]:
    """One epoch over the first ``rows`` rows (in a subprocess: `main` runs it), with its
    peak anonymous memory."""
    import threading

    import anyxp as ax

    peak = {"rss_anon": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak["rss_anon"] = max(peak["rss_anon"], int(line.split()[1]) * 1024)
            time.sleep(0.02)

    x = np.load(x_path, mmap_mode="r")[:rows]
    y = np.load(y_path, mmap_mode="r")[:rows]
    if not stream:
        x, y = np.array(x), np.array(y)  # in memory (the data fits)
    net = ax.Network([ax.Dense(512, "relu"), ax.Dense(512, "relu"), ax.Dense(CLASSES, "softmax")],
                     input_size=FEATURES, optimizer=ax.Adam(lr=1e-3), seed=0)
    warm = min(rows, 20 * BATCH)  # first calls, thread pools
    net.fit(x[:warm], y[:warm], epochs=1, batch_size=BATCH, verbose=0, stream=stream)
    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, stream=stream)
    seconds = time.perf_counter() - start
    done.set()
    return {"rows": rows, "seconds": seconds, "samples_per_s": rows / seconds,
            "peak_rss_anon_mib": peak["rss_anon"] / 2**20}


def _run(x_path: Path, y_path: Path, rows: int, stream: bool) -> dict[str, float]:
    code = (f"import json; from bench.stream import train; "
            f"print(json.dumps(train({str(x_path)!r}, {str(y_path)!r}, {rows}, {stream})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=8.0, help="size of the x memmap (default 8)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/anyxp-stream"))
    parser.add_argument("--in-memory-rows", type=int, default=100_000, help="rows of the in-memory reference")
    parser.add_argument("--cold-fraction", type=float, default=0.1, help="share of an epoch read cold")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    x_path, y_path = write_data(args.dir, args.gb)
    rows = int(np.load(x_path, mmap_mode="r").shape[0])
    print(f"data: {x_path} ({x_path.stat().st_size / 1e9:.2f} GB, {rows:,} rows), "
          f"written/found in {time.perf_counter() - started:.0f} s", flush=True)
    reference = _run(x_path, y_path, args.in_memory_rows, stream=False)
    print(f"in memory ({args.in_memory_rows:,} rows): {reference['samples_per_s']:,.0f} samples/s", flush=True)
    warm = _run(x_path, y_path, rows, stream=True)
    print(f"streamed, warm cache ({rows:,} rows): {warm['samples_per_s']:,.0f} samples/s "
          f"({warm['samples_per_s'] / reference['samples_per_s']:.2f}x in memory), "
          f"peak RssAnon {warm['peak_rss_anon_mib']:,.0f} MiB", flush=True)
    evict(x_path)
    evict(y_path)
    cold = _run(x_path, y_path, int(rows * args.cold_fraction), stream=True)
    print(f"streamed, cold cache ({cold['rows']:,} rows): {cold['samples_per_s']:,.0f} samples/s "
          f"({cold['samples_per_s'] / reference['samples_per_s']:.2f}x), peak RssAnon "
          f"{cold['peak_rss_anon_mib']:,.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
