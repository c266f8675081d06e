"""Steering for deployed models: baked weights and llama.cpp control vectors.

>>> interp.export.save_baked(model, [AblateDirection(refusal)], "runs/ablated")     # HF checkpoint
>>> interp.export.save_control_vector(model, [AddDirection(refusal, [12], 4.0)], "refusal.gguf")

The third path, per-request hook steering behind an OpenAI-compatible server, is :mod:`interp.serve`.
"""

from interp.export.bake import bake, orthogonalize, save_baked
from interp.export.control_vector import control_vector, read_control_vector, save_control_vector

__all__ = [
    "bake",
    "control_vector",
    "orthogonalize",
    "read_control_vector",
    "save_baked",
    "save_control_vector",
]
