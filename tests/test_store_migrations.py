"""Schema migrations on PRAGMA user_version: from blank, from an old store, and refusals."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from catalysts import store as store_module
from catalysts.errors import StoreError
from catalysts.models import Entry, FeedSpec, Hit, RuleMatch
from catalysts.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Store

UTC = timezone.utc
T0 = datetime(2025, 12, 1, tzinfo=UTC)
FEED = FeedSpec("coindesk", "https://example.org/coindesk.xml")


def _objects(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return {
            (kind, name)
            for kind, name in conn.execute("SELECT type, name FROM sqlite_master")
            if not name.startswith("sqlite_")
        }


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def _build_old(path: Path, version: int) -> None:
    """A store as an older catalysts left it: the first `version` migrations only."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def _v1_with_data(path: Path) -> None:
    _build_old(path, 1)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO feeds (id, url, etag, last_attempt, last_success, last_result, entries)"
        " VALUES ('coindesk', ?, '\"e1\"', ?, ?, 'new', 1)",
        (FEED.url, T0.isoformat(timespec="microseconds"), T0.isoformat(timespec="microseconds")),
    )
    t = T0.isoformat(timespec="microseconds")
    conn.execute(
        "INSERT INTO entries (id, feed_id, key, story, title, summary, link, categories,"
        " published, first_seen, updated, time)"
        " VALUES (7, 'coindesk', 'g1', 's1', 'OpenAI IPO', '', 'https://x.org/1', '[]',"
        " ?, ?, ?, ?)",
        (t, t, t, t),
    )
    conn.execute(
        "INSERT INTO matches (item, time, entry_id, rule, rule_hash, hits, story, feed_id,"
        " title, link, dated) VALUES ('openai-ipo', ?, 7, 'signal', 'h1', ?, 's1', 'coindesk',"
        " 'OpenAI IPO', 'https://x.org/1', 1)",
        (t, '[["OpenAI","title",0,6]]'),
    )
    conn.execute("INSERT INTO rule_state VALUES ('openai-ipo', 'signal', 'h1')")
    conn.close()


def test_the_migration_list_defines_the_schema_version() -> None:
    assert len(MIGRATIONS) >= 2
    assert len(MIGRATIONS) == SCHEMA_VERSION


def test_a_blank_store_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    Store.open(path).close()
    assert _user_version(path) == SCHEMA_VERSION
    objects = _objects(path)
    for table in ("feeds", "entries", "matches", "rule_state", "status_changes", "digests"):
        assert ("table", table) in objects
    assert ("index", "matches_entry") in objects
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_v1_store_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _v1_with_data(path)
    assert ("index", "matches_entry") not in _objects(path)

    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.integrity_check() == ["ok"]
        [ev] = store.evidence(["openai-ipo"], until=T0)
        assert (ev.entry_id, ev.title, ev.story, ev.time) == (7, "OpenAI IPO", "s1", T0)
        assert ev.hits == (Hit("OpenAI", "title", 0, 6),)
        assert store.http_state("coindesk") == ('"e1"', None)
        assert store.stale_rules({("openai-ipo", "signal"): "h1"}) == []
        # The migrated store takes new writes next to the old rows; the old entry, seen
        # again unchanged, is neither new nor re-matched.
        old = Entry("g1", "OpenAI IPO", link="https://x.org/1", published=T0)
        new = store.record_fetch(
            FEED,
            at=T0,
            result="new",
            entries=[old, Entry("g2", "OpenAI again")],
            matches={"g2": [RuleMatch("openai-ipo", "signal", (Hit("OpenAI", "title", 0, 6),))]},
            rule_hashes={("openai-ipo", "signal"): "h1"},
        )
        assert new == 1
        assert len(store.evidence(["openai-ipo"], until=T0)) == 2
        assert store.feed_health([FEED])[0].entries == 2
    assert _user_version(path) == SCHEMA_VERSION
    assert ("index", "matches_entry") in _objects(path)


def test_a_failing_migration_leaves_the_old_store_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "v1.db"
    _v1_with_data(path)
    broken = (
        *MIGRATIONS[:1],
        ("CREATE INDEX half_done ON entries (title)", "CREATE INDEX oops ON no_such_table (x)"),
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", broken)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StoreError, match="no such table"):
        Store.open(path)
    assert _user_version(path) == 1
    assert ("index", "half_done") not in _objects(path)  # the whole step was rolled back
    monkeypatch.undo()
    with Store.open(path) as store:  # the real code still migrates it
        assert store.schema_version == SCHEMA_VERSION
        assert store.entry_count() == 1


def test_a_newer_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _build_old(path, SCHEMA_VERSION)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE from_the_future (x)")
    before = _objects(path)
    with pytest.raises(StoreError, match=r"newer catalysts .*; upgrade catalysts$"):
        Store.open(path)
    assert _user_version(path) == SCHEMA_VERSION + 1
    assert _objects(path) == before


_OPEN = """
import sys
from catalysts.store import Store
Store.open(sys.argv[1]).close()
"""


def test_two_processes_creating_one_store_at_once_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN, str(path)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert _user_version(path) == SCHEMA_VERSION
    with Store.open(path) as store:
        assert store.integrity_check() == ["ok"]


def _open_at_the_barrier(path: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        Store.open(path).close()
        errors.put("")
    except StoreError as exc:
        errors.put(str(exc))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(),
    reason="starting openers in step needs fork; a fresh interpreter per opener staggers them",
)
def test_openers_released_together_on_new_stores_all_succeed(tmp_path: Path) -> None:
    # Forked openers leave a barrier within microseconds of each other, which is what
    # exposed two races of a new store: its identity read in two snapshots around another
    # opener's first migration ("another program"), and the WAL switch failing at once
    # instead of waiting ("locked"). Before the fix, about one round in four failed.
    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(25):
        path = str(tmp_path / f"new{round_}.db")
        barrier, errors = ctx.Barrier(4), ctx.Queue()
        procs = [
            ctx.Process(target=_open_at_the_barrier, args=(path, barrier, errors)) for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        failures += [error for error in (errors.get(timeout=60) for _ in procs) if error]
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
    assert failures == []


def _blank_file_with_a_writer(path: Path) -> sqlite3.Connection:
    """A new, empty file on which another connection holds the write lock, as another
    opener's first migration does (a blank file is in rollback-journal mode)."""
    sqlite3.connect(path).close()
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    return writer


def test_opening_a_new_store_waits_while_another_opener_writes(tmp_path: Path) -> None:
    # SQLite fails this switch to WAL at once, without its busy handler.
    path = tmp_path / "blank.db"
    writer = _blank_file_with_a_writer(path)
    release = threading.Timer(0.3, writer.execute, args=("COMMIT",))
    release.start()
    try:
        with Store.open(path, timeout=10) as store:
            assert store.schema_version == SCHEMA_VERSION
    finally:
        release.join()
        writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_store_held_past_the_timeout_is_refused_as_locked(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    writer = _blank_file_with_a_writer(path)
    try:
        with pytest.raises(StoreError, match="locked by another catalysts run"):
            Store.open(path, timeout=0.2)
    finally:
        writer.close()
    assert _objects(path) == set()
