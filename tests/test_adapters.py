import pytest
import torch

import interp
from interp.models.adapters import ADAPTERS, adapter_for
from interp.testing import VLM_FAMILIES, WITH_PROCESSOR, tiny_model
from tests.conftest import FAMILIES, reference_states

TEXT_FAMILIES = [f for f, a in ADAPTERS.items() if a.kind == "text"]


def test_unknown_family_lists_known_ones():
    class Cfg:
        model_type = "bert"

    with pytest.raises(interp.UnknownModelFamilyError, match="Known families: .*llama.*llava"):
        adapter_for(Cfg())


def test_every_family_has_a_tiny_model():
    # organism_vl is interp's own model, tested on a tiny Llama in test_organism_vlm.py
    assert set(ADAPTERS) - {"organism_vl"} == set(TEXT_FAMILIES) | set(VLM_FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_layers_match_output_hidden_states(family, prompts):
    model = tiny_model(family)
    assert model.adapter.family == family
    batch = model.encode(prompts, chat_template=False)
    acts = interp.capture(model, prompts, chat_template=False, positions="all")
    ref = reference_states(model, batch)
    n = model.n_layers
    assert acts["all"].shape[:2] == (3, n)
    mask = batch.attention_mask.bool()
    if family == "mllama":
        # text-only: cross-attention layers are skipped and get no hidden_states entry, so entry k
        # belongs to the k-th layer that ran, and a skipped layer's output equals its predecessor's
        ran = [i for i in range(n) if i not in model.text_config.cross_attention_layers]
        ref = [ref[max(k for k, j in enumerate(ran) if j <= i)] for i in range(n)]
    for i in range(n - 1):
        for row in range(3):
            torch.testing.assert_close(acts["all"][row, i][: int(mask[row].sum())], ref[i][row][mask[row]])
    # the last entry of output_hidden_states is after the final norm
    with torch.inference_mode():
        normed = model.final_norm(acts["all"][:, -1])
    torch.testing.assert_close(normed[0, : int(mask[0].sum())], ref[-1][0][mask[0]], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", WITH_PROCESSOR)
def test_image_families_through_their_processor(family, image):
    model = tiny_model(family)
    batch = model.encode(["what is this?", "and this one"], images=[image, image])
    n_img = (batch.input_ids == model.image_token_id).sum(1)
    assert (n_img > 0).all() and n_img[0] == n_img[1]
    acts = interp.capture(
        model,
        ["what is this?", "and this one"],
        images=[image, image],
        positions=["last", "image", "image_mean"],
    )
    ref = reference_states(model, batch)
    for i in range(model.n_layers - 1):
        torch.testing.assert_close(acts["last"][:, i], ref[i][:, -1])
        image_states = ref[i][0][batch.input_ids[0] == model.image_token_id]
        torch.testing.assert_close(acts["image"][0, i, : len(image_states)], image_states)
        torch.testing.assert_close(acts["image_mean"][0, i], image_states.mean(0), rtol=1e-4, atol=1e-5)


def test_mllama_text_only_fills_skipped_cross_attention_layers(prompts):
    model = tiny_model("mllama")
    cross = model.text_config.cross_attention_layers
    assert model.skippable_layers == set(cross) and model.stream_source(cross[0]) == cross[0] - 1
    assert tiny_model("llama").skippable_layers == set() and model.stream_source(cross[0] + 1) == cross[0] + 1
    acts = interp.capture(model, prompts, chat_template=False, layers="all")
    for i in cross:
        torch.testing.assert_close(acts.layer(i), acts.layer(i - 1))
    # a cross-attention layer asked alone is read from the layer before it (hooked for that)
    alone = interp.capture(model, prompts, chat_template=False, layers=[cross[0]])
    torch.testing.assert_close(alone.layer(cross[0]), acts.layer(cross[0] - 1))
    # a skipped layer's attention and MLP write nothing
    for site in ("attn", "mlp"):
        written = interp.capture(model, prompts, chat_template=False, layers=[cross[0]], site=site)
        assert written.layer(cross[0]).abs().max() == 0
