"""One exception root and the documented exit codes.

Every error a user can cause is a `CatalystsError` whose `str()` is one line that says
what went wrong and where. The CLI turns it into that line on stderr and its exit code;
anything else is a bug and gets a traceback only with `--debug`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, a contract for scripts (DESIGN section 9)."""

    OK = 0
    INVALID_INPUT = 1  # invalid watchlist, rule or other user input
    USAGE = 2  # wrong command-line usage (Click's own code)
    RUN_FAILED = 3  # the run failed: fetch with every feed failing, or any with --strict
    STORE = 4  # the SQLite store is missing, corrupt, locked or newer than this code


class CatalystsError(Exception):
    """Root of every error a user can cause; `str()` is the one-line message."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a watchlist: `file:line:col: path: message`."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # key path such as "theses[0].items[3].signal"; "" for the document
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class WatchlistError(CatalystsError):
    """The watchlist is missing or invalid; carries every problem found, not only the first."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            message = problems
        else:
            self.problems = list(problems)
            message = "\n".join(str(p) for p in self.problems)
        super().__init__(message)


class RuleSyntaxError(CatalystsError):
    """A rule does not parse; `position` is the 0-based offset of the offending character."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, message: str, source: str, position: int) -> None:
        self.message = message
        self.source = source
        self.position = position
        super().__init__(f"{message} at column {position + 1}")


class StoreError(CatalystsError):
    """The store cannot be used: corrupt, locked, unwritable, or from a newer version."""

    exit_code = ExitCode.STORE


class RunFailed(CatalystsError):
    """A whole run failed (for fetch: every feed failed, or any feed with --strict)."""

    exit_code = ExitCode.RUN_FAILED
