"""The steering artifacts a server may apply, loaded once from its configured directory.

    >>> store = ArtifactStore.from_dir(model, "runs/artifacts")      # every *.safetensors, by file stem
    >>> store.resolve([{"artifact": "refusal", "strength": 0.5}])   # -> (("refusal", 0.5),)
    >>> store.edits((("refusal", 0.5),), rows)                      # hook edits for those batch rows
    >>> store.retrieval_edits((("tga", 1.0),), vlm, questions, images, rows)  # per-input, image rows

Requests name artifacts; they never pass paths, so a request cannot make the server read a file.
Every artifact is checked against the served model when the server starts (fingerprint, shapes,
NaN); one that cannot be served (retrieval-guided steering on a text model) is left out with a
warning, listed as unavailable in ``/v1/steering``, and a request naming it gets the reason.
A batch whose requests all ask for the same steering is steered as a whole (no per-row masks), and on
a text model its full ablations (``AblateDirection(layers="all", positions="all")``) are folded into
the weights instead of hooked (:meth:`ArtifactStore.uniform`, :func:`interp.export.folded_ablation`).

Retrieval-guided artifacts steer image requests only, each from its own image: the batch's image
rows are captioned (one extra greedy generation) and their text forms run (one extra prefill)
before the steered generation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from interp.errors import InputError
from interp.layers import resolve_layers
from interp.serve.errors import APIError
from interp.steer.folding import check_foldable
from interp.steer.interventions import AblateDirection, RetrievalMarker

log = logging.getLogger("interp.serve")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Steering = tuple[tuple[str, float], ...]


def artifact_files(directory: str | Path) -> list[Path]:
    """The ``*.safetensors`` files of an artifact directory, by name; each file's stem is the name a
    request uses, so it must be a plain name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"artifact directory {directory} does not exist. Fix: create it, or pass another.")
    paths = sorted(directory.glob("*.safetensors"))
    for path in paths:
        if not NAME.match(path.stem):
            raise InputError(f"artifact file name {path.name!r}: use letters, digits, '_', '-', '.' only.")
    return paths


def resolve_steering(
    items, edits_by_name: dict, unservable: dict, max_strength: float, where: str = ""
) -> Steering:
    """A request's ``steering`` list checked against the served artifacts (``edits_by_name``: name ->
    its edits at strength 1; ``unservable``: name -> why not), as ``((name, strength), ...)``; an
    :class:`APIError` (404 unknown name, 400 otherwise) says what is wrong. ``where`` names the engine
    in the message about an unservable artifact (" by vLLM")."""
    if not isinstance(items, list):
        raise APIError(
            400,
            '\'steering\' must be a list of {"artifact": name, "strength": number}.',
            param="steering",
        )
    out = []
    for k, item in enumerate(items):
        if isinstance(item, str):
            item = {"artifact": item}
        if not isinstance(item, dict) or not isinstance(item.get("artifact"), str):
            raise APIError(
                400, f'steering[{k}] must be {{"artifact": name, "strength": number}}.', param="steering"
            )
        name = item["artifact"]
        if name in unservable:
            raise APIError(
                400, f"artifact {name!r} is not served{where}: {unservable[name]}", param="steering"
            )
        if name not in edits_by_name:
            known = ", ".join(sorted(edits_by_name)) or "none are loaded"
            raise APIError(
                404,
                f"unknown steering artifact {name!r}. Artifacts on this server: {known} (GET /v1/steering).",
                type_="not_found_error",
                param="steering",
            )
        s = item.get("strength", 1.0)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not abs(s) <= max_strength:
            raise APIError(
                400,
                f"steering[{k}].strength must be a number in [-{max_strength}, {max_strength}].",
                param="steering",
            )
        if s != 1.0 and any(e.op in ("set", "replace") for e in edits_by_name[name]):
            raise APIError(
                400,
                f"artifact {name!r} clamps a projection, which has no strength; use 1.",
                param="steering",
            )
        out.append((name, float(s)))
    return tuple(out)


