"""Loading and validating watchlist.yaml: the model it yields and every located problem."""

from __future__ import annotations

import tempfile
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalysts import models
from catalysts.errors import ExitCode, WatchlistError
from catalysts.watchlist import MAX_BYTES, check_watchlist, load_watchlist

FULL = """\
# yaml-language-server: $schema=./watchlist.schema.json
version: 1
settings:
  window: 14d
  half_life: 3d12h
  user_agent: "catalysts-test/1.0 (you@example.com)"
  max_age: 6h
  threshold: 1.5
  stale_after: 1w
aliases:
  openai: [OpenAI, "Sam Altman"]
feeds:
  - id: coindesk
    url: https://www.coindesk.com/arc/outboundfeeds/rss/
    tags: [crypto, news]
    weight: 1.5
    title: CoinDesk
  - id: sec
    url: https://www.sec.gov/cgi-bin/browse-edgar?action=getcurrent&type=S-1
    tags: [filings]
  - id: archive
    url: saved/feed.xml
  - id: local
    url: file:///srv/feeds/local.xml
    tags: [news]
theses:
  - id: crypto-ai
    title: Crypto x AI is still a big opportunity
    source: Teng Yan (2024)
    items:
      - id: openai-ipo
        kind: catalyst
        title: OpenAI IPO
        why: Retail wants AI exposure.
        by: 2025-12-31
        signal: '@openai AND (IPO OR "go public")'
        confirm: '@openai AND "S-1"'
        sources: [news, sec]
        threshold: 3
        override:
          status: triggered
          note: Priced
          since: 2025-06-01
  - id: second
    title: Second thesis
    items:
      - id: regulation
        kind: risk
        title: Hostile regulation
        signal: SEC AND crypto
        sources: []
"""


def write(directory: Path, text: str, name: str = "watchlist.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problem lines of an invalid watchlist, with the file shown as W."""
    with pytest.raises(WatchlistError) as caught:
        load_watchlist(path)
    assert caught.value.exit_code == ExitCode.INVALID_INPUT
    return [line.replace(str(path), "W") for line in str(caught.value).splitlines()]


# --- the model ---------------------------------------------------------------------------------


def test_full_watchlist_loads_into_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    wl = load_watchlist(path)

    assert wl.path == str(path)
    assert wl.settings == models.Settings(
        window=timedelta(days=14),
        half_life=timedelta(days=3, hours=12),
        user_agent="catalysts-test/1.0 (you@example.com)",
        max_age=timedelta(hours=6),
        threshold=1.5,
        stale_after=timedelta(weeks=1),
    )
    assert dict(wl.aliases) == {"openai": ("OpenAI", "Sam Altman")}
    assert [f.id for f in wl.feeds] == ["coindesk", "sec", "archive", "local"]
    coindesk = wl.feed("coindesk")
    assert coindesk == models.FeedSpec(
        id="coindesk",
        url="https://www.coindesk.com/arc/outboundfeeds/rss/",
        tags=("crypto", "news"),
        weight=1.5,
        title="CoinDesk",
    )
    # A plain relative path is relative to the watchlist, not to the current directory.
    assert wl.feed("archive").url == str(tmp_path / "saved" / "feed.xml")
    assert wl.feed("local").url == "file:///srv/feeds/local.xml"
    assert wl.feed("sec").weight == 1.0

    assert [t.id for t in wl.theses] == ["crypto-ai", "second"]
    ipo = wl.item("openai-ipo")
    assert ipo == models.ItemSpec(
        id="openai-ipo",
        thesis="crypto-ai",
        kind="catalyst",
        title="OpenAI IPO",
        signal='@openai AND (IPO OR "go public")',
        confirm='@openai AND "S-1"',
        why="Retail wants AI exposure.",
        by=date(2025, 12, 31),
        sources=("news", "sec"),
        feeds=frozenset({"coindesk", "local", "sec"}),  # tag news -> two feeds, plus id sec
        threshold=3.0,
        override=models.Override(status="triggered", note="Priced", since=date(2025, 6, 1)),
    )
    regulation = wl.item("regulation")
    assert regulation.thesis == "second"
    assert regulation.sources == ()
    assert regulation.feeds == frozenset({"coindesk", "sec", "archive", "local"})
    assert regulation.confirm is None and regulation.override is None


def test_minimal_watchlist_gets_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        theses:
          - id: t
            title: T
            items: []
        """,
    )
    wl = load_watchlist(path)
    assert wl.settings == models.Settings()
    assert wl.feeds == () and dict(wl.aliases) == {}
    assert wl.theses == (models.Thesis(id="t", title="T"),)


def test_empty_optional_sections_mean_empty(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        settings:
        aliases:
        feeds:
        theses: []
        """,
    )
    wl = load_watchlist(path)
    assert wl.settings == models.Settings() and wl.feeds == () and wl.theses == ()


