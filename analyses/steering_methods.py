"""The steering evaluation's methods: what each is fitted from (calibration only) and how each
alpha becomes interventions.

    >>> cal = calibrate(vlm, split)                 # layers, refusal direction, CAST condition, gate, shift
    >>> METHODS["retrieval_gated"].build(cal, 0.1)  # -> [RetrievalGuided(..., gate=cal.text_gate)]
    >>> alphas(quick=False)                         # method -> the alphas its validation sweep runs

Adding a method is one entry of ``METHODS``: its alphas and a function of the calibration and alpha.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from steering_data import request_set

import interp
from interp.locate.directions import refusal_directions, select_direction
from interp.organism.render import OBJECTS
from interp.steer import (
    AddDirection,
    Conditional,
    LinearTransport,
    RetrievalGuided,
    ShiftToText,
    TextBank,
    fit_condition,
    fit_gate,
)
from interp.steer.artifact import data_hash

CAL_SEEDS = [100, 101, 102]  # renderings of each seen object's first request: the calibration images


PICTOGRAPHS = [
    (0x2600, 0x26FF),
    (0x1F300, 0x1F5FF),
    (0x1F600, 0x1F64F),
    (0x1F680, 0x1F6FF),
    (0x1F900, 0x1F9FF),
    (0x1FA70, 0x1FAFF),
]


@functools.cache
def pictograph_text_bank() -> TextBank:
    """The pictograph names embedded once per run (MiniLM)."""
    return TextBank(pictograph_bank())


def pictograph_bank() -> list[str]:
    """Every named Unicode pictograph ("bomb", "hocho", "dog face", ...) as a noun phrase."""
    import unicodedata

    names = set()
    for lo, hi in PICTOGRAPHS:
        for cp in range(lo, hi + 1):
            name = unicodedata.name(chr(cp), "").lower()
            if name:
                names.add(name)
    return [("an " if n[0] in "aeiou" else "a ") + n for n in sorted(names)]


def calibration_window(vlm, harmful: list[str], harmless: list[str]) -> tuple[list[int], dict]:
    """The steering layers from calibration prompts only: the layers ``interp locate``'s chosen rule
    finds on them (``interp.locate.find_layers``: the report's patching maps on the first 16 pairs,
    not the rest of the report), named as safety layers or not."""
    found = interp.locate.find_layers(vlm, harmful, harmless)
    if not found.layers:
        sys.exit(
            f"the locate rule {found.rule!r} found no layers on the calibration prompts; nothing to steer."
        )
    card = interp.locate.chosen_rule()
    return found.layers, {
        "rule": f"{found.rule}: {found.description}",
        "named_as_safety_layers": found.named,
        "computed": found.computed,
        "data": f"{len(harmful)} harmful + {len(harmless)} harmless organism training prompts "
        f"(the first {found.n_pairs} pairs patched), no evaluation row",
        "suite": {k: v for k, v in card.items() if k != "windows"},
    }


@dataclass
class Calibration:
    """Everything the methods are fitted from, all on calibration prompts and renderings."""

    window: list[int]  # the steering layers
    window_fit: dict
    refusal: object  # [D] the raw difference-in-means refusal direction at refusal_layer
    refusal_layer: int
    refusal_layer_rule: str
    scale: float  # its norm: the unit of the additions' alpha
    condition: object  # interp.steer.fit_condition's result (CAST)
    text_gate: object  # interp.steer.fit_gate's result, on text requests
    shift: ShiftToText  # CMRM: image -> text shift at the window's first layer, last token
    along: object  # [len(window), D] each steered layer's own refusal direction
    text_harmful: list[str]  # the calibration text requests (object requests + organism prompts)
    text_harmless: list[str]
    data_hash: str
    images: str
    # LinearTransport fits (image form -> text form, last token, the steering layers), by variant
    transports: dict[str, LinearTransport] = field(default_factory=dict)

    def record(self) -> dict:
        """What summary.json says about the calibration."""
        return {
            "steering_layers": self.window,
            "steering_layers_source": window_source(self.window_fit),
            "steering_layers_fit": self.window_fit,
            "refusal_direction_layer": self.refusal_layer,
            "refusal_direction_layer_rule": self.refusal_layer_rule,
            "refusal_direction_norm": self.scale,
            "condition_layer": self.condition.layer,
            "condition_threshold": self.condition.conditional.threshold,
            "condition_fit": {
                "rule": "cross-validated F1 (3 folds) on the calibration renderings and text requests",
                "table": self.condition.table,
            },
            "retrieval_gate": {
                "layer": self.text_gate.gate.layer,
                "threshold": self.text_gate.gate.threshold,
                "rule": "interp.steer.fit_gate: cross-validated F1 (3 folds) over every layer, on the calibration text requests",
                "table": self.text_gate.table,
            },
            "transport_fits": {
                name: {
                    **t.metadata,
                    "active_neurons": t.active_neurons(),
                    "image_rows_only": t.image_rows_only,
                }
                for name, t in self.transports.items()
            },
        }


def window_source(window_fit: dict) -> str:
    return f"interp locate's rule ({window_fit['rule']}) run on calibration prompts only"


def calibrate(vlm, split: dict, window: tuple[list[int], dict] | None = None) -> Calibration:
    """Fit every method's parts on the calibration split: each seen object's first request (renderings
    ``CAL_SEEDS``) and the first 32 + 32 organism training prompts. ``window``: keep these steering
    layers and their record (a partial re-run extends the run it was part of)."""
    cal_harmful, cal_harmless = split["harmful_train"][:32], split["harmless_train"][:32]
    layers, window_fit = window if window is not None else calibration_window(vlm, cal_harmful, cal_harmless)
    print(f"steering layers {layers} ({window_source(window_fit)})", file=sys.stderr)
    cal_text_h, cal_image_h, cal_images_h = request_set(0, CAL_SEEDS, True)
    cal_text_b, cal_image_b, cal_images_b = request_set(0, CAL_SEEDS, False)
    per = len(CAL_SEEDS)
    cal_text = [t for t in cal_text_h + cal_text_b for _ in range(per)]
    acts = interp.capture(vlm, cal_harmful + cal_harmless, labels=["harmful"] * 32 + ["harmless"] * 32)
    dirs = refusal_directions(acts)
    sel = select_direction(vlm, dirs, cal_harmful[:12], cal_harmless[:12])
    refusal_layer, refusal_layer_rule = sel.layer, "Arditi et al.'s selection"
    if refusal_layer is None:  # no layer passed the filters (seen on the organism): the best inducer instead
        kept = [row for row in sel.table if row["in_range"]]
        refusal_layer = max(kept, key=lambda row: row["induce"])["layer"]
        refusal_layer_rule = "no layer passed Arditi et al.'s filters; the in-range layer whose direction induces the most refusal"
    refusal = dirs[refusal_layer]
    scale = float(refusal.norm())
    print(f"refusal direction: layer {refusal_layer}, raw norm {scale:.2f}", file=sys.stderr)
    # the condition (CAST): layer, direction and threshold by cross-validated F1 among the layers up
    # to the steered one, on calibration requests of both modalities (one gate serves text and image
    # inputs: it must fire on harmful renderings and stay off harmless text as well as harmless images)
    text_h, text_b = sorted(set(cal_text_h)) + cal_harmful, sorted(set(cal_text_b)) + cal_harmless
    condition = fit_condition(
        vlm,
        cal_image_h + text_h,
        cal_image_b + text_b,
        [AddDirection(refusal, [refusal_layer], scale, "all")],
        images_pos=cal_images_h + [None] * len(text_h),
        images_neg=cal_images_b + [None] * len(text_b),
    )
    print(
        f"condition: layer {condition.layer}, threshold {condition.conditional.threshold:.2f}",
        file=sys.stderr,
    )
    # the gate of retrieval_gated reads the text run, so it is fitted on text requests only, at any layer
    text_gate = fit_gate(vlm, text_h, text_b)
    print(
        f"text gate: layer {text_gate.gate.layer}, threshold {text_gate.gate.threshold:.2f}", file=sys.stderr
    )
    # the shift is read at the last prompt token and applied there, at the window's first layer only:
    # applied at every prompt token (KL 5.9 at alpha 0.5) or at every window layer (KL 6.2; each
    # layer's shift already contains the earlier ones, so they add up) it broke the model
    shift = ShiftToText.fit(
        vlm,
        cal_image_h + cal_image_b,
        cal_images_h + cal_images_b,
        cal_text,
        layers=[layers[0]],
        positions="last",
    )
    # each steered layer's own refusal direction (difference in means on the calibration text requests)
    along = dirs.vectors[[dirs.layers.index(layer) for layer in layers]]
    transports = fit_transports(vlm, cal_image_h + cal_image_b, cal_images_h + cal_images_b, cal_text, layers)
    return Calibration(
        window=layers,
        window_fit=window_fit,
        refusal=refusal,
        refusal_layer=refusal_layer,
        refusal_layer_rule=refusal_layer_rule,
        scale=scale,
        condition=condition,
        text_gate=text_gate,
        shift=shift,
        along=along,
        text_harmful=sorted(set(cal_text_h)),
        text_harmless=sorted(set(cal_text_b)),
        data_hash=data_hash(cal_harmful + cal_harmless + cal_text),
        images=f"renderings {CAL_SEEDS} of {len(OBJECTS)} objects",
        transports=transports,
    )


# LinearTransport variants: (fit settings, pairs used; None = all calibration pairs). The sparse
# variant's share (10% of the neurons) is fixed beforehand, not tuned. A group penalty (sparsity=3,
# fixed on the tiny test model) moved every one of the organism's 576 neurons in the committed
# validation run before this one, so the penalty's scale does not carry across models; a set share
# of neurons does.
TRANSPORTS = {
    "transport_local": ({"mode": "local"}, None),
    "transport_e2e": ({"mode": "end_to_end"}, None),
    "transport_sparse": ({"mode": "end_to_end", "keep": 0.1}, None),
    "transport_e2e_n8": ({"mode": "end_to_end"}, 8),
    "transport_e2e_n16": ({"mode": "end_to_end"}, 16),
    "transport_e2e_n32": ({"mode": "end_to_end"}, 32),
}


def fit_transports(vlm, image_prompts, images, text_prompts, layers) -> dict[str, LinearTransport]:
    """Each variant fitted on calibration pairs only: the image forms' last-token states are carried to
    the text forms'. A variant with fewer pairs takes the first n of one seeded shuffle (so n=8 is part of
    n=16); the maps are applied where they were read, the last prompt token, of image requests only."""
    order = list(range(len(image_prompts)))
    random.Random(0).shuffle(order)
    out = {}
    for name, (settings, n) in TRANSPORTS.items():
        rows = sorted(order[:n]) if n is not None else order
        t = LinearTransport.fit(
            vlm,
            [image_prompts[i] for i in rows],
            [images[i] for i in rows],
            [text_prompts[i] for i in rows],
            layers,
            **settings,
        )
        print(f"{name}: {t.metadata} ({t.active_neurons()} neurons moved)", file=sys.stderr)
        out[name] = t
    return out


def _transport(name: str) -> Callable[[Calibration, float], list]:
    def build(cal: Calibration, a: float) -> list:
        return [dataclasses.replace(cal.transports[name], alpha=a)]

    return build


@dataclass(frozen=True)
class Method:
    """One steering method: the alphas its validation sweep runs (``quick``: a smoke run's) and how an
    alpha becomes interventions, given the calibration."""

    alphas: tuple[float, ...]
    quick: tuple[float, ...]
    build: Callable[[Calibration, float], list]


def _add(cal: Calibration, a: float) -> AddDirection:
    return AddDirection(cal.refusal, [cal.refusal_layer], a * cal.scale, "all")


def _retrieval(**kw) -> Callable[[Calibration, float], list]:
    return lambda cal, a: [RetrievalGuided(cal.window, a, **kw)]


BOTH = ["last", "image_mean"]
METHODS: dict[str, Method] = {
    "cmrm_shift": Method(
        (0.5, 1.0, 1.5),
        (0.5, 1.0),
        lambda cal, a: [ShiftToText(cal.shift.shifts, a, "last", cal.shift.metadata)],
    ),
    "retrieval_guided": Method((0.5, 1.0), (1.0,), _retrieval()),
    "retrieval_image_mean": Method((0.5, 1.0), (1.0,), _retrieval(positions="image_mean")),
    "retrieval_both": Method((0.5, 1.0), (1.0,), _retrieval(positions=BOTH)),
    "retrieval_bank": Method(
        (0.5, 1.0), (1.0,), lambda cal, a: [RetrievalGuided(cal.window, a, bank=pictograph_text_bank())]
    ),
    "retrieval_gated": Method(
        (0.05, 0.075, 0.1, 0.15, 0.5),
        (1.0,),
        lambda cal, a: [RetrievalGuided(cal.window, a, positions=BOTH, gate=cal.text_gate.gate)],
    ),
    "retrieval_along_refusal": Method(
        (0.5, 1.0, 2.0),
        (1.0,),
        lambda cal, a: [RetrievalGuided(cal.window, a, positions=BOTH, along=cal.along)],
    ),
    "refusal_add": Method((0.5, 1.0, 2.0), (1.0,), lambda cal, a: [_add(cal, a)]),
    "conditional_add": Method(
        (0.5, 1.0, 2.0),
        (1.0,),
        lambda cal, a: [
            Conditional(
                cal.condition.conditional.direction,
                cal.condition.layer,
                cal.condition.conditional.threshold,
                [_add(cal, a)],
            )
        ],
    ),
    **{name: Method((0.5, 1.0), (1.0,), _transport(name)) for name in TRANSPORTS},
}


# methods of the table that the committed run (figures/steering/summary.json) has swept on validation
# but not run on the sealed test yet (added by a partial --only run): the tables say so, the next whole
# run tests them, and a test keeps this set equal to what the summary holds
NOT_IN_SEALED_TEST: set[str] = set()


def alphas(quick: bool, only: list[str] | None = None) -> dict[str, list[float]]:
    """Method -> the alphas its validation sweep runs (``only``: these methods)."""
    return {
        name: list(m.quick if quick else m.alphas)
        for name, m in METHODS.items()
        if only is None or name in only
    }
