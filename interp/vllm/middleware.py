"""The ``steering`` body field on vLLM's OpenAI-compatible server: checked, then handed to the engine.

    $ INTERP_VLLM_ARTIFACTS=runs/artifacts vllm serve runs/model --enforce-eager \\
          --middleware interp.vllm.middleware.SteeringField          # what `interp serve --engine vllm` runs
    >>> client.chat.completions.create(..., extra_body={"steering": [{"artifact": "refusal_add", "strength": 0.5}]})

vLLM's server ignores body fields it does not know, so without this a ``steering`` field would be
dropped without a word. This ASGI middleware reads it on ``/v1/chat/completions`` and
``/v1/completions``, checks it against the served artifacts (an unknown name is a 404, a bad strength
or a malformed list a 400, in OpenAI's error shape, as ``interp serve`` answers), and rewrites the
request for vLLM: the steering goes into ``vllm_xargs`` (which vLLM passes to the engine as
``SamplingParams.extra_args``, flat values only, so as a JSON string) and, unless the request sets
one, ``cache_salt`` is set by :func:`interp.vllm.cache_salt` (a steered prompt's KV cache is never
reused by a request it was not computed for). A request that sets ``vllm_xargs["interp_steering"]`` itself is checked the
same way.
"""

from __future__ import annotations

import json
import os

from interp.errors import InputError
from interp.vllm import cache_salt
from interp.vllm.names import ENV, KEY

PATHS = ("/v1/chat/completions", "/v1/completions")


class SteeringField:
    """ASGI middleware (see the module docstring)."""

    def __init__(self, app, artifacts: str | None = None):
        self.app = app
        self.directory = artifacts or os.environ.get(ENV)
        self._artifacts = None

    @property
    def artifacts(self):
        if self._artifacts is None:
            from interp.vllm.worker import Artifacts

            if not self.directory:
                raise InputError(
                    "the steering field needs the served artifact directory: set INTERP_VLLM_ARTIFACTS."
                )
            self._artifacts = Artifacts.from_dir(self.directory)
        return self._artifacts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = rewrite(body, self.artifacts)
        except _Refused as e:
            return await _error(send, e.status, e.message)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        return await self.app({**scope, "headers": headers}, replay, send)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def rewrite(body: bytes, artifacts) -> bytes:
    """The request body with its ``steering`` field checked and moved where vLLM reads it."""
    try:
        data = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return body  # not JSON: vLLM answers it
    if not isinstance(data, dict):
        return body
    xargs = data.get("vllm_xargs") or {}
    items = data.pop("steering", None)
    if items is None and isinstance(xargs, dict) and KEY in xargs:
        items = xargs[KEY]
    if items is None:
        return body
    try:
        steering = artifacts.resolve(items)
    except InputError as e:
        status = 404 if "unknown steering artifact" in str(e) else 400
        raise _Refused(status, str(e)) from None
    if not isinstance(xargs, dict):
        raise _Refused(400, "vllm_xargs must be an object.")
    norm = [{"artifact": name, "strength": s} for name, s in steering]
    if norm:
        xargs[KEY] = json.dumps(norm)
        data["vllm_xargs"] = xargs
        data.setdefault("cache_salt", cache_salt(norm, artifacts))
    else:
        xargs.pop(KEY, None)
    return json.dumps(data).encode()


async def _error(send, status: int, message: str) -> None:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    payload = json.dumps(
        {"error": {"message": message, "type": kind, "param": "steering", "code": status}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
