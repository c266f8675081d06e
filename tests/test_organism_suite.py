"""The organism suite and the leave-one-organism-out choice of a localization rule (issue 27):
the committed tables are what the committed curves give, and every adapter is its recorded window."""

import json
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "figures" / "locate" / "suite.json"
sys.path.insert(0, str(ROOT / "analyses" / "organism"))


@pytest.fixture(scope="module")
def suite():
    return json.loads(SUITE.read_text())


def test_suite_has_the_promised_keys(suite):
    assert len(suite["organisms"]) >= 5  # the shipped organism + at least four more windows
    for o in suite["organisms"].values():
        assert {"window", "harmful_refusal", "harmless_refusal"} <= set(o)
        assert o["accepted"] == (o["harmful_refusal"] >= 0.80 and o["harmless_refusal"] <= 0.15)  # the bar
    passing = [n for n, o in suite["organisms"].items() if o["accepted"]]
    assert suite["basis"] == ("passing" if len(passing) >= 3 else "all_trained")
    for rule in suite["rules"].values():
        for name in suite["organisms"]:
            assert {"precision", "recall", "iou"} <= set(rule["per_organism"][name])
        assert {"mean_precision", "mean_recall", "mean_iou"} <= set(rule)
    assert suite["chosen_rule"] in suite["rules"] and 0.0 <= suite["loo_mean_iou"] <= 1.0


def test_tables_are_recomputed_from_the_committed_curves(tmp_path, monkeypatch):
    import locate_suite

    committed = json.loads(SUITE.read_text())
    monkeypatch.setattr(locate_suite, "SUMMARY", tmp_path / "suite.json")
    monkeypatch.setattr(locate_suite, "CHOSEN", tmp_path / "chosen_rule.json")
    again = locate_suite.stage_select()
    for key in ("chosen_rule", "loo_mean_iou", "loo_mean_iou_interval", "leave_one_out", "rules", "reliable"):
        assert again[key] == committed[key], key
    shipped = json.loads((ROOT / "interp" / "locate" / "chosen_rule.json").read_text())
    assert json.loads((tmp_path / "chosen_rule.json").read_text()) == shipped
    # the committed table is the committed JSON rendered (numbers in prose come from the file)
    import suite_tables

    assert suite_tables.markdown(committed) == (ROOT / "figures" / "locate" / "suite.md").read_text()


def test_each_adapter_is_its_recorded_window(suite):
    for name, o in suite["organisms"].items():
        folder = ROOT / o["adapter"] if o["adapter"] else ROOT / "interp" / "organism"
        record = json.loads((folder / "adapter.json").read_text())
        assert record["layers"] == o["window"], name
        with safe_open(str(folder / "adapter.safetensors"), "pt") as f:
            layers = {int(k.split(".layers.")[1].split(".")[0]) for k in f.keys()}
        assert layers == set(o["window"]), name


def test_readme_block_is_generated_from_the_results():
    import suite_tables

    block = suite_tables.readme_block(json.loads(SUITE.read_text()))
    assert block in (ROOT / "docs" / "guide" / "locate.md").read_text()
