"""How fast is the morning report? `catalysts status --offline` on a big store.

Builds, in a temporary folder, a watchlist of 200 feeds and 50 items and a store of 100k
entries (through the Store API, matched by the real rule engine), then measures in the
same run:

1. wall time of `catalysts status --offline` (a subprocess running the console script,
   median of several runs, from compiled bytecode) against a minimal Typer app printing
   a 50-row Rich table -- target <= 1.3x;
2. peak memory (ru_maxrss) of the `status` child -- target <= 150 MB;
3. re-evaluating one edited item: `ingest.sync_matches` after one rule changes, over the
   100k entries, plus that item's evaluation -- target < 2 s.

Run: `.venv/bin/python benchmarks/bench_status.py [--entries 100000] [--runs 7]`.
Prints figures and ratios; exits 1 when a target is missed (so CI can flag it).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

FEEDS = 200
ITEMS = 50
THESES = 5
NOW = datetime.now(timezone.utc).replace(microsecond=0)

WORDS = [
    "market",
    "rally",
    "token",
    "chain",
    "protocol",
    "model",
    "agent",
    "compute",
    "training",
    "launch",
    "report",
    "analysts",
    "fund",
    "raise",
    "round",
    "investors",
    "regulation",
    "policy",
    "court",
    "bill",
    "vote",
    "senate",
    "exchange",
    "listing",
    "price",
    "record",
    "growth",
    "users",
    "network",
    "validator",
    "upgrade",
    "research",
]


def term(k: int) -> str:
    """The word item k's rules look for: letters only, so it is one token."""
    return "kw" + "".join(chr(ord("a") + int(d)) for d in f"{k:03d}")


