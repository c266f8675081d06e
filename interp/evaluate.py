"""Behaviour under steering: refusal rate, over-refusal, KL on harmless prompts, perplexity.

    >>> interp.evaluate.refusal(vlm, prompts, images=imgs, interventions=[shift]).rate
    >>> interp.evaluate.kl_next_token(model, harmless, [AddDirection(refusal, [12], 4.0)])
    >>> interp.evaluate.perplexity(model, text, interventions)
    >>> interp.evaluate.answer_perplexity(vlm, prompts, steered_answers, images=imgs)  # fluency
    >>> r.interval(clusters=request_of_row)  # how sure the rate is (interp.bootstrap_interval)

Two refusal judges: the substring rules of :func:`interp.refusal.is_refusal` on a greedy answer
(``rate``), and, probe-free, the next-token refusal log-odds at the end of the prompt
(``logodds``: log P(refusal opener tokens) - log P(others); > 0 means a refusal opener is the
likelier start).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.inputs import groups, normalize_images
from interp.intervals import Interval, bootstrap_interval
from interp.ray_pool import check_engine, pool_for
from interp.refusal import is_refusal, refusal_logodds, refusal_token_ids
from interp.steer.apply import edits_for, folding, in_prompt_order, last_logits, prepared_batches


@dataclass
class RefusalEval:
    rate: float  # share of greedy answers the substring judge calls refusals
    logodds_rate: float  # share of prompts whose next-token refusal log-odds > 0
    mean_logodds: float
    n: int
    examples: list = field(default_factory=list)
    answers: list[str] = field(default_factory=list, repr=False)  # every answer, in prompt order
    steered_rate: float | None = None  # share of the image rows a gated per-input intervention steered
    refused: list[bool] = field(default_factory=list, repr=False)  # the substring judge, per prompt

    def interval(self, clusters: list | None = None, level: float = 0.95) -> Interval:
        """95% cluster-bootstrap interval of ``rate`` (``clusters``: one label per prompt, e.g. the
        request each rendering belongs to; None: every prompt its own)."""
        return bootstrap_interval({"rows": (self.refused, clusters)}, level=level)

    def to_dict(self) -> dict:
        return {
            "rate": self.rate,
            "logodds_rate": self.logodds_rate,
            "mean_logodds": self.mean_logodds,
            "n": self.n,
            "examples": self.examples,
            "steered_rate": self.steered_rate,
        }


@dataclass
class RefusalRows:
    """What :func:`refusal` computes per prompt, before it summarizes: the greedy answers, the
    next-token refusal log-odds, and whether a gated per-input intervention steered each image row."""

    answers: list[str]
    logodds: Float[Tensor, " n"]
    steered: list[bool]

    @classmethod
    def concat(cls, parts: list[RefusalRows]) -> RefusalRows:
        return cls(
            [a for p in parts for a in p.answers],
            torch.cat([p.logodds for p in parts]),
            [s for p in parts for s in p.steered],
        )


def refusal(
    model,
    prompts: list[str],
    images=None,
    interventions=(),
    max_new_tokens: int = 32,
    batch_size: int = 16,
    fold: bool = False,
    engine="local",
    workers: int = 2,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    max_retries: int = 3,
) -> RefusalEval:
    """Refusal rate of greedy answers (and the log-odds judge), with the interventions applied
    (``fold=True``: full ablations folded into the weights once for the call, as in ``steer``).

    ``engine="ray"`` splits the prompts into chunks of whole batches across ``workers`` Ray actors
    that each load the model (``model``: a model loaded by ``load_model``, a name or a
    :class:`interp.ModelSpec`); the interventions travel to them. ``engine=<interp.RayPool>`` uses
    a pool kept across calls. Answers do not depend on their batch companions, so the result is the
    local one (the log-odds to float rounding).
    """
    if not prompts:
        raise InputError("refusal() needs at least one prompt.")
    check_engine(engine)
    if engine == "local":
        rows = refusal_rows(model, prompts, images, interventions, max_new_tokens, batch_size, fold)
    else:
        pool, owned = pool_for(engine, model, workers, gpus_per_worker, cpus_per_worker, max_retries)
        try:
            rows = _refusal_rows_on(pool, prompts, images, interventions, max_new_tokens, batch_size, fold)
        finally:
            if owned:
                pool.close()
    refused = [is_refusal(a) for a in rows.answers]
    return RefusalEval(
        rate=sum(refused) / len(refused),
        logodds_rate=float((rows.logodds > 0).float().mean()),
        mean_logodds=float(rows.logodds.mean()),
        n=len(prompts),
        examples=[{"prompt": p, "answer": a} for p, a in list(zip(prompts, rows.answers, strict=True))[:3]],
        answers=rows.answers,
        steered_rate=sum(rows.steered) / len(rows.steered) if rows.steered else None,
        refused=refused,
    )


def refusal_rows(
    model,
    prompts: list[str],
    images=None,
    interventions=(),
    max_new_tokens: int = 32,
    batch_size: int = 16,
    fold: bool = False,
) -> RefusalRows:
    """:func:`refusal`'s per-prompt results on ``model`` in this process."""
    answers, logits, steered, order = [None] * len(prompts), [], [], []
    # one preparation per batch serves both judges (a per-input intervention retrieves once)
    with folding(model, interventions, fold) as rest:
        for rows, batch, edits, info in prepared_batches(model, prompts, images, rest, batch_size):
            steered += info.get("steered", [])
            with model.hooks(edits=edits):
                with torch.inference_mode():
                    logits.append(model.next_token_logits(batch.inputs).float().cpu())
                for i, answer in zip(rows, model.generate(batch, max_new_tokens=max_new_tokens), strict=True):
                    answers[i] = answer
            order += rows
    lo = refusal_logodds(in_prompt_order(torch.cat(logits), order), refusal_token_ids(model.tokenizer))
    return RefusalRows(answers, lo, steered)


