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
    cheap on an 8B model, and different for a fine-tune that touched only a window of layers. Weights
    offloaded by a device map (to the CPU or disk, ``meta`` in the module) are read from where they are."""
    h = hashlib.sha256()
    owned = [(embed, "weight")]
    for layer in layers:
        names = [n for n, p in sorted(layer.named_parameters()) if p.ndim == 2][:4]
        owned += [
            (layer.get_submodule(n.rpartition(".")[0]) if "." in n else layer, n.rpartition(".")[2])
            for n in names
        ]
    with torch.no_grad():
        for module, name in owned:
            flat = _read(module, name).reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step][:4096].float().cpu().contiguous()
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _read(module: torch.nn.Module, name: str) -> torch.Tensor:
    t = getattr(module, name).detach()
    if not t.is_meta:
        return t
    from accelerate.utils import align_module_device  # offloaded: accelerate holds the weights

    with align_module_device(module, torch.device("cpu")):
        return getattr(module, name).detach().clone()
