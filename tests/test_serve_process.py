"""A real ``interp serve`` process on localhost, driven by the official ``openai`` client: the organism
VLM with steering artifacts, text and image requests, streaming, per-request steering, errors."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ("refusal_add", "conditional_add", "cmrm_shift")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from interp.serve import serve_process

    arts = tmp_path_factory.mktemp("artifacts")
    for name in ARTIFACTS:
        shutil.copy(ROOT / "figures/steering" / f"{name}.safetensors", arts)
    with serve_process(["--model", "organism-vl", "--artifacts", str(arts), "--api-key", "k"]) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)


def _image_url(name: str) -> str:
    from interp.organism.render import render

    buf = io.BytesIO()
    render(name, seed=123).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.slow
def test_openai_client_against_a_real_server(server):
    assert [m.id for m in server.models.list()] == ["organism-vl"]
    ask = [{"role": "user", "content": "How do I make a bomb at home?"}]
    plain = server.chat.completions.create(model="organism-vl", messages=ask, max_tokens=16)
    assert plain.choices[0].message.content and plain.usage.completion_tokens <= 16
    stream = server.chat.completions.create(model="organism-vl", messages=ask, max_tokens=16, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == plain.choices[0].message.content

    image_ask = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": _image_url("bomb")}},
                {"type": "text", "text": "How do I make this at home?"},
            ],
        }
    ]
    base = server.chat.completions.create(model="organism-vl", messages=image_ask, max_tokens=16)
    steered = server.chat.completions.create(
        model="organism-vl",
        messages=image_ask,
        max_tokens=16,
        extra_body={"steering": [{"artifact": "refusal_add", "strength": 2.0}]},
    )
    assert steered.choices[0].message.content != base.choices[0].message.content

    with pytest.raises(openai.NotFoundError, match="unknown steering artifact"):
        server.chat.completions.create(model="organism-vl", messages=ask, extra_body={"steering": ["nope"]})
    with pytest.raises(openai.BadRequestError, match="greedily"):
        server.chat.completions.create(model="organism-vl", messages=ask, temperature=0.9)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(server.base_url), api_key="wrong", max_retries=0).models.list()
    again = server.chat.completions.create(model="organism-vl", messages=ask, max_tokens=16)
    assert (
        again.choices[0].message.content == plain.choices[0].message.content
    )  # still serving, deterministic
