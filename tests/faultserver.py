"""A fault-injecting HTTP server on 127.0.0.1 for tests and benchmarks.

Use the pytest fixture `fault_server` (a fresh server per test, stopped afterwards). It is
available to every test module once `tests/conftest.py` says `pytest_plugins = ["faultserver"]`
(importing the fixture by name instead trips ruff's F811 in each test that uses it)::

    from faultserver import RSS, FaultServer

    def test_x(fault_server: FaultServer) -> None:
        fault_server.route("/feed", body=b"<rss/>", headers={"Content-Type": "application/rss+xml"})
        url = fault_server.url("/feed")
        ...
        assert fault_server.requests("/feed")[0].headers["User-Agent"].startswith("catalysts/")

or, outside pytest (benchmarks), the context managers::

    with FaultServer() as server: ...
    with file_servers(directory, latency=0.05, hosts=8, process=True) as base_urls: ...

`fault_server.serve_files(directory, latency)` serves files (ETag, Last-Modified, 304) under
`/files/` of a test's server. Custom routes take `Route` fields (`status`, `body` as bytes or a
callable yielding chunks, `headers`, `delay`, `chunks`, `chunk_delay`, `content_length`,
`close`) or a handler function receiving the request handler (`h.path`, `h.headers`,
`h.reply(status, body, headers)`).

Built-in routes (see `FaultServer._install_builtins`): `/slow` (answers after 30 s),
`/status/<code>`
(any status; `/status/500` counts attempts like every route), `/retry-after/<code>/<seconds>`
and `/retry-after-date/<code>/<seconds>` (Retry-After as delta-seconds or HTTP-date),
`/redirect-loop`, `/redirect/ftp`, `/redirect/file`, `/redirect/chain/<n>` (n hops, then
`/feed`), `/feed` (a small RSS), `/html`, `/empty`, `/truncated` (Content-Length larger than
what is sent, then close), `/huge` (64 MB streamed in chunks with no Content-Length, never in
memory), `/huge-declared` (the same with a Content-Length), `/gzip-bomb` (50 MB of zeros,
gzipped once, about 50 KB on the wire), `/invalid-gzip`, `/deflate` and `/raw-deflate`,
`/invalid-utf8`, `/etag` (ETag and Last-Modified, 304 when either validator matches).

Every request is logged (`log`, `requests(path)`, `hits(path)`), with the highest number of
requests in flight at once (`max_in_flight`), and streamed bodies record how many bytes were
sent and whether the client closed early (`streams`).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import multiprocessing
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Fault server</title><link>http://127.0.0.1/</link>
<item><title>Hello</title><link>http://127.0.0.1/hello</link><guid>hello</guid></item>
</channel></rss>
"""
HTML = b"<!doctype html><html><head><title>Not a feed</title></head><body>Hi</body></html>"
INVALID_UTF8 = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bad \xff\xfe'
    b" bytes</title><item><title>caf\xe9 \xc3\x28</title><guid>x</guid></item></channel></rss>"
)
HUGE_SIZE = 64 * 1024 * 1024
BOMB_SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
SLOW_DELAY = 30.0


@functools.cache
def gzip_bomb() -> bytes:
    """50 MB of zeros, gzipped in 1 MB steps so the whole is never in memory (~50 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))]
    parts.append(compressor.flush())
    return b"".join(parts)


@dataclass(frozen=True)
class LoggedRequest:
    path: str  # with the query string
    headers: Mapping[str, str]  # case-insensitive (an email.message.Message)
    host: str  # the address the request came in on
    at: float  # time.monotonic() when it arrived


@dataclass
class Stream:
    """What a streamed body did: how much was sent and whether the client hung up early."""

    path: str
    sent: int = 0
    client_closed: bool = False
    done: bool = False


@dataclass
class Route:
    """A configured answer. `body` may be bytes or a callable yielding chunks (streamed)."""

    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    chunks: int = 1  # split a bytes body into this many writes...
    chunk_delay: float = 0.0  # ...with this pause between them
    content_length: int | None = None  # override (a larger one makes a truncated body)
    close: bool = False  # close the connection after the body


Handler = Callable[["_RequestHandler"], None]


class Gauge:
    """Requests in flight and the most seen at once; share one between servers to count
    across hosts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


