"""interp.locate on synthetic activations with a planted signal, and on tiny random models."""

import math

import pytest
import torch

import interp
from interp.activations import Activations
from interp.errors import CorruptFileError, InputError, LayerIndexError
from interp.locate.directions import (
    projections,
    refusal_directions,
    refusal_logodds,
    refusal_projection,
    select_direction,
)
from interp.locate.probes import probe_layers, probe_transfer
from interp.locate.profile import LayerProfile, figure
from interp.locate.similarity import cross_modal_cosine, logit_lens_refusal, safety_gap
from interp.models.fingerprint import ModelFingerprint

FP = ModelFingerprint("synthetic", "none", "llama", 6, 16, 100, "abc")


def planted(n=80, layers=6, d=16, signal_from=3, scale=4.0, seed=0, ids=None):
    """Harmful rows get +scale on dim 0 from layer ``signal_from`` on; noise elsewhere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, layers, d, generator=g)
    labels = ["harmful" if i % 2 == 0 else "harmless" for i in range(n)]
    y = torch.tensor([lab == "harmful" for lab in labels])
    x[y, signal_from:, 0] += scale
    return Activations({"last": x}, list(range(layers)), FP, ids or [str(i) for i in range(n)], labels)


def test_probe_finds_the_planted_layers():
    prof = probe_layers(planted(), folds=5)
    assert prof.method == "probe" and prof.layers == list(range(6))
    assert min(prof.scores[3:]) > 0.85 and max(prof.scores[:3]) < 0.75
    assert max(prof.baseline) < 0.75  # shuffled labels stay near chance
    assert all(lo <= s <= hi for lo, s, hi in zip(prof.lower, prof.scores, prof.upper, strict=True))
    assert prof.best_layer >= 3


def test_probe_transfer_loses_accuracy_when_the_signal_moves():
    text = planted(seed=0)
    image = planted(seed=1)
    image.tensors["last"][:, :, 0] -= 0  # same distribution: transfer works
    ok = probe_transfer(text, image)
    assert min(ok.scores[3:]) > 0.85
    shifted = planted(seed=2)
    x = shifted.tensors["last"]
    x[:, :, [0, 1]] = x[:, :, [1, 0]]  # the image form carries the signal on another axis
    bad = probe_transfer(text, shifted)
    assert max(bad.scores[3:]) < 0.7 and min(bad.baseline[3:]) > 0.75


def test_directions_and_projection():
    acts = planted()
    dirs = refusal_directions(acts)
    assert dirs.vectors.shape == (6, 16)
    assert abs(dirs[4][0].item() - 4.0) < 1.0 and dirs.unit(4).norm().item() == pytest.approx(1.0)
    proj = projections(dirs, acts)
    assert proj.shape == (80, 6)
    prof = refusal_projection(dirs, acts, acts)
    assert prof.baseline == pytest.approx(prof.scores)
    with pytest.raises(InputError, match="no direction for layer 9"):
        dirs[9]


def test_similarity_views():
    acts = planted()
    acts.tensors["last"][:, :, 2] += 4.0  # real hidden states share a large common component
    gap = safety_gap(acts)
    assert min(gap.scores[3:]) > max(gap.scores[:3])
    text, image = planted(seed=0), planted(seed=0)
    image.tensors["last"] = image.tensors["last"] + 0.1 * torch.randn_like(image.tensors["last"])
    cos = cross_modal_cosine(text, image)
    assert min(cos.scores) > 0.9


def test_bad_inputs():
    acts = planted()
    one_class = Activations({"last": acts["last"]}, acts.layers, FP, acts.prompt_ids, ["harmful"] * 80)
    with pytest.raises(InputError, match="exactly two classes"):
        probe_layers(one_class)
    few = planted(n=6)
    with pytest.raises(InputError, match="too few prompts per class"):
        probe_layers(few, folds=5)
    nan = planted()
    nan.tensors["last"][3, 2, 1] = float("nan")
    with pytest.raises(InputError, match="NaN/inf in 1 row"):
        probe_layers(nan)
    with pytest.raises(LayerIndexError, match="were not captured"):
        probe_layers(acts, layers=[7])
    with pytest.raises(InputError, match="not paired"):
        cross_modal_cosine(planted(), planted(ids=[f"x{i}" for i in range(80)]))
    with pytest.raises(InputError, match="not paired"):
        cross_modal_cosine(planted(), planted(n=20))


def test_profile_roundtrip_and_figure(tmp_path):
    prof = probe_layers(planted(), folds=4)
    path = prof.save(tmp_path / "p.json")
    back = LayerProfile.load(path)
    assert back == prof
    fig = figure([prof, back], shade=[3, 4, 5])
    assert len(fig.data) == 6 and fig.layout.xaxis.title.text == "layer"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        LayerProfile.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="non-finite"):
        LayerProfile("m", [0, 1], [0.1, math.nan])
    with pytest.raises(InputError, match="2 scores for 3 layers"):
        LayerProfile("m", [0, 1, 2], [0.1, 0.2])


def test_refusal_logodds():
    logits = torch.full((1, 10), -100.0)
    logits[0, 3] = 0.0
    logits[0, 4] = 0.0
    assert refusal_logodds(logits, [3]).item() == pytest.approx(0.0, abs=1e-4)


def test_logit_lens_and_selection_on_a_tiny_model(llama):
    prompts = ["hello there", "tell me a story", "how are you", "what is this"]
    lens = logit_lens_refusal(llama, prompts)
    assert len(lens.scores) == llama.n_layers and all(0 <= p <= 1 for p in lens.scores)
    acts = interp.capture(llama, prompts * 2, labels=["harmful"] * 4 + ["harmless"] * 4, positions="last")
    acts.tensors["last"][:4] += 1.0  # make the classes differ so the directions are non-zero
    dirs = refusal_directions(acts)
    sel = select_direction(llama, dirs, prompts[:2], prompts[2:], exclude_last=0.0)
    assert len(sel.table) == llama.n_layers and sel.profile.method == "direction_ablation"
    assert all({"bypass", "induce", "kl", "kept"} <= set(r) for r in sel.table)
    other = planted()
    with pytest.raises(InputError, match="not on"):
        select_direction(llama, refusal_directions(other), prompts[:2], prompts[2:])


def test_batched_patching_equals_the_loop_and_attribution_tracks_it(llama):
    from interp.locate.attribution import attribution_patch
    from interp.locate.patching import patch_residual

    clean = ["how do i build it", "tell me how to do it", "what is the worst", "say it"]
    corrupt = ["hello there friend", "what a nice day", "tell me a story", "hi"]
    loop = patch_residual(llama, clean, corrupt, positions=["last", -2], mode="loop")
    batched = patch_residual(llama, clean, corrupt, positions=["last", -2], max_rows=12)
    assert batched.metadata["strategy"] == "kv_resume"  # suffix tokens only, against the corrupt KV cache
    torch.testing.assert_close(batched.raw, loop.raw, rtol=1e-4, atol=1e-4)
    packed = patch_residual(llama, clean, corrupt, positions=["last", -2], max_rows=12, mode="replay")
    assert packed.metadata["strategy"] == "replay_pack"
    torch.testing.assert_close(packed.raw, loop.raw, rtol=1e-4, atol=1e-4)
    assert packed.forwards < loop.forwards
    # patching the last layer's last token reproduces the clean run exactly
    assert batched.effect[-1, 0].item() == pytest.approx(1.0, abs=1e-4)
    attr = attribution_patch(llama, clean, corrupt, positions=["last", -2])
    assert attr.effect.shape == loop.effect.shape
    # the linear estimate is exact where the metric is linear in the patched state: not in general,
    # but the maps must agree in sign and ordering on this model
    corr = torch.corrcoef(torch.stack([attr.effect.flatten(), loop.effect.flatten()]))[0, 1]
    assert corr > 0.5, corr
    prof = batched.profile("last")
    assert prof.layers == list(range(llama.n_layers))
    assert batched.figure().data[0].type == "heatmap"
    with pytest.raises(InputError, match="same number"):
        patch_residual(llama, clean, corrupt[:2])
    with pytest.raises(InputError, match="negative ints"):
        patch_residual(llama, clean, corrupt, positions=[2])


def test_component_patching_batched_equals_loop_and_sites_differ(llama):
    from interp.locate.patching import patch_activations, patch_components

    clean = ["how do i build it", "tell me how to do it", "what is the worst"]
    corrupt = ["hello there friend", "what a nice day", "tell me a story"]
    maps = patch_components(llama, clean, corrupt, max_rows=9)
    assert set(maps) == {"resid", "attn", "mlp"}
    assert maps["mlp"].method == "patch_mlp (batched)" and maps["mlp"].metadata["site"] == "mlp"
    loop = patch_activations(llama, clean, corrupt, site="mlp", mode="loop")
    torch.testing.assert_close(maps["mlp"].raw, loop.raw, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(maps["mlp"].raw, maps["attn"].raw)
    # patching layer 0's residual at the last token equals patching nothing upstream of it except
    # that layer's attn+mlp; the residual effect at the last layer is exactly 1
    assert maps["resid"].effect[-1, 0].item() == pytest.approx(1.0, abs=1e-4)


def test_kv_resume_patching_on_image_inputs_equals_the_loop(tiny_vl, image):
    from interp.locate.patching import patch_residual

    clean = ["how do i make a bomb", "how do i make this"]
    corrupt = ["how do i make this", "what is it"]
    kwargs = dict(corrupt_images=[image, image], positions=["last", -3])
    loop = patch_residual(tiny_vl, clean, corrupt, mode="loop", **kwargs)
    resumed = patch_residual(tiny_vl, clean, corrupt, **kwargs)
    assert resumed.metadata["strategy"] == "kv_resume"
    torch.testing.assert_close(resumed.raw, loop.raw, rtol=1e-4, atol=1e-4)


def test_attribution_on_the_suffix_equals_the_whole_prompt(llama, tiny_vl, image):
    from interp.locate.attribution import attribution_patch

    clean = ["how do i build it", "tell me how to do it", "say it"]
    corrupt = ["hello there friend", "what a nice day", "hi"]
    whole = attribution_patch(llama, clean, corrupt, positions=["last", -3], suffix=False)
    part = attribution_patch(llama, clean, corrupt, positions=["last", -3])
    assert part.metadata["backward"] == "suffix tokens only" and whole.metadata["backward"] == "whole prompt"
    torch.testing.assert_close(part.raw, whole.raw, rtol=1e-4, atol=1e-4)
    kw = dict(corrupt_images=[image] * 2, positions=["last", -2])
    vl_whole = attribution_patch(tiny_vl, clean[:2], corrupt[:2], suffix=False, **kw)
    vl_part = attribution_patch(tiny_vl, clean[:2], corrupt[:2], **kw)
    assert vl_part.metadata["backward"] == "suffix tokens only"
    torch.testing.assert_close(vl_part.raw, vl_whole.raw, rtol=1e-4, atol=1e-4)


def test_exact_patching_keeps_each_pair_and_resamples_exactly(llama):
    from interp.locate.patching import patch_residual

    clean = ["how do i build it", "tell me how to do it", "what is the worst", "say it", "do it now"]
    corrupt = ["hello there friend", "what a nice day", "tell me a story", "hi", "good morning"]
    kw = dict(positions=["last", -2], batch_size=2)  # uneven batches: each pair must land at its index
    loop = patch_residual(llama, clean, corrupt, mode="loop", **kw)
    assert loop.pairs.shape == (llama.n_layers, 2, 5)
    for m in (
        patch_residual(llama, clean, corrupt, **kw),
        patch_residual(llama, clean, corrupt, mode="replay", **kw),
    ):
        torch.testing.assert_close(m.pairs, loop.pairs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(m.raw, m.pairs.mean(-1))
    same = loop.resampled(torch.arange(5))
    torch.testing.assert_close(same.effect, loop.effect, rtol=1e-5, atol=1e-5)
    # all draws of one pair: the map of that pair alone (each pair patched with its own clean state)
    third = patch_residual(llama, clean[2:3], corrupt[2:3], mode="loop", positions=["last", -2])
    only = loop.resampled(torch.full((5,), 2))
    torch.testing.assert_close(only.raw, third.raw, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(only.effect, third.effect, rtol=1e-3, atol=1e-3)
    assert only.clean_metric == pytest.approx(third.clean_metric, abs=1e-4)
    with pytest.raises(InputError, match="per-pair"):
        only.resampled(torch.arange(5))


def test_attribution_keeps_each_pairs_estimate(llama):
    from interp.locate.attribution import attribution_patch

    clean = ["how do i build it", "tell me how to do it", "what is the worst", "say it", "do it now"]
    corrupt = ["hello there friend", "what a nice day", "tell me a story", "hi", "good morning"]
    kw = dict(positions=["last", -2], batch_size=2)
    attr = attribution_patch(llama, clean, corrupt, **kw)
    assert attr.pairs.shape == (llama.n_layers, 2, 5)
    torch.testing.assert_close(attr.raw, attr.pairs.mean(-1))
    assert attr.corrupt_metric == pytest.approx(float(attr.corrupt_pairs.mean()), abs=1e-6)
    # a pair's estimate in a batch is the estimate of that pair attributed alone (rows do not mix)
    for k in (1, 4):
        alone = attribution_patch(llama, clean[k : k + 1], corrupt[k : k + 1], **kw)
        torch.testing.assert_close(attr.pairs[..., k], alone.raw, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            attr.resampled(torch.full((5,), k)).effect, alone.effect, rtol=1e-3, atol=1e-3
        )


def test_selection_stability_counts_what_the_rule_picks_over_resamples(llama):
    from interp.locate import selection_stability, windows
    from interp.locate.attribution import attribution_patch
    from interp.locate.patching import patch_components

    clean = ["how do i build it", "tell me how to do it", "what is the worst", "say it", "do it now", "go"]
    corrupt = ["hello there friend", "what a nice day", "tell me a story", "hi", "good morning", "stop"]
    maps = patch_components(llama, clean, corrupt, positions=["last"])
    fixed = selection_stability(maps, lambda ms: [1, 2], resamples=50)
    assert fixed.selected == [1, 2] and fixed.same_selection == 1.0 and fixed.n_pairs == 6
    assert fixed.frequency == [1.0 if layer in (1, 2) else 0.0 for layer in fixed.layers]

    def top(ms):  # the layer with the largest MLP effect: moves with the pairs drawn
        return windows.top_window(ms["mlp"].profile().scores, 0.999, ms["mlp"].layers)

    s = selection_stability(maps, top, resamples=200, seed=1)
    assert s.selected == top(maps)
    assert 0.0 < s.same_selection <= 1.0 and all(0.0 <= f <= 1.0 for f in s.frequency)
    assert s.frequency[s.layers.index(s.selected[0])] >= s.same_selection
    assert s == selection_stability(maps, top, resamples=200, seed=1)  # seeded
    attr = selection_stability({"mlp": attribution_patch(llama, clean, corrupt, positions=["last"])}, top, 50)
    assert attr.n_pairs == 6 and sum(attr.frequency) == pytest.approx(1.0)  # one layer per resample
    with pytest.raises(InputError, match="per-pair"):
        selection_stability({"mlp": maps["mlp"].resampled(torch.arange(6))}, top)
    other = patch_components(llama, clean[:3], corrupt[:3], sites=("mlp",), positions=["last"])
    with pytest.raises(InputError, match="same prompt pairs"):
        selection_stability({"attn": maps["attn"], "mlp": other["mlp"]}, top)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl", "mllama"])
def test_every_patching_mode_agrees_on_image_families(family):
    # Qwen2-VL numbers tokens with 3-D M-RoPE ids computed over the whole prompt and lists the patches
    # of all images on one axis; Mllama caches the image's keys in its cross-attention layers and
    # masks them per token: the KV-resumed runs, the packed replay and the attribution suffix used
    # to fail or differ there
    import numpy as np
    from PIL import Image

    from interp.locate.attribution import attribution_patch
    from interp.locate.patching import patch_activations
    from interp.testing import open_gates, tiny_model

    model = open_gates(tiny_model(family))
    a, b = (Image.fromarray((np.random.RandomState(s).rand(40, 48, 3) * 255).astype("uint8")) for s in (0, 1))
    clean, corrupt = (
        ["describe it now", "what is in this picture"],
        ["explain it here", "what is on this picture"],
    )
    kw = dict(clean_images=[a, a], corrupt_images=[b, b], positions=["last", -2])
    for site in ("resid", "attn"):
        loop = patch_activations(model, clean, corrupt, mode="loop", site=site, **kw)
        resumed = patch_activations(model, clean, corrupt, mode="batched", site=site, **kw)
        packed = patch_activations(model, clean, corrupt, mode="replay", site=site, **kw)
        assert resumed.metadata["strategy"] == "kv_resume" and packed.metadata["strategy"] == "replay_pack"
        torch.testing.assert_close(resumed.raw, loop.raw, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(packed.raw, loop.raw, rtol=1e-4, atol=1e-4)
    part = attribution_patch(model, clean, corrupt, **kw)
    whole = attribution_patch(model, clean, corrupt, suffix=False, **kw)
    want = "whole prompt" if model.adapter.rope == "mrope" else "suffix tokens only"
    assert part.metadata["backward"] == want
    torch.testing.assert_close(part.raw, whole.raw, rtol=1e-4, atol=1e-4)


def test_patching_mllama_around_the_cross_attention_layers_its_text_runs_skip(image):
    # without images Mllama skips its cross-attention layers: the stream passes them unchanged, and
    # their attention and MLP write nothing
    from interp.locate.attribution import attribution_patch
    from interp.locate.patching import patch_activations
    from interp.testing import open_gates, tiny_model

    model = open_gates(tiny_model("mllama"))
    cross = model.text_config.cross_attention_layers[0]
    harmful, harmless = ["how do i build a bomb", "tell me how to hurt"], ["hello there friend", "bake bread"]
    for mode in ("loop", "batched"):
        resid = patch_activations(model, harmful, harmless, mode=mode, positions=["last", -2])
        assert resid.metadata["skipped_layers"] == [cross]
        torch.testing.assert_close(resid.pairs[cross], resid.pairs[cross - 1])
        attn = patch_activations(model, harmful, harmless, mode=mode, site="attn", positions="last")
        torch.testing.assert_close(attn.raw[cross], torch.full((1,), attn.corrupt_metric))
        assert attn.effect[cross].abs().max() == 0
    estimate = attribution_patch(model, harmful, harmless, positions=["last", -2])
    torch.testing.assert_close(estimate.pairs[cross], estimate.pairs[cross - 1])
    # text forms patched into image runs: at the cross-attention layer the text run's state is the
    # one it carries past that layer (the layer before's)
    images = [image, image]
    into_images = patch_activations(
        model, harmful, harmful, corrupt_images=images, mode="loop", positions="last"
    )
    text = interp.capture(model, harmful, layers=[cross])["last"][:, 0]
    edit = interp.Edit.replace(text, layers=[cross], positions="last")
    from interp.refusal import refusal_logodds, refusal_token_ids

    batch = model.encode(harmful, images=images)
    with model.hooks(edits=[edit]), torch.inference_mode():
        manual = refusal_logodds(model.next_token_logits(batch.inputs), refusal_token_ids(model.tokenizer))
    torch.testing.assert_close(into_images.pairs[cross, 0], manual.float(), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="skips for the corrupt prompts"):
        patch_activations(model, harmful, harmless, clean_images=images, layers=[cross])
