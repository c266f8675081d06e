"""One call that runs every localization method and writes the report: figures, report.json, report.md.

    >>> vlm = interp.load_model("organism-vl")
    >>> report = interp.locate.run(vlm)                  # held-out organism data; progress bars
    >>> report.safety_layers
    >>> report.save("figures/locate")                    # HTML (+ PNG when kaleido works), JSON, Markdown

Or from the shell: ``interp locate --model organism-vl --out figures/locate``.

What runs (text model: 1-5; vision-language model: all):
1. per-layer probes, harmful vs harmless text (CV, shuffled-label baseline);
2. difference-in-means refusal directions and Arditi et al.'s selection;
3. the Safety-Layers cosine gap and the logit-lens refusal scan;
4. exact patching harmful -> harmless over layers x the last positions, for the residual stream,
   the attention outputs and the MLP outputs (batched), and attribution patching against it;
5. where the model came with a planted window (the organism), how each method recovers it;
6. text vs image of the same requests: cosine, probe transfer, refusal projection, the logit lens
   on image inputs, and text -> image residual patching (do the text states restore refusal?).

7. causal checks of the located window on prompt pairs the location was not computed from:
   sufficiency and necessity, against same-width control windows (``interp.locate.causal``).

The located safety layers come from the rule chosen by leave-one-organism-out on the organism suite
(``chosen_rule.json``, written by ``analyses/organism/locate_suite.py``; candidates in
``interp.locate.rules``). When that rule's held-out mean IoU is under the bar (0.6) the report names
no safety layers and says so; the rule's answer is still given as ``candidate_layers``. Every other
method's localization and its agreement with the located layers are reported beside it.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

import interp.locate.rules as candidate_rules
import interp.locate.windows as windows
from interp.capture import capture
from interp.errors import InputError
from interp.locate.directions import (
    refusal_directions,
    refusal_projection,
    relative_projection,
    select_direction,
)
from interp.locate.geometry import direction_turn, separation
from interp.locate.localize import (
    chosen_rule,
    components_profile,
    curves_of,
    given_rule,
    method_windows,
    patching_maps,
    window_stability,
)
from interp.locate.patching import PatchingMap, patch_activations
from interp.locate.probes import probe_layers, probe_transfer
from interp.locate.profile import LayerProfile, figure
from interp.locate.similarity import cross_modal_cosine, logit_lens_refusal, safety_gap
from interp.locate.stability import selection_stability

FORMAT = 2


@dataclass
class LocateData:
    """Held-out prompts for the report: text harmful/harmless, and cross-modal pairs for a VLM."""

    harmful: list[str]
    harmless: list[str]
    pairs: object | None = None  # interp.organism.pairs.CrossModalPairs
    source: str = ""
    # benign requests about risky-looking images (interp.organism.oversensitive): (prompts, images)
    oversensitive: tuple[list[str], list] | None = None

    @classmethod
    def organism(cls, n: int = 32, renderings: int = 1, images: bool = True) -> LocateData:
        """The organism's held-out split (never trained on) and held-out renderings."""
        from interp.organism import held_out

        split = held_out()
        pairs = over = None
        if images:
            from interp.organism.oversensitive import oversensitive_set
            from interp.organism.pairs import cross_modal_pairs
            from interp.organism.render import HELD_OUT_SEED

            pairs = cross_modal_pairs(renderings=renderings)
            over = oversensitive_set(HELD_OUT_SEED)[:2]
        return cls(
            split["harmful"][:n],
            split["harmless"][:n],
            pairs,
            f"organism held-out split ({min(n, len(split['harmful']))} harmful, "
            f"{min(n, len(split['harmless']))} harmless text prompts"
            + (f"; {len(pairs)} text/image request pairs, {renderings} rendering(s) each" if pairs else "")
            + (f"; {len(over[0])} benign requests about risky-looking images)" if over else ")"),
            oversensitive=over,
        )


