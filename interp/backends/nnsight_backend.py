"""nnsight backend: wraps the model in ``nnsight.NNsight`` and saves each layer's output.

>>> from interp.backends.nnsight_backend import hidden_states
>>> states = hidden_states(model, batch, layers=[0, 5])      # {0: [B, T, D], 5: [B, T, D]}
"""

from __future__ import annotations

import torch

from interp.backends import missing_extra, structural_copy
from interp.hooks import untuple
from interp.inputs import Batch
from interp.models.adapters import follow, resolve_path


def envoy(model):
    """The nnsight wrapper of ``model.model``, made once per HookedModel.

    nnsight replaces the ``forward`` of every module it has run through with its own dispatcher, which
    stays after the trace and slows every later call of the model (about 12% per forward on a 32-layer
    model whose kernels are small). So it wraps a parameter-sharing copy and ``model`` is untouched.
    """
    try:
        from nnsight import NNsight
    except ImportError:
        raise missing_extra("nnsight", "nnsight") from None
    cache = model.__dict__.setdefault("_backends", {})
    if "nnsight" not in cache:
        cache["nnsight"] = NNsight(structural_copy(model.model))
    return cache["nnsight"]


def hidden_states(model, batch: Batch, layers: list[int]) -> dict[int, torch.Tensor]:
    wrapped = envoy(model)
    path = resolve_path(model.model, model.adapter.layers, "decoder layers")
    saved = {}
    with torch.inference_mode(), wrapped.trace(**batch.inputs):
        stack = follow(wrapped, path)
        for i in layers:
            saved[i] = stack[i].output.save()
    return {i: untuple(v) for i, v in saved.items()}
