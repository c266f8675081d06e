"""Behaviour under steering: refusal rate, over-refusal, KL on harmless prompts, perplexity.

    >>> interp.evaluate.refusal(vlm, prompts, images=imgs, interventions=[shift]).rate
    >>> interp.evaluate.kl_next_token(model, harmless, [AddDirection(refusal, [12], 4.0)])
    >>> interp.evaluate.perplexity(model, text, interventions)

Two refusal judges: the substring rules of :func:`interp.organism.is_refusal` on a greedy answer
(``rate``), and, probe-free, the next-token refusal log-odds at the end of the prompt
(``logodds``: log P(refusal opener tokens) - log P(others); > 0 means a refusal opener is the
likelier start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from interp.errors import InputError
from interp.locate.directions import refusal_logodds, refusal_token_ids
from interp.steer.apply import edits_for, last_logits, prepared_batches


@dataclass
class RefusalEval:
    rate: float  # share of greedy answers the substring judge calls refusals
    logodds_rate: float  # share of prompts whose next-token refusal log-odds > 0
    mean_logodds: float
    n: int
    examples: list = field(default_factory=list)
    steered_rate: float | None = None  # share of rows a gated per-input intervention steered (else None)

    def to_dict(self) -> dict:
        return {
            "rate": self.rate,
            "logodds_rate": self.logodds_rate,
            "mean_logodds": self.mean_logodds,
            "n": self.n,
            "examples": self.examples,
            "steered_rate": self.steered_rate,
        }


def refusal(
    model, prompts: list[str], images=None, interventions=(), max_new_tokens: int = 32, batch_size: int = 16
) -> RefusalEval:
    """Refusal rate of greedy answers (and the log-odds judge), with the interventions applied."""
    from interp.organism import is_refusal

    if not prompts:
        raise InputError("refusal() needs at least one prompt.")
    answers, logits, steered = [], [], []
    # one preparation per batch serves both judges (a per-input intervention retrieves once)
    for batch, edits, info in prepared_batches(model, prompts, images, interventions, batch_size):
        steered += info.get("steered", [])
        with model.hooks(edits=edits):
            with torch.inference_mode():
                logits.append(model.next_token_logits(batch.inputs).float().cpu())
            answers += model.generate(batch, max_new_tokens=max_new_tokens)
    lo = refusal_logodds(torch.cat(logits), refusal_token_ids(model.tokenizer))
    return RefusalEval(
        rate=sum(map(is_refusal, answers)) / len(answers),
        logodds_rate=float((lo > 0).float().mean()),
        mean_logodds=float(lo.mean()),
        n=len(prompts),
        examples=[{"prompt": p, "answer": a} for p, a in list(zip(prompts, answers, strict=True))[:3]],
        steered_rate=sum(steered) / len(steered) if steered else None,
    )


def kl_next_token(model, prompts: list[str], interventions, images=None, batch_size: int = 16) -> float:
    """Mean KL(unsteered || steered) of the next-token distribution at the end of each prompt."""
    base = last_logits(model, prompts, images, (), batch_size).log_softmax(-1)
    steered = last_logits(model, prompts, images, interventions, batch_size).log_softmax(-1)
    return float((base.exp() * (base - steered)).sum(-1).mean())


def perplexity(model, text: str, interventions=()) -> float:
    """Perplexity of ``text`` (no chat template) with constant interventions applied at every position."""
    ids = model.tokenizer(text, return_tensors="pt").input_ids.to(model.device)
    if ids.shape[1] < 2:
        raise InputError("perplexity needs a text of at least two tokens.")
    with model.hooks(edits=edits_for(model, interventions)), torch.inference_mode():
        loss = model.model(input_ids=ids, labels=ids).loss
    return math.exp(loss.item())
