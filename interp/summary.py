"""Per-layer summary of captured harmful vs harmless states: the main job on the default model.

    >>> s = layer_summary(acts)          # acts labelled 'harmful' / 'harmless'
    >>> print(s.table())

Per layer: the mean state norm, the norm of the difference in class means, and how well that
difference-in-means direction separates the classes on prompts it was *not* computed from
(two-fold: direction from one half, accuracy of a midpoint threshold on the other half, averaged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from interp.activations import Activations
from interp.errors import InputError


@dataclass
class LayerSummary:
    layers: list[int]
    mean_norm: list[float]
    diff_norm: list[float]
    heldout_accuracy: list[float]
    n_per_class: dict[str, int]
    model: str

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        head = f"{'layer':>5} {'mean |h|':>10} {'|mu_h - mu_b|':>14} {'held-out acc':>13}"
        rows = [
            f"{layer:>5} {n:>10.2f} {d:>14.3f} {a:>13.3f}"
            for layer, n, d, a in zip(
                self.layers, self.mean_norm, self.diff_norm, self.heldout_accuracy, strict=True
            )
        ]
        best = max(range(len(self.layers)), key=lambda i: self.heldout_accuracy[i])
        foot = (
            f"{self.model}: {self.n_per_class}; best held-out separation at layer {self.layers[best]} "
            f"({self.heldout_accuracy[best]:.3f}); chance = 0.5"
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
    mean_norm, diff_norm, acc = [], [], []
    for j in range(len(acts.layers)):
        h = x[:, j]
        mean_norm.append(h.norm(dim=-1).mean().item())
        diff_norm.append((h[y].mean(0) - h[~y].mean(0)).norm().item())
        scores = []
        for k in (0, 1):
            tr, te = fold != k, fold == k
            mu_p, mu_n = h[tr & y].mean(0), h[tr & ~y].mean(0)
            direction = mu_p - mu_n
            threshold = ((mu_p + mu_n) / 2) @ direction
            scores.append(((h[te] @ direction > threshold) == y[te]).float().mean().item())
        acc.append(sum(scores) / 2)
    return LayerSummary(list(acts.layers), mean_norm, diff_norm, acc, counts, acts.fingerprint.name)
