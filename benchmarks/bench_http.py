"""fetch_all against a loopback server with added latency: concurrent vs sequential, and 304s.

    .venv/bin/python benchmarks/bench_http.py [--feeds 300] [--entries 50] [--latency 0.05]
                                              [--hosts 64]

Serves `feeds` RSS files of `entries` items each from `hosts` servers on 127.0.0.1, 127.0.0.2,
... in a child process (feeds spread round-robin, as real feeds spread over many sites) and
prints, all measured in this run:

- the latency floor: feeds / concurrency x latency;
- sequential fetching (http.client, one GET after another, one kept-alive connection per
  host, as the httpx.Client baseline of earlier runs did): the baseline;
- fetch_all with default options, cold (every feed a 200) and warm (every feed a 304), with
  this process's CPU time per response (the servers run in a child process);
- the ratios: sequential / cold (speed-up) and cold, warm / floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from catalysts.http import HttpOptions, Request, fetch_all
from faultserver import file_servers, loopback_hosts_available

UA = "catalysts-bench/1.0 (benchmark on loopback)"


def write_feeds(directory: Path, feeds: int, entries: int) -> list[str]:
    names = []
    for f in range(feeds):
        items = "".join(
            f"<item><title>Feed {f} story {e}: chip maker files for IPO</title>"
            f"<link>https://example.com/{f}/{e}?utm_source=x</link><guid>{f}-{e}</guid>"
            f"<pubDate>Mon, 0{1 + e % 9} Dec 2025 10:00:00 GMT</pubDate>"
            f"<description>&lt;p&gt;Story {e} of feed {f}, with some text to make it"
            f" realistic: regulators, earnings, guidance, supply.&lt;/p&gt;</description></item>"
            for e in range(entries)
        )
        name = f"feed{f:04d}.xml"
        (directory / name).write_text(
            f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Feed {f}</title><link>https://example.com/{f}</link>{items}</channel></rss>",
            encoding="utf-8",
        )
        names.append(name)
    return names


def sequential_get(urls: list[str]) -> int:
    """GET each URL in turn over one kept-alive connection per host; how many were 200s.

    Not urllib: it sends `Connection: close`, so every request would pay a new connection
    and flatter the concurrent client's speed-up."""
    import http.client
    from urllib.parse import urlsplit

    connections: dict[str, http.client.HTTPConnection] = {}
    ok = 0
    try:
        for url in urls:
            parts = urlsplit(url)
            conn = connections.get(parts.netloc)
            if conn is None:
                conn = connections[parts.netloc] = http.client.HTTPConnection(
                    parts.netloc, timeout=30
                )
            conn.request("GET", parts.path, headers={"User-Agent": UA})
            reply = conn.getresponse()
            reply.read()
            ok += reply.status == 200
    finally:
        for conn in connections.values():
            conn.close()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hosts", type=int, default=64)
    args = parser.parse_args()

    options = HttpOptions()
    hosts = args.hosts
    if hosts > 1 and not loopback_hosts_available(hosts):
        print(f"127.0.0.2-{hosts} not bindable: one host, per_host raised to concurrency")
        hosts = 1
    if hosts == 1:
        options = HttpOptions(per_host=options.concurrency, host_gap=0.0)

    with tempfile.TemporaryDirectory() as tmp:
        names = write_feeds(Path(tmp), args.feeds, args.entries)
        with file_servers(tmp, latency=args.latency, hosts=hosts, process=True) as bases:
            urls = [bases[i % len(bases)] + name for i, name in enumerate(names)]
            requests = [Request(f"f{i}", url) for i, url in enumerate(urls)]

            t0 = time.perf_counter()
            sequential_ok = sequential_get(urls)
            sequential = time.perf_counter() - t0

            t0, c0 = time.perf_counter(), time.process_time()
            cold = fetch_all(requests, user_agent=UA, options=options)
            cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - c0

            conditional = [
                Request(r.feed_id, r.url, etag=c.etag, last_modified=c.last_modified)
                for r, c in zip(requests, cold, strict=True)
            ]
            t0, c0 = time.perf_counter(), time.process_time()
            warm = fetch_all(conditional, user_agent=UA, options=options)
            warm_s, warm_cpu = time.perf_counter() - t0, time.process_time() - c0

    floor = args.feeds / options.concurrency * args.latency
    size = sum(len(r.body or b"") for r in cold)
    print(
        f"{args.feeds} feeds x {args.entries} entries ({size / 1e6:.1f} MB), "
        f"{args.latency * 1000:.0f} ms latency, {hosts} host(s), concurrency "
        f"{options.concurrency}, per host {options.per_host}, host gap {options.host_gap}s"
    )
    print(f"latency floor          {floor:7.2f} s")
    print(f"sequential http.client {sequential:7.2f} s  ({sequential_ok} ok)")
    cold_ok = sum(r.result == "ok" for r in cold)
    warm_304 = sum(r.result == "not-modified" for r in warm)
    # CPU of this process only (the servers run in a child): near the wall time, the client's
    # own work is the limit; well under it, the wait is on the network or the server.
    per_feed = 1000 / args.feeds
    print(
        f"fetch_all cold (200)   {cold_s:7.2f} s  ({cold_ok} ok, client CPU {cold_cpu:.2f} s, "
        f"{cold_cpu * per_feed:.2f} ms/response)"
    )
    print(
        f"fetch_all warm (304)   {warm_s:7.2f} s  ({warm_304} not-modified, client CPU "
        f"{warm_cpu:.2f} s, {warm_cpu * per_feed:.2f} ms/response)"
    )
    print(f"speed-up vs sequential {sequential / cold_s:7.1f} x")
    print(f"cold / floor           {cold_s / floor:7.2f}")
    print(f"warm / floor           {warm_s / floor:7.2f}")


if __name__ == "__main__":
    main()
