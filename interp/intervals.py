"""Cluster-bootstrap confidence intervals for rates, pooled rates and differences of rates.

    >>> r = interp.evaluate.refusal(vlm, prompts, images=imgs)
    >>> interp.bootstrap_interval({"image": (r.refused, request_of_row)})  # a rate, rows of a request together
    >>> interp.bootstrap_interval({"text": (t.refused, None), "image": (i.refused, ids)},
    ...                           weights={"text": 1.0, "image": -1.0})  # the text-minus-image gap

Rows that share a cluster (three renderings of one request) move together in every resample, so
the width reflects the number of independent requests, not of rows. Each part is resampled on its
own (stratified), and the statistic is ``sum(weight * row mean of the part)``; without weights the
parts are pooled by their row counts. A paired difference (steered minus unsteered on the same
rows) is the interval of the per-row differences. Percentile bootstrap: with few clusters (under
about ten) it is known to be somewhat too narrow, so read a borderline verdict as undecided. A part
whose rows are all equal (every request refused) resamples to one value, so its interval has no
width: that means no variation was seen, not certainty (8 of 8 requests refused bound the rate only
above 0.69, exact one-sided 95%).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on the rows as they are
    low: float
    high: float
    level: float  # e.g. 0.95
    n: int  # rows over all parts
    clusters: int  # independent units resampled, over all parts
    resamples: int

    def to_dict(self) -> dict:
        return asdict(self)

    def verdict(self, limit: float, at_most: bool = True) -> str:
        """'met' if the whole interval satisfies ``statistic <= limit`` (``>=`` with at_most=False),
        'not met' if none of it does, else 'undecided'."""
        low, high = (self.low, self.high) if at_most else (-self.high, -self.low)
        bound = limit if at_most else -limit
        if high <= bound + 1e-12:
            return "met"
        if low > bound + 1e-12:
            return "not met"
        return "undecided"


Part = tuple[Sequence[float] | Tensor, Sequence[Hashable] | None]


def bootstrap_interval(
    parts: dict[str, Part],
    weights: dict[str, float] | None = None,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Percentile cluster bootstrap of ``sum(weights[p] * mean(values of p))`` over the parts, each
    part ``(values, clusters)`` with one cluster label per row (None: every row its own cluster)."""
    if not parts:
        raise InputError("bootstrap_interval needs at least one part: {name: (values, clusters)}.")
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1 (e.g. 0.95), not {level}.")
    if resamples < 100:
        raise InputError(f"resamples={resamples} is too few for a percentile interval; use at least 100.")
    if weights is not None and set(weights) != set(parts):
        raise InputError(
            f"weights name the parts {sorted(weights)} but the parts are {sorted(parts)}; give one weight per part."
        )
    prepared = {name: _prepare(name, *part) for name, part in parts.items()}
    total = sum(len(values) for values, _ in prepared.values())
    if weights is None:
        weights = {name: len(values) / total for name, (values, _) in prepared.items()}
    gen = torch.Generator().manual_seed(seed)
    estimate, stat = 0.0, torch.zeros(resamples, dtype=torch.float64)
    for name, (values, codes) in prepared.items():
        estimate += weights[name] * float(values.mean())
        stat += weights[name] * _resampled_means(values, codes, resamples, gen)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(stat, q).tolist()
    return Interval(
        estimate=estimate,
        low=low,
        high=high,
        level=level,
        n=total,
        clusters=sum(int(codes.max()) + 1 for _, codes in prepared.values()),
        resamples=resamples,
    )


def _prepare(name, values, clusters) -> tuple[Float[Tensor, " n"], Tensor]:
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise InputError(f"part {name!r} has no rows; an interval needs at least one value per part.")
    if not torch.isfinite(values).all():
        raise InputError(f"part {name!r} holds NaN or infinite values; drop or fix those rows first.")
    return values, cluster_codes(name, clusters, len(values))


def cluster_codes(part: str, labels: Sequence[Hashable] | None, n: int) -> Tensor:
    """One code 0..k-1 per row from its cluster label, in order of first appearance (None: each of
    the ``n`` rows its own cluster)."""
    if labels is None:
        return torch.arange(n)
    labels = list(labels)
    if len(labels) != n:
        raise InputError(
            f"part {part!r} has {n} rows but {len(labels)} cluster labels; give one label per row."
        )
    codes = {}
    return torch.tensor([codes.setdefault(c, len(codes)) for c in labels])


def _resampled_means(
    values: Float[Tensor, " n"], codes: Tensor, resamples: int, gen: torch.Generator
) -> Float[Tensor, " resamples"]:
    """Row means of ``resamples`` resamples that draw the clusters with replacement."""
    n_clusters = int(codes.max()) + 1
    sums = torch.zeros(n_clusters, dtype=torch.float64).index_add_(0, codes, values)
    sizes = torch.zeros(n_clusters, dtype=torch.float64).index_add_(0, codes, torch.ones_like(values))
    out = []
    chunk = max(1, 2**22 // n_clusters)  # bounds the [chunk, n_clusters] index matrix
    for start in range(0, resamples, chunk):
        idx = torch.randint(n_clusters, (min(chunk, resamples - start), n_clusters), generator=gen)
        out.append(sums[idx].sum(1) / sizes[idx].sum(1))
    return torch.cat(out)
