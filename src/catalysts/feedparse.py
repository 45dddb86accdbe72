"""Feed bytes -> `models.ParsedFeed`: RSS, RDF and Atom as feedparser reads them, JSON Feed by hand.

RSS, RDF and Atom go through a fast path (lxml plus a replay of feedparser's rules, below)
whenever it can prove it gives feedparser's result, else through feedparser itself.
Pure: bytes in, entries out. Nothing here opens a URL or a file or reads the clock --
`feedparser.parse` would do both if handed a string, so it only ever sees a byte stream.

Everything that leaves this module is normalised once: plain text (no HTML), canonical
http(s) links with tracking parameters removed, aware UTC dates (nonsense dates dropped),
and a stable entry key (guid, else canonical link, else a hash of title and link).

Security: documents whose DOCTYPE declares entities are refused before any XML parser sees
them. feedparser strips only declarations that start a line, so a one-line "billion laughs"
DOCTYPE reaches expat and costs seconds and tens of MB; external entities are not resolved
by either parser, but refusing every declaration closes both holes with one cheap check.
Real feeds do not declare entities. The fast path's lxml parser is hardened besides (no
network, no DTD loading, no entity substitution, no huge trees) and leaves any document
with a DOCTYPE to feedparser.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from catalysts.errors import CatalystsError, ExitCode
from catalysts.models import Entry, ParsedFeed
from catalysts.text import html_to_text
from catalysts.timeutil import as_utc

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
    fast = _parse_fast(data, url=url, content_type=content_type, now=now)
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
    declared = _XML_ENCODING.search(ascii_view)  # the whole declaration, however long
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
    url = url.strip().replace(" ", "%20")
    # Seldom: most links have no control character at all (and controls are unprintable).
    if not url.isprintable() and _URL_CONTROL.search(url):
        url = _URL_BREAKS.sub("", url)
        if _URL_CONTROL.search(url):
            return None
    if not url:
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

    entries = _normalised_entries(raw_entries, fp_feed.get("link"), url=url, now=now)
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


# --- the fast path (lxml) --------------------------------------------------------------------
#
# feedparser spends about a millisecond per entry in Python SAX callbacks. The fast path
# parses with lxml (libxml2, hardened: no network, no DTD, no entity substitution, no huge
# trees) and replays on the tree the part of feedparser's element handlers that can reach
# the fields we keep -- with the same state: which of several titles, summaries or authors
# wins (feedparser's depth rules), description vs content, guid-as-link, author details,
# xml:base, its link and text fix-ups and its date parsers -- then normalises with the very
# function the feedparser path uses. It gives up (None: feedparser parses the document) on
# anything it cannot prove it replays: ill-formed XML, a DOCTYPE, encodings other than
# UTF-8, Latin-1 and ASCII, markup inside a text field, base64 or XHTML content, and every
# element feedparser has a handler for that is not replayed here. tests/test_feedparse.py
# compares both paths on every real feed and on hand-written and generated documents.

# Anchored, so only the XML declaration is searched (up to its end), at any length.
_XML_ENCODING = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\bencoding\s*=\s*[\"']([\w.:\-]+)")
_SAME_DECODING = {"utf8": "utf-8", "iso88591": "latin-1", "latin1": "latin-1", "usascii": "ascii"}
_ENCODING_PUNCT = re.compile(r"[\s_\-]")
_XMLNS_DECL = re.compile(rb"xmlns(?::([\w.\-]+))?\s*=\s*[\"']([^\"']*)")
_ATOM_NS = "http://www.w3.org/2005/atom"
_RSS_VERSIONS = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
_ATOM_VERSIONS = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}
_CONTENT_TYPES = {
    "text": "text/plain", "plain": "text/plain", "html": "text/html",
    "xhtml": "application/xhtml+xml",
}  # fmt: skip
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_COPIED_TO_SUMMARY = _HTML_TYPES | {"text/plain"}
_RELATIVE_URI_KEYS = frozenset(
    {"comments", "docs", "href", "icon", "id", "link", "logo", "url", "wfw_comment",
     "wfw_commentrss"}
)  # fmt: skip
# Keys of feedparser's entry and feed dicts that the normalisation reads or this replay keeps
# state in: an element feedparser stores under one of them unmodelled means "give up".
_READ_KEYS = frozenset(
    {"title", "title_detail", "link", "links", "summary", "content", "id", "author", "authors",
     "tags", "published_parsed", "updated_parsed", "created_parsed", "image", "textinput",
     "date_parsed", "issued_parsed", "modified_parsed"}
)  # fmt: skip
_C1_CONTROL = re.compile("[\x80-\x9f]")  # all that feedparser's cp1252 table maps
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_FP_EMAIL = re.compile(
    r"(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"
    r"([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"
)  # feedparser's own pattern (mixin._sync_author_detail)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip
_RFC822_ZONES = {
    "ut": 0, "gmt": 0, "z": 0, "adt": -3, "ast": -4, "at": -4, "edt": -4, "est": -5, "et": -5,
    "cdt": -5, "cst": -6, "ct": -6, "mdt": -6, "mst": -7, "mt": -7, "pdt": -7, "pst": -8,
    "pt": -8, "a": -1, "n": 1, "m": -12, "y": 12, "met": 1, "mest": 2,
}  # fmt: skip
# The two shapes nearly every feed uses, lowercased, in the forms where feedparser's w3dtf
# and rfc822 handlers are known to read them as below; anything else goes to feedparser's
# own _parse_date. A zone name it does not know counts as UTC there, so here too.
_RFC822_DATE = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?(\d{1,2})\s+([a-z]{3})[a-z]*\s+(\d{4})"
    r"\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:([+-])(\d{2})(\d{2})|(?!gmt.)(?!etc/)([a-z]+))"
)
_W3DTF_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:t(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?"
    r"(?:z|([+-])(\d{2}):(\d{2}))?| (\d{2}):(\d{2})(?::(\d{2}))?)?"
)


class _GiveUp(Exception):
    """The document holds something the replay does not model: feedparser must parse it."""


def warm_up() -> None:
    """Import and build what parsing needs, which takes a while the first time."""
    _fp()


@functools.cache
def _fp() -> SimpleNamespace:
    """feedparser's tables and helpers, imported on first use (feedparser is slow to import)."""
    from feedparser.api import StrictFeedParser
    from feedparser.datetimes import _parse_date
    from feedparser.html import _cp1252
    from feedparser.mixin import _FeedParserMixin
    from feedparser.urls import _urljoin, make_safe_absolute_uri

    handled = {
        name.split("_", 2)[2]
        for name in dir(StrictFeedParser)
        if name.startswith(("_start_", "_end_"))
    }
    return SimpleNamespace(
        known={uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()},
        canonical_names=frozenset(_FeedParserMixin.namespaces.values()) - {""},
        handled=frozenset(handled),
        parse_date=_parse_date,
        cp1252=_cp1252,
        urljoin=_urljoin,
        safe_absolute=make_safe_absolute_uri,
        parser=_hardened_parser(),
    )


