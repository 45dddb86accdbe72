"""`fetch`: feeds -> http -> feedparse -> rules -> store, one result per feed.

The glue between the modules that do the work. A run selects the feeds, skips those in
backoff, asks `http.fetch_all` for every body at once (with the stored ETag /
Last-Modified), and while the network is still busy parses, matches and stores each
response as it arrives, in one store transaction per feed. Parsing and matching are CPU
work, so with enough feeds and CPUs they run in forked worker processes; the store is
written from the calling thread only. Whatever goes wrong with one feed becomes a
`FetchReport` with result "error" and a reason a person understands; it never stops the
others.

`sync_matches` keeps stored matches in step with the watchlist: a rule whose hash changed
is re-matched over the stored history, so editing a rule needs no refetch.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from catalysts.errors import CatalystsError
from catalysts.models import (
    Entry,
    FeedHealth,
    FeedSpec,
    FetchReport,
    RuleMatch,
    RuleName,
    Watchlist,
)

if TYPE_CHECKING:
    from catalysts.http import HttpOptions, Request, Response
    from catalysts.store import PreparedEntries, Store
    from catalysts.workers import Pool, Status

# Backoff after consecutive failures: base * 2**(failures - 1), capped so that a feed that
# comes back is noticed within a few hours. A feed is never disabled.
BACKOFF_BASE = timedelta(minutes=15)
BACKOFF_CAP = timedelta(hours=6)
# A server's Retry-After is honoured up to this much; beyond it we assume a misconfiguration.
RETRY_AFTER_CAP = timedelta(days=1)
# Reasons are stored and shown; a hostile server must not fill the table with its text.
MAX_REASON = 300
# Stored entries are re-matched this many at a time: one anchor search per batch.
_MATCH_BATCH = 1000

RuleKey = tuple[str, RuleName]


@dataclass(frozen=True, slots=True)
class _Rules:
    """The compiled rules of every item, with what is needed to scope their matches."""

    ruleset: Any  # catalysts.rules.RuleSet
    feeds_of: dict[str, frozenset[str]]  # item id -> feed ids whose entries it may match


def select_feeds(watchlist: Watchlist, only: Sequence[str] = ()) -> list[FeedSpec]:
    """The feeds named in `only` (feed ids or tags), in watchlist order; all when empty.

    Raises `CatalystsError` (exit 1) naming the unknown selectors and the valid ids.
    """
    if not only:
        return list(watchlist.feeds)
    ids = {f.id for f in watchlist.feeds}
    tags = {t for f in watchlist.feeds for t in f.tags}
    unknown = [s for s in only if s not in ids and s not in tags]
    if unknown:
        valid = ", ".join(f.id for f in watchlist.feeds) or "(none)"
        names = ", ".join(repr(u) for u in unknown)
        raise CatalystsError(
            f"{watchlist.path}: --only {names}: no feed has that id or tag (feed ids: {valid})"
        )
    wanted = set(only)
    return [f for f in watchlist.feeds if f.id in wanted or wanted.intersection(f.tags)]


def next_retry(
    now: datetime,
    failures: int,
    retry_after: float | None = None,
    *,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
) -> datetime:
    """When a feed that has now failed `failures` times in a row may be fetched again.

    Exponential in the failures and capped; a larger `Retry-After` (seconds) from the
    server wins, itself capped at a day.
    """
    exponent = max(0, failures - 1)
    # 2**exponent overflows timedelta long before it matters: stop at the cap.
    delay = cap if exponent >= 32 else min(cap, base * (2**exponent))
    if retry_after is not None and retry_after > 0:
        # Capped before it becomes a timedelta: a server's 1e14 seconds would overflow it.
        seconds = min(retry_after, RETRY_AFTER_CAP.total_seconds())
        delay = max(delay, timedelta(seconds=seconds))
    return now + delay


def rule_hashes(watchlist: Watchlist, ruleset: Any = None) -> dict[RuleKey, str]:
    """The hash every (item, rule)'s stored matches are keyed by.

    `rules.rule_hash` (the rule with aliases expanded), plus, for an item limited to some
    sources, the feeds it resolves to: narrowing an item's sources must drop its matches
    from the other feeds, and widening it must match the added feeds' history. Given the
    watchlist's compiled `RuleSet`, its parsed rules are hashed instead of parsing again.
    """
    import hashlib

    from catalysts.rules import rule_hash
    from catalysts.rules.parse import node_hash

    scope: dict[str, str] = {}
    for item in watchlist.items:
        if item.sources:
            joined = "\n".join(sorted(item.feeds)).encode()
            scope[item.id] = "@" + hashlib.sha256(joined).hexdigest()[:16]
    hashes: dict[RuleKey, str] = {}
    if ruleset is not None:
        for compiled in ruleset.rules:
            key = (compiled.item, compiled.rule)
            hashes[key] = node_hash(compiled.node) + scope.get(compiled.item, "")
        return hashes
    for item_id, rule, source in rule_sources(watchlist):
        hashes[(item_id, rule)] = rule_hash(source, watchlist.aliases) + scope.get(item_id, "")
    return hashes


def fetch_feeds(
    watchlist: Watchlist,
    store: Store,
    *,
    now: datetime,
    only: Sequence[str] = (),
    on_report: Callable[[FetchReport], None] | None = None,
    http_options: HttpOptions | None = None,
    force: bool = False,
) -> list[FetchReport]:
    """Fetch, parse, match and store the selected feeds; one report per feed, in feed order.

    Feeds in backoff are reported as errors without a request, unless `force` is set or
    the feed is named by id in `only`. `on_report` is called once per feed as its result
    is stored (for a progress bar). Never raises for one feed's problem; raises
    `CatalystsError` for an unknown `--only` selector and `StoreError` for the store.
    """
    from catalysts import http

    feeds = select_feeds(watchlist, only)
    rules = _compile(watchlist)  # parses every rule: once per run

    @functools.cache  # once per run, by whichever needs it first
    def prepare_store() -> dict[RuleKey, str]:
        hashes = rule_hashes(watchlist, rules.ruleset)
        sync_matches(watchlist, store, hashes)
        return hashes

    health = {h.id: h for h in store.feed_health(feeds)}
    named = set(only)

    reports: dict[str, FetchReport] = {}
    requests: list[Request] = []

    def report(outcome: FetchReport) -> None:
        reports[outcome.id] = outcome
        if on_report:
            on_report(outcome)

    for feed in feeds:
        state = health.get(feed.id)
        bypass = force or feed.id in named
        if state is not None and not bypass and _backing_off(state, now):
            report(
                FetchReport(
                    id=feed.id,
                    result="error",
                    error=(
                        f"backing off until {_iso(state.next_retry)} after "
                        f"{state.consecutive_failures} failure"
                        f"{'s' if state.consecutive_failures != 1 else ''}"
                        " (use --force to retry now)"
                    ),
                )
            )
            continue
        # feed_health already carries the conditional-GET state: no query per feed.
        etag, last_modified = (state.etag, state.last_modified) if state else (None, None)
        requests.append(
            http.Request(feed_id=feed.id, url=feed.url, etag=etag, last_modified=last_modified)
        )

    if requests:
        with _out_of_the_collectors_sight():
            _run_pipeline(
                requests,
                {f.id: f for f in feeds if f.id not in reports},
                store,
                rules,
                prepare_store,
                now=now,
                failures={h.id: h.consecutive_failures for h in health.values()},
                report=report,
                user_agent=http.resolve_user_agent(watchlist.settings.user_agent),
                options=http_options,
            )
    else:
        prepare_store()
    for feed in feeds:  # http promised one response per request; do not trust it blindly
        if feed.id not in reports:
            report(FetchReport(id=feed.id, result="error", error="no response (internal error)"))
    return [reports[f.id] for f in feeds]


def sync_matches(
    watchlist: Watchlist, store: Store, hashes: dict[RuleKey, str] | None = None
) -> list[RuleKey]:
    """Re-match, over the stored history, every (item, rule) whose hash changed.

    Only the stale rules are compiled and run, so editing one item's rule touches only
    that item's matches. Returns the (item, rule) pairs re-matched.
    `hashes` are `rule_hashes(watchlist)` when the caller already has them.
    """
    if hashes is None:
        hashes = rule_hashes(watchlist)
    stale: list[RuleKey] = store.stale_rules(hashes)  # type: ignore[assignment]
    if not stale:
        return []
    found: dict[RuleKey, list[tuple[int, RuleMatch]]] = {k: [] for k in stale}
    if store.has_entries():  # an empty store has nothing to match: compile nothing
        _match_history(watchlist, store, found)
    for (item_id, rule), matches in found.items():
        store.replace_matches(item_id, rule, hashes[(item_id, rule)], matches)
    return stale


def _match_history(
    watchlist: Watchlist, store: Store, found: dict[RuleKey, list[tuple[int, RuleMatch]]]
) -> None:
    """Add to `found` the (entry row id, match) pairs of its rules over the stored history.

    Rules are grouped by the feeds their item may match; each group reads only those
    feeds' entries.
    """
    from catalysts.rules import RuleSet

    every = frozenset(f.id for f in watchlist.feeds)
    feeds_of = _feeds_of(watchlist)
    groups: dict[frozenset[str], list[tuple[str, RuleName, str]]] = {}
    for item_id, rule, source in rule_sources(watchlist):
        if (item_id, rule) in found:
            groups.setdefault(feeds_of.get(item_id, every), []).append((item_id, rule, source))
    for scope, sources in groups.items():
        ruleset = RuleSet.compile(sources, watchlist.aliases)
        rows = store.iter_documents(None if scope == every else scope)
        while batch := list(islice(rows, _MATCH_BATCH)):
            docs = ruleset.match_many(doc for _, doc in batch)
            for (row_id, _), matches in zip(batch, docs, strict=True):
                for match in matches:
                    key = (match.item, match.rule)
                    if key in found:
                        found[key].append((row_id, match))


# --- one feed ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Analysis:
    """A feed body parsed and matched: the CPU work, done in this process or a worker."""

    # The entries and their matches, ready for the store: a worker sends plain text back.
    entries: PreparedEntries | None = None
    title: str | None = None
    error: str | None = None  # why the body is not a usable feed
    warning: str | None = None  # ill-formed but readable (ParsedFeed.warning)
    seconds: float = 0.0  # spent parsing and matching (not waiting for a worker)


def _analyse(
    body: bytes,
    url: str,
    content_type: str | None,
    now: datetime,
    feed_id: str,
    feed_title: str | None,
    rules: _Rules,
) -> _Analysis:
    """Parse and match one body; a parse failure is an `_Analysis` with an error, never raised."""
    from catalysts.feedparse import ParseError, parse_feed
    from catalysts.store import prepare_entries

    started = time.perf_counter()
    try:
        parsed = parse_feed(body, url=url, content_type=content_type, now=now)
    except ParseError as exc:
        analysis = _Analysis(error=_reason(str(exc)))
    except RecursionError:
        analysis = _Analysis(error="not a usable feed: nesting too deep")
    except Exception as exc:  # a parser bug must not cost the other feeds their run
        reason = f"could not parse the feed ({type(exc).__name__}: {exc})"
        analysis = _Analysis(error=_reason(reason))
    else:
        entries = _unique(parsed.entries)
        matches = _match(entries, feed_id, parsed.title or feed_title, rules)
        analysis = _Analysis(
            entries=prepare_entries(entries, matches), title=parsed.title, warning=parsed.warning
        )
    return replace(analysis, seconds=time.perf_counter() - started)


def _record(
    feed: FeedSpec,
    response: Response,
    analysis: _Analysis | None,
    store: Store,
    hashes: Mapping[RuleKey, str],
    *,
    now: datetime,
    failures: int,
) -> FetchReport:
    """Store one feed's outcome (one transaction) and say what happened."""
    # The feed's own time: its download or read, and its parse and match; not its wait for
    # a worker, which says more about the other feeds.
    seconds = response.seconds + (analysis.seconds if analysis else 0.0)
    if response.result == "not-modified":
        store.record_fetch(feed, at=now, result="not-modified")
        return FetchReport(feed.id, "not-modified", seconds=seconds)
    error, retry_after = None, None
    if not response.ok or response.body is None:
        error, retry_after = _reason(response.error or "no body"), response.retry_after
    elif analysis is None or analysis.error:
        error = analysis.error if analysis else "not analysed (internal error)"
    if error is not None:
        retry = next_retry(now, failures + 1, retry_after)
        store.record_fetch(feed, at=now, result="error", error=error, next_retry=retry)
        return FetchReport(feed.id, "error", error=error, seconds=seconds)
    assert analysis is not None and analysis.entries is not None
    new = store.record_fetch(
        feed,
        at=now,
        result="new" if analysis.entries.rows else "unchanged",
        entries=analysis.entries,
        rule_hashes=hashes,
        etag=response.etag,
        last_modified=response.last_modified,
        feed_title=analysis.title,
    )
    return FetchReport(
        feed.id,
        "new" if new else "unchanged",
        new_entries=new,
        seconds=seconds,
        warning=_reason(analysis.warning) if analysis.warning else None,
    )


