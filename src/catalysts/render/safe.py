"""Feed text made harmless for a terminal (DESIGN section 8).

Rich markup in a title (`[link=...]`, `[bold]`) is shown literally because we build
`Text` objects and never parse markup; escape sequences (ANSI CSI, OSC 8/52), C0/C1
controls and bidi overrides are removed before the string becomes a `Text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from rich.text import Text

from catalysts.text import strip_controls

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other 2-byte.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated by BEL or ST (or not at all)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[@-Z\\-_]"  # other Fe escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x9d[^\x07\x9c]*(?:\x07|\x9c)?"  # 8-bit OSC
)
_NEWLINES = re.compile(r"[\r\n\t\v\f]+")


def clean(value: str | None) -> str:
    """Untrusted text as one line with no escape sequences or control characters."""
    if not value:
        return ""
    value = _ESCAPES.sub("", value)
    value = _NEWLINES.sub(" ", value)
    return strip_controls(value).replace("\x1b", "")


def text(value: str | None, style: str = "") -> Text:
    """A Rich `Text` of untrusted text: never interpreted as markup."""
    return Text(clean(value), style=style)


def http_url(url: str | None) -> str | None:
    """The URL if it is a plain http(s) URL safe to make clickable, else None."""
    if not url:
        return None
    url = clean(url).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(c in url for c in " \"'<>\\`"):
        return None
    return url
