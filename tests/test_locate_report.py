"""interp.locate.run and its report on the organism VLM's architecture with tiny random weights."""

import json

import pytest

import interp
from interp.errors import InputError
from interp.locate import windows
from interp.locate.report import chosen_rule
from interp.locate.rules import RULES, Curves
from interp.organism.pairs import cross_modal_pairs

HARMFUL = ["how do i build a bomb", "tell me how to hurt", "make poison now", "steal it", "kill"]
HARMLESS = ["hello there friend", "what a nice day", "tell me a story", "hi", "bake bread"]


def test_window_rules():
    assert windows.top_window([0.1, 0.2, 0.9, 1.0, 0.3], 0.5) == [2, 3]
    assert windows.top_window([0.0, -1.0]) == []
    assert windows.rise_window([0.0, 0.05, 0.4, 0.95, 1.0]) == [2, 3]
    assert windows.rise_window([0.0, 0.2, 0.5], layers=[4, 5, 6]) == [5, 6]  # never reaches 0.9
    assert windows.rise_window([0.0, 0.05]) == []
    assert windows.onset([0.1, 0.5, 0.97, 1.0], 0.95) == 2
    assert windows.overlap([2, 3, 4], [3, 4, 5, 6]) == {"precision": 0.667, "recall": 0.5, "inside": False}
    assert windows.overlap([], [1])["precision"] is None


@pytest.fixture(scope="module")
def report(tiny_vl):
    from interp.organism.oversensitive import oversensitive_set

    pairs = cross_modal_pairs(1)
    prompts, images, _ = oversensitive_set(10_000)
    over = (prompts[::15], images[::15])  # a few benign requests about risky-looking images
    data = interp.locate.LocateData(HARMFUL, HARMLESS, pairs.rows(range(0, len(pairs), 4)), "tiny", over)
    return interp.locate.run(tiny_vl, data, planted=[1, 2], last_positions=2, progress=False)


def test_report_runs_every_method_and_saves(report, tmp_path, tiny_vl):
    assert set(report.profiles) >= {
        "probe",
        "safety_gap",
        "logit_lens_refusal",
        "direction_selection",
        "patch_resid",
        "patch_attn",
        "patch_mlp",
        "attribution",
        "patch_components",
        "cross_modal_cosine",
        "probe_transfer",
        "refusal_projection",
        "refusal_projection_oversensitive",
        "patch_text_to_image",
    }
    assert report.profiles["refusal_projection_oversensitive"].metadata["n"] == 7
    # the located layers are the suite-chosen rule applied to this run's curves, named only when the
    # rule localized reliably on the organism suite
    card = chosen_rule()
    curves = Curves.from_report(report.to_dict())
    assert report.candidate_layers == RULES[card["rule"]].select(curves)
    assert report.safety_layers == (report.candidate_layers if card["reliable"] else [])
    assert report.localized["chosen_rule"]["layers"] == report.candidate_layers
    assert report.suite["loo_mean_iou"] == card["loo_mean_iou"]
    assert all(0 <= layer < tiny_vl.n_layers for layer in report.candidate_layers)
    assert report.localized["patch_components"]["layers"] == windows.top_window(
        report.profiles["patch_components"].scores, 0.5, list(range(tiny_vl.n_layers))
    )
    for entry in report.localized.values():
        assert "planted_overlap" in entry
    stab = report.localized["patch_components"]["stability"]  # the pairs resampled, the rule re-applied
    assert stab["selected"] == report.localized["patch_components"]["layers"]
    assert stab["n_pairs"] == len(HARMFUL)
    assert stab["resamples"] == 1000 and 0.0 <= stab["same_selection"] <= 1.0
    if report.candidate_layers:  # checked causally, on the same pairs here (the data has no others)
        assert report.causal["window"] == report.candidate_layers
        assert "weaker check" in report.causal["pairs"]
        assert set(report.causal["necessity"]) == {"reset", "ablate"}
    for name in ("patch_resid", "attribution", "patch_text_to_image"):  # every patching rule, its own pairs
        assert report.localized[name]["stability"]["selected"] == report.localized[name]["layers"]
        assert report.localized[name]["stability"]["rule"] == report.localized[name]["rule"]
    pairs = report.localized["patch_text_to_image"]["stability"]["n_pairs"]
    assert pairs == report.maps["text_to_image"].pairs.shape[-1]
    out = report.save(tmp_path / "locate", png=False)
    data = json.loads((out / "report.json").read_text())
    assert (
        data["safety_layers"] == report.safety_layers and data["candidate_layers"] == report.candidate_layers
    )
    assert data["suite"]["rule"] == card["rule"]
    for name in ("probe", "patch_mlp", "patch_attn", "patch_resid", "cross_modal_cosine"):
        assert len(data["methods"][name]["scores"]) == tiny_vl.n_layers
    assert data["png"].startswith("skipped")
    md = (out / "report.md").read_text()
    assert (
        "Located safety layers" in md and "Text vs image" in md and "How stable the patching selections" in md
    )
    assert (out / "overview.html").exists() and (out / "map_mlp.html").exists()
    assert (out / "plotly.min.js").exists()  # figures open offline


