"""One table of model families: where the decoder layers, final norm, LM head and vision parts live.

    >>> from interp.models.adapters import adapter_for
    >>> adapter_for(model.config).kind
    'text'

Every path is an attribute path from the top-level Hugging Face model (``*ForCausalLM`` or
``*ForConditionalGeneration``) in transformers 5.x. An entry lists several candidates where
versions differ; the first that exists wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from interp.errors import UnknownModelFamilyError

Kind = Literal["text", "image", "cross_attention"]


@dataclass(frozen=True)
class Adapter:
    """Where things live in one family. ``kind`` says how images reach the text stream:
    ``image`` = image tokens in the sequence (LLaVA recipe), ``cross_attention`` = vision enters
    through cross-attention layers and the text stream has a single ``<|image|>`` marker (Mllama)."""

    family: str
    kind: Kind
    layers: tuple[str, ...]
    final_norm: tuple[str, ...]
    lm_head: tuple[str, ...] = ("lm_head",)
    embed: tuple[str, ...] = ("model.embed_tokens",)
    vision: tuple[str, ...] = ()
    # inside one decoder layer: the attention and MLP blocks
    attn: tuple[str, ...] = ("self_attn", "cross_attn")
    mlp: tuple[str, ...] = ("mlp", "feed_forward")
    # a norm between a block and the residual stream (Gemma 2/3 normalize each block's output, with a
    # learned per-feature scale, before adding it): what the block writes to the stream is that norm's
    # output. Empty: the block's own output is added.
    attn_out: tuple[str, ...] = ()
    mlp_out: tuple[str, ...] = ()
    # a learned scalar gate between a block and the stream (Mllama's cross-attention layers add
    # tanh(gate) * block output), by site; only layers that have the parameter are gated
    write_gates: tuple[tuple[str, str], ...] = ()
    # a decoder-layer keyword argument [B, 1, T, 1] that multiplies the MLP's output per token before
    # it is added (Mllama: 0 for text tokens that see no image)
    mlp_row_mask: str = ""
    image_token_attrs: tuple[str, ...] = ("image_token_id", "image_token_index")
    rope: str = "rope"
    notes: str = ""
    extra_inputs: tuple[str, ...] = field(default=())


_TEXT = dict(layers=("model.layers",), final_norm=("model.norm",), embed=("model.embed_tokens",))
_POST_NORMS = dict(attn_out=("post_attention_layernorm",), mlp_out=("post_feedforward_layernorm",))
_LM = ("model.language_model.layers",)
_LM_NORM = ("model.language_model.norm",)
_LM_EMBED = ("model.language_model.embed_tokens",)

ADAPTERS: dict[str, Adapter] = {
    # text-only decoders
    "llama": Adapter("llama", "text", **_TEXT, notes="Llama 2/3, SmolLM/SmolLM2, TinyLlama"),
    "mistral": Adapter("mistral", "text", **_TEXT),
    "qwen2": Adapter("qwen2", "text", **_TEXT),
    "qwen3": Adapter("qwen3", "text", **_TEXT),
    "gemma": Adapter("gemma", "text", **_TEXT),
    "gemma2": Adapter("gemma2", "text", **_TEXT, **_POST_NORMS),
    "gemma3_text": Adapter("gemma3_text", "text", **_TEXT, **_POST_NORMS),
    "phi3": Adapter("phi3", "text", **_TEXT),
    # image tokens in the text stream
    "llava": Adapter(
        "llava",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_tower",),
        notes="LLaVA-1.5: 576 image tokens at 336 px",
    ),
    "llava_next": Adapter(
        "llava_next",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_tower",),
        extra_inputs=("image_sizes",),
        notes="LLaVA-NeXT: any-resolution tiles, variable image-token count",
    ),
    "qwen2_vl": Adapter(
        "qwen2_vl",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.visual",),
        rope="mrope",
        extra_inputs=("image_grid_thw", "mm_token_type_ids"),
        notes="variable image tokens; keep image_grid_thw; M-RoPE caches rope_deltas between calls",
    ),
    "qwen2_5_vl": Adapter(
        "qwen2_5_vl",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.visual",),
        rope="mrope",
        extra_inputs=("image_grid_thw", "mm_token_type_ids"),
    ),
    "gemma3": Adapter(
        "gemma3",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_tower",),
        **_POST_NORMS,
        notes="Gemma 3 multimodal: 256 image tokens per image",
    ),
    "idefics3": Adapter(
        "idefics3",
        "image",
        layers=("model.text_model.layers",),
        final_norm=("model.text_model.norm",),
        embed=("model.text_model.embed_tokens",),
        vision=("model.vision_model",),
        extra_inputs=("pixel_attention_mask",),
    ),
    "smolvlm": Adapter(
        "smolvlm",
        "image",
        layers=("model.text_model.layers",),
        final_norm=("model.text_model.norm",),
        embed=("model.text_model.embed_tokens",),
        vision=("model.vision_model",),
        extra_inputs=("pixel_attention_mask",),
    ),
    "internvl": Adapter(
        "internvl",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_tower",),
    ),
    "organism_vl": Adapter(
        "organism_vl",
        "image",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_tower",),
        notes="interp's organism VLM: EfficientNet-Lite0 + projector + safety-tuned SmolLM2, 9 image tokens",
    ),
    # vision through cross-attention
    "mllama": Adapter(
        "mllama",
        "cross_attention",
        layers=_LM,
        final_norm=_LM_NORM,
        embed=_LM_EMBED,
        vision=("model.vision_model",),
        extra_inputs=("aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"),
        write_gates=(("attn", "cross_attn_attn_gate"), ("mlp", "cross_attn_mlp_gate")),
        mlp_row_mask="full_text_row_masked_out_mask",
        notes=(
            "Mllama has no image-token span: the text stream holds one <|image|> marker and vision enters "
            "through the cross-attention layers (config.text_config.cross_attention_layers). Position "
            "'image' selects that marker; 'image_mean' is the marker's state. Text tokens after the marker "
            "carry the image information from the first cross-attention layer on."
        ),
    ),
}


def known_families() -> list[str]:
    """Sorted model_type names that have an adapter."""
    return sorted(ADAPTERS)


def adapter_for(config) -> Adapter:
    """The adapter for a transformers config; a clear error naming the known families otherwise."""
    model_type = getattr(config, "model_type", None)
    if model_type in ADAPTERS:
        return ADAPTERS[model_type]
    raise UnknownModelFamilyError(
        f"No interp adapter for model_type={model_type!r}. Known families: {', '.join(known_families())}. "
        "Fix: use a model of a known family, or add an Adapter entry to interp.models.adapters.ADAPTERS "
        "naming where its decoder layers, final norm and LM head live."
    )


def follow(root, path: str):
    """``root.a.b.c`` for ``path = "a.b.c"`` (works on modules and on wrappers such as nnsight's)."""
    for part in path.split("."):
        root = getattr(root, part)
    return root


def resolve_path(root: torch.nn.Module, candidates: tuple[str, ...], what: str) -> str:
    """The first attribute path in ``candidates`` that exists on ``root``."""
    for path in candidates:
        try:
            follow(root, path)
        except AttributeError:
            continue
        return path
    raise UnknownModelFamilyError(
        f"Could not find the {what} of {type(root).__name__} at any of {list(candidates)}; "
        "this transformers version lays the model out differently. Fix: update the Adapter entry."
    )


def get_path(root: torch.nn.Module, candidates: tuple[str, ...], what: str):
    """The object at the first attribute path in ``candidates`` that exists on ``root``."""
    return follow(root, resolve_path(root, candidates, what))


def image_token_id(config, adapter: Adapter) -> int | None:
    """The token id that marks image positions in ``input_ids`` (None for text models)."""
    if adapter.kind == "text":
        return None
    for attr in adapter.image_token_attrs:
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    return None
