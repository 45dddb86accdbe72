"""http.fetch_all against the fault-injecting loopback server: every fault ends as one error
result with a human reason, and the feeds around it are unharmed."""

from __future__ import annotations

import asyncio
import base64
import errno
import gc
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from catalysts import __version__
from catalysts.http import (
    ACCEPT,
    MB,
    HttpOptions,
    Request,
    Response,
    _Fetcher,
    _Origin,
    default_user_agent,
    fetch_all,
    fetch_all_async,
    read_file,
    resolve_user_agent,
)
from catalysts.ingest import RETRY_AFTER_CAP, next_retry
from faultserver import (
    ETAG,
    HUGE_SIZE,
    INVALID_UTF8,
    LAST_MODIFIED,
    RSS,
    FaultServer,
    Gauge,
    file_servers,
    gzip_bomb,
    loopback_hosts_available,
)

UA = "catalysts-tests/1.0 (ops@example.com)"
# Short timeouts and no politeness gap keep each test well under two seconds.
FAST = HttpOptions(
    connect_timeout=1.0,
    read_timeout=0.3,
    total_timeout=2.0,
    retries=2,
    backoff=0.01,
    backoff_max=0.02,
    host_gap=0.0,
    retry_after_max=1.0,
)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    # The same as faultserver.fault_server, which other test modules get via conftest's
    # pytest_plugins; defined here too so this module runs on its own.
    with FaultServer() as server:
        yield server


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable of the machine running the tests, in either case, leaks in."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str, variable: str = "http_proxy") -> None:
    """Only this proxy, whatever the machine running the tests has configured."""
    clear_proxy_env(monkeypatch)
    monkeypatch.setenv(variable, url)


def fetch_one(url: str, options: HttpOptions = FAST, **request: str) -> Response:
    [response] = fetch_all([Request("f", url, **request)], user_agent=UA, options=options)
    return response


# --- success, headers and conditional GET ---------------------------------------------------------


