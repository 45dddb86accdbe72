"""Output of `status` and `show`: the morning table and one item's story.

Everything from a feed (titles, feed ids, links) and from the watchlist author (notes,
reasons that quote titles) goes through `safe.text()` / `safe.clean()`; links are made
clickable only when `safe.http_url()` accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from rich.console import Console, Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from catalysts.models import Evidence, FeedHealth, ItemStatus, StatusChange
from catalysts.render import safe
from catalysts.render.console import stdout
from catalysts.render.match import highlighted

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY_SHOWN = 20  # `show` lists the latest status changes; --json has every one
EVIDENCE_SHOWN = 30  # `show` lists the newest evidence; --json has all of it
NARROW = 100  # columns below which `status` drops its trend and source-count columns
_BADGE = {
    "quiet": "○ quiet",
    "building": "◐ building",
    "triggered": "● triggered",
    "expired": "✕ expired",
}


def sparkline(values: Sequence[float], top: float) -> str:
    """One block per value, scaled so that `top` (the threshold) or the maximum is full."""
    scale = max([top, *values]) if values else top
    if scale <= 0:
        return SPARKS[0] * len(values)
    last = len(SPARKS) - 1
    return "".join(SPARKS[min(last, round(v / scale * last))] for v in values)


def span(delta: timedelta) -> str:
    """A short human duration: 45s, 12m, 5h, 3d."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def age(when: datetime | None, at: datetime) -> str:
    """ "3h ago" relative to `at`; "" for None."""
    if when is None:
        return ""
    return f"{span(at - when)} ago" if when <= at else f"in {span(when - at)}"


def countdown(by: date | None, at: datetime) -> str:
    """Days left to a deadline as of `at`: "in 18d", "today", "3d ago"; "" without one."""
    if by is None:
        return ""
    days = (by - at.date()).days
    if days == 0:
        return "today"
    return f"in {days}d" if days > 0 else f"{-days}d ago"


def when(dt: datetime | None) -> str:
    """A compact UTC time: "2025-12-13 08:00Z"."""
    return dt.strftime("%Y-%m-%d %H:%MZ") if dt is not None else "-"


def badge(st: ItemStatus) -> Text:
    """The status word with its symbol and colour, and the stale flag when set."""
    out = Text(_BADGE[st.status], style=st.status)
    if st.stale:
        out.append(" stale", style="stale")
    return out


def _status_cell(st: ItemStatus) -> Text:
    cell = badge(st)
    if st.since is not None and st.since <= st.at:
        cell.append(f" {span(st.at - st.since)}", style="muted")
    return cell


def _evidence_cell(st: ItemStatus) -> Text:
    # Age and feed first: a narrow terminal truncates the headline, not the facts.
    cell = Text(no_wrap=True, overflow="ellipsis")
    last = st.last_evidence or st.trigger
    if last is not None:
        cell.append_text(safe.text(f"{span(st.at - last.time)} {last.feed} ", style="muted"))
        cell.append_text(safe.text(last.title))
    if st.override_note:
        if cell:
            cell.append("\n")
        cell.append_text(safe.text(f"override: {st.override_note}", style="italic"))
    return cell


