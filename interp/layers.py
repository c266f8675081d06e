"""Layer indices: ``"all"``, an int or a list (negative counts from the end) to sorted indices.

>>> resolve_layers([-1, 3, 3], n_layers=30)
[3, 29]
"""

from __future__ import annotations

from interp.errors import LayerIndexError


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
