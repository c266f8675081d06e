"""How the harmful-vs-harmless difference changes from layer to layer (last token): where it turns
and where it grows.

    >>> acts = interp.capture(model, harmful + harmless, labels=["harmful"] * n + ["harmless"] * n)
    >>> direction_turn(acts).scores      # 1 - cos(d_l, d_{l-1}): a new difference is written at l
    >>> separation(acts).scores          # ||d_l|| / the pooled within-class spread at l

``d_l`` is the difference of means (harmful minus harmless) at layer ``l``. A layer that writes a new
feature for one class (a refusal decision, say) turns ``d`` away from the content difference the
layers before carried, and makes the classes more separable; a layer that only carries the stream on
does neither.
"""

from __future__ import annotations

import torch

from interp.activations import Activations
from interp.locate.checks import labelled
from interp.locate.profile import LayerProfile


def direction_turn(acts: Activations, position: str = "last") -> LayerProfile:
    """Per layer: 1 - cos(d_l, d_{l-1}) (the first layer against the embedding-free 0: scored 0)."""
    x, y = labelled(acts, position)
    d = (x[y].mean(0) - x[~y].mean(0)).float()
    cos = torch.nn.functional.cosine_similarity(d[1:], d[:-1], dim=-1)
    scores = [0.0] + (1.0 - cos).tolist()
    return LayerProfile(
        method="direction_turn",
        layers=list(acts.layers),
        scores=scores,
        score_name="1 - cosine between this layer's and the previous layer's harmful - harmless mean difference",
        higher_is="this layer writes a new harmful-vs-harmless difference",
        model=acts.fingerprint.name,
    )


def separation(acts: Activations, position: str = "last") -> LayerProfile:
    """Per layer: ||d_l|| over the pooled within-class RMS distance to the class mean."""
    x, y = labelled(acts, position)
    x = x.float()
    mh, mb = x[y].mean(0), x[~y].mean(0)
    spread = torch.cat([x[y] - mh, x[~y] - mb]).pow(2).sum(-1).mean(0).sqrt()
    scores = ((mh - mb).norm(dim=-1) / spread.clamp_min(1e-12)).tolist()
    return LayerProfile(
        method="separation",
        layers=list(acts.layers),
        scores=scores,
        score_name="||harmful - harmless mean|| / pooled within-class RMS spread",
        higher_is="the classes are further apart",
        model=acts.fingerprint.name,
    )


__all__ = ["direction_turn", "separation"]
