"""Load and validate `watchlist.yaml` into a `models.Watchlist` (DESIGN section 2).

The file is composed into PyYAML nodes (safe composer: no objects are ever constructed
from tags) and walked by hand, so that every problem carries the line and column of the
offending key or value and the path of the key (`theses[0].items[3].signal`). Problems
are collected, not raised one by one: a `WatchlistError` reports all of them at once.

Hostile input is cheap to refuse: the file size is capped before parsing, YAML aliases
may not expand beyond a small budget ("billion laughs"), recursive aliases and absurd
nesting are refused, and YAML's own errors become one located line, with a hint on how to
quote a rule when that is what YAML tripped on.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlsplit

from catalysts import models
from catalysts.errors import Problem, RuleSyntaxError, WatchlistError
from catalysts.timeutil import parse_date, parse_duration

if TYPE_CHECKING:
    import yaml

SUPPORTED_VERSION = 1
MAX_BYTES = 1024 * 1024  # a real watchlist is tens of KB; 300 items fit in a fifth of this
MAX_DEPTH = 64  # nesting levels; the watchlist itself needs six
MAX_ALIAS_NODES = 10_000  # nodes that YAML aliases may add by expansion, in the whole file

# Ids appear in commands (`catalysts show ID`), URLs-ish places and rules: keep them plain.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Alias names follow `@` in rules.
ALIAS_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"
# The models' Literal types are the one list of each.
KINDS: tuple[str, ...] = get_args(models.Kind)
STATUSES: tuple[str, ...] = get_args(models.Status)
RULE_KEYS: tuple[str, ...] = get_args(models.RuleName)

_ID = re.compile(ID_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL = _TAG + "str", _TAG + "null", _TAG + "bool"
_INT, _FLOAT, _TIMESTAMP = _TAG + "int", _TAG + "float", _TAG + "timestamp"

TOP_KEYS = ("version", "settings", "aliases", "feeds", "theses")
SETTINGS_KEYS = ("window", "half_life", "user_agent", "max_age", "threshold", "stale_after")
FEED_KEYS = ("id", "url", "tags", "weight", "title")
THESIS_KEYS = ("id", "title", "source", "items")
ITEM_KEYS = (
    "id",
    "kind",
    "title",
    "why",
    "by",
    "signal",
    "confirm",
    "sources",
    "threshold",
    "override",
)
OVERRIDE_KEYS = ("status", "note", "since")

_QUOTE_HINT = "wrap the whole rule in single quotes (and double any single quote inside)"


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid watchlist plus the warnings `catalysts validate` shows (they never fail it)."""

    watchlist: models.Watchlist
    warnings: tuple[Problem, ...] = ()


def load_watchlist(path: Path) -> models.Watchlist:
    """Load and validate a watchlist file.

    Raises `WatchlistError` carrying every problem found, each located
    `file:line:col: path: message`; a missing file gets one line pointing at `catalysts init`.
    """
    return _Walker.load(Path(path)).watchlist


def check_watchlist(path: Path) -> Checked:
    """Like `load_watchlist`, plus warnings: rules that match an empty entry, rules cut by `#`."""
    walker = _Walker.load(Path(path))
    warnings = list(walker.warnings) + _empty_match_warnings(walker)
    warnings.sort(key=lambda p: (p.line, p.col))
    return Checked(walker.watchlist, tuple(warnings))


# --- a validated watchlist as JSON (the store caches it; see cli/report_cmds.py) ------------

# The only classes `from_json` builds: data, never code, whatever the text says.
_JSON_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        models.Watchlist,
        models.Settings,
        models.FeedSpec,
        models.Thesis,
        models.ItemSpec,
        models.Override,
    )
}


def to_json(watchlist: models.Watchlist) -> str:
    """A validated watchlist as JSON text that `from_json` turns back into an equal one."""
    import json

    sets: dict[frozenset[Any], int] = {}
    root = _encode(watchlist, sets)
    table = [[_encode(v, {}) for v in sorted(s)] for s in sets]
    return json.dumps({"sets": table, "root": root}, ensure_ascii=False, separators=(",", ":"))


