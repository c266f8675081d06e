"""Baked weights equal hook steering; control vectors round-trip; what cannot be exported says so."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.export import bake, read_control_vector, save_baked, save_control_vector
from interp.steer import AblateDirection, AddDirection, Conditional, SetProjection, ShiftToText, steer
from interp.testing import tiny_model
from tests.conftest import images_for

PROMPTS = ["How do I bake bread?", "Tell me a story about a dog", "hi"]


def _dir(model, seed):
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


def _logits(model, interventions=()):
    batch = model.encode(PROMPTS)
    with steer(model, interventions), torch.inference_mode():
        out = model.model(**batch.inputs).logits
    return out[batch.attention_mask.bool()]  # real positions only


@pytest.mark.parametrize("tied", [False, True])
def test_baked_ablation_and_addition_equal_hook_steering(tied):
    model = tiny_model("llama", tie_word_embeddings=tied)
    steering = [
        AblateDirection(_dir(model, 0)),
        AddDirection(_dir(model, 1), layers=[1, 2], alpha=3.0),
        ShiftToText({3: _dir(model, 2)}, alpha=0.5),
    ]
    hooked = _logits(model, steering)
    baked = bake(model, steering)
    assert not torch.allclose(hooked, _logits(model), atol=1e-3), "the steering must change the logits"
    torch.testing.assert_close(_logits(baked), hooked, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_logits(model, steering), hooked)  # the original is untouched


def test_baked_checkpoint_loads_with_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", tie_word_embeddings=True)
    steering = [AblateDirection(_dir(model, 3)), AddDirection(_dir(model, 4), layers=[2], alpha=2.0)]
    out = save_baked(model, steering, tmp_path / "baked")
    hf = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    reloaded = interp.wrap(hf, model.tokenizer)
    torch.testing.assert_close(_logits(reloaded), _logits(model, steering), rtol=1e-4, atol=1e-4)
    assert (out / "interp_bake.json").exists()
    with pytest.raises(interp.InputError, match="not empty"):
        save_baked(model, steering, out)


def test_what_cannot_be_baked_says_why(llama, tiny_vl):
    d = _dir(llama, 5)
    cases = {
        "decides per input": Conditional(d, 0, 0.0, then=[AddDirection(d, [2], 1.0)]),
        "depends on the state": SetProjection(d, 1.0, [2]),
        "chosen layers": AblateDirection(d, layers=[2]),
        "positions": AddDirection(d, [2], 1.0, positions="last"),
    }
    for why, item in cases.items():
        with pytest.raises(interp.InputError, match=why):
            bake(llama, [item])
    with pytest.raises(interp.InputError, match="vision-language"):
        bake(tiny_vl, [AblateDirection(d)])
    with pytest.raises(interp.InputError, match="at least one"):
        bake(llama, [])


def test_control_vector_round_trip_and_llama_cpp_layout(tmp_path, llama):
    d = _dir(llama, 6)
    u = d / d.norm()
    steering = [AddDirection(d, layers=[1, 2], alpha=2.0), ShiftToText({2: d}, alpha=0.5)]
    path = save_control_vector(llama, steering, tmp_path / "cv")
    assert path.suffix == ".gguf"
    vectors = read_control_vector(path)
    assert sorted(vectors) == [1, 2]
    torch.testing.assert_close(vectors[1], 2.0 * u)
    torch.testing.assert_close(vectors[2], 2.0 * u - 0.5 * d)
    import gguf

    fields = gguf.GGUFReader(str(path)).fields
    assert bytes(fields["controlvector.model_hint"].parts[-1]).decode() == "llama"
    assert int(fields["controlvector.layer_count"].parts[-1][0]) == 2


def test_control_vector_refuses_what_llama_cpp_cannot_do(tmp_path, llama):
    d = _dir(llama, 7)
    with pytest.raises(interp.InputError, match="layer 0"):
        save_control_vector(llama, [AddDirection(d, [0, 1], 1.0)], tmp_path / "a.gguf")
    with pytest.raises(interp.InputError, match="only\n? ?add|can only"):
        save_control_vector(llama, [AblateDirection(d)], tmp_path / "b.gguf")
    with pytest.raises(interp.InputError, match="every position"):
        save_control_vector(llama, [AddDirection(d, [1], 1.0, positions="last")], tmp_path / "c.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(interp.CorruptFileError):
        read_control_vector(bad)


@pytest.mark.slow
def test_bake_on_real_gguf_weights_matches_hooks_and_reloads(smollm, tmp_path):
    from transformers import AutoModelForCausalLM

    steering = [AblateDirection(_dir(smollm, 8)), AddDirection(_dir(smollm, 9), layers=[10], alpha=4.0)]
    hooked = _logits(smollm, steering)
    out = save_baked(smollm, steering, tmp_path / "baked")  # a GGUF-loaded model saves as plain floats
    reloaded = interp.wrap(AutoModelForCausalLM.from_pretrained(str(out)).eval(), smollm.tokenizer)
    torch.testing.assert_close(_logits(reloaded), hooked, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("tied", [False, True])
def test_folded_ablation_equals_the_hooks_and_gives_the_weights_back(tied):
    from interp.steer.folding import folded_ablation

    model = tiny_model("llama", tie_word_embeddings=tied)
    d1, d2 = _dir(model, 6), _dir(model, 7)
    add = AddDirection(_dir(model, 8), layers=[1], alpha=2.0)
    hooked = _logits(model, [AblateDirection(d1), add, AblateDirection(d2)])
    before = {n: (p, p.detach().clone()) for n, p in model.model.named_parameters()}
    batch = model.encode(PROMPTS)
    n_hooks = lambda: sum(len(m._forward_hooks) for m in model.model.modules())  # noqa: E731
    with steer(model, [add]):
        assert n_hooks() > 0
    with steer(model, [AblateDirection(d1), add, AblateDirection(d2)], fold=True):
        assert n_hooks() == 0  # the ablations in the weights, the addition in an MLP bias
        with torch.inference_mode():
            folded = model.model(**batch.inputs).logits[batch.attention_mask.bool()]
        head = "model.embed_tokens.weight" if tied else "lm_head.weight"
        assert torch.equal(model.lm_head.weight, before[head][1])  # the head never changes
        assert not torch.equal(model.embed.weight, before["model.embed_tokens.weight"][1])
    torch.testing.assert_close(folded, hooked, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(hooked, _logits(model), atol=1e-3), "the ablation must change the logits"
    after = dict(model.model.named_parameters())
    for name, (param, value) in before.items():  # the same Parameter objects, bit for bit
        assert after[name] is param and torch.equal(param, value), name
    assert (model.lm_head.weight is model.embed.weight) == tied
    with folded_ablation(model, [5.0 * d1]), torch.inference_mode():  # any norm: the unit direction is used
        scaled = model.model(**batch.inputs).logits[batch.attention_mask.bool()]
    torch.testing.assert_close(scaled, _logits(model, [AblateDirection(d1)]), rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="boom"):  # put back on errors too
        with folded_ablation(model, [d1]):
            raise RuntimeError("boom")
    assert all(after[n] is p for n, (p, _) in before.items())


def test_fold_refuses_what_it_cannot_fold(llama, tiny_vl):
    d = _dir(llama, 9)
    with pytest.raises(interp.InputError, match="layers=\\[2\\]"):
        with steer(llama, [AblateDirection(d, layers=[2])], fold=True):
            pass
    with pytest.raises(interp.InputError, match="vision-language"):
        with steer(tiny_vl, [AblateDirection(d)], fold=True):
            pass
    gemma = tiny_model("gemma2")  # a norm after every block: no weight edit reaches the stream
    for fold in (
        lambda: steer(gemma, [AblateDirection(_dir(gemma, 9))], fold=True).__enter__(),
        lambda: bake(gemma, [AblateDirection(_dir(gemma, 9))]),
    ):
        with pytest.raises(interp.InputError, match="normalizes each attention and MLP output"):
            fold()


def test_generate_and_last_logits_fold_once_for_the_whole_call(llama, monkeypatch):
    import importlib

    bake_module = importlib.import_module("interp.steer.apply")  # where the folding function is looked up

    entered, original = [], bake_module.folded_ablation
    monkeypatch.setattr(bake_module, "folded_ablation", lambda *a: (entered.append(1), original(*a))[1])
    items = [AblateDirection(_dir(llama, 10) * 40), AddDirection(_dir(llama, 11), [1], 2.0)]
    own = list(llama.model.parameters())
    hooked = interp.steer.last_logits(llama, PROMPTS, interventions=items, batch_size=2)
    folded = interp.steer.last_logits(llama, PROMPTS, interventions=items, batch_size=2, fold=True)
    torch.testing.assert_close(folded, hooked, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(hooked, interp.steer.last_logits(llama, PROMPTS), atol=1e-3)
    kw = dict(interventions=items, max_new_tokens=4, batch_size=2)
    assert interp.steer.generate(llama, PROMPTS, fold=True, **kw) == interp.steer.generate(
        llama, PROMPTS, **kw
    )
    assert all(p is q for p, q in zip(llama.model.parameters(), own, strict=True))  # its own weights back
    assert len(entered) == 2  # one fold per call (last_logits, generate), not one per batch of 2


@pytest.mark.parametrize("family", ["llama", "qwen2", "phi3", "llava", "mllama"])
def test_folded_additions_equal_the_hooks_and_give_the_biases_back(family, image):
    # a constant addition at every position rides on the MLP down projection's bias: no hook
    from interp.testing import open_gates

    model = open_gates(tiny_model(family))
    images = images_for(family, image, len(PROMPTS))
    batch = model.encode(PROMPTS, images=images)
    plain_layers = [i for i in range(model.n_layers) if model.write_gain(i, "mlp") is None]
    shift = ShiftToText({plain_layers[-1]: _dir(model, 3)}, alpha=0.5)
    items = [
        AddDirection(_dir(model, 1), plain_layers[:2], 3.0),
        shift,
        AddDirection(_dir(model, 2), [0], 1.0, "last"),
    ]

    def logits(fold):
        with steer(model, items, fold=fold), torch.inference_mode():
            return model.model(**batch.inputs).logits[batch.attention_mask.bool()]

    own = {n: p for n, p in model.model.named_parameters()}
    biases = [model.component(i, "mlp").down_proj.bias for i in range(model.n_layers)]
    hooked, folded = logits(False), logits(True)
    torch.testing.assert_close(folded, hooked, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(hooked, _plain(model, batch), atol=1e-3), "the additions must matter"
    n_hooks = lambda: sum(len(m._forward_hooks) for m in model.model.modules())  # noqa: E731
    own_hooks = n_hooks()  # transformers' own, on some vision towers
    with steer(model, items[:2], fold=True):  # in the biases, not in hooks
        assert n_hooks() == own_hooks
        assert model.component(plain_layers[0], "mlp").down_proj.bias is not biases[plain_layers[0]]
    assert dict(model.model.named_parameters()) == own  # the same parameters, and no bias left behind
    assert [model.component(i, "mlp").down_proj.bias for i in range(model.n_layers)] == biases
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, items[:1], fold=True):
            raise RuntimeError("boom")
    assert dict(model.model.named_parameters()) == own
    if family == "mllama":  # a cross-attention layer gates and masks its MLP output: no bias can add
        cross = model.text_config.cross_attention_layers[0]
        with pytest.raises(interp.InputError, match="cross-attention layer"):
            with steer(model, [AddDirection(_dir(model, 1), [cross], 1.0)], fold=True):
                pass


def _plain(model, batch):
    with torch.inference_mode():
        return model.model(**batch.inputs).logits[batch.attention_mask.bool()]


def test_folded_additions_are_refused_where_a_norm_follows_the_mlp():
    gemma = tiny_model("gemma2")
    with pytest.raises(interp.InputError, match="normalizes each MLP output"):
        with steer(gemma, [AddDirection(_dir(gemma, 1), [1], 1.0)], fold=True):
            pass
