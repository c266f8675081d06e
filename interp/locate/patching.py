"""Activation patching over layers x positions, exact (batched or looped); the gradient estimate is
:mod:`interp.locate.attribution`.

    >>> pm = patch_residual(model, clean=harmful, corrupt=harmless)            # last token, every layer
    >>> pm.profile().scores                                                    # normalized, per layer
    >>> pm = patch_residual(model, harmful, harmless, positions=[-5, -4, -3, -2, -1])
    >>> ap = attribution_patch(model, harmful, harmless, positions=[-5, -4, -3, -2, -1])  # .attribution
    >>> pm.figure()                                                            # layer x position heatmap
    >>> maps = patch_components(model, harmful, harmless)                      # resid, attn, mlp

Semantics: the clean run's residual (decoder-layer output) at (layer, position) replaces the corrupt
run's, row by row (clean[i] into corrupt[i]); the metric is the refusal log-odds of the next token
at the last position (``interp.refusal.refusal_logodds``), averaged over prompts, and
normalized to ``(m_patched - m_corrupt) / (m_clean - m_corrupt)``: 0 = no effect, 1 = fully restored.
Harmful -> harmless asks "where does patching make a harmless prompt refuse"; text -> image (clean =
text form, corrupt = image form) asks "where do the text states restore refusal on the image input".

Positions: ``"last"`` or negative ints counting back from the last real token (-1 = last). With the
chat template the last few tokens are the same template tokens for every prompt, so they line up
across prompts of different lengths (Arditi et al.'s post-instruction positions).

Exact patching, ``mode="batched"`` (the default): a patch at position ``q`` of layer ``L`` changes
nothing before ``q`` (causal attention) and no layer before ``L``. So one corrupt forward keeps its KV
cache and every layer's output, and each (layer, position) job recomputes only the tokens from ``q``
on, against the cache cut back to ``q``, and only the layers from ``L`` on (the earlier ones replay
their cached outputs): for ``"last"`` one token per job instead of the whole prompt. Where that does
not apply (positions at different columns across rows, image tokens after ``q``, a sliding-window
cache) it falls back to ``mode="replay"``: patched copies of the corrupt batch packed up to
``max_rows`` per forward (each copy patched at its own layer through a per-row edit), each forward
resuming from the cached layer outputs at its first patched layer. ``mode="loop"`` runs one full
forward per (layer, position), the usual implementation, for comparison; all three give the same
numbers. ``PatchingMap.metadata["strategy"]`` says which ran.
Attribution patching (Nanda; Syed et al.) estimates the whole map from one clean capture and one
corrupt forward + backward: effect ~ (h_clean - h_corrupt) . d metric / d h_corrupt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import SITES, Edit, check_site
from interp.errors import InputError
from interp.inputs import chunks
from interp.layers import resolve_layers
from interp.locate.kv_resume import (
    kv_resume,
)
from interp.locate.profile import LayerProfile
from interp.locate.sweep import Job, Sweep
from interp.positions import parse_positions
from interp.refusal import refusal_logodds, refusal_token_ids


@dataclass
class PatchingMap:
    """Normalized patching effect per (layer, position), plus the raw numbers behind it."""

    method: str
    layers: list[int]
    positions: list[str]
    effect: Float[Tensor, "L P"]  # normalized: 0 = corrupt, 1 = clean
    raw: Float[Tensor, "L P"]  # mean metric of the patched runs (exact) or estimated (attribution)
    clean_metric: float
    corrupt_metric: float
    model: str = ""
    forwards: int = 0
    seconds: float = 0.0
    metadata: dict = field(default_factory=dict)
    # each pair's numbers (exact, or attribution's per-pair estimates), so the map can be recomputed on
    # a resample of pairs; a resampled map keeps none
    pairs: Float[Tensor, "L P N"] | None = field(default=None, repr=False)  # patched metric per pair
    clean_pairs: Float[Tensor, " N"] | None = field(default=None, repr=False)
    corrupt_pairs: Float[Tensor, " N"] | None = field(default=None, repr=False)

    def resampled(self, idx: Tensor) -> PatchingMap:
        """The same map computed on the pairs ``idx`` (with repeats: a bootstrap resample).

        >>> idx = torch.randint(len(m.clean_pairs), (len(m.clean_pairs),))
        >>> m.resampled(idx).profile().scores
        """
        if self.pairs is None or self.clean_pairs is None or self.corrupt_pairs is None:
            raise InputError(
                f"this {self.method} map keeps no per-pair numbers (a resampled map, or one built by hand); "
                "resample the map patching returned."
            )
        summary = _summary(self.pairs[..., idx], self.clean_pairs[idx], self.corrupt_pairs[idx])
        return replace(self, **summary, pairs=None, clean_pairs=None, corrupt_pairs=None)

    @classmethod
    def from_pairs(cls, pairs: Tensor, clean_pairs: Tensor, corrupt_pairs: Tensor, **fields) -> PatchingMap:
        """The map of per-pair metrics (patched [L, P, N], clean [N], corrupt [N]), which it keeps;
        ``fields``: the rest (method, layers, positions, model, forwards, seconds, metadata)."""
        summary = _summary(pairs, clean_pairs, corrupt_pairs)
        return cls(**summary, **fields, pairs=pairs, clean_pairs=clean_pairs, corrupt_pairs=corrupt_pairs)

    def profile(self, position: str | None = None) -> LayerProfile:
        """Per-layer scores at one position (default: the max over positions per layer)."""
        if position is None:
            scores, which = self.effect.max(dim=1).values, "max over positions"
        else:
            if position not in self.positions:
                raise InputError(f"position {position!r} not in this map ({self.positions}).")
            scores, which = self.effect[:, self.positions.index(position)], position
        return LayerProfile(
            method=self.method,
            layers=list(self.layers),
            scores=scores.tolist(),
            score_name=f"normalized patching effect ({which})",
            higher_is="patching this layer moves the metric from corrupt to clean",
            model=self.model,
            metadata={
                "clean_metric": self.clean_metric,
                "corrupt_metric": self.corrupt_metric,
                "positions": self.positions,
                "metric": "refusal log-odds of the next token at the last position",
                **self.metadata,
            },
        )

    def figure(self, title: str | None = None):
        import plotly.graph_objects as go

        fig = go.Figure(
            go.Heatmap(z=self.effect.T.tolist(), x=self.layers, y=self.positions, colorscale="RdBu", zmid=0)
        )
        fig.update_layout(
            title=title or f"{self.method} ({self.model})",
            xaxis_title="layer",
            yaxis_title="position",
            template="plotly_white",
        )
        return fig


def check_pairs(clean, corrupt, clean_images, corrupt_images):
    """Refuse, with the fix, prompt pairs that cannot be patched: none, unequal counts, or a number of
    images that is not one per prompt (shared by exact and attribution patching)."""
    if not clean or not corrupt:
        raise InputError("patching needs clean and corrupt prompts (neither may be empty).")
    if len(clean) != len(corrupt):
        raise InputError(
            f"patching pairs clean[i] with corrupt[i]: got {len(clean)} clean and {len(corrupt)} corrupt prompts. "
            "Fix: pass the same number of each."
        )
    for imgs, what in ((clean_images, "clean"), (corrupt_images, "corrupt")):
        if imgs is not None and len(imgs) != len(clean):
            raise InputError(f"{len(imgs)} {what} images for {len(clean)} prompts; give one per prompt.")


def patch_positions(positions) -> list:
    """The parsed positions to patch, refusing any that would not line up across prompts of different
    lengths (only ``"last"`` and negative indices do)."""
    specs = parse_positions(positions)
    for p in specs:
        if not (p.kind == "last" or (p.kind == "index" and p.index < 0)):
            raise InputError(
                f"patching positions must be 'last' or negative ints (-1 = last token), got {p.name!r}: they "
                "must line up across prompts of different lengths."
            )
    return specs


def _summary(pairs: Tensor, clean_pairs: Tensor, corrupt_pairs: Tensor) -> dict:
    """A map's summary fields from its per-pair metrics: mean patched metric, the clean and corrupt
    means, and the effect normalized between them."""
    raw = pairs.mean(-1)
    m_clean, m_corrupt = float(clean_pairs.mean()), float(corrupt_pairs.mean())
    return {
        "effect": _normalized(raw, m_clean, m_corrupt),
        "raw": raw,
        "clean_metric": m_clean,
        "corrupt_metric": m_corrupt,
    }


def _normalized(raw: Tensor, m_clean: float, m_corrupt: float) -> Tensor:
    """(raw - corrupt) / (clean - corrupt); zeros when clean and corrupt do not differ."""
    denom = m_clean - m_corrupt
    return (raw - m_corrupt) / denom if abs(denom) > 1e-6 else torch.zeros_like(raw)


def _metric(model, batch, edits=(), token_ids=None) -> Float[Tensor, " B"]:
    with model.hooks(edits=list(edits)), torch.inference_mode():
        logits = model.next_token_logits(batch.inputs)
    return refusal_logodds(logits, token_ids)


def skipped_layers(model, layer_ids: list[int], clean_images, corrupt_images) -> set[int]:
    """The layers asked for that the corrupt runs skip: Mllama's cross-attention layers when the
    corrupt prompts have no image. Where the clean prompts have none either, the map is made over
    the layers that run and extended (:func:`fill_skipped`); with clean images there is no layer to
    patch them into, which is an error that says so."""
    skipped = set(layer_ids) & model.skippable_layers
    if corrupt_images is not None or not skipped:
        return set()
    if clean_images is not None:
        raise InputError(
            f"layers {sorted(skipped)} are cross-attention layers, which {model.name} skips for the corrupt "
            "prompts (they have no images), so nothing can be patched into them. Fix: patch other layers, "
            "or give the corrupt prompts images."
        )
    return skipped


def ran_layers(model, layer_ids: list[int], skipped: set[int], site: str) -> list[int]:
    """The layers to patch instead: the others, and for the residual stream the layer each skipped
    one passes the stream on from (patching a skipped layer's output is patching that one's)."""
    ran = set(layer_ids) - skipped
    if site == "resid":
        ran |= {model.stream_source(i) for i in skipped} - {-1}
    return sorted(ran)


def fill_skipped(model, inner: PatchingMap, layer_ids: list[int], skipped: set[int]) -> PatchingMap:
    """``inner`` (over the layers that ran) extended to ``layer_ids``: a skipped layer's residual
    output is the layer before it's, so its row is that layer's; its attention and MLP write nothing,
    so patching them leaves every pair at its corrupt metric."""
    site = inner.metadata.get("site", "resid")
    rows = []
    for layer in layer_ids:
        if layer not in skipped:
            rows.append(inner.pairs[inner.layers.index(layer)])
        elif site == "resid" and model.stream_source(layer) >= 0:
            rows.append(inner.pairs[inner.layers.index(model.stream_source(layer))])
        else:
            rows.append(inner.corrupt_pairs.expand(len(inner.positions), -1).clone())
    pairs = torch.stack(rows)
    raw = pairs.mean(-1)
    return replace(
        inner,
        layers=list(layer_ids),
        raw=raw,
        effect=_normalized(raw, inner.clean_metric, inner.corrupt_metric),
        pairs=pairs,
        metadata={
            **inner.metadata,
            "skipped_layers": sorted(skipped),
            "skipped_note": "cross-attention layers that run only with images: a skipped layer's residual "
            "row is the layer before it's, its attn/mlp rows are the corrupt run's (nothing to patch)",
        },
    )


def clean_pass(model, prompts, images, specs, layer_ids, site, batch_size, token_ids):
    """One forward per clean batch gives both the states to patch in and the clean metric."""
    states: dict[str, list] = {p.name: [] for p in specs}
    metric = []
    hooked = sorted({*layer_ids, *model.stand_in_layers(layer_ids)})
    for _, chunk, imgs in chunks(prompts, images, batch_size):
        batch = model.encode(chunk, images=imgs)
        with model.hooks(hooked, specs, capture_site=site) as run, torch.inference_mode():
            logits = model.next_token_logits(batch.inputs)
        # a layer the clean run skipped (Mllama's cross-attention, without images) passes the stream
        # on unchanged: its state is the layer before it's, and its attn/mlp write nothing
        got = model.fill_skipped_layers(run.take(), hooked, specs, site)
        for p in specs:
            stacked = torch.stack([got[(layer, p.name)][0] for layer in layer_ids], dim=1)
            states[p.name].append(stacked.float().cpu())
        metric.append(refusal_logodds(logits, token_ids).float().cpu())
    return {k: torch.cat(v) for k, v in states.items()}, torch.cat(metric)


def _repeat(batch, times: int, n: int):
    """The batch's inputs repeated ``times`` along the batch axis (row r of copy g = row r). Inputs
    whose first axis is not the prompts' (several images per prompt; Qwen2-VL's patches of all
    images, with one ``image_grid_thw`` row per image) list their items in prompt order, so the
    copies' items are the same list ``times`` over."""
    return {
        k: v.repeat(times, *([1] * (v.ndim - 1))) if isinstance(v, Tensor) and v.ndim else v
        for k, v in batch.inputs.items()
    }


