"""Durations, dates and the one clock read.

Everything here is pure except `utcnow()`, which only CLI code calls: the rest of
catalysts takes `now` as an argument so that `--at DATE` and tests can pin time. Every
datetime that leaves this module is timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

# Units in the order they must appear: "1d12h" is fine, "12h1d" is not (it reads like a typo).
_UNITS: tuple[tuple[str, str], ...] = (
    ("w", "weeks"),
    ("d", "days"),
    ("h", "hours"),
    ("m", "minutes"),
    ("s", "seconds"),
)
_DURATION = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?",
    re.ASCII,
)
# The grammar shared with the JSON Schema, so editors reject what the loader rejects.
DURATION_PATTERN = r"^(?=\d)(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATE = re.compile(DATE_PATTERN, re.ASCII)
_TIME_FORMS = "expected now, today, yesterday, YYYY-MM-DD or an ISO 8601 datetime"
# Bounded so that `time - duration` can never leave datetime's range.
MAX_DURATION = timedelta(days=36_525)
# Times outside these years are typos; bounding them keeps window arithmetic in range.
MIN_YEAR, MAX_YEAR = 1900, 9000


def parse_duration(text: str) -> timedelta:
    """A duration such as "30d", "12h", "2w", "90m" or "1d12h" (units w, d, h, m, s).

    Units appear at most once, largest first. Raises ValueError on anything else,
    including durations too large to represent.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 30d, got {text!r}")
    value = text.strip()
    found = _DURATION.fullmatch(value) if value else None
    if found is None or not any(found.groupdict().values()):
        raise ValueError(f"bad duration {text!r}: expected a number and a unit, like 30d or 1d12h")
    parts = {name: int(found.group(unit) or 0) for unit, name in _UNITS}
    too_large = f"duration {text!r} is too large (at most 100 years)"
    try:
        duration = timedelta(**parts)
    except OverflowError:
        raise ValueError(too_large) from None
    if duration > MAX_DURATION:
        raise ValueError(too_large)
    return duration


def parse_date(text: str) -> date:
    """A calendar date written YYYY-MM-DD; raises ValueError otherwise."""
    value = text.strip() if isinstance(text, str) else ""
    if not _DATE.fullmatch(value):
        raise ValueError(f"bad date {text!r}: expected YYYY-MM-DD, like 2025-12-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"bad date {text!r}: no such day") from None


def _in_range(when: datetime, text: str) -> datetime:
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise ValueError(f"time {text!r} is out of range (years {MIN_YEAR} to {MAX_YEAR})")
    return when


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time: "now", "today", "yesterday", "2025-12-13" or an ISO 8601 datetime.

    A date means midnight UTC at its start; a datetime without an offset is UTC. The result
    is aware UTC. `now` is only read for the relative words. Raises ValueError otherwise.
    """
    value = text.strip() if isinstance(text, str) else ""
    word = value.lower()
    if word == "now":
        return as_utc(now)
    if word in ("today", "yesterday"):
        start = datetime.combine(as_utc(now).date(), time(), tzinfo=timezone.utc)
        return start if word == "today" else start - timedelta(days=1)
    if _DATE.fullmatch(value):
        return _in_range(datetime.combine(parse_date(value), time(), tzinfo=timezone.utc), text)
    iso_text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    # Python 3.10's fromisoformat wants a "T" or a space between date and time, as we do.
    if len(iso_text) < 11 or iso_text[10] not in "Tt ":
        raise ValueError(f"bad time {text!r}: {_TIME_FORMS}")
    try:
        parsed = datetime.fromisoformat(iso_text[:10] + "T" + iso_text[11:])
    except ValueError:
        raise ValueError(f"bad time {text!r}: {_TIME_FORMS}") from None
    return _in_range(as_utc(parsed), text)


def as_utc(dt: datetime) -> datetime:
    """The same instant as an aware UTC datetime; a naive datetime is taken to be UTC."""
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def utcnow() -> datetime:
    """The current time, aware UTC. The one clock read: only CLI code calls it."""
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC to the second, like "2025-12-13T00:00:00Z"; None stays None."""
    if dt is None:
        return None
    # Not strftime: "%Y" drops the zero padding of years before 1000 on glibc.
    return as_utc(dt).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
