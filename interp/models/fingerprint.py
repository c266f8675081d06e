"""A model fingerprint: what an artifact must match to be used on a model.

>>> fp = model.fingerprint
>>> fp.check(Activations.load(path).fingerprint, what="activations file")
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch

from interp.errors import FingerprintMismatchError


@dataclass(frozen=True)
class ModelFingerprint:
    name: str
    architecture: str
    model_type: str
    n_layers: int
    d_model: int
    vocab_size: int
    weights_digest: str

    MATCH = ("architecture", "model_type", "n_layers", "d_model", "vocab_size", "weights_digest")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelFingerprint:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def check(self, other: ModelFingerprint, what: str = "artifact") -> None:
        """Raise unless ``other`` was made on a model with the same architecture and weights.
        The name may differ (the same weights loaded from another path)."""
        diffs = [
            f"{k}: {getattr(other, k)!r} vs this model's {getattr(self, k)!r}"
            for k in self.MATCH
            if getattr(self, k) != getattr(other, k)
        ]
        if diffs:
            raise FingerprintMismatchError(
                f"this {what} was made for another model ({other.name!r}); this model is {self.name!r}. "
                f"Differences: {'; '.join(diffs)}. Fix: load it onto the model it was made with, or recompute it."
            )


def weights_digest(model: torch.nn.Module, embed: torch.nn.Module, layers: torch.nn.ModuleList) -> str:
    """SHA-256 over a strided sample of the embedding and of four weight matrices of every layer:
    cheap on an 8B model, and different for a fine-tune that touched only a window of layers."""
    h = hashlib.sha256()
    tensors = [embed.weight]
    for layer in layers:
        tensors += [p for _, p in sorted(layer.named_parameters()) if p.ndim == 2][:4]
    with torch.no_grad():
        for t in tensors:
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step][:4096].float().cpu().contiguous()
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]
