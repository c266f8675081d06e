"""Batched capture of residual-stream states; large prompt sets stream to disk and resume.

>>> acts = interp.capture(model, prompts, positions="last", layers="all", batch_size=16)
>>> acts = interp.capture(vlm, prompts, images=images, positions=["last", "image_mean"])
>>> acts = interp.capture(vlm, ["What is this?", "What is a bomb?"], images=[img, None])  # mixed is fine
>>> shards = interp.capture(model, big_list, out_dir="runs/acts")   # resumable; shards.load()
>>> shards = interp.capture("organism-vl", big_list, out_dir="runs/acts", engine="ray", workers=2)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from interp.activations import Activations
from interp.capture_job import BACKENDS, CaptureJob, capture_batch, progress_bar
from interp.edits import check_site
from interp.errors import InputError
from interp.inputs import normalize_images
from interp.layers import resolve_layers
from interp.models.hooked import HookedModel
from interp.positions import parse_positions
from interp.ray_pool import ENGINES, check_engine
from interp.shards import ActivationShards, ShardPlan

__all__ = ["ENGINES", "ActivationShards", "capture", "capture_batch"]


def capture(
    model,
    prompts: Sequence[str],
    images=None,
    positions="last",
    layers="all",
    batch_size: int = 16,
    labels: Sequence[str] | None = None,
    prompt_ids: Sequence[str] | None = None,
    chat_template=None,
    system: str | None = None,
    backend: str = "native",
    out_dir: str | Path | None = None,
    shard_size: int = 1024,
    dtype: torch.dtype = torch.float32,
    progress: bool | None = None,
    site: str = "resid",
    engine="local",
    workers: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    max_retries: int = 3,
) -> Activations | ActivationShards:
    """Capture hidden states at decoder-layer outputs for every prompt (and image).

    Returns :class:`Activations` in memory, or with ``out_dir`` an :class:`ActivationShards` handle on
    shards written as they finish (memory stays at one shard); running the same call again skips
    finished shards. ``backend`` = ``native`` (hooks), ``nnsight`` or ``transformer_lens``.
    ``site`` = ``resid`` (decoder-layer output), ``attn`` or ``mlp`` (what that block adds to the stream:
    its output, or the norm's after it in Gemma 2/3, :meth:`HookedModel.writer`; native only).
    ``images`` may mix image and text-only prompts (``None`` entries): they run in separate forwards,
    since a processor batch cannot mix them, and come back in prompt order.

    ``engine="ray"`` spreads the shards of an ``out_dir`` capture over ``workers`` Ray actors
    (:mod:`interp.ray_capture`): ``model`` is then how to load it (a name or path, an
    :class:`interp.ModelSpec` or a factory function), each worker loads its own copy, and the shards
    are those the local engine writes. ``max_retries``: restarts of a worker that dies, and retries of
    its shard. ``engine=<interp.RayPool>`` runs on a pool the caller keeps across calls (the models
    load once); ``workers`` and the resources are then the pool's.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise InputError("the prompt list is empty. Fix: pass at least one prompt.")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {BACKENDS}.")
    check_site(site)
    if site != "resid" and backend != "native":
        raise InputError(f"site={site!r} is captured by the native backend only. Fix: backend='native'.")
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size}; it must be at least 1.")
    check_engine(engine)
    pos = parse_positions(positions)
    per_image = normalize_images(images, len(prompts))
    ids = [str(i) for i in (prompt_ids if prompt_ids is not None else range(len(prompts)))]
    if len(ids) != len(prompts) or (labels is not None and len(labels) != len(prompts)):
        raise InputError("prompt_ids and labels need one entry per prompt.")
    if engine != "local":
        if out_dir is None:
            raise InputError(
                "engine='ray' writes shards: pass out_dir= (a directory every worker can reach)."
            )
        from interp.ray_capture import capture_on_ray

        settings = dict(
            positions=pos, layers=layers, batch_size=batch_size, chat_template=chat_template,
            system=system, backend=backend, dtype=dtype, site=site,
        )  # fmt: skip
        pool_options = dict(
            workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
            max_retries=max_retries,
        )  # fmt: skip
        return capture_on_ray(
            model, engine, settings, prompts, per_image, ids, labels, Path(out_dir), shard_size,
            pool_options, progress,
        )  # fmt: skip
    if not isinstance(model, HookedModel):
        raise InputError(
            f"capture needs a loaded model (interp.load_model), got {type(model).__name__}; a name or spec is "
            "for engine='ray', whose workers load the model themselves."
        )
    layer_ids = resolve_layers(layers, model.n_layers)
    job = CaptureJob(
        model, prompts, per_image, pos, layer_ids, batch_size, chat_template, system, backend, dtype, site
    )
    if out_dir is None:
        bar = progress_bar(progress, len(prompts), "capture")
        acts = job.run(0, len(prompts), ids, list(labels) if labels is not None else None, bar)
        bar.close()
        return acts
    return _capture_sharded(job, Path(out_dir), shard_size, ids, labels, progress)


def _capture_sharded(
    job: CaptureJob, directory: Path, shard_size: int, ids, labels, progress
) -> ActivationShards:
    key = job.key(job.model.fingerprint.to_dict(), ids, labels, shard_size)
    plan = ShardPlan.make(directory, key, len(job.prompts), shard_size)
    t0 = time.perf_counter()
    bar = progress_bar(progress, len(job.prompts), "capture")
    bar.update(plan.skipped)
    labels = list(labels) if labels is not None else None
    for name, start, stop in plan.todo:
        job.run(start, stop, ids, labels, bar).save(directory / name)
        plan.done(name)
        plan.write()
    bar.close()
    return plan.shards("local", 1, 0.0, time.perf_counter() - t0)
