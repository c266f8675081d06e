"""Errors a user sees. Each message names the cause and the fix.

>>> from interp.errors import InterpError
>>> try: interp.load_model("no-such-family-dir")
... except InterpError as e: print(e)
"""

from __future__ import annotations


class InterpError(ValueError):
    """Base class for every error interp raises on bad input."""


class UnknownModelFamilyError(InterpError):
    """The model's `model_type` has no adapter."""


class LayerIndexError(InterpError, IndexError):
    """A layer index outside the model's decoder layers."""


class InputError(InterpError):
    """Prompts, images or positions that cannot be used as given."""


class FingerprintMismatchError(InterpError):
    """An artifact (activations, steering vector) made for another model."""


class CorruptFileError(InterpError):
    """A file on disk that is truncated, inconsistent or of a newer format."""
