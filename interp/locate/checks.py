"""Input checks shared by the locate methods: class balance, finite values, layer ranges, pairing.

>>> x, y = labelled(acts, "last", positive="harmful")     # [N, L, D] float, [N] bool
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.activations import Activations
from interp.errors import InputError, LayerIndexError


def check_finite(x: Tensor, what: str = "activations") -> None:
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise InputError(
            f"{what} contain NaN/inf in {len(rows)} row(s) (first: {rows[:5]}). Fix: recapture those prompts "
            "in float32 (fp16 overflows in some layers) or drop them."
        )


def labelled(
    acts: Activations, position: str, positive: str = "harmful", min_per_class: int = 2
) -> tuple[Float[Tensor, "N L D"], Bool[Tensor, " N"]]:
    """The states at ``position`` and a boolean label (``positive`` vs the other class)."""
    labels = acts.labels
    classes = sorted(set(labels or []))
    if labels is None or len(classes) != 2 or positive not in classes:
        raise InputError(
            f"this method needs activations labelled with exactly two classes, one of them {positive!r}; "
            f"got {classes or 'no labels'}. Fix: capture with labels=[...] (e.g. 'harmful'/'harmless')."
        )
    counts = {c: labels.count(c) for c in classes}
    if min(counts.values()) < min_per_class:
        raise InputError(
            f"too few prompts per class: {counts}; this method needs at least {min_per_class} of each. "
            "Fix: capture more prompts for the smaller class."
        )
    x = acts[position].float()
    if x.ndim != 3:
        raise InputError(
            f"position {position!r} holds {x.ndim - 2} extra dims per layer; use a reduced position "
            "('last', 'mean', 'image_mean', or an int)."
        )
    check_finite(x)
    return x, torch.tensor([label == positive for label in labels])


def layer_indices(acts: Activations, layers) -> list[int]:
    """Column indices in ``acts`` for the requested model layers (``None`` = all captured)."""
    if layers is None:
        return list(range(len(acts.layers)))
    missing = [layer for layer in layers if layer not in acts.layers]
    if missing:
        raise LayerIndexError(
            f"layers {missing} were not captured (captured: {acts.layers[0]}..{acts.layers[-1]}). "
            "Fix: capture them, or ask for captured layers only."
        )
    return [acts.layers.index(layer) for layer in layers]


def check_paired(a: Activations, b: Activations, what: str = "text and image activations") -> None:
    """Same prompts (by id), same layers, same model: the precondition for per-pair comparisons."""
    if a.layers != b.layers:
        raise InputError(f"{what} were captured at different layers ({a.layers} vs {b.layers}).")
    if len(a) != len(b):
        raise InputError(
            f"{what} are not paired: {len(a)} vs {len(b)} prompts. Fix: capture the same requests in both forms, "
            "in the same order, with the same prompt_ids."
        )
    if a.prompt_ids != b.prompt_ids:
        first = next(i for i, (p, q) in enumerate(zip(a.prompt_ids, b.prompt_ids, strict=True)) if p != q)
        raise InputError(
            f"{what} are not paired: prompt_ids differ at row {first} ({a.prompt_ids[first]!r} vs "
            f"{b.prompt_ids[first]!r}). Fix: pass the same prompt_ids to both captures, in the same order."
        )
    if a.fingerprint.weights_digest != b.fingerprint.weights_digest:
        raise InputError(f"{what} come from different models ({a.fingerprint.name} vs {b.fingerprint.name}).")