def _hardened_parser() -> Any:
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        # Not collect_ids=False: lxml implements it with a libxml2 flag that also makes it
        # load the external DTD subset, i.e. open a local file a DOCTYPE names.
    )


def _parse_fast(
    data: bytes, *, url: str, content_type: str | None, now: datetime | None
) -> ParsedFeed | None:
    """The feed as the feedparser path would give it, or None when only feedparser can tell."""
    # feedparser decodes with the HTTP charset, else the declared one (RFC 3023 for
    # application/xml), lxml with the declared one: only encodings both read alike, agreeing.
    charset = _CHARSET.search(content_type or "")
    declared = _XML_ENCODING.search(data)
    names = {_SAME_DECODING.get(_ENCODING_PUNCT.sub("", n.lower())) for n in (
        charset.group(1) if charset else "",
        declared.group(1).decode("ascii") if declared else "",
    ) if n}  # fmt: skip
    if None in names or len(names) > 1:
        return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        return None
    if _DOCTYPE.search(data):  # feedparser's to judge; and lxml must never see a DTD
        return None
    from lxml import etree

    fp = _fp()
    try:
        root = etree.fromstring(data, fp.parser)
    except (etree.XMLSyntaxError, LookupError, ValueError):
        return None
    if root.getroottree().docinfo.doctype:
        return None  # a DTD may change feedparser's version and entities; let it judge
    try:
        replay = _Replay(fp, _tag_keys(data, fp))
        replay.run(root)
    except (_GiveUp, RecursionError):
        return None
    if not replay.version:
        return None
    entries = _normalised_entries(replay.entries, replay.feed.get("link"), url=url, now=now)
    if not entries:
        return None  # feedparser decides between an empty feed and a reason to refuse
    return ParsedFeed(
        entries=tuple(_dedupe_keys(entries)),
        title=html_to_text(replay.feed.get("title"))[:MAX_TITLE] or None,
        format=replay.version,
    )


