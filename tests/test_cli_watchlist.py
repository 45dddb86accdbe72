"""The watchlist commands end to end: init, validate, schema, match (exit codes and output)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from catalysts.cli import main
from catalysts.models import Hit
from catalysts.render.match import highlighted
from catalysts.schema import MODELINE, SCHEMA_FILENAME, build_schema, schema_json

WATCHLIST = """\
version: 1
aliases:
  openai: [OpenAI, "Sam Altman"]
feeds:
  - id: news
    url: https://example.com/rss
    tags: [crypto]
theses:
  - id: crypto-ai
    title: Crypto x AI
    items:
      - id: openai-ipo
        kind: catalyst
        title: OpenAI IPO
        signal: '@openai AND (IPO OR "go public")'
        confirm: '@openai AND "S-1"'
      - id: regulation
        kind: risk
        title: Hostile regulation
        signal: SEC AND crypto
"""


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None
) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with pytest.raises(SystemExit) as exited:
            main(argv)
    finally:
        sys.stdin = old_stdin
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


@pytest.fixture
def watchlist(tmp_path: Path) -> Path:
    path = tmp_path / "watchlist.yaml"
    path.write_text(WATCHLIST, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "CATALYSTS_WATCHLIST", "CATALYSTS_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


# --- init ------------------------------------------------------------------------------------


def test_init_writes_the_starter_and_its_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["init"], capsys)
    assert (code, err) == (0, "")
    starter = (files("catalysts") / "data" / "watchlist.yaml").read_bytes()
    assert (tmp_path / "watchlist.yaml").read_bytes() == starter
    assert (tmp_path / SCHEMA_FILENAME).read_text(encoding="utf-8") == schema_json()
    assert out.splitlines()[0] == f"Wrote watchlist.yaml and {SCHEMA_FILENAME}."
    assert "catalysts validate " in out and "-w" not in out  # default path: no -w needed


def test_init_refuses_to_overwrite(watchlist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = watchlist.read_bytes()
    code, out, err = run(["init", str(watchlist)], capsys)
    assert code == 1
    assert out == ""
    assert err == (
        f"catalysts: {watchlist}: already exists; not overwriting it (edit it, or choose "
        "another path: catalysts init PATH)\n"
    )
    assert watchlist.read_bytes() == before


def test_init_into_a_directory_and_elsewhere_says_how_to_point_at_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "configs"
    target.mkdir()
    code, out, _ = run(["init", str(target)], capsys)
    assert code == 0
    assert (target / "watchlist.yaml").is_file()
    assert f"catalysts validate -w {target / 'watchlist.yaml'}" in out
    # The starter it wrote is a valid watchlist.
    code, out, _ = run(["validate", "-w", str(target / "watchlist.yaml")], capsys)
    assert code == 0, out


def test_init_leaves_a_foreign_schema_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / SCHEMA_FILENAME).write_text("{}", encoding="utf-8")
    code, out, err = run(["init", str(tmp_path / "w.yaml")], capsys)
    assert code == 0
    assert (tmp_path / SCHEMA_FILENAME).read_text(encoding="utf-8") == "{}"
    assert "exists and is not ours; left as is" in err
    assert out.splitlines()[0] == f"Wrote {tmp_path / 'w.yaml'}."


# --- validate ---------------------------------------------------------------------------------


def test_validate_valid(watchlist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["validate", "-w", str(watchlist)], capsys)
    assert (code, out, err) == (0, f"{watchlist}: valid: 1 thesis, 2 items, 1 feed\n", "")


def test_validate_uses_the_environment_variable(
    watchlist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CATALYSTS_WATCHLIST", str(watchlist))
    code, out, _ = run(["validate"], capsys)
    assert code == 0 and out.startswith(f"{watchlist}: valid")


def test_validate_invalid_prints_one_located_line_per_problem(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = WATCHLIST.replace("kind: risk", "kind: threat").replace("SEC AND crypto", "(SEC")
    watchlist.write_text(text + "extra: 1\n", encoding="utf-8")
    code, out, err = run(["validate", "-w", str(watchlist)], capsys)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"catalysts: {watchlist}:18:15: theses[0].items[1].kind: expected catalyst or risk, "
        'found "threat"',
        f"catalysts: {watchlist}:20:17: theses[0].items[1].signal: unbalanced parenthesis "
        "(expected a closing ')') at \"(SEC\"",
        f'catalysts: {watchlist}:21:1: extra: unknown key "extra"; expected one of: version, '
        "settings, aliases, feeds, theses",
    ]


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.yaml"
    code, out, err = run(["validate", "-w", str(missing)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "catalysts init" in err


def test_validate_warnings_go_to_stderr_and_keep_exit_0(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watchlist.write_text(WATCHLIST.replace("SEC AND crypto", "NOT spam"), encoding="utf-8")
    code, out, err = run(["validate", "-w", str(watchlist)], capsys)
    assert code == 0
    assert out == f"{watchlist}: valid: 1 thesis, 2 items, 1 feed\n"
    assert err.startswith(f"catalysts: warning: {watchlist}:20:17: theses[0].items[1].signal: ")


def test_validate_json_names_the_file_of_a_whole_file_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, _ = run(["validate", "--json", "-w", str(missing)], capsys)
    assert code == 1
    (problem,) = json.loads(out)["problems"]
    assert (problem["file"], problem["line"]) == (str(missing), None)


def test_validate_json(watchlist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", "--json", "-w", str(watchlist)], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc == {
        "file": str(watchlist),
        "valid": True,
        "theses": 1,
        "items": 2,
        "feeds": 1,
        "problems": [],
        "warnings": [],
    }
    watchlist.write_text(WATCHLIST.replace("version: 1", "version: 3"), encoding="utf-8")
    code, out, err = run(["validate", "--json", "-w", str(watchlist)], capsys)
    assert code == 1 and err == ""
    assert json.loads(out) == {
        "file": str(watchlist),
        "valid": False,
        "problems": [
            {
                "file": str(watchlist),
                "line": 1,
                "col": 10,
                "path": "version",
                "message": "unsupported version 3; this catalysts reads version 1",
            }
        ],
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--bogus"],
        ["validate", "extra-argument"],
        ["match"],
        ["match", "text", "--stdin"],
        ["init", "a", "b"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    # One line that names the command and where to get help (DESIGN section 5).
    (line,) = err.splitlines()
    assert line.startswith(f"catalysts {argv[0]}: ")
    assert line.endswith(f"(see 'catalysts {argv[0]} --help')")


# --- schema ----------------------------------------------------------------------------------


def test_schema_prints_a_valid_draft_2020_12_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema"], capsys)
    assert code == 0
    assert out == schema_json()
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _as_json(text: str) -> object:
    # Editors read YAML dates as strings; PyYAML makes them date objects.
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def test_schema_accepts_a_valid_watchlist_and_rejects_mistakes() -> None:
    validator = jsonschema.Draft202012Validator(build_schema())
    full = WATCHLIST + (
        "        by: 2025-12-31\n"
        "        sources: [crypto, news]\n"
        "        threshold: 2.5\n"
        "        why: because\n"
        "        override: {status: triggered, note: done, since: 2025-06-01}\n"
    )
    full += "settings: {window: 30d, half_life: 1d12h, threshold: 2, user_agent: x}\n"
    assert list(validator.iter_errors(_as_json(full))) == []

    for bad in (
        WATCHLIST + "colour: red\n",
        WATCHLIST.replace("kind: risk", "kind: threat"),
        WATCHLIST.replace("id: news", "id: News Feed"),
        WATCHLIST.replace("version: 1", "version: 2"),
        WATCHLIST.replace("        signal: SEC AND crypto\n", ""),
        WATCHLIST + "settings: {window: 30}\n",
        WATCHLIST + "settings: {window: 3 days}\n",
        WATCHLIST.replace("url: https://example.com/rss", "url: ftp://example.com/rss"),
        WATCHLIST.replace("tags: [crypto]", "weight: 0"),
    ):
        assert list(validator.iter_errors(_as_json(bad))), bad


def test_every_schema_property_has_a_description() -> None:
    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"{where}.{name}"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(build_schema(), "$")


def test_shipped_schema_file_is_the_generated_schema() -> None:
    shipped = files("catalysts") / "data" / SCHEMA_FILENAME
    assert shipped.read_text(encoding="utf-8") == schema_json(), (
        "regenerate with: catalysts schema > src/catalysts/data/watchlist.schema.json"
    )


def test_shipped_watchlist_points_editors_at_the_schema() -> None:
    starter = (files("catalysts") / "data" / "watchlist.yaml").read_text(encoding="utf-8")
    assert starter.splitlines()[0] == MODELINE


# --- match ------------------------------------------------------------------------------------


def test_match_json_reports_items_rules_terms_and_offsets(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "Sam Altman says <b>OpenAI</b> could go public &amp; file an S-1"
    code, out, err = run(["match", "--json", "-w", str(watchlist), text], capsys)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    plain = "Sam Altman says OpenAI could go public & file an S-1"
    assert doc["text"] == text  # verbatim, so scripts can join on it
    assert doc["plain"] == plain  # HTML stripped: the offsets index into this
    assert [(m["item"], m["thesis"], m["kind"], m["rule"]) for m in doc["matches"]] == [
        ("openai-ipo", "crypto-ai", "catalyst", "signal"),
        ("openai-ipo", "crypto-ai", "catalyst", "confirm"),
    ]
    signal, confirm = doc["matches"]
    assert signal["terms"] == ['"Sam Altman"', "OpenAI", '"go public"']
    assert confirm["terms"] == ['"Sam Altman"', "OpenAI", '"S-1"']
    for match in doc["matches"]:
        for hit in match["hits"]:
            assert hit["field"] == "title"
            found = plain[hit["start"] : hit["end"]]
            assert found.casefold() == hit["term"].strip('"').casefold()


def test_match_without_a_match_still_exits_0(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["match", "--json", "-w", str(watchlist), "Accelerating nearby"], capsys)
    assert code == 0
    assert json.loads(out) == {
        "text": "Accelerating nearby",
        "plain": "Accelerating nearby",
        "matches": [],
    }
    code, out, _ = run(["match", "-w", str(watchlist), "Accelerating nearby"], capsys)
    assert code == 0
    assert out.splitlines() == ["Accelerating nearby", "  no item matches"]


def test_match_human_output_names_item_thesis_rule_and_terms(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["match", "-w", str(watchlist), "SEC sues [bold]crypto[/bold] firm"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "SEC sues [bold]crypto[/bold] firm"  # shown literally, never markup
    assert lines[1].split() == ["regulation", "crypto-ai", "risk", "signal", "SEC,", "crypto"]
    assert len(lines) == 2


def test_highlight_covers_exactly_the_hits() -> None:
    text = "OpenAI files for IPO \x1b[31mnow"
    hits = [Hit("OpenAI", "title", 0, 6), Hit("IPO", "title", 17, 20), Hit("x", "summary", 1, 3)]
    rendered = highlighted(text, hits)
    styled = [rendered.plain[s.start : s.end] for s in rendered.spans if s.style == "match"]
    assert styled == ["OpenAI", "IPO"]
    assert "\x1b" not in rendered.plain


def test_match_stdin_json_lines_in_input_order(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["OpenAI to go public", "", "nothing here", "SEC and crypto", "OpenAI S-1"]
    code, out, _ = run(
        ["match", "--stdin", "--json", "-w", str(watchlist)], capsys, "\r\n".join(texts) + "\n"
    )
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["text"] for d in docs] == texts
    assert [[m["item"] + "/" + m["rule"] for m in d["matches"]] for d in docs] == [
        ["openai-ipo/signal"],
        [],
        [],
        ["regulation/signal"],
        ["openai-ipo/confirm"],
    ]


def test_match_stdin_human(watchlist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["match", "--stdin", "-w", str(watchlist)], capsys, "a\nSEC crypto\n")
    assert code == 0
    blocks = out.split("\n\n")
    assert blocks[0] == "a\n  no item matches"
    assert blocks[1].startswith("SEC crypto\n")


def test_match_with_an_invalid_watchlist_exits_1(
    watchlist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watchlist.write_text(WATCHLIST.replace("@openai AND", "@opneai AND", 1), encoding="utf-8")
    code, out, err = run(["match", "-w", str(watchlist), "OpenAI IPO"], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"catalysts: {watchlist}:15:18: theses[0].items[0].signal: unknown alias")


# --- through the real entry point: nothing written anywhere ----------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def test_validate_and_match_write_nothing(tmp_path: Path, watchlist: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "CATALYSTS_DB": str(tmp_path / "store.db"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_COLOR": "1",
    }
    before = _snapshot(tmp_path)
    commands = [
        ["validate", "-w", str(watchlist)],
        ["match", "-w", str(watchlist), "OpenAI IPO"],
        ["match", "--stdin", "--json", "-w", str(watchlist)],
        ["schema"],
    ]
    for argv in commands:
        done = subprocess.run(
            [sys.executable, "-m", "catalysts", *argv],
            input="OpenAI IPO\nSEC crypto\n",
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stdout
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args",
    [["--help"], ["schema"], ["match", "OpenAI files confidentially for IPO"]],
    ids=["typer-help", "plain-write", "rich-table"],
)
def test_a_reader_that_closes_the_pipe_early_is_not_a_failure(args: list[str]) -> None:
    # `catalysts ... | head -1`: the reader is gone before the output is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "catalysts", *args],
            cwd=Path(__file__).resolve().parents[1],  # the repository's watchlist.yaml
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
