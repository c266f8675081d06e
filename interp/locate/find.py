"""The located layers alone, without the report: only the curves the chosen rule reads are computed.

    >>> found = interp.locate.find_layers(model, harmful, harmless)
    >>> found.layers, found.named          # [10, ..., 15], False: candidate layers (the rule is not reliable)
    >>> found.computed                     # "patching maps (resid, attn, mlp)": what was run

The answer equals :func:`interp.locate.run`'s ``candidate_layers`` (and ``safety_layers`` when the rule
is reliable) on the same prompts and settings: the same pairs, positions and patching maps, fed to the
same rule. The rule chosen on the organism suite reads only patching maps, so this skips the report's
probes, directions, logit lens, cross-modal and causal steps; a rule that reads those runs the report
(without its causal checks) and reads the answer from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import interp.locate.rules as candidate_rules
from interp.errors import InputError
from interp.locate.localize import chosen_rule, given_rule, patching_maps


@dataclass
class FoundLayers:
    """The chosen rule's layers; ``named``: whether the report would name them safety layers (the rule
    is reliable on the organism suite) or give them as candidate layers only."""

    layers: list[int]
    named: bool
    rule: str
    description: str
    computed: str
    n_pairs: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def find_layers(
    model,
    harmful: list[str],
    harmless: list[str],
    patch_pairs: int = 16,
    last_positions: int = 5,
    batch_size: int = 16,
    max_rows: int = 64,
    rule: str | None = None,
) -> FoundLayers:
    """The layers :func:`interp.locate.run` would locate on these prompts (its first ``patch_pairs``
    harmful/harmless pairs, patched at the last ``last_positions`` positions), computing only what
    the rule reads. ``rule``: a candidate of :data:`interp.locate.rules.RULES` instead of the suite's
    choice (then named as given)."""
    if not harmful or not harmless:
        raise InputError("finding the layers needs harmful and harmless prompts (neither may be empty).")
    card = chosen_rule() if rule is None else given_rule(rule)
    chosen = candidate_rules.RULES[card["rule"]]
    k = min(len(harmful), len(harmless), patch_pairs)
    if chosen.uses_maps:
        positions = [-(i + 1) for i in range(last_positions)][::-1]
        maps = patching_maps(
            model,
            harmful[:k],
            harmless[:k],
            positions,
            batch_size=batch_size,
            max_rows=max_rows,
        )
        layers = chosen.select(candidate_rules.Curves.from_maps(maps))
        computed = f"patching maps ({', '.join(maps)})"
    else:
        from interp.locate.report import LocateData, run

        data = LocateData(harmful, harmless, None, "find_layers")
        rep = run(
            model,
            data,
            last_positions=last_positions,
            patch_pairs=patch_pairs,
            batch_size=batch_size,
            max_rows=max_rows,
            progress=False,
            causal=False,
            rule=rule,
        )
        layers = rep.candidate_layers
        computed = "the locate report without its causal checks (the rule reads more than patching maps)"
    return FoundLayers(
        layers=layers,
        named=bool(card["reliable"]),
        rule=card["rule"],
        description=card["description"],
        computed=computed,
        n_pairs=k,
    )