def from_json(text: str) -> models.Watchlist:
    """The watchlist `to_json` wrote. Raises ValueError for anything else."""
    import json

    try:
        doc = json.loads(text)
        sets = [frozenset(_decode(v, []) for v in s) for s in doc["sets"]]
        value = _decode(doc["root"], sets)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ValueError(f"not a cached watchlist: {exc}") from None
    if not isinstance(value, models.Watchlist):
        raise ValueError("not a cached watchlist")
    return value


def _encode(value: Any, sets: dict[frozenset[Any], int]) -> Any:
    """JSON for a watchlist value; each distinct frozenset once, in `sets` (every item that
    watches every feed holds the same set of all feed ids: written out each time, it is
    most of the text)."""
    import dataclasses

    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value).__name__ in _JSON_CLASSES and dataclasses.is_dataclass(value):
        fields = {f.name: _encode(getattr(value, f.name), sets) for f in dataclasses.fields(value)}
        return {"$": type(value).__name__, **fields}
    if isinstance(value, timedelta):
        return {"$": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, date):
        return {"$": "date", "v": value.isoformat()}
    if isinstance(value, frozenset):
        return {"$": "set", "v": sets.setdefault(value, len(sets))}
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [_encode(v, sets) for v in value]}
    if isinstance(value, Mapping):
        return {"$": "dict", "v": [[k, _encode(v, sets)] for k, v in value.items()]}
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decode(value: Any, sets: list[frozenset[Any]]) -> Any:
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise TypeError("bare list")
        return value
    kind = value["$"]
    if kind == "timedelta":
        days, seconds, micro = value["v"]
        return timedelta(days=days, seconds=seconds, microseconds=micro)
    if kind == "date":
        return date.fromisoformat(value["v"])
    if kind == "set":
        return sets[value["v"]]
    if kind == "tuple":
        return tuple(_decode(v, sets) for v in value["v"])
    if kind == "dict":
        return {str(k): _decode(v, sets) for k, v in value["v"]}
    cls = _JSON_CLASSES[kind]
    return cls(**{k: _decode(v, sets) for k, v in value.items() if k != "$"})


# --- reading and composing --------------------------------------------------------------------


