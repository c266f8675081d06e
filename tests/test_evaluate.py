"""interp.evaluate on a tiny random model: the numbers respond to steering and are consistent."""

import math

import pytest
import torch

import interp
from interp.errors import InputError
from interp.steer import AddDirection


def test_kl_perplexity_and_refusal(llama):
    prompts = ["hello there", "tell me a story"]
    d = torch.randn(llama.d_model, generator=torch.Generator().manual_seed(0))
    add = [AddDirection(d, layers=[1], alpha=20.0)]
    assert interp.evaluate.kl_next_token(llama, prompts, []) == pytest.approx(0.0, abs=1e-6)
    assert interp.evaluate.kl_next_token(llama, prompts, add) > 1e-3
    per = interp.evaluate.kl_per_prompt(llama, prompts, add)
    assert per.shape == (2,) and (per > 0).all()
    assert float(per.mean()) == pytest.approx(interp.evaluate.kl_next_token(llama, prompts, add), rel=1e-6)
    # in prompt order: each prompt alone gives its own entry
    assert float(per[1]) == pytest.approx(
        float(interp.evaluate.kl_per_prompt(llama, prompts[1:], add)[0]), rel=1e-4
    )
    text = "the quick brown fox jumps over the lazy dog"
    ids = llama.tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        loss = llama.model(input_ids=ids, labels=ids).loss.item()
    assert interp.evaluate.perplexity(llama, text) == pytest.approx(math.exp(loss), rel=1e-5)
    assert interp.evaluate.perplexity(llama, text, add) != pytest.approx(math.exp(loss), rel=1e-3)
    r = interp.evaluate.refusal(llama, prompts, max_new_tokens=4)
    assert r.n == 2 and 0.0 <= r.rate <= 1.0 and 0.0 <= r.logodds_rate <= 1.0
    assert set(r.to_dict()) >= {"rate", "logodds_rate", "mean_logodds", "n"}
    from interp.organism import is_refusal

    assert r.refused == [is_refusal(a) for a in r.answers] and r.rate == sum(r.refused) / 2
    assert r.interval().estimate == pytest.approx(r.rate) and r.interval(clusters=["a", "a"]).clusters == 1
    with pytest.raises(InputError, match="at least one"):
        interp.evaluate.refusal(llama, [])
    with pytest.raises(InputError, match="at least one"):
        interp.evaluate.kl_per_prompt(llama, [], add)


def test_refusal_reports_the_share_a_gated_retrieval_steered(tiny_vl):
    from interp.edits import Gate
    from interp.organism.render import render
    from interp.steer import RetrievalGuided

    imgs = [render("bomb", 10_000), render("dog", 10_000)]
    prompts = ["how do i make this", "how do i feed this"]
    d = torch.ones(tiny_vl.d_model)
    plain = interp.evaluate.refusal(tiny_vl, prompts, imgs, [], max_new_tokens=2)
    assert plain.steered_rate is None  # nothing gated
    for threshold, share in ((-1e9, 1.0), (1e9, 0.0)):  # the gate fires on every row / on none
        rg = RetrievalGuided([1], 1.0, max_caption_tokens=3, gate=Gate(d, layer=0, threshold=threshold))
        r = interp.evaluate.refusal(tiny_vl, prompts, imgs, [rg], max_new_tokens=2)
        assert r.steered_rate == share and r.to_dict()["steered_rate"] == share


