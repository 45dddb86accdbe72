"""ingest.fetch_feeds end to end: real http + feedparse + rules + store, loopback servers only.

The fault suite runs every kind of broken or hostile feed next to a good one in the same
run: each must end as an error with a human reason on its own feed, the good feed must be
stored, and the SQLite file must stay consistent.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from catalysts import feedparse, ingest
from catalysts.errors import CatalystsError
from catalysts.models import FeedSpec, ItemSpec, Thesis, Watchlist
from faultserver import fault_server, gzip_bomb  # noqa: F401 - the fixture

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=timezone.utc)


# --- builders ---------------------------------------------------------------------------------


def rss(
    items: Sequence[tuple[str, str, str]], *, title: str = "Test feed", date: str = ""
) -> bytes:
    """An RSS 2.0 document of (guid, title, description) items."""
    when = date or "Wed, 19 Aug 2026 10:00:00 GMT"
    body = "".join(
        f"<item><guid>{g}</guid><title>{t}</title><link>https://example.com/{g}</link>"
        f"<description>{d}</description><pubDate>{when}</pubDate></item>"
        for g, t, d in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/</link>{body}</channel></rss>"
    ).encode()


def numbered(n: int, prefix: str = "e", text: str = "Nothing to see") -> bytes:
    return rss([(f"{prefix}{i}", f"{text} {i}", f"Body {i}") for i in range(n)])


def item(
    item_id: str,
    signal: str,
    confirm: str | None = None,
    feeds: frozenset[str] = frozenset(),
) -> ItemSpec:
    return ItemSpec(
        id=item_id,
        thesis="t",
        kind="catalyst",
        title=item_id,
        signal=signal,
        confirm=confirm,
        feeds=feeds,
    )


def watchlist(feeds: Sequence[FeedSpec], items: Sequence[ItemSpec] = ()) -> Watchlist:
    items = items or (item("openai-ipo", "OpenAI AND IPO", '"files for IPO"'),)
    return Watchlist(
        path="watchlist.yaml",
        feeds=tuple(feeds),
        theses=(Thesis(id="t", title="T", items=tuple(items)),),
    )


def file_feed(tmp_path: Path, feed_id: str, data: bytes, **kw: object) -> FeedSpec:
    path = tmp_path / f"{feed_id}.xml"
    path.write_bytes(data)
    return FeedSpec(id=feed_id, url=str(path), **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[object]:
    from catalysts.store import Store

    with Store.open(tmp_path / "catalysts.db") as s:
        yield s


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def by_id(reports: Sequence[object]) -> dict[str, object]:
    return {r.id: r for r in reports}  # type: ignore[attr-defined]


def health(store: object, wl: Watchlist) -> dict[str, object]:
    return {h.id: h for h in store.feed_health(wl.feeds)}  # type: ignore[attr-defined]


# --- pure parts -------------------------------------------------------------------------------


def test_next_retry_grows_exponentially_and_is_capped() -> None:
    delays = [ingest.next_retry(NOW, n) - NOW for n in range(1, 12)]
    assert delays[0] == ingest.BACKOFF_BASE
    assert delays[1] == 2 * ingest.BACKOFF_BASE
    assert delays == sorted(delays)
    assert max(delays) == ingest.BACKOFF_CAP
    assert ingest.next_retry(NOW, 10_000) - NOW == ingest.BACKOFF_CAP


def test_next_retry_honours_a_larger_retry_after_only() -> None:
    assert ingest.next_retry(NOW, 1, retry_after=7200) - NOW == timedelta(hours=2)
    assert ingest.next_retry(NOW, 1, retry_after=1) - NOW == ingest.BACKOFF_BASE
    # A hostile Retry-After of a year does not silence a feed for a year.
    assert ingest.next_retry(NOW, 1, retry_after=3e7) - NOW == ingest.RETRY_AFTER_CAP


def test_select_feeds_by_id_and_tag_in_watchlist_order() -> None:
    feeds = [
        FeedSpec("a", "a.xml", tags=("news",)),
        FeedSpec("b", "b.xml", tags=("filings",)),
        FeedSpec("c", "c.xml", tags=("news",)),
    ]
    wl = watchlist(feeds)
    assert [f.id for f in ingest.select_feeds(wl)] == ["a", "b", "c"]
    assert [f.id for f in ingest.select_feeds(wl, ["news"])] == ["a", "c"]
    assert [f.id for f in ingest.select_feeds(wl, ["c", "b"])] == ["b", "c"]


def test_select_feeds_unknown_lists_valid_ids() -> None:
    wl = watchlist([FeedSpec("alpha", "a.xml"), FeedSpec("beta", "b.xml")])
    with pytest.raises(CatalystsError) as info:
        ingest.select_feeds(wl, ["alpha", "gamma"])
    message = str(info.value)
    assert "'gamma'" in message and "alpha, beta" in message
    assert "\n" not in message
    assert info.value.exit_code == 1


# --- ingest from files ------------------------------------------------------------------------


def test_fetch_stores_entries_and_refetch_never_duplicates(tmp_path: Path, store) -> None:
    feeds = [file_feed(tmp_path, "one", numbered(5)), file_feed(tmp_path, "two", numbered(3))]
    wl = watchlist(feeds)
    first = by_id(ingest.fetch_feeds(wl, store, now=NOW))
    assert (first["one"].result, first["one"].new_entries) == ("new", 5)
    assert (first["two"].result, first["two"].new_entries) == ("new", 3)
    assert store.entry_count() == 8

    second = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1))
    assert {r.result for r in second} <= {"unchanged", "not-modified"}
    assert sum(r.new_entries for r in second) == 0
    assert store.entry_count() == 8


def test_only_new_entries_are_counted_as_new(tmp_path: Path, store) -> None:
    feed = file_feed(tmp_path, "one", numbered(4))
    wl = watchlist([feed])
    ingest.fetch_feeds(wl, store, now=NOW)
    Path(feed.url).write_bytes(numbered(6))
    (report,) = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1))
    assert (report.result, report.new_entries) == ("new", 2)
    assert store.entry_count() == 6


def test_a_guid_repeated_within_a_feed_is_stable_across_fetches(tmp_path: Path, store) -> None:
    data = rss([("same", "First", "a"), ("same", "Second", "b"), ("other", "Third", "c")])
    wl = watchlist([file_feed(tmp_path, "dup", data)])
    (first,) = ingest.fetch_feeds(wl, store, now=NOW)
    stored = store.entry_count()
    assert first.new_entries == stored >= 2
    (again,) = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1))
    assert again.new_entries == 0
    assert store.entry_count() == stored


def test_matches_are_recorded_at_ingest_and_scoped_to_item_feeds(tmp_path: Path, store) -> None:
    text = [("m1", "OpenAI plans IPO", "big news"), ("m2", "Weather", "rain")]
    feeds = [file_feed(tmp_path, "news", rss(text)), file_feed(tmp_path, "other", rss(text))]
    items = [
        item("everywhere", "OpenAI AND IPO"),
        item("news-only", "OpenAI", feeds=frozenset({"news"})),
    ]
    wl = watchlist(feeds, items)
    ingest.fetch_feeds(wl, store, now=NOW)
    evidence = store.evidence(until=NOW + timedelta(days=1))
    got = sorted((e.item, e.feed, e.title) for e in evidence)
    assert got == [
        ("everywhere", "news", "OpenAI plans IPO"),
        ("everywhere", "other", "OpenAI plans IPO"),
        ("news-only", "news", "OpenAI plans IPO"),
    ]


def test_sync_matches_rematches_only_the_edited_rule(tmp_path: Path, store) -> None:
    text = [("a", "OpenAI files for IPO", "x"), ("b", "Anthropic raises", "y")]
    feeds = [file_feed(tmp_path, "news", rss(text))]
    before = [item("ai", "OpenAI"), item("other", "Anthropic")]
    ingest.fetch_feeds(watchlist(feeds, before), store, now=NOW)
    assert ingest.sync_matches(watchlist(feeds, before), store) == []

    after = [item("ai", "Anthropic"), item("other", "Anthropic")]
    assert ingest.sync_matches(watchlist(feeds, after), store) == [("ai", "signal")]
    until = NOW + timedelta(days=1)
    assert [e.title for e in store.evidence(["ai"], until=until)] == ["Anthropic raises"]
    assert [e.title for e in store.evidence(["other"], until=until)] == ["Anthropic raises"]
    assert ingest.sync_matches(watchlist(feeds, after), store) == []


def test_an_empty_store_records_rule_hashes_without_matching(store) -> None:
    wl = watchlist([], [item("ai", "OpenAI"), item("other", "Anthropic")])
    assert ingest.sync_matches(wl, store) == [("ai", "signal"), ("other", "signal")]
    assert store.stale_rules(ingest.rule_hashes(wl)) == []


def test_hashes_of_the_compiled_rules_are_those_of_the_rule_texts() -> None:
    # fetch hashes the rules it compiled instead of parsing them again: the same hashes.
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(Path(__file__).resolve().parents[1] / "watchlist.yaml")
    compiled = ingest.rule_hashes(wl, ingest._compile(wl).ruleset)
    assert compiled == ingest.rule_hashes(wl)
    assert len(compiled) == len(ingest.rule_sources(wl)) > 30


def test_sync_matches_follows_a_change_of_an_items_sources(tmp_path: Path, store) -> None:
    text = [("a", "OpenAI news", "x")]
    feeds = [file_feed(tmp_path, "news", rss(text)), file_feed(tmp_path, "blog", rss(text))]
    wide = [item("ai", "OpenAI"), item("keep", "OpenAI")]
    ingest.fetch_feeds(watchlist(feeds, wide), store, now=NOW)
    until = NOW + timedelta(days=1)
    assert sorted(e.feed for e in store.evidence(["ai"], until=until)) == ["blog", "news"]

    narrow = [
        ItemSpec(
            "ai", "t", "catalyst", "ai", "OpenAI", sources=("news",), feeds=frozenset({"news"})
        ),
        item("keep", "OpenAI"),
    ]
    assert ingest.sync_matches(watchlist(feeds, narrow), store) == [("ai", "signal")]
    assert [e.feed for e in store.evidence(["ai"], until=until)] == ["news"]
    assert sorted(e.feed for e in store.evidence(["keep"], until=until)) == ["blog", "news"]


def test_a_parse_error_loses_nothing_already_stored(tmp_path: Path, store) -> None:
    feed = file_feed(tmp_path, "one", numbered(3))
    wl = watchlist([feed])
    ingest.fetch_feeds(wl, store, now=NOW)
    Path(feed.url).write_bytes(b"<html><body>Gateway error</body></html>")
    (report,) = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1))
    assert report.result == "error" and report.error
    assert store.entry_count() == 3
    state = health(store, wl)["one"]
    assert state.status == "error" and state.consecutive_failures == 1
    assert state.entries == 3


def test_backoff_skips_a_failing_feed_until_next_retry(tmp_path: Path, store) -> None:
    feed = FeedSpec("gone", str(tmp_path / "missing.xml"))
    good = file_feed(tmp_path, "good", numbered(1))
    wl = watchlist([feed, good])
    first = by_id(ingest.fetch_feeds(wl, store, now=NOW))
    assert first["gone"].result == "error"
    retry = health(store, wl)["gone"].next_retry
    assert retry is not None and retry > NOW

    soon = by_id(ingest.fetch_feeds(wl, store, now=NOW + timedelta(minutes=1)))
    assert soon["gone"].result == "error"
    assert soon["gone"].error.startswith("backing off until")
    assert "after 1 failure" in soon["gone"].error
    # Skipped, not attempted: the failure count did not grow.
    assert health(store, wl)["gone"].consecutive_failures == 1

    forced = ingest.fetch_feeds(wl, store, now=NOW + timedelta(minutes=2), force=True)
    assert not by_id(forced)["gone"].error.startswith("backing off")
    assert health(store, wl)["gone"].consecutive_failures == 2
    named = ingest.fetch_feeds(wl, store, now=NOW + timedelta(minutes=3), only=["gone"])
    assert not named[0].error.startswith("backing off")

    later = health(store, wl)["gone"].next_retry
    assert later - (NOW + timedelta(minutes=3)) > retry - NOW  # the wait grew
    Path(feed.url).write_bytes(numbered(2))
    (back,) = ingest.fetch_feeds(wl, store, now=later + timedelta(seconds=1), only=["gone"])
    assert (back.result, back.new_entries) == ("new", 2)
    assert health(store, wl)["gone"].consecutive_failures == 0


def test_on_report_is_called_once_per_feed(tmp_path: Path, store) -> None:
    feeds = [file_feed(tmp_path, f"f{i}", numbered(2, prefix=f"f{i}-")) for i in range(5)]
    seen: list[str] = []
    reports = ingest.fetch_feeds(
        watchlist(feeds), store, now=NOW, on_report=lambda r: seen.append(r.id)
    )
    assert sorted(seen) == sorted(f.id for f in feeds)
    assert [r.id for r in reports] == [f.id for f in feeds]


# --- the fault suite: loopback server, real http + parse + store ---------------------------

FAST = dict(
    read_timeout=1.0,
    connect_timeout=2.0,
    total_timeout=5.0,
    retries=1,
    backoff=0.05,
    backoff_max=0.1,
    retry_after_max=0.2,
    max_bytes=2 * 1024 * 1024,
    host_gap=0.0,
)
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title>
<item><guid>b</guid><title>&lol9;</title></item></channel></rss>"""

