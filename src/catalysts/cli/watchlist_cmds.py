"""Watchlist commands: init, validate, schema, match.

None of them touches the store: `validate` and `match` only read the watchlist (and stdin),
`init` only writes the starter watchlist and its schema.
"""

import json
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from catalysts.cli.app import DEFAULT_WATCHLIST, JsonOpt, WatchlistOpt, app
from catalysts.errors import CatalystsError, WatchlistError


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# --- init -----------------------------------------------------------------------------------


@app.command()
def init(
    path: Annotated[
        Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Argument(
            help="Where to write the watchlist (a file, or a directory for watchlist.yaml).",
            show_default="./watchlist.yaml",
        ),
    ] = None,
) -> None:
    """Write the starter watchlist (and its JSON Schema beside it); never overwrites."""
    from importlib.resources import files

    from catalysts.schema import SCHEMA_FILENAME, schema_json

    target = path or DEFAULT_WATCHLIST
    if target.is_dir():
        target = target / DEFAULT_WATCHLIST.name
    if target.exists():
        raise CatalystsError(
            f"{target}: already exists; not overwriting it (edit it, or choose another "
            "path: catalysts init PATH)"
        )
    starter = (files("catalysts") / "data" / "watchlist.yaml").read_bytes()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": if another process created the file since the check, still never overwrite.
        with target.open("xb") as handle:
            handle.write(starter)
    except FileExistsError:
        raise CatalystsError(f"{target}: already exists; not overwriting it") from None
    except OSError as exc:
        raise CatalystsError(f"{target}: cannot write: {exc.strerror or exc}") from None

    schema_path = target.parent / SCHEMA_FILENAME
    schema = schema_json()
    wrote_schema = _write_schema(schema_path, schema)
    written = f"{target} and {schema_path}" if wrote_schema else str(target)
    typer.echo(f"Wrote {written}.")
    flag = (
        "" if target.resolve() == DEFAULT_WATCHLIST.resolve() else f" -w {shlex.quote(str(target))}"
    )
    typer.echo("Next steps:")
    steps = [
        (f"catalysts validate{flag}", "check it after editing theses, items, feeds and rules"),
        (f'catalysts match{flag} "OpenAI files for IPO"', "try the rules on a headline"),
        (f"catalysts fetch{flag}", "read the feeds into the local store"),
        (f"catalysts status{flag}", "see each item's status and why"),
    ]
    width = max(len(command) for command, _ in steps)
    for command, why in steps:
        typer.echo(f"  {command.ljust(width)}  # {why}")


def _write_schema(path: Path, schema: str) -> bool:
    """Write the schema unless a file we did not write is already there; True if written."""
    if path.exists():
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current == schema:
            return True
        if current is None or '"title": "catalysts watchlist"' not in current:
            typer.echo(f"catalysts: warning: {path} exists and is not ours; left as is", err=True)
            return False
    try:
        path.write_text(schema, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"catalysts: warning: {path}: cannot write: {exc.strerror or exc}", err=True)
        return False
    return True


# --- validate ---------------------------------------------------------------------------------


@app.command()
def validate(
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
    json_output: JsonOpt = False,
) -> None:
    """Check the watchlist: exit 0 with a summary, or 1 with one file:line:col line per problem.

    Warnings (such as a rule that matches almost everything) go to stderr; they keep exit 0.
    """
    from catalysts.watchlist import check_watchlist

    try:
        checked = check_watchlist(watchlist)
    except WatchlistError as exc:
        if not json_output:
            raise
        _print_json({"file": str(watchlist), "valid": False, "problems": _problems(exc, watchlist)})
        raise typer.Exit(int(exc.exit_code)) from None
    wl = checked.watchlist
    if json_output:
        _print_json(
            {
                "file": str(watchlist),
                "valid": True,
                "theses": len(wl.theses),
                "items": len(wl.items),
                "feeds": len(wl.feeds),
                "problems": [],
                "warnings": [_problem_dict(w) for w in checked.warnings],
            }
        )
        return
    for warning in checked.warnings:
        typer.echo(f"catalysts: warning: {warning}", err=True)
    typer.echo(
        f"{watchlist}: valid: {_plural(len(wl.theses), 'thesis', 'theses')}, "
        f"{_plural(len(wl.items), 'item', 'items')}, {_plural(len(wl.feeds), 'feed', 'feeds')}"
    )


