"""What retrieval-guided correction costs: steered greedy generation on the organism VLM against plain
generation of the same image requests, in one process.

    python benchmarks/retrieval.py                       # CPU, organism-vl, 8 image requests

Writes benchmarks/results/steering_retrieval_<device>_organism-vl.json with
``ratio_steered_vs_plain.<variant>`` (median time of preparing the edits and generating under them,
over plain ``generate``; same prompts, images and number of new tokens) for the last-token pull, the
pull of last token and image-token mean, and the gated pull (the gate is read on the text run, so its
cost is the same whichever rows fire), plus the two parts of the preparation timed alone: the caption
generation and the whole preparation (captions + the text forms' prefill). Also the ratio of the
fastest runs (``ratio_of_fastest_runs``), the estimate least touched by interference, and each
function's 10th-90th percentile spread (``common.ratio_report``, shared with ``steering.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, ratio_report, time_samples, write  # noqa: E402

import interp  # noqa: E402
from interp.edits import Gate  # noqa: E402
from interp.organism.render import HELD_OUT_SEED, OBJECTS, render  # noqa: E402
from interp.steer import RetrievalGuided  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    torch.manual_seed(0)
    vlm = interp.load_model("organism-vl")
    objects = [OBJECTS[i % len(OBJECTS)] for i in range(args.batch)]
    prompts = [o.requests[1][1] for o in objects]
    images = [render(o.name, HELD_OUT_SEED + i) for i, o in enumerate(objects)]
    batch = vlm.encode(prompts, images=images)
    window = list(range(14, 17))
    direction = torch.randn(vlm.d_model, generator=torch.Generator().manual_seed(0))
    variants = {
        "retrieval_guided": RetrievalGuided(window, 0.5),
        "retrieval_both": RetrievalGuided(window, 0.5, positions=["last", "image_mean"]),
        "retrieval_gated": RetrievalGuided(
            window, 0.5, positions=["last", "image_mean"], gate=Gate(direction, 19, 0.0)
        ),
    }
    n = args.new_tokens

    def run(edits):
        with vlm.hooks(edits=edits):
            vlm.generate(batch, max_new_tokens=n, min_new_tokens=n)

    def steered(rg):
        def fn():
            edits, _ = rg.prepare(vlm, prompts, images)
            run(edits)

        return fn

    rg = variants["retrieval_guided"]
    fns = {
        "plain": lambda: run([]),
        **{k: steered(v) for k, v in variants.items()},
        "captions_only": lambda: rg.captions(vlm, images),
        "prepare_only": lambda: rg.prepare(vlm, prompts, images),
    }
    samples = time_samples(fns, repeats=args.repeats, device="cpu", warmup=1)
    report = ratio_report(samples, variants)
    ms = report["ms"]
    result = {
        "benchmark": "steering_retrieval",
        "model": vlm.name,
        "device": device_name("cpu"),
        "batch": args.batch,
        "new_tokens": n,
        "steering_layers": window,
        **report,
        "ratio_parts_vs_plain": {
            "captions_only": round(ms["captions_only"] / ms["plain"], 3),
            "prepare_only": round(ms["prepare_only"] / ms["plain"], 3),
        },
        "repeats": args.repeats,
        "cost": "one caption generation (up to 16 tokens) + one prefill of the text forms per batch",
        "torch": torch.__version__,
    }
    write("steering_retrieval_cpu_organism-vl", result)


if __name__ == "__main__":
    main()
