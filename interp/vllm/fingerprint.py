"""The fingerprint of a Hugging Face checkpoint directory, read from its files (no model is built):
what a vLLM engine checks steering artifacts against.

    >>> fp = checkpoint_fingerprint("runs/organism-ablated")   # config.json + *.safetensors
    >>> fp.check(artifact.fingerprint, "steering artifact")    # FingerprintMismatchError if made elsewhere

It equals :attr:`interp.HookedModel.fingerprint` of the model loaded from the same directory: the same
config facts, and the same strided sample of the embedding and of the first four matrices (by name)
of every decoder layer, read from the safetensors files by their Hugging Face names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from interp.errors import InputError
from interp.models.fingerprint import ModelFingerprint

LAYER = re.compile(r"^(?P<prefix>.*?)layers\.(?P<index>\d+)\.(?P<name>.+)$")


def checkpoint_fingerprint(directory) -> ModelFingerprint:
    from safetensors import safe_open
    from transformers import AutoConfig

    from interp.models.adapters import adapter_for

    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not (directory / "config.json").is_file() or not files:
        raise InputError(
            f"{directory} is not a Hugging Face checkpoint directory (config.json and *.safetensors). Fix: "
            "save the model with save_pretrained (interp export bake does), or pass its directory."
        )
    config = AutoConfig.from_pretrained(directory)
    text = config.get_text_config()
    shapes, where = {}, {}
    for f in files:
        with safe_open(f, "pt") as st:
            for key in st.keys():
                where[key] = f
                shapes[key] = st.get_slice(key).get_shape()
    embeds = sorted(k for k in shapes if k.endswith("embed_tokens.weight"))
    if not embeds:
        raise InputError(f"{directory}: no embed_tokens.weight among the checkpoint's tensors.")
    embed = embeds[0]
    prefix = embed[: -len("embed_tokens.weight")]
    per_layer: dict[int, list[str]] = {}
    for key, shape in shapes.items():
        m = LAYER.match(key)
        if m and m["prefix"] == prefix and len(shape) == 2:
            per_layer.setdefault(int(m["index"]), []).append(m["name"])
    n_layers = int(text.num_hidden_layers)
    if sorted(per_layer) != list(range(n_layers)):
        raise InputError(
            f"{directory}: the checkpoint's layers {sorted(per_layer)} are not the config's {n_layers}."
        )
    keys = [embed] + [f"{prefix}layers.{i}.{n}" for i in range(n_layers) for n in sorted(per_layer[i])[:4]]
    h = hashlib.sha256()
    for key in keys:
        with safe_open(where[key], "pt") as st:
            flat = st.get_tensor(key).reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(flat[::step][:4096].float().contiguous().numpy().tobytes())
    arch = (config.architectures or ["?"])[0]
    return ModelFingerprint(
        name=str(directory),
        architecture=arch,
        model_type=adapter_for(config).family,
        n_layers=n_layers,
        d_model=int(text.hidden_size),
        vocab_size=int(text.vocab_size),
        weights_digest=h.hexdigest()[:16],
    )
