"""Tiny random-weight models built from configs, for tests and benchmarks (no download).

>>> from interp.testing import tiny_model
>>> model = tiny_model("llama")                  # HookedModel, 4 layers, d_model 64, byte tokenizer
>>> vlm = tiny_model("llava")                    # with a real LlavaProcessor built in code
>>> big = tiny_model("llama", **LLAMA3_8B_SHAPE) # an 8B-shaped random model for GPU benchmarks

A public module, as ``torch.testing`` and ``numpy.testing`` are, rather than a file under ``tests/``:
interp's own tests, its benchmarks (which run on an installed interp, outside the test tree) and
users testing their own interventions and model families all build the same models from it. The
library itself never imports it (a test checks that).
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


def byte_tokenizer(extra_specials: tuple[str, ...] = (), image_placeholder: str = "<image>"):
    """A byte-level BPE tokenizer with no merges: every string encodes; specials first, then 256 bytes.

    Ids: 0 ``<|endoftext|>`` (pad), 1 ``<|im_start|>``, 2 ``<|im_end|>`` (eos), 3 ``<image>``, then
    ``extra_specials``. The ChatML template writes ``image_placeholder`` for each image.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIALS + [t for t in extra_specials if t not in SPECIALS]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=specials[1:2] + specials[3:],
    )
    tok.chat_template = CHATML.replace("<image>", image_placeholder)
    return tok


def _text_config(family: str, **overrides):
    from transformers import AutoConfig

    base = dict(
        vocab_size=len(SPECIALS) + 256 + 8,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        head_dim=16,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    if family.startswith("gemma"):
        base.update(query_pre_attn_scalar=16, sliding_window=64)
    base.update(overrides)
    if "hidden_size" in overrides and "head_dim" not in overrides:
        base["head_dim"] = base["hidden_size"] // base["num_attention_heads"]
    return AutoConfig.for_model(family, **base)


def _vision(**kw) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **kw)


def vlm_config(family: str, image_token_id: int = 3, **text_overrides):
    """A tiny config for each vision-language family in interp's adapter table."""
    from transformers import AutoConfig

    def text(fam="llama", **extra):
        return _text_config(fam, **text_overrides).to_dict() | extra

    mrope = {"type": "mrope", "mrope_section": [2, 3, 3]}
    table = {
        "llava": dict(
            vision_config=dict(_vision(image_size=32, patch_size=8), model_type="clip_vision_model"),
            text_config=text(),
            image_token_index=image_token_id,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
        ),
        "llava_next": dict(
            vision_config=dict(_vision(image_size=32, patch_size=8), model_type="clip_vision_model"),
            text_config=text(),
            image_token_index=image_token_id,
            image_grid_pinpoints=[[32, 32]],
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
        ),
        "qwen2_vl": dict(
            vision_config=dict(
                depth=2,
                embed_dim=32,
                hidden_size=64,
                num_heads=2,
                mlp_ratio=2,
                patch_size=4,
                spatial_merge_size=2,
                temporal_patch_size=2,
            ),
            text_config=text("qwen2", model_type="qwen2_vl_text", rope_scaling=mrope),
            image_token_id=image_token_id,
        ),
        "qwen2_5_vl": dict(
            vision_config=dict(
                depth=2,
                hidden_size=32,
                out_hidden_size=64,
                num_heads=2,
                intermediate_size=64,
                patch_size=4,
                spatial_merge_size=2,
                temporal_patch_size=2,
                fullatt_block_indexes=[1],
                window_size=16,
            ),
            text_config=text("qwen2", model_type="qwen2_5_vl_text", rope_scaling=mrope),
            image_token_id=image_token_id,
        ),
        "gemma3": dict(
            vision_config=dict(_vision(image_size=32, patch_size=8), model_type="siglip_vision_model"),
            text_config=text("gemma3_text"),
            mm_tokens_per_image=4,
            image_token_index=image_token_id,
        ),
        "idefics3": dict(
            vision_config=_vision(image_size=32, patch_size=8),
            text_config=text(),
            image_token_id=image_token_id,
            scale_factor=2,
        ),
        "smolvlm": dict(
            vision_config=_vision(image_size=32, patch_size=8),
            text_config=text(),
            image_token_id=image_token_id,
            scale_factor=2,
        ),
        "internvl": dict(
            vision_config=_vision(image_size=[32, 32], patch_size=[8, 8]),
            text_config=text("qwen2"),
            image_token_id=image_token_id,
            downsample_ratio=0.5,
        ),
        "mllama": dict(
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_global_layers=1,
                attention_heads=2,
                image_size=32,
                patch_size=8,
                vision_output_dim=64,
                intermediate_layers_indices=[0],
                max_num_tiles=4,
            ),
            text_config=text(model_type="mllama_text_model", cross_attention_layers=[1]),
            image_token_index=image_token_id,
        ),
    }
    return AutoConfig.for_model(family, **table[family])


