"""Activations: captured hidden states with labels and metadata; save/load as one safetensors file.

    >>> acts = interp.capture(model, prompts, positions=["last", "mean"], layers="all")
    >>> acts["last"].shape            # [n_prompts, n_layers, d_model]
    >>> acts.layer(12).shape          # [n_prompts, d_model] at position 'last'
    >>> acts.save("acts.safetensors"); interp.Activations.load("acts.safetensors", model=model)

Span positions (``all``, ``image``) are stored left-aligned and zero padded as
``[n_prompts, n_layers, P, d_model]`` with a validity mask ``[n_prompts, P]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.errors import CorruptFileError, InputError, LayerIndexError
from interp.models.fingerprint import ModelFingerprint

FORMAT = "interp.activations"
FORMAT_VERSION = 1


@dataclass
class Activations:
    tensors: dict[str, Tensor]
    layers: list[int]
    fingerprint: ModelFingerprint
    prompt_ids: list[str]
    labels: list[str] | None = None
    masks: dict[str, Tensor] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.prompt_ids)
        for name, t in self.tensors.items():
            if t.shape[0] != n or t.shape[1] != len(self.layers):
                raise CorruptFileError(
                    f"activations {name!r} have shape {tuple(t.shape)} but metadata says {n} prompts "
                    f"and {len(self.layers)} layers."
                )
        if self.labels is not None and len(self.labels) != n:
            raise InputError(f"{len(self.labels)} labels for {n} prompts.")

    @property
    def positions(self) -> list[str]:
        return list(self.tensors)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def __getitem__(self, position: str) -> Tensor:
        if position not in self.tensors:
            raise KeyError(f"position {position!r} was not captured; captured: {self.positions}")
        return self.tensors[position]

    def layer(self, layer: int, position: str = "last") -> Float[Tensor, "n ..."]:
        """States at one model layer index (not an index into ``self.layers``)."""
        if layer not in self.layers:
            raise LayerIndexError(f"layer {layer} was not captured; captured layers: {self.layers}")
        return self[position][:, self.layers.index(layer)]

    def select(self, rows) -> Activations:
        """The prompts at ``rows`` (indices), with their labels, masks and metadata."""
        rows = [int(r) for r in rows]
        if not rows or not all(-len(self) <= r < len(self) for r in rows):
            raise InputError(f"select needs row indices within 0..{len(self) - 1}, got {rows[:5]}...")
        idx = torch.tensor(rows)
        return Activations(
            {k: v[idx] for k, v in self.tensors.items()},
            list(self.layers),
            self.fingerprint,
            [self.prompt_ids[r] for r in rows],
            [self.labels[r] for r in rows] if self.labels is not None else None,
            {k: v[idx] for k, v in self.masks.items()},
            dict(self.metadata),
        )

    def label_array(self) -> Tensor:
        """Labels as integer class ids in order of first appearance (for probes)."""
        if self.labels is None:
            raise InputError("these activations carry no labels. Fix: pass labels= to capture().")
        classes = list(dict.fromkeys(self.labels))
        return torch.tensor([classes.index(x) for x in self.labels])

    # --- persistence --------------------------------------------------------------------------
    def to_meta(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "layers": self.layers,
            "positions": self.positions,
            "shapes": {k: list(v.shape) for k, v in self.tensors.items()},
            "fingerprint": self.fingerprint.to_dict(),
            "prompt_ids": self.prompt_ids,
            "labels": self.labels,
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write one ``.safetensors`` file (tensors + JSON metadata in its header); atomic rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"act/{k}": v.contiguous() for k, v in self.tensors.items()}
        tensors |= {f"mask/{k}": v.contiguous() for k, v in self.masks.items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"interp": json.dumps(self.to_meta())})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model=None) -> Activations:
        """Read a file written by :meth:`save`; with ``model``, refuse activations of another model."""
        path = Path(path)
        if not path.is_file():
            raise CorruptFileError(f"no activations file at {path}.")
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                header = f.metadata() or {}
            tensors = load_file(str(path))
            meta = json.loads(header["interp"])
        except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
            raise CorruptFileError(
                f"{path} is not a readable interp activations file ({type(e).__name__}: {e}). "
                "Fix: recompute it; a capture with out_dir= resumes from its finished shards."
            ) from e
        if meta.get("format") != FORMAT:
            raise CorruptFileError(f"{path} is a {meta.get('format')!r} file, not interp activations.")
        if meta.get("version", 0) > FORMAT_VERSION:
            raise CorruptFileError(
                f"{path} has format version {meta['version']}, newer than this interp reads ({FORMAT_VERSION}). "
                "Fix: upgrade interp."
            )
        acts = {k[4:]: v for k, v in tensors.items() if k.startswith("act/")}
        masks = {k[5:]: v for k, v in tensors.items() if k.startswith("mask/")}
        if sorted(acts) != sorted(meta["positions"]) or any(
            list(acts[k].shape) != meta["shapes"][k] for k in acts
        ):
            raise CorruptFileError(
                f"{path}: tensors do not match the shapes in its metadata. Fix: recompute it."
            )
        out = cls(
            tensors={k: acts[k] for k in meta["positions"]},
            layers=meta["layers"],
            fingerprint=ModelFingerprint.from_dict(meta["fingerprint"]),
            prompt_ids=meta["prompt_ids"],
            labels=meta["labels"],
            masks=masks,
            metadata=meta["metadata"],
        )
        if model is not None:
            model.fingerprint.check(out.fingerprint, what=f"activations file {path}")
        return out

    @classmethod
    def concat(cls, parts: list[Activations]) -> Activations:
        """Join activations of the same model, layers and positions along the prompt axis."""
        if not parts:
            raise InputError("nothing to concatenate.")
        first = parts[0]
        for p in parts[1:]:
            first.fingerprint.check(p.fingerprint, what="activations part")
            if p.layers != first.layers or p.positions != first.positions:
                raise InputError("activations to concatenate differ in layers or positions.")
        tensors, masks = {}, {}
        for name in first.positions:
            if name in first.masks:
                width = max(p.tensors[name].shape[2] for p in parts)
                tensors[name] = torch.cat([pad_dim(p.tensors[name], width, 2) for p in parts])
                masks[name] = torch.cat([pad_dim(p.masks[name], width, 1) for p in parts])
            else:
                tensors[name] = torch.cat([p.tensors[name] for p in parts])
        labels = None if any(p.labels is None for p in parts) else [x for p in parts for x in p.labels]
        return cls(
            tensors,
            first.layers,
            first.fingerprint,
            [i for p in parts for i in p.prompt_ids],
            labels,
            masks,
            dict(first.metadata),
        )


def pad_dim(t: Tensor, width: int, dim: int) -> Tensor:
    """Zero-pad ``t`` along ``dim`` to ``width`` (spans of different batches joined)."""
    if t.shape[dim] == width:
        return t
    shape = list(t.shape)
    shape[dim] = width - t.shape[dim]
    return torch.cat([t, torch.zeros(shape, dtype=t.dtype)], dim=dim)
