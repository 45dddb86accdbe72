"""The daily digest: statuses, changes, new evidence and feed health in; Markdown or JSON out.

Pure: no I/O, no clock. `catalysts digest` reads the store, evaluates with the status engine
(`catalysts.status`, the one model of an item's state) and hands the results here.

The Markdown is posted as a GitHub issue body, so every piece of feed text is hostile until
neutralised (`neutralise_inline`, `safe_link`):

- mentions, issue references and autolinks are broken with a zero-width space (`&#8203;`,
  the device Renovate and Dependabot use for release notes): GitHub's reference and mention
  finders need `@name`, `#12`, `GH-12` and `https://` to be contiguous, and the entity
  keeps the source ASCII;
- `&`, `<` and `>` become entities, so no HTML (no `</details>`, no `<img>`) survives;
- Markdown punctuation is backslash-escaped, so no emphasis, link, image, heading, table
  pipe, code span or math can start inside a title;
- links are only ever ours: `[title](url)` where `url` passed `safe_link` (http(s), a host,
  no whitespace, percent-encoded delimiters); github.com URLs go through
  `redirect.github.com`, which GitHub does not treat as a cross-reference (no backlink).

The body stays under GitHub's 65,536-character limit whatever the volume: sections are
built block by block (one item, one feed row) and a block that does not fit is left out
whole, with a footer saying what was left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit, urlunsplit

from catalysts.hosts import ascii_host
from catalysts.models import (
    Evidence,
    FeedHealth,
    ItemStatus,
    Settings,
    Status,
    StatusChange,
    Watchlist,
)
from catalysts.status import feed_weights
from catalysts.timeutil import iso

__all__ = [
    "BODY_LIMIT",
    "CHART_DAYS",
    "EVIDENCE_PER_ITEM",
    "FIRST_WINDOW",
    "Digest",
    "FeedProblem",
    "build_digest",
    "chart_scores",
    "digest_json",
    "digest_title",
    "net_changes",
    "neutralise_inline",
    "previous_statuses",
    "rank_evidence",
    "render_markdown",
    "safe_link",
]

GITHUB_BODY_MAX = 65_536  # GitHub refuses issue bodies longer than this
BODY_LIMIT = 65_000  # what we aim for: a margin for GitHub's own counting
FOOTER_RESERVE = 600  # room kept for the "left out" footer
TITLE_LIMIT = 200  # characters of a feed title shown
REASON_LIMIT = 300  # a status change's reason may quote a title
EVIDENCE_PER_ITEM = 5  # new evidence shown per item; the rest is counted
CHANGE_EVIDENCE = 3  # evidence shown under a status change
FEED_ROWS = 40  # feed-health rows shown; the rest is counted
CHART_DAYS = 30
CHART_LINES = 5  # lines in the chart (Mermaid xychart has no legend: keep it readable)
FIRST_WINDOW = timedelta(days=7)  # the window of a first digest (no digest recorded yet)

_ZWSP = "&#8203;"
_MARK = "\ue000"  # private-use placeholder for _ZWSP while escaping; stripped from input
# Characters that could start Markdown formatting inline; `&<>` become entities instead.
_MD_SPECIALS = frozenset("\\`*_[]()#+-.!|~$")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_WS = re.compile(r"\s+")
# C0/C1 controls, bidi overrides/isolates/marks, zero-width characters, BOM, our placeholder.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ue000]"
)
# Where GitHub would find a mention, a reference or an autolink: break it after the match.
_BREAKS = re.compile(
    r"[@#＠＃]"  # mentions, #12, owner/repo#12 (and the fullwidth forms GitHub also reads)
    r"|\bGH-(?=\d)"  # GH-12
    r"|:(?=//)"  # scheme:// (http://, https://, ftp://, javascript://...)
    r"|\bwww(?=\.)",  # www. autolinks
    re.IGNORECASE,
)
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_STATUS_RANK: dict[str, int] = {"triggered": 0, "building": 1, "expired": 2, "quiet": 3}


# --- neutralising untrusted text -----------------------------------------------------------


def neutralise_inline(text: str | None, limit: int = TITLE_LIMIT) -> str:
    """Untrusted text made safe to place inline anywhere in the digest (a line, a table cell).

    One line (whitespace collapsed, controls and bidi characters removed), at most `limit`
    characters (an ellipsis marks a cut), with no mention, issue reference, autolink, HTML,
    image, link, emphasis, code span or table pipe left active.
    """
    if not text:
        return ""
    # Whitespace first: newlines and tabs are controls too, but they separate words.
    plain = _WS.sub(" ", _INVISIBLE.sub("", _WS.sub(" ", text))).strip()
    if len(plain) > limit:
        plain = plain[: max(limit - 1, 0)].rstrip() + "…"
    marked = _BREAKS.sub(lambda m: m.group(0) + _MARK, plain)
    out: list[str] = []
    for ch in marked:
        if ch == _MARK:
            out.append(_ZWSP)
        elif ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _MD_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


# Characters allowed verbatim in a link destination; everything else is percent-encoded, so
# the URL cannot close the link, break a table cell or carry whitespace.
_URL_SAFE = "/?&=%+,;@!$*~.-_:#"
_GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})


def safe_link(url: str | None) -> str | None:
    """A URL fit for `[text](url)` in the digest, or None when it must stay plain text.

    Only absolute http(s) URLs with a host and no credentials, whitespace or control
    characters pass; delimiters are percent-encoded. github.com URLs are rewritten to
    `https://redirect.github.com/...`, which opens the same page without GitHub turning
    the link into a cross-reference on the target issue.
    """
    if not url or len(url) > 2000 or _INVISIBLE.search(url) or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = ascii_host(parts.hostname)  # IDNA 2008, as the fetch resolved it
    # Whatever urlsplit accepted as a host, only a plain DNS name goes into the Markdown.
    if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?", host):
        return None
    netloc = host if port is None else f"{host}:{port}"
    scheme = parts.scheme.lower()
    if host in _GITHUB_HOSTS:
        scheme, netloc = "https", "redirect.github.com"
    path = quote(parts.path, safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE)
    fragment = quote(parts.fragment, safe=_URL_SAFE)
    return urlunsplit((scheme, netloc, path or "/", query, fragment))


def _link(title: str, url: str | None) -> str:
    text = neutralise_inline(title) or "(untitled)"
    target = safe_link(url)
    return f"[{text}]({target})" if target else text


def _code(ident: str) -> str:
    """One of our own ids (watchlist ids) shown as code; anything odd is neutralised instead."""
    if _SAFE_ID.fullmatch(ident) and len(ident) <= 100:
        return f"`{ident}`"
    return neutralise_inline(ident, 100)


def _day(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d")


def _minute(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- the digest model ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedProblem:
    """A feed worth a line in the digest: failing, stale or never fetched."""

    health: FeedHealth
    problem: str  # "failing" | "stale" | "never fetched"


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything the digest says, independent of its format."""

    at: datetime
    since: datetime
    since_label: str  # "last digest", "first digest", "30d", "2025-12-01"
    statuses: tuple[ItemStatus, ...]  # every item, in watchlist order
    changes: tuple[StatusChange, ...]  # one per changed item, ordered for reading
    new_evidence: Mapping[str, tuple[Evidence, ...]]  # item -> ranked, one per story
    also_in: Mapping[tuple[str, str], tuple[str, ...]]  # (item, story) -> other feeds
    feeds: tuple[FeedHealth, ...]
    problems: tuple[FeedProblem, ...]
    chart_days: tuple[str, ...] = ()
    chart: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # item -> daily scores

    @property
    def title(self) -> str:
        return digest_title(self.at)


