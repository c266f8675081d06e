"""nnsight backend: wraps the model in ``nnsight.NNsight`` and saves each layer's output.

>>> from interp.backends.nnsight_backend import hidden_states
>>> states = hidden_states(model, batch, layers=[0, 5])      # {0: [B, T, D], 5: [B, T, D]}
"""

from __future__ import annotations

import torch

from interp.backends import missing_extra
from interp.hooks import untuple
from interp.inputs import Batch


def envoy(model):
    """The nnsight wrapper of ``model.model`` (made once per HookedModel; it does not alter the model)."""
    try:
        from nnsight import NNsight
    except ImportError:
        raise missing_extra("nnsight", "nnsight") from None
    cache = model.__dict__.setdefault("_backends", {})
    if "nnsight" not in cache:
        cache["nnsight"] = NNsight(model.model)
    return cache["nnsight"]


def _module(root, path: str):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def hidden_states(model, batch: Batch, layers: list[int]) -> dict[int, torch.Tensor]:
    wrapped = envoy(model)
    path = _resolved_layers_path(model)
    saved = {}
    with torch.inference_mode(), wrapped.trace(**batch.inputs):
        stack = _module(wrapped, path)
        for i in layers:
            saved[i] = stack[i].output.save()
    return {i: untuple(v) for i, v in saved.items()}


def _resolved_layers_path(model) -> str:
    for path in model.adapter.layers:
        try:
            _module(model.model, path)
            return path
        except AttributeError:
            continue
    raise AttributeError(f"no decoder layers at {model.adapter.layers}")
