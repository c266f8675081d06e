"""Steering: interventions on the residual stream at inference time, their artifacts, and generation.

>>> from interp.steer import AddDirection, Conditional, RetrievalGuided, ShiftToText, steer
>>> with steer(model, [AddDirection(refusal, layers=[12], alpha=4.0)]):
...     model.generate(model.encode(prompts))
>>> interp.steer.generate(vlm, prompts, images=imgs, interventions=[RetrievalGuided(range(10, 17), 0.8)])
>>> SteeringArtifact.create(model, [ShiftToText.fit(...)], method="cmrm").save("shift.safetensors")
>>> interp.steer.load("shift.safetensors", model)
>>> fit_condition(vlm, harmful, harmless, then=[AddDirection(refusal, [15], 8.0)]).conditional  # CAST fit
>>> RetrievalGuided([14], 1.0, bank=TextBank(object_names), positions=["last", "image_mean"])
>>> RetrievalGuided(range(10, 17), 0.5, gate=fit_gate(vlm, harmful, harmless).gate)  # pull only harmful text forms
>>> RetrievalGuided([14, 15], 1.0, along=refusal_dirs.vectors[[14, 15]])  # the refusal component only
>>> LinearTransport.fit(vlm, image_prompts, imgs, text_prompts, layers=range(10, 16))  # learned (LinEAS)
"""

from interp.steer.apply import generate, last_logits, steer
from interp.steer.artifact import SteeringArtifact, load
from interp.steer.condition import ConditionFit, GateFit, fit_condition, fit_gate
from interp.steer.interventions import (
    AblateDirection,
    AddDirection,
    Clamp,
    Conditional,
    SetProjection,
    ShiftToText,
)
from interp.steer.specs import from_spec
from interp.steer.text_bank import SentenceEmbedder, TextBank
from interp.steer.text_guided import RetrievalGuided
from interp.steer.transport import LinearTransport

__all__ = [
    "AblateDirection",
    "AddDirection",
    "Clamp",
    "ConditionFit",
    "Conditional",
    "GateFit",
    "LinearTransport",
    "RetrievalGuided",
    "SentenceEmbedder",
    "SetProjection",
    "ShiftToText",
    "SteeringArtifact",
    "TextBank",
    "fit_condition",
    "fit_gate",
    "from_spec",
    "generate",
    "last_logits",
    "load",
    "steer",
]
