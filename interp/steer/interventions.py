"""Interventions: what a steering context does to the residual stream, as data.

    >>> AddDirection(refusal, layers=[12], alpha=4.0)                 # add alpha * unit direction
    >>> AblateDirection(refusal)                                      # project it out everywhere
    >>> SetProjection(refusal, value=3.0, layers=[12, 13])            # clamp the projection
    >>> ShiftToText.fit(vlm, image_prompts, images, text_prompts, layers=range(10, 17))  # CMRM-style
    >>> Conditional(harm_dir, layer=8, threshold=0.5, then=[AddDirection(refusal, [12], 4.0)])  # CAST

Each turns into :class:`interp.hooks.Edit` objects through ``edits(model)``; none keeps state between
forwards, so one intervention object serves any number of concurrent contexts. Directions are used
as unit vectors (``alpha`` is in units of the residual stream). ``spec()`` / :func:`interp.steer.specs.from_spec`
give the JSON + tensors form that :mod:`interp.steer.artifact` stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import Edit, Gate, finite, unit_vector
from interp.errors import InputError
from interp.layers import resolve_layers
from interp.positions import parse_positions


def _layers(layers) -> list[int] | str:
    return (
        layers
        if isinstance(layers, str)
        else [int(i) for i in ([layers] if isinstance(layers, int) else layers)]
    )


class _DirectionIntervention:
    """Shared by the interventions on one direction: checks, and the spec (every field but the
    direction goes to JSON, the direction to the tensors)."""

    def __post_init__(self):
        self.direction, self.layers = unit_vector(self.direction), _layers(self.layers)
        for name in ("alpha", "value"):  # strengths and clamp values are finite numbers
            if name in self.__dataclass_fields__:
                setattr(self, name, finite(getattr(self, name), name))
        parse_positions(self.positions)

    def spec(self) -> tuple[dict, dict]:
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "direction"}
        return {"type": type(self).__name__, **fields}, {"direction": self.direction}


@dataclass
class AddDirection(_DirectionIntervention):
    direction: Float[Tensor, " D"]
    layers: list[int] | str
    alpha: float = 1.0
    positions: str | list = "all"

    def edits(self, model) -> list[Edit]:
        return [Edit.add(self.direction, self.layers, self.alpha, self.positions)]


@dataclass
class AblateDirection(_DirectionIntervention):
    """Project the direction out of the residual stream.

    With ``layers="all"`` (Arditi et al.) it is removed from every activation of the stream: the
    token-embedding output and every attention and MLP output are ablated, which is exactly what
    orthogonalizing the weights that write to the stream does (``interp export bake``). In families that
    normalize each block's output before adding it (Gemma 2/3) the normalized outputs are ablated, and
    no weight edit can do the same (bake and ``fold=True`` refuse them). Vision-language
    models also ablate each decoder layer's output, since image features enter the stream after the
    token embedding. With a list of layers, the state after each listed decoder layer is ablated.
    """

    direction: Float[Tensor, " D"]
    layers: list[int] | str = "all"
    positions: str | list = "all"

    @property
    def everywhere(self) -> bool:
        """Every layer and position: exactly a weight edit (``interp export bake``, ``fold=True``)."""
        return self.layers == "all" and self.positions == "all"

    def edits(self, model) -> list[Edit]:
        if self.layers != "all":
            return [Edit.ablate(self.direction, self.layers, self.positions)]
        out = [Edit.ablate(self.direction, [0], self.positions, site="embed")]
        out += [Edit.ablate(self.direction, "all", self.positions, site=s) for s in ("attn", "mlp")]
        if model.adapter.kind != "text":
            out.append(Edit.ablate(self.direction, "all", self.positions))
        return out


@dataclass
class SetProjection(_DirectionIntervention):
    direction: Float[Tensor, " D"]
    value: float
    layers: list[int] | str
    positions: str | list = "all"

    def edits(self, model) -> list[Edit]:
        return [Edit.set_projection(self.direction, self.value, self.layers, self.positions)]


Clamp = SetProjection


@dataclass
class ShiftToText:
    """CMRM-style correction: per layer, h <- h - alpha * shift[layer], where shift = mean h(image
    form) - mean h(text form) of the same requests on a calibration set.

    Each layer's shift is measured on the unsteered model, so it already contains what earlier
    layers' shifts remove: fitted on several layers the corrections add up (on the organism, six
    layers at alpha 0.5 gave KL 6 on harmless prompts). Fit one layer (the first safety layer), or
    lower alpha accordingly. Apply it where it was read (``positions`` = the fit's ``position``).
    """

    shifts: dict[int, Tensor]
    alpha: float = 1.0
    positions: str | list = "all"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.shifts:
            raise InputError("ShiftToText needs at least one layer's shift vector.")
        for layer, v in self.shifts.items():
            if not torch.isfinite(torch.as_tensor(v)).all():
                raise InputError(f"the shift at layer {layer} contains NaN or inf.")
        self.shifts = {int(k): torch.as_tensor(v).float() for k, v in self.shifts.items()}
        self.alpha = finite(self.alpha, "alpha")
        parse_positions(self.positions)

    @classmethod
    def fit(
        cls,
        model,
        image_prompts: list[str],
        images,
        text_prompts: list[str],
        layers,
        alpha: float = 1.0,
        position: str = "last",
        positions="all",
        batch_size: int = 16,
    ) -> ShiftToText:
        """Shift vectors from paired calibration requests (image form + image vs text form)."""
        from interp.capture import capture

        if len(image_prompts) != len(text_prompts) or not image_prompts:
            raise InputError(
                f"ShiftToText.fit pairs image_prompts[i] with text_prompts[i]: got {len(image_prompts)} and "
                f"{len(text_prompts)} (neither may be empty)."
            )
        ids = resolve_layers(layers, model.n_layers)
        img = capture(
            model, image_prompts, images=images, positions=position, layers=ids, batch_size=batch_size
        )
        txt = capture(model, text_prompts, positions=position, layers=ids, batch_size=batch_size)
        delta = img[position].float().mean(0) - txt[position].float().mean(0)  # [L, D]
        return cls(
            {layer: delta[j] for j, layer in enumerate(ids)},
            alpha,
            positions,
            {"calibration_pairs": len(image_prompts), "read_position": position},
        )

    def edits(self, model) -> list[Edit]:
        return [Edit.add(v, [layer], -self.alpha, self.positions) for layer, v in self.shifts.items()]

    def spec(self) -> tuple[dict, dict]:
        return (
            {
                "type": "ShiftToText",
                "alpha": self.alpha,
                "positions": self.positions,
                "layers": sorted(self.shifts),
                "metadata": self.metadata,
            },
            {f"shift.{layer}": v for layer, v in self.shifts.items()},
        )


@dataclass
class Conditional:
    """CAST-style: apply ``then`` only to rows whose projection on ``direction`` at ``layer`` (last
    prompt token, at prefill) is above ``threshold`` (below with ``above=False``)."""

    direction: Float[Tensor, " D"]
    layer: int
    threshold: float
    then: list
    above: bool = True

    def __post_init__(self):
        self.direction = unit_vector(self.direction)
        self.threshold = finite(self.threshold, "threshold")
        if not self.then:
            raise InputError("Conditional needs at least one intervention in then=.")
        for inner in self.then:
            if isinstance(inner, (Conditional, RetrievalMarker)):
                raise InputError(
                    "Conditional's then= takes constant interventions (Add/Ablate/Set/ShiftToText)."
                )

    def gate(self) -> Gate:
        return Gate(self.direction, self.layer, self.threshold, above=self.above)

    def edits(self, model) -> list[Edit]:
        gate = self.gate()
        return [e.gated(gate) for inner in self.then for e in inner.edits(model)]

    def spec(self) -> tuple[dict, dict]:
        inner_specs, tensors = [], {"condition": self.direction}
        for k, inner in enumerate(self.then):
            s, t = inner.spec()
            inner_specs.append(s)
            tensors.update({f"then{k}.{name}": v for name, v in t.items()})
        return (
            {
                "type": "Conditional",
                "layer": self.layer,
                "threshold": self.threshold,
                "above": self.above,
                "then": inner_specs,
            },
            tensors,
        )


class RetrievalMarker:
    """Base of per-input interventions (they need the batch to build their edits)."""