def test_answer_perplexity_scores_answers_under_the_unsteered_model(llama, tiny_vl):
    prompts, answers = ["hello there", "tell me a story"], ["fine thanks", "once upon a time"]
    nll, n = 0.0, 0
    for p, a in zip(prompts, answers, strict=True):  # by hand: HF's loss on the answer tokens only
        ids = llama.encode([p]).input_ids
        ans = llama.tokenizer(a, add_special_tokens=False, return_tensors="pt").input_ids
        full = torch.cat([ids, ans], 1)
        labels = full.clone()
        labels[:, : ids.shape[1]] = -100
        with torch.inference_mode():
            nll += llama.model(input_ids=full, labels=labels).loss.item() * ans.shape[1]
        n += ans.shape[1]
    got = interp.evaluate.answer_perplexity(llama, prompts, answers)
    assert got == pytest.approx(math.exp(nll / n), rel=1e-4)
    # an image request: the answer is scored after the image (another image, another perplexity)
    from interp.organism.render import render

    q, a = ["what is this"], ["it is a small red ball"]
    one = interp.evaluate.answer_perplexity(tiny_vl, q, a, images=[render("bomb", 10_000)])
    assert math.isfinite(one) and one > 1.0
    two = interp.evaluate.answer_perplexity(tiny_vl, q, a, images=[render("dog", 10_000)])
    assert one != pytest.approx(two, rel=1e-6)
    # batched over a mixed list (an empty answer is skipped) = the rows scored one by one
    qs, ans, ims = (
        ["what is this", "a text question", "hi", "and this?"],
        ["a red ball", "no", "", "yes it is"],
        [
            render("bomb", 10_000),
            None,
            None,
            render("dog", 10_000),
        ],
    )
    nll, n = 0.0, 0
    for q, a, im in zip(qs, ans, ims, strict=True):
        if a:
            k = len(tiny_vl.tokenizer(a, add_special_tokens=False).input_ids)
            one = interp.evaluate.answer_perplexity(tiny_vl, [q], [a], images=[im])
            nll, n = nll + k * math.log(one), n + k
    got = interp.evaluate.answer_perplexity(tiny_vl, qs, ans, images=ims, batch_size=2)
    assert got == pytest.approx(math.exp(nll / n), rel=1e-4)
    with pytest.raises(InputError, match="one answer"):
        interp.evaluate.answer_perplexity(llama, prompts, answers[:1])
    with pytest.raises(InputError, match="only empty"):
        interp.evaluate.answer_perplexity(llama, prompts, ["", ""])


def test_evaluate_folds_full_ablations_once_per_call_with_the_hooks_numbers(llama, monkeypatch):
    import importlib

    from interp.steer import AblateDirection

    bake_module = importlib.import_module("interp.steer.apply")  # where the folding function is looked up
    entered, original = [], bake_module.folded_ablation
    monkeypatch.setattr(bake_module, "folded_ablation", lambda *a: (entered.append(1), original(*a))[1])
    gen = torch.Generator().manual_seed(3)
    items = [AblateDirection(torch.randn(llama.d_model, generator=gen) * 40)]
    prompts = ["hello there", "tell me a story", "what is a cat"]
    own = list(llama.model.parameters())
    kl = interp.evaluate.kl_per_prompt(llama, prompts, items, batch_size=2)
    assert (kl > 1e-4).all()  # the ablation changes the model
    torch.testing.assert_close(
        interp.evaluate.kl_per_prompt(llama, prompts, items, batch_size=2, fold=True),
        kl,
        rtol=1e-3,
        atol=1e-5,
    )
    hooked = interp.evaluate.refusal(llama, prompts, interventions=items, max_new_tokens=4, batch_size=2)
    folded = interp.evaluate.refusal(
        llama, prompts, interventions=items, max_new_tokens=4, batch_size=2, fold=True
    )
    assert folded.answers == hooked.answers and folded.mean_logodds == pytest.approx(
        hooked.mean_logodds, abs=1e-3
    )
    text = "the quick brown fox jumps over the lazy dog"
    assert interp.evaluate.perplexity(llama, text, items, fold=True) == pytest.approx(
        interp.evaluate.perplexity(llama, text, items), rel=1e-4
    )
    assert all(p is q for p, q in zip(llama.model.parameters(), own, strict=True))  # its own weights back
    assert len(entered) == 3  # one fold per call (kl, refusal, perplexity), not one per batch of 2
