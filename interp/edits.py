"""Edits: what a hook does to a hidden state, as data (add, replace, ablate, set a projection, pull).

    >>> Edit.add(direction, layers=[10, 11], alpha=4.0, positions="generated")
    >>> Edit.ablate(direction, layers="all")
    >>> Edit.pull(targets, layers=[12], positions="last").gated(Gate(harm, layer=8, threshold=0.5))

An :class:`Edit` is applied by the hooks of :func:`interp.hooks.attach` (``model.hooks(edits=...)``);
it holds no state between forwards. :class:`Gate` decides per row whether an edit acts (CAST-style).
Sites: ``"resid"`` (decoder-layer output), ``"attn"`` / ``"mlp"`` (a block's output, before it is added
to the stream) and ``"embed"`` (the token-embedding output; only with ``layers=[0]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError, LayerIndexError
from interp.layers import resolve_layers
from interp.positions import Position, PromptLayout, parse_positions, reduce_prefill

SITES = ("resid", "attn", "mlp")  # per decoder layer
EDIT_SITES = (*SITES, "embed")  # + the token-embedding output (layer 0 only)


def check_site(site: str) -> str:
    if site not in EDIT_SITES:
        raise InputError(
            f"site={site!r}; choose one of {EDIT_SITES} (residual stream, attention output, MLP output, "
            "token-embedding output)."
        )
    return site


@dataclass
class Edit:
    """A change to the residual stream at some layers and positions.

    >>> Edit.add(direction, layers=[10, 11], alpha=4.0, positions="all")
    >>> Edit.ablate(direction, layers="all")
    >>> Edit.replace(states, layers=[12], positions="last")   # states: [D] or [B, D]
    >>> Edit.replace(states, layers=[3], rows=group == 3)      # only some batch rows (batched patching)
    >>> Edit.replace(states, layers=[3], site="mlp")           # the MLP block's output, not the stream
    >>> Edit.affine(scale, bias, layers=[12], positions="last") # h <- scale * h + bias, per neuron
    """

    op: Literal["add", "replace", "ablate", "set", "pull", "pull_mean", "affine"]
    vector: Tensor  # [D] or per-row [B, D]
    layers: Sequence[int] | str
    positions: list[Position]
    alpha: float = 1.0  # strength; for ablate, the fraction of the projection removed
    rows: Tensor | None = None  # bool [B]: rows the edit touches (None = all)
    site: str = "resid"
    gate: Gate | None = None  # rows decided per forward from the stream (conditional steering)
    basis: Tensor | None = None  # pull, pull_mean: [K, D] orthonormal rows; the move stays in their span
    scale: Tensor | None = None  # affine: [D] per-neuron scale (``vector`` is the bias)
    image_rows_only: bool = False  # touch only rows whose prompt has image tokens (decided per row)

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
    def affine(
        cls,
        scale: Float[Tensor, " d"],
        bias: Float[Tensor, " d"],
        layers,
        alpha: float = 1.0,
        positions="all",
        site: str = "resid",
        image_rows_only: bool = False,
    ) -> Edit:
        """h <- h + alpha * ((scale - 1) * h + bias), per neuron: at ``alpha`` 1 the map
        ``scale * h + bias``, at 0 nothing (the transport maps of :class:`interp.steer.LinearTransport`).
        ``image_rows_only``: only in rows whose prompt has image tokens (a map learned from image-form
        states leaves text requests alone)."""
        bias, scale = _check_vector(bias).float(), _check_vector(scale).float()
        if bias.ndim != 1 or scale.shape != bias.shape:
            raise InputError(
                f"an affine edit needs a [D] scale and a [D] bias, got {tuple(scale.shape)} and {tuple(bias.shape)}."
            )
        return cls(
            "affine",
            bias,
            layers,
            parse_positions(positions),
            finite(alpha, "alpha"),
            site=check_site(site),
            scale=scale,
            image_rows_only=bool(image_rows_only),
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
        on ``h``'s device; the pull is computed in float32 when there is one), or for an affine edit
        its scale minus one in ``h``'s dtype."""
        rows = None if self.rows is None else self.rows.to(h.device)
        if self.op == "affine":
            return self.vector.to(h.device, h.dtype), rows, (self.scale - 1.0).to(h.device, h.dtype)
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
            and not self.image_rows_only
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
        if self.op == "affine":  # basis holds scale - 1: h + alpha * ((scale - 1) * h + bias)
            return h + m * (self.alpha * torch.addcmul(v, basis, h))
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
    named = [("vector", edit.vector), ("basis", edit.basis), ("scale", edit.scale)]
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


def check_gate_layer(edit: Edit, n_layers: int) -> None:
    """Refuse a gated edit whose gate reads a layer after the edit's first one (the decision would
    come after the edit), or a layer the model does not have."""
    g = edit.gate
    resolve_layers([g.layer], n_layers)
    if g.layer % n_layers > last_gate_layer(edit, n_layers):
        raise LayerIndexError(
            f"a gate reads layer {g.layer} but its edit starts at layer "
            f"{min(resolve_layers(edit.layers, n_layers))} ({edit.site}): the decision would come after "
            "the edit. Fix: a condition layer before the steered layers."
        )


def last_gate_layer(edit: Edit, n_layers: int) -> int:
    """The latest layer a gate may read for ``edit``: its first layer for a residual-stream edit
    (the gate reads that layer's output before the edit changes it), the one before for an edit
    inside a block (attention/MLP output), which runs before that layer's output exists."""
    first = min(resolve_layers(edit.layers, n_layers))
    return first if edit.site == "resid" else first - 1
