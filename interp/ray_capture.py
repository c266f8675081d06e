"""Capture at dataset scale on Ray: shards split across workers, each holding its own copy of the model.

    >>> shards = interp.capture("organism-vl", prompts, images=images, out_dir="runs/acts",
    ...                         engine="ray", workers=2)            # the same shards as engine="local"
    >>> shards = interp.capture(interp.ModelSpec("llava-hf/llava-1.5-7b-hf", dtype="bfloat16", device="cuda"),
    ...                         prompts, out_dir="/shared/acts", engine="ray", workers=8, gpus_per_worker=1)

Each worker is a Ray actor that loads the model once, from its spec (never pickled weights), and
captures whole shards: the driver plans the same shards as an in-process capture with ``out_dir``
(same manifest, same key, same rows per shard and the same batches inside each), so the result equals
single-process capture and either engine resumes the other's directory. A worker that dies mid-shard
is restarted by Ray and its shard is captured again (shard files are written atomically, so a shard is
there whole or not at all); finished shards are never recomputed, and running the same call again
after the driver itself died resumes. A worker that cannot load the model fails the call at start,
with its error. ``out_dir`` must be reachable by every worker (a shared directory across machines).

Needs ``pip install "interp[ray]"``. Ray is started with ``ray.init()`` where it is not running yet
(set ``RAY_ADDRESS`` to join a cluster).
"""

from __future__ import annotations

import time
from pathlib import Path

from interp.capture_job import CaptureJob, progress_bar
from interp.errors import InputError
from interp.layers import resolve_layers
from interp.shards import ShardPlan
from interp.spec import ModelSpec


class CaptureWorker:
    """The Ray actor's class: loads the model at start (and again if Ray restarts the actor), then
    captures the shards it is given."""

    def __init__(self, spec: ModelSpec):
        self.model = spec.load()

    def info(self) -> dict:
        return {"fingerprint": self.model.fingerprint.to_dict(), "n_layers": self.model.n_layers}

    def capture_shard(self, settings: dict, prompts, images, ids, labels, path: str) -> dict:
        t0 = time.perf_counter()
        job = CaptureJob(self.model, prompts, images, **settings)
        job.run(0, len(prompts), ids, labels, progress_bar(False, len(prompts), "shard")).save(Path(path))
        return {"rows": len(prompts), "seconds": time.perf_counter() - t0}


def _ray():
    try:
        import ray
    except ImportError as e:
        raise InputError(
            "engine='ray' needs Ray, which is not installed. Fix: pip install 'interp[ray]', or use "
            "engine='local'."
        ) from e
    return ray


def capture_on_ray(
    model,
    prompts: list[str],
    per_image,
    positions: list,
    layers,
    batch_size: int,
    ids: list[str],
    labels,
    chat_template,
    system,
    backend: str,
    dtype,
    site: str,
    out_dir: Path,
    shard_size: int,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float,
    max_retries: int,
    progress,
):
    """:func:`interp.capture`'s ``engine="ray"`` (its arguments, already checked)."""
    ray = _ray()
    spec = ModelSpec.of(model)
    if workers < 1:
        raise InputError(f"workers={workers}; it must be at least 1.")
    t_start = time.perf_counter()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    actor = ray.remote(
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker,
        max_restarts=max_retries,
        max_task_retries=max_retries,
    )(CaptureWorker)
    pool = [actor.remote(spec) for _ in range(workers)]
    bar = None
    try:  # the workers go whatever happens: done, refused, failed or interrupted
        try:
            infos = ray.get([w.info.remote() for w in pool])
        except Exception as e:  # a worker that cannot load the model: fail now, with its error
            raise InputError(
                f"a Ray worker could not load the model {spec.describe()}: {_cause(e)}. Nothing was captured. "
                "Fix: check that the name, path or factory loads in a plain `interp.load_model` on the worker's "
                "machine."
            ) from e
        if len({str(i["fingerprint"]) for i in infos}) != 1:
            raise InputError(
                "the Ray workers loaded different models (their fingerprints differ); give one spec."
            )
        info = infos[0]
        settings = {
            "positions": positions,
            "layers": resolve_layers(layers, info["n_layers"]),
            "batch_size": batch_size,
            "chat_template": chat_template,
            "system": system,
            "backend": backend,
            "dtype": dtype,
            "site": site,
        }
        planned = CaptureJob(None, prompts, per_image, **settings)  # the workers run this job, by shard
        key = planned.key(info["fingerprint"], ids, labels, shard_size)
        plan = ShardPlan.make(out_dir, key, len(prompts), shard_size)
        bar = progress_bar(progress, len(prompts), f"capture (ray, {workers} workers)")
        bar.update(plan.skipped)
        labels = list(labels) if labels is not None else None
        t0, rows = time.perf_counter(), 0
        startup = t0 - t_start
        pending, queue, free = {}, list(plan.todo), list(pool)
        while queue or pending:
            while queue and free:
                worker, (name, start, stop) = free.pop(), queue.pop(0)
                ref = worker.capture_shard.remote(
                    settings,
                    prompts[start:stop],
                    per_image[start:stop] if per_image is not None else None,
                    ids[start:stop],
                    labels[start:stop] if labels is not None else None,
                    str(out_dir / name),
                )
                pending[ref] = (worker, (name, start, stop))
            ready, _ = ray.wait(list(pending), num_returns=1)
            worker, (name, start, stop) = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except Exception as e:
                if isinstance(getattr(e, "cause", None), InputError):  # the prompts' fault, not the worker's
                    raise e.cause from None
                raise InputError(
                    f"shard {name} (prompts {start}-{stop - 1}) failed on a Ray worker after {max_retries} "
                    f"retries: {_cause(e)}. The finished shards are kept: run the same call again to resume."
                ) from e
            plan.done(name)
            plan.write()
            rows += stop - start
            bar.update(stop - start)
            bar.set_postfix_str(f"{rows / (time.perf_counter() - t0):.1f} prompts/s")
            free.append(worker)
        return plan.shards("ray", workers, startup, time.perf_counter() - t0)
    finally:
        if bar is not None:
            bar.close()
        for w in pool:
            ray.kill(w)


def _cause(e: Exception) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[-1].rstrip('.') if text else ''}"
