"""Fit the condition of a :class:`Conditional` (CAST's grid search): which layer, which direction,
which threshold decide that a request gets steered.

    >>> fit = fit_condition(vlm, harmful, harmless, then=[AddDirection(refusal, [15], 8.0)],
    ...                     images_pos=harmful_images, images_neg=harmless_images)
    >>> fit.conditional          # Conditional(direction, layer, threshold, then)
    >>> fit.table                # per candidate layer: cross-validated F1, threshold, separation
    >>> fit_gate(vlm, harmful_texts, harmless_texts).gate   # a bare Gate (RetrievalGuided(gate=...))

For each candidate layer the condition direction is the difference in means of the last prompt
token's state (positives minus negatives) and the threshold the one that maximizes F1 of "fires"
against "positive". Layers are compared by F1 on held-out folds (direction and threshold fitted on
the other folds), so a layer that only separates the calibration set by chance is not chosen; the
returned condition is then refitted on all of it. Candidate layers default to every layer up to the
first steered one, since the decision must come before the edit. :func:`fit_gate` applies the same
rule to every layer and returns the bare :class:`~interp.hooks.Gate`, for a decision read from a
separate run (the text run of :class:`~interp.steer.RetrievalGuided`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import capture
from interp.edits import Gate, last_gate_layer
from interp.errors import InputError, LayerIndexError
from interp.layers import resolve_layers
from interp.steer.interventions import Conditional


@dataclass
class GateFit:
    """Result of :func:`fit_gate`: the fitted :class:`~interp.hooks.Gate` and the per-layer table."""

    gate: Gate
    table: list[dict]  # layer, cv_f1, f1 (in-sample), threshold, separation
    n_positive: int
    n_negative: int
    folds: int


@dataclass
class ConditionFit:
    """Result of :func:`fit_condition`: the fitted :class:`Conditional` and the per-layer table."""

    conditional: Conditional
    table: list[dict]  # layer, cv_f1, f1 (in-sample), threshold, separation
    n_positive: int
    n_negative: int
    folds: int

    @property
    def layer(self) -> int:
        return self.conditional.layer


def best_threshold(score: Float[Tensor, " n"], positive: Bool[Tensor, " n"]) -> tuple[float, float]:
    """The threshold (rows fire when ``score > threshold``) with the highest F1 → (threshold, F1).
    Candidates are the midpoints between consecutive distinct scores (and below the lowest);
    among equal F1 the middle candidate is taken, which keeps the widest margin on both sides."""
    s = torch.unique(score.float())  # sorted
    below = s[:1] - 1.0
    cands = torch.cat([below, (s[1:] + s[:-1]) / 2]) if len(s) > 1 else below
    f1 = f1_score(score.float()[None, :] > cands[:, None], positive)  # one F1 per candidate
    best = torch.nonzero(f1 == f1.max()).flatten()
    k = int(best[len(best) // 2])
    return float(cands[k]), float(f1[k])


def _fit_layer(x: Float[Tensor, "n d"], y: Bool[Tensor, " n"]) -> tuple[Tensor, float, float]:
    d = x[y].mean(0) - x[~y].mean(0)
    u = d / d.norm().clamp(min=1e-12)
    threshold, f1 = best_threshold(x @ u, y)
    return u, threshold, f1


def f1_score(fires: Bool[Tensor, "*c n"], positive: Bool[Tensor, " n"]) -> Float[Tensor, "*c"]:
    """F1 of "fires" against "positive" over the last dimension (0 when nothing is positive or fires)."""
    tp = (fires & positive).sum(-1).float()
    wrong = (fires != positive).sum(-1).float()  # false positives + false negatives
    return 2 * tp / (2 * tp + wrong).clamp(min=1)


def fit_gate(
    model,
    positives: list[str],
    negatives: list[str],
    images_pos=None,
    images_neg=None,
    layers=None,
    folds: int = 3,
    seed: int = 0,
    batch_size: int = 16,
) -> GateFit:
    """Choose a :class:`~interp.hooks.Gate`'s layer, direction and threshold on a calibration set
    (``positives`` must fire, ``negatives`` must not), by cross-validated F1 among ``layers``
    (default: every layer). See the module docstring for the rule.

    >>> fit = fit_gate(vlm, harmful_texts, harmless_texts)
    >>> RetrievalGuided(window, 0.5, gate=fit.gate)      # pull only rows whose text form fires
    """
    _check_sides(positives, negatives, folds)
    candidates = list(range(model.n_layers)) if layers is None else resolve_layers(layers, model.n_layers)
    images = None
    if images_pos is not None or images_neg is not None:
        if images_pos is None or images_neg is None:
            raise InputError(
                "the condition fit got images for one side only. Fix: pass images_pos and images_neg "
                "(use None entries for text-only rows)."
            )
        images = list(images_pos) + list(images_neg)
    # one set may mix image and text-only rows (a gate serving both modalities is fitted on both)
    acts = capture(
        model, list(positives) + list(negatives), images=images, layers=candidates, batch_size=batch_size
    )
    x_all = acts["last"].float()
    y = torch.tensor([True] * len(positives) + [False] * len(negatives))
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(y), dtype=torch.long)
    for side in (y, ~y):  # stratified: each fold holds both sides
        idx = torch.nonzero(side).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        fold[idx] = torch.arange(len(idx)) % folds
    table = []
    for j, layer in enumerate(candidates):
        x = x_all[:, j]
        fires = torch.zeros(len(y), dtype=torch.bool)
        for k in range(folds):
            train = fold != k
            u, threshold, _ = _fit_layer(x[train], y[train])
            fires[~train] = x[~train] @ u > threshold
        u, threshold, f1 = _fit_layer(x, y)
        proj = x @ u
        spread = (proj[y].std() + proj[~y].std()).clamp(min=1e-12) / 2
        table.append(
            {
                "layer": layer,
                "cv_f1": float(f1_score(fires, y)),
                "f1": f1,
                "threshold": threshold,
                "separation": float((proj[y].mean() - proj[~y].mean()) / spread),
                "direction": u,
            }
        )
    best = max(table, key=lambda r: (round(r["cv_f1"], 9), r["separation"]))
    gate = Gate(best["direction"], best["layer"], best["threshold"])
    for row in table:
        del row["direction"]
    return GateFit(gate, table, len(positives), len(negatives), folds)


def fit_condition(
    model,
    positives: list[str],
    negatives: list[str],
    then: list,
    images_pos=None,
    images_neg=None,
    layers=None,
    folds: int = 3,
    seed: int = 0,
    batch_size: int = 16,
) -> ConditionFit:
    """Choose the condition layer, direction and threshold of a :class:`Conditional` on a
    calibration set: ``positives`` are requests that must be steered (e.g. harmful image requests),
    ``negatives`` those that must not. See the module docstring for the rule."""
    _check_sides(positives, negatives, folds)
    latest = min(last_gate_layer(e, model.n_layers) for inner in then for e in inner.edits(model))
    if layers is None:
        candidates = list(range(latest + 1))
    else:
        candidates = resolve_layers(layers, model.n_layers)
        late = [c for c in candidates if c > latest]
        if late:
            raise LayerIndexError(
                f"candidate condition layers {late} come after the first steered layer: the decision would "
                f"come after the edit. Fix: candidates at or before layer {latest}."
            )
    fit = fit_gate(model, positives, negatives, images_pos, images_neg, candidates, folds, seed, batch_size)
    g = fit.gate
    conditional = Conditional(g.direction, g.layer, g.threshold, list(then))
    return ConditionFit(conditional, fit.table, fit.n_positive, fit.n_negative, folds)


def _check_sides(positives, negatives, folds: int) -> None:
    if not positives or not negatives:
        raise InputError(
            f"fitting a condition needs requests on both sides: got {len(positives)} positives and "
            f"{len(negatives)} negatives. Fix: pass at least one of each (a few dozen for a stable threshold)."
        )
    if folds < 2 or folds > min(len(positives), len(negatives)):
        raise InputError(
            f"folds={folds}: it must be at least 2 and at most the smaller side "
            f"({min(len(positives), len(negatives))}). Fix: fewer folds or more calibration requests."
        )
