"""Attribution patching: the first-order estimate of residual patching, from one backward pass.

    >>> amap = attribution_patch(model, harmful, harmless, positions="last")   # a PatchingMap
    >>> amap.profile().scores                                                  # per layer

It estimates :func:`interp.locate.patching.patch_residual` (same pairs, same metric, same map type)
as ``(clean - corrupt) . d metric / d state`` at every patched layer and position; the exact
strategies live in :mod:`interp.locate.patching`.
"""

from __future__ import annotations

import time

import torch

from interp.compat import output_cache
from interp.errors import InputError
from interp.inputs import chunks
from interp.layers import resolve_layers
from interp.locate.kv_resume import continue_logits, prompt_positions, suffix_start, token_inputs
from interp.locate.patching import (
    PatchingMap,
    check_pairs,
    clean_pass,
    fill_skipped,
    patch_positions,
    ran_layers,
    skipped_layers,
)
from interp.refusal import refusal_logodds, refusal_token_ids


def attribution_patch(
    model,
    clean: list[str],
    corrupt: list[str],
    clean_images=None,
    corrupt_images=None,
    layers="all",
    positions="last",
    batch_size: int = 16,
    suffix: bool = True,
) -> PatchingMap:
    """Attribution patching: the first-order estimate of :func:`patch_residual` from one backward pass.

    ``suffix=True``: the corrupt run's tokens before the earliest patched position run without autograd
    (their states cannot depend on any later position), and the forward + backward cover only the
    tokens from there on, against that prefix's KV cache: the same gradients, a backward over a few
    tokens instead of the whole prompt. It falls back to the whole prompt where positions do not line
    up across rows or image tokens come after the earliest patched position.
    """
    check_pairs(clean, corrupt, clean_images, corrupt_images)
    specs = patch_positions(positions)
    layer_ids = resolve_layers(layers, model.n_layers)
    if model.tokenizer.padding_side != "left":
        raise InputError("attribution patching assumes left padding (interp's default).")
    skipped = skipped_layers(model, layer_ids, clean_images, corrupt_images)
    if skipped:
        ran = ran_layers(model, layer_ids, skipped, "resid")
        kwargs = dict(positions=positions, batch_size=batch_size, suffix=suffix)
        inner = attribution_patch(model, clean, corrupt, layers=ran, **kwargs)
        return fill_skipped(model, inner, layer_ids, skipped)
    t0 = time.perf_counter()
    token_ids = refusal_token_ids(model.tokenizer)
    states, clean_m = clean_pass(model, clean, clean_images, specs, layer_ids, "resid", batch_size, token_ids)
    n = len(corrupt)
    pairs = torch.zeros(len(layer_ids), len(specs), n)  # estimated patched metric per pair
    corrupt_m, forwards = [], 1  # the clean pass above
    suffix_runs = 0
    for i, chunk, imgs in chunks(corrupt, corrupt_images, batch_size):
        batch = model.encode(chunk, images=imgs)
        # M-RoPE models (Qwen2-VL) number a suffix from ids computed over the whole prompt, which a
        # prefix-only run does not give: they run the whole prompt
        start = suffix_start(model, batch, specs) if suffix and model.adapter.rope != "mrope" else None
        if start is not None:  # the prefix without autograd, its KV cache a constant of the suffix run
            prefix = {**batch.inputs, **token_inputs(batch, slice(None, start))}
            with torch.no_grad(), prompt_positions(model) as seen:
                past = output_cache(model.model(**prefix, use_cache=True, logits_to_keep=1))
            if seen.get("ids") is not None:  # numbered by the model itself: the whole prompt after all
                start = None
            else:
                suffix_runs += 1
        with model.hooks(keep_layers=layer_ids) as run, torch.enable_grad():
            if start is None:
                logits = model.next_token_logits(batch.inputs)
            else:
                logits = continue_logits(model, batch, start, past)
            m = refusal_logodds(logits, token_ids)
            kept = [run.kept[layer] for layer in layer_ids]
            grads = torch.autograd.grad(m.sum(), kept)
        m = m.detach().float().cpu()
        corrupt_m.append(m)
        t = batch.input_ids.shape[1]
        offset = start or 0
        for li, (h, g) in enumerate(zip(kept, grads, strict=True)):
            for pi, spec in enumerate(specs):
                col = (t - 1 if spec.kind == "last" else t + spec.index) - offset
                diff = states[spec.name][i : i + len(batch), li].to(h.device) - h[:, col].detach().float()
                # rows do not interact, so the gradient of the batch's summed metric at a row is that
                # row's own gradient: each pair's first-order estimate of its patched metric
                pairs[li, pi, i : i + len(batch)] = m + (diff * g[:, col].float()).sum(-1).cpu()
    forwards += 2  # the corrupt forward and its backward (weights need no gradient: about one forward)
    return PatchingMap.from_pairs(
        pairs,
        clean_m,
        torch.cat(corrupt_m),
        method="attribution_patch",
        layers=layer_ids,
        positions=[p.name for p in specs],
        model=model.name,
        forwards=forwards,
        seconds=time.perf_counter() - t0,
        metadata={
            "n_pairs": n,
            "estimate": "(h_clean - h_corrupt) . grad of the metric at h_corrupt",
            "backward": "suffix tokens only" if suffix_runs else "whole prompt",
        },
    )
