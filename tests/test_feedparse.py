"""feedparse: bytes -> normalised entries, on hand-written documents and the real corpus."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalysts import feedparse
from catalysts.errors import CatalystsError
from catalysts.feedparse import ParseError, canonical_url, parse_feed, story_key
from catalysts.models import Entry

URL = "https://example.com/feed.xml"
NOW = datetime(2026, 8, 20, 12, 0, tzinfo=timezone.utc)
SKIP_DIRS = ("feedparser-illformed", "robustness-other")


def rss(
    items: str, *, channel: str = "<title>Feed</title>", head: str = "", namespaces: str = ""
) -> bytes:
    """A small RSS 2.0 document around `items`."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{head}'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        f' xmlns:media="http://search.yahoo.com/mrss/"{namespaces}>'
        f"<channel>{channel}{items}</channel></rss>"
    ).encode()


def one(data: bytes, **kwargs: object) -> Entry:
    feed = parse_feed(data, url=URL, **kwargs)  # type: ignore[arg-type]
    assert len(feed.entries) == 1
    return feed.entries[0]


# --- normalised fields --------------------------------------------------------------------------


def test_rss_item_is_normalised() -> None:
    entry = one(
        rss(
            "<item><title>OpenAI &lt;b&gt;files&lt;/b&gt; for &amp;amp; IPO</title>"
            "<link>HTTPS://News.Example.COM:443/a?id=7&amp;utm_source=rss&amp;b=2#top</link>"
            "<guid isPermaLink='false'>story-1</guid>"
            "<description><![CDATA[<p>First <em>para</em>.</p><p>Second.</p>]]></description>"
            "<dc:creator>Jane Roe</dc:creator><category>AI</category><category>AI</category>"
            "<category>Markets</category><pubDate>Tue, 18 Aug 2026 09:30:00 -0400</pubDate>"
            "</item>"
        )
    )
    assert entry.key == "guid:story-1"
    assert entry.title == "OpenAI files for & IPO"  # RSS titles are HTML: one more unescape
    assert entry.summary == "First para. Second."  # inline tags leave no stray space
    assert entry.link == "https://news.example.com/a?id=7&b=2"
    assert entry.author == "Jane Roe"
    assert entry.categories == ("AI", "Markets")
    assert entry.published == datetime(2026, 8, 18, 13, 30, tzinfo=timezone.utc)


def test_atom_entry_with_xml_base_resolves_relative_links() -> None:
    data = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/posts/">
  <title type="html">A &lt;i&gt;blog&lt;/i&gt;</title>
  <entry>
    <id>tag:example.org,2026:1</id>
    <title>Hello</title>
    <link rel="alternate" href="hello-world?fbclid=abc"/>
    <author><name>Ann</name></author>
    <updated>2026-08-19T10:00:00Z</updated>
    <content type="html">&lt;p&gt;Body text&lt;/p&gt;</content>
  </entry>
