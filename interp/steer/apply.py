"""Apply interventions to forward passes and to ``generate`` (with its KV cache).

    >>> with interp.steer.steer(model, [AddDirection(refusal, layers=[12], alpha=4.0)]):
    ...     answers = model.generate(model.encode(prompts))
    >>> answers = interp.steer.generate(vlm, prompts, images=imgs, interventions=[RetrievalGuided(range(10, 17))])
    >>> with interp.steer.steer(model, [AblateDirection(refusal)], fold=True):   # in the weights, no hooks
    ...     answers = model.generate(model.encode(prompts))

:func:`steer` takes constant interventions (their edits do not depend on the input); per-input ones
(:class:`RetrievalGuided`) need the batch, which :func:`generate` and :func:`last_logits` provide.
The hooks are removed when the block ends, also on errors.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch

from interp.errors import InputError
from interp.inputs import groups
from interp.steer.folding import additions_by_layer, folded_ablation, folded_addition
from interp.steer.interventions import AblateDirection, AddDirection, RetrievalMarker, ShiftToText


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
def folding(model, interventions, fold: bool):
    """With ``fold``, each ``AblateDirection`` (``layers="all"``, ``positions="all"``) is folded into
    the weights for the block (:func:`interp.steer.folding.folded_ablation`), and each constant addition
    at every position (``AddDirection``, ``ShiftToText`` with ``positions="all"``) into MLP biases
    (:func:`interp.export.bake.folded_addition`); yields the interventions left to hook (all of them
    without ``fold``)."""
    items = list(interventions)
    folded = [item for item in items if fold and isinstance(item, AblateDirection)]
    added = [
        item
        for item in items
        if fold and isinstance(item, (AddDirection, ShiftToText)) and item.positions == "all"
    ]
    for item in folded:
        if not item.everywhere:
            raise InputError(
                f"fold=True folds AblateDirection(layers='all', positions='all') into the weights; this "
                f"one has layers={item.layers!r}, positions={item.positions!r}, which no weight edit "
                "does. Fix: steer it without fold=True (hooks)."
            )
    with ExitStack() as stack:
        if folded:
            stack.enter_context(folded_ablation(model, [item.direction for item in folded]))
        if added:
            stack.enter_context(folded_addition(model, additions_by_layer(model, added)))
        yield [item for item in items if not any(item is f for f in folded + added)]


@contextmanager
def steer(model, interventions, fold: bool = False):
    """Register the interventions' hooks for the block; yields the :class:`interp.hooks.HookRun`.

    ``fold=True`` folds each ``AblateDirection`` (``layers="all"``, ``positions="all"``) into the
    weights for the block instead of hooking it (:func:`interp.steer.folding.folded_ablation`: the same
    edit with no per-token cost, for the memory of an edited copy of the stream's writers; text
    models), and each constant addition at every position (``AddDirection``, ``ShiftToText`` with
    ``positions="all"``) into the MLP down projections' biases
    (:func:`interp.export.bake.folded_addition`: free, also for VLMs); the model's own weights are
    back on exit. The other interventions are hooked."""
    with folding(model, interventions, fold) as rest, model.hooks(edits=edits_for(model, rest)) as run:
        yield run


def _batch_edits(model, interventions, prompts, images, per_input: bool = True) -> tuple[list, dict]:
    edits, info = [], {}
    for item in interventions:
        if isinstance(item, RetrievalMarker):
            if per_input:
                e, meta = item.prepare(model, prompts, images)
                edits += e
                info.update(meta)
        else:
            edits += item.edits(model)
    return edits, info


def prepared_batches(model, prompts: list[str], images, interventions, batch_size: int = 16):
    """``(rows, batch, edits, info)`` per batch: encoded once, the interventions' edits built once
    (per-input ones retrieve here), for any number of steered passes over the same batch. A list
    mixing image and text-only prompts (``None`` entries) is run as separate batches of each kind
    (``rows``: the batch's prompt indices); per-input interventions, which describe an image, leave
    its text-only rows to the constant ones."""
    for rows, chunk, imgs in groups(prompts, images, batch_size):
        per_input = images is None or imgs is not None  # without any images, per-input ones say so
        edits, info = _batch_edits(model, interventions, chunk, imgs, per_input)
        if images is not None:
            info["rows"] = rows
        yield rows, model.encode(chunk, images=imgs), edits, info


def generate(
    model,
    prompts: list[str],
    images=None,
    interventions=(),
    max_new_tokens: int = 32,
    batch_size: int = 16,
    return_info: bool = False,
    fold: bool = False,
    **generate_kwargs,
):
    """Answers, in prompt order, with the interventions applied (per-input ones prepared batch by
    batch; ``images`` may mix images and ``None``). Greedy unless ``generate_kwargs`` (passed to
    Hugging Face ``generate``) say otherwise: ``do_sample=True, temperature=0.7``, ``num_beams=4``;
    with ``num_return_sequences=k`` each answer is a list of k strings. Per-row edits (what a
    per-input intervention builds) follow the copies ``generate`` makes of each prompt for beams and
    returned sequences. ``return_info``: also each batch's record of what a per-input intervention
    retrieved (with its ``rows`` when images were given). ``fold``: as in :func:`steer`, full
    ablations folded into the weights once for the whole call.

        >>> generate(vlm, prompts, imgs, [RetrievalGuided(range(10, 17))], do_sample=True, top_p=0.9)
    """
    copies, returned = generation_copies(model, generate_kwargs)
    answers, infos = [None] * len(prompts), []
    with folding(model, interventions, fold) as rest:
        for rows, batch, edits, info in prepared_batches(model, prompts, images, rest, batch_size):
            with model.hooks(edits=[e.repeat_rows(copies) for e in edits]):
                new = model.generate(batch, max_new_tokens=max_new_tokens, **generate_kwargs)
            for j, i in enumerate(rows):
                answers[i] = new[j] if returned == 1 else new[j * returned : (j + 1) * returned]
            infos.append(info)
    return (answers, infos) if return_info else answers


def generation_copies(model, generate_kwargs: dict) -> tuple[int, int]:
    """``(rows per prompt in the forwards, sequences returned per prompt)`` of a ``generate`` call:
    Hugging Face repeats each prompt ``max(num_beams, num_return_sequences)`` times."""
    config = generate_kwargs.get("generation_config") or getattr(model.model, "generation_config", None)

    def setting(name: str) -> int:
        value = generate_kwargs.get(name, getattr(config, name, None))
        value = 1 if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}={value!r}; it counts sequences, an int >= 1.")
        return value

    beams, returned = setting("num_beams"), setting("num_return_sequences")
    if returned > beams and beams > 1:
        raise InputError(
            f"num_return_sequences={returned} is more than num_beams={beams}: beam search returns at most "
            "its beams. Fix: num_return_sequences <= num_beams."
        )
    return max(beams, returned), returned


def last_logits(
    model, prompts: list[str], images=None, interventions=(), batch_size: int = 16, fold: bool = False
) -> torch.Tensor:
    """Next-token logits [N, V] at the last prompt position, steered, in prompt order (``fold``: as
    in :func:`generate`)."""
    out, order = [], []
    with folding(model, interventions, fold) as rest:
        for rows, batch, edits, _ in prepared_batches(model, prompts, images, rest, batch_size):
            with model.hooks(edits=edits), torch.inference_mode():
                out.append(model.next_token_logits(batch.inputs).float().cpu())
            order += rows
    return in_prompt_order(torch.cat(out), order)


def in_prompt_order(x: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Rows of ``x`` computed in ``order`` (prompt indices), back in prompt order."""
    return x[torch.argsort(torch.tensor(order))]
