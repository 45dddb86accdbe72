"""Command-line entry point: runs the Typer app and turns errors into one line and an exit code.

The app runs in Click's non-standalone mode so that every error is ours to print: usage
errors become one line and exit 2, a `CatalystsError` one line (or one located line per
watchlist problem) and its documented exit code, and anything else is a bug: one line and
exit 70, the traceback only with --debug.
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
    click_error = _click_exception_class()
    try:
        result = app(args=args, prog_name="catalysts", standalone_mode=False)
    except click_error as exc:
        # Usage errors: one line naming the command, not a boxed panel.
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "catalysts"
        message = exc.format_message()
        if message:  # empty for no_args_is_help, whose help text is already printed
            print(f"{where}: {message} (see '{where} --help')", file=sys.stderr)
        sys.exit(int(getattr(exc, "exit_code", ExitCode.USAGE)))
    except CatalystsError as exc:
        if debug:
            raise
        _error(str(exc))
        sys.exit(int(exc.exit_code))
    except _abort_class():
        _error("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into a reader that closed early (`| head`): not worth a traceback.
        sys.stderr.close()
        sys.exit(int(ExitCode.OK))
    except SystemExit as exc:
        # Rich and Typer meet the same broken pipe and exit 1 themselves (having silenced
        # stdout); the reader left early, nothing failed.
        if exc.code == 1 and isinstance(exc.__context__, BrokenPipeError):
            sys.exit(int(ExitCode.OK))
        raise
    except Exception as exc:
        if debug:
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
        sys.exit(INTERNAL_ERROR)
    # Non-standalone mode returns the exit code of `typer.Exit(code)` (or the callback's
    # return value, which our commands never use for anything else).
    sys.exit(result if isinstance(result, int) else int(ExitCode.OK))


def _click_exception_class() -> type[Exception]:
    # Typer >= 0.22 vendors Click; its ClickException is reachable through the public
    # `typer.BadParameter` whichever Click is underneath.
    import typer

    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _abort_class() -> type[BaseException]:
    import typer

    return typer.Abort


def _error(message: str) -> None:
    # Multi-problem errors (a watchlist) keep one located line per problem.
    for line in message.splitlines() or [""]:
        print(
            f"catalysts: {line}" if not line.startswith(("catalysts:",)) else line, file=sys.stderr
        )
