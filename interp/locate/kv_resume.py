"""Patching that recomputes only what a patch can change: the tokens from the patched position on,
against the unpatched run's KV cache, and the layers from the patched one on.

    >>> sweep = kv_resume(Job(model, corrupt, None, states, specs, layers, "resid", 16, ids))  # or None
    >>> start = suffix_start(model, batch, specs)     # where a suffix-only run may begin, or None

Causal attention means a change at position ``q`` cannot reach any position before ``q``; a change at
layer ``L`` cannot reach any earlier layer. :func:`interp.locate.patching.patch_activations` uses
:func:`kv_resume` for its default exact mode, and :func:`interp.locate.patching.attribution_patch`
uses :func:`suffix_start` to run its forward + backward on the suffix only.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from interp.compat import cache_kwarg, output_cache
from interp.edits import Edit
from interp.inputs import chunks
from interp.locate.sweep import Job, Sweep
from interp.models.adapters import get_path
from interp.positions import PromptLayout
from interp.refusal import refusal_logodds


def _columns(batch, specs) -> list[int] | None:
    """The column of each position spec, when it is the same in every row (left padding), else None."""
    layout = PromptLayout(mask=batch.attention_mask.bool(), image=None)
    out = []
    for spec in specs:
        cols = layout.last_real() if spec.kind == "last" else layout.index(spec.index)
        if (cols != cols[0]).any():
            return None
        out.append(int(cols[0]))
    return out


def _suffix_columns(model, batch, specs) -> list[int] | None:
    """Each spec's column, when the columns line up across rows, the earliest is not the first token,
    and no image token comes at or after it; else None."""
    cols = _columns(batch, specs)
    if cols is None or min(cols) == 0:
        return None
    if model.image_token_id is not None and (batch.input_ids[:, min(cols) :] == model.image_token_id).any():
        return None
    return cols


def suffix_start(model, batch, specs) -> int | None:
    """The earliest patched column where a suffix-only run may begin, or None."""
    cols = _suffix_columns(model, batch, specs)
    return None if cols is None else min(cols)


def token_inputs(batch, span: slice) -> dict[str, Tensor]:
    """The batch's per-token inputs (``[B, T, ...]``: ids, attention mask, Mllama's
    ``cross_attention_mask``, Qwen2-VL's ``mm_token_type_ids``) cut to the tokens ``span``."""
    b, t = batch.input_ids.shape
    return {k: v[:, span] for k, v in batch.inputs.items() if isinstance(v, Tensor) and v.shape[:2] == (b, t)}


def continue_logits(model, batch, start: int, cache, positions: Tensor | None = None):
    """Next-token logits [B, V] of the tokens from ``start`` on, run against ``cache`` (which holds
    the tokens before ``start``); the attention mask covers the whole prompt. ``positions``: the
    position ids the model gave its decoder stack for the whole prompt (:func:`prompt_positions`),
    where it computes them itself (Qwen2-VL's 3-D M-RoPE ids); the suffix gets its part of them.
    Other per-token inputs (Mllama's ``cross_attention_mask``) are cut to the suffix too."""
    suffix = token_inputs(batch, slice(start, None))
    suffix["attention_mask"] = batch.attention_mask
    if positions is not None:
        suffix["position_ids"] = positions[..., start:]
    return model.model(
        **suffix, **{cache_kwarg(model.model): cache}, use_cache=True, logits_to_keep=1
    ).logits[:, -1]