def _match(
    entries: Sequence[Entry], feed_id: str, feed_title: str | None, rules: _Rules
) -> dict[str, list[RuleMatch]]:
    from catalysts.rules import document

    matches: dict[str, list[RuleMatch]] = {}
    docs = rules.ruleset.match_many(document(e, feed_id, feed_title) for e in entries)
    for entry, found_all in zip(entries, docs, strict=True):
        found = [m for m in found_all if _in_scope(rules.feeds_of, m.item, feed_id)]
        if found:
            matches[entry.key] = found
    return matches


def _unique(entries: Iterable[Entry]) -> list[Entry]:
    # A feed that lists one guid twice is one entry; the first occurrence is the feed's
    # current version (feeds list newest first).
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(entry.key, entry)
    return list(seen.values())


# --- the pipeline: http in a thread, parse + match in worker processes, store here -----------

# Below this many feeds a process pool costs more than it saves.
POOL_MIN_FEEDS = 8
POOL_MAX_WORKERS = 8
_DONE = object()
_worker_rules: _Rules | None = None  # set in each pool worker by _init_worker


def _init_worker(rules: _Rules) -> None:
    import os
    import signal
    import warnings

    # Ctrl-C is the parent's to handle; it shuts the pool down without a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The fork may have copied a stdio lock held mid-write by another thread of the parent
    # (Rich's progress refresh): a worker never writes to the inherited streams.
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    warnings.simplefilter("ignore")
    # What parsing imports on first use (feedparser: ~80 ms), before the first feed's clock
    # starts, and while the first downloads are still under way.
    from catalysts.feedparse import warm_up

    warm_up()
    global _worker_rules
    _worker_rules = rules
    # A parent killed outright (SIGKILL) tells its workers nothing: they leave when their
    # pipe reaches end-of-file (workers.Pool).


