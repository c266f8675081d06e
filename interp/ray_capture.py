"""Capture at dataset scale on Ray: shards split across workers, each holding its own copy of the model.

    >>> shards = interp.capture("organism-vl", prompts, images=images, out_dir="runs/acts",
    ...                         engine="ray", workers=2)            # the same shards as engine="local"
    >>> shards = interp.capture(interp.ModelSpec("llava-hf/llava-1.5-7b-hf", dtype="bfloat16", device="cuda"),
    ...                         prompts, out_dir="/shared/acts", engine="ray", workers=8, gpus_per_worker=1)

The workers are those of an :class:`interp.RayPool` (one started for the call, or the one passed as
``engine``): each loads the model once, from its spec (never pickled weights), and captures whole
shards. The driver plans the same shards as an in-process capture with ``out_dir`` (same manifest,
same key, same rows per shard and the same batches inside each), so the result equals single-process
capture and either engine resumes the other's directory. A worker that dies mid-shard is restarted by
Ray and its shard is captured again (shard files are written atomically, so a shard is there whole or
not at all); finished shards are never recomputed, and running the same call again after the driver
itself died resumes. ``out_dir`` must be reachable by every worker (a shared directory across machines).
"""

from __future__ import annotations

import time
from pathlib import Path

from interp.capture_job import CaptureJob, progress_bar
from interp.layers import resolve_layers
from interp.ray_pool import WorkerFailed, pool_for
from interp.shards import ActivationShards, ShardPlan


def capture_on_ray(
    model,
    engine,
    settings: dict,
    prompts: list[str],
    per_image,
    ids: list[str],
    labels,
    out_dir: Path,
    shard_size: int,
    pool_options: dict,
    progress,
) -> ActivationShards:
    """:func:`interp.capture`'s ``engine="ray"`` or ``engine=<RayPool>``. ``settings``: the
    :class:`~interp.capture_job.CaptureJob` fields other than the model and the rows, already checked
    (``layers`` as given: it is resolved against the workers' model)."""
    pool, owned = pool_for(engine, model, **pool_options)
    bar = None
    try:  # an owned pool goes whatever happens: done, refused, failed or interrupted
        settings = {**settings, "layers": resolve_layers(settings["layers"], pool.info["n_layers"])}
        planned = CaptureJob(None, prompts, per_image, **settings)  # the workers run this job, by shard
        key = planned.key(pool.info["fingerprint"], ids, labels, shard_size)
        plan = ShardPlan.make(out_dir, key, len(prompts), shard_size)
        bar = progress_bar(progress, len(prompts), f"capture (ray, {pool.workers} workers)")
        bar.update(plan.skipped)
        labels = list(labels) if labels is not None else None
        t0, rows = time.perf_counter(), 0
        tasks = [
            (
                f"shard {name} (prompts {start}-{stop - 1})",
                (
                    settings,
                    prompts[start:stop],
                    per_image[start:stop] if per_image is not None else None,
                    ids[start:stop],
                    labels[start:stop] if labels is not None else None,
                    str(out_dir / name),
                ),
                {},
            )
            for name, start, stop in plan.todo
        ]

        def done(i: int, _result) -> None:
            nonlocal rows
            name, start, stop = plan.todo[i]
            plan.done(name)
            plan.write()
            rows += stop - start
            bar.update(stop - start)
            bar.set_postfix_str(f"{rows / (time.perf_counter() - t0):.1f} prompts/s")

        try:
            pool.run(capture_shard, tasks, on_done=done)
        except WorkerFailed as e:
            raise WorkerFailed(f"{e} The finished shards are kept: run the same call again to resume.") from e
        startup = pool.startup_s if owned else 0.0
        return plan.shards("ray", pool.workers, startup, time.perf_counter() - t0)
    finally:
        if bar is not None:
            bar.close()
        if owned:
            pool.close()


def capture_shard(model, settings: dict, prompts, images, ids, labels, path: str) -> dict:
    """One shard, captured and written atomically on the worker (a :meth:`RayPool.run` task)."""
    t0 = time.perf_counter()
    job = CaptureJob(model, prompts, images, **settings)
    job.run(0, len(prompts), ids, labels, progress_bar(False, len(prompts), "shard")).save(Path(path))
    return {"rows": len(prompts), "seconds": time.perf_counter() - t0}