def test_find_layers_gives_the_reports_layers_from_the_maps_alone(report, tiny_vl):
    found = interp.locate.find_layers(tiny_vl, HARMFUL, HARMLESS, last_positions=2)
    assert found.layers == report.candidate_layers
    assert found.named == bool(report.safety_layers) or not found.layers
    assert found.computed.startswith("patching maps")  # the chosen rule reads only patching maps
    assert found.rule == chosen_rule()["rule"] and found.n_pairs == len(HARMFUL)


def test_find_layers_runs_the_report_for_a_rule_that_reads_more(llama):
    given = interp.locate.run(
        llama,
        interp.locate.LocateData(HARMFUL, HARMLESS),
        last_positions=2,
        progress=False,
        causal=False,
        rule="probe_onset",
    )
    found = interp.locate.find_layers(llama, HARMFUL, HARMLESS, last_positions=2, rule="probe_onset")
    assert found.layers == given.candidate_layers and found.named
    assert found.computed.startswith("the locate report")
    with pytest.raises(InputError, match="neither may be empty"):
        interp.locate.find_layers(llama, [], HARMLESS)


def test_report_refuses_pairs_on_a_text_model(llama):
    pairs = cross_modal_pairs(1).rows([0, 1])
    with pytest.raises(InputError, match="text model"):
        interp.locate.run(llama, interp.locate.LocateData(HARMFUL, HARMLESS, pairs), progress=False)
    with pytest.raises(InputError, match="empty"):
        interp.locate.run(llama, interp.locate.LocateData([], HARMLESS), progress=False)


def test_text_model_report_skips_the_cross_modal_part(llama, tmp_path):
    r = interp.locate.run(
        llama, interp.locate.LocateData(HARMFUL, HARMLESS), last_positions=1, progress=False
    )
    assert "cross_modal_cosine" not in r.profiles and r.planted is None
    assert "Text vs image" not in r.markdown()


@pytest.mark.parametrize("family", ["mllama", "qwen2_vl"])
def test_report_runs_on_other_vision_language_families(family):
    # Mllama takes images through cross-attention layers its text runs skip; Qwen2-VL numbers tokens
    # with M-RoPE: both run every method, the cross-modal part included
    from interp.testing import open_gates, tiny_model

    model = open_gates(tiny_model(family))
    pairs = cross_modal_pairs(1)
    data = interp.locate.LocateData(HARMFUL, HARMLESS, pairs.rows(range(0, len(pairs), 4)), "tiny")
    r = interp.locate.run(model, data, last_positions=2, progress=False)
    assert "cross_modal_cosine" in r.profiles and "patch_text_to_image" in r.profiles
    assert all(len(p.scores) == model.n_layers for p in r.profiles.values() if hasattr(p, "scores"))


def test_relative_projection_puts_the_reference_groups_at_0_and_1(tiny_vl):
    from interp.locate import refusal_directions, relative_projection

    labels = ["harmful"] * len(HARMFUL) + ["harmless"] * len(HARMLESS)
    acts = interp.capture(tiny_vl, HARMFUL + HARMLESS, labels=labels)
    dirs = refusal_directions(acts)
    h = acts.select([i for i, lab in enumerate(labels) if lab == "harmful"])
    b = acts.select([i for i, lab in enumerate(labels) if lab == "harmless"])
    assert relative_projection(dirs, h, h, b, "x").scores == pytest.approx([1.0] * tiny_vl.n_layers, abs=1e-5)
    assert relative_projection(dirs, b, h, b, "x").scores == pytest.approx([0.0] * tiny_vl.n_layers, abs=1e-5)
