"""The same steered greedy generation written in nnsight and in TransformerLens, for benchmarks/steering.py.

    >>> fns, skipped = baselines(model, inputs, 32, {"add_one_layer": (v, [15])})
    >>> ids = fns["nnsight_add_one_layer"]()        # [B, T + 32] token ids, v added after layer 15

Each function generates ``new_tokens`` greedy tokens from ``inputs`` (``input_ids``, ``attention_mask``)
the way a user of that library writes it: nnsight's ``generate`` tracing with an edit at every step
(``tracer.iter``), TransformerLens 4.3's ``TransformerBridge.generate`` under ``hooks``. Each library
gets ``<library>_plain`` (no edit: its own cost) and ``<library>_<name>`` per addition ``name: (vector,
layers)``: ``vector`` added to those decoder layers' outputs at every position and step, which is
what ``AddDirection(vector, layers, alpha=|vector|)`` does, so their tokens can be checked against
interp's. A library that is not installed, or fails on the model, is left out and named in
``skipped``; a function that had to run in another way than usual says so in ``fn.note``.
"""

from __future__ import annotations

import torch

from interp.backends import structural_copy
from interp.errors import InputError


def baselines(model, inputs: dict, new_tokens: int, additions: dict, libraries=None) -> tuple[dict, dict]:
    """``({name: fn() -> token ids}, {library: why it was skipped})`` for the named libraries (all
    of :data:`LIBRARIES` by default)."""
    fns, skipped = {}, {}
    for lib in LIBRARIES if libraries is None else libraries:
        try:
            run = LIBRARIES[lib](model, inputs, new_tokens)
        except (ImportError, InputError) as e:  # an optional extra missing on this machine
            skipped[lib] = f"{type(e).__name__}: {e}"[:300]
            continue
        mine = {f"{lib}_plain": run({})}
        for name, (vector, layers) in additions.items():
            v = vector.to(model.device, model.dtype)
            mine[f"{lib}_{name}"] = run({i: v for i in layers})
        try:  # one run each: a library version that fails here is reported, not fatal to the benchmark
            for fn in mine.values():
                fn()
        except Exception as e:  # noqa: BLE001
            skipped[lib] = f"failed on this model: {type(e).__name__}: {e}"[:300]
            continue
        fns.update(mine)
    return fns, skipped


def counterpart(name: str) -> str:
    """The interp function a library's function is compared with: ``nnsight_add_one_layer`` ->
    ``add_one_layer``, ``transformer_lens_plain`` -> ``plain``."""
    for lib in LIBRARIES:
        if name.startswith(lib + "_"):
            return name[len(lib) + 1 :]
    raise ValueError(f"{name!r} is not a library baseline")


def _nnsight(model, inputs, new_tokens):
    from nnsight import TransformersModel

    # on a parameter-sharing copy: nnsight leaves its dispatcher in every module it ran through, which
    # would slow the plain and interp runs timed beside it
    clone = structural_copy(model.model)
    wrapped = TransformersModel(clone, task="text-generation", tokenizer=model.tokenizer)
    stack = wrapped.model.layers
    gen = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=model.tokenizer.pad_token_id,
    )

    def run(add: dict):
        def fn():
            with torch.inference_mode(), wrapped.generate(dict(inputs), **gen) as tracer:
                # one forward per new token: the prefill, then new_tokens - 1 decode steps
                for _ in tracer.iter[:new_tokens]:
                    for i in sorted(add):  # in the order the model reaches them
                        out = stack[i].output
                        out = out[0] if isinstance(out, tuple) else out
                        out[:] += add[i]
                ids = tracer.result.save()
            return ids

        return fn

    return run


def _transformer_lens(model, inputs, new_tokens):
    from interp.backends.transformer_lens_backend import bridge

    br = bridge(model)
    gen = dict(
        max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False, return_type="tokens", verbose=False
    )

    def generate(kv_cache: bool):
        return br.generate(
            inputs["input_ids"], attention_mask=inputs["attention_mask"], use_past_kv_cache=kv_cache, **gen
        )

    # TransformerLens 4.3's cached generate continues the cache wrongly under transformers >= 5.24
    # (which renamed past_key_values to cache): its tokens differ from its own uncached generate's
    # after the first one. Where they do, the baseline runs without the cache, as a user must, and says so.
    with torch.inference_mode():
        kv_cache = torch.equal(generate(True), generate(False))
    note = (
        None
        if kv_cache
        else "its KV-cached generate is wrong with this transformers: timed without the cache"
    )

    def run(add: dict):
        hooks = [(f"blocks.{i}.hook_resid_post", lambda act, hook, v=v: act + v) for i, v in add.items()]

        def fn():
            with torch.inference_mode(), br.hooks(fwd_hooks=hooks):
                return generate(kv_cache)

        fn.note = note
        return fn

    return run


LIBRARIES = {"nnsight": _nnsight, "transformer_lens": _transformer_lens}  # name -> builder
