"""Feed bytes -> `models.ParsedFeed`: RSS, RDF and Atom via feedparser, JSON Feed by hand.

Pure: bytes in, entries out. Nothing here opens a URL or a file or reads the clock --
`feedparser.parse` would do both if handed a string, so it only ever sees a byte stream.

Everything that leaves this module is normalised once: plain text (no HTML), canonical
http(s) links with tracking parameters removed, aware UTC dates (nonsense dates dropped),
and a stable entry key (guid, else canonical link, else a hash of title and link).

Security: documents whose DOCTYPE declares entities are refused before any XML parser sees
them. feedparser strips only declarations that start a line, so a one-line "billion laughs"
DOCTYPE reaches expat and costs seconds and tens of MB; external entities are not resolved
by either parser, but refusing every declaration closes both holes with one cheap check.
Real feeds do not declare entities.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from catalysts.errors import CatalystsError, ExitCode
from catalysts.models import Entry, ParsedFeed
from catalysts.text import html_to_text

MAX_TITLE = 1_000
MAX_SUMMARY = 5_000
MAX_AUTHOR = 200
MAX_CATEGORY = 100
MAX_CATEGORIES = 50
MAX_KEY = 1_000  # longer guids/links are hashed so a hostile feed cannot bloat the store

EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=2)  # publishers' clocks and zones are sloppy, not days off

# Query parameters that only identify a campaign or a click, never the page.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid",
        "twclid", "ttclid", "li_fat_id", "igshid", "igsh", "mc_cid", "mc_eid", "_hsenc",
        "_hsmi", "hsctatracking", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
        "vero_conv", "rb_clickid", "ref_src", "ref_url", "_ga", "_gl", "s_cid", "wt.mc_id",
        "cmpid", "smid", "smtyp", "ito", "ns_campaign", "ns_mchannel", "ns_source",
        "ns_linkname", "ns_fee", "sr_share", "spm", "at_medium", "at_campaign",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_")

# Hosts whose links are redirects shared by unrelated stories: useless as a story identity.
AGGREGATOR_HOSTS = frozenset(
    {"news.google.com", "feedproxy.google.com", "feeds.feedburner.com", "www.bing.com"}
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENTITY_DECL = re.compile(rb"<!entity", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!doctype", re.IGNORECASE)
_NON_ASCII_ENCODING = re.compile(
    r"utf-?7|ebcdic|\b(?:cp|ibm)(?:037|273|277|278|280|284|285|297|500|875|1026|1140)"
)
_ROOT = re.compile(rb"<([A-Za-z_][\w:.\-]*)")
_PROLOG_NOISE = re.compile(rb"<\?.*?\?>|<!--.*?-->|<!\[CDATA\[.*?\]\]>|<![^>]*>", re.DOTALL)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:\-]+)", re.IGNORECASE)
_URL_BREAKS = re.compile(r"[\t\n\r]")
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PUNCT = re.compile(r"[^\w\s]+")
_WS = re.compile(r"\s+")
# An absolute http(s) URL whose authority is a bare lowercase host: scheme, host, path, query.
_PLAIN_URL = re.compile(r"(https?)://([a-z0-9\-._~]+)(/[^?#]*)?(?:\?([^#]*))?(?:#.*)?\Z", re.DOTALL)
_GOOGLE_NEWS_SUFFIX = re.compile(r"\s+-\s+[^-]{1,80}$")  # "Title - Publisher"


class ParseError(CatalystsError):
    """A document yields nothing usable; `str()` is the human reason, `url` where it came from."""

    exit_code = ExitCode.RUN_FAILED

    def __init__(self, reason: str, url: str = "") -> None:
        self.reason = reason
        self.url = url
        super().__init__(reason)


# --- public API ------------------------------------------------------------------------------


def parse_feed(
    data: bytes,
    *,
    url: str,
    content_type: str | None = None,
    now: datetime | None = None,
) -> ParsedFeed:
    """Parse one feed document into normalised entries.

    `url` is the (final) URL the bytes came from: the base for relative links and the
    `where` of errors. `content_type` is the HTTP header, used for the charset and to spot
    JSON. `now` (aware) lets dates more than two days in the future be dropped as nonsense;
    without it only dates before 1990 are. Raises `ParseError` when nothing usable is found
    (HTML page, empty body, sitemap, malformed XML with no entries, JSON that is no JSON Feed).
    """
    head = _sniff_head(data)
    if not head:
        raise ParseError("empty document", url)
    if head.startswith(b"{") or (
        content_type and "json" in content_type.lower() and head.startswith(b"[")
    ):
        return _parse_json_feed(data, url=url, now=now)
    if head.startswith((b"<!doctype html", b"<html")):
        raise ParseError("not a feed: looks like an HTML page", url)
    if not head.startswith(b"<"):
        raise ParseError(f"not a feed: no XML or JSON markup (starts {_preview(data)!r})", url)
    _refuse_unsafe_xml(data, content_type, url)
    if _fast_path_safe(data, content_type):
        fast = _parse_fast(data, url=url, now=now)
        if fast is not None:
            return fast
    return _parse_xml_feed(data, url=url, content_type=content_type, now=now)


def _refuse_unsafe_xml(data: bytes, content_type: str | None, url: str) -> None:
    # Entities can only be declared inside a DOCTYPE; both are searched NUL-free so UTF-16/32
    # cannot hide them. Encodings in which "<!ENTITY" is not ASCII bytes would (feedparser
    # transcodes them to UTF-8 before parsing), so those are refused outright.
    ascii_view = data.replace(b"\x00", b"")
    if _DOCTYPE.search(ascii_view) and _ENTITY_DECL.search(ascii_view):
        raise ParseError(
            "unsafe XML: the DOCTYPE declares entities (entity expansion / external entity)", url
        )
    declared = _XML_ENCODING.search(ascii_view[:200])
    names = [(content_type or "").lower(), declared.group(1).decode().lower() if declared else ""]
    if any(_NON_ASCII_ENCODING.search(name) for name in names):
        raise ParseError("unsupported encoding: UTF-7 or EBCDIC", url)


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """The canonical absolute http(s) form of `url`, or None when it is not a web link.

    Resolved against `base`; scheme and host lowercased, default port, fragment and
    tracking parameters (utm_*, fbclid, gclid, ...) removed; other parameters kept in order
    and byte-for-byte. `javascript:`, `data:`, `mailto:` and the like give None.
    """
    if not url:
        return None
    # As browsers do: tabs and newlines vanish, spaces are encoded; other controls are junk.
    url = _URL_BREAKS.sub("", url.strip()).replace(" ", "%20")
    if not url or _URL_CONTROL.search(url):
        return None
    plain = _PLAIN_URL.match(url)
    if plain is not None and not plain.group(2).endswith("."):
        # Most links are already absolute with a lowercase host and no port or userinfo:
        # urlsplit/urlunsplit would give back exactly these parts (tested against them).
        scheme, host, path, query = plain.groups()
        if query:
            query = "&".join(p for p in query.split("&") if p and not _is_tracking(p))
        return f"{scheme}://{host}{path or '/'}{'?' + query if query else ''}"
    try:
        if base and not url[:8].lower().startswith(("http://", "https://")):
            url = urljoin(base.strip(), url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # bad IPv6 literal or port: not a link we can use
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    # Userinfo is dropped: never part of a page's identity, and "https://bank.com@evil.example"
    # is a disguise.
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking(p))
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def story_key(entry: Entry) -> str:
    """A key shared by the same story in several feeds.

    The canonical link, unless it is missing or an aggregator redirect (news.google.com),
    then the normalised title: casefolded, punctuation removed, and for Google News the
    trailing " - Publisher". Falls back to the entry key when there is no title either.
    """
    host = _link_host(entry.link) if entry.link else None
    if entry.link and host not in AGGREGATOR_HOSTS:
        return "link:" + entry.link
    title = entry.title
    if host == "news.google.com":
        title = _GOOGLE_NEWS_SUFFIX.sub("", title)
    normalised = _normalise_title(title)
    return "title:" + normalised if normalised else entry.key


def _link_host(link: str) -> str | None:
    """`urlsplit(link).hostname`, without urlsplit for the plain links canonical_url makes."""
    plain = _PLAIN_URL.match(link)
    return plain.group(2) if plain is not None else urlsplit(link).hostname


def entry_key(
    guid: str | None, link: str | None, title: str, *, raw_link: str | None = None
) -> str:
    """Entry identity: `guid:<id>`, else `link:<canonical link>`, else `hash:<sha256>`.

    A guid that is just the entry's link (as written, `raw_link`) is keyed as the canonical
    link, so that tracking parameters in a permalink guid do not split one entry in two.
    """
    guid = (guid or "").strip()
    if guid and raw_link and guid == raw_link.strip():
        guid = ""
    if guid:
        return "guid:" + (guid if len(guid) <= MAX_KEY else _sha256(guid))
    if link:
        return "link:" + (link if len(link) <= MAX_KEY else _sha256(link))
    return "hash:" + _sha256(_normalise_title(title) + "\n" + (link or ""))


# --- XML (feedparser) ------------------------------------------------------------------------


def _parse_xml_feed(
    data: bytes, *, url: str, content_type: str | None, now: datetime | None
) -> ParsedFeed:
    import feedparser

    # Only the charset of the HTTP content type is worth passing on: feedparser's RFC 3023
    # rules (text/xml without charset means us-ascii) and its "not an XML media type"
    # complaints misfire on the text/xml and text/html that real servers send. No
    # content-location either: feedparser would resolve Atom ids against it, making keys
    # depend on the URL the feed was fetched from; links are resolved here instead.
    charset = _CHARSET.search(content_type or "")
    media_type = f"application/xml; charset={charset.group(1)}" if charset else "application/xml"
    # A stream, never bytes or str: feedparser treats a str as a URL and bytes as a path.
    # Sanitising HTML and resolving URIs inside it are wasted work (1.6x the time) when the
    # HTML is reduced to plain text anyway; the corpus test checks the output is unchanged.
    result = feedparser.parse(
        io.BytesIO(data),
        response_headers={"content-type": media_type},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    return _from_feedparser_result(result, data, url=url, now=now)


def _from_feedparser_result(
    result: Mapping[str, Any], data: bytes, *, url: str, now: datetime | None
) -> ParsedFeed:
    raw_entries = result.get("entries") or []
    fp_feed = result.get("feed") or {}
    version = result.get("version") or ""
    problem = _bozo_reason(result.get("bozo_exception")) if result.get("bozo") else None

    feed_base = canonical_url(fp_feed.get("link"), url) or url
    entries = _usable(_entry_from_feedparser(e, feed_base, now) for e in raw_entries)
    if not entries:
        root = _root_name(data)
        if root and root.lower().rpartition(":")[2] == "html":
            raise ParseError("not a feed: looks like an HTML page", url)
        if problem and (not version or _is_xml_error(result.get("bozo_exception"))):
            raise ParseError(problem, url)
        if not version:
            reason = f"not a feed: XML root <{root}>" if root else "not a feed: no feed element"
            raise ParseError(reason, url)

    return ParsedFeed(
        entries=tuple(_dedupe_keys(entries)),
        title=html_to_text(fp_feed.get("title"))[:MAX_TITLE] or None,
        format=version,
        warning=f"ill-formed feed, read leniently: {problem}" if problem else None,
    )


# --- the fast path (fastfeedparser) --------------------------------------------------------
#
# fastfeedparser (lxml) is ~6x faster than feedparser but not a drop-in: on the real corpus
# its normalised entries differ from feedparser's where feedparser copies a photo caption
# (media:description) or dc:description into the summary, reads a nested <author><name>,
# ignores zone names such as CET/IST, or where fastfeedparser synthesises a truncated Atom
# summary; on hand-written items they also pick differently among repeated links, guids or
# authors, from an atom:link in an item, and when feedparser turns a guid into the link.
# So it only handles plain RSS 2.0 documents that avoid every such construct, are
# well-formed (checked with expat, namespaces on, as feedparser's strict parser would) and
# carry no charset override; everything else, and anything it rejects, goes to feedparser.
# tests/test_feedparse.py checks both paths give identical entries on every real feed.

_TAG_NAME = re.compile(rb"<([\w.\-:]+)")
# Elements feedparser folds into title/summary/author in ways fastfeedparser does not.
_FAST_BLOCKED_LOCAL = frozenset({b"description", b"title", b"text", b"summary", b"subtitle"})
_CAMEL_CASE = frozenset(
    {b"pubDate", b"lastBuildDate", b"managingEditor", b"webMaster", b"textInput", b"skipHours",
     b"skipDays", b"updatePeriod", b"updateFrequency", b"updateBase", b"commentRss"}
)  # fmt: skip
_FAST_BLOCKED_PLAIN = frozenset({b"name", b"body", b"summary", b"subtitle", b"text"})
_XML_ENCODING = re.compile(rb"^<\?xml[^>]*\bencoding\s*=\s*[\"']([\w.:\-]+)")
_CREATOR = re.compile(rb"<[\w.\-]+:creator\b")
_ITEM_START = re.compile(rb"<item[\s>]")
_RSS_ROOT = re.compile(rb"<rss\b[^>]*\bversion\s*=\s*[\"']2\.0[\"']")
_DATE_VALUE = re.compile(rb"<(?:pubDate|dc:date)>\s*([^<]*?)\s*</", re.IGNORECASE)
_SAFE_DATE = re.compile(
    rb"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?\s*"
    rb"(?:[+-]\d{4}|GMT|UTC?|Z|[ECMP][SD]T)$"
    rb"|^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?$"
)


def _fast_path_safe(data: bytes, content_type: str | None) -> bool:
    """True when fastfeedparser is known to give exactly feedparser's entries for `data`."""
    # feedparser and lxml settle HTTP-vs-declared encoding conflicts differently: UTF-8 only.
    charset = _CHARSET.search(content_type or "")
    if charset and charset.group(1).lower().replace("-", "") != "utf8":
        return False
    declared = _XML_ENCODING.search(data[:200])
    if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        return False
    if not _RSS_ROOT.search(data[:4096]):
        return False
    if b"<!DOCTYPE" in data or b"xml:base" in data:
        return False
    for name in set(_TAG_NAME.findall(data)):
        prefix, _, local = name.rpartition(b":")
        # feedparser lowercases element names; lxml does not.
        if (name != name.lower() and local not in _CAMEL_CASE) or prefix == b"itunes":
            return False
        if local in _FAST_BLOCKED_LOCAL if prefix else local in _FAST_BLOCKED_PLAIN:
            return False
    if not all(_SAFE_DATE.match(d) for d in _DATE_VALUE.findall(data)):
        return False
    for item in _ITEM_START.split(data)[1:]:
        links = item.count(b"<link>") + item.count(b"<link ")
        guids = item.count(b"<guid")
        authors = item.count(b"<author") + len(_CREATOR.findall(item))
        # The two parsers pick differently among repeated fields, from namespaced links,
        # and when feedparser promotes a guid to the missing link.
        if links > 1 or guids > 1 or authors > 1 or b":link" in item or (guids and not links):
            return False
    from xml.parsers import expat

    checker = expat.ParserCreate(namespace_separator=" ")
    try:
        checker.Parse(data, True)
    except (expat.ExpatError, ValueError):
        return False
    return True


