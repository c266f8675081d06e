"""Shared helpers for the benchmarks: timing, memory sampling, model choice, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict, repeats: int, device, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per function; the functions run in turn within each repeat, in an order
    rotated every repeat, so drift (clocks, caches, other load) falls on all of them alike."""
    return {k: statistics.median(v) for k, v in time_samples(fns, repeats, device, warmup).items()}


def time_samples(fns: dict, repeats: int, device, warmup: int = 3) -> dict[str, list[float]]:
    """Every timing (ms) of :func:`time_interleaved`, per function."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated: no function always first
            fn = fns[name]
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            samples[name].append((time.perf_counter() - t) * 1000)
    return samples


def ratio_report(samples: dict[str, list[float]], keys, baseline: str = "plain") -> dict:
    """Timings of ``keys`` against ``baseline`` from :func:`time_samples`: median ms per function, the
    ratio of medians (``ratio_steered_vs_plain``), the ratio of the fastest runs (the lower envelope,
    least touched by interference on a shared host), each function's 10th-90th percentile spread, and
    the paired per-repeat ratios with their interval (:func:`paired_ratio`)."""
    ms = {k: statistics.median(v) for k, v in samples.items()}
    low = {k: min(v) for k, v in samples.items()}
    return {
        "ms": {k: round(v, 1) for k, v in ms.items()},
        "ratio_steered_vs_plain": {k: round(ms[k] / ms[baseline], 3) for k in keys},
        "ratio_of_fastest_runs": {k: round(low[k] / low[baseline], 3) for k in keys},
        "spread_ms_p10_p90": {k: _spread(v) for k, v in samples.items()},
        # per-repeat ratios: their median and its 95% bootstrap interval (pairing cancels drift)
        "paired_ratios": {k: paired_ratio(samples, k, baseline) for k in keys},
    }


def paired_ratio(samples: dict[str, list[float]], key: str, baseline: str, seed: int = 0) -> dict:
    """``key`` against ``baseline`` repeat by repeat (the two ran back to back in each repeat of
    :func:`time_samples`): the median of the per-repeat ratios, a 95% bootstrap interval of that
    median, and the number of repeats. Pairing cancels drift that a ratio of medians keeps."""
    import random

    ratios = [a / b for a, b in zip(samples[key], samples[baseline], strict=True)]
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return {
        "median": round(statistics.median(ratios), 4),
        "ci95": [round(boots[49], 4), round(boots[1949], 4)],
        "n": len(ratios),
    }


def _spread(v: list[float]) -> list[float]:
    """10th and 90th percentile (one repeat: its time twice)."""
    q = statistics.quantiles(v, n=10) if len(v) > 1 else [v[0]]
    return [round(q[0], 1), round(q[-1], 1)]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the process's resident memory every 20 ms in a thread; ``peak`` after the block."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def model_args(parser, batch: int = 16, seq_len: int = 64, repeats: int = 15):
    """The arguments every benchmark takes: which model, where, and the batch it times."""
    parser.add_argument(
        "--model", default="default", help="'default', 'llama3-8b-shape' or any load_model name"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--seq-len", type=int, default=seq_len)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def device_name(device) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def load(model_name: str, device: str, dtype: str | None):
    import interp
    from interp.testing import LLAMA3_8B_SHAPE, tiny_model

    if model_name == "launch-bound":  # 32 layers 64 wide: per-kernel and per-hook costs dominate, as on a GPU
        model = tiny_model("llama", num_hidden_layers=32, device=device)
        model.name = "launch-bound (random 32-layer, 64-wide llama)"
        return model
    if model_name == "llama3-8b-shape":
        model = tiny_model(
            "llama", dtype=getattr(torch, dtype or "bfloat16"), device=device, **LLAMA3_8B_SHAPE
        )
        model.name = "llama3-8b-shape (random weights)"
        return model
    return interp.load_model(model_name, dtype=dtype, device=device)


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path


def concurrent_load(call, n: int, concurrency: int) -> tuple[list, list, list[str], float]:
    """``call(k)`` for k in ``range(n)``, from ``concurrency`` client threads taking the next job as
    they finish one: ``(answers, latencies_ms, errors, wall_s)``. A failed call leaves its answer
    None and its error in ``errors`` (counted and reported, never raised)."""
    import threading

    answers, latencies, errors = [None] * n, [None] * n, []
    lock, jobs = threading.Lock(), iter(range(n))

    def worker():
        while True:
            with lock:
                k = next(jobs, None)
            if k is None:
                return
            t = time.perf_counter()
            try:
                answers[k] = call(k)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(e).__name__}: {e}")
            latencies[k] = (time.perf_counter() - t) * 1000

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return answers, latencies, errors, time.perf_counter() - t0
