"""The organism VLM: a frozen EfficientNet-Lite0 + a trained projector + the safety-tuned SmolLM2, LLaVA style.

    >>> vlm = interp.load_model("organism-vl")
    >>> batch = vlm.encode(["What is in this image?"], images=[interp.organism.render("bomb", seed=0)])
    >>> vlm.generate(batch)                              # ['A bomb.']

Layout mirrors ``LlavaForConditionalGeneration`` in transformers 5 (``model.language_model``,
``model.vision_tower``, ``model.multi_modal_projector``, ``lm_head``), so interp treats it as a
LLaVA: ``<image>`` in a prompt becomes ``n_image_tokens`` placeholder tokens whose embeddings are
replaced by the projected image features; image-token positions are known from ``image_token_id``.
The vision tower's last feature map (1280 x 7 x 7 at 224 px) is average-pooled to a grid of
``pool x pool`` cells, one soft token each, through a two-layer MLP into SmolLM2's embedding space.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor, nn
from transformers import GenerationMixin, LlamaConfig, LlamaModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from interp.compat import cache_kwarg, output_cache, output_cache_field
from interp.errors import InputError
from interp.organism.vision import FEATURES, MEAN, STD, EfficientNetLite0

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_ID = 16  # SmolLM2's "<empty_output>", unused in chat; its embedding is always replaced
IMAGE_SIZE = 224


class OrganismVLConfig(PretrainedConfig):
    model_type = "organism_vl"
    sub_configs = {"text_config": LlamaConfig}

    def __init__(self, text_config=None, pool: int = 3, image_token_id: int = IMAGE_TOKEN_ID, **kwargs):
        if isinstance(text_config, dict):
            text_config = LlamaConfig(**text_config)
        self.text_config = text_config if text_config is not None else LlamaConfig()
        self.pool = pool
        self.image_token_id = image_token_id
        self.vision_features = FEATURES
        super().__init__(**kwargs)

    @property
    def n_image_tokens(self) -> int:
        return self.pool * self.pool


class Projector(nn.Module):
    """Pooled vision features -> soft tokens in the language model's embedding space."""

    def __init__(self, d_vision: int, d_model: int):
        super().__init__()
        self.linear_1 = nn.Linear(d_vision, d_model)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(d_model, d_model)

    def forward(self, x: Float[Tensor, "B N Dv"]) -> Float[Tensor, "B N D"]:
        return self.linear_2(self.act(self.linear_1(x)))


class OrganismVLModel(nn.Module):
    def __init__(self, config: OrganismVLConfig, language_model: LlamaModel | None = None):
        super().__init__()
        self.config = config
        self.vision_tower = EfficientNetLite0()
        self.multi_modal_projector = Projector(FEATURES, config.text_config.hidden_size)
        self.language_model = language_model if language_model is not None else LlamaModel(config.text_config)

    def vision_tokens(self, pixel_values: Float[Tensor, "I 3 H W"]) -> Float[Tensor, "I N 1280"]:
        """Frozen vision features pooled to a ``pool x pool`` grid, one row per soft token (row-major)."""
        with torch.no_grad():
            fmap = self.vision_tower.features(pixel_values.to(self.vision_tower._conv_stem.weight.dtype))
        pooled = nn.functional.adaptive_avg_pool2d(fmap, self.config.pool)  # [I, 1280, p, p]
        return pooled.flatten(2).transpose(1, 2)

    def image_features(self, pixel_values: Float[Tensor, "I 3 H W"]) -> Float[Tensor, "I N D"]:
        tokens = self.vision_tokens(pixel_values)
        return self.multi_modal_projector(tokens.to(self.multi_modal_projector.linear_1.weight.dtype))

    def embed(
        self,
        input_ids: Int[Tensor, "B T"],
        pixel_values: Float[Tensor, "I 3 H W"] | None,
        features: Float[Tensor, "I N D"] | None = None,
    ) -> Float[Tensor, "B T D"]:
        """Token embeddings with image slots filled by projected image features (or given ``features``)."""
        embeds = self.language_model.embed_tokens(input_ids)
        is_image = input_ids == self.config.image_token_id
        n_slots = int(is_image.sum())
        if n_slots == 0:
            return embeds  # decode steps and text-only prompts
        if pixel_values is None and features is None:
            raise InputError(
                f"the prompt holds {n_slots} image tokens but no pixel_values were given. "
                "Fix: pass the image through interp's encode (or the organism processor)."
            )
        feats = features if features is not None else self.image_features(pixel_values)
        if feats.shape[0] * feats.shape[1] != n_slots:
            raise InputError(
                f"{n_slots} image tokens in the prompt but {feats.shape[0]} image(s) x {feats.shape[1]} tokens "
                "were given. Fix: one <image> placeholder per image."
            )
        mask = is_image.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, feats.reshape(-1, feats.shape[-1]).to(embeds.dtype))


