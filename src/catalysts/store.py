"""The SQLite store: feed state, entries, matches keyed by rule hash, status history, digests.

One file, one connection, stdlib `sqlite3`. The schema is a list of numbered migrations
applied in order on `PRAGMA user_version`, each in its own `BEGIN IMMEDIATE` transaction;
a store written by a newer catalysts is refused rather than guessed at. WAL journaling,
`synchronous=NORMAL` and one transaction per write method make the file safe against a
killed process and against two runs at once (the second waits up to `timeout` seconds).

Times are stored as ISO 8601 UTC text with microseconds and a `+00:00` suffix, one fixed
width, so that text order is time order and range queries use the indexes.

Matches and rule hashes follow one invariant: a `rule_state` row `(item, rule) -> H` means
every stored entry's matches for that rule were computed with hash `H`. Writes that break
it (entries stored without being matched against a rule, or matched with another hash)
drop the row, so `stale_rules` reports the rule and `sync_matches` re-matches the whole
history of exactly that rule, then `replace_matches` records `H` again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from time import monotonic, sleep
from typing import Any

from catalysts.errors import StoreError
from catalysts.models import (
    Entry,
    Evidence,
    FeedHealth,
    FeedSpec,
    FetchResultKind,
    Hit,
    RuleMatch,
    Status,
    StatusChange,
)

UTC = timezone.utc
# "CATL": marks the file as ours, so `--db` pointed at another program's SQLite file is
# refused instead of having our tables added to it.
APPLICATION_ID = 0x4341544C
DEFAULT_TIMEOUT = 30.0  # seconds a writer waits for another run's transaction
_MATCH_COLUMNS = "item, time, entry_id, rule, rule_hash, hits, story, feed_id, title, link, dated"
# One encoder: json.dumps with options builds a new one per call, which shows at ingest.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_BATCH = 500  # rows per IN (...) lookup or keyset page; well under SQLite's variable limit
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))  # for `_ts`

# --- schema --------------------------------------------------------------------------------

_V1 = (
    f"PRAGMA application_id = {APPLICATION_ID}",
    """CREATE TABLE feeds (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        title TEXT,                -- the feed document's own title, as last seen
        spec_title TEXT,           -- the title configured in the watchlist
        etag TEXT,
        last_modified TEXT,
        last_attempt TEXT,
        last_success TEXT,
        last_result TEXT,          -- new | not-modified | unchanged | error
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        next_retry TEXT,
        entries INTEGER NOT NULL DEFAULT 0  -- count kept by record_fetch: `feeds` needs no scan
    )""",
    """CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        feed_id TEXT NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        story TEXT NOT NULL,
        title TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        link TEXT,
        author TEXT,
        categories TEXT NOT NULL DEFAULT '[]',
        published TEXT,
        first_seen TEXT NOT NULL,
        updated TEXT NOT NULL,
        time TEXT NOT NULL,        -- published, else first_seen: what evidence is dated by
        UNIQUE (feed_id, key)
    )""",
    # Clustered by (item, time) and carrying copies of what evidence shows, so that
    # `evidence(items, since, until)` reads one contiguous range per item and no entry
    # rows. The copies cannot go stale: an entry whose content changes has its match rows
    # deleted and rewritten, and rows are only ever written from the entry's current row.
    """CREATE TABLE matches (
        item TEXT NOT NULL,
        time TEXT NOT NULL,        -- entries.time
        entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
        rule TEXT NOT NULL,
        rule_hash TEXT,
        hits TEXT NOT NULL,        -- JSON [[term, field, start, end], ...]
        story TEXT NOT NULL,       -- entries.story
        feed_id TEXT NOT NULL,     -- entries.feed_id
        title TEXT NOT NULL,       -- entries.title
        link TEXT,                 -- entries.link
        dated INTEGER NOT NULL,    -- entries.published IS NOT NULL
        PRIMARY KEY (item, time, entry_id, rule)
    ) WITHOUT ROWID""",
    """CREATE TABLE rule_state (
        item TEXT NOT NULL,
        rule TEXT NOT NULL,
        rule_hash TEXT NOT NULL,
        PRIMARY KEY (item, rule)
    ) WITHOUT ROWID""",
    """CREATE TABLE status_changes (
        id INTEGER PRIMARY KEY,
        item TEXT NOT NULL,
        at TEXT NOT NULL,
        old TEXT,
        new TEXT NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX status_changes_item_at ON status_changes (item, at)",
    """CREATE TABLE digests (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        statuses TEXT NOT NULL
    )""",
)

# v2: indexes -- an entry's matches (rewritten when the entry changes; the foreign key's
# cascade), a feed's newest entry (`feeds`, status footer) and the latest digest.
_V2 = (
    "CREATE INDEX matches_entry ON matches (entry_id)",
    "CREATE INDEX entries_feed_time ON entries (feed_id, time)",
    "CREATE INDEX digests_at ON digests (at)",
)

