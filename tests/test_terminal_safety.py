"""Feed text is data, never markup or terminal control (DESIGN section 8).

Hostile titles, feed ids, notes and links are rendered through the real `status` table
and `show` view into a forced truecolor terminal and into a pipe; the output is then
parsed escape by escape: only Rich's own SGR (`CSI ... m`) and OSC 8 hyperlinks to
http(s) URLs we accepted may appear.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from io import StringIO

import pytest
from rich.console import Console

from catalysts.models import Evidence, FeedHealth, Hit, ItemSpec, Override, Settings
from catalysts.render import safe
from catalysts.render.console import THEME
from catalysts.render.status import show_item, status_table
from catalysts.status import evaluate, timeline

AT = datetime(2025, 12, 13, 12, tzinfo=timezone.utc)

HOSTILE = [
    "[link=file:///etc/passwd]x[/link] OpenAI IPO",
    "[bold]loud[/bold] OpenAI IPO",
    "red \x1b[31mOpenAI\x1b[0m IPO",
    "clear \x1b[2J\x1b[H OpenAI IPO",
    "osc8 \x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\ OpenAI IPO",
    "osc52 \x1b]52;c;cm0gLXJmIH4K\x07 OpenAI IPO",
    "c1 \x9b31m OpenAI \x9d0;title\x9c IPO",
    "bidi \u202egnp.exe OpenAI IPO",
    "bell \x07 and backspace \x08 OpenAI IPO",
    "dcs \x1bP+q544e\x1b\\ OpenAI IPO",
]
LINKS = [
    "file:///etc/passwd",
    "javascript:alert(1)",
    "https://ok.example/story?a=1",
    "https://evil.example/\x1b]52;c;ZXZpbA==\x07x",
    "https://evil.example/a b\x1b]8;;file:///etc\x1b\\",
]
ACCEPTED = {u for u in (safe.http_url(x) for x in LINKS) if u}

CSI = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
OSC = re.compile(r"\x1b\]([^\x07\x1b]*)(?:\x07|\x1b\\)")


def _evidence() -> list[Evidence]:
    out = []
    for n, title in enumerate(HOSTILE):
        start = title.find("OpenAI")
        out.append(
            Evidence(
                item="x",
                rule="confirm" if n == 0 else "signal",
                entry_id=n,
                story=f"s{n}",
                feed=f"feed\x1b[31m{n}[/]",
                title=title,
                link=LINKS[n % len(LINKS)],
                time=AT - timedelta(hours=n),
                dated=n % 2 == 0,
                terms=("OpenAI",),
                hits=(Hit("OpenAI", "title", start, start + 6),),
            )
        )
    return out


def _item() -> ItemSpec:
    return ItemSpec(
        id="x\x1b]52;c;aGk=\x07",
        thesis="t",
        kind="catalyst",
        title="[red]item[/red] \x1b[5mblink",
        signal="OpenAI",
        confirm="OpenAI AND IPO",
        why="why \u202e[link=https://x]y[/link]",
        by=date(2025, 12, 31),
        override=Override("building", "note \x1b]8;;file:///etc/passwd\x07[bold]n", None),
    )


def _render(console: Console) -> str:
    evidence = _evidence()
    spec = _item()
    spec_plain = ItemSpec(**{**{s: getattr(spec, s) for s in spec.__slots__}, "override": None})
    health = [FeedHealth(id="f", url="u", status="ok", last_success=AT)]
    statuses = [
        evaluate(s, [_retarget(e, s.id) for e in evidence], AT, health=health)
        for s in (spec, spec_plain)
    ]
    status_table(
        statuses,
        thesis_titles={"t": "[link=file:///etc/passwd]thesis\x1b[2J"},
        health=health,
        last_fetch=AT,
        now=AT,
        empty_store=False,
        console=console,
    )
    mine = [_retarget(e, spec_plain.id) for e in evidence]
    history = timeline(spec_plain, mine, Settings(), None, AT)
    show_item(statuses[1], history, mine, thesis_title="\x1b]0;title\x07thesis", console=console)
    show_item(statuses[0], [], mine, thesis_title=None, console=console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _retarget(ev: Evidence, item: str) -> Evidence:
    return Evidence(**{**{s: getattr(ev, s) for s in ev.__slots__}, "item": item})


def _terminal() -> Console:
    return Console(
        force_terminal=True,
        color_system="truecolor",
        file=StringIO(),
        width=160,
        theme=THEME,
        markup=False,
        highlight=False,
        emoji=False,
    )


def _pipe() -> Console:
    return Console(
        force_terminal=False,
        file=StringIO(),
        width=160,
        theme=THEME,
        markup=False,
        highlight=False,
        emoji=False,
    )


def _assert_only_own_escapes(out: str) -> str:
    """Checks every escape sequence; returns the output with them removed."""
    links: set[str] = set()
    for m in OSC.finditer(out):
        body = m.group(1)
        assert body.startswith("8;"), f"non-hyperlink OSC in output: {body!r}"
        _params, _, uri = body[2:].partition(";")
        if uri:
            links.add(uri)
    assert links <= ACCEPTED, f"hyperlinks to URLs we did not accept: {links - ACCEPTED}"
    for m in CSI.finditer(out):
        assert m.group(3) == "m" and not m.group(2), f"non-SGR CSI in output: {m.group(0)!r}"
    rest = CSI.sub("", OSC.sub("", out))
    assert "\x1b" not in rest, f"stray ESC: {rest[max(0, rest.find(chr(27)) - 20) :][:60]!r}"
    for bad in ("\x9b", "\x9d", "\x9c", "\u202e", "\x07", "\x08"):
        assert bad not in out, f"{bad!r} reached the output"
    return rest


@pytest.mark.parametrize("make", [_terminal, _pipe], ids=["terminal", "pipe"])
def test_hostile_text_is_shown_as_text_or_stripped(make) -> None:  # type: ignore[no-untyped-def]
    console = make()
    out = _render(console)
    plain = _assert_only_own_escapes(out)
    # Rich markup in feed text stays literal text, never a style or a link.
    assert "[link=file:///etc/passwd]x[/link]" in plain
    assert "[bold]loud[/bold]" in plain
    assert "[red]item[/red]" in plain
    # The escape sequences' printable remains (if any) are inert text; the words survive.
    assert "OpenAI" in plain and "gnp.exe" in plain


def test_terminal_output_does_use_colour_and_accepted_links() -> None:
    # The checks above would pass vacuously on output without any styling at all.
    out = _render(_terminal())
    assert CSI.search(out)
    assert any(m.group(1).endswith("https://ok.example/story?a=1") for m in OSC.finditer(out))


def test_pipe_output_has_no_escape_at_all() -> None:
    out = _render(_pipe())
    assert "\x1b" not in out


@pytest.mark.parametrize("value", HOSTILE + LINKS)
def test_clean_leaves_no_control_characters(value: str) -> None:
    cleaned = safe.clean(value)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert "\u202e" not in cleaned


def test_http_url_accepts_only_plain_http_links() -> None:
    assert {"https://ok.example/story?a=1", "https://evil.example/x"} == ACCEPTED