def _parse_fast(data: bytes, *, url: str, now: datetime | None) -> ParsedFeed | None:
    """Parse with fastfeedparser; None when it fails or finds nothing (feedparser decides)."""
    try:
        import fastfeedparser

        result = fastfeedparser.parse(data, include_media=False, include_enclosures=False)
    except Exception:  # any failure (even a missing install) only means "let feedparser try"
        return None
    raw_entries = result.get("entries") or []
    if not raw_entries:
        return None
    feed = result.get("feed") or {}
    feed_base = canonical_url(feed.get("link"), url) or url
    entries = []
    for e in raw_entries:
        link = canonical_url(e.get("link"), feed_base)
        title = html_to_text(e.get("title"))[:MAX_TITLE]
        summary = e.get("description") or next(
            (c.get("value") for c in e.get("content") or () if c.get("value")), ""
        )
        published = _sane(_from_iso(e.get("published") or ""), now) or _sane(
            _from_iso(e.get("updated") or ""), now
        )
        entries.append(
            Entry(
                key=entry_key(e.get("id"), link, title, raw_link=e.get("link")),
                title=title,
                summary=html_to_text(summary)[:MAX_SUMMARY],
                link=link,
                author=html_to_text(e.get("author"))[:MAX_AUTHOR] or None,
                categories=_categories(t.get("term") for t in e.get("tags") or ()),
                published=published,
            )
        )
    entries = _usable(entries)
    if not entries:
        return None
    return ParsedFeed(
        entries=tuple(_dedupe_keys(entries)),
        title=html_to_text(feed.get("title"))[:MAX_TITLE] or None,
        format="rss20",
    )