def status_table(
    statuses: Sequence[ItemStatus],
    *,
    thesis_titles: dict[str, str],
    health: Sequence[FeedHealth],
    last_fetch: datetime | None,
    now: datetime,
    empty_store: bool,
    console: Console | None = None,
) -> None:
    """The table grouped by thesis, then the footer (feed health, last fetch, hints)."""
    console = console or stdout()
    table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
    # Only the evidence column gives way on a narrow terminal: the facts keep their width.
    # Below NARROW columns the trend and source count go too (`show ID` has both), so that
    # an 80-column terminal still shows which headline a status rests on.
    wide = console.width >= NARROW
    table.add_column("item", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("kind", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=15)
    table.add_column("score", justify="right", no_wrap=True, min_width=7)
    if wide:
        table.add_column("trend 14d", no_wrap=True, min_width=14)
        table.add_column("src", justify="right", no_wrap=True, min_width=3)
    # Wrappable for Rich's width sharing, while the cell Text itself truncates to one line.
    table.add_column("last evidence", overflow="ellipsis", min_width=16)
    table.add_column("due", no_wrap=True, justify="right", min_width=8)
    current: str | None = None
    for st in statuses:
        item = st.item
        if item.thesis != current:
            if current is not None:
                table.add_section()
            current = item.thesis
            # The thesis id heads the item column; its title uses the wide column.
            title = thesis_titles.get(item.thesis) or ""
            table.add_row(
                safe.text(item.thesis, style="bold"),
                *(Text() for _ in range(5 if wide else 3)),
                Text(safe.clean(title), style="bold", no_wrap=True, overflow="ellipsis"),
                Text(),
            )
        # Text cells, not str: Rich would run each str through its markup and emoji
        # parsers, which is a tenth of the table's time and changes nothing here.
        trend = (
            [Text(sparkline(st.trend, st.threshold)), Text(str(st.sources) if st.sources else "")]
            if wide
            else []
        )
        table.add_row(
            safe.text(item.id),
            Text(item.kind, style=item.kind),
            _status_cell(st),
            Text(f"{st.score:.1f}/{st.threshold:.1f}"),
            *trend,
            _evidence_cell(st),
            Text(countdown(item.by, st.at)),
        )
    if statuses:
        console.print(table)
    else:
        console.print(Text("no items match the filters", style="muted"))
    console.print(footer(health, last_fetch, now))
    if empty_store:
        console.print(Text("the store has no entries yet: run `catalysts fetch`", style="muted"))


def footer(health: Sequence[FeedHealth], last_fetch: datetime | None, now: datetime) -> Text:
    """ "feeds: 12 ok, 1 failing, 0 never · last fetch 2025-12-13 08:00Z (3h ago)"."""
    ok = sum(1 for h in health if h.status == "ok")
    failing = sum(1 for h in health if h.status == "error")
    never = sum(1 for h in health if h.status == "never")
    out = Text("feeds: ", style="muted")
    out.append(f"{ok} ok", style="green" if ok else "muted")
    out.append(", ", style="muted")
    out.append(f"{failing} failing", style="error" if failing else "muted")
    out.append(f", {never} never", style="muted")
    fetched = f"{when(last_fetch)} ({age(last_fetch, now)})" if last_fetch else "never"
    out.append(f" · last fetch {fetched}", style="muted")
    return out


def highlighted_title(ev: Evidence) -> Text:
    """The title with the words the rule matched in it styled `match`."""
    return highlighted(ev.title or "", ev.hits)


def _terms_outside_title(ev: Evidence) -> str:
    """ "summary: OpenAI, IPO" for the words matched in fields the view does not show."""
    fields: dict[str, list[str]] = {}
    for h in ev.hits:
        if h.field != "title" and h.term not in fields.setdefault(h.field, []):
            fields[h.field].append(h.term)
    return "; ".join(f"{field}: {', '.join(terms)}" for field, terms in fields.items())


def link(url: str | None) -> Text:
    """The link as text; clickable (an OSC 8 hyperlink) only for a plain http(s) URL."""
    ok = safe.http_url(url)
    if ok is None:
        return safe.text(url, style="muted")
    return Text(ok, style=Style(link=ok, color="blue", underline=True))


def show_item(
    st: ItemStatus,
    history: Sequence[StatusChange],
    evidence: Sequence[Evidence],
    *,
    thesis_title: str | None,
    console: Console | None = None,
) -> None:
    """One item: title, kind, why, rules, status with reason, history, evidence."""
    console = console or stdout()
    item = st.item
    head = Text()
    head.append_text(safe.text(item.title, style="bold"))
    head.append("  ")
    head.append(item.kind, style=item.kind)
    head.append_text(safe.text(f"  {item.id} · {thesis_title or item.thesis}", style="muted"))
    rows: list[Text | Table] = [head]

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="muted", no_wrap=True)
    facts.add_column()
    if item.why:
        facts.add_row("why", safe.text(item.why))
    facts.add_row("signal", safe.text(item.signal))
    if item.confirm:
        facts.add_row("confirm", safe.text(item.confirm))
    state = badge(st)
    state.append(
        f"  score {st.score:.1f}/{st.threshold:.1f} from {st.sources} source"
        f"{'s' if st.sources != 1 else ''}",
        style="muted",
    )
    if st.since is not None:
        state.append(f" · since {when(st.since)} ({age(st.since, st.at)})", style="muted")
    facts.add_row("status", state)
    if history:
        facts.add_row("reason", safe.text(history[-1].reason))
    if st.override_note:
        facts.add_row("override", safe.text(st.override_note, style="italic"))
    if item.by is not None:
        facts.add_row("deadline", Text(f"{item.by.isoformat()} ({countdown(item.by, st.at)})"))
    facts.add_row("trend 14d", Text(sparkline(st.trend, st.threshold)))
    facts.add_row("as of", Text(when(st.at)))
    rows.append(facts)

    rows.append(Text("\nhistory", style="bold"))
    if history:
        hist = Table.grid(padding=(0, 2))
        hist.add_column(no_wrap=True, style="muted")
        hist.add_column(no_wrap=True)
        hist.add_column()
        if len(history) > HISTORY_SHOWN:
            earlier = len(history) - HISTORY_SHOWN
            rows.append(Text(f"{earlier} earlier changes (--json has them all)", style="muted"))
        for change in history[-HISTORY_SHOWN:]:
            arrow = Text(change.old or "-", style=change.old or "muted")
            arrow.append(" → ", style="muted")
            arrow.append(change.new, style=change.new)
            hist.add_row(when(change.at), arrow, safe.text(change.reason))
        rows.append(hist)
    else:
        rows.append(Text("no status change", style="muted"))

    rows.append(Text(f"\nevidence ({len(evidence)})", style="bold"))
    if evidence:
        ev_table = Table.grid(padding=(0, 2))
        ev_table.add_column(no_wrap=True, style="muted")
        ev_table.add_column(no_wrap=True)
        ev_table.add_column()
        for ev in evidence[:EVIDENCE_SHOWN]:
            body = highlighted_title(ev)
            elsewhere = _terms_outside_title(ev)
            if elsewhere:
                body.append("\n")
                body.append_text(safe.text(elsewhere, style="muted"))
            if ev.link:
                body.append("\n")
                body.append_text(link(ev.link))
            date_text = ev.time.strftime("%Y-%m-%d") + ("" if ev.dated else "*")
            rule = Text(ev.rule, style="bold" if ev.rule == "confirm" else "")
            rule.append_text(safe.text(f" {ev.feed}", style="muted"))
            ev_table.add_row(date_text, rule, body)
        rows.append(ev_table)
        if len(evidence) > EVIDENCE_SHOWN:
            older = len(evidence) - EVIDENCE_SHOWN
            rows.append(Text(f"{older} older (--json has them all)", style="muted"))
        if any(not ev.dated for ev in evidence[:EVIDENCE_SHOWN]):
            rows.append(Text("* undated: first-seen time", style="muted"))
    else:
        rows.append(Text("no evidence in the store", style="muted"))
    console.print(Group(*rows))
