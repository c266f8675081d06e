"""Model diffing: find the layers where a tuned model's refusal comes from, by swapping windows of
layers between it and its base model.

    >>> tuned, base = interp.load_model("organism"), interp.load_model("default")
    >>> d = diff_windows(tuned, base, harmful, harmless)
    >>> d.window, d.transplant[(10, 16)], d.necessity[(10, 16)]

For a real pair (an instruct model and its base, a safety-tuned model and its parent, an LVLM's
language model and the text-only model it started from) with the same architecture and layer count:

- ``transplant[(a, b)]``: the base model with the tuned model's layers a..b (inclusive) swapped in:
  0 = the base model's refusal on the harmful prompts, 1 = the tuned model's (refusal log-odds of the
  first answer token, mean over prompts);
- ``window``: the shortest window whose transplant reaches ``threshold`` (ties: the larger transplant),
  i.e. the fewest tuned layers that carry the tuned behaviour into the base model;
- ``necessity``: for that window, the tuned model with the base model's layers swapped in: 0 = no
  change, 1 = refusal falls to the base model's level; ``harmless_transplant``: the window's transplant
  measured on the harmless prompts (does it carry over-refusal too? 1 = the tuned model's level).

Cost: one forward over the harmful prompts per window, and a copy of the window's weights in and out:
windows up to 16 layers of a 30-layer 135M model (360 windows, 16 prompts) took about 10 minutes on a
2-core CPU. Pass ``max_width`` to bound it.

This compares two models, so it is not a candidate for single-model localization (``rules.py``); on a
model organism, whose weights differ from the base only inside its planted window, it finds that window
by construction, which makes it a check of the method rather than of a hypothesis. Only the decoder
layers are swapped (embeddings, final norm and head stay the host model's), and both models read the
same token ids (the tuned model's encoding, chat template included); the harmless prompts give
the over-refusal side: ``harmless_transplant`` is the same transplant's effect on harmless prompts.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from interp.errors import InputError
from interp.inputs import chunks
from interp.refusal import refusal_logodds, refusal_token_ids


@dataclass
class DiffResult:
    window: list[int]
    threshold: float
    transplant: dict[tuple[int, int], float]
    necessity: float | None
    harmless_transplant: float | None
    tuned_metric: float
    base_metric: float
    per_layer_weight_change: list[float] = field(default_factory=list)  # relative Frobenius norm
    n_prompts: int = 0

    def to_dict(self) -> dict:
        key = lambda ab: f"{ab[0]}-{ab[1]}"  # noqa: E731
        return {
            "window": self.window,
            "threshold": self.threshold,
            "tuned_metric": self.tuned_metric,
            "base_metric": self.base_metric,
            "transplant": {key(k): v for k, v in self.transplant.items()},
            "necessity": self.necessity,
            "harmless_transplant": self.harmless_transplant,
            "per_layer_weight_change": self.per_layer_weight_change,
            "n_prompts": self.n_prompts,
        }


@contextmanager
def swapped(host, donor, layers: list[int]):
    """``host``'s decoder layers ``layers`` temporarily replaced by copies of ``donor``'s weights."""
    saved = {i: {k: v.detach().clone() for k, v in host.layers[i].state_dict().items()} for i in layers}
    try:
        with torch.no_grad():
            for i in layers:
                host.layers[i].load_state_dict(donor.layers[i].state_dict())
        yield host
    finally:
        with torch.no_grad():
            for i, state in saved.items():
                host.layers[i].load_state_dict(state)


def _metric(model, batches, token_ids) -> float:
    values = []
    for batch in batches:
        with torch.inference_mode():
            values.append(refusal_logodds(model.next_token_logits(batch.inputs), token_ids).float())
    return float(torch.cat(values).mean())


def weight_change(tuned, base) -> list[float]:
    """Per decoder layer: ||W_tuned - W_base|| / ||W_base|| over all its parameters."""
    out = []
    for lt, lb in zip(tuned.layers, base.layers, strict=True):
        with torch.no_grad():
            pairs = list(zip(lt.parameters(), lb.parameters(), strict=True))
            diff = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in pairs)
            norm = sum(float(b.float().pow(2).sum()) for _, b in pairs)
        out.append(round((diff / norm) ** 0.5, 6) if norm else 0.0)
    return out


def diff_windows(
    tuned,
    base,
    harmful: list[str],
    harmless: list[str],
    max_width: int | None = None,
    threshold: float = 0.9,
    batch_size: int = 16,
) -> DiffResult:
    """Transplant every window of up to ``max_width`` layers (default: all; n(n+1)/2 forwards over the
    harmful prompts) and check the found one both ways (see the module docstring)."""
    if tuned.n_layers != base.n_layers or tuned.d_model != base.d_model:
        raise InputError(
            f"{tuned.name} ({tuned.n_layers} layers, d={tuned.d_model}) and {base.name} ({base.n_layers} layers, "
            f"d={base.d_model}) differ in shape; diffing swaps layers, so it needs the same architecture."
        )
    if not harmful or not harmless:
        raise InputError("diff_windows needs harmful and harmless prompts (neither may be empty).")
    if tuned.model is base.model:
        raise InputError("tuned and base are the same model object; load the base model separately.")
    if tuned.tokenizer.get_vocab() != base.tokenizer.get_vocab():
        raise InputError(
            f"{tuned.name} and {base.name} use different tokenizers; diffing needs one vocabulary."
        )
    n = tuned.n_layers
    max_width = n if max_width is None else max_width
    token_ids = refusal_token_ids(tuned.tokenizer)
    # one encoding (the tuned model's chat template) for both models: the same token ids go through each
    bad = [b for _, b, _ in chunks(harmful, None, batch_size)]
    good = [b for _, b, _ in chunks(harmless, None, batch_size)]
    bad, good = [tuned.encode(c) for c in bad], [tuned.encode(c) for c in good]
    m_tuned = _metric(tuned, bad, token_ids)
    m_base = _metric(base, bad, token_ids)
    h_tuned = _metric(tuned, good, token_ids)
    h_base = _metric(base, good, token_ids)
    denom = m_tuned - m_base
    if abs(denom) < 1e-6:
        raise InputError(
            f"{tuned.name} and {base.name} refuse the harmful prompts equally (log-odds {m_tuned:.3f}); "
            "there is no difference to localize."
        )
    transplant = {}
    for a in range(n):
        for b in range(a, min(n, a + max_width)):
            with swapped(base, tuned, list(range(a, b + 1))):
                transplant[(a, b)] = round((_metric(base, bad, token_ids) - m_base) / denom, 4)
    reach = [(b - a, -v, a, b) for (a, b), v in transplant.items() if v >= threshold]
    window = list(range(min(reach)[2], min(reach)[3] + 1)) if reach else []
    necessity = harmless_t = None
    if window:
        with swapped(tuned, base, window):
            necessity = round((m_tuned - _metric(tuned, bad, token_ids)) / denom, 4)
        hd = h_tuned - h_base
        with swapped(base, tuned, window):
            h = _metric(base, good, token_ids)
        harmless_t = round((h - h_base) / hd, 4) if abs(hd) > 1e-6 else None
    return DiffResult(
        window=window,
        threshold=threshold,
        transplant=transplant,
        necessity=necessity,
        harmless_transplant=harmless_t,
        tuned_metric=m_tuned,
        base_metric=m_base,
        per_layer_weight_change=weight_change(tuned, base),
        n_prompts=len(harmful),
    )


__all__ = ["DiffResult", "diff_windows", "swapped", "weight_change"]
