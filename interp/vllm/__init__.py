"""interp's steering inside vLLM: per request, on vLLM's own batches (:mod:`interp.vllm.worker`).

    $ INTERP_VLLM_ARTIFACTS=runs/artifacts vllm serve runs/model --enforce-eager
    >>> params = SamplingParams(temperature=0.7, extra_args=interp.vllm.steering([("refusal_add", 0.5)]))
    >>> llm.generate([{"prompt": p, "cache_salt": interp.vllm.cache_salt(steer)}], params)

Each request names its steering in ``SamplingParams.extra_args["interp_steering"]``; the plugin
(:mod:`interp.vllm.plugin`, loaded by vLLM from interp's entry point) applies it inside the worker's
forward, to that request's tokens only. A steered prompt's KV cache must not be reused by a request
it was not computed for: give each steered request the ``cache_salt`` that :func:`cache_salt` returns
(the steering's own, shared by requests with that steering, when its edits do not depend on where the
prompt ends; otherwise one of the request's own).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid

from interp.vllm.names import ENV, KEY


def steering(items, artifacts=None) -> dict:
    """``extra_args`` for a request steered by ``items``: ``[(name, strength), ...]`` or
    ``[{"artifact": name, "strength": s}, ...]``, checked against the artifact directory the engine
    serves (``artifacts``, by default ``INTERP_VLLM_ARTIFACTS``): an unknown name, a strength out of
    range or an artifact vLLM cannot run raises here, before the request is sent (inside the engine
    a bad steering can only be logged)."""
    norm = _normalise(items)
    directory = artifacts or os.environ.get(ENV)
    if norm and directory:
        _served(str(directory)).resolve(norm)
    return {KEY: norm}


@functools.lru_cache(maxsize=4)
def _served(directory: str):
    from interp.vllm.worker import Artifacts

    return Artifacts.from_dir(directory)


def cache_salt(items, artifacts=None) -> str | None:
    """The prefix-cache salt of a request with this steering: None for no steering (the shared,
    unsalted cache); the steering's own salt when its artifacts edit every prompt prefix alike
    (:func:`interp.vllm.worker.prefix_stable`), so that requests with the same steering share prefixes;
    otherwise (``last``, ``generated`` or ``prompt`` positions, a gate, image requests only, or
    artifacts that cannot be read) a salt of the request's own, which no other request reuses.
    ``artifacts``: the served directory (default ``INTERP_VLLM_ARTIFACTS``) or an
    :class:`~interp.vllm.worker.Artifacts`."""
    norm = _normalise(items)
    if not norm:
        return None
    if artifacts is None:
        artifacts = os.environ.get(ENV)
    if artifacts is not None and not hasattr(artifacts, "shares_prefixes"):
        artifacts = _served(str(artifacts))
    pairs = tuple((x["artifact"], x["strength"]) for x in norm)
    if artifacts is None or not artifacts.shares_prefixes(pairs):
        return "interp-once-" + uuid.uuid4().hex
    return "interp-" + hashlib.sha256(json.dumps(norm, sort_keys=True).encode()).hexdigest()[:24]


def _normalise(items) -> list[dict]:
    out = []
    for item in items or []:
        if isinstance(item, (tuple, list)):
            name, strength = item
            item = {"artifact": name, "strength": float(strength)}
        elif isinstance(item, str):
            item = {"artifact": item, "strength": 1.0}
        out.append({"artifact": item["artifact"], "strength": float(item.get("strength", 1.0))})
    return out
