"""The repository's own watchlist.yaml: what the README quickstart and the digest workflow run."""

from __future__ import annotations

from pathlib import Path

from catalysts.schema import schema_json
from catalysts.watchlist import check_watchlist

ROOT = Path(__file__).resolve().parents[1]


def test_repository_watchlist_is_valid_without_warnings() -> None:
    checked = check_watchlist(ROOT / "watchlist.yaml")
    assert checked.warnings == ()
    assert {t.id for t in checked.watchlist.theses} >= {"crypto-ai"}


def test_repository_schema_copy_is_current() -> None:
    # Editors read ./watchlist.schema.json through the modeline; regenerate it with
    # `catalysts schema > watchlist.schema.json` when the schema changes.
    assert (ROOT / "watchlist.schema.json").read_text(encoding="utf-8") == schema_json()


def test_repository_watchlist_is_the_shipped_starter() -> None:
    # One thesis file, two places: what `catalysts init` writes and what the README and the
    # digest workflow run. An edit to one must be copied to the other.
    shipped = ROOT / "src" / "catalysts" / "data" / "watchlist.yaml"
    assert (ROOT / "watchlist.yaml").read_bytes() == shipped.read_bytes()
