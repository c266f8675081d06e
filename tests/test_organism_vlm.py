"""The organism VLM's plumbing on a tiny random Llama (fast), and the shipped model (slow, real weights)."""

import pytest
import torch

import interp
from interp.errors import InputError
from interp.organism.render import HELD_OUT_SEED, render
from interp.organism.vlm import build
from interp.testing import tiny_model
from tests.conftest import TINY_IMAGE_ID as IMAGE_ID


def test_adapter_and_placeholders(tiny_vl):
    assert tiny_vl.adapter.family == "organism_vl" and tiny_vl.adapter.kind == "image"
    assert tiny_vl.image_token_id == IMAGE_ID and tiny_vl.image_placeholder == "<image>"
    batch = tiny_vl.encode(["what is this", "and this one"], images=[render("dog", 0), render("cat", 1)])
    assert (batch.input_ids == IMAGE_ID).sum(1).tolist() == [4, 4]
    assert batch.inputs["pixel_values"].shape == (2, 3, 224, 224)


def test_image_tokens_carry_the_projected_features(tiny_vl):
    vlm = tiny_vl.model
    batch = tiny_vl.encode(["what is this"], images=[render("dog", 0)])
    embeds = vlm.model.embed(batch.input_ids, batch.inputs["pixel_values"])
    feats = vlm.model.image_features(batch.inputs["pixel_values"])[0]
    slots = (batch.input_ids[0] == IMAGE_ID).nonzero().flatten()
    torch.testing.assert_close(embeds[0, slots], feats)
    with torch.inference_mode():
        a = vlm(**batch.inputs).logits
        b = vlm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(a, b)
    # a different image changes the output: the image reaches the language model
    other = tiny_vl.encode(["what is this"], images=[render("bomb", 0)])
    with torch.inference_mode():
        assert not torch.allclose(vlm(**other.inputs).logits[:, -1], a[:, -1])


def test_generate_with_cache_equals_full_recompute(tiny_vl):
    batch = tiny_vl.encode(["what is this", "hi"], images=[render("dog", 0), render("cat", 1)])
    out = tiny_vl.model.generate(**batch.inputs, max_new_tokens=5, do_sample=False)
    new = out[:, batch.input_ids.shape[1] :]
    # recompute greedily without a cache, one full forward per token
    ids, mask = batch.input_ids, batch.attention_mask
    for step in range(5):
        with torch.inference_mode():
            logits = tiny_vl.model(
                input_ids=ids, attention_mask=mask, pixel_values=batch.inputs["pixel_values"], use_cache=False
            ).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        assert (nxt[:, 0] == new[:, step]).all()
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)


def test_capture_image_positions(tiny_vl):
    acts = interp.capture(
        tiny_vl, ["what is this"], images=[render("dog", 0)], positions=["image", "image_mean", "last"]
    )
    assert acts["image"].shape[-2] == 4
    torch.testing.assert_close(acts["image"].mean(-2), acts["image_mean"], rtol=1e-5, atol=1e-5)


def test_bad_inputs(tiny_vl):
    with pytest.raises(InputError, match="2 <image> placeholder"):
        tiny_vl.processor(text=["<image> <image> two"], images=[[render("dog", 0)]])
    batch = tiny_vl.encode(["what is this"], images=[render("dog", 0)])
    with pytest.raises(InputError, match="no pixel_values"):
        tiny_vl.model(input_ids=batch.input_ids)
    with pytest.raises(InputError, match="PIL images"):
        tiny_vl.processor.pixels("not an image")


def test_build_refuses_other_families():
    with pytest.raises(InputError, match="Llama-family"):
        build(tiny_model("qwen2").model)


@pytest.mark.slow
@pytest.mark.skipif(
    not __import__("interp.organism", fromlist=["PROJECTOR"]).PROJECTOR.exists(),
    reason="the organism projector has not been trained and shipped yet (analyses/organism/align_projector.py)",
)
def test_shipped_vlm_names_a_held_out_object():
    vlm = interp.load_model("organism-vl")
    assert vlm.adapter.family == "organism_vl"
    answers = vlm.generate(
        vlm.encode(
            ["What is in this image?"] * 2,
            images=[render("dog", HELD_OUT_SEED), render("bomb", HELD_OUT_SEED)],
        ),
        max_new_tokens=12,
    )
    assert "dog" in answers[0].lower() and "bomb" in answers[1].lower(), answers
