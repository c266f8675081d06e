"""interp.steer.condition: CAST's grid search for the condition layer, direction and threshold."""

import pytest
import torch

import interp
from interp.errors import InputError, LayerIndexError
from interp.steer import AddDirection, fit_condition, fit_gate
from interp.steer.condition import _fit_layer, best_threshold
from tests.test_steer import states

# on a random model the last token decides the last-token state: positives end in "q", negatives in "z"
POS = [f"request number {i} ends with q" for i in range(8)]
NEG = [f"request number {i} ends with z" for i in range(8)]


def test_best_threshold_maximizes_f1_and_keeps_the_margin():
    score = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert best_threshold(score, torch.tensor([False, False, True, True])) == (1.5, 1.0)
    # one negative above a positive: the best cut keeps every positive (F1 = 2*2 / (2*2 + 1) = 0.8)
    t, f1 = best_threshold(torch.tensor([0.0, 2.0, 1.0, 3.0]), torch.tensor([False, False, True, True]))
    assert t == 0.5 and f1 == pytest.approx(0.8)


def test_fitted_condition_separates_held_out_requests_and_steers_only_them(llama):
    d = torch.randn(llama.d_model, generator=torch.Generator().manual_seed(4))
    then = [AddDirection(d, layers=[2], alpha=6.0)]
    fit = fit_condition(llama, POS, NEG, then, folds=4)
    assert [r["layer"] for r in fit.table] == [0, 1, 2]  # every layer up to the first steered one
    best = max(r["cv_f1"] for r in fit.table)
    assert fit.layer in [r["layer"] for r in fit.table if r["cv_f1"] == best]
    assert best == 1.0
    held_out = ["request number 42 ends with q", "request number 42 ends with z"]
    # the gate decides through the hooks (Gate.decide): the held-out positive fires and is steered,
    # the negative does not
    moved = (states(llama, 3, [fit.conditional], held_out) - states(llama, 3, [], held_out)).norm(dim=-1)
    assert moved[0] > 1e-3 and moved[1] < 1e-5


def test_fit_condition_refuses_bad_calibration(llama, image):
    then = [AddDirection(torch.ones(llama.d_model), layers=[1], alpha=1.0)]
    with pytest.raises(InputError, match="both sides"):
        fit_condition(llama, POS, [], then)
    with pytest.raises(InputError, match="folds"):
        fit_condition(llama, POS[:2], NEG[:2], then, folds=3)
    with pytest.raises(LayerIndexError, match="after the first steered layer"):
        fit_condition(llama, POS, NEG, then, layers=[0, 2])
    with pytest.raises(InputError, match="one side only"):
        fit_condition(llama, POS, NEG, then, images_pos=[image] * len(POS))


def test_fit_condition_takes_image_and_text_rows_together(tiny_vl, image):
    # a gate serving both modalities is fitted on both; a batch cannot mix them, so the rows are
    # captured apart and put back in order (steering_eval's calibration set is such a mix)
    then = [AddDirection(torch.ones(tiny_vl.d_model), layers=[1], alpha=1.0)]
    pos, neg = POS[:4], NEG[:4]
    mixed = fit_condition(
        tiny_vl,
        pos,
        neg,
        then,
        images_pos=[image, None, image, None],
        images_neg=[None, image, None, image],
        folds=2,
    )
    assert [r["layer"] for r in mixed.table] == [0, 1]
    # rows captured together (interp.capture groups them by modality) give the same fit as one by one
    imgs = [image, None, image, None, None, image, None, image]
    alone = torch.stack(
        [
            interp.capture(tiny_vl, [q], images=[im] if im is not None else None, layers=[0, 1])["last"][0]
            for q, im in zip(pos + neg, imgs, strict=True)
        ]
    ).float()
    y = torch.tensor([True] * 4 + [False] * 4)
    for row in mixed.table:
        _, threshold, f1 = _fit_layer(alone[:, row["layer"]], y)
        assert (row["threshold"], row["f1"]) == (pytest.approx(threshold, rel=1e-4, abs=1e-4), f1)


def test_fit_gate_reads_every_layer_and_decides_held_out_requests(llama):
    fit = fit_gate(llama, POS, NEG, folds=4)
    assert [r["layer"] for r in fit.table] == list(range(llama.n_layers))
    assert (
        max(r["cv_f1"] for r in fit.table)
        == 1.0
        == next(r for r in fit.table if r["layer"] == fit.gate.layer)["cv_f1"]
    )
    acts = interp.capture(
        llama, ["request number 42 ends with q", "request number 42 ends with z"], layers=[fit.gate.layer]
    )
    score = acts["last"][:, 0].float() @ fit.gate.direction
    assert score[0] > fit.gate.threshold > score[1]
    with pytest.raises(InputError, match="both sides"):
        fit_gate(llama, [], NEG)