# path on the fault server -> a word the human reason must contain
FAULTS = {
    "/slow": "timed out",
    "/status/404": "404",
    "/status/410": "410",
    "/retry-after/429/7200": "429",
    "/status/500": "500",
    "/retry-after/503/3600": "503",
    "/redirect-loop": "redirect",
    "/redirect/ftp": "non-http",
    "/redirect/file": "non-http",
    "/html": "HTML",
    "/empty": "empty",
    "/truncated": "complete",
    "/huge": "larger than",
    "/gzip-bomb": "larger than",
    "/invalid-gzip": "gzip",
    "/entity-bomb": "entit",
    "/xxe": "entit",
}


@pytest.fixture
def served(fault_server):  # noqa: F811 - the imported fixture
    """The fault server with the two XML attacks added; returns it."""
    rss_type = {"Content-Type": "application/rss+xml"}
    fault_server.route("/entity-bomb", body=BILLION_LAUGHS, headers=rss_type)
    return fault_server


def fault_run(server, store, tmp_path: Path, path: str, now: datetime = NOW):
    from catalysts.http import HttpOptions

    feeds = [
        FeedSpec("bad", server.url(path)),
        FeedSpec("good", server.url("/feed")),
        file_feed(tmp_path, "local", numbered(3)),
    ]
    wl = watchlist(feeds)
    reports = by_id(ingest.fetch_feeds(wl, store, now=now, http_options=HttpOptions(**FAST)))
    return wl, reports


