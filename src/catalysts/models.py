"""The data that flows through catalysts: watchlist -> fetch -> store -> match -> status -> render.

Plain frozen dataclasses, no behaviour beyond small derived properties, no I/O. Every
module speaks in these types, so the pure modules (rules, matching, status, digest) can be
tested without a store, a network or a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any, Literal

Kind = Literal["catalyst", "risk"]
RuleName = Literal["signal", "confirm"]
Status = Literal["quiet", "building", "triggered", "expired"]
FeedStatus = Literal["ok", "error", "never"]
FetchResultKind = Literal["new", "not-modified", "unchanged", "error"]

# Fields a rule can scope a term to with `field:term`; unscoped terms search title and summary.
FIELDS: tuple[str, ...] = ("title", "summary", "url", "feed", "author", "category")
DEFAULT_FIELDS: tuple[str, ...] = ("title", "summary")


# --- the watchlist -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    window: timedelta = timedelta(days=30)  # how far back evidence counts toward status
    half_life: timedelta = timedelta(days=7)  # recency decay of evidence weight
    user_agent: str | None = None
    max_age: timedelta = timedelta(hours=12)  # `status` fetches first when older than this
    threshold: float = 2.0  # default score at which an item is "building"
    stale_after: timedelta = timedelta(days=2)  # no successful fetch for this long -> stale


@dataclass(frozen=True, slots=True)
class FeedSpec:
    id: str
    url: str  # http(s) URL, file:// URL or plain path
    tags: tuple[str, ...] = ()
    weight: float = 1.0  # credibility multiplier
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Override:
    status: Status
    note: str
    since: date | None = None


@dataclass(frozen=True, slots=True)
class ItemSpec:
    id: str  # unique across the whole watchlist
    thesis: str  # id of the thesis it belongs to
    kind: Kind
    title: str
    signal: str  # rule source text
    confirm: str | None = None
    why: str | None = None
    by: date | None = None
    sources: tuple[str, ...] = ()  # feed ids or tags as written; empty means every feed
    feeds: frozenset[str] = frozenset()  # resolved feed ids (every feed when sources is empty)
    threshold: float | None = None  # None: settings.threshold
    override: Override | None = None


@dataclass(frozen=True, slots=True)
class Thesis:
    id: str
    title: str
    source: str | None = None
    items: tuple[ItemSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Watchlist:
    path: str
    settings: Settings = field(default_factory=Settings)
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    feeds: tuple[FeedSpec, ...] = ()
    theses: tuple[Thesis, ...] = ()

    @property
    def items(self) -> tuple[ItemSpec, ...]:
        return tuple(item for thesis in self.theses for item in thesis.items)

    def item(self, item_id: str) -> ItemSpec | None:
        return next((i for i in self.items if i.id == item_id), None)

    def feed(self, feed_id: str) -> FeedSpec | None:
        return next((f for f in self.feeds if f.id == feed_id), None)


# --- feeds and entries ------------------------------------------------------------------------


def slot_setters(cls: type) -> tuple[Callable[[object, Any], None], ...]:
    """The setters of a slots dataclass's fields, in field order: they bypass `frozen`.

    The generated `__init__` of a frozen dataclass goes through a generic
    `object.__setattr__` per field; a hand-written one calling these builds an instance in
    a third of the time, for the classes made by the thousand (entries, rule nodes).
    """
    return tuple(cls.__dict__[f.name].__set__ for f in fields(cls))


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    """One normalised feed entry: plain text, canonical link, UTC dates."""

    key: str  # identity within its feed: guid, else canonical link, else hash of title+link
    title: str  # plain text: HTML removed, entities decoded, whitespace collapsed
    summary: str = ""  # plain text
    link: str | None = None  # canonical absolute http(s) URL, tracking parameters removed
    author: str | None = None
    categories: tuple[str, ...] = ()
    published: datetime | None = None  # aware UTC; None when the feed gives no usable date

    def __init__(
        self,
        key: str,
        title: str,
        summary: str = "",
        link: str | None = None,
        author: str | None = None,
        categories: tuple[str, ...] = (),
        published: datetime | None = None,
    ) -> None:
        set_key, set_title, set_summary, set_link, set_author, set_categories, set_published = (
            _ENTRY_SETTERS
        )
        set_key(self, key)
        set_title(self, title)
        set_summary(self, summary)
        set_link(self, link)
        set_author(self, author)
        set_categories(self, categories)
        set_published(self, published)


_ENTRY_SETTERS = slot_setters(Entry)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What a feed document yields: its entries, plus a title and any non-fatal warning."""

    entries: tuple[Entry, ...]
    title: str | None = None
    format: str = ""  # e.g. "rss20", "atom10", "json11"
    warning: str | None = None  # the document was ill-formed but entries could be recovered


@dataclass(frozen=True, slots=True)
class FeedHealth:
    id: str
    url: str
    status: FeedStatus
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    entries: int = 0
    newest_entry: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    next_retry: datetime | None = None


@dataclass(frozen=True, slots=True)
class FetchReport:
    """The outcome of fetching one feed in one run (DESIGN section 9, `fetch --json`)."""

    id: str
    result: FetchResultKind
    new_entries: int = 0
    error: str | None = None
    seconds: float = 0.0
    warning: str | None = None  # stored, but the document was ill-formed and read leniently


# --- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One occurrence of a rule term in an entry field."""

    term: str  # the term as written in the rule: OpenAI, "files for IPO", tokeni*, /re/i
    field: str  # one of FIELDS
    start: int  # offsets into that field's text as given to the matcher
    end: int


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched a document, with the evidence (positive hits only)."""

    item: str
    rule: RuleName
    hits: tuple[Hit, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.term for h in self.hits))


# --- status -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """A stored entry that matched one of an item's rules."""

    item: str
    rule: RuleName
    entry_id: int  # store row id
    story: str  # story key: entries of several feeds carrying one story share it
    feed: str  # feed id
    title: str
    link: str | None
    time: datetime  # published, else first seen (aware UTC)
    dated: bool  # False when `time` is the first-seen time because the feed gave no date
    terms: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusChange:
    item: str
    at: datetime
    old: Status | None  # None for the first evaluation
    new: Status
    reason: str  # one line: "confirm matched", "score 2.4 >= 2.0", "deadline passed", override
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """One item's state as of `at`: the single model behind the table, --json and the digest."""

    item: ItemSpec
    at: datetime
    status: Status
    stale: bool
    score: float
    threshold: float
    sources: int  # distinct feeds among the window's signal evidence
    evidence: tuple[Evidence, ...]  # in the window, newest first (signal and confirm)
    since: datetime | None = None  # when the current status began
    trend: tuple[float, ...] = ()  # daily scores, oldest first, ending at `at`
    trigger: Evidence | None = None  # the confirm evidence (or None with an override)
    override_note: str | None = None

    @property
    def last_evidence(self) -> Evidence | None:
        return self.evidence[0] if self.evidence else None
