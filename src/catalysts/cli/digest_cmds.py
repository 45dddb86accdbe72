"""Digest command: digest.

Thin: load the watchlist, open the store, re-match edited rules, read the evidence once,
evaluate with the status engine, hand everything to the pure `catalysts.digest`, write the
Markdown (or JSON), then record the digest (and the observed status changes) unless
`--dry-run`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from catalysts.cli.app import DEFAULT_WATCHLIST, AtOpt, DbOpt, WatchlistOpt, app
from catalysts.errors import CatalystsError

if TYPE_CHECKING:
    from catalysts.store import Store


class DigestFormat(str, Enum):
    markdown = "markdown"
    json = "json"


def _bad(option: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'{option}'")


def _since(
    text: str,
    at: datetime,
    now: datetime,
    store: Store,
) -> tuple[datetime, str, dict[str, str] | None]:
    """(since, label, item -> status at since when the last digest recorded it)."""
    from catalysts.digest import FIRST_WINDOW
    from catalysts.timeutil import parse_duration, parse_when

    value = text.strip().lower()
    if value == "last":
        last = store.last_digest()
        if last is not None and last[0] < at:
            return last[0], "last digest", last[1]
        return at - FIRST_WINDOW, f"first digest, last {FIRST_WINDOW.days} days", None
    if value and value[0].isdigit() and value[-1] in "wdhms" and "-" not in value:
        try:
            return at - parse_duration(value), f"last {value}", None
        except ValueError as exc:
            raise _bad("--since", str(exc)) from None
    try:
        since = parse_when(text, now)
    except ValueError:
        raise _bad(
            "--since", f"expected last, a duration like 30d or a date, got {text!r}"
        ) from None
    if since >= at:
        raise _bad("--since", f"{text} is not before the digest time")
    return since, f"since {text}", None


def _write(path: Path | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CatalystsError(f"cannot write {path}: {exc.strerror or exc}") from exc


@app.command("digest")
def digest_cmd(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Changes since: last (the last recorded digest), a duration (30d) or a date.",
        ),
    ] = "last",
    at: AtOpt = None,
    fmt: Annotated[
        DigestFormat, typer.Option("--format", help="Markdown (for a GitHub issue) or JSON.")
    ] = DigestFormat.markdown,
    output: Annotated[
        Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Option("-o", "--output", help="Write the digest to this file (default: stdout)."),
    ] = None,
    json_output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json-output", help="Also write the JSON form to this file."),
    ] = None,
    title_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--title-file", help="Write the issue title (no feed text) to this file."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Do not record this digest (or status changes).")
    ] = False,
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    db: DbOpt = None,
) -> None:
    """A Markdown (or JSON) digest of what changed since the last digest, for a GitHub issue.

    Feed text is neutralised; the body stays under GitHub's 65,536-character limit.
    """
    from catalysts.cli.report_cmds import quick_gc, record_observed, session, when_of
    from catalysts.digest import (
        build_digest,
        chart_scores,
        digest_json,
        net_changes,
        previous_statuses,
        render_markdown,
    )
    from catalysts.status import evaluate_all
    from catalysts.timeutil import utcnow

    now = utcnow()
    when = when_of(at, now)
    # The same session as `status`: the cached validated watchlist, stored matches brought
    # in step with edited rules, and no garbage-collector rescans of the imports.
    with quick_gc(), session(watchlist, db, must_exist=True) as (wl, store):
        start, label, recorded = _since(since, when, now, store)
        # The digest shows titles, feeds and dates, never matched terms: skip decoding hits.
        evidence = store.evidence(until=when, hits=False)
        health = store.feed_health(wl.feeds)
        statuses = evaluate_all(wl, evidence, when, health=health, now=now)
        previous = (
            recorded
            if recorded is not None
            else previous_statuses(evaluate_all(wl, evidence, start))
        )
        changes = net_changes(wl, statuses, previous, evidence)
        digest = build_digest(
            wl,
            statuses,
            changes,
            evidence,
            health,
            since=start,
            now=now,
            since_label=label,
            scores=chart_scores(wl, evidence, statuses),
            # Fetched since the last digest but published before it: still news.
            late=store.first_seen_between(start, when),
        )
        as_json = ""
        if fmt is DigestFormat.json or json_output is not None:
            as_json = json.dumps(digest_json(digest), ensure_ascii=False, indent=2) + "\n"
        _write(output, as_json if fmt is DigestFormat.json else render_markdown(digest))
        if json_output is not None:
            _write(json_output, as_json)
        if title_file is not None:
            _write(title_file, digest.title + "\n")
        # A digest as of a future --at is never recorded: "since last" would jump past
        # every real digest until that day came.
        if not dry_run and when <= now:
            if at is None:
                record_observed(wl, store, statuses)
            store.record_digest(when, previous_statuses(statuses))
