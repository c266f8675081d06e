"""Fixtures: tiny random-weight models built from configs (seconds), and the real offline SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from PIL import Image

from interp.models.adapters import ADAPTERS
from interp.testing import TINY_IMAGE_ID, WITH_PROCESSOR, tiny_model, tiny_organism_vl  # noqa: F401

# property-based tests: a bounded, reproducible run by default (CI); `--hypothesis-profile=deep` searches
# more widely, with a new random seed each run
_SLOW_EXAMPLES = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True, suppress_health_check=_SLOW_EXAMPLES
)
settings.register_profile("deep", max_examples=200, deadline=None, suppress_health_check=_SLOW_EXAMPLES)
settings.load_profile("ci")

FAMILIES = sorted(set(ADAPTERS) - {"organism_vl"})  # every family with a tiny model (organism_vl: its own)


def images_for(family: str, image, n: int):
    """``[image] * n`` where the tiny ``family`` model takes images (through a processor), else None."""
    return [image] * n if family in WITH_PROCESSOR else None


def trained_like(family: str):
    """A tiny ``family`` model with what random init hides set as trained models have it: uneven
    norm scales and open cross-attention gates."""
    from interp.testing import open_gates, uneven_norms

    return open_gates(uneven_norms(tiny_model(family)))


@pytest.fixture(scope="session")
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def llava():
    return tiny_model("llava")


@pytest.fixture(scope="session")
def tiny_vl():
    """The organism VLM's architecture on a tiny random Llama (real EfficientNet shape, random weights)."""
    return tiny_organism_vl()


@pytest.fixture(scope="session")
def image():
    return Image.fromarray((np.random.RandomState(0).rand(40, 48, 3) * 255).astype("uint8"))


@pytest.fixture(scope="session")
def smollm():
    import interp

    return interp.load_model("default")


PROMPTS = ["hello there", "a much longer prompt than the first one", "x"]


@pytest.fixture
def prompts():
    return list(PROMPTS)


def reference_states(model, batch) -> list[torch.Tensor]:
    """Decoder-layer outputs from ``output_hidden_states``. Its last entry is *after* the final
    norm, so the last layer's raw output is not in it; callers compare layers 0..L-2 and check the
    last through the norm."""
    with torch.inference_mode():
        hs = model.model(**batch.inputs, output_hidden_states=True).hidden_states
    return list(hs[1:])