</feed>"""
    feed = parse_feed(data, url=URL)
    assert feed.title == "A blog"
    assert feed.format == "atom10"
    (entry,) = feed.entries
    assert entry.link == "https://blog.example.org/posts/hello-world"
    assert entry.summary == "Body text"
    assert entry.author == "Ann"
    assert entry.published == datetime(2026, 8, 19, 10, tzinfo=timezone.utc)


def test_relative_rss_link_resolves_against_channel_link_then_request_url() -> None:
    with_channel = rss(
        "<item><title>a</title><link>/p/1</link></item>",
        channel="<title>F</title><link>https://site.example/</link>",
    )
    assert one(with_channel).link == "https://site.example/p/1"
    without_channel = rss("<item><title>a</title><link>p/2</link></item>")
    assert one(without_channel).link == "https://example.com/p/2"


def test_non_web_links_become_none_and_key_falls_back_to_hash() -> None:
    entry = one(rss("<item><title>x</title><link>javascript:alert(1)</link></item>"))
    assert entry.link is None
    assert entry.key.startswith("hash:")


def test_long_title_and_summary_are_capped() -> None:
    entry = one(
        rss(f"<item><title>{'t' * 5000}</title><description>{'s ' * 10000}</description></item>")
    )
    assert len(entry.title) == feedparse.MAX_TITLE
    assert len(entry.summary) == feedparse.MAX_SUMMARY


# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Tue, 18 Aug 2026 09:30:00 GMT", datetime(2026, 8, 18, 9, 30, tzinfo=timezone.utc)),
        ("Tue, 18 Aug 2026 09:30:00 +0200", datetime(2026, 8, 18, 7, 30, tzinfo=timezone.utc)),
        ("2026-08-14 07:54:20", datetime(2026, 8, 14, 7, 54, 20, tzinfo=timezone.utc)),
        ("not a date", None),
        ("Mon, 01 Jan 1979 00:00:00 GMT", None),  # before 1990: nonsense
        ("Sat, 22 Aug 2026 13:00:00 GMT", None),  # more than two days after NOW
        ("Sat, 22 Aug 2026 11:00:00 GMT", datetime(2026, 8, 22, 11, tzinfo=timezone.utc)),
    ],
)
def test_dates_are_utc_and_nonsense_is_missing(written: str, expected: datetime | None) -> None:
    entry = one(rss(f"<item><title>a</title><pubDate>{written}</pubDate></item>"), now=NOW)
    assert entry.published == expected
    if entry.published is not None:
        assert entry.published.utcoffset() == timedelta(0)


def test_missing_date_is_none() -> None:
    assert one(rss("<item><title>a</title></item>")).published is None


# --- identity -----------------------------------------------------------------------------------


def test_key_prefers_guid_then_link_then_hash() -> None:
    guid = one(rss("<item><title>a</title><guid>g-1</guid><link>https://x.org/1</link></item>"))
    link = one(rss("<item><title>a</title><link>https://x.org/1?utm_medium=x</link></item>"))
    hashed = one(rss("<item><title>a</title></item>"))
    assert guid.key == "guid:g-1"
    assert link.key == "link:https://x.org/1"
    assert hashed.key.startswith("hash:") and len(hashed.key) == len("hash:") + 64


@pytest.mark.parametrize(
    "identity",
    ["<guid>g-1</guid>", "<link>https://x.org/1</link>", "<guid>https://x.org/1</guid>"],
)
def test_retitled_entry_keeps_its_key(identity: str) -> None:
    before = one(rss(f"<item><title>Old title</title>{identity}</item>"))
    after = one(rss(f"<item><title>New, better title</title>{identity}</item>"))
    assert before.key == after.key


def test_permalink_guid_is_keyed_by_canonical_link() -> None:
    a = one(rss("<item><title>a</title><guid>https://x.org/1?utm_source=a</guid></item>"))
    b = one(rss("<item><title>a</title><link>https://x.org/1</link></item>"))
    assert a.key == b.key == "link:https://x.org/1"


def test_guid_shared_by_several_items_is_not_used_and_keys_stay_unique() -> None:
    items = (
        "".join(
            f"<item><title>t{i}</title><guid>?src=feed</guid><link>https://x.org/{i}</link></item>"
            for i in range(3)
        )
        + "<item><title>dup</title><link>https://x.org/0</link></item>"
    )
    entries = parse_feed(rss(items), url=URL).entries
    assert len(entries) == 4
    assert len({e.key for e in entries}) == 4
    assert entries[1].key == "link:https://x.org/1"


def test_story_key_joins_one_story_across_feeds() -> None:
    a = Entry(key="guid:1", title="Whatever", link="https://news.example/a")
    b = Entry(key="guid:zz", title="Other words", link="https://news.example/a")
    assert story_key(a) == story_key(b)


def test_story_key_uses_title_for_google_news_redirects() -> None:
    g1 = Entry(
        key="guid:1",
        title="OpenAI files for IPO, sources say - Reuters",
        link="https://news.google.com/rss/articles/CBMiAAA",
    )
    g2 = Entry(
        key="guid:2",
        title="OpenAI Files for IPO — Sources Say",
        link="https://news.google.com/rss/articles/CBMiBBB",
    )
    other = Entry(key="guid:3", title="OpenAI denies IPO plans", link="https://news.google.com/x")
    assert story_key(g1) == story_key(g2) == "title:openai files for ipo sources say"
    assert story_key(other) != story_key(g1)


# --- canonical_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("HTTP://Example.COM:80/a/b?x=1#frag", None, "http://example.com/a/b?x=1"),
        ("https://example.com:8443/", None, "https://example.com:8443/"),
        ("https://example.com", None, "https://example.com/"),
        (
            "https://e.com/p?utm_source=a&id=3&fbclid=z&UTM_Campaign=b&gclid=1&q=a%20b&mc_eid=9",
            None,
            "https://e.com/p?id=3&q=a%20b",
        ),
        ("https://e.com/p?b=2&a=1", None, "https://e.com/p?b=2&a=1"),
        ("../x?ref_src=twsrc", "https://e.com/a/b/c", "https://e.com/a/x"),
        ("/x", None, None),
        ("javascript:alert(1)", "https://e.com/", None),
        ("data:text/html,hi", None, None),
        ("mailto:a@b.c", None, None),
        ("ftp://e.com/file", None, None),
        ("https://[::1]:443/x", None, "https://[::1]/x"),
        ("http://e.com:99999/", None, None),
        ("https://bank.example@evil.example/login", None, "https://evil.example/login"),
        (" https://e.com/a\n/b c ", None, "https://e.com/a/b%20c"),
        ("https://e.com/\x1b[31m", None, None),
        ("https://e.com/a\r\x7f", None, None),
        ("https://e.com/a\tb\r\nc", None, "https://e.com/abc"),
        ("", None, None),
    ],
)
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base) == expected


@given(
    st.from_regex(
        r"https?://[A-Za-z0-9.]{1,20}(:[0-9]{1,4})?(/[a-z0-9%._~-]{0,10}){0,3}", fullmatch=True
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["utm_source", "id", "fbclid", "q", "Gclid", "x"]),
            st.text("ab1", max_size=3),
        ),
        max_size=5,
    ),
)
def test_canonical_url_is_idempotent_and_drops_tracking(
    base: str, params: list[tuple[str, str]]
) -> None:
    url = base + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
    once = canonical_url(url)
    if once is None:
        return
    assert canonical_url(once) == once
    kept = [f"{k}={v}" for k, v in params if k in ("id", "q", "x")]
    assert once.partition("?")[2] == "&".join(kept)


_URL_PIECES = st.sampled_from(
    ["http://", "https://", "HTTPS://", "a", "B", "e.com", "news.google.com", "News.Google.com",
     "E.com", ".", "-", "_", "~", ":", ":80", ":443", ":8080", "@", "[::1]", "/", "//", "?", "&",
     "=", "#", "%41", "%75tm_x", "utm_a=1", "fbclid", "x=1", " ", "\t", "\n", "\x00", "\u00e9",
     "\\", ";", "../", "ftp:"]
)  # fmt: skip
_URLS = st.lists(_URL_PIECES, max_size=12).map("".join)
_NEVER = re.compile(r"(?!)")


@given(_URLS, st.sampled_from([None, "https://e.com/a/b", "HTTP://X.org:81/c?d#e"]))
def test_canonical_url_fast_path_equals_urlsplit(url: str, base: str | None) -> None:
    with pytest.MonkeyPatch.context() as m:
        fast = canonical_url(url, base)
        m.setattr(feedparse, "_PLAIN_URL", _NEVER)
        assert canonical_url(url, base) == fast


@pytest.mark.parametrize(
    "url",
    [
        "https://e.com/a?utm_source=x&b=1#f",
        "http://e.com",
        "http://e.com?x=1",
        "http://e.com#x?y",
        "https://e.com./x",
        "https://a..b/x?&&y=1&",
        "https://e.com/x?",
        "https://news.google.com/rss/articles/abc?oc=5",
    ],
)
def test_canonical_url_fast_path_equals_urlsplit_on_examples(url: str) -> None:
    fast = canonical_url(url)
    assert feedparse._PLAIN_URL.match(url.strip())  # these do take the fast path
    with pytest.MonkeyPatch.context() as m:
        m.setattr(feedparse, "_PLAIN_URL", _NEVER)
        assert canonical_url(url) == fast


@given(_URLS, st.sampled_from(["OpenAI files for IPO - Reuters", "", "A  b!"]))
def test_story_key_fast_host_equals_urlsplit(link: str, title: str) -> None:
    entry = Entry(key="guid:1", title=title, summary="", link=link or None)
    with pytest.MonkeyPatch.context() as m:
        fast = story_key(entry)
        m.setattr(feedparse, "_PLAIN_URL", _NEVER)
        assert story_key(entry) == fast


# --- JSON Feed ----------------------------------------------------------------------------------


def test_json_feed_11() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JF",
        "items": [
            {
                "id": 42,
                "url": "/posts/1?utm_campaign=x",
                "title": "Hello &amp; bye",
                "content_html": "<p>Hi <b>there</b></p>",
                "date_published": "2026-08-19T08:00",
                "authors": [{"name": "A"}, {"name": "B"}],
                "tags": ["x", "y"],
            },
            {"id": "2", "content_text": "untitled microblog post"},
        ],
    }
    feed = parse_feed(json.dumps(doc).encode(), url=URL, content_type="application/feed+json")
    assert feed.format == "json11"
    assert feed.title == "JF"
    first, second = feed.entries
    assert first.key == "guid:42"
    assert first.link == "https://example.com/posts/1"
    assert first.title == "Hello & bye"
    assert first.summary == "Hi there"
    assert first.author == "A, B"
    assert first.categories == ("x", "y")
    assert first.published == datetime(2026, 8, 19, 8, tzinfo=timezone.utc)
    assert second.title == "" and second.summary == "untitled microblog post"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-08-19T10:00:00+02:00", datetime(2026, 8, 19, 8, tzinfo=timezone.utc)),
        ("2026-08-19T08:00:00Z", datetime(2026, 8, 19, 8, tzinfo=timezone.utc)),
        ("Wed, 19 Aug 2026 08:00:00 GMT", datetime(2026, 8, 19, 8, tzinfo=timezone.utc)),
        ("Wed, 19 Aug 2026 08:00:00", datetime(2026, 8, 19, 8, tzinfo=timezone.utc)),
        ("not a date", None),
        ("1989-12-31T23:00:00Z", None),
    ],
)
def test_json_feed_dates_are_aware_utc(written: str, expected: datetime | None) -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [{"id": "a", "title": "t", "date_published": written}],
    }
    published = one(json.dumps(doc).encode(), now=NOW).published
    assert published == expected
    assert published is None or published.utcoffset() == timedelta(0)


def test_json_feed_10_author_and_bom() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "items": [{"id": "a", "title": "t", "author": {"name": "Solo"}}],
    }
    feed = parse_feed(b"\xef\xbb\xbf" + json.dumps(doc).encode(), url=URL)
    assert feed.format == "json10"
    assert feed.entries[0].author == "Solo"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"rss": {"channel": {"item": []}}}', "not a JSON Feed (looks like RSS-in-JSON)"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "without an items list"),
        (b'{"items": [}', "malformed JSON"),
        (b"[1, 2]", "top level is not an object"),
    ],
)
def test_json_that_is_not_a_json_feed(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=re.escape(reason)):
        parse_feed(body, url=URL, content_type="application/json")


# --- what is not a feed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty document"),
        (b" \n\t ", "empty document"),
        (b"\xef\xbb\xbf  ", "empty document"),
        (b"<!DOCTYPE html><html><body>Hi</body></html>", "not a feed: looks like an HTML page"),
        (b"<html><head><title>x</title></head></html>", "not a feed: looks like an HTML page"),
        (
            b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>a<br>'
            b"</body></html>",
            "not a feed: looks like an HTML page",
        ),
        (
            b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>https://e.com/</loc></url></urlset>",
            "not a feed: XML root <urlset>",
        ),
        (b"Redirecting...\n", "not a feed: no XML or JSON markup"),
        (b"/etc/passwd", "not a feed: no XML or JSON markup"),
        (b"https://example.com/feed.xml", "not a feed: no XML or JSON markup"),
        (
            b'<?xml version="1.0"?>\n<rss version="2.0">\n<channel>\n<title>a &b</title>\n<item>',
            "malformed XML at line 4: not well-formed",
        ),
    ],
)
def test_nothing_usable_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_feed(body, url=URL)
    assert reason in str(caught.value)
    assert isinstance(caught.value, CatalystsError)
    assert caught.value.url == URL
    assert "\n" not in str(caught.value)


def test_empty_but_valid_feed_is_not_an_error() -> None:
    feed = parse_feed(rss(""), url=URL)
    assert feed.entries == ()
    assert feed.title == "Feed"


def test_ill_formed_feed_with_entries_returns_them_with_a_warning() -> None:
    data = rss("<item><title>caf&eacute; &bull; ok</title><guid>1</guid></item>")
    feed = parse_feed(data, url=URL)
    assert [e.title for e in feed.entries] == ["café • ok"]
    assert feed.warning is not None and "undefined entity" in feed.warning


# --- encodings ----------------------------------------------------------------------------------


def test_utf16_with_bom() -> None:
    text = rss("<item><title>Zürich €</title></item>").decode()
    data = text.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    assert one(data).title == "Zürich €"


def test_declared_latin1() -> None:
    data = rss("<item><title>caf\xe9</title></item>").decode()
    data_bytes = data.replace("utf-8", "iso-8859-1").encode("latin-1")
    assert one(data_bytes).title == "café"


def test_http_charset_is_honoured() -> None:
    data = b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>caf\xe9</title>'
    data += b"</item></channel></rss>"
    assert one(data, content_type="text/xml; charset=windows-1252").title == "café"


def test_utf8_bom() -> None:
    assert one(b"\xef\xbb\xbf" + rss("<item><title>été</title></item>")).title == "été"


# --- security -----------------------------------------------------------------------------------


def _lol_entities(depth: int = 9) -> list[str]:
    decls = ['<!ENTITY lol0 "lol">']
    decls += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)]
    return decls


@pytest.mark.parametrize("separator", ["", "\n"])
def test_billion_laughs_is_refused_before_parsing(separator: str) -> None:
    head = f"<!DOCTYPE rss [{separator}{separator.join(_lol_entities())}{separator}]>"
    data = rss("<item><title>&lol9;</title><guid>1</guid></item>", head=head)
    with pytest.raises(ParseError, match="declares entities"):
        parse_feed(data, url=URL)


@pytest.mark.parametrize(
    "decl",
    [
        '<!ENTITY xxe SYSTEM "{uri}">',
        '<!ENTITY % xxe SYSTEM "{uri}"> %xxe;',
        '<!ENTITY xxe PUBLIC "-//x//y" "{uri}">',
    ],
)
def test_external_entity_never_reads_the_file(tmp_path: Path, decl: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    head = "<!DOCTYPE rss [" + decl.format(uri=secret.as_uri()) + "]>"
    data = rss("<item><title>x &xxe; y</title><description>&xxe;</description></item>", head=head)
    with pytest.raises(ParseError) as caught:
        parse_feed(data, url=URL)
    assert "TOP-SECRET" not in str(caught.value)


def test_entity_declaration_in_article_text_without_doctype_is_harmless() -> None:
    item = (
        "<item><title>XML</title><description><![CDATA[Never <!ENTITY x> me]]></description></item>"
    )
    assert one(rss(item)).summary == "Never me"


@pytest.mark.parametrize("charset", ["utf-7", "cp037"])
def test_encodings_that_hide_markup_are_refused(charset: str) -> None:
    data = rss("<item><title>a</title></item>").replace(b"utf-8", charset.encode())
    with pytest.raises(ParseError, match="unsupported encoding"):
        parse_feed(data, url=URL)
    with pytest.raises(ParseError, match="unsupported encoding"):
        parse_feed(
            rss("<item><title>a</title></item>"),
            url=URL,
            content_type=f"text/xml; charset={charset}",
        )


def test_external_dtd_is_not_loaded(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOP-SECRET-CONTENT">')
    head = f'<!DOCTYPE rss SYSTEM "{dtd.as_uri()}">'
    feed = parse_feed(rss("<item><title>a &leak; b</title></item>", head=head), url=URL)
    assert all("TOP-SECRET" not in repr(e) for e in feed.entries)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe (POSIX)")
@pytest.mark.parametrize("prefix", ["", "file://"])
def test_a_doctype_naming_a_local_file_never_opens_it(tmp_path: Path, prefix: str) -> None:
    # A DOCTYPE's SYSTEM id is a path the parser must not open: a named pipe nobody writes
    # to would block the open forever. In a child process, so a regression fails, not hangs.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    doc = (
        f'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE rss SYSTEM "{prefix}{fifo}">'
        '<rss version="2.0"><channel><item><title>a b</title>'
        "<link>http://e.example/1</link></item></channel></rss>"
    )
    code = (
        "import sys; from catalysts.feedparse import parse_feed; "
        "feed = parse_feed(sys.stdin.buffer.read(), url='http://e.example/feed'); "
        "print(feed.entries[0].title)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=doc.encode(), capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "a b"


def test_an_encoding_declared_late_in_a_long_declaration_is_still_seen() -> None:
    # UTF-7 can hide "<!ENTITY" from the byte-level check: refused wherever it is declared.
    doc = b'<?xml version="1.0"' + b" " * 300 + b'encoding="utf-7"?><rss version="2.0"/>'
    with pytest.raises(ParseError, match="UTF-7"):
        parse_feed(doc, url=URL)


def test_one_link_listed_many_times_gets_numbered_keys() -> None:
    items = "<item><link>https://e.example/same</link></item>" * 3000
    feed = parse_feed(rss(items), url=URL)
    keys = [e.key for e in feed.entries]
    assert len(set(keys)) == 3000
    assert keys[:3] == [
        "link:https://e.example/same",
        "link:https://e.example/same~2",
        "link:https://e.example/same~3",
    ]


def test_control_and_bidi_characters_are_removed_from_text() -> None:
    entry = one(rss("<item><title>a\u202eb\u200bc&#x7;d</title></item>"))
    assert entry.title == "abcd"


# --- the fast path (lxml replay of feedparser) ---------------------------------------------------


def _fast(data: bytes, content_type: str | None = None) -> feedparse.ParsedFeed | None:
    return feedparse._parse_fast(data, url=URL, content_type=content_type, now=None)


def _via_feedparser(data: bytes, content_type: str | None = None) -> feedparse.ParsedFeed:
    """What parse_feed gives without its fast path: the feedparser path itself."""
    return feedparse._parse_xml_feed(data, url=URL, content_type=content_type, now=None)


def _assert_fast_equals_feedparser(data: bytes, content_type: str | None = None) -> None:
    fast = _fast(data, content_type)
    assert fast is not None, "the fast path gave up"
    reference = _via_feedparser(data, content_type)
    assert reference.warning is None
    assert (fast.entries, fast.title, fast.format) == (
        reference.entries,
        reference.title,
        reference.format,
    )


def _agrees_with_feedparser(data: bytes, fast: feedparse.ParsedFeed) -> bool:
    """The fast path's result is the feedparser path's, which read `data` without complaint."""
    reference = _via_feedparser(data)
    return reference.warning is None and (fast.entries, fast.title, fast.format) == (
        reference.entries,
        reference.title,
        reference.format,
    )


def _feedparser_baseline(data: bytes) -> tuple[Entry, ...]:
    """feedparser with its default options, normalised the same way: the reference output."""
    import feedparser

    result = feedparser.parse(
        io.BytesIO(data), response_headers={"content-type": "application/xml"}
    )
    return feedparse._from_feedparser_result(result, data, url=URL, now=None).entries


@pytest.mark.parametrize(
    ("items", "fast"),
    [
        ("<item><title>a</title><link>https://e.com/1</link></item>", True),
        ("<item><title>a</title><media:description>caption</media:description></item>", True),
        ("<item><title>a</title><author><name>Ann</name></author></item>", True),
        ("<item><title>a</title><pubDate>Tue, 18 Aug 2026 09:30:00 CET</pubDate></item>", True),
        ("<item><Title>a</Title></item>", True),
        ("<item><title>a</title><link>https://e.com/1</link>", False),  # not well-formed
        ("<item><title>caf&eacute;</title></item>", False),  # undefined entity
        ("<item><title>a <b>bold</b> move</title></item>", False),  # markup in a text field
        ("<item><title>a</title><itunes:author>A</itunes:author></item>", False),  # unmodelled
        ("<item><title>a</title><georss:point>1 2</georss:point></item>", False),
        ("<item><title>a</title><keywords>x, y</keywords></item>", False),
    ],
)
def test_fast_path_rule(items: str, fast: bool) -> None:
    namespaces = (
        ' xmlns:itunes="http://www.itunes.com/DTDs/PodCast-1.0.dtd"'
        ' xmlns:georss="http://www.georss.org/georss"'
    )
    assert (_fast(rss(items, namespaces=namespaces)) is not None) is fast


def test_fast_path_encodings() -> None:
    data = rss("<item><title>café</title></item>")
    latin1 = data.decode().replace("utf-8", "iso-8859-1").encode("latin-1")
    assert _fast(data, "application/rss+xml; charset=UTF-8") is not None
    assert _fast(latin1) is not None
    _assert_fast_equals_feedparser(latin1)
    assert _fast(data, "text/xml; charset=iso-8859-1") is None  # HTTP and document disagree
    assert _fast(data.replace(b"utf-8", b"windows-1252")) is None
    assert _fast(data.decode().replace("utf-8", "utf-16").encode("utf-16")) is None


def test_fast_path_leaves_doctypes_to_feedparser(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOP-SECRET-CONTENT">')
    data = rss("<item><title>a</title></item>", head=f'<!DOCTYPE rss SYSTEM "{dtd.as_uri()}">')
    assert _fast(data) is None


def test_fast_path_leaves_prefix_renaming_to_feedparser() -> None:
    # feedparser maps the prefix "foo" to "dc" everywhere, so it may read FOO:title as a title.
    data = rss(
        "<item><title>a</title><FOO:title>b</FOO:title></item>",
        namespaces=' xmlns:foo="http://purl.org/dc/elements/1.1/" xmlns:FOO="urn:x"',
    )
    assert _fast(data) is None
    assert parse_feed(data, url=URL).entries == _via_feedparser(data).entries


# Items on which the two parsers were seen to disagree, or might: whichever path parse_feed
# takes, its output must equal the feedparser reference.
AWKWARD_ITEMS = {
    "atom link in item": '<title>a</title><atom:link href="https://e.com/alt" rel="alternate"/>'
    "<link>https://e.com/1</link>",
    "only atom link": '<title>a</title><atom:link href="https://e.com/alt"/>',
    "self atom link": '<title>a</title><atom:link href="https://e.com/s" rel="self"/>',
    "pubDate and dc:date": "<title>a</title><pubDate>Tue, 18 Aug 2026 09:30:00 GMT</pubDate>"
    "<dc:date>2026-08-17T01:00:00Z</dc:date>",
    "dc:date only": "<title>a</title><dc:date>2026-08-17T01:00:00Z</dc:date>",
    "content only": "<title>a</title><content:encoded><![CDATA[<p>full</p>]]></content:encoded>",
    "content then description": "<title>a</title><content:encoded><![CDATA[<p>full</p>]]>"
    "</content:encoded><description>short</description>",
    "empty content": "<title>a</title><description>short</description>"
    "<content:encoded></content:encoded>",
    "empty description then content": "<title>a</title><description></description>"
    "<content:encoded>body</content:encoded>",
    "two links": "<title>a</title><link>https://e.com/1</link><link>https://e.com/2</link>",
    "link with query entities": "<title>a</title><link>https://e.com/?a=1&amp;b=2</link>",
    "two guids": "<title>a</title><guid>g1</guid><guid>g2</guid>",
    "two creators": "<title>a</title><dc:creator>A</dc:creator><dc:creator>B</dc:creator>",
    "author and creator": "<title>a</title><author>x@y.z</author><dc:creator>B</dc:creator>",
    "creator then atom author": "<title>a</title><dc:creator>C</dc:creator>"
    "<author><name>A</name><email>a@e.com</email></author>",
    "author with email in parentheses": "<title>a</title><author>a@e.com (Ann Roe)</author>",
    "author name and uri": "<title>a</title><author><name>A</name><uri>/a</uri></author>",
    "author with a title": "<title>a</title><author><name>A</name><title>CEO</title></author>",
    "author title first": "<author><name>A</name><title>CEO</title></author><title>a</title>",
    "permalink guid, no link": '<title>a</title><guid isPermaLink="true">https://e.com/p</guid>',
    "relative permalink guid": '<title>a</title><guid isPermaLink="true">/p/1</guid>',
    "guid isPermaLink False": '<title>a</title><guid isPermaLink="False">https://e.com/p</guid>',
    "guid not permalink": '<title>a</title><guid isPermaLink="false">https://e.com/p</guid>',
    "guid before link": "<title>a</title><guid>https://e.com/g</guid><link>https://e.com/l</link>",
    "caption after description": "<title>a</title><description>real</description>"
    '<media:content url="https://e.com/i.jpg"><media:description>cap</media:description>'
    "</media:content>",
    "caption before description": '<media:content url="https://e.com/i.jpg">'
    "<media:description>cap</media:description></media:content><title>a</title>"
    "<description>real</description>",
    "caption only": "<title>a</title><media:description>cap</media:description>",
    "caption and content": "<title>a</title><media:description>cap</media:description>"
    "<content:encoded>body</content:encoded>",
    "dc:description": "<title>a</title><dc:description>dc text</dc:description>",
    "media:title first": "<media:title>media</media:title><title>a</title>",
    "media:title in group": "<title>a</title><media:group><media:title>m</media:title>"
    "</media:group>",
    "nested unknown title": "<og><title>og</title></og><title>a</title>",
    "source resets the title rule": '<title>a</title><source url="https://s.com/">S</source>'
    "<dc:title>b</dc:title>",
    "image resets the title rule": "<title>a</title><image>https://e.com/i.png</image>"
    "<title>b</title>",
    "empty title then title": "<title></title><title>b</title>",
    "categories": '<title>a</title><category domain="d">x</category><category>x</category>'
    '<category domain="d">x</category><dc:subject>y</dc:subject>'
    '<media:category>z</media:category><category term="t" label="l"/><category/>',
    "link with whitespace": "<title>a</title><link>\n  https://e.com/ws  \n</link>",
    "scheme with extra slashes": "<title>a</title><link>https:///e.com/x</link>",
    "html title in CDATA": "<title><![CDATA[A <b>bold</b> &amp; move]]></title>",
    "mojibake": "<title>cafÃ©</title><description>\u0080 euro</description>",
    "zone name": "<title>a</title><pubDate>Tue, 18 Aug 2026 09:30:00 IST</pubDate>",
    "two-digit year": "<title>a</title><pubDate>Tue, 18 Aug 26 09:30:00 GMT</pubDate>",
    "impossible day": "<title>a</title><pubDate>Tue, 31 Feb 2026 09:30:00 GMT</pubDate>",
    "unparseable date after a good one": "<title>a</title>"
    "<pubDate>Tue, 18 Aug 2026 09:30:00 GMT</pubDate><pubDate>soon</pubDate>",
    "script in description": "<title>a</title><description>&lt;script&gt;x()&lt;/script&gt;Hi"
    "</description>",
    "xml:base on the item": '<title>a</title><link xml:base="https://b.org/d/">p</link>',
}


@pytest.mark.parametrize("item", AWKWARD_ITEMS.values(), ids=AWKWARD_ITEMS.keys())
def test_parse_feed_equals_feedparser_on_awkward_items(item: str) -> None:
    data = rss(
        f"<item>{item}</item>",
        channel="<title>F</title><link>https://e.com/</link>",
        namespaces=' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
    )
    assert parse_feed(data, url=URL).entries == _feedparser_baseline(data)
    _assert_fast_equals_feedparser(data)


def _replay(data: bytes, *, in_place: bool = True) -> tuple[object, ...] | None:
    """The replay's raw state after `data` (None: it gave up), with an entry's usual leaves
    done in place (`_Replay.entry_children`) or each through elements() like any element."""
    from lxml import etree

    fp = feedparse._fp()
    with pytest.MonkeyPatch.context() as m:
        if not in_place:
            m.setattr(feedparse._Replay, "entry_children", feedparse._Replay.elements)
        try:
            replay = feedparse._Replay(fp, feedparse._tag_keys(data, fp))
            replay.run(etree.fromstring(data, fp.parser))
        except feedparse._GiveUp:
            return None
    return replay.version, replay.feed, replay.entries, replay.source


def _assert_leaves_in_place_change_nothing(data: bytes) -> None:
    assert _replay(data) == _replay(data, in_place=False)


# Leaves entry_children does in place, and what makes it hand them to elements() instead.
IN_PLACE_ITEMS = {
    "usual leaves": "<title>a</title><link>https://e.com/1</link><guid>g</guid>"
    "<pubDate>Tue, 18 Aug 2026 09:30:00 GMT</pubDate><description>d</description>"
    "<category>c</category><dc:creator>C</dc:creator><comments>https://e.com/c</comments>",
    "uppercase attribute names": '<title>a</title><guid ISPERMALINK="false">https://e.com/g</guid>',
    "permalink guid with three slashes": "<title>a</title><guid>https:///e.com/g</guid>",
    "category after an empty one": '<title>a</title><category domain="d"></category>'
    "<category>c</category><category> </category><dc:subject>s</dc:subject>",
    "category term then text": '<title>a</title><category term="t"/><category>c</category>',
    "description after content": "<title>a</title><content:encoded>body</content:encoded>"
    "<description>d</description><description>e</description>",
    "description twice": "<description>d</description><description>e</description><title>a</title>",
    "titles around a media title": "<title></title><media:title>m</media:title><title>b</title>"
    "<dc:title>c</dc:title>",
    "title with a type": '<title type="html">a &amp;amp; b</title>',
    "link with a type": '<title>a</title><link type="text/html">https://e.com/l</link>',
    "link entities": "<title>a</title><link>https://e.com/?a=1&amp;amp;b=2&amp;c&amp;d;</link>",
    "mojibake and C1 in leaves": "<title>cafÃ©\u0085</title><category>Ã©t\u0080</category>"
    "<dc:creator>Ã\u0096</dc:creator><link>https://e.com/Ã©</link><guid>Ã©</guid>",
    "xml:base on an unknown leaf": '<title>a</title><comments xml:base="https://b.org/d/">c'
    "</comments><link>p</link><guid>g/1</guid>",
    "xml:base on a guid": '<title>a</title><guid xml:base="https://b.org/d/">g/1</guid>'
    "<link>p</link>",
    "xml:base on a date and a category": '<pubDate xml:base="https://b.org/d/">Tue, 18 Aug 2026'
    ' 09:30:00 GMT</pubDate><title>a</title><category xml:base="https://c.org/">c</category>'
    "<link>p</link>",
    "xml:base in another namespace": '<title>a</title><media:credit xml:base="https://b.org/">'
    "c</media:credit><link>p</link>",
    "attribute named like a base": '<title>a</title><enclosure url="u" database="x"/>'
    '<comments Base="https://b.org/x/">c</comments><link>p</link>',
    "attributes on inert leaves": '<title>a</title><enclosure url="https://e.com/a.mp3"'
    ' type="audio/mpeg" length="1"/><media:thumbnail url="https://e.com/t.jpg"/>',
    "dates of every kind": "<title>a</title><dc:date>2026-08-17T01:00:00Z</dc:date>"
    "<pubDate>Tue, 18 Aug 2026 09:30:00 GMT</pubDate>"
    "<dcterms:modified>2026-08-19</dcterms:modified>"
    '<pubDate foo="bar">Wed, 19 Aug 2026 09:30:00 GMT</pubDate>',
    "leaves with children": "<title>a</title><guid>g<x:y>z</x:y></guid>",
    "author leaves": "<author>a@e.com (Ann)</author><managingEditor>M</managingEditor>"
    '<dc:creator foo="bar">C</dc:creator><title>a</title>',
    "image in an item": "<title>a</title><image><title>i</title><link>https://i.org/</link>"
    "</image><link>https://e.com/1</link><title>b</title>",
    "source in an item": '<title>a</title><source url="https://s.com/">S</source>'
    "<link>https://e.com/1</link><category>c</category>",
    "media content and group leaves": '<title>a</title><media:content url="https://e.com/i.jpg"'
    ' medium="image"/><media:group/><media:content url="u"><media:title>m</media:title>'
    '</media:content><link>https://e.com/1</link><media:content xml:base="https://b.org/"/>'
    "<guid>g/1</guid>",
    "categories with a domain": '<title>a</title><category domain="https://d.org/">c</category>'
    '<category domain="d">c</category><category domain="e" xml:base="https://b.org/">f'
    "</category><link>p</link>",
}


def _in_place_rss(items: str) -> bytes:
    """A feed around IN_PLACE_ITEMS, with every namespace they use declared."""
    return rss(
        items,
        channel="<title>F</title><link>https://e.com/</link>",
        namespaces=' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dcterms="http://purl.org/dc/terms/" xmlns:x="urn:x"',
    )


@pytest.mark.parametrize("item", IN_PLACE_ITEMS.values(), ids=IN_PLACE_ITEMS.keys())
def test_leaves_done_in_place_equal_feedparser(item: str) -> None:
    data = _in_place_rss(f"<item>{item}</item>")
    _assert_leaves_in_place_change_nothing(data)
    assert parse_feed(data, url=URL).entries == _feedparser_baseline(data)
    if _fast(data) is not None:
        _assert_fast_equals_feedparser(data)


@pytest.mark.parametrize("item", AWKWARD_ITEMS.values(), ids=AWKWARD_ITEMS.keys())
def test_leaves_in_place_change_nothing_on_awkward_items(item: str) -> None:
    data = rss(
        f"<item>{item}</item>",
        channel="<title>F</title><link>https://e.com/</link>",
        namespaces=' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
    )
    _assert_leaves_in_place_change_nothing(data)


@pytest.mark.parametrize("item", IN_PLACE_ITEMS.values(), ids=IN_PLACE_ITEMS.keys())
def test_leaves_in_place_change_nothing_under_an_xml_base(item: str) -> None:
    data = _in_place_rss(f'<item xml:base="https://b.org/x/">{item}</item><item>{item}</item>')
    _assert_leaves_in_place_change_nothing(data)
    assert parse_feed(data, url=URL).entries == _feedparser_baseline(data)


def test_tag_keys_shared_between_documents_are_document_independent() -> None:
    data = rss(
        "<item><title>a</title><x:title>b</x:title><link>https://e.com/1</link></item>",
        namespaces=' xmlns:x="urn:x-shared-test"',
    )
    parse_feed(data, url=URL)
    shared = feedparse._SHARED_TAG_KEYS
    assert "title" in shared and "link" in shared
    assert not any("urn:x-shared-test" in tag for tag in shared)  # its prefix is the document's
    many = rss("".join(f"<item><title>a</title><t{i}>x</t{i}></item>" for i in range(3000)))
    parse_feed(many, url=URL)
    assert len(shared) <= feedparse._SHARED_TAG_KEYS_MAX


def atom(entries: str, *, feed: str = "<title>A</title>", attrs: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<feed xmlns="http://www.w3.org/2005/Atom"{attrs}>{feed}{entries}</feed>'
    ).encode()


ATOM_FEED_HEAD = '<title>A</title><link href="https://blog.example/"/><id>tag:blog</id>'
ATOM_ENTRIES = {
    "content type text": '<title>t</title><content type="text">a &lt;b&gt; c</content>',
    "content type html": '<title>t</title><content type="html">&lt;p&gt;a&lt;/p&gt;</content>',
    "content no type": "<title>t</title><content>plain</content>",
    "summary and content": '<title>t</title><summary>s</summary><content type="html">c</content>',
    "content then summary": '<title>t</title><content type="html">c</content><summary>s</summary>',
    "two summaries": "<title>t</title><summary>one</summary><summary>two</summary>",
    "html title": '<title type="html">A &amp;amp; &lt;i&gt;B&lt;/i&gt;</title>',
    "id before link": '<id>https://e.com/id</id><title>t</title><link href="https://e.com/l"/>',
    "id only": "<id>https://e.com/only-id</id><title>t</title>",
    "tag id and link": '<id>tag:e.com,2026:1</id><link rel="alternate" href="/rel"/>',
    "link rels": '<title>t</title><link rel="self" href="/s"/><link rel="enclosure" href="/e"/>'
    '<link rel="alternate" type="text/html" href="/a"/><link rel="related" href="/r"/>',
    "link with type atom": '<title>t</title><link type="application/atom+xml" href="/x"/>',
    "two authors": "<title>t</title><author><name>A</name></author>"
    "<author><name>B</name><email>b@e.com</email></author>",
    "contributor": "<title>t</title><author><name>A</name></author>"
    "<contributor><name>C</name></contributor>",
    "dates": "<title>t</title><updated>2026-08-19T10:00:00+02:00</updated>"
    "<published>2026-08-18T10:00:00.123Z</published>",
    "updated only": "<title>t</title><updated>2026-08-19T10:00:00Z</updated>",
    "offset without colon": "<title>t</title><updated>2026-08-19T10:00:00+0530</updated>",
    "categories": '<title>t</title><category term="x" scheme="s"/><category term="x"/>'
    '<category label="only label"/>',
    "entry xml:base": '<title>t</title><link href="p?q=1" xml:base="https://b.org/d/"/>',
    "atom source": '<title>t</title><source><title>S</title><link href="https://s.org/"/>'
    "<id>https://s.org/id</id></source>",
}


@pytest.mark.parametrize("entry", ATOM_ENTRIES.values(), ids=ATOM_ENTRIES.keys())
def test_atom_leaves_in_place_change_nothing(entry: str) -> None:
    # Without a feed-wide xml:base, an entry's leaves are done in place, those with
    # attributes (link href, content type, category term) through their handler.
    data = atom(
        f"<entry>{entry}</entry>",
        feed=ATOM_FEED_HEAD,
    )
    _assert_leaves_in_place_change_nothing(data)
    if _fast(data) is not None:
        _assert_fast_equals_feedparser(data)


@pytest.mark.parametrize("entry", ATOM_ENTRIES.values(), ids=ATOM_ENTRIES.keys())
def test_fast_path_equals_feedparser_on_atom_entries(entry: str) -> None:
    data = atom(
        f"<entry>{entry}</entry>",
        feed=ATOM_FEED_HEAD,
        attrs=' xml:base="https://blog.example/posts/"',
    )
    _assert_fast_equals_feedparser(data)


@pytest.mark.parametrize(
    "data",
    [
        atom('<entry><title>t</title><link href="a"/></entry>', feed="<id>https://e.org/id</id>"),
        atom('<entry><title>t</title><link href="a"/></entry>', feed='<link href="/home"/>'),
        atom("<entry><title>t</title><id>x</id></entry>", attrs=' version="0.3"'),
        b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        b' xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        b'<channel rdf:about="https://e.com/"><title>R</title><link>https://e.com/</link></channel>'
        b'<item rdf:about="https://e.com/1"><title>one</title><link>/1</link>'
        b"<dc:date>2026-08-19T10:00:00Z</dc:date><dc:creator>C</dc:creator></item></rdf:RDF>",
        rss(
            "<item><title>t</title><link>x</link></item>",
            channel="<title>F</title><image><title>I</title><link>https://img.example/</link>"
            "<url>https://img.example/i.png</url></image><link>https://e.com/a/</link>",
        ),
        rss(
            "<item><title>t</title><link>x</link></item>",
            channel='<atom:link href="https://e.com/alt/" rel="alternate"/><title>F</title>',
        ),
        rss("<item><title>t</title></item>").replace(b'version="2.0"', b'version="0.91"'),
        rss("<item><title>t</title></item>", namespaces=' xmlns:x="urn:x" xmlns:y="urn:x"'),
    ],
    ids=[
        "atom feed id",
        "atom relative feed link",
        "atom 0.3",
        "rdf",
        "channel image",
        "channel atom link",
        "rss 0.91",
        "two prefixes one namespace",
    ],
)
def test_fast_path_equals_feedparser_on_documents(data: bytes) -> None:
    _assert_fast_equals_feedparser(data)


_FRAGMENTS = [*AWKWARD_ITEMS.values(), "<comments>https://e.com/c</comments>",
              '<enclosure url="https://e.com/a.mp3" type="audio/mpeg"/>', "<guid>g</guid>",
              "<description>d</description>", "<title>t</title>", "<link>/rel</link>",
              "<dc:creator>Z</dc:creator>", '<media:thumbnail url="https://e.com/t.jpg"/>',
              "<pubDate>Wed, 19 Aug 2026 09:30:00 +0000</pubDate>"]  # fmt: skip


@given(st.lists(st.lists(st.sampled_from(_FRAGMENTS), max_size=5), min_size=1, max_size=3))
def test_fast_path_equals_feedparser_on_generated_feeds(items: list[list[str]]) -> None:
    data = rss(
        "".join(f"<item>{''.join(parts)}</item>" for parts in items),
        channel="<title>F</title><link>https://e.com/</link>",
        namespaces=' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
    )
    fast = _fast(data)
    reference = _via_feedparser(data)
    if fast is not None:
        assert (fast.entries, fast.title) == (reference.entries, reference.title)
    _assert_leaves_in_place_change_nothing(data)


_DATE_PIECES = st.sampled_from(
    ["Tue, ", "Tue,", "Tuesday, ", "18 ", "8 ", "31 ", "Aug ", "August ", "Feb ", "2026 ", "26 ",
     "09:30", ":00", ":60", " ", "GMT", "UT", "UTC", "Z", "EST", "PDT", "CET", "IST", "+0200",
     "-0530", "+02:00", "GMT+1", "etc/gmt", "2026-08-18", "T", "t", "09:30:00", ".123", "Z",
     "+05:30", "+0530", "-", "x"]
)  # fmt: skip


@given(st.lists(_DATE_PIECES, max_size=8).map("".join))
def test_fast_date_parsing_equals_feedparser(text: str) -> None:
    fp = feedparse._fp()
    expected = feedparse._from_struct(fp.parse_date(text))
    assert feedparse._from_struct(feedparse._parse_date(text, fp)) == expected


@given(
    st.text(
        st.sampled_from(list("ab <>&;#\t\n\xa0\xad\u200b\u2065\u3000\x85\x7fé\ue000\U0001f600")),
        max_size=30,
    )
)
def test_html_to_text_plain_shortcut_changes_nothing(value: str) -> None:
    from catalysts import text

    fast = text.html_to_text(value)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(text, "_is_plain", lambda value: False)
        assert text.html_to_text(value) == fast


@pytest.mark.parametrize("pattern", ["_DROP_BLOCKS", "_INLINE_TAG"])
def test_html_to_text_tag_lookaheads_accept_what_the_names_start_with(pattern: str) -> None:
    # With IGNORECASE, "s" also matches "\u017f" and "k" the Kelvin sign: the lookahead's
    # character class must accept exactly the characters the names' first letters do.
    from catalysts import text

    source = getattr(text, pattern).pattern
    lookahead_match = re.search(r"\(\?=(\[\w+\])\)", source)
    names_match = re.search(r"\((?:\?:)?([\w|]+)\)", source)
    assert lookahead_match and names_match
    lookahead, names = lookahead_match.group(1), names_match.group(1).split("|")
    assert sorted(lookahead[1:-1]) == sorted({name[0] for name in names})
    first_letters = re.compile("|".join(sorted({name[0] for name in names})), re.IGNORECASE)
    in_class = re.compile(lookahead, re.IGNORECASE)
    chars = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert in_class.findall(chars) == first_letters.findall(chars)


def test_html_to_text_characters_needing_work_are_unprintable_or_markup() -> None:
    # _is_plain trusts str.isprintable for all but "<" and "&".
    from catalysts import text

    chars = [chr(c) for c in range(sys.maxunicode + 1) if text._NEEDS_WORK.match(chr(c))]
    assert sorted(c for c in chars if c.isprintable()) == ["&", "<"]
    controls = [chr(c) for c in range(sys.maxunicode + 1) if text._CONTROLS.match(chr(c))]
    assert [c for c in controls if c.isprintable()] == []  # strip_controls trusts it too


@given(st.text(st.sampled_from(list("ab <>&;#x/!-[]\t\n\xa0\u200b\x85é")), max_size=30))
def test_html_to_text_shortcut_changes_nothing(value: str) -> None:
    from catalysts import text

    fast = text.html_to_text(value)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(text, "_NEEDS_WORK", re.compile(""))  # always "needs work"
        assert text.html_to_text(value) == fast


def test_html_to_text_collapses_whitespace_as_regex_would() -> None:
    # html_to_text collapses with str.split(): it must split on exactly re's \s.
    chars = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert [c for c in chars if c.isspace()] == re.findall(r"\s", chars)
    assert chars.split() == re.split(r"\s+", chars.strip())
    assert feedparse.html_to_text(" \u3000a\u2028\t b\xa0") == "a b"


def test_entry_keeps_dataclass_behaviour() -> None:
    # Entry has a hand-written __init__ (speed): equality, hash, defaults, frozenness,
    # pickling and replace must be what the generated one gave.
    published = datetime(2026, 8, 18, tzinfo=timezone.utc)
    entry = Entry("guid:1", "T", "s", "https://a.example/", "me", ("x",), published)
    same = Entry(
        key="guid:1", title="T", summary="s", link="https://a.example/", author="me",
        categories=("x",), published=published,
    )  # fmt: skip
    assert (entry, hash(entry)) == (same, hash(same))
    assert entry != replace(entry, categories=())
    assert pickle.loads(pickle.dumps(entry)) == entry
    assert Entry("k", "t") == Entry("k", "t", "", None, None, (), None)
    assert replace(entry, key="guid:2").key == "guid:2"
    with pytest.raises(FrozenInstanceError):
        entry.title = "changed"  # type: ignore[misc]


# --- the real corpus ----------------------------------------------------------------------------


def _real_feeds(real_dir: Path) -> list[Path]:
    files = [
        p
        for p in sorted(real_dir.rglob("*"))
        if p.is_file() and p.suffix in (".xml", ".rss", ".atom", ".json")
    ]
    return [
        p for p in files if not any(part in SKIP_DIRS for part in p.relative_to(real_dir).parts)
    ]


def _reference_count(path: Path, data: bytes) -> int:
    if path.suffix == ".json":
        return len(json.loads(data)["items"])
    import feedparser

    return len(feedparser.parse(io.BytesIO(data)).entries)


def test_real_feeds_lose_no_entry_and_keys_are_unique(real_dir: Path) -> None:
    feeds = _real_feeds(real_dir)
    assert len(feeds) >= 60
    problems = []
    for path in feeds:
        data = path.read_bytes()
        feed = parse_feed(data, url="https://feeds.example/" + path.name)
        name = path.relative_to(real_dir)
        expected = _reference_count(path, data)
        if len(feed.entries) != expected:
            problems.append(f"{name}: {len(feed.entries)} entries, reference {expected}")
        if len({e.key for e in feed.entries}) != len(feed.entries):
            problems.append(f"{name}: duplicate keys")
        for e in feed.entries:
            if not (e.title or e.link):
                problems.append(f"{name}: entry {e.key} has neither title nor link")
            if e.link is not None and not e.link.startswith(("http://", "https://")):
                problems.append(f"{name}: link {e.link}")
            if e.published is not None and e.published.utcoffset() != timedelta(0):
                problems.append(f"{name}: {e.published} is not UTC")
    assert problems == []


def test_real_feeds_match_feedparser_with_default_options(real_dir: Path) -> None:
    """The fast path and the tuned feedparser options change nothing on any real XML feed."""
    differing = []
    for path in _real_feeds(real_dir):
        if path.suffix == ".json":
            continue
        data = path.read_bytes()
        if parse_feed(data, url=URL).entries != _feedparser_baseline(data):
            differing.append(str(path.relative_to(real_dir)))
    assert differing == []


def test_fast_path_reads_every_real_feed_as_feedparser_does(real_dir: Path) -> None:
    """Every real RSS/RDF/Atom document takes the fast path, with feedparser's result."""
    documents = [p for p in _real_feeds(real_dir) if p.suffix != ".json"]
    assert len(documents) >= 60
    fell_back, differing = [], []
    for path in documents:
        data = path.read_bytes()
        fast = _fast(data)
        if fast is None:
            fell_back.append(path.name)
            continue
        if not _agrees_with_feedparser(data, fast):
            differing.append(path.name)
        if _replay(data) != _replay(data, in_place=False):
            differing.append(f"{path.name} (leaves done in place)")
    assert differing == []
    assert fell_back == []  # a silent fallback to feedparser would cost 10x here