@pytest.mark.parametrize("path", sorted(FAULTS))
def test_a_faulty_feed_is_an_error_on_that_feed_only(
    served, store, tmp_path: Path, path: str
) -> None:
    if path == "/xxe":
        secret = tmp_path / "secret.txt"
        secret.write_text("TOPSECRET-7f3a9c")
        body = (
            '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM '
            f'"file://{secret}">]><rss version="2.0"><channel><title>x</title>'
            "<item><guid>x</guid><title>&xxe;</title></item></channel></rss>"
        ).encode()
        served.route("/xxe", body=body, headers={"Content-Type": "application/rss+xml"})
    if path == "/gzip-bomb":
        gzip_bomb()  # built once and cached: not inside the request's read timeout
    wl, reports = fault_run(served, store, tmp_path, path)

    bad = reports["bad"]
    assert bad.result == "error", bad
    assert bad.error and "\n" not in bad.error
    assert FAULTS[path].lower() in bad.error.lower()
    assert not bad.error.startswith(("could not parse the feed (", "unexpected error"))
    assert (reports["good"].result, reports["good"].new_entries) == ("new", 1)
    assert (reports["local"].result, reports["local"].new_entries) == ("new", 3)

    state = health(store, wl)
    assert state["bad"].status == "error" and state["bad"].last_error == bad.error
    assert state["bad"].entries == 0 and state["bad"].next_retry > NOW
    assert state["good"].status == "ok" and state["good"].entries == 1
    assert integrity(store.path) == "ok"
    if path == "/xxe":
        assert b"TOPSECRET" not in store.path.read_bytes()


