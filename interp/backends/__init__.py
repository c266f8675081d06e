"""Interoperability backends: capture the same residual states through nnsight or TransformerLens.

    >>> acts = interp.capture(model, prompts, backend="nnsight")            # pip install interp[nnsight]
    >>> acts = interp.capture(model, prompts, backend="transformer_lens")   # pip install interp[transformer-lens]

Each backend module exposes ``hidden_states(model, batch, layers) -> {layer: [B, T, D]}`` with the
same convention as the native hooks: layer ``i`` is decoder layer ``i``'s output, before the final norm.
"""

from interp.errors import InputError


def missing_extra(package: str, extra: str) -> InputError:
    return InputError(f"backend needs the {package!r} package. Fix: pip install 'interp[{extra}]'.")