def test_fast_path_on_ill_formed_corpus_equals_feedparser(real_dir: Path) -> None:
    """Files of feedparser's ill-formed suite the fast path accepts: feedparser agrees."""
    files = sorted(p for p in (real_dir / "feedparser-illformed").rglob("*.xml") if p.is_file())
    accepted, differing = 0, []
    for path in files:
        data = path.read_bytes()
        try:
            feedparse._refuse_unsafe_xml(data, None, URL)  # as parse_feed does first
        except ParseError:
            continue
        fast = _fast(data)
        if fast is None:
            continue
        accepted += 1
        if not _agrees_with_feedparser(data, fast):
            differing.append(path.name)
    assert differing == []
    assert accepted >= 40  # the well-formed ones; the rest are for feedparser's loose parser


def test_real_google_news_feeds_share_story_keys(real_dir: Path) -> None:
    folder = real_dir / "googlenews"
    stories = [
        {story_key(e) for e in parse_feed(p.read_bytes(), url=URL).entries}
        for p in sorted(folder.glob("*.xml"))
    ]
    assert all(all(s.startswith("title:") for s in group) for group in stories)
    assert all(" - reuters" not in s for group in stories for s in group)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bloomberg_news-sitemap-not-a-feed_crawinsight.xml", "not a feed: XML root <urlset>"),
        ("fastfeedparser_malformed_rss_namespaced.xml", "malformed XML at line 4"),
        ("scriptingnews_rssinjson-not-jsonfeed_netnewswire.json", "RSS-in-JSON"),
        ("venturebeat_redirect-stub_bountymon.xml", "starts 'Redirecting...'"),
    ],
)
def test_real_non_feeds_are_reported(real_dir: Path, name: str, reason: str) -> None:
    data = (real_dir / "robustness-other" / name).read_bytes()
    with pytest.raises(ParseError, match=re.escape(reason)):
        parse_feed(data, url=URL)


def test_real_misdeclared_utf16_feed_parses_with_warning(real_dir: Path) -> None:
    data = (real_dir / "robustness-other" / "fastfeedparser_utf16_encoded.xml").read_bytes()
    feed = parse_feed(data, url=URL)
    assert len(feed.entries) == 1
    assert feed.warning is not None and "utf-16" in feed.warning


def test_feedparser_illformed_corpus_parses_or_raises_parse_error(real_dir: Path) -> None:
    files = [p for p in sorted((real_dir / "feedparser-illformed").rglob("*")) if p.is_file()]
    files = [p for p in files if p.suffix in (".xml", ".json")]
    assert len(files) > 200
    outcomes = {"parsed": 0, "refused": 0}
    for path in files:
        try:
            parse_feed(path.read_bytes(), url=URL)
            outcomes["parsed"] += 1
        except ParseError as exc:
            assert str(exc), path
            outcomes["refused"] += 1
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0
