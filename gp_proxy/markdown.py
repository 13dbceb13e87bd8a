"""Markdown reports of the benchmark and experiment scripts: a title, the command, then blocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gp_proxy.atomic import write_text


def table(header: Sequence[str], rows: Sequence[str]) -> str:
    """A Markdown table from header cells and already formatted `| ... |` rows."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows])


def write_report(path: str | Path, title: str, command: str, *blocks: str, echo: bool = True) -> str:
    """Write `# title`, the command that produced it, and `blocks` separated by blank lines to
    `path` atomically; print it (if `echo`) and return it."""
    text = "\n\n".join([f"# {title}", f"Command: `{command}`", *[b for b in blocks if b]]) + "\n"
    write_text(path, text)
    if echo:
        print(text)
    return text