@contextmanager
def prompt_positions(model):
    """Within the block, ``seen["ids"]`` is the ``position_ids`` the model passed to its decoder stack
    in the block's first forward (None where the stack numbers tokens itself, as Llama's does).

        >>> with prompt_positions(model) as seen:
        ...     model.model(**batch.inputs)
        >>> seen["ids"]          # Qwen2-VL: [3, B, T] M-RoPE ids (time, height, width)
    """
    parents = tuple(path.rsplit(".", 1)[0] for path in model.adapter.layers)
    stack = get_path(model.model, parents, "decoder stack (the parent of the decoder layers)")
    seen: dict = {}

    def pre_hook(module, args, kwargs):
        seen.setdefault("ids", kwargs.get("position_ids"))

    handle = stack.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _cut(cache, length: int, keep: tuple[int, ...] = ()) -> bool:
    """Cut every layer of a KV cache back to its first ``length`` tokens, except the layers in
    ``keep`` (Mllama's cross-attention layers, whose cache holds the image's keys, not the
    prompt's); False where the cache does not allow it (no per-layer keys, a sliding window)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(
        not hasattr(layer, "keys") or getattr(layer, "is_sliding", False) for layer in layers
    ):
        return False
    for index, layer in enumerate(layers):
        if index in keep:
            continue
        if getattr(layer, "is_initialized", True) and layer.keys is not None:
            extra = layer.keys.shape[-2] - length
            if extra > 0:
                layer.crop(-extra)
    return True


def kv_resume(job: Job) -> Sweep | None:
    """Each patched run recomputes only the tokens from its patched position on, against the corrupt
    run's KV cache, and only the layers from its patched layer on.

    Patching position ``q`` at layer ``L`` cannot change anything before ``q`` (causal attention), nor
    any layer before ``L``; so one corrupt forward keeps its KV cache and every layer's output, and each
    (layer, position) job feeds the ``T - q`` suffix tokens through layers ``L..`` with the cache cut
    back to ``q`` (layers up to the patched one replay their cached outputs). With ``"last"`` that is one
    token per job instead of the whole prompt. ``job``: :class:`interp.locate.sweep.Job`; returns a
    :class:`interp.locate.sweep.Sweep`, or None where this does not apply (positions at different columns across rows, image tokens in the
    suffix, a cache that cannot be cut back): the caller then uses the packed replay instead.
    """
    model, states, specs, layer_ids, site = job.model, job.states, job.specs, job.layer_ids, job.site
    token_ids = job.token_ids
    pairs = torch.zeros(len(layer_ids), len(specs), len(job.corrupt))
    corrupt_m, forwards = [], 0
    last = max(layer_ids)
    for i, chunk, imgs in chunks(job.corrupt, job.corrupt_images, job.batch_size):
        batch = model.encode(chunk, images=imgs)
        cols = _suffix_columns(model, batch, specs)
        if cols is None:
            return None
        with (
            model.hooks(keep_layers=list(range(last + 1))) as run,
            prompt_positions(model) as seen,
            torch.inference_mode(),
        ):
            out = model.model(**batch.inputs, use_cache=True, logits_to_keep=1)
        cache, cached, as_tuple = output_cache(out), run.kept, bool(run.output_is_tuple)
        keep = tuple(model.skippable_layers)  # their caches hold the image's keys
        if not _cut(cache, max(cols), keep):
            return None
        corrupt_m.append(refusal_logodds(out.logits[:, -1], token_ids).float().cpu())
        forwards += 1
        b = len(batch)
        order = sorted(range(len(specs)), key=lambda pi: -cols[pi])  # later columns first: cuts only shrink
        for pi in order:
            q, spec = cols[pi], specs[pi]
            for li, layer in enumerate(layer_ids):
                _cut(cache, q, keep)
                resume = layer if site == "resid" else layer - 1
                # a layer the corrupt run skipped (Mllama's cross-attention, without images) is not kept
                replay = {k: cached[k][:, q:] for k in range(resume + 1) if k in cached}
                edit = Edit.replace(
                    states[spec.name][i : i + b, li], layers=[layer], positions=[spec], site=site
                )
                with model.hooks(edits=[edit], replay=replay, replay_tuple=as_tuple), torch.inference_mode():
                    logits = continue_logits(model, batch, q, cache, seen.get("ids"))
                pairs[li, pi, i : i + b] = refusal_logodds(logits, token_ids).float().cpu()
                forwards += 1
        del cache, cached
    return Sweep(pairs, torch.cat(corrupt_m).float().cpu(), forwards, "kv_resume")