# v3: derived data kept between runs (see `cached`): the validated watchlist, so that
# `status` does not import the YAML parser and the rule engine when nothing changed; and
# an index of matches by rule.
_V3 = (
    """CREATE TABLE cache (
        name TEXT PRIMARY KEY,
        key TEXT NOT NULL,         -- a digest of everything the value was derived from
        value TEXT NOT NULL        -- JSON, never pickle: the file may come from elsewhere
    ) WITHOUT ROWID""",
    # Every confirm match of every item (`status` reads them all: triggers are sticky)
    # without walking each item's signal matches.
    "CREATE INDEX matches_rule ON matches (rule, item, time)",
)

# v4: entries by first-seen time, for the digest's "new since the last digest" (a story
# published before the last digest but fetched after it is still news to the reader).
_V4 = ("CREATE INDEX entries_first_seen ON entries (first_seen)",)

# Append only: MIGRATIONS[n] takes a store from schema n to n + 1. Never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


def default_db_path() -> Path:
    """`catalysts.db` in the user data dir (e.g. ~/.local/share/catalysts/ on Linux)."""
    import platformdirs

    return platformdirs.user_data_path("catalysts", appauthor=False) / "catalysts.db"


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedEntries:
    """A feed's entries and their matches as `record_fetch` writes them: text, no objects.

    Made by `prepare_entries` wherever CPU is to spare (a parse worker), so that the
    process that writes the store receives plain strings: unpickling an `Entry` (a frozen
    dataclass with a datetime) costs the parent more than storing it.
    """

    # (key, title, summary, link, author, categories JSON, published, story)
    rows: tuple[tuple[Any, ...], ...]
    # entry key -> [(item, rule, hits JSON)]; None: matched against no rule
    matches: dict[str, list[tuple[str, str, str]]] | None = None


def prepare_entries(
    entries: Iterable[Entry], matches: Mapping[str, Sequence[RuleMatch]] | None = None
) -> PreparedEntries:
    """`entries` and `matches` (entry key -> its rule matches) in the form the store writes."""
    # The one definition of "same story" (imported here: `status` never needs it).
    from catalysts.feedparse import story_key

    # Categories repeat across a feed's entries: encode each distinct list once.
    categories_json: dict[tuple[str, ...], str] = {(): "[]"}
    rows = []
    for entry in entries:
        categories = categories_json.get(entry.categories)
        if categories is None:
            categories = categories_json[entry.categories] = _dumps(list(entry.categories))
        published = _ts(entry.published) if entry.published else None
        content = (entry.title, entry.summary, entry.link, entry.author, categories, published)
        rows.append((entry.key, *content, story_key(entry)))
    found = None
    if matches is not None:
        found = {
            key: [(m.item, m.rule, _hits_json(m.hits)) for m in ms] for key, ms in matches.items()
        }
    return PreparedEntries(tuple(rows), found)


# --- the store -----------------------------------------------------------------------------


