"""Benchmark `feedparse.parse_feed` against feedparser alone, on the real feed corpus.

Reads every real RSS/Atom document under `../shared/fixtures/real/` (or
`$CATALYSTS_REAL_FIXTURES`; the robustness and feedparser-illformed folders are left out)
and prints, all measured in this run, best of `--rounds`:

- `feedparser.parse(bytes)` alone, default options, no normalisation (the raw baseline);
- the feedparser-only pipeline: default feedparser + this module's normalisation, i.e. what
  parse_feed would produce without its fast path and tuned options (the reference output);
- `parse_feed` itself (the lxml fast path for the documents it can prove it reads as
  feedparser would, feedparser with sanitising off for the rest);
- entries/s of each, the ratio parse_feed / feedparser-only, how many documents (and
  entries) took each path, and an equality check of parse_feed's entries against the
  reference.

Then the same for the generated RSS feeds of bench_fetch.py (`generated_feed(n, 50)`: items
of guid, title, link, description and pubDate), the shape the ingest benchmark parses.

    python benchmarks/bench_parse.py              # 5 rounds
    python benchmarks/bench_parse.py --rounds 1
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from catalysts import feedparse

URL = "https://feeds.example/feed"
SKIP_DIRS = ("feedparser-illformed", "robustness-other")


def corpus() -> list[tuple[str, bytes]]:
    default = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
    root = Path(os.environ.get("CATALYSTS_REAL_FIXTURES") or default)
    if not root.is_dir():
        sys.exit(f"real feed fixtures not found at {root} (set CATALYSTS_REAL_FIXTURES)")
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix in (".xml", ".rss", ".atom")
        and not any(part in SKIP_DIRS for part in p.relative_to(root).parts)
    ]
    return [(str(p.relative_to(root)), p.read_bytes()) for p in files]


def feedparser_raw(data: bytes) -> int:
    import feedparser

    return len(feedparser.parse(io.BytesIO(data)).entries)


def feedparser_only(data: bytes) -> tuple:
    import feedparser

    result = feedparser.parse(
        io.BytesIO(data), response_headers={"content-type": "application/xml"}
    )
    return feedparse._from_feedparser_result(result, data, url=URL, now=None).entries


def ours(data: bytes) -> tuple:
    return feedparse.parse_feed(data, url=URL).entries


def best_times(
    fns: Sequence[Callable[[bytes], object]], docs: Sequence[bytes], rounds: int
) -> list[float]:
    """Best wall time of each function; rounds interleave them so load spikes hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for data in docs:
                fn(data)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def generated(feeds: int = 40, entries: int = 50) -> list[tuple[str, bytes]]:
    from bench_fetch import generated_feed

    return [(f"generated/{n}.xml", generated_feed(n, entries)) for n in range(feeds)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    differing = report("real corpus", corpus(), args.rounds)
    print()
    differing += report("generated feeds (bench_fetch)", generated(), args.rounds)
    return 1 if differing else 0


def report(label: str, files: list[tuple[str, bytes]], rounds: int) -> int:
    """Print the figures for one set of documents; returns how many differ from the reference."""
    docs = [data for _, data in files]
    for fn in (feedparser_raw, feedparser_only, ours):  # warm imports and caches
        fn(docs[0])

    reference = {name: feedparser_only(data) for name, data in files}
    produced = {name: ours(data) for name, data in files}
    differing = [name for name in reference if reference[name] != produced[name]]
    entries = sum(len(v) for v in reference.values())
    fast_names = {
        name
        for name, data in files
        if feedparse._parse_fast(data, url=URL, content_type=None, now=None) is not None
    }
    fast_entries = sum(len(reference[name]) for name in fast_names)

    t_raw, t_ref, t_ours = best_times((feedparser_raw, feedparser_only, ours), docs, rounds)

    mb = sum(len(d) for d in docs) / 1e6
    print(f"{label}: {len(files)} RSS/Atom documents, {entries} entries, {mb:.1f} MB")
    print(f"best of {rounds} rounds, entries/s:")
    print(f"  feedparser.parse alone (no normalisation) {entries / t_raw:9,.0f}  ({t_raw:.2f} s)")
    print(f"  feedparser-only pipeline (reference)      {entries / t_ref:9,.0f}  ({t_ref:.2f} s)")
    print(f"  parse_feed                                {entries / t_ours:9,.0f}  ({t_ours:.2f} s)")
    print(f"ratio parse_feed / feedparser-only: {t_ref / t_ours:.1f}x")
    print(f"ratio parse_feed / feedparser.parse alone: {t_raw / t_ours:.1f}x")
    print(f"fast path (lxml):  {len(fast_names):3}/{len(files)} documents, {fast_entries} entries")
    print(
        f"feedparser path:   {len(files) - len(fast_names):3}/{len(files)} documents, "
        f"{entries - fast_entries} entries"
    )
    for name in sorted(set(reference) - fast_names):
        print(f"  feedparser: {name}")
    same = len(files) - len(differing)
    print(f"identical normalised entries: {same}/{len(files)} documents")
    for name in differing:
        print(f"  DIFFERS: {name}")
    return len(differing)


if __name__ == "__main__":
    raise SystemExit(main())
