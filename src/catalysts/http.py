"""Every network byte: fetch many feeds at once, politely, and never let one feed spoil a run.

`fetch_all` takes `Request`s and returns exactly one `Response` per request, in input order.
A feed that fails becomes a `Response` with `result="error"` and a short human reason; nothing
raises out of `fetch_all` for one feed. What this module guarantees:

- concurrency: `concurrency` requests in flight, at most `per_host` to one host name (each
  connection kept alive between the feeds of its host) and a minimum gap between request starts
  to one host;
- timeouts: connect and read timeouts per attempt, and a total budget per feed that starts when
  its first request is sent (not while it queues behind its host) and covers every attempt,
  redirect and wait;
- redirects followed by hand, at most `max_redirects`, and only to http(s) URLs;
- a size cap enforced while streaming, on the bytes downloaded and on the decoded bytes, with
  gzip/deflate decoded here in bounded steps, so a gzip bomb stops at the cap;
- conditional GET from the request's `etag`/`last_modified`; a 304 is `"not-modified"`;
- `Retry-After` on 429/503 honoured when short, else reported in `retry_after`; retries with
  exponential backoff and jitter on 5xx, connection errors and timeouts, never on other 4xx;
- `file://` URLs and plain paths read local files under the same cap.

HTTP/1.1 is spoken by h11 over asyncio's own transports: per response this costs a fraction of
a general client's work (httpx over httpcore and anyio measured 2.5x the CPU), and fetching
hundreds of feeds is CPU-bound. Async callers await `fetch_all_async`. h11 is imported inside
functions so the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import math
import os
import random
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from catalysts.hosts import ascii_host

if TYPE_CHECKING:
    import http.cookiejar
    import ssl

    import h11

ResultKind = Literal["ok", "not-modified", "error"]

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
ACCEPT_ENCODING = "gzip, deflate"
MB = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_CHUNK = 64 * 1024
_URL_SHOWN = 120  # redirect targets are untrusted and may be huge: show only their start
# A hostile or broken server may ask for any wait; a week says as much as more would.
_RETRY_AFTER_MAX = 7 * 24 * 3600.0
# h11's field-value (RFC 9110 5.5, obs-text allowed) on the str before its Latin-1 encoding.
_FIELD_VALUE = re.compile(r"(?:[^\0\s]+(?:[ \t]+[^\0\s]+)*)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Request:
    """One feed to fetch, with the validators stored from its last 200 response."""

    feed_id: str
    url: str  # http(s) URL, file:// URL or plain path
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The outcome of fetching one feed.

    `etag`/`last_modified` come from the response headers of a 200 only; on a 304 they echo the
    request's validators (still valid), on an error they are None.
    """

    feed_id: str
    url: str  # the final URL after redirects (the request URL for files and early errors)
    result: ResultKind
    # Decoded bytes, only when result == "ok". Left out of the repr: on its way out, asyncio.run
    # formats its main task's repr, result included, and megabytes of feeds cost ~10 ms there.
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None  # a short human reason, only when result == "error"
    retry_after: float | None = None  # seconds the server asked us to wait (429/503)
    status_code: int | None = None  # the last HTTP status seen; None for files and network errors
    seconds: float = 0.0  # wall time spent on this feed, from its first attempt

    @property
    def ok(self) -> bool:
        return self.result == "ok"


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Limits and politeness. Times are seconds; sizes are bytes."""

    concurrency: int = 16  # requests in flight across all hosts
    per_host: int = 4  # requests in flight to one host name
    host_gap: float = 0.1  # minimum gap between request starts to one host (SEC asks <= 10/s)
    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # longest silence while waiting for bytes
    total_timeout: float = 60.0  # one feed, every attempt, redirect and wait included
    max_redirects: int = 5
    max_bytes: int = 20 * MB  # both downloaded and decoded
    retries: int = 2  # extra attempts after the first, on 5xx, connection errors and timeouts
    backoff: float = 0.5  # first retry waits about this long, doubling each time, with jitter
    backoff_max: float = 8.0
    retry_after_max: float = 5.0  # wait for a Retry-After up to this long; longer is reported


def default_user_agent() -> str:
    """The User-Agent used when neither the environment nor the watchlist sets one."""
    from catalysts import __version__

    return f"catalysts/{__version__} (+https://github.com/catalysts)"


def resolve_user_agent(settings_user_agent: str | None) -> str:
    """Env `CATALYSTS_USER_AGENT`, else the watchlist's `settings.user_agent`, else the default.

    Some sources (SEC EDGAR) refuse requests whose User-Agent carries no contact, so users must
    be able to set it per watchlist and per environment.
    """
    for candidate in (os.environ.get("CATALYSTS_USER_AGENT"), settings_user_agent):
        if candidate and candidate.strip():
            return candidate.strip()
    return default_user_agent()


def fetch_all(
    requests: Sequence[Request],
    *,
    user_agent: str,
    options: HttpOptions | None = None,
    on_response: Callable[[Response], None] | None = None,
) -> list[Response]:
    """Fetch every request concurrently; one `Response` per request, in input order.

    Never raises because of one feed. `on_response` is called on the event loop's thread as each
    feed completes (keep it quick: a slow callback stalls the downloads); an exception it raises
    stops the other feeds and propagates. Works from a thread without a running event loop;
    called from inside a running loop, it runs its own loop in a worker thread (async code
    should await `fetch_all_async`).
    """
    import concurrent.futures

    async def main() -> list[Response]:
        loop = asyncio.get_running_loop()
        # create_connection resolves names through loop.getaddrinfo, i.e. in the default
        # executor, where a lookup stuck on a dead name server would hold a thread until the
        # resolver gives up (often 10-30 s): a handful of those starve every other feed's
        # lookup, and asyncio.run waits for them all before it returns. Our lookups each get a
        # daemon thread instead, which nothing waits for.
        loop.getaddrinfo = functools.partial(_lookup, loop)  # type: ignore[method-assign]
        return await fetch_all_async(requests, user_agent, options, on_response)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


async def _lookup(
    loop: asyncio.AbstractEventLoop,
    host: str | bytes | None,
    port: str | bytes | int | None,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[Any]:
    """`loop.getaddrinfo` in a daemon thread of its own (see `fetch_all`)."""
    import socket

    future: asyncio.Future[list[Any]] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # its feed timed out and moved on
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def resolve() -> None:
        result, error = None, None
        try:
            result = socket.getaddrinfo(host, port, family, type, proto, flags)
        except BaseException as exc:  # handed to the awaiting feed
            error = exc
        # The loop may have finished while the resolver was stuck: nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=resolve, name="catalysts-dns", daemon=True).start()
    return await future


async def fetch_all_async(
    requests: Sequence[Request],
    user_agent: str,
    options: HttpOptions | None = None,
    on_response: Callable[[Response], None] | None = None,
) -> list[Response]:
    """The coroutine behind `fetch_all`, for callers that already run an event loop.

    DNS lookups run as that loop resolves names: with asyncio's default, in its default
    executor, where lookups stuck on a dead name server can starve the others (`fetch_all`
    gives each lookup a thread of its own).
    """
    opts = options or HttpOptions()
    fetcher = _Fetcher(opts, user_agent, [r.url for r in requests])

    async def one(request: Request) -> Response:
        response = await fetcher.fetch(request)
        if on_response is not None:
            on_response(response)
        return response

    tasks = [asyncio.ensure_future(one(r)) for r in requests]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # gather leaves the other feeds running when one raises (a failing on_response): stop
        # them and wait until they have dropped their connections, so nothing outlives the call.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        await fetcher.close()


class _Failure(Exception):
    """A per-feed failure with its human reason, raised inside an attempt and caught per feed."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        url: str | None = None,
        final: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.final = final  # the budget is spent: no retry whatever the cause
        self.status_code = status_code
        self.retry_after = retry_after
        self.url = url


