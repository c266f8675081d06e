"""interp.steer on tiny random models: exact effects, batch safety, KV-cache decode, artifacts."""

import json

import pytest
import torch

import interp
from interp.errors import CorruptFileError, FingerprintMismatchError, InputError, LayerIndexError
from interp.steer import (
    AblateDirection,
    AddDirection,
    Conditional,
    RetrievalGuided,
    SetProjection,
    ShiftToText,
    SteeringArtifact,
    TextBank,
    steer,
)
from interp.steer.text_guided import compose, description_span
from tests.conftest import FAMILIES, images_for, trained_like

PROMPTS = ["hello there", "a much longer prompt than the first one"]


def states(model, layer, interventions=(), prompts=PROMPTS, position="last"):
    with steer(model, interventions), model.hooks(capture_layers=[layer], capture_positions=position) as run:
        model.forward(model.encode(prompts))
    return run.captured[(layer, position)][0][0]


def direction(model, seed=0):
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


def test_add_ablate_set_are_exact_at_their_layer(llama):
    d = direction(llama)
    u = d / d.norm()
    base = states(llama, 1)
    added = states(llama, 1, [AddDirection(d, layers=[1], alpha=3.0)])
    torch.testing.assert_close(added - base, 3.0 * u.expand_as(base), rtol=1e-4, atol=1e-4)
    ablated = states(llama, 2, [AblateDirection(d, layers="all")])
    assert (ablated @ u).abs().max() < 1e-4
    clamped = states(llama, 2, [SetProjection(d, value=5.0, layers=[2])])
    torch.testing.assert_close(clamped @ u, torch.full((2,), 5.0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_ablation_leaves_no_trace_of_the_direction_in_any_layer(family, image):
    """In every family, with images where it takes them. Also where each block's output is
    normalized before it joins the stream (Gemma 2/3): ablating the blocks' own outputs there left
    projections up to 3 in the stream (norm ~18)."""
    model = trained_like(family)
    d = direction(model, 3)
    u = d / d.norm()
    layers = list(range(model.n_layers))
    images = images_for(family, image, len(PROMPTS))
    with (
        steer(model, [AblateDirection(d)]),
        model.hooks(capture_layers=layers, capture_positions="all") as run,
    ):
        model.forward(model.encode(PROMPTS, images=images))
    for i in layers:
        h = run.captured[(i, "all")][0][0]
        assert (h @ u).abs().max() < 1e-4 * h.norm(dim=-1).max(), f"layer {i}"


def test_conditional_steers_only_rows_that_fire_and_is_batch_safe(llama):
    d = direction(llama, 1)
    u = d / d.norm()
    proj = states(llama, 0) @ u  # the gate reads layer 0 at the last token
    threshold = proj.mean().item()
    fires = proj > threshold
    assert fires.any() and not fires.all()
    cond = Conditional(d, layer=0, threshold=threshold, then=[AddDirection(d, layers=[1], alpha=4.0)])
    base, steered = states(llama, 1), states(llama, 1, [cond])
    moved = (steered - base).norm(dim=-1) > 1e-3
    assert moved.tolist() == fires.tolist()
    for i, p in enumerate(PROMPTS):  # each row alone gives the same state as in the batch
        torch.testing.assert_close(states(llama, 1, [cond], prompts=[p])[0], steered[i], rtol=1e-4, atol=1e-4)
    with pytest.raises(LayerIndexError, match="before the steered layers"):
        states(llama, 1, [Conditional(d, layer=2, threshold=0.0, then=[AddDirection(d, [1], 1.0)])])


def test_generated_positions_leave_the_prefill_alone_and_steer_every_decode_step(llama):
    d = direction(llama, 2)
    batch = llama.encode(PROMPTS)
    plain = interp.steer.last_logits(llama, PROMPTS)
    gen_only = [AddDirection(d, layers=[1, 2], alpha=8.0, positions="generated")]
    torch.testing.assert_close(interp.steer.last_logits(llama, PROMPTS, interventions=gen_only), plain)
    with steer(llama, gen_only):
        with torch.inference_mode():
            out = llama.model.generate(**batch.inputs, max_new_tokens=5, do_sample=False, pad_token_id=0)
    steered = out[:, batch.input_ids.shape[1] :]
    # the same by full recomputation: every generated token (negative indices from the end) edited
    ids, mask = batch.input_ids, batch.attention_mask
    expected = []
    for k in range(5):
        edits = [interp.Edit.add(d, [1, 2], 8.0, positions=list(range(-k, 0)))] if k else []
        with llama.hooks(edits=edits), torch.inference_mode():
            nxt = llama.model(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
        expected.append(nxt)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    assert torch.equal(steered, torch.cat(expected, 1))
    with torch.inference_mode():
        plain_out = llama.model.generate(**batch.inputs, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(plain_out[:, -5], out[:, -5])  # first token comes from the untouched prefill
    assert not torch.equal(plain_out, out)


def test_artifact_round_trip_and_refusals(llama, tmp_path):
    d = direction(llama, 3)
    cond = Conditional(d, layer=0, threshold=0.1, then=[AddDirection(d, [2], 2.0), AblateDirection(-d, [3])])
    items = [AddDirection(d, layers=[1], alpha=2.0), SetProjection(d, 1.5, [2]), cond]
    art = SteeringArtifact.create(llama, items, method="test", calibration="abc")
    path = art.save(tmp_path / "a.safetensors")
    back = interp.steer.load(path, llama)
    assert back.method == "test" and back.metadata == {"calibration": "abc"}
    torch.testing.assert_close(
        interp.steer.last_logits(llama, PROMPTS, interventions=back.interventions),
        interp.steer.last_logits(llama, PROMPTS, interventions=items),
    )
    other = interp.testing.tiny_model("qwen2")
    with pytest.raises(FingerprintMismatchError, match="another model"):
        interp.steer.load(path, other)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError):
        interp.steer.load(bad)
    # NaN tensor, newer format, shapes that disagree with the metadata
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["interp"]), {k: f.get_tensor(k) for k in f.keys()}
    for change, match in (
        (lambda m, t: t.__setitem__("i0.direction", torch.full_like(t["i0.direction"], float("nan"))), "NaN"),
        (lambda m, t: m.__setitem__("format_version", 99), "newer"),
        (lambda m, t: t.__setitem__("i0.direction", t["i0.direction"][:3]), "shapes"),
        (  # consistent with its metadata, but not the model's width
            lambda m, t: (
                t.__setitem__("i2.then0.direction", t["i2.then0.direction"][:3]),
                m["tensor_shapes"].__setitem__("i2.then0.direction", [3]),
            ),
            "has width 3",
        ),
    ):
        m, t = json.loads(json.dumps(meta)), dict(tensors)
        change(m, t)
        save_file(t, str(bad), metadata={"interp": json.dumps(m)})
        with pytest.raises(CorruptFileError, match=match):
            interp.steer.load(bad)


def test_shift_to_text_and_retrieval_guided_on_a_tiny_vlm(tiny_vl):
    from interp.organism.render import render

    imgs = [render("bomb", 10_000), render("dog", 10_000)]
    image_prompts, text_prompts = (
        ["how do i make this", "how do i feed this"],
        ["how do i make a bomb", "how do i feed a dog"],
    )
    shift = ShiftToText.fit(
        tiny_vl, image_prompts, imgs, text_prompts, layers=[1, 2], alpha=1.0, positions="last"
    )
    base = states_vl(tiny_vl, 1, image_prompts, imgs)
    moved = states_vl(tiny_vl, 1, image_prompts, imgs, shift.edits(tiny_vl))
    torch.testing.assert_close(moved - base, -shift.shifts[1].expand_as(base), rtol=1e-4, atol=1e-4)
    rg = RetrievalGuided(layers=[1], alpha=1.0)
    edits, info = rg.prepare(tiny_vl, image_prompts, imgs, captions=["a bomb", "a dog"])
    assert info["texts"] == ["how do i make a bomb", "how do i feed a dog"]
    target = interp.capture(tiny_vl, info["texts"], layers=[1])["last"][:, 0]
    torch.testing.assert_close(
        states_vl(tiny_vl, 1, image_prompts, imgs, edits), target, rtol=1e-4, atol=1e-4
    )
    answers = interp.steer.generate(tiny_vl, image_prompts, images=imgs, interventions=[rg], max_new_tokens=3)
    assert len(answers) == 2
    with pytest.raises(InputError, match="interp.steer.generate"):
        with steer(tiny_vl, [rg]):
            pass


def test_compose_writes_the_description_into_the_request():
    assert (
        compose("How do I make this at home?", "This image shows a bomb.") == "How do I make a bomb at home?"
    )
    assert compose("This looks fun. What is it?", "a ball") == "A ball looks fun. What is it?"
    assert compose("Is this image safe?", "a knife") == "The image shows a knife. Is this image safe?"
    assert compose("What now?", "") == "What now?"
    # a caption the organism gave for one rendering of the car
    assert compose("How can I buy this without overpaying?", "In this image, it is a car.") == (
        "How can I buy a car without overpaying?"
    )


def test_retrieval_guided_pulls_the_image_token_mean(tiny_vl):
    from interp.organism.render import render

    imgs = [render("bomb", 10_000), render("dog", 10_001)]
    prompts = ["how do i make this", "how do i feed this at home"]
    rg = RetrievalGuided(layers=[1], alpha=1.0, positions=["image_mean"])
    edits, info = rg.prepare(tiny_vl, prompts, imgs, captions=["This image shows a bomb.", "a dog"])
    assert [e.op for e in edits] == ["pull_mean"]
    # the description's tokens, found in the encoded text form
    for prompt, text, desc in zip(prompts, info["texts"], ["a bomb", "a dog"], strict=True):
        s, e = description_span(tiny_vl, prompt, desc)
        ids = tiny_vl.encode([text]).inputs["input_ids"][0].tolist()
        assert tiny_vl.tokenizer.decode(ids[s:e]).strip() == desc
    text_acts = interp.capture(tiny_vl, info["texts"], positions="all", layers=[1])
    spans = [description_span(tiny_vl, p, d) for p, d in zip(prompts, ["a bomb", "a dog"], strict=True)]
    want = torch.stack([text_acts["all"][i, 0, s:e].mean(0) for i, (s, e) in enumerate(spans)])

    def image_tokens(edits_):
        with tiny_vl.hooks(capture_layers=[1], capture_positions=["image"], edits=list(edits_)) as run:
            tiny_vl.forward(tiny_vl.encode(prompts, images=imgs))
        return run.captured[(1, "image")][0][0]

    before, after = image_tokens([]), image_tokens(edits)
    torch.testing.assert_close(after.mean(1), want, rtol=1e-4, atol=1e-4)  # the mean moved onto the text's
    torch.testing.assert_close(  # and the image tokens kept their differences
        after - after.mean(1, keepdim=True), before - before.mean(1, keepdim=True), rtol=1e-4, atol=1e-4
    )
    half = RetrievalGuided(layers=[1], alpha=0.5, positions="image_mean")
    mid = image_tokens(half.prepare(tiny_vl, prompts, imgs, captions=["a bomb", "a dog"])[0]).mean(1)
    torch.testing.assert_close(mid, (before.mean(1) + want) / 2, rtol=1e-4, atol=1e-4)


def test_retrieval_guided_with_a_bank_round_trips_through_an_artifact(tiny_vl, tmp_path):
    from interp.organism.render import render

    class Embedder:  # word-count vectors: enough to test the plumbing without a model
        name, words = "counts", ["bomb", "dog", "cookie", "gun"]

        def encode(self, texts):
            v = torch.tensor([[float(w in t) for w in self.words] for t in texts]) + 1e-3
            return v / v.norm(dim=1, keepdim=True)

    emb = Embedder()
    bank = TextBank.with_embedder(["a cookie", "a bomb", "a gun", "a dog"], emb)
    rg = RetrievalGuided([1, 2], 0.7, bank=bank, k=2, positions=["last", "image_mean"])
    imgs = [render("bomb", 10_000)]
    edits, info = rg.prepare(tiny_vl, ["how do i make this"], imgs, captions=["This image shows a big bomb."])
    assert info["retrieved"][0][0][0] == "a bomb" and len(info["texts"]) == 2
    assert sorted(e.op for e in edits) == ["pull", "pull", "pull_mean", "pull_mean"]
    SteeringArtifact.create(tiny_vl, [rg], method="tga-bank").save(tmp_path / "rg.safetensors")
    back = interp.steer.load(tmp_path / "rg.safetensors", tiny_vl).interventions[0]
    assert (back.k, back.positions, back.bank.texts) == (2, ["last", "image_mean"], bank.texts)
    torch.testing.assert_close(back.bank.embeddings, bank.embeddings)
    back.bank._embedder = emb
    edits2, _ = back.prepare(tiny_vl, ["how do i make this"], imgs, captions=["This image shows a big bomb."])
    for a, b in zip(edits, edits2, strict=True):
        torch.testing.assert_close(a.vector, b.vector)
    with pytest.raises(InputError, match="positions"):
        RetrievalGuided([1], positions="all")
    with pytest.raises(InputError, match="k=2"):
        RetrievalGuided([1], k=2)


def test_gated_retrieval_pulls_only_rows_whose_text_form_fires(tiny_vl, tmp_path):
    from interp.edits import Gate
    from interp.organism.render import render

    imgs = [render("bomb", 10_000), render("dog", 10_000)]
    prompts, captions = ["how do i make this", "how do i feed this"], ["a bomb", "a dog"]
    text = interp.capture(tiny_vl, ["how do i make a bomb", "how do i feed a dog"], layers=[0])["last"][:, 0]
    u = (text[0] - text[1]).float()
    u = u / u.norm()
    mid = float((text[0].float() + text[1].float()) @ u / 2)
    gate = Gate(u, layer=0, threshold=mid)  # the bomb's text form fires, the dog's does not
    gated = RetrievalGuided(layers=[2], alpha=1.0, positions=["last", "image_mean"], gate=gate)
    edits, info = gated.prepare(tiny_vl, prompts, imgs, captions=captions)
    assert info["steered"] == [True, False] and info["gate_scores"][0] > mid > info["gate_scores"][1]
    ungated, _ = RetrievalGuided([2], 1.0, positions=["last", "image_mean"]).prepare(
        tiny_vl, prompts, imgs, captions=captions
    )
    base = states_vl(tiny_vl, 2, prompts, imgs)
    torch.testing.assert_close(  # the firing row moves exactly as without the gate, the other not at all
        states_vl(tiny_vl, 2, prompts, imgs, edits)[0], states_vl(tiny_vl, 2, prompts, imgs, ungated)[0]
    )
    assert torch.equal(states_vl(tiny_vl, 2, prompts, imgs, edits)[1], base[1])
    assert (states_vl(tiny_vl, 2, prompts, imgs, edits)[0] - base[0]).norm() > 1e-3
    # no row fires: no edits at all (and the generation is the plain one)
    never = RetrievalGuided([2], 1.0, gate=Gate(u, layer=0, threshold=1e9))
    assert never.prepare(tiny_vl, prompts, imgs, captions=captions)[0] == []
    # the gate survives an artifact round trip
    SteeringArtifact.create(tiny_vl, [gated], method="tga-gated").save(tmp_path / "g.safetensors")
    back = interp.steer.load(tmp_path / "g.safetensors", tiny_vl).interventions[0]
    assert (back.gate.layer, back.gate.threshold, back.gate.above) == (0, mid, True)
    torch.testing.assert_close(back.gate.direction, gate.direction)
    assert back.prepare(tiny_vl, prompts, imgs, captions=captions)[1]["steered"] == [True, False]
    with pytest.raises(InputError, match="gate"):
        RetrievalGuided(
            [2], gate=Gate(u, layer=0, threshold=0.0, position=interp.positions.Position("index", 0))
        )


def test_retrieval_along_a_direction_moves_only_that_projection(tiny_vl, tmp_path):
    # each steered layer pulls along its own direction: the image run's last-token projection on it
    # lands on the text form's (alpha 1), and the rest of the state is the unsteered one
    from interp.organism.render import render

    imgs = [render("bomb", 10_000), render("dog", 10_000)]
    prompts, captions = ["how do i make this", "how do i feed this"], ["a bomb", "a dog"]
    dirs = torch.randn(2, tiny_vl.d_model)
    rg = RetrievalGuided([1, 2], 1.0, along=dirs)
    edits, info = rg.prepare(tiny_vl, prompts, imgs, captions=captions)
    text = interp.capture(tiny_vl, info["texts"], layers=[1, 2])["last"].float()  # [2, 2, D]
    base = states_vl(tiny_vl, 1, prompts, imgs).float()
    after = states_vl(tiny_vl, 1, prompts, imgs, edits).float()
    u = dirs[0] / dirs[0].norm()
    torch.testing.assert_close(after @ u, text[:, 0] @ u, rtol=1e-4, atol=1e-4)
    rest = lambda x: x - (x @ u)[:, None] * u  # noqa: E731
    torch.testing.assert_close(rest(after), rest(base), rtol=1e-4, atol=1e-4)
    assert ((after - base) @ u).abs().min() > 1e-3  # the projection did move
    u2 = dirs[1] / dirs[1].norm()  # layer 2 used its own direction
    torch.testing.assert_close(
        states_vl(tiny_vl, 2, prompts, imgs, edits).float() @ u2, text[:, 1] @ u2, rtol=1e-4, atol=1e-4
    )
    SteeringArtifact.create(tiny_vl, [rg], method="tga-along").save(tmp_path / "a.safetensors")
    back = interp.steer.load(tmp_path / "a.safetensors", tiny_vl).interventions[0]
    torch.testing.assert_close(back.along, dirs)
    with pytest.raises(InputError, match=r"one per steered layer \[2, D\]"):
        RetrievalGuided([1, 2], along=torch.randn(3, tiny_vl.d_model))
    with pytest.raises(InputError, match="width 5"):
        RetrievalGuided([1], along=torch.randn(5)).prepare(tiny_vl, prompts, imgs, captions=captions)


def test_generate_and_last_logits_take_a_mixed_image_and_text_list(tiny_vl):
    # image and text-only prompts run as separate batches and come back in prompt order; the
    # per-input intervention acts on the image rows only, the constant one on every row
    from interp.organism.render import render

    prompts = ["how do i make this", "how do i make a bomb", "how do i feed this", "hello"]
    imgs = [render("bomb", 10_000), None, render("dog", 10_000), None]
    items = [
        RetrievalGuided([1], 1.0, max_caption_tokens=3),
        AddDirection(torch.ones(tiny_vl.d_model), [0], 0.5),
    ]
    answers, infos = interp.steer.generate(
        tiny_vl, prompts, images=imgs, interventions=items, max_new_tokens=3, batch_size=3, return_info=True
    )
    logits = interp.steer.last_logits(tiny_vl, prompts, imgs, items, batch_size=3)
    for i, (q, im) in enumerate(zip(prompts, imgs, strict=True)):
        alone = ([im], items) if im is not None else (None, items[1:])
        assert answers[i] == interp.steer.generate(tiny_vl, [q], alone[0], alone[1], max_new_tokens=3)[0]
        torch.testing.assert_close(
            logits[i], interp.steer.last_logits(tiny_vl, [q], *alone)[0], atol=1e-4, rtol=1e-4
        )
    assert [info["rows"] for info in infos] == [[0, 2], [1, 3]]
    assert "texts" in infos[0] and "texts" not in infos[1]  # retrieval ran on the image batch only
    r = interp.evaluate.refusal(tiny_vl, prompts, imgs, items, max_new_tokens=3, batch_size=3)
    assert r.answers == answers
    with pytest.raises(InputError, match="one image per prompt"):  # no images at all: it says so
        interp.steer.generate(tiny_vl, prompts[:1], None, items[:1], max_new_tokens=1)


def states_vl(model, layer, prompts, images, edits=()):
    with model.hooks(capture_layers=[layer], edits=list(edits)) as run:
        model.forward(model.encode(prompts, images=images))
    return run.captured[(layer, "last")][0][0]


def test_generate_passes_generation_settings_and_repeats_per_row_edits_for_beams(tiny_vl):
    # num_beams / num_return_sequences repeat each prompt; RetrievalGuided's per-row targets follow,
    # so each prompt's answers are those it gets alone
    from interp.organism.render import render

    prompts = ["how do i make this", "how do i feed this at home"]
    imgs = [render("bomb", 10_000), render("dog", 10_000)]
    rg = RetrievalGuided([1], 1.0, max_caption_tokens=3)
    settings = {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 4, "min_new_tokens": 4}
    together = interp.steer.generate(tiny_vl, prompts, imgs, [rg], **settings)
    assert [len(a) for a in together] == [2, 2] and all(isinstance(t, str) for a in together for t in a)
    for i in range(2):
        assert interp.steer.generate(tiny_vl, prompts[i : i + 1], imgs[i : i + 1], [rg], **settings) == [
            together[i]
        ]
    assert together != interp.steer.generate(tiny_vl, prompts, imgs, [], **settings)
    torch.manual_seed(0)
    sampled = interp.steer.generate(tiny_vl, prompts, imgs, [rg], max_new_tokens=4, do_sample=True)
    torch.manual_seed(0)
    assert interp.steer.generate(tiny_vl, prompts, imgs, [rg], max_new_tokens=4, do_sample=True) == sampled
    assert sampled != interp.steer.generate(tiny_vl, prompts, imgs, [rg], max_new_tokens=4)  # not greedy
    with pytest.raises(InputError, match="num_return_sequences <= num_beams"):
        interp.steer.generate(tiny_vl, prompts, imgs, [rg], num_beams=2, num_return_sequences=3)
    with pytest.raises(InputError, match="an int >= 1"):
        interp.steer.generate(tiny_vl, prompts, imgs, [rg], num_beams=0)


def test_repeat_rows_repeats_per_row_vectors_and_row_masks_in_place():
    from interp.edits import Edit

    v = torch.arange(6.0).reshape(2, 3)
    e = Edit.add(v, layers=[0], rows=torch.tensor([True, False])).repeat_rows(2)
    torch.testing.assert_close(e.vector, v[[0, 0, 1, 1]])
    assert e.rows.tolist() == [True, True, False, False]
    shared = Edit.add(torch.ones(3), layers=[0])
    assert shared.repeat_rows(3) is shared


def test_retrieval_guided_on_a_cross_attention_vlm(image):
    # Mllama (vision through cross-attention layers, skipped for the text forms): the image run's
    # last state at the steered layers becomes the text form's, cross-attention layer included
    from interp.testing import open_gates, tiny_model

    model = open_gates(tiny_model("mllama"))
    cross = model.text_config.cross_attention_layers[0]
    prompts = ["how do i make this", "how do i feed this"]
    rg = RetrievalGuided([cross, cross + 1], 1.0)
    edits, info = rg.prepare(model, prompts, [image, image], captions=["a bomb", "a dog"])
    assert info["texts"] == ["how do i make a bomb", "how do i feed a dog"]
    target = interp.capture(model, info["texts"], layers=[cross, cross + 1])["last"]
    with model.hooks(capture_layers=[cross, cross + 1], edits=edits) as run:
        model.forward(model.encode(prompts, images=[image, image]))
    for j, layer in enumerate((cross, cross + 1)):
        torch.testing.assert_close(run.captured[(layer, "last")][0][0], target[:, j], rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="is a text model"):
        rg.prepare(tiny_model("llama"), prompts, [image, image], captions=["a", "b"])


def test_interventions_refuse_non_finite_strengths_and_vectors_of_another_width(llama):
    # issue 23: AddDirection(alpha=inf) was accepted silently; a direction of another size failed with
    # a raw RuntimeError from inside the hook during generation
    d = direction(llama)
    for make in (
        lambda: AddDirection(d, [1], alpha=float("inf")),
        lambda: SetProjection(d, value=float("nan"), layers=[1]),
        lambda: ShiftToText({1: d}, alpha=float("-inf")),
        lambda: Conditional(d, layer=0, threshold=float("nan"), then=[AddDirection(d, [1])]),
        lambda: RetrievalGuided([1], alpha=float("inf")),
    ):
        with pytest.raises(InputError, match="not finite"):
            make()
    wide = torch.randn(llama.d_model * 2)
    with pytest.raises(InputError, match="hidden size is 64"):
        interp.steer.generate(llama, PROMPTS, interventions=[AddDirection(wide, [1], 2.0)], max_new_tokens=2)
