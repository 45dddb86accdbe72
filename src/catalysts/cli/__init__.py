"""Command-line entry point: runs the Typer app and turns errors into one line and an exit code.

Typer (standalone mode) handles usage errors itself (exit 2, message on stderr) and exits
via SystemExit; everything that escapes it is either a `CatalystsError` (one line, its
documented exit code) or a bug (one line and exit 70, the traceback only with --debug).
"""

from __future__ import annotations

import os
import sys

from catalysts.errors import CatalystsError, ExitCode

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in catalysts, not the user's input


def _load_commands() -> None:
    # Each command module registers its commands on `app` when imported.
    from catalysts.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit with a documented code (see `catalysts.errors.ExitCode`)."""
    from catalysts.cli.app import app

    _load_commands()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CATALYSTS_DEBUG") == "1"
    try:
        app(args=args, prog_name="catalysts")
    except CatalystsError as exc:
        if debug:
            raise
        _error(str(exc))
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into a reader that closed early (`| head`): not worth a traceback.
        sys.stderr.close()
        sys.exit(int(ExitCode.OK))
    except Exception as exc:
        if debug:
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
        sys.exit(INTERNAL_ERROR)


def _error(message: str) -> None:
    # Multi-problem errors (a watchlist) keep one located line per problem.
    for line in message.splitlines() or [""]:
        print(
            f"catalysts: {line}" if not line.startswith(("catalysts:",)) else line, file=sys.stderr
        )