class _Budget:
    """A feed's total time budget, started when its first request is sent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def deadline(self) -> float:
        """When the started budget runs out, on the clock of asyncio's loop (time.monotonic)."""
        assert self.started is not None
        return self.started + self.seconds


class _Fetcher:
    """Shared state of one `fetch_all` run: the connections, the limits and each host's clock."""

    def __init__(self, options: HttpOptions, user_agent: str, urls: Sequence[str]) -> None:
        self.options = options
        self.slots = asyncio.Semaphore(max(1, options.concurrency))
        self.host_slots: dict[str, asyncio.Semaphore] = {}
        self.host_next_start: dict[str, float] = {}
        # Idle connections per host, kept alive for the host's next feeds and closed as soon as
        # no feed of this run needs the host, so sockets do not pile up.
        self.idle: dict[str, list[_Connection]] = {}
        self.users: Counter[str] = Counter()
        self.pending = Counter(_host(url) for url in urls)
        self.headers = [
            (b"User-Agent", _field(user_agent)),
            (b"Accept", ACCEPT.encode()),
            (b"Accept-Encoding", ACCEPT_ENCODING.encode()),
        ]
        # A User-Agent that cannot be sent fails every HTTP feed, each with this reason.
        self.header_problem = _field_problem("User-Agent", user_agent)
        # What a client per host would keep: a cookie set by one response (often a redirect)
        # goes with the later requests to that host that its path rules allow -- never to
        # another host, whatever its Domain says (one feed host must not set cookies for
        # its siblings: evil.substack.com for victim.substack.com).
        self.cookies: dict[str, http.cookiejar.CookieJar] = {}
        # The proxies a client takes from the environment (HTTPS_PROXY, NO_PROXY, ...), read at
        # the first connection: urllib.request is slow to import, and local files need none.
        self.proxies: dict[str, str] | None = None
        self.proxy_for: dict[tuple[str, bool], str | None] = {}
        # Loading the CA certificates takes ~0.05 s: once per run, in a thread that starts now,
        # so that it delays no plain-http request and https ones only until it is done.
        self.tls: asyncio.Future[ssl.SSLContext] | None = None
        if any(_scheme(url) == "https" for url in urls):
            self._start_tls_load()

    def _start_tls_load(self) -> asyncio.Future[ssl.SSLContext]:
        if self.tls is None:
            self.tls = asyncio.ensure_future(asyncio.to_thread(_tls_context))
        return self.tls

    async def _load_tls(self) -> ssl.SSLContext:
        # Shielded: a connect that times out while waiting must not cancel the load that every
        # https feed of the run shares.
        return await asyncio.shield(self._start_tls_load())

    def _proxy(self, host: str, https: bool) -> str | None:
        """The proxy URL for the host, or None to connect directly; worked out once per run."""
        key = (host, https)
        if key not in self.proxy_for:
            import urllib.request

            if self.proxies is None:
                self.proxies = urllib.request.getproxies_environment()
            proxy = None
            if not urllib.request.proxy_bypass_environment(host, self.proxies):
                proxy = self.proxies.get("https" if https else "http") or self.proxies.get("all")
            self.proxy_for[key] = proxy if not proxy or "://" in proxy else f"http://{proxy}"
        return self.proxy_for[key]

    def _close_if_unneeded(self, host: str) -> None:
        if self.users[host] <= 0 and self.pending[host] <= 0:
            for connection in self.idle.pop(host, ()):
                connection.close()

    async def close(self) -> None:
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()
        if self.tls is not None:
            # Not left running past the loop; a failure to load is the https feeds' error.
            with contextlib.suppress(Exception):
                await self.tls

    async def fetch(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            scheme = _scheme(request.url)
            if scheme == "file":
                response = await self._read_file(request)
            elif scheme in ("http", "https"):
                problem = _url_problem(request.url)
                if problem:
                    response = _error(request, f"invalid URL {_shorten(request.url)}: {problem}")
                else:
                    response = await self._fetch_http(request)
            else:
                response = _error(request, f"unsupported URL scheme {_shorten(scheme)}")
        except Exception as exc:  # a bug must not take the other feeds down with it
            response = _error(request, _unexpected(exc))
        if not response.seconds:
            response = replace(response, seconds=time.monotonic() - started)
        host = _host(request.url)
        self.pending[host] -= 1
        self._close_if_unneeded(host)
        return response

    # --- local files ---------------------------------------------------------------------------

    async def _read_file(self, request: Request) -> Response:
        """Read a local feed (in a thread: file systems can block)."""
        return await asyncio.to_thread(read_file, request, self.options.max_bytes)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _fetch_http(self, request: Request) -> Response:
        budget = _Budget(self.options.total_timeout)
        attempt = 0
        while True:
            try:
                return await self._attempt(request, budget)
            except _Failure as failure:
                wait = self._retry_wait(failure, attempt, budget)
                if wait is None:
                    reason = failure.reason
                    if attempt and failure.retryable:
                        reason += f" (after {attempt + 1} attempts)"
                    return _error(
                        request,
                        reason,
                        url=failure.url,
                        status_code=failure.status_code,
                        retry_after=failure.retry_after,
                        seconds=budget.elapsed(),
                    )
            attempt += 1
            await asyncio.sleep(wait)

    def _retry_wait(self, failure: _Failure, attempt: int, budget: _Budget) -> float | None:
        """Seconds to wait before retrying, or None to give up with this failure."""
        opts = self.options
        if attempt >= opts.retries or failure.final:
            return None
        if failure.retry_after is not None:
            if failure.retry_after > opts.retry_after_max:
                return None
            wait = failure.retry_after
        elif failure.retryable:
            # Jitter spreads the retries of many feeds that failed together (one host down).
            wait = min(opts.backoff * 2**attempt, opts.backoff_max) * random.uniform(0.5, 1.5)
        else:
            return None
        if wait >= budget.remaining():
            return None
        return wait

    async def _attempt(self, request: Request, budget: _Budget) -> Response:
        """One attempt: follow redirects by hand, holding a slot for each hop's host."""
        opts = self.options
        url = request.url
        headers = list(self.headers)
        problem = self.header_problem
        if request.etag:
            headers.append((b"If-None-Match", _field(request.etag)))
            problem = problem or _field_problem("ETag", request.etag)
        if request.last_modified:
            headers.append((b"If-Modified-Since", _field(request.last_modified)))
            problem = problem or _field_problem("Last-Modified", request.last_modified)
        if problem:
            raise _Failure(problem)
        for _ in range(opts.max_redirects + 1):
            location, response = await self._get(request, url, headers, budget)
            if response is not None:
                return response
            target = urljoin(url, location)
            if _scheme(target) not in ("http", "https"):
                raise _Failure(f"redirect to non-http URL {_shorten(target)}", url=url)
            problem = _url_problem(target)
            if problem:
                raise _Failure(f"redirect to invalid URL {_shorten(target)}: {problem}", url=url)
            url = target
        raise _Failure(f"too many redirects ({opts.max_redirects + 1})", url=url)

    async def _get(
        self, request: Request, url: str, headers: list[tuple[bytes, bytes]], budget: _Budget
    ) -> tuple[str, None] | tuple[None, Response]:
        """GET one URL: a redirect's Location, or the feed's final Response."""
        host = _host(url)
        host_slots = self.host_slots.get(host)
        if host_slots is None:
            host_slots = self.host_slots[host] = asyncio.Semaphore(max(1, self.options.per_host))
        # Take the host's slot before a global one, so feeds queued behind a busy host never
        # hold global slots that other hosts could use.
        async with host_slots:
            await self._host_gap(host)
            async with self.slots:
                # The total budget starts with the first request sent, not while queued behind
                # other feeds of the same host, and then covers every hop, retry and wait.
                budget.start()
                if budget.remaining() <= 0:
                    raise _total_timeout(self.options.total_timeout)
                return await self._send(request, url, host, headers, budget)

    async def _send(
        self,
        request: Request,
        url: str,
        host: str,
        headers: list[tuple[bytes, bytes]],
        budget: _Budget,
    ) -> tuple[str, None] | tuple[None, Response]:
        import h11

        self.users[host] += 1
        connection: _Connection | None = None
        try:
            origin, target, headers = self._request(url, headers)
            connection = self._idle_connection(origin) or await self._connect(origin, budget)
            connection.expect(budget.deadline())
            head = await connection.request(target, headers)
            if head.set_cookies:
                self._store_cookies(url, head.set_cookies)
            result = await self._handle(request, url, head, connection, budget)
            if connection.ready_for_next():
                self.idle.setdefault(host, []).append(connection)
                connection = None
            return result
        except h11.RemoteProtocolError as exc:
            raise _Failure(_protocol_reason(exc), retryable=True, url=url) from exc
        except OSError as exc:
            reason = _connect_reason(exc, urlsplit(url).hostname or url)
            raise _Failure(reason, retryable=not _unknown_host(exc), url=url) from exc
        except _Failure as failure:
            failure.url = failure.url or url
            raise
        finally:
            if connection is not None:
                connection.close()
            self.users[host] -= 1
            self._close_if_unneeded(host)

    def _request(
        self, url: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[_Origin, bytes, list[tuple[bytes, bytes]]]:
        """Where to connect, the request target and the headers a client would send:
        credentials in the URL as Basic auth, the run's cookies for the host."""
        from urllib.parse import quote, unquote

        parts = urlsplit(url)
        https = parts.scheme.lower() == "https"
        host = ascii_host(parts.hostname or "")
        if not host.isascii():
            raise _Failure(f"invalid host name {_shorten(host)}")
        default_port = 443 if https else 80
        port = parts.port or default_port
        authority = _authority(host, None if port == default_port else port)
        path = _remove_dot_segments(parts.path) if parts.path else "/"
        if parts.query:
            path += "?" + parts.query
        # Percent-encode what may not travel raw (non-ASCII, quotes, ...), keep escapes as sent.
        target = quote(path, safe="!#$%&'()*+,/:;=?@[]~").encode("ascii")
        origin = _Origin(host, port, https)
        headers = [(b"Host", authority), *headers]
        if parts.username or parts.password:
            credentials = _basic_auth(unquote(parts.username or ""), unquote(parts.password or ""))
            headers.append((b"Authorization", credentials.encode("latin-1")))
        cookie = self._cookie_header(url, host)
        if cookie:
            headers.append((b"Cookie", cookie.encode("latin-1")))
        if not https and self._proxy(host, https):
            # A forward proxy is given the whole URL; an https origin is tunnelled instead.
            target = b"http://" + authority + target
        return origin, target, headers

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        """An idle connection to the origin that is still open, if any (the newest first)."""
        idle = self.idle.get(origin.host, [])
        # Popping index i leaves the lower indices in place: one walk down the list suffices.
        for i in range(len(idle) - 1, -1, -1):
            if idle[i].origin == origin:
                connection = idle.pop(i)
                if connection.alive():
                    return connection
                connection.close()
        return None

    async def _connect(self, origin: _Origin, budget: _Budget) -> _Connection:
        """A new connection to the origin, direct or through the environment's proxy."""
        proxy_url = self._proxy(origin.host, origin.https)
        proxy = _Proxy.of(proxy_url) if proxy_url else None
        connect_timeout = self.options.connect_timeout
        remaining = budget.remaining()
        try:
            return await asyncio.wait_for(
                self._open(origin, proxy, budget), min(connect_timeout, remaining)
            )
        except asyncio.TimeoutError as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                # The system gave up connecting (ETIMEDOUT; since Python 3.11 the same class as
                # asyncio's): its own reason, from the OSError handler, not our timeout's.
                raise
            if remaining < connect_timeout:
                raise _total_timeout(self.options.total_timeout) from None
            # A proxy that drops connections silently is a common outage: name it.
            through = f", through proxy {proxy.where}" if proxy else ""
            raise _Failure(
                f"timed out after {_secs(connect_timeout)} (connect{through})", retryable=True
            ) from None

    async def _open(self, origin: _Origin, proxy: _Proxy | None, budget: _Budget) -> _Connection:
        if proxy is None:
            tls = await self._load_tls() if origin.https else None
            return await self._dial(origin, origin.host, origin.port, tls)
        proxy_tls = await self._load_tls() if proxy.https else None
        try:
            connection = await self._dial(origin, proxy.host, proxy.port, proxy_tls)
        except OSError as exc:
            # The proxy is what failed, not the feed's host: a user who reads "cannot resolve
            # host coindesk.com" for every feed looks in the wrong place.
            reason = _connect_reason(exc, proxy.host)
            raise _Failure(
                f"proxy {proxy.where}: {reason}", retryable=not _unknown_host(exc)
            ) from exc
        try:
            return await self._through_proxy(connection, proxy.parts, budget)
        except BaseException:
            connection.close()
            raise

    async def _dial(
        self, origin: _Origin, host: str, port: int, tls: ssl.SSLContext | None
    ) -> _Connection:
        connection = _Connection(origin, self.options.read_timeout, self.options.total_timeout)
        await asyncio.get_running_loop().create_connection(
            lambda: connection,
            host,
            port,
            ssl=tls,
            server_hostname=host if tls else None,
            # IPv4 as well as IPv6 (RFC 8305): a host whose IPv6 route is dead still connects.
            happy_eyeballs_delay=0.25,
        )
        return connection

    async def _through_proxy(
        self, connection: _Connection, parts: SplitResult, budget: _Budget
    ) -> _Connection:
        """Ready the proxy's connection for the origin: credentials to send along with each
        request to a forward proxy, or a tunnel for an https origin."""
        origin = connection.origin
        auth = []
        if parts.username or parts.password:
            from urllib.parse import unquote

            credentials = _basic_auth(unquote(parts.username or ""), unquote(parts.password or ""))
            auth.append((b"Proxy-Authorization", credentials.encode("latin-1")))
        if not origin.https:
            connection.extra_headers = auth
            return connection
        # An https origin is reached through a tunnel: CONNECT, then TLS with the origin.
        connection.expect(budget.deadline())
        authority = _authority(origin.host, origin.port)
        head = await connection.request(authority, [(b"Host", authority), *auth], b"CONNECT")
        if not 200 <= head.status < 300:
            raise _Failure(
                f"proxy refused the tunnel: HTTP {head.status} {_phrase(head.status)}".rstrip(),
                retryable=head.status >= 500,
            )
        await connection.start_tls(await self._load_tls(), origin.host)
        return connection

    def _cookie_header(self, url: str, host: str) -> str | None:
        jar = self.cookies.get(host)
        if not jar:
            return None
        import urllib.request

        carrier = urllib.request.Request(_cookie_url(url, host))
        jar.add_cookie_header(carrier)
        return carrier.get_header("Cookie")

    def _store_cookies(self, url: str, set_cookies: list[str]) -> None:
        import http.cookiejar
        import urllib.request

        host = _host(url)
        jar = self.cookies.get(host)
        if jar is None:
            jar = self.cookies[host] = http.cookiejar.CookieJar()
        jar.extract_cookies(
            _SetCookies(set_cookies), urllib.request.Request(_cookie_url(url, host))
        )

    async def _host_gap(self, host: str) -> None:
        """Wait until this host's next start slot, reserving the one after it."""
        gap = self.options.host_gap
        if gap <= 0:
            return
        now = time.monotonic()
        start = max(now, self.host_next_start.get(host, now))
        self.host_next_start[host] = start + gap
        if start > now:
            await asyncio.sleep(start - now)

    async def _handle(
        self, request: Request, url: str, head: _Head, connection: _Connection, budget: _Budget
    ) -> tuple[str, None] | tuple[None, Response]:
        status = head.status
        if status in _REDIRECTS:
            location = head.headers.get("location")
            if not location:
                raise _Failure(f"HTTP {status} redirect without a Location", status_code=status)
            return _utf8_or_latin1(location), None
        if status == 304:
            return None, Response(
                feed_id=request.feed_id,
                url=url,
                result="not-modified",
                etag=request.etag,
                last_modified=request.last_modified,
                status_code=status,
                seconds=budget.elapsed(),
            )
        if not 200 <= status < 300:
            reason = f"HTTP {status} {_phrase(status)}".rstrip()
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = _parse_retry_after(head.headers.get("retry-after"))
                if retry_after is not None:
                    reason += f" (retry after {_secs(retry_after)})"
            raise _Failure(
                reason,
                retryable=status >= 500,
                status_code=status,
                retry_after=retry_after,
                url=url,
            )
        body = await self._read_body(head, connection)
        if not body:
            raise _Failure("empty response body", status_code=status, url=url)
        ok_200 = status == 200
        return None, Response(
            feed_id=request.feed_id,
            url=url,
            result="ok",
            body=body,
            content_type=head.headers.get("content-type"),
            etag=head.headers.get("etag") if ok_200 else None,
            last_modified=head.headers.get("last-modified") if ok_200 else None,
            status_code=status,
            seconds=budget.elapsed(),
        )

    async def _read_body(self, head: _Head, connection: _Connection) -> bytes:
        """Stream the raw body, decoding it here so both sizes are capped as bytes arrive."""
        cap = self.options.max_bytes
        too_big = _Failure(f"response larger than {_size(cap)}", status_code=head.status)
        declared = head.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > cap:
            raise too_big  # the server told us: no need to download anything
        decoder = _Decoder(head.headers.get("content-encoding", ""), cap)
        raw = 0
        out = bytearray()
        # As the connection delivers them: re-chunking would only copy.
        while (chunk := await connection.body_chunk()) is not None:
            raw += len(chunk)
            if raw > cap:
                raise too_big
            decoder.feed(chunk, out)
            if len(out) > cap:
                raise too_big
        decoder.finish(out)
        if len(out) > cap:
            raise too_big
        return bytes(out)


class _Origin(NamedTuple):
    """Where a connection goes: requests to one origin may share it."""

    host: str
    port: int
    https: bool


@dataclass(slots=True)
class _Head:
    """A response's status line and headers: names in lower case, repeated ones joined by
    commas, except Set-Cookie whose values stay apart."""

    status: int
    headers: dict[str, str]
    set_cookies: list[str]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: h11 parses what the socket delivers, and every wait for bytes
    ends at the read timeout or the feed's total deadline, whichever comes first (a timer per
    wait, no task per request)."""

    def __init__(self, origin: _Origin, read_timeout: float, total_timeout: float) -> None:
        self.origin = origin
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout  # the budget's length, for the message
        self.h11 = _h11_client()
        self.extra_headers: list[tuple[bytes, bytes]] = []  # a forward proxy's credentials
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = math.inf
        self.in_use = False
        self.stray = False  # bytes while idle: no next request may take them for its response
        self.eof = False
        self.lost: BaseException | None = None
        self.unread = 0
        self.paused = False

    # asyncio.Protocol: the socket side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self.stray = self.stray or not self.in_use
        # Read ahead of the consumer only so far: a huge body must not pile up in memory.
        self.unread += len(data)
        if self.unread > 4 * _CHUNK and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake(None)

    def eof_received(self) -> None:
        if not self.eof:
            self.eof = True
            self.h11.receive_data(b"")
        self._wake(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is None:
            self.eof_received()
        else:
            self.lost = exc
            self._wake(exc)

    def _wake(self, exc: BaseException | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    # the request side

    def alive(self) -> bool:
        """Whether the connection may carry a request: open, and silent since its last one."""
        transport = self.transport
        if self.stray or self.eof or self.lost or transport is None:
            return False
        return not transport.is_closing()

    def expect(self, deadline: float) -> None:
        """Bound every wait of the next exchange by the feed's total deadline (on the loop's
        clock, time.monotonic, as `_Budget` keeps it)."""
        self.deadline = deadline

    async def request(
        self, target: bytes, headers: list[tuple[bytes, bytes]], method: bytes = b"GET"
    ) -> _Head:
        """Send a request without a body; the response's head, once it arrives."""
        import h11

        assert self.transport is not None
        self.in_use = True
        request = h11.Request(method=method, target=target, headers=headers + self.extra_headers)
        self.transport.write(self.h11.send(request))
        self.h11.send(h11.EndOfMessage())  # b"": a request without a body ends with its head
        while True:
            event = await self._event()
            if type(event) is h11.Response:
                break  # 1xx informational responses come before and are skipped
        fields: dict[str, str] = {}
        set_cookies: list[str] = []
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
            if name == "set-cookie":
                set_cookies.append(value)
            elif name in fields:
                fields[name] += ", " + value
            else:
                fields[name] = value
        return _Head(event.status_code, fields, set_cookies)

    async def body_chunk(self) -> bytes | None:
        """The body's next bytes, or None at its end."""
        import h11

        event = await self._event()
        return event.data if type(event) is h11.Data else None

    def ready_for_next(self) -> bool:
        """Whether another request may follow: the response is read to its end (or can be, from
        bytes already here, as a 304's or a redirect's short body) and both sides keep the
        connection open."""
        import h11

        conn = self.h11
        try:
            while conn.their_state is h11.SEND_BODY:
                if conn.next_event() is h11.NEED_DATA:
                    return False
        except h11.RemoteProtocolError:
            return False
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        if conn.trailing_data[0] or not self.alive():  # bytes beyond the response: not ours
            return False
        conn.start_next_cycle()
        self.in_use = False
        return True

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """TLS with the origin over this connection (a proxy's tunnel), then HTTP afresh."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self.transport, self, context, server_hostname=server_hostname
        )
        assert transport is not None
        self.transport = transport
        self.h11 = _h11_client()

    def close(self) -> None:
        """Drop the connection at once: a body given up on must not flow on, and a graceful TLS
        close waits for the server's close_notify, often past the end of the run's event loop,
        which leaves the socket open."""
        if self.transport is not None:
            self.transport.abort()

    async def _event(self) -> h11.Event:
        import h11

        conn = self.h11
        while True:
            state = conn.their_state
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                if state is h11.SEND_RESPONSE and self.eof:
                    raise _Failure(
                        "server closed the connection without a response", retryable=True
                    ) from None
                raise
            if event is not h11.NEED_DATA:
                return event
            await self._wait()

    async def _wait(self) -> None:
        """Until more bytes arrive, or the connection ends or times out."""
        if self.lost is not None:
            raise self.lost
        loop = asyncio.get_running_loop()
        # A server that never pauses (endless 1xx responses, huge chunk extensions) wakes every
        # waiter before a due timer gets its turn: the deadline is checked here too.
        if loop.time() >= self.deadline:
            raise _total_timeout(self.total_timeout)
        self.waiter = waiter = loop.create_future()
        self.unread = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        read_deadline = loop.time() + self.read_timeout
        if read_deadline < self.deadline:
            timer = loop.call_at(read_deadline, self._time_out, False)
        else:
            timer = loop.call_at(self.deadline, self._time_out, True)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _time_out(self, total: bool) -> None:
        if total:
            self._wake(_total_timeout(self.total_timeout))
        else:
            self._wake(
                _Failure(f"timed out after {_secs(self.read_timeout)} (read)", retryable=True)
            )


class _SetCookies:
    """The Set-Cookie values of a response, as `http.cookiejar` reads them from a response."""

    def __init__(self, values: list[str]) -> None:
        self.values = values

    def info(self) -> _SetCookies:
        return self

    def get_all(self, name: str, default: list[str]) -> list[str]:
        return self.values if name.lower() == "set-cookie" else default


class _Decoder:
    """gzip/deflate decoded in small steps into the caller's buffer, stopping just past the cap."""

    def __init__(self, content_encoding: str, cap: int) -> None:
        self.cap = cap
        encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        for encoding in encodings:
            if encoding not in ("gzip", "x-gzip", "deflate"):
                raise _Failure(f"unsupported content encoding {_shorten(encoding)}")
        if len(encodings) > 1:
            raise _Failure(f"unsupported content encoding {_shorten(content_encoding)}")
        self.encoding = encodings[0] if encodings else None
        self.name = "deflate" if self.encoding == "deflate" else "gzip"
        self.started = False
        self.raw_deflate = False
        self.obj: zlib._Decompress | None = None
        if self.encoding:
            self.obj = self._new()

    def _new(self) -> zlib._Decompress:
        if self.encoding == "deflate":
            # "deflate" is zlib-wrapped per the RFC, yet some servers send raw deflate.
            return zlib.decompressobj(-zlib.MAX_WBITS if self.raw_deflate else zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes, sink: bytearray) -> None:
        """Decode `data` into `sink`, stopping once `sink` holds more than `cap` bytes."""
        if self.obj is None:
            sink += data
            return
        try:
            # Bytes after the end of the compressed stream are ignored (browsers do). Inflate in
            # small steps: a few KB of a bomb can expand to many MB in a single call.
            while data and not self.obj.eof and len(sink) <= self.cap:
                step = min(_CHUNK * 4, self.cap + 1 - len(sink))
                sink += self.obj.decompress(data, step)
                self.started = True
                data = self.obj.unconsumed_tail
        except zlib.error as exc:
            if self.encoding == "deflate" and not self.raw_deflate and not self.started:
                self.raw_deflate = True
                self.obj = self._new()
                self.feed(data, sink)
                return
            raise _Failure(f"invalid {self.name} data") from exc

    def finish(self, sink: bytearray) -> None:
        if self.obj is None or not self.started:
            return  # an empty body is reported as empty, not as broken compression
        try:
            sink += self.obj.flush(max(1, self.cap + 1 - len(sink)))
        except zlib.error as exc:  # pragma: no cover - flush rarely raises
            raise _Failure(f"invalid {self.name} data") from exc
        if not self.obj.eof:
            raise _Failure(f"invalid {self.name} data (truncated)")


