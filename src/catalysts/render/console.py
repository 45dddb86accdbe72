"""The two consoles: data on stdout, progress, warnings and errors on stderr."""

from __future__ import annotations

import os
from functools import cache

from rich.console import Console
from rich.theme import Theme

THEME = Theme(
    {
        "quiet": "dim",
        "building": "yellow",
        "triggered": "bold red",
        "expired": "magenta",
        "stale": "bold magenta",
        "catalyst": "green",
        "risk": "red",
        "match": "bold reverse",
        "error": "bold red",
        "muted": "dim",
    }
)


def _width() -> int | None:
    # Pipes get a stable layout whatever the terminal was; COLUMNS still wins when set.
    cols = os.environ.get("COLUMNS")
    return int(cols) if cols and cols.isdigit() else None


@cache
def stdout() -> Console:
    """Console for command output. Honours NO_COLOR; no colour when not a terminal."""
    return Console(theme=THEME, highlight=False, emoji=False, markup=False, width=_width())


@cache
def stderr() -> Console:
    """Console for progress, warnings and errors."""
    return Console(
        theme=THEME, stderr=True, highlight=False, emoji=False, markup=False, width=_width()
    )
