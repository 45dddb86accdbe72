"""Golden digests: synthetic data in, the exact Markdown (and JSON) out.

Regenerate after an intended change with `CATALYSTS_UPDATE_GOLDEN=1 pytest
tests/test_digest_golden.py`, then read the diff of `tests/golden/` before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from catalysts.digest import Digest, build_digest, digest_json, render_markdown
from digestkit import (
    AT,
    ITEMS,
    SINCE,
    change,
    ev,
    health,
    item,
    reset_ids,
    status,
    watchlist,
)
from mdcheck import problems

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CATALYSTS_UPDATE_GOLDEN") == "1"


def busy_day() -> Digest:
    """A morning with a trigger, a new building item, a hostile feed and a dead source."""
    reset_ids()
    specs = {i.id: i for i in ITEMS}
    expired = item("eth-etf", "Ether ETF approved by mid-2025", by=AT.date() - timedelta(days=2))
    items = (*ITEMS, expired)
    confirm = ev(
        "openai-ipo",
        "OpenAI files for IPO, S-1 shows $12B revenue",
        3,
        rule="confirm",
        feed="filings",
        story="ipo",
    )
    echo = ev("openai-ipo", "OpenAI files for IPO", 2, feed="wire", story="ipo")
    vc = [
        ev("vc-entry", "Sequoia leads $40M round in crypto AI start-up", 5, feed="wire"),
        ev("vc-entry", "Lightspeed backs decentralised training network", 9, feed="blog"),
        ev("vc-entry", "Accel partner: 'agents need blockspace'", 20, feed="wire", dated=False),
    ]
    hostile = ev(
        "us-policy",
        "@sec_gov #1 <img src=x onerror=alert(1)> ![pixel](https://t.example/p.png) "
        "[win](javascript:alert(1)) | </details> see github.com/o/r/issues/9",
        6,
        feed="blog",
        link="https://github.com/owner/repo/issues/9",
    )
    statuses = [
        status(
            specs["openai-ipo"],
            "triggered",
            1.8,
            since=AT - timedelta(hours=3),
            evidence=[confirm, echo],
        ),
        status(specs["vc-entry"], "building", 2.6, since=AT - timedelta(hours=5), evidence=vc),
        status(specs["us-policy"], "quiet", 0.9, evidence=[hostile]),
        status(specs["talent"], "quiet", 0.0, stale=True),
        status(expired, "expired", 0.0, since=AT - timedelta(days=1)),
    ]
    changes = [
        change(
            "openai-ipo",
            "building",
            "triggered",
            "confirm matched: OpenAI files for IPO, S-1 shows $12B revenue",
            [confirm],
        ),
        change("vc-entry", "quiet", "building", "score 2.6 >= 2.0 from 3 stories", vc),
        change("eth-etf", "quiet", "expired", f"deadline {expired.by} passed"),
    ]
    feeds = [
        health("wire"),
        health(
            "filings",
            "error",
            error="HTTP 503 Service Unavailable (after 3 attempts)",
            failures=2,
            last_success=AT - timedelta(days=1, hours=2),
        ),
        health("blog", last_success=AT - timedelta(days=4)),
    ]
    scores = {
        "openai-ipo": tuple(round(0.1 * d, 2) for d in range(30)),
        "vc-entry": tuple(0.0 if d < 25 else 0.6 * (d - 24) for d in range(30)),
        "us-policy": (0.0,) * 29 + (0.9,),
        "talent": (0.0,) * 30,
    }
    return build_digest(
        watchlist(items),
        statuses,
        changes,
        [confirm, echo, *vc, hostile],
        feeds,
        since=SINCE,
        now=AT,
        since_label="last digest",
        scores=scores,
    )


def quiet_day() -> Digest:
    return build_digest(
        watchlist(),
        [status(i) for i in ITEMS],
        [],
        [],
        [health("wire"), health("filings"), health("blog")],
        since=SINCE,
        now=AT,
        since_label="last digest",
    )


CASES = {"busy-day": busy_day, "quiet-day": quiet_day}


def _check(path: Path, actual: str) -> None:
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path.name} is missing; run with CATALYSTS_UPDATE_GOLDEN=1")
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"differs from {path.name}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_markdown_matches_golden(name: str) -> None:
    md = render_markdown(CASES[name]())
    assert problems(md) == []
    _check(GOLDEN / f"digest-{name}.md", md)


def test_json_matches_golden() -> None:
    doc = json.dumps(digest_json(busy_day()), ensure_ascii=False, indent=2) + "\n"
    _check(GOLDEN / "digest-busy-day.json", doc)