# --- helpers -----------------------------------------------------------------------------------


def _error(
    request: Request,
    reason: str,
    *,
    url: str | None = None,
    status_code: int | None = None,
    retry_after: float | None = None,
    seconds: float = 0.0,
) -> Response:
    return Response(
        feed_id=request.feed_id,
        url=url or request.url,
        result="error",
        error=reason,
        status_code=status_code,
        retry_after=retry_after,
        seconds=seconds,
    )


def _h11_client() -> h11.Connection:
    import h11

    # Response heads up to 100 KB (h11's default is 16 KB): some sites send huge cookies.
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=100 * 1024)


def _field(value: str) -> bytes:
    """A header value as bytes: Latin-1 round-trips what servers sent; anything else becomes
    "?" (a validator that no longer matches only costs a full download)."""
    return value.encode("latin-1", "replace")


def _field_problem(name: str, value: str) -> str | None:
    """Why a value cannot be sent as a header (h11 would refuse it: CR, LF, NUL, spaces at
    either end), or None. The value comes from the environment or the store: it is shown
    shortened, never raw."""
    if _FIELD_VALUE.fullmatch(value):
        return None
    return f"invalid {name} value {_shorten(value)}"


def _total_timeout(seconds: float) -> _Failure:
    return _Failure(f"timed out after {_secs(seconds)} (total)", final=True)


