"""The GitHub workflows: linted (actionlint, zizmor, the workflow JSON schema), checked for
the properties a security review asks for, and the digest job's own scripts run end to end
against feeds served on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalysts.digest import GITHUB_BODY_MAX
from faultserver import FaultServer
from mdcheck import problems

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
DIGEST = ROOT / ".github" / "workflows" / "digest.yml"
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """The linter next to this Python (the test extra installs it), else on PATH."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the test extra: a missing linter is a bug
        pytest.skip(message)
    return found


def _run_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


# --- linters ----------------------------------------------------------------------------------


def test_there_are_workflows() -> None:
    assert DIGEST in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(workflow: Path) -> None:
    result = _run_tool([_tool("actionlint"), "-no-color", str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_offline(workflow: Path) -> None:
    result = _run_tool([_tool("zizmor"), "--offline", "--no-progress", str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_pedantic_on_the_digest_workflow() -> None:
    result = _run_tool(
        [_tool("zizmor"), "--offline", "--no-progress", "--persona", "pedantic", str(DIGEST)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflow_schema(workflow: Path) -> None:
    argv = [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    result = _run_tool([*argv, str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- structure ---------------------------------------------------------------------------------


def _load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _steps(doc: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in doc["jobs"].items() for step in spec.get("steps", [])]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(workflow: Path) -> None:
    for job, step in _steps(_load(workflow)):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), f"{job}: {step['uses']} is not pinned to a SHA"
    # A version comment next to each pin, so updates stay reviewable.
    for line in workflow.read_text().splitlines():
        if re.match(r"\s*(- )?uses:", line):
            assert re.search(r"@[0-9a-f]{40} # v\d", line), line


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_never_persists_credentials(workflow: Path) -> None:
    for _job, step in _steps(_load(workflow)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_expressions_inside_run_scripts(workflow: Path) -> None:
    doc = _load(workflow)
    assert doc.get("permissions") == {}, "top-level permissions must be {}"
    for job, step in _steps(doc):
        assert "${{" not in step.get("run", ""), f"{job}: pass values through env:"


def test_digest_triggers_permissions_and_concurrency() -> None:
    doc = _load(DIGEST)
    (cron,) = [entry["cron"] for entry in doc["on"]["schedule"]]
    minute = cron.split()[0]
    assert minute.isdigit() and int(minute) % 5 != 0, "schedule at an odd minute"
    dry_run = doc["on"]["workflow_dispatch"]["inputs"]["dry_run"]
    assert dry_run["type"] == "boolean" and dry_run["default"] is False
    assert doc["concurrency"]["cancel-in-progress"] is False
    assert doc["jobs"]["build"]["permissions"] == {"contents": "read"}
    assert doc["jobs"]["post"]["permissions"] == {"issues": "write"}
    post = doc["jobs"]["post"]
    assert post["needs"] == "build"
    assert "inputs.dry_run" in post["if"]
    assert not any("checkout" in s.get("uses", "") for s in post["steps"])


def test_digest_store_cache_is_run_unique_and_saved_only_from_the_default_branch() -> None:
    jobs = _load(DIGEST)["jobs"]
    build = jobs["build"]["steps"]
    restore = next(s for s in build if "cache/restore@" in s.get("uses", ""))
    assert not any("cache/save@" in s.get("uses", "") for s in build)
    save_job = jobs["save"]
    save = next(s for s in save_job["steps"] if "cache/save@" in s.get("uses", ""))
    for step in (restore, save):
        assert "github.run_id" in step["with"]["key"]
        assert "github.run_attempt" in step["with"]["key"]
    assert restore["with"]["restore-keys"] == "catalysts-db-"
    # Saved only after the day's issue was posted (or a dry run skipped posting), and only
    # from the default branch -- which scheduled runs always are, but their payload has no
    # `repository` to compare against.
    assert save_job["needs"] == ["build", "post"]
    condition = save_job["if"]
    assert "needs.post.result == 'success'" in condition
    assert "needs.post.result == 'skipped'" in condition
    assert "github.event_name == 'schedule'" in condition
    assert "default_branch" in condition
    assert save_job["permissions"] == {}
    upload = next(s for s in build if "upload-artifact@" in s.get("uses", ""))
    assert "digest.md" in upload["with"]["path"] and "catalysts.db" in upload["with"]["path"]
    fetch = next(s for s in build if s.get("id") == "fetch")
    assert fetch["env"]["CATALYSTS_USER_AGENT"] == "${{ vars.CATALYSTS_USER_AGENT }}"


def test_the_issue_is_found_by_exact_title_through_the_rest_listing() -> None:
    post = next(s for s in _load(DIGEST)["jobs"]["post"]["steps"] if s.get("id") == "post")
    script = post["run"]
    assert 'gh api "repos/$GH_REPO/issues?labels=$LABEL&state=all&per_page=100"' in script
    assert "select(.title == env.TITLE" in script
    assert "search" not in script
    assert "gh issue edit" in script and "gh issue create" in script
    assert "gh label create" in script


_BUILTINS = {
    "[", "]", "[[", "if", "then", "elif", "else", "fi", "echo", "exit", "export", "{", "}",
    "<", "printf", "true", "false", "set", "test", "read", "local",
}  # fmt: skip
_COMMANDS = {"catalysts", "gh", "python"}


def _commands(script: str) -> list[str]:
    """The first word of every command in a shell script (rough, for our own scripts)."""
    joined = re.sub(r"\\\n\s*", " ", script)
    words: list[str] = []
    for line in joined.splitlines():
        line = re.sub(r"'[^']*'", "''", line.split(" #")[0])
        # Plain double-quoted text is data; command substitutions inside it are kept.
        line = re.sub(r'"[^"$]*"', '""', line).strip()
        if not line or line.startswith("#"):
            continue
        for segment in re.split(r";|&&|\|\||\||\$\(|\bthen\b|\belse\b", line):
            segment = re.sub(r"^\s*(if|elif|!)\s+", "", segment).strip()
            if not segment or re.match(r"^[A-Za-z_]\w*\+?=", segment) or segment == '"':
                continue
            words.append(segment.split()[0])
    return words


def test_scripts_call_only_catalysts_gh_and_builtins() -> None:
    doc = _load(DIGEST)
    found = {w for _job, step in _steps(doc) for w in _commands(step.get("run", ""))}
    assert "catalysts" in found and "gh" in found
    assert found <= _BUILTINS | _COMMANDS, found - _BUILTINS - _COMMANDS


# --- end to end: the digest job's scripts against loopback feeds ------------------------------


def _script(step_id: str) -> str:
    build = _load(DIGEST)["jobs"]["build"]["steps"]
    return next(s for s in build if s.get("id") == step_id)["run"]


def _rss(title: str, items: list[tuple[str, str, datetime]]) -> bytes:
    body = "".join(
        f"<item><title><![CDATA[{t}]]></title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>{format_datetime(when)}</pubDate></item>"
        for t, link, when in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://127.0.0.1/</link>{body}</channel></rss>"
    ).encode()


HOSTILE_TITLES = [
    "OpenAI IPO: @octocat and @everyone read #1 and owner/repo#2 GH-3",
    "OpenAI IPO <img src=x onerror=alert(1)></details><script>alert(1)</script>",
    "OpenAI IPO ![pixel](https://tracker.example/p.png) [win](javascript:alert(1))",
    "OpenAI IPO | broken | cell ``` fence \u202eevil",
    "OpenAI IPO files for IPO https://github.com/rust-lang/rust/issues/1",
]


def _watchlist(feeds: list[tuple[str, str]]) -> str:
    lines = ["version: 1", "feeds:"]
    for feed_id, url in feeds:
        lines += [f"  - id: {feed_id}", f"    url: {url}"]
    lines += [
        "theses:",
        "  - id: crypto-ai",
        "    title: Crypto x AI",
        "    items:",
        "      - id: openai-ipo",
        "        kind: catalyst",
        "        title: OpenAI IPO",
        "        signal: 'OpenAI AND IPO'",
        "        confirm: 'OpenAI AND \"files for IPO\"'",
        "      - id: bitcoin",
        "        kind: catalyst",
        "        title: Bitcoin",
        "        signal: 'bitcoin'",
    ]
    return "\n".join(lines) + "\n"


def _step(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a workflow step's script the way Actions does (bash -e, pipefail), our venv first."""
    full = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "CATALYSTS_WATCHLIST": "watchlist.yaml",
        "CATALYSTS_DB": "state/catalysts.db",
        "GITHUB_STEP_SUMMARY": str(cwd / "summary.md"),
        "COLUMNS": "120",
        **env,
    }
    full.pop("CATALYSTS_DEBUG", None)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_digest_job_end_to_end_with_a_hostile_and_a_dead_feed(tmp_path: Path) -> None:
    from catalysts.store import Store

    now = datetime.now(timezone.utc)
    feeds_dir = tmp_path / "feeds"
    feeds_dir.mkdir()
    items = [(t, f"https://news.example/{n}", now - timedelta(hours=n + 1))
             for n, t in enumerate(HOSTILE_TITLES)]  # fmt: skip
    (feeds_dir / "hostile.xml").write_bytes(_rss("Hostile <b>@feed</b>", items))
    (feeds_dir / "btc.xml").write_bytes(
        _rss("BTC", [("Bitcoin rallies", "https://btc.example/1", now - timedelta(hours=2))])
    )
    work = tmp_path / "work"
    work.mkdir()
    with FaultServer() as server:
        base = server.serve_files(feeds_dir, latency=0)
        (work / "watchlist.yaml").write_text(
            _watchlist(
                [
                    ("hostile", base + "hostile.xml"),
                    ("btc", base + "btc.xml"),
                    ("dead", server.url("/status/404")),
                ]
            )
        )
        fetch = _step(_script("fetch"), work, CATALYSTS_USER_AGENT="catalysts-e2e (test)")
        assert fetch.returncode == 0, fetch.stderr
        digest = _step(_script("digest"), work, DRY_RUN="")
        assert digest.returncode == 0, digest.stderr
        agent = server.requests("/files/hostile.xml")[0].headers["User-Agent"]
    assert agent == "catalysts-e2e (test)"

    md = (work / "digest.md").read_text(encoding="utf-8")
    title = (work / "title.txt").read_text().strip()
    assert re.fullmatch(r"catalysts digest \d{4}-\d{2}-\d{2}", title)
    assert md.startswith(f"# {title}\n")
    for section in ("## Status changes", "## New evidence", "## Feed health"):
        assert section in md
    assert "quiet → **triggered**" in md  # "files for IPO" confirmed it
    assert "| `dead` | failing |" in md and "HTTP 404" in md
    assert problems(md) == []
    assert len(md) < GITHUB_BODY_MAX
    assert (work / "digest.json").read_text().startswith("{")
    assert title in (work / "summary.md").read_text()
    with Store.open(work / "state" / "catalysts.db") as store:
        assert store.last_digest() is not None  # not a dry run: recorded


def test_every_feed_failing_still_writes_the_digest(tmp_path: Path) -> None:
    from catalysts.store import Store

    with FaultServer() as server:
        (tmp_path / "watchlist.yaml").write_text(_watchlist([("dead", server.url("/status/404"))]))
        fetch = _step(_script("fetch"), tmp_path)
        assert fetch.returncode == 0, fetch.stderr
        assert "::warning" in fetch.stdout
        digest = _step(_script("digest"), tmp_path, DRY_RUN="true")
        assert digest.returncode == 0, digest.stderr
    md = (tmp_path / "digest.md").read_text()
    assert "| `dead` | failing |" in md
    with Store.open(tmp_path / "state" / "catalysts.db") as store:
        assert store.last_digest() is None  # dry run: nothing recorded


def test_a_broken_watchlist_stops_the_job(tmp_path: Path) -> None:
    (tmp_path / "watchlist.yaml").write_text("version: 1\nfeeds: [\n")
    fetch = _step(_script("fetch"), tmp_path)
    assert fetch.returncode == 1
    assert "watchlist.yaml" in fetch.stderr


def test_real_feeds_make_a_useful_morning_note(real_dir: Path, tmp_path: Path) -> None:
    """The issue's "done when": real feeds on loopback, `--at 2025-12-13 --since 30d`."""
    with FaultServer() as server:
        base = server.serve_files(real_dir, latency=0)
        feeds = [
            ("coindesk", base + "coindesk/coindesk_2025-12-13_skel-ext3.rss"),
            ("cointelegraph", base + "cointelegraph/cointelegraph_2025-12-12_skel-ext3.rss"),
            ("decrypt", base + "decrypt/decrypt_2025-12-05_skel-ext3.rss"),
            ("hn", base + "hackernews/hn_frontpage_2025-12-13_newsyacht.xml"),
        ]
        (tmp_path / "watchlist.yaml").write_text(_watchlist(feeds))
        assert _step("catalysts fetch", tmp_path).returncode == 0
    out = _step("catalysts digest --at 2025-12-13 --since 30d --dry-run -o digest.md", tmp_path)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "digest.md").read_text()
    assert "(last 30d)" in md
    bitcoin = md.split("### Bitcoin (`bitcoin`)")[1].split("\n### ")[0]
    assert bitcoin.count("\n- [") >= 3  # real stories, linked
    assert problems(md) == []