VLM_FAMILIES = (
    "llava",
    "llava_next",
    "qwen2_vl",
    "qwen2_5_vl",
    "gemma3",
    "idefics3",
    "smolvlm",
    "internvl",
    "mllama",
)
WITH_PROCESSOR = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3", "mllama")


def tiny_model(
    family: str = "llama", seed: int = 0, dtype=torch.float32, device="cpu", **overrides
) -> HookedModel:
    """A random-weight HookedModel of ``family``. Vision-language families in ``WITH_PROCESSOR`` come
    with their real transformers processor (tiny image processor + byte tokenizer) built in code.

        >>> model = tiny_model("qwen2", seed=1)                 # same seed, same weights
        >>> model = tiny_model("llama", num_hidden_layers=8)   # any config field overridden

    ``family``: a transformers model type, for text any decoder AutoConfig knows (llama, qwen2, gemma2,
    ...), for images one of ``VLM_FAMILIES``; ``overrides`` go to the config."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    torch.manual_seed(seed)
    if family in VLM_FAMILIES:
        tok, processor = _processor(family)
        config = vlm_config(family, image_token_id=_image_id(family, tok), **overrides)
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        return HookedModel(model, tok, processor, name=f"tiny-{family}")
    tok = byte_tokenizer()
    config = _text_config(family, **overrides)
    with torch.device(device):  # initialise in place: an 8B-shaped model never visits the CPU
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return HookedModel(model, tok, name=f"tiny-{family}")


def _image_id(family: str, tok) -> int:
    name = {
        "qwen2_vl": "<|image_pad|>",
        "qwen2_5_vl": "<|image_pad|>",
        "gemma3": "<image_soft_token>",
        "mllama": "<|image|>",
    }.get(family, "<image>")
    return tok.convert_tokens_to_ids(name)


def _processor(family: str):
    """(tokenizer, processor or None) for a tiny vision-language model."""
    from transformers import CLIPImageProcessor

    clip = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if family == "llava":
        from transformers import LlavaProcessor

        tok = byte_tokenizer()
        proc = LlavaProcessor(
            image_processor=CLIPImageProcessor(**clip),
            tokenizer=tok,
            patch_size=8,
            vision_feature_select_strategy="default",
            image_token="<image>",
            chat_template=tok.chat_template,
            num_additional_image_tokens=1,
        )
        return tok, proc
    if family == "llava_next":
        from transformers import LlavaNextImageProcessor, LlavaNextProcessor

        tok = byte_tokenizer()
        image_processor = LlavaNextImageProcessor(**clip, image_grid_pinpoints=[[32, 32]])
        proc = LlavaNextProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=8,
            vision_feature_select_strategy="default",
            image_token="<image>",
            chat_template=tok.chat_template,
            num_additional_image_tokens=1,
        )
        return tok, proc
    if family in ("qwen2_vl", "qwen2_5_vl"):
        specials = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")
        tok = byte_tokenizer(specials, image_placeholder="<|vision_start|><|image_pad|><|vision_end|>")
        return tok, QwenImageProcessorLite(tok)
    if family == "gemma3":
        from transformers import Gemma3ImageProcessor, Gemma3Processor

        specials = ("<start_of_image>", "<image_soft_token>", "<end_of_image>")
        tok = byte_tokenizer(specials, image_placeholder="<start_of_image>")
        tok.boi_token, tok.image_token, tok.eoi_token = specials
        tok.boi_token_id, tok.image_token_id, tok.eoi_token_id = (
            tok.convert_tokens_to_ids(t) for t in specials
        )
        image_processor = Gemma3ImageProcessor(size={"height": 32, "width": 32})
        proc = Gemma3Processor(
            image_processor=image_processor,
            tokenizer=tok,
            chat_template=tok.chat_template,
            image_seq_length=4,
        )
        return tok, proc
    if family == "idefics3":
        from transformers import Idefics3Processor
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        tok = byte_tokenizer(("<fake_token_around_image>", "<global-img>", "<end_of_utterance>"))
        image_processor = Idefics3ImageProcessorPil(
            size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False
        )
        proc = Idefics3Processor(
            image_processor=image_processor, tokenizer=tok, image_seq_len=4, chat_template=tok.chat_template
        )
        return tok, proc
    if family == "mllama":
        from transformers import MllamaProcessor
        from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

        tok = byte_tokenizer(("<|image|>", "<|begin_of_text|>"), image_placeholder="<|image|>")
        tok.bos_token = "<|begin_of_text|>"  # the Mllama processor prepends it
        image_processor = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=4)
        return tok, MllamaProcessor(
            image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template
        )
    return byte_tokenizer(), None


class QwenImageProcessorLite:
    """Qwen2-VL's processing for images only: transformers' ``Qwen2VLProcessor`` insists on a video
    processor, which needs torchvision. Same steps as the real one: image patches and
    ``image_grid_thw`` from ``Qwen2VLImageProcessor``, each ``<|image_pad|>`` expanded to
    ``prod(grid_thw) / merge_size**2`` tokens, and ``mm_token_type_ids`` (1 on image tokens)."""

    image_token = "<|image_pad|>"

    def __init__(self, tokenizer):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.tokenizer = tokenizer
        self.chat_template = tokenizer.chat_template
        self.image_processor = Qwen2VLImageProcessorPil(
            patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=32 * 32
        )

    def apply_chat_template(self, *args, **kwargs):
        return self.tokenizer.apply_chat_template(*args, **kwargs)

    def __call__(self, text, images, padding=True, return_tensors="pt"):
        flat = [img for row in images for img in row]
        pixels = self.image_processor(images=flat, return_tensors="pt")
        grids = iter(pixels["image_grid_thw"].prod(-1) // self.image_processor.merge_size**2)
        expanded = []
        for t in text:
            parts = t.split(self.image_token)
            expanded.append(parts[0] + "".join(self.image_token * int(next(grids)) + p for p in parts[1:]))
        out = dict(self.tokenizer(expanded, padding=padding, return_tensors=return_tensors))
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        out["mm_token_type_ids"] = (out["input_ids"] == image_id).long()
        return out | dict(pixels)


def uneven_norms(model: HookedModel, scale: float = 0.5, seed: int = 0) -> HookedModel:
    """Add noise to every norm's scale, in place, and return the model. At random init every RMSNorm
    scales all features alike (Gemma's offset is 0), which hides whether a computation respects the
    norms; trained norms scale features unevenly, and so do these.

        >>> model = uneven_norms(tiny_model("gemma2"))
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "norm" in name:
                p.add_(scale * torch.randn(p.shape, generator=g).to(p))
    return model


def open_gates(model: HookedModel, seed: int = 0) -> HookedModel:
    """Give every learned write gate (Mllama's ``cross_attn_attn_gate``/``cross_attn_mlp_gate``) a
    random value in [0.3, 1.2], in place, and return the model. They start at 0, so at random init a
    cross-attention layer writes nothing (``tanh(0) * output``) and hides how its gate is handled;
    trained gates are not 0.

        >>> model = open_gates(tiny_model("mllama"))
    """
    g = torch.Generator().manual_seed(seed)
    names = {name for _, name in model.adapter.write_gates}
    with torch.no_grad():
        for layer in model.layers:
            for name in names:
                gate = getattr(layer, name, None)
                if gate is not None:
                    gate.copy_((0.3 + 0.9 * torch.rand(gate.shape, generator=g)).to(gate))
    return model


def dies_once(marker: str, family: str = "llama", after_forwards: int = 1, **overrides) -> HookedModel:
    """:func:`tiny_model`, whose process exits (as a killed worker does) at its forward number
    ``after_forwards + 1`` when the file ``marker`` does not exist yet, creating it first: across
    processes that share the file system, exactly one dies, once, in the middle of its work.

        >>> spec = interp.ModelSpec(factory=functools.partial(dies_once, "/tmp/died"))
    """
    import os

    model = tiny_model(family, **overrides)
    seen = {"forwards": 0}

    def maybe_die(module, args, kwargs):
        seen["forwards"] += 1
        if seen["forwards"] > after_forwards:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # only the first process gets it
            except FileExistsError:
                return None
            os.close(fd)
            os._exit(1)
        return None

    model.model.register_forward_pre_hook(maybe_die, with_kwargs=True)
    return model


TINY_IMAGE_ID = 5  # a byte-tokenizer id that no test prompt contains


def tiny_organism_vl() -> HookedModel:
    """The organism VLM's architecture on :func:`tiny_model`'s Llama: the real EfficientNet shape and
    projector, random weights, the same weights on every call (a factory a Ray worker can call).

        >>> vlm = tiny_organism_vl()
    """
    from interp.organism.vlm import OrganismVLProcessor, build

    text = tiny_model("llama")
    torch.manual_seed(0)
    vlm = build(text.model, pool=2, image_token_id=TINY_IMAGE_ID).eval()
    # at PyTorch's default init the random EfficientNet shrinks the signal block by block (features
    # ~1e-9), so every image gave the same image tokens; He-normal convolutions keep images apart
    g = torch.Generator().manual_seed(0)
    for module in vlm.model.vision_tower.modules():
        if isinstance(module, torch.nn.Conv2d):
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=g)
    processor = OrganismVLProcessor(text.tokenizer, vlm.config.n_image_tokens, image_token_id=TINY_IMAGE_ID)
    return HookedModel(vlm, text.tokenizer, processor, name="tiny-organism-vl", chat_template=False)


