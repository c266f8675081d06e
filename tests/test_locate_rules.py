"""The candidate localization rules (interp.locate.rules) and the rule the report uses."""

import json

import pytest

from interp.locate import rules
from interp.locate.report import chosen_rule
from interp.locate.rules import RULES, Curves, increments, iou, score, shortest_mass_window, steps_window


def test_window_helpers():
    layers = list(range(6))
    assert increments([0.0, 0.1, 0.5, 0.9, 1.0]) == pytest.approx([0.0, 0.1, 0.4, 0.4, 0.1])
    assert steps_window([0.0, 0.1, 0.5, 0.9, 1.0, 1.0], 0.5, layers) == [2, 3]
    assert steps_window([0.0, 0.0], 0.5, [0, 1]) == []
    # the shortest run holding half the mass is the peak's neighbourhood, not the first layers
    assert shortest_mass_window([0.1, 0.1, 0.5, 0.3, 0.0, 0.0], 0.5, layers) == [2]
    assert shortest_mass_window([0.1, 0.1, 0.5, 0.3, 0.0, 0.0], 0.8, layers) == [2, 3]
    assert shortest_mass_window([0.0, -1.0], 0.5, [0, 1]) == []


def test_scores():
    assert iou([1, 2, 3], [2, 3, 4, 5]) == pytest.approx(2 / 5)
    assert iou([], []) == 0.0
    assert score([], [1, 2]) == {"precision": 0.0, "recall": 0.0, "iou": 0.0}  # saying nothing scores nothing
    assert score([1, 2], [1, 2]) == {"precision": 1.0, "recall": 1.0, "iou": 1.0}


def _curves(rise_at: int, n: int = 12) -> Curves:
    resid = [0.0] * rise_at + [0.3, 0.7, 1.0] + [1.0] * (n - rise_at - 3)
    comp = [0.0] * n
    comp[rise_at + 1] = 0.4
    return Curves(
        list(range(n)), resid, comp, [0.0] * n, attribution=resid, probe=[0.5 + i / 40 for i in range(n)]
    )


def test_every_rule_returns_layers_of_the_model():
    assert len(RULES) == len({r.name for r in RULES.values()})
    for shift in (0, 4, 9):
        c = _curves(shift)
        for rule in RULES.values():
            found = rule.select(c)
            assert set(found) <= set(c.layers), rule.name
    c = _curves(4)
    assert RULES["resid_rise_0.1_0.9"].select(c) == [4, 5, 6]  # follows the rise, wherever it is
    assert RULES["resid_rise_0.1_0.9"].select(_curves(8)) == [8, 9, 10]
    assert RULES["direction_layer"].select(c) == []  # no direction selected: nothing found


def test_curves_from_a_saved_report_match_the_maps(tmp_path):
    # the report JSON keeps only effects; the curves the rules read are the same numbers
    path = tmp_path / "r.json"
    effect = [[0.0, 0.1], [0.2, 0.5], [0.9, 1.0]]
    d = {
        "methods": {"probe": {"scores": [0.5, 0.6, 0.7]}},
        "findings": {"selected_direction_layer": 1},
        "patching_maps": {s: {"layers": [0, 1, 2], "effect": effect} for s in ("resid", "attn", "mlp")},
    }
    path.write_text(json.dumps(d))
    c = Curves.from_report(json.loads(path.read_text()))
    assert c.resid == [0.1, 0.5, 1.0] and c.components == [0.2, 1.0, 2.0] and c.direction_layer == 1


def test_the_chosen_rule_is_a_candidate_with_its_suite_scores():
    card = chosen_rule()
    assert card["rule"] in RULES and card["description"] == RULES[card["rule"]].description
    assert 0.0 <= card["loo_mean_iou"] <= 1.0 and card["n_organisms"] >= 5
    assert card["reliable"] == (card["loo_mean_iou"] >= card["reliable_bar"])
    assert rules.RULES[card["rule"]].uses_maps or card["rule"] in (
        "probe_onset",
        "safety_gap_onset",
        "lens_first",
        "direction_layer",
    )