class FaultServer:
    """A threaded HTTP/1.1 server on 127.0.0.x with an ephemeral port and configurable routes."""

    def __init__(self, host: str = "127.0.0.1", gauge: Gauge | None = None) -> None:
        self.routes: dict[str, Route | Handler] = {}
        self.prefixes: dict[str, Handler] = {}
        self.log: list[LoggedRequest] = []
        self.streams: list[Stream] = []
        self.gauge = gauge or Gauge()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server((host, 0), _RequestHandler)
        self._httpd.fault = self
        self._thread: threading.Thread | None = None
        self._install_builtins()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers sleeping in a delay
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, handler: Handler | None = None, **kwargs: object) -> str:
        """Answer `path` with a `Route(**kwargs)` or a custom handler; returns its URL."""
        self.routes[path] = handler if handler is not None else Route(**kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def serve_files(self, directory: Path | str, latency: float = 0.05) -> str:
        """Serve a directory's files under `/files/` after `latency` seconds, with ETag and
        Last-Modified (304 on a match); returns the base URL, ending in a slash."""
        root = Path(directory).resolve()

        def handler(h: _RequestHandler) -> None:
            if self.stopping.wait(latency):
                return
            name = unquote(urlsplit(h.path).path[len("/files/") :])
            path = (root / name).resolve()
            if root not in path.parents or not path.is_file():
                h.reply(404, b"not found")
                return
            etag, modified = _validators(path)
            validators = {"ETag": etag, "Last-Modified": modified}
            if h.headers.get("If-None-Match") == etag or (
                "If-None-Match" not in h.headers and h.headers.get("If-Modified-Since") == modified
            ):
                h.reply(304, b"", validators)
                return
            ctype = _content_type(path)
            h.reply(200, path.read_bytes(), {**validators, "Content-Type": ctype})

        self.prefixes["/files/"] = handler
        return self.url("/files/")

    # --- what happened -------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, all or those to `path` (query string ignored)."""
        with self._lock:
            log = list(self.log)
        if path is None:
            return log
        return [r for r in log if urlsplit(r.path).path == path]

    def hits(self, path: str) -> int:
        return len(self.requests(path))

    @property
    def max_in_flight(self) -> int:
        return self.gauge.max

    # --- built-ins -----------------------------------------------------------------------------

    def _install_builtins(self) -> None:
        rss = {"Content-Type": "application/rss+xml; charset=utf-8"}
        self.routes.update(
            {
                "/feed": Route(body=RSS, headers=rss),
                "/slow": Route(body=RSS, headers=rss, delay=SLOW_DELAY),
                "/html": Route(body=HTML, headers={"Content-Type": "text/html; charset=utf-8"}),
                "/empty": Route(body=b"", headers=rss),
                "/truncated": Route(body=RSS[:60], headers=rss, content_length=len(RSS) + 500),
                "/invalid-utf8": Route(body=INVALID_UTF8, headers=rss),
                "/redirect-loop": Route(status=302, headers={"Location": "/redirect-loop-2"}),
                "/redirect-loop-2": Route(status=302, headers={"Location": "/redirect-loop"}),
                "/redirect/ftp": Route(status=301, headers={"Location": "ftp://127.0.0.1/feed"}),
                "/redirect/file": Route(status=302, headers={"Location": "file:///etc/passwd"}),
                "/huge": _huge(declared=False),
                "/huge-declared": _huge(declared=True),
                "/gzip-bomb": lambda h: h.reply(
                    200, gzip_bomb(), {**rss, "Content-Encoding": "gzip"}
                ),
                "/invalid-gzip": Route(
                    body=b"\x1f\x8b\x08\x00garbage-not-gzip" * 10,
                    headers={**rss, "Content-Encoding": "gzip"},
                ),
                "/deflate": Route(
                    body=zlib.compress(RSS), headers={**rss, "Content-Encoding": "deflate"}
                ),
                "/raw-deflate": Route(
                    body=_raw_deflate(RSS), headers={**rss, "Content-Encoding": "deflate"}
                ),
                "/etag": _etag,
            }
        )
        self.prefixes.update(
            {
                "/status/": _status,
                "/retry-after/": _retry_after(date=False),
                "/retry-after-date/": _retry_after(date=True),
                "/redirect/chain/": _chain,
            }
        )

    # --- used by the handler -------------------------------------------------------------------

    def _enter(self, handler: _RequestHandler) -> None:
        with self._lock:
            self.log.append(
                LoggedRequest(
                    path=handler.path,
                    headers=handler.headers,
                    host=handler.server.server_address[0],
                    at=time.monotonic(),
                )
            )
        self.gauge.__enter__()

    def _leave(self) -> None:
        self.gauge.__exit__()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 stalls
    fault: FaultServer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms on Linux) and every response looks slow.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; the FaultServer keeps its own log

    def do_GET(self) -> None:
        fault = self.server.fault
        fault._enter(self)
        try:
            path = urlsplit(self.path).path
            target = fault.routes.get(path)
            if target is None:
                target = next(
                    (h for prefix, h in fault.prefixes.items() if path.startswith(prefix)), None
                )
            if target is None:
                self.reply(404, b"no such route")
            elif isinstance(target, Route):
                self.send_route(target)
            else:
                target(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            fault._leave()

    def reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_route(Route(status=status, body=body, headers=headers or {}))

    def send_route(self, route: Route) -> None:
        if route.delay and self.server.fault.stopping.wait(route.delay):
            return
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if callable(route.body):
            self.stream(route.body(), route.content_length)
            return
        body = route.body
        length = len(body) if route.content_length is None else route.content_length
        self.send_header("Content-Length", str(length))
        if route.close or length != len(body):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        step = max(1, -(-len(body) // max(1, route.chunks)))
        for i in range(0, len(body), step):
            if i and route.chunk_delay and self.server.fault.stopping.wait(route.chunk_delay):
                return
            self.wfile.write(body[i : i + step])
            self.wfile.flush()

    def stream(self, chunks: Iterable[bytes], content_length: int | None) -> None:
        """Write chunks as they come; without a length the body ends when the connection closes."""
        record = Stream(path=self.path)
        self.server.fault.streams.append(record)
        if content_length is not None:
            self.send_header("Content-Length", str(content_length))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                record.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            record.client_closed = True
        finally:
            record.done = True


# --- built-in handlers -----------------------------------------------------------------------


def _huge(declared: bool) -> Route:
    def chunks() -> Iterator[bytes]:
        block = b"<!-- padding -->" * (CHUNK // 16)
        for _ in range(HUGE_SIZE // CHUNK):
            yield block

    return Route(
        body=chunks,
        headers={"Content-Type": "application/rss+xml"},
        content_length=HUGE_SIZE if declared else None,
    )


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _status(h: _RequestHandler) -> None:
    code = int(urlsplit(h.path).path.rsplit("/", 1)[1])
    h.reply(code, f"status {code}".encode(), {"Content-Type": "text/plain"})


def _retry_after(date: bool) -> Handler:
    def handler(h: _RequestHandler) -> None:
        code, seconds = urlsplit(h.path).path.split("/")[2:4]
        value = email.utils.formatdate(time.time() + int(seconds), usegmt=True) if date else seconds
        h.reply(int(code), b"slow down", {"Retry-After": value, "Content-Type": "text/plain"})

    return handler


def _chain(h: _RequestHandler) -> None:
    n = int(urlsplit(h.path).path.rsplit("/", 1)[1])
    location = "/feed" if n <= 1 else f"/redirect/chain/{n - 1}"
    h.reply(302, b"", {"Location": location})


def _etag(h: _RequestHandler) -> None:
    validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
    if h.headers.get("If-None-Match") == ETAG or h.headers.get("If-Modified-Since") == (
        LAST_MODIFIED
    ):
        h.reply(304, b"", validators)
    else:
        h.reply(200, RSS, {**validators, "Content-Type": "application/rss+xml"})


# --- entry points ------------------------------------------------------------------------------


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fresh fault server on 127.0.0.1 for one test."""
    with FaultServer() as server:
        yield server


@contextmanager
def file_servers(
    directory: Path | str, latency: float = 0.05, hosts: int = 1, *, process: bool = False
) -> Iterator[list[str]]:
    """Serve `directory` from `hosts` servers on 127.0.0.1, 127.0.0.2, ... (Linux routes all of
    127/8 to loopback), so per-host limits see distinct hosts; yields their base URLs.

    With `process=True` the servers run in a child process, so that a benchmark's client does
    not share the GIL with them and measures its own speed; there they are lean asyncio servers
    that read the files once, at start, so that they take little of the client's CPUs.
    """
    if process:
        with _child_file_servers(directory, latency, hosts) as urls:
            yield urls
        return
    with ExitStack() as stack:
        servers = [stack.enter_context(FaultServer(host=f"127.0.0.{i + 1}")) for i in range(hosts)]
        yield [s.serve_files(directory, latency) for s in servers]


@contextmanager
def _child_file_servers(directory: Path | str, latency: float, hosts: int) -> Iterator[list[str]]:
    # spawn, not fork: forking a process that runs threads (an event loop, servers) is unsafe.
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_serve_in_child, args=(str(directory), latency, hosts, theirs), daemon=True
    )
    child.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("file server process did not start")
        yield ours.recv()
    finally:
        ours.send("stop")
        child.join(5)
        if child.is_alive():
            child.kill()


def _serve_in_child(directory: str, latency: float, hosts: int, conn: Connection) -> None:
    asyncio.run(_lean_file_servers(directory, latency, hosts, conn))


async def _lean_file_servers(directory: str, latency: float, hosts: int, conn: Connection) -> None:
    """`serve_files` semantics (ETag, Last-Modified, 304, 404, latency) on asyncio, with every
    response built once: a benchmark's loopback server shares the client's CPUs, and the
    threaded server spent ~0.9 ms of CPU per response (~0.2 ms here) that a remote server
    would spend elsewhere. Files are read once, at start."""
    table: dict[bytes, tuple[bytes, bytes, bytes, bytes]] = {}
    for path in sorted(Path(directory).iterdir()):
        if path.is_file():
            etag, modified = _validators(path)
            ctype = _content_type(path)
            body = path.read_bytes()
            head = f"ETag: {etag}\r\nLast-Modified: {modified}\r\n"
            ok = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            table[f"/files/{quote(path.name)}".encode()] = (
                etag.encode(),
                modified.encode(),
                (ok + head + "\r\n").encode() + body,
                f"HTTP/1.1 304 Not Modified\r\n{head}\r\n".encode(),
            )
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                target = lines[0].split(b" ")[1].split(b"?")[0]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                await asyncio.sleep(latency)
                found = table.get(target)
                if found is None:
                    writer.write(missing)
                else:
                    etag, modified, ok, not_modified = found
                    match = headers.get(b"if-none-match")
                    fresh = (
                        match == etag
                        if match is not None
                        else headers.get(b"if-modified-since") == modified
                    )
                    writer.write(not_modified if fresh else ok)
                await writer.drain()
                if headers.get(b"connection", b"").lower() == b"close":
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    servers = [
        await asyncio.start_server(handle, f"127.0.0.{i + 1}", 0, backlog=256) for i in range(hosts)
    ]
    addresses = [s.sockets[0].getsockname()[:2] for s in servers]
    conn.send([f"http://{host}:{port}/files/" for host, port in addresses])
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
    for server in servers:
        server.close()


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/rss+xml"


def _validators(path: Path) -> tuple[str, str]:
    """The (ETag, Last-Modified) a file is served with, from its size and mtime."""
    stat = path.stat()
    digest = hashlib.sha1(f"{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:16]
    return f'"{digest}"', email.utils.formatdate(int(stat.st_mtime), usegmt=True)


def loopback_hosts_available(n: int) -> bool:
    """Whether 127.0.0.2 ... 127.0.0.n can be bound (not on macOS without aliases)."""
    for i in range(2, n + 1):
        with socket.socket() as s:
            try:
                s.bind((f"127.0.0.{i}", 0))
            except OSError:
                return False
    return True