def test_retry_after_longer_than_backoff_sets_next_retry(served, store, tmp_path: Path) -> None:
    wl, reports = fault_run(served, store, tmp_path, "/retry-after/429/7200")
    assert "429" in reports["bad"].error
    retry = health(store, wl)["bad"].next_retry
    assert retry >= NOW + timedelta(hours=2) - timedelta(seconds=5)


def test_invalid_utf8_is_stored_readably_or_reported(served, store, tmp_path: Path) -> None:
    _, reports = fault_run(served, store, tmp_path, "/invalid-utf8")
    bad = reports["bad"]
    if bad.result == "error":
        assert bad.error
    else:
        titles = [e.title for e in store.evidence(until=NOW)] or []
        assert bad.new_entries == 1 and all("\udcff" not in t for t in titles)
    assert reports["good"].result == "new"
    assert integrity(store.path) == "ok"


def test_nonsense_dates_store_the_entry_undated(served, store, tmp_path: Path) -> None:
    body = rss([("d1", "OpenAI IPO odd date", "x")], date="Thu, 99 Foo 99999 25:61:00 XYZ").replace(
        b"</channel>",
        b"<item><guid>d2</guid><title>OpenAI IPO zero</title>"
        b"<pubDate>0000-00-00T00:00:00Z</pubDate></item></channel>",
    )
    served.route("/dates", body=body, headers={"Content-Type": "application/rss+xml"})
    _, reports = fault_run(served, store, tmp_path, "/dates")
    assert (reports["bad"].result, reports["bad"].new_entries) == ("new", 2)
    evidence = store.evidence(["openai-ipo"], until=NOW + timedelta(days=1))
    assert sorted(e.title for e in evidence) == ["OpenAI IPO odd date", "OpenAI IPO zero"]
    assert not any(e.dated for e in evidence)
    assert all(e.time == NOW for e in evidence)  # first seen stands in for the date


def test_conditional_get_is_used_on_the_second_run(served, store) -> None:
    from catalysts.http import HttpOptions

    wl = watchlist([FeedSpec("etag", served.url("/etag"))])
    options = HttpOptions(**FAST)
    (first,) = ingest.fetch_feeds(wl, store, now=NOW, http_options=options)
    assert (first.result, first.new_entries) == ("new", 1)
    state = health(store, wl)["etag"]
    assert state.etag and state.last_modified

    (second,) = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1), http_options=options)
    assert second.result == "not-modified"
    request = served.requests("/etag")[-1]
    assert request.headers["If-None-Match"] == state.etag
    assert request.headers["If-Modified-Since"] == state.last_modified
    assert store.entry_count() == 1
    assert health(store, wl)["etag"].etag == state.etag  # a 304 keeps the validators


