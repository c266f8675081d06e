"""Cross-fitted selection: how well a rule that picks a setting (a steering strength) on the
evaluation rows does on rows it did not see.

    >>> settings = [{"harmful": {"refused": r.refused}, "harmless": {"refused": h.refused}}
    ...             for r, h in results_per_alpha]
    >>> fit = interp.cross_fit(settings, {"harmful": request_of_row, "harmless": None},
    ...                        choose=lambda s: max(range(len(s)), key=lambda j: float(s[j]["harmful"]["refused"].mean())),
    ...                        statistic=lambda s: {"harmful": float(s["harmful"]["refused"].mean())})
    >>> fit.in_sample["harmful"] - fit.mean()["harmful"]   # the optimism of choosing on the same rows

Picking the best of several settings on the rows it is then reported on overstates it (the winner
of a noisy comparison is partly the luckiest). Here each part's clusters (a request's renderings
stay together) are dealt at random into ``folds`` folds, stratified by part; ``choose`` sees every
fold but one and picks a setting; ``statistic`` reads the picked setting on the fold left out.
Repeated ``repeats`` times, the held-out statistics average to an estimate of the rule's
performance on new requests, and the picks show how stable the choice is. Each pick sees only
(folds - 1)/folds of the rows, so it is a little noisier than the pick on all rows; each held-out
fold is small, so read the mean, not single folds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from interp.errors import InputError
from interp.intervals import cluster_codes

Rows = dict[str, dict[str, Tensor]]  # part -> metric -> one value per row


@dataclass(frozen=True)
class CrossFit:
    chosen: list[int]  # per held-out fold (repeat-major): the setting picked on the other folds
    held_out: list[dict[str, float]]  # per held-out fold: the picked setting's statistics on it
    in_sample_choice: int  # the setting picked on every row
    in_sample: dict[str, float]  # its statistics on every row (what a report without cross-fitting says)
    folds: int
    repeats: int

    def mean(self) -> dict[str, float]:
        """Each statistic averaged over the held-out folds."""
        keys = self.held_out[0].keys()
        return {k: sum(h[k] for h in self.held_out) / len(self.held_out) for k in keys}

    def choice_shares(self) -> dict[int, float]:
        """How often each setting was picked, as a share of the picks."""
        counts = Counter(self.chosen)
        return {j: counts[j] / len(self.chosen) for j in sorted(counts)}

    def share(self, test: Callable[[dict[str, float]], bool]) -> float:
        """The share of held-out folds whose statistics pass ``test`` (e.g. a goal's limit)."""
        return sum(bool(test(h)) for h in self.held_out) / len(self.held_out)

    def to_dict(self) -> dict:
        return asdict(self)


def cross_fit(
    settings: Sequence[Mapping[str, Mapping[str, Sequence[float] | Tensor]]],
    clusters: Mapping[str, Sequence[Hashable] | None],
    choose: Callable[[list[Rows]], int],
    statistic: Callable[[Rows], dict[str, float]],
    folds: int = 2,
    repeats: int = 100,
    seed: int = 0,
) -> CrossFit:
    """Cross-fit ``choose`` (settings restricted to some rows -> the index it picks) and report
    ``statistic`` (one setting restricted to rows -> named numbers) on the rows it did not see.
    ``settings[j][part][metric]`` holds one value per row of ``part``; every setting has the same
    parts, metrics and rows. ``clusters[part]``: one label per row (None: each row its own)."""
    data = _validated(settings, clusters)
    if folds < 2:
        raise InputError(f"folds={folds}; cross-fitting needs at least 2 (one to choose on, one to read).")
    if repeats < 1:
        raise InputError(f"repeats={repeats}; it must be at least 1.")
    codes = {part: cluster_codes(part, clusters[part], _rows(data[0], part)) for part in data[0]}
    for part, c in codes.items():
        if int(c.max()) + 1 < folds:
            raise InputError(
                f"part {part!r} has {int(c.max()) + 1} cluster(s); {folds} folds need at least {folds} per "
                "part. Fix: fewer folds or more requests in that part."
            )
    full = _pick(choose, data, "every row")
    gen = torch.Generator().manual_seed(seed)
    chosen, held_out = [], []
    for _ in range(repeats):
        fold_of = {}  # part -> the fold of each row
        for part, c in codes.items():
            n_clusters = int(c.max()) + 1
            deal = torch.empty(n_clusters, dtype=torch.long)
            deal[torch.randperm(n_clusters, generator=gen)] = torch.arange(n_clusters) % folds
            fold_of[part] = deal[c]
        for f in range(folds):
            train = [_subset(s, {p: fold_of[p] != f for p in codes}) for s in data]
            j = _pick(choose, train, f"fold {f}")
            chosen.append(j)
            held_out.append(_statistic(statistic, _subset(data[j], {p: fold_of[p] == f for p in codes})))
    return CrossFit(
        chosen=chosen,
        held_out=held_out,
        in_sample_choice=full,
        in_sample=_statistic(statistic, data[full]),
        folds=folds,
        repeats=repeats,
    )


def _validated(settings, clusters) -> list[Rows]:
    if len(settings) == 0:
        raise InputError("cross_fit needs at least one setting: [{part: {metric: values}}, ...].")
    data = []
    for j, s in enumerate(settings):
        if set(s) != set(settings[0]):
            raise InputError(
                f"setting {j} has the parts {sorted(s)} but setting 0 has {sorted(settings[0])}; "
                "every setting must be measured on the same parts."
            )
        rows = {}
        for part, metrics in s.items():
            if not metrics:
                raise InputError(f"setting {j}, part {part!r} has no metrics; give at least one per part.")
            if set(metrics) != set(settings[0][part]):
                raise InputError(
                    f"setting {j}, part {part!r} has the metrics {sorted(metrics)} but setting 0 has "
                    f"{sorted(settings[0][part])}; every setting must carry the same metrics."
                )
            rows[part] = {m: torch.as_tensor(v, dtype=torch.float64).flatten() for m, v in metrics.items()}
            lengths = {m: len(v) for m, v in rows[part].items()}
            expected = _rows(data[0], part) if data else next(iter(lengths.values()))  # setting 0 sets it
            if set(lengths.values()) != {expected} or expected == 0:
                raise InputError(
                    f"setting {j}, part {part!r}: metrics have {lengths} rows, expected {expected} each "
                    "(and at least one); every metric of a part has one value per row, in the same row order."
                )
            for m, v in rows[part].items():
                if not torch.isfinite(v).all():
                    raise InputError(
                        f"setting {j}, part {part!r}, metric {m!r} holds NaN or infinite values."
                    )
        data.append(rows)
    if set(clusters) != set(data[0]):
        raise InputError(
            f"clusters name the parts {sorted(clusters)} but the settings have {sorted(data[0])}; "
            "give one entry per part (None: each row its own cluster)."
        )
    return data


def _rows(rows: Rows, part: str) -> int:
    return len(next(iter(rows[part].values())))


def _subset(rows: Rows, keep: dict[str, Tensor]) -> Rows:
    return {p: {m: v[keep[p]] for m, v in metrics.items()} for p, metrics in rows.items()}


def _pick(choose, settings: list[Rows], where: str) -> int:
    j = choose(settings)
    if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < len(settings):
        raise InputError(
            f"choose returned {j!r} on {where}; it must return the index (0..{len(settings) - 1}) of a setting."
        )
    return j


def _statistic(statistic, rows: Rows) -> dict[str, float]:
    out = statistic(rows)
    if not isinstance(out, Mapping) or not out:
        raise InputError(f"statistic must return a non-empty {{name: number}} dict, not {out!r}.")
    return {k: float(v) for k, v in out.items()}