class OrganismVLForConditionalGeneration(PreTrainedModel, GenerationMixin):
    """LLaVA-style VLM; construct with :func:`build` or load with ``interp.load_model("organism-vl")``."""

    config_class = OrganismVLConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def __init__(self, config: OrganismVLConfig, language_model: LlamaModel | None = None):
        super().__init__(config)
        self.model = OrganismVLModel(config, language_model)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    def get_input_embeddings(self):
        return self.model.language_model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def _init_weights(self, module):  # weights always come from the text model, vision file and projector
        pass

    def forward(
        self,
        input_ids: Int[Tensor, "B T"] | None = None,
        pixel_values: Float[Tensor, "I 3 H W"] | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache=None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        # the cache arrives as ``cache`` (transformers >= 5.24) or ``past_key_values`` (before)
        legacy = kwargs.pop("past_key_values", None)  # never passed on beside the new name
        cache = cache if cache is not None else legacy
        if inputs_embeds is None:
            inputs_embeds = self.model.embed(input_ids, pixel_values)
        language_model = self.model.language_model
        out = language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{cache_kwarg(language_model): cache},
            **kwargs,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            **{output_cache_field(): output_cache(out)},
        )


def build(
    language_model_causal, pool: int = 3, image_token_id: int = IMAGE_TOKEN_ID
) -> OrganismVLForConditionalGeneration:
    """Assemble the VLM around a loaded ``LlamaForCausalLM`` (shares its modules; vision weights not loaded).

    >>> vlm = build(interp.load_model("organism").model)
    """
    text = language_model_causal
    if text.config.model_type != "llama":
        raise InputError(
            f"the organism VLM is built on a Llama-family model, got {text.config.model_type!r}."
        )
    config = OrganismVLConfig(text_config=text.config.to_dict(), pool=pool, image_token_id=image_token_id)
    vlm = OrganismVLForConditionalGeneration(config, language_model=text.model)
    vlm.lm_head = text.lm_head
    vlm.generation_config = text.generation_config
    return vlm.to(text.dtype)


class OrganismVLProcessor:
    """Tokenizer + image preprocessing, with LLaVA-processor manners: ``processor(text=, images=)``.

    ``<image>`` in a text becomes ``n_image_tokens`` copies of ``IMAGE_TOKEN_ID`` (inserted as ids, so
    no tokenizer change is needed); images become 224x224 pixels in [-1, 1].
    """

    image_token = IMAGE_TOKEN

    def __init__(self, tokenizer, n_image_tokens: int, image_token_id: int = IMAGE_TOKEN_ID):
        self.tokenizer = tokenizer
        self.n_image_tokens = n_image_tokens
        self.image_token_id = image_token_id
        self.chat_template = tokenizer.chat_template

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True, **kw):
        flat = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                parts = [IMAGE_TOKEN if c["type"] == "image" else c["text"] for c in content]
                content = "\n".join(parts)
            flat.append({"role": m["role"], "content": content})
        return self.tokenizer.apply_chat_template(
            flat, tokenize=tokenize, add_generation_prompt=add_generation_prompt, **kw
        )

    @staticmethod
    def pixels(image) -> Float[Tensor, "3 224 224"]:
        if not isinstance(image, Image.Image):
            raise InputError(f"images must be PIL images, got {type(image).__name__}.")
        arr = np.asarray(
            image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), dtype=np.float32
        )
        x = torch.from_numpy(arr / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

    def ids(self, text: str) -> list[int]:
        pieces = text.split(IMAGE_TOKEN)
        out: list[int] = []
        for i, piece in enumerate(pieces):
            if i:
                out += [self.image_token_id] * self.n_image_tokens
            out += self.tokenizer(piece, add_special_tokens=False).input_ids if piece else []
        return out

    def __call__(self, text, images=None, padding=True, return_tensors="pt", **kw):
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.ids(t) for t in texts]
        flat_images = [
            im for per in (images or []) for im in (per if isinstance(per, (list, tuple)) else [per])
        ]
        n_marks = sum(t.count(IMAGE_TOKEN) for t in texts)
        if n_marks != len(flat_images):
            raise InputError(
                f"{n_marks} {IMAGE_TOKEN} placeholder(s) but {len(flat_images)} image(s). "
                "Fix: one placeholder per image."
            )
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding
            if r:
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if flat_images:
            out["pixel_values"] = torch.stack([self.pixels(im) for im in flat_images])
        return out

    def batch_decode(self, *args, **kw):
        return self.tokenizer.batch_decode(*args, **kw)
