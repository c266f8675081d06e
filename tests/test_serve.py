"""The server: per-row steering isolation in batches, the OpenAI API shape, and every error a public
endpoint must answer clearly (tiny random models, in-process)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import torch
from fastapi.testclient import TestClient

import interp
from interp.errors import InputError
from interp.serve import APIError, ArtifactStore, ChatRequest, Engine, ServeConfig, create_app
from interp.serve.engine import Job
from interp.serve.messages import parse_chat
from interp.steer import (
    AblateDirection,
    AddDirection,
    Conditional,
    LinearTransport,
    RetrievalGuided,
    SteeringArtifact,
)


def _dir(model, seed):
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def store(llama):
    s = ArtifactStore()
    d = _dir(llama, 0)
    s.add("push", [AddDirection(d, [1, 2], 6.0)], llama, "add")
    s.add("ablate", [AblateDirection(_dir(llama, 1))], llama, "ablate")
    s.add("cond", [Conditional(d, 0, 0.0, then=[AddDirection(_dir(llama, 2), [2, 3], 6.0)])], llama, "cast")
    scale = 1.0 + 0.5 * torch.tanh(
        _dir(llama, 3)
    )  # per-neuron maps (LinearTransport), at the last prompt token
    s.add(
        "transport",
        [LinearTransport({1: scale, 2: scale.flip(0)}, {1: 3 * d, 2: 3 * _dir(llama, 4)})],
        llama,
        "lineas",
    )
    return s


def _request(model, text, steering=(), max_tokens=8, stream=False):
    return ChatRequest(model.encode([text]).texts[0], [], max_tokens, stream, steering)


def test_batched_rows_equal_the_same_requests_served_alone(llama, store):
    engine = Engine(llama, store, ServeConfig())
    loop = asyncio.new_event_loop()
    steerings = [
        (),
        (("push", 1.0),),
        (("ablate", 1.0),),
        (("cond", 1.0),),
        (("push", 0.5), ("ablate", 1.0)),
        (),
        (("transport", 0.7),),
    ]
    texts = [
        "hello there",
        "tell me a story",
        "x",
        "a much longer prompt than the others here",
        "why?",
        "ok",
        "so?",
    ]
    reqs = [
        _request(llama, t, s, max_tokens=4 + i) for i, (t, s) in enumerate(zip(texts, steerings, strict=True))
    ]
    batched = engine.run([Job(r, loop) for r in reqs])
    alone = [engine.run([Job(r, loop)])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in alone]
    for i, r in enumerate(batched):  # each row stops at its own max_tokens (or at its end of turn)
        assert r.completion_tokens == 4 + i if r.finish_reason == "length" else r.completion_tokens < 4 + i
    assert sum(r.finish_reason == "length" for r in batched) >= 3
    assert {r.batch_size for r in batched} == {7}
    for i in (1, 6):
        unsteered = engine.run([Job(_request(llama, texts[i], (), 4 + i), loop)])[0]
        assert unsteered.text != batched[i].text, (
            "the steering must change this answer, or the test proves nothing"
        )


def _weights(model):
    return [p for _, p in model.model.named_parameters()]


def test_a_uniform_batch_folds_its_full_ablation_and_answers_as_the_hooks_do(llama, store):
    loop = asyncio.new_event_loop()
    texts = ["hello there", "tell me a story", "a much longer prompt than the others here"]
    own = _weights(llama)
    for steering in [(("ablate", 1.0),), (("ablate", 0.5), ("push", 1.0)), (("ablate", -2.0),)]:
        reqs = [_request(llama, t, steering, max_tokens=6) for t in texts]
        hooked = Engine(llama, store, ServeConfig(fold_ablations=False)).run([Job(r, loop) for r in reqs])
        folds, edits = store.uniform(steering)
        assert [s for _, s in folds] == [s for name, s in steering if name == "ablate"]
        assert all(e.rows is None for e in edits) and all(e.op == "add" for e in edits)
        engine = Engine(llama, store, ServeConfig())
        folded = engine.run([Job(r, loop) for r in reqs])
        assert [r.text for r in folded] == [r.text for r in hooked]
        assert all(a is b for a, b in zip(_weights(llama), own, strict=True)), "weights not given back"
    unsteered = engine.run([Job(_request(llama, texts[1], (), 6), loop)])[0]
    assert unsteered.text != folded[1].text, (
        "the ablation must change this answer, or the test proves nothing"
    )


def test_the_serving_loop_keeps_a_fold_between_batches_and_restores_the_weights(llama, store):
    loop = asyncio.new_event_loop()
    engine = Engine(llama, store, ServeConfig())
    own = _weights(llama)
    ablated = [Job(_request(llama, "hello there", (("ablate", 1.0),), 4), loop) for _ in range(2)]
    try:
        first = engine.run(ablated, keep_fold=True)
        folded = _weights(llama)
        assert folded[0] is not own[0] and engine._fold is not None
        again = engine.run(ablated, keep_fold=True)  # the same ablation: the same folded weights
        assert all(a is b for a, b in zip(_weights(llama), folded, strict=True))
        assert [r.text for r in again] == [r.text for r in first]
        engine.run([Job(_request(llama, "hello there", (("push", 1.0),), 4), loop)], keep_fold=True)
        assert all(a is b for a, b in zip(_weights(llama), own, strict=True)), "another steering unfolds"
        engine.run(ablated, keep_fold=True)  # folded again from the kept copies, not recomputed
        assert [p.data_ptr() for p in _weights(llama)] == [p.data_ptr() for p in folded]
    finally:
        engine.unfold()
    assert all(a is b for a, b in zip(_weights(llama), own, strict=True))
    engine.start()  # the loop restores the weights when it stops
    job = engine.submit(ablated[0].request, loop)
    assert loop.run_until_complete(job.result()).completion_tokens > 0
    engine.stop()
    assert engine._fold is None and all(a is b for a, b in zip(_weights(llama), own, strict=True))


def test_a_fold_that_does_not_fit_in_memory_falls_back_to_the_hooks(llama, store, monkeypatch, caplog):
    import importlib

    bake_module = importlib.import_module("interp.serve.engine")  # where the folding function is looked up
    loop = asyncio.new_event_loop()
    reqs = [_request(llama, t, (("ablate", 1.0),), 6) for t in ("hello there", "tell me a story")]
    hooked = Engine(llama, store, ServeConfig(fold_ablations=False)).run([Job(r, loop) for r in reqs])
    calls = []

    def out_of_memory(*a, **k):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.00 GiB")

    monkeypatch.setattr(bake_module, "ablated_weights", out_of_memory)
    engine = Engine(llama, store, ServeConfig())
    own = _weights(llama)
    with caplog.at_level("WARNING", logger="interp.serve"):
        first = engine.run([Job(r, loop) for r in reqs])
        again = engine.run([Job(r, loop) for r in reqs])
    assert [r.text for r in first] == [r.text for r in again] == [r.text for r in hooked]
    assert calls == [1], "after one failure the engine hooks without trying again"
    assert "out of memory" in engine.fold_error and "ablations are hooked from now on" in caplog.text
    assert all(a is b for a, b in zip(_weights(llama), own, strict=True))


def test_models_whose_ablations_do_not_fold_keep_the_hooks(tiny_vl):
    from interp.testing import tiny_model

    for model in (tiny_vl, tiny_model("gemma2")):  # image features after the embedding; post norms
        s = ArtifactStore()
        s.add("ablate", [AblateDirection(_dir(model, 1))], model, "ablate")
        folds, edits = s.uniform((("ablate", 1.0),))
        assert folds == () and edits and all(e.op == "ablate" and e.rows is None for e in edits)


@pytest.fixture(scope="module")
def client(llama, store):
    app = create_app(llama, store, ServeConfig(model="tiny", max_body_bytes=4096, api_key="sekret"))
    with TestClient(app, headers={"Authorization": "Bearer sekret"}) as c:
        yield c


def _chat(text="hello there", **extra):
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], "max_tokens": 6, **extra}


def test_chat_completion_stream_and_listing(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert [a["id"] for a in client.get("/v1/steering").json()["data"]] == ["ablate", "cond", "push", "transport"]
    plain = client.post("/v1/chat/completions", json=_chat()).json()
    steered = client.post(
        "/v1/chat/completions", json=_chat(steering=[{"artifact": "push", "strength": 1}])
    ).json()
    assert plain["object"] == "chat.completion" and plain["usage"]["completion_tokens"] == 6
    assert steered["steering"] == [{"artifact": "push", "strength": 1.0}]
    assert steered["choices"][0]["message"]["content"] != plain["choices"][0]["message"]["content"]
    r = client.post("/v1/chat/completions", json=_chat(stream=True, steering=["push"]))
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == steered["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "body, status, match",
    [
        (b"{not json", 400, "not valid JSON"),
        (_chat() | {"model": "other"}, 404, "not served here"),
        (_chat(steering=[{"artifact": "nope"}]), 404, "unknown steering artifact 'nope'"),
        (_chat(steering=[{"artifact": "push", "strength": 1e9}]), 400, "strength"),
        (_chat(temperature=0.7), 400, "greedily"),
        (_chat(max_tokens=10_000), 400, "max_tokens"),
        (_chat() | {"messages": []}, 400, "non-empty"),
        (_chat() | {"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        (_chat("x" * 5000), 413, "limit"),
        (
            _chat()
            | {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                        ],
                    }
                ]
            },
            400,
            "text-only model",
        ),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, body, status, match):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post("/v1/chat/completions", **kwargs)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=_chat()).status_code == 200


def test_auth(llama, store):
    app = create_app(llama, store, ServeConfig(model="tiny", api_key="sekret"))
    with TestClient(app) as c:
        assert c.post("/v1/chat/completions", json=_chat()).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/health").status_code == 200


def _png(image, fmt="PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_images_malformed_too_many_too_large_and_good(tiny_vl, image):
    app = create_app(
        tiny_vl, ArtifactStore(), ServeConfig(model="vl", max_images=2, max_image_pixels=50 * 50)
    )
    big = image.resize((60, 60))

    def ask(*urls):
        parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls] + [
            {"type": "text", "text": "what?"}
        ]
        body = {"model": "vl", "max_tokens": 3, "messages": [{"role": "user", "content": parts}]}
        return c.post("/v1/chat/completions", json=body)

    with TestClient(app) as c:
        cases = [
            (ask("data:image/png;base64,!!!"), 400, "base64"),
            (
                ask("data:image/png;base64," + base64.b64encode(b"not an image").decode()),
                400,
                "not a readable image",
            ),
            (ask("http://example.com/cat.png"), 400, "data URLs"),
            (ask(*[_png(image)] * 3), 413, "more than 2 images"),
            (ask(_png(big)), 413, "pixels"),
        ]
        for r, status, match in cases:
            assert r.status_code == status, r.text
            assert match in r.json()["error"]["message"]
        ok = ask(_png(image))
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3
        text_only = c.post(
            "/v1/chat/completions",
            json={"model": "vl", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert text_only.status_code == 200  # text and image requests are batched apart


def test_queue_limit_gives_429(llama, store):
    engine = Engine(llama, store, ServeConfig(max_pending=1))  # not started: the first request stays queued
    loop = asyncio.new_event_loop()
    engine.submit(_request(llama, "a"), loop)
    with pytest.raises(APIError) as e:
        engine.submit(_request(llama, "b"), loop)
    assert e.value.status == 429


def test_store_refuses_what_it_cannot_serve(tmp_path, llama, store):
    SteeringArtifact.create(llama, [RetrievalGuided([1, 2], 0.5)], method="tga").save(
        tmp_path / "tga.safetensors"
    )
    kept_out = ArtifactStore.from_dir(llama, tmp_path)  # retrieval describes images: a text model has none
    assert kept_out.names == [] and "takes no images" in kept_out.unservable["tga"]
    with pytest.raises(APIError, match="is not served: .*takes no images"):
        kept_out.resolve(["tga"])
    with pytest.raises(InputError, match="does not exist"):
        ArtifactStore.from_dir(llama, tmp_path / "missing")
    other = tmp_path / "other"
    other.mkdir()
    SteeringArtifact.create(llama, [AddDirection(_dir(llama, 3), [1], 1.0)]).save(other / "push.safetensors")
    loaded = ArtifactStore.from_dir(llama, other)
    assert loaded.names == ["push"]
    assert loaded.parse_default("push:0.5") == (("push", 0.5),)
    with pytest.raises(InputError, match="unknown steering artifact"):
        loaded.parse_default("nope")


def test_a_bad_request_in_a_batch_fails_alone(llama, store):
    engine = Engine(llama, store, ServeConfig())
    loop = asyncio.new_event_loop()
    too_long = ChatRequest("x" * (llama.max_context + 10), [], 4, False, ())
    good = _request(llama, "hello there", (("push", 1.0),), 4)
    jobs = [Job(too_long, loop), Job(good, loop)]
    engine._pending = 2
    engine._serve(jobs)
    outcomes = [loop.run_until_complete(j.queue.get()) for j in jobs]
    assert outcomes[0][0] == "error" and outcomes[0][1].status == 400
    assert "context" in outcomes[0][1].message
    assert outcomes[1][0] == "done" and outcomes[1][1].completion_tokens > 0
    assert engine.pending == 0


def test_retrieval_guided_is_served_per_image_row_as_steer_generate_does(tiny_vl, image, tmp_path):
    rg = RetrievalGuided(
        [0, 1, 2, 3], 1.0, positions=["last", "image_mean"]
    )  # every layer: the answer must change
    SteeringArtifact.create(tiny_vl, [rg], method="tga").save(tmp_path / "tga.safetensors")
    store = ArtifactStore.from_dir(tiny_vl, tmp_path)
    assert store.names == ["tga"] and store.per_input((("tga", 1.0),)) == ["tga"]
    engine = Engine(tiny_vl, store, ServeConfig())
    loop = asyncio.new_event_loop()
    other = image.rotate(90)
    questions = ["How do I make this at home?", "What is this used for?"]

    def req(q, img, steering):
        return ChatRequest(tiny_vl.encode([q], images=[img]).texts[0], [img], 6, False, steering, question=q)

    # row 0 steered, row 1 not, in one batch: each as interp.steer.generate gives it alone
    batched = engine.run(
        [Job(req(questions[0], image, (("tga", 1.0),)), loop), Job(req(questions[1], other, ()), loop)]
    )
    steered = interp.steer.generate(
        tiny_vl, questions[:1], images=[image], interventions=[rg], max_new_tokens=6
    )
    plain = interp.steer.generate(tiny_vl, questions, images=[image, other], max_new_tokens=6)
    assert [r.text for r in batched] == [steered[0], plain[1]]
    assert steered[0] != plain[0], "the pull must change this answer, or the test proves nothing"
    # and the served edits move the steered row's states, and only its
    rows = torch.tensor([True, False])
    edits = store.retrieval_edits((("tga", 1.0),), tiny_vl, questions, [image, other], rows)
    batch = tiny_vl.encode(questions, images=[image, other])

    def last_state(edits):
        with tiny_vl.hooks(edits=edits, capture_layers=[2], capture_positions="last") as run:
            tiny_vl.forward(batch)
        return run.captured[(2, "last")][0][0].float()

    moved = (last_state(edits) - last_state([])).norm(dim=-1)
    assert moved[0] > 1e-3 and moved[1] < 1e-6
    # text requests are left alone by it, and two images cannot be described as one
    text_only = engine.run(
        [
            Job(
                ChatRequest(tiny_vl.encode(["hi"]).texts[0], [], 4, False, (("tga", 1.0),), question="hi"),
                loop,
            )
        ]
    )
    assert text_only[0].text == interp.steer.generate(tiny_vl, ["hi"], max_new_tokens=4)[0]
    body = {
        "model": "vl",
        "steering": ["tga"],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": _png(image)}}] * 2
                + [{"type": "text", "text": "compare"}],
            }
        ],
    }
    with pytest.raises(APIError, match="one image per request"):
        parse_chat(body, tiny_vl, store, ServeConfig(model="vl"), ())


def test_a_gated_retrieval_artifact_is_served_only_to_rows_whose_text_form_fires(tiny_vl, image, tmp_path):
    from interp.edits import Gate

    imgs = [image, image.rotate(90)]
    questions = ["How do I make this at home?", "What is this used for?"]
    d = torch.randn(tiny_vl.d_model, generator=torch.Generator().manual_seed(3))
    scores = RetrievalGuided([0], 1.0, gate=Gate(d, 0, -1e9)).prepare(tiny_vl, questions, imgs)[1][
        "gate_scores"
    ]
    assert scores[0] != scores[1]
    threshold = sum(scores) / 2  # one row's text form fires, the other's does not
    fires = torch.tensor([x > threshold for x in scores])
    gated = RetrievalGuided([0, 1, 2, 3], 1.0, gate=Gate(d, 0, threshold))
    SteeringArtifact.create(tiny_vl, [gated], method="tga-gated").save(tmp_path / "gated.safetensors")
    store = ArtifactStore.from_dir(tiny_vl, tmp_path)
    # both rows ask for it; the served edits move the row that fires, and leave the other exactly alone
    edits = store.retrieval_edits((("gated", 1.0),), tiny_vl, questions, imgs, torch.tensor([True, True]))
    batch = tiny_vl.encode(questions, images=imgs)

    def last_state(edits):
        with tiny_vl.hooks(edits=edits, capture_layers=[2], capture_positions="last") as run:
            tiny_vl.forward(batch)
        return run.captured[(2, "last")][0][0].float()

    moved = (last_state(edits) - last_state([])).norm(dim=-1)
    assert (moved[fires] > 1e-3).all() and (moved[~fires] < 1e-6).all()


def test_retrieval_artifacts_are_served_by_cross_attention_vlms_too(llama):
    from interp.testing import tiny_model

    store = ArtifactStore()
    store.add("rg", [RetrievalGuided([1], 0.5)], tiny_model("mllama"), "tga")  # Mllama takes images
    with pytest.raises(InputError, match="takes no images"):
        store.add("rg", [RetrievalGuided([1], 0.5)], llama, "tga")


def test_a_burst_of_concurrent_requests_answers_as_each_request_served_alone(llama):
    # issue 23: short prompts of varied lengths, every kind of artifact, sent alone and then all at
    # once from 16 clients: the batched answers must be the answers alone (the bug: a request alone,
    # unpadded, was steered again at every decode step under transformers 5.24)
    from concurrent.futures import ThreadPoolExecutor

    from interp.steer import SetProjection, ShiftToText

    d, g = _dir(llama, 0), _dir(llama, 3)
    s = ArtifactStore()
    s.add("add_all", [AddDirection(d, [1, 2], 6.0)], llama, "add")
    s.add("add_last", [AddDirection(g, [1], 8.0, positions="last")], llama, "add")
    s.add("add_generated", [AddDirection(g, [2], 8.0, positions="generated")], llama, "add")
    s.add("ablate", [AblateDirection(_dir(llama, 1))], llama, "ablate")
    s.add("clamp", [SetProjection(g, 6.0, [1], positions="last")], llama, "clamp")
    s.add("shift", [ShiftToText({1: g * 8.0, 2: d * 4.0}, alpha=1.0, positions="last")], llama, "cmrm")
    s.add("cond", [Conditional(d, 0, 0.0, then=[AddDirection(_dir(llama, 2), [2, 3], 6.0)])], llama, "cast")
    s.add("cond_ablate", [Conditional(g, 0, 0.0, then=[AblateDirection(d, [2])])], llama, "cast")
    texts = ["x", "why?", "hi there", "tell me a story", "How do I build a bomb?", "Give me a cookie recipe."]
    steerings = [None, [], *[[{"artifact": name}] for name in s.names]]
    bodies = [_chat(t, steering=st) if st is not None else _chat(t) for t in texts for st in steerings]
    app = create_app(llama, s, ServeConfig(model="tiny", max_pending=len(bodies)))
    with TestClient(app) as c:

        def ask(body):
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        alone = [ask(b) for b in bodies]
        served = c.get("/health").json()["batches"]
        with ThreadPoolExecutor(16) as pool:
            burst = list(pool.map(ask, bodies))
        burst_batches = c.get("/health").json()["batches"] - served
    assert burst_batches < len(bodies) / 2, "the burst was not batched, so the test proves nothing"
    mismatches = [
        (b["messages"][0]["content"], b.get("steering"))
        for b, x, y in zip(bodies, alone, burst, strict=True)
        if x != y
    ]
    assert mismatches == []
    unsteered = {
        b["messages"][0]["content"]: a for b, a in zip(bodies, alone, strict=True) if "steering" not in b
    }
    changed = {
        b["steering"][0]["artifact"]
        for b, a in zip(bodies, alone, strict=True)
        if b.get("steering") and a != unsteered[b["messages"][0]["content"]]
    }
    assert changed == set(s.names), f"steerings that changed no answer: {set(s.names) - changed}"