def write_watchlist(path: Path, edited: bool = False) -> None:
    lines = ["version: 1", "settings:", "  window: 30d", "  half_life: 7d", "feeds:"]
    for f in range(FEEDS):
        weight = 1.5 if f % 10 == 0 else 1.0
        lines += [
            f"  - id: feed{f:03d}",
            f"    url: https://feed{f:03d}.example/rss",
            f"    weight: {weight}",
        ]
    lines.append("theses:")
    per = ITEMS // THESES
    for t in range(THESES):
        lines += [f"  - id: thesis{t}", f"    title: Thesis number {t}", "    items:"]
        for k in range(t * per, (t + 1) * per):
            signal = f"{term(k)} AND (market OR token OR fund)"
            if edited and k == 0:
                signal = f"{term(k)} AND (market OR token OR fund OR chain)"
            lines += [
                f"      - id: item{k:02d}",
                f"        kind: {'catalyst' if k % 3 else 'risk'}",
                f"        title: Item {k}",
                f"        signal: '{signal}'",
                f"        confirm: '{term(k)} AND \"files for IPO\"'",
            ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_store(wl_path: Path, db_path: Path, entries: int) -> float:
    """Fill the store through the Store API with matches from the real rule engine."""
    from catalysts.ingest import rule_hashes
    from catalysts.models import Entry
    from catalysts.rules import RuleSet, document
    from catalysts.store import Store
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(wl_path)
    hashes = rule_hashes(wl)
    rules = [(i.id, "signal", i.signal) for i in wl.items]
    rules += [(i.id, "confirm", i.confirm) for i in wl.items if i.confirm]
    ruleset = RuleSet.compile(rules, wl.aliases)
    rng = random.Random(42)
    per_feed = entries // FEEDS
    started = time.perf_counter()
    with Store.open(db_path) as store:
        for f, feed in enumerate(wl.feeds):
            batch: list[Entry] = []
            matches = {}
            for n in range(per_feed):
                words = rng.choices(WORDS, k=8)
                r = rng.random()
                if r < 0.10:  # about 10% of entries concern one item
                    words.insert(rng.randrange(8), term(rng.randrange(ITEMS)))
                if r < 0.0005:
                    words += ["files", "for", "IPO"]
                shared = rng.random() < 0.1  # one story carried by several feeds
                link = (
                    f"https://news.example/story/{rng.randrange(2000)}"
                    if shared
                    else f"https://feed{f:03d}.example/{n}"
                )
                entry = Entry(
                    key=f"e{f}-{n}",
                    title=" ".join(words).capitalize(),
                    summary=" ".join(rng.choices(WORDS, k=20)),
                    link=link,
                    published=NOW - timedelta(seconds=rng.uniform(0, 365 * 86400)),
                )
                batch.append(entry)
                found = ruleset.match(document(entry, feed.id))
                if found:
                    matches[entry.key] = found
            store.record_fetch(
                feed,
                at=NOW - timedelta(hours=1),
                result="new",
                entries=batch,
                matches=matches,
                rule_hashes=hashes,
            )
    return time.perf_counter() - started


BASELINE = textwrap.dedent(
    """
    import typer
    from rich.console import Console
    from rich.table import Table

    app = typer.Typer()

    @app.command()
    def main() -> None:
        table = Table()
        for name in ("item", "kind", "status", "score", "trend", "sources", "evidence"):
            table.add_column(name)
        for n in range(50):
            table.add_row(f"item{n}", "catalyst", "quiet", "0.0/2.0", "▁" * 14, "0",
                          "a headline of some length from a feed")
        Console().print(table)

    app()
    """
)


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return seconds, rss


def medians(argvs: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, tuple]:
    """Interleaved runs (so drift hits both alike); per command the median time and max RSS."""
    times: dict[str, list[float]] = {k: [] for k in argvs}
    rss: dict[str, int] = dict.fromkeys(argvs, 0)
    for argv in argvs.values():  # warm-up: page cache, .pyc files, first status record
        run(argv, env)
    for _ in range(runs):
        for name, argv in argvs.items():
            seconds, peak = run(argv, env)
            times[name].append(seconds)
            rss[name] = max(rss[name], peak)
    return {k: (statistics.median(times[k]), rss[k]) for k in argvs}


def breakdown(wl_path: Path, db_path: Path, runs: int = 3) -> dict[str, float]:
    """Where a status run spends its time, step by step, in this process (milliseconds)."""
    import io

    from rich.console import Console

    from catalysts.ingest import sync_matches
    from catalysts.render.status import status_table
    from catalysts.status import evaluate_all, history_start
    from catalysts.store import Store
    from catalysts.watchlist import load_watchlist

    laps: dict[str, list[float]] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        laps.setdefault(name, []).append((now - since) * 1000)
        return now

    for _ in range(runs):
        t = time.perf_counter()
        wl = load_watchlist(wl_path)
        t = lap("load watchlist", t)  # uncached: `status` reads it from the store
        with Store.open(db_path) as store:
            sync_matches(wl, store)
            t = lap("sync_matches", t)
            # As `status` reads: every confirm, recent signals, no hits; full history
            # only for the items whose `since` needs it (counted in the engine's lap).
            ids = [item.id for item in wl.items]
            start = history_start(wl.settings, NOW)
            evidence = store.evidence(ids, until=NOW, since=start, hits=False)
            confirms = store.evidence(ids, until=NOW, rules=["confirm"], hits=False)
            evidence += [ev for ev in confirms if ev.time < start]
            t = lap("evidence query", t)
            health = store.feed_health(wl.feeds)
            t = lap("feed health", t)
            statuses = evaluate_all(
                wl,
                evidence,
                NOW,
                health=health,
                now=NOW,
                history_from=start,
                history=lambda items, start=start: store.signal_history(items, before=start),
            )
            t = lap("evaluate (engine)", t)
        console = Console(file=io.StringIO(), width=160)
        status_table(
            statuses,
            thesis_titles={},
            health=health,
            last_fetch=NOW,
            now=NOW,
            empty_store=False,
            console=console,
        )
        lap("render table", t)
    return {name: statistics.median(values) for name, values in laps.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        folder = Path(tmp)
        wl_path, db_path = folder / "watchlist.yaml", folder / "catalysts.db"
        write_watchlist(wl_path)
        build_seconds = build_store(wl_path, db_path, args.entries)
        (folder / "baseline.py").write_text(BASELINE, encoding="utf-8")

        from catalysts.store import Store

        with Store.open(db_path) as store:
            entry_count = store.entry_count()
            evidence_count = len(store.evidence(until=NOW))
        print(
            f"store: {entry_count} entries from {FEEDS} feeds, {ITEMS} items, "
            f"{evidence_count} matches (built in {build_seconds:.1f}s)"
        )

        # Both commands run from compiled bytecode, as an installed catalysts does: the
        # warm-up run writes it (into the temporary folder, not the source tree), even when
        # the environment says not to (PYTHONDONTWRITEBYTECODE), which would otherwise make
        # every run recompile whichever modules happen to have no up-to-date .pyc.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(COLUMNS="160", NO_COLOR="1", PYTHONPYCACHEPREFIX=str(folder / "pycache"))
        # What a user runs: the `catalysts` console script (run by this interpreter), else
        # `python -m catalysts`, which also pays for runpy.
        script = Path(sys.executable).with_name("catalysts")
        entry = [str(script)] if script.is_file() else ["-m", "catalysts"]
        status_argv = [
            sys.executable,
            *entry,
            "status",
            "--offline",
            "-w",
            str(wl_path),
            "--db",
            str(db_path),
        ]
        figures = medians(
            {"baseline": [sys.executable, str(folder / "baseline.py")], "status": status_argv},
            env,
            args.runs,
        )
        base_s, base_rss = figures["baseline"]
        status_s, status_rss = figures["status"]
        ratio = status_s / base_s
        mb = status_rss / 2**20
        print(
            f"baseline (Typer + 50-row Rich table): {base_s * 1000:.0f} ms median, "
            f"{base_rss / 2**20:.0f} MB"
        )
        print(
            f"catalysts status --offline:           {status_s * 1000:.0f} ms median, "
            f"{mb:.0f} MB peak"
        )
        print(f"ratio status/baseline: {ratio:.2f}x (target <= 1.3x)")
        print(f"peak memory: {mb:.0f} MB (target <= 150 MB)")

        for name, ms in breakdown(wl_path, db_path).items():
            print(f"  in-process {name:<16} {ms:7.1f} ms (median of 3)")

        # One edited rule: only that rule is re-matched over the whole history.
        from catalysts.ingest import sync_matches
        from catalysts.status import evaluate
        from catalysts.watchlist import load_watchlist

        write_watchlist(wl_path, edited=True)
        wl = load_watchlist(wl_path)
        started = time.perf_counter()
        with Store.open(db_path) as store:
            redone = sync_matches(wl, store)
            spec = wl.items[0]
            evidence = store.evidence([spec.id], until=NOW)
            st = evaluate(
                spec,
                evidence,
                NOW,
                settings=wl.settings,
                weights={f.id: f.weight for f in wl.feeds},
            )
        edit_s = time.perf_counter() - started
        print(
            f"edited item re-evaluated: {edit_s:.2f}s for {redone} over {entry_count} "
            f"entries -> {st.status}, {len(evidence)} matches (target < 2 s)"
        )

        ok = ratio <= 1.3 and mb <= 150 and edit_s < 2
        print("all targets met" if ok else "TARGET MISSED")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
