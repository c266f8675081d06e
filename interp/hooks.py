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
residual-stream activation, as the orthogonalized weights of :mod:`interp.export.bake` do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.compat import cached_length
from interp.errors import InputError, LayerIndexError
from interp.positions import Position, PromptLayout, edit_mask, parse_positions, reduce_prefill

if TYPE_CHECKING:
    from interp.models.hooked import HookedModel


SITES = ("resid", "attn", "mlp")  # per decoder layer
EDIT_SITES = (*SITES, "embed")  # + the token-embedding output (layer 0 only)


def check_site(site: str) -> str:
    if site not in EDIT_SITES:
        raise InputError(
            f"site={site!r}; choose one of {EDIT_SITES} (residual stream, attention output, MLP output, "
            "token-embedding output)."
        )
    return site


class StopForward(Exception):
    """Raised by a hook to end a forward pass after the last layer that matters (baukit's ``stop``);
    :func:`attach` catches it, so the ``with`` block ends there and the caller never sees it."""


def untuple(output):
    """Decoder layers return a tensor in transformers 5.x and a tuple in older or remote-code models."""
    return output[0] if isinstance(output, tuple) else output


def retuple(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass
class Edit:
    """A change to the residual stream at some layers and positions.

    >>> Edit.add(direction, layers=[10, 11], alpha=4.0, positions="all")
    >>> Edit.ablate(direction, layers="all")
    >>> Edit.replace(states, layers=[12], positions="last")   # states: [D] or [B, D]
    >>> Edit.replace(states, layers=[3], rows=group == 3)      # only some batch rows (batched patching)
    >>> Edit.replace(states, layers=[3], site="mlp")           # the MLP block's output, not the stream
    """

    op: Literal["add", "replace", "ablate", "set", "pull", "pull_mean"]
    vector: Tensor  # [D] or per-row [B, D]
    layers: Sequence[int] | str
    positions: list[Position]
    alpha: float = 1.0  # strength; for ablate, the fraction of the projection removed
    rows: Tensor | None = None  # bool [B]: rows the edit touches (None = all)
    site: str = "resid"
    gate: Gate | None = None  # rows decided per forward from the stream (conditional steering)
    basis: Tensor | None = None  # pull, pull_mean: [K, D] orthonormal rows; the move stays in their span

    @classmethod
    def _vector_edit(cls, op, vector, layers, alpha, positions, rows, site, basis=None) -> Edit:
        """An edit driven by a [D] or per-row [B, D] vector and a strength (add, pull, pull_mean)."""
        vector = _check_vector(vector)
        if basis is not None:
            basis = orthonormal_rows(basis)
            if basis.shape[-1] != vector.shape[-1]:
                raise InputError(
                    f"the pull basis has width {basis.shape[-1]} but the target has {vector.shape[-1]}. "
                    "Fix: take the directions from the same model (its d_model)."
                )
        return cls(
            op,
            vector,
            layers,
            parse_positions(positions),
            finite(alpha, "alpha"),
            _rows(rows),
            check_site(site),
            basis=basis,
        )

    @classmethod
    def add(
        cls,
        vector: Float[Tensor, "*b d"],
        layers,
        alpha: float = 1.0,
        positions="all",
        rows=None,
        site: str = "resid",
    ) -> Edit:
        return cls._vector_edit("add", vector, layers, alpha, positions, rows, site)

    @classmethod
    def replace(
        cls, value: Float[Tensor, "*b d"], layers, positions="last", rows=None, site: str = "resid"
    ) -> Edit:
        return cls(
            "replace",
            _check_vector(value),
            layers,
            parse_positions(positions),
            rows=_rows(rows),
            site=check_site(site),
        )

    @classmethod
    def ablate(
        cls, direction: Float[Tensor, " d"], layers="all", positions="all", site: str = "resid"
    ) -> Edit:
        return cls(
            "ablate", unit_vector(direction), layers, parse_positions(positions), site=check_site(site)
        )

    @classmethod
    def set_projection(
        cls, direction: Float[Tensor, " d"], value: float, layers, positions="all", site: str = "resid"
    ) -> Edit:
        """h <- h + (value - h.d) d for the unit direction d: the projection is set to ``value``."""
        d = unit_vector(direction)
        return cls(
            "set", d, layers, parse_positions(positions), finite(value, "value"), site=check_site(site)
        )

    @classmethod
    def pull(
        cls,
        target: Float[Tensor, "*b d"],
        layers,
        alpha: float,
        positions="last",
        rows=None,
        site="resid",
        basis: Float[Tensor, "*k d"] | None = None,
    ) -> Edit:
        """h <- h + alpha (target - h): part of the way toward ``target`` (alpha=1: replace).

        With ``basis`` (directions, [D] or [K, D]; orthonormalized here) only the part of the move
        inside their span is made: h <- h + alpha P (target - h), P the projector onto the span, so
        h's projections on those directions move toward target's and the rest of h is kept."""
        return cls._vector_edit("pull", target, layers, alpha, positions, rows, site, basis)

    @classmethod
    def pull_mean(
        cls,
        target: Float[Tensor, "*b d"],
        layers,
        alpha: float,
        positions="image",
        rows=None,
        site="resid",
        basis: Float[Tensor, "*k d"] | None = None,
    ) -> Edit:
        """Shift every selected token by alpha (target - their mean): the mean of the selected tokens
        (per row; the image tokens by default) moves ``alpha`` of the way to ``target``, and their
        differences from each other are kept. Rows with no selected token in a chunk (decode steps,
        for image tokens) are untouched. ``basis``: as in :meth:`pull`, the shift is projected onto it."""
        return cls._vector_edit("pull_mean", target, layers, alpha, positions, rows, site, basis)

    def prepare(self, h: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The vector in ``h``'s device and dtype, the rows mask on its device, and the basis (float32
        on ``h``'s device; the pull is computed in float32 when there is one)."""
        rows = None if self.rows is None else self.rows.to(h.device)
        basis = None if self.basis is None else self.basis.to(h.device, torch.float32)
        return self.vector.to(h.device, h.dtype), rows, basis

    def repeat_rows(self, k: int) -> Edit:
        """This edit for a batch in which every row is repeated ``k`` times in place, as ``generate``
        does for ``num_beams`` or ``num_return_sequences`` = k: a per-row vector and the rows mask are
        repeated with ``repeat_interleave``; an edit with one [D] vector for all rows is returned as is."""
        if k == 1 or (self.vector.ndim == 1 and self.rows is None):
            return self
        vector = self.vector.repeat_interleave(k, dim=0) if self.vector.ndim == 2 else self.vector
        rows = None if self.rows is None else self.rows.repeat_interleave(k, dim=0)
        return replace(self, vector=vector, rows=rows)

    def scaled(self, strength: float) -> Edit:
        """This edit at ``strength`` times its effect: ``alpha`` of add and pull, the fraction of the
        projection that ablate removes. Set and replace have no strength (only 1.0 is accepted)."""
        if self.op in ("set", "replace"):
            if strength != 1.0:
                raise InputError(
                    f"a {self.op} edit (SetProjection/Clamp, replace) has no strength; got {strength}. "
                    "Fix: use strength 1, or rebuild the intervention with another value."
                )
            return self
        return replace(self, alpha=self.alpha * finite(strength, "strength"))

    @property
    def whole(self) -> bool:
        """Every token of every row, with a constant vector: :meth:`apply_whole` can do it."""
        return (
            self.op in ("add", "ablate", "set")
            and self.rows is None
            and self.gate is None
            and all(p.kind == "all" for p in self.positions)
        )

    def apply_whole(self, h: Float[Tensor, "b c d"], v: Tensor) -> Float[Tensor, "b c d"]:
        """The fast path of an add/ablate/set edit on every token of every row (``HookRun.whole`` gives
        ``v``: the scaled vector for add, the unit direction otherwise): one or two kernels instead of
        masked arithmetic. Left-padding tokens are edited too, which no real token can see."""
        if self.op == "add":
            if v.ndim == 3 and v.shape[0] != h.shape[0]:
                raise _rows_error(v.shape[0], h.shape[0])
            return h + v
        proj = (h @ v).unsqueeze(-1)
        if self.op == "ablate":
            return torch.addcmul(h, proj, v, value=-self.alpha)
        return torch.addcmul(h, self.alpha - proj, v)

    def gated(self, gate: Gate) -> Edit:
        """This edit, applied only to the rows that ``gate`` selects in each forward."""
        return replace(self, gate=gate)

    def apply(
        self, h: Float[Tensor, "b c d"], mask: torch.Tensor, prepared: tuple | None = None
    ) -> Float[Tensor, "b c d"]:
        """``prepared``: ``(vector, rows, basis)`` from :meth:`prepare`, already on ``h``'s device (a
        context caches them, so a decode step copies nothing from the CPU)."""
        v, rows, basis = prepared if prepared is not None else self.prepare(h)
        if v.ndim == 2:
            if v.shape[0] != h.shape[0]:
                raise _rows_error(v.shape[0], h.shape[0])
            v = v.unsqueeze(1)
        if rows is not None:
            if rows.shape[0] != h.shape[0]:
                raise InputError(f"edit rows select {rows.shape[0]} rows but the batch has {h.shape[0]}.")
            mask = mask & rows.unsqueeze(1)
        m = mask.unsqueeze(-1).to(h.dtype)
        if self.op == "add":
            return h + m * (self.alpha * v)
        if self.op == "replace":
            return torch.where(mask.unsqueeze(-1), v.expand_as(h), h)
        if self.op == "pull":
            if basis is None:
                return h + m * (self.alpha * (v - h))
            return h + m * (self.alpha * _within(v.float() - h.float(), basis)).to(h.dtype)
        if self.op == "pull_mean":
            mf = m.float()
            mean = (h.float() * mf).sum(1, keepdim=True) / mf.sum(1, keepdim=True).clamp(min=1.0)
            shift = v.float() - mean
            if basis is not None:
                shift = _within(shift, basis)
            return h + m * (self.alpha * shift).to(h.dtype)
        proj = (h * v).sum(-1, keepdim=True)
        if self.op == "set":
            return h + m * (self.alpha - proj) * v
        return h - m * (self.alpha * proj) * v


@dataclass(eq=False)
class Gate:
    """A per-row condition read from the residual stream (CAST): at each prefill the state at
    ``layer`` and ``position`` is projected on the unit ``direction``; rows whose projection is above
    ``threshold`` (below it with ``above=False``) are selected, and gated edits touch only those rows,
    in the prefill and in every decode step after it. The decision lives in the :class:`HookRun`
    (``run.gate_rows[gate]``), never on the gate, so one gate serves concurrent contexts.

    >>> gate = Gate(direction, layer=8, threshold=0.5)
    >>> Edit.add(refusal, layers=[12], alpha=4.0).gated(gate)
    """

    direction: Tensor
    layer: int
    threshold: float
    position: Position = field(default_factory=lambda: Position("last"))
    above: bool = True

    def __post_init__(self):
        self.direction = unit_vector(self.direction)
        self.threshold = finite(self.threshold, "threshold")
        if self.position.kind not in ("last", "index"):
            raise InputError(
                f"a gate reads one token per row ('last' or an index), not {self.position.name!r}."
            )

    def decide(self, h: Float[Tensor, "b t d"], layout: PromptLayout) -> tuple[Tensor, Tensor]:
        state, _ = reduce_prefill(h, layout, self.position)
        return self.fires(state)

    def fires(self, state: Float[Tensor, "b d"]) -> tuple[Tensor, Tensor]:
        """``(rows, score)`` for states already read at the gate's position (e.g. from another run)."""
        score = state.float() @ self.direction.float().to(state.device)
        rows = score > self.threshold if self.above else score < self.threshold
        return rows, score


def _rows_error(n_vector: int, n_batch: int) -> InputError:
    msg = f"per-row edit vector has {n_vector} rows but the batch has {n_batch}. "
    if n_batch > n_vector and n_batch % n_vector == 0:
        k = n_batch // n_vector
        return InputError(
            msg + f"generate(num_beams={k}) or num_return_sequences={k} repeats each prompt {k} times. "
            f"Fix: vector.repeat_interleave({k}, dim=0), or generate one sequence per prompt."
        )
    return InputError(msg + "Fix: give one row per prompt, or a single [D] vector.")


def _within(x: Float[Tensor, "*n d"], basis: Float[Tensor, "k d"]) -> Float[Tensor, "*n d"]:
    """The part of ``x`` in the span of the orthonormal rows of ``basis``."""
    return (x @ basis.T) @ basis


def orthonormal_rows(directions) -> Float[Tensor, "k d"]:
    """An orthonormal basis (rows, float32) of the span of ``directions`` ([D] or [K, D]).

    >>> orthonormal_rows(torch.tensor([[3.0, 0.0], [1.0, 1.0]]))   # -> [[1, 0], [0, 1]] up to sign
    """
    d = torch.as_tensor(directions).detach().float().cpu()
    d = d.unsqueeze(0) if d.ndim == 1 else d
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[0] > d.shape[1]:
        raise InputError(
            f"a pull basis is [D] or [K, D] directions with 1 <= K <= D; got shape {tuple(d.shape)}. "
            "Fix: pass one direction or a stack of them."
        )
    if not torch.isfinite(d).all():
        raise InputError("a pull basis has NaN or inf entries. Fix: pass finite directions.")
    q, r = torch.linalg.qr(d.T)  # [D, K]
    if (r.diagonal().abs() <= 1e-6 * d.norm(dim=1).max().clamp(min=1e-12)).any():
        raise InputError(
            f"the {d.shape[0]} pull basis directions are linearly dependent (or one is zero). "
            "Fix: pass independent, non-zero directions."
        )
    return q.T.contiguous()


def finite(value, name: str) -> float:
    """``value`` as a float, refused unless it is a finite real number (a strength, a threshold)."""
    if isinstance(value, bool):
        raise InputError(f"{name}={value!r} is a bool. Fix: pass a finite number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r} is not a number. Fix: pass a finite number.") from None
    if not math.isfinite(number):
        raise InputError(f"{name}={value!r} is not finite. Fix: pass a finite number; never steer with it.")
    return number


def check_width(edit: Edit, d_model: int) -> None:
    """Refuse an edit whose vectors are not ``d_model`` wide, when it is attached, instead of a shape
    error from inside a hook in the middle of a forward or a generation."""
    named = [("vector", edit.vector), ("basis", edit.basis)]
    if edit.gate is not None:
        named.append(("gate direction", edit.gate.direction))
    for name, t in named:
        if t is not None and t.shape[-1] != d_model:
            raise InputError(
                f"a {edit.op} edit's {name} has size {t.shape[-1]} but the model's hidden size is "
                f"{d_model}. Fix: compute it on this model (a direction from its activations, an "
                "artifact made for it)."
            )


def _rows(rows) -> Tensor | None:
    if rows is None:
        return None
    t = torch.as_tensor(rows)
    if t.ndim != 1 or t.dtype != torch.bool:
        raise InputError("edit rows must be a 1-D bool tensor with one entry per batch row.")
    return t


def unit_vector(direction) -> Tensor:
    """A finite, non-zero [D] direction scaled to unit norm (clear errors otherwise)."""
    d = _check_vector(direction).float()
    if d.ndim != 1:
        raise InputError(f"a direction must be one [D] vector, got shape {tuple(d.shape)}.")
    norm = d.norm()
    if norm == 0:
        raise InputError("the direction has zero norm. Fix: pass a non-zero direction.")
    return d / norm


def _check_vector(vector) -> Tensor:
    t = torch.as_tensor(vector)
    if t.ndim not in (1, 2):
        raise InputError(f"edit vector must be [D] or [B, D], got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise InputError("edit vector contains NaN or inf. Fix: recompute it; never steer with it.")
    return t


def last_gate_layer(edit: Edit, n_layers: int) -> int:
    """The latest layer a gate may read for ``edit``: its first layer for a residual-stream edit
    (the gate reads that layer's output before the edit changes it), the one before for an edit
    inside a block (attention/MLP output), which runs before that layer's output exists."""
    first = min(resolve_layers(edit.layers, n_layers))
    return first if edit.site == "resid" else first - 1


def resolve_layers(layers, n_layers: int) -> list[int]:
    """``"all"``, an int or a list (negative counts from the end) → sorted unique layer indices."""
    if isinstance(layers, str):
        if layers != "all":
            raise LayerIndexError(f"layers={layers!r}; use 'all', an int or a list of ints.")
        return list(range(n_layers))
    items = [layers] if isinstance(layers, int) else list(layers)
    if not items:
        raise LayerIndexError("layers is empty. Fix: pass 'all' or at least one layer index.")
    out = []
    for i in items:
        if not isinstance(i, int) or isinstance(i, bool) or not -n_layers <= i < n_layers:
            raise LayerIndexError(
                f"layer {i!r} is out of range: this model has {n_layers} decoder layers, "
                f"valid indices are 0..{n_layers - 1} (or -{n_layers}..-1)."
            )
        out.append(i % n_layers)
    return sorted(set(out))


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
        key = tuple(p.name for p in edit.positions)
        if key not in self._masks:
            mask = torch.zeros(h.shape[:2], dtype=torch.bool, device=h.device)
            for pos in edit.positions:
                mask = mask | self.mask_for(pos)
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
            resolve_layers([g.layer], n)
            if g.layer % n > last_gate_layer(edit, n):
                raise LayerIndexError(
                    f"a gate reads layer {g.layer} but its edit starts at layer {min(edit_layers)} ({edit.site}): "
                    "the decision would come after the edit. Fix: a condition layer before the steered layers."
                )
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
