"""Fold steering into the weights, where that is exact, so any engine serves the steered model.

    >>> baked = interp.export.bake(model, [AblateDirection(refusal)])       # a new HookedModel
    >>> interp.export.save_baked(model, artifact.interventions, "runs/organism-ablated")  # HF checkpoint
    >>> with folded_ablation(model, [refusal]):      # the same edit on the model itself, for a block
    ...     model.generate(batch)                    # (interp.steer.steer(model, items, fold=True))

What folds exactly:

- ``AblateDirection(d, layers="all", positions="all")``: the direction is projected out of every matrix
  that writes to the residual stream, ``W <- (I - d d^T) W`` for the token embedding, each attention
  output projection and each MLP down projection (and their biases). Its hook form ablates the same
  writers (:class:`interp.steer.AblateDirection`), so the two agree to float tolerance. A tied LM head
  is untied first (it keeps the original embedding), since the head must not change.
- ``AddDirection(d, layers, alpha, positions="all")`` and ``ShiftToText(positions="all")``: a constant
  added after decoder layer ``l`` becomes a bias of that layer's MLP down projection (the last thing
  the layer adds to the stream). Needs a family whose config can declare MLP biases (Llama's
  ``mlp_bias``); others get a clear error.

What cannot be baked, and says so: :class:`~interp.steer.Conditional` (decides per input),
:class:`~interp.steer.RetrievalGuided` (per input), :class:`~interp.steer.SetProjection` (depends on
the state), ablation at chosen layers only, and anything restricted to some positions. Serve those
with ``interp serve`` instead. Vision-language models are refused: image features enter the stream
after the token embedding, where no weight of the language model can remove them. So are families
that normalize each block's output before adding it to the stream (Gemma 2/3): the norm's learned
per-feature scale sits between every projection and the stream.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import InputError
from interp.steer.folding import (
    ablated_weights,
    additions_by_layer,
    check_foldable,
    check_mlp_bias_adds,
    check_text_model,
    mlp_down,
    not_foldable,
)
from interp.steer.interventions import AblateDirection, AddDirection, ShiftToText


def _check(model, interventions) -> tuple[list[Tensor], dict[int, Tensor]]:
    """Split the interventions into directions to ablate and per-layer constants; refuse the rest."""
    check_text_model(model, "bake a text model, or serve the VLM with hooks (interp serve)")
    if not interventions:
        raise InputError("nothing to bake: pass at least one intervention.")
    ablate, added = [], []
    for item in interventions:
        if getattr(item, "positions", "all") != "all":
            raise not_foldable(item, f"it acts on positions {item.positions!r}, weights act on all of them")
        if isinstance(item, AblateDirection):
            if item.layers != "all":
                raise not_foldable(
                    item,
                    "ablation at chosen layers is not a weight edit (use layers='all', as Arditi et al.)",
                )
            ablate.append(item.direction.float())
        elif isinstance(item, (AddDirection, ShiftToText)):
            added.append(item)
        else:
            why = {
                "Conditional": "it decides per input whether to act",
                "RetrievalGuided": "its correction is computed per input",
                "SetProjection": "its change depends on the state it edits",
            }.get(type(item).__name__, "it is not a constant edit of the residual stream")
            raise not_foldable(item, why)
    return ablate, additions_by_layer(model, added)


def bake(model, interventions):
    """A new :class:`~interp.models.hooked.HookedModel` with the interventions folded into a copy of the
    weights (the original is untouched). Logits equal the hook-steered model's to float tolerance."""
    from interp.models.load import wrap

    ablate, add = _check(model, interventions)
    family = model.adapter.family
    if add:
        check_mlp_bias_adds(model, "serve the addition with hooks (interp serve, interp.steer.steer)")
    if add and not hasattr(model.text_config, "mlp_bias"):
        raise InputError(
            f"the {family} family's config has no mlp_bias, so a constant addition cannot become a bias "
            "there. Fix: bake ablations only, or serve the addition with hooks (interp serve)."
        )
    if ablate:
        check_foldable(model)  # before the copy
    hf = copy.deepcopy(model.model)
    _drop_gguf_marks(hf)
    baked = wrap(
        hf, model.tokenizer, model.processor, name=f"{model.name}+baked", chat_template=model.chat_template
    )
    with torch.no_grad():
        if ablate:
            if getattr(baked.text_config, "tie_word_embeddings", False):
                head = baked.lm_head
                head.weight = torch.nn.Parameter(head.weight.detach().clone())
                baked.text_config.tie_word_embeddings = False
                baked.config.tie_word_embeddings = False
            for module, name, value in ablated_weights(baked, ablate):
                getattr(module, name).copy_(value)
        if add:
            baked.text_config.mlp_bias = True
            for i in range(baked.n_layers):
                mlp = baked.component(i, "mlp")
                for name in ("gate_proj", "up_proj", "down_proj"):
                    lin = getattr(mlp, name, None)
                    if isinstance(lin, torch.nn.Linear) and lin.bias is None:
                        lin.bias = torch.nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype))
                down = mlp_down(mlp, family)
                if i in add:
                    down.bias.add_(add[i].to(down.bias))
    return baked


def _drop_gguf_marks(hf) -> None:
    """A model read from a GGUF holds dequantized float weights but still says it is GGUF-quantized,
    which makes ``save_pretrained`` refuse; the baked copy is a plain float checkpoint."""
    quantizer = getattr(hf, "hf_quantizer", None)
    if quantizer is not None and "gguf" in type(quantizer).__name__.lower():
        hf.hf_quantizer, hf.is_quantized = None, False
        if hasattr(hf, "quantization_method"):
            del hf.quantization_method
        for cfg in {
            id(hf.config): hf.config,
            id(hf.config.get_text_config()): hf.config.get_text_config(),
        }.values():
            if hasattr(cfg, "quantization_config"):
                del cfg.quantization_config


def save_checkpoint(model, out: str | Path) -> Path:
    """The model as loaded, unsteered, as a plain Hugging Face checkpoint (a GGUF-loaded model's
    dequantized float weights): what ``interp serve --engine vllm`` and other engines serve, and what
    steering artifacts made on ``model`` match (:func:`interp.vllm.fingerprint.checkpoint_fingerprint`).

        >>> interp.export.save_checkpoint(interp.load_model("organism"), "runs/organism")
    """
    out = _empty_dir(out)
    hf = copy.deepcopy(model.model)
    _drop_gguf_marks(hf)
    hf.save_pretrained(str(out))
    (model.processor or model.tokenizer).save_pretrained(str(out))
    return out


def _empty_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(
            f"{out} exists and is not empty. Fix: choose a new directory; nothing is overwritten."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_baked(model, interventions, out: str | Path, record: dict | None = None) -> Path:
    """Bake and write a Hugging Face checkpoint (safetensors, config, tokenizer) plus ``interp_bake.json``
    (what was baked, for which model). ``AutoModelForCausalLM.from_pretrained(out)`` loads it."""
    baked = bake(model, interventions)
    out = _empty_dir(out)
    baked.model.save_pretrained(str(out))
    (model.processor or model.tokenizer).save_pretrained(str(out))
    info = {
        "baked_from": model.fingerprint.to_dict(),
        "interventions": [item.spec()[0] for item in interventions],
        **(record or {}),
    }
    (out / "interp_bake.json").write_text(json.dumps(info, indent=1))
    return out
