"""Prompts (and images) to model inputs: chat template, processor, left padding, checks.

>>> batch = encode(model, ["How do I bake bread?"])
>>> batch.inputs["input_ids"].shape           # [1, T], left padded
>>> batch = encode(vlm, ["What is this?"], images=[img])   # image placeholders added for you
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from interp.errors import InputError

if TYPE_CHECKING:
    from interp.models.hooked import HookedModel


@dataclass
class Batch:
    """Model-ready inputs of one batch plus the strings they came from."""

    inputs: dict[str, torch.Tensor]
    texts: list[str]

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device) -> Batch:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.inputs.items()}
        return Batch(moved, self.texts)


def chunks(prompts: Sequence[str], images, batch_size: int):
    """``(start, prompts, images)`` for each batch of ``batch_size`` prompts (images None stays None).

    >>> for i, chunk, imgs in chunks(prompts, images, 16): model.encode(chunk, images=imgs)
    """
    for i in range(0, len(prompts), batch_size):
        yield i, prompts[i : i + batch_size], None if images is None else images[i : i + batch_size]


def row_batches(rows: Sequence[int], with_image: Sequence[bool] | None, batch_size: int) -> list[list[int]]:
    """``rows`` cut into batches of at most ``batch_size``: consecutive rows, except that rows with an
    image and rows without go to separate batches (a processor batch cannot mix them; image rows first).

    >>> row_batches(range(5), [True, False, True, False, True], 2)
    [[0, 2], [4], [1, 3]]
    """
    rows = list(rows)
    kinds = (
        [rows]
        if with_image is None
        else [[i for i in rows if with_image[i]], [i for i in rows if not with_image[i]]]
    )
    return [g[b : b + batch_size] for g in kinds for b in range(0, len(g), batch_size)]


def groups(prompts: Sequence[str], images, batch_size: int):
    """``(rows, prompts, images)`` per batch, for lists that may mix prompts with images and without
    (``None`` entries): each batch holds one kind (its images are None for a text-only batch), and
    ``rows`` are its prompts' indices, so results can be put back in prompt order.

    >>> for rows, chunk, imgs in groups(prompts, [img, None, img], 16): ...   # rows [0, 2], then [1]
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1; got {batch_size}.")
    per_prompt = normalize_images(images, len(prompts))  # checks one entry per prompt
    with_image = None if per_prompt is None else [bool(item) for item in per_prompt]
    for rows in row_batches(range(len(prompts)), with_image, batch_size):
        imgs = None if with_image is None or not with_image[rows[0]] else [images[i] for i in rows]
        yield rows, [prompts[i] for i in rows], imgs


def normalize_images(images, n_prompts: int) -> list[list] | None:
    """``None`` | one image per prompt | a list of images per prompt → list of lists (or None)."""
    if images is None:
        return None
    if not isinstance(images, (list, tuple)):
        raise InputError(
            "images must be a list with one entry per prompt (an image, a list of images, or None)."
        )
    if len(images) != n_prompts:
        raise InputError(
            f"{len(images)} image entries for {n_prompts} prompts. Fix: pass one entry per prompt "
            "(None for a prompt without an image)."
        )
    out = []
    for item in images:
        if item is None:
            out.append([])
        elif isinstance(item, (list, tuple)):
            out.append(list(item))
        else:
            out.append([item])
    return out


CHAT_TEMPLATE_CHOICES = ("auto", True, False)


