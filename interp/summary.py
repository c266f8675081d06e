"""Per-layer summary of captured harmful vs harmless states: the main job on the default model.

    >>> s = layer_summary(acts)          # acts labelled 'harmful' / 'harmless'
    >>> print(s.table())

Per layer: the mean state norm, the norm of the difference in class means, and how well that
difference-in-means direction separates the classes on prompts it was *not* computed from
(two-fold: direction from one half, accuracy of a midpoint threshold on the other half, averaged),
with a 95% bootstrap interval over the prompts (each is tested once, in the fold that left it out).
The best layer is picked on the same prompts, so its accuracy is optimistic by the luck of the pick.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from interp.activations import Activations
from interp.errors import InputError
from interp.intervals import bootstrap_interval


@dataclass
class LayerSummary:
    layers: list[int]
    mean_norm: list[float]
    diff_norm: list[float]
    heldout_accuracy: list[float]
    n_per_class: dict[str, int]
    model: str
    heldout_interval: list[tuple[float, float]]  # 95% bootstrap interval of each layer's accuracy

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        head = (
            f"{'layer':>5} {'mean |h|':>10} {'|mu_h - mu_b|':>14} {'held-out acc':>13} {'95% interval':>15}"
        )
        rows = [
            f"{layer:>5} {n:>10.2f} {d:>14.3f} {a:>13.3f} {f'[{lo:.2f}, {hi:.2f}]':>15}"
            for layer, n, d, a, (lo, hi) in zip(
                self.layers,
                self.mean_norm,
                self.diff_norm,
                self.heldout_accuracy,
                self.heldout_interval,
                strict=True,
            )
        ]
        best = max(range(len(self.layers)), key=lambda i: self.heldout_accuracy[i])
        lo, hi = self.heldout_interval[best]
        foot = (
            f"{self.model}: {self.n_per_class}; best held-out separation at layer {self.layers[best]} "
            f"({self.heldout_accuracy[best]:.3f}, 95% interval [{lo:.2f}, {hi:.2f}], picked on these "
            "prompts); chance = 0.5"
        )
        return "\n".join([head, *rows, foot])


def layer_summary(acts: Activations, position: str = "last", positive: str = "harmful") -> LayerSummary:
    labels = acts.labels
    if labels is None or positive not in labels or len(set(labels)) != 2:
        raise InputError(
            f"layer_summary needs exactly two label classes, one of them {positive!r}; got "
            f"{sorted(set(labels or []))}."
        )
    y = torch.tensor([x == positive for x in labels])
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    if min(counts.values()) < 2:
        raise InputError(f"each class needs at least 2 prompts for a held-out split; got {counts}.")
    x = acts[position].float()
    gen = torch.Generator().manual_seed(0)
    fold = torch.zeros(len(y), dtype=torch.long)
    for cls in (True, False):
        idx = (y == cls).nonzero().flatten()
        fold[idx[torch.randperm(len(idx), generator=gen)][::2]] = 1
    mean_norm, diff_norm, acc, interval = [], [], [], []
    for j in range(len(acts.layers)):
        h = x[:, j]
        mean_norm.append(h.norm(dim=-1).mean().item())
        diff_norm.append((h[y].mean(0) - h[~y].mean(0)).norm().item())
        scores, correct = [], torch.zeros(len(y))
        for k in (0, 1):
            tr, te = fold != k, fold == k
            mu_p, mu_n = h[tr & y].mean(0), h[tr & ~y].mean(0)
            direction = mu_p - mu_n
            threshold = ((mu_p + mu_n) / 2) @ direction
            correct[te] = ((h[te] @ direction > threshold) == y[te]).float()
            scores.append(correct[te].mean().item())
        acc.append(sum(scores) / 2)
        # the accuracy is the mean of the two folds' accuracies: resampled within each class and fold
        # (each part weighted by its share of its fold, halved), so every resample keeps the design
        cells = {(c, k): (y == c) & (fold == k) for c in (True, False) for k in (0, 1)}
        iv = bootstrap_interval(
            {f"{c}{k}": (correct[m], None) for (c, k), m in cells.items()},
            weights={f"{c}{k}": float(m.sum()) / float((fold == k).sum()) / 2 for (c, k), m in cells.items()},
        )
        interval.append((iv.low, iv.high))
    return LayerSummary(list(acts.layers), mean_norm, diff_norm, acc, counts, acts.fingerprint.name, interval)
