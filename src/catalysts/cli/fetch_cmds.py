"""Fetching commands: fetch, feeds."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from catalysts.cli.app import DEFAULT_WATCHLIST, DbOpt, JsonOpt, WatchlistOpt, app
from catalysts.errors import RunFailed

if TYPE_CHECKING:
    from catalysts.models import FeedHealth, FetchReport

_NAMED = 10  # failing feeds named in the one-line error; the table lists them all

OnlyOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - Typer needs Optional on Python 3.10
    typer.Option(
        "--only", help="Fetch only these feeds (feed id or tag; repeatable).", show_default=False
    ),
]


@app.command()
def fetch(
    only: OnlyOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 if any feed fails (default: only if all do).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch feeds in backoff after failures too.")
    ] = False,
    as_json: JsonOpt = False,
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    db: DbOpt = None,
) -> None:
    """Fetch every feed concurrently; progress on stderr, a per-feed summary on stdout."""
    from catalysts.ingest import fetch_feeds, select_feeds
    from catalysts.render import fetch as render
    from catalysts.store import Store
    from catalysts.timeutil import utcnow
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(watchlist)
    selected = select_feeds(wl, only or ())  # an unknown --only fails before the store opens
    started = time.perf_counter()
    with Store.open(db) as store, render.progress(len(selected)) as advance:
        reports = fetch_feeds(
            wl, store, now=utcnow(), only=only or (), on_report=advance, force=force
        )
    seconds = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps(fetch_json(reports, seconds), ensure_ascii=False))
    else:
        render.fetch_summary(reports, seconds)
    failed = [r for r in reports if r.result == "error"]
    if reports and (len(failed) == len(reports) or (strict and failed)):
        which = "every feed" if len(failed) == len(reports) else f"{len(failed)} feed(s)"
        names = ", ".join(r.id for r in failed[:_NAMED])
        more = f" and {len(failed) - _NAMED} more" if len(failed) > _NAMED else ""
        raise RunFailed(f"fetch failed for {which}: {names}{more}")


@app.command()
def feeds(
    as_json: JsonOpt = False,
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    db: DbOpt = None,
) -> None:
    """Feed health: last success, last error, entries stored, conditional-GET state."""
    from catalysts.cli.report_cmds import require_store
    from catalysts.render import fetch as render
    from catalysts.store import Store
    from catalysts.timeutil import utcnow
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(watchlist)
    require_store(db)
    with Store.open(db) as store:
        health = store.feed_health(wl.feeds)
    if as_json:
        typer.echo(json.dumps(feeds_json(health), ensure_ascii=False))
    else:
        render.feeds_table(health, utcnow())


def fetch_json(reports: list[FetchReport], seconds: float) -> dict[str, object]:
    """`fetch --json` (DESIGN section 9), plus the per-feed and total seconds."""
    return {
        "feeds": [
            {
                "id": r.id,
                "result": r.result,
                "new_entries": r.new_entries,
                "error": r.error,
                "warning": r.warning,
                "seconds": round(r.seconds, 3),
            }
            for r in reports
        ],
        "seconds": round(seconds, 3),
    }


def feeds_json(health: list[FeedHealth]) -> dict[str, object]:
    """`feeds --json` (DESIGN section 9), plus every other health field."""
    from catalysts.timeutil import iso

    return {
        "feeds": [
            {
                "id": h.id,
                "url": h.url,
                "status": h.status,
                "last_error": h.last_error,
                "entries": h.entries,
                "last_success": iso(h.last_success),
                "last_attempt": iso(h.last_attempt),
                "consecutive_failures": h.consecutive_failures,
                "newest_entry": iso(h.newest_entry),
                "etag": h.etag,
                "last_modified": h.last_modified,
                "next_retry": iso(h.next_retry),
            }
            for h in health
        ]
    }
