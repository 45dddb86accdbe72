"""The SQLite store: entries, feed state, matches and rule freshness, evidence, history.

Stores live in tmp_path; entries and matches are built here, no network, no parser.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalysts.errors import ExitCode, StoreError
from catalysts.models import Entry, FeedSpec, Hit, RuleMatch, StatusChange
from catalysts.store import SCHEMA_VERSION, Store, _ts, default_db_path

UTC = timezone.utc
T0 = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)

COINDESK = FeedSpec("coindesk", "https://example.org/coindesk.xml", tags=("crypto",))
SEC = FeedSpec("sec", "https://example.org/sec.xml")


# --- builders ----------------------------------------------------------------------------------


def entry(n: int, *, published: datetime | None = None, **fields: object) -> Entry:
    values: dict[str, object] = {
        "key": f"guid-{n}",
        "title": f"Headline {n} OpenAI",
        "summary": f"Summary {n}",
        "link": f"https://example.org/story/{n}",
        "author": "Reporter",
        "categories": ("AI", "crypto"),
        "published": published,
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def match(item: str, rule: str = "signal", term: str = "OpenAI", start: int = 0) -> RuleMatch:
    return RuleMatch(item, rule, (Hit(term, "title", start, start + len(term)),))  # type: ignore[arg-type]


H1 = {("openai-ipo", "signal"): "h1", ("openai-ipo", "confirm"): "c1", ("vcs", "signal"): "v1"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "data" / "catalysts.db")
    yield s
    s.close()


def fetch(store: Store, feed: FeedSpec, entries: list[Entry], *, at: datetime = T0, **kw) -> int:
    kw.setdefault("result", "new")
    return store.record_fetch(feed, at=at, entries=entries, **kw)


# --- opening ---------------------------------------------------------------------------------


def test_open_creates_folders_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    with Store.open(path) as store:
        assert store.path == path
        assert store.schema_version == SCHEMA_VERSION
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert path.is_file()
    with Store.open(path) as again:  # reopening an up-to-date store changes nothing
        assert again.schema_version == SCHEMA_VERSION
        assert again.integrity_check() == ["ok"]


def test_default_path_is_in_the_user_data_dir(tmp_path: Path, monkeypatch) -> None:
    if sys.platform != "linux":
        pytest.skip("XDG_DATA_HOME is how platformdirs is redirected on Linux only")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "catalysts" / "catalysts.db"
    with Store.open() as store:
        assert store.path == tmp_path / "xdg" / "catalysts" / "catalysts.db"
    assert (tmp_path / "xdg" / "catalysts" / "catalysts.db").is_file()


def test_in_memory_store_works() -> None:
    with Store.open(":memory:") as store:
        assert fetch(store, COINDESK, [entry(1)]) == 1
        assert store.entry_count() == 1


# --- entries ---------------------------------------------------------------------------------


def test_new_entries_are_counted_and_refetching_never_duplicates(store: Store) -> None:
    batch = [entry(n) for n in range(5)]
    assert fetch(store, COINDESK, batch) == 5
    assert fetch(store, COINDESK, batch, at=T0 + DAY) == 0
    assert fetch(store, COINDESK, [*batch, entry(5)], at=T0 + 2 * DAY) == 1
    assert store.entry_count() == 6


def test_prepared_entries_store_what_entries_store(tmp_path: Path) -> None:
    from catalysts.store import prepare_entries

    batch = [entry(n, published=T0 - n * DAY) for n in range(4)]
    found = {"guid-1": [match("openai-ipo")], "guid-2": [match("vcs", start=11)]}
    tables = []
    for name, kw in (
        ("entries", {"entries": batch, "matches": found}),
        ("prepared", {"entries": prepare_entries(batch, found)}),
    ):
        with Store.open(tmp_path / f"{name}.db") as s:
            assert fetch(s, COINDESK, rule_hashes=H1, **kw) == 4
            assert fetch(s, COINDESK, at=T0 + DAY, rule_hashes=H1, **kw) == 0
            tables.append(
                [
                    sorted(s._conn.execute(f"SELECT * FROM {table}"))
                    for table in ("entries", "matches", "rule_state")
                ]
            )
    assert tables[0] == tables[1]
    assert len(tables[0][1]) == 2


def test_a_stored_time_in_another_spelling_is_the_same_time(store: Store) -> None:
    published = datetime(2025, 11, 30, 9, 30, tzinfo=UTC)
    fetch(store, COINDESK, [entry(1, published=published)])
    # As an older store might hold it: no microseconds.
    store._conn.execute("UPDATE entries SET published = '2025-11-30T09:30:00+00:00'")
    fetch(store, COINDESK, [entry(1, published=published)], at=T0 + DAY)
    updated = store._conn.execute("SELECT updated FROM entries").fetchone()[0]
    assert updated == _ts(T0)
    fetch(store, COINDESK, [entry(1, published=published + DAY)], at=T0 + 2 * DAY)
    assert store._conn.execute("SELECT updated FROM entries").fetchone()[0] == _ts(T0 + 2 * DAY)


def test_the_same_key_in_two_feeds_is_two_entries(store: Store) -> None:
    assert fetch(store, COINDESK, [entry(1)]) == 1
    assert fetch(store, SEC, [entry(1)]) == 1
    assert store.entry_count() == 2


def test_a_key_repeated_within_one_fetch_is_one_entry(store: Store) -> None:
    first, second = entry(1), entry(1, title="Headline 1 OpenAI, updated")
    assert fetch(store, COINDESK, [first, second]) == 1
    [(_, _, stored)] = list(store.iter_entries())
    assert stored.title == second.title


def test_changed_entry_is_updated_in_place_with_new_matches(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={"guid-1": [match("openai-ipo")]}, rule_hashes=H1)
    [(row_id, _, _)] = list(store.iter_entries())
    changed = entry(1, title="OpenAI files for IPO", link="https://example.org/story/1b")
    new = fetch(
        store,
        COINDESK,
        [changed],
        at=T0 + DAY,
        matches={"guid-1": [match("openai-ipo", "confirm", "files for IPO", 7)]},
        rule_hashes=H1,
    )
    assert new == 0
    assert store.entry_count() == 1
    assert store.feed_health([COINDESK])[0].entries == 1
    [(row_again, _, stored)] = list(store.iter_entries())
    assert row_again == row_id
    assert stored == changed
    [ev] = store.evidence(until=T0 + 2 * DAY)
    assert (ev.entry_id, ev.rule, ev.title, ev.link) == (
        row_id,
        "confirm",
        changed.title,
        changed.link,
    )
    # Undated entry: its time stays the first-seen time across updates.
    assert ev.time == T0 and not ev.dated


def test_changed_entry_without_matches_loses_its_old_matches(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={"guid-1": [match("openai-ipo")]}, rule_hashes=H1)
    fetch(store, COINDESK, [entry(1, title="Something else")], at=T0 + DAY)
    assert store.evidence(until=T0 + 2 * DAY) == []
    assert ("openai-ipo", "signal") in store.stale_rules(H1)


def test_entry_fields_round_trip_including_hostile_text(store: Store) -> None:
    hostile = entry(
        1,
        title="Robert'); DROP TABLE entries;-- [bold]x[/bold] \u202e ✓",
        summary="日本語 \"quotes\" and 'single'",
        author=None,
        link=None,
        categories=("a,b", '["json"]'),
        published=datetime(2025, 11, 30, 23, 59, 59, 123456, tzinfo=UTC),
    )
    fetch(store, COINDESK, [hostile])
    [(_, feed_id, stored)] = list(store.iter_entries())
    assert feed_id == "coindesk"
    assert stored == hostile


def test_naive_and_non_utc_times_are_stored_as_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    fetch(
        store,
        COINDESK,
        [entry(1, published=datetime(2025, 12, 1, 10, 0, tzinfo=plus2))],
        matches={"guid-1": [match("vcs")]},
        rule_hashes=H1,
        at=datetime(2025, 12, 2),
    )
    [ev] = store.evidence(until=datetime(2025, 12, 3))
    assert ev.time == datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
    assert ev.time.utcoffset() == timedelta(0)
    assert store.last_fetch_time() == datetime(2025, 12, 2, tzinfo=UTC)


def test_a_sequence_of_fetches_stores_exactly_these_rows(store: Store) -> None:
    """Golden rows after new, unchanged, changed, repeated, shared-story and re-matched
    entries: any rewrite of record_fetch must leave the tables exactly like this."""
    plus2 = timezone(timedelta(hours=2))
    hour = timedelta(hours=1)
    dated = datetime(2025, 11, 30, 12, 0, 0, 250000, tzinfo=UTC)
    same = "https://example.org/openai-ipo"
    titled = entry(7, link=None, title="OpenAI: the IPO, maybe", categories=("AI",))
    first = [*(entry(n, published=dated - n * hour) for n in range(1, 6)), entry(6, categories=())]
    ipo = match("openai-ipo", "confirm", "IPO", 12)
    found = [
        # New entries into an empty store, matched: every rule in H1 becomes fresh.
        fetch(
            store,
            COINDESK,
            [*first, titled],
            matches={"guid-1": [match("openai-ipo")], "guid-7": [match("vcs"), ipo]},
            rule_hashes=H1,
            etag='"e1"',
            feed_title="CoinDesk",
        ),
        # The same story (link) in a second feed.
        fetch(
            store,
            SEC,
            [entry(9, link=same, title="OpenAI IPO"), entry(10, link=same)],
            at=T0 + hour,
            matches={"guid-9": [match("openai-ipo")]},
            rule_hashes=H1,
        ),
        # A feed holding little more than the fetch (read whole): dates given in another
        # zone or naive are unchanged; a changed title; a new entry; a key given twice.
        fetch(
            store,
            COINDESK,
            [
                entry(1, published=(dated - hour).astimezone(plus2)),
                entry(2, published=(dated - 2 * hour).replace(tzinfo=None)),
                entry(3, published=dated - 3 * hour, title="OpenAI files for IPO"),
                *first[3:],
                titled,
                entry(8, link=same),
                entry(11, title="first"),
                entry(11, title="second", categories=("x",)),
            ],
            at=T0 + DAY,
            matches={
                "guid-3": [match("openai-ipo", "confirm", "files for IPO", 7)],
                "guid-11": [match("vcs", term="second")],
            },
            rule_hashes=H1,
            feed_title="CoinDesk Markets",
        ),
        store.record_fetch(COINDESK, at=T0 + DAY + hour, result="not-modified", etag='"x"'),
        store.record_fetch(SEC, at=T0 + DAY + hour, result="error", error="HTTP 500"),
        # A history longer than the fetch (probed by key): one changed, one new, unmatched.
        fetch(
            store,
            COINDESK,
            [entry(4, published=dated, summary="moved"), entry(12)],
            at=T0 + 2 * DAY,
            result="unchanged",
            etag='"e2"',
            last_modified="Wed, 03 Dec 2025 08:00:00 GMT",
        ),
    ]
    rows = {e.key: row for row, _, e in store.iter_entries()}
    store.replace_matches("vcs", "signal", "v2", [(rows["guid-2"], match("vcs"))])
    # Matched with the re-matched rule's hash: vcs stays fresh, the rules left stale stay so.
    found.append(
        fetch(
            store,
            SEC,
            [entry(13, title="OpenAI again")],
            at=T0 + 3 * DAY,
            matches={"guid-13": [match("vcs")]},
            rule_hashes={**H1, ("vcs", "signal"): "v2"},
        )
    )

    assert found == [7, 2, 2, 0, 0, 1, 1]
    t0 = "2025-12-01T08:00:00.000000+00:00"
    t1 = "2025-12-01T09:00:00.000000+00:00"  # an hour later
    d1 = "2025-12-02T08:00:00.000000+00:00"  # a day later
    d2 = "2025-12-03T08:00:00.000000+00:00"
    d3 = "2025-12-04T08:00:00.000000+00:00"
    p0, p1 = "2025-11-30T12:00:00.250000+00:00", "2025-11-30T11:00:00.250000+00:00"
    p2, p3 = "2025-11-30T10:00:00.250000+00:00", "2025-11-30T09:00:00.250000+00:00"
    p5 = "2025-11-30T07:00:00.250000+00:00"
    story, cats, r = "https://example.org/story/", '["AI","crypto"]', "Reporter"
    db = store._conn
    # fmt: off
    assert db.execute("SELECT * FROM entries ORDER BY id").fetchall() == [
        (1, "coindesk", "guid-1", f"link:{story}1", "Headline 1 OpenAI", "Summary 1",
         f"{story}1", r, cats, p1, t0, t0, p1),
        (2, "coindesk", "guid-2", f"link:{story}2", "Headline 2 OpenAI", "Summary 2",
         f"{story}2", r, cats, p2, t0, t0, p2),
        (3, "coindesk", "guid-3", f"link:{story}3", "OpenAI files for IPO", "Summary 3",
         f"{story}3", r, cats, p3, t0, d1, p3),
        (4, "coindesk", "guid-4", f"link:{story}4", "Headline 4 OpenAI", "moved",
         f"{story}4", r, cats, p0, t0, d2, p0),
        (5, "coindesk", "guid-5", f"link:{story}5", "Headline 5 OpenAI", "Summary 5",
         f"{story}5", r, cats, p5, t0, t0, p5),
        (6, "coindesk", "guid-6", f"link:{story}6", "Headline 6 OpenAI", "Summary 6",
         f"{story}6", r, "[]", None, t0, t0, t0),
        (7, "coindesk", "guid-7", "title:openai the ipo maybe", "OpenAI: the IPO, maybe",
         "Summary 7", None, r, '["AI"]', None, t0, t0, t0),
        (8, "sec", "guid-9", f"link:{same}", "OpenAI IPO", "Summary 9",
         same, r, cats, None, t1, t1, t1),
        (9, "sec", "guid-10", f"link:{same}", "Headline 10 OpenAI", "Summary 10",
         same, r, cats, None, t1, t1, t1),
        (10, "coindesk", "guid-8", f"link:{same}", "Headline 8 OpenAI", "Summary 8",
         same, r, cats, None, d1, d1, d1),
        (11, "coindesk", "guid-11", f"link:{story}11", "second", "Summary 11",
         f"{story}11", r, '["x"]', None, d1, d1, d1),
        (12, "coindesk", "guid-12", f"link:{story}12", "Headline 12 OpenAI", "Summary 12",
         f"{story}12", r, cats, None, d2, d2, d2),
        (13, "sec", "guid-13", f"link:{story}13", "OpenAI again", "Summary 13",
         f"{story}13", r, cats, None, d3, d3, d3),
    ]
    hit = '[["OpenAI","title",0,6]]'
    assert db.execute("SELECT * FROM matches ORDER BY entry_id, item, rule").fetchall() == [
        ("openai-ipo", p1, 1, "signal", "h1", hit, f"link:{story}1", "coindesk",
         "Headline 1 OpenAI", f"{story}1", 1),
        ("vcs", p2, 2, "signal", "v2", hit, f"link:{story}2", "coindesk",
         "Headline 2 OpenAI", f"{story}2", 1),
        ("openai-ipo", p3, 3, "confirm", "c1", '[["files for IPO","title",7,20]]',
         f"link:{story}3", "coindesk", "OpenAI files for IPO", f"{story}3", 1),
        ("openai-ipo", t0, 7, "confirm", "c1", '[["IPO","title",12,15]]',
         "title:openai the ipo maybe", "coindesk", "OpenAI: the IPO, maybe", None, 0),
        ("openai-ipo", t1, 8, "signal", "h1", hit, f"link:{same}", "sec",
         "OpenAI IPO", same, 0),
        ("vcs", d3, 13, "signal", "v2", hit, f"link:{story}13", "sec",
         "OpenAI again", f"{story}13", 0),
    ]
    assert db.execute("SELECT * FROM feeds ORDER BY id").fetchall() == [
        ("coindesk", COINDESK.url, "CoinDesk Markets", None, '"e2"',
         "Wed, 03 Dec 2025 08:00:00 GMT", d2, d2, "unchanged", None, 0, None, 10),
        ("sec", SEC.url, None, None, None, None, d3, d3, "new", None, 0, None, 3),
    ]
    # fmt: on
    assert db.execute("SELECT * FROM rule_state").fetchall() == [("vcs", "signal", "v2")]


def test_a_long_history_is_probed_by_key_in_batches(store: Store) -> None:
    fetch(store, COINDESK, [entry(n) for n in range(2300)])
    # More keys than one lookup takes, against a history much longer than the fetch.
    again = [entry(n) for n in range(1100)]
    again[700] = entry(700, title="Headline 700, corrected")
    assert fetch(store, COINDESK, [*again, entry(5000)], at=T0 + DAY) == 1
    assert store.entry_count() == 2301
    updated = store._conn.execute(
        "SELECT key, title FROM entries WHERE updated > first_seen OR first_seen > ?",
        ("2025-12-01T08:00:00.000000+00:00",),
    ).fetchall()
    assert sorted(updated) == [
        ("guid-5000", "Headline 5000 OpenAI"),
        ("guid-700", again[700].title),
    ]


_OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.none() | st.builds(timezone, _OFFSETS),
    )
)
def test_stored_times_are_the_iso_text_of_the_utc_time(dt: datetime) -> None:
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    assert _ts(dt) == utc.isoformat(timespec="microseconds")


def test_storing_a_fetch_reads_through_indexes_only(store: Store) -> None:
    fetch(store, COINDESK, [entry(n) for n in range(10)], matches={}, rule_hashes=H1)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    changed = {"guid-1": [match("vcs")]}
    batch = [entry(1, title="changed"), entry(50)]  # a history longer than the fetch
    fetch(store, COINDESK, batch, at=T0 + DAY, matches=changed, rule_hashes=H1)
    fetch(store, COINDESK, [entry(n) for n in range(12)], at=T0 + DAY, matches={}, rule_hashes=H1)
    store._conn.set_trace_callback(None)
    scans = set()
    for sql in statements:
        if sql.split()[0] in ("SELECT", "UPDATE", "DELETE"):
            plan = [row[-1] for row in store._conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            scans.update(sql for step in plan if step.startswith("SCAN"))
    # One row of entries at most, and the few rows of rule_state: both meant to be read whole.
    assert scans == {
        "SELECT 1 FROM entries LIMIT 1",
        "SELECT item, rule, rule_hash FROM rule_state",
    }


# --- feed state --------------------------------------------------------------------------------


def test_http_state_follows_200s_only(store: Store) -> None:
    assert store.http_state("coindesk") == (None, None)
    fetch(store, COINDESK, [entry(1)], etag='"v1"', last_modified="Mon, 01 Dec 2025 08:00:00 GMT")
    assert store.http_state("coindesk") == ('"v1"', "Mon, 01 Dec 2025 08:00:00 GMT")
    store.record_fetch(COINDESK, at=T0 + DAY, result="not-modified", etag='"304-etag"')
    assert store.http_state("coindesk") == ('"v1"', "Mon, 01 Dec 2025 08:00:00 GMT")
    store.record_fetch(COINDESK, at=T0 + DAY, result="error", error="HTTP 500")
    assert store.http_state("coindesk") == ('"v1"', "Mon, 01 Dec 2025 08:00:00 GMT")
    fetch(store, COINDESK, [entry(1)], result="unchanged", etag='"v2"')
    assert store.http_state("coindesk") == ('"v2"', None)


def test_validators_are_dropped_when_the_feed_url_changes(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], etag='"v1"', last_modified="yesterday")
    moved = FeedSpec("coindesk", "https://example.org/elsewhere.xml")
    store.record_fetch(moved, at=T0 + DAY, result="error", error="HTTP 404")
    assert store.http_state("coindesk") == (None, None)
    [health] = store.feed_health([moved])
    assert health.url == moved.url


def test_feed_health_tracks_attempts_failures_and_entries(store: Store) -> None:
    retry = T0 + DAY + timedelta(minutes=15)
    assert [h.status for h in store.feed_health([COINDESK, SEC])] == ["never", "never"]

    fetch(store, COINDESK, [entry(1, published=T0 - DAY), entry(2, published=T0 - 2 * DAY)])
    store.record_fetch(SEC, at=T0, result="error", error="HTTP 503", next_retry=retry)
    store.record_fetch(SEC, at=T0 + DAY, result="error", error="timed out", next_retry=retry)
    ok, bad = store.feed_health([COINDESK, SEC])

    assert (ok.status, ok.entries, ok.newest_entry) == ("ok", 2, T0 - DAY)
    assert (ok.last_attempt, ok.last_success, ok.consecutive_failures) == (T0, T0, 0)
    assert (bad.status, bad.last_error, bad.consecutive_failures) == ("error", "timed out", 2)
    assert (bad.last_attempt, bad.last_success, bad.next_retry) == (T0 + DAY, None, retry)

    store.record_fetch(SEC, at=T0 + 2 * DAY, result="not-modified")
    [recovered] = store.feed_health([SEC])
    assert (recovered.status, recovered.consecutive_failures) == ("ok", 0)
    assert (recovered.last_error, recovered.next_retry) == (None, None)
    assert recovered.last_success == T0 + 2 * DAY


def test_feed_health_follows_the_configured_order_and_unknown_feeds(store: Store) -> None:
    fetch(store, SEC, [entry(1)])
    ghost = FeedSpec("ghost", "https://example.org/ghost.xml")
    health = store.feed_health([ghost, SEC])
    assert [(h.id, h.status, h.entries) for h in health] == [
        ("ghost", "never", 0),
        ("sec", "ok", 1),
    ]


def test_last_fetch_time_is_the_latest_attempt(store: Store) -> None:
    assert store.last_fetch_time() is None
    fetch(store, COINDESK, [entry(1)], at=T0)
    store.record_fetch(SEC, at=T0 + DAY, result="error", error="refused")
    assert store.last_fetch_time() == T0 + DAY


# --- evidence ----------------------------------------------------------------------------------


def _evidence_store(store: Store) -> None:
    entries = [entry(n, published=T0 - n * DAY) for n in range(10)]
    found = {f"guid-{n}": [match("openai-ipo")] for n in range(0, 10, 2)}
    found["guid-3"] = [match("vcs", term="Sequoia"), match("openai-ipo", "confirm")]
    fetch(store, COINDESK, entries, matches=found, rule_hashes=H1, at=T0)


def test_evidence_is_newest_first_and_filtered_by_item_and_time(store: Store) -> None:
    _evidence_store(store)
    every = store.evidence(until=T0)
    times = [e.time for e in every]
    assert times == sorted(times, reverse=True)
    assert len(every) == 7

    ipo = store.evidence(["openai-ipo"], until=T0)
    assert {e.item for e in ipo} == {"openai-ipo"} and len(ipo) == 6

    window = store.evidence(["openai-ipo"], since=T0 - 4 * DAY, until=T0 - DAY)
    assert [(e.time, e.rule) for e in window] == [
        (T0 - 2 * DAY, "signal"),
        (T0 - 3 * DAY, "confirm"),
        (T0 - 4 * DAY, "signal"),
    ]
    assert store.evidence([], until=T0) == []
    assert store.evidence(["unknown"], until=T0) == []

    confirms = store.evidence(rules=["confirm"], until=T0)
    assert [(e.item, e.rule, e.time) for e in confirms] == [("openai-ipo", "confirm", T0 - 3 * DAY)]
    assert store.evidence(rules=[], until=T0) == []


def test_evidence_carries_the_entry_and_the_hits(store: Store) -> None:
    _evidence_store(store)
    [vc] = store.evidence(["vcs"], until=T0)
    assert (vc.feed, vc.title, vc.link) == (
        "coindesk",
        "Headline 3 OpenAI",
        "https://example.org/story/3",
    )
    assert vc.dated and vc.time == T0 - 3 * DAY
    assert vc.terms == ("Sequoia",)
    assert vc.hits == (Hit("Sequoia", "title", 0, 7),)
    [(row_id, _, _)] = [r for r in store.iter_entries() if r[2].key == "guid-3"]
    assert vc.entry_id == row_id


def test_undated_entries_count_from_first_seen(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], at=T0, matches={"guid-1": [match("vcs")]}, rule_hashes=H1)
    assert store.evidence(until=T0 - timedelta(seconds=1)) == []
    [ev] = store.evidence(until=T0)
    assert ev.time == T0 and ev.dated is False


def test_one_story_in_two_feeds_shares_its_story_key(store: Store) -> None:
    same = "https://example.org/openai-ipo"
    fetch(
        store,
        COINDESK,
        [entry(1, link=same)],
        matches={"guid-1": [match("openai-ipo")]},
        rule_hashes=H1,
    )
    fetch(
        store,
        SEC,
        [entry(9, link=same, title="OpenAI IPO")],
        matches={"guid-9": [match("openai-ipo")]},
        rule_hashes=H1,
    )
    fetch(store, SEC, [entry(2)], matches={"guid-2": [match("openai-ipo")]}, rule_hashes=H1)
    evidence = store.evidence(["openai-ipo"], until=T0)
    by_feed_key = {(e.feed, e.title): e.story for e in evidence}
    assert by_feed_key[("coindesk", "Headline 1 OpenAI")] == by_feed_key[("sec", "OpenAI IPO")]
    assert by_feed_key[("sec", "Headline 2 OpenAI")] != by_feed_key[("sec", "OpenAI IPO")]


def test_evidence_reads_one_range_of_the_matches_table_per_item(store: Store) -> None:
    _evidence_store(store)
    sql = (
        "EXPLAIN QUERY PLAN SELECT item, rule, entry_id, story, feed_id, title, link, time,"
        " dated, hits FROM matches WHERE time <= ? AND time >= ? AND item IN (?, ?)"
    )
    plan = [row[-1] for row in store._conn.execute(sql, ("b", "a", "x", "y"))]
    assert plan == ["SEARCH matches USING PRIMARY KEY (item=? AND time>? AND time<?)"], plan


# --- rule freshness ----------------------------------------------------------------------------


def test_first_fetch_into_an_empty_store_leaves_rules_fresh(store: Store) -> None:
    assert store.stale_rules(H1) == list(H1)  # never matched: stale
    fetch(store, COINDESK, [entry(1)], matches={}, rule_hashes=H1)
    fetch(store, SEC, [entry(2)], matches={}, rule_hashes=H1)
    assert store.stale_rules(H1) == []


def test_an_edited_rule_is_stale_until_replaced_and_a_fetch_does_not_freshen_it(
    store: Store,
) -> None:
    fetch(
        store,
        COINDESK,
        [entry(1), entry(2)],
        matches={"guid-1": [match("openai-ipo")]},
        rule_hashes=H1,
    )
    edited = {**H1, ("openai-ipo", "signal"): "h2"}
    assert store.stale_rules(edited) == [("openai-ipo", "signal")]

    # Only the new entry is matched with h2: the rule must stay stale.
    fetch(
        store,
        COINDESK,
        [entry(3)],
        matches={"guid-3": [match("openai-ipo")]},
        rule_hashes=edited,
        at=T0 + DAY,
    )
    assert store.stale_rules(edited) == [("openai-ipo", "signal")]
    # ...and going back to h1 does not make it fresh either: entry 3 was matched with h2.
    assert ("openai-ipo", "signal") in store.stale_rules(H1)

    rows = {e.key: row for row, _, e in store.iter_entries()}
    store.replace_matches("openai-ipo", "signal", "h2", [(rows["guid-2"], match("openai-ipo"))])
    assert store.stale_rules(edited) == []
    ipo = store.evidence(["openai-ipo"], until=T0 + DAY)
    # guid-1 (h1) is gone; guid-3 (matched with h2 at fetch) is kept; guid-2 is new.
    keys = {row: e.key for row, _, e in store.iter_entries()}
    assert sorted(keys[e.entry_id] for e in ipo) == ["guid-2", "guid-3"]
    # The other rules were never touched.
    assert store.stale_rules(H1) == [("openai-ipo", "signal")]


def test_first_fetch_freshens_only_the_rules_it_matched_with(store: Store) -> None:
    store.replace_matches("retired", "signal", "r1", [])  # fresh over an empty history
    assert store.stale_rules({("retired", "signal"): "r1"}) == []
    fetch(store, COINDESK, [entry(1)], matches={}, rule_hashes=H1)
    assert store.stale_rules({**H1, ("retired", "signal"): "r1"}) == [("retired", "signal")]


def test_entries_stored_without_matching_make_every_rule_stale(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={}, rule_hashes=H1)
    fetch(store, COINDESK, [entry(2)], at=T0 + DAY)  # no matches given
    assert store.stale_rules(H1) == list(H1)


def test_a_rule_missing_from_the_fetch_hashes_becomes_stale(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={}, rule_hashes=H1)
    partial = {k: v for k, v in H1.items() if k != ("vcs", "signal")}
    fetch(store, COINDESK, [entry(2)], matches={}, rule_hashes=partial, at=T0 + DAY)
    assert store.stale_rules(H1) == [("vcs", "signal")]


def test_a_fetch_with_nothing_new_keeps_rules_fresh(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={}, rule_hashes=H1)
    edited = {**H1, ("vcs", "signal"): "v2"}
    store.replace_matches("vcs", "signal", "v2", [])
    fetch(store, COINDESK, [entry(1)], at=T0 + DAY)  # unchanged, unmatched: nothing touched
    store.record_fetch(SEC, at=T0 + DAY, result="error", error="HTTP 500")
    assert store.stale_rules(edited) == []


def test_replace_matches_keeps_same_hash_matches_written_meanwhile(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)], matches={"guid-1": [match("vcs")]}, rule_hashes=H1)
    edited = {**H1, ("vcs", "signal"): "v2"}
    history = list(store.iter_entries())  # sync reads the history...
    # ...a concurrent fetch stores and matches a new entry with the new hash...
    fetch(
        store,
        COINDESK,
        [entry(2)],
        matches={"guid-2": [match("vcs")]},
        rule_hashes=edited,
        at=T0 + DAY,
    )
    # ...and the sync writes what it found over the history it read.
    store.replace_matches("vcs", "signal", "v2", [(history[0][0], match("vcs", term="v2"))])
    evidence = store.evidence(["vcs"], until=T0 + DAY)
    assert sorted(e.terms for e in evidence) == [("OpenAI",), ("v2",)]


def test_replace_matches_ignores_rows_of_deleted_entries(store: Store) -> None:
    store.replace_matches("vcs", "signal", "v1", [(12345, match("vcs"))])
    assert store.evidence(until=T0) == []
    assert store.stale_rules({("vcs", "signal"): "v1"}) == []


def test_iteration_allows_writes_between_items(store: Store) -> None:
    fetch(store, COINDESK, [entry(n) for n in range(3000)])
    seen = 0
    for row_id, _, _ in store.iter_entries():
        if seen % 1000 == 0:
            store.replace_matches("vcs", "signal", "v1", [(row_id, match("vcs"))])
        seen += 1
    assert seen == 3000
    # Each replace kept the same-hash matches of the ones before it.
    assert len(store.evidence(["vcs"], until=T0)) == 3
    fetch(store, SEC, [entry(1)])
    assert [f for _, f, _ in store.iter_entries(feeds={"sec"})] == ["sec"]


def test_iter_documents_matches_rules_document(store: Store) -> None:
    from catalysts.rules import document

    fetch(store, COINDESK, [entry(1)], feed_title="CoinDesk")
    [(row_id, doc)] = list(store.iter_documents())
    [(row_again, _, stored)] = list(store.iter_entries())
    assert row_id == row_again
    assert doc == document(stored, "coindesk", "CoinDesk")


def test_signal_history_is_the_older_signals_in_evidence_order(store: Store) -> None:
    _evidence_store(store)
    before = T0 - 3 * DAY
    older = store.signal_history(["openai-ipo", "vcs"], before=before)
    expected = [
        (e.item, e.time, e.story, e.feed)
        for e in store.evidence(["openai-ipo", "vcs"], until=T0)
        if e.rule == "signal" and e.time < before
    ]
    assert older == expected and older  # the confirm 3 days ago and newer signals are left out
    assert store.signal_history([], before=T0) == []


def test_evidence_without_hits_then_with_hits_for_the_few_shown(store: Store) -> None:
    _evidence_store(store)
    full = store.evidence(until=T0)
    bare = store.evidence(until=T0, hits=False)
    assert all(e.hits == () and e.terms == () for e in bare)
    strip = [dataclasses.replace(e, hits=(), terms=()) for e in full]
    assert bare == strip  # same rows, same order, only the hits left out
    assert store.with_hits(bare) == full
    assert store.with_hits(full[:1]) == full[:1]  # already there: unchanged
    # A match row gone meanwhile: returned as it was, not dropped.
    ghost = dataclasses.replace(bare[0], entry_id=10_000)
    assert store.with_hits([ghost]) == [ghost]


# --- history and digests -----------------------------------------------------------------------


def test_last_statuses_are_the_newest_recorded_per_item(store: Store) -> None:
    assert store.last_statuses(["a"]) == {}
    store.record_status_changes(
        [
            StatusChange("a", T0 - 2 * DAY, None, "quiet", "first"),
            StatusChange("a", T0, "quiet", "building", "score"),
            StatusChange("b", T0 - DAY, None, "quiet", "first"),
        ]
    )
    # Same time as the latest "a": the later recorded wins, as in status_changes() order.
    store.record_status_changes([StatusChange("a", T0, "building", "triggered", "confirm")])
    assert store.last_statuses(["a", "b", "c"]) == {"a": "triggered", "b": "quiet"}
    expected = {c.item: c.new for c in store.status_changes()}
    assert store.last_statuses(expected) == expected


def test_cache_returns_a_value_only_for_its_key(store: Store) -> None:
    assert store.cached("watchlist:/w.yaml", "k1") is None
    store.cache("watchlist:/w.yaml", "k1", '{"v": 1}')
    assert store.cached("watchlist:/w.yaml", "k1") == '{"v": 1}'
    assert store.cached("watchlist:/w.yaml", "k2") is None
    store.cache("watchlist:/w.yaml", "k2", '{"v": 2}')  # replaces the older value
    assert store.cached("watchlist:/w.yaml", "k1") is None
    assert store.cached("watchlist:/w.yaml", "k2") == '{"v": 2}'
    assert store.cached("watchlist:/other.yaml", "k2") is None


def test_status_changes_round_trip_with_their_evidence(store: Store) -> None:
    _evidence_store(store)
    [confirm] = store.evidence(["openai-ipo"], until=T0 - 3 * DAY, since=T0 - 3 * DAY)
    changes = [
        StatusChange("openai-ipo", T0 - 5 * DAY, None, "quiet", "first evaluation"),
        StatusChange("vcs", T0 - 4 * DAY, None, "quiet", "first evaluation"),
        StatusChange(
            "openai-ipo", T0 - 3 * DAY, "quiet", "triggered", "confirm matched", (confirm,)
        ),
    ]
    store.record_status_changes(changes)
    store.record_status_changes([])
    assert store.status_changes() == changes
    assert store.status_changes("openai-ipo") == [changes[0], changes[2]]
    assert store.status_changes(since=T0 - 4 * DAY) == changes[1:]
    assert store.status_changes("vcs", since=T0) == []


def test_last_digest_is_the_latest(store: Store) -> None:
    assert store.last_digest() is None
    store.record_digest(T0, {"openai-ipo": "quiet", "vcs": "building"})
    store.record_digest(T0 + DAY, {"openai-ipo": "triggered"})
    store.record_digest(T0 - DAY, {"old": "quiet"})  # a replayed --at digest is not "last"
    assert store.last_digest() == (T0 + DAY, {"openai-ipo": "triggered"})


# --- errors ------------------------------------------------------------------------------------


def test_a_store_from_a_newer_catalysts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert str(caught.value) == (
        f"store {path} was written by a newer catalysts "
        f"(schema {SCHEMA_VERSION + 7} > {SCHEMA_VERSION}); upgrade catalysts"
    )
    assert caught.value.exit_code == ExitCode.STORE


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "watchlist.yaml"
    path.write_text("version: 1\nfeeds: []\n" * 200)
    with pytest.raises(StoreError, match="is not a SQLite database") as caught:
        Store.open(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_text().startswith("version: 1")


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("PRAGMA user_version = 40")  # not to be mistaken for a newer catalysts
    with pytest.raises(StoreError, match="another program"):
        Store.open(path)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)


def test_a_folder_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "sub" / "catalysts.db")


def test_a_corrupt_store_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    with Store.open(path) as store:
        fetch(store, COINDESK, [entry(n, summary="x" * 500) for n in range(300)])
        store.vacuum()
        page = store._conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = store._conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'entries'"
        ).fetchone()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page  # scribble over the entries table's root b-tree page header
    data[start : start + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    with Store.open(path) as store, pytest.raises(StoreError) as caught:
        list(store.iter_entries())
    message = str(caught.value)
    assert message.startswith(f"store {path} is corrupt (") and "\n" not in message
    with Store.open(path) as store, pytest.raises(StoreError, match="is corrupt"):
        store.integrity_check()


def test_a_locked_store_fails_clearly_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    Store.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(path, timeout=0.05) as store:
            with pytest.raises(StoreError) as caught:
                fetch(store, COINDESK, [entry(1)])
            assert str(caught.value) == (
                f"store {path} is locked by another catalysts run; try again when it finishes"
            )
            assert store.evidence(until=T0) == []  # readers are not blocked under WAL
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store.open(path) as store:  # and the failed write left nothing behind
        assert store.entry_count() == 0
        assert store.feed_health([COINDESK])[0].status == "never"


def test_a_full_disk_is_a_store_error_and_the_transaction_is_undone(store: Store) -> None:
    fetch(store, COINDESK, [entry(1)])
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="disk is full"):
        fetch(store, SEC, [entry(n, summary="y" * 2000) for n in range(200)], at=T0 + DAY)
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.entry_count() == 1
    assert store.feed_health([SEC])[0].status == "never"
    assert fetch(store, SEC, [entry(2)], at=T0 + DAY) == 1


def test_the_store_can_be_used_from_another_thread(store: Store) -> None:
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(fetch(store, COINDESK, [entry(1)])))
    worker.start()
    worker.join()
    assert results == [1]
    assert store.entry_count() == 1


# --- crash and concurrency safety ----------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone
    from catalysts.models import Entry, FeedSpec, Hit, RuleMatch
    from catalysts.store import Store

    path, feed_id, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    feed = FeedSpec(feed_id, "https://example.org/" + feed_id)
    hashes = {("item", "signal"): "h"}
    t0 = datetime(2025, 12, 1, tzinfo=timezone.utc)
    with Store.open(path) as store:
        n = 0
        while rounds < 0 or n < rounds:
            entries = [Entry(f"{feed_id}-{n}-{i}", f"title {n} {i}", "x" * 300) for i in range(5)]
            hit = RuleMatch("item", "signal", (Hit("title", "title", 0, 5),))
            store.record_fetch(
                feed, at=t0 + timedelta(seconds=n), result="new", entries=entries,
                matches={e.key: [hit] for e in entries}, rule_hashes=hashes, etag=str(n),
            )
            print(n, flush=True)
            n += 1
    """
)


