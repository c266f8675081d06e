"""Refusal directions: difference in means per layer, projections, and Arditi et al.'s selection protocol.

    >>> dirs = refusal_directions(acts)                            # acts labelled harmful/harmless
    >>> refusal_projection(dirs, text_acts, image_acts).scores     # mean projection per layer
    >>> sel = select_direction(model, dirs, harmful, harmless)     # ablation/addition/KL protocol
    >>> sel.layer, sel.profile.scores

Refusal metric (Arditi et al.): log-odds that the first answer token is a refusal opener
(``refusal_token_ids``: the first tokens of "I'm sorry", "I can't", "Sorry", ...).
Ablation is applied to every decoder layer's output and every position (interp's hooks sit on
layer outputs; Arditi et al. also project the attention/MLP outputs inside each layer, so ours is a
close approximation that leaves the direction in the mid-layer stream for one sublayer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import Activations
from interp.errors import InputError
from interp.locate.checks import check_paired, labelled
from interp.locate.profile import LayerProfile
from interp.models.fingerprint import ModelFingerprint
from interp.refusal import refusal_logodds, refusal_token_ids
from interp.steer.apply import last_logits
from interp.steer.interventions import AblateDirection, AddDirection


@dataclass
class Directions:
    """Difference-in-means vectors (harmful minus harmless) per captured layer, unnormalized."""

    vectors: Float[Tensor, "L D"]
    layers: list[int]
    position: str
    fingerprint: ModelFingerprint
    n_per_class: dict = field(default_factory=dict)

    def __getitem__(self, layer: int) -> Float[Tensor, " D"]:
        if layer not in self.layers:
            raise InputError(f"no direction for layer {layer}; directions exist for {self.layers}.")
        return self.vectors[self.layers.index(layer)]

    def unit(self, layer: int) -> Float[Tensor, " D"]:
        v = self[layer]
        return v / v.norm()


def refusal_directions(acts: Activations, position: str = "last", positive: str = "harmful") -> Directions:
    """mean(harmful) - mean(harmless) per layer at ``position``."""
    x, y = labelled(acts, position, positive)
    vectors = x[y].mean(0) - x[~y].mean(0)
    return Directions(
        vectors,
        list(acts.layers),
        position,
        acts.fingerprint,
        {"positive": int(y.sum()), "negative": int((~y).sum())},
    )


def projections(dirs: Directions, acts: Activations, position: str | None = None) -> Float[Tensor, "N L"]:
    """Per prompt and layer: the state's projection on that layer's unit direction."""
    if acts.layers != dirs.layers:
        raise InputError(f"activations have layers {acts.layers}, directions {dirs.layers}.")
    if acts.fingerprint.weights_digest != dirs.fingerprint.weights_digest:
        raise InputError(
            f"directions were computed on {dirs.fingerprint.name}, activations come from {acts.fingerprint.name}."
        )
    x = acts[position or dirs.position].float()
    unit = dirs.vectors / dirs.vectors.norm(dim=-1, keepdim=True)
    return torch.einsum("nld,ld->nl", x, unit)


def refusal_projection(
    dirs: Directions, text: Activations, image: Activations | None = None, position: str | None = None
) -> LayerProfile:
    """Mean projection on the refusal direction per layer: text inputs as scores, image inputs as baseline.

    With paired text/image captures of the same requests this is the TGA picture: where the image
    form's refusal score falls below the text form's, the safety mechanism does not see the image request.
    """
    t = projections(dirs, text, position)
    meta = {"position": position or dirs.position, "n_text": len(text)}
    base = None
    if image is not None:
        check_paired(text, image)
        i = projections(dirs, image, position)
        base = i.mean(0).tolist()
        meta["image_minus_text"] = (i - t).mean(0).tolist()
    return LayerProfile(
        method="refusal_projection",
        layers=list(dirs.layers),
        scores=t.mean(0).tolist(),
        lower=(t.mean(0) - t.std(0)).tolist() if len(t) > 1 else None,
        upper=(t.mean(0) + t.std(0)).tolist() if len(t) > 1 else None,
        baseline=base,
        score_name="projection on refusal direction (text; image = baseline)",
        model=dirs.fingerprint.name,
        metadata=meta,
    )


def relative_projection(
    dirs: Directions, acts: Activations, harmful: Activations, harmless: Activations, method: str
) -> LayerProfile:
    """Where ``acts`` sit on each layer's refusal direction between two reference groups: per layer,
    (mean projection - harmless mean) / (harmful mean - harmless mean), so 0 is where harmless inputs
    sit and 1 where harmful ones do (band: the same for the 25th and 75th percentile row).

        >>> relative_projection(dirs, benign_risky_images, harmful_images, harmless_images, "oversensitive")
    """
    x, h, b = (projections(dirs, a) for a in (acts, harmful, harmless))
    lo, hi = b.mean(0), h.mean(0)
    span = torch.where((hi - lo).abs() > 1e-6, hi - lo, torch.ones_like(hi))
    rel = (x - lo) / span  # [N, L]
    q = torch.quantile(rel, torch.tensor([0.25, 0.75]), dim=0) if len(rel) > 1 else None
    return LayerProfile(
        method=method,
        layers=list(dirs.layers),
        scores=rel.mean(0).tolist(),
        lower=q[0].tolist() if q is not None else None,
        upper=q[1].tolist() if q is not None else None,
        score_name="position on the refusal direction (0 = harmless inputs, 1 = harmful inputs)",
        higher_is="closer to where the model refuses",
        model=dirs.fingerprint.name,
        metadata={"n": len(x), "n_harmful": len(h), "n_harmless": len(b), "position": dirs.position},
    )


@dataclass
class Selection:
    layer: int | None
    direction: Float[Tensor, " D"] | None
    profile: LayerProfile
    table: list[dict]


def select_direction(
    model,
    dirs: Directions,
    harmful: list[str],
    harmless: list[str],
    kl_max: float = 0.1,
    exclude_last: float = 0.2,
    layers=None,
    batch_size: int = 16,
) -> Selection:
    """Arditi et al.'s protocol over candidate layers (one candidate direction per layer).

    For each layer's direction: ``bypass`` = mean refusal log-odds on harmful prompts with the direction
    ablated from every residual-stream activation (:class:`interp.steer.AblateDirection`) (lower = ablation removes refusal); ``induce`` = mean refusal log-odds on harmless
    prompts with the direction added at its layer (all positions); ``kl`` = KL(base || ablated) of the
    next-token distribution on harmless prompts. Kept: induce > 0, kl <= kl_max, layer < (1 -
    exclude_last) * n_layers. Chosen: the kept layer with the lowest bypass score. The profile's
    scores are ``-bypass`` (higher = ablating that layer's direction removes more refusal).
    """
    if dirs.fingerprint.weights_digest != model.fingerprint.weights_digest:
        raise InputError(
            f"directions were computed on {dirs.fingerprint.name}, not on {model.name}. Fix: recompute them "
            "on this model."
        )
    if not harmful or not harmless:
        raise InputError("select_direction needs harmful and harmless prompts (neither may be empty).")
    tok_ids = refusal_token_ids(model.tokenizer)
    cols = layer_indices_for(dirs, layers)
    base_harmful = refusal_logodds(last_logits(model, harmful, batch_size=batch_size), tok_ids).mean().item()
    base_harmless_logits = last_logits(model, harmless, batch_size=batch_size)
    base_harmless = refusal_logodds(base_harmless_logits, tok_ids).mean().item()
    limit = int((1 - exclude_last) * model.n_layers)
    table = []
    for layer in cols:
        v = dirs[layer]
        ablate = [AblateDirection(v)]  # every stream activation: embedding, attn and MLP outputs
        bypass = refusal_logodds(
            last_logits(model, harmful, interventions=ablate, batch_size=batch_size), tok_ids
        )
        add = [AddDirection(v, [layer], float(v.norm()), "all")]  # the raw difference in means
        induce = refusal_logodds(
            last_logits(model, harmless, interventions=add, batch_size=batch_size), tok_ids
        )
        abl_harmless = last_logits(model, harmless, interventions=ablate, batch_size=batch_size)
        kl = torch.nn.functional.kl_div(
            abl_harmless.log_softmax(-1),
            base_harmless_logits.log_softmax(-1),
            log_target=True,
            reduction="batchmean",
        ).item()
        row = {
            "layer": layer,
            "bypass": bypass.mean().item(),
            "induce": induce.mean().item(),
            "kl": kl,
            "in_range": layer < limit,
        }
        row["kept"] = row["induce"] > 0 and kl <= kl_max and row["in_range"]
        table.append(row)
    kept = [r for r in table if r["kept"]]
    best = min(kept, key=lambda r: r["bypass"]) if kept else None
    profile = LayerProfile(
        method="direction_ablation",
        layers=[r["layer"] for r in table],
        scores=[-r["bypass"] for r in table],
        baseline=[-base_harmful] * len(table),
        score_name="- refusal log-odds on harmful prompts with the direction ablated",
        higher_is="ablating this layer's direction removes more refusal",
        model=model.name,
        metadata={
            "selected_layer": best["layer"] if best else None,
            "base_harmful_logodds": base_harmful,
            "base_harmless_logodds": base_harmless,
            "kl_max": kl_max,
            "exclude_last": exclude_last,
            "table": table,
            "n_harmful": len(harmful),
            "n_harmless": len(harmless),
        },
    )
    return Selection(best["layer"] if best else None, dirs[best["layer"]] if best else None, profile, table)


def layer_indices_for(dirs: Directions, layers) -> list[int]:
    if layers is None:
        return list(dirs.layers)
    missing = [layer for layer in layers if layer not in dirs.layers]
    if missing:
        from interp.errors import LayerIndexError

        raise LayerIndexError(f"no directions for layers {missing}; they exist for {dirs.layers}.")
    return list(layers)
