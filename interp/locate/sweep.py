"""The one contract of the exact patching strategies (loop, KV-resumed, packed replay).

    >>> sweep = strategy(Job(model, corrupt, None, states, specs, layers, "resid", 16, token_ids))
    >>> sweep.pairs.shape, sweep.strategy        # [L, P, N], "kv_resume"

Each strategy (:func:`interp.locate.kv_resume.kv_resume`, ``_replay`` and ``_loop`` in
:mod:`interp.locate.patching`) takes a :class:`Job` and returns a :class:`Sweep`; the KV-resumed one
returns None where it does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Job:
    """What every exact patching strategy is given: the corrupt prompts, the clean states to patch in
    (``states[position name]``: [N, L, D]), where (``layer_ids`` x ``specs`` at ``site``), and how."""

    model: object
    corrupt: list[str]
    corrupt_images: list | None
    states: dict[str, Tensor]
    specs: list
    layer_ids: list[int]
    site: str
    batch_size: int
    token_ids: list[int]
    max_rows: int = 64


@dataclass
class Sweep:
    """What every exact strategy returns: per-pair patched metrics [L, P, N], the corrupt runs'
    metrics [N], the forwards run, and the strategy's name."""

    pairs: Tensor
    corrupt: Tensor
    forwards: int
    strategy: str
