"""What each localization method of the report names as its layers, and how stable that is.

    >>> chosen_rule()["rule"]                           # the rule leave-one-organism-out chose
    >>> maps = patching_maps(model, harmful, harmless, positions=[-2, -1])   # resid, attn, mlp, attribution
    >>> curves_of(profiles, maps, findings)            # the Curves every candidate rule reads
    >>> method_windows(profiles, findings, layers)     # per method: its layers and its rule, in words
    >>> window_stability(maps, layers)                 # how often each patching rule picks each layer

The candidate rules themselves (and the one leave-one-organism-out chose) are
:mod:`interp.locate.rules`; :func:`interp.locate.report.run` calls these on one run's results.
"""

from __future__ import annotations

import json
from pathlib import Path

import interp.locate.rules as candidate_rules
import interp.locate.windows as windows
from interp.errors import InputError
from interp.locate.attribution import attribution_patch
from interp.locate.patching import PatchingMap, patch_activations
from interp.locate.profile import LayerProfile
from interp.locate.stability import selection_stability

CHOSEN_RULE = Path(__file__).with_name("chosen_rule.json")


def chosen_rule() -> dict:
    """The rule leave-one-organism-out chose (name, description, held-out scores, reliable or not)."""
    if not CHOSEN_RULE.exists():
        raise InputError(
            f"{CHOSEN_RULE} is missing, so the report has no localization rule. Fix: reinstall interp, or "
            "run analyses/organism/locate_suite.py select."
        )
    card = json.loads(CHOSEN_RULE.read_text())
    if card["rule"] not in candidate_rules.RULES:
        raise InputError(
            f"chosen_rule.json names {card['rule']!r}, which interp.locate.rules does not define."
        )
    return card


def patching_maps(
    model, harmful, harmless, positions, batch_size: int = 16, max_rows: int = 64, attribution: bool = True
) -> dict[str, PatchingMap]:
    """The report's patching maps, harmful -> harmless at ``positions``: exact patching of the
    residual stream and of each block's attention and MLP outputs, and attribution patching (unless
    ``attribution=False``); keyed ``resid``, ``attn``, ``mlp``, ``attribution``."""
    maps = {
        site: patch_activations(
            model, harmful, harmless, positions=positions, site=site, max_rows=max_rows, batch_size=batch_size
        )
        for site in ("resid", "attn", "mlp")
    }
    if attribution:
        maps["attribution"] = attribution_patch(
            model, harmful, harmless, positions=positions, batch_size=batch_size
        )
    return maps


def given_rule(name: str) -> dict:
    if name not in candidate_rules.RULES:
        raise InputError(f"unknown rule {name!r}. Known: {', '.join(candidate_rules.RULES)}.")
    return {"rule": name, "description": candidate_rules.RULES[name].description, "reliable": True}


def curves_of(profiles: dict, maps: dict, findings: dict) -> candidate_rules.Curves:
    """The numbers the localization rules read, from this run's maps and profiles."""
    lens = profiles.get("logit_lens_refusal")
    return candidate_rules.Curves.from_maps(
        {k: maps[k] for k in ("resid", "attn", "mlp", "attribution") if k in maps},
        probe=profiles["probe"].scores if "probe" in profiles else None,
        safety_gap=profiles["safety_gap"].scores if "safety_gap" in profiles else None,
        lens_first=lens.metadata.get("first_layer_majority_in_top_k") if lens else None,
        direction_layer=findings.get("selected_direction_layer"),
        turn=profiles["direction_turn"].scores if "direction_turn" in profiles else None,
        separation=profiles["separation"].scores if "separation" in profiles else None,
    )


def components_profile(attn: LayerProfile, mlp: LayerProfile) -> LayerProfile:
    scores = [max(a, 0.0) + max(m, 0.0) for a, m in zip(attn.scores, mlp.scores, strict=True)]
    return LayerProfile(
        method="patch_components",
        layers=list(attn.layers),
        scores=scores,
        score_name="attention + MLP output patching effect (each max over the last positions, clipped at 0)",
        higher_is="this layer's blocks write the refusal",
        model=attn.model,
        metadata={"attn": attn.scores, "mlp": mlp.scores},
    )


# the patching rules, shared by the selection itself and its stability under resampled pairs
COMPONENT_RULE = "attention + MLP patching effect >= 0.5 x its maximum"
RESID_RULE = "residual patching effect (last positions) rises from 0.1 to 0.9"
ATTRIBUTION_RULE = "attribution estimate rises from 0.1 to 0.9"
TEXT_TO_IMAGE_RULE = "text -> image residual patching effect rises from 0.1 to 0.9"


def _component_window(components: LayerProfile, layers: list[int]) -> list[int]:
    return windows.top_window(components.scores, 0.5, layers)


def _rise_window(profile: LayerProfile, layers: list[int]) -> list[int]:
    return windows.rise_window(profile.scores, layers=layers)


def window_stability(maps: dict, layers: list[int]) -> dict:
    """How often each patching rule picks each layer over 1000 resamples of its prompt pairs."""

    def components(ms):
        return _component_window(components_profile(ms["attn"].profile(), ms["mlp"].profile()), layers)

    def rise(ms):
        (m,) = ms.values()
        return _rise_window(m.profile(), layers)

    out = {}
    if all(site in maps for site in ("attn", "mlp")):
        out["patch_components"] = selection_stability(
            {"attn": maps["attn"], "mlp": maps["mlp"]}, components, rule=COMPONENT_RULE
        )
    for name, key, rule in (
        ("patch_resid", "resid", RESID_RULE),
        ("attribution", "attribution", ATTRIBUTION_RULE),
        ("patch_text_to_image", "text_to_image", TEXT_TO_IMAGE_RULE),
    ):
        if key in maps:
            out[name] = selection_stability({key: maps[key]}, rise, rule=rule)
    return out


def method_windows(profiles: dict, findings: dict, layers: list[int]) -> dict:
    out = {
        "patch_components": {
            "layers": _component_window(profiles["patch_components"], layers),
            "rule": COMPONENT_RULE,
        },
        "patch_resid": {"layers": _rise_window(profiles["patch_resid"], layers), "rule": RESID_RULE},
        "attribution": {
            "layers": _rise_window(profiles["attribution"], layers),
            "rule": ATTRIBUTION_RULE,
        },
        "probe": {
            "layers": _one(windows.onset(_above_chance(profiles["probe"]), 0.95, layers)),
            "rule": "first layer where probe accuracy minus 0.5 reaches 0.95 x its maximum",
        },
        "safety_gap": {
            "layers": _one(windows.onset(profiles["safety_gap"].scores, 0.5, layers)),
            "rule": "first layer where the N-N vs N-M cosine gap reaches 0.5 x its maximum",
        },
        "logit_lens_refusal": {
            "layers": _one(profiles["logit_lens_refusal"].metadata["first_layer_majority_in_top_k"]),
            "rule": "first layer where most harmful prompts have a refusal token in the lens top-5 (TGA)",
        },
        "direction_selection": {
            "layers": _one(findings["selected_direction_layer"]),
            "rule": "Arditi et al.: the kept layer whose direction's ablation removes the most refusal",
        },
    }
    if "patch_text_to_image" in profiles:
        out["patch_text_to_image"] = {
            "layers": _rise_window(profiles["patch_text_to_image"], layers),
            "rule": TEXT_TO_IMAGE_RULE,
        }
    return out


def _above_chance(prof: LayerProfile) -> list[float]:
    return [s - 0.5 for s in prof.scores]


def _one(layer) -> list[int]:
    return [] if layer is None else [int(layer)]
