"""Is the digest as cheap as the status table? `catalysts digest` on a big store.

Builds the store of `bench_status.py` (200 feeds, 50 items, 100k entries, matched by the
real rule engine), then measures in the same run, as interleaved subprocess medians:

1. `catalysts status --offline` (the baseline);
2. `catalysts digest --dry-run` (a first digest: the 7-day window, the 30-day chart);
3. `catalysts digest --dry-run --since 30d` (a wider window: more evidence to rank);

and reports each digest's ratio to status -- target <= 2x -- plus the size of the Markdown.

Run: `.venv/bin/python benchmarks/bench_digest.py [--entries 100000] [--runs 7]`.
Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_status import FEEDS, ITEMS, NOW, build_store, medians, write_watchlist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-digest-") as tmp:
        folder = Path(tmp)
        wl_path, db_path = folder / "watchlist.yaml", folder / "catalysts.db"
        write_watchlist(wl_path)
        build_seconds = build_store(wl_path, db_path, args.entries)

        from catalysts.store import Store

        with Store.open(db_path) as store:
            entry_count = store.entry_count()
            evidence_count = len(store.evidence(until=NOW))
        print(
            f"store: {entry_count} entries from {FEEDS} feeds, {ITEMS} items, "
            f"{evidence_count} matches (built in {build_seconds:.1f}s)"
        )

        env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
        common = ["-w", str(wl_path), "--db", str(db_path)]
        cli = [sys.executable, "-m", "catalysts"]
        argvs = {
            "status": [*cli, "status", "--offline", *common],
            "digest": [*cli, "digest", "--dry-run", *common],
            "digest 30d": [*cli, "digest", "--dry-run", "--since", "30d", *common],
        }
        figures = medians(argvs, env, args.runs)
        status_s = figures["status"][0]
        print(f"catalysts status --offline:        {status_s * 1000:6.0f} ms median")
        ok = True
        for name in ("digest", "digest 30d"):
            seconds, rss = figures[name]
            ratio = seconds / status_s
            ok = ok and ratio <= 2.0
            print(
                f"catalysts {name + ' --dry-run':<24} {seconds * 1000:6.0f} ms median, "
                f"{rss / 2**20:.0f} MB peak, ratio {ratio:.2f}x (target <= 2x)"
            )
        body = subprocess.run(
            [*argvs["digest 30d"]], env=env, capture_output=True, text=True, check=True
        ).stdout
        print(f"digest --since 30d Markdown: {len(body)} characters (GitHub limit 65,536)")
        print("all targets met" if ok else "TARGET MISSED")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
