"""Serve a model behind an OpenAI-compatible API with per-request steering.

$ interp serve --model organism-vl --artifacts runs/artifacts --default-steering refusal:0.5 --port 8000

>>> from openai import OpenAI
>>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")
>>> client.chat.completions.create(model="organism-vl", messages=[...],
...                                extra_body={"steering": [{"artifact": "refusal", "strength": 0.5}]})
"""

from interp.serve.config import ServeConfig
from interp.serve.engine import Engine, Result
from interp.serve.errors import APIError
from interp.serve.launch import serve_process
from interp.serve.messages import ChatRequest, parse_chat
from interp.serve.store import ArtifactStore

__all__ = [
    "APIError",
    "ArtifactStore",
    "ChatRequest",
    "Engine",
    "Result",
    "ServeConfig",
    "create_app",
    "parse_chat",
    "serve_process",
]


def __getattr__(name: str):
    """``create_app`` imports FastAPI (the ``serve`` extra) on first use, so the engine, the store and
    the benchmarks that time them run where only torch and transformers are installed."""
    if name == "create_app":
        try:
            from interp.serve.app import create_app
        except ImportError as e:
            from interp.errors import InputError

            raise InputError(
                f"the HTTP server needs FastAPI, which is not installed ({e}). "
                'Fix: pip install "interp[serve]".'
            ) from e
        return create_app
    raise AttributeError(f"module 'interp.serve' has no attribute {name!r}")
