"""Blocks of a docs page that a script writes from the committed JSON, between two HTML comments.

    >>> text = block("analyses/steering_tables.py", ["| method | ... |", ...])   # the marked block
    >>> fill(Path("docs/guide/steer.md"), text)       # replaces the page's block of the same source

A page holds the block as ``<!-- generated: SOURCE -->`` ... ``<!-- end generated -->``; the tests
compare each page's block with what its script writes now, so a page goes red, not stale, when a
result is re-run.
"""

from __future__ import annotations

from pathlib import Path

END = "<!-- end generated -->"


def start(source: str) -> str:
    """The opening comment of the block written by ``source`` (the script, as a user would run it)."""
    return f"<!-- generated: {source} -->"


def block(source: str, lines: list[str]) -> str:
    """``lines`` between the block's two comments."""
    return "\n".join([start(source), *lines, END])


def fill(page: Path, text: str) -> None:
    """Replace the block in ``page`` that opens with ``text``'s first line by ``text``; a page with no
    such block is an error naming the comment to add."""
    opening = text.split("\n", 1)[0]
    page_text = page.read_text()
    if opening not in page_text:
        raise SystemExit(f"{page} has no {opening} ... {END} block to fill: add the two comments where it goes")
    head, rest = page_text.split(opening, 1)
    _, tail = rest.split(END, 1)
    page.write_text(head + text + tail)
