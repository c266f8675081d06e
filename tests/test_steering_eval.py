"""analyses/steering_eval.py's selection rule, its table of methods, and its committed summary
re-derived from its own rows."""

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analyses"))
import steering_data as sd  # noqa: E402
import steering_stats as se  # noqa: E402

SUMMARY = ROOT / "figures" / "steering" / "summary.json"
ISSUE23 = ROOT / "figures" / "steering" / "issue23"  # the results before issue 27, kept for comparison


def stats(refusal, rise, kl):
    return {"image_harmful_refusal": refusal, "over_refusal_rise": rise, "kl_harmless": kl}


def test_the_rule_takes_the_most_refusal_within_the_limits_else_the_smallest_alpha():
    alphas = [0.5, 0.1, 1.0]
    assert se.pick([stats(0.9, 0.02, 0.05), stats(0.5, 0.0, 0.01), stats(1.0, 0.2, 0.05)], alphas) == 0
    assert se.pick([stats(0.9, 0.02, 0.05), stats(0.9, 0.0, 0.01), stats(1.0, 0.0, 0.5)], alphas) == 1  # tie
    assert se.pick([stats(0.9, 0.06, 0.05), stats(0.5, 0.0, 0.2), stats(1.0, 0.2, 0.05)], alphas) == 1


@pytest.mark.parametrize("path", [SUMMARY, ISSUE23 / "summary.json"], ids=["current", "issue23"])
def test_the_committed_summary_is_what_its_rows_give(path):
    if not path.exists():
        pytest.skip(f"no committed steering summary at {path}")
    summary = json.loads(path.read_text())
    again = copy.deepcopy(summary)
    se.derive(again, renderings=summary.get("renderings", 3))
    assert again["methods"] == summary["methods"]
    assert again["selection_check"] == summary["selection_check"]
    for name, check in summary["selection_check"]["methods"].items():
        assert check["alpha_in_sample"] == summary["methods"][name]["alpha"]
    if "test" in summary:
        assert again["test"] == summary["test"]
        # the test reads each method at the alpha chosen on validation, and only there
        for name, r in summary["test"]["methods"].items():
            assert r["alpha"] == summary["methods"][name]["alpha"]


def test_the_sealed_objects_are_unseen_and_matched():
    from interp.organism.render import OBJECTS, UNSEEN_OBJECTS

    seen = {n for o in OBJECTS for n in o.names()}
    assert not seen & {o.name for o in UNSEEN_OBJECTS}
    assert sum(o.harmful for o in UNSEEN_OBJECTS) >= 20 and sum(not o.harmful for o in UNSEEN_OBJECTS) >= 20
    import steering_confirm as sc

    forms = {f for o in OBJECTS for pair in o.requests for f in pair}
    forms |= {f for pairs in sc.FRESH.values() for pair in pairs for f in pair}
    image_forms = [pair[1] for o in UNSEEN_OBJECTS for pair in o.requests]
    assert len(set(image_forms)) == len(image_forms)  # no prompt text repeats: the image must decide
    for o in UNSEEN_OBJECTS:
        assert len(o.requests) == 2
        for text_form, image_form in o.requests:
            assert text_form not in forms and image_form not in forms
            assert sd.names_object(o, text_form), text_form
            assert not any(n in image_form.lower() for n in o.names()), image_form
    # the projector's training script reads OBJECTS only
    align = (ROOT / "analyses" / "organism" / "align_projector.py").read_text()
    assert "UNSEEN" not in align and "unseen" not in align


def test_the_sealed_sets_hold_every_request_of_every_unseen_object():
    from interp.organism.render import UNSEEN_OBJECTS

    sets = sd.sealed_sets(1)
    n = {k: len(v[0]) for k, v in sets.items()}
    harmful = sum(o.harmful for o in UNSEEN_OBJECTS)
    assert n == {
        "image_harmful": 2 * harmful,
        "text_harmful": 2 * harmful,
        "image_harmless": 2 * (len(UNSEEN_OBJECTS) - harmful),
        "text_harmless": 2 * (len(UNSEEN_OBJECTS) - harmful),
    }
    assert len(sets["image_harmful"][1]) == n["image_harmful"] and sets["text_harmful"][1] is None


