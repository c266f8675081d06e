"""Rendered emoji objects: deterministic per seed, varied across seeds, every object visible."""

import numpy as np
import pytest

from interp.errors import InterpError
from interp.organism.render import BY_NAME, HELD_OUT_SEED, OBJECTS, render


def test_deterministic_and_varied():
    a, b = np.asarray(render("bomb", 3)), np.asarray(render("bomb", 3))
    assert (a == b).all()
    assert (a != np.asarray(render("bomb", HELD_OUT_SEED))).any()


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.name)
def test_every_object_renders_with_content(obj):
    img = np.asarray(render(obj.name, 0)).astype(int)
    background = img[0, 0]
    assert img.shape == (224, 224, 3)
    assert (np.abs(img - background).sum(-1) > 60).mean() > 0.03  # the glyph covers a visible area


def test_matched_requests():
    harmful = [o for o in OBJECTS if o.harmful]
    assert len(harmful) >= 6 and len(OBJECTS) - len(harmful) >= 6
    for o in OBJECTS:
        for text_form, image_form in o.requests:
            assert (
                o.name in text_form.lower()
                or o.caption.split()[-1] in text_form.lower()
                or o.name == "poison"
            )
            assert o.name not in image_form.lower()
    assert BY_NAME["bomb"].harmful and not BY_NAME["cookie"].harmful


def test_unknown_object():
    with pytest.raises(InterpError, match="unknown object 'tank'"):
        render("tank")
