"""How to load a model in another process: a spec travels to workers, the weights never do.

    >>> spec = interp.ModelSpec("llava-hf/llava-1.5-7b-hf", dtype="bfloat16", device="cuda")
    >>> spec = interp.ModelSpec.of("organism-vl")                   # a name or path: load_model's arguments
    >>> spec = interp.ModelSpec.of(interp.load_model("default", dtype="bfloat16"))   # as it was loaded
    >>> spec = interp.ModelSpec(factory=functools.partial(tiny_model, "llama"))   # any importable function
    >>> model = spec.load()                                          # in the worker

Distributed capture (``interp.capture(..., engine="ray")``) sends one to each worker, which loads the
model once and keeps it for every shard it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from interp.errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """``load_model(name, **kwargs)`` in the process that calls :meth:`load`, or ``factory()`` (a
    picklable, importable function that returns a :class:`~interp.models.hooked.HookedModel`)."""

    name: str | None = None
    kwargs: dict = field(default_factory=dict)
    factory: Callable | None = None

    def __init__(self, name: str | None = None, factory: Callable | None = None, **kwargs):
        if (name is None) == (factory is None):
            raise InputError("a ModelSpec needs a model name or path, or a factory function (one of them).")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "factory", factory)
        object.__setattr__(self, "kwargs", dict(kwargs))

    @classmethod
    def of(cls, model) -> ModelSpec:
        """A spec from what a user passes as the model: a spec, a name or path, or a factory."""
        from interp.models.hooked import HookedModel

        if isinstance(model, ModelSpec):
            return model
        if isinstance(model, str):
            return cls(model)
        if isinstance(model, HookedModel):
            if model.spec is not None:  # loaded by interp.load_model: the workers load it the same way
                return model.spec
            raise InputError(
                f"a model you wrapped yourself ({model.name}) cannot be sent to workers: each worker loads its own copy. "
                f"Fix: pass how to load it, interp.ModelSpec({model.name!r}, dtype=..., device=...) or its "
                "name, or a factory function."
            )
        if callable(model):
            return cls(factory=model)
        raise InputError(
            f"cannot load a model from {type(model).__name__}; pass a name, a ModelSpec or a factory."
        )

    def load(self):
        """The model, loaded here."""
        if self.factory is not None:
            return self.factory()
        import interp  # the package's load_model: interp.models.load records its specs with this class

        return interp.load_model(self.name, **self.kwargs)

    def describe(self) -> str:
        if self.factory is not None:
            return getattr(self.factory, "__qualname__", repr(self.factory))
        return self.name + (f" {self.kwargs}" if self.kwargs else "")
