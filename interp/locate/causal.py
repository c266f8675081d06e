"""Causal checks of a located window that need no ground truth: is it sufficient, is it necessary?

    >>> checks = window_checks(model, harmful, harmless, window=[11, 12, 13, 14, 15])
    >>> checks.sufficiency["components"].estimate, checks.necessity["reset"].low
    >>> checks.control                     # the same numbers for same-width windows elsewhere

All effects are on the refusal log-odds of the first answer token (``refusal_logodds``), normalized so
that 0 is the untouched run and 1 is the other run's value, per pair of a harmful and a harmless prompt
(pair i = harmful[i], harmless[i]), at the last ``last_positions`` positions (the chat template's tokens,
aligned across prompts of different lengths):

- *sufficiency* (harmful -> harmless run): ``components``: the window's attention and MLP outputs from the
  harmful run written into the harmless run (does what the window writes make a harmless prompt
  refuse?); ``resid``: the residual stream at the window's layers from the harmful run (the state the
  window hands on).
- *necessity* (on the harmful run): ``reset``: the window's attention and MLP outputs set to the harmless
  run's (does refusal fall without what the window writes?); ``ablate``: the refusal direction
  (difference of means, harmful - harmless, at the window's last layer, last token) projected out of the
  stream at every layer of the window and every position. 1 = refusal falls to the harmless level.

Intervals: percentile bootstrap over the pairs (the normalizing means are resampled with them). The
``control`` entry repeats each check for every same-width window that does not touch the located one
(mean over them): a window that is truly where refusal is decided should beat it clearly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import Edit
from interp.errors import InputError
from interp.inputs import chunks
from interp.positions import parse_positions
from interp.refusal import refusal_logodds, refusal_token_ids


@dataclass(frozen=True)
class Effect:
    estimate: float
    low: float
    high: float
    n_pairs: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WindowChecks:
    window: list[int]
    sufficiency: dict[str, Effect]
    necessity: dict[str, Effect]
    control: dict[str, float] = field(default_factory=dict)  # check -> mean over control windows
    control_windows: list[list[int]] = field(default_factory=list)
    control_each: list[dict[str, float]] = field(default_factory=list)  # per control window
    positions: list[int] = field(default_factory=list)
    n_pairs: int = 0

    def to_dict(self) -> dict:
        return {
            "window": self.window,
            "sufficiency": {k: v.to_dict() for k, v in self.sufficiency.items()},
            "necessity": {k: v.to_dict() for k, v in self.necessity.items()},
            "control": self.control,
            "control_windows": self.control_windows,
            "control_each": self.control_each,
            "positions": self.positions,
            "n_pairs": self.n_pairs,
        }


def _bootstrap(
    patched: Float[Tensor, " n"],
    start: Float[Tensor, " n"],
    target: Float[Tensor, " n"],
    resamples: int,
    seed: int,
) -> Effect:
    """mean(patched - start) / mean(target - start), with a percentile interval over resampled pairs."""

    def stat(idx):
        denom = (target[idx] - start[idx]).mean()
        return float((patched[idx] - start[idx]).mean() / denom) if abs(float(denom)) > 1e-6 else 0.0

    n = len(patched)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.tensor([stat(torch.randint(n, (n,), generator=gen)) for _ in range(resamples)])
    low, high = torch.quantile(draws, torch.tensor([0.025, 0.975])).tolist()
    return Effect(round(stat(torch.arange(n)), 4), round(low, 4), round(high, 4), n)


def _states(model, prompts, layers, site, specs, batch_size) -> dict[int, Tensor]:
    """Per layer: ``[N, P, D]`` outputs of ``site`` at the positions ``specs``. A layer the text-only
    runs skip (Mllama's cross-attention layers) writes nothing, so it has no attn/mlp entry, and its
    residual output is the layer it passes the stream on from."""
    ran = [layer for layer in layers if layer not in model.skippable_layers]
    out: dict[int, list] = {layer: [] for layer in ran}
    for _, chunk, _ in chunks(prompts, None, batch_size):
        batch = model.encode(chunk)
        with model.hooks(ran, specs, capture_site=site) as run, torch.inference_mode():
            model.next_token_logits(batch.inputs)
        got = run.take()
        for layer in ran:
            out[layer].append(torch.stack([got[(layer, p.name)][0][0] for p in specs], 1).float())
    states = {layer: torch.cat(v) for layer, v in out.items()}
    if site == "resid":
        for layer in set(layers) - set(ran):
            source = model.stream_source(layer)
            if source >= 0:
                states[layer] = states[source]
    return states


def _metric(model, prompts, edits_for, token_ids, batch_size) -> Float[Tensor, " n"]:
    """Refusal log-odds per prompt, each batch run under ``edits_for(start, stop)``."""
    values = []
    for i, chunk, _ in chunks(prompts, None, batch_size):
        batch = model.encode(chunk)
        with model.hooks(edits=edits_for(i, i + len(chunk))), torch.inference_mode():
            values.append(refusal_logodds(model.next_token_logits(batch.inputs), token_ids).float().cpu())
    return torch.cat(values)


def _replace_edits(
    states: dict, window, sites, positions, start, stop, dtype, skipped=frozenset()
) -> list[Edit]:
    return [
        Edit.replace(states[site][layer][start:stop, j].to(dtype), [layer], positions=p, site=site)
        for site in sites
        for layer in window
        if layer in states[site] and layer not in skipped
        for j, p in enumerate(positions)
    ]


def window_checks(
    model,
    harmful: list[str],
    harmless: list[str],
    window: list[int],
    last_positions: int = 5,
    controls: bool = True,
    batch_size: int = 16,
    resamples: int = 1000,
    seed: int = 0,
) -> WindowChecks:
    """Sufficiency and necessity of ``window`` (see the module docstring), with control windows."""
    if not window:
        raise InputError("window is empty: there is nothing to check. Fix: pass the located layers.")
    if len(harmful) != len(harmless) or len(harmful) < 2:
        raise InputError(
            f"window_checks pairs harmful[i] with harmless[i]: it needs two lists of the same length >= 2 "
            f"(got {len(harmful)} and {len(harmless)})."
        )
    bad = [layer for layer in window if not 0 <= layer < model.n_layers]
    if bad:
        raise InputError(f"layers {bad} are outside {model.name}'s 0-{model.n_layers - 1}.")
    window = sorted(set(window))
    if set(window) <= model.skippable_layers:
        raise InputError(
            f"window {window} holds only layers {model.name} skips on text prompts (Mllama's cross-attention "
            "layers), so nothing in it runs and there is nothing to patch or ablate. Fix: widen the window "
            "to layers that run on text."
        )
    positions = [-(i + 1) for i in range(last_positions)][::-1]
    specs = parse_positions(positions)
    token_ids = refusal_token_ids(model.tokenizer)
    every = list(range(model.n_layers))
    states = {
        side: {
            site: _states(model, prompts, every, site, specs, batch_size) for site in ("attn", "mlp", "resid")
        }
        for side, prompts in (("harmful", harmful), ("harmless", harmless))
    }
    m_harmful = _metric(model, harmful, lambda a, b: [], token_ids, batch_size)
    m_harmless = _metric(model, harmless, lambda a, b: [], token_ids, batch_size)
    # the refusal direction at the end of each window: difference of means at the last token
    last = {
        layer: states["harmful"]["resid"][layer][:, -1].mean(0)
        - states["harmless"]["resid"][layer][:, -1].mean(0)
        for layer in states["harmful"]["resid"]
    }
    skipped = frozenset(model.skippable_layers)  # they do not run on text, so nothing is patched there

    def run_all(w: list[int]) -> dict[str, Effect]:
        dtype = model.dtype
        comp_in = _metric(
            model,
            harmless,
            lambda a, b: _replace_edits(
                states["harmful"], w, ("attn", "mlp"), positions, a, b, dtype, skipped
            ),
            token_ids,
            batch_size,
        )
        resid_in = _metric(
            model,
            harmless,
            lambda a, b: _replace_edits(states["harmful"], w, ("resid",), positions, a, b, dtype, skipped),
            token_ids,
            batch_size,
        )
        reset = _metric(
            model,
            harmful,
            lambda a, b: _replace_edits(
                states["harmless"], w, ("attn", "mlp"), positions, a, b, dtype, skipped
            ),
            token_ids,
            batch_size,
        )
        end = max((layer for layer in w if layer in last), default=None)
        direction = last[end if end is not None else model.stream_source(w[-1])].to(dtype)
        ablate = _metric(
            model,
            harmful,
            lambda a, b: [Edit.ablate(direction, layers=w, positions="all")],
            token_ids,
            batch_size,
        )
        return {
            "components": _bootstrap(comp_in, m_harmless, m_harmful, resamples, seed),
            "resid": _bootstrap(resid_in, m_harmless, m_harmful, resamples, seed),
            "reset": _bootstrap(reset, m_harmful, m_harmless, resamples, seed),
            "ablate": _bootstrap(ablate, m_harmful, m_harmless, resamples, seed),
        }

    found = run_all(window)
    control_windows: list[list[int]] = []
    control: dict[str, float] = {}
    each: list[dict[str, float]] = []
    if controls:
        width = len(range(window[0], window[-1] + 1))
        for start in range(0, model.n_layers - width + 1, width):
            w = list(range(start, start + width))
            if w[-1] < window[0] - 1 or w[0] > window[-1] + 1:
                control_windows.append(w)
        if control_windows:
            effects = [run_all(w) for w in control_windows]
            control = {k: round(sum(e[k].estimate for e in effects) / len(effects), 4) for k in found}
            each = [{k: e[k].estimate for k in found} for e in effects]
    return WindowChecks(
        window=window,
        sufficiency={k: found[k] for k in ("components", "resid")},
        necessity={k: found[k] for k in ("reset", "ablate")},
        control=control,
        control_windows=control_windows,
        control_each=each,
        positions=positions,
        n_pairs=len(harmful),
    )


__all__ = ["Effect", "WindowChecks", "window_checks"]
