"""The pure status engine, with hand-built evidence: no store, no clock, no terminal."""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime, timedelta, timezone

import pytest

from catalysts.models import Evidence, FeedHealth, ItemSpec, Override, Settings, Watchlist
from catalysts.status import changes_since, evaluate, evaluate_all, is_stale, timeline

AT = datetime(2025, 12, 13, 12, 0, tzinfo=timezone.utc)
SETTINGS = Settings()  # window 30d, half-life 7d, threshold 2.0
_ids = iter(range(1, 1_000_000))


def item(**kw: object) -> ItemSpec:
    base: dict[str, object] = {
        "id": "openai-ipo",
        "thesis": "crypto-ai",
        "kind": "catalyst",
        "title": "OpenAI IPO",
        "signal": "OpenAI AND IPO",
        "confirm": '"files for IPO"',
    }
    base.update(kw)
    return ItemSpec(**base)  # type: ignore[arg-type]


def ev(
    days_ago: float,
    *,
    story: str | None = None,
    feed: str = "coindesk",
    rule: str = "signal",
    item_id: str = "openai-ipo",
    title: str = "OpenAI weighs IPO",
    at: datetime = AT,
) -> Evidence:
    n = next(_ids)
    return Evidence(
        item=item_id,
        rule=rule,  # type: ignore[arg-type]
        entry_id=n,
        story=story or f"story-{n}",
        feed=feed,
        title=title,
        link=f"https://example.com/{n}",
        time=at - timedelta(days=days_ago),
        dated=True,
        terms=("OpenAI", "IPO"),
    )


def test_no_evidence_is_quiet_with_zero_score() -> None:
    st = evaluate(item(), [], AT)
    assert (st.status, st.score, st.sources, st.evidence, st.since) == ("quiet", 0.0, 0, (), None)
    assert st.trend == (0.0,) * 14


def test_one_fresh_headline_does_not_flip_an_item() -> None:
    st = evaluate(item(), [ev(0)], AT)
    assert st.status == "quiet"
    assert st.score == pytest.approx(1.0)


def test_score_decays_with_half_life() -> None:
    st = evaluate(item(), [ev(7)], AT)
    assert st.score == pytest.approx(0.5)
    st = evaluate(item(), [ev(14), ev(0)], AT)
    assert st.score == pytest.approx(1.25)


def test_three_fresh_stories_build_and_count_sources() -> None:
    evidence = [ev(0, feed="a"), ev(1, feed="b"), ev(2, feed="a")]
    st = evaluate(item(), evidence, AT)
    assert st.status == "building"
    assert st.sources == 2
    assert st.score >= 2.0
    assert [e.entry_id for e in st.evidence] == [e.entry_id for e in evidence]  # newest first


def test_one_story_in_many_feeds_counts_once_with_the_largest_weight() -> None:
    same = [ev(1, story="s", feed="a"), ev(0, story="s", feed="b"), ev(0.5, story="s", feed="c")]
    st = evaluate(item(), same, AT, weights={"a": 3.0, "b": 1.0, "c": 0.5})
    # Largest weight (3.0 from a) at the newest time (0 days ago): not 3 stories, not decayed.
    assert st.score == pytest.approx(3.0)
    assert st.sources == 3
    assert st.status == "building"


def test_feed_weight_multiplies() -> None:
    st = evaluate(item(), [ev(0, feed="sec")], AT, weights={"sec": 2.5})
    assert st.score == pytest.approx(2.5)
    assert st.status == "building"


def test_evidence_outside_the_window_or_after_at_does_not_count() -> None:
    st = evaluate(item(), [ev(30), ev(31), ev(-1)], AT)
    assert st.score == 0.0
    assert st.evidence == ()


def test_evidence_only_from_the_items_feeds() -> None:
    spec = item(feeds=frozenset({"news"}))
    st = evaluate(spec, [ev(0, feed="news"), ev(0, feed="blog"), ev(0, feed="blog")], AT)
    assert st.score == pytest.approx(1.0)
    assert {e.feed for e in st.evidence} == {"news"}


def test_other_items_evidence_is_ignored() -> None:
    st = evaluate(item(), [ev(0, item_id="other"), ev(0, item_id="other")], AT)
    assert st.score == 0.0


def test_item_threshold_overrides_settings() -> None:
    assert evaluate(item(threshold=1.0), [ev(0)], AT).status == "building"
    assert evaluate(item(), [ev(0)], AT, settings=Settings(threshold=0.5)).status == "building"
    st = evaluate(item(threshold=5.0), [ev(0), ev(0), ev(0)], AT)
    assert (st.status, st.threshold) == ("quiet", 5.0)


def test_confirm_triggers_and_is_sticky_beyond_the_window() -> None:
    confirm = ev(200, rule="confirm", title="OpenAI files for IPO")
    st = evaluate(item(), [confirm], AT)
    assert st.status == "triggered"
    assert st.trigger == confirm
    assert st.since == confirm.time
    assert st.evidence == ()  # the confirm is older than the window