def digest_title(at: datetime) -> str:
    """The day's issue title: only the date, never feed text, so a workflow can trust it."""
    return f"catalysts digest {_day(at)}"


def rank_evidence(
    evidence: Sequence[Evidence], weights: Mapping[str, float]
) -> tuple[list[Evidence], dict[str, list[str]]]:
    """Evidence most relevant first, one per story: confirm before signal, heavier feed, newer.

    Returns the ranked list and, per story shown, the other feeds that carried it.
    """
    ordered = sorted(
        evidence,
        key=lambda ev: (
            ev.rule != "confirm",
            -weights.get(ev.feed, 1.0),
            -ev.time.timestamp(),
            ev.entry_id,
        ),
    )
    shown: list[Evidence] = []
    first_feed: dict[str, str] = {}
    also: dict[str, list[str]] = {}
    for ev in ordered:
        feed = first_feed.get(ev.story)
        if feed is None:
            first_feed[ev.story] = ev.feed
            also[ev.story] = []
            shown.append(ev)
        elif ev.feed != feed and ev.feed not in also[ev.story]:
            also[ev.story].append(ev.feed)
    return shown, also


def _problems(health: Sequence[FeedHealth], settings: Settings, now: datetime) -> list[FeedProblem]:
    horizon = now - settings.stale_after
    out: list[FeedProblem] = []
    for h in health:
        if h.status == "error":
            out.append(FeedProblem(h, "failing"))
        elif h.status == "never":
            out.append(FeedProblem(h, "never fetched"))
        elif h.last_success is None or h.last_success < horizon:
            out.append(FeedProblem(h, "stale"))
    return out