def _writer(path: Path, feed_id: str, rounds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), feed_id, str(rounds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_run_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    proc = _writer(path, "coindesk", -1)
    assert proc.stdout is not None
    for _ in range(30):  # let it commit a few transactions, then kill it mid-stream
        assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with Store.open(path) as store:
        assert store.integrity_check() == ["ok"]
        count = store.entry_count()
        assert count >= 30 * 5 and count % 5 == 0  # whole transactions only
        # Every stored entry has its match: no half-written fetch.
        assert len(store.evidence(["item"], until=T0 + timedelta(days=365))) == count
        assert fetch(store, SEC, [entry(1)]) == 1


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    rounds = 60
    procs = [_writer(path, "coindesk", rounds), _writer(path, "sec", rounds)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Store.open(path) as store:
        assert store.integrity_check() == ["ok"]
        assert store.entry_count() == 2 * rounds * 5
        health = store.feed_health([COINDESK, SEC])
        assert [(h.status, h.entries, h.etag) for h in health] == [
            ("ok", rounds * 5, str(rounds - 1))
        ] * 2
        assert store.stale_rules({("item", "signal"): "h"}) == []


def test_a_change_already_recorded_by_a_concurrent_run_is_not_recorded_again(
    store: Store,
) -> None:
    first = StatusChange("a", T0, "quiet", "building", "score 2.1 >= 2.0")
    store.record_status_changes([first])
    # A second `status` run that read the history before the first one wrote it.
    store.record_status_changes([dataclasses.replace(first, at=T0 + timedelta(seconds=1))])
    assert [(c.old, c.new) for c in store.status_changes("a")] == [("quiet", "building")]
    # A real sequence in one batch is kept whole.
    store.record_status_changes(
        [
            StatusChange("a", T0 + DAY, "building", "quiet", "score fell"),
            StatusChange("a", T0 + 2 * DAY, "quiet", "building", "score 2.5 >= 2.0"),
        ]
    )
    assert [c.new for c in store.status_changes("a")] == ["building", "quiet", "building"]