@dataclass
class ArtifactStore:
    edits_by_name: dict[str, list] = field(default_factory=dict)  # name -> Edit list (strength 1)
    retrieval_by_name: dict[str, list] = field(default_factory=dict)  # name -> per-input interventions
    folds_by_name: dict[str, list] = field(default_factory=dict)  # name -> directions it ablates fully
    unfolded_by_name: dict[str, list] = field(default_factory=dict)  # name -> its other edits
    methods: dict[str, str] = field(default_factory=dict)
    unservable: dict[str, str] = field(default_factory=dict)  # name -> why it is not served
    max_strength: float = 100.0

    @classmethod
    def from_dir(cls, model, directory: str | Path | None, max_strength: float = 100.0) -> ArtifactStore:
        from interp.steer.artifact import load

        store = cls(max_strength=max_strength)
        if directory is None:
            return store
        for path in artifact_files(directory):
            art = load(path, model)
            try:
                store.add(path.stem, art.interventions, model, art.method)
            except (
                InputError
            ) as e:  # kept out, and said so at start, in /v1/steering and to requests naming it
                store.unservable[path.stem] = str(e)
                log.warning("not serving artifact %s: %s", path.name, e)
        return store

    def add(self, name: str, interventions, model, method: str = "") -> None:
        per_input = [item for item in interventions if isinstance(item, RetrievalMarker)]
        if per_input and model.adapter.kind == "text":
            raise InputError(
                f"artifact {name!r} holds {type(per_input[0]).__name__}, which steers image requests by "
                f"describing their image; {model.name} takes no images. Fix: serve it with a vision-language "
                "model, or use a constant artifact (AddDirection, ShiftToText) here."
            )
        for item in per_input:  # its layers are checked now, not per request
            resolve_layers(item.layers, model.n_layers)
        per_item = [
            (item, item.edits(model)) for item in interventions if not isinstance(item, RetrievalMarker)
        ]
        edits = [e for _, item_edits in per_item for e in item_edits]
        with model.hooks(edits=edits):  # registering checks layers and gate order now, not per request
            pass
        self.edits_by_name[name] = edits
        can_fold = _can_fold(model)
        folds, unfolded = [], []  # full ablations (folded for uniform batches) and every other edit
        for item, item_edits in per_item:
            if can_fold and isinstance(item, AblateDirection) and item.everywhere:
                folds.append(item.direction)
            else:
                unfolded += item_edits
        self.folds_by_name[name], self.unfolded_by_name[name] = folds, unfolded
        self.retrieval_by_name[name] = per_input
        self.methods[name] = method

    def per_input(self, steering: Steering) -> list[str]:
        """The names in ``steering`` that are retrieval-guided (built per image at request time)."""
        return [name for name, _ in steering if self.retrieval_by_name.get(name)]

    @property
    def names(self) -> list[str]:
        return sorted(self.edits_by_name)

    def parse_default(self, text: str) -> Steering:
        """``"name:strength,name2"`` (strength 1 when left out) → a resolved steering."""
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, strength = part.partition(":")
            items.append({"artifact": name, "strength": float(strength) if strength else 1.0})
        try:
            return self.resolve(items)
        except APIError as e:
            raise InputError(f"--default-steering: {e.message}") from e

    def resolve(self, items) -> Steering:
        """Check a request's ``steering`` list (names known, strengths finite and in range)."""
        return resolve_steering(items, self.edits_by_name, self.unservable, self.max_strength)

    def edits(self, steering: Steering, rows: torch.Tensor | None) -> list:
        """The edits of one steering, applied only to the batch rows ``rows`` (bool [B]; None: all)."""
        return [replace(e.scaled(s), rows=rows) for name, s in steering for e in self.edits_by_name[name]]

    def uniform(self, steering: Steering, fold: bool = True) -> tuple[tuple, list]:
        """For a batch whose rows all ask for ``steering``: the full ablations to fold into the weights,
        ``((direction, strength), ...)`` (none without ``fold``), and the edits left to hook, which act
        on every row (no row mask: the fast path of :meth:`interp.hooks.Edit.apply_whole`)."""
        if not fold:
            return (), self.edits(steering, None)
        folds = tuple((d, s) for name, s in steering for d in self.folds_by_name[name])
        hooked = [e.scaled(s) for name, s in steering for e in self.unfolded_by_name[name]]
        return folds, hooked

    def retrieval_edits(self, steering: Steering, model, questions: list[str], images: list, rows) -> list:
        """The per-input edits of ``steering`` for the image rows ``rows`` (bool [B]) of a batch:
        each row's image is captioned, its question rewritten with the caption and run as text, and
        the row pulled toward that run. ``questions``/``images``: one per batch row."""
        idx = torch.nonzero(rows).flatten().tolist()
        out = []
        for name, s in steering:
            for item in self.retrieval_by_name.get(name, []):
                edits, _ = item.prepare(model, [questions[i] for i in idx], [images[i] for i in idx])
                for e in edits:  # per-row targets of the group's rows -> the whole batch, other rows off
                    full = e.vector.new_zeros(len(rows), *e.vector.shape[1:])
                    full[idx] = e.vector
                    on = rows.clone()
                    if e.rows is not None:  # a gated pull: only the group's rows whose text form fired
                        on[idx] = e.rows.to(on.device)
                    out.append(replace(e.scaled(s), vector=full, rows=on))
        return out


def _can_fold(model) -> bool:
    """Whether a weight edit can ablate a direction from ``model``'s stream
    (:func:`interp.steer.folding.check_foldable`)."""

    try:
        check_foldable(model)
    except InputError:
        return False
    return True
