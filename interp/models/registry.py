"""Named models: short names that ``interp.load_model`` resolves to a loader function.

    >>> interp.load_model("organism")                      # a registered name
    >>> register_model("my-organism", "mypkg.models:load_it")   # "module:function", imported on use
    >>> interp.load_model("my-organism", adapter="runs/x")      # keyword arguments go to the loader

A loader is named by its import path and imported only when the name is loaded, so the library never
imports what registers with it (the research organism registers here; nothing in interp imports it).
A loader takes ``dtype``, ``device``, ``chat_template`` and any extra keywords, and returns a
:class:`~interp.models.hooked.HookedModel`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from interp.errors import InputError

NAMED_MODELS: dict[str, str] = {
    "organism": "interp.organism:load_organism",  # SmolLM2 + the shipped safety adapter
    "organism-vl": "interp.organism:load_organism_vl",  # + EfficientNet-Lite0 and the shipped projector
}


def register_model(name: str, loader: str) -> None:
    """Make ``interp.load_model(name, ...)`` call ``loader`` (``"package.module:function"``)."""
    if ":" not in loader:
        raise InputError(f"loader {loader!r} must be 'module:function' (e.g. 'mypkg.models:load_it').")
    NAMED_MODELS[name] = loader


def named_loader(name: str) -> Callable | None:
    """The loader registered under ``name``, imported now; None if the name is not registered."""
    target = NAMED_MODELS.get(name)
    if target is None:
        return None
    module, function = target.split(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise InputError(
            f"the model name {name!r} is registered to {target}, which cannot be imported ({e}). Fix: "
            "install the package that provides it, or register_model() the name again."
        ) from e