def _in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args, rules)` in a pool worker, with the rules it inherited at the fork."""
    assert _worker_rules is not None
    return fn(*args, _worker_rules)


def _analyse_response(
    response: Response, now: datetime, title: str | None, rules: _Rules
) -> tuple[Response, _Analysis]:
    """A fetched body analysed: (its response, without the bytes, and the analysis)."""
    assert response.body is not None
    analysis = _analyse(
        response.body, response.url, response.content_type, now, response.feed_id, title, rules
    )
    return replace(response, body=b""), analysis  # the caller needs the outcome, not the bytes


def _read_and_analyse(
    request: Request, max_bytes: int, now: datetime, title: str | None, rules: _Rules
) -> tuple[Response, _Analysis | None]:
    """A local feed read and analysed; no analysis when the file could not be read."""
    from catalysts import http

    response = http.read_file(request, max_bytes)
    if not response.ok or response.body is None:
        return response, None
    return _analyse_response(response, now, title, rules)


@contextlib.contextmanager
def _out_of_the_collectors_sight() -> Iterator[None]:
    """The objects alive now frozen (`gc.freeze`) for the run, as the gc docs advise
    before a fork: the workers inherit them all, and a full collection there -- or here,
    while the workers share these pages -- would walk every one of them and copy each
    page it writes to (35-52 ms in a worker of a 0.4 s run, where one happened). What
    the run itself leaves as garbage is collected as usual; what was garbage before it
    waits for the next full collection. A freeze made before the run is the caller's and
    is kept; one made by another thread during the run is undone with ours."""
    import gc

    if gc.get_freeze_count():  # the application freezes its own: not ours to undo
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _pool(n_feeds: int, rules: _Rules) -> Pool | None:
    """Worker processes for parse + match, or None when they would not pay off.

    They are forked here, before the http thread starts (forking a process that runs
    threads can copy a lock one of them holds), and inherit the compiled `rules` with the
    rest of this process's memory: nothing to pickle, nothing to compile again.
    """
    import os

    from catalysts.workers import Pool

    workers = min(POOL_MAX_WORKERS, os.cpu_count() or 1)
    if workers < 2 or n_feeds < POOL_MIN_FEEDS:
        return None
    import catalysts.feedparse  # noqa: F401 - imported once here, inherited by the workers

    try:
        return Pool(workers, _init_worker, (rules,))
    except (OSError, ValueError, RuntimeError):  # no fork or no resources: parse here
        return None


def _run_pipeline(
    requests: Sequence[Request],
    by_id: Mapping[str, FeedSpec],
    store: Store,
    rules: _Rules,
    prepare_store: Callable[[], Mapping[RuleKey, str]],  # cached: runs once
    *,
    now: datetime,
    failures: Mapping[str, int],
    report: Callable[[FetchReport], None],
    user_agent: str,
    options: HttpOptions | None,
) -> None:
    """Fetch every request and store each feed's result as soon as it is ready.

    `http.fetch_all` runs in a thread; each body goes to a worker process (or is parsed
    here when there is no pool) and its analysis comes back to this thread, which alone
    writes the store. With a pool, local files are read by the workers instead. Every
    message arrives through one queue, so nothing here blocks on one slow feed. A worker
    that dies fails the feed it had; when none is left, the rest are analysed here.
    `prepare_store()` (which syncs stored matches with the rules and returns their hashes)
    runs once the workers and downloads are under way, before the first feed is stored.
    """
    from catalysts import http

    inbox: queue.Queue[Any] = queue.Queue()
    failure: list[BaseException] = []
    pool = _pool(len(requests), rules)
    # With a pool, a worker reads each local file itself: its bytes never cross a pipe, and
    # the http thread is left the network (72 real feeds from files: ~10% less wall time).
    local: list[Request] = []
    remote: list[Request] = []
    for request in requests:
        (local if pool is not None and http.is_local(request.url) else remote).append(request)

    def work() -> None:
        try:
            responses = http.fetch_all(
                remote,
                user_agent=user_agent,
                options=options,
                on_response=lambda r: inbox.put(("response", r)),
            )
            # fetch_all returns them all too: any the callback missed is handled now.
            for response in responses:
                inbox.put(("response", response))
        except BaseException as exc:  # re-raised on the calling thread
            failure.append(exc)
        finally:
            inbox.put((_DONE, None))

    max_bytes = (options or http.HttpOptions()).max_bytes

    def finish(response: Response, analysis: _Analysis | None) -> None:
        feed = by_id[response.feed_id]
        report(
            _record(
                feed,
                response,
                analysis,
                store,
                prepare_store(),  # a feed analysed here may be stored before the loop starts
                now=now,
                failures=failures.get(feed.id, 0),
            )
        )

    # A job is a local file's Request (read and analysed in one go) or a fetched Response:
    # the call that analyses it, but for the rules (a worker has its own).
    def work_for(job: Request | Response) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        title = by_id[job.feed_id].title
        if isinstance(job, http.Request):
            return _read_and_analyse, (job, max_bytes, now, title)
        return _analyse_response, (job, now, title)

    def analyse_here(job: Request | Response) -> tuple[Response, _Analysis | None]:
        fn, args = work_for(job)
        return fn(*args, rules)  # type: ignore[no-any-return]

    def from_worker(
        job: Request | Response, status: Status, value: Any, seconds: float
    ) -> tuple[Response, _Analysis | None]:
        if status == "ok":
            return value  # type: ignore[no-any-return]
        if status == "unrun":  # no worker was left to run it
            return analyse_here(job)
        error = _reason(f"could not parse the feed ({value})")
        if isinstance(job, http.Request):
            failed = http.Response(job.feed_id, job.url, "error", error=error, seconds=seconds)
            return failed, None
        return job, _Analysis(error=error, seconds=seconds)

    pending = 0

    def analyse(job: Request | Response) -> None:
        nonlocal pending
        if pool is not None:

            def done(status: Status, value: Any, seconds: float) -> None:
                inbox.put(("analysed", (job, status, value, seconds)))

            fn, args = work_for(job)
            if pool.submit(_in_worker, (fn, *args), done):
                pending += 1
                return
        finish(*analyse_here(job))

    # The store work below holds the GIL for a few ms per feed, and a thread that wants it
    # back waits up to a switch interval (5 ms by default): the http thread's event loop,
    # stalled that long at each socket event, would stretch the downloads (300 loopback feeds
    # against a busy main thread: 1.9 s instead of 1.2 s; 1.3 s with 1 ms).
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, 0.001))
    thread = threading.Thread(target=work, name="catalysts-http", daemon=True)
    if remote:
        thread.start()
    else:
        inbox.put((_DONE, None))
    seen: set[str] = set()
    http_done = False

    try:
        for request in local:
            if request.feed_id in by_id and request.feed_id not in seen:
                seen.add(request.feed_id)
                analyse(request)
        # Overlapping the work above: re-matching an edited rule over a long history can take
        # a while, and the downloads need not wait for it.
        prepare_store()
        while not http_done or pending:
            kind, payload = inbox.get()
            if kind is _DONE:
                http_done = True
            elif kind == "analysed":
                pending -= 1
                finish(*from_worker(*payload))
            elif payload.feed_id in by_id and payload.feed_id not in seen:
                seen.add(payload.feed_id)
                if payload.ok and payload.body is not None:
                    analyse(payload)
                else:
                    finish(payload, None)
    finally:
        sys.setswitchinterval(switch_interval)
        if pool is not None:
            # Every result is in: the workers need not be seen out.
            pool.close(cancel=not (http_done and not pending), wait=False)
    if remote:
        thread.join()
    if failure:
        raise failure[0]


# --- helpers ------------------------------------------------------------------------------


def rule_sources(watchlist: Watchlist) -> list[tuple[str, RuleName, str]]:
    """Every (item, "signal"|"confirm", source) of the watchlist, in watchlist order."""
    sources: list[tuple[str, RuleName, str]] = []
    for item in watchlist.items:
        sources.append((item.id, "signal", item.signal))
        if item.confirm:
            sources.append((item.id, "confirm", item.confirm))
    return sources


def _compile(watchlist: Watchlist) -> _Rules:
    from catalysts.rules import RuleSet

    ruleset = RuleSet.compile(rule_sources(watchlist), watchlist.aliases)
    return _Rules(ruleset, _feeds_of(watchlist))


def _feeds_of(watchlist: Watchlist) -> dict[str, frozenset[str]]:
    every = frozenset(f.id for f in watchlist.feeds)
    return {item.id: item.feeds or every for item in watchlist.items}


def _in_scope(feeds_of: Mapping[str, frozenset[str]], item: str, feed_id: str) -> bool:
    scope = feeds_of.get(item)
    return scope is None or feed_id in scope


def _backing_off(state: FeedHealth, now: datetime) -> bool:
    return state.next_retry is not None and state.next_retry > now


def _reason(text: str) -> str:
    # One line, bounded: reasons come partly from servers and are shown in tables.
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


def _iso(value: datetime | None) -> str:
    if value is None:
        return "?"
    from catalysts.timeutil import iso

    return iso(value) or "?"
