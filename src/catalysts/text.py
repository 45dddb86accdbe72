"""Untrusted text made plain: HTML removed, entities decoded, controls dropped.

Feed titles and summaries arrive as HTML-ish strings from strangers. Everything we store,
match or show goes through `html_to_text` first, so no later layer has to remember to.
"""

from __future__ import annotations

import html
import re

# Elements whose content is never readable text. In this pattern and _INLINE_TAG, the
# lookahead (the names' first letters) turns most other tags away before the alternation of
# names is tried, letter by letter and case-insensitively, which is the slow part.
_DROP_BLOCKS = re.compile(
    r"<(?=[imnost])(script|style|template|noscript|svg|math|iframe|object)\b[^>]*>.*?</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|$)", re.DOTALL)
# Inline tags vanish ("First <em>para</em>." reads "First para."); every other tag becomes a
# space so that "<p>a</p><p>b</p>" does not read "ab".
_INLINE_TAG = re.compile(
    r"</?(?=[abcdefikmqstuv])(?:a|abbr|b|bdi|cite|code|data|del|dfn|em|font|i|ins|kbd|mark"
    r"|q|s|samp|small|span|strike|strong|sub|sup|time|tt|u|var)\b[^<>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<![^<>]*>|<\?[^<>]*>")
# Anything html_to_text would change: markup, entities, controls and every whitespace but
# single inner spaces (those are checked apart, with str methods: an alternation would be
# tried at every position). Most titles, names and categories have none and are returned
# as is. All of these characters but "<" and "&" are unprintable (str.isprintable).
_NEEDS_WORK = re.compile(
    "[<&\x00-\x1f\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2069\u3000\ufeff]"
)
# C0/C1 controls, DEL, bidi overrides/isolates, zero-width and BOM characters: never text.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def strip_controls(text: str) -> str:
    """Remove control, bidi-override and zero-width characters (keeps tab and newlines)."""
    # All of them are unprintable, and isprintable is a cheap C loop: most text has none.
    return text if text.isprintable() else _CONTROLS.sub("", text)


def html_to_text(value: str | None) -> str:
    """Plain, single-line text from an HTML fragment or plain string.

    Tags are removed, entities decoded (once, after tag removal, so an escaped `&lt;b&gt;`
    stays visible as `<b>`), controls dropped and whitespace collapsed.
    """
    if not value:
        return ""
    if _is_plain(value):
        return value
    text = value
    if "<" in text:
        if "<![CDATA[" in text:
            text = _CDATA.sub(r"\1", text)
        if "<!--" in text:
            text = _COMMENT.sub(" ", text)
        text = _DROP_BLOCKS.sub(" ", text)
        text = _INLINE_TAG.sub("", text)
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    # str.split() splits on exactly the characters of re's \s (both use str.isspace), and
    # twice as fast as re.sub(r"\s+", " ", text).strip() on article bodies.
    return " ".join(strip_controls(text).split())


def _is_plain(value: str) -> bool:
    """True when html_to_text has nothing to change in `value` (not empty)."""
    if value[0] == " " or value[-1] == " " or "  " in value:
        return False
    if "<" in value or "&" in value:
        return False
    # isprintable is a C loop, several times faster than the regex's character class.
    return value.isprintable() or not _NEEDS_WORK.search(value)