def build_digest(
    watchlist: Watchlist,
    statuses: Sequence[ItemStatus],
    changes: Sequence[StatusChange],
    evidence: Sequence[Evidence],
    health: Sequence[FeedHealth],
    *,
    since: datetime,
    now: datetime | None = None,
    since_label: str = "",
    scores: Mapping[str, Sequence[float]] | None = None,
    late: Collection[int] = (),
) -> Digest:
    """Assemble the digest from the status engine's results.

    `statuses` are every item's status as of the digest time (`statuses[0].at`, or `now`);
    `changes` the status changes to report (at most one per item is kept: the last);
    `evidence` any stored evidence -- only what is newer than `since` and not after the
    digest time, from the item's own feeds, counts as new; `health` the configured feeds;
    `scores` item -> daily scores, oldest first, ending on the digest day (the chart);
    `late` the row ids of entries first seen since `since` (published earlier, fetched
    late: a recovering feed, a new feed), which count as new too.
    """
    at = statuses[0].at if statuses else (now or since)
    now = now or at
    weights = feed_weights(watchlist)
    specs = {st.item.id: st.item for st in statuses}

    by_item: dict[str, list[Evidence]] = {}
    for ev in evidence:
        spec = specs.get(ev.item)
        if spec is None or not (since < ev.time <= at or ev.entry_id in late):
            continue
        if spec.feeds and ev.feed not in spec.feeds:
            continue
        by_item.setdefault(ev.item, []).append(ev)
    new: dict[str, tuple[Evidence, ...]] = {}
    also: dict[tuple[str, str], tuple[str, ...]] = {}
    for item, evs in by_item.items():
        ranked, others = rank_evidence(evs, weights)
        new[item] = tuple(ranked)
        for story, feeds in others.items():
            if feeds:
                also[(item, story)] = tuple(feeds)

    last: dict[str, StatusChange] = {}
    for change in changes:
        if change.item in specs and not (change.old is None and change.new == "quiet"):
            last[change.item] = change
    order = {st.item.id: n for n, st in enumerate(statuses)}
    kept = sorted(last.values(), key=lambda c: (_STATUS_RANK.get(c.new, 9), order[c.item]))

    days: tuple[str, ...] = ()
    chart: dict[str, tuple[float, ...]] = {}
    if scores:
        first = at - timedelta(days=CHART_DAYS - 1)
        days = tuple(
            (first + timedelta(days=k)).astimezone(timezone.utc).strftime("%m-%d")
            for k in range(CHART_DAYS)
        )
        chart = {
            item: tuple(float(x) for x in values)[-CHART_DAYS:]
            for item, values in scores.items()
            if item in specs
        }

    return Digest(
        at=at,
        since=since,
        since_label=since_label,
        statuses=tuple(statuses),
        changes=tuple(kept),
        new_evidence=new,
        also_in=also,
        feeds=tuple(health),
        problems=tuple(_problems(health, watchlist.settings, now)),
        chart_days=days,
        chart=chart,
    )


