"""Locate the safety layers: probes, refusal directions, similarity, activation patching, and the report.

    >>> report = interp.locate.run(interp.load_model("organism-vl"))
    >>> report.safety_layers, report.save("figures/locate")
    >>> interp.locate.probe_layers(acts).figure()

Every method returns a :class:`LayerProfile` (or a :class:`PatchingMap` with ``.profile()``).
"""

from interp.locate import windows
from interp.locate.directions import (
    Directions,
    Selection,
    projections,
    refusal_directions,
    refusal_logodds,
    refusal_projection,
    refusal_token_ids,
    select_direction,
)
from interp.locate.patching import (
    PatchingMap,
    attribution_patch,
    patch_activations,
    patch_components,
    patch_residual,
)
from interp.locate.probes import probe_layers, probe_transfer
from interp.locate.profile import LayerProfile, figure
from interp.locate.report import LocateData, LocateReport, run
from interp.locate.similarity import cross_modal_cosine, logit_lens_refusal, safety_gap
from interp.locate.stability import SelectionStability, selection_stability

__all__ = [
    "Directions",
    "LayerProfile",
    "LocateData",
    "LocateReport",
    "PatchingMap",
    "Selection",
    "SelectionStability",
    "attribution_patch",
    "cross_modal_cosine",
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
    "refusal_token_ids",
    "run",
    "safety_gap",
    "select_direction",
    "selection_stability",
    "windows",
]
