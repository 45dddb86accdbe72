"""`catalysts fetch` and `catalysts feeds`: output, --json contracts and exit codes."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from catalysts.cli import main
from catalysts.models import FeedHealth, FetchReport

GOOD = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Good</title>'
    b"<item><guid>g1</guid><title>OpenAI files for IPO</title><link>https://e.com/1</link>"
    b"<pubDate>Wed, 19 Aug 2026 10:00:00 GMT</pubDate></item>"
    b"<item><guid>g2</guid><title>Rain again</title><link>https://e.com/2</link></item>"
    b"</channel></rss>"
)
HTML = b"<!DOCTYPE html><html><body><h1>Blocked</h1></body></html>"


def write_watchlist(tmp_path: Path, feeds: dict[str, bytes | None]) -> Path:
    """A watchlist whose feeds are local files (None: a path that does not exist)."""
    lines = ["version: 1", "feeds:"]
    for feed_id, data in feeds.items():
        path = tmp_path / f"{feed_id}.xml"
        if data is not None:
            path.write_bytes(data)
        lines += [f"  - id: {feed_id}", f"    url: {json.dumps(str(path))}", "    tags: [news]"]
    lines += [
        "theses:",
        "  - id: ai",
        "    title: AI",
        "    items:",
        "      - id: openai-ipo",
        "        kind: catalyst",
        "        title: OpenAI IPO",
        "        signal: 'OpenAI AND IPO'",
        "        confirm: '\"files for IPO\"'",
    ]
    path = tmp_path / "watchlist.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)  # main returns normally on success
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CATALYSTS_WATCHLIST", raising=False)
    monkeypatch.delenv("CATALYSTS_DB", raising=False)
    return tmp_path


def test_fetch_json_follows_the_contract(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "broken": HTML})
    db = env / "c.db"
    code, out, _ = run(capsys, "fetch", "--json", "-w", str(wl), "--db", str(db))
    assert code == 0
    doc = json.loads(out)
    feeds = {f["id"]: f for f in doc["feeds"]}
    assert list(feeds) == ["good", "broken"]
    assert feeds["good"]["result"] == "new" and feeds["good"]["new_entries"] == 2
    assert feeds["good"]["error"] is None
    assert feeds["broken"]["result"] == "error" and feeds["broken"]["new_entries"] == 0
    assert "HTML" in feeds["broken"]["error"]
    assert all(isinstance(f["seconds"], float) for f in doc["feeds"])
    assert isinstance(doc["seconds"], float)

    code, out, _ = run(capsys, "fetch", "--json", "-w", str(wl), "--db", str(db), "--force")
    again = {f["id"]: f for f in json.loads(out)["feeds"]}
    assert again["good"]["result"] in ("unchanged", "not-modified")
    assert again["good"]["new_entries"] == 0


def test_fetch_summary_names_every_failing_feed_and_why(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "broken": HTML, "gone": None})
    code, out, err = run(capsys, "fetch", "-w", str(wl), "--db", str(env / "c.db"))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "new" in rows["good"]
    assert "error" in rows["broken"] and "HTML" in rows["broken"]
    assert "error" in rows["gone"]
    assert "3 feeds: 1 new, 0 unchanged, 0 not modified, 2 errors; 2 new entries" in out
    assert "\x1b" not in out + err  # not a terminal: no colour, no progress bar


def test_fetch_exits_3_when_every_feed_fails(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"broken": HTML, "gone": None})
    code, _, err = run(capsys, "fetch", "-w", str(wl), "--db", str(env / "c.db"))
    assert code == 3
    assert "every feed" in err and "broken" in err and "gone" in err


def test_fetch_strict_exits_3_when_any_feed_fails(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "broken": HTML})
    db = str(env / "c.db")
    code, out, err = run(capsys, "fetch", "--strict", "--json", "-w", str(wl), "--db", db)
    assert code == 3
    assert json.loads(out)["feeds"][0]["result"] == "new"  # the report is still printed
    assert "broken" in err and "good" not in err.split(":", 2)[-1]


def test_fetch_only_selects_by_id_or_tag_and_rejects_unknown(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "other": GOOD})
    db = str(env / "c.db")
    code, out, _ = run(capsys, "fetch", "--json", "--only", "other", "-w", str(wl), "--db", db)
    assert code == 0
    assert [f["id"] for f in json.loads(out)["feeds"]] == ["other"]
    code, out, _ = run(capsys, "fetch", "--json", "--only", "news", "-w", str(wl), "--db", db)
    assert [f["id"] for f in json.loads(out)["feeds"]] == ["good", "other"]

    code, out, err = run(capsys, "fetch", "--only", "nope", "-w", str(wl), "--db", db)
    assert code == 1
    assert out == ""
    assert "'nope'" in err and "good, other" in err
    assert len(err.strip().splitlines()) == 1


def test_fetch_invalid_watchlist_exits_1_and_touches_no_store(env: Path, capsys) -> None:
    wl = env / "watchlist.yaml"
    wl.write_text("version: 1\nfeeds: [\n")
    db = env / "c.db"
    code, _, err = run(capsys, "fetch", "-w", str(wl), "--db", str(db))
    assert code == 1
    assert "watchlist.yaml" in err
    assert not db.exists()


def test_fetch_store_from_a_newer_version_exits_4(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD})
    db = env / "c.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 9999")
    code, out, err = run(capsys, "fetch", "-w", str(wl), "--db", str(db))
    assert code == 4
    assert out == ""
    assert err.startswith("catalysts: ")


def test_feeds_json_reports_health_of_every_feed(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "broken": HTML})
    db = str(env / "c.db")
    run(capsys, "fetch", "--only", "good", "--only", "broken", "-w", str(wl), "--db", db)
    # Add a feed after the fetch: it has never been fetched.
    text = wl.read_text().replace(
        "theses:", f"  - id: later\n    url: {json.dumps(str(env / 'l.xml'))}\ntheses:"
    )
    wl.write_text(text)
    code, out, _ = run(capsys, "feeds", "--json", "-w", str(wl), "--db", db)
    assert code == 0
    feeds = {f["id"]: f for f in json.loads(out)["feeds"]}
    assert list(feeds) == ["good", "broken", "later"]
    good, broken, later = feeds["good"], feeds["broken"], feeds["later"]
    assert (good["status"], good["entries"], good["last_error"]) == ("ok", 2, None)
    assert good["last_success"].endswith("Z")
    assert good["url"].endswith("good.xml")
    assert broken["status"] == "error" and "HTML" in broken["last_error"]
    assert broken["consecutive_failures"] == 1 and broken["next_retry"].endswith("Z")
    assert broken["last_success"] is None
    assert (later["status"], later["entries"], later["last_success"]) == ("never", 0, None)


def test_feeds_table_shows_status_and_reason(env: Path, capsys) -> None:
    wl = write_watchlist(env, {"good": GOOD, "broken": HTML})
    db = str(env / "c.db")
    run(capsys, "fetch", "-w", str(wl), "--db", db)
    code, out, _ = run(capsys, "feeds", "-w", str(wl), "--db", db)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert " ok " in rows["good"] and "ago" in rows["good"]
    assert " error " in rows["broken"] and " 1 " in rows["broken"]
    assert "HTML" in rows["broken:"]  # the reason follows the table, one line per feed
    assert "good:" not in rows


def test_feeds_table_keeps_headers_and_cells_whole_on_80_columns(
    env: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_id = "federal-register-crypto-long"
    wl = write_watchlist(env, {"good": GOOD, long_id: HTML})
    db = str(env / "c.db")
    run(capsys, "fetch", "-w", str(wl), "--db", db)
    from catalysts.render import console

    monkeypatch.setenv("COLUMNS", "80")
    console.stdout.cache_clear()  # the console reads COLUMNS once
    try:
        code, out, _ = run(capsys, "feeds", "-w", str(wl), "--db", db)
    finally:
        console.stdout.cache_clear()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "feed", "status", "last", "ok", "fails", "entries", "newest", "validators", "retry"
    ]  # fmt: skip
    assert all(len(line) <= 80 for line in lines if not line.startswith(long_id + ":"))
    row = next(line for line in lines if line.startswith("federal-"))
    assert "…" in row and row.split()[1:3] == ["error", "never"]  # only the id gives way
    assert f"{long_id}: " in out  # the reason line keeps the whole id


def test_summary_strips_escape_sequences_from_reasons(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalysts.render import fetch as render

    monkeypatch.setenv("COLUMNS", "200")
    hostile = "HTTP 500 \x1b]52;c;cm0gLXJmIH4=\x07[link=https://evil]x[/link]\x1b[31mred"
    render.fetch_summary([FetchReport("f", "error", error=hostile, seconds=0.5)], 0.5)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "[link=https://evil]x[/link]" in out  # shown literally, never as markup


def test_feed_age_and_conditional_state_helpers() -> None:
    from catalysts.render import fetch as render

    now = datetime(2026, 8, 20, 12, tzinfo=timezone.utc)
    assert render.age(None, now) == "never"
    assert render.age(now - timedelta(minutes=5), now) == "5m ago"
    assert render.age(now - timedelta(days=3), now) == "3d ago"
    assert render.until(now + timedelta(hours=3), now) == "in 3h"
    assert render.until(now - timedelta(hours=3), now) == ""
    h = FeedHealth("f", "u", "ok", etag='"x"', last_modified=None)
    assert render.conditional(h) == "etag"
    assert render.conditional(FeedHealth("f", "u", "never")) == "-"


def test_a_leniently_read_feed_is_stored_and_its_warning_reported(env: Path, capsys) -> None:
    lenient = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>caf&eacute; &bull; ok</title><guid>1</guid></item></channel></rss>"
    )
    wl = write_watchlist(env, {"good": GOOD, "lenient": lenient})
    db = env / "c.db"
    code, out, _ = run(capsys, "fetch", "--json", "-w", str(wl), "--db", str(db))
    assert code == 0
    feeds = {f["id"]: f for f in json.loads(out)["feeds"]}
    assert feeds["lenient"]["result"] == "new" and feeds["lenient"]["error"] is None
    assert "undefined entity" in feeds["lenient"]["warning"]
    assert feeds["good"]["warning"] is None

    code, out, _ = run(capsys, "fetch", "-w", str(wl), "--db", str(db), "--force")
    assert code == 0
    assert "undefined entity" in out  # the table shows it too