class _TagKeys(dict):  # type: ignore[type-arg]
    """lxml tag -> feedparser's key for it, its handler, which open elements it closes and
    how `_Replay.entry_children` may take it as a leaf (`_LEAF_*`, 0: through elements())."""

    def __init__(self, fp: SimpleNamespace, unknown: Mapping[str, list[str]]) -> None:
        super().__init__(_SHARED_TAG_KEYS)
        self.fp = fp
        self.unknown = unknown

    def __missing__(self, tag: object) -> tuple[str, _Handler, int, int]:
        if not isinstance(tag, str):
            raise _GiveUp  # an entity reference node: never expected, never guessed at
        ns, _, local = tag[1:].partition("}") if tag[0] == "{" else ("", "", tag)
        local = local.lower()
        prefix: str | None = ""
        shared = True  # the same in every document: no namespace, or one feedparser knows
        if ns:
            low = ns.lower()
            if "backend.userland.com/rss" in low:
                low = "http://backend.userland.com/rss"
            prefix = self.fp.known.get(low)
            if prefix is None:
                # feedparser uses the first prefix declared for the namespace so far: with
                # several candidates, none may name an element it handles.
                shared = False
                candidates = self.unknown.get(ns) or [""]
                prefix = next((c for c in candidates if c), "")
                keys = {f"{c}_{local}" if c else local for c in candidates}
                if len(keys) > 1 and keys & (self.fp.handled | _READ_KEYS):
                    raise _GiveUp
        key = f"{prefix}_{local}" if prefix else local
        handler = _HANDLERS.get(key)
        if handler is None:
            if key in self.fp.handled or key in _READ_KEYS:
                raise _GiveUp  # feedparser does something with it that is not replayed here
            handler = _Replay.unknown
        closes = 0
        if not prefix:
            closes |= _CLOSES_TEXTINPUT if local not in _TEXTINPUT_PARTS else 0
            closes |= _CLOSES_IMAGE if local not in _IMAGE_PARTS else 0
        leaf = _LEAF_OPS.get(key, _LEAF_NOOP if handler in _NOOP_ON_LEAVES else 0)
        value = (key, handler, closes, leaf)
        self[tag] = value
        if shared and len(_SHARED_TAG_KEYS) < _SHARED_TAG_KEYS_MAX:
            _SHARED_TAG_KEYS[tag] = value
        return value


# Tags whose entry is the same in every document, found once per process rather than once
# per document; bounded, as hostile documents can invent any number of tags.
_SHARED_TAG_KEYS: dict[str, tuple[str, _Handler, int, int]] = {}
_SHARED_TAG_KEYS_MAX = 1_000


def _tag_keys(data: bytes, fp: SimpleNamespace) -> _TagKeys:
    """Prefixes as feedparser names them, from every namespace declaration in the document.

    feedparser names an element of a namespace it knows by its own prefix ("dc"), any other
    by a prefix the document declared for it. Documents that bind one prefix to several
    namespaces, or that could make feedparser's prefix mapping rename another element, are
    left to feedparser. The scan also sees "xmlns" inside article text: that only adds caution.
    """
    by_prefix: dict[bytes, bytes] = {}
    unknown: dict[str, list[str]] = {}
    renamed: set[str] = set()
    for raw_prefix, raw_uri in _XMLNS_DECL.findall(data):
        if raw_prefix and by_prefix.setdefault(raw_prefix, raw_uri) != raw_uri:
            raise _GiveUp
        uri = raw_uri.decode("utf-8", "replace")
        low = uri.lower()
        name = raw_prefix.decode("utf-8", "replace").lower()
        canonical = fp.known.get(low)
        if canonical is not None:
            if name and name != canonical:
                renamed.add(name)
        elif "backend.userland.com/rss" not in low:
            candidates = unknown.setdefault(uri, [])
            if name not in candidates:
                candidates.append(name)
    # feedparser maps a prefix declared for a namespace it knows to its own name, wherever
    # that prefix appears: such a prefix must name nothing else.
    if renamed & (fp.canonical_names | {c for names in unknown.values() for c in names}):
        raise _GiveUp
    return _TagKeys(fp, unknown)


# Element keys the replay models, by what feedparser does with them.
_TEXTINPUT_PARTS = frozenset({"title", "link", "description", "name"})
_IMAGE_PARTS = frozenset({"title", "link", "description", "url", "href", "width", "height"})
_CLOSES_TEXTINPUT, _CLOSES_IMAGE = 1, 2
_DATE_KEYS = {
    "published": "published", "issued": "published", "pubdate": "published",
    "dcterms_issued": "published", "updated": "updated", "modified": "updated",
    "lastbuilddate": "updated", "dc_date": "updated", "dcterms_modified": "updated",
    "created": "created", "dcterms_created": "created",
}  # fmt: skip
# Handlers whose effect never reaches a kept field, on elements without children.
_INERT_LEAVES = frozenset(
    {"language", "dc_language", "webmaster", "dc_publisher", "rights", "copyright",
     "dc_rights", "subtitle", "tagline", "generator", "info", "feedburner_browserfriendly",
     "expirationdate", "media_thumbnail", "media_credit", "media_rating", "media_restriction",
     "media_license", "media_player", "width", "height", "newlocation", "dcterms_valid",
     "cloud", "enclosure", "dc_contributor"}
)  # fmt: skip
# Handlers that neither keep text nor change state: their children are replayed as usual.
_CONTAINERS = frozenset({"media_content", "media_group", "contributor"})
_AUTHOR_PARTS = frozenset({"name", "email", "uri", "url", "homepage"})


