"""Interoperability backends: capture the same residual states through nnsight or TransformerLens.

    >>> acts = interp.capture(model, prompts, backend="nnsight")            # pip install interp[nnsight]
    >>> acts = interp.capture(model, prompts, backend="transformer_lens")   # pip install interp[transformer-lens]

Each backend module exposes ``hidden_states(model, batch, layers) -> {layer: [B, T, D]}`` with the
same convention as the native hooks: layer ``i`` is decoder layer ``i``'s output, before the final norm.
Both libraries change the modules they wrap for good (nnsight replaces every module's ``forward``
with its own dispatcher, TransformerLens swaps in its bridge components), so each wraps a
:func:`structural_copy` and the user's model runs as before.
"""

import copy

import torch

from interp.errors import InputError


def structural_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module``'s tree of submodules that shares its parameters and buffers (no extra
    weight memory): a library may rewire the copy without touching the original.

    >>> clone = structural_copy(model.model)
    >>> clone.lm_head.weight is model.model.lm_head.weight
    True
    """
    shared = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
    return copy.deepcopy(module, memo=shared)


def missing_extra(package: str, extra: str) -> InputError:
    return InputError(f"backend needs the {package!r} package. Fix: pip install 'interp[{extra}]'.")
