"""Weight folding: steering written into the weights, exactly, where that is possible.

    >>> with folded_ablation(model, [refusal]):          # W <- (I - d d^T) W for every stream writer
    ...     model.generate(batch)                        # then restored, bit for bit
    >>> with folded_addition(model, {12: v}):            # a constant after layer 12 as an MLP bias
    ...     model.generate(batch)
    >>> additions_by_layer(model, [AddDirection(d, [12], 4.0)])   # {12: 4 * d}

Used at run time by :func:`interp.steer.steer` (``fold=True``) and :mod:`interp.serve`, and to write
checkpoints by :mod:`interp.export` (``bake``, ``save_baked``) and control vectors. What folds and what
cannot is explained in :mod:`interp.export.bake`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import unit_vector
from interp.errors import InputError
from interp.layers import resolve_layers
from interp.steer.interventions import AddDirection, ShiftToText


def additions(model, item: AddDirection | ShiftToText) -> list[tuple[int, Tensor]]:
    """``(layer, vector)`` that a constant addition adds after each of its decoder layers (the
    residual stream's units): ``alpha * direction`` for AddDirection, ``-alpha * shift`` for ShiftToText.
    Shared by control vectors and baked biases."""
    if isinstance(item, AddDirection):
        return [(i, item.alpha * item.direction.float()) for i in resolve_layers(item.layers, model.n_layers)]
    return [(resolve_layers([k], model.n_layers)[0], -item.alpha * v.float()) for k, v in item.shifts.items()]


def additions_by_layer(model, items) -> dict[int, Tensor]:
    """``{layer: [D]}``: the sum of what the constant additions ``items`` add after each layer."""
    out: dict[int, Tensor] = {}
    for item in items:
        for layer, v in additions(model, item):
            out[layer] = out.get(layer, 0) + v
    return dict(sorted(out.items()))


_ATTN_OUT = ("o_proj", "out_proj", "dense")
_MLP_OUT = ("down_proj", "fc2", "dense_4h_to_h")


def not_foldable(item, why: str) -> InputError:
    """The error for an intervention that no weight edit can express, with the reason ``why``."""
    return InputError(
        f"{type(item).__name__} cannot be baked into weights: {why}. Fix: serve it with hooks "
        "(interp serve / interp.steer.steer), which support every intervention."
    )


def _writer(module: torch.nn.Module, names, what: str, family: str) -> torch.nn.Linear:
    for name in names:
        sub = getattr(module, name, None)
        if isinstance(sub, torch.nn.Linear):
            return sub
    raise InputError(
        f"cannot find the {what} projection (one of {names}) as a linear layer in the {family} family; "
        "baking supports Llama-style decoders (Llama, Mistral, Qwen2/3, SmolLM, ...)."
    )


def mlp_down(mlp: torch.nn.Module, family: str) -> torch.nn.Linear:
    """The MLP's down projection (what writes the MLP's output to the residual stream), or an error
    naming the family whose MLP has none as a linear layer."""
    return _writer(mlp, _MLP_OUT, "MLP output", family)


def orthogonalize(
    weight: Float[Tensor, "D n"], d: Float[Tensor, " D"], strength: float = 1.0
) -> Float[Tensor, "D n"]:
    """``(I - s d d^T) W`` for a matrix whose rows index the residual stream (unit ``d``): what it
    writes loses ``strength`` times its projection on ``d`` (1: all of it)."""
    d = d.to(weight.device, weight.dtype)
    return weight - strength * torch.outer(d, d @ weight)


def _writers(model) -> list[torch.nn.Linear]:
    """Every linear layer that writes to the residual stream after the embedding: each layer's
    attention output and MLP down projection."""
    family = model.adapter.family
    if model.adapter.attn_out or model.adapter.mlp_out:
        raise InputError(
            f"the {family} family normalizes each attention and MLP output, with a learned per-feature "
            "scale, before adding it to the residual stream, so no edit of the projections' weights "
            "removes a direction from what they write. Fix: ablate with hooks (interp.steer.steer "
            "without fold=True, or interp serve), which act on the normalized outputs."
        )
    return [
        _writer(model.component(i, site), names, site + " output", family)
        for i in range(model.n_layers)
        for site, names in (("attn", _ATTN_OUT), ("mlp", _MLP_OUT))
    ]


def _ablated_weights(model, directions, strengths=None) -> list[tuple[torch.nn.Module, str, Tensor]]:
    """``(module, name, new value)`` for every weight and bias that writes to the residual stream (the
    token embedding, each attention output and MLP down projection), with each unit direction
    projected out of what it writes, one after the other (as the hooks ablate them in turn);
    ``strengths``: the fraction of each projection removed (all of it by default)."""
    strengths = [1.0] * len(directions) if strengths is None else list(strengths)
    pairs = list(zip(directions, strengths, strict=True))
    emb = model.embed
    table = emb.weight.T
    for d, s in pairs:
        table = orthogonalize(table, d, s)
    out = [(emb, "weight", table.T.contiguous())]
    for lin in _writers(model):
        weight, bias = lin.weight, lin.bias
        for d, s in pairs:
            weight = orthogonalize(weight, d, s)
            bias = None if bias is None else bias - s * d.to(bias) * (bias @ d.to(bias))
        out.append((lin, "weight", weight))
        if bias is not None:
            out.append((lin, "bias", bias))
    return out


def check_foldable(model) -> None:
    """Raise :class:`InputError`, with the reason, where no weight edit can ablate a direction from
    ``model``'s residual stream (a vision-language model; a family whose writers are not plain linear
    layers or are followed by a norm); return where one can."""
    check_text_model(model, "use AblateDirection's hooks (interp.steer.steer without fold=True)")
    check_not_offloaded(model)
    _writers(model)


def check_not_offloaded(model) -> None:
    """Refuse a model whose device map offloads weights (to the CPU or disk: ``meta`` in the module):
    accelerate reloads those for every forward, so an edited copy swapped in would not be used."""
    if any(p.is_meta for p in model.model.parameters()):
        raise InputError(
            f"{model.name} has weights offloaded by its device map, which accelerate streams in for every "
            "forward, so edited copies cannot be swapped in. Fix: steer with hooks (fold=False), which work "
            "on offloaded layers, or load the model without offloading."
        )


def check_text_model(model, what: str) -> None:
    """Refuse a vision-language model, whose image features no weight edit reaches; ``what``: the fix."""
    if model.adapter.kind != "text":
        raise InputError(
            f"{model.name} is a vision-language model: its image features enter the residual stream after "
            f"the token embedding, so no weight edit of the language model removes a direction from them. "
            f"Fix: {what}."
        )


@contextmanager
def folded_ablation(model, directions, strengths=None):
    """Within the block, ``model`` computes with each direction projected out of every weight that
    writes to the residual stream (what :func:`bake` does to a copy), then gets its own weights back.

        >>> with folded_ablation(model, [refusal]):
        ...     model.generate(model.encode(prompts))

    Exactly ``AblateDirection(d, layers="all")`` (float tolerance), with no per-token cost: the hook
    form runs two kernels at 2 x n_layers + 1 sites for every token. The price is memory: the block
    holds an edited copy of the embedding and of every attention output and MLP down projection
    (about a third of an 8B Llama's weights). The model's own ``Parameter`` objects are set aside and
    put back on exit, also on errors, so nothing is rounded; a tied LM head keeps the original
    embedding. Every row of every forward in the block is ablated, so a server folds only batches
    whose requests all ask for the same ablation (``interp serve`` does, and hooks the rest). Text
    models only. ``strengths``: the fraction of each direction's projection removed (default 1,
    all of it), as ``Edit.scaled`` makes the hooks do.
    """
    with swapped_weights(model, ablated_weights(model, directions, strengths)):
        yield model


def ablated_weights(model, directions, strengths=None) -> list[tuple[torch.nn.Module, str, Tensor]]:
    """What :func:`folded_ablation` swaps in, computed once: ``(module, name, edited copy)`` for the
    embedding and every attention output and MLP down projection (and their biases).

        >>> new = ablated_weights(model, [refusal])      # keep it to fold again without recomputing
        >>> with swapped_weights(model, new): ...
    """
    check_text_model(model, "use AblateDirection's hooks (interp.steer.steer without fold=True)")
    check_not_offloaded(model)
    with torch.no_grad():  # _ablated_weights finds the writers, or says why there are none
        return _ablated_weights(model, [unit_vector(d) for d in directions], strengths)


@contextmanager
def folded_addition(model, per_layer: dict[int, Tensor]):
    """Within the block, each decoder layer ``l`` of ``per_layer`` adds ``per_layer[l]`` ([D]) to what
    it writes to the residual stream, as a bias of its MLP down projection (added to any bias it has),
    then the model gets its own biases back. Exactly ``AddDirection(d, [l], alpha)`` at every position
    (``per_layer[l] = alpha * d``; float tolerance) with no hook: the projection adds the bias in its
    own ``addmm``. No weight is copied (a bias per layer), so folding costs nothing.

        >>> with folded_addition(model, {12: 4.0 * refusal}):
        ...     model.generate(model.encode(prompts))

    Families that normalize the MLP output before adding it (Gemma 2/3) and Mllama's cross-attention
    layers (whose MLP output is gated and masked per token) are refused, with the reason.
    """
    with swapped_weights(model, added_biases(model, per_layer)):
        yield model


def added_biases(model, per_layer: dict[int, Tensor]) -> list[tuple[torch.nn.Module, str, Tensor]]:
    """What :func:`folded_addition` swaps in: ``(down projection, "bias", bias + vector)`` per layer."""
    family = model.adapter.family
    check_mlp_bias_adds(model, "add it with hooks (interp.steer.steer without fold=True)")
    check_not_offloaded(model)
    out = []
    with torch.no_grad():
        for layer, v in sorted(per_layer.items()):
            if model.write_gain(layer, "mlp") is not None:
                raise InputError(
                    f"decoder layer {layer} of {model.name} scales its MLP output by a learned gate and masks it "
                    "per token before adding it (a cross-attention layer), so a bias there is not a constant "
                    "addition. Fix: add it with hooks (fold=False), or at another layer."
                )
            down = mlp_down(model.component(layer, "mlp"), family)
            v = torch.as_tensor(v).to(down.weight.device, down.weight.dtype)
            out.append((down, "bias", v.clone() if down.bias is None else down.bias.detach() + v))
    return out


def check_mlp_bias_adds(model, fix: str) -> None:
    """Refuse, with the reason, a family where an MLP bias is not a constant addition to the stream."""
    if model.adapter.mlp_out:
        raise InputError(
            f"the {model.adapter.family} family normalizes each MLP output before adding it to the residual "
            f"stream, so a constant addition cannot become an MLP bias. Fix: {fix}."
        )


@contextmanager
def swapped_weights(model, new: list[tuple[torch.nn.Module, str, Tensor]]):
    """Within the block the modules compute with the tensors of ``new`` (from :func:`ablated_weights`
    or :func:`added_biases`); their own ``Parameter`` objects (or no bias) are put back on exit, also
    on errors."""
    own = [(module, name, getattr(module, name)) for module, name, _ in new]
    try:
        for (module, name, value), (_, _, old) in zip(new, own, strict=True):
            grad = old is not None and old.requires_grad
            setattr(module, name, torch.nn.Parameter(value, requires_grad=grad))
        yield model
    finally:
        for module, name, old in own:
            setattr(module, name, old)
