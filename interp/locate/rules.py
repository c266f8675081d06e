"""Candidate rules that turn a model's per-layer curves into "the safety layers", written down before
they were scored (issue 27), and the one chosen by leave-one-organism-out.

    >>> curves = Curves.from_report(report)           # or Curves.from_maps(maps, ...) on resampled pairs
    >>> RULES["resid_rise_0.05_0.95"].select(curves)  # -> [11, 12, 13, 14, 15]
    >>> iou([11, 12, 13], planted=[10, 11, 12, 13, 14])

Every rule reads only the model under study (its patching curves, probes, lens, directions), never a
second model and never the planted window: the window of an organism is what rules are scored
against. The curves (0 = the harmless run, 1 = the harmful run's refusal restored):

- ``resid``: residual-stream patching harmful -> harmless at the last positions, per layer (max over
  positions). It rises from ~0 to ~1; where it rises is where the decision arrives at the positions the
  answer is read from.
- ``attn``, ``mlp``: the same for each block's output; ``components`` = clipped attn + mlp.
- ``attribution``: the gradient estimate of ``resid``.
- ``turn`` (1 - cos between consecutive layers' harmful - harmless mean differences, last token) and
  ``separation`` (that difference's norm over the within-class spread): ``interp.locate.geometry``.
- ``probe`` (accuracy), ``safety_gap`` (Safety-Layers cosine gap); ``lens_first`` (first layer where
  most harmful prompts have a refusal token in the logit-lens top-5, TGA); ``direction_layer``
  (Arditi et al.'s selected layer).

Families (each with a small grid of settings, every setting its own candidate):

- ``components_top_f``: layers whose component effect is >= f x its maximum (the rule interp shipped
  with, f = 0.5).
- ``components_mass_q``: the shortest run of consecutive layers holding q of the component effect.
- ``resid_rise_lo_hi`` / ``attribution_rise_lo_hi``: from the first layer at or above ``lo`` to the first
  at or above ``hi``.
- ``resid_steps_f``: from the first to the last layer whose increment (curve minus the layer before) is
  >= f x the largest increment: the steepest-rise window.
- ``resid_mass_q``: the shortest run of consecutive layers holding q of the curve's positive increments.
- ``turn_top_f`` / ``turn_mass_q``: layers where the difference turns the most (>= f x the largest
  turn; the shortest run holding q of the turning), from layer 3 on (the first layers turn the
  embedding differences whatever the model does).
- ``separation_steps_f``: the steepest-growth window of ``separation``.
- ``probe_onset``, ``safety_gap_onset``, ``lens_first``, ``direction_layer``: one layer each (the
  report's other methods, for comparison).

The first commit of this file held the families above ``turn``; ``turn`` and ``separation`` were added
before any organism but the shipped one had its curves computed. The shipped organism's curves were
known when both were written (they are in the README), so on that organism every rule is in-sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import interp.locate.windows as windows


@dataclass
class Curves:
    """The per-layer numbers every rule reads (see the module docstring)."""

    layers: list[int]
    resid: list[float]
    attn: list[float]
    mlp: list[float]
    attribution: list[float] | None = None
    probe: list[float] | None = None
    safety_gap: list[float] | None = None
    lens_first: int | None = None
    direction_layer: int | None = None
    turn: list[float] | None = None
    separation: list[float] | None = None

    @property
    def components(self) -> list[float]:
        return [max(a, 0.0) + max(m, 0.0) for a, m in zip(self.attn, self.mlp, strict=True)]

    @classmethod
    def from_maps(cls, maps: dict, **others) -> Curves:
        """From patching maps ``resid``, ``attn``, ``mlp`` (+ ``attribution``), e.g. resampled ones."""
        attribution = maps["attribution"].profile().scores if "attribution" in maps else None
        return cls(
            layers=list(maps["resid"].layers),
            resid=maps["resid"].profile().scores,
            attn=maps["attn"].profile().scores,
            mlp=maps["mlp"].profile().scores,
            attribution=attribution,
            **others,
        )

    def with_maps(self, maps: dict) -> Curves:
        """These curves with the patching ones recomputed from ``maps`` (e.g. resampled pairs) and
        the rest kept."""
        keep = ("probe", "safety_gap", "lens_first", "direction_layer", "turn", "separation")
        return Curves.from_maps(maps, **{k: getattr(self, k) for k in keep})

    @classmethod
    def from_report(cls, report) -> Curves:
        """From a :class:`interp.locate.report.LocateReport` (or its ``to_dict()``)."""
        d = report if isinstance(report, dict) else report.to_dict()
        methods, maps = d["methods"], d["patching_maps"]

        def scores(name):
            return methods[name]["scores"] if name in methods else None

        def curve(site):  # max over positions, as PatchingMap.profile()
            return [max(row) for row in maps[site]["effect"]]

        lens = methods.get("logit_lens_refusal", {}).get("metadata", {})
        return cls(
            layers=list(maps["resid"]["layers"]),
            resid=curve("resid"),
            attn=curve("attn"),
            mlp=curve("mlp"),
            attribution=curve("attribution") if "attribution" in maps else None,
            probe=scores("probe"),
            safety_gap=scores("safety_gap"),
            lens_first=lens.get("first_layer_majority_in_top_k"),
            direction_layer=d["findings"].get("selected_direction_layer"),
            turn=scores("direction_turn"),
            separation=scores("separation"),
        )


@dataclass(frozen=True)
class Rule:
    """A named way from :class:`Curves` to a list of layers; ``uses_maps``: it reads only patching maps
    (so it can be recomputed on resampled prompt pairs)."""

    name: str
    description: str
    select: Callable[[Curves], list[int]] = field(repr=False)
    uses_maps: bool = True


def shortest_mass_window(scores: Sequence[float], q: float, layers: Sequence[int]) -> list[int]:
    """The shortest run of consecutive layers whose (clipped at 0) scores sum to >= ``q`` of the total;
    ties go to the run with the larger sum. Empty when no score is > 0."""
    s = [max(x, 0.0) for x in scores]
    total = sum(s)
    if total <= 0:
        return []
    best = None
    for i in range(len(s)):
        acc = 0.0
        for j in range(i, len(s)):
            acc += s[j]
            if acc >= q * total - 1e-12:
                key = (j - i, -acc)
                if best is None or key < best[0]:
                    best = (key, i, j)
                break
    _, i, j = best
    return list(layers[i : j + 1])


def increments(curve: Sequence[float]) -> list[float]:
    """Curve minus the layer before (the first layer's against 0)."""
    return [curve[0]] + [b - a for a, b in zip(curve[:-1], curve[1:], strict=True)]


def steps_window(curve: Sequence[float], f: float, layers: Sequence[int]) -> list[int]:
    """From the first to the last layer whose increment is >= ``f`` x the largest increment."""
    inc = increments(curve)
    top = max(inc)
    if top <= 0:
        return []
    hit = [j for j, x in enumerate(inc) if x >= f * top]
    return list(layers[hit[0] : hit[-1] + 1])


def _one(layer) -> list[int]:
    return [] if layer is None else [int(layer)]


def _build() -> dict[str, Rule]:
    rules: list[Rule] = []
    for f in (0.3, 0.5, 0.7):
        rules.append(
            Rule(
                f"components_top_{f}",
                f"attention + MLP patching effect >= {f} x its maximum",
                lambda c, f=f: windows.top_window(c.components, f, c.layers),
            )
        )
    for q in (0.5, 0.7):
        rules.append(
            Rule(
                f"components_mass_{q}",
                f"the shortest run of layers holding {q} of the attention + MLP patching effect",
                lambda c, q=q: shortest_mass_window(c.components, q, c.layers),
            )
        )
    for lo in (0.02, 0.05, 0.1, 0.2):
        for hi in (0.8, 0.9, 0.95):
            rules.append(
                Rule(
                    f"resid_rise_{lo}_{hi}",
                    f"residual patching effect (last positions) rises from {lo} to {hi}",
                    lambda c, lo=lo, hi=hi: windows.rise_window(c.resid, lo, hi, c.layers),
                )
            )
    for f in (0.1, 0.25, 0.5):
        rules.append(
            Rule(
                f"resid_steps_{f}",
                f"first to last layer whose residual-patching increment is >= {f} x the largest",
                lambda c, f=f: steps_window(c.resid, f, c.layers),
            )
        )
    for q in (0.8, 0.9):
        rules.append(
            Rule(
                f"resid_mass_{q}",
                f"the shortest run of layers holding {q} of the residual-patching rise",
                lambda c, q=q: shortest_mass_window(increments(c.resid), q, c.layers),
            )
        )
    for lo, hi in ((0.05, 0.9), (0.1, 0.9)):
        rules.append(
            Rule(
                f"attribution_rise_{lo}_{hi}",
                f"attribution estimate rises from {lo} to {hi}",
                lambda c, lo=lo, hi=hi: (
                    windows.rise_window(c.attribution or [], lo, hi, c.layers) if c.attribution else []
                ),
            )
        )
    skip = 3  # turning in the first layers is the embeddings' own
    for f in (0.3, 0.5):
        rules.append(
            Rule(
                f"turn_top_{f}",
                f"layers (3 on) where the harmful - harmless difference turns >= {f} x the largest turn",
                lambda c, f=f: windows.top_window(c.turn[skip:], f, c.layers[skip:]) if c.turn else [],
                uses_maps=False,
            )
        )
    for q in (0.5, 0.7):
        rules.append(
            Rule(
                f"turn_mass_{q}",
                f"the shortest run of layers (3 on) holding {q} of the difference's turning",
                lambda c, q=q: shortest_mass_window(c.turn[skip:], q, c.layers[skip:]) if c.turn else [],
                uses_maps=False,
            )
        )
    for f in (0.25, 0.5):
        rules.append(
            Rule(
                f"separation_steps_{f}",
                f"first to last layer whose growth in harmful - harmless separation is >= {f} x the largest",
                lambda c, f=f: steps_window(c.separation, f, c.layers) if c.separation else [],
                uses_maps=False,
            )
        )
    rules += [
        Rule(
            "probe_onset",
            "first layer where probe accuracy minus 0.5 reaches 0.95 x its maximum",
            lambda c: _one(windows.onset([s - 0.5 for s in c.probe], 0.95, c.layers)) if c.probe else [],
            uses_maps=False,
        ),
        Rule(
            "safety_gap_onset",
            "first layer where the Safety-Layers cosine gap reaches 0.5 x its maximum",
            lambda c: _one(windows.onset(c.safety_gap, 0.5, c.layers)) if c.safety_gap else [],
            uses_maps=False,
        ),
        Rule(
            "lens_first",
            "first layer where most harmful prompts have a refusal token in the logit-lens top-5 (TGA)",
            lambda c: _one(c.lens_first),
            uses_maps=False,
        ),
        Rule(
            "direction_layer",
            "Arditi et al.'s selected direction layer",
            lambda c: _one(c.direction_layer),
            uses_maps=False,
        ),
    ]
    return {r.name: r for r in rules}


RULES: dict[str, Rule] = _build()


def iou(found: Sequence[int], planted: Sequence[int]) -> float:
    """|found & planted| / |found | planted| (0 when both are empty)."""
    a, b = set(found), set(planted)
    return len(a & b) / len(a | b) if a | b else 0.0


def score(found: Sequence[int], planted: Sequence[int]) -> dict:
    """Precision, recall (0 when nothing was found) and IoU of ``found`` against ``planted``."""
    a, b = set(found), set(planted)
    hit = len(a & b)
    return {
        "precision": hit / len(a) if a else 0.0,
        "recall": hit / len(b) if b else 0.0,
        "iou": iou(a, b),
    }


__all__ = ["RULES", "Curves", "Rule", "increments", "iou", "score", "shortest_mass_window", "steps_window"]
