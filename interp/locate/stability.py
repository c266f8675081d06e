"""How stable a layer selection is when the prompt pairs it was computed from are resampled.

    >>> maps = interp.locate.patch_components(model, harmful, harmless, sites=("attn", "mlp"))
    >>> rule = lambda m: top_window([a + b for a, b in zip(m["attn"].profile().scores, m["mlp"].profile().scores)])
    >>> s = interp.locate.selection_stability(maps, rule)
    >>> s.frequency          # per layer: share of resamples that select it
    >>> s.same_selection     # share of resamples that give exactly the selection on all pairs

Each resample draws the pairs with replacement, the same pairs for every map (they were patched on
the same prompts), recomputes the maps exactly from their per-pair numbers (no forwards) and applies
the rule. A layer selected in nearly every resample is not an accident of which prompts were drawn;
one selected in half of them is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from interp.errors import InputError
from interp.locate.patching import PatchingMap


@dataclass
class SelectionStability:
    layers: list[int]
    selected: list[int]  # the rule on all pairs
    frequency: list[float]  # per layer: share of resamples whose selection contains it
    same_selection: float  # share of resamples whose selection equals ``selected``
    resamples: int
    n_pairs: int
    rule: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def selection_stability(
    maps: dict[str, PatchingMap],
    select: Callable[[dict[str, PatchingMap]], list[int]],
    resamples: int = 1000,
    seed: int = 0,
    rule: str = "",
) -> SelectionStability:
    """Bootstrap the prompt pairs behind ``maps`` and count how often ``select(maps)`` picks each layer."""
    if not maps:
        raise InputError("selection_stability needs at least one patching map.")
    if resamples < 1:
        raise InputError(f"resamples must be at least 1, not {resamples}.")
    sizes, layer_sets = set(), set()
    for name, m in maps.items():
        if m.pairs is None or m.clean_pairs is None or m.corrupt_pairs is None:
            raise InputError(
                f"map {name!r} ({m.method}) keeps no per-pair numbers (a resampled map, or one built by "
                "hand); pass the maps patching returned."
            )
        sizes.add(m.pairs.shape[-1])
        layer_sets.add(tuple(m.layers))
    if len(sizes) != 1 or len(layer_sets) != 1:
        raise InputError(
            "the maps must come from the same prompt pairs and layers (got pair counts "
            f"{sorted(sizes)} and {len(layer_sets)} different layer lists); patch them in one call."
        )
    (n,), (layers,) = sizes, layer_sets
    selected = sorted(select(maps))
    counts = dict.fromkeys(layers, 0)
    same = 0
    gen = torch.Generator().manual_seed(seed)
    for _ in range(resamples):
        idx = torch.randint(n, (n,), generator=gen)
        chosen = sorted(select({name: m.resampled(idx) for name, m in maps.items()}))
        for layer in chosen:
            counts[layer] += 1
        same += chosen == selected
    return SelectionStability(
        layers=list(layers),
        selected=selected,
        frequency=[counts[layer] / resamples for layer in layers],
        same_selection=same / resamples,
        resamples=resamples,
        n_pairs=n,
        rule=rule,
    )
