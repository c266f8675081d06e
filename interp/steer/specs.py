"""Interventions rebuilt from their saved specs: the one place that knows every intervention type.

    >>> spec, tensors = AddDirection(direction, [12], 4.0).spec()
    >>> from_spec(spec, tensors)          # AddDirection(direction=..., layers=[12], alpha=4.0, ...)

``interventions.py`` and ``text_guided.py`` define the types and their ``spec()``; this module imports
both, so neither has to import the other (a saved ``Conditional`` may hold any type, nested).
"""

from __future__ import annotations

from torch import Tensor

from interp.errors import InputError
from interp.steer.interventions import AblateDirection, AddDirection, Conditional, SetProjection, ShiftToText
from interp.steer.text_guided import RetrievalGuided
from interp.steer.transport import LinearTransport


def from_spec(spec: dict, tensors: dict[str, Tensor], prefix: str = ""):
    """Rebuild an intervention from ``spec()`` output."""
    kind = spec.get("type")

    def t(name):
        key = prefix + name
        if key not in tensors:
            raise InputError(f"tensor {key!r} that the {kind} spec needs is missing.")
        return tensors[key]

    simple = {
        "AddDirection": AddDirection,
        "AblateDirection": AblateDirection,
        "SetProjection": SetProjection,
    }
    if kind in simple:
        fields = {k: v for k, v in spec.items() if k != "type"}
        return simple[kind](direction=t("direction"), **fields)
    if kind == "ShiftToText":
        return ShiftToText(
            {layer: t(f"shift.{layer}") for layer in spec["layers"]},
            spec["alpha"],
            spec["positions"],
            spec.get("metadata", {}),
        )
    if kind == "Conditional":
        then = [from_spec(s, tensors, prefix=f"{prefix}then{k}.") for k, s in enumerate(spec["then"])]
        return Conditional(t("condition"), spec["layer"], spec["threshold"], then, spec["above"])
    if kind == "LinearTransport":
        return LinearTransport(
            {layer: t(f"scale.{layer}") for layer in spec["layers"]},
            {layer: t(f"bias.{layer}") for layer in spec["layers"]},
            spec["alpha"],
            spec["positions"],
            spec.get("metadata", {}),
            bool(spec.get("image_rows_only", False)),
        )
    if kind == "RetrievalGuided":
        return RetrievalGuided.from_spec(spec, t)
    raise InputError(f"unknown intervention type {kind!r} in the spec.")
