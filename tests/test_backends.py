"""native hooks == nnsight == TransformerLens bridge == output_hidden_states, to fp32 tolerance."""

import pytest
import torch

import interp
from interp.testing import tiny_model
from tests.conftest import FAMILIES, images_for, reference_states

pytest.importorskip("nnsight")
pytest.importorskip("transformer_lens")
pytestmark = pytest.mark.backends

BACKENDS = ("native", "nnsight", "transformer_lens")


@pytest.mark.parametrize("family", ["llama", "llava"])
def test_all_backends_agree(family, image):
    model = tiny_model(family)
    prompts = ["what is this?", "and this longer one here"]
    kw = {"images": [image, image]} if family == "llava" else {}
    attn_before = model.model.config._attn_implementation
    layer_type = type(model.layers[0])
    acts = {b: interp.capture(model, prompts, positions=["last", "all"], backend=b, **kw) for b in BACKENDS}
    for b in BACKENDS[1:]:
        torch.testing.assert_close(acts[b]["all"], acts["native"]["all"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(acts[b]["last"], acts["native"]["last"], rtol=1e-5, atol=1e-5)
    ref = reference_states(model, model.encode(prompts, **kw))
    for i in range(model.n_layers - 1):
        torch.testing.assert_close(acts["native"]["last"][:, i], ref[i][:, -1])
    # the TransformerLens bridge was booted on a copy: the user's model is untouched
    assert model.model.config._attn_implementation == attn_before
    assert type(model.layers[0]) is layer_type
    # nnsight replaced forward on the modules of its copy, not on the model's own
    assert not [n for n, m in model.model.named_modules() if "forward" in m.__dict__]
    wrapped = model.__dict__["_backends"]["nnsight"]._module
    assert [n for n, m in wrapped.named_modules() if "forward" in m.__dict__]


def test_structural_copy_shares_weights_and_not_modules(llama):
    from interp.backends import structural_copy

    clone = structural_copy(llama.model)
    pairs = list(zip(llama.model.modules(), clone.modules(), strict=True))
    assert all(a is not b for a, b in pairs)
    for (name, p), (_, q) in zip(llama.model.named_parameters(), clone.named_parameters(), strict=True):
        assert p is q, name
    clone.model.layers[0].forward = lambda *a, **k: None
    assert "forward" not in llama.model.model.layers[0].__dict__


def test_missing_extra_names_the_install(monkeypatch, llama, prompts):
    import builtins

    real_import = builtins.__import__

    def no_nnsight(name, *args, **kwargs):
        if name.startswith("nnsight"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    llama.__dict__.pop("_backends", None)
    monkeypatch.setattr(builtins, "__import__", no_nnsight)
    with pytest.raises(interp.InputError, match=r"pip install 'interp\[nnsight\]'"):
        interp.capture(llama, prompts, backend="nnsight")


def test_steered_generation_equals_nnsight_and_transformer_lens(llama):
    """interp's AddDirection in generate makes the tokens that nnsight's per-step edit and a
    TransformerLens hook make (the functions benchmarks/steering.py times against interp)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from steering_baselines import baselines, counterpart

    from interp.edits import unit_vector
    from interp.steer import AddDirection, steer

    torch.manual_seed(0)
    ids = torch.randint(5, 100, (3, 8))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    d = torch.randn(llama.d_model)
    edits = {"one": [AddDirection(d, [1], 3.0)], "all": [AddDirection(d, "all", 1.0)]}
    unit = unit_vector(d)
    fns, skipped = baselines(
        llama, inputs, 6, {"one": (3.0 * unit, [1]), "all": (unit, range(llama.n_layers))}
    )
    assert not skipped and len(fns) == 6
    gen = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=llama.tokenizer.pad_token_id)
    ours = {}
    for name, items in {"plain": [], **edits}.items():
        with steer(llama, items), torch.inference_mode():
            ours[name] = llama.model.generate(**inputs, **gen)
    assert not torch.equal(ours["one"], ours["plain"]) and not torch.equal(ours["all"], ours["plain"])
    for name, fn in fns.items():
        assert torch.equal(fn(), ours[counterpart(name)]), name
    assert not [n for n, m in llama.model.named_modules() if "forward" in m.__dict__]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_through_the_other_backends(family, image):
    # nnsight wraps every family; TransformerLens equals native where it has the architecture and
    # otherwise says so and names the backends that work
    model = tiny_model(family)
    prompts = ["what is this?", "and this longer one here"]
    kw = {"images": images_for(family, image, 2)}
    native = interp.capture(model, prompts, positions="last", **kw)["last"]
    via_nnsight = interp.capture(model, prompts, positions="last", backend="nnsight", **kw)["last"]
    torch.testing.assert_close(via_nnsight, native, rtol=1e-5, atol=1e-5)
    try:
        via_tl = interp.capture(model, prompts, positions="last", backend="transformer_lens", **kw)["last"]
    except interp.InputError as e:
        assert "TransformerLens" in str(e) and "backend='nnsight'" in str(e)
        assert family in ("internvl", "mllama", "qwen2_vl", "qwen2_5_vl", "smolvlm"), str(e)
    else:
        torch.testing.assert_close(via_tl, native, rtol=1e-4, atol=1e-5)
