"""Imports every command module so that its commands register on `app`."""

from catalysts.cli import (  # noqa: F401
    digest_cmds,
    fetch_cmds,
    report_cmds,
    watchlist_cmds,
)
