"""The OpenAI-compatible HTTP API (FastAPI): ``/v1/chat/completions`` (streaming or not),
``/v1/models``, ``/v1/steering`` (the artifacts this server can apply) and ``/health``.

    >>> app = create_app(model, ArtifactStore.from_dir(model, "artifacts"), ServeConfig(model="organism-vl"))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)

Per-request steering is an extra body field (the ``openai`` client passes it with ``extra_body``)::

    {"model": "organism-vl", "messages": [...], "steering": [{"artifact": "refusal", "strength": 0.5}]}

``"steering": []`` turns the server's default steering off for that request. Every failure is a JSON
error (OpenAI's shape) with a 4xx status that names the cause; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from interp.errors import InterpError
from interp.serve.config import ServeConfig
from interp.serve.engine import Engine, Result
from interp.serve.errors import APIError
from interp.serve.messages import parse_chat
from interp.serve.store import ArtifactStore


def create_app(model, store: ArtifactStore, config: ServeConfig) -> FastAPI:
    engine = Engine(model, store, config)
    default = store.parse_default(config.default_steering)
    model_id = config.model

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="interp", lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(APIError)
    async def api_error(request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):
        return JSONResponse(
            APIError(500, f"internal error ({type(e).__name__}).", "server_error").body(), 500
        )

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if config.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
                e = APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'.",
                    "authentication_error",
                )
                return JSONResponse(e.body(), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health():
        body = {"status": "ok", "model": model_id, "pending": engine.pending, "batches": engine.batches}
        if engine.fold_error:  # still serving, with hooks
            body["fold_error"] = engine.fold_error
        return body

    @app.get("/v1/models")
    async def models():
        card = {"id": model_id, "object": "model", "created": 0, "owned_by": "interp"}
        return {"object": "list", "data": [card]}

    @app.get("/v1/steering")
    async def steering():
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "steering_artifact", "method": store.methods[n]} for n in store.names
            ],
            "default": [{"artifact": n, "strength": s} for n, s in default],
            "unavailable": [{"id": n, "reason": why} for n, why in sorted(store.unservable.items())],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _read_json(request, config.max_body_bytes)
        if body.get("model") != model_id:
            raise APIError(
                404,
                f"model {body.get('model')!r} is not served here; this server serves {model_id!r}.",
                "not_found_error",
                "model",
            )
        try:
            req = await run_in_threadpool(parse_chat, body, model, store, config, default)
        except InterpError as e:
            raise APIError(400, str(e)) from e
        job = engine.submit(req, asyncio.get_running_loop())
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        steering = [{"artifact": n, "strength": s} for n, s in req.steering]
        if not req.stream:
            result = await job.result()
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                    }
                ],
                "usage": _usage(result),
                "steering": steering,
            }

        def chunk(delta: dict, finish=None, **extra) -> str:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        async def sse():
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for kind, value in job.events():
                    if kind == "delta":
                        yield chunk({"content": value})
                    else:
                        yield chunk({}, value.finish_reason, steering=steering)
                        if req.include_usage:
                            data = {
                                "id": cid,
                                "object": "chat.completion.chunk",
                                "created": created,
                                "model": model_id,
                                "choices": [],
                                "usage": _usage(value),
                            }
                            yield f"data: {json.dumps(data)}\n\n"
            except APIError as e:  # after the headers went out, an error is an SSE event
                yield f"data: {json.dumps(e.body())}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def _usage(result: Result) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _read_json(request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes; the limit is {limit}.", "request_too_large")
    chunks, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise APIError(413, f"request body larger than {limit} bytes.", "request_too_large")
        chunks.append(part)
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON ({e}).") from e
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object.")
    return body