def _entry_from_feedparser(e: Mapping[str, Any], feed_base: str, now: datetime | None) -> Entry:
    base = (e.get("title_detail") or {}).get("base") or feed_base
    link = canonical_url(e.get("link"), base) or canonical_url(e.get("link"), feed_base)
    title = html_to_text(e.get("title"))[:MAX_TITLE]
    summary = e.get("summary") or ""
    if not summary:
        summary = next((c.get("value") for c in e.get("content") or () if c.get("value")), "")
    published = None
    for field in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get maps a missing updated_parsed to published_parsed
        # with a DeprecationWarning.
        published = _sane(_from_struct(dict.get(e, field)), now)  # type: ignore[arg-type]
        if published:
            break
    return Entry(
        key=entry_key(e.get("id"), link, title, raw_link=e.get("link")),
        title=title,
        summary=html_to_text(summary)[:MAX_SUMMARY],
        link=link,
        author=html_to_text(e.get("author"))[:MAX_AUTHOR] or None,
        categories=_categories(t.get("term") or t.get("label") for t in e.get("tags") or ()),
        published=published,
    )


def _bozo_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "ill-formed document"
    if _is_xml_error(exc):
        line = exc.getLineNumber()  # type: ignore[attr-defined]
        return f"malformed XML at line {line}: {exc.getMessage()}"  # type: ignore[attr-defined]
    text = html_to_text(str(exc)).rstrip(".")
    return text[:200] or type(exc).__name__


