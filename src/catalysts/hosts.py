"""Host names as DNS, TLS and the Host header take them, shared by `http` and `digest`."""

from __future__ import annotations

import functools


def ascii_host(host: str) -> str:
    """The host name in lower case, and a non-ASCII name in IDNA 2008 with UTS #46 mapping as
    browsers send it (Python's "idna" codec is IDNA 2003, which maps faß.de to fass.de,
    another domain). A name IDNA refuses comes back unchanged, non-ASCII, for the caller to
    refuse."""
    host = host.lower()
    return host if host.isascii() else _idna(host)


@functools.lru_cache(maxsize=256)
def _idna(host: str) -> str:
    import idna

    # No DNS name is longer; crafted long ones make idna.encode slow (CVE-2024-3651 and, with
    # idna < 3.15, CVE-2026-45409), and a host name is whoever wrote the URL's to choose.
    if len(host) > 253:
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError and its kinds
        return host