def check_chat_template(value) -> bool | str:
    """``"auto"`` (the template when the tokenizer or processor has one), True (always; an error
    without one) or False (raw prompts); anything else is refused, so a value such as ``"off"`` is
    never read as True."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise InputError(
            f"chat_template={value!r}; choose one of {CHAT_TEMPLATE_CHOICES}: 'auto' applies the "
            "template when the model has one, True always, False never (prompts already templated or raw)."
        )
    return value


def format_prompt(model: HookedModel, prompt: str, n_images: int, chat_template, system: str | None) -> str:
    """One prompt string, templated or raw, with exactly ``n_images`` image placeholders."""
    placeholder = model.image_placeholder
    if placeholder is not None:
        found = prompt.count(placeholder)
        if found not in (0, n_images):
            raise InputError(
                f"prompt has {found} image placeholder(s) {placeholder!r} but {n_images} image(s) were given. "
                "Fix: give as many images as placeholders, or leave placeholders out and interp adds them."
            )
        if found:
            prompt = prompt.replace(placeholder, "").strip()
    template_owner = model.processor if model.processor is not None else model.tokenizer
    has_template = getattr(template_owner, "chat_template", None) is not None
    use_template = has_template if chat_template == "auto" else bool(chat_template)
    if use_template and not has_template:
        raise InputError(
            f"{model.name} has no chat template. Fix: pass chat_template=False to use raw prompts, "
            "or set tokenizer.chat_template."
        )
    if use_template:
        if model.processor is not None:
            content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
        else:
            content = prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": content}
        ]
        return template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix = (placeholder + "\n") * n_images if n_images else ""
    return (system + "\n\n" if system else "") + prefix + prompt


def encode(
    model: HookedModel,
    prompts: Sequence[str],
    images=None,
    chat_template=None,
    system: str | None = None,
) -> Batch:
    """Tokenize (and process images for) a list of prompts, left padded, on the model's device."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise InputError("the prompt list is empty. Fix: pass at least one prompt.")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InputError(f"prompt {i} is a {type(p).__name__}, not a string.")
    per_prompt = normalize_images(images, len(prompts))
    if per_prompt is not None and any(per_prompt) and model.adapter.kind == "text":
        raise InputError(
            f"images were given but {model.name} ({model.adapter.family}) is a text-only model. "
            "Fix: load a vision-language model (e.g. llava-hf/llava-1.5-7b-hf) or drop images=."
        )
    if per_prompt is not None and any(per_prompt) and model.processor is None:
        raise InputError(f"{model.name} has no processor for images. Fix: load it with interp.load_model.")
    counts = [len(x) for x in per_prompt] if per_prompt else [0] * len(prompts)
    template = model.chat_template if chat_template is None else check_chat_template(chat_template)
    texts = [format_prompt(model, p, k, template, system) for p, k in zip(prompts, counts, strict=True)]
    return tokenize(model, texts, per_prompt)


def tokenize(model: HookedModel, texts: list[str], per_prompt: list[list] | None) -> Batch:
    """Already formatted prompt strings (image placeholders in place) + their images → a :class:`Batch`."""
    if per_prompt is not None and any(per_prompt):
        if any(not x for x in per_prompt):
            raise InputError(
                "some prompts have images and some do not; processors need every prompt of a batch to carry "
                "images. Fix: encode text-only and image prompts in separate calls, or use interp.capture, "
                "interp.steer.generate / last_logits or interp.evaluate, which group a mixed list by themselves."
            )
        per_prompt = [[_opened(x) for x in imgs] for imgs in per_prompt]
        inputs = model.processor(text=texts, images=per_prompt, padding=True, return_tensors="pt")
    else:
        tok = model.tokenizer
        inputs = tok(texts, padding=True, return_tensors="pt", add_special_tokens=_adds_bos(tok, texts))
    inputs = dict(inputs)
    inputs.setdefault("attention_mask", torch.ones_like(inputs["input_ids"]))
    _check_lengths(model, inputs)
    return Batch(inputs, texts).to(model.device)


def _opened(image):
    """An image given as a file path, read now (as RGB); anything else as it is."""
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except OSError as e:
            raise InputError(
                f"cannot read the image {str(image)!r} ({e}). Fix: give a path to an image file."
            ) from e
    return image


def _adds_bos(tok, texts: list[str]) -> bool:
    """Templated text often starts with BOS already; don't add a second one."""
    bos = getattr(tok, "bos_token", None)
    return not (bos and all(t.startswith(bos) for t in texts))


def _check_lengths(model: HookedModel, inputs: dict) -> None:
    lengths = inputs["attention_mask"].sum(1)
    limit = model.max_context
    if (lengths == 0).any():
        raise InputError("a prompt encoded to zero tokens. Fix: pass non-empty prompts.")
    if limit is not None and int(lengths.max()) > limit:
        i = int(lengths.argmax())
        raise InputError(
            f"prompt {i} is {int(lengths[i])} tokens, longer than the model's context of {limit}. "
            "Fix: shorten or truncate it."
        )