# --- Markdown --------------------------------------------------------------------------------


def _size(text: str) -> int:
    # GitHub counts in UTF-16 code units or in characters; the former is never smaller.
    return len(text.encode("utf-16-le")) // 2


class _Body:
    """The issue body under construction: blocks are added whole or left out and counted."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.used = 0
        self.limit = limit - FOOTER_RESERVE
        self.left_out: dict[str, int] = {}

    def fits(self, text: str, reserve: int = 0) -> bool:
        return self.used + _size(text) + reserve <= self.limit

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.used += _size(text)

    def omit(self, what: str, n: int = 1) -> None:
        if n:
            self.left_out[what] = self.left_out.get(what, 0) + n

    def section(
        self, head: str, blocks: Sequence[str], what: str, tail: str = "", *, whole: int = 0
    ) -> None:
        """Add `head`, as many `blocks` as fit, then `tail`; count the blocks left out.

        `whole` > 0 counts that many units for the section when even its head cannot fit.
        """
        if not blocks:
            return
        if not self.fits(head + blocks[0], _size(tail)):
            self.omit(what, whole or len(blocks))
            return
        self.add(head)
        reserve = _size(tail)
        for n, block in enumerate(blocks):
            if self.fits(block, reserve):
                self.add(block)
            else:
                # Cut between blocks, never inside one; later blocks are no smaller in kind.
                self.omit(what, len(blocks) - n)
                break
        self.add(tail)


def _item_name(st: ItemStatus) -> str:
    return f"{neutralise_inline(st.item.title, 120)} ({_code(st.item.id)})"


def _score(st: ItemStatus) -> str:
    return f"{st.score:.1f} / {st.threshold:.1f}"


def _status_word(status: str | None, stale: bool = False) -> str:
    if status is None:
        return "new"
    return f"{status} (stale)" if stale else status


def _evidence_line(digest: Digest, ev: Evidence) -> str:
    tag = "**confirm** " if ev.rule == "confirm" else ""
    when = _day(ev.time) if ev.dated else f"seen {_day(ev.time)}"
    others = digest.also_in.get((ev.item, ev.story), ())
    also = ""
    if others:
        names = ", ".join(_code(f) for f in others[:3])
        extra = f" and {len(others) - 3} more" if len(others) > 3 else ""
        also = f" (also {names}{extra})"
    return f"- {tag}{_link(ev.title, ev.link)} · {_code(ev.feed)} · {when}{also}\n"


def _change_block(digest: Digest, change: StatusChange, st: ItemStatus) -> str:
    lines = [
        f"### {_item_name(st)}: {_status_word(change.old)} → **{_status_word(change.new)}**\n",
        "\n",
        f"{st.item.kind} · score {_score(st)}",
    ]
    if st.since is not None:
        lines.append(f" · since {_minute(st.since)}")
    lines.append(f"  \nWhy: {neutralise_inline(change.reason, REASON_LIMIT)}\n")
    if st.override_note:
        lines.append(f"Override note: {neutralise_inline(st.override_note, REASON_LIMIT)}\n")
    shown = change.evidence[:CHANGE_EVIDENCE]
    if shown:
        lines.append("\n")
        lines.extend(_evidence_line(digest, ev) for ev in shown)
        if len(change.evidence) > len(shown):
            lines.append(f"- and {len(change.evidence) - len(shown)} more\n")
    lines.append("\n")
    return "".join(lines)


def _evidence_block(
    digest: Digest, st: ItemStatus, evs: Sequence[Evidence], changed: bool = False
) -> str:
    stories = "story" if len(evs) == 1 else "stories"
    lines = [
        f"### {_item_name(st)}\n",
        "\n",
        f"{_status_word(st.status, st.stale)} · score {_score(st)} · "
        f"{len(evs)} {'more ' if changed else ''}new {stories}\n",
        "\n",
    ]
    shown = evs[:EVIDENCE_PER_ITEM]
    lines.extend(_evidence_line(digest, ev) for ev in shown)
    if len(evs) > len(shown):
        lines.append(f"- and {len(evs) - len(shown)} more\n")
    lines.append("\n")
    return "".join(lines)


def _cell(text: str) -> str:
    # neutralise_inline already escapes pipes; a cell must also never be empty.
    return text or " "


def _feed_row(p: FeedProblem) -> str:
    h = p.health
    last = _day(h.last_success) if h.last_success else "never"
    if p.problem == "failing":
        runs = h.consecutive_failures
        detail = f"{runs} failed {'run' if runs == 1 else 'runs'}: " + neutralise_inline(
            h.last_error, 150
        )
    elif p.problem == "stale":
        detail = "no successful fetch lately"
    else:
        detail = "not fetched yet"
    return f"| {_code(h.id)} | {p.problem} | {last} | {_cell(detail)} |\n"


def _chart(digest: Digest) -> str:
    """A Mermaid xychart of the busiest items' daily scores: only numbers and our ids."""
    peaks = {item: max(values, default=0.0) for item, values in digest.chart.items()}
    busiest = [
        item
        for item, peak in sorted(peaks.items(), key=lambda kv: (-kv[1], kv[0]))
        if peak > 0 and _SAFE_ID.fullmatch(item)
    ][:CHART_LINES]
    if not busiest or not digest.chart_days:
        return ""
    thresholds = {st.item.id: st.threshold for st in digest.statuses}
    top = max(max(peaks[i] for i in busiest), *(thresholds.get(i, 0.0) for i in busiest))
    top = math.ceil(top * 1.1 * 2) / 2 or 1.0
    days = ", ".join(f'"{d}"' for d in digest.chart_days)
    lines = [
        "```mermaid\n",
        "xychart-beta\n",
        f'  title "Item scores, last {CHART_DAYS} days"\n',
        f"  x-axis [{days}]\n",
        f'  y-axis "score" 0 --> {top:g}\n',
    ]
    for item in busiest:
        values = list(digest.chart[item])
        values = [0.0] * (len(digest.chart_days) - len(values)) + values
        lines.append(f"  line [{', '.join(f'{v:.2f}' for v in values)}]\n")
    lines.append("```\n\n")
    lines.append("Lines, in order: " + ", ".join(_code(i) for i in busiest) + ".\n\n")
    return "".join(lines)