class _Replay:
    """feedparser's element handlers (mixin.py, namespaces/*.py), replayed on an lxml tree.

    Method names follow feedparser's (`_start_description` -> `description`), and so does
    the state, so each can be checked against its original line by line. Only what can
    reach the feed title and link and the entries' title, title base, link, id, summary,
    content, author, tags and dates is kept.
    """

    def __init__(self, fp: SimpleNamespace, keys: _TagKeys) -> None:
        self.fp = fp
        self.keys = keys
        self.version = ""
        self.feed: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.entry_depths: list[dict[str, int]] = []  # property_depth_map
        self.source: dict[str, Any] = {}
        self.content_type = ""  # contentparams["type"] and ["base"] of the open content
        self.content_base = ""
        self.expecting = False  # the expecting_text of the open push_content
        self.depth = 0
        self.infeed = self.inentry = self.insource = self.inimage = self.intextinput = False
        self.inauthor = self.incontributor = False
        self.incontent = 0
        self.has_content = False
        self.title_depth = -1
        self.guidislink = False
        self.baseuri = ""
        self.basestack: list[str] = []
        self.rebased: dict[str, str] = {}

    # -- traversal --

    def run(self, root: Any) -> None:
        declared = root.nsmap
        for prefix, uri in declared.items():  # feedparser's track_namespace, root only
            low = uri.lower()
            if self.version:
                break
            if prefix is None and low == "http://my.netscape.com/rdf/simple/0.9/":
                self.version = "rss090"
            elif low == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif low == _ATOM_NS:
                self.version = "atom10"
        self.elements((root,))

    def elements(self, els: Iterable[Any]) -> None:
        """Replay each element in turn; `self.elements(el)` replays el's children.

        One loop, not a method per element: this runs for every element of every document.
        """
        keys = self.keys
        for el in els:
            key, handler, closes, _ = keys[el.tag]
            self.depth += 1
            items = el.items()
            attrs = self.attributes(items) if items else {}
            # feedparser stacks every element's base; while no base is in force only empty
            # ones, which restore nothing, so they are left out.
            based = self.baseuri or "xml:base" in attrs or "base" in attrs
            if based:
                self.track_base(attrs.get("xml:base", attrs.get("base")))
                self.basestack.append(self.baseuri)
            if closes:  # feedparser's "special hack" for unclosed textinput and image elements
                if closes & _CLOSES_TEXTINPUT:
                    self.intextinput = False
                if closes & _CLOSES_IMAGE:
                    self.inimage = False
            handler(self, key, el, attrs)
            if based:
                self.basestack.pop()
                if self.basestack and self.basestack[-1]:
                    self.baseuri = self.basestack[-1]
            self.depth -= 1

    def entry_children(self, el: Any) -> None:
        """`self.elements(el)` for an entry's children, its usual leaves done in place.

        While no xml:base is in force and no image, textinput or source is open, elements()
        does nothing around a leaf without an xml:base attribute but call its handler, whose
        context() is the entry. Such leaves are done here: the usual fields in the lines
        their handler, push_content, pop_content and pop would run for them (the tests check
        both ways agree), others by their handler alone. The rest goes through elements().
        """
        keys = self.keys
        entry = self.entries[-1]
        depths = self.entry_depths[-1]
        depth = self.depth + 1
        plain = not (self.baseuri or self.insource or self.inimage or self.intextinput)
        for child in el:
            key, handler, _, leaf = keys[child.tag]
            attrs: dict[str, str] = {}
            general = not (plain and leaf) or len(child)
            if not general and (items := child.items()):
                if leaf < _LEAF_GUID:
                    general = True  # attributes matter to these handlers: leave it to them
                elif leaf == _LEAF_NOOP:  # only an xml:base would matter: any name "*base"
                    general = "base" in "".join([name for name, _ in items]).lower()
                else:
                    attrs = self.attributes(items)
                    general = "xml:base" in attrs or "base" in attrs
            if general:
                self.elements((child,))
                plain = not (self.baseuri or self.insource or self.inimage or self.intextinput)
                continue
            if leaf == _LEAF_NOOP:
                continue
            if leaf == _LEAF_DIRECT:
                self.depth = depth
                handler(self, key, child, attrs)
                self.depth = depth - 1
                continue
            text = child.text
            output = text.strip() if text else ""
            if leaf == _LEAF_GUID:
                self.guidislink = attrs.get("ispermalink", "true") == "true"
                if self.guidislink and ":///" in output:
                    output = self.resolve(output)
            elif leaf == _LEAF_LINK and ":///" in output:
                output = self.resolve(output)
            if not output.isascii():
                output = self.unmangle(output)
            if leaf == _LEAF_TITLE:
                if not -1 < self.title_depth <= depth:
                    old = depths.get("title")
                    if old is None or depth <= old:
                        depths["title"] = depth
                        entry["title"] = output
                    entry["title_detail"] = {"base": ""}  # the content base, never set here
                if output:
                    self.title_depth = depth
            elif leaf == _LEAF_CATEGORY:
                tags = entry.setdefault("tags", [])
                if output:
                    if tags and not tags[-1]["term"]:
                        tags[-1]["term"] = output
                    else:
                        self.add_tag(output, None, None)
            elif leaf == _LEAF_LINK:
                if "&" in output:
                    output = _LINK_ENTITY.sub(r"&\g<1>", output.replace("&amp;", "&"))
                entry["link"] = output
            elif leaf == _LEAF_ENCODED or (
                leaf == _LEAF_DESCRIPTION and "summary" in entry and not self.has_content
            ):  # content: content:encoded, or a description after a summary
                self.has_content = True
                entry.setdefault("content", []).append({"value": output})
                entry.setdefault("summary", output)
            else:
                if leaf == _LEAF_DATE:
                    name = _DATE_KEYS[key]
                    entry[name + "_parsed"] = _parse_date(output, self.fp)
                else:
                    name = "id" if leaf == _LEAF_GUID else "summary"
                old = depths.get(name)
                if old is None or depth <= old:
                    depths[name] = depth
                    entry[name] = output
                if leaf == _LEAF_GUID and self.guidislink:
                    entry.setdefault("link", output)

    def track_base(self, base: str | None) -> None:
        if base:
            if self.baseuri:
                self.baseuri = self.fp.safe_absolute(self.baseuri, base) or self.baseuri
            else:
                self.baseuri = self.fp.urljoin("", base)
            return
        # No xml:base: feedparser still re-resolves the inherited base at every element.
        rebased = self.rebased.get(self.baseuri)
        if rebased is None:
            rebased = self.fp.safe_absolute(self.baseuri, self.baseuri) or self.baseuri
            self.rebased[self.baseuri] = rebased
        self.baseuri = rebased

    def attributes(self, items: list[tuple[str, str]]) -> dict[str, str]:
        attrs = {}
        for name, value in items:  # a loop, not a comprehension: no extra frame
            attrs[name.lower()] = value
        if "{" in "".join(attrs):  # namespaced ones, seldom: feedparser's prefixes first
            attrs = {}
            for name, value in items:
                if name[0] == "{":  # "xml:base", "rdf:about": feedparser's prefix, if known
                    ns, _, local = name[1:].partition("}")
                    prefix = self.fp.known.get(ns.lower(), "")
                    if prefix:
                        attrs[f"{prefix}:{local}".lower()] = value
            for name, value in items:  # then expat's bare names, which win
                attrs[name.rpartition("}")[2].lower()] = value
        for name in ("rel", "type"):
            if name in attrs:
                attrs[name] = attrs[name].lower()
        return attrs

    def resolve(self, uri: str) -> str:
        """feedparser's resolve_uri; urljoin against no base changes only "scheme:///"."""
        if self.baseuri:
            return self.fp.urljoin(self.baseuri, uri)  # type: ignore[no-any-return]
        return self.fp.urljoin("", uri) if ":///" in uri else uri  # type: ignore[no-any-return]

    @staticmethod
    def text(el: Any) -> str:
        if len(el):
            raise _GiveUp  # markup inside a text field: feedparser's content rules apply
        return el.text or ""

    # -- feedparser's handlers, each for the keys listed in _HANDLERS --

    def title(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        saved = self.title_depth
        self.push_content(attrs, "text/plain", self.infeed or self.inentry or self.insource)
        if self.pop_content("title", el):
            self.title_depth = self.depth
        if key == "media_title":
            self.title_depth = saved

    def description(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if "summary" in self.context() and not self.has_content:
            self.content(key, el, attrs)
        elif key == "summary":
            self.push_content(attrs, "text/plain", True)
            self.pop_content("summary", el)
        else:
            self.push_content(attrs, "text/html", self.infeed or self.inentry or self.insource)
            self.pop_content("description", el)

    def content(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        self.has_content = True
        encoded = key in ("content_encoded", "fullitem")
        self.push_content(attrs, "text/html" if encoded else "text/plain", True)
        copy_to_summary = self.content_type in _COPIED_TO_SUMMARY
        value = self.pop_content("content", el)
        if copy_to_summary:
            self.context().setdefault("summary", value)

    def link(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            attrs["href"] = href
        if "href" in attrs:
            href = self.resolve(attrs["href"])
            if attrs["rel"] == "alternate" and _content_type(attrs["type"]) in _HTML_TYPES:
                self.context()["link"] = href
            self.text(el)
        else:
            self.pop("link", self.infeed or self.inentry or self.insource, self.text(el))

    def guid(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        self.guidislink = attrs.get("ispermalink", "true") == "true"
        value = self.pop("id", True, self.text(el))
        if self.guidislink:
            self.context().setdefault("link", value)

    def date(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        name = _DATE_KEYS[key]
        value = self.pop(name, True, self.text(el))
        self.context()[name + "_parsed"] = _parse_date(value, self.fp)

    def image(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if key == "textinput":
            if self.inentry:
                raise _GiveUp  # feedparser itself trips over an item's textinput
            self.context().setdefault("textinput", {})
            self.intextinput = True
        else:
            if not self.inentry:
                self.context().setdefault("image", {})
            self.inimage = True
        self.title_depth = -1
        self.elements(el)
        if key == "textinput":
            self.intextinput = False
        else:
            self.inimage = False

    def source_element(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if "url" in attrs:
            self.source["href"] = attrs["url"]
        self.insource = True
        self.title_depth = -1
        self.elements(el)
        self.insource = False
        self.source.clear()

    def inert(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        self.text(el)

    def container(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if key == "contributor":
            self.incontributor = True
        self.elements(el)
        self.incontributor = False

    def unknown(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        # No handler: feedparser keeps the element under its own name, which nothing reads.
        self.elements(el)

    def feed_element(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if key == "rss":
            if not self.version.startswith("rss"):
                version = attrs.get("version", "")
                self.version = _RSS_VERSIONS.get(version) or (
                    "rss20" if version.startswith("2.") else "rss"
                )
            self.elements(el)
            return
        if key == "feed" and not self.version:
            self.version = _ATOM_VERSIONS.get(attrs.get("version", ""), "atom")
        if key == "channel" and ("lastmod" in attrs or "href" in attrs):
            raise _GiveUp  # CDF attributes
        self.infeed = True
        self.elements(el)
        self.infeed = False

    def item(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if self.inentry or "lastmod" in attrs or "href" in attrs:
            raise _GiveUp  # nested entries, CDF attributes
        self.entries.append({})
        self.entry_depths.append({})
        self.inentry = True
        self.guidislink = False
        self.title_depth = -1
        if attrs.get("rdf:about"):
            self.context()["id"] = attrs["rdf:about"]
        self.entry_children(el)
        self.inentry = False
        self.has_content = False

    def context(self) -> dict[str, Any]:
        if self.insource:
            return self.source
        if self.inimage and "image" in self.feed:
            return self.feed["image"]  # type: ignore[no-any-return]
        if self.intextinput:
            return self.feed["textinput"]  # type: ignore[no-any-return]
        if self.inentry:
            return self.entries[-1]
        return self.feed

    def push_content(self, attrs: dict[str, str], default_type: str, expecting: bool) -> None:
        self.incontent += 1
        if attrs:
            kind = _content_type(attrs.get("type", default_type))
            if attrs.get("mode") == "base64" or not (
                kind.startswith("text/") or kind.endswith(("+xml", "/xml"))
            ):
                raise _GiveUp  # base64-encoded content
            if kind == "application/xhtml+xml":
                raise _GiveUp  # feedparser re-serialises and escapes XHTML
        else:
            kind = default_type  # text/plain or text/html: nothing to check
        self.content_type = kind
        self.content_base = self.baseuri
        self.expecting = expecting

    def pop_content(self, element: str, el: Any) -> str:
        value = self.pop(element, self.expecting, self.text(el))
        self.incontent -= 1
        self.content_type = self.content_base = ""
        return value

    def author(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        self.inauthor = True
        self.context().setdefault("authors", []).append({})
        pieces = [el.text or ""]
        for child in el:
            handler = self.keys[child.tag][1]
            if handler not in (_Replay.author_part, _Replay.title) and (
                handler is not _Replay.unknown or child.attrib
            ):
                raise _GiveUp  # an element that pushes no text: its text joins the author's
            self.elements((child,))
            pieces.append(child.tail or "")
        self.pop("author", True, "".join(pieces))
        self.inauthor = False
        self.sync_author()

    def author_part(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if key in ("name", "email"):
            value = self.text(el).strip()  # pushed without expecting text: no fix-ups
        else:
            key = "href"
            value = self.pop("href", True, self.text(el))
        if self.inauthor:
            context = self.context()
            self.sync_author()
            context.setdefault("authors", [{}])[-1][key] = value
        elif key == "name" and self.intextinput and not self.incontributor:
            self.context()["name"] = value

    def sync_author(self) -> None:
        context = self.context()
        authors = context.get("authors")
        detail = authors[-1] if authors else {}
        if detail:
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                context["author"] = f"{name} ({email})"
            elif name or email:
                context["author"] = name or email
            return
        author, email = context.get("author"), None
        if not author:
            return
        match = _FP_EMAIL.search(author)
        if match:
            email = match.group(0)
            author = author.replace(email, "").replace("()", "").replace("<>", "")
            author = author.replace("&lt;&gt;", "").strip()
            if author and author[0] == "(":
                author = author[1:]
            if author and author[-1] == ")":
                author = author[:-1]
            author = author.strip()
        if author:
            detail["name"] = author
        if email:
            detail["email"] = email

    def category(self, key: str, el: Any, attrs: dict[str, str]) -> None:
        if key == "media_category":
            attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
        scheme = attrs.get("scheme", attrs.get("domain"))
        self.add_tag(attrs.get("term"), scheme, attrs.get("label"))
        value = self.pop("category", True, self.text(el))
        if not value:
            return
        tags = self.context()["tags"]
        if tags and not tags[-1]["term"]:
            tags[-1]["term"] = value
        else:
            self.add_tag(value, None, None)

    def add_tag(self, term: str | None, scheme: str | None, label: str | None) -> None:
        tags = self.context().setdefault("tags", [])
        if not (term or scheme or label):
            return
        tag = {"term": term, "scheme": scheme, "label": label}
        if tag not in tags:
            tags.append(tag)

    def unmangle(self, output: str) -> str:
        """feedparser undoes UTF-8 read as Latin-1, then maps C1 controls as cp1252."""
        # Not contextlib.suppress, a Python-level context manager: this runs for every
        # non-ASCII text and mostly raises.
        try:  # noqa: SIM105
            output = output.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        if _C1_CONTROL.search(output):
            output = output.translate(self.fp.cp1252)
        return output

    def pop(self, element: str, expecting: bool, text: str) -> str:
        """mixin.pop: the element's text, fixed up and stored as feedparser stores it."""
        output = text.strip()
        if not expecting:
            return output
        if element in _RELATIVE_URI_KEYS and output and (element != "id" or self.guidislink):
            output = self.resolve(output)
        if not output.isascii():
            output = self.unmangle(output)
        if element == "category" or (element == "title" and -1 < self.title_depth <= self.depth):
            return output
        if self.inentry and not self.insource:
            entry = self.entries[-1]
            if element == "content":
                entry.setdefault("content", []).append({"value": output})
            elif element == "link":
                if not self.inimage:
                    if "&" in output:
                        output = _LINK_ENTITY.sub(r"&\g<1>", output.replace("&amp;", "&"))
                    entry["link"] = output
            else:
                if element == "description":
                    element = "summary"
                depths = self.entry_depths[-1]
                old = depths.get(element)
                if old is None or self.depth <= old:
                    depths[element] = self.depth
                    entry[element] = output
                if self.incontent and element == "title":
                    entry["title_detail"] = {"base": self.content_base}
        elif self.infeed or self.insource:
            context = self.context()
            if element == "description":
                element = "subtitle"
            context[element] = output
            if element == "link":
                context[element] = _LINK_ENTITY.sub(r"&\g<1>", output)
        return output


_Handler = Callable[[_Replay, str, Any, dict[str, str]], None]
_HANDLERS: dict[str, _Handler] = {
    **dict.fromkeys(("title", "dc_title", "media_title"), _Replay.title),
    **dict.fromkeys(
        ("description", "dc_description", "media_description", "summary"), _Replay.description
    ),
    **dict.fromkeys(("content", "content_encoded", "fullitem"), _Replay.content),
    "link": _Replay.link,
    **dict.fromkeys(("guid", "id"), _Replay.guid),
    **dict.fromkeys(("author", "managingeditor", "dc_author", "dc_creator"), _Replay.author),
    **dict.fromkeys(_AUTHOR_PARTS, _Replay.author_part),
    **dict.fromkeys(("category", "dc_subject", "media_category"), _Replay.category),
    **dict.fromkeys(_DATE_KEYS, _Replay.date),
    **dict.fromkeys(("item", "entry"), _Replay.item),
    **dict.fromkeys(("rss", "channel", "feed"), _Replay.feed_element),
    **dict.fromkeys(("image", "textinput"), _Replay.image),
    "source": _Replay.source_element,
    **dict.fromkeys(_INERT_LEAVES, _Replay.inert),
    **dict.fromkeys(_CONTAINERS, _Replay.container),
}


# How entry_children takes a leaf child of an entry: done in place (the first seven: what
# the handler would do, written out), through its handler without elements()' bookkeeping
# (DIRECT), or not at all (NOOP: the handler reads nothing of a leaf). From GUID on, with
# any attributes; the ones before only without (their handlers read some).
_LEAF_TITLE, _LEAF_DESCRIPTION, _LEAF_ENCODED, _LEAF_LINK, _LEAF_CATEGORY = 1, 2, 3, 4, 5
_LEAF_GUID, _LEAF_DATE, _LEAF_DIRECT, _LEAF_NOOP = 6, 7, 8, 9
_LEAF_OPS = {
    **dict.fromkeys(("title", "dc_title"), _LEAF_TITLE),
    **dict.fromkeys(("description", "dc_description", "media_description"), _LEAF_DESCRIPTION),
    **dict.fromkeys(("content_encoded", "fullitem"), _LEAF_ENCODED),
    "link": _LEAF_LINK,
    **dict.fromkeys(("guid", "id"), _LEAF_GUID),
    **dict.fromkeys(_DATE_KEYS, _LEAF_DATE),
    **dict.fromkeys(("category", "dc_subject"), _LEAF_CATEGORY),
    "media_category": _LEAF_DIRECT,
    **dict.fromkeys(("author", "managingeditor", "dc_author", "dc_creator"), _LEAF_DIRECT),
}
_NOOP_ON_LEAVES = (_Replay.unknown, _Replay.inert)


def _content_type(value: str) -> str:
    value = value.lower()
    return _CONTENT_TYPES.get(value, value)


def _parse_date(value: str, fp: SimpleNamespace) -> datetime | tuple[int, ...] | None:
    """feedparser's _parse_date; for the two usual shapes, its result as a UTC datetime."""
    text = value.lower()
    m = _RFC822_DATE.fullmatch(text)
    if m:
        day, month, year, hour, minute, second, sign, zh, zm, zone = m.groups()
        number = _MONTHS.get(month)
        if number is not None:
            if sign:
                offset = int(zh) * 60 + int(zm)
                offset = -offset if sign == "-" else offset
            else:
                offset = _RFC822_ZONES.get(zone, 0) * 60
            parsed = _utc_datetime(year, number, day, hour, minute, second, offset)
            if parsed is not None:
                return parsed
    m = _W3DTF_DATE.fullmatch(text)
    if m:
        year, month, day, hour, minute, second, sign, zh, zm, shour, sminute, ssecond = m.groups()
        offset = (int(zh) * 60 + int(zm)) * (-1 if sign == "-" else 1) if sign else 0
        parsed = _utc_datetime(
            year, month, day, hour or shour, minute or sminute, second or ssecond, offset
        )
        if parsed is not None:
            return parsed
    return fp.parse_date(value)  # type: ignore[no-any-return]


def _utc_datetime(
    year: str, month: int | str, day: str, hour: str | None, minute: str | None,
    second: str | None, offset_minutes: int,
) -> datetime | None:  # fmt: skip
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         int(second or 0), 0, timezone.utc)  # fmt: skip
        return stamp - _offset(offset_minutes) if offset_minutes else stamp
    except (ValueError, OverflowError):
        return None  # feedparser's other date handlers get their turn


@functools.lru_cache(maxsize=256)
def _offset(minutes: int) -> timedelta:
    # A feed's dates share a zone or two: one timedelta each, not one per date.
    return timedelta(minutes=minutes)


def _normalised_entries(
    raw: Iterable[Mapping[str, Any]], feed_link: str | None, *, url: str, now: datetime | None
) -> list[Entry]:
    """The usable entries of feedparser's entry dicts, or the replay's: one normalisation
    for both paths, so the fast path cannot drift from feedparser's here."""
    feed_base = canonical_url(feed_link, url) or url
    return _usable(_entry_from_feedparser(e, feed_base, now) for e in raw)


def _entry_from_feedparser(e: Mapping[str, Any], feed_base: str, now: datetime | None) -> Entry:
    raw_link = e.get("link")
    title_detail = e.get("title_detail")
    base = (title_detail and title_detail.get("base")) or feed_base
    link = canonical_url(raw_link, base)
    if link is None and base != feed_base:
        link = canonical_url(raw_link, feed_base)
    title = html_to_text(e.get("title"))[:MAX_TITLE]
    summary = e.get("summary") or ""
    if not summary:
        summary = next((c.get("value") for c in e.get("content") or () if c.get("value")), "")
    published = None
    for field in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get maps a missing updated_parsed to published_parsed
        # with a DeprecationWarning.
        value = dict.get(e, field)  # type: ignore[arg-type]
        if value:
            published = _sane(_from_struct(value), now)
            if published:
                break
    tags = e.get("tags")
    return Entry(
        key=entry_key(e.get("id"), link, title, raw_link=raw_link),
        title=title,
        summary=html_to_text(summary)[:MAX_SUMMARY],
        link=link,
        author=html_to_text(e.get("author"))[:MAX_AUTHOR] or None,
        categories=_categories(t.get("term") or t.get("label") for t in tags) if tags else (),
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
    last_suffix: dict[str, int] = {}  # so a link listed 100,000 times is not quadratic
    for entry in entries:
        key = entry.key
        if counts[key] > 1 and key.startswith("guid:"):
            key = entry_key(None, entry.link, entry.title)
        stem = key
        if key in seen:
            n = last_suffix.get(stem, 1)
            while key in seen:
                n += 1
                key = f"{stem}~{n}"
            last_suffix[stem] = n
        seen.add(key)
        yield entry if key == entry.key else replace(entry, key=key)


def _categories(terms: Iterable[str | None]) -> tuple[str, ...]:
    kept: dict[str, None] = {}  # first-seen order, no duplicates
    for term in terms:
        if term:
            text = html_to_text(term)[:MAX_CATEGORY]
            if text:
                kept[text] = None
    return tuple(kept)[:MAX_CATEGORIES]


def _from_struct(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):  # the fast path parses the usual shapes straight to UTC
        return value
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
    try:
        return as_utc(parsed)
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