class Store:
    """A catalysts store; open with `Store.open(path)`, use as a context manager.

    Every write method is one transaction. Methods may be called from any thread (calls
    are serialised); iterators read in pages, so writes may happen between their items.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Store:
        """Open (creating folders and file) and migrate the store at `path`.

        Raises `StoreError` (exit 4) when the file is not a SQLite database, belongs to
        another program, was written by a newer catalysts, or cannot be opened or written.
        """
        path = default_db_path() if path is None else Path(path).expanduser()
        memory = str(path) == ":memory:"
        if not memory:
            if path.is_dir():
                raise StoreError(f"store {path} is a directory, not a database file")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise StoreError(f"cannot create the folder of store {path}: {reason}") from exc
        try:
            conn = sqlite3.connect(
                str(path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(_describe(path, exc)) from exc
        store = cls(conn, path)
        try:
            store._setup(timeout)
        except BaseException:
            conn.close()
            raise
        return store

    def _setup(self, timeout: float) -> None:
        with self._errors():
            db = self._conn
            # The first read of the file: this is where "not a database" surfaces. One
            # statement is one snapshot: read apart, the identity and the table count can
            # straddle another process's first migration and look like a foreign file.
            tables, app_id, version = db.execute(
                "SELECT (SELECT count(*) FROM sqlite_master), a.application_id, v.user_version"
                " FROM pragma_application_id AS a, pragma_user_version AS v"
            ).fetchone()
            # Every store has our application id from its first migration on, so a file
            # without it is ours only while it is empty (new, or a first migration undone).
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                raise StoreError(
                    f"store {self.path} is a SQLite database of another program; "
                    "choose another --db"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} was written by a newer catalysts "
                    f"(schema {version} > {SCHEMA_VERSION}); upgrade catalysts"
                )
            db.execute("PRAGMA foreign_keys = ON")
            self._use_wal(timeout)
            db.execute("PRAGMA synchronous = NORMAL")
            # 16 MB instead of SQLite's 2 MB: an ingest touches the entry, key and time
            # b-trees of every feed it stores (measured 1.1x faster for new entries, 1.3x
            # for a refetch of known ones).
            db.execute("PRAGMA cache_size = -16384")
            self._migrate()

    def _use_wal(self, timeout: float) -> None:
        # The switch to WAL needs the file to itself, and SQLite does not run the busy
        # handler for it: runs that open a new store together would fail at once. WAL is
        # a lasting property of the file, so only a new store ever waits here.
        deadline = monotonic() + timeout
        delay = 0.001
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or monotonic() + delay > deadline:
                    raise
            sleep(delay)
            delay = min(delay * 2, 0.05)

    def _migrate(self) -> None:
        # An up-to-date store opens without the write lock, so `status` can read while
        # a fetch is writing.
        if self._conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        while True:
            with self._transaction() as db:
                # Read again inside the write lock: another process may have migrated
                # while we waited for it.
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version >= SCHEMA_VERSION:
                    return
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version + 1}")

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (equal to SCHEMA_VERSION once opened)."""
        with self._read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection; the store object is unusable afterwards."""
        with self._lock:
            # Statistics are an optimisation: never fail a close over them.
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA optimize")
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def vacuum(self) -> None:
        """Rebuild the file to reclaim free pages and fold the WAL back into it."""
        with self._read() as db:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_check(self) -> list[str]:
        """SQLite's own consistency check: `["ok"]` for a healthy file."""
        with self._read() as db:
            return [row[0] for row in db.execute("PRAGMA integrity_check")]

    # --- transactions and errors ---------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError):
            raise  # our bugs, not the user's file
        except sqlite3.DatabaseError as exc:
            raise StoreError(_describe(self.path, exc)) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that later
        # upgrades can fail at once with SQLITE_BUSY, bypassing the busy timeout.
        with self._lock, self._errors():
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # --- feeds ---------------------------------------------------------------------------

    def http_state(self, feed_id: str) -> tuple[str | None, str | None]:
        """The (ETag, Last-Modified) of the feed's last 200 response, for a conditional GET."""
        with self._read() as db:
            row = db.execute(
                "SELECT etag, last_modified FROM feeds WHERE id = ?", (feed_id,)
            ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def feed_health(self, feeds: Sequence[FeedSpec]) -> list[FeedHealth]:
        """One `FeedHealth` per configured feed, in order; status "never" if never fetched."""
        health: list[FeedHealth] = []
        with self._read() as db:
            # One statement for every feed (`status` reads this on each run); the newest
            # entry per feed is one seek in entries_feed_time.
            rows = {
                row[0]: row[1:]
                for row in db.execute(
                    "SELECT id, last_attempt, last_success, last_result, last_error,"
                    " consecutive_failures, etag, last_modified, next_retry, entries,"
                    " (SELECT max(time) FROM entries WHERE feed_id = feeds.id)"
                    " FROM feeds"
                )
            }
            for spec in feeds:
                row = rows.get(spec.id)
                if row is None:
                    health.append(FeedHealth(spec.id, spec.url, "never"))
                    continue
                attempt, success, result, error, failures, etag, modified, retry, count = row[:9]
                newest = row[9]
                status = "never" if attempt is None else "error" if result == "error" else "ok"
                health.append(
                    FeedHealth(
                        id=spec.id,
                        url=spec.url,
                        status=status,
                        last_attempt=_dt(attempt),
                        last_success=_dt(success),
                        last_error=error,
                        consecutive_failures=failures,
                        entries=count,
                        newest_entry=_dt(newest),
                        etag=etag,
                        last_modified=modified,
                        next_retry=_dt(retry),
                    )
                )
        return health

    def last_fetch_time(self) -> datetime | None:
        """When any feed was last attempted (success or not); None for a never-fetched store.

        Attempts, not successes: `status` refetches when this is old, and a run whose
        feeds all failed a minute ago should not be repeated on every invocation.
        """
        with self._read() as db:
            return _dt(db.execute("SELECT max(last_attempt) FROM feeds").fetchone()[0])

    def record_fetch(
        self,
        feed: FeedSpec,
        *,
        at: datetime,
        result: FetchResultKind,
        entries: Sequence[Entry] | PreparedEntries = (),
        matches: Mapping[str, Sequence[RuleMatch]] | None = None,
        rule_hashes: Mapping[tuple[str, str], str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        error: str | None = None,
        next_retry: datetime | None = None,
        feed_title: str | None = None,
    ) -> int:
        """Store one feed's fetch result and entries in one transaction; return how many are new.

        Entries are upserted by (feed, key): a changed title, summary, link, author,
        categories or date updates the row (keeping its id and first-seen time) instead of
        duplicating it. `matches` maps entry key -> the rule matches of that entry (absent
        key: no match) and is written for new and changed entries, with the hash from
        `rule_hashes`, which should hold every rule in force. Feed state: "new" and
        "unchanged" are 200s and replace the stored ETag / Last-Modified with the given
        ones; "not-modified" keeps them; both reset the failure count. "error" records
        `error` and `next_retry` and counts one more consecutive failure. `entries` may come
        as `prepare_entries(entries, matches)`, with `matches` left None.
        """
        if not isinstance(entries, PreparedEntries):
            entries = prepare_entries(entries, matches)
        now = _ts(at)
        hashes = dict(rule_hashes or {})
        with self._transaction() as db:
            validators, stored = self._feed_state(db, feed)
            new = 0
            if entries.rows:
                matched = entries.matches is not None
                store_was_empty = (
                    matched and db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None
                )
                new, touched = self._upsert_entries(db, feed.id, stored, now, entries, hashes)
                if touched:
                    self._after_matching(db, matched, hashes, store_was_empty)
            if result == "error":
                outcome = (
                    "last_result = 'error', last_error = ?,"
                    " consecutive_failures = consecutive_failures + 1, next_retry = ?"
                )
                values: tuple[Any, ...] = (
                    error or "unknown error",
                    _ts(next_retry) if next_retry else None,
                )
            else:
                outcome = (
                    "last_success = ?, last_result = ?, last_error = NULL,"
                    " consecutive_failures = 0, next_retry = NULL"
                )
                values = (now, result)
                if result != "not-modified":  # a 200: its validators (or their absence) are current
                    validators = (etag, last_modified)
            db.execute(
                "UPDATE feeds SET url = ?, spec_title = ?, etag = ?, last_modified = ?,"
                f" last_attempt = ?, title = coalesce(?, title), entries = entries + ?, {outcome}"
                " WHERE id = ?",
                (feed.url, feed.title, *validators, now, feed_title, new, *values, feed.id),
            )
        return new

    def _feed_state(
        self, db: sqlite3.Connection, feed: FeedSpec
    ) -> tuple[tuple[str | None, str | None], int]:
        """The feed's stored (ETag, Last-Modified) and entry count, adding its row if missing.

        The row is added first because entries refer to it; `record_fetch` writes the rest
        of it last, in one statement, once it knows how many entries were new.
        """
        row = db.execute(
            "SELECT url, etag, last_modified, entries FROM feeds WHERE id = ?", (feed.id,)
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO feeds (id, url, spec_title) VALUES (?, ?, ?)",
                (feed.id, feed.url, feed.title),
            )
            return (None, None), 0
        # Validators belong to a URL: after the watchlist points the feed elsewhere they
        # would only confuse the new server.
        return ((row[1], row[2]) if row[0] == feed.url else (None, None)), row[3]

    def _upsert_entries(
        self,
        db: sqlite3.Connection,
        feed_id: str,
        stored: int,
        now: str,
        entries: PreparedEntries,
        hashes: Mapping[tuple[str, str], str],
    ) -> tuple[int, int]:
        """Insert or update the entries of a feed holding `stored` of them already.

        Returns (new, new + changed).
        """
        keys = list(dict.fromkeys(row[0] for row in entries.rows))
        # key -> (id, title, summary, link, author, categories, published, first_seen)
        existing = _stored_entries(db, feed_id, keys, whole_feed=stored <= 2 * len(keys))

        matches = entries.matches
        next_id = 0
        inserts: dict[str, tuple[Any, ...]] = {}
        updates: list[tuple[Any, ...]] = []
        match_rows: dict[int, list[tuple[Any, ...]]] = {}
        new = touched = 0
        for row in entries.rows:
            key, content, story = row[0], row[1:7], row[7]
            old = existing.get(key)
            published = content[5]
            if old is not None and old[1:6] == content[:5] and _same_time(published, old[6]):
                continue
            if old is None:
                if not next_id:
                    # Row ids are assigned here so that new rows go in with one
                    # executemany: safe, as the transaction holds the write lock.
                    first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM entries")
                    next_id = first.fetchone()[0]
                entry_id, first_seen = next_id, now
                next_id += 1
                new += 1
                touched += 1
            else:
                entry_id, first_seen = old[0], old[7]
                if key not in inserts:  # stored by an earlier fetch, not this one
                    touched += 1
                    updates.append((story, *content, now, published or first_seen, entry_id))
            time = published or first_seen
            if old is None or key in inserts:
                inserts[key] = (entry_id, feed_id, key, story, *content, first_seen, now, time)
            existing[key] = (entry_id, *content, first_seen)
            found = matches.get(key) if matches is not None else None
            if found:
                title, link = content[0], content[2]
                tail = (story, feed_id, title, link, published is not None)
                match_rows[entry_id] = [
                    (item, time, entry_id, rule, hashes.get((item, rule)), hits, *tail)
                    for item, rule, hits in found
                ]
        if updates:
            db.executemany(
                "UPDATE entries SET story = ?, title = ?, summary = ?, link = ?, author = ?,"
                " categories = ?, published = ?, updated = ?, time = ? WHERE id = ?",
                updates,
            )
            # The old matches describe the old text: never keep them.
            db.executemany(
                "DELETE FROM matches WHERE entry_id = ?", [(row[-1],) for row in updates]
            )
        if inserts:
            db.executemany(
                "INSERT INTO entries (id, feed_id, key, story, title, summary, link, author,"
                " categories, published, first_seen, updated, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts.values(),
            )
        rows = [row for found in match_rows.values() for row in found]
        if rows:
            db.executemany(
                f"INSERT OR REPLACE INTO matches ({_MATCH_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return new, touched

    def _after_matching(
        self,
        db: sqlite3.Connection,
        matched: bool,
        hashes: Mapping[tuple[str, str], str],
        store_was_empty: bool,
    ) -> None:
        """Keep the rule_state invariant after new or changed entries were written."""
        if not matched:
            # Entries matched against no rule make every rule stale: each must be re-matched
            # over the whole history before it counts as fresh again.
            db.execute("DELETE FROM rule_state")
            return
        if store_was_empty:
            # Every stored entry is one of those just matched: exactly these rules are fresh.
            db.execute("DELETE FROM rule_state")
            db.executemany(
                "INSERT OR REPLACE INTO rule_state (item, rule, rule_hash) VALUES (?, ?, ?)",
                [(item, rule, h) for (item, rule), h in hashes.items()],
            )
            return
        # Otherwise only the rules these entries were matched with under another hash (or
        # not at all) are stale.
        stale = [
            (item, rule)
            for item, rule, stored in db.execute("SELECT item, rule, rule_hash FROM rule_state")
            if hashes.get((item, rule)) != stored
        ]
        if stale:
            db.executemany("DELETE FROM rule_state WHERE item = ? AND rule = ?", stale)

    # --- rules -----------------------------------------------------------------------------

    def stale_rules(self, rule_hashes: Mapping[tuple[str, str], str]) -> list[tuple[str, str]]:
        """The (item, rule) pairs, in the given order, whose stored matches need re-matching.

        Stale means the stored history was not matched entirely with the given hash: the
        rule was edited, is new, or entries arrived that were not matched against it.
        """
        with self._read() as db:
            stored = {
                (item, rule): h
                for item, rule, h in db.execute("SELECT item, rule, rule_hash FROM rule_state")
            }
        return [key for key, h in rule_hashes.items() if stored.get(key) != h]

    def replace_matches(
        self,
        item: str,
        rule: str,
        rule_hash: str,
        matches: Iterable[tuple[int, RuleMatch]],
    ) -> None:
        """Record the matches of one rule over the whole history, computed with `rule_hash`.

        One transaction: drops the rule's matches made with any other hash, writes the
        given (entry row id, match) pairs and marks the rule fresh. Matches already made
        with `rule_hash` are kept, so entries a concurrent fetch matched with the same
        rule after the caller read the history are not lost.
        """
        rows = [(m, entry_id) for entry_id, m in matches]
        with self._transaction() as db:
            db.execute(
                "DELETE FROM matches WHERE item = ? AND rule = ? AND rule_hash IS NOT ?",
                (item, rule, rule_hash),
            )
            db.executemany(
                f"INSERT OR REPLACE INTO matches ({_MATCH_COLUMNS})"
                " SELECT ?, time, id, ?, ?, ?, story, feed_id, title, link, published IS NOT NULL"
                " FROM entries WHERE id = ?",
                [(item, rule, rule_hash, _hits_json(m.hits), entry_id) for m, entry_id in rows],
            )
            db.execute(
                "INSERT OR REPLACE INTO rule_state (item, rule, rule_hash) VALUES (?, ?, ?)",
                (item, rule, rule_hash),
            )

    def iter_entries(
        self, feeds: Collection[str] | None = None
    ) -> Iterator[tuple[int, str, Entry]]:
        """Every stored entry as (row id, feed id, Entry), in row order, optionally of some feeds.

        Reads in pages, so the caller may write (e.g. `replace_matches`) while iterating.
        """
        where, params = "", []
        if feeds is not None:
            wanted = sorted(set(feeds))
            if not wanted:
                return
            where = f" AND feed_id IN ({','.join('?' * len(wanted))})"
            params = wanted
        sql = (
            "SELECT id, feed_id, key, title, summary, link, author, categories, published"
            f" FROM entries WHERE id > ?{where} ORDER BY id LIMIT {_BATCH * 4}"
        )
        last = 0
        while True:
            with self._read() as db:
                rows = db.execute(sql, (last, *params)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for row_id, feed_id, key, title, summary, link, author, cats, published in rows:
                entry = Entry(
                    key=key,
                    title=title,
                    summary=summary,
                    link=link,
                    author=author,
                    categories=tuple(json.loads(cats)) if cats != "[]" else (),
                    published=datetime.fromisoformat(published) if published else None,
                )
                yield row_id, feed_id, entry

    def iter_documents(
        self, feeds: Collection[str] | None = None
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """Every stored entry as (row id, fields) exactly as `rules.document` builds them.

        The feed title given to `document` is the one stored by the last fetch (else the
        watchlist's), which is what ingest matched with.
        """
        from catalysts.rules import document

        titles = self._feed_titles()
        for row_id, feed_id, entry in self.iter_entries(feeds):
            yield row_id, document(entry, feed_id, titles.get(feed_id))

    def _feed_titles(self) -> dict[str, str | None]:
        with self._read() as db:
            return {
                fid: title
                for fid, title in db.execute("SELECT id, coalesce(title, spec_title) FROM feeds")
            }

    # --- evidence --------------------------------------------------------------------------

    def evidence(
        self,
        items: Collection[str] | None = None,
        *,
        until: datetime,
        since: datetime | None = None,
        rules: Collection[str] | None = None,
        hits: bool = True,
    ) -> list[Evidence]:
        """Stored matches of the given items (all when None) with since <= time <= until.

        Time is the entry's published time, else its first-seen time (`dated` False).
        Newest first; ties broken by newest row first. `rules` ("signal", "confirm")
        narrows to those rules, e.g. every confirm ever but only recent signals.
        With `hits` False the evidence carries no `hits` and no `terms` (decoding them is
        most of the cost of a large read); `with_hits` fills them in for the few shown.
        """
        where = ["time <= ?"]
        params: list[Any] = [_ts(until)]
        if since is not None:
            where.append("time >= ?")
            params.append(_ts(since))
        if items is not None:
            wanted = list(dict.fromkeys(items))
            if not wanted:
                return []
            where.append(f"item IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        if rules is not None:
            kinds = list(dict.fromkeys(rules))
            if not kinds:
                return []
            where.append(f"rule IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        columns = "item, rule, entry_id, story, feed_id, title, link, time, dated"
        sql = (
            f"SELECT {columns}{', hits' if hits else ''}"
            f" FROM matches WHERE {' AND '.join(where)}"
            " ORDER BY time DESC, entry_id DESC, item, rule"
        )
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        if not hits:
            return _bare_evidence(rows)
        # Status reads the whole history on every run: decode each distinct hits list and
        # time once (they repeat across items and rules) and build rows positionally.
        decoded: dict[str, tuple[tuple[Hit, ...], tuple[str, ...]]] = {}
        times: dict[str, datetime] = {}
        out: list[Evidence] = []
        append = out.append
        for item, rule, entry_id, story, feed, title, link, time, dated, hits_json in rows:
            found = decoded.get(hits_json)
            if found is None:
                hits = _hits(hits_json)
                found = decoded[hits_json] = (hits, tuple(dict.fromkeys(h.term for h in hits)))
            when = times.get(time)
            if when is None:
                when = times[time] = datetime.fromisoformat(time)
            append(
                Evidence(
                    item,
                    rule,
                    entry_id,
                    story,
                    feed,
                    title,
                    link,
                    when,
                    bool(dated),
                    found[1],
                    found[0],
                )
            )
        return out

    def signal_history(
        self, items: Collection[str], *, before: datetime
    ) -> list[tuple[str, datetime, str, str]]:
        """The items' signal matches with time < before, as (item, time, story, feed id).

        Only what the status engine needs to replay a score (no title, link or hits), in
        the order of `evidence`: `evaluate_all(history=...)` reads long histories with it.
        """
        wanted = list(dict.fromkeys(items))
        if not wanted:
            return []
        sql = (
            "SELECT item, time, story, feed_id FROM matches"
            f" WHERE item IN ({','.join('?' * len(wanted))}) AND rule = 'signal' AND time < ?"
            " ORDER BY time DESC, entry_id DESC, item"
        )
        with self._read() as db:
            rows = db.execute(sql, (*wanted, _ts(before))).fetchall()
        parse = datetime.fromisoformat
        return [(item, parse(time), story, feed) for item, time, story, feed in rows]

    def with_hits(self, evidence: Iterable[Evidence]) -> list[Evidence]:
        """The same evidence with `hits` and `terms` read from the store where they are missing.

        For evidence read with `evidence(..., hits=False)`; one primary-key lookup each, so
        meant for the handful of rows a report shows. Evidence whose match row is gone (or
        that already has hits) is returned unchanged.
        """
        out: list[Evidence] = []
        with self._read() as db:
            for ev in evidence:
                if ev.hits:
                    out.append(ev)
                    continue
                row = db.execute(
                    "SELECT hits FROM matches"
                    " WHERE item = ? AND time = ? AND entry_id = ? AND rule = ?",
                    (ev.item, _ts(ev.time), ev.entry_id, ev.rule),
                ).fetchone()
                if row is None:
                    out.append(ev)
                    continue
                found = _hits(row[0])
                terms = tuple(dict.fromkeys(h.term for h in found))
                out.append(dataclasses.replace(ev, hits=found, terms=terms))
        return out

    def first_seen_between(self, after: datetime, until: datetime) -> set[int]:
        """Row ids of the entries first stored in (after, until]."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id FROM entries WHERE first_seen > ? AND first_seen <= ?",
                (_ts(after), _ts(until)),
            ).fetchall()
        return {row[0] for row in rows}

    def has_entries(self) -> bool:
        """Whether any entry is stored (cheaper than counting them)."""
        with self._read() as db:
            return db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is not None

    def entry_count(self) -> int:
        """How many entries the store holds, over all feeds."""
        with self._read() as db:
            return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])

    # --- history and digests ---------------------------------------------------------------

    def record_status_changes(self, changes: Sequence[StatusChange]) -> None:
        """Append status changes (with their evidence, copied) in one transaction.

        A change to the status an item already has as its newest record is skipped: two
        `status` runs at once both see the same change, and only the first records it.
        The check and the insert share one write transaction, so the race cannot slip in.
        """
        if not changes:
            return
        with self._transaction() as db:
            newest: dict[str, str | None] = {}
            rows = []
            for c in changes:
                if c.item not in newest:
                    newest[c.item] = _newest_status(db, c.item)
                if newest[c.item] == c.new:
                    continue
                newest[c.item] = c.new
                rows.append(
                    (
                        c.item,
                        _ts(c.at),
                        c.old,
                        c.new,
                        c.reason,
                        _dumps([_evidence_to_json(e) for e in c.evidence]),
                    )
                )
            db.executemany(
                "INSERT INTO status_changes (item, at, old, new, reason, evidence)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def status_changes(
        self, item: str | None = None, since: datetime | None = None
    ) -> list[StatusChange]:
        """Recorded status changes, oldest first; of one item and/or at or after `since`."""
        where: list[str] = []
        params: list[Any] = []
        if item is not None:
            where.append("item = ?")
            params.append(item)
        if since is not None:
            where.append("at >= ?")
            params.append(_ts(since))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            rows = db.execute(
                "SELECT item, at, old, new, reason, evidence FROM status_changes"
                f"{clause} ORDER BY at, id",
                params,
            ).fetchall()
        return [
            StatusChange(
                item=row_item,
                at=datetime.fromisoformat(at),
                old=old,
                new=new,
                reason=reason,
                evidence=tuple(_evidence_from_json(e) for e in json.loads(evidence)),
            )
            for row_item, at, old, new, reason, evidence in rows
        ]

    def last_statuses(self, items: Iterable[str]) -> dict[str, Status]:
        """The newest recorded status of each given item that has one (item -> status).

        One index lookup per item, so it costs the same however long the history grows.
        """
        out: dict[str, Status] = {}
        with self._read() as db:
            for item in dict.fromkeys(items):
                status = _newest_status(db, item)
                if status is not None:
                    out[item] = status  # type: ignore[assignment]
        return out

    # --- cache -------------------------------------------------------------------------------

    def cached(self, name: str, key: str) -> str | None:
        """The value stored under `name` if it was stored with this `key`, else None."""
        with self._read() as db:
            row = db.execute(
                "SELECT value FROM cache WHERE name = ? AND key = ?", (name, key)
            ).fetchone()
        return row[0] if row else None

    def cache(self, name: str, key: str, value: str) -> None:
        """Store `value` under `name` (replacing any older one), derived from `key`."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache (name, key, value) VALUES (?, ?, ?)",
                (name, key, value),
            )

    def record_digest(self, at: datetime, statuses: Mapping[str, str]) -> None:
        """Remember that a digest was made at `at` with these item -> status values."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO digests (at, statuses) VALUES (?, ?)",
                (_ts(at), _dumps(dict(statuses))),
            )

    def last_digest(self) -> tuple[datetime, dict[str, str]] | None:
        """The latest digest's time and item -> status; None before the first digest."""
        with self._read() as db:
            row = db.execute(
                "SELECT at, statuses FROM digests ORDER BY at DESC, id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(row[0]), dict(json.loads(row[1]))


# --- helpers ---------------------------------------------------------------------------------


def _ts(dt: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so text comparison is time comparison. Naive means UTC.

    The text of `isoformat(timespec="microseconds")`, built from a table of two-digit
    numbers: `isoformat` goes through printf-style formatting and costs twice as much,
    which shows when a fetch stores thousands of dated entries.
    """
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if dt.year < 1000:  # four digits only from year 1000 on
        return dt.isoformat(timespec="microseconds")
    two = _TWO_DIGITS
    return (
        f"{dt.year}-{two[dt.month]}-{two[dt.day]}T{two[dt.hour]}:{two[dt.minute]}:"
        f"{two[dt.second]}.{str(1_000_000 + dt.microsecond)[1:]}+00:00"
    )


def _stored_entries(
    db: sqlite3.Connection, feed_id: str, keys: Sequence[str], *, whole_feed: bool
) -> dict[str, tuple[Any, ...]]:
    """The stored rows of a feed's entries with these keys (others may come along), by key.

    A feed that holds little more than the fetch is read whole, one range of an index on
    feed_id: cheaper than probing each key. A long history is probed key by key instead,
    so that a daily fetch costs the same in its tenth year as in its first.
    """
    columns = "key, id, title, summary, link, author, categories, published, first_seen"
    if whole_feed:
        rows = db.execute(f"SELECT {columns} FROM entries WHERE feed_id = ?", (feed_id,))
        return {row[0]: row[1:] for row in rows}
    existing: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(keys), _BATCH):
        chunk = keys[start : start + _BATCH]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(
            f"SELECT {columns} FROM entries WHERE feed_id = ? AND key IN ({marks})",
            (feed_id, *chunk),
        ):
            existing[row[0]] = row[1:]
    return existing


def _same_time(published: str | None, stored: str | None) -> bool:
    """Whether two times written by `_ts` (or None) are the same; a stored text in another
    spelling of the same instant counts as the same."""
    if published == stored:
        return True
    if published is None or stored is None:
        return False
    return datetime.fromisoformat(published) == datetime.fromisoformat(stored)


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _dumps(value: object) -> str:
    return _ENCODER.encode(value)


def _hits_json(hits: Sequence[Hit]) -> str:
    return _dumps([[h.term, h.field, h.start, h.end] for h in hits])


def _hits(text: str) -> tuple[Hit, ...]:
    return tuple(Hit(term, field, start, end) for term, field, start, end in json.loads(text))


def _bare_evidence(rows: Iterable[tuple[Any, ...]]) -> list[Evidence]:
    """Evidence without hits or terms from (item, rule, entry_id, story, feed, title, link,
    time, dated) rows: positional construction and one parse per distinct time string."""
    times: dict[str, datetime] = {}
    out: list[Evidence] = []
    append = out.append
    parse = datetime.fromisoformat
    for item, rule, entry_id, story, feed, title, link, time, dated in rows:
        when = times.get(time)
        if when is None:
            when = times[time] = parse(time)
        append(Evidence(item, rule, entry_id, story, feed, title, link, when, bool(dated)))
    return out


def _evidence_to_json(e: Evidence) -> dict[str, Any]:
    return {
        "item": e.item,
        "rule": e.rule,
        "entry_id": e.entry_id,
        "story": e.story,
        "feed": e.feed,
        "title": e.title,
        "link": e.link,
        "time": _ts(e.time),
        "dated": e.dated,
        "terms": list(e.terms),
        "hits": [[h.term, h.field, h.start, h.end] for h in e.hits],
    }


def _evidence_from_json(d: Mapping[str, Any]) -> Evidence:
    return Evidence(
        item=d["item"],
        rule=d["rule"],
        entry_id=int(d["entry_id"]),
        story=d["story"],
        feed=d["feed"],
        title=d["title"],
        link=d["link"],
        time=datetime.fromisoformat(d["time"]),
        dated=bool(d["dated"]),
        terms=tuple(d["terms"]),
        hits=tuple(Hit(t, f, s, e) for t, f, s, e in d["hits"]),
    )


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return any(word in str(exc).lower() for word in ("locked", "busy"))


def _describe(path: Path, exc: sqlite3.Error) -> str:
    """One line saying what is wrong with the store file, from a sqlite3 error."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    low = reason.lower()
    if _is_busy(exc):
        return f"store {path} is locked by another catalysts run; try again when it finishes"
    if "not a database" in low:
        return f"store {path} is not a SQLite database (file is not a database)"
    if "malformed" in low or "corrupt" in low:
        return (
            f"store {path} is corrupt ({reason}); move it away and run `catalysts fetch` "
            "to start a new one"
        )
    if "readonly" in low or "read-only" in low:
        return f"store {path} is read-only ({reason})"
    if "is full" in low:
        return f"store {path}: the disk is full ({reason})"
    if "unable to open" in low:
        return f"cannot open store {path} ({reason})"
    return f"store {path}: {reason}"


def _newest_status(db: sqlite3.Connection, item: str) -> str | None:
    """The newest recorded status of one item (one index lookup), or None."""
    row = db.execute(
        "SELECT new FROM status_changes WHERE item = ? ORDER BY at DESC, id DESC LIMIT 1",
        (item,),
    ).fetchone()
    return row[0] if row else None
