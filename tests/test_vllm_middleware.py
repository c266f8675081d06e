"""interp.vllm.middleware: the ``steering`` body field on vLLM's server, checked and rewritten for the
engine (no vLLM needed: a stand-in app shows what vLLM would receive)."""

import asyncio
import json

import httpx
import pytest
import torch

from interp.steer import AddDirection, Conditional, SteeringArtifact
from interp.testing import tiny_model
from interp.vllm import cache_salt
from interp.vllm.middleware import SteeringField


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    path = tmp_path_factory.mktemp("artifacts")
    model = tiny_model("llama")
    d = torch.ones(model.d_model)
    SteeringArtifact.create(model, [AddDirection(d, [1], 1.0)]).save(path / "add.safetensors")
    SteeringArtifact.create(model, [AddDirection(d, [1], 1.0, "last")]).save(path / "last.safetensors")
    SteeringArtifact.create(model, [Conditional(d, 1, 0.0, [AddDirection(d, [2], 1.0)])]).save(
        path / "gate.safetensors"
    )
    return path


def _post(artifacts, path: str, body: dict):
    async def echo(scope, receive, send):  # what vLLM's server would read
        message = await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": message["body"]})

    async def go():
        app = SteeringField(echo, artifacts=str(artifacts))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            return await c.post(path, json=body)

    return asyncio.run(go())


def test_the_steering_field_becomes_vllm_xargs_and_a_cache_salt(artifacts):
    r = _post(
        artifacts, "/v1/chat/completions", {"model": "m", "steering": [{"artifact": "add", "strength": 0.5}]}
    )
    sent = r.json()
    assert "steering" not in sent
    assert json.loads(sent["vllm_xargs"]["interp_steering"]) == [{"artifact": "add", "strength": 0.5}]
    assert sent["cache_salt"] == cache_salt([("add", 0.5)], artifacts)  # the steering's own: shared
    # a steering whose edits depend on where the prompt ends gets a salt no other request reuses
    salts = {
        _post(artifacts, "/v1/completions", {"steering": ["last"]}).json()["cache_salt"] for _ in range(2)
    }
    assert len(salts) == 2 and all(x.startswith("interp-once-") for x in salts)
    # a request's own salt and other xargs are kept; no steering field: the body is untouched
    r = _post(
        artifacts, "/v1/completions", {"steering": ["add"], "cache_salt": "mine", "vllm_xargs": {"a": 1}}
    )
    assert r.json()["cache_salt"] == "mine" and r.json()["vllm_xargs"]["a"] == 1
    assert _post(artifacts, "/v1/completions", {"prompt": "hi"}).json() == {"prompt": "hi"}
    assert "vllm_xargs" not in _post(artifacts, "/v1/completions", {"steering": []}).json()


def test_bad_steering_gets_openai_shaped_errors(artifacts):
    r = _post(artifacts, "/v1/chat/completions", {"steering": [{"artifact": "nope"}]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert "unknown steering artifact 'nope'" in r.json()["error"]["message"]
    r = _post(artifacts, "/v1/chat/completions", {"steering": [{"artifact": "add", "strength": "high"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "steering"
    r = _post(artifacts, "/v1/chat/completions", {"steering": {"artifact": "add"}})
    assert r.status_code == 400
    r = _post(artifacts, "/v1/chat/completions", {"steering": ["gate"]})
    assert r.status_code == 400 and "conditional steering" in r.json()["error"]["message"]
    # a steering passed through vllm_xargs directly is checked too
    r = _post(
        artifacts, "/v1/completions", {"vllm_xargs": {"interp_steering": json.dumps([{"artifact": "nope"}])}}
    )
    assert r.status_code == 404
