"""Durations, dates and times: the grammar users type in the watchlist and on the command line."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalysts.timeutil import as_utc, iso, parse_date, parse_duration, parse_when, utcnow

NOW = datetime(2025, 12, 13, 15, 30, 45, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 7d ", timedelta(days=7)),
        ("0d", timedelta(0)),
    ],
)
def test_parse_duration_accepts_units_largest_first(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "30", "d", "1.5d", "-1d", "12h1d", "1d1d", "30 d", "1y", "3D", "１d", "99999999999w"],
)
def test_parse_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500), st.integers(0, 500))
def test_parse_duration_round_trips_its_own_notation(w: int, d: int, h: int, m: int) -> None:
    text = "".join(f"{n}{u}" for n, u in ((w, "w"), (d, "d"), (h, "h"), (m, "m")) if n) or "0s"
    assert parse_duration(text) == timedelta(weeks=w, days=d, hours=h, minutes=m)


def test_parse_date() -> None:
    assert parse_date("2025-12-31") == date(2025, 12, 31)
    for bad in ("2025-13-01", "2025-02-30", "31/12/2025", "2025-1-1", "tomorrow", ""):
        with pytest.raises(ValueError, match="date"):
            parse_date(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("today", datetime(2025, 12, 13, tzinfo=timezone.utc)),
        ("yesterday", datetime(2025, 12, 12, tzinfo=timezone.utc)),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=timezone.utc)),
        ("2025-06-01T08:15:00", datetime(2025, 6, 1, 8, 15, tzinfo=timezone.utc)),
        ("2025-06-01 08:15", datetime(2025, 6, 1, 8, 15, tzinfo=timezone.utc)),
        ("2025-06-01T08:15:00Z", datetime(2025, 6, 1, 8, 15, tzinfo=timezone.utc)),
        ("2025-06-01T10:15:00+02:00", datetime(2025, 6, 1, 8, 15, tzinfo=timezone.utc)),
        ("2025-06-01T00:30:00-05:00", datetime(2025, 6, 1, 5, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    parsed = parse_when(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is timezone.utc


def test_parse_when_reads_now_only_for_relative_words() -> None:
    naive_now = datetime(2025, 12, 13, 1, 0)
    assert parse_when("now", naive_now) == datetime(2025, 12, 13, 1, 0, tzinfo=timezone.utc)
    later = NOW + timedelta(days=400)
    assert parse_when("2025-06-01", later) == parse_when("2025-06-01", NOW)


@pytest.mark.parametrize("text", ["", "soon", "2025-06", "2025-06-01T25:00", "06/01/2025", "7d"])
def test_parse_when_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"time|date"):
        parse_when(text, NOW)


def test_iso_is_utc_to_the_second() -> None:
    assert iso(None) is None
    assert iso(datetime(2025, 12, 13, tzinfo=timezone.utc)) == "2025-12-13T00:00:00Z"
    assert iso(datetime(2025, 12, 13, 1, 2, 3, 999_999)) == "2025-12-13T01:02:03Z"  # naive = UTC
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2025, 12, 13, 1, 0, tzinfo=plus_two)) == "2025-12-12T23:00:00Z"


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(9000, 12, 31, 23, 59, 59),
        timezones=st.just(timezone.utc),
    ).map(lambda d: d.replace(microsecond=0))
)
def test_iso_and_parse_when_round_trip(moment: datetime) -> None:
    assert parse_when(iso(moment) or "", NOW) == moment


def test_utcnow_and_as_utc_are_aware_utc() -> None:
    assert utcnow().tzinfo is timezone.utc
    assert as_utc(datetime(2025, 1, 1)).tzinfo is timezone.utc


@pytest.mark.parametrize("text", ["0001-01-01", "9999-12-31", "0001-01-02T00:00:00Z"])
def test_times_outside_sane_years_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_when(text, NOW)


@pytest.mark.parametrize("text", ["999999d", "5300w", "99999999999999999999d"])
def test_durations_beyond_a_century_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration(text)
