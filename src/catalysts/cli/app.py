"""The Typer application object and the options every command shares.

Command modules (`catalysts.cli.<group>`) import `app` from here and register their
commands; `catalysts.cli.main` imports them all. Commands stay thin: parse options, call
the core, hand the result to `catalysts.render`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from catalysts import __version__

app = typer.Typer(
    name="catalysts",
    help="Track the catalysts and risks of an investment thesis in the news.",
    no_args_is_help=True,
    add_completion=False,
    # The digest job runs with a token in its environment: never print locals.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"catalysts {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")
    ] = False,
) -> None:
    """Track the catalysts and risks of an investment thesis in the news."""
    if debug:
        os.environ["CATALYSTS_DEBUG"] = "1"


WatchlistOpt = Annotated[
    Path,
    typer.Option(
        "-w",
        "--watchlist",
        envvar="CATALYSTS_WATCHLIST",
        help="The watchlist file.",
        show_default=True,
    ),
]
DEFAULT_WATCHLIST = Path("watchlist.yaml")

DbOpt = Annotated[
    Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
    typer.Option(
        "--db",
        envvar="CATALYSTS_DB",
        help="The SQLite store (default: catalysts.db in the user data dir).",
        show_default=False,
    ),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

AtOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--at",
        help="Evaluate as of this time: YYYY-MM-DD (start of day, UTC), an ISO 8601 time,"
        " today or yesterday (default: now).",
    ),
]
