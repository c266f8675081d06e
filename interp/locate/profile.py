"""LayerProfile: one score per layer from a localization method, with uncertainty, a baseline and metadata.

    >>> prof = probe_layers(acts)                  # any locate method returns one
    >>> prof.best_layer, prof.top(3)
    >>> prof.figure().show()                       # plotly, layer on x
    >>> prof.save("probe.json"); LayerProfile.load("probe.json")

Every method in :mod:`interp.locate` returns this, so profiles compare and plot together
(:func:`figure` overlays several).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from interp.errors import CorruptFileError, InputError

FORMAT = 1


@dataclass
class LayerProfile:
    method: str
    layers: list[int]
    scores: list[float]
    lower: list[float] | None = None  # uncertainty band (e.g. mean - std over CV folds)
    upper: list[float] | None = None
    baseline: list[float] | None = None  # e.g. the shuffled-label probe, drawn in the same figure
    score_name: str = "score"
    higher_is: str = "more safety signal"
    model: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.layers)
        for name in ("scores", "lower", "upper", "baseline"):
            values = getattr(self, name)
            if values is None:
                continue
            if len(values) != n:
                raise InputError(f"LayerProfile {self.method!r}: {len(values)} {name} for {n} layers.")
            if any(not math.isfinite(v) for v in values):
                raise InputError(
                    f"LayerProfile {self.method!r}: non-finite {name} (NaN/inf). Fix: check the activations "
                    "for NaN/inf (interp.locate.check_finite) before running the method."
                )
        if not n:
            raise InputError(f"LayerProfile {self.method!r} has no layers.")

    @property
    def best_layer(self) -> int:
        return self.layers[max(range(len(self.layers)), key=lambda i: self.scores[i])]

    def top(self, k: int = 3) -> list[int]:
        order = sorted(range(len(self.layers)), key=lambda i: -self.scores[i])
        return [self.layers[i] for i in order[:k]]

    def above(self, threshold: float) -> list[int]:
        return [layer for layer, s in zip(self.layers, self.scores, strict=True) if s >= threshold]

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict) -> LayerProfile:
        if d.get("format", 0) > FORMAT:
            raise CorruptFileError(
                f"LayerProfile format {d['format']} is newer than this interp reads ({FORMAT}). Fix: upgrade interp."
            )
        d = {k: v for k, v in d.items() if k != "format"}
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> LayerProfile:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise CorruptFileError(f"{path} is not a LayerProfile JSON file: {e}") from e

    def figure(self, title: str | None = None):
        return figure([self], title=title)


def figure(
    profiles: list[LayerProfile],
    title: str | None = None,
    shade: list[int] | None = None,
    normalize: bool = False,
):
    """Plotly figure of one or more profiles over layers; ``shade`` marks a layer window (e.g. the
    planted one); ``normalize`` min-max scales each profile to [0, 1] so methods share one axis."""
    import plotly.graph_objects as go

    if not profiles:
        raise InputError("figure needs at least one profile.")
    fig = go.Figure()
    for p in profiles:
        if normalize:  # one line per method on a shared axis: no bands or baselines, short names
            p = replace(_scaled(p), lower=None, upper=None, baseline=None, score_name="")
        if p.lower is not None and p.upper is not None:
            fig.add_trace(
                go.Scatter(
                    x=p.layers + p.layers[::-1],
                    y=p.upper + p.lower[::-1],
                    fill="toself",
                    line={"width": 0},
                    opacity=0.2,
                    showlegend=False,
                    hoverinfo="skip",
                    name=f"{p.method} band",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=p.layers,
                y=p.scores,
                mode="lines+markers",
                name=f"{p.method}: {p.score_name}" if p.score_name else p.method,
            )
        )
        if p.baseline is not None:
            fig.add_trace(
                go.Scatter(
                    x=p.layers,
                    y=p.baseline,
                    mode="lines",
                    line={"dash": "dash"},
                    name=f"{p.method}: baseline",
                )
            )
    if shade:
        fig.add_vrect(
            x0=min(shade) - 0.5, x1=max(shade) + 0.5, opacity=0.1, line_width=0, annotation_text="window"
        )
    model = profiles[0].model if profiles else ""
    fig.update_layout(
        title=title or f"{', '.join(p.method for p in profiles)} ({model})",
        xaxis_title="layer",
        yaxis_title="scaled score"
        if normalize
        else profiles[0].score_name
        if len(profiles) == 1
        else "score",
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2} if len(profiles) > 1 else None,
    )
    return fig


def _scaled(p: LayerProfile) -> LayerProfile:
    lo, hi = min(p.scores), max(p.scores)
    span = hi - lo if hi > lo else 1.0

    def f(values):
        return None if values is None else [(v - lo) / span for v in values]

    return replace(p, scores=f(p.scores), lower=f(p.lower), upper=f(p.upper), baseline=f(p.baseline))