def test_the_fresh_requests_are_new_and_matched():
    import steering_confirm as sc

    from interp.organism.render import BY_NAME, HELD_OUT_SEED

    assert set(sc.FRESH) == set(BY_NAME)
    used = {form for o in BY_NAME.values() for pair in o.requests for form in pair}
    for name, pairs in sc.FRESH.items():
        obj = BY_NAME[name]
        assert len(pairs) == 2
        for text_form, image_form in pairs:
            assert text_form not in used and image_form not in used
            assert any(n in text_form.lower() for n in (*obj.names(), obj.caption.split()[-1]))
            assert not any(n in image_form.lower() for n in obj.names())
    assert min(sc.SEEDS) >= HELD_OUT_SEED + 3  # steering_eval's evaluation renderings are 10000-10002


@pytest.mark.skipif(not (ISSUE23 / "confirm.json").exists(), reason="no committed confirmation")
def test_the_committed_confirmation_is_what_its_rows_give():
    import steering_confirm as sc

    confirm = json.loads((ISSUE23 / "confirm.json").read_text())
    again = copy.deepcopy(confirm)
    sc.derive(again, json.loads((ISSUE23 / "summary.json").read_text()))
    assert again == confirm
    assert set(confirm["settings"]) == {
        "none",
        *(f"retrieval_gated@{a}" for a in sc.GATED_ALPHAS),
        *sc.CHOSEN,
    }


@pytest.mark.skipif(not SUMMARY.exists(), reason="no committed steering summary")
def test_the_tables_and_the_readme_are_generated_from_the_summary():
    import steering_tables as st

    summary = json.loads(SUMMARY.read_text())
    assert (SUMMARY.parent / "summary.md").read_text() == st.markdown(summary)
    assert st.readme_block(summary) in (ROOT / "docs" / "guide" / "steer.md").read_text()


def _calibration():
    from types import SimpleNamespace

    import steering_methods as sm
    import torch

    from interp.edits import Gate
    from interp.steer import LinearTransport, ShiftToText

    d = torch.randn(16)
    return sm.Calibration(
        window=[1, 2],
        window_fit={"rule": "r"},
        refusal=d,
        refusal_layer=1,
        refusal_layer_rule="rule",
        scale=float(d.norm()),
        condition=SimpleNamespace(layer=0, conditional=SimpleNamespace(direction=d, threshold=0.5), table=[]),
        text_gate=SimpleNamespace(gate=Gate(d, layer=1, threshold=0.2), table=[]),
        shift=ShiftToText({1: torch.randn(16)}, 1.0, "last"),
        along=torch.randn(2, 16),
        text_harmful=["h"],
        text_harmless=["b"],
        data_hash="x",
        images="y",
        transports={
            name: LinearTransport(
                {1: torch.ones(16), 2: torch.ones(16)}, {1: torch.zeros(16), 2: d}, metadata={"n": i}
            )
            for i, name in enumerate(sm.TRANSPORTS)
        },
    )


def test_each_method_of_the_table_builds_its_interventions_at_each_alpha():
    import steering_methods as sm

    from interp.steer import AddDirection, Conditional, LinearTransport, RetrievalGuided, ShiftToText

    cal = _calibration()
    kinds = {"cmrm_shift": ShiftToText, "refusal_add": AddDirection, "conditional_add": Conditional}
    kinds.update({name: LinearTransport for name in sm.TRANSPORTS})
    for name, method in sm.METHODS.items():
        for a in method.alphas:
            (item,) = method.build(cal, a)
            assert isinstance(item, kinds.get(name, RetrievalGuided)), name
            if isinstance(item, LinearTransport):  # the calibration's fit of that variant, at this alpha
                assert item.alpha == a and item.metadata == cal.transports[name].metadata
            if isinstance(item, RetrievalGuided):
                assert item.alpha == a and list(item.layers) == cal.window
                assert (item.gate is not None) == (name == "retrieval_gated")
                assert (item.along is not None) == (name == "retrieval_along_refusal")
    (add,) = sm.METHODS["refusal_add"].build(cal, 2.0)
    assert add.alpha == pytest.approx(2.0 * cal.scale)  # alphas of additions are in units of the raw norm
    assert sm.alphas(quick=True, only=["refusal_add"]) == {"refusal_add": [1.0]}