def render_markdown(digest: Digest, *, limit: int = BODY_LIMIT) -> str:
    """The digest as GitHub-flavoured Markdown, at most `limit` characters (UTF-16 units)."""
    body = _Body(limit)
    statuses = {st.item.id: st for st in digest.statuses}
    counts: dict[str, int] = {}
    for st in digest.statuses:
        counts[st.status] = counts.get(st.status, 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in _STATUS_RANK if counts.get(s))
    stale = sum(1 for st in digest.statuses if st.stale)
    label = f" ({digest.since_label})" if digest.since_label else ""
    head = [
        f"# {digest.title}\n\n",
        f"Since {_minute(digest.since)}{label}, as of {_minute(digest.at)}. ",
        f"{len(digest.statuses)} items: {summary or 'none'}",
        f", {stale} stale" if stale else "",
        ". ",
        f"{len(digest.changes)} status "
        f"{'change' if len(digest.changes) == 1 else 'changes'}, "
        f"{sum(len(v) for v in digest.new_evidence.values())} new stories, "
        f"{len(digest.problems)} of {len(digest.feeds)} feeds need attention.\n\n",
    ]
    body.add("".join(head))

    # 1. Status changes, most important first.
    if digest.changes:
        body.section(
            "## Status changes\n\n",
            [_change_block(digest, c, statuses[c.item]) for c in digest.changes],
            "status changes",
        )
    else:
        body.add("## Status changes\n\nNo status changed.\n\n")

    # 2. New evidence per item, less what a status change above already showed; changed
    # and active items first.
    changed = {c.item for c in digest.changes}
    shown_above = {
        (c.item, e.entry_id) for c in digest.changes for e in c.evidence[:CHANGE_EVIDENCE]
    }
    news: dict[str, list[Evidence]] = {}
    for st in digest.statuses:
        evs = digest.new_evidence.get(st.item.id, ())
        rest = [e for e in evs if (e.item, e.entry_id) not in shown_above]
        if rest:
            news[st.item.id] = rest
    with_news = [st for st in digest.statuses if st.item.id in news]
    with_news.sort(
        key=lambda st: (st.item.id not in changed, _STATUS_RANK.get(st.status, 9), -st.score)
    )
    if with_news:
        body.section(
            "## New evidence\n\n",
            [
                _evidence_block(digest, st, news[st.item.id], st.item.id in changed)
                for st in with_news
            ],
            "items' new evidence",
        )
    else:
        none = "No other new evidence." if digest.new_evidence else "No new evidence."
        body.add(f"## New evidence\n\n{none}\n\n")

    # 3. Items without change or news, folded.
    quiet = [
        st
        for st in digest.statuses
        if st.item.id not in changed and not digest.new_evidence.get(st.item.id)
    ]
    if quiet:
        n = len(quiet)
        body.section(
            "<details>\n<summary>"
            f"{n} {'item' if n == 1 else 'items'} unchanged, without new evidence"
            "</summary>\n\n| item | kind | status | score |\n|---|---|---|---|\n",
            [
                f"| {_item_name(st)} | {st.item.kind} | "
                f"{_status_word(st.status, st.stale)} | {_score(st)} |\n"
                for st in quiet
            ],
            "unchanged items",
            "\n</details>\n\n",
        )

    # 4. Feed health.
    if digest.problems:
        rows = [_feed_row(p) for p in digest.problems[:FEED_ROWS]]
        more = len(digest.problems) - len(rows)
        tail = f"\nand {more} more feeds with problems (`catalysts feeds`).\n\n" if more else "\n"
        body.section(
            "## Feed health\n\n| feed | problem | last success | detail |\n|---|---|---|---|\n",
            rows,
            "feed-health rows",
            tail,
        )
    else:
        body.add(f"## Feed health\n\nAll {len(digest.feeds)} feeds fetched fine.\n\n")

    # 5. The chart.
    chart = _chart(digest)
    if chart:
        body.section(f"## Scores, last {CHART_DAYS} days\n\n", [chart], "score chart", whole=1)

    footer = "---\n\n_Made by `catalysts digest`._"
    if body.left_out:
        what = ", ".join(f"{n} {name}" for name, n in body.left_out.items())
        footer += (
            f" _Left out to stay under GitHub's {GITHUB_BODY_MAX:,}-character limit: {what}._"
            " _Run `catalysts digest` locally for everything._"
        )
    return "".join(body.parts) + footer + "\n"


