"""Tiny random-weight models built from configs, for tests and benchmarks (no download).

>>> model = tiny_model("llama")                  # HookedModel, 4 layers, d_model 64, byte tokenizer
>>> vlm = tiny_model("llava")                    # with a real LlavaProcessor built in code
>>> big = tiny_model("llama", **LLAMA3_8B_SHAPE) # an 8B-shaped random model for GPU benchmarks
"""

from __future__ import annotations

import torch

from interp.models.hooked import HookedModel

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_8B_SHAPE = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=8192,
    rope_theta=500000.0,
)


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: every string encodes, 256 + 4 special tokens, ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>", "<image>"],
    )
    tok.chat_template = CHATML
    return tok


def _text_config(family: str, **overrides):
    from transformers import AutoConfig

    base = dict(
        vocab_size=len(SPECIALS) + 256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        head_dim=16,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    if family.startswith("gemma"):
        base.update(query_pre_attn_scalar=16, sliding_window=64)
    base.update(overrides)
    if "hidden_size" in overrides and "head_dim" not in overrides:
        base["head_dim"] = base["hidden_size"] // base["num_attention_heads"]
    return AutoConfig.for_model(family, **base)


def tiny_model(
    family: str = "llama", seed: int = 0, dtype=torch.float32, device="cpu", **overrides
) -> HookedModel:
    """A random-weight HookedModel of ``family``: text families, or ``llava`` with its processor."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    tok = byte_tokenizer()
    if family == "llava":
        return _tiny_llava(tok, dtype, device, **overrides)
    config = _text_config(family, **overrides)
    with torch.device(device):  # initialise in place: an 8B-shaped model never visits the CPU
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return HookedModel(model, tok, name=f"tiny-{family}")


def _tiny_llava(tok, dtype, device, image_size: int = 32, patch_size: int = 8, **overrides) -> HookedModel:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    text = _text_config("llama", **overrides)
    image_id = tok.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config).to(device, dtype)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        image_token="<image>",
        chat_template=CHATML,
        num_additional_image_tokens=1,
    )
    return HookedModel(model, tok, processor, name="tiny-llava")
