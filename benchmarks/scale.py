"""Capture throughput across Ray workers against in-process capture, in one process (no GPU needed).

    python benchmarks/scale.py                     # SmolLM2 (offline), 2-core CPU -> results/scale_cpu_default.json
    python benchmarks/scale.py --prompts 2048 --device cuda --gpus-per-worker 1 --workers 1 2 4

The same prompts, shards and batches are captured to disk three ways: in this process (the baseline),
by one Ray worker, and by two. Each capture's start-up (Ray and its workers starting, each loading the
model) is timed apart from its capture, and the ratios exclude it: ``ratio_ray1_vs_inprocess`` is the
in-process prompts/s over one worker's (goal <= 1.10), ``scaling_2_vs_1`` two workers' prompts/s over
one worker's. Every run is checked equal to the in-process shards. On a CPU the workers share its
cores (Ray gives each worker ``--cpus`` / workers threads), so two workers cannot beat one by much
there; the ratio says what the Ray layer costs and whether splitting shards loses anything.

``generation``: the steering evaluation's generation step (``interp.evaluate.refusal``: greedy
answers under a steering vector, and the next-token refusal log-odds) on ``--generate`` prompts, in
this process and on a :class:`interp.RayPool` of one and of two workers (started before the timing:
the pool is what ``steering_eval.py --engine ray`` keeps for its whole run). Same ratios, and whether
every answer equals the in-process one (``same_answers``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, write  # noqa: E402

import interp  # noqa: E402


def prompts(n: int) -> list[str]:
    from interp.data import load

    base = load("harmbench").prompts + load("harmless").prompts
    return [base[i % len(base)] for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", type=int, default=384)
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cpus", type=int, default=2, help="CPU cores split among the workers")
    p.add_argument("--gpus-per-worker", type=float, default=0)
    p.add_argument("--generate", type=int, default=64, help="prompts for the generation part (0: skip it)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    args = p.parse_args()
    import ray

    rows = prompts(args.prompts)
    kw = dict(layers="all", positions="last", shard_size=args.shard_size, batch_size=args.batch_size)
    spec = interp.ModelSpec(args.model, device=args.device)
    work = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    model = spec.load()
    load_s = time.perf_counter() - t
    local = interp.capture(model, rows, out_dir=work / "local", **kw)
    reference = local.load()
    if args.generate:
        steering = [interp.steer.AddDirection(torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)),
                                              [model.n_layers // 2], alpha=4.0)]  # fmt: skip
        gen_kw = dict(interventions=steering, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        t = time.perf_counter()
        gen_ref = interp.evaluate.refusal(model, rows[: args.generate], **gen_kw)
        generation = {"inprocess": {"seconds": round(time.perf_counter() - t, 3)}}
    del model
    runs = {"inprocess": {**local.timing, "startup_s": round(load_s, 3)}}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    for n in args.workers:
        out = work / f"ray{n}"
        shards = interp.capture(
            spec,
            rows,
            out_dir=out,
            engine="ray",
            workers=n,
            cpus_per_worker=args.cpus / n,
            gpus_per_worker=args.gpus_per_worker,
            **kw,
        )
        got = shards.load()
        diff = float((got.tensors["last"] - reference.tensors["last"]).abs().max())
        runs[f"ray{n}"] = {
            **shards.timing,
            "max_abs_diff_vs_inprocess": diff,
            "same_ids": got.prompt_ids == reference.prompt_ids,
        }
        print(n, runs[f"ray{n}"], file=sys.stderr)
    if args.generate:
        for n in args.workers:
            t = time.perf_counter()
            with interp.RayPool(spec, n, args.gpus_per_worker, args.cpus / n) as pool:
                startup = time.perf_counter() - t
                t = time.perf_counter()
                got = interp.evaluate.refusal(spec, rows[: args.generate], engine=pool, **gen_kw)
                seconds = time.perf_counter() - t
            generation[f"ray{n}"] = {
                "startup_s": round(startup, 3),
                "seconds": round(seconds, 3),
                "same_answers": got.answers == gen_ref.answers,
                "same_refused": got.refused == gen_ref.refused,
                "mean_logodds_diff": abs(got.mean_logodds - gen_ref.mean_logodds),
            }
            print("generation", n, generation[f"ray{n}"], file=sys.stderr)
        for v in generation.values():
            v["prompts_per_s"] = round(args.generate / v["seconds"], 3)
    ray.shutdown()
    shutil.rmtree(work)
    rate = {k: v["prompts_per_s"] for k, v in runs.items()}
    result = {
        "benchmark": "scale",
        "model": args.model,
        "device": device_name(args.device),
        "prompts": args.prompts,
        "shard_size": args.shard_size,
        "batch_size": args.batch_size,
        "cpus": args.cpus,
        "runs": runs,
        "prompts_per_s": rate,
        **_ratios(rate),
        "generation": _generation_summary(generation, args) if args.generate else None,
        "startup_note": "startup_s: Ray starting and each worker loading the model (in-process: the model's "
        "load); the ratios exclude it",
        "torch": torch.__version__,
        "ray": ray.__version__,
    }
    tag = "cpu" if args.device == "cpu" else "gpu"
    print(write(f"scale_{tag}_{args.model}", result))


def _ratios(rate: dict) -> dict:
    """In-process over one worker's prompts/s, and two workers' over one's (None where not run)."""
    return {
        "ratio_ray1_vs_inprocess": round(rate["inprocess"] / rate["ray1"], 3) if "ray1" in rate else None,
        "scaling_2_vs_1": round(rate["ray2"] / rate["ray1"], 3) if {"ray1", "ray2"} <= set(rate) else None,
    }


def _generation_summary(runs: dict, args) -> dict:
    rate = {k: v["prompts_per_s"] for k, v in runs.items()}
    return {
        "prompts": args.generate,
        "max_new_tokens": args.max_new_tokens,
        "runs": runs,
        "prompts_per_s": rate,
        **_ratios(rate),
        "same_answers": all(v["same_answers"] for k, v in runs.items() if k != "inprocess"),
    }


if __name__ == "__main__":
    main()
