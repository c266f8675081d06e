"""interp.locate.run on the shipped organism VLM (real weights, slow): the report against its planted window."""

import json

import pytest

import interp
from interp.organism import PROJECTOR, RECORD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm():
    if not PROJECTOR.exists():
        pytest.skip("the organism projector is not trained yet")
    return interp.load_model("organism-vl")


def test_small_report_on_the_organism(vlm, tmp_path):
    from interp.organism import held_out
    from interp.organism.pairs import cross_modal_pairs

    split = held_out()
    pairs = cross_modal_pairs(1)
    data = interp.locate.LocateData(
        split["harmful"][:8], split["harmless"][:8], pairs.rows(range(0, len(pairs), 3))
    )
    report = interp.locate.run(vlm, data, patch_pairs=4, last_positions=2, progress=False)
    assert report.planted == json.loads(RECORD.read_text())["layers"]
    assert report.candidate_layers and all(0 <= layer < vlm.n_layers for layer in report.candidate_layers)
    assert report.safety_layers in ([], report.candidate_layers)  # named only when the rule is reliable
    assert report.causal["window"] == report.candidate_layers
    assert report.findings["clean_minus_corrupt_metric"] > 0  # the organism refuses the harmful prompts more
    out = report.save(tmp_path, png=False)
    saved = json.loads((out / "report.json").read_text())
    assert saved["safety_layers"] == report.safety_layers and "planted_overlap" in saved["localized"]["probe"]
    assert saved["causal_checks"]["necessity"]["reset"]["n_pairs"] == 4  # pairs 4-7: not the located ones
