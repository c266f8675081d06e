"""Model loading, family adapters and the HookedModel wrapper."""

from interp.models.adapters import ADAPTERS, Adapter, adapter_for, known_families
from interp.models.fingerprint import ModelFingerprint
from interp.models.hooked import HookedModel
from interp.models.load import load_model, wrap
from interp.models.registry import NAMED_MODELS, register_model

__all__ = [
    "ADAPTERS",
    "Adapter",
    "HookedModel",
    "ModelFingerprint",
    "NAMED_MODELS",
    "adapter_for",
    "known_families",
    "load_model",
    "register_model",
    "wrap",
]