def _read_text(path: Path) -> str:
    name = str(path)
    if not path.exists():
        raise WatchlistError(
            f"{name}: no such watchlist; create one with `catalysts init {name}` "
            "or point to yours with -w FILE"
        )
    if path.is_dir():
        raise WatchlistError(f"{name}: is a directory, expected a watchlist YAML file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise WatchlistError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise WatchlistError(
            f"{name}: file is larger than {MAX_BYTES // (1024 * 1024)} MB; "
            "a watchlist is tens of KB of YAML"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise WatchlistError(
            [Problem(name, line, col, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x})")]
        ) from None


def _compose(name: str, text: str) -> yaml.Node:
    import yaml

    try:
        if getattr(yaml, "__with_libyaml__", False):
            # libyaml composes ten times faster than pure Python (watchlists are read by
            # every command), but its composer recurses in C: bound the depth first.
            _check_depth(name, yaml.parse(text, Loader=yaml.CSafeLoader))
            node = yaml.compose(text, Loader=yaml.CSafeLoader)
        else:  # pragma: no cover - PyYAML wheels ship libyaml
            node = yaml.compose(text, Loader=_loader_class())
    except yaml.reader.ReaderError as exc:
        # libyaml reports a byte offset, the pure-Python reader a character offset.
        position = exc.position
        if getattr(yaml, "__with_libyaml__", False):
            position = len(text.encode("utf-8")[: exc.position].decode("utf-8", "ignore"))
        line, col = _line_col(text, position)
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        message = f"YAML cannot contain the control character U+{code:04X}"
        raise WatchlistError([Problem(name, line, col, "", message)]) from None
    except yaml.MarkedYAMLError as exc:
        raise WatchlistError([_yaml_problem(name, text, exc)]) from None
    except RecursionError:
        raise WatchlistError(
            f"{name}: YAML is nested too deeply; a watchlist needs only a few levels"
        ) from None
    if node is None:
        raise WatchlistError(
            [
                Problem(
                    name,
                    1,
                    1,
                    "",
                    "the file is empty; expected a mapping with version, "
                    "feeds and theses (`catalysts init` writes a starter)",
                )
            ]
        )
    return node


def _check_depth(name: str, events: Iterable[Any]) -> None:
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise WatchlistError(
                    [
                        Problem(
                            name,
                            mark.line + 1,
                            mark.column + 1,
                            "",
                            f"YAML is nested more than {MAX_DEPTH} levels deep",
                        )
                    ]
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _loader_class() -> type:
    """SafeLoader that refuses deep nesting while scanning, before it costs time or stack."""
    import yaml

    def too_deep(loader: Any) -> Exception:
        return yaml.scanner.ScannerError(
            None, None, f"YAML is nested more than {MAX_DEPTH} levels deep", loader.get_mark()
        )

    class Loader(yaml.SafeLoader):
        def fetch_flow_collection_start(self, token_class: Any) -> None:
            if self.flow_level >= MAX_DEPTH:
                raise too_deep(self)
            super().fetch_flow_collection_start(token_class)

        def add_indent(self, column: int) -> bool:
            if len(self.indents) >= MAX_DEPTH:
                raise too_deep(self)
            return super().add_indent(column)

    return Loader


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


_KEY_LINE = re.compile(r"^\s*(?:-\s+)?(?P<key>[A-Za-z_][\w-]*):[ \t]+(?P<value>.*?)\s*$")


def _yaml_problem(name: str, text: str, exc: Any) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = (exc.problem or exc.context or "cannot parse").strip()
    if "nesting depth" in problem or problem.startswith("YAML is nested"):  # libyaml: its own limit
        return Problem(name, line, col, "", f"YAML is nested more than {MAX_DEPTH} levels deep")
    if problem.startswith("but ") and exc.context:
        problem = f"{exc.context.strip()} {problem}"
    message = f"YAML syntax error: {problem}"
    cm, pm = exc.context_mark, exc.problem_mark
    # "while parsing a block mapping" only confuses; an unclosed quote or bracket helps.
    helpful = exc.context and ("quoted" in exc.context or "flow" in exc.context)
    if helpful and cm is not None and pm is not None and cm.line != pm.line:
        message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    lines = text.split("\n")  # as YAML counts lines; splitlines() also splits on \f, \x1c...
    source_line = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    if "tab" in problem or source_line[col - 1 : col] == "\t":
        return Problem(name, line, col, "", message + "; indent with spaces, not tabs")
    hint = _quote_hint(source_line, problem)
    return Problem(name, line, col, "", f"{message}; {hint}" if hint else message)


def _quote_hint(source_line: str, problem: str) -> str | None:
    """How to quote a rule that YAML rejected, when the offending line looks like one."""
    found = _KEY_LINE.match(source_line)
    if found is None:
        return None
    key, value = found.group("key"), found.group("value")
    if " #" in value:
        value = value.split(" #", 1)[0].rstrip()
    troubled = value[:1] in ("@", "`", '"', "'") or "mapping values" in problem
    if not value or not troubled:
        return None
    if len(value) > 1 and value[0] == value[-1] == "'" and value.count("'") % 2 == 1:
        # `'OpenAI's IPO'`: the quotes were meant as YAML's, one inside was not doubled.
        value = value[1:-1]
    quoted = "'" + value.replace("'", "''") + "'"
    return f"if this is a rule, {_QUOTE_HINT}: {key}: {quoted}"


def _check_alias_expansion(name: str, root: yaml.Node) -> None:
    """Refuse alias bombs and recursive aliases before anything walks the node graph."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise WatchlistError(
                [
                    Problem(
                        name,
                        node.start_mark.line + 1,
                        node.start_mark.column + 1,
                        "",
                        "YAML alias refers to itself (recursive anchor); remove the alias",
                    )
                ]
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        sizes[key] = total
        return total

    expanded = size(root)
    if expanded - len(sizes) > MAX_ALIAS_NODES:
        reused = _first_reused(root)
        line, col = (reused.start_mark.line + 1, reused.start_mark.column + 1) if reused else (1, 1)
        raise WatchlistError(
            [
                Problem(
                    name,
                    line,
                    col,
                    "",
                    f"YAML anchors and aliases expand to more than {MAX_ALIAS_NODES} extra "
                    "values (an alias bomb?); write the values out or use `aliases:` for "
                    "term lists",
                )
            ]
        )


def _first_reused(root: yaml.Node) -> yaml.Node | None:
    import yaml

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for k, v in reversed(node.value):
                stack.extend((v, k))
    return None


# --- walking the nodes --------------------------------------------------------------------------


def _describe(node: yaml.Node) -> str:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return {
        _NULL: "nothing",
        _BOOL: f"a boolean ({node.value})",
        _INT: f"a number ({node.value})",
        _FLOAT: f"a number ({node.value})",
        _TIMESTAMP: f"a date ({node.value})",
    }.get(node.tag, f'"{node.value}"')


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class _RuleSite:
    item: str
    rule: str
    path: str
    node: Any


class _Walker:
    """Walks the composed YAML, building the model and collecting located problems."""

    def __init__(self, name: str, path: Path, text: str) -> None:
        self.name = name
        self.path = path
        self.text = text
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.rule_sites: list[_RuleSite] = []
        self.watchlist: models.Watchlist = models.Watchlist(path=name)

    @classmethod
    def load(cls, path: Path) -> _Walker:
        name = str(path)
        text = _read_text(path)
        root = _compose(name, text)
        _check_alias_expansion(name, root)
        walker = cls(name, path, text)
        walker.watchlist = walker.build(root)
        if walker.problems:
            walker.problems.sort(key=lambda p: (p.line, p.col))
            raise WatchlistError(walker.problems)
        return walker

    # -- problems

    def located(self, node: Any, path: str, message: str, at: int | None = None) -> Problem:
        """A problem at `node`'s start, or at file offset `at` when given."""
        if at is None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        else:
            line, col = _line_col(self.text, at)
        return Problem(self.name, line, col, path, message)

    def problem(self, node: Any, path: str, message: str, *, at: int | None = None) -> None:
        self.problems.append(self.located(node, path, message, at))

    def warn(self, node: Any, path: str, message: str, *, at: int | None = None) -> None:
        self.warnings.append(self.located(node, path, message, at))

    # -- generic shapes

    def mapping(
        self, node: Any, path: str, keys: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """The mapping's values by key, after reporting unknown, duplicate and missing keys."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping, found {_describe(node)}")
            return None
        values: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                self.problem(key_node, path, "keys must be plain names")
                continue
            key = key_node.value
            if key == "<<" or key_node.tag == _TAG + "merge":
                self.problem(key_node, path, "YAML merge keys (<<) are not supported")
                continue
            if key not in keys:
                import difflib  # only for a mistake: keeps the import off the happy path

                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.7)
                hint = (
                    f'did you mean "{close[0]}"?'
                    if close
                    else "expected one of: " + ", ".join(keys)
                )
                self.problem(key_node, _join(path, key), f'unknown key "{key}"; {hint}')
                continue
            if key in values:
                self.problem(
                    key_node,
                    _join(path, key),
                    f'duplicate key "{key}" (first at line {first_line[key]})',
                )
                continue
            values[key] = value_node
            first_line[key] = key_node.start_mark.line + 1
        for key in required:
            if key not in values:
                self.problem(node, path or "(top level)", f'missing required key "{key}"')
        return values

    def sequence(self, node: Any, path: str, *, null_ok: bool = True) -> list[Any] | None:
        import yaml

        if null_ok and isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, f"expected a list, found {_describe(node)}")
            return None
        return list(node.value)

    def string(self, node: Any, path: str) -> str | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.problem(node, path, f"expected text, found {_describe(node)}")
            return None
        if not node.value.strip():
            self.problem(node, path, "must not be empty")
            return None
        return node.value

    def ident(self, node: Any, path: str, what: str = "id") -> str | None:
        value = self.string(node, path)
        if value is None:
            return None
        if not _ID.fullmatch(value):
            self.problem(
                node,
                path,
                f'{what} "{value}" is not slug-like: use lowercase letters, digits, "-" and "_" '
                "(at most 64, starting with a letter or digit)",
            )
            return None
        return value

    def number(self, node: Any, path: str) -> float | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT, _FLOAT):
            self.problem(node, path, f"expected a positive number, found {_describe(node)}")
            return None
        constructor = yaml.constructor.SafeConstructor()
        raw = constructor.construct_object(node)
        value = float(raw)
        if not math.isfinite(value) or value <= 0:
            self.problem(node, path, f"expected a positive number, found {node.value}")
            return None
        return value

    def duration(self, node: Any, path: str) -> timedelta | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            found = _describe(node)
            extra = f"; add a unit, like {node.value}d" if getattr(node, "tag", "") == _INT else ""
            self.problem(node, path, f"expected a duration like 30d, found {found}{extra}")
            return None
        try:
            value = parse_duration(node.value)
        except ValueError:
            self.problem(
                node,
                path,
                f'bad duration "{node.value}": expected a number and units w, d, h, m, s '
                "(largest first), like 30d, 12h or 1d12h",
            )
            return None
        if value <= timedelta(0):
            self.problem(node, path, f'duration "{node.value}" must be longer than zero')
            return None
        return value

    def date(self, node: Any, path: str) -> date | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_STR, _TIMESTAMP):
            self.problem(node, path, f"expected a date like 2025-12-31, found {_describe(node)}")
            return None
        try:
            return parse_date(node.value)
        except ValueError:
            self.problem(
                node, path, f'bad date "{node.value}": expected YYYY-MM-DD, like 2025-12-31'
            )
            return None

    def choice(self, node: Any, path: str, options: tuple[str, ...]) -> str | None:
        value = self.string(node, path)
        if value is None:
            return None
        if value not in options:
            expected = " or ".join(options) if len(options) < 3 else "one of " + ", ".join(options)
            self.problem(node, path, f'expected {expected}, found "{value}"')
            return None
        return value

    def optional(
        self, values: Mapping[str, Any], key: str, path: str, convert: Callable[[Any, str], Any]
    ) -> Any:
        return convert(values[key], _join(path, key)) if key in values else None

    # -- the document

    def build(self, root: Any) -> models.Watchlist:
        import yaml

        if not isinstance(root, yaml.MappingNode):
            self.problem(
                root,
                "",
                "the watchlist must be a mapping with version, feeds and "
                f"theses; found {_describe(root)}",
            )
            return self.watchlist
        top = self.mapping(root, "", TOP_KEYS, required=("version", "theses")) or {}
        if "version" in top:
            self.version(top["version"])
        settings = self.settings(top["settings"]) if "settings" in top else models.Settings()
        aliases = self.aliases(top["aliases"]) if "aliases" in top else {}
        feeds = self.feeds(top["feeds"]) if "feeds" in top else []
        theses = self.theses(top["theses"], feeds) if "theses" in top else []
        self.check_rules(aliases)
        return models.Watchlist(
            path=self.name,
            settings=settings or models.Settings(),
            aliases={k: v for k, v in aliases.items() if v is not None},
            feeds=tuple(feeds),
            theses=tuple(theses),
        )

    def version(self, node: Any) -> None:
        if getattr(node, "tag", None) != _INT or node.value != str(SUPPORTED_VERSION):
            found = _describe(node)
            self.problem(
                node,
                "version",
                f"unsupported version {node.value}; this catalysts reads version 1"
                if getattr(node, "tag", None) == _INT
                else f"expected version: 1, found {found}",
            )

    def settings(self, node: Any) -> models.Settings | None:
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return models.Settings()
        values = self.mapping(node, "settings", SETTINGS_KEYS)
        if values is None:
            return None
        found: dict[str, Any] = {}
        for key in ("window", "half_life", "max_age", "stale_after"):
            value = self.optional(values, key, "settings", self.duration)
            if value is not None:
                found[key] = value
        threshold = self.optional(values, "threshold", "settings", self.number)
        if threshold is not None:
            found["threshold"] = threshold
        agent = self.optional(values, "user_agent", "settings", self.string)
        if agent is not None:
            found["user_agent"] = agent.strip()
        return models.Settings(**found)

    def aliases(self, node: Any) -> dict[str, tuple[str, ...] | None]:
        """Alias name -> terms; a name whose terms are invalid maps to None (still declared)."""
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "aliases", f"expected a mapping, found {_describe(node)}")
            return {}
        found: dict[str, tuple[str, ...] | None] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                self.problem(key_node, "aliases", "alias names must be plain names")
                continue
            name = key_node.value
            path = _join("aliases", name)
            if not _ALIAS.fullmatch(name):
                self.problem(
                    key_node,
                    path,
                    f'alias name "{name}" must be letters, digits, "-" and "_" (used as @{name})',
                )
                continue
            if not self.unique(key_node, path, name, seen, "alias"):
                continue
            terms = self.sequence(value_node, path, null_ok=False)
            if terms is None:
                found[name] = None
                continue
            if not terms:
                self.problem(value_node, path, "an alias needs at least one term")
            values = [self.string(term, f"{path}[{i}]") for i, term in enumerate(terms)]
            ok = all(v is not None for v in values) and bool(values)
            found[name] = tuple(v.strip() for v in values if v is not None) if ok else None
        return found

    def feeds(self, node: Any) -> list[models.FeedSpec]:
        nodes = self.sequence(node, "feeds")
        result: list[models.FeedSpec] = []
        seen: dict[str, int] = {}
        for i, feed_node in enumerate(nodes or []):
            path = f"feeds[{i}]"
            values = self.mapping(feed_node, path, FEED_KEYS, required=("id", "url"))
            if values is None:
                continue
            feed_id = self.optional(values, "id", path, self.ident)
            if feed_id is not None:
                self.unique(values["id"], f"{path}.id", feed_id, seen, "feed id")
            url = self.optional(values, "url", path, self.url)
            tags = self.tags(values["tags"], f"{path}.tags") if "tags" in values else ()
            weight = self.optional(values, "weight", path, self.number)
            title = self.optional(values, "title", path, self.string)
            if feed_id is None or url is None or tags is None:
                continue
            result.append(
                models.FeedSpec(
                    id=feed_id,
                    url=url,
                    tags=tags,
                    weight=weight if weight is not None else 1.0,
                    title=title,
                )
            )
        return result

    def tags(self, node: Any, path: str) -> tuple[str, ...] | None:
        nodes = self.sequence(node, path)
        if nodes is None:
            return None
        tags = [self.ident(tag, f"{path}[{i}]", "tag") for i, tag in enumerate(nodes)]
        if any(t is None for t in tags):
            return None
        return tuple(dict.fromkeys(t for t in tags if t is not None))

    def url(self, node: Any, path: str) -> str | None:
        value = self.string(node, path)
        if value is None:
            return None
        value = value.strip()
        scheme = _SCHEME.match(value)
        if scheme is None:
            # A plain path: relative to the watchlist, so the file works from any directory.
            local = Path(value).expanduser()
            if not local.is_absolute():
                local = self.path.parent / local
            return os.path.abspath(local)
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            try:
                parts = urlsplit(value)
            except ValueError:
                parts = None
            if parts is None or not parts.hostname or any(c.isspace() for c in value):
                self.problem(node, path, f'bad URL "{value}": expected http(s)://host/path')
                return None
            if "@" in parts.netloc:
                # Feed URLs end up in `feeds --json`, the digest and the workflow's artifact.
                self.problem(
                    node,
                    path,
                    "credentials in a feed URL would be printed and published; "
                    "use a URL without user:password@",
                )
                return None
            return value
        if name == "file":
            return value
        self.problem(
            node,
            path,
            f'unsupported URL scheme "{name}:"; expected http(s)://..., file://... or a file path',
        )
        return None

    def theses(self, node: Any, feeds: list[models.FeedSpec]) -> list[models.Thesis]:
        nodes = self.sequence(node, "theses", null_ok=False)
        result: list[models.Thesis] = []
        seen_theses: dict[str, int] = {}
        seen_items: dict[str, int] = {}
        resolver = _SourceResolver(feeds)
        for i, thesis_node in enumerate(nodes or []):
            path = f"theses[{i}]"
            values = self.mapping(thesis_node, path, THESIS_KEYS, required=("id", "title", "items"))
            if values is None:
                continue
            thesis_id = self.optional(values, "id", path, self.ident)
            if thesis_id is not None:
                self.unique(values["id"], f"{path}.id", thesis_id, seen_theses, "thesis id")
            title = self.optional(values, "title", path, self.string)
            source = self.optional(values, "source", path, self.string)
            items: list[models.ItemSpec] = []
            if "items" in values:
                item_nodes = self.sequence(values["items"], f"{path}.items", null_ok=False)
                for j, item_node in enumerate(item_nodes or []):
                    item = self.item(
                        item_node, f"{path}.items[{j}]", thesis_id or "", seen_items, resolver
                    )
                    if item is not None:
                        items.append(item)
            if thesis_id is not None and title is not None:
                result.append(
                    models.Thesis(
                        id=thesis_id, title=title.strip(), source=source, items=tuple(items)
                    )
                )
        return result

    def unique(self, node: Any, path: str, value: str, seen: dict[str, int], what: str) -> bool:
        """False, with a problem pointing at the first one, when `value` was seen before."""
        if value in seen:
            self.problem(node, path, f'duplicate {what} "{value}" (first at line {seen[value]})')
            return False
        seen[value] = node.start_mark.line + 1
        return True

    def item(
        self,
        node: Any,
        path: str,
        thesis: str,
        seen: dict[str, int],
        resolver: _SourceResolver,
    ) -> models.ItemSpec | None:
        values = self.mapping(node, path, ITEM_KEYS, required=("id", "kind", "title", "signal"))
        if values is None:
            return None
        item_id = self.optional(values, "id", path, self.ident)
        if item_id is not None:
            self.unique(values["id"], f"{path}.id", item_id, seen, "item id")
        kind = self.optional(values, "kind", path, lambda n, p: self.choice(n, p, KINDS))
        title = self.optional(values, "title", path, self.string)
        why = self.optional(values, "why", path, self.string)
        by = self.optional(values, "by", path, self.date)
        rules: dict[str, str | None] = {}
        for rule in RULE_KEYS:
            rules[rule] = self.optional(values, rule, path, self.string)
            if rules[rule] is not None:
                self.rule_sites.append(
                    _RuleSite(item_id or "", rule, f"{path}.{rule}", values[rule])
                )
                self.check_comment(values[rule], f"{path}.{rule}")
        sources: tuple[str, ...] | None = ()
        feeds: frozenset[str] | None = resolver.every
        if "sources" in values:
            sources, feeds = self.sources(values["sources"], f"{path}.sources", resolver)
        threshold = self.optional(values, "threshold", path, self.number)
        override = self.optional(values, "override", path, self.override)
        if None in (item_id, kind, title, rules["signal"], sources, feeds):
            return None
        if "override" in values and override is None:
            return None
        return models.ItemSpec(
            id=item_id,
            thesis=thesis,
            kind=kind,
            title=title.strip(),
            signal=rules["signal"],
            confirm=rules["confirm"],
            why=why.strip() if why else None,
            by=by,
            sources=sources,
            feeds=feeds,
            threshold=threshold,
            override=override,
        )

    def sources(
        self, node: Any, path: str, resolver: _SourceResolver
    ) -> tuple[tuple[str, ...] | None, frozenset[str] | None]:
        nodes = self.sequence(node, path)
        if nodes is None:
            return None, None
        if not nodes:
            return (), resolver.every
        names: list[str] = []
        feeds: set[str] = set()
        ok = True
        for i, source_node in enumerate(nodes):
            name = self.string(source_node, f"{path}[{i}]")
            if name is None:
                ok = False
                continue
            found = resolver.resolve(name)
            if not found:
                self.problem(source_node, f"{path}[{i}]", resolver.unknown(name))
                ok = False
                continue
            names.append(name)
            feeds |= found
        if not ok:
            return None, None
        return tuple(dict.fromkeys(names)), frozenset(feeds)

    def override(self, node: Any, path: str) -> models.Override | None:
        values = self.mapping(node, path, OVERRIDE_KEYS, required=("status", "note"))
        if values is None:
            return None
        status = self.optional(values, "status", path, lambda n, p: self.choice(n, p, STATUSES))
        note = self.optional(values, "note", path, self.string)
        since = self.optional(values, "since", path, self.date)
        if status is None or note is None or ("since" in values and since is None):
            return None
        return models.Override(status=status, note=note.strip(), since=since)

    # -- rules

    def check_comment(self, node: Any, path: str) -> None:
        """Warn when ` #` after a plain rule made YAML drop the rest of the line as a comment."""
        if node.style not in (None, "") or node.end_mark is None:
            return
        end = node.end_mark.index
        line_end = self.text.find("\n", end)
        rest = self.text[end : line_end if line_end >= 0 else len(self.text)]
        if re.match(r"[ \t]+#", rest):
            self.warn(
                node,
                path,
                'the text after " #" is a YAML comment, not part of the rule; '
                f"if it belongs to the rule, {_QUOTE_HINT}",
                at=end + rest.index("#"),
            )

    def check_rules(self, aliases: Mapping[str, tuple[str, ...] | None]) -> None:
        from catalysts.rules import parse_rule

        # Every declared alias counts as known, even one with bad terms: that problem is
        # reported once, at the alias, not again at every rule using it.
        known = {name: terms or ("placeholder",) for name, terms in aliases.items()}
        for site in self.rule_sites:
            try:
                parse_rule(site.node.value, known)
            except RuleSyntaxError as exc:
                message = _rule_message(exc)
                self.problem(
                    site.node, site.path, message, at=self.offset_in_file(site.node, exc.position)
                )

    def offset_in_file(self, node: Any, position: int) -> int | None:
        """Where character `position` of a scalar's value sits in the file, when knowable."""
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.text[start:end]
        if "\n" in raw or "\r" in raw:
            return None
        mapped = _value_offsets(raw, node.style)
        if mapped is None or len(mapped) != len(node.value) + 1:
            return None
        return start + mapped[min(max(position, 0), len(node.value))]


def _value_offsets(raw: str, style: str | None) -> list[int] | None:
    """For each character of a one-line scalar's value, its offset in the raw YAML text.

    The list has one more entry (the end of the value), so an error "at the end" maps too.
    """
    if not style:  # plain: None from PyYAML, "" from libyaml
        return list(range(len(raw) + 1))
    if style == "'":
        offsets: list[int] = []
        i = 1
        while i < len(raw) - 1:
            offsets.append(i)
            i += 2 if raw[i] == "'" else 1
        offsets.append(len(raw) - 1)
        return offsets
    if style == '"':
        offsets = []
        i = 1
        while i < len(raw) - 1:
            offsets.append(i)
            if raw[i] == "\\":
                code = raw[i + 1 : i + 2]
                i += {"x": 4, "u": 6, "U": 10}.get(code, 2)
            else:
                i += 1
        offsets.append(len(raw) - 1)
        return offsets
    return None


def _rule_message(exc: RuleSyntaxError) -> str:
    message = exc.message
    if ' at "' in message or exc.position >= len(exc.source):
        return message
    snippet = exc.source[exc.position :].split()[0] if exc.source[exc.position :].strip() else ""
    return f'{message} at "{snippet[:30]}"' if snippet else message


class _SourceResolver:
    """Feed ids and tags -> feed ids, for `sources`."""

    def __init__(self, feeds: Iterable[models.FeedSpec]) -> None:
        feeds = list(feeds)
        self.ids = {f.id for f in feeds}
        self.tags: dict[str, set[str]] = {}
        for feed in feeds:
            for tag in feed.tags:
                self.tags.setdefault(tag, set()).add(feed.id)
        self.every = frozenset(self.ids)

    def resolve(self, name: str) -> frozenset[str]:
        found = set(self.tags.get(name, ()))
        if name in self.ids:
            found.add(name)
        return frozenset(found)

    def unknown(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, sorted(self.ids | set(self.tags)), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown feed id or tag "{name}"{hint}'


def _empty_match_warnings(walker: _Walker) -> list[Problem]:
    """Rules that match an entry with no text would match nearly everything (`NOT x`)."""
    from catalysts.rules import RuleSet

    sites = {(site.item, site.rule): site for site in walker.rule_sites}
    ruleset = RuleSet.compile(
        ((site.item, site.rule, site.node.value) for site in walker.rule_sites),
        walker.watchlist.aliases,
    )
    warnings: list[Problem] = []
    for match in ruleset.match({field: "" for field in models.FIELDS}):
        site = sites.get((match.item, match.rule))
        if site is not None:
            warnings.append(
                walker.located(
                    site.node,
                    site.path,
                    "this rule matches an entry with no text, so it matches almost every "
                    "entry; add a positive term (e.g. `x AND NOT y`)",
                )
            )
    return warnings
