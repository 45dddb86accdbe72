"""The status engine: stored evidence and a time in, one `ItemStatus` per item out.

Pure: no I/O, no clock. The CLI reads evidence and feed health from the store, passes the
time to evaluate at (`at`) and the present (`now`), and renders what comes back; the
digest uses the same objects.

How an item's status is decided at a time `t`, highest precedence first:

1. `override` -- from `override.since` (midnight UTC; no date means always) the manual
   verdict wins. Its note is carried on every evaluation, even before `since`.
2. `triggered` -- a `confirm` match at or before `t`, whatever the window says. Sticky: the
   first confirm match is the `trigger` and the item stays triggered ever after.
3. `expired` -- `by` has passed (from midnight UTC of the day after `by`) without a trigger.
4. `building` -- the score reaches the threshold; otherwise `quiet`.

The score at `t` sums, over the item's signal evidence in the window `(t - window, t]` from
the item's feeds, `weight x 0.5 ** (age / half_life)`, counting one story once however
many feeds carry it (its largest feed weight and its newest time). The default threshold
(`Settings.threshold`, 2.0) means "about two fresh independent stories": one stray
headline (score <= its feed weight, 1.0 by default) never flips an item on its own, while
two same-week stories (2 x ~0.8 = 1.6) still need a third -- or a heavier feed -- to build.

Timelines are exact rather than sampled. Between two *events* -- evidence entering the
window (its time), leaving it (its time + window), the override date and the deadline --
the score only decays, exponentially, so a `building -> quiet` change falls at the exact
time the decayed score crosses the threshold (`_crossing`). `timeline()` walks the events
in order and adds those crossings; `evaluate()` finds `since` by walking the same events
backwards from `at` and stopping at the first different status. Both call one `_state`
function, so the status shown, its `since` and the history always agree; tests check it.

Derived versus recorded history: the derived timeline is recomputed from the stored
evidence on every run, so editing a rule (after `ingest.sync_matches` re-matches it)
rewrites the item's derived past without a refetch, and `--at` replays any day. The CLI
also *records* what it observes (`changes_since`): when the status at the present differs
from the last recorded one, it stores one change at the observation time with the reason
and evidence of the derived change that caused it. Recorded history is therefore what a
user could have seen run by run (what the digest reports "since the last digest", robust
to evidence that arrives late with an old published date); the derived timeline is the
complete story. They agree in that every recorded change is the derived net change
between two observations.

`stale` is about the present: an item is stale when none of its feeds had a successful
fetch within `settings.stale_after` of `now` (which defaults to `at`). Replaying a past
`--at` from a store fetched this morning is therefore not stale -- the question "are we
still watching?" only has an answer today.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from operator import itemgetter

from catalysts.models import (
    Evidence,
    FeedHealth,
    ItemSpec,
    ItemStatus,
    Settings,
    Status,
    StatusChange,
    Watchlist,
)
from catalysts.timeutil import iso

TREND_DAYS = 14

__all__ = [
    "TREND_DAYS",
    "change_json",
    "changes_since",
    "evaluate",
    "evaluate_all",
    "evidence_json",
    "history_start",
    "is_stale",
    "item_json",
    "threshold_of",
    "timeline",
]


def threshold_of(item: ItemSpec, settings: Settings) -> float:
    """The score at which the item is `building`: its own threshold, else the watchlist's."""
    return item.threshold if item.threshold is not None else settings.threshold


def _midnight(day: date) -> float:
    return datetime.combine(day, time(), tzinfo=timezone.utc).timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class _Incomplete(Exception):
    """The status's `since` depends on signal evidence older than the track was given."""


