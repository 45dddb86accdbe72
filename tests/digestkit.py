"""Builders for digest tests: a small synthetic watchlist, evidence and statuses.

Statuses are built by hand (not by the status engine) where a test pins the digest's own
behaviour, so a change of scoring elsewhere does not move these tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from catalysts.models import (
    Evidence,
    FeedHealth,
    FeedSpec,
    ItemSpec,
    ItemStatus,
    Settings,
    Status,
    StatusChange,
    Thesis,
    Watchlist,
)

AT = datetime(2025, 12, 13, 6, 23, tzinfo=timezone.utc)
SINCE = AT - timedelta(days=1)

FEEDS = (
    FeedSpec("wire", "https://wire.example/rss"),
    FeedSpec("filings", "https://filings.example/rss", weight=1.5),
    FeedSpec("blog", "https://blog.example/feed"),
)


def item(
    id: str, title: str, kind: str = "catalyst", thesis: str = "crypto-ai", **kw: object
) -> ItemSpec:
    return ItemSpec(id=id, thesis=thesis, kind=kind, title=title, signal=id, **kw)  # type: ignore[arg-type]


ITEMS = (
    item("openai-ipo", "OpenAI IPO", confirm='"files for IPO"'),
    item("vc-entry", "Top VCs enter crypto AI"),
    item("us-policy", "Hostile US regulation", kind="risk", thesis="risks"),
    item("talent", "ML talent shortage", kind="risk", thesis="risks"),
)


def watchlist(items: Sequence[ItemSpec] = ITEMS) -> Watchlist:
    theses = (
        Thesis(
            "crypto-ai", "Crypto x AI", items=tuple(i for i in items if i.thesis == "crypto-ai")
        ),
        Thesis(
            "risks", "What would break it", items=tuple(i for i in items if i.thesis == "risks")
        ),
    )
    return Watchlist(path="watchlist.yaml", settings=Settings(), feeds=FEEDS, theses=theses)


_ids = iter(range(1, 10**9))


def reset_ids() -> None:
    """Number evidence from 1 again, so golden output does not depend on test order."""
    global _ids
    _ids = iter(range(1, 10**9))


def ev(
    item: str,
    title: str,
    hours_ago: float,
    *,
    feed: str = "wire",
    rule: str = "signal",
    link: str | None = "auto",
    story: str | None = None,
    dated: bool = True,
    at: datetime = AT,
) -> Evidence:
    n = next(_ids)
    return Evidence(
        item=item,
        rule=rule,  # type: ignore[arg-type]
        entry_id=n,
        story=story or f"story-{n}",
        feed=feed,
        title=title,
        link=f"https://{feed}.example/{n}" if link == "auto" else link,
        time=at - timedelta(hours=hours_ago),
        dated=dated,
        terms=(item,),
    )


def status(
    spec: ItemSpec,
    st: Status = "quiet",
    score: float = 0.0,
    *,
    stale: bool = False,
    since: datetime | None = None,
    evidence: Sequence[Evidence] = (),
    at: datetime = AT,
) -> ItemStatus:
    return ItemStatus(
        item=spec,
        at=at,
        status=st,
        stale=stale,
        score=score,
        threshold=2.0,
        sources=1 if evidence else 0,
        evidence=tuple(evidence),
        since=since,
        trend=(0.0,) * 13 + (score,),
    )


def change(
    item: str, old: Status | None, new: Status, reason: str, evidence: Sequence[Evidence] = ()
) -> StatusChange:
    return StatusChange(item=item, at=AT, old=old, new=new, reason=reason, evidence=tuple(evidence))


def health(
    id: str,
    status: str = "ok",
    *,
    error: str | None = None,
    failures: int = 0,
    last_success: datetime | None = AT - timedelta(hours=1),
) -> FeedHealth:
    url = next(f.url for f in FEEDS if f.id == id) if id in {f.id for f in FEEDS} else ""
    return FeedHealth(
        id=id,
        url=url,
        status=status,  # type: ignore[arg-type]
        last_success=last_success,
        last_error=error,
        consecutive_failures=failures,
    )