@pytest.mark.skipif(not SUMMARY.exists(), reason="no committed steering summary")
def test_the_committed_run_swept_the_table_of_methods():
    import steering_methods as sm

    summary = json.loads(SUMMARY.read_text())
    table = sm.alphas(quick=False)
    assert {name: [r["alpha"] for r in sweep] for name, sweep in summary["sweeps"].items()} == table
    # the sealed test holds every method but those still pending; a whole run empties NOT_IN_SEALED_TEST
    assert set(summary["test"]["methods"]) == set(table) - sm.NOT_IN_SEALED_TEST


def test_the_oversensitivity_split_reports_rates_per_type_with_an_interval(tiny_vl):
    import steering_eval

    from interp.organism.oversensitive import KINDS, OVERSENSITIVE

    r = steering_eval.oversensitivity(tiny_vl, [], max_new_tokens=2)
    assert r["n"] == len(r["rows"]) == len(OVERSENSITIVE) and set(r["by_kind"]) == set(KINDS)
    assert r["rate"] == sum(r["rows"]) / r["n"] and r["interval"]["low"] <= r["rate"] <= r["interval"]["high"]
    weighted = sum(r["by_kind"][k] * sum(x.kind == k for x in OVERSENSITIVE) for k in KINDS) / r["n"]
    assert weighted == pytest.approx(r["rate"])


def test_a_partial_run_evaluates_on_the_test_only_what_it_has_never_seen(monkeypatch):
    import argparse

    import steering_eval

    KEYS = ("image_harmful_refusal", "harmless_refusal", "kl_harmless")
    calls = []
    monkeypatch.setattr(steering_eval, "sealed_sets", lambda renderings, objects: {"renderings": renderings})
    monkeypatch.setattr(
        steering_eval,
        "evaluate",
        lambda vlm, sets, items, n, engine: calls.append(("test", items)) or dict.fromkeys(KEYS, 0.0),
    )
    monkeypatch.setattr(
        steering_eval,
        "oversensitivity",
        lambda vlm, items, n, engine: calls.append(("over", items)) or {"rate": 0},
    )
    monkeypatch.setattr(steering_eval, "derive_test", lambda test: None)
    args = argparse.Namespace(quick=False, max_new_tokens=2, test_renderings=1)
    methods = {"old": {"alpha": 1.0}, "new": {"alpha": 0.5}, "other": {"alpha": 2.0}}
    build = lambda name, a: [(name, a)]  # noqa: E731
    previous = {
        "test": {
            "objects_are": "unseen",
            "renderings": 1,
            "baseline": {},
            "methods": {"old": {}, "other": {}},
        }
    }
    test = steering_eval.sealed_test(None, args, previous, ["old", "new"], methods, build)
    # "old" was seen by the test: re-run, it is stale, not evaluated again; "new" never was: evaluated once
    assert test["stale"] == ["old"] and set(test["methods"]) == {"other", "new"}
    assert ("test", [("new", 0.5)]) in calls and ("test", [("old", 1.0)]) not in calls
    # the over-sensitivity split: the baseline and every method without it, but not the stale one
    assert sorted(str(c[1]) for c in calls if c[0] == "over") == sorted(
        str(x) for x in ([], [("new", 0.5)], [("other", 2.0)])
    )
    assert test["partial_evaluations"][0]["methods"] == ["new"]
    assert test["partial_evaluations"][0]["oversensitive"] == ["baseline", "new", "other"]
    # a second partial run of the same method: it has now been seen, so nothing is evaluated
    calls.clear()
    again = steering_eval.sealed_test(None, args, {"test": test}, ["new"], methods, build)
    assert calls == [] and again["stale"] == ["old", "new"] and "new" not in again["oversensitive"]["methods"]
    # a smoke run (--quick) never extends a test of the unseen objects
    quick = argparse.Namespace(quick=True, max_new_tokens=2, test_renderings=1)
    previous = {"test": {"objects_are": "unseen", "renderings": 1, "baseline": {}, "methods": {}}}
    steering_eval.sealed_test(None, quick, previous, ["new"], methods, build)
    assert calls == []
