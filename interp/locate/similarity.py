"""Similarity views of the safety layers: text-vs-image cosine, the Safety-Layers gap, logit-lens refusal.

>>> cross_modal_cosine(text_acts, image_acts)          # TGA's semantic shift, per layer
>>> safety_gap(acts)                                  # Li et al.: cos(N,N) - cos(N,M) per layer
>>> lens = logit_lens_refusal(model, prompts)          # rank/prob of refusal tokens per layer
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import Activations
from interp.capture import capture
from interp.errors import InputError
from interp.locate.checks import check_finite, check_paired, labelled
from interp.locate.profile import LayerProfile
from interp.refusal import refusal_token_ids


def cross_modal_cosine(
    text: Activations, image: Activations, text_position: str = "last", image_position: str = "last"
) -> LayerProfile:
    """Mean cosine between the text form's and the image form's state of the same request, per layer.

    ``image_position="image_mean"`` with ``text_position="mean"`` compares image tokens with the
    caption text (TGA's figure); the default compares the last token, where the answer is decided.
    """
    check_paired(text, image)
    a, b = text[text_position].float(), image[image_position].float()
    if a.ndim != 3 or b.ndim != 3:
        raise InputError("cross_modal_cosine needs reduced positions (one vector per prompt and layer).")
    check_finite(a, "text activations")
    check_finite(b, "image activations")
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [N, L]
    return LayerProfile(
        method="cross_modal_cosine",
        layers=list(text.layers),
        scores=cos.mean(0).tolist(),
        lower=(cos.mean(0) - cos.std(0)).tolist() if len(cos) > 1 else None,
        upper=(cos.mean(0) + cos.std(0)).tolist() if len(cos) > 1 else None,
        score_name="cosine(text state, image state)",
        higher_is="image inputs look like their text form",
        model=text.fingerprint.name,
        metadata={"text_position": text_position, "image_position": image_position, "n_pairs": len(text)},
    )


def _mean_pair_cos(x: Float[Tensor, "A L D"], y: Float[Tensor, "B L D"], same: bool) -> Float[Tensor, " L"]:
    xn = torch.nn.functional.normalize(x, dim=-1).transpose(0, 1)  # [L, A, D]
    yn = torch.nn.functional.normalize(y, dim=-1).transpose(0, 1)
    sims = xn @ yn.transpose(1, 2)  # [L, A, B]
    if same:
        n = sims.shape[-1]
        off = ~torch.eye(n, dtype=torch.bool)
        return sims[:, off].mean(-1)
    return sims.flatten(1).mean(-1)


def safety_gap(acts: Activations, position: str = "last", positive: str = "harmful") -> LayerProfile:
    """Li et al.'s safety-layer signal: mean cosine of harmless-harmless pairs minus harmless-harmful pairs.

    The gap is near zero in early layers and opens where the model starts to tell malicious requests
    apart; the first layers where it widens are their "safety layers".
    """
    x, y = labelled(acts, position, positive)
    nn_cos = _mean_pair_cos(x[~y], x[~y], same=True)
    nm_cos = _mean_pair_cos(x[~y], x[y], same=False)
    gap = nn_cos - nm_cos
    return LayerProfile(
        method="safety_gap",
        layers=list(acts.layers),
        scores=gap.tolist(),
        score_name="cos(normal, normal) - cos(normal, malicious)",
        higher_is="harmful requests separate from harmless ones",
        model=acts.fingerprint.name,
        metadata={"position": position, "nn_cos": nn_cos.tolist(), "nm_cos": nm_cos.tolist()},
    )


def logit_lens_refusal(
    model, prompts: list[str], images=None, top_k: int = 5, batch_size: int = 16, layers="all"
) -> LayerProfile:
    """Per layer, read the last-token state through the final norm and unembedding (logit lens).

    Scores: mean probability of the refusal tokens (first tokens of refusal openers). Metadata: the
    fraction of prompts whose best refusal token is in the top-``top_k`` (TGA's criterion; the first
    layer where that happens is TGA's safety layer) and HiddenDetect's cosine between the lens logits
    and the refusal-token indicator vector.
    """
    acts = capture(model, prompts, images=images, positions="last", layers=layers, batch_size=batch_size)
    token_ids = refusal_token_ids(model.tokenizer)
    h = acts["last"].float()  # [N, L, D]
    check_finite(h)
    probs, in_top, hidden_detect = [], [], []
    indicator = None
    with torch.inference_mode():
        for j in range(h.shape[1]):
            logits = model.unembed(h[:, j].to(model.device, model.dtype)).float()  # [N, V]
            p = logits.softmax(-1)
            probs.append(p[:, token_ids].sum(-1).mean().item())
            rank = (logits > logits[:, token_ids].max(-1, keepdim=True).values).sum(-1)  # 0 = top-1
            in_top.append((rank < top_k).float().mean().item())
            if indicator is None:
                indicator = torch.zeros(logits.shape[-1], device=logits.device)
                indicator[token_ids] = 1.0
            hidden_detect.append(
                torch.nn.functional.cosine_similarity(logits, indicator.expand_as(logits), dim=-1)
                .mean()
                .item()
            )
    first = next((acts.layers[j] for j, f in enumerate(in_top) if f >= 0.5), None)
    return LayerProfile(
        method="logit_lens_refusal",
        layers=list(acts.layers),
        scores=probs,
        score_name="P(refusal tokens) through the logit lens",
        higher_is="the layer already points at a refusal",
        model=model.name,
        metadata={
            "top_k": top_k,
            "fraction_in_top_k": in_top,
            "first_layer_majority_in_top_k": first,
            "hidden_detect_cosine": hidden_detect,
            "refusal_token_ids": token_ids,
            "refusal_tokens": model.tokenizer.convert_ids_to_tokens(token_ids),
            "n_prompts": len(prompts),
            "images": images is not None,
        },
    )
