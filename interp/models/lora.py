"""Merge a LoRA adapter stored as safetensors into a model's weights, exactly and without peft.

    >>> merge_lora(model.model, "interp/organism/adapter.safetensors", scale=2.0)

Keys follow peft's naming: ``<module path>.lora_A.weight`` ``[r, in]`` and ``.lora_B.weight``
``[out, r]``; the merged weight is ``W + scale * B @ A`` (peft: ``scale = alpha / r``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from interp.errors import CorruptFileError


def merge_lora(model: torch.nn.Module, path: str | Path, scale: float) -> int:
    """Add each ``B @ A`` into the matching linear layer; returns how many layers were changed."""
    tensors = load_file(str(path))
    modules = dict(model.named_modules())
    names = sorted({k.rsplit(".lora_", 1)[0] for k in tensors})
    for name in names:
        target = name.removeprefix("base_model.model.")
        if target not in modules or not isinstance(modules[target], torch.nn.Linear):
            raise CorruptFileError(
                f"LoRA adapter {path} names {target!r}, which is not a linear layer of this model."
            )
        a, b = tensors[f"{name}.lora_A.weight"], tensors[f"{name}.lora_B.weight"]
        weight = modules[target].weight
        if (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise CorruptFileError(
                f"LoRA adapter {path}: {target} is {tuple(weight.shape)}, adapter gives "
                f"{(b.shape[0], a.shape[1])}."
            )
        with torch.no_grad():
            weight += (scale * (b.float() @ a.float())).to(weight.dtype)
    return len(names)