def _tls_context() -> ssl.SSLContext:
    """Certificates and host names checked: against SSL_CERT_FILE or SSL_CERT_DIR when set, else
    certifi's bundle (the same on every machine, unlike the system's)."""
    import ssl

    import certifi

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


def _authority(host: str, port: int | None) -> bytes:
    """host[:port] as the Host header and CONNECT want it, from an ASCII host: IPv6 in
    brackets."""
    authority = host.encode("ascii")
    if ":" in host:
        authority = b"[" + authority + b"]"
    return authority if port is None else authority + b":%d" % port


def _cookie_url(url: str, host: str) -> str:
    """The URL as the cookie jar must see it: with the host as sent (`_host`), which cookies'
    Domain attributes are matched against; a non-ASCII spelling would never match."""
    parts = urlsplit(url)
    if (parts.hostname or "").isascii():
        return url
    return urlunsplit(parts._replace(netloc=_authority(host, parts.port).decode("ascii")))


def _remove_dot_segments(path: str) -> str:
    """The path with its "." and ".." segments resolved (RFC 3986 5.2.4), as browsers
    send it: "/x/../feed" asks for "/feed", which many servers would not find otherwise."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    kept: list[str] = []
    for segment in segments[1:]:  # an http(s) URL's path starts with "/"
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # "/a/b/.." is the directory "/a/"
    return "/" + "/".join(kept)


def _utf8_or_latin1(value: str) -> str:
    """A header value h11 gave us as Latin-1, read as UTF-8 when it is: many servers send a
    Location's non-ASCII characters raw in UTF-8, as browsers read them."""
    raw = value.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _basic_auth(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _scheme(url: str) -> str:
    """'http', 'https', 'file' (file:// URLs and plain paths) or another scheme as written."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. a broken IPv6 host; the scheme is still what precedes "://"
        scheme = url.partition("://")[0].lower() if "://" in url else ""
    if not scheme or len(scheme) == 1:  # a plain path, or a Windows drive letter
        return "file"
    return scheme


def _host(url: str) -> str:
    """The key of the per-host limits, idle connections and cookies: the host name as sent,
    lower case ASCII ("" when there is none)."""
    try:
        return ascii_host(urlsplit(url).hostname or "")
    except ValueError:
        return ""


def _url_problem(url: str) -> str | None:
    """Why an http(s) URL cannot be requested, or None; checked before any connection is made."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        return str(exc) or "malformed"
    if not parts.hostname:
        return "no host"
    if " " in url or not url.isprintable():  # every other space is unprintable
        return "contains spaces or control characters"
    return None


def is_local(url: str) -> bool:
    """Whether `url` names a local file (a file:// URL or a plain path), which `read_file` reads."""
    return _scheme(url) == "file"


def read_file(request: Request, max_bytes: int) -> Response:
    """Read a local feed under the size cap: what `fetch_all` gives for a file, without a
    loop. Never raises: ingest's workers call it directly."""
    import mimetypes

    started = time.monotonic()
    try:
        path = _local_path(request.url)
        data = _read_capped(path, max_bytes)
        if not data:
            raise _Failure("empty file")
    except _Failure as failure:
        return _error(request, failure.reason, seconds=time.monotonic() - started)
    except Exception as exc:  # e.g. file://[::1/x, which fetch would report the same way
        return _error(request, _unexpected(exc), seconds=time.monotonic() - started)
    return Response(
        feed_id=request.feed_id,
        url=request.url,
        result="ok",
        body=data,
        content_type=mimetypes.guess_type(path.name)[0],
        seconds=time.monotonic() - started,
    )


def _unexpected(exc: Exception) -> str:
    """The reason given for an exception no handler expected (a bug, or a URL we cannot read)."""
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _local_path(url: str) -> Path:
    from urllib.request import url2pathname  # urllib.request is slow to import

    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        return Path(url2pathname(parts.path))
    return Path(url).expanduser()


def _read_capped(path: Path, cap: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        raise _Failure(f"file not found: {path}") from None
    except IsADirectoryError:
        raise _Failure(f"is a directory: {path}") from None
    except PermissionError:
        raise _Failure(f"permission denied: {path}") from None
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise _Failure(f"cannot read {_shorten(str(path))}: {exc}") from None
    if len(data) > cap:
        raise _Failure(f"file larger than {_size(cap)}: {path}")
    return data


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3), at most
    `_RETRY_AFTER_MAX`."""
    import email.utils

    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() also accepts "²" and other digits float() refuses.
    if value.isascii() and value.isdigit():
        return min(float(value), _RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - datetime.now(timezone.utc)).total_seconds()), _RETRY_AFTER_MAX)


def _phrase(status: int) -> str:
    # The standard phrase, not the server's: the reason line is untrusted and may be anything.
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class _Proxy(NamedTuple):
    """A proxy from the environment, read once per connect."""

    parts: SplitResult  # the whole URL, credentials included: never shown
    host: str
    port: int
    https: bool
    where: str  # "host:port", as errors show the proxy

    @classmethod
    def of(cls, url: str) -> _Proxy:
        """The proxy at `url`; `_Failure` when that is no proxy one can connect to."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _Failure(f"unsupported proxy scheme {_shorten(parts.scheme)}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:  # a port that is no number, or out of range
            raise _Failure("invalid proxy URL: bad port") from None
        host = parts.hostname
        if not host:
            raise _Failure("invalid proxy URL: no host")
        where = _shorten(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return cls(parts, host, port, scheme == "https", where)


def _connect_reason(exc: BaseException, host: str) -> str:
    """Why connecting to `host` failed, in a user's words."""
    import socket
    import ssl

    causes = list(_causes(exc))
    host = _shorten(host)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return f"cannot resolve host {host}"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return f"TLS error with {host}: {_shorten(str(exc))}"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "connection reset"
    text = " ".join(str(c) for c in causes).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "name resolution" in text:
        return f"cannot resolve host {host}"
    return f"connection failed: {_shorten(str(exc)) or type(exc).__name__}"


def _unknown_host(exc: BaseException) -> bool:
    """True when DNS says the name does not exist: retrying cannot help (EAI_AGAIN can)."""
    import socket

    permanent = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    return any(isinstance(c, socket.gaierror) and c.errno in permanent for c in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and, for exception groups, their members."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(getattr(current, "exceptions", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _protocol_reason(exc: Exception) -> str:
    text = str(exc)
    if "peer closed connection" in text or "incomplete" in text.lower():
        return "connection closed before the body was complete"
    if "without sending" in text or "Server disconnected" in text:
        return "server closed the connection without a response"
    return f"protocol error: {_shorten(text)}"


def _secs(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 10 else f"{seconds:.0f}s"


def _size(n: int) -> str:
    if n >= MB and n % MB == 0:
        return f"{n // MB} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def _shorten(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _URL_SHOWN else text[: _URL_SHOWN - 3] + "..."
