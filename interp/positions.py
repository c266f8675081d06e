"""Token positions, resolved per row from the attention mask, under left padding and a KV cache.

    >>> spec = parse_positions(["last", "image_mean", -2])
    >>> [p.name for p in spec]
    ['last', 'image_mean', 'tok-2']

Two uses:
- *capture* reduces a prefill chunk ``[B, T, D]`` to ``[B, D]`` (``last``, ``mean``, ``image_mean``,
  an index) or to a padded span ``[B, P, D]`` plus a mask (``all``, ``image``);
- *edits* (add / replace / ablate) need a boolean mask ``[B, C]`` over the current chunk, which is the
  whole prompt at prefill and a single token at each decode step. Indices are absolute in the
  sequence (prompt + generated), never relative to the chunk, so decode steps are never skipped or
  hit by mistake.

Integer positions count real (non-pad) prompt tokens: ``0`` is the first, ``-1`` the last.

The KV cache is what separates prompt from generated tokens: a forward that continues no cache is a
new prompt, with one exception. ``generate(..., use_cache=False)`` re-runs the whole sequence at every
step; a forward that says ``use_cache=False`` and whose ids are the previous such forward's ids plus
one token is taken as such a re-run (:attr:`interp.hooks.HookRun.rerun`). It keeps the first
prompt's layout, so ``generated`` still means the tokens after the prompt, ``last`` the prompt's last
token, gates keep their prefill decision and captures are not repeated: a steered ``generate`` gives
the same tokens with and without the cache. A forward on any other ids is a new prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import InputError

REDUCED = ("last", "mean", "image_mean")
SPANS = ("all", "image")
EDIT_ONLY = ("prompt", "generated")


@dataclass(frozen=True)
class Position:
    """One position spec: a named kind or an integer index into the real prompt tokens."""

    kind: str  # last | mean | image_mean | all | image | prompt | generated | index
    index: int | None = None

    @property
    def name(self) -> str:
        return f"tok{self.index}" if self.kind == "index" else self.kind

    @property
    def is_span(self) -> bool:
        return self.kind in SPANS


def parse_positions(positions) -> list[Position]:
    """Normalize ``"last"``, ``-1``, ``["last", "image_mean"]`` into a list of :class:`Position`."""
    items = positions if isinstance(positions, (list, tuple)) else [positions]
    if not items:
        raise InputError("positions is empty. Fix: pass e.g. 'last', 'all', 'image', 'image_mean' or an int.")
    out: list[Position] = []
    for item in items:
        if isinstance(item, Position):
            out.append(item)
        elif isinstance(item, bool):
            raise InputError(f"position {item!r} is a bool; pass a name or an int index.")
        elif isinstance(item, int):
            out.append(Position("index", int(item)))
        elif isinstance(item, str) and item in REDUCED + SPANS + EDIT_ONLY:
            out.append(Position(item))
        else:
            raise InputError(
                f"Unknown position {item!r}. Known: {', '.join(REDUCED + SPANS + EDIT_ONLY)}, "
                "or an int (0 = first real prompt token, -1 = last)."
            )
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise InputError(f"positions repeat an entry: {names}.")
    return out


@dataclass
class PromptLayout:
    """Per-row facts of a prefill, kept for the decode steps that follow it."""

    mask: Bool[Tensor, "b t"]  # real (non-pad) prompt tokens
    image: Bool[Tensor, "b t"] | None  # image-token positions (None for text models)
    # what a capture reduction needs, per (position, device), made once per prefill rather than once
    # per captured layer
    _gathers: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def prompt_len(self) -> int:
        return self.mask.shape[1]

    def first_real(self) -> Int[Tensor, " b"]:
        return self.mask.int().argmax(dim=1)

    def last_real(self) -> Int[Tensor, " b"]:
        t = self.mask.shape[1]
        return t - 1 - self.mask.flip(1).int().argmax(dim=1)

    def index(self, k: int) -> Int[Tensor, " b"]:
        """Absolute position of the k-th real prompt token per row; error when a row is too short."""
        n_real = self.mask.sum(1)
        if (k >= 0 and bool((n_real <= k).any())) or (k < 0 and bool((n_real < -k).any())):
            raise InputError(
                f"position {k} is outside a prompt of {int(n_real.min())} tokens. "
                "Fix: use an index within the shortest prompt, or 'last'."
            )
        return self.first_real() + k if k >= 0 else self.last_real() + 1 + k

    def image_rows(self) -> Bool[Tensor, " b"]:
        """Rows whose prompt has image tokens (none for a text model or a text-only batch)."""
        if self.image is None:
            return torch.zeros(self.mask.shape[0], dtype=torch.bool, device=self.mask.device)
        return self.image.any(1)

    def image_or_raise(self) -> Bool[Tensor, "b t"]:
        if self.image is None:
            raise InputError(
                "position 'image'/'image_mean' asked of a text-only input. "
                "Fix: pass images= with a vision-language model, or use 'last'/'mean'."
            )
        rows = ~self.image.any(1)
        if bool(rows.any()):
            raise InputError(
                f"rows {rows.nonzero().flatten().tolist()} have no image tokens, so 'image'/'image_mean' is "
                "undefined there. Fix: give every prompt an image, or capture image positions separately."
            )
        return self.image


def reduce_prefill(
    hidden: Float[Tensor, "b t d"], layout: PromptLayout, pos: Position
) -> tuple[Float[Tensor, "b ..."], Bool[Tensor, "b p"] | None]:
    """Capture reduction at prefill: ``[B, D]`` for reduced kinds, ``([B, P, D], mask)`` for spans."""
    if pos.kind in ("last", "index"):
        rows, cols = _gather(layout, pos, hidden.device)
        return hidden[rows, cols], None
    if pos.kind in ("mean", "image_mean"):
        key = (pos.name, hidden.device, hidden.dtype)
        if key not in layout._gathers:
            sel = layout.mask if pos.kind == "mean" else layout.image_or_raise()
            w = sel.to(hidden.device, hidden.dtype).unsqueeze(-1)
            layout._gathers[key] = (w, w.sum(1))
        w, total = layout._gathers[key]
        return (hidden * w).sum(1) / total, None
    if pos.kind in ("all", "image"):
        sel = layout.mask if pos.kind == "all" else layout.image_or_raise()
        return _pack_span(hidden, sel.to(hidden.device))
    raise InputError(
        f"position {pos.name!r} selects tokens to edit, not to capture. Fix: use 'last' or 'all'."
    )


def _gather(layout: PromptLayout, pos: Position, device) -> tuple[Tensor, Tensor]:
    """Row and column indices of a one-token position, made once per layout and device."""
    key = (pos.name, device)
    if key not in layout._gathers:
        cols = layout.last_real() if pos.kind == "last" else layout.index(pos.index)
        layout._gathers[key] = (torch.arange(len(cols), device=device), cols.to(device))
    return layout._gathers[key]


def _pack_span(hidden: Float[Tensor, "b t d"], sel: Bool[Tensor, "b t"]):
    """Left-align the selected tokens of each row into ``[B, P, D]`` with a validity mask."""
    counts = sel.sum(1)
    p = int(counts.max())
    order = torch.argsort((~sel).int(), dim=1, stable=True)[:, :p]
    packed = torch.gather(hidden, 1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    valid = torch.arange(p, device=hidden.device).unsqueeze(0) < counts.unsqueeze(1)
    return packed * valid.unsqueeze(-1).to(packed.dtype), valid


def edit_mask(
    pos: Position, layout: PromptLayout, past_len: int, chunk_len: int, chunk_real: Bool[Tensor, "b c"]
) -> Bool[Tensor, "b c"]:
    """Which tokens of the current chunk (absolute positions ``past_len .. past_len+C-1``) to edit."""
    device = chunk_real.device
    absolute = torch.arange(past_len, past_len + chunk_len, device=device).unsqueeze(0)
    in_prompt = absolute < layout.prompt_len
    if pos.kind == "all":
        return chunk_real
    if pos.kind == "prompt":
        return chunk_real & in_prompt
    if pos.kind == "generated":
        return chunk_real & ~in_prompt
    if pos.kind in ("last", "index"):
        target = layout.last_real() if pos.kind == "last" else layout.index(pos.index)
        return absolute == target.to(device).unsqueeze(1)
    if pos.kind == "image":
        image = layout.image_or_raise().to(device)
        mask = torch.zeros_like(chunk_real)
        n = max(0, min(layout.prompt_len - past_len, chunk_len))  # prompt tokens in this chunk
        mask[:, :n] = image[:, past_len : past_len + n]
        return mask
    raise InputError(
        f"position {pos.name!r} reduces several tokens to one and cannot be edited. "
        "Fix: edit 'image' (every image token) or 'all'."
    )
