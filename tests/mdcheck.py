"""Checks that a digest's Markdown, once rendered, carries nothing a feed could have injected.

The Markdown is parsed with markdown-it (CommonMark plus tables, installed with Rich), and
the check walks the tokens the way GitHub's pipeline would see them: decoded text (where
mentions and references are found), link targets, images and raw HTML.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

# What GitHub turns into a ping, a cross-reference or an autolink in rendered text.
MENTION = re.compile(r"(?<![A-Za-z0-9`])[@＠][A-Za-z0-9]")
REFERENCE = re.compile(r"[#＃]\d|\bGH-\d", re.IGNORECASE)
AUTOLINK = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|\bwww\.", re.IGNORECASE)
# The only raw HTML the digest itself writes.
OWN_HTML = re.compile(r"\s*(<details>\s*<summary>[^<>]*</summary>|</details>)\s*")

_md = MarkdownIt("commonmark").enable("table")
# markdown-it drops javascript: and data: links on its own; GitHub's sanitiser does too, but
# the digest must not rely on either, so every link is let through to be checked here.
_md.validateLink = lambda url: True  # type: ignore[method-assign]


def problems(markdown: str, *, own_text: frozenset[str] = frozenset()) -> list[str]:
    """Every way the rendered Markdown could ping, link, embed or break out; [] when clean."""
    found: list[str] = []
    tokens = _md.parse(markdown)
    for tok in _walk(tokens):
        if tok.type == "image":
            found.append(f"image: {tok.attrs}")
        elif tok.type in ("html_inline", "html_block"):
            if not OWN_HTML.fullmatch(tok.content):
                found.append(f"raw HTML: {tok.content!r}")
        elif tok.type == "link_open":
            href = str(tok.attrs.get("href", ""))
            if not href.startswith(("https://", "http://")):
                found.append(f"non-http link: {href!r}")
            if re.match(r"https?://(www\.)?github\.com/", href):
                found.append(f"github link that would backlink: {href!r}")
        elif tok.type == "text" and tok.content not in own_text:
            for pattern, what in ((MENTION, "mention"), (REFERENCE, "reference")):
                if pattern.search(tok.content):
                    found.append(f"{what} in text: {tok.content!r}")
            if AUTOLINK.search(tok.content):
                found.append(f"autolink in text: {tok.content!r}")
        elif tok.type == "fence" and tok.info != "mermaid":
            found.append(f"unexpected code block: {tok.info!r}")
    found.extend(_table_problems(tokens))
    found.extend(table_source_problems(markdown))
    return found


def _pipes(line: str) -> int:
    """Unescaped pipes in a line (a backslash escapes the next character, itself included)."""
    count, escaped = 0, False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            count += 1
    return count


def table_source_problems(markdown: str) -> list[str]:
    """Table lines (in the source) whose unescaped pipes differ from their header line's.

    Rendering hides a broken row (GFM drops excess cells), so the source is checked too.
    """
    found: list[str] = []
    width: int | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        pipes = _pipes(line)
        if width is None:
            width = pipes
        elif pipes != width:
            found.append(f"table line with {pipes} pipes, header has {width}: {line[:80]!r}")
    return found


def _walk(tokens: list[Token]):
    for tok in tokens:
        yield tok
        if tok.children:
            yield from _walk(tok.children)


def _table_problems(tokens: list[Token]) -> list[str]:
    """Rows whose cell count differs from the header's: a cell broke out."""
    found: list[str] = []
    width = cells = 0
    in_head = False
    for tok in tokens:
        if tok.type == "thead_open":
            in_head, width = True, 0
        elif tok.type == "thead_close":
            in_head = False
        elif tok.type == "tr_open":
            cells = 0
        elif tok.type in ("th_open", "td_open"):
            cells += 1
        elif tok.type == "tr_close":
            if in_head:
                width = cells
            elif cells != width:
                found.append(f"table row with {cells} cells, header has {width}")
    return found