def _is_xml_error(exc: BaseException | None) -> bool:
    return exc is not None and hasattr(exc, "getLineNumber") and hasattr(exc, "getMessage")


def _root_name(data: bytes) -> str | None:
    # NULs removed so UTF-16/32 documents show their (ASCII) element names too.
    head = _PROLOG_NOISE.sub(b"", data[:65536].replace(b"\x00", b""))
    match = _ROOT.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


# --- JSON Feed --------------------------------------------------------------------------------


def _parse_json_feed(data: bytes, *, url: str, now: datetime | None) -> ParsedFeed:
    import json

    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"malformed JSON: {str(exc)[:120]}", url) from None
    if not isinstance(doc, dict):
        raise ParseError("not a feed: JSON but not a JSON Feed (top level is not an object)", url)
    version = doc.get("version")
    if not (isinstance(version, str) and "jsonfeed.org/version/" in version):
        hint = " (looks like RSS-in-JSON)" if "rss" in doc else ""
        raise ParseError(f"not a feed: JSON but not a JSON Feed{hint}", url)
    items = doc.get("items")
    if not isinstance(items, list):
        raise ParseError("not a feed: JSON Feed without an items list", url)
    entries = [_entry_from_json(i, url, now) for i in items if isinstance(i, dict)]
    skipped = len(items) - len(entries)
    return ParsedFeed(
        entries=tuple(_dedupe_keys(entries)),
        title=html_to_text(_str(doc.get("title")))[:MAX_TITLE] or None,
        format="json11" if version.rstrip("/").endswith("1.1") else "json10",
        warning=f"{skipped} items are not JSON objects and were skipped" if skipped else None,
    )