def test_ok_returns_body_type_and_validators_and_sends_identity(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/etag"))

    assert response.result == "ok"
    assert response.body == RSS
    assert response.content_type == "application/rss+xml"
    assert (response.etag, response.last_modified) == (ETAG, LAST_MODIFIED)
    assert response.status_code == 200
    assert response.error is None
    [sent] = fault_server.requests("/etag")
    assert sent.headers["User-Agent"] == UA
    assert sent.headers["Accept"] == ACCEPT
    assert sent.headers["Accept-Encoding"] == "gzip, deflate"
    assert "If-None-Match" not in sent.headers
    assert "If-Modified-Since" not in sent.headers


@pytest.mark.parametrize(
    "validators",
    [{"etag": ETAG}, {"last_modified": LAST_MODIFIED}, {"etag": ETAG, "last_modified": "x"}],
)
def test_conditional_get_sends_validators_and_maps_304(
    fault_server: FaultServer, validators: dict[str, str]
) -> None:
    response = fetch_one(fault_server.url("/etag"), **validators)

    assert response.result == "not-modified"
    assert response.status_code == 304
    assert response.body is None
    # The stored validators stay valid after a 304: they are echoed, never taken from the 304.
    assert response.etag == validators.get("etag")
    assert response.last_modified == validators.get("last_modified")
    [sent] = fault_server.requests("/etag")
    assert sent.headers.get("If-None-Match") == validators.get("etag")
    assert sent.headers.get("If-Modified-Since") == validators.get("last_modified")


def test_one_connection_serves_a_hosts_feeds_and_their_304s(fault_server: FaultServer) -> None:
    ports: list[int] = []

    def etag_by_port(h) -> None:  # type: ignore[no-untyped-def]
        ports.append(h.client_address[1])
        if h.headers.get("If-None-Match") == ETAG:
            h.reply(304, b"", {"ETag": ETAG})
        else:
            h.reply(200, RSS, {"ETag": ETAG})

    fault_server.route("/kept", etag_by_port)
    requests = [
        Request(str(i), fault_server.url(f"/kept?n={i}"), etag=ETAG if i % 2 else None)
        for i in range(6)
    ]

    responses = fetch_all(requests, user_agent=UA, options=replace(FAST, per_host=1))

    assert [r.result for r in responses] == ["ok", "not-modified"] * 3
    # A 304 has no body to read, yet closing it unread would have closed its connection.
    assert len(ports) == 6
    assert len(set(ports)) == 1


def test_a_cookie_set_by_a_redirect_goes_to_its_target(fault_server: FaultServer) -> None:
    fault_server.route(
        "/login", status=302, headers={"Location": "/behind", "Set-Cookie": "seen=1; Path=/"}
    )

    def behind(h) -> None:  # type: ignore[no-untyped-def]
        h.reply(200 if h.headers.get("Cookie") == "seen=1" else 403, RSS)

    fault_server.route("/behind", behind)

    response = fetch_one(fault_server.url("/login"))

    assert response.result == "ok"
    assert response.url == fault_server.url("/behind")


def test_a_cookie_never_goes_to_another_host_whatever_its_domain() -> None:
    # One feed host must not set cookies for its siblings (a shared Domain=.substack.com).
    from catalysts.http import HttpOptions, _Fetcher

    def cookie(fetcher: _Fetcher, url: str) -> bytes | None:
        _, _, headers = fetcher._request(url, [])
        return dict(headers).get(b"Cookie")

    async def main() -> None:  # the fetcher lives on an event loop
        fetcher = _Fetcher(HttpOptions(), "catalysts-test", [])
        fetcher._store_cookies("http://evil.substack.com/", ["sid=1; Domain=.substack.com"])

        assert cookie(fetcher, "http://victim.substack.com/feed") is None
        assert cookie(fetcher, "http://evil.substack.com/feed") == b"sid=1"

    asyncio.run(main())


def test_a_non_ascii_host_is_sent_as_idna_2008(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a proxy on loopback, which shows the host the request names without any DNS.
    # IDNA 2003 (Python's codec) would ask for fass.de, another domain.
    use_proxy(monkeypatch, fault_server.base_url)

    response = fetch_one("http://Faß.de/feed")

    assert response.result == "ok"
    [sent] = fault_server.requests()
    assert (sent.path, sent.headers["Host"]) == ("http://xn--fa-hia.de/feed", "xn--fa-hia.de")


def test_a_non_ascii_host_is_ascii_for_dns_proxy_bypass_and_cookies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_proxy(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "xn--fa-hia.de")  # NO_PROXY lists names as DNS has them

    async def main() -> None:  # the fetcher lives on an event loop
        fetcher = _Fetcher(HttpOptions(), "catalysts-test", [])
        fetcher._store_cookies("http://faß.de/", ["sid=1", "d=2; Domain=xn--fa-hia.de"])

        origin, target, headers = fetcher._request("http://faß.de:8080/feed", [])
        assert origin == _Origin("xn--fa-hia.de", 8080, False)  # what DNS and TLS are given
        assert target == b"/feed"  # not the proxy's: the bypass matched the ASCII name
        assert dict(headers)[b"Host"] == b"xn--fa-hia.de:8080"
        # Both spellings are one host, whose cookies they share; fass.de is another.
        _, _, headers = fetcher._request("http://xn--fa-hia.de/feed", [])
        assert dict(headers).get(b"Cookie") == b"sid=1; d=2"
        _, _, headers = fetcher._request("http://fass.de/feed", [])
        assert dict(headers).get(b"Cookie") is None

    asyncio.run(main())


def test_a_proxy_that_cannot_be_reached_is_named_in_the_error_not_the_feeds_host(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    once = replace(FAST, retries=0)
    with FaultServer() as gone:
        port = gone.base_url.rsplit(":", 1)[1]  # free once the server is gone
    use_proxy(monkeypatch, f"http://me:secret@127.0.0.1:{port}")
    refused = fetch_one("http://feeds.example/feed", once).error
    assert refused == f"proxy 127.0.0.1:{port}: connection refused"

    release = threading.Event()
    release.set()  # "dead*" names fail at once
    dead_name_server(monkeypatch, release, 0)
    use_proxy(monkeypatch, "http://me:secret@dead-proxy.corp:3128")
    unresolved = fetch_one("http://feeds.example/feed", once).error
    assert unresolved == "proxy dead-proxy.corp:3128: cannot resolve host dead-proxy.corp"

    # Proxy URLs that name no proxy to dial say so, and nothing more.
    invalid = []
    for url in ("http://me:secret@:3128", "http://me:secret@", "http://me:secret@proxy:port"):
        use_proxy(monkeypatch, url)
        invalid.append(fetch_one("http://feeds.example/feed", once).error)
    assert invalid == [
        "invalid proxy URL: no host",
        "invalid proxy URL: no host",
        "invalid proxy URL: bad port",
    ]
    assert not any("secret" in (e or "") for e in [refused, unresolved, *invalid])
    assert fault_server.requests() == []


def test_a_proxy_that_drops_connections_is_named_in_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def silent(*args: object) -> None:  # as a firewall that drops the SYN
        await asyncio.sleep(3600)

    monkeypatch.setattr(_Fetcher, "_dial", silent)
    use_proxy(monkeypatch, "http://me:secret@[::1]:3128", "all_proxy")
    options = replace(FAST, retries=0, connect_timeout=0.2)
    for url in ("http://feeds.example/feed", "https://feeds.example/feed"):
        assert fetch_one(url, options).error == (
            "timed out after 0.2s (connect, through proxy [::1]:3128)"
        )
    clear_proxy_env(monkeypatch)
    assert fetch_one("http://feeds.example/feed", options).error == (
        "timed out after 0.2s (connect)"
    )


def test_a_host_name_idna_2008_refuses_is_an_error(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy on loopback only keeps a regression from looking the name up on the internet.
    use_proxy(monkeypatch, fault_server.base_url)

    response = fetch_one("http://\N{SNOWMAN}.net/feed", replace(FAST, retries=0))

    assert (response.result, response.error) == ("error", "invalid host name \N{SNOWMAN}.net")
    assert fault_server.requests() == []


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1"])
def test_proxies_come_from_the_environment(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    use_proxy(monkeypatch, fault_server.base_url)
    monkeypatch.setenv("no_proxy", no_proxy)

    with FaultServer() as origin:
        response = fetch_one(origin.url("/feed"))
        direct = [r.path for r in origin.requests()]

    assert response.result == "ok"
    assert response.body == RSS
    proxied = [r.path for r in fault_server.requests()]
    if no_proxy:
        assert (direct, proxied) == (["/feed"], [])
    else:  # a proxy gets the whole URL
        assert (direct, proxied) == ([], [origin.url("/feed")])


def test_proxy_credentials_go_to_the_proxy(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, fault_server.base_url.replace("://", "://me:p%40ss@", 1))

    response = fetch_one("http://feeds.example/feed")

    assert response.result == "ok"
    [sent] = fault_server.requests()
    assert sent.path == "http://feeds.example/feed"
    assert sent.headers["Host"] == "feeds.example"
    assert sent.headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"me:p@ss").decode()


def test_https_through_a_proxy_asks_it_for_a_tunnel(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, fault_server.base_url, "https_proxy")

    # The test server answers CONNECT, like any method it lacks, with 501.
    response = fetch_one("https://feeds.example/feed", replace(FAST, retries=0))

    assert (response.result, response.error) == (
        "error",
        "proxy refused the tunnel: HTTP 501 Not Implemented",
    )


def test_credentials_in_the_url_are_sent_as_basic_auth(fault_server: FaultServer) -> None:
    fault_server.route("/private", body=RSS)
    url = fault_server.url("/private").replace("://", "://reader:p%40ss@", 1)

    response = fetch_one(url)

    assert response.result == "ok"
    [sent] = fault_server.requests("/private")
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"reader:p@ss").decode()


def test_stale_validators_get_a_fresh_200(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/etag"), etag='"old"')

    assert response.result == "ok"
    assert response.etag == ETAG


def test_validators_only_from_a_200(fault_server: FaultServer) -> None:
    fault_server.route("/partial", status=203, body=RSS, headers={"ETag": '"nope"'})

    response = fetch_one(fault_server.url("/partial"))

    assert response.result == "ok"
    assert response.etag is None


def test_invalid_utf8_bytes_pass_through_untouched(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/invalid-utf8"))

    assert response.result == "ok"
    assert response.body == INVALID_UTF8


def test_html_page_is_returned_for_the_parser_to_judge(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/html"))

    assert response.result == "ok"
    assert response.content_type is not None
    assert response.content_type.startswith("text/html")


# --- HTTP errors, retries and Retry-After -------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(404, "HTTP 404 Not Found"), (410, "HTTP 410 Gone")])
def test_client_errors_are_not_retried(fault_server: FaultServer, code: int, reason: str) -> None:
    response = fetch_one(fault_server.url(f"/status/{code}"))

    assert (response.result, response.error, response.status_code) == ("error", reason, code)
    assert response.body is None
    assert fault_server.hits(f"/status/{code}") == 1


def test_server_errors_are_retried_with_backoff(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/status/500"), replace(FAST, retries=2))

    assert response.result == "error"
    assert response.error == "HTTP 500 Internal Server Error (after 3 attempts)"
    assert response.status_code == 500
    assert fault_server.hits("/status/500") == 3


def test_a_retry_that_succeeds_returns_ok(fault_server: FaultServer) -> None:
    attempts: list[int] = []

    def flaky(h) -> None:  # type: ignore[no-untyped-def]
        attempts.append(1)
        h.reply(502 if len(attempts) == 1 else 200, RSS)

    fault_server.route("/flaky", flaky)

    response = fetch_one(fault_server.url("/flaky"))

    assert response.result == "ok"
    assert response.body == RSS
    assert len(attempts) == 2


@pytest.mark.parametrize("form", ["retry-after", "retry-after-date"])
@pytest.mark.parametrize("code", [429, 503])
def test_long_retry_after_is_reported_not_waited(
    fault_server: FaultServer, form: str, code: int
) -> None:
    response = fetch_one(fault_server.url(f"/{form}/{code}/120"))

    assert response.result == "error"
    assert response.status_code == code
    assert response.retry_after is not None
    assert 100 <= response.retry_after <= 120
    assert response.error is not None
    assert response.error.startswith(f"HTTP {code} ")
    assert "(retry after " in response.error
    assert fault_server.hits(f"/{form}/{code}/120") == 1


def test_short_retry_after_is_waited_then_retried(fault_server: FaultServer) -> None:
    attempts: list[float] = []

    def busy_once(h) -> None:  # type: ignore[no-untyped-def]
        attempts.append(1)
        if len(attempts) == 1:
            h.reply(429, b"", {"Retry-After": "1"})
        else:
            h.reply(200, RSS)

    fault_server.route("/busy", busy_once)

    response = fetch_one(fault_server.url("/busy"), replace(FAST, total_timeout=3.0))

    assert response.result == "ok"
    [first, second] = fault_server.requests("/busy")
    assert second.at - first.at >= 0.9  # the server's wish was honoured


def test_429_without_retry_after_is_not_retried(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/status/429"))

    assert (response.error, response.retry_after) == ("HTTP 429 Too Many Requests", None)
    assert fault_server.hits("/status/429") == 1


@pytest.mark.parametrize(
    ("value", "error", "retry_after"),
    [
        # Capped at a week: the store's next attempt is computed from it.
        ("100000000000000", "HTTP 503 Service Unavailable (retry after 604800s)", 604800.0),
        # "\xb2" (superscript two) is a digit to str.isdigit, not to float: no Retry-After.
        ("\xb2", "HTTP 503 Service Unavailable", None),
    ],
)
def test_an_absurd_retry_after_is_bounded_or_ignored(
    fault_server: FaultServer, value: str, error: str, retry_after: float | None
) -> None:
    fault_server.route("/busy", status=503, headers={"Retry-After": value})

    response = fetch_one(fault_server.url("/busy"), replace(FAST, retries=0))

    assert (response.result, response.error, response.retry_after) == ("error", error, retry_after)


@pytest.mark.parametrize("retry_after", [1e14, float("inf")])
def test_the_next_attempt_after_an_absurd_retry_after_is_a_day_away(retry_after: float) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    assert next_retry(now, 1, retry_after) == now + RETRY_AFTER_CAP


# --- timeouts, broken connections and refused connections ------------------------------------


def test_slower_than_read_timeout(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/slow"), replace(FAST, retries=1))

    assert response.result == "error"
    assert response.error == "timed out after 0.3s (read) (after 2 attempts)"
    assert fault_server.hits("/slow") == 2


def test_total_timeout_covers_a_body_trickling_in(fault_server: FaultServer) -> None:
    # Each chunk arrives within the read timeout, but the whole takes longer than the budget.
    fault_server.route("/trickle", body=RSS, chunks=20, chunk_delay=0.1)

    response = fetch_one(fault_server.url("/trickle"), replace(FAST, total_timeout=0.5))

    assert response.result == "error"
    assert response.error == "timed out after 0.5s (total)"
    assert response.seconds < 1.5


def test_total_budget_does_not_count_waiting_for_a_busy_host(fault_server: FaultServer) -> None:
    # One at a time: the fourth feed waits at least 0.6 s for its turn, more than its budget.
    fault_server.route("/wait", body=RSS, delay=0.2)
    requests = [Request(str(i), fault_server.url(f"/wait?n={i}")) for i in range(4)]
    options = replace(FAST, per_host=1, read_timeout=1.0, total_timeout=0.5)

    responses = fetch_all(requests, user_agent=UA, options=options)

    assert [r.result for r in responses] == ["ok"] * 4
    assert all(r.seconds < 0.5 for r in responses)


def test_truncated_body(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/truncated"), replace(FAST, retries=0))

    assert response.result == "error"
    assert response.error == "connection closed before the body was complete"


def test_empty_body(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/empty"))

    assert (response.result, response.error, response.status_code) == (
        "error",
        "empty response body",
        200,
    )


def test_connection_refused() -> None:
    with FaultServer() as server:
        url = server.url("/feed")  # the port is free once the server is gone

    response = fetch_one(url, replace(FAST, retries=0))

    assert (response.result, response.error) == ("error", "connection refused")


def test_https_to_a_server_that_speaks_no_tls(fault_server: FaultServer) -> None:
    url = fault_server.url("/feed").replace("http://", "https://", 1)

    response = fetch_one(url, replace(FAST, retries=0))

    assert response.result == "error"
    assert response.error is not None
    assert response.error.startswith("TLS error with 127.0.0.1: ")


def test_a_server_that_never_pauses_still_ends_at_the_total_budget(
    fault_server: FaultServer,
) -> None:
    # Endless 1xx responses: bytes every loop cycle, so no timer would ever get its turn.
    hung_up = threading.Event()

    def endless_1xx(h) -> None:  # type: ignore[no-untyped-def]
        patience = time.monotonic() + 20  # 40x the budget: ends the test if the client never does
        try:
            while time.monotonic() < patience and not fault_server.stopping.is_set():
                h.wfile.write(b"HTTP/1.1 102 Processing\r\n\r\n" * 1000)
        except OSError:
            hung_up.set()
        h.close_connection = True

    fault_server.route("/endless", endless_1xx)

    response = fetch_one(fault_server.url("/endless"), replace(FAST, total_timeout=0.5))

    assert (response.result, response.error) == ("error", "timed out after 0.5s (total)")
    assert hung_up.wait(10)  # by the client, not by the server's patience running out


def test_a_connect_timeout_of_the_system_is_not_called_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def system_timed_out(self, origin, host, port, tls):  # type: ignore[no-untyped-def]
        raise OSError(errno.ETIMEDOUT, f"Connect call failed ('{host}', {port})")

    monkeypatch.setattr(_Fetcher, "_dial", system_timed_out)

    response = fetch_one("http://127.0.0.1:9/feed", replace(FAST, retries=0))

    assert response.error == (
        f"connection failed: [Errno {errno.ETIMEDOUT}] Connect call failed ('127.0.0.1', 9)"
    )


def test_a_connect_timeout_while_the_ca_bundle_loads_fails_only_that_feed(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CA bundle loads until the feed has its response: its connect timed out meanwhile.
    import catalysts.http

    loaded = threading.Event()
    load = catalysts.http._tls_context

    def slow_load() -> ssl.SSLContext:
        loaded.wait(10)  # bounded, so that a broken run cannot hang the tests
        return load()

    monkeypatch.setattr(catalysts.http, "_tls_context", slow_load)
    url = fault_server.url("/feed").replace("http://", "https://", 1)

    responses = fetch_all(
        [Request("f", url)],
        user_agent=UA,
        options=replace(FAST, connect_timeout=0.05, retries=0),
        on_response=lambda _: loaded.set(),
    )

    assert [(r.result, r.error) for r in responses] == [
        ("error", "timed out after 0.05s (connect)")
    ]


def dead_name_server(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event, hold: float
) -> None:
    """Lookups of "dead*" hosts hang as on a dead name server (until `release` is set or
    `hold` seconds pass, then fail); "alive.test" is 127.0.0.1."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(host).startswith("dead"):
            release.wait(hold)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "alive.test":
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_lookups_stuck_on_a_dead_name_server_do_not_starve_other_feeds(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lookup cannot be cancelled: after its feed's connect timeout it keeps its thread
    # until the resolver gives up (often 10-30 s). Feeds whose name server is dead must not
    # leave the healthy feed's lookup queued until its own connect timeout. 33 of them fill
    # asyncio's default executor on any machine: it has at most 32 threads.
    clear_proxy_env(monkeypatch)
    release = threading.Event()
    dead_name_server(monkeypatch, release, 10)
    port = fault_server.base_url.rsplit(":", 1)[1]
    dead = [Request(f"d{i}", f"http://dead{i}.test/feed") for i in range(33)]
    # The healthy feed asks last, when every stuck lookup has been started.
    requests = [*dead, Request("alive", f"http://alive.test:{port}/feed")]
    options = replace(FAST, concurrency=40, connect_timeout=1.0, total_timeout=2.0, retries=0)

    def on_response(response: Response) -> None:
        if response.feed_id == "alive":
            release.set()  # the name server recovers: the run need not wait for it

    try:
        got = fetch_all(requests, user_agent=UA, options=options, on_response=on_response)
    finally:
        release.set()
    responses = {r.feed_id: r for r in got}
    assert responses["alive"].result == "ok", responses["alive"].error
    assert all(responses[r.feed_id].result == "error" for r in dead)


def test_a_run_does_not_wait_for_lookups_stuck_on_a_dead_name_server(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lookup cannot be cancelled. Before, asyncio.run waited for the executor threads
    # stuck in one, so a run lasted as long as the resolver took to give up.
    clear_proxy_env(monkeypatch)
    release = threading.Event()
    dead_name_server(monkeypatch, release, 60)  # released only when the test ends
    port = fault_server.base_url.rsplit(":", 1)[1]
    requests = [
        *(Request(f"d{i}", f"http://dead{i}.test/feed") for i in range(3)),
        Request("alive", f"http://alive.test:{port}/feed"),
    ]
    options = replace(FAST, connect_timeout=0.5, total_timeout=1.0, retries=0)
    started = time.monotonic()
    try:
        got = fetch_all(requests, user_agent=UA, options=options)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert [(r.feed_id, r.result) for r in got] == [
        ("d0", "error"),
        ("d1", "error"),
        ("d2", "error"),
        ("alive", "ok"),
    ]
    assert got[0].error == "timed out after 0.5s (connect)"
    assert elapsed < 30  # the lookups are held for 60 s


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key, made by `openssl`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 that answers every request with RSS on a kept-alive
    connection, and never answers a client's close_notify: each connection stays open until
    the block ends. Yields its base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve(raw: socket.socket) -> None:
        with raw:
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    buffer = b""
                    while data := conn.recv(65536):
                        buffer += data
                        while b"\r\n\r\n" in buffer:
                            _, _, buffer = buffer.partition(b"\r\n\r\n")
                            conn.sendall(
                                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(RSS)
                            )
                            conn.sendall(RSS)
                    done.wait(30)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()


def test_kept_alive_tls_connections_are_closed_by_the_end_of_the_run(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A graceful TLS close waits for the server's close_notify, which this server never sends:
    # the socket would outlive the run's event loop.
    cert, key = tls_files
    clear_proxy_env(monkeypatch)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    with tls_server(cert, key) as base, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        requests = [Request(str(i), f"{base}/{i}") for i in range(3)]
        responses = fetch_all(requests, user_agent=UA, options=replace(FAST, per_host=1))
        gc.collect()

    assert [(r.result, r.body) for r in responses] == [("ok", RSS)] * 3
    assert [str(w.message) for w in caught if "unclosed" in str(w.message)] == []


# --- redirects -------------------------------------------------------------------------------


def test_redirects_are_followed_and_the_final_url_reported(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/redirect/chain/5"))

    assert response.result == "ok"
    assert response.body == RSS
    assert response.url == fault_server.url("/feed")
    # Conditional headers and the User-Agent go along on every hop.
    assert all(r.headers["User-Agent"] == UA for r in fault_server.requests())


def test_too_many_redirects(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/redirect/chain/6"))

    assert (response.result, response.error) == ("error", "too many redirects (6)")
    assert fault_server.hits("/feed") == 0


def test_redirect_loop(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/redirect-loop"))

    assert (response.result, response.error) == ("error", "too many redirects (6)")
    assert len(fault_server.requests()) == 6


@pytest.mark.parametrize(
    ("path", "target"),
    [("/redirect/ftp", "ftp://127.0.0.1/feed"), ("/redirect/file", "file:///etc/passwd")],
)
def test_redirect_to_non_http_is_refused(fault_server: FaultServer, path: str, target: str) -> None:
    response = fetch_one(fault_server.url(path))

    assert response.result == "error"
    assert response.error == f"redirect to non-http URL {target}"
    assert response.body is None  # /etc/passwd was never read


def test_a_non_ascii_path_is_sent_percent_encoded(fault_server: FaultServer) -> None:
    fault_server.route("/caf%C3%A9", body=RSS)

    response = fetch_one(fault_server.base_url + "/café?q=1")

    assert (response.result, response.body) == ("ok", RSS)
    assert [r.path for r in fault_server.requests()] == ["/caf%C3%A9?q=1"]


@pytest.mark.parametrize("location", [b"/caf\xc3\xa9", b"/caf\xe9"], ids=["utf-8", "latin-1"])
def test_a_raw_non_ascii_location_is_read_as_utf8_else_latin1(
    fault_server: FaultServer, location: bytes
) -> None:
    def moved(h) -> None:  # type: ignore[no-untyped-def]
        h.wfile.write(b"HTTP/1.1 301 Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location)

    fault_server.route("/start", moved)
    fault_server.route("/caf%C3%A9", body=RSS)

    response = fetch_one(fault_server.url("/start"))

    assert (response.result, response.url) == ("ok", fault_server.url("/café"))
    assert [r.path for r in fault_server.requests()] == ["/start", "/caf%C3%A9"]


@pytest.mark.parametrize(
    ("path", "sent"),
    [("/x/../feed", "/feed"), ("/x/./y/../../feed?q=/../z", "/feed?q=/../z"), ("/..", "/")],
)
def test_dot_segments_are_resolved_before_sending(
    fault_server: FaultServer, path: str, sent: str
) -> None:
    fetch_one(fault_server.url(path), replace(FAST, retries=0))

    assert [r.path for r in fault_server.requests()] == [sent]


def test_a_chunked_body_is_decoded_and_its_connection_kept(fault_server: FaultServer) -> None:
    ports: list[int] = []

    def chunked(h) -> None:  # type: ignore[no-untyped-def]
        ports.append(h.client_address[1])
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(RSS), 100):
            piece = RSS[i : i + 100]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    fault_server.route("/chunked", chunked)
    requests = [Request(str(i), fault_server.url(f"/chunked?n={i}")) for i in range(3)]

    responses = fetch_all(requests, user_agent=UA, options=replace(FAST, per_host=1))

    assert [(r.result, r.body) for r in responses] == [("ok", RSS)] * 3
    assert len(set(ports)) == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    fault_server: FaultServer,
) -> None:
    ports: list[int] = []

    def reply_then_hang_up(h) -> None:  # type: ignore[no-untyped-def]
        ports.append(h.client_address[1])
        h.reply(200, RSS)  # no "Connection: close": the client learns it from the socket
        h.close_connection = True

    fault_server.route("/once", reply_then_hang_up)
    requests = [Request(str(i), fault_server.url(f"/once?n={i}")) for i in range(3)]
    # The gap lets each hang-up arrive before the host's next request goes out.
    options = replace(FAST, per_host=1, host_gap=0.2, retries=0)

    responses = fetch_all(requests, user_agent=UA, options=options)

    assert [r.result for r in responses] == ["ok"] * 3
    assert len(set(ports)) == 3


# --- size cap and content encodings ---------------------------------------------------------


def test_body_over_the_cap_stops_while_streaming(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/huge"), replace(FAST, max_bytes=1 * MB))

    assert (response.result, response.error) == ("error", "response larger than 1 MB")
    [stream] = fault_server.streams
    for _ in range(100):  # the server notices the hang-up on its next write
        if stream.done:
            break
        threading.Event().wait(0.02)
    assert stream.client_closed
    # Socket buffers hold a few MB at most; the 64 MB body was never sent, let alone buffered.
    assert stream.sent < HUGE_SIZE // 4


def test_declared_length_over_the_cap_is_refused_before_reading(
    fault_server: FaultServer,
) -> None:
    response = fetch_one(fault_server.url("/huge-declared"))

    assert (response.result, response.error) == ("error", "response larger than 20 MB")


def test_gzip_bomb_stops_at_the_cap_without_inflating_it_all(fault_server: FaultServer) -> None:
    gzip_bomb()  # built, and the client warmed up, before measuring: only the fetch counts
    fetch_one(fault_server.url("/feed"))
    tracemalloc.start()
    try:
        response = fetch_one(fault_server.url("/gzip-bomb"), replace(FAST, max_bytes=4 * MB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (response.result, response.error) == ("error", "response larger than 4 MB")
    assert peak < 6 * MB  # the bomb inflates to 50 MB


def test_gzip_within_the_cap_is_decoded(fault_server: FaultServer) -> None:
    import gzip

    fault_server.route("/gz", body=gzip.compress(RSS), headers={"Content-Encoding": "gzip"})

    assert fetch_one(fault_server.url("/gz")).body == RSS


@pytest.mark.parametrize("path", ["/deflate", "/raw-deflate"])
def test_deflate_zlib_and_raw(fault_server: FaultServer, path: str) -> None:
    assert fetch_one(fault_server.url(path)).body == RSS


def test_invalid_gzip(fault_server: FaultServer) -> None:
    response = fetch_one(fault_server.url("/invalid-gzip"))

    assert (response.result, response.error) == ("error", "invalid gzip data")


def test_truncated_gzip(fault_server: FaultServer) -> None:
    import gzip

    fault_server.route(
        "/gz-cut", body=gzip.compress(RSS * 50)[:200], headers={"Content-Encoding": "gzip"}
    )

    response = fetch_one(fault_server.url("/gz-cut"))

    assert (response.result, response.error) == ("error", "invalid gzip data (truncated)")


def test_unsupported_content_encoding(fault_server: FaultServer) -> None:
    fault_server.route("/br", body=b"\x00\x01", headers={"Content-Encoding": "br"})

    response = fetch_one(fault_server.url("/br"))

    assert (response.result, response.error) == ("error", "unsupported content encoding br")


# --- files and odd URLs -----------------------------------------------------------------------


def test_file_url_and_plain_path(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(RSS)

    by_url, by_path = fetch_all(
        [Request("a", feed.as_uri()), Request("b", str(feed))], user_agent=UA, options=FAST
    )

    assert (by_url.result, by_url.body) == ("ok", RSS)
    assert (by_path.result, by_path.body) == ("ok", RSS)
    assert by_path.content_type in ("application/xml", "text/xml")


def test_missing_file_and_file_over_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 2048)
    missing = tmp_path / "missing.xml"

    gone, too_big = fetch_all(
        [Request("a", str(missing)), Request("b", big.as_uri())],
        user_agent=UA,
        options=replace(FAST, max_bytes=1024),
    )

    assert (gone.result, gone.error) == ("error", f"file not found: {missing}")
    assert (too_big.result, too_big.error) == ("error", f"file larger than 1 KB: {big}")


def test_a_path_with_a_nul_is_an_error_with_a_reason(tmp_path: Path) -> None:
    # read_file serves fetch_all's thread and ingest's workers alike: a reason either way.
    path = f"{tmp_path}/a\x00b.xml"
    for response in (
        fetch_one(path),
        read_file(Request("f", path), FAST.max_bytes),
    ):
        assert response.result == "error"
        assert response.error == f"cannot read {tmp_path}/a?b.xml: embedded null byte"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://", "invalid URL http://: no host"),
        (
            "http://exa mple.com/",
            "invalid URL http://exa mple.com/: contains spaces or control characters",
        ),
        ("https://[::1/feed", "invalid URL https://[::1/feed: Invalid IPv6 URL"),
        (
            "http://127.0.0.1:99999/",
            "invalid URL http://127.0.0.1:99999/: Port out of range 0-65535",
        ),
    ],
)
def test_invalid_urls_are_errors(url: str, reason: str) -> None:
    response = fetch_one(url)

    assert (response.result, response.error) == ("error", reason)


def test_redirect_to_an_invalid_url(fault_server: FaultServer) -> None:
    fault_server.route("/bad-redirect", status=302, headers={"Location": "http://:0/"})

    response = fetch_one(fault_server.url("/bad-redirect"))

    assert response.result == "error"
    assert response.error == "redirect to invalid URL http://:0/: no host"


def test_unsupported_scheme() -> None:
    response = fetch_one("ftp://example.com/feed")

    assert (response.result, response.error) == ("error", "unsupported URL scheme ftp")


# --- many feeds at once --------------------------------------------------------------------------


def test_one_bad_feed_among_many_leaves_the_others_ok(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    good = [Request(f"good{i}", fault_server.url(f"/feed?n={i}")) for i in range(20)]
    bad = [
        Request("404", fault_server.url("/status/404")),
        Request("loop", fault_server.url("/redirect-loop")),
        Request("bomb", fault_server.url("/gzip-bomb")),
        Request("slow", fault_server.url("/slow")),
        Request("file", str(tmp_path / "nope.xml")),
        Request("scheme", "gopher://x/"),
    ]
    requests = good[:10] + bad + good[10:]
    seen: list[str] = []

    responses = fetch_all(
        requests,
        user_agent=UA,
        options=replace(FAST, retries=0, max_bytes=1 * MB),
        on_response=lambda r: seen.append(r.feed_id),
    )

    assert [r.feed_id for r in responses] == [r.feed_id for r in requests]
    assert sorted(seen) == sorted(r.feed_id for r in requests)
    by_id = {r.feed_id: r for r in responses}
    assert all(by_id[r.feed_id].result == "ok" for r in good)
    assert all(by_id[r.feed_id].result == "error" and by_id[r.feed_id].error for r in bad)


def test_per_host_limit_holds(fault_server: FaultServer) -> None:
    fault_server.route("/wait", body=RSS, delay=0.15)
    requests = [Request(str(i), fault_server.url(f"/wait?n={i}")) for i in range(9)]

    responses = fetch_all(
        requests, user_agent=UA, options=replace(FAST, per_host=3, read_timeout=2.0)
    )

    assert all(r.result == "ok" for r in responses)
    assert fault_server.max_in_flight == 3


def test_global_limit_holds(fault_server: FaultServer) -> None:
    fault_server.route("/wait", body=RSS, delay=0.15)
    requests = [Request(str(i), fault_server.url(f"/wait?n={i}")) for i in range(15)]

    responses = fetch_all(
        requests,
        user_agent=UA,
        options=replace(FAST, per_host=100, concurrency=5, read_timeout=2.0),
    )

    assert all(r.result == "ok" for r in responses)
    assert fault_server.max_in_flight == 5


@pytest.mark.skipif(not loopback_hosts_available(8), reason="needs 127.0.0.2-8 on loopback")
def test_default_limits_keep_sixteen_in_flight_across_hosts() -> None:
    gauge = Gauge()
    with ExitStack() as stack:
        servers = [stack.enter_context(FaultServer(f"127.0.0.{i}", gauge)) for i in range(1, 9)]
        # Long enough for all 16 to overlap on a loaded machine (with 0.3 s the test failed
        # once while the machine ran four test suites and benchmarks at once).
        urls = [s.route("/wait", body=RSS, delay=1.0) for s in servers]
        requests = [Request(str(i), urls[i % 8] + f"?n={i}") for i in range(32)]

        responses = fetch_all(requests, user_agent=UA, options=HttpOptions(host_gap=0.0))

    assert all(r.result == "ok" for r in responses)
    assert gauge.max == 16  # 8 hosts x 4 per host would allow 32


@pytest.mark.parametrize("process", [False, True], ids=["threaded", "child-process"])
def test_file_servers_serve_files_with_latency_and_304(tmp_path: Path, process: bool) -> None:
    (tmp_path / "a.xml").write_bytes(RSS)
    with file_servers(tmp_path, latency=0.01, hosts=1, process=process) as [base]:
        [first] = fetch_all([Request("a", base + "a.xml")], user_agent=UA, options=FAST)
        [again, missing] = fetch_all(
            [Request("a", base + "a.xml", etag=first.etag), Request("m", base + "nope.xml")],
            user_agent=UA,
            options=FAST,
        )

    assert (first.result, first.body) == ("ok", RSS)
    assert first.etag and first.last_modified
    assert again.result == "not-modified"
    assert (missing.result, missing.error) == ("error", "HTTP 404 Not Found")


@pytest.mark.skipif(not loopback_hosts_available(2), reason="needs 127.0.0.2 on loopback")
def test_redirects_across_hosts_while_the_target_hosts_feeds_finish() -> None:
    with FaultServer("127.0.0.1") as first, FaultServer("127.0.0.2") as second:
        second.route("/slow-feed", body=RSS, delay=0.2)
        first.route("/moved", status=301, headers={"Location": second.url("/slow-feed")})
        requests = [
            Request("direct", second.url("/feed")),  # done long before the redirect arrives
            Request("moved", first.url("/moved")),
            Request("moved-again", first.url("/moved?again")),
        ]

        responses = fetch_all(requests, user_agent=UA, options=FAST)

    assert [r.result for r in responses] == ["ok", "ok", "ok"]
    assert responses[1].url == second.url("/slow-feed")
    assert second.hits("/slow-feed") == 2


def test_host_gap_spaces_request_starts(fault_server: FaultServer) -> None:
    requests = [Request(str(i), fault_server.url(f"/feed?n={i}")) for i in range(5)]
    fetch_one(fault_server.url("/etag"))  # the first fetch of a process is slow to start

    fetch_all(requests, user_agent=UA, options=replace(FAST, host_gap=0.1))

    starts = sorted(r.at for r in fault_server.requests("/feed"))
    # Without the gap all five arrive within milliseconds; with it, 0.4 s apart less the first
    # request's connection set-up, which delays it toward the second.
    assert starts[-1] - starts[0] >= 0.25
    assert starts[-1] - starts[1] >= 0.27


def test_fetch_all_works_inside_a_running_event_loop(fault_server: FaultServer) -> None:
    async def main() -> list[Response]:
        return fetch_all([Request("f", fault_server.url("/feed"))], user_agent=UA, options=FAST)

    [response] = asyncio.run(main())

    assert response.result == "ok"


def test_fetch_all_works_from_a_worker_thread(fault_server: FaultServer) -> None:
    results: list[Response] = []
    worker = threading.Thread(
        target=lambda: results.extend(
            fetch_all([Request("f", fault_server.url("/feed"))], user_agent=UA, options=FAST)
        )
    )
    worker.start()
    worker.join(10)

    assert [r.result for r in results] == ["ok"]


def test_a_failing_callback_propagates(fault_server: FaultServer) -> None:
    def boom(response: Response) -> None:
        raise RuntimeError("store is gone")

    with pytest.raises(RuntimeError, match="store is gone"):
        fetch_all(
            [Request("f", fault_server.url("/feed"))], user_agent=UA, options=FAST, on_response=boom
        )


def test_a_failing_callback_stops_the_other_feeds_and_closes_their_connections(
    fault_server: FaultServer,
) -> None:
    arrived = threading.Event()
    hung_up = threading.Event()

    def stalled(h) -> None:  # type: ignore[no-untyped-def]
        arrived.set()
        h.connection.settimeout(20)  # never answers: the client's hang-up ends the wait
        try:
            if h.connection.recv(1) == b"":
                hung_up.set()
        except OSError:
            hung_up.set()
        h.close_connection = True

    def after_stalled(h) -> None:  # type: ignore[no-untyped-def]
        arrived.wait(10)  # so that the stalled feed is in flight when the callback fails
        h.reply(200, RSS)

    fault_server.route("/stalled", stalled)
    fault_server.route("/fast", after_stalled)
    requests = [
        Request("stalled", fault_server.url("/stalled")),
        Request("fast", fault_server.url("/fast")),
    ]
    options = replace(FAST, read_timeout=20, total_timeout=30)

    def boom(response: Response) -> None:
        if response.feed_id == "fast":
            raise RuntimeError("store is gone")

    async def main() -> set[asyncio.Task[object]]:
        with pytest.raises(RuntimeError, match="store is gone"):
            await fetch_all_async(requests, UA, options, boom)
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    assert asyncio.run(main()) == set()
    assert hung_up.wait(10)  # the stalled feed's connection was closed, not left to the GC


# --- User-Agent ----------------------------------------------------------------------------------


def test_user_agent_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALYSTS_USER_AGENT", raising=False)
    assert default_user_agent() == f"catalysts/{__version__} (+https://github.com/catalysts)"
    assert resolve_user_agent(None) == default_user_agent()
    assert resolve_user_agent("Me me@example.com") == "Me me@example.com"
    monkeypatch.setenv("CATALYSTS_USER_AGENT", "Env env@example.com")
    assert resolve_user_agent("Me me@example.com") == "Env env@example.com"
    monkeypatch.setenv("CATALYSTS_USER_AGENT", " ")
    assert resolve_user_agent(None) == default_user_agent()


@pytest.mark.parametrize(
    ("user_agent", "validators", "reason"),
    [
        ("t\r\nX-Evil: 1", {}, "invalid User-Agent value t??X-Evil: 1"),
        ("t", {"etag": 'W/"1"\nX-Evil: 1'}, 'invalid ETag value W/"1"?X-Evil: 1'),
        ("t", {"last_modified": " Wed"}, "invalid Last-Modified value  Wed"),
        ("t", {"etag": "x\r" + "y" * 5000}, "invalid ETag value x?" + "y" * 115 + "..."),
    ],
)
def test_a_header_value_that_cannot_be_sent_is_a_short_reason(
    fault_server: FaultServer, user_agent: str, validators: dict[str, str], reason: str
) -> None:
    request = Request("f", fault_server.url("/feed"), **validators)

    [response] = fetch_all([request], user_agent=user_agent, options=FAST)

    assert (response.result, response.error) == ("error", reason)
    assert fault_server.requests() == []  # nothing was sent, let alone an injected header


def test_only_a_name_that_does_not_exist_is_not_retried() -> None:
    from catalysts.http import _unknown_host

    def failure(errno: int) -> OSError:
        exc = OSError("boom")
        exc.__cause__ = socket.gaierror(errno, "lookup failed")
        return exc

    assert _unknown_host(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert _unknown_host(failure(socket.EAI_NONAME))
    assert not _unknown_host(failure(socket.EAI_AGAIN))  # a flaky resolver: worth a retry
    assert not _unknown_host(ConnectionRefusedError("connection refused"))
