"""Models placed by a device map (accelerate): layers offloaded to disk or kept on the CPU give the
same captures, steered generations and patching maps as the model in one piece, and the same
fingerprint; what cannot work on offloaded weights (folding) says so."""

import pytest
import torch

import interp
from interp.steer import AblateDirection, AddDirection, Conditional
from interp.testing import tiny_model

PROMPTS = ["hello there", "a longer prompt than the first one"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llama")
    m = tiny_model("llama")
    m.model.save_pretrained(d)
    m.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def whole(saved):
    return interp.load_model(str(saved))


@pytest.fixture(scope="module")
def offloaded(saved, tmp_path_factory):
    where = {f"model.layers.{i}": ("disk" if i in (1, 2) else "cpu") for i in range(4)}
    where |= {"model.embed_tokens": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    model = interp.load_model(
        str(saved), device_map=where, offload_folder=str(tmp_path_factory.mktemp("off"))
    )
    assert any(p.is_meta for p in model.model.parameters())  # layers 1-2 really are offloaded
    return model


def test_the_offloaded_model_is_the_same_model(whole, offloaded):
    whole.fingerprint.check(offloaded.fingerprint)  # the digest reads offloaded weights from disk
    assert offloaded.device == torch.device("cpu")


def test_captures_are_equal(whole, offloaded):
    a = interp.capture(whole, PROMPTS, positions=["last", "mean"])
    b = interp.capture(offloaded, PROMPTS, positions=["last", "mean"])
    for k in a.tensors:
        torch.testing.assert_close(a.tensors[k], b.tensors[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["add", "ablate", "conditional"])
def test_steered_generation_is_equal_on_offloaded_layers(whole, offloaded, kind):
    d = torch.randn(64, generator=torch.Generator().manual_seed(0))
    items = {
        "add": [AddDirection(d, [1, 2], 4.0)],
        "ablate": [AblateDirection(d)],
        "conditional": [Conditional(d, 1, -100.0, [AddDirection(d, [2], 4.0)])],
    }[kind]
    a = interp.steer.generate(whole, PROMPTS, interventions=items, max_new_tokens=6)
    b = interp.steer.generate(offloaded, PROMPTS, interventions=items, max_new_tokens=6)
    assert a == b and a != interp.steer.generate(whole, PROMPTS, max_new_tokens=6)


def test_patching_is_equal(whole, offloaded):
    corrupt = ["x y", "something else entirely"]
    a = interp.locate.patch_activations(whole, PROMPTS, corrupt, positions=[-1])
    b = interp.locate.patch_activations(offloaded, PROMPTS, corrupt, positions=[-1])
    torch.testing.assert_close(a.effect, b.effect, rtol=0, atol=1e-5)


def test_folding_offloaded_weights_is_refused_with_the_fix(offloaded):
    d = torch.randn(64)
    with pytest.raises(interp.InputError, match="offloaded by its device map.*fold=False"):
        with interp.steer.steer(offloaded, [AblateDirection(d)], fold=True):
            pass