def _entry_from_json(item: Mapping[str, Any], base: str, now: datetime | None) -> Entry:
    link = canonical_url(_str(item.get("url")), base) or canonical_url(
        _str(item.get("external_url")), base
    )
    title = html_to_text(_str(item.get("title")))[:MAX_TITLE]
    summary = (
        _str(item.get("summary"))
        or _str(item.get("content_text"))
        or _str(item.get("content_html"))
    )
    authors = item.get("authors") if isinstance(item.get("authors"), list) else []
    if isinstance(item.get("author"), dict):
        authors = [item["author"], *authors]
    names = [_str(a.get("name")) for a in authors if isinstance(a, dict)]
    published = _sane(_from_iso(_str(item.get("date_published"))), now) or _sane(
        _from_iso(_str(item.get("date_modified"))), now
    )
    guid = item.get("id")
    tags = item.get("tags") if isinstance(item.get("tags"), list) else []
    return Entry(
        key=entry_key(_str(guid), link, title, raw_link=_str(item.get("url"))),
        title=title,
        summary=html_to_text(summary)[:MAX_SUMMARY],
        link=link,
        author=html_to_text(", ".join(n for n in names if n))[:MAX_AUTHOR] or None,
        categories=_categories(_str(t) for t in tags),
        published=published,
    )