def _replay(job: Job) -> Sweep:
    """Patched copies of each corrupt batch, several per forward, each resuming from cached states.

    One corrupt forward per batch keeps every decoder layer's output (and gives the corrupt metric).
    Jobs (layer, position), in layer order, are packed ``max_rows // batch`` copies per forward; the
    layers before a group's first patched layer are replayed from the cache instead of computed, so
    a full sweep computes about half the layers of one-forward-per-layer. A copy patched at a later
    layer than the group's first computes its unpatched layers again, which gives the cached values.
    """
    model, specs, layer_ids, site = job.model, job.specs, job.layer_ids, job.site
    pairs = torch.zeros(len(layer_ids), len(specs), len(job.corrupt))
    corrupt_m, forwards = [], 0
    last = max(layer_ids)
    for i, chunk, imgs in chunks(job.corrupt, job.corrupt_images, job.batch_size):
        batch = model.encode(chunk, images=imgs)
        b = len(batch)
        with model.hooks(keep_layers=list(range(last + 1))) as run, torch.inference_mode():
            logits = model.next_token_logits(batch.inputs)
        corrupt_m.append(refusal_logodds(logits, job.token_ids).float().cpu())
        cached, as_tuple = run.kept, bool(run.output_is_tuple)
        forwards += 1
        copies = max(1, job.max_rows // b)
        jobs = [(li, pi) for li in range(len(layer_ids)) for pi in range(len(specs))]
        for j in range(0, len(jobs), copies):
            group = jobs[j : j + copies]
            g = len(group)
            first = layer_ids[group[0][0]]
            resume = first if site == "resid" else first - 1  # replay layers 0..resume
            replay = {k: cached[k].repeat(g, 1, 1) for k in range(resume + 1) if k in cached}
            edits = []
            for c, (li, pi) in enumerate(group):
                rows = torch.zeros(b * g, dtype=torch.bool)
                rows[c * b : (c + 1) * b] = True
                value = torch.zeros(b * g, model.d_model)
                value[c * b : (c + 1) * b] = job.states[specs[pi].name][i : i + b, li]
                edits.append(
                    Edit.replace(value, layers=[layer_ids[li]], positions=[specs[pi]], rows=rows, site=site)
                )
            inputs = _repeat(batch, g, b)
            with model.hooks(edits=edits, replay=replay, replay_tuple=as_tuple), torch.inference_mode():
                logits = model.next_token_logits(inputs)
            forwards += 1
            m = refusal_logodds(logits, job.token_ids).view(g, b)
            for c, (li, pi) in enumerate(group):
                pairs[li, pi, i : i + b] = m[c].float().cpu()
    return Sweep(pairs, torch.cat(corrupt_m).float().cpu(), forwards, "replay_pack")


def _loop(job: Job) -> Sweep:
    """The usual implementation, for comparison: one full patched forward per (layer, position), each batch."""
    model, specs = job.model, job.specs
    batches = [
        (i, model.encode(c, images=imgs))
        for i, c, imgs in chunks(job.corrupt, job.corrupt_images, job.batch_size)
    ]
    corrupt_m = [_metric(model, batch, token_ids=job.token_ids) for _, batch in batches]
    pairs = torch.zeros(len(job.layer_ids), len(specs), len(job.corrupt))
    forwards = 1
    for li in range(len(job.layer_ids)):
        for pi in range(len(specs)):
            for i, batch in batches:
                value = job.states[specs[pi].name][i : i + job.batch_size, li]
                edit = Edit.replace(value, layers=[job.layer_ids[li]], positions=[specs[pi]], site=job.site)
                pairs[li, pi, i : i + len(batch)] = _metric(model, batch, [edit], job.token_ids).float().cpu()
            forwards += 1
    return Sweep(pairs, torch.cat(corrupt_m).float().cpu(), forwards, "loop")


def patch_residual(model, clean: list[str], corrupt: list[str], **kwargs) -> PatchingMap:
    """Exact residual-stream patching of clean states into corrupt runs over layers x positions."""
    return patch_activations(model, clean, corrupt, site="resid", **kwargs)


def patch_components(
    model, clean: list[str], corrupt: list[str], sites=SITES, **kwargs
) -> dict[str, PatchingMap]:
    """Exact patching of each site (residual stream, attention output, MLP output): ``{site: map}``.

    >>> maps = patch_components(model, harmful, harmless)
    >>> maps["mlp"].profile().figure()
    """
    return {site: patch_activations(model, clean, corrupt, site=site, **kwargs) for site in sites}


def patch_activations(
    model,
    clean: list[str],
    corrupt: list[str],
    clean_images=None,
    corrupt_images=None,
    layers="all",
    positions="last",
    mode: str = "batched",
    max_rows: int = 64,
    batch_size: int = 16,
    site: str = "resid",
) -> PatchingMap:
    """Exact patching of one site's clean outputs into corrupt runs over layers x positions.

    ``site``: ``"resid"`` (decoder-layer output), ``"attn"`` or ``"mlp"`` (what that block adds to the
    stream, :meth:`~interp.models.hooked.HookedModel.writer`, so the rest of the layer is recomputed
    from the patched block).
    """
    check_site(site)
    if mode not in ("batched", "replay", "loop"):
        raise InputError(f"mode must be 'batched', 'replay' or 'loop', got {mode!r}.")
    check_pairs(clean, corrupt, clean_images, corrupt_images)
    specs = patch_positions(positions)
    layer_ids = resolve_layers(layers, model.n_layers)
    skipped = skipped_layers(model, layer_ids, clean_images, corrupt_images)
    if skipped:
        ran = ran_layers(model, layer_ids, skipped, site)
        kwargs = dict(positions=positions, mode=mode, max_rows=max_rows, batch_size=batch_size, site=site)
        inner = patch_activations(model, clean, corrupt, layers=ran, **kwargs)
        return fill_skipped(model, inner, layer_ids, skipped)
    t0 = time.perf_counter()
    token_ids = refusal_token_ids(model.tokenizer)
    states, clean_m = clean_pass(model, clean, clean_images, specs, layer_ids, site, batch_size, token_ids)
    n = len(corrupt)
    job = Job(model, corrupt, corrupt_images, states, specs, layer_ids, site, batch_size, token_ids, max_rows)
    if mode == "loop":
        sweep = _loop(job)
    else:  # "batched": resume from the KV cache where that applies, else the packed replay
        sweep = (kv_resume(job) if mode == "batched" else None) or _replay(job)
    return PatchingMap.from_pairs(
        sweep.pairs,
        clean_m,
        sweep.corrupt,
        method=f"patch_{site} ({mode})",
        layers=layer_ids,
        positions=[p.name for p in specs],
        model=model.name,
        forwards=1 + sweep.forwards,  # + the clean pass
        seconds=time.perf_counter() - t0,
        metadata={
            "n_pairs": n,
            "mode": mode,
            "site": site,
            "max_rows": max_rows,
            "strategy": sweep.strategy,
            "degenerate": abs(float(clean_m.mean()) - float(sweep.corrupt.mean())) <= 1e-6,
        },
    )
