"""Sharded capture directories: the manifest and its key, the plan of shards still to compute, and
the handle on a finished directory.

    >>> plan = ShardPlan.make(Path("runs/acts"), key, n_prompts, shard_size=1024)   # refuses another capture's
    >>> for name, start, stop in plan.todo: ...                                   # what is left to compute
    >>> ActivationShards.open("runs/acts").load(layers=[10, 12])

Every engine (in-process, Ray) plans through :class:`ShardPlan`, so a directory one engine wrote
the other resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interp.activations import Activations
from interp.errors import CorruptFileError, InputError
from interp.models.hooked import HookedModel


@dataclass
class ActivationShards:
    """Handle on a sharded capture directory. ``load()`` joins the shards (optionally some layers).
    ``timing``, after a capture: its engine and workers, the seconds spent starting (workers loading
    the model) and capturing, and the prompts captured per second (shards found finished excluded)."""

    directory: Path
    manifest: dict
    timing: dict = field(default_factory=dict)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.directory / name for name in self.manifest["shards"]]

    def __len__(self) -> int:
        return self.manifest["n_prompts"]

    def __iter__(self):
        for path in self.shard_paths:
            yield Activations.load(path)

    def load(self, layers: Sequence[int] | None = None, model: HookedModel | None = None) -> Activations:
        parts = []
        for path in self.shard_paths:
            part = Activations.load(path, model=model)
            if layers is not None:
                keep = [part.layers.index(i) for i in layers]
                part = Activations(
                    {k: v[:, keep] for k, v in part.tensors.items()},
                    list(layers),
                    part.fingerprint,
                    part.prompt_ids,
                    part.labels,
                    part.masks,
                    part.metadata,
                )
            parts.append(part)
        return Activations.concat(parts)

    @classmethod
    def open(cls, directory: str | Path) -> ActivationShards:
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if manifest is None:
            raise CorruptFileError(f"{directory} holds no capture manifest.json.")
        missing = [n for n in manifest["shards"] if not (directory / n).exists()]
        if missing:
            raise CorruptFileError(
                f"{directory} misses shards {missing}: rerun the same capture call to finish it."
            )
        return cls(directory, manifest)


def _read_manifest(directory: Path) -> dict | None:
    path = directory / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"{path} is not valid JSON ({e}). Fix: delete the directory and capture again."
        ) from e


@dataclass
class ShardPlan:
    """A sharded capture directory and the shards still to compute, ``(name, start, stop)`` each; a
    finished shard is never computed again (its file is complete: writes are atomic)."""

    directory: Path
    manifest: dict
    todo: list[tuple[str, int, int]]
    skipped: int  # prompts in shards found finished

    @classmethod
    def make(cls, directory: Path, key: dict, n: int, shard_size: int) -> ShardPlan:
        if shard_size < 1:
            raise InputError(f"shard_size={shard_size}; it must be at least 1.")
        directory.mkdir(parents=True, exist_ok=True)
        manifest = _read_manifest(directory)
        if manifest is not None and manifest["key"] != key:
            raise InputError(
                f"{directory} holds a capture of different prompts, model or settings. Nothing was overwritten. "
                "Fix: choose another out_dir, or delete that directory to start over."
            )
        names = [f"shard_{k:05d}.safetensors" for k in range((n + shard_size - 1) // shard_size)]
        plan = cls(directory, {"key": key, "n_prompts": n, "shards": names, "done": []}, [], 0)
        for k, name in enumerate(names):
            start, stop = k * shard_size, min((k + 1) * shard_size, n)
            if (directory / name).exists() and _shard_ok(directory / name, stop - start):
                plan.done(name)
                plan.skipped += stop - start
            else:
                plan.todo.append((name, start, stop))
        plan.write()
        return plan

    def done(self, name: str) -> None:
        self.manifest["done"].append(name)

    def write(self) -> None:
        (self.directory / "manifest.json").write_text(json.dumps(self.manifest))

    def shards(self, engine: str, workers: int, startup_s: float, capture_s: float) -> ActivationShards:
        rows = self.manifest["n_prompts"] - self.skipped
        timing = {
            "engine": engine,
            "workers": workers,
            "startup_s": round(startup_s, 3),
            "capture_s": round(capture_s, 3),
            "prompts_captured": rows,
            "prompts_per_s": round(rows / capture_s, 3) if capture_s > 0 else None,
        }
        return ActivationShards(self.directory, self.manifest, timing)


def _shard_ok(path: Path, n: int) -> bool:
    try:
        return len(Activations.load(path)) == n
    except CorruptFileError:
        return False  # a shard cut off mid-write is recomputed