@dataclass
class LocateReport:
    model: str
    n_layers: int
    safety_layers: list[int]
    rule: str
    profiles: dict[str, LayerProfile]
    maps: dict[str, PatchingMap]
    localized: dict[str, dict]  # method -> {"layers": [...], "rule": ...} (+ ground-truth overlap)
    findings: dict
    planted: list[int] | None = None
    data: str = ""
    seconds: dict = field(default_factory=dict)
    png: str = "not attempted"
    candidate_layers: list[int] = field(default_factory=list)  # the chosen rule's answer, reliable or not
    suite: dict = field(default_factory=dict)  # how the chosen rule did on the organism suite
    causal: dict | None = None  # interp.locate.causal.WindowChecks.to_dict() of the located window

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "model": self.model,
            "n_layers": self.n_layers,
            "safety_layers": self.safety_layers,
            "candidate_layers": self.candidate_layers,
            "rule": self.rule,
            "suite": self.suite,
            "causal_checks": self.causal,
            "planted_window": self.planted,
            "data": self.data,
            "localized": self.localized,
            "findings": self.findings,
            "methods": {name: p.to_dict() for name, p in self.profiles.items()},
            "patching_maps": {
                name: {
                    "method": m.method,
                    "layers": m.layers,
                    "positions": m.positions,
                    "effect": m.effect.tolist(),
                    "clean_metric": m.clean_metric,
                    "corrupt_metric": m.corrupt_metric,
                    "forwards": m.forwards,
                    "seconds": round(m.seconds, 2),
                    "metadata": m.metadata,
                }
                for name, m in self.maps.items()
            },
            "seconds": self.seconds,
            "png": self.png,
        }

    def figures(self) -> dict:
        """Name -> plotly figure: an overview, one figure per method and one heatmap per patching map."""
        shade = self.planted or None
        figs = {
            "overview": figure(
                [replace(self.profiles[k], method=k) for k in OVERVIEW if k in self.profiles],
                title="Where safety activates: every method, scaled to [0, 1]"
                + (" (shaded: planted window)" if shade else ""),
                shade=shade,
                normalize=True,
            )
        }
        for name, prof in self.profiles.items():
            figs[name] = figure([prof], title=f"{name} ({self.model})", shade=shade)
        for name, m in self.maps.items():
            figs[f"map_{name}"] = m.figure(title=f"{name}: normalized patching effect ({self.model})")
        return figs

    def save(self, out: str | Path, png: bool = True) -> Path:
        """Write ``report.json``, ``report.md``, ``<figure>.html`` (+ ``.png``) under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        figs = self.figures()
        for name, fig in figs.items():
            fig.write_html(out / f"{name}.html", include_plotlyjs="directory")
        self.png = _write_pngs(figs, out) if png else "skipped (png=False)"
        (out / "report.json").write_text(json.dumps(self.to_dict(), indent=1))
        (out / "report.md").write_text(self.markdown())
        return out

    def markdown(self) -> str:
        from interp.locate.report_text import markdown

        return markdown(self)


OVERVIEW = (
    "patch_components",
    "patch_resid",
    "attribution",
    "probe",
    "logit_lens_refusal",
    "safety_gap",
    "patch_text_to_image",
    "cross_modal_cosine",
)


def _write_pngs(figs: dict, out: Path) -> str:
    try:
        for name, fig in figs.items():
            fig.write_image(out / f"{name}.png", width=900, height=500)
    except Exception as e:  # kaleido missing, or no Chrome/Chromium for it to drive
        return (
            f"PNG export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); the HTML figures are "
            "complete. Fix: pip install 'kaleido>=1' and install Chromium (Debian: apt-get install chromium)."
        )
    return f"written ({len(figs)} PNG files)"


def run(
    model,
    data: LocateData | None = None,
    n: int = 32,
    renderings: int = 1,
    last_positions: int = 5,
    patch_pairs: int = 16,
    planted: list[int] | None = None,
    batch_size: int = 16,
    max_rows: int = 64,
    progress: bool = True,
    causal: bool = True,
    rule: str | None = None,
    engine: str = "local",
    workers: int = 1,
) -> LocateReport:
    """Run every method on ``model`` and return the :class:`LocateReport` (see the module docstring).

    Probes, directions and the cosine gap use all of ``data``; patching, the logit lens and direction
    selection use the first ``patch_pairs`` harmful/harmless pairs (patching costs grow with them); the
    causal checks (``causal=True``) use the next ``patch_pairs`` pairs where ``data`` has them (else the
    same pairs, which the report then says). ``rule``: locate with this candidate of
    :data:`interp.locate.rules.RULES` instead of the suite's choice (its layers are then named as given,
    with no suite score). ``engine="ray"``: the captures run on ``workers`` Ray workers, which load
    the model again from how :func:`interp.load_model` loaded it (the same numbers; patching and the
    rest stay in this process).
    """
    is_vlm = model.adapter.kind != "text"
    if data is None:
        data = LocateData.organism(n=n, renderings=renderings, images=is_vlm)
    if data.pairs is not None and not is_vlm:
        raise InputError(
            f"{model.name} is a text model ({model.adapter.family}); the cross-modal pairs need a "
            "vision-language model. Fix: LocateData(..., pairs=None), or load 'organism-vl'."
        )
    if not data.harmful or not data.harmless:
        raise InputError("the report needs harmful and harmless text prompts (neither may be empty).")
    if planted is None:
        planted = _planted(model)
    k = min(len(data.harmful), len(data.harmless), patch_pairs)
    harmful, harmless = data.harmful[:k], data.harmless[:k]  # the pairs that patching and the lens use
    positions = [-(i + 1) for i in range(last_positions)][::-1]
    layers = list(range(model.n_layers))
    candidate: list[int] = []
    causal_out = None
    profiles: dict[str, LayerProfile] = {}
    maps: dict[str, PatchingMap] = {}
    findings: dict = {}
    seconds: dict = {}
    steps = ["text capture + probes + directions", "patching (resid, attn, mlp) + attribution"]
    if data.pairs is not None:
        steps.append("cross-modal (text vs image)")
    if causal:
        steps.append("causal checks of the located window")
    card = chosen_rule() if rule is None else given_rule(rule)
    bar = tqdm(steps, desc="locate", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step)
        t0 = time.perf_counter()
        if step.startswith("text"):
            acts = capture_rows(
                model,
                data.harmful + data.harmless,
                engine,
                workers,
                labels=["harmful"] * len(data.harmful) + ["harmless"] * len(data.harmless),
                positions="last",
                batch_size=batch_size,
            )
            profiles["probe"] = probe_layers(acts)
            dirs = refusal_directions(acts)
            profiles["direction_turn"] = direction_turn(acts)
            profiles["separation"] = separation(acts)
            profiles["safety_gap"] = safety_gap(acts)
            profiles["logit_lens_refusal"] = logit_lens_refusal(model, harmful, batch_size=batch_size)
            half = max(2, k // 2)
            sel = select_direction(model, dirs, harmful[:half], harmless[:half], batch_size=batch_size)
            profiles["direction_selection"] = sel.profile
            findings["selected_direction_layer"] = sel.layer
        elif step.startswith("patching"):
            maps.update(
                patching_maps(model, harmful, harmless, positions, batch_size=batch_size, max_rows=max_rows)
            )
            for site in ("resid", "attn", "mlp", "attribution"):
                profiles["attribution" if site == "attribution" else f"patch_{site}"] = maps[site].profile()
            profiles["patch_components"] = components_profile(profiles["patch_attn"], profiles["patch_mlp"])
            exact, approx = maps["resid"].effect.flatten(), maps["attribution"].effect.flatten()
            findings["attribution_vs_exact_correlation"] = _corr(exact, approx)
            findings["attribution_forwards"] = maps["attribution"].forwards
            findings["exact_resid_forwards"] = maps["resid"].forwards
            findings["clean_minus_corrupt_metric"] = maps["resid"].clean_metric - maps["resid"].corrupt_metric
        elif step.startswith("cross"):
            _cross_modal(
                model,
                data.pairs,
                data.oversensitive,
                dirs,
                positions,
                profiles,
                maps,
                findings,
                batch_size,
                max_rows,
                engine,
                workers,
            )
        else:
            window = candidate or []
            if window:
                from interp.locate.causal import window_checks

                fresh = min(len(data.harmful), len(data.harmless)) >= 2 * k
                h, b = (data.harmful[k : 2 * k], data.harmless[k : 2 * k]) if fresh else (harmful, harmless)
                checks = window_checks(model, h, b, window, last_positions, batch_size=batch_size)
                causal_out = {
                    **checks.to_dict(),
                    "pairs": "fresh pairs (not used to locate)"
                    if fresh
                    else "the pairs used to locate (data has no others: a weaker check)",
                }
        seconds[step] = round(time.perf_counter() - t0, 1)
        if step.startswith("patching"):  # the located window, before the steps that check it
            chosen = candidate_rules.RULES[card["rule"]]
            candidate = chosen.select(curves_of(profiles, maps, findings))
    bar.close()
    localized = method_windows(profiles, findings, layers)
    localized = {
        "chosen_rule": {"layers": candidate, "rule": f"{card['rule']}: {card['description']}"},
        **localized,
    }
    for name, stab in window_stability(maps, layers).items():
        localized[name]["stability"] = stab.to_dict()
    if chosen.uses_maps:
        sites = {k: maps[k] for k in ("resid", "attn", "mlp", "attribution") if k in maps}
        localized["chosen_rule"]["stability"] = selection_stability(
            sites,
            lambda ms: chosen.select(curves_of(profiles, ms, findings)),
            rule=card["rule"],
        ).to_dict()
    safety = candidate if card["reliable"] else []
    if planted:
        for entry in localized.values():
            entry["planted_overlap"] = windows.overlap(entry["layers"], planted)
    agree = {
        name: windows.overlap(entry["layers"], candidate)
        for name, entry in localized.items()
        if name != "chosen_rule"
    }
    findings["agreement_with_safety_layers"] = agree
    suite = {k: card[k] for k in card if k != "windows"}
    if rule is not None:
        suite, rule_text = {}, f"{card['description']} (the rule given by the caller, not the suite's choice)"
    elif card["reliable"]:
        rule_text = (
            f"{card['description']}; the rule chosen by leave-one-organism-out on {card['n_organisms']} "
            f"organisms, held-out mean IoU {card['loo_mean_iou']:.2f}"
        )
    else:
        rule_text = (
            f"no rule localized reliably on the organism suite: the best, {card['rule']} ({card['description']}), "
            f"has held-out mean IoU {card['loo_mean_iou']:.2f} over {card['n_organisms']} organisms, under the "
            f"bar {card['reliable_bar']}; its answer is given as candidate layers only"
        )
    return LocateReport(
        model=model.name,
        n_layers=model.n_layers,
        safety_layers=safety,
        candidate_layers=candidate,
        suite=suite,
        causal=causal_out,
        rule=rule_text,
        profiles=profiles,
        maps=maps,
        localized=localized,
        findings=findings,
        planted=planted,
        data=data.source or f"{len(harmful)} harmful, {len(harmless)} harmless prompts",
        seconds=seconds,
    )


def capture_rows(model, prompts, engine: str, workers: int, **kw):
    """:func:`interp.capture` in this process (``engine="local"``), or split across ``workers`` Ray
    workers that load the model again from how it was loaded (one shard each, a whole number of
    batches, so every forward holds the rows it holds in this process: the same numbers)."""
    if engine == "local":
        return capture(model, prompts, **kw)
    batch = kw.get("batch_size", 16)
    shard = math.ceil(math.ceil(len(prompts) / workers) / batch) * batch  # n / workers, in whole batches
    with tempfile.TemporaryDirectory() as tmp:
        shards = capture(model, prompts, out_dir=tmp, engine=engine, workers=workers, shard_size=shard, **kw)
        return shards.load()


def _cross_modal(
    model,
    pairs,
    oversensitive,
    dirs,
    positions,
    profiles,
    maps,
    findings,
    batch_size,
    max_rows,
    engine,
    workers,
) -> None:
    kw = dict(labels=pairs.labels, positions="last", batch_size=batch_size)
    text = capture_rows(model, pairs.text, engine, workers, **kw)
    image = capture_rows(model, pairs.image, engine, workers, images=pairs.images, **kw)
    profiles["cross_modal_cosine"] = cross_modal_cosine(text, image)
    profiles["probe_transfer"] = probe_transfer(text, image)
    harmful_rows = [i for i, lab in enumerate(pairs.labels) if lab == "harmful"]
    profiles["refusal_projection"] = refusal_projection(
        dirs, text.select(harmful_rows), image.select(harmful_rows)
    )
    if oversensitive is not None:  # does the refusal direction fire on benign risky-looking images?
        harmless_rows = [i for i, lab in enumerate(pairs.labels) if lab != "harmful"]
        over = capture_rows(
            model,
            oversensitive[0],
            engine,
            workers,
            images=oversensitive[1],
            positions="last",
            batch_size=batch_size,
        )
        profiles["refusal_projection_oversensitive"] = relative_projection(
            dirs,
            over,
            image.select(harmful_rows),
            image.select(harmless_rows),
            "refusal_projection_oversensitive",
        )
    h = pairs.select("harmful")
    profiles["logit_lens_refusal_image"] = logit_lens_refusal(
        model, h.image, images=h.images, batch_size=batch_size
    )
    profiles["logit_lens_refusal_text_forms"] = logit_lens_refusal(model, h.text, batch_size=batch_size)
    maps["text_to_image"] = patch_activations(
        model,
        h.text,
        h.image,
        corrupt_images=h.images,
        positions=positions,
        max_rows=max_rows,
        batch_size=batch_size,
    )
    profiles["patch_text_to_image"] = maps["text_to_image"].profile()
    findings["text_minus_image_metric"] = (
        maps["text_to_image"].clean_metric - maps["text_to_image"].corrupt_metric
    )


def _corr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if a.numel() < 2 or a.std() == 0 or b.std() == 0:
        return None
    return round(torch.corrcoef(torch.stack([a.float(), b.float()]))[0, 1].item(), 4)


def _planted(model) -> list[int] | None:
    """The layers the model is known to hold its safety mechanism in (an organism's tuned window)."""
    return list(model.planted) if getattr(model, "planted", None) else None