def _str(value: object) -> str:
    # JSON ids may be numbers; anything else that is not text is ignored, not str()-ed.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


# --- shared normalisation ---------------------------------------------------------------------


def _usable(entries: Iterable[Entry]) -> list[Entry]:
    """Drop the residue of a truncated document (an unclosed `<item>`): an entry with no
    guid, title, text, link or category has nothing to identify, show or match."""
    return [
        e
        for e in entries
        if e.title or e.summary or e.link or e.categories or e.key.startswith("guid:")
    ]


def _dedupe_keys(entries: list[Entry]) -> Iterable[Entry]:
    """Keep every entry, but make keys unique within the document.

    Some publishers give several items one guid (Yahoo Finance: "?src=A00220&yptr=yahoo").
    Such a guid identifies nothing, so every item carrying it is keyed by its link (else the
    title hash) instead -- the same for all of them, whatever their order. Keys that still
    collide (one link listed twice) get a numbered suffix in document order.
    """
    counts = Counter(e.key for e in entries)
    seen: set[str] = set()
    for entry in entries:
        key = entry.key
        if counts[key] > 1 and key.startswith("guid:"):
            key = entry_key(None, entry.link, entry.title)
        stem, n = key, 1
        while key in seen:
            n += 1
            key = f"{stem}~{n}"
        seen.add(key)
        yield entry if key == entry.key else replace(entry, key=key)


def _categories(terms: Iterable[str | None]) -> tuple[str, ...]:
    cleaned = (html_to_text(t)[:MAX_CATEGORY] for t in terms if t)
    return tuple(dict.fromkeys(c for c in cleaned if c))[:MAX_CATEGORIES]


def _from_struct(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    except (OverflowError, ValueError, OSError, TypeError):
        return None


def _from_iso(text: str) -> datetime | None:
    if not text:
        return None
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        from dateutil import parser as dateparser

        try:
            parsed = dateparser.isoparse(text)
        except (ValueError, OverflowError):
            try:
                parsed = dateparser.parse(text)
            except (ValueError, OverflowError):
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _sane(value: datetime | None, now: datetime | None) -> datetime | None:
    """The date, or None when it is nonsense: before 1990 or over two days ahead of `now`."""
    if value is None or value < EARLIEST:
        return None
    if now is not None and value > now + FUTURE_SLACK:
        return None
    return value


def _normalise_title(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    return _WS.sub(" ", _PUNCT.sub(" ", text)).strip()


def _is_tracking(param: str) -> bool:
    name = param.split("=", 1)[0].lower()
    if "%" in name:
        from urllib.parse import unquote

        name = unquote(name)
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


def _sniff_head(data: bytes) -> bytes:
    """The first bytes after BOMs and whitespace, lowercased, NULs dropped (UTF-16/32)."""
    head = data[:2048]
    for bom in (
        b"\xef\xbb\xbf",
        b"\xff\xfe\x00\x00",
        b"\x00\x00\xfe\xff",
        b"\xff\xfe",
        b"\xfe\xff",
    ):
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.replace(b"\x00", b"").lstrip().lower()


def _preview(data: bytes) -> str:
    return html_to_text(data[:40].decode("utf-8", "replace"))[:30]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
