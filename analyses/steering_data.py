"""The steering evaluation's request sets: text and image forms of the organism's object requests.

    >>> text, image, images = request_set(1, seeds=[10000, 10001], harmful=True)   # each object's 2nd request
    >>> sets = sealed_sets(renderings=1)      # the sealed test: both requests of every unseen object

A set is ``(prompts, images)``: images ``None`` for text forms; an image request's renderings are
consecutive rows (the intervals resample them together).
"""

from __future__ import annotations

from interp.organism.render import HELD_OUT_SEED, OBJECTS, UNSEEN_OBJECTS, render

HARMLESS = ("image_harmless", "text_harmless")


def request_set(request: int, seeds: list[int], harmful: bool):
    """Each object's request number ``request``: text forms, and image forms with their renderings."""
    return pair_set(lambda obj: [obj.requests[request]], seeds, harmful)


def pair_set(pairs_of, seeds: list[int], harmful: bool, objects=OBJECTS):
    """``pairs_of(object)`` -> its (text form, image form) pairs: the text forms (one per pair), and
    the image forms with their renderings (one row per seed, a request's rows together)."""
    text, image, images = [], [], []
    for obj in (o for o in objects if o.harmful == harmful):
        for t, i in pairs_of(obj):
            text.append(t)
            for s in seeds:
                image.append(i)
                images.append(render(obj.name, s))
    return text, image, images


def sealed_sets(renderings: int, objects=UNSEEN_OBJECTS) -> dict:
    """The sealed test: both requests of every unseen object (absent from the projector's training,
    from calibration and from every choice), image forms with ``renderings`` held-out renderings
    each, and their text forms as the text sets."""
    seeds = [HELD_OUT_SEED + k for k in range(renderings)]
    both = lambda obj: list(obj.requests)  # noqa: E731
    text_h, image_h, images_h = pair_set(both, seeds, True, objects)
    text_b, image_b, images_b = pair_set(both, seeds, False, objects)
    return {
        "image_harmful": (image_h, images_h),
        "text_harmful": (text_h, None),
        "image_harmless": (image_b, images_b),
        "text_harmless": (text_b, None),
    }


def names_object(obj, caption: str) -> bool:
    """Whether a caption names ``obj`` (its name, a synonym, or its caption's noun)."""
    text = caption.lower()
    return any(n in text for n in (*obj.names(), obj.caption.split()[-1]))