# --- JSON ------------------------------------------------------------------------------------


def _evidence_json(ev: Evidence, also: Sequence[str] = ()) -> dict[str, object]:
    from catalysts.status import evidence_json

    return {**evidence_json(ev), "also_in": list(also)}


def digest_json(digest: Digest) -> dict[str, object]:
    """The digest's facts as one JSON document (raw text: consumers escape for their medium).

    Shape: `{title, at, since, since_label, changes: [{item, title, old, new, at, since,
    reason, evidence[]}], items: [{id, thesis, kind, title, status, stale, score, threshold,
    changed, new_evidence[], more}], feeds: [{id, url, status, problem, last_error,
    last_success, consecutive_failures}], chart: {days, scores}}`.
    """
    statuses = {st.item.id: st for st in digest.statuses}
    changed = {c.item for c in digest.changes}
    problems = {p.health.id: p.problem for p in digest.problems}
    items = []
    for st in digest.statuses:
        evs = digest.new_evidence.get(st.item.id, ())
        shown = evs[:EVIDENCE_PER_ITEM]
        items.append(
            {
                "id": st.item.id,
                "thesis": st.item.thesis,
                "kind": st.item.kind,
                "title": st.item.title,
                "status": st.status,
                "stale": st.stale,
                "score": round(st.score, 3),
                "threshold": st.threshold,
                "changed": st.item.id in changed,
                "new_evidence": [
                    _evidence_json(ev, digest.also_in.get((ev.item, ev.story), ())) for ev in shown
                ],
                "more": len(evs) - len(shown),
            }
        )
    return {
        "title": digest.title,
        "at": iso(digest.at),
        "since": iso(digest.since),
        "since_label": digest.since_label,
        "changes": [
            {
                "item": c.item,
                "title": statuses[c.item].item.title,
                "old": c.old,
                "new": c.new,
                "at": iso(c.at),
                "since": iso(statuses[c.item].since),
                "reason": c.reason,
                "evidence": [_evidence_json(ev) for ev in c.evidence],
            }
            for c in digest.changes
        ],
        "items": items,
        "feeds": [
            {
                "id": h.id,
                "url": h.url,
                "status": h.status,
                "problem": problems.get(h.id),
                "last_error": h.last_error,
                "last_success": iso(h.last_success),
                "consecutive_failures": h.consecutive_failures,
            }
            for h in digest.feeds
        ],
        "chart": {"days": list(digest.chart_days), "scores": dict(digest.chart)},
    }


