"""The one place that knows how transformers versions name the KV cache.

    >>> model.model(**batch, **{cache_kwarg(model.model): cache}, use_cache=True)
    >>> cache = output_cache(out)                 # out.cache (>= 5.24) or out.past_key_values
    >>> past = cached_length(forward_kwargs)      # tokens already in the cache a forward continues

transformers 5.24 renamed ``past_key_values`` to ``cache`` (forward argument, ``generate``'s model
inputs, output field; the old name warns until 5.40). interp reads and passes the cache through
these helpers so that the hooks tell prompt from generated tokens under either name: a hook that
looked only for ``past_key_values`` took every decode step of an unpadded batch for a new prompt
(issue 23).
"""

from __future__ import annotations

import inspect
from functools import cache as _memo

# names a forward may receive the cache under, newest first (``cache_params``: state-space models)
CACHE_NAMES = ("cache", "past_key_values", "cache_params")


@_memo
def _cache_kwarg_of(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return next((name for name in CACHE_NAMES if name in params), "past_key_values")


def cache_kwarg(model) -> str:
    """The name ``model``'s forward takes the KV cache under (``cache`` from transformers 5.24 on)."""
    return _cache_kwarg_of(type(model))


def forward_cache(kwargs: dict):
    """The KV cache a forward was given, under whichever name (None without one)."""
    for name in CACHE_NAMES:
        value = kwargs.get(name)
        if value is not None:
            return value
    return None


def cached_length(kwargs: dict) -> int | None:
    """Tokens already in the cache this forward continues; None when it has no cache it can read."""
    cache = forward_cache(kwargs)
    if cache is None:
        return None
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    if isinstance(cache, (tuple, list)) and cache and isinstance(cache[0], (tuple, list)) and cache[0]:
        return int(cache[0][0].shape[-2])  # legacy tuple of (key, value) per layer: [B, H, T, Dh]
    return None


def output_cache(output):
    """The cache a forward returned (``output.cache`` from 5.24 on, ``past_key_values`` before)."""
    fields = getattr(output, "__dataclass_fields__", {})
    if "cache" in fields:
        return output.cache
    return getattr(output, "past_key_values", None)


@_memo
def output_cache_field() -> str:
    """The output dataclass field that holds the returned cache in this transformers version."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
