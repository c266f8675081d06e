"""Turn per-layer scores into located layers, with the rule written next to the answer.

    >>> top_window([0.1, 0.2, 0.9, 1.0, 0.3], fraction=0.5)
    [2, 3]
    >>> rise_window([0.0, 0.05, 0.4, 0.95, 1.0])
    [2, 3]
    >>> overlap([2, 3, 4], planted=[3, 4, 5, 6])
    {'precision': 0.667, 'recall': 0.5, 'inside': True}

Each method answers a different question, so each gets the rule that fits it: component patching
(one block's output per layer) locates by mass (:func:`top_window`), residual patching at the last
positions locates where the decision arrives there (:func:`rise_window`), probes and the logit lens
locate an onset (:func:`onset`).
"""

from __future__ import annotations

from collections.abc import Sequence


def top_window(
    scores: Sequence[float], fraction: float = 0.5, layers: Sequence[int] | None = None
) -> list[int]:
    """Layers whose score is at least ``fraction`` of the largest score (empty if no score is > 0)."""
    layers = list(layers) if layers is not None else list(range(len(scores)))
    best = max(scores) if len(scores) else 0.0
    if best <= 0:
        return []
    return [layer for layer, s in zip(layers, scores, strict=True) if s >= fraction * best]


def rise_window(
    scores: Sequence[float], low: float = 0.1, high: float = 0.9, layers: Sequence[int] | None = None
) -> list[int]:
    """From the first layer at or above ``low`` to the first at or above ``high`` (of a 0-1 score).

    For last-position residual patching this is where the effect moves into the last positions. When
    the score never reaches ``high`` the window runs to the last layer; when it never reaches ``low``
    it is empty.
    """
    layers = list(layers) if layers is not None else list(range(len(scores)))
    start = next((j for j, s in enumerate(scores) if s >= low), None)
    if start is None:
        return []
    end = next((j for j, s in enumerate(scores) if j >= start and s >= high), len(scores) - 1)
    return layers[start : end + 1]


def onset(scores: Sequence[float], fraction: float = 0.95, layers: Sequence[int] | None = None) -> int | None:
    """The first layer whose score reaches ``fraction`` of the maximum (None if the maximum is <= 0)."""
    layers = list(layers) if layers is not None else list(range(len(scores)))
    best = max(scores) if len(scores) else 0.0
    if best <= 0:
        return None
    return next(layer for layer, s in zip(layers, scores, strict=True) if s >= fraction * best)


def overlap(found: Sequence[int], planted: Sequence[int]) -> dict:
    """Precision (share of found layers inside the planted window), recall (share of the window found)
    and whether every found layer lies inside the window."""
    found_set, planted_set = set(found), set(planted)
    hit = len(found_set & planted_set)
    return {
        "precision": round(hit / len(found_set), 3) if found_set else None,
        "recall": round(hit / len(planted_set), 3) if planted_set else None,
        "inside": bool(found_set) and found_set <= planted_set,
    }
