"""Steering artifacts: interventions + the model they were made for, as safetensors + JSON (no pickle).

    >>> art = SteeringArtifact.create(model, [AddDirection(refusal, [12], 4.0)], method="refusal-add")
    >>> art.save("runs/refusal.safetensors")
    >>> interventions = interp.steer.load("runs/refusal.safetensors", model).interventions

One ``.safetensors`` file: the tensors, and in its header the JSON metadata (format version, method,
interventions' specs, model fingerprint, interp version, calibration data hashes). ``load`` refuses
another model's artifact, tensors that do not match the specs, NaN/inf and a newer format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import CorruptFileError, InputError
from interp.models.fingerprint import ModelFingerprint
from interp.steer.specs import from_spec

FORMAT = "interp.steering"
FORMAT_VERSION = 1


def data_hash(items) -> str:
    """A short digest of calibration prompts, for the record."""
    return hashlib.sha256("\x00".join(map(str, items)).encode()).hexdigest()[:16]


@dataclass
class SteeringArtifact:
    interventions: list
    fingerprint: ModelFingerprint
    method: str = ""
    metadata: dict = field(default_factory=dict)

    @classmethod
    def create(cls, model, interventions, method: str = "", **metadata) -> SteeringArtifact:
        if not interventions:
            raise InputError("an artifact needs at least one intervention.")
        return cls(list(interventions), model.fingerprint, method, metadata)

    def _pack(self) -> tuple[dict, dict[str, Tensor]]:
        import interp

        specs, tensors = [], {}
        for k, item in enumerate(self.interventions):
            spec, ts = item.spec()
            specs.append(spec)
            tensors.update({f"i{k}.{name}": v.detach().float().cpu().contiguous() for name, v in ts.items()})
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "interventions": specs,
            "fingerprint": self.fingerprint.to_dict(),
            "interp_version": interp.__version__,
            "tensor_shapes": {k: list(v.shape) for k, v in tensors.items()},
            "metadata": self.metadata,
        }
        return meta, tensors

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file, then a rename), so a crash never leaves half a file."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta, tensors = self._pack()
        if not tensors:
            tensors = {"_empty": torch.zeros(1)}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"interp": json.dumps(meta)})
        tmp.replace(path)
        return path


def load(path: str | Path, model=None) -> SteeringArtifact:
    """Read an artifact; with ``model``, refuse it unless it was made for that model."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise InputError(f"no steering artifact at {path}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header["interp"])
    except Exception as e:
        raise CorruptFileError(
            f"{path} is not a readable interp steering artifact ({type(e).__name__}: {e}). Fix: save it again "
            "with SteeringArtifact.save."
        ) from e
    if meta.get("format") != FORMAT:
        raise CorruptFileError(f"{path} is not a steering artifact (format {meta.get('format')!r}).")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CorruptFileError(
            f"{path} has format version {meta['format_version']}, newer than this interp reads "
            f"({FORMAT_VERSION}). Fix: upgrade interp."
        )
    tensors.pop("_empty", None)
    if {k: list(v.shape) for k, v in tensors.items()} != meta.get("tensor_shapes"):
        raise CorruptFileError(f"{path}: the tensors do not match the shapes its metadata records.")
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise CorruptFileError(f"{path}: tensor {name!r} contains NaN or inf; it must not steer a model.")
    try:
        fp = ModelFingerprint.from_dict(meta["fingerprint"])
    except (KeyError, TypeError) as e:
        raise CorruptFileError(f"{path}: the model fingerprint in its metadata is incomplete ({e}).") from e
    if model is not None:
        model.fingerprint.check(fp, "steering artifact")
    interventions = []
    for k, spec in enumerate(meta["interventions"]):
        item = from_spec(spec, tensors, prefix=f"i{k}.")
        interventions.append(item)
        foreign = getattr(item, "foreign_tensors", ())  # declared by the intervention that owns them
        for name, t in item.spec()[1].items():
            if name not in foreign and t.shape[-1] != fp.d_model:
                raise CorruptFileError(
                    f"{path}: tensor 'i{k}.{name}' has width {t.shape[-1]}, the model's d_model is "
                    f"{fp.d_model}."
                )
    return SteeringArtifact(interventions, fp, meta.get("method", ""), meta.get("metadata", {}))
