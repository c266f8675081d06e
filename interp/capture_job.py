"""A capture job: a model, its prompts and settings, run over a range of rows in batches.

    >>> job = CaptureJob(model, prompts, None, parse_positions("last"), [0, 5], 16, None, None, "native", torch.float32)
    >>> acts = job.run(0, len(prompts), ids, labels, progress_bar(False, len(prompts), "capture"))
    >>> states = capture_batch(model, model.encode(prompts), layers=[4, 8])["last"]

:func:`interp.capture` runs one in this process; :mod:`interp.ray_capture` runs one per shard in
each worker. Both give the same rows in the same batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from interp.activations import Activations, pad_dim
from interp.errors import InputError
from interp.inputs import row_batches
from interp.layers import resolve_layers
from interp.models.hooked import HookedModel
from interp.positions import PromptLayout, parse_positions, reduce_prefill

BACKENDS = ("native", "nnsight", "transformer_lens")


@dataclass
class CaptureJob:
    """One capture's prompts and settings on a loaded model: ``run(start, stop)`` captures rows
    ``[start, stop)`` in the batches every engine uses (consecutive rows, images apart)."""

    model: HookedModel | None  # None on a driver that only plans (the Ray engine's)
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

    def key(self, fingerprint: dict, ids, labels, shard_size: int) -> dict:
        """What a sharded capture directory of this job holds (its manifest's ``key``), for the model
        whose fingerprint is ``fingerprint``: a directory of another model, prompt set or setting is
        refused, whichever engine wrote it. ``batch_size`` is not in it (it changes no value)."""
        h = hashlib.sha256()
        for i, p in enumerate(self.prompts):
            h.update(f"{ids[i]}\x00{p}\x00{len(self.images[i]) if self.images else 0}\x01".encode())
        return {
            "fingerprint": fingerprint,
            "layers": list(self.layers),
            "positions": [p.name for p in self.positions],
            "prompts_digest": h.hexdigest(),
            "labels": list(labels) if labels is not None else None,
            "chat_template": str(self.chat_template),
            "system": self.system,
            "shard_size": shard_size,
            "backend": self.backend,
            "dtype": str(self.dtype),
            **({"site": self.site} if self.site != "resid" else {}),  # resid keys stay as before
        }

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


def progress_bar(progress: bool | None, total: int, desc: str):
    return tqdm(
        total=total, desc=desc, unit="prompt", disable=not progress if progress is not None else total < 256
    )
