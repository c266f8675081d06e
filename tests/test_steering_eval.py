"""analyses/steering_eval.py's selection rule, and its committed summary re-derived from its own rows."""

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analyses"))
import steering_eval as se  # noqa: E402

SUMMARY = ROOT / "figures" / "steering" / "summary.json"


def stats(refusal, rise, kl):
    return {"image_harmful_refusal": refusal, "over_refusal_rise": rise, "kl_harmless": kl}


def test_the_rule_takes_the_most_refusal_within_the_limits_else_the_smallest_alpha():
    alphas = [0.5, 0.1, 1.0]
    assert se.pick([stats(0.9, 0.02, 0.05), stats(0.5, 0.0, 0.01), stats(1.0, 0.2, 0.05)], alphas) == 0
    assert se.pick([stats(0.9, 0.02, 0.05), stats(0.9, 0.0, 0.01), stats(1.0, 0.0, 0.5)], alphas) == 1  # tie
    assert se.pick([stats(0.9, 0.06, 0.05), stats(0.5, 0.0, 0.2), stats(1.0, 0.2, 0.05)], alphas) == 1


@pytest.mark.skipif(not SUMMARY.exists(), reason="no committed steering summary")
def test_the_committed_summary_is_what_its_rows_give():
    summary = json.loads(SUMMARY.read_text())
    again = copy.deepcopy(summary)
    se.derive(again, renderings=3)
    assert again["methods"] == summary["methods"]
    assert again["selection_check"] == summary["selection_check"]
    for name, check in summary["selection_check"]["methods"].items():
        assert check["alpha_in_sample"] == summary["methods"][name]["alpha"]


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


@pytest.mark.skipif(not (SUMMARY.parent / "confirm.json").exists(), reason="no committed confirmation")
def test_the_committed_confirmation_is_what_its_rows_give():
    import steering_confirm as sc

    confirm = json.loads((SUMMARY.parent / "confirm.json").read_text())
    again = copy.deepcopy(confirm)
    sc.derive(again, json.loads(SUMMARY.read_text()))
    assert again == confirm
    assert set(confirm["settings"]) == {
        "none",
        *(f"retrieval_gated@{a}" for a in sc.GATED_ALPHAS),
        *sc.CHOSEN,
    }