# --- every kind of problem, located ------------------------------------------------------------

HEAD = """\
version: 1
feeds:
  - id: news
    url: https://example.com/rss
    tags: [crypto]
theses:
  - id: t
    title: T
    items:
      - id: a
        kind: risk
        title: A
"""

CASES = [
    pytest.param(
        HEAD + "        signal: foo\ncolour: red\n",
        'W:14:1: colour: unknown key "colour"; expected one of: version, settings, aliases, '
        "feeds, theses",
        id="unknown-top-key",
    ),
    pytest.param(
        HEAD + "        singal: foo\n",
        [
            'W:10:9: theses[0].items[0]: missing required key "signal"',
            'W:13:9: theses[0].items[0].singal: unknown key "singal"; did you mean "signal"?',
        ],
        id="unknown-item-key-suggests",
    ),
    pytest.param(
        HEAD.replace("version: 1", "version: 2") + "        signal: foo\n",
        "W:1:10: version: unsupported version 2; this catalysts reads version 1",
        id="version-2",
    ),
    pytest.param(
        HEAD.replace("version: 1", 'version: "1"') + "        signal: foo\n",
        'W:1:10: version: expected version: 1, found "1"',
        id="version-string",
    ),
    pytest.param(
        HEAD.replace("version: 1\n", "") + "        signal: foo\n",
        'W:1:1: (top level): missing required key "version"',
        id="missing-version",
    ),
    pytest.param(
        "version: 1\n",
        'W:1:1: (top level): missing required key "theses"',
        id="missing-theses",
    ),
    pytest.param(
        HEAD + "        signal: [foo, bar]\n",
        "W:13:17: theses[0].items[0].signal: expected text, found a list",
        id="rule-not-text",
    ),
    pytest.param(
        HEAD.replace("title: A", "title:") + "        signal: foo\n",
        "W:12:15: theses[0].items[0].title: expected text, found nothing",
        id="empty-title",
    ),
    pytest.param(
        HEAD.replace("kind: risk", "kind: threat") + "        signal: foo\n",
        'W:11:15: theses[0].items[0].kind: expected catalyst or risk, found "threat"',
        id="bad-kind",
    ),
    pytest.param(
        HEAD.replace("id: a", "id: Bad Id") + "        signal: foo\n",
        'W:10:13: theses[0].items[0].id: id "Bad Id" is not slug-like: use lowercase letters, '
        'digits, "-" and "_" (at most 64, starting with a letter or digit)',
        id="id-not-slug",
    ),
    pytest.param(
        HEAD + "        signal: foo\n      - id: a\n        kind: risk\n        title: B\n"
        "        signal: bar\n",
        'W:14:13: theses[0].items[1].id: duplicate item id "a" (first at line 10)',
        id="duplicate-item",
    ),
    pytest.param(
        HEAD + "        signal: foo\n  - id: u\n    title: U\n    items:\n      - id: a\n"
        "        kind: risk\n        title: B\n        signal: bar\n",
        'W:17:13: theses[1].items[0].id: duplicate item id "a" (first at line 10)',
        id="duplicate-item-across-theses",
    ),
    pytest.param(
        HEAD + "        signal: foo\n  - id: t\n    title: U\n    items: []\n",
        'W:14:9: theses[1].id: duplicate thesis id "t" (first at line 7)',
        id="duplicate-thesis",
    ),
    pytest.param(
        HEAD.replace("    tags: [crypto]\n", "  - id: news\n    url: https://example.org/\n")
        + "        signal: foo\n",
        'W:5:9: feeds[1].id: duplicate feed id "news" (first at line 3)',
        id="duplicate-feed",
    ),
    pytest.param(
        "aliases:\n  vcs: [Accel]\n  vcs: [Sequoia]\n" + HEAD + "        signal: '@vcs'\n",
        'W:3:3: aliases.vcs: duplicate alias "vcs" (first at line 2)',
        id="duplicate-alias",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        title: again\n",
        'W:14:9: theses[0].items[0].title: duplicate key "title" (first at line 12)',
        id="duplicate-key",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        sources: [crypto, nwes]\n",
        'W:14:27: theses[0].items[0].sources[1]: unknown feed id or tag "nwes"; '
        'did you mean "news"?',
        id="unknown-source",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        sources: crypto\n",
        'W:14:18: theses[0].items[0].sources: expected a list, found "crypto"',
        id="sources-not-list",
    ),
    pytest.param(
        "settings:\n  window: 30\n" + HEAD + "        signal: foo\n",
        "W:2:11: settings.window: expected a duration like 30d, found a number (30); "
        "add a unit, like 30d",
        id="duration-without-unit",
    ),
    pytest.param(
        "settings:\n  half_life: 1y\n" + HEAD + "        signal: foo\n",
        'W:2:14: settings.half_life: bad duration "1y": expected a number and units w, d, h, '
        "m, s (largest first), like 30d, 12h or 1d12h",
        id="bad-duration",
    ),
    pytest.param(
        "settings:\n  stale_after: 0d\n" + HEAD + "        signal: foo\n",
        'W:2:16: settings.stale_after: duration "0d" must be longer than zero',
        id="zero-duration",
    ),
    pytest.param(
        "settings:\n  threshold: 0\n" + HEAD + "        signal: foo\n",
        "W:2:14: settings.threshold: expected a positive number, found 0",
        id="zero-threshold",
    ),
    pytest.param(
        HEAD.replace("    tags: [crypto]", "    weight: -1") + "        signal: foo\n",
        "W:5:13: feeds[0].weight: expected a positive number, found -1",
        id="negative-weight",
    ),
    pytest.param(
        HEAD.replace("    tags: [crypto]", "    weight: .nan") + "        signal: foo\n",
        "W:5:13: feeds[0].weight: expected a positive number, found .nan",
        id="nan-weight",
    ),
    pytest.param(
        HEAD.replace("    tags: [crypto]", "    weight: yes") + "        signal: foo\n",
        "W:5:13: feeds[0].weight: expected a positive number, found a boolean (yes)",
        id="boolean-weight",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        threshold: high\n",
        'W:14:20: theses[0].items[0].threshold: expected a positive number, found "high"',
        id="threshold-text",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        by: 2025-02-30\n",
        'W:14:13: theses[0].items[0].by: bad date "2025-02-30": expected YYYY-MM-DD, like '
        "2025-12-31",
        id="impossible-date",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        by: next year\n",
        'W:14:13: theses[0].items[0].by: bad date "next year": expected YYYY-MM-DD, like '
        "2025-12-31",
        id="bad-date",
    ),
    pytest.param(
        HEAD + "        signal: foo\n        override:\n          status: done\n",
        [
            'W:15:11: theses[0].items[0].override: missing required key "note"',
            "W:15:19: theses[0].items[0].override.status: expected one of quiet, building, "
            'triggered, expired, found "done"',
        ],
        id="bad-override",
    ),
    pytest.param(
        HEAD.replace("https://example.com/rss", "ftp://example.com/rss") + "        signal: foo\n",
        'W:4:10: feeds[0].url: unsupported URL scheme "ftp:"; expected http(s)://..., '
        "file://... or a file path",
        id="url-scheme",
    ),
    pytest.param(
        HEAD.replace("https://example.com/rss", "https:///rss") + "        signal: foo\n",
        'W:4:10: feeds[0].url: bad URL "https:///rss": expected http(s)://host/path',
        id="url-without-host",
    ),
    pytest.param(
        HEAD.replace("https://example.com/rss", "https://me:secret@example.com/rss")
        + "        signal: foo\n",
        "W:4:10: feeds[0].url: credentials in a feed URL would be printed and published; "
        "use a URL without user:password@",
        id="url-with-credentials",
    ),
    pytest.param(
        HEAD.replace("[crypto]", "[Crypto News]") + "        signal: foo\n",
        'W:5:12: feeds[0].tags[0]: tag "Crypto News" is not slug-like: use lowercase letters, '
        'digits, "-" and "_" (at most 64, starting with a letter or digit)',
        id="tag-not-slug",
    ),
    pytest.param(
        "aliases:\n  vcs: Sequoia\n" + HEAD + "        signal: '@vcs'\n",
        'W:2:8: aliases.vcs: expected a list, found "Sequoia"',
        id="alias-not-list",
    ),
    pytest.param(
        "aliases:\n  vcs: []\n" + HEAD + "        signal: '@vcs'\n",
        "W:2:8: aliases.vcs: an alias needs at least one term",
        id="alias-empty",
    ),
    pytest.param(
        "theses: {}\nversion: 1\n",
        "W:1:9: theses: expected a list, found a mapping",
        id="theses-not-list",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_problem_is_located_with_path_and_message(
    tmp_path: Path, text: str, expected: str | list[str]
) -> None:
    path = write(tmp_path, text)
    assert problems(path) == ([expected] if isinstance(expected, str) else expected)


RULE_CASES = [
    pytest.param(
        "        signal: '@openai AND (IPO OR \"go public\"'\n",
        "W:15:30: theses[0].items[0].signal: unbalanced parenthesis (expected a closing ')') "
        'at "(IPO"',
        id="single-quoted",
    ),
    pytest.param(
        "        signal: '''tis AND (IPO'\n",
        "W:15:28: theses[0].items[0].signal: unbalanced parenthesis (expected a closing ')') "
        'at "(IPO"',
        id="single-quoted-with-doubled-quote",
    ),
    pytest.param(
        '        signal: "\\u00e9t\\u00e9 AND (IPO"\n',
        "W:15:36: theses[0].items[0].signal: unbalanced parenthesis (expected a closing ')') "
        'at "(IPO"',
        id="double-quoted-with-escapes",
    ),
    pytest.param(
        "        signal: OpenAI AND (IPO\n",
        "W:15:28: theses[0].items[0].signal: unbalanced parenthesis (expected a closing ')') "
        'at "(IPO"',
        id="plain",
    ),
    pytest.param(
        "        signal: |\n          OpenAI AND\n          (IPO\n",
        "W:15:17: theses[0].items[0].signal: unbalanced parenthesis (expected a closing ')') "
        'at "(IPO"',
        id="multi-line-points-at-the-scalar",
    ),
    pytest.param(
        "        signal: foo\n        confirm: '@openai AND @opneai'\n",
        'W:16:31: theses[0].items[0].confirm: unknown alias @opneai (known: openai) at "@opneai"',
        id="unknown-alias",
    ),
]


@pytest.mark.parametrize(("rule", "expected"), RULE_CASES)
def test_rule_errors_point_at_the_character_in_the_file(
    tmp_path: Path, rule: str, expected: str
) -> None:
    path = write(tmp_path, "aliases:\n  openai: [OpenAI]\n" + HEAD + rule)
    assert problems(path) == [expected]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        settings:
          window: soon
        feeds:
          - id: news
            url: gopher://old
        theses:
          - id: t
            title: T
            items:
              - id: a
                kind: maybe
                title: A
                signal: 'x AND (y'
                sources: [nope]
        """,
    )
    found = problems(path)
    assert [line.split(": ")[0] for line in found] == [
        "W:3:11",
        "W:6:10",
        "W:12:15",
        "W:14:24",
        "W:15:19",
    ]
    assert [line.split(": ")[1] for line in found] == [
        "settings.window",
        "feeds[0].url",
        "theses[0].items[0].kind",
        "theses[0].items[0].signal",
        "theses[0].items[0].sources[0]",
    ]


def test_declared_alias_with_bad_terms_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, "aliases:\n  vcs: [Sequoia, [a]]\n" + HEAD + "        signal: '@vcs'\n")
    assert problems(path) == ["W:2:18: aliases.vcs[1]: expected text, found a list"]


# --- files that are not watchlists ------------------------------------------------------------


def test_missing_file_points_to_init(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(WatchlistError) as caught:
        load_watchlist(path)
    message = str(caught.value)
    assert message == (
        f"{path}: no such watchlist; create one with `catalysts init {path}` "
        "or point to yours with -w FILE"
    )
    assert "\n" not in message


def test_directory_is_not_a_watchlist(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match="is a directory"):
        load_watchlist(tmp_path)


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run hostile-input tests through both YAML composers the loader may use."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    if request.param == "pure-python":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    return request.param


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nversion: 1\ntheses: *a{levels}\n"


HOSTILE = [
    pytest.param(
        billion_laughs(),
        "W:1:5: YAML anchors and aliases expand to more than 10000 extra values (an alias "
        "bomb?); write the values out or use `aliases:` for term lists",
        id="billion-laughs",
    ),
    pytest.param(
        "version: 1\ntheses: &x [*x]\n",
        "W:2:9: YAML alias refers to itself (recursive anchor); remove the alias",
        id="recursive-alias",
    ),
    pytest.param(
        "",
        "W:1:1: the file is empty; expected a mapping with version, feeds and "
        "theses (`catalysts init` writes a starter)",
        id="empty",
    ),
    pytest.param(
        "# only a comment\n\n",
        "W:1:1: the file is empty; expected a mapping with "
        "version, feeds and theses (`catalysts init` writes a starter)",
        id="comments",
    ),
    pytest.param(
        "- version\n- 1\n",
        "W:1:1: the watchlist must be a mapping with version, feeds and theses; found a list",
        id="list-root",
    ),
    pytest.param(
        "# a comment first\n- version\n",
        "W:2:1: the watchlist must be a mapping with version, feeds and theses; found a list",
        id="not-a-mapping-after-a-comment",
    ),
    pytest.param(
        "just words\n",
        'W:1:1: the watchlist must be a mapping with version, feeds and theses; found "just words"',
        id="scalar-root",
    ),
    pytest.param(
        "version: 1\ntheses: []\x07\n",
        "W:2:11: YAML cannot contain the control character U+0007",
        id="control-character",
    ),
    pytest.param(
        "base: &b {id: t}\nversion: 1\ntheses: [{<<: *b, title: T, items: []}]\n",
        None,
        id="merge-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE)
def test_hostile_yaml_gets_one_clear_located_error(
    tmp_path: Path, yaml_backend: str, text: str, expected: str | None
) -> None:
    path = write(tmp_path, text)
    found = problems(path)
    if expected is None:  # the merge key: refused where it is written
        assert "W:3:11: theses[0]: YAML merge keys (<<) are not supported" in found
    else:
        assert found == [expected]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\ntheses: " + "[" * 100_000 + "]" * 100_000 + "\n", id="flow"),
        pytest.param("version: 1\ntheses:\n" + "- " * 200_000 + "x\n", id="block-sequence"),
        pytest.param(
            "version: 1\ntheses:\n" + "".join(" " * i + f"k{i}:\n" for i in range(500)),
            id="block-mapping",
        ),
    ],
)
def test_absurd_nesting_is_refused(tmp_path: Path, yaml_backend: str, text: str) -> None:
    (line,) = problems(write(tmp_path, text))
    assert line.startswith("W:")
    assert "nested more than 64 levels deep" in line


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "watchlist.yaml"
    path.write_bytes(b"version: 1\n" + b"#" * MAX_BYTES)
    assert problems(path) == ["W: file is larger than 1 MB; a watchlist is tens of KB of YAML"]


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "watchlist.yaml"
    path.write_bytes(b"version: 1\ntheses: \xff\n")
    assert problems(path) == ["W:2:9: not UTF-8 text (byte 0xff)"]


QUOTE_HINT = (
    "if this is a rule, wrap the whole rule in single quotes (and double any single quote inside)"
)


@pytest.mark.parametrize(
    ("line", "col", "suggestion"),
    [
        pytest.param("signal: @openai AND IPO", 17, "signal: '@openai AND IPO'", id="at-sign"),
        pytest.param(
            'signal: "go public" AND OpenAI',
            29,
            "signal: '\"go public\" AND OpenAI'",
            id="quoted-phrase-then-more",
        ),
        pytest.param("signal: 'OpenAI's IPO'", 25, "signal: 'OpenAI''s IPO'", id="undoubled-quote"),
        pytest.param("signal: title: IPO", 22, "signal: 'title: IPO'", id="colon-space"),
    ],
)
def test_yaml_rejecting_a_rule_says_how_to_quote_it(
    tmp_path: Path, yaml_backend: str, line: str, col: int, suggestion: str
) -> None:
    (found,) = problems(write(tmp_path, HEAD + "        " + line + "\n"))
    assert found.startswith(f"W:13:{col}: YAML syntax error: ")
    assert found.endswith(f"; {QUOTE_HINT}: {suggestion}")


def test_yaml_syntax_errors_are_located(tmp_path: Path, yaml_backend: str) -> None:
    (tab,) = problems(write(tmp_path, "version: 1\n\ttheses: []\n"))
    assert tab.startswith("W:2:1: YAML syntax error: ")
    assert tab.endswith("; indent with spaces, not tabs")
    (unclosed,) = problems(write(tmp_path, 'version: 1\ntheses: "abc\n\n'))
    assert unclosed.startswith("W:4:1: YAML syntax error: ")
    assert unclosed.endswith("(while scanning a quoted scalar started at line 2)")
    (two,) = problems(write(tmp_path, "version: 1\n---\nversion: 1\n"))
    assert two == (
        "W:2:1: YAML syntax error: expected a single document in the stream but found "
        "another document"
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="-:[]{}&*!|>'\"#@ \n\tabc019.", max_size=200),
        st.lists(st.sampled_from(FULL.splitlines()), max_size=40).map("\n".join),
    )
)
def test_any_text_loads_or_fails_with_watchlist_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            wl = load_watchlist(path)
        except WatchlistError as exc:
            assert str(exc).strip()
            for problem in exc.problems:
                assert problem.line >= 1 and problem.col >= 1
        else:
            assert isinstance(wl, models.Watchlist)


# --- warnings ----------------------------------------------------------------------------------


def test_check_warns_about_rules_that_match_everything_and_cut_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "        signal: NOT spam\n        confirm: IPO #filing\n",
    )
    checked = check_watchlist(path)
    assert checked.watchlist == load_watchlist(path)
    assert [str(w).replace(str(path), "W") for w in checked.warnings] == [
        "W:13:17: theses[0].items[0].signal: this rule matches an entry with no text, so it "
        "matches almost every entry; add a positive term (e.g. `x AND NOT y`)",
        'W:14:22: theses[0].items[0].confirm: the text after " #" is a YAML comment, not part '
        f"of the rule; if it belongs to the rule, {QUOTE_HINT.removeprefix('if this is a rule, ')}",
    ]


def test_check_is_quiet_for_a_good_watchlist(tmp_path: Path) -> None:
    assert check_watchlist(write(tmp_path, FULL)).warnings == ()


def test_json_round_trip_gives_an_equal_watchlist(tmp_path: Path) -> None:
    from catalysts.watchlist import from_json, to_json

    wl = load_watchlist(write(tmp_path, FULL))
    again = from_json(to_json(wl))
    assert again == wl
    assert again.items[0].feeds == wl.items[0].feeds


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"sets": [], "root": {"$": "Entry", "key": "k", "title": "t"}}',  # not a watchlist's
        '{"sets": [], "root": {"$": "Settings"}}',  # a watchlist part, not a watchlist
        '{"sets": [], "root": {"$": "Watchlist", "nope": 1}}',
        '{"sets": [], "root": {"$": "set", "v": 3}}',
        '{"root": {"$": "Watchlist", "path": "w.yaml"}}',
        "not json",
    ],
)
def test_json_that_is_not_a_cached_watchlist_is_refused(text: str) -> None:
    from catalysts.watchlist import from_json

    with pytest.raises(ValueError):
        from_json(text)
