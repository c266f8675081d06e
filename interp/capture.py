"""Batched capture of residual-stream states; large prompt sets stream to disk and resume.

>>> acts = interp.capture(model, prompts, positions="last", layers="all", batch_size=16)
>>> acts = interp.capture(vlm, prompts, images=images, positions=["last", "image_mean"])
>>> acts = interp.capture(vlm, ["What is this?", "What is a bomb?"], images=[img, None])  # mixed is fine
>>> shards = interp.capture(model, big_list, out_dir="runs/acts")   # resumable; shards.load()
>>> shards = interp.capture("organism-vl", big_list, out_dir="runs/acts", engine="ray", workers=2)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.activations import Activations, pad_dim
from interp.edits import check_site
from interp.errors import CorruptFileError, InputError
from interp.inputs import normalize_images, row_batches
from interp.layers import resolve_layers
from interp.models.hooked import HookedModel
from interp.positions import PromptLayout, parse_positions, reduce_prefill

BACKENDS = ("native", "nnsight", "transformer_lens")
ENGINES = ("local", "ray")


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
    engine: str = "local",
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
    its shard.
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
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {ENGINES}.")
    pos = parse_positions(positions)
    per_image = normalize_images(images, len(prompts))
    ids = [str(i) for i in (prompt_ids if prompt_ids is not None else range(len(prompts)))]
    if len(ids) != len(prompts) or (labels is not None and len(labels) != len(prompts)):
        raise InputError("prompt_ids and labels need one entry per prompt.")
    if engine == "ray":
        if out_dir is None:
            raise InputError(
                "engine='ray' writes shards: pass out_dir= (a directory every worker can reach)."
            )
        from interp.ray_capture import capture_on_ray

        return capture_on_ray(
            model,
            prompts,
            per_image,
            pos,
            layers,
            batch_size,
            ids,
            labels,
            chat_template,
            system,
            backend,
            dtype,
            site,
            Path(out_dir),
            shard_size,
            workers,
            gpus_per_worker,
            cpus_per_worker,
            max_retries,
            progress,
        )
    if not isinstance(model, HookedModel):
        raise InputError(
            f"capture needs a loaded model (interp.load_model), got {type(model).__name__}; a name or spec is "
            "for engine='ray', whose workers load the model themselves."
        )
    layer_ids = resolve_layers(layers, model.n_layers)
    job = _Job(
        model, prompts, per_image, pos, layer_ids, batch_size, chat_template, system, backend, dtype, site
    )
    if out_dir is None:
        bar = _bar(progress, len(prompts), "capture")
        acts = job.run(0, len(prompts), ids, list(labels) if labels is not None else None, bar)
        bar.close()
        return acts
    return _capture_sharded(job, Path(out_dir), shard_size, ids, labels, progress)


@dataclass
class _Job:
    model: HookedModel
    prompts: list[str]
    images: list[list] | None
    positions: list
    layers: list[int]
    batch_size: int
    chat_template: object
    system: str | None
    backend: str
    dtype: torch.dtype
    site: str = "resid"

    def batches(self, start: int, stop: int) -> list[list[int]]:
        """Row indices of each forward over prompts ``[start, stop)``: consecutive rows, except that rows
        with images and rows without go to separate forwards (a processor batch cannot mix them)."""
        with_image = None if self.images is None else [bool(item) for item in self.images]
        return row_batches(range(start, stop), with_image, self.batch_size)

    def run(self, start: int, stop: int, ids: list[str], labels, bar) -> Activations:
        parts: dict[str, list] = {p.name: [] for p in self.positions}
        order = []
        for rows in self.batches(start, stop):
            with_images = self.images is not None and bool(self.images[rows[0]])
            batch = self.model.encode(
                [self.prompts[i] for i in rows],
                images=[self.images[i] for i in rows] if with_images else None,
                chat_template=self.chat_template,
                system=self.system,
            )
            for name, value in self.capture_batch(batch).items():
                parts[name].append(value)
            order += rows
            bar.update(len(rows))
        back = torch.argsort(torch.tensor(order))  # prompt order again (a mixed set was grouped)
        tensors, masks = {}, {}
        for p in self.positions:
            if p.is_span:
                width = max(x.shape[2] for x, _ in parts[p.name])
                tensors[p.name] = torch.cat([pad_dim(x, width, 2) for x, _ in parts[p.name]])[back]
                masks[p.name] = torch.cat([pad_dim(m, width, 1) for _, m in parts[p.name]])[back]
            else:
                tensors[p.name] = torch.cat(parts[p.name])[back]
        meta = {
            "backend": self.backend,
            "site": self.site,
            "chat_template": str(self.chat_template),
            "dtype": str(self.dtype),
            "model_dtype": str(self.model.dtype),
        }
        return Activations(
            tensors,
            self.layers,
            self.model.fingerprint,
            ids[start:stop],
            labels[start:stop] if labels is not None else None,
            masks,
            meta,
        )

    def capture_batch(self, batch) -> dict:
        return capture_batch(
            self.model, batch, self.layers, self.positions, self.backend, self.dtype, self.site
        )


def capture_batch(
    model: HookedModel,
    batch,
    layers="all",
    positions="last",
    backend: str = "native",
    dtype: torch.dtype = torch.float32,
    site: str = "resid",
) -> dict:
    """One encoded batch → ``{position: [B, L, D]}`` (spans: ``([B, L, P, D], [B, P])``) on the CPU.

    >>> states = capture_batch(model, model.encode(prompts), layers=[4, 8])["last"]
    """
    layer_ids = resolve_layers(layers, model.n_layers)
    pos = parse_positions(positions)
    if backend == "native":
        hooked = sorted({*layer_ids, *model.stand_in_layers(layer_ids)})
        with model.hooks(hooked, pos, stop=True, capture_site=site) as run:
            model.forward(batch)
        per_layer = model.fill_skipped_layers(run.take(), hooked, pos, site)
    else:
        full = _backend(backend)(model, batch, layer_ids)
        layout = PromptLayout(batch.attention_mask.bool(), _image_mask(model, batch))
        per_layer = {(i, p.name): reduce_prefill(full[i], layout, p) for i in layer_ids for p in pos}
    out = {}
    for p in pos:
        # convert and check on the device, then one copy to the CPU: CPU-side work here shows up
        # directly in the capture/forward ratio on a GPU
        stacked = torch.stack([per_layer[(i, p.name)][0] for i in layer_ids], dim=1).to(dtype)
        _check_finite(stacked, p.name)
        stacked = stacked.cpu()
        out[p.name] = (stacked, per_layer[(layer_ids[0], p.name)][1].cpu()) if p.is_span else stacked
    return out


def _image_mask(model: HookedModel, batch):
    tid = model.image_token_id
    return batch.input_ids == tid if tid is not None else None


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not torch.isfinite(t).all():
        raise InputError(
            f"captured states at position {name!r} contain NaN/inf (model dtype overflow?). "
            "Fix: load the model in float32 or bfloat16 rather than float16."
        )


def _backend(name: str):
    if name == "nnsight":
        from interp.backends.nnsight_backend import hidden_states
    else:
        from interp.backends.transformer_lens_backend import hidden_states
    return hidden_states


def _bar(progress: bool | None, total: int, desc: str):
    return tqdm(
        total=total, desc=desc, unit="prompt", disable=not progress if progress is not None else total < 256
    )


# --- streaming to disk ----------------------------------------------------------------------------
@dataclass
class ActivationShards:
    """Handle on a sharded capture directory. ``load()`` joins the shards (optionally some layers).
    ``timing``, after a capture: its engine and workers, the seconds spent starting (workers loading
    the model) and capturing, and the prompts captured per second (shards found finished excluded)."""

    directory: Path
    manifest: dict
    timing: dict = field(default_factory=dict)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.directory / name for name in self.manifest["shards"]]

    def __len__(self) -> int:
        return self.manifest["n_prompts"]

    def __iter__(self):
        for path in self.shard_paths:
            yield Activations.load(path)

    def load(self, layers: Sequence[int] | None = None, model: HookedModel | None = None) -> Activations:
        parts = []
        for path in self.shard_paths:
            part = Activations.load(path, model=model)
            if layers is not None:
                keep = [part.layers.index(i) for i in layers]
                part = Activations(
                    {k: v[:, keep] for k, v in part.tensors.items()},
                    list(layers),
                    part.fingerprint,
                    part.prompt_ids,
                    part.labels,
                    part.masks,
                    part.metadata,
                )
            parts.append(part)
        return Activations.concat(parts)

    @classmethod
    def open(cls, directory: str | Path) -> ActivationShards:
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if manifest is None:
            raise CorruptFileError(f"{directory} holds no capture manifest.json.")
        missing = [n for n in manifest["shards"] if not (directory / n).exists()]
        if missing:
            raise CorruptFileError(
                f"{directory} misses shards {missing}: rerun the same capture call to finish it."
            )
        return cls(directory, manifest)


def _read_manifest(directory: Path) -> dict | None:
    path = directory / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"{path} is not valid JSON ({e}). Fix: delete the directory and capture again."
        ) from e


def _job_key(job: _Job, ids, labels, shard_size: int) -> dict:
    return shard_key(
        job.model.fingerprint.to_dict(),
        job.prompts,
        job.images,
        ids,
        labels,
        job.layers,
        job.positions,
        job.chat_template,
        job.system,
        shard_size,
        job.backend,
        job.dtype,
        job.site,
    )


def shard_key(
    fingerprint: dict,
    prompts,
    images,
    ids,
    labels,
    layers,
    positions,
    chat_template,
    system,
    shard_size,
    backend,
    dtype,
    site,
) -> dict:
    """What a sharded capture directory holds (its manifest's ``key``): a directory of another model,
    prompt set or setting is refused, whichever engine wrote it."""
    h = hashlib.sha256()
    for i, p in enumerate(prompts):
        h.update(f"{ids[i]}\x00{p}\x00{len(images[i]) if images else 0}\x01".encode())
    return {
        "fingerprint": fingerprint,
        "layers": list(layers),
        "positions": [p.name for p in positions],
        "prompts_digest": h.hexdigest(),
        "labels": list(labels) if labels is not None else None,
        "chat_template": str(chat_template),
        "system": system,
        "shard_size": shard_size,
        "backend": backend,
        "dtype": str(dtype),
        **({"site": site} if site != "resid" else {}),  # resid keys stay as before
    }


@dataclass
class ShardPlan:
    """A sharded capture directory and the shards still to compute, ``(name, start, stop)`` each; a
    finished shard is never computed again (its file is complete: writes are atomic)."""

    directory: Path
    manifest: dict
    todo: list[tuple[str, int, int]]
    skipped: int  # prompts in shards found finished

    @classmethod
    def make(cls, directory: Path, key: dict, n: int, shard_size: int) -> ShardPlan:
        if shard_size < 1:
            raise InputError(f"shard_size={shard_size}; it must be at least 1.")
        directory.mkdir(parents=True, exist_ok=True)
        manifest = _read_manifest(directory)
        if manifest is not None and manifest["key"] != key:
            raise InputError(
                f"{directory} holds a capture of different prompts, model or settings. Nothing was overwritten. "
                "Fix: choose another out_dir, or delete that directory to start over."
            )
        names = [f"shard_{k:05d}.safetensors" for k in range((n + shard_size - 1) // shard_size)]
        plan = cls(directory, {"key": key, "n_prompts": n, "shards": names, "done": []}, [], 0)
        for k, name in enumerate(names):
            start, stop = k * shard_size, min((k + 1) * shard_size, n)
            if (directory / name).exists() and _shard_ok(directory / name, stop - start):
                plan.done(name)
                plan.skipped += stop - start
            else:
                plan.todo.append((name, start, stop))
        plan.write()
        return plan

    def done(self, name: str) -> None:
        self.manifest["done"].append(name)

    def write(self) -> None:
        (self.directory / "manifest.json").write_text(json.dumps(self.manifest))

    def shards(self, engine: str, workers: int, startup_s: float, capture_s: float) -> ActivationShards:
        rows = self.manifest["n_prompts"] - self.skipped
        timing = {
            "engine": engine,
            "workers": workers,
            "startup_s": round(startup_s, 3),
            "capture_s": round(capture_s, 3),
            "prompts_captured": rows,
            "prompts_per_s": round(rows / capture_s, 3) if capture_s > 0 else None,
        }
        return ActivationShards(self.directory, self.manifest, timing)


def _capture_sharded(job: _Job, directory: Path, shard_size: int, ids, labels, progress) -> ActivationShards:
    plan = ShardPlan.make(directory, _job_key(job, ids, labels, shard_size), len(job.prompts), shard_size)
    t0 = time.perf_counter()
    bar = _bar(progress, len(job.prompts), "capture")
    bar.update(plan.skipped)
    labels = list(labels) if labels is not None else None
    for name, start, stop in plan.todo:
        job.run(start, stop, ids, labels, bar).save(directory / name)
        plan.done(name)
        plan.write()
    bar.close()
    return plan.shards("local", 1, 0.0, time.perf_counter() - t0)


def _shard_ok(path: Path, n: int) -> bool:
    try:
        return len(Activations.load(path)) == n
    except CorruptFileError:
        return False  # a shard cut off mid-write is recomputed
