"""Locate the safety layers: probes, refusal directions, similarity, activation patching, and the report.

    >>> report = interp.locate.run(interp.load_model("organism-vl"))
    >>> report.safety_layers, report.save("figures/locate")
    >>> interp.locate.probe_layers(acts).figure()
    >>> interp.locate.window_checks(model, harmful, harmless, report.candidate_layers)   # causal checks
    >>> interp.locate.diff_windows(tuned, base, harmful, harmless)                       # model diffing

Every method returns a :class:`LayerProfile` (or a :class:`PatchingMap` with ``.profile()``).
"""

import interp.locate.rules as rules
import interp.locate.windows as windows
from interp.locate.attribution import attribution_patch
from interp.locate.causal import WindowChecks, window_checks
from interp.locate.diffing import DiffResult, diff_windows
from interp.locate.directions import (
    Directions,
    Selection,
    projections,
    refusal_directions,
    refusal_projection,
    relative_projection,
    select_direction,
)
from interp.locate.find import FoundLayers, find_layers
from interp.locate.geometry import direction_turn, separation
from interp.locate.patching import (
    PatchingMap,
    patch_activations,
    patch_components,
    patch_residual,
)
from interp.locate.probes import probe_layers, probe_transfer
from interp.locate.profile import LayerProfile, figure
from interp.locate.report import LocateData, LocateReport, chosen_rule, run
from interp.locate.similarity import cross_modal_cosine, logit_lens_refusal, safety_gap
from interp.locate.stability import SelectionStability, selection_stability
from interp.refusal import refusal_logodds, refusal_token_ids

__all__ = [
    "DiffResult",
    "Directions",
    "FoundLayers",
    "LayerProfile",
    "LocateData",
    "LocateReport",
    "PatchingMap",
    "Selection",
    "SelectionStability",
    "WindowChecks",
    "attribution_patch",
    "chosen_rule",
    "find_layers",
    "cross_modal_cosine",
    "diff_windows",
    "direction_turn",
    "figure",
    "logit_lens_refusal",
    "patch_activations",
    "patch_components",
    "patch_residual",
    "probe_layers",
    "probe_transfer",
    "projections",
    "refusal_directions",
    "refusal_logodds",
    "refusal_projection",
    "relative_projection",
    "refusal_token_ids",
    "rules",
    "run",
    "safety_gap",
    "select_direction",
    "selection_stability",
    "separation",
    "window_checks",
    "windows",
]
