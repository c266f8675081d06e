"""Forward hooks at decoder-layer outputs (the residual stream) and their components: capture, add, replace, ablate.

    >>> with interp.hooks.attach(model, capture_layers=[3, 5], capture_positions=["last"]) as run:
    ...     model.forward(batch)
    >>> run.captured[(3, "last")][0].shape        # [B, D]

This module is the single place that registers hooks. :func:`attach` always removes them, also when
the forward raises. State (the prompt layout, what was captured) lives in the :class:`HookRun` of one
``with`` block, never on a class, so concurrent contexts and batches never mix.

Layer ``i`` here is the output of decoder layer ``i``: ``hidden_states[i + 1]`` of
``output_hidden_states=True`` and TransformerLens ``blocks.{i}.hook_resid_post``. Edits run before
captures on the same layer, so a capture sees the edited state.

Sites: ``"resid"`` (decoder-layer output, the default), ``"attn"`` (the attention block's output, before
it is added to the stream) and ``"mlp"`` (the MLP block's output), for component patching, and
``"embed"`` (the token-embedding output, the stream before layer 0; only with ``layers=[0]``).
Ablating a direction from ``embed`` and from every ``attn`` and ``mlp`` output removes it from every
residual-stream activation, as the orthogonalized weights of :mod:`interp.steer.folding` do. The edits themselves are
:mod:`interp.edits`; layer indices are resolved by :mod:`interp.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from interp.compat import cached_length
from interp.edits import SITES, Edit, Gate, check_gate_layer, check_width
from interp.errors import InputError, LayerIndexError
from interp.layers import resolve_layers
from interp.positions import Position, PromptLayout, edit_mask, parse_positions, reduce_prefill

if TYPE_CHECKING:
    from interp.models.hooked import HookedModel


class StopForward(Exception):
    """Raised by a hook to end a forward pass after the last layer that matters (baukit's ``stop``);
    :func:`attach` catches it, so the ``with`` block ends there and the caller never sees it."""


def untuple(output):
    """Decoder layers return a tensor in transformers 5.x and a tuple in older or remote-code models."""
    return output[0] if isinstance(output, tuple) else output


def retuple(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass
class HookRun:
    """State of one :func:`attach` block: the current prompt layout and what was captured."""

    image_token_id: int | None
    capture_positions: list[Position] = field(default_factory=list)
    stop_after: int | None = None
    captured: dict[tuple[int, str], list] = field(default_factory=dict)
    keep_layers: tuple[int, ...] = ()
    kept: dict[int, Tensor] = field(default_factory=dict)  # full layer outputs (graph attached under grad)
    output_is_tuple: bool | None = None  # how the decoder layers return, seen by the layer hooks
    gate_rows: dict = field(default_factory=dict)  # Gate -> bool [B], decided at the last prefill
    gate_scores: dict = field(default_factory=dict)  # Gate -> projection [B]
    layout: PromptLayout | None = None
    past_len: int = 0
    chunk_len: int = 0
    chunk_real: Tensor | None = None
    rerun: bool = False  # this forward re-runs the prompt and the tokens generated so far, without a cache
    _ids: Tensor | None = None  # the ids of the last forward without a cache, to recognise a re-run
    row_masks: dict = field(default_factory=dict)  # layer -> the MLP's per-token write mask (Mllama)
    _masks: dict = field(default_factory=dict)
    _prepared: dict = field(default_factory=dict)  # id(edit) -> (vector, rows, basis) on the stream's device

    def prepared(self, edit: Edit, h: Tensor) -> tuple:
        key = id(edit)
        got = self._prepared.get(key)
        if got is None or got[0].device != h.device or got[0].dtype != h.dtype:
            got = self._prepared[key] = edit.prepare(h)
        return got

    def whole(self, edit: Edit, h: Tensor) -> Tensor | None:
        """For an edit of every token and every row (add/ablate/set at positions "all", no rows, no gate),
        what ``Edit.apply_whole`` needs on ``h``'s device, cached; None for any other edit."""
        key = ("whole", id(edit))
        got = self._prepared.get(key)
        if got is None:
            got = self._prepared[key] = (edit.whole, None, None)
        if not got[0]:
            return None
        v = self.prepared(edit, h)[0]  # re-made on a device or dtype change; the scaled form follows it
        if got[1] is not v:
            scaled = edit.alpha * (v.unsqueeze(1) if v.ndim == 2 else v) if edit.op == "add" else v
            got = self._prepared[key] = (True, v, scaled)
        return got[2]

    def edit_mask_for(self, edit: Edit, h: Tensor) -> Tensor:
        """Tokens of this chunk that the edit's positions select (cached per forward)."""
        key = (*(p.name for p in edit.positions), edit.image_rows_only)
        if key not in self._masks:
            mask = torch.zeros(h.shape[:2], dtype=torch.bool, device=h.device)
            for pos in edit.positions:
                mask = mask | self.mask_for(pos)
            if edit.image_rows_only:
                mask = mask & self.layout.image_rows().to(h.device).unsqueeze(1)
            self._masks[key] = mask
        return self._masks[key]

    def on_forward(self, module, args, kwargs):
        """Pre-hook on the top-level model: learn the chunk, prefill vs decode, and the prompt layout."""
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        ref = input_ids if input_ids is not None else embeds
        if ref is None:
            return
        b, c = ref.shape[0], ref.shape[1]
        attn = kwargs.get("attention_mask")
        if isinstance(attn, dict) or (attn is not None and attn.ndim != 2):
            attn = None  # 4D/custom masks: treat every token as real
        if attn is not None and attn.shape[1] > c:
            past = attn.shape[1] - c
        else:  # no mask that covers the past: the cache says how much there is (none: a prompt)
            past = cached_length(kwargs) or 0
        full = (
            attn.bool() if attn is not None else torch.ones(b, past + c, dtype=torch.bool, device=ref.device)
        )
        # a re-run of generate(use_cache=False) keeps the prompt's layout, so steering matches the cached run
        self.rerun = past == 0 and self._continues(input_ids, kwargs)
        if past == 0:
            self._ids = input_ids
        if past == 0 and not self.rerun:
            image = None
            if self.image_token_id is not None and input_ids is not None:
                image = input_ids == self.image_token_id
            self.layout = PromptLayout(mask=full[:, :c], image=image)
        elif self.layout is None:
            # the context starts on a forward that continues a KV cache (a patched run resumed at its
            # last tokens): the prompt is everything the attention mask covers, its image tokens unknown
            self.layout = PromptLayout(mask=full, image=None)
        self.past_len, self.chunk_len = past, c
        self.chunk_real = full[:, past : past + c]
        self._masks = {}

    def _continues(self, input_ids: Tensor | None, kwargs: dict) -> bool:
        """Whether a forward without a KV cache is a decode step of ``generate(use_cache=False)``: it
        says ``use_cache=False`` and its ids are the previous such forward's ids plus one token."""
        prev = self._ids
        if kwargs.get("use_cache") is not False or input_ids is None or prev is None or self.layout is None:
            return False
        b, t = prev.shape
        return (
            input_ids.shape == (b, t + 1)
            and input_ids.device == prev.device
            and bool((input_ids[:, :t] == prev).all())
        )

    def write_scale(self, index: int, gain: Tensor, h: Tensor) -> Tensor:
        """What multiplies a gated writer's output on its way to the stream, for this forward: the
        gain, times the per-token mask of the MLP where the layer was given one."""
        scale = gain.to(h.device, h.dtype)
        mask = self.row_masks.get(index)
        if mask is not None:
            scale = scale * mask[:, 0].to(h.device, h.dtype)  # [B, 1, T, 1] -> [B, T, 1]
        return scale

    def _ensure_layout(self, h: Tensor) -> None:
        if self.layout is None:  # forward called on a submodule: every token real, no images
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            self.layout = PromptLayout(mask=mask, image=None)
            self.past_len, self.chunk_len, self.chunk_real = 0, h.shape[1], mask

    def mask_for(self, pos: Position) -> Tensor:
        if pos.name not in self._masks:
            self._masks[pos.name] = edit_mask(
                pos, self.layout, self.past_len, self.chunk_len, self.chunk_real
            )
        return self._masks[pos.name]

    def take(self) -> dict[tuple[int, str], list]:
        """Return what was captured so far and start empty (one call per batch)."""
        out, self.captured = self.captured, {}
        return out


@contextmanager
def attach(
    model: HookedModel,
    capture_layers=None,
    capture_positions="last",
    edits: Sequence[Edit] = (),
    stop: bool = False,
    keep_layers=None,
    capture_site: str = "resid",
    replay: dict[int, Tensor] | None = None,
    replay_tuple: bool = False,
):
    """Register capture and edit hooks on ``model`` for the duration of the block; yields a :class:`HookRun`.

    ``capture_site`` picks what the captures read: ``"resid"`` (layer output), ``"attn"`` or ``"mlp"``
    (that block's output); each edit carries its own ``site``.

    ``stop=True`` ends the forward after the last captured layer at prefill, so no later layer, final
    norm or LM head is computed: a hook raises :class:`StopForward`, and this context catches it and
    ends the ``with`` block there (as baukit's ``Trace`` does); the captures are in the run.
    ``keep_layers`` keeps those layers' full outputs in ``run.kept`` (under ``torch.enable_grad()``
    with the autograd graph attached: the embeddings are made differentiable if no parameter
    requires grad), for gradient methods such as attribution patching:
    ``torch.autograd.grad(metric, list(run.kept.values()))``, and to replay them.
    ``replay={layer: states [B, T, D]}`` makes those decoder layers return the given states instead
    of computing (edits and captures still apply to them): a forward that resumes from cached states
    skips the layers before the one it patches. The original ``forward`` is restored on exit.
    ``replay_tuple`` must say how the layers return (``run.output_is_tuple`` of the caching run).
    """
    n = model.n_layers
    cap_layers = resolve_layers(capture_layers, n) if capture_layers is not None else []
    keep = resolve_layers(keep_layers, n) if keep_layers is not None else []
    run = HookRun(image_token_id=model.image_token_id, keep_layers=tuple(keep))
    if cap_layers:
        run.capture_positions = parse_positions(capture_positions)
    if capture_site not in SITES:
        raise InputError(f"capture_site={capture_site!r}; captures read one of {SITES}.")
    if stop and cap_layers:
        run.stop_after = max(cap_layers)
    per_site: dict[tuple[int, str], list[Edit]] = {}
    gates: dict[int, list[Gate]] = {}
    for edit in edits:
        check_width(edit, model.d_model)
        edit_layers = resolve_layers(edit.layers, n)
        if edit.site == "embed" and edit_layers != [0]:
            raise LayerIndexError(
                f"an edit at site 'embed' (the token-embedding output) takes layers=[0], got {edit.layers!r}."
            )
        for i in edit_layers:
            per_site.setdefault((i, edit.site), []).append(edit)
        if edit.gate is not None:
            g = edit.gate
            check_gate_layer(edit, n)
            if g not in gates.setdefault(g.layer % n, []):
                gates[g.layer % n].append(g)
    # a gate on a layer the model may skip (Mllama's cross-attention layers, without images) decides
    # first on the layer before it, whose output is then the skipped layer's; the layer, if it runs,
    # decides again
    for layer in [i for i in gates if i in model.skippable_layers]:
        before = model.stream_source(layer)
        if before >= 0:
            gates.setdefault(before, [])
            gates[before] = [g for g in gates[before] if g not in gates[layer]] + gates[layer]
    targets = (
        set(per_site)
        | {(i, capture_site) for i in cap_layers}
        | {(i, "resid") for i in keep}
        | {(i, "resid") for i in gates}
    )
    handles = []
    replayed = []
    try:
        for i, states in (replay or {}).items():
            layer = model.layers[i]
            layer.forward = _replayer(states, replay_tuple)
            replayed.append(layer)
        handles.append(model.model.register_forward_pre_hook(run.on_forward, with_kwargs=True))
        if keep:  # make the stream differentiable even when no parameter requires grad
            handles.append(model.embed.register_forward_hook(_grad_from_embeddings))
        for i, site in sorted(targets):
            if site == "embed":
                module = model.embed
            else:
                module = model.layers[i] if site == "resid" else model.writer(i, site)
            gain = model.write_gain(i, site) if site in ("attn", "mlp") else None
            if gain is not None and site == "mlp" and model.adapter.mlp_row_mask:
                handles.append(
                    model.layers[i].register_forward_pre_hook(
                        _row_mask_keeper(run, i, model.adapter.mlp_row_mask), with_kwargs=True
                    )
                )
            site_edits = per_site.get((i, site), [])
            capture = i in cap_layers and site == capture_site
            plain = (site != "resid" or (i not in keep and i not in gates)) and gain is None
            if site_edits and plain and not capture and all(e.whole for e in site_edits):
                hook = _whole_hook(run, site_edits, resid=site == "resid")  # the lean path
            else:
                hook = _layer_hook(
                    run,
                    i,
                    site_edits,
                    capture=capture,
                    resid=site == "resid",
                    gates=gates.get(i, []) if site == "resid" else [],
                    gain=gain,
                    site=site,
                )
            handles.append(module.register_forward_hook(hook))
        yield run
    except StopForward:
        pass  # the early stop asked for: the block ends at the forward that stopped
    finally:
        for handle in handles:
            handle.remove()
        for layer in replayed:
            del layer.forward  # the class's forward again


def _replayer(states: Tensor, as_tuple: bool):
    def forward(hidden_states, *args, **kwargs):
        if states.shape[:2] != hidden_states.shape[:2]:
            raise InputError(
                f"replayed states have shape {tuple(states.shape)} but this forward's stream is "
                f"{tuple(hidden_states.shape)}. Fix: replay states cached from the same batch."
            )
        out = states.to(hidden_states.device, hidden_states.dtype)
        return (out,) if as_tuple else out

    return forward


def _grad_from_embeddings(module, args, output):
    if torch.is_grad_enabled() and not output.requires_grad:
        return output.detach().requires_grad_(True)
    return None


def _whole_hook(run: HookRun, edits: list[Edit], resid: bool):
    """A site whose edits all touch every token with a constant vector (no capture, gate or kept
    state there): no layout, mask or gate work, one or two kernels per edit."""

    def hook(module, args, output):
        h = untuple(output)
        for edit in edits:
            h = edit.apply_whole(h, run.whole(edit, h))
        if resid:
            run.output_is_tuple = isinstance(output, tuple)
        return retuple(output, h)

    return hook


def _row_mask_keeper(run: HookRun, index: int, name: str):
    def pre_hook(module, args, kwargs):
        run.row_masks[index] = kwargs.get(name)

    return pre_hook


def _unscaled(delta: Tensor, scale: Tensor, index: int, site: str) -> Tensor:
    """The change to a gated writer's output that changes what it writes by ``delta``; zero where
    nothing it writes reaches the stream (there no edit can act)."""
    zero = scale == 0
    if bool(zero.all()) and bool((delta != 0).any()):
        raise InputError(
            f"layer {index}'s {site} output reaches the stream through a learned gate that is 0 "
            "(tanh(gate) * output: an untrained or disabled cross-attention layer), so an edit there "
            "changes nothing. Fix: edit the residual stream (site 'resid') at this layer."
        )
    return torch.where(
        zero, torch.zeros_like(delta), delta / torch.where(zero, torch.ones_like(scale), scale)
    )


def _layer_hook(
    run: HookRun,
    index: int,
    edits: list[Edit],
    capture: bool,
    resid: bool = True,
    gates=(),
    gain: Tensor | None = None,
    site: str = "resid",
):
    """With ``gain`` (a gated writer, Mllama's cross-attention layers), the captures and edits see
    what the block writes to the stream, ``gain * output`` (times the MLP's per-token mask), and the
    block's output is changed so that its write changes by exactly the edit."""

    def hook(module, args, output):
        h = untuple(output)
        run._ensure_layout(h)
        scale = None if gain is None else run.write_scale(index, gain, h)
        raw = h
        if scale is not None:
            h = h * scale
        seen = h
        if run.past_len == 0 and not run.rerun:
            for gate in gates:  # decided on the unedited state of this layer
                run.gate_rows[gate], run.gate_scores[gate] = gate.decide(h, run.layout)
        if edits:
            for edit in edits:
                whole = run.whole(edit, h)
                if whole is not None:
                    h = edit.apply_whole(h, whole)
                    continue
                mask = run.edit_mask_for(edit, h)
                if edit.gate is not None:
                    if edit.gate not in run.gate_rows:
                        raise InputError(
                            "a gated edit ran before its gate decided (a decode step without a prefill in "
                            "this context?). Fix: run the prefill inside the same steering context."
                        )
                    mask = mask & run.gate_rows[edit.gate].to(mask.device).unsqueeze(1)
                h = edit.apply(h, mask, run.prepared(edit, h))
            output = retuple(output, h if scale is None else raw + _unscaled(h - seen, scale, index, site))
        if resid:
            run.output_is_tuple = isinstance(output, tuple)
        if resid and index in run.keep_layers and index not in run.kept:  # the context's first forward
            run.kept[index] = h
        if capture and run.past_len == 0 and not run.rerun:
            for pos in run.capture_positions:
                run.captured.setdefault((index, pos.name), []).append(
                    reduce_prefill(h.detach(), run.layout, pos)
                )
            if run.stop_after == index:
                raise StopForward
        return output if edits else None

    return hook
