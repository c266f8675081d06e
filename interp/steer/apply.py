"""Apply interventions to forward passes and to ``generate`` (with its KV cache).

    >>> with interp.steer.steer(model, [AddDirection(refusal, layers=[12], alpha=4.0)]):
    ...     answers = model.generate(model.encode(prompts))
    >>> answers = interp.steer.generate(vlm, prompts, images=imgs, interventions=[RetrievalGuided(range(10, 17))])

:func:`steer` takes constant interventions (their edits do not depend on the input); per-input ones
(:class:`RetrievalGuided`) need the batch, which :func:`generate` and :func:`last_logits` provide.
The hooks are removed when the block ends, also on errors.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from interp.errors import InputError
from interp.steer.interventions import RetrievalMarker


def edits_for(model, interventions) -> list:
    out = []
    for item in interventions:
        if isinstance(item, RetrievalMarker):
            raise InputError(
                f"{type(item).__name__} builds its edits from the batch; use interp.steer.generate(...) or "
                "interp.steer.last_logits(...) with prompts and images instead of steer()."
            )
        out += item.edits(model)
    return out


@contextmanager
def steer(model, interventions):
    """Register the interventions' hooks for the block; yields the :class:`interp.hooks.HookRun`."""
    with model.hooks(edits=edits_for(model, interventions)) as run:
        yield run


def _batch_edits(model, interventions, prompts, images) -> tuple[list, dict]:
    edits, info = [], {}
    for item in interventions:
        if isinstance(item, RetrievalMarker):
            e, meta = item.prepare(model, prompts, images)
            edits += e
            info.update(meta)
        else:
            edits += item.edits(model)
    return edits, info


def generate(
    model,
    prompts: list[str],
    images=None,
    interventions=(),
    max_new_tokens: int = 32,
    batch_size: int = 16,
    return_info: bool = False,
):
    """Greedy answers with the interventions applied (per-input ones prepared batch by batch)."""
    answers, infos = [], []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        imgs = None if images is None else images[i : i + batch_size]
        edits, info = _batch_edits(model, interventions, chunk, imgs)
        with model.hooks(edits=edits):
            answers += model.generate(model.encode(chunk, images=imgs), max_new_tokens=max_new_tokens)
        infos.append(info)
    return (answers, infos) if return_info else answers


def last_logits(
    model, prompts: list[str], images=None, interventions=(), batch_size: int = 16
) -> torch.Tensor:
    """Next-token logits [N, V] at the last prompt position, steered."""
    from interp.locate.patching import _last_logits

    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        imgs = None if images is None else images[i : i + batch_size]
        edits, _ = _batch_edits(model, interventions, chunk, imgs)
        with model.hooks(edits=edits), torch.inference_mode():
            out.append(_last_logits(model, model.encode(chunk, images=imgs).inputs).float().cpu())
    return torch.cat(out)