# --- from the status engine's results to the digest's inputs -----------------------------------


def net_changes(
    watchlist: Watchlist,
    statuses: Sequence[ItemStatus],
    previous: Mapping[str, str],
    evidence: Sequence[Evidence],
) -> list[StatusChange]:
    """One change per item whose status differs from `previous` (item -> status then).

    The reason and evidence are those of the derived change that set the current status
    (`status.changes_since`), so "quiet -> building" says which stories did it. An item
    missing from `previous` (new in the watchlist) changes from None.
    """
    from catalysts.status import changes_since

    weights = feed_weights(watchlist)
    by_item: dict[str, list[Evidence]] = {}
    for ev in evidence:
        by_item.setdefault(ev.item, []).append(ev)
    out: list[StatusChange] = []
    for st in statuses:
        old = previous.get(st.item.id)
        out.extend(
            changes_since(
                st,
                old,  # type: ignore[arg-type]
                by_item.get(st.item.id, ()),
                watchlist.settings,
                weights=weights,
            )
        )
    return out


def chart_scores(
    watchlist: Watchlist,
    evidence: Sequence[Evidence],
    statuses: Sequence[ItemStatus],
    days: int = CHART_DAYS,
) -> dict[str, tuple[float, ...]]:
    """item -> its score on each of the last `days` days, oldest first, ending at `at`.

    Each evaluation's `trend` holds `status.TREND_DAYS` daily scores, so a few evaluations
    at earlier times, spliced, give the whole range with the engine's own scoring.
    """
    from catalysts.status import TREND_DAYS, evaluate_all

    if not statuses:
        return {}
    at = statuses[0].at
    series: dict[str, list[float]] = {st.item.id: list(st.trend) for st in statuses}
    covered = TREND_DAYS
    while covered < days:
        earlier = evaluate_all(watchlist, evidence, at - timedelta(days=covered))
        for st in earlier:
            series[st.item.id][:0] = st.trend
        covered += TREND_DAYS
    return {item: tuple(values[-days:]) for item, values in series.items()}


def previous_statuses(statuses: Sequence[ItemStatus]) -> dict[str, Status]:
    """item -> status, the form a digest is recorded in (`Store.record_digest`)."""
    return {st.item.id: st.status for st in statuses}
