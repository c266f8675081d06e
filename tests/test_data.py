import pytest

import interp
from interp.data import FILES, load


def test_shipped_sets_and_licences():
    hb = load("harmbench")
    assert len(hb) == 200 and set(hb.labels) == {"harmful"}
    assert len(load("harmbench", split="val")) == 41 and len(load("harmbench", split="test")) == 159
    harmless = load("harmless")
    assert len(harmless) >= 100 and len(set(harmless.prompts)) == len(harmless)
    assert not set(harmless.prompts) & set(hb.prompts)
    assert len(load("benign_sensitive")) == 50 and len(load("benign_sensitive", sensitive=True)) == 20
    assert (FILES / "LICENSE-harmbench.txt").read_text().count("MIT") >= 1
    assert "MIT License" in (FILES / "LICENSE-aplomb.txt").read_text()


def test_combine_and_errors():
    both = load("harmbench", n=5) + load("harmless", n=5)
    assert both.labels == ["harmful"] * 5 + ["harmless"] * 5
    with pytest.raises(interp.InputError, match="unknown prompt set"):
        load("advbench")
    with pytest.raises(interp.InputError, match="splits"):
        load("harmbench", split="train")
    with pytest.raises(interp.InputError, match="asked for 500"):
        load("harmless", n=500)
    for bad in (-3, 0, 2.5, True):  # issue 23: n=-3 was taken as "all but the last three"
        with pytest.raises(interp.InputError, match="positive int"):
            load("harmless", n=bad)


def test_sealed_test_sets():
    sr, matched = load("strongreject"), load("harmless_matched")
    assert len(sr) == 313 and set(sr.labels) == {"harmful"} and len(set(sr.ids)) == 313
    assert len(matched) == 96 and set(matched.labels) == {"harmless"}
    # the matched harmless set covers StrongREJECT's six categories, 16 requests each
    cats = {m["category"] for m in sr.meta}
    assert len(cats) == 6 and {m["category"] for m in matched.meta} == cats
    assert all(sum(m["category"] == c for m in matched.meta) == 16 for c in cats)
    assert not set(sr.prompts) & set(matched.prompts)
    assert "MIT" in (FILES / "LICENSE-strongreject.txt").read_text()