def _refusal_rows_on(pool, prompts, images, interventions, max_new_tokens, batch_size, fold) -> RefusalRows:
    """The prompts in chunks of whole batches (about four per worker), one task each, in order."""
    n = len(prompts)
    per_image = normalize_images(images, n)
    chunk = batch_size * max(1, math.ceil(n / (batch_size * 4 * pool.workers)))
    settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "fold": fold}
    tasks = [
        (
            f"prompts {i}-{min(i + chunk, n) - 1}",
            (
                prompts[i : i + chunk],
                per_image[i : i + chunk] if per_image is not None else None,
                list(interventions),
            ),
            settings,
        )
        for i in range(0, n, chunk)
    ]
    return RefusalRows.concat(pool.run(refusal_rows, tasks))


def kl_next_token(
    model, prompts: list[str], interventions, images=None, batch_size: int = 16, fold: bool = False
) -> float:
    """Mean KL(unsteered || steered) of the next-token distribution at the end of each prompt."""
    return float(kl_per_prompt(model, prompts, interventions, images, batch_size, fold).mean())


def kl_per_prompt(
    model, prompts: list[str], interventions, images=None, batch_size: int = 16, fold: bool = False
) -> Float[Tensor, " n"]:
    """KL(unsteered || steered) of the next-token distribution at the end of each prompt, in prompt order.

    >>> kl = interp.evaluate.kl_per_prompt(model, harmless, [AddDirection(refusal, [12], 4.0)])
    >>> interp.bootstrap_interval({"harmless": (kl, None)})
    """
    if not prompts:
        raise InputError("kl_per_prompt() needs at least one prompt.")
    base = last_logits(model, prompts, images, (), batch_size).log_softmax(-1)
    steered = last_logits(model, prompts, images, interventions, batch_size, fold).log_softmax(-1)
    return (base.exp() * (base - steered)).sum(-1)


def perplexity(model, text: str, interventions=(), fold: bool = False) -> float:
    """Perplexity of ``text`` (no chat template) with constant interventions applied at every position
    (``fold``: as in ``steer``)."""
    ids = model.tokenizer(text, return_tensors="pt").input_ids.to(model.device)
    if ids.shape[1] < 2:
        raise InputError("perplexity needs a text of at least two tokens.")
    with folding(model, interventions, fold) as rest:
        with model.hooks(edits=edits_for(model, rest)), torch.inference_mode():
            loss = model.model(input_ids=ids, labels=ids).loss
    return math.exp(loss.item())


def answer_perplexity(
    model, prompts: list[str], answers: list[str], images=None, batch_size: int = 16
) -> float:
    """Perplexity of ``answers`` as continuations of ``prompts`` (chat template, images) under the
    *unsteered* model, token-weighted over all answers: whether steered generations are still text the
    model itself finds fluent. Unlike :func:`perplexity` it needs no hooks, so it scores the answers of
    any intervention, per-input ones included. Empty answers are skipped. Batched: each row is its
    left-padded prompt followed by its answer, padded in front to the longest answer (``images`` may
    mix images and ``None``)."""
    if len(prompts) != len(answers) or (images is not None and len(images) != len(prompts)):
        raise InputError("answer_perplexity needs one answer (and one image entry, if any) per prompt.")
    tok = model.tokenizer
    ids = [tok(a, add_special_tokens=False).input_ids if a else [] for a in answers]
    keep = [i for i in range(len(prompts)) if ids[i]]
    if not keep:
        raise InputError("answer_perplexity got only empty answers.")
    sub_images = None if images is None else [images[i] for i in keep]
    nll, n = 0.0, 0
    for rows, chunk, imgs in groups([prompts[i] for i in keep], sub_images, batch_size):
        answer_ids = [ids[keep[r]] for r in rows]
        inputs, width = _append_answers(model.encode(chunk, images=imgs), answer_ids, tok.pad_token_id)
        kwargs = {"use_cache": False}
        if "logits_to_keep" in inspect.signature(model.model.forward).parameters:
            kwargs["logits_to_keep"] = width + 1
        with torch.inference_mode():
            logits = model.model(**inputs, **kwargs).logits[:, -width - 1 : -1].float()
        targets = inputs["input_ids"][:, -width:]
        lengths = torch.tensor([len(a) for a in answer_ids], device=targets.device)
        scored = torch.arange(width, device=targets.device)[None, :] >= (width - lengths)[:, None]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        nll += float(loss[scored.flatten()].sum())
        n += int(scored.sum())
    return math.exp(nll / n)


def _append_answers(batch, answer_ids: list[list[int]], pad_id) -> tuple[dict, int]:
    """The batch's per-token inputs with each row's answer appended and the rows re-aligned at the end
    (left padding grows by the longest answer's length minus the row's own) → (inputs, longest)."""
    width = max(len(a) for a in answer_ids)
    b, t = batch.input_ids.shape
    inputs = {}
    for key, value in batch.inputs.items():
        if torch.is_tensor(value) and value.shape == (b, t):  # per-token: ids, attention mask, ...
            front = (pad_id or 0) if key == "input_ids" else 0
            rows = []
            for row, ans in zip(value, answer_ids, strict=True):
                tail = ans if key == "input_ids" else [int(key == "attention_mask")] * len(ans)
                parts = [[front] * (width - len(ans)), row.tolist(), tail]
                rows.append(torch.tensor([x for part in parts for x in part], dtype=value.dtype))
            value = torch.stack(rows).to(value.device)
        inputs[key] = value
    return inputs, width