class _Track:
    """One item's evidence indexed by time, answering "what is the status at t?" quickly."""

    def __init__(
        self,
        item: ItemSpec,
        evidence: Iterable[Evidence],
        settings: Settings,
        weights: Mapping[str, float],
        complete_from: float = -math.inf,
        older: Iterable[tuple[datetime, str, str]] = (),
    ) -> None:
        self.item = item
        # Signal evidence before this time may be missing (confirm evidence never is), so
        # score-decided states are known only from one window later on.
        self.exact_from = complete_from + settings.window.total_seconds()
        self.threshold = threshold_of(item, settings)
        self.window = settings.window.total_seconds()
        self.half_life = settings.half_life.total_seconds()
        signal: list[tuple[float, float, str, str, Evidence]] = []
        confirm: list[tuple[float, Evidence]] = []
        item_id, feeds, weight = item.id, item.feeds, weights.get  # hot loop: 1000s of rows
        for ev in evidence:
            if ev.item != item_id or (feeds and ev.feed not in feeds):
                continue
            if ev.rule == "confirm":
                confirm.append((ev.time.timestamp(), ev))
            else:
                signal.append((ev.time.timestamp(), weight(ev.feed, 1.0), ev.story, ev.feed, ev))
        # Signals older than `evidence`'s, for the score only: (time, story, feed). They
        # carry no Evidence, so such a track serves `evaluate_all`, never `timeline`.
        for when, story, feed in older:
            if not feeds or feed in feeds:
                signal.append((when.timestamp(), weight(feed, 1.0), story, feed, None))  # type: ignore[arg-type]
        signal.sort(key=itemgetter(0))
        confirm.sort(key=itemgetter(0))
        self.signal = signal
        self.signal_times = [c[0] for c in signal]
        self.signal_pairs = [(c[0], c[1]) for c in signal]
        self.shared = len({c[2] for c in signal}) < len(signal)  # a story with several carriers
        # Each signal's previous and next carrier of the same story (-1: none), so that
        # `score` counts a story once without building a dict per call.
        self.prev_carrier: list[int] = []
        self.next_carrier: list[int] = []
        if self.shared:
            self.prev_carrier = [-1] * len(signal)
            self.next_carrier = [-1] * len(signal)
            seen: dict[str, int] = {}
            for i, c in enumerate(signal):
                j = seen.get(c[2])
                if j is not None:
                    self.prev_carrier[i] = j
                    self.next_carrier[j] = i
                seen[c[2]] = i
        self.confirm = confirm
        self.confirm_times = [c[0] for c in confirm]
        override = item.override
        self.override_at: float | None = None
        if override is not None:
            self.override_at = -math.inf if override.since is None else _midnight(override.since)
        self.expire_at = _midnight(item.by + timedelta(days=1)) if item.by is not None else None
        events = set(self.signal_times)
        events.update(t + self.window for t in self.signal_times)
        events.update(self.confirm_times)
        for special in (self.override_at, self.expire_at):
            if special is not None and special != -math.inf:
                events.add(special)
        self.events = sorted(events)
        self._scores: dict[float, float] = {}

    # --- score -------------------------------------------------------------------------------

    def stories(self, t: float) -> dict[str, tuple[float, float, Evidence]]:
        """Stories in the window at t: story -> (largest weight, newest time, newest evidence)."""
        lo = bisect_right(self.signal_times, t - self.window)
        hi = bisect_right(self.signal_times, t)
        best: dict[str, tuple[float, float, Evidence]] = {}
        for ts, weight, story, _feed, ev in self.signal[lo:hi]:
            cur = best.get(story)
            if cur is None:
                best[story] = (weight, ts, ev)
            else:
                # Ascending time: this carrier is the newest seen so far.
                best[story] = (max(cur[0], weight), ts, ev)
        return best

    def score(self, t: float) -> float:
        """The sum over `stories(t)`, added in the same order (so the very same float).

        The hot spot of `since` on a long history, hence the index arithmetic.
        """
        # `since` and `crossing` ask for the same times again: remember them.
        cached = self._scores.get(t)
        if cached is not None:
            return cached
        hl = self.half_life
        times = self.signal_times
        lo = bisect_right(times, t - self.window)
        hi = bisect_right(times, t)
        if not self.shared:
            # A list, not a generator: a fifth faster, and summed in the same order.
            total = sum([w * 2.0 ** ((ts - t) / hl) for ts, w in self.signal_pairs[lo:hi]])
        else:
            prev, nxt, pairs = self.prev_carrier, self.next_carrier, self.signal_pairs
            total = 0
            for i in range(lo, hi):
                if prev[i] >= lo:
                    continue  # counted with the story's first carrier in the window
                (ts, w), j = pairs[i], nxt[i]
                while j != -1 and j < hi:  # the story's later carriers: largest weight, newest
                    w, ts, j = max(w, pairs[j][1]), pairs[j][0], nxt[j]
                total += w * 2.0 ** ((ts - t) / hl)
        self._scores[t] = total
        return total

    def sources(self, t: float) -> int:
        lo = bisect_right(self.signal_times, t - self.window)
        hi = bisect_right(self.signal_times, t)
        return len({c[3] for c in self.signal[lo:hi]})

    def crossing(self, t: float) -> float | None:
        """When the score, decaying from t with no new evidence, falls below the threshold."""
        s = self.score(t)
        if s < self.threshold or self.threshold <= 0:
            return None
        return t + self.half_life * math.log2(s / self.threshold)

    # --- status ------------------------------------------------------------------------------

    def trigger(self, t: float) -> Evidence | None:
        if self.confirm and self.confirm_times[0] <= t:
            return self.confirm[0][1]
        return None

    def state(self, t: float) -> Status:
        if self.override_at is not None and t >= self.override_at:
            return self.item.override.status  # type: ignore[union-attr]
        if self.confirm and self.confirm_times[0] <= t:
            return "triggered"
        if self.expire_at is not None and t >= self.expire_at:
            return "expired"
        return "building" if self.score(t) >= self.threshold else "quiet"

    def by_score(self, t: float) -> bool:
        """True when the state at t is decided by the score (no override, trigger or deadline)."""
        if self.override_at is not None and t >= self.override_at:
            return False
        if self.confirm and self.confirm_times[0] <= t:
            return False
        return self.expire_at is None or t < self.expire_at

    def baseline(self) -> Status:
        """The status before any event: quiet, or the override when it has no start date."""
        return self.state(-math.inf) if self.override_at == -math.inf else "quiet"

    def since(self, at: float, current: Status) -> float | None:
        """When the status at `at` began (the time of the last change of `timeline`).

        Walks the events backwards; between two events the only possible change is a
        decay crossing (building -> quiet), so each gap is checked for one.

        With partial evidence (`complete_from`), raises `_Incomplete` when the answer could
        differ from the one the full evidence gives: a quiet or building status whose walk
        reaches a score-decided state before `exact_from`, or runs off the start. A
        triggered, expired or override status only needs "not the same" from such states,
        which partial evidence answers exactly (they change only at confirm, deadline and
        override times, all known).
        """
        end = bisect_right(self.events, at)
        later: float | None = None  # the earliest event of the trailing run of `current`
        partial = self.exact_from != -math.inf
        scored = current in ("quiet", "building")
        for i in range(end - 1, -1, -1):
            e = self.events[i]
            if partial and scored and e < self.exact_from and self.by_score(e):
                raise _Incomplete
            state = self.state(e)
            limit = later if later is not None else at
            crossing = self.crossing(e) if state == "building" else None
            dips = crossing is not None and crossing < limit
            if ("quiet" if dips else state) != current:
                return later if later is not None else at
            if state != current:
                return crossing
            later = e
        if partial and scored:
            raise _Incomplete
        if later is not None and current != self.baseline():
            return later
        return None

    def change(self, t: float, old: Status | None, new: Status) -> StatusChange:
        """A change to `new` at t, with its one-line reason and the evidence behind it."""
        reason: str
        evidence: tuple[Evidence, ...] = ()
        if (
            new == "triggered"
            and (trig := self.trigger(t)) is not None
            and (self.override_at is None or t < self.override_at)
        ):
            reason = f"confirm matched: {trig.title}"
            evidence = (trig,)
        elif self.override_at is not None and t >= self.override_at:
            reason = f"override: {self.item.override.note}"  # type: ignore[union-attr]
        elif new == "expired":
            reason = f"deadline {self.item.by} passed"
        elif new == "building":
            stories = self.stories(t)
            score = sum(w * 2.0 ** ((ts - t) / self.half_life) for w, ts, _ in stories.values())
            n = len(stories)
            reason = (
                f"score {score:.1f} >= {self.threshold:.1f} "
                f"from {n} {'story' if n == 1 else 'stories'}"
            )
            evidence = tuple(
                sorted((ev for *_, ev in stories.values()), key=lambda ev: ev.time, reverse=True)
            )
        elif old == "building":
            reason = f"score fell below {self.threshold:.1f}"
        else:
            reason = f"score {self.score(t):.1f} < {self.threshold:.1f}"
        return StatusChange(
            item=self.item.id, at=_dt(t), old=old, new=new, reason=reason, evidence=evidence
        )

    def timeline(self, start: float | None, end: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        if start is None:
            prev_t, prev = -math.inf, self.baseline()
            lo = 0
        else:
            prev_t, prev = start, self.state(start)
            lo = bisect_right(self.events, start)
        hi = bisect_right(self.events, end)
        for e in [*self.events[lo:hi], None]:
            limit = end if e is None else e
            if prev == "building" and prev_t != -math.inf:
                c = self.crossing(prev_t)
                # At an event the new state is computed below; a crossing exactly there is moot.
                if c is not None and c < limit:
                    changes.append(self.change(c, prev, "quiet"))
                    prev = "quiet"
            if e is None:
                break
            new = self.state(e)
            if new != prev:
                changes.append(self.change(e, prev, new))
                prev = new
            prev_t = e
        return changes


def feed_weights(watchlist: Watchlist) -> dict[str, float]:
    """Feed id -> credibility weight, as the score uses them."""
    return {f.id: f.weight for f in watchlist.feeds}


def is_stale(
    item: ItemSpec, health: Sequence[FeedHealth] | None, settings: Settings, now: datetime
) -> bool:
    """True when none of the item's feeds had a successful fetch within `stale_after` of now.

    Without health information (None) nothing is known to be stale.
    """
    if health is None:
        return False
    feeds = [h for h in health if not item.feeds or h.id in item.feeds]
    if not feeds:
        return False
    horizon = now - settings.stale_after
    return not any(h.last_success is not None and h.last_success >= horizon for h in feeds)


def evaluate(
    item: ItemSpec,
    evidence: Iterable[Evidence],
    at: datetime,
    *,
    settings: Settings | None = None,
    weights: Mapping[str, float] | None = None,
    health: Sequence[FeedHealth] | None = None,
    now: datetime | None = None,
) -> ItemStatus:
    """The item's status as of `at` from its evidence (other items' evidence is ignored).

    `weights` maps feed id to credibility weight (missing feeds weigh 1.0); `health` and
    `now` (default `at`) decide the `stale` flag.
    """
    settings = settings or Settings()
    track = _Track(item, evidence, settings, weights or {})
    return _status(track, at, settings, health, now or at)


def evaluate_all(
    watchlist: Watchlist,
    evidence: Iterable[Evidence],
    at: datetime,
    *,
    health: Sequence[FeedHealth] | None = None,
    now: datetime | None = None,
    history_from: datetime | None = None,
    history: Callable[[Sequence[str]], Iterable[tuple[str, datetime, str, str]]] | None = None,
) -> list[ItemStatus]:
    """Every item of the watchlist as of `at`, in watchlist order.

    `evidence` is every stored match up to `at`, or -- to read far less on a long history
    -- every confirm match but the signal matches only from `history_from` on (see
    `history_start`). Then `history(item_ids)` is asked, once, for the older signal
    matches of the items whose status (in practice the `since` of a long quiet or
    building spell) depends on them, as (item, time, story, feed) newest first
    (`Store.signal_history`), so the result is the same as from every match.
    """
    if (history_from is None) != (history is None):
        raise ValueError("history_from and history go together")
    by_item: dict[str, list[Evidence]] = {}
    for ev in evidence:
        by_item.setdefault(ev.item, []).append(ev)
    weights = feed_weights(watchlist)
    settings = watchlist.settings
    complete_from = -math.inf if history_from is None else history_from.timestamp()
    statuses: dict[str, ItemStatus] = {}
    incomplete: list[ItemSpec] = []
    for item in watchlist.items:
        track = _Track(item, by_item.get(item.id, ()), settings, weights, complete_from)
        try:
            statuses[item.id] = _status(track, at, settings, health, now or at)
        except _Incomplete:
            incomplete.append(item)
    if incomplete:
        assert history is not None  # only partial tracks raise
        older: dict[str, list[tuple[datetime, str, str]]] = {item.id: [] for item in incomplete}
        for item_id, when, story, feed in history([item.id for item in incomplete]):
            if item_id in older:
                older[item_id].append((when, story, feed))
        for item in incomplete:
            mine = by_item.get(item.id, ())
            track = _Track(item, mine, settings, weights, older=older[item.id])
            statuses[item.id] = _status(track, at, settings, health, now or at)
    return [statuses[item.id] for item in watchlist.items]


def history_start(settings: Settings, at: datetime) -> datetime:
    """The oldest signal time the status table as of `at` reads: one window before the
    first day of the trend. Pass it as `evaluate_all(history_from=...)`."""
    return at - settings.window - timedelta(days=TREND_DAYS)


def _status(
    track: _Track,
    at: datetime,
    settings: Settings,
    health: Sequence[FeedHealth] | None,
    now: datetime,
) -> ItemStatus:
    item = track.item
    t = at.timestamp()
    status = track.state(t)
    since = track.since(t, status)
    day = timedelta(days=1).total_seconds()
    trend = tuple(track.score(t - k * day) for k in range(TREND_DAYS - 1, -1, -1))
    # Both rules' evidence in the window, from the item's feeds, newest first.
    window = [ev for ts, *_rest, ev in track.signal if t - track.window < ts <= t] + [
        ev for ts, ev in track.confirm if t - track.window < ts <= t
    ]
    window.sort(key=lambda ev: ev.time, reverse=True)
    trigger = track.trigger(t) if status == "triggered" else None
    return ItemStatus(
        item=item,
        at=at,
        status=status,
        stale=is_stale(item, health, settings, now),
        score=trend[-1],
        threshold=track.threshold,
        sources=track.sources(t),
        evidence=tuple(window),
        since=_dt(since) if since is not None and since != -math.inf else None,
        trend=trend,
        trigger=trigger,
        override_note=item.override.note if item.override is not None else None,
    )


def timeline(
    item: ItemSpec,
    evidence: Iterable[Evidence],
    settings: Settings,
    start: datetime | None,
    end: datetime,
    *,
    weights: Mapping[str, float] | None = None,
) -> list[StatusChange]:
    """Every status change of the item in `(start, end]`, oldest first.

    With `start` None the history starts before the first evidence, from `quiet` (or the
    override when it has no start date), so the first change's `old` is that baseline.
    Changes fall at evidence times, when evidence leaves the window, at the override date,
    the day after the deadline, and at the exact time a decaying score crosses below the
    threshold.
    """
    track = _Track(item, evidence, settings, weights or {})
    return track.timeline(None if start is None else start.timestamp(), end.timestamp())


def changes_since(
    current: ItemStatus,
    last_recorded: Status | None,
    evidence: Iterable[Evidence],
    settings: Settings,
    *,
    weights: Mapping[str, float] | None = None,
) -> list[StatusChange]:
    """The change to record when `current` (observed now) differs from the last recorded status.

    At most one change, stamped with the observation time `current.at`, carrying the reason
    and evidence of the derived change that set the current status (see the module
    docstring). The first observation of an item (`last_recorded` None) is recorded too.
    """
    if last_recorded == current.status:
        return []
    if current.since is not None:
        derived = timeline(current.item, evidence, settings, None, current.since, weights=weights)
        if derived and derived[-1].new == current.status:
            cause = derived[-1]
            return [
                StatusChange(
                    item=current.item.id,
                    at=current.at,
                    old=last_recorded,
                    new=current.status,
                    reason=cause.reason,
                    evidence=cause.evidence,
                )
            ]
    track = _Track(current.item, evidence, settings, weights or {})
    made = track.change(current.at.timestamp(), last_recorded, current.status)
    return [made]


# --- machine-readable form (DESIGN section 9), shared by `status --json`, `show --json` ------


def evidence_json(ev: Evidence) -> dict[str, object]:
    """One piece of evidence as JSON: title, link, feed, published (null when undated)."""
    return {
        "title": ev.title,
        "link": ev.link,
        "feed": ev.feed,
        "rule": ev.rule,
        "published": iso(ev.time) if ev.dated else None,
        "time": iso(ev.time),
        "terms": list(ev.terms),
    }


def change_json(change: StatusChange) -> dict[str, object]:
    """One status change as JSON."""
    return {
        "at": iso(change.at),
        "old": change.old,
        "new": change.new,
        "reason": change.reason,
        "evidence": [evidence_json(e) for e in change.evidence],
    }


def item_json(st: ItemStatus) -> dict[str, object]:
    """One item's status as JSON: the keys of DESIGN section 9 plus a few more."""
    last = st.last_evidence
    item = st.item
    return {
        "id": item.id,
        "thesis": item.thesis,
        "kind": item.kind,
        "title": item.title,
        "status": st.status,
        "stale": st.stale,
        "score": round(st.score, 3),
        "threshold": st.threshold,
        "sources": st.sources,
        "evidence": len(st.evidence),
        "last_evidence": evidence_json(last) if last is not None else None,
        "by": item.by.isoformat() if item.by is not None else None,
        "since": iso(st.since),
        "trend": [round(x, 3) for x in st.trend],
        "trigger": evidence_json(st.trigger) if st.trigger is not None else None,
        "override_note": st.override_note,
    }
