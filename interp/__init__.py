"""interp: locate and steer the safety mechanism of LLMs and vision-language models.

>>> import interp
>>> model = interp.load_model("default")
>>> acts = interp.capture(model, interp.data.load("harmbench").prompts, positions="last")
"""

from interp import data, evaluate, export, locate, refusal, steer, vllm
from interp.activations import Activations
from interp.capture import ActivationShards, capture
from interp.crossfit import CrossFit, cross_fit
from interp.edits import Edit
from interp.errors import (
    CorruptFileError,
    FingerprintMismatchError,
    InputError,
    InterpError,
    LayerIndexError,
    UnknownModelFamilyError,
)
from interp.hooks import attach
from interp.inputs import Batch, encode
from interp.intervals import Interval, bootstrap_interval
from interp.models import (
    ADAPTERS,
    HookedModel,
    ModelFingerprint,
    known_families,
    load_model,
    register_model,
    wrap,
)
from interp.ray_pool import RayPool
from interp.spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "ADAPTERS",
    "ActivationShards",
    "ModelSpec",
    "RayPool",
    "Activations",
    "Batch",
    "CorruptFileError",
    "CrossFit",
    "Edit",
    "FingerprintMismatchError",
    "HookedModel",
    "InputError",
    "Interval",
    "InterpError",
    "LayerIndexError",
    "ModelFingerprint",
    "UnknownModelFamilyError",
    "attach",
    "bootstrap_interval",
    "capture",
    "cross_fit",
    "data",
    "encode",
    "evaluate",
    "export",
    "known_families",
    "load_model",
    "locate",
    "refusal",
    "register_model",
    "steer",
    "vllm",
    "wrap",
    "__version__",
]
