"""EfficientNet-Lite0 written out in interp: the shipped ImageNet weights load strictly and classify."""

import pytest
import torch

from interp.organism.render import render
from interp.organism.vision import EfficientNetLite0
from interp.organism.vlm import OrganismVLProcessor


@pytest.fixture(scope="module")
def encoder():
    return EfficientNetLite0.pretrained()


def test_weights_load_strictly_and_are_frozen(encoder):
    assert sum(p.numel() for p in encoder.parameters()) == 4_652_008
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training


def test_classifies_a_rendered_knife_as_a_cleaver(encoder):
    # ImageNet class 499 is "cleaver, meat cleaver, chopper": the closest class to a kitchen knife
    pixels = OrganismVLProcessor.pixels(render("knife", seed=0))[None]
    probs = encoder.classify(pixels).softmax(-1)[0]
    assert int(probs.argmax()) == 499 and probs[499] > 0.5


def test_feature_map_shape(encoder):
    assert encoder.features(torch.zeros(2, 3, 224, 224)).shape == (2, 1280, 7, 7)
