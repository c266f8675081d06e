"""Prompt sets from your own files: JSON Lines or Parquet, one prompt a row, optionally with an image.

    >>> rows = read_prompt_file("data/prompts.jsonl", images_column="image")   # image paths, relative to the file
    >>> interp.capture(vlm, rows.prompts, images=rows.images, prompt_ids=rows.ids, labels=rows.labels)

Columns: ``prompt`` (or ``prompt_column``), and where present ``id`` and ``label``; an image column
holds a path to an image file (relative paths are read from the file's folder) or nothing for a
text-only row. Images stay paths until a batch is encoded (``interp`` reads a path given as an image),
so a large set costs no memory and travels to workers as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from interp.errors import InputError


@dataclass
class PromptFile:
    """The rows of a prompt file, in order."""

    prompts: list[str]
    ids: list[str]
    labels: list[str] | None
    images: (
        list | None
    )  # image file paths (None for a text-only row), or None when the file has no image column
    source: str


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise InputError(
                f"{path} is Parquet, which needs pyarrow. Fix: pip install pyarrow, or use JSON Lines."
            ) from e
        return pq.read_table(path).to_pylist()
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}, line {n}, is not JSON ({e}). Fix: one JSON object a line.") from e
    return rows


def read_prompt_file(
    path: str | Path,
    prompt_column: str = "prompt",
    images_column: str | None = None,
    id_column: str = "id",
    label_column: str = "label",
) -> PromptFile:
    """Read a ``.jsonl`` or ``.parquet`` prompt file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no prompt file at {path}.")
    rows = _rows(path)
    if not rows:
        raise InputError(f"{path} holds no rows.")
    missing = [i for i, r in enumerate(rows) if not isinstance(r.get(prompt_column), str)]
    if missing:
        raise InputError(
            f"{path}: rows {missing[:5]} have no text in column {prompt_column!r}. Fix: --prompt-column names "
            f"the prompt column (the first row has {sorted(rows[0])})."
        )
    images = None
    if images_column is not None:
        if not any(images_column in r for r in rows):
            raise InputError(f"{path} has no column {images_column!r} (the first row has {sorted(rows[0])}).")
        images = []
        for r in rows:
            ref = r.get(images_column)
            if not ref:
                images.append(None)
                continue
            file = Path(ref) if Path(ref).is_absolute() else path.parent / ref
            if not file.is_file():
                raise InputError(f"{path}: image {ref!r} not found (looked at {file}).")
            images.append(str(file.resolve()))
    has_labels = all(label_column in r for r in rows)
    return PromptFile(
        prompts=[r[prompt_column] for r in rows],
        ids=[str(r.get(id_column, i)) for i, r in enumerate(rows)],
        labels=[str(r[label_column]) for r in rows] if has_labels else None,
        images=images,
        source=str(path),
    )
