"""Report commands: status, show.

Thin: load the watchlist, open the store, fetch when the store is old (status only),
re-match edited rules, read the evidence in one query, evaluate with the pure engine
(`catalysts.status`), record what changed, render or print JSON. Heavy modules (Rich, the
HTTP client, the feed parser) are imported only when needed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from catalysts.cli.app import DEFAULT_WATCHLIST, AtOpt, DbOpt, JsonOpt, WatchlistOpt, app
from catalysts.errors import CatalystsError

if TYPE_CHECKING:
    from catalysts.models import (
        FeedHealth,
        ItemStatus,
        Status,
        StatusChange,
        Watchlist,
    )
    from catalysts.store import Store


class KindChoice(str, Enum):
    catalyst = "catalyst"
    risk = "risk"


class StatusChoice(str, Enum):
    quiet = "quiet"
    building = "building"
    triggered = "triggered"
    expired = "expired"
    stale = "stale"


def when_of(at_text: str | None, now: datetime) -> datetime:
    """The time an --at option names (now when absent); a bad value is a usage error."""
    from catalysts.timeutil import parse_when

    if at_text is None:
        return now
    try:
        return parse_when(at_text, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--at'") from None


def _load(path: Path) -> Watchlist:
    from catalysts.watchlist import load_watchlist

    return load_watchlist(path)


def _open(db: Path | None) -> Store:
    from catalysts.store import Store

    return Store.open(db)


@contextmanager
def session(
    path: Path,
    db: Path | None,
    check: Callable[[Watchlist], None] | None = None,
    *,
    must_exist: bool = False,
) -> Iterator[tuple[Watchlist, Store]]:
    """The validated watchlist and the open store, with stored matches in step with its rules.

    Validating a watchlist imports the YAML parser and the rule engine, which costs more
    than the rest of `status` on a big store. So the store keeps the validated watchlist
    and its rule hashes as JSON, under a key covering the file's bytes and path, the
    working and home directories (relative feed paths) and catalysts' own code; when
    nothing changed they are read back instead. Order of errors is as without the cache:
    the watchlist's (and `check`'s) before the store's. `must_exist`: for commands that
    only read, an explicit `--db` naming no file is an error (`require_store`).
    """
    from catalysts.errors import StoreError

    store: Store | None = None
    try:
        key = _cache_key(path)
        if key is not None:
            with contextlib.suppress(StoreError):
                store = _open_existing(db)
        cached = _cached_watchlist(store, path, key) if store is not None else None
        if cached is None:
            wl, hashes = _load(path), None
        else:
            wl, hashes = cached
        if check is not None:
            check(wl)
        if store is None:
            if must_exist:
                require_store(db)
            store = _open(db)
        if hashes is None:
            from catalysts.ingest import rule_hashes

            hashes = rule_hashes(wl)
            if key is not None:
                _cache_watchlist(store, path, key, wl, hashes)
        if store.stale_rules(hashes):
            from catalysts.ingest import sync_matches

            sync_matches(wl, store, hashes)
        yield wl, store
    finally:
        if store is not None:
            store.close()


def require_store(db: Path | None) -> None:
    """Refuse a `--db` / CATALYSTS_DB that names no file, for commands that only read.

    Opening would create an empty store there, so a mistyped path would show "nothing
    stored" instead of the mistake. The default store may be missing: it is created.
    """
    from catalysts.errors import StoreError

    if db is None or str(db) == ":memory:":
        return
    path = db.expanduser()
    if not path.exists():
        raise StoreError(
            f"no store at {path}: nothing was fetched there (check --db or CATALYSTS_DB; "
            f"`catalysts fetch --db {path}` creates it)"
        )


def _open_existing(db: Path | None) -> Store | None:
    """The store if its file already exists (so reading a cache never creates one)."""
    from catalysts.store import Store, default_db_path

    path = default_db_path() if db is None else db.expanduser()
    if str(path) == ":memory:" or not path.is_file():
        return None
    return Store.open(path)


_CACHE_PREFIX = "watchlist:"


def _cache_key(path: Path) -> str | None:
    """A digest of everything a validated watchlist depends on; None if the file is unreadable."""
    import hashlib
    import os

    import catalysts

    try:
        data = path.read_bytes()
    except OSError:
        return None  # the loader reports it
    digest = hashlib.sha256()
    for part in (
        catalysts.__version__,
        sys.version,
        str(path),
        os.getcwd(),
        os.environ.get("HOME", ""),
        _code_stamp(Path(catalysts.__file__).parent),
    ):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def _code_stamp(root: Path) -> str:
    """Names, sizes and modification times of catalysts' files: any edit changes it."""
    import os

    stamps: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            info = os.stat(os.path.join(folder, name))
            stamps.append(f"{folder}/{name}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(sorted(stamps))


def _cached_watchlist(
    store: Store, path: Path, key: str
) -> tuple[Watchlist, dict[tuple[str, str], str]] | None:
    from catalysts.watchlist import from_json

    text = store.cached(_CACHE_PREFIX + str(path.absolute()), key)
    if text is None:
        return None
    try:
        doc = json.loads(text)
        wl = from_json(doc["watchlist"])
        hashes = {(item, rule): h for item, rule, h in doc["rule_hashes"]}
    except (ValueError, KeyError, TypeError):
        return None
    return wl, hashes


def _cache_watchlist(
    store: Store, path: Path, key: str, wl: Watchlist, hashes: Mapping[tuple[str, str], str]
) -> None:
    from catalysts.errors import StoreError
    from catalysts.watchlist import to_json

    rows = [[item, rule, h] for (item, rule), h in hashes.items()]
    doc = json.dumps({"watchlist": to_json(wl), "rule_hashes": rows}, ensure_ascii=False)
    # Only a cache: a store another run is writing (or a read-only one) just misses it.
    with contextlib.suppress(StoreError):
        store.cache(_CACHE_PREFIX + str(path.absolute()), key, doc)


def _fetch_first(wl: Watchlist, store: Store, now: datetime) -> None:
    """Fetch every feed with a progress bar on stderr, then one summary line on stderr."""
    import time

    from catalysts.ingest import fetch_feeds
    from catalysts.render import fetch as render_fetch
    from catalysts.render.console import stderr

    started = time.perf_counter()
    with render_fetch.progress(len(wl.feeds)) as advance:
        reports = fetch_feeds(wl, store, now=now, on_report=advance)
    stderr().print(render_fetch.total_line(reports, time.perf_counter() - started))


def record_observed(wl: Watchlist, store: Store, statuses: list[ItemStatus]) -> None:
    """Record each item whose status at the present differs from the last recorded one.

    Shared by `status` and `digest`, so the two record the same changes the same way.
    """
    from catalysts.status import changes_since, feed_weights

    last: dict[str, Status] = store.last_statuses(st.item.id for st in statuses)
    weights = feed_weights(wl)
    changes: list[StatusChange] = []
    for st in statuses:
        if last.get(st.item.id) == st.status:
            continue
        # Rare (a change or a new item): the item's whole history, with the hits the
        # recorded evidence keeps.
        mine = store.evidence([st.item.id], until=st.at)
        changes.extend(changes_since(st, last.get(st.item.id), mine, wl.settings, weights=weights))
    store.record_status_changes(changes)


def _read_and_evaluate(
    wl: Watchlist,
    store: Store,
    when: datetime,
    now: datetime,
    health: list[FeedHealth],
    hits: bool = True,
) -> tuple[list[ItemStatus], bool]:
    """Every item's status as of `when`, and whether the store had any evidence for it.

    Reads every confirm match but only the signal matches the table needs (the window
    before the trend), without hits; the engine asks for an item's full history when its
    `since` reaches further back. With `hits`, the evidence shown (last and trigger) then
    gets its hits and terms, which --json prints and the table does not.
    """
    import dataclasses

    from catalysts.status import evaluate_all, history_start

    ids = [item.id for item in wl.items]
    start = history_start(wl.settings, when)
    evidence = store.evidence(ids, until=when, since=start, hits=False)
    confirms = store.evidence(ids, until=when, rules=["confirm"], hits=False)
    evidence.extend(ev for ev in confirms if ev.time < start)

    def history(item_ids: Sequence[str]) -> list[tuple[str, datetime, str, str]]:
        return store.signal_history(item_ids, before=start)

    statuses = evaluate_all(
        wl, evidence, when, health=health, now=now, history_from=start, history=history
    )
    if not hits:
        return statuses, bool(evidence)
    shown = {id(ev): ev for st in statuses for ev in (st.last_evidence, st.trigger) if ev}
    filled = dict(zip(shown, store.with_hits(shown.values()), strict=True))
    for n, st in enumerate(statuses):
        last, trigger = st.last_evidence, st.trigger
        if last is not None or trigger is not None:
            statuses[n] = dataclasses.replace(
                st,
                evidence=(filled[id(last)], *st.evidence[1:]) if last is not None else (),
                trigger=filled[id(trigger)] if trigger is not None else None,
            )
    return statuses, bool(evidence)


@app.command("status")
def status_cmd(
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    db: DbOpt = None,
    at: AtOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never fetch first.")] = False,
    fetch: Annotated[bool, typer.Option("--fetch", help="Always fetch first.")] = False,
    kind: Annotated[
        Optional[KindChoice],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Option("--kind", help="Only catalysts or only risks."),
    ] = None,
    thesis: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--thesis", help="Only the items of this thesis (its id)."),
    ] = None,
    status: Annotated[
        Optional[StatusChoice],  # noqa: UP045
        typer.Option("--status", help="Only items with this status (or the stale flag)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Each item's status: quiet, building, triggered or expired, why, and its trend.

    Fetches first when the last fetch is older than settings.max_age (12h by default).
    """
    if offline and fetch:
        raise typer.BadParameter("use --offline or --fetch, not both", param_hint="'--fetch'")
    with quick_gc():
        _status(watchlist, db, at, offline, fetch, kind, thesis, status, as_json)


@contextmanager
def quick_gc() -> Iterator[None]:
    """Keep the garbage collector from rescanning what the imports created, for one command.

    `status` allocates tens of thousands of short-lived objects (rows, evidence) in a
    process already holding every object Typer, Rich and pydantic made at import; each
    full collection walks all of those again (measured 10-20 ms of a ~550 ms run on the
    benchmark store). Freezing them keeps them out of the collector's walks until the
    command ends.
    """
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _status(
    watchlist: Path,
    db: Path | None,
    at: str | None,
    offline: bool,
    fetch: bool,
    kind: KindChoice | None,
    thesis: str | None,
    status: StatusChoice | None,
    as_json: bool,
) -> None:
    from catalysts.timeutil import utcnow

    now = utcnow()
    when = when_of(at, now)

    def known_thesis(wl: Watchlist) -> None:
        if thesis is not None and thesis not in {t.id for t in wl.theses}:
            raise CatalystsError(_unknown("thesis", thesis, [t.id for t in wl.theses]))

    with session(watchlist, db, known_thesis, must_exist=offline) as (wl, store):
        last_fetch = store.last_fetch_time()
        stale_store = last_fetch is None or now - last_fetch > wl.settings.max_age
        if wl.feeds and not offline and (fetch or stale_store):
            _fetch_first(wl, store, now)
            last_fetch = store.last_fetch_time()
            # Entries fetched by a run that did not match a rule make it stale again.
            from catalysts.ingest import sync_matches

            sync_matches(wl, store)
        health = store.feed_health(wl.feeds)
        statuses, any_evidence = _read_and_evaluate(wl, store, when, now, health, as_json)
        if at is None:
            record_observed(wl, store, statuses)
        empty = not any_evidence and not store.has_entries()

    shown = [
        st
        for st in statuses
        if (kind is None or st.item.kind == kind.value)
        and (thesis is None or st.item.thesis == thesis)
        and (
            status is None
            or (st.stale if status is StatusChoice.stale else st.status == status.value)
        )
    ]
    titles = {t.id: t.title for t in wl.theses}  # the table's group headings
    if as_json:
        from catalysts.status import item_json
        from catalysts.timeutil import iso

        counts = {k: sum(1 for h in health if h.status == k) for k in ("ok", "error", "never")}
        doc = {
            "at": iso(when),
            "items": [
                {**item_json(st), "thesis_title": titles.get(st.item.thesis)} for st in shown
            ],
            "feeds": counts,
            "last_fetch": iso(last_fetch),
        }
        _print_json(doc)
        return
    from catalysts.render.status import status_table

    status_table(
        shown,
        thesis_titles=titles,
        health=health,
        last_fetch=last_fetch,
        now=now,
        empty_store=empty,
    )


@app.command("show")
def show_cmd(
    item: Annotated[str, typer.Argument(help="The item id.")],
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    db: DbOpt = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One item: its why, rules, status history and evidence with matched words highlighted."""
    from catalysts.status import evaluate, feed_weights, timeline
    from catalysts.timeutil import utcnow

    now = utcnow()
    when = when_of(at, now)

    def known_item(wl: Watchlist) -> None:
        if wl.item(item) is None:
            raise CatalystsError(_unknown("item", item, [i.id for i in wl.items]))

    with session(watchlist, db, known_item, must_exist=True) as (wl, store):
        spec = wl.item(item)
        assert spec is not None  # checked by known_item
        thesis_title = next((t.title for t in wl.theses if t.id == spec.thesis), None)
        evidence = store.evidence([spec.id], until=when)
        health = store.feed_health(wl.feeds)
    weights = feed_weights(wl)
    st = evaluate(
        spec, evidence, when, settings=wl.settings, weights=weights, health=health, now=now
    )
    history = timeline(spec, evidence, wl.settings, None, when, weights=weights)
    # The item's feeds only, as the engine counts them; newest first as the store gives them.
    mine = [ev for ev in evidence if not spec.feeds or ev.feed in spec.feeds]
    if as_json:
        from catalysts.status import change_json, evidence_json, item_json
        from catalysts.timeutil import iso

        doc = {
            "at": iso(when),
            **item_json(st),
            "thesis_title": thesis_title,
            "why": spec.why,
            "signal": spec.signal,
            "confirm": spec.confirm,
            "history": [change_json(c) for c in history],
            "evidence": [evidence_json(e) for e in mine],
        }
        _print_json(doc)
        return
    from catalysts.render.status import show_item

    show_item(st, history, mine, thesis_title=thesis_title)


def _unknown(what: str, name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return f"unknown {what} {name!r}; did you mean {', '.join(close)}?"
    listing = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
    return f"unknown {what} {name!r}; known: {listing or 'none'}"


def _print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
