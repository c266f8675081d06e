"""OpenAI chat-completion requests → one prompt string + its images, with every check a public
endpoint needs (roles, content parts, data-URL images, sizes, sampling options).

    >>> req = parse_chat(body, model, store, config, default_steering=())
    >>> req.text, req.images, req.max_tokens, req.steering
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass

from interp.inputs import format_prompt
from interp.serve.config import ServeConfig
from interp.serve.errors import APIError
from interp.serve.store import ArtifactStore, Steering

ROLES = ("system", "user", "assistant")
UNSUPPORTED = ("tools", "functions", "response_format", "logit_bias", "logprobs")


@dataclass
class ChatRequest:
    text: str  # the formatted prompt (chat template applied, image placeholders in place)
    images: list
    max_tokens: int
    stream: bool
    steering: Steering
    include_usage: bool = False
    question: str = ""  # the last user message's text: what per-input (retrieval) steering rewrites


def decode_image(url, config: ServeConfig, where: str):
    """A ``data:image/...;base64,`` URL → a loaded RGB PIL image (size limits checked before decoding)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or not url.startswith("data:"):
        raise APIError(
            400,
            f"{where}: images must be data URLs (data:image/png;base64,...); this server fetches nothing "
            "from the network.",
            param="messages",
        )
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise APIError(
            400, f"{where}: expected a base64 image data URL, got {header[:40]!r}.", param="messages"
        )
    if len(payload) * 3 // 4 > config.max_image_bytes:
        raise APIError(
            413, f"{where}: image larger than {config.max_image_bytes} bytes.", type_="request_too_large"
        )
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise APIError(400, f"{where}: the image's base64 does not decode ({e}).", param="messages") from e
    try:
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
        if w * h > config.max_image_pixels:
            raise APIError(
                413,
                f"{where}: image of {w}x{h} pixels; the limit is {config.max_image_pixels} pixels.",
                type_="request_too_large",
            )
        img.load()
        return img.convert("RGB")
    except APIError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise APIError(
            400, f"{where}: not a readable image ({type(e).__name__}: {e}).", param="messages"
        ) from e


def _parts(content, k: int, config: ServeConfig, model, role: str) -> list[tuple[str, object]]:
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, list):
        raise APIError(400, f"messages[{k}].content must be a string or a list of parts.", param="messages")
    out = []
    for j, part in enumerate(content):
        where = f"messages[{k}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            out.append(("text", part["text"]))
        elif kind == "image_url":
            if model.adapter.kind == "text" or model.processor is None:
                raise APIError(
                    400,
                    f"{where} is an image but {model.name} is a text-only model. Fix: send text only, or "
                    "serve a vision-language model (--model organism-vl).",
                    param="messages",
                )
            if role != "user":
                raise APIError(400, f"{where}: only user messages may carry images.", param="messages")
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            out.append(("image", decode_image(url, config, where)))
        else:
            raise APIError(
                400,
                f"{where}: parts are {{'type': 'text', 'text': ...}} or {{'type': 'image_url', ...}}.",
                param="messages",
            )
    return out


def _number(body: dict, key: str, default, lo, hi, integer: bool = False):
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (integer and value != int(value)) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise APIError(400, f"'{key}' must be {kind} in [{lo}, {hi}], got {value!r}.", param=key)
    return int(value) if integer else float(value)


def parse_chat(
    body, model, store: ArtifactStore, config: ServeConfig, default_steering: Steering
) -> ChatRequest:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list.", param="messages")
    for key in UNSUPPORTED:
        if body.get(key):
            raise APIError(400, f"'{key}' is not supported by this server.", param=key)
    if _number(body, "n", 1, 1, 1, integer=True) != 1:
        raise APIError(400, "'n' must be 1.", param="n")
    if _number(body, "temperature", 0.0, 0.0, 2.0) != 0.0:
        raise APIError(
            400,
            "this server decodes greedily (deterministic, so steered answers are reproducible); set "
            "temperature to 0 or leave it out.",
            param="temperature",
        )
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number(
        {"max_tokens": limit}, "max_tokens", config.default_max_tokens, 1, config.max_tokens, True
    )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    steering = (
        store.resolve(body["steering"])
        if "steering" in body and body["steering"] is not None
        else default_steering
    )

    vision = model.adapter.kind != "text" and model.processor is not None
    chat, images, texts = [], [], []
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise APIError(400, f"messages[{k}] needs a role among {ROLES}.", param="messages")
        parts = _parts(m.get("content"), k, config, model, m["role"])
        texts.append("\n".join(v for kind, v in parts if kind == "text"))
        images += [v for kind, v in parts if kind == "image"]
        if len(images) > config.max_images:
            raise APIError(
                413, f"more than {config.max_images} images in one request.", type_="request_too_large"
            )
        if vision:
            content = [
                {"type": "image"} if kind == "image" else {"type": "text", "text": v} for kind, v in parts
            ]
        else:
            content = "\n".join(v for _, v in parts)
        chat.append({"role": m["role"], "content": content})
    if chat[-1]["role"] != "user":
        raise APIError(400, "the last message must come from the user.", param="messages")
    per_input = store.per_input(steering)
    if len(images) > 1 and per_input:
        raise APIError(
            400,
            f"steering {per_input} is retrieval-guided: it describes one image per request, "
            f"and this request has {len(images)}. Fix: send one image, or steer with another artifact.",
            param="steering",
        )
    owner = model.processor if model.processor is not None else model.tokenizer
    if getattr(owner, "chat_template", None) is not None:
        text = owner.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    else:  # raw prompt: one user turn (+ a system turn)
        roles = [m["role"] for m in chat]
        if roles not in (["user"], ["system", "user"]):
            raise APIError(
                400, f"{model.name} has no chat template: send one user message (and a system one)."
            )
        system = texts[0] if roles[0] == "system" else None
        text = format_prompt(model, texts[-1], len(images), False, system)
    return ChatRequest(
        text, images, max_tokens, stream, steering, bool(options.get("include_usage")), question=texts[-1]
    )
