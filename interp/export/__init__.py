"""Steering for deployed models: baked weights and llama.cpp control vectors.

>>> interp.export.save_baked(model, [AblateDirection(refusal)], "runs/ablated")     # HF checkpoint
>>> interp.export.save_checkpoint(model, "runs/organism")    # unsteered, for vLLM (interp.vllm)
>>> interp.export.save_control_vector(model, [AddDirection(refusal, [12], 4.0)], "refusal.gguf")
>>> with interp.export.folded_ablation(model, [refusal]): ...   # baked in place for a block, then restored

The third path, per-request hook steering behind an OpenAI-compatible server, is :mod:`interp.serve`.
"""

from interp.export.bake import bake, save_baked, save_checkpoint
from interp.export.control_vector import control_vector, read_control_vector, save_control_vector
from interp.steer.folding import ablated_weights, folded_ablation, orthogonalize, swapped_weights

__all__ = [
    "ablated_weights",
    "bake",
    "control_vector",
    "folded_ablation",
    "orthogonalize",
    "read_control_vector",
    "save_baked",
    "save_checkpoint",
    "save_control_vector",
    "swapped_weights",
]
