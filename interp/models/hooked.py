"""HookedModel: a Hugging Face model + its tokenizer/processor + the family adapter.

>>> model = interp.load_model("default")                 # or interp.wrap(hf_model, tokenizer)
>>> batch = model.encode(["How do I bake bread?"])
>>> with model.hooks(capture_layers="all") as run:
...     model.forward(batch)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooks import attach
from interp.inputs import Batch, check_chat_template, encode
from interp.models.adapters import Adapter, adapter_for, get_path, image_token_id
from interp.models.fingerprint import ModelFingerprint, weights_digest


@dataclass(eq=False)
class HookedModel:
    """The wrapped model. ``chat_template``: ``"auto"`` (use one when the tokenizer has it), True, False.
    ``planted``: layers known to hold the safety mechanism (a model organism's tuned window), which the
    locate report scores its answers against; None for real models. ``caption_prompt``: the prompt
    this VLM was trained to caption with, which retrieval-guided steering uses unless given one."""

    model: Any
    tokenizer: Any
    processor: Any | None = None
    name: str = ""
    chat_template: bool | str = "auto"
    planted: list[int] | None = None
    caption_prompt: str | None = None
    spec: Any | None = None  # how it was loaded (interp.ModelSpec), so workers can load it again; None: wrapped
    adapter: Adapter = field(init=False)

    def __post_init__(self):
        self.chat_template = check_chat_template(self.chat_template)
        self.adapter = adapter_for(self.model.config)
        self.name = self.name or getattr(self.model.config, "_name_or_path", "") or self.adapter.family
        self.model.eval()
        if self.tokenizer is not None:
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token

    # --- structure ---------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @cached_property
    def layers(self) -> torch.nn.ModuleList:
        return get_path(self.model, self.adapter.layers, "decoder layers")

    @cached_property
    def final_norm(self) -> torch.nn.Module:
        return get_path(self.model, self.adapter.final_norm, "final norm")

    @cached_property
    def lm_head(self) -> torch.nn.Module:
        return get_path(self.model, self.adapter.lm_head, "LM head")

    @cached_property
    def embed(self) -> torch.nn.Module:
        return get_path(self.model, self.adapter.embed, "token embedding")

    def component(self, layer: int, site: str) -> torch.nn.Module:
        """The attention (``site="attn"``) or MLP (``"mlp"``) block of decoder layer ``layer``."""
        candidates = {"attn": self.adapter.attn, "mlp": self.adapter.mlp}.get(site)
        if candidates is None:
            raise InputError(f"component site must be 'attn' or 'mlp', got {site!r}.")
        return get_path(self.layers[layer], candidates, f"{site} block of decoder layer {layer}")

    def writer(self, layer: int, site: str) -> torch.nn.Module:
        """The module whose output decoder layer ``layer`` adds to the residual stream for ``site``
        (``"attn"`` or ``"mlp"``): the block itself, or the norm after it in families that normalize
        each block's output before adding it (Gemma 2/3). Hooks at the ``attn``/``mlp`` sites sit
        here, so they see and edit what is written to the stream (as TransformerLens's
        ``hook_attn_out``/``hook_mlp_out`` do).

            >>> model.writer(3, "attn")    # Llama: layers[3].self_attn; Gemma 2: layers[3].post_attention_layernorm
        """
        post = {"attn": self.adapter.attn_out, "mlp": self.adapter.mlp_out}.get(site)
        block = self.component(layer, site)  # checks the site name
        if not post:
            return block
        return get_path(self.layers[layer], post, f"norm after the {site} block of decoder layer {layer}")

    @property
    def skippable_layers(self) -> frozenset[int]:
        """Decoder layers the model runs only when the input has images (Mllama's cross-attention
        layers); without one the stream passes them unchanged."""
        return frozenset(getattr(self.text_config, "cross_attention_layers", None) or ())

    def stream_source(self, layer: int) -> int:
        """The nearest layer at or before ``layer`` that always runs: its output is ``layer``'s when the
        skippable layers in between are skipped (-1 where none is: the token embedding).

            >>> model.stream_source(3)     # Mllama, cross-attention layer 3: 2
        """
        while layer >= 0 and layer in self.skippable_layers:
            layer -= 1
        return layer

    def stand_in_layers(self, layer_ids: list[int]) -> list[int]:
        """The layers before each requested skippable layer, back to one that always runs: what a
        skipped layer's output is read from when it does not run (hook these too)."""
        extra = set()
        for i in layer_ids:
            extra.update(range(max(self.stream_source(i), 0), i))
        return sorted(extra)

    def fill_skipped_layers(self, got: dict, layer_ids: list[int], positions, site: str = "resid") -> dict:
        """Captures ``{(layer, position name): (states, mask)}`` completed for the skippable layers
        that did not run (their hooks never fired): the stream passes them unchanged, so a skipped
        layer's residual output is the previous layer's, and its attention and MLP write nothing
        (zeros). ``layer_ids`` must include the stand-in layers (:meth:`stand_in_layers`)."""
        out = {}
        for i in layer_ids:
            for p in positions:
                if (i, p.name) in got:
                    out[(i, p.name)] = got[(i, p.name)][0]
                elif (i - 1, p.name) in out:
                    states, mask = out[(i - 1, p.name)]
                    out[(i, p.name)] = (states if site == "resid" else torch.zeros_like(states), mask)
                else:
                    raise InputError(
                        f"decoder layer {i} of {self.name} did not run in this forward (Mllama skips its "
                        "cross-attention layers when no image is given). Fix: include layer "
                        f"{i - 1} in layers=, or give images."
                    )
        return out

    def write_gain(self, layer: int, site: str) -> Tensor | None:
        """The learned gain between ``writer(layer, site)`` and the stream, or None where the writer's
        output is added as is: Mllama's cross-attention layers add ``tanh(gate) * output`` (their MLP
        also zeroes text tokens that see no image; see ``adapter.mlp_row_mask``).

            >>> model.write_gain(3, "attn")   # Mllama cross-attention layer: tanh(cross_attn_attn_gate)
        """
        name = dict(self.adapter.write_gates).get(site)
        gate = getattr(self.layers[layer], name, None) if name else None
        return None if gate is None else torch.tanh(gate.detach())

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's device (its execution device when a device map offloads it)."""
        hook = getattr(self.embed, "_hf_hook", None)
        if getattr(hook, "execution_device", None) is not None:
            return torch.device(hook.execution_device)
        weight = self.embed.weight
        if not weight.is_meta:
            return weight.device
        return next(p.device for p in self.model.parameters() if not p.is_meta)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_context(self) -> int | None:
        return getattr(self.text_config, "max_position_embeddings", None)

    @property
    def image_token_id(self) -> int | None:
        return image_token_id(self.config, self.adapter)

    @property
    def image_placeholder(self) -> str | None:
        """The string a prompt uses for one image (``<image>``, ``<|image_pad|>``...), or None."""
        if self.adapter.kind == "text" or self.processor is None:
            return None
        token = getattr(self.processor, "image_token", None)
        if token is None and self.image_token_id is not None:
            token = self.tokenizer.convert_ids_to_tokens(self.image_token_id)
        return token

    @cached_property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(
            name=self.name,
            architecture=type(self.model).__name__,
            model_type=self.adapter.family,
            n_layers=self.n_layers,
            d_model=self.d_model,
            vocab_size=int(self.text_config.vocab_size),
            weights_digest=weights_digest(self.model, self.embed, self.layers),
        )

    # --- running -----------------------------------------------------------------------------
    def encode(self, prompts, images=None, chat_template=None, system: str | None = None) -> Batch:
        """Prompts (+ images) → a left-padded :class:`Batch` on the model's device."""
        return encode(self, prompts, images=images, chat_template=chat_template, system=system)

    def forward(self, batch: Batch, **kwargs):
        with torch.inference_mode():
            return self.model(**batch.inputs, **kwargs)

    def next_token_logits(self, inputs: dict) -> Float[Tensor, "B V"]:
        """Logits at the last position of a forward on ``inputs`` (call under ``torch.inference_mode()``
        or with grad as needed). The LM head runs on that position only where the model supports
        ``logits_to_keep`` (transformers 5 decoders do), and no KV cache is built."""
        kwargs = {"use_cache": False}
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            kwargs["logits_to_keep"] = 1
        return self.model(**inputs, **kwargs).logits[:, -1]

    def generate(self, batch: Batch, max_new_tokens: int = 32, **kwargs) -> list[str]:
        """Greedy by default; returns only the new text of each row."""
        kwargs.setdefault("do_sample", False)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            out = self.model.generate(
                **batch.inputs, max_new_tokens=max_new_tokens, pad_token_id=pad, **kwargs
            )
        new = out[:, batch.input_ids.shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def hooks(
        self,
        capture_layers=None,
        capture_positions="last",
        edits=(),
        stop: bool = False,
        keep_layers=None,
        capture_site: str = "resid",
        replay=None,
        replay_tuple: bool = False,
    ):
        """Context manager registering capture/edit hooks; see :func:`interp.hooks.attach`."""
        return attach(
            self,
            capture_layers=capture_layers,
            capture_positions=capture_positions,
            edits=edits,
            stop=stop,
            keep_layers=keep_layers,
            capture_site=capture_site,
            replay=replay,
            replay_tuple=replay_tuple,
        )

    def unembed(self, hidden: Float[Tensor, "... d"]) -> Float[Tensor, "... vocab"]:
        """Logit lens: final norm then LM head, as the model applies them after its last layer, with the
        final logit soft-capping of families that have one (Gemma 2: ``cap * tanh(logits / cap)``).

            >>> model.unembed(states[:, -1])      # last layer's output -> the model's own logits
        """
        logits = self.lm_head(self.final_norm(hidden))
        cap = getattr(self.text_config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def __repr__(self) -> str:
        return (
            f"HookedModel({self.name!r}, family={self.adapter.family}, kind={self.adapter.kind}, "
            f"layers={self.n_layers}, d_model={self.d_model}, dtype={self.dtype}, device={self.device})"
        )
