"""Human output of `catalysts match`: the text with matched words highlighted, and why.

The text comes from the user or a feed: it reaches Rich only through `safe.text()`, one
segment at a time, so highlighting never depends on markup and offsets stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from catalysts.models import Hit, ItemSpec, RuleMatch
from catalysts.render import safe
from catalysts.render.console import stdout


def _spans(hits: Iterable[Hit], field: str, length: int) -> list[tuple[int, int]]:
    """Hit offsets in `field` as sorted, merged, in-bounds (start, end) spans."""
    spans = sorted(
        (max(0, h.start), min(length, h.end)) for h in hits if h.field == field and h.end > h.start
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def highlighted(text: str, hits: Iterable[Hit], field: str = "title") -> Text:
    """`text` as a Rich Text with every hit in `field` styled "match"."""
    out = Text()
    position = 0
    for start, end in _spans(hits, field, len(text)):
        out.append_text(safe.text(text[position:start]))
        out.append_text(safe.text(text[start:end], style="match"))
        position = end
    out.append_text(safe.text(text[position:]))
    return out


def print_match(
    text: str,
    matches: Sequence[RuleMatch],
    items: Mapping[str, ItemSpec],
    *,
    console: Console | None = None,
) -> None:
    """Print the text (matched words highlighted) and one row per matching rule."""
    console = console or stdout()
    console.print(highlighted(text, (h for m in matches for h in m.hits)))
    if not matches:
        console.print(Text("  no item matches", style="muted"))
        return
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1, 0, 2))
    for _ in range(5):
        table.add_column(no_wrap=True)
    table.columns[-1].no_wrap = False
    for match in matches:
        item = items.get(match.item)
        kind = item.kind if item else ""
        table.add_row(
            Text(match.item, style="bold"),
            Text(item.thesis if item else "", style="muted"),
            Text(kind, style=kind),
            Text(match.rule, style="triggered" if match.rule == "confirm" else ""),
            safe.text(", ".join(match.terms)),
        )
    console.print(table)