def steered_vllm(model, items: dict, directory, **engine_kwargs):
    """An in-process vLLM engine (float32, eager, prefix caching on) serving ``model`` (a tiny
    :class:`HookedModel`) with interp's steering: ``items`` (name -> interventions) saved as artifacts
    under ``directory``, the model and its tokenizer/processor under ``directory/model``.

        >>> llm = steered_vllm(tiny, {"add": [AddDirection(d, [1], 4.0)]}, tmp, max_num_batched_tokens=32)

    The artifact directory is set (``INTERP_VLLM_ARTIFACTS``) just before the engine starts: vLLM loads
    interp's plugin then, and the plugin reads the directory when the engine loads its model, so each
    engine of a process gets its own. Needs vLLM (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine
    in this process)."""
    import os
    from pathlib import Path

    import vllm

    from interp.steer import SteeringArtifact

    directory = Path(directory)
    model_dir, artifacts = directory / "model", directory / "artifacts"
    model.model.save_pretrained(model_dir)
    (model.processor or model.tokenizer).save_pretrained(model_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    for name, interventions in items.items():
        SteeringArtifact.create(model, interventions, method=name).save(artifacts / f"{name}.safetensors")
    os.environ["INTERP_VLLM_ARTIFACTS"] = str(artifacts)
    kwargs = dict(dtype="float32", enforce_eager=True, max_model_len=256, enable_prefix_caching=True, seed=0)
    return vllm.LLM(model=str(model_dir), **{**kwargs, **engine_kwargs})
