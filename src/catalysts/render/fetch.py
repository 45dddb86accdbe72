"""Output of `fetch` and `feeds`: progress on stderr, tables on stdout.

Error reasons and URLs come partly from servers, so they go through `safe.text()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from catalysts.models import FeedHealth, FetchReport
from catalysts.render import safe
from catalysts.render.console import stderr, stdout
from catalysts.render.status import span as _span

_RESULT_STYLE = {"new": "green", "unchanged": "", "not-modified": "muted", "error": "error"}
_STATUS_STYLE = {"ok": "green", "error": "error", "never": "muted"}


@contextmanager
def progress(total: int) -> Iterator[Callable[[FetchReport], None]]:
    """A progress bar on stderr while feeds are fetched; yields `advance(report)`.

    Only on a terminal: in a pipe or a CI log the summary table says it all.
    """
    console = stderr()
    if not console.is_terminal or total == 0:
        yield lambda report: None
        return
    bar = Progress(
        TextColumn("fetching"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("fetch", total=total, last="")

        def advance(report: FetchReport) -> None:
            last = f"{safe.clean(report.id)}: {report.result}"
            bar.update(task, advance=1, last=last)

        yield advance


def fetch_summary(reports: Sequence[FetchReport], seconds: float) -> None:
    """The per-feed table (feed, result, new entries, time, error or warning) and a total line."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("feed", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("new", justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("error / warning", overflow="fold")
    for r in reports:
        table.add_row(
            safe.text(r.id),
            Text(r.result, style=_RESULT_STYLE.get(r.result, "")),
            str(r.new_entries) if r.result != "error" else "",
            f"{r.seconds:.1f}s",
            safe.text(r.error, style="error") if r.error else safe.text(r.warning, style="muted"),
        )
    out = stdout()
    if reports:
        out.print(table)
    out.print(Text(total_line(reports, seconds)))


def total_line(reports: Sequence[FetchReport], seconds: float) -> str:
    """ "12 feeds: 3 new, 7 unchanged, 1 not modified, 1 error; 41 new entries in 2.3s"."""
    counts = {k: sum(1 for r in reports if r.result == k) for k in _RESULT_STYLE}
    new = sum(r.new_entries for r in reports)
    errors = counts["error"]
    parts = [
        f"{counts['new']} new",
        f"{counts['unchanged']} unchanged",
        f"{counts['not-modified']} not modified",
        f"{errors} error{'s' if errors != 1 else ''}",
    ]
    feeds = f"{len(reports)} feed{'s' if len(reports) != 1 else ''}"
    entries = f"{new} new entr{'ies' if new != 1 else 'y'}"
    return f"{feeds}: {', '.join(parts)}; {entries} in {seconds:.1f}s"


def feeds_table(health: Sequence[FeedHealth], now: datetime) -> None:
    """Feed health: status, last success (age), failures, entries, newest, conditional GET.

    The reasons of failing feeds follow the table, one line each: they are long and would
    squeeze every other column into nothing on a narrow terminal.
    """
    table = Table(box=None, pad_edge=False, show_edge=False)
    # On a narrow terminal only the feed id gives way (ellipsis): the headers stay whole.
    table.add_column("feed", overflow="ellipsis", min_width=12)
    for header, justify in (
        ("status", "left"),
        ("last ok", "left"),
        ("fails", "right"),
        ("entries", "right"),
        ("newest", "left"),
        ("validators", "left"),
        ("retry", "left"),
    ):
        table.add_column(header, justify=justify, no_wrap=True, min_width=len(header))
    for h in health:
        table.add_row(
            safe.text(h.id),
            Text(h.status, style=_STATUS_STYLE.get(h.status, "")),
            age(h.last_success, now),
            str(h.consecutive_failures) if h.consecutive_failures else "",
            str(h.entries),
            age(h.newest_entry, now),
            conditional(h),
            until(h.next_retry, now),
        )
    out = stdout()
    out.print(table)
    failing = [h for h in health if h.status == "error"]
    if failing:
        out.print()
        for h in failing:
            line = Text.assemble(safe.text(h.id), ": ", safe.text(h.last_error, style="error"))
            out.print(line)


def conditional(h: FeedHealth) -> str:
    """Which validators the next request will send: "etag+lm", "etag", "lm" or "-"."""
    names = [n for n, v in (("etag", h.etag), ("lm", h.last_modified)) if v]
    return "+".join(names) or "-"


def age(when: datetime | None, now: datetime) -> str:
    """ "3m ago", "5h ago", "2d ago"; "never" for None; "in the future" for clock skew."""
    if when is None:
        return "never"
    delta = now - when
    if delta < timedelta(0):
        return "in the future"
    return f"{_span(delta)} ago"


def until(when: datetime | None, now: datetime) -> str:
    """ "in 14m" for a future time, "" when there is none or it has passed."""
    if when is None or when <= now:
        return ""
    return f"in {_span(when - now)}"