def test_confirm_after_at_does_not_trigger_yet() -> None:
    assert evaluate(item(), [ev(-2, rule="confirm")], AT).status == "quiet"


def test_deadline_passed_without_trigger_expires() -> None:
    spec = item(by=date(2025, 12, 12))
    st = evaluate(spec, [], AT)
    assert st.status == "expired"
    assert st.since == datetime(2025, 12, 13, tzinfo=timezone.utc)
    assert evaluate(item(by=date(2025, 12, 13)), [], AT).status == "quiet"  # the day itself
    assert evaluate(spec, [ev(300, rule="confirm")], AT).status == "triggered"


def test_override_wins_from_its_date_and_its_note_is_always_carried() -> None:
    ov = Override(status="triggered", note="Priced on NASDAQ", since=date(2025, 12, 14))
    before = evaluate(item(override=ov), [], AT)
    assert (before.status, before.override_note) == ("quiet", "Priced on NASDAQ")
    after = evaluate(item(override=ov), [], AT + timedelta(days=2))
    assert after.status == "triggered"
    assert after.trigger is None
    assert after.since == datetime(2025, 12, 14, tzinfo=timezone.utc)
    forever = evaluate(
        item(override=Override(status="quiet", note="n")), [ev(0, rule="confirm")], AT
    )
    assert (forever.status, forever.since) == ("quiet", None)


def test_trend_has_14_daily_scores_ending_at_at() -> None:
    st = evaluate(item(), [ev(3)], AT)
    assert len(st.trend) == 14
    assert st.trend[-1] == pytest.approx(st.score)
    assert st.trend[-4] == pytest.approx(1.0)  # the day the story appeared
    assert all(x == 0.0 for x in st.trend[:-4])


def test_stale_is_about_the_present() -> None:
    spec = item(feeds=frozenset({"a", "b"}))
    fresh = FeedHealth(id="a", url="u", status="ok", last_success=AT - timedelta(hours=1))
    old = FeedHealth(id="b", url="u", status="ok", last_success=AT - timedelta(days=5))
    never = FeedHealth(id="c", url="u", status="never")
    assert not is_stale(spec, [fresh, old], SETTINGS, AT)
    assert is_stale(spec, [old, never], SETTINGS, AT)
    assert not is_stale(spec, None, SETTINGS, AT)
    past = evaluate(spec, [], AT - timedelta(days=300), health=[fresh], now=AT)
    assert not past.stale
    assert evaluate(spec, [], AT, health=[old]).stale


def test_timeline_building_then_exact_decay_crossing() -> None:
    days = (10.5, 10, 9)  # the third story lifts the score over 2.0, then it decays
    evidence = [ev(d) for d in days]
    changes = timeline(item(), evidence, SETTINGS, None, AT)
    assert [(c.old, c.new) for c in changes] == [("quiet", "building"), ("building", "quiet")]
    up, down = changes
    assert up.at == evidence[2].time
    score = sum(0.5 ** ((d - 9) / 7) for d in days)
    assert up.reason == f"score {score:.1f} >= 2.0 from 3 stories"
    assert {e.entry_id for e in up.evidence} == {e.entry_id for e in evidence}
    assert down.reason == "score fell below 2.0"
    # At the crossing the decayed score is exactly the threshold.
    assert evaluate(item(), evidence, down.at).score == pytest.approx(2.0)
    assert evaluate(item(), evidence, down.at + timedelta(seconds=1)).status == "quiet"
    assert evaluate(item(), evidence, down.at - timedelta(seconds=1)).status == "building"


def test_timeline_confirm_deadline_and_override_reasons() -> None:
    spec = item(by=date(2025, 12, 1), override=Override("quiet", "false alarm", date(2025, 12, 10)))
    confirm = ev(5, rule="confirm", title="OpenAI files for IPO")
    changes = timeline(spec, [confirm], SETTINGS, None, AT)
    assert [(c.new, c.reason) for c in changes] == [
        ("expired", "deadline 2025-12-01 passed"),
        ("triggered", "confirm matched: OpenAI files for IPO"),
        ("quiet", "override: false alarm"),
    ]
    assert changes[1].evidence == (confirm,)


def test_timeline_window_is_half_open() -> None:
    evidence = [ev(20), ev(20), ev(20), ev(20), ev(20), ev(20), ev(20), ev(20), ev(20), ev(20)]
    since = AT - timedelta(days=15)
    changes = timeline(item(), evidence, SETTINGS, since, AT)
    # Starts building (score ~6.1 at `since`), falls below at the crossing, nothing before.
    assert [(c.old, c.new) for c in changes] == [("building", "quiet")]
    assert since < changes[0].at <= AT


