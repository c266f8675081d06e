"""Shipped prompt sets, with their licences, and a loader.

    >>> hb = interp.data.load("harmbench")             # 200 standard HarmBench behaviours (MIT)
    >>> both = interp.data.load("harmbench", n=64) + interp.data.load("harmless", n=64)
    >>> both.prompts, both.labels                      # labels: 'harmful' / 'harmless'

Sets: ``harmbench`` (HarmBench standard behaviours, val 41 + test 159, MIT, label ``harmful``),
``harmless`` (125 instructions written for interp in the same imperative forms, Apache-2.0),
``benign_sensitive`` (aplomb's 50 benign prompts, 20 of them sensitive-but-benign over-refusal probes,
MIT), ``strongreject`` (StrongREJECT's 313 forbidden prompts, MIT, label ``harmful``: the sealed
harmful test, never used to choose anything) and ``harmless_matched`` (96 harmless requests written for
interp in StrongREJECT's six categories and forms, Apache-2.0: the sealed harmless test). Licence texts
are in ``interp/data/files/LICENSE-*.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from interp.errors import InputError

FILES = Path(__file__).parent / "files"
SETS = ("harmbench", "harmless", "benign_sensitive", "strongreject", "harmless_matched")
LICENCES = {
    "harmbench": "MIT (HarmBench, Mazeika et al. 2024) — files/LICENSE-harmbench.txt",
    "harmless": "Apache-2.0 (written for interp)",
    "benign_sensitive": "MIT (aplomb benign_anchors_v1) — files/LICENSE-aplomb.txt",
    "strongreject": "MIT (StrongREJECT, Souly et al. 2024) — files/LICENSE-strongreject.txt",
    "harmless_matched": "Apache-2.0 (written for interp)",
}


@dataclass
class PromptSet:
    """Prompts with ids, labels and per-prompt metadata."""

    prompts: list[str]
    ids: list[str]
    labels: list[str]
    meta: list[dict] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.prompts)

    def __add__(self, other: PromptSet) -> PromptSet:
        return PromptSet(
            self.prompts + other.prompts,
            self.ids + other.ids,
            self.labels + other.labels,
            self.meta + other.meta,
            f"{self.source}+{other.source}",
        )

    def take(self, n: int) -> PromptSet:
        if n > len(self):
            raise InputError(f"asked for {n} prompts but {self.source} has {len(self)}.")
        return PromptSet(self.prompts[:n], self.ids[:n], self.labels[:n], self.meta[:n], self.source)


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FILES / name).read_text().splitlines() if line.strip()]


def load(
    name: str, split: str | None = None, n: int | None = None, sensitive: bool | None = None
) -> PromptSet:
    """Load a shipped prompt set. ``split``: ``val``/``test`` for harmbench; ``sensitive`` filters
    benign_sensitive to its over-refusal probes (True) or its plain prompts (False). ``n``: the first
    ``n`` prompts (a positive int; None for all)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"n={n!r}; it counts prompts: a positive int, or None for the whole set.")
    if name == "harmbench":
        rows = [r for r in _jsonl("harmbench.jsonl") if split is None or r["split"] == split]
        if split not in (None, "val", "test"):
            raise InputError(f"harmbench splits are 'val' and 'test', not {split!r}.")
        out = PromptSet(
            [r["prompt"] for r in rows],
            [r["id"] for r in rows],
            ["harmful"] * len(rows),
            [{"split": r["split"], "category": r["category"]} for r in rows],
            name,
        )
    elif name == "harmless":
        lines = [x.strip() for x in (FILES / "harmless.txt").read_text().splitlines() if x.strip()]
        out = PromptSet(
            lines,
            [f"harmless-{i:03d}" for i in range(len(lines))],
            ["harmless"] * len(lines),
            [{} for _ in lines],
            name,
        )
    elif name == "benign_sensitive":
        rows = [
            r for r in _jsonl("benign_sensitive.jsonl") if sensitive is None or r["sensitive"] == sensitive
        ]
        out = PromptSet(
            [r["prompt"] for r in rows],
            [r["id"] for r in rows],
            ["harmless"] * len(rows),
            [{"sensitive": r["sensitive"]} for r in rows],
            name,
        )
    elif name in ("strongreject", "harmless_matched"):
        rows = _jsonl(f"{name}.jsonl")
        label = "harmful" if name == "strongreject" else "harmless"
        out = PromptSet(
            [r["prompt"] for r in rows],
            [r["id"] for r in rows],
            [label] * len(rows),
            [{k: v for k, v in r.items() if k not in ("id", "prompt")} for r in rows],
            name,
        )
    else:
        raise InputError(f"unknown prompt set {name!r}. Known: {', '.join(SETS)}.")
    if split is not None and name != "harmbench":
        raise InputError(f"{name} has no splits; split= applies to harmbench only.")
    return out.take(n) if n is not None else out


__all__ = ["LICENCES", "PromptSet", "SETS", "load"]
