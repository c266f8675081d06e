"""TransformerLens 4.x backend: ``TransformerBridge`` over a structural copy of the model.

    >>> from interp.backends.transformer_lens_backend import hidden_states
    >>> states = hidden_states(model, batch, layers=[0, 5])      # blocks.{i}.hook_resid_post

``TransformerBridge.boot_transformers(hf_model=...)`` replaces the model's submodules with its own
bridge components and switches it to eager attention, in place. To leave the user's model as it was,
the bridge is booted on a copy of the module tree that shares the parameters (no extra weight
memory). The bridge runs in raw-HF numerics (no compatibility mode), so its states equal HF's.

For vision-language models, TransformerLens 4.3 also tries to load a processor from the hub by the
model's name during boot and, when that fails, *pip-installs torchvision* into the running
environment (which can replace a CPU torch with a CUDA build). interp needs no processor from it
(inputs come from :func:`interp.encode`), so that step is switched off for the duration of the boot.
"""

from __future__ import annotations

import torch

from interp.backends import missing_extra, structural_copy
from interp.errors import InputError
from interp.inputs import Batch


def bridge(model):
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        raise missing_extra("transformer-lens", "transformer-lens") from None
    cache = model.__dict__.setdefault("_backends", {})
    if "transformer_lens" not in cache:
        clone = structural_copy(model.model)
        clone.config.architectures = [type(model.model).__name__]
        from transformer_lens.model_bridge.sources.transformers import source

        original = source.load_modality_processor
        source.load_modality_processor = _no_processor
        try:
            cache["transformer_lens"] = TransformerBridge.boot_transformers(
                model.name or type(model.model).__name__,
                hf_model=clone,
                tokenizer=model.tokenizer,
                dtype=model.dtype,
            )
        except (ValueError, ImportError, NotImplementedError) as e:
            raise unsupported(model, e) from e
        finally:
            source.load_modality_processor = original
    return cache["transformer_lens"]


def unsupported(model, error: Exception) -> InputError:
    """TransformerLens's refusal of an architecture, as an error that names the way out."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tl = f"TransformerLens {version('transformer-lens')}"
    except PackageNotFoundError:
        tl = "TransformerLens"
    first = str(error).split(". Available architectures")[0].splitlines()[0][:300].rstrip(".")
    return InputError(
        f"{tl} cannot wrap {model.name} ({type(model.model).__name__}, family {model.adapter.family}): "
        f"{type(error).__name__}: {first}. "
        "Fix: capture with the default backend or backend='nnsight', which handle every family interp knows."
    )


def _no_processor(*args, **kwargs) -> None:
    return None


def hidden_states(model, batch: Batch, layers: list[int]) -> dict[int, torch.Tensor]:
    br = bridge(model)
    names = {f"blocks.{i}.hook_resid_post": i for i in layers}
    extra = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        _, cache = br.run_with_cache(
            batch.input_ids, attention_mask=batch.attention_mask, names_filter=lambda n: n in names, **extra
        )
    return {i: cache[name] for name, i in names.items()}