def test_since_matches_the_last_timeline_change_on_random_histories() -> None:
    rng = random.Random(4)
    for _ in range(200):
        evidence = [
            ev(
                rng.uniform(-5, 90),
                story=f"s{rng.randrange(25)}",
                feed=rng.choice("abc"),
                rule="confirm" if rng.random() < 0.01 else "signal",
            )
            for _ in range(rng.randrange(0, 40))
        ]
        spec = item(
            by=rng.choice([None, date(2025, 11, 1), date(2026, 1, 1)]),
            threshold=rng.choice([None, 1.0, 3.0]),
        )
        at = AT - timedelta(hours=rng.uniform(0, 500))
        weights = {"a": 1.0, "b": 0.5, "c": 2.0}
        st = evaluate(spec, evidence, at, weights=weights)
        changes = timeline(spec, evidence, SETTINGS, None, at, weights=weights)
        expected_since = changes[-1].at if changes else None
        assert st.since == expected_since
        assert (changes[-1].new if changes else "quiet") == st.status
        # Consecutive changes chain: each old is the previous new.
        for a, b in itertools.pairwise(changes):
            assert a.new == b.old and a.at <= b.at


def test_editing_evidence_rewrites_history_without_anything_else() -> None:
    # What sync_matches does after a rule edit: the stored matches change, so does history.
    loose = [ev(4), ev(3), ev(2)]
    strict = loose[:1]
    assert evaluate(item(), loose, AT).status == "building"
    assert evaluate(item(), strict, AT).status == "quiet"
    assert timeline(item(), strict, SETTINGS, None, AT) == []


def test_evaluate_all_uses_feed_weights_and_keeps_watchlist_order() -> None:
    from catalysts.models import FeedSpec, Thesis

    a, b = item(id="a"), item(id="b")
    wl = Watchlist(
        path="w.yaml",
        feeds=(FeedSpec(id="sec", url="https://sec.gov", weight=3.0),),
        theses=(Thesis(id="t", title="T", items=(b, a)),),
    )
    out = evaluate_all(wl, [ev(0, item_id="a", feed="sec"), ev(0, item_id="b")], AT)
    assert [(s.item.id, s.status) for s in out] == [("b", "quiet"), ("a", "building")]


def test_changes_since_records_one_change_at_observation_time_with_derived_reason() -> None:
    evidence = [ev(3), ev(2), ev(1)]
    st = evaluate(item(), evidence, AT)
    [change] = changes_since(st, "quiet", evidence, SETTINGS)
    assert (change.at, change.old, change.new) == (AT, "quiet", "building")
    derived = timeline(item(), evidence, SETTINGS, None, AT)[-1]
    assert (change.reason, change.evidence) == (derived.reason, derived.evidence)
    assert changes_since(st, "building", evidence, SETTINGS) == []
    [first] = changes_since(evaluate(item(), [], AT), None, [], SETTINGS)
    assert (first.old, first.new, first.reason) == (None, "quiet", "score 0.0 < 2.0")


def test_partial_history_gives_the_same_statuses_as_the_full_one() -> None:
    from catalysts.models import FeedSpec, Thesis
    from catalysts.status import history_start

    rng = random.Random(7)
    specs = [
        item(
            id=f"i{k}",
            threshold=rng.choice([None, 1.0, 2.0, 4.0]),
            by=rng.choice([None, date(2025, 9, 1)]),
        )
        for k in range(40)
    ]
    wl = Watchlist(
        path="w.yaml",
        feeds=(FeedSpec(id="a", url="https://a.example", weight=2.0),),
        theses=(Thesis(id="t", title="T", items=tuple(specs)),),
    )
    evidence = [
        ev(
            rng.uniform(-3, 400),
            item_id=f"i{k}",
            story=f"s{rng.randrange(60)}",
            feed=rng.choice("ab"),
            rule="confirm" if rng.random() < 0.003 else "signal",
        )
        for k in range(40)
        for _ in range(rng.randrange(0, 120))
    ]
    asked: list[list[str]] = []

    def history(items: list[str]) -> list[tuple[str, datetime, str, str]]:
        asked.append(list(items))
        return [
            (e.item, e.time, e.story, e.feed)
            for e in evidence
            if e.item in items and e.rule == "signal" and e.time < start
        ]

    for days in (0, 30, 200):
        at = AT - timedelta(days=days)
        start = history_start(SETTINGS, at)
        partial = [e for e in evidence if e.rule == "confirm" or e.time >= start]
        full = evaluate_all(wl, evidence, at)
        asked.clear()
        assert evaluate_all(wl, partial, at, history_from=start, history=history) == full
        # Asked once, and only for some items: the point of reading partially.
        assert len(asked) <= 1
        assert asked and 0 < len(asked[0]) < len(specs)


def test_partial_history_needs_its_reader() -> None:
    wl = Watchlist(path="w.yaml")
    with pytest.raises(ValueError, match="together"):
        evaluate_all(wl, [], AT, history_from=AT)