def _problem_dict(problem: Any) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "col": problem.col,
        "path": problem.path,
        "message": problem.message,
    }


def _problems(exc: WatchlistError, watchlist: Path) -> list[dict[str, Any]]:
    if exc.problems:
        return [_problem_dict(p) for p in exc.problems]
    # A whole-file problem (missing, unreadable, too large): the file, with no line.
    return [{"file": str(watchlist), "line": None, "col": None, "path": "", "message": str(exc)}]


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


# --- schema -----------------------------------------------------------------------------------


@app.command()
def schema() -> None:
    """Print the watchlist's JSON Schema (draft 2020-12), for editors."""
    from catalysts.schema import schema_json

    sys.stdout.write(schema_json())


# --- match ------------------------------------------------------------------------------------


@app.command()
def match(
    text: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            help="The text to try, read as a headline (HTML is stripped).", show_default=False
        ),
    ] = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read one text per line from stdin instead.")
    ] = False,
    json_output: JsonOpt = False,
    watchlist: WatchlistOpt = DEFAULT_WATCHLIST,
) -> None:
    """Show which items' rules match TEXT, and which words matched.

    Exit code 0 whether or not anything matched (1: invalid watchlist).

    --json prints {"text", "plain", "matches": [...]}, the text with HTML removed as "plain".

    Each match is {"item", "thesis", "kind", "rule", "terms", "hits"}; hits index "plain".

    --stdin --json prints one such object per input line, in input order (JSON Lines).
    """
    if stdin and text is not None:
        raise typer.BadParameter("TEXT and --stdin exclude each other; give one")
    if not stdin and text is None:
        raise typer.BadParameter("missing TEXT (or --stdin to read one text per line)")
    from catalysts.watchlist import load_watchlist

    matcher = _Matcher(load_watchlist(watchlist))
    texts: Iterable[str] = _stdin_lines() if stdin else [text or ""]
    if json_output:
        # JSON Lines with --stdin; written as we go so a long input streams.
        out = sys.stdout
        indent = None if stdin else 2
        for line in texts:
            out.write(json.dumps(matcher.as_json(line), ensure_ascii=False, indent=indent))
            out.write("\n")
        out.flush()
        return
    from catalysts.render.match import print_match

    for i, line in enumerate(texts):
        plain, matches = matcher.match(line)
        if i:
            typer.echo()
        print_match(plain, matches, matcher.items)


def _stdin_lines() -> Iterator[str]:
    stream = sys.stdin
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        # A stray invalid byte in a pasted file should not abort thousands of lines.
        reconfigure(errors="replace")
    for line in stream:
        yield line.rstrip("\r\n")


class _Matcher:
    """The watchlist's rules compiled once, tried on one text at a time."""

    def __init__(self, wl: Any) -> None:
        from catalysts.ingest import rule_sources
        from catalysts.rules import RuleSet
        from catalysts.text import html_to_text

        self._plain = html_to_text
        self.items = {item.id: item for item in wl.items}
        self._order = {item.id: i for i, item in enumerate(wl.items)}
        self._ruleset = RuleSet.compile(rule_sources(wl), wl.aliases)

    def match(self, text: str) -> tuple[str, list[Any]]:
        """The plain text the rules saw, and the rules that matched it in watchlist order."""
        plain = self._plain(text)
        found = sorted(
            self._ruleset.match({"title": plain}),
            key=lambda m: (self._order.get(m.item, 0), m.rule != "signal"),
        )
        return plain, found

    def as_json(self, text: str) -> dict[str, Any]:
        """The DESIGN section 9 object: "text" is the input as given, so scripts can join on
        it; hit offsets index into "plain", the HTML-stripped text the rules saw."""
        plain, found = self.match(text)
        return {
            "text": text,
            "plain": plain,
            "matches": [
                {
                    "item": m.item,
                    "thesis": self.items[m.item].thesis,
                    "kind": self.items[m.item].kind,
                    "rule": m.rule,
                    "terms": list(m.terms),
                    "hits": [
                        {"term": h.term, "field": h.field, "start": h.start, "end": h.end}
                        for h in m.hits
                    ],
                }
                for m in found
            ],
        }
