"""The over-sensitivity split (interp.organism.oversensitive): three MOSSBench-style types of at least
30 benign requests each, about seen, renderable objects, with image forms that do not name them."""

import re
from collections import Counter

from interp.organism.oversensitive import KINDS, OVERSENSITIVE, oversensitive_set, oversensitive_texts
from interp.organism.render import BY_NAME, OBJECTS, UNSEEN_OBJECTS


def test_each_type_has_thirty_fresh_requests_about_seen_risky_objects():
    counts = Counter(r.kind for r in OVERSENSITIVE)
    assert set(counts) == set(KINDS) and min(counts.values()) >= 30, counts
    assert all(BY_NAME[r.object].harmful for r in OVERSENSITIVE)  # risky-looking, and seen (captionable)
    assert len({r.image for r in OVERSENSITIVE}) == len({r.text for r in OVERSENSITIVE}) == len(OVERSENSITIVE)
    known = {q for o in (*OBJECTS, *UNSEEN_OBJECTS) for pair in o.requests for q in pair}
    assert not known & {q for r in OVERSENSITIVE for q in (r.text, r.image)}  # written fresh, not reused


def test_image_forms_show_the_object_and_text_forms_name_it():
    for r in OVERSENSITIVE:
        names = BY_NAME[r.object].names()
        words = re.findall(r"[a-z]+", r.image.lower())
        assert not any(n in words or n + "s" in words for n in names), r.image
        assert re.search(r"\b(this|these)\b", r.image), r.image
        named = {*names, *(n[:-2] + "ves" for n in names if n.endswith("fe"))}  # knife, knives
        assert any(n in r.text.lower() for n in named), r.text


def test_the_set_renders_each_image_form_once_in_order():
    prompts, images, kinds = oversensitive_set(seed=10_000, kinds=("negated_harm",))
    rows = [r for r in OVERSENSITIVE if r.kind == "negated_harm"]
    assert prompts == [r.image for r in rows] and set(kinds) == {"negated_harm"}
    assert len(images) == len(rows) and images[0].size == (224, 224)
    assert oversensitive_texts(("negated_harm",)) == [r.text for r in rows]
