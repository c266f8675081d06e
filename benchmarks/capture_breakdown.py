"""Where capture time goes: forward with no-op hooks, with capture hooks, with and without early stop.

Each ratio is the median of per-repeat ratios against the plain forward (``paired_ratios_vs_forward``
adds the 95% bootstrap interval and the number of repeats).

python benchmarks/capture_breakdown.py --model llama3-8b-shape --device cuda --batch 32 --seq-len 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from capture import random_batch  # noqa: E402
from common import device_name, load, model_args, paired_ratio, time_samples, write  # noqa: E402

from interp.capture import capture_batch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    model_args(p, repeats=30)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    model = load(args.model, args.device, args.dtype)
    batch = random_batch(model, args.batch, args.seq_len)
    layers = model.layers

    def forward():
        with torch.inference_mode():
            model.model(**batch.inputs)

    def noop_hooks():
        handles = [m.register_forward_hook(lambda *a: None) for m in layers]
        try:
            forward()
        finally:
            for h in handles:
                h.remove()

    def slice_hooks():
        got = []
        handles = [m.register_forward_hook(lambda mod, a, out: got.append(out[:, -1])) for m in layers]
        try:
            forward()
        finally:
            for h in handles:
                h.remove()
        torch.stack(got, 1).to("cpu", torch.float32)

    def hooks_no_stop():
        with model.hooks("all", "last", stop=False) as run:
            model.forward(batch)
        got = run.take()
        torch.stack([got[(i, "last")][0][0] for i in range(model.n_layers)], 1).to("cpu", torch.float32)

    def hooks_stop():
        with model.hooks("all", "last", stop=True) as run:
            model.forward(batch)
        got = run.take()
        torch.stack([got[(i, "last")][0][0] for i in range(model.n_layers)], 1).to("cpu", torch.float32)

    def capture():
        capture_batch(model, batch, layers="all", positions="last")

    fns = dict(
        forward=forward,
        noop_hooks=noop_hooks,
        slice_hooks=slice_hooks,
        hooks_no_stop=hooks_no_stop,
        hooks_stop=hooks_stop,
        capture=capture,
    )
    samples = time_samples(fns, args.repeats, args.device)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    paired = {k: paired_ratio(samples, k, "forward") for k in fns if k != "forward"}
    result = {
        "device": device_name(args.device),
        "model": model.name,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "ms": ms,
        "repeats": args.repeats,
        "ratio_vs_forward": {"forward": 1.0, **{k: v["median"] for k, v in paired.items()}},
        "paired_ratios_vs_forward": paired,
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        for name in ("forward", "capture"):
            with profile(activities=acts) as prof:
                fns[name]()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
            print(f"== {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    tag = "cpu" if args.device == "cpu" else "gpu"
    write(f"capture_breakdown_{tag}_{args.model.replace('/', '_')}", result)


if __name__ == "__main__":
    main()