def test_the_user_agent_comes_from_settings_and_env(
    served, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from catalysts.http import HttpOptions
    from catalysts.models import Settings

    wl = replace(
        watchlist([FeedSpec("f", served.url("/feed"))]),
        settings=Settings(user_agent="research-bot/1 (me@example.com)"),
    )
    monkeypatch.delenv("CATALYSTS_USER_AGENT", raising=False)
    ingest.fetch_feeds(wl, store, now=NOW, http_options=HttpOptions(**FAST))
    monkeypatch.setenv("CATALYSTS_USER_AGENT", "env-agent/2")
    ingest.fetch_feeds(wl, store, now=NOW, http_options=HttpOptions(**FAST), force=True)
    agents = [r.headers["User-Agent"] for r in served.requests("/feed")]
    assert agents == ["research-bot/1 (me@example.com)", "env-agent/2"]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # the command name in parentheses may hold spaces: the fields after it are fixed
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    # A zombie (state Z) is dead, only not yet reaped by its new parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_fetch_killed_mid_run_leaves_a_consistent_store(served, tmp_path: Path) -> None:
    feed_dir = tmp_path / "feeds"
    feed_dir.mkdir()
    n = 24
    for i in range(n):
        (feed_dir / f"f{i}.xml").write_bytes(numbered(20, prefix=f"f{i}-"))
    base = served.serve_files(feed_dir, latency=0.4)
    lines = ["version: 1", "feeds:"]
    for i in range(n):
        lines += [f"  - id: f{i}", f"    url: {base}f{i}.xml"]
    lines += [
        "theses:",
        "  - id: t",
        "    title: T",
        "    items:",
        "      - id: i",
        "        kind: risk",
        "        title: I",
        "        signal: 'Nothing'",
    ]
    wl_path = tmp_path / "watchlist.yaml"
    wl_path.write_text("\n".join(lines) + "\n")
    db = tmp_path / "c.db"
    cmd = [sys.executable, "-m", "catalysts", "fetch", "-w", str(wl_path), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                with contextlib.suppress(sqlite3.Error), sqlite3.connect(db, timeout=1) as c:
                    stored = c.execute("SELECT count(*) FROM entries").fetchone()[0]
            if stored:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert stored > 0
        workers = _children(proc.pid)
        assert workers  # the parse pool is running
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # The pool's workers are never told; they must notice they are orphans and leave.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    assert integrity(db) == "ok"
    from catalysts.store import Store
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(wl_path)
    with Store.open(db) as store:
        killed_at = store.entry_count()
        assert 0 < killed_at < n * 20  # killed mid-run: some feeds stored, not all
        assert killed_at % 20 == 0  # each feed stored whole or not at all
        reports = ingest.fetch_feeds(wl, store, now=NOW + timedelta(days=1), force=True)
        assert all(r.result in ("new", "unchanged", "not-modified") for r in reports)
        assert store.entry_count() == n * 20
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sum(f["new_entries"] for f in json.loads(done.stdout)["feeds"]) == 0
    assert integrity(db) == "ok"


# --- the real corpus ----------------------------------------------------------------------


def real_feed_files(real_dir: Path) -> list[Path]:
    skip = {"feedparser-illformed", "robustness-other"}
    return sorted(
        p
        for p in real_dir.rglob("*")
        if p.is_file()
        and p.suffix != ".md"
        and not skip.intersection(p.relative_to(real_dir).parts)
    )


def reference_count(path: Path) -> int:
    """How many entries the reference parser finds: feedparser, or json for JSON Feed."""
    data = path.read_bytes()
    if path.suffix == ".json":
        return len(json.loads(data).get("items", []))
    import feedparser

    return len(feedparser.parse(data).entries)


def test_every_real_feed_ingests_with_no_entry_lost(real_dir: Path, store) -> None:
    files = real_feed_files(real_dir)
    assert len(files) > 50
    feeds = [FeedSpec(f"r{i}", str(p)) for i, p in enumerate(files)]
    wl = watchlist(feeds)
    reports = by_id(ingest.fetch_feeds(wl, store, now=NOW))
    state = health(store, wl)
    lost = {}
    for feed, path in zip(feeds, files, strict=True):
        report = reports[feed.id]
        # The parser keeps a guid repeated within a feed as separate entries (stable
        # suffixed keys), so nothing is "minus duplicates": counts must be equal.
        expected = reference_count(path)
        if report.result != "new" or state[feed.id].entries != expected:
            lost[str(path.relative_to(real_dir))] = (
                report.result,
                report.error,
                state[feed.id].entries,
                expected,
            )
    assert lost == {}
    assert store.entry_count() == sum(reference_count(p) for p in files)
    again = ingest.fetch_feeds(wl, store, now=NOW + timedelta(hours=1))
    assert sum(r.new_entries for r in again) == 0
    assert integrity(store.path) == "ok"


def test_real_feeds_served_over_http_ingest_like_files(real_dir: Path, served, store) -> None:
    from catalysts.http import HttpOptions

    files = real_feed_files(real_dir)[::5]
    base = served.serve_files(real_dir, latency=0.0)
    feeds = [FeedSpec(f"h{i}", base + str(p.relative_to(real_dir))) for i, p in enumerate(files)]
    wl = watchlist(feeds)
    reports = ingest.fetch_feeds(wl, store, now=NOW, http_options=HttpOptions(**FAST))
    got = [r.new_entries for r in reports]
    assert got == [reference_count(p) for p in files], [r.error for r in reports]


def test_ill_formed_and_odd_documents_ingest_or_are_reported(real_dir: Path, store) -> None:
    files = sorted(
        p
        for folder in ("feedparser-illformed", "robustness-other")
        for p in (real_dir / folder).rglob("*")
        if p.is_file() and p.suffix not in (".md", ".tsv")
    )
    assert len(files) > 200
    feeds = [FeedSpec(f"x{i}", str(p)) for i, p in enumerate(files)]
    reports = ingest.fetch_feeds(watchlist(feeds), store, now=NOW)
    assert len(reports) == len(files)
    crashed = {
        str(files[i].relative_to(real_dir)): r.error
        for i, r in enumerate(reports)
        if r.result == "error"
        and (not r.error or r.error.startswith(("could not parse the feed (", "unexpected")))
    }
    assert crashed == {}
    assert any(r.result == "new" for r in reports)
    assert integrity(store.path) == "ok"


# --- parse + match in worker processes ------------------------------------------------------


PARENT = os.getpid()
ORIGINAL_ANALYSE = ingest._analyse


def _crash_on_boom(body, url, content_type, now, feed_id, title, rules):  # type: ignore[no-untyped-def]
    if feed_id.startswith("boom") and os.getpid() != PARENT:
        faulthandler.disable()  # pytest's would print this worker's stack
        os.kill(os.getpid(), signal.SIGSEGV)  # a parser crash takes its worker down with it
    return ORIGINAL_ANALYSE(body, url, content_type, now, feed_id, title, rules)


def many_feeds(tmp_path: Path, n: int = 12) -> list[FeedSpec]:
    texts = [("a", "OpenAI plans IPO", "x"), ("b", "OpenAI files for IPO", "y"), ("c", "Rain", "")]
    return [
        file_feed(tmp_path, f"f{i}", rss([(f"{g}{i}", t, d) for g, t, d in texts]))
        for i in range(n)
    ]


def stored(store) -> list[tuple[object, ...]]:
    until = NOW + timedelta(days=1)
    return sorted((e.item, e.rule, e.feed, e.title, e.terms) for e in store.evidence(until=until))


def test_worker_processes_store_what_inline_parsing_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts.store import Store

    wl = watchlist(many_feeds(tmp_path))
    results = []
    for min_feeds in (1, 10_000):  # with a pool (if the machine has 2+ CPUs), then inline
        monkeypatch.setattr(ingest, "POOL_MIN_FEEDS", min_feeds)
        with Store.open(tmp_path / f"c{min_feeds}.db") as s:
            reports = ingest.fetch_feeds(wl, s, now=NOW)
            results.append(([(r.id, r.result, r.new_entries) for r in reports], stored(s)))
    assert results[0] == results[1]
    assert len(results[0][1]) == 12 * 3  # two signal matches and one confirm per feed


def _local_faults(tmp_path: Path) -> list[FeedSpec]:
    (tmp_path / "empty.xml").write_bytes(b"")
    (tmp_path / "big.xml").write_bytes(numbered(40))
    (tmp_path / "folder").mkdir()
    return [
        FeedSpec("missing", str(tmp_path / "nowhere.xml")),
        FeedSpec("empty", (tmp_path / "empty.xml").as_uri()),
        FeedSpec("big", str(tmp_path / "big.xml")),
        FeedSpec("folder", str(tmp_path / "folder")),
        file_feed(tmp_path, "html", b"<html><body>Not a feed</body></html>"),
        FeedSpec("v6", "file://[::1/feed.xml"),  # urlsplit refuses it
    ]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the process pool needs 2+ CPUs")
def test_with_a_pool_workers_read_local_files_and_the_http_thread_gets_the_rest(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts import http
    from catalysts.store import Store

    asked: list[str] = []
    real_fetch_all = http.fetch_all

    def fetch_all(requests, **kw):  # type: ignore[no-untyped-def]
        asked.extend(r.url for r in requests)
        return real_fetch_all(requests, **kw)

    monkeypatch.setattr(http, "fetch_all", fetch_all)
    local = many_feeds(tmp_path)
    wl = watchlist([*local, FeedSpec("web", served.url("/feed"))])
    results = []
    for min_feeds in (1, 10_000):  # with a pool, then inline
        monkeypatch.setattr(ingest, "POOL_MIN_FEEDS", min_feeds)
        asked.clear()
        with Store.open(tmp_path / f"mixed{min_feeds}.db") as s:
            reports = ingest.fetch_feeds(wl, s, now=NOW, http_options=http.HttpOptions(**FAST))
            results.append(([(r.id, r.result, r.new_entries) for r in reports], stored(s)))
        if min_feeds == 1:
            assert asked == [served.url("/feed")]
        else:
            assert len(asked) == len(wl.feeds)
    assert results[0] == results[1]
    assert results[0][0][-1] == ("web", "new", 1)


def test_local_files_that_cannot_be_read_give_the_same_reasons_with_or_without_a_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts.http import HttpOptions
    from catalysts.store import Store

    feeds = [*many_feeds(tmp_path, 4), *_local_faults(tmp_path)]
    options = HttpOptions(max_bytes=len(numbered(40)) - 1)
    results = []
    for min_feeds in (1, 10_000):  # with a pool (if the machine has 2+ CPUs), then inline
        monkeypatch.setattr(ingest, "POOL_MIN_FEEDS", min_feeds)
        with Store.open(tmp_path / f"faults{min_feeds}.db") as s:
            reports = ingest.fetch_feeds(watchlist(feeds), s, now=NOW, http_options=options)
            results.append({r.id: (r.result, r.error) for r in reports})
            assert integrity(s.path) == "ok"
    assert results[0] == results[1]
    errors = {feed: error for feed, (result, error) in results[0].items() if result == "error"}
    assert errors.keys() == {"missing", "empty", "big", "folder", "html", "v6"}
    assert errors["missing"].startswith("file not found:")
    assert errors["empty"] == "empty file"
    assert errors["big"].startswith("file larger than")
    assert errors["folder"].startswith("is a directory:")
    assert "HTML page" in errors["html"]
    assert errors["v6"] == "unexpected error: ValueError: Invalid IPv6 URL"


needs_pool = pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="worker processes are used with 2+ CPUs only"
)


def _frozen_count_as_title(body, url, content_type, now, feed_id, title, rules):  # type: ignore[no-untyped-def]
    import gc
    from dataclasses import replace

    analysis = ORIGINAL_ANALYSE(body, url, content_type, now, feed_id, title, rules)
    where = "parent" if os.getpid() == PARENT else "worker"
    return replace(analysis, title=f"{where} {gc.get_freeze_count()}")


@needs_pool
def test_workers_inherit_a_frozen_heap_and_the_run_thaws_only_its_own_freeze(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from catalysts.store import Store

    monkeypatch.setattr(ingest, "_analyse", _frozen_count_as_title)
    wl = watchlist(many_feeds(tmp_path))
    assert gc.get_freeze_count() == 0
    try:
        for run in ("ours", "the caller's"):
            with Store.open(tmp_path / f"{run}.db") as s:
                ingest.fetch_feeds(wl, s, now=NOW)
            with contextlib.closing(sqlite3.connect(tmp_path / f"{run}.db")) as db:
                titles = {title for (title,) in db.execute("SELECT title FROM feeds")}
            assert len(titles) >= 1
            # What the parent had when it forked, out of the workers' collections.
            assert all(t.startswith("worker ") and int(t.split()[1]) > 1000 for t in titles)
            if run == "ours":
                assert gc.get_freeze_count() == 0  # the parent collects as before the run
                gc.freeze()  # next: a caller that freezes its own heap keeps it frozen
        assert gc.get_freeze_count() > 1000  # (less what refcounting freed meanwhile)
    finally:
        gc.unfreeze()  # the rest of the session collects as usual, whatever happened


@needs_pool
def test_a_crashing_worker_fails_its_feed_only(
    served, tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts.http import HttpOptions

    monkeypatch.setattr(ingest, "_analyse", _crash_on_boom)
    # The crash comes first; the network feeds reach the workers after it.
    feeds = [
        file_feed(tmp_path, "boom", numbered(2)),
        *many_feeds(tmp_path),
        *(FeedSpec(f"web{i}", served.url("/feed")) for i in range(4)),
    ]
    options = HttpOptions(**FAST)
    reports = by_id(ingest.fetch_feeds(watchlist(feeds), store, now=NOW, http_options=options))
    assert len(reports) == len(feeds)
    assert reports["boom"].result == "error"
    assert reports["boom"].error == "could not parse the feed (the worker process died: SIGSEGV)"
    assert {r.id: r.result for r in reports.values() if r.id != "boom"} == {
        f.id: "new" for f in feeds[1:]
    }
    assert integrity(store.path) == "ok"
    # The next run, with a healthy parser, stores everything.
    monkeypatch.setattr(ingest, "_analyse", ORIGINAL_ANALYSE)
    again = ingest.fetch_feeds(
        watchlist(feeds), store, now=NOW + timedelta(days=1), force=True, http_options=options
    )
    assert [r.result for r in again] == ["new"] + ["unchanged"] * (len(feeds) - 1)


@needs_pool
def test_when_every_worker_has_died_the_rest_is_analysed_in_the_main_process(
    served, tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts.http import HttpOptions

    monkeypatch.setattr(ingest, "_analyse", _crash_on_boom)
    monkeypatch.setattr(ingest, "POOL_MAX_WORKERS", 2)
    booms = [file_feed(tmp_path, f"boom{i}", numbered(2)) for i in range(2)]
    rest = [*many_feeds(tmp_path), FeedSpec("web", served.url("/feed"))]
    options = HttpOptions(**FAST)
    reports = ingest.fetch_feeds(watchlist([*booms, *rest]), store, now=NOW, http_options=options)
    assert [(r.id, r.result) for r in reports] == [
        *((f.id, "error") for f in booms),
        *((f.id, "new") for f in rest),
    ]
    assert store.entry_count() == 12 * 3 + 1
    with_pool = stored(store)
    monkeypatch.setattr(ingest, "POOL_MIN_FEEDS", 10_000)  # the same feeds, all inline
    from catalysts.store import Store

    with Store.open(tmp_path / "inline.db") as inline:
        ingest.fetch_feeds(watchlist(rest), inline, now=NOW, http_options=options)
        assert stored(inline) == with_pool


@needs_pool
def test_workers_lost_before_the_first_feed_leave_the_whole_run_to_the_main_process(
    tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed from outside (the OOM killer) right after the fork: every feed is analysed
    # here, and stored only after the stored matches are in step with the rules.
    real_pool = ingest._pool

    def pool_then_kill(n_feeds, rules):  # type: ignore[no-untyped-def]
        pool = real_pool(n_feeds, rules)
        for worker in pool._workers:
            os.kill(worker.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool._workers and time.monotonic() < deadline:  # until the collector buries them
            time.sleep(0.01)
        return pool

    monkeypatch.setattr(ingest, "_pool", pool_then_kill)
    feeds = many_feeds(tmp_path)
    reports = ingest.fetch_feeds(watchlist(feeds), store, now=NOW)
    assert [r.result for r in reports] == ["new"] * len(feeds)
    assert len(stored(store)) == 12 * 3
    assert store.stale_rules(ingest.rule_hashes(watchlist(feeds))) == []


def _slow_parse(*args, **kwargs):  # type: ignore[no-untyped-def]
    time.sleep(0.2)
    return ORIGINAL_PARSE(*args, **kwargs)


ORIGINAL_PARSE = feedparse.parse_feed


@needs_pool
def test_a_feeds_time_is_its_own_work_not_its_wait_for_a_worker(
    tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedparse, "parse_feed", _slow_parse)
    monkeypatch.setattr(ingest, "POOL_MAX_WORKERS", 2)
    # 12 feeds of 0.2 s each on two workers: the last ones wait a second for a worker.
    reports = ingest.fetch_feeds(watchlist(many_feeds(tmp_path)), store, now=NOW)
    assert [r.result for r in reports] == ["new"] * 12
    seconds = sorted(r.seconds for r in reports)
    assert seconds[0] >= 0.2  # the parse is counted...
    assert seconds[-1] < 0.6  # ...the queue is not


def _slow_then_crash(body, url, content_type, now, feed_id, title, rules):  # type: ignore[no-untyped-def]
    if feed_id == "boom":
        time.sleep(0.3)
    return _crash_on_boom(body, url, content_type, now, feed_id, title, rules)


@needs_pool
def test_a_feed_whose_worker_dies_reports_the_time_it_took(
    tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "_analyse", _slow_then_crash)
    feeds = [file_feed(tmp_path, "boom", numbered(2)), *many_feeds(tmp_path)]
    reports = by_id(ingest.fetch_feeds(watchlist(feeds), store, now=NOW))
    assert reports["boom"].result == "error"
    assert reports["boom"].seconds >= 0.3


def test_analysis_survives_the_trip_back_from_a_worker() -> None:
    import pickle

    from catalysts.models import Entry, Hit, RuleMatch
    from catalysts.store import prepare_entries

    entry = Entry(
        key="guid:1",
        title="OpenAI files for IPO",
        summary="S-1 filed",
        link="https://e.com/a",
        author="A",
        categories=("ai", "ipo"),
        published=datetime(2026, 8, 1, 9, 30, 15, 123456, tzinfo=timezone.utc),
    )
    bare = Entry(key="hash:2", title="t")
    match = RuleMatch(
        "openai-ipo", "signal", (Hit("OpenAI", "title", 0, 6), Hit("IPO", "title", 17, 20))
    )
    prepared = prepare_entries([entry, bare], {"guid:1": [match]})
    assert prepared.rows[0][6] == "2026-08-01T09:30:15.123456+00:00"
    assert prepared.matches == {
        "guid:1": [("openai-ipo", "signal", '[["OpenAI","title",0,6],["IPO","title",17,20]]')]
    }
    for analysis in (
        ingest._Analysis(entries=prepared, title="Feed"),
        ingest._Analysis(entries=prepare_entries([bare], {})),
        ingest._Analysis(entries=prepare_entries([bare])),
        ingest._Analysis(error="not a feed: looks like an HTML page"),
    ):
        back = pickle.loads(pickle.dumps(analysis))
        assert back == analysis
