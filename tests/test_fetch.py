"""The fetch stage against a misbehaving HTTP server written at the byte level.

Every server here runs on 127.0.0.1 inside the test's own event loop and misbehaves on
purpose: drips, stalls, endless bodies, compression bombs, odd encodings, redirect
loops, hostile redirect targets, rate limits. Waits poll a condition; the only sleeps
are the server's own misbehaviour (a drip), never the test hoping for timing.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import resource
import socket
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from ipaddress import ip_address
from typing import Any, TypeVar

import brotli  # type: ignore[import-untyped]
import httpx
import pytest
from conftest import Clock

from monitor.errors import FeedError
from monitor.fetch import (
    USER_AGENT,
    AddressPolicy,
    Fetcher,
    fetch,
    make_client,
    non_public_reason,
    numeric_host,
    parse_retry_after,
    url_problem,
)

T = TypeVar("T")
LOCAL = ("127.0.0.0/8",)
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MiB = 2**20


# --- a server that misbehaves on purpose -----------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    #: Header names lower-cased; a repeated header keeps its values joined with ", ".
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def head(status: int, headers: Iterable[tuple[str, str]] = (), reason: str = "Whatever") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(status: int = 200, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> Handler:
    """A well-formed response with a Content-Length."""
    fixed = [*headers, ("Content-Length", str(len(body)))]

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, fixed) + body)
        await writer.drain()

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return reply(status, headers=[("Location", location)])


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 (free port), one request per connection.

    ``routes`` maps a path to a handler that writes whatever bytes it likes; unknown
    paths get 404. It records every request and counts connections.
    """

    def __init__(self, routes: Mapping[str, Handler] | None = None) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.requests: list[Request] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The work runs in a task of our own, so closing the server cancels that one and
        # never the task asyncio made for the connection (3.11 logs an error for that).
        task = asyncio.create_task(self._handle(reader, writer))
        self._tasks.add(task)
        with suppress(asyncio.CancelledError):
            await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections += 1
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in filter(None, lines):
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = (
                    f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
                )
            request = Request(method, target, headers)
            self.requests.append(request)
            handler = self.routes.get(request.path, reply(404, b"not here"))
            await handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: that is what a good client does to a bad server
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` on the event loop until it is true (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.005)


async def failure(fetcher: Fetcher, url: str, **kwargs: Any) -> FeedError:
    with pytest.raises(FeedError) as info:
        await fetcher.fetch(url, **kwargs)
    return info.value


def resolver(table: Mapping[str, Sequence[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """An injectable DNS: names in ``table``, every other name does not exist."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


# --- the ordinary case -----------------------------------------------------------------------


@pytest.mark.process
def test_fetch_returns_body_and_sends_honest_headers() -> None:
    async def main() -> None:
        routes = {"/feed": reply(200, RSS, [("Content-Type", "application/rss+xml")])}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            result = await fetcher.fetch(server.url("/feed"))
        assert (result.status, result.content, result.permanent_url) == (200, RSS, None)
        assert result.headers["content-type"] == "application/rss+xml"
        sent = server.requests[0].headers
        assert sent["user-agent"] == USER_AGENT
        assert "https://github.com/news-monitor/news-monitor" in sent["user-agent"]
        assert sent["accept-encoding"] == "gzip, deflate, br"
        assert "application/rss+xml" in sent["accept"]
        assert "cookie" not in sent and "authorization" not in sent

    run(main())


@pytest.mark.process
def test_wrong_content_type_is_returned_for_the_parser_to_judge() -> None:
    async def main() -> None:
        routes = {"/feed": reply(200, RSS, [("Content-Type", "text/html; charset=latin-1")])}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            result = await fetcher.fetch(server.url("/feed"))
        assert result.content == RSS
        assert result.headers["content-type"] == "text/html; charset=latin-1"

    run(main())


def _gzip_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.process
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZip", gzip.compress),
        ("gzip", _gzip_members),  # two members in a row, as `cat a.gz b.gz`
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),  # what some servers send as "deflate"
        ("br", brotli.compress),
        ("identity", lambda data: data),
    ],
    ids=["gzip", "x-gzip", "GZip", "gzip-members", "deflate", "raw-deflate", "br", "identity"],
)
def test_compressed_bodies_are_decoded(coding: str, encode: Callable[[bytes], bytes]) -> None:
    body = RSS * 2000  # several decode steps
    routes = {"/feed": reply(200, encode(body), [("Content-Encoding", coding)])}

    async def main() -> None:
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            result = await fetcher.fetch(server.url("/feed"))
        assert result.content == body
        # The body handed on is decoded: the wire's coding and length no longer apply.
        assert "content-encoding" not in result.headers
        assert "content-length" not in result.headers

    run(main())


@pytest.mark.process
def test_nested_gzip_is_decoded_once() -> None:
    inner = gzip.compress(RSS, mtime=0)

    async def main() -> None:
        routes = {"/feed": reply(200, gzip.compress(inner), [("Content-Encoding", "gzip")])}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            result = await fetcher.fetch(server.url("/feed"))
        assert result.content == inner  # garbage for the parser, never a second inflate

    run(main())


# --- deadlines -------------------------------------------------------------------------------


def _drip(interval: float) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Length", "100000")]))
        while True:  # one byte per interval: never idle long enough for a read timeout
            writer.write(b"<")
            await writer.drain()
            await asyncio.sleep(interval)

    return handler


async def _stall(request: Request, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # never answers; cancelled when the server closes


async def _stall_body(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(head(200, [("Content-Length", "1000")]) + b"<rss>")
    await writer.drain()
    await asyncio.Event().wait()


@pytest.mark.process
@pytest.mark.parametrize(
    "handler",
    [_drip(0.02), _stall, _stall_body],
    ids=["slow-drip", "stalled-headers", "stalled-body"],
)
def test_one_total_deadline_per_fetch(handler: Handler) -> None:
    async def main() -> None:
        async with (
            RawServer({"/feed": handler}) as server,
            Fetcher(timeout=0.5, allow_private=LOCAL) as fetcher,
        ):
            started = time.monotonic()
            error = await failure(fetcher, server.url("/feed"))
            elapsed = time.monotonic() - started
        assert error.kind == "timeout"
        assert error.message == "no complete response within 0.5s"
        # Abandoned at the deadline (the drip alone would go on for over half an hour).
        assert 0.45 <= elapsed < 3.0

    run(main())


@pytest.mark.process
def test_deadline_covers_all_redirect_hops() -> None:
    """Each hop answers well within the deadline; together they do not."""

    def slow_hop(n: int) -> Handler:
        async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.3)  # the server's slowness, not the test's wait
            await redirect(f"/hop/{n + 1}")(request, writer)

        return handler

    async def main() -> None:
        routes = {f"/hop/{n}": slow_hop(n) for n in range(8)}
        async with RawServer(routes) as server, Fetcher(timeout=1.0, allow_private=LOCAL) as f:
            error = await failure(f, server.url("/hop/0"))
            assert error.kind == "timeout"
            assert "after" in error.message and "redirect" in error.message
            assert 2 <= len(server.requests) <= 5

    run(main())


# --- size caps and compression bombs ---------------------------------------------------------


async def _endless(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(head(200))  # no length: the body runs until the connection closes
    chunk = b"<item/>" * 9000
    while True:
        writer.write(chunk)
        await writer.drain()


@pytest.mark.process
def test_endless_body_is_cut_at_max_bytes() -> None:
    async def main() -> None:
        async with (
            RawServer({"/feed": _endless}) as server,
            Fetcher(max_bytes=MiB, allow_private=LOCAL) as fetcher,
        ):
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "too-large"
        assert "1 MiB" in error.message and "max_bytes" in error.message

    run(main())


@pytest.mark.process
def test_announced_length_over_the_cap_is_refused_before_reading() -> None:
    async def main() -> None:
        # Announces a terabyte and sends nothing: waiting for it would time out.
        routes = {"/feed": _announce(10**12)}
        async with (
            RawServer(routes) as server,
            Fetcher(timeout=5.0, max_bytes=MiB, allow_private=LOCAL) as fetcher,
        ):
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "too-large"
        assert "announces" in error.message

    run(main())


def _announce(length: int) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Length", str(length))]))
        await writer.drain()
        await asyncio.Event().wait()

    return handler


@dataclass
class Bomb:
    """Streams 1 GiB of zeros, compressed as it goes; counts the bytes it sent."""

    coding: str
    sent: int = 0
    produced: int = 0
    finished: bool = False

    async def __call__(self, request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Encoding", self.coding)]))
        if self.coding == "gzip":
            packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            pack, finish = packer.compress, packer.flush
        else:
            packer = brotli.Compressor(quality=1)
            pack, finish = packer.process, packer.finish
        zeros = bytes(MiB)
        for _ in range(1024):  # 1 GiB if anyone read it all
            data = pack(zeros)
            self.produced += MiB
            self.sent += len(data)
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0)  # let the client run: it reads as we produce
        writer.write(finish())
        await writer.drain()
        self.finished = True


@pytest.mark.process
@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_compression_bomb_is_refused_with_bounded_memory(coding: str) -> None:
    bomb = Bomb(coding)

    async def main() -> FeedError:
        async with RawServer({"/feed": bomb}) as server, Fetcher(allow_private=LOCAL) as fetcher:
            return await failure(fetcher, server.url("/feed"))

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        error = run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert error.kind == "too-large"
    assert "15 MiB" in error.message
    # Refused after ~max_bytes of output: the client hung up long before the gigabyte.
    assert not bomb.finished
    print(
        f"{coding} bomb: server produced {bomb.produced / MiB:.0f} MiB in {bomb.sent} bytes; "
        f"peak traced {peak / MiB:.1f} MiB, peak RSS growth {rss_growth / 1024:.1f} MiB"
    )
    # Memory bounds, not timing: Python allocations (output kept + one decode step, the
    # server's buffers included) and the process's peak resident size.
    assert peak < 64 * MiB, f"peak traced allocations {peak / MiB:.1f} MiB"
    assert rss_growth < 64 * 1024, f"peak RSS grew by {rss_growth / 1024:.1f} MiB"


@pytest.mark.process
@pytest.mark.parametrize(
    ("codings", "expected"),
    [
        (["gzip, gzip"], "stacked"),
        (["gzip", "gzip"], "stacked"),  # the same, as two header lines
        (["deflate, br"], "stacked"),
        (["compress"], "unsupported"),
        (["zstd"], "unsupported"),
        (["bogus\x01"], "unsupported"),
    ],
)
def test_unknown_or_stacked_encodings_are_refused(codings: list[str], expected: str) -> None:
    headers = [("Content-Encoding", c) for c in codings]

    async def main() -> None:
        routes = {"/feed": reply(200, gzip.compress(gzip.compress(RSS)), headers)}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "encoding"
        assert expected in error.message

    run(main())


@pytest.mark.process
def test_corrupt_compressed_body_is_an_encoding_error() -> None:
    async def main() -> None:
        routes = {"/feed": reply(200, RSS, [("Content-Encoding", "gzip")])}  # not gzip
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "encoding"
        assert "gzip body is corrupt" in error.message

    run(main())


def _cut(coding: str, encode: Callable[[bytes], bytes]) -> Handler:
    """A close-delimited body (no Content-Length) cut off halfway through its stream."""
    data = encode(bytes(range(256)) * 400)

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Encoding", coding)]) + data[: len(data) // 2])
        await writer.drain()

    return handler


@pytest.mark.process
@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress)],
)
def test_a_compressed_body_cut_off_midway_is_refused(
    coding: str, encode: Callable[[bytes], bytes]
) -> None:
    """Taken as it is, half a feed would be stored and its ETag saved for the rest."""

    async def main() -> None:
        routes = {"/feed": _cut(coding, encode)}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "encoding"
        assert f"the {coding} body ends before its compressed data does" in error.message

    run(main())


@pytest.mark.process
def test_garbage_instead_of_http_is_a_protocol_error() -> None:
    async def garbage(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with (
            RawServer({"/feed": garbage}) as server,
            Fetcher(allow_private=LOCAL) as fetcher,
        ):
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "protocol"

    run(main())


# --- redirects -------------------------------------------------------------------------------


@pytest.mark.process
def test_redirect_loop_is_refused() -> None:
    async def main() -> None:
        routes = {"/a": redirect("/b"), "/b": redirect("/a")}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/a"))
        assert error.kind == "redirects"
        assert error.message.startswith("redirect loop: ")
        assert server.paths() == ["/a", "/b"]

    run(main())


@pytest.mark.process
def test_cookie_wall_redirect_to_the_same_url_is_not_a_loop() -> None:
    async def wall(request: Request, writer: asyncio.StreamWriter) -> None:
        if "consent=yes" in request.headers.get("cookie", ""):
            await reply(200, RSS)(request, writer)
        else:
            await reply(302, headers=[("Location", "/feed"), ("Set-Cookie", "consent=yes")])(
                request, writer
            )

    async def main() -> None:
        async with RawServer({"/feed": wall}) as server, Fetcher(allow_private=LOCAL) as fetcher:
            result = await fetcher.fetch(server.url("/feed"))
            assert result.content == RSS
            # Cookies live for one fetch only: the next fetch starts without them.
            await fetcher.fetch(server.url("/feed"))
        assert [("cookie" in r.headers) for r in server.requests] == [False, True, False, True]

    run(main())


@pytest.mark.process
def test_long_redirect_chain_is_refused() -> None:
    async def main() -> None:
        routes = {f"/hop/{n}": redirect(f"/hop/{n + 1}") for n in range(30)}
        routes["/hop/30"] = reply(200, RSS)
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/hop/0"))
        assert error.kind == "redirects"
        assert "more than 10 redirects" in error.message
        assert len(server.requests) == 11  # the first request and ten redirects, no more

    run(main())


@pytest.mark.process
def test_relative_redirects_are_resolved_against_the_current_url() -> None:
    async def main() -> None:
        routes = {
            "/a/b/start": redirect("../moved?x=1"),
            "/a/moved": redirect("//127.0.0.1:{port}/final"),
            "/final": reply(200, RSS),
        }
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            routes["/a/moved"] = redirect(f"//127.0.0.1:{server.port}/final")
            server.routes.update(routes)
            result = await fetcher.fetch(server.url("/a/b/start"))
        assert result.content == RSS
        assert [r.target for r in server.requests] == ["/a/b/start", "/a/moved?x=1", "/final"]

    run(main())


@pytest.mark.process
@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml", "data:text/xml,<rss/>", "gopher://x/"],
)
def test_redirect_to_another_scheme_is_refused(target: str) -> None:
    async def main() -> None:
        async with (
            RawServer({"/feed": redirect(target)}) as server,
            Fetcher(allow_private=LOCAL) as fetcher,
        ):
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == "scheme"
        assert "only http and https" in error.message
        assert len(server.requests) == 1

    run(main())


@pytest.mark.process
@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("http://[::1/feed", "url"),
        ("http://exa mple.org/feed", "url"),
        ("http://\u00e9vil\u202e.org/feed", "url"),
        ("https://", "url"),
        # Names the resolver or the HTTP client refuse, and a port that does not exist:
        # each one a feed error like the others, not an exception out of the poll.
        ("http://xn--zz/feed", "url"),
        ("http://xn--ls8h.la/feed", "url"),
        ("http://a..b/feed", "url"),
        ("http://" + "a" * 64 + ".org/feed", "url"),
        ("http://127.0.0.1:70000/feed", "url"),
        ("//user:s3cret@bad host/", "url"),
    ],
)
def test_redirect_to_a_malformed_url_is_refused(location: str, kind: str) -> None:
    async def main() -> None:
        async with (
            RawServer({"/feed": redirect(location.encode().decode("latin-1"))}) as server,
            Fetcher(allow_private=LOCAL) as fetcher,
        ):
            error = await failure(fetcher, server.url("/feed"))
        assert error.kind == kind, error
        assert error.message.isprintable()
        assert "s3cret" not in str(error)

    run(main())


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("ftp://example.org/feed", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("feed.xml", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("http://[::1/feed", "url"),
        ("http://exa mple.org/feed", "url"),
        ("http:///feed", "url"),
        ("http://ex%41mple.org/feed", "url"),
        ("http://u:pw@[zz]/feed", "url"),
        ("http://a..b/feed", "url"),
        ("http://example.org:70000/feed", "url"),
        # Passwords with characters URLs reserve: the parser's own words would quote
        # a piece of them ("Invalid port: 'pa'").
        ("http://u:pa/pw@example.org/feed", "url"),
        ("http://u:pa?pw@example.org/feed", "url"),
        ("http://u:pa#pw@example.org/feed", "url"),
    ],
)
def test_only_valid_http_and_https_urls_are_fetched(url: str, kind: str) -> None:
    async def main() -> None:
        async with Fetcher(resolver=resolver({})) as fetcher:
            error = await failure(fetcher, url)
        assert error.kind == kind
        assert "pw" not in str(error)
        assert url_problem(url) == error.message  # what `news-monitor check` says

    run(main())


@pytest.mark.process
def test_permanent_url_only_when_every_hop_was_permanent() -> None:
    async def main() -> None:
        routes = {
            "/old": redirect("/mid", 301),
            "/mid": redirect("/feed", 308),
            "/old2": redirect("/tmp", 301),
            "/tmp": redirect("/feed", 302),
            "/feed": reply(200, RSS),
        }
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            moved = await fetcher.fetch(server.url("/old"))
            mixed = await fetcher.fetch(server.url("/old2"))
            direct = await fetcher.fetch(server.url("/feed"))
            # Credentials sent to the new URL (same origin) come with it.
            user = server.url("/old").replace("http://", "http://reader:s3cret@")
            with_creds = await fetcher.fetch(user)
            final = server.url("/feed")
        assert moved.permanent_url == final
        assert moved.url == server.url("/old")
        assert mixed.permanent_url is None
        assert direct.permanent_url is None
        assert with_creds.permanent_url == final.replace("http://", "http://reader:s3cret@")

    run(main())


# --- SSRF --------------------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "0x7f.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "0",
        "localhost",
    ],
)
def test_numeric_and_local_hosts_are_refused(host: str) -> None:
    async def main() -> None:
        async with RawServer({"/feed": reply(200, RSS)}) as server, Fetcher() as fetcher:
            error = await failure(fetcher, server.url("/feed", host=host))
            assert server.connections == 0  # refused before connecting
        assert error.kind == "ssrf"
        assert "fetch.allow_private" in error.message

    run(main())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "private"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 around 10.0.0.1
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 around 8.8.8.8: fine on IPv6-only hosts
    ],
)
def test_non_public_addresses(address: str, reason: str | None) -> None:
    assert non_public_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("[::1]", "::1"),
        ("feeds.example.org", None),
        ("1e100.net", None),
        ("0xcafe.example", None),
    ],
)
def test_numeric_host_is_read_like_inet_aton(host: str, address: str | None) -> None:
    found = numeric_host(host)
    assert (str(found) if found else None) == address


@pytest.mark.process
def test_redirects_to_private_addresses_are_refused_hop_by_hop() -> None:
    async def main() -> None:
        dns = resolver({"feed.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})
        async with (
            RawServer() as server,
            Fetcher(allow_private=["feed.test"], resolver=dns) as fetcher,
        ):
            server.routes = {
                "/numeric": redirect(server.url("/feed")),
                "/spelled": redirect(server.url("/feed", host="2130706433")),
                "/named": redirect(server.url("/feed", host="evil.test")),
                "/feed": reply(200, RSS),
            }
            for path in ("/numeric", "/spelled", "/named"):
                error = await failure(fetcher, server.url(path, host="feed.test"))
                assert error.kind == "ssrf", error
                assert "fetch.allow_private" in error.message
            # The allowed name still works, and only it was ever asked.
            assert (await fetcher.fetch(server.url("/feed", host="feed.test"))).content == RSS
        assert server.paths() == ["/numeric", "/spelled", "/named", "/feed"]

    run(main())


@pytest.mark.process
def test_allow_private_by_network_or_by_name() -> None:
    async def main() -> None:
        dns = resolver({"intranet.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        async with RawServer({"/feed": reply(200, RSS)}) as server:
            async with Fetcher(allow_private=["127.0.0.0/8"]) as fetcher:
                assert (await fetcher.fetch(server.url("/feed"))).content == RSS
            async with Fetcher(allow_private=["intranet.test"], resolver=dns) as fetcher:
                ok = await fetcher.fetch(server.url("/feed", host="intranet.test"))
                assert ok.content == RSS
                error = await failure(fetcher, server.url("/feed", host="other.test"))
                assert error.kind == "ssrf"
            async with Fetcher(allow_private=["10.0.0.0/8"], resolver=dns) as fetcher:
                error = await failure(fetcher, server.url("/feed", host="intranet.test"))
                assert "intranet.test resolves to 127.0.0.1, a loopback" in error.message
        assert server.paths() == ["/feed", "/feed"]

    run(main())


@pytest.mark.process
def test_connection_goes_to_the_address_that_was_checked() -> None:
    """feed.test exists only in the injected resolver: the socket is opened to the
    address the guard checked, never re-resolved by the system (no rebinding window),
    while the request still names the host."""

    async def main() -> None:
        calls: list[str] = []
        table = resolver({"feed.test": ["127.0.0.1"]})

        async def counting(host: str, port: int) -> list[str]:
            calls.append(host)
            return await table(host, port)

        async with (
            RawServer({"/feed": reply(200, RSS)}) as server,
            Fetcher(allow_private=LOCAL, resolver=counting) as fetcher,
        ):
            result = await fetcher.fetch(server.url("/feed", host="feed.test"))
        assert result.content == RSS
        assert calls == ["feed.test"]
        assert server.requests[0].headers["host"] == f"feed.test:{server.port}"

    run(main())


def test_mixed_public_and_private_answer_is_refused() -> None:
    async def main() -> None:
        dns = resolver({"rebind.test": ["93.184.216.34", "127.0.0.1"]})
        async with Fetcher(resolver=dns) as fetcher:
            error = await failure(fetcher, "http://rebind.test/feed")
        assert error.kind == "ssrf"

    run(main())


def test_checks_run_before_each_hop_with_an_injected_transport() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/start":
            return httpx.Response(301, headers={"Location": "http://169.254.169.254/latest"})
        return httpx.Response(200, content=RSS)

    async def main() -> None:
        dns = resolver({"feeds.example": ["93.184.216.34"]})
        transport = httpx.MockTransport(handler)
        async with Fetcher(transport=transport, resolver=dns) as fetcher:
            error = await failure(fetcher, "http://feeds.example/start")
            assert error.kind == "ssrf"
            assert "169.254.169.254 is a link-local address" in error.message
        assert seen == ["http://feeds.example/start"]

    run(main())


def test_allow_private_rejects_malformed_entries() -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a host"):
        AddressPolicy(["10.0.0.0/33"])


# --- errors the scheduler acts on ------------------------------------------------------------


@pytest.mark.process
def test_429_retry_after_in_seconds() -> None:
    async def main() -> None:
        routes = {"/feed": reply(429, headers=[("Retry-After", "120")])}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as fetcher:
            error = await failure(fetcher, server.url("/feed"))
        assert (error.kind, error.status, error.retry_after, error.gone) == (
            "http",
            429,
            120.0,
            False,
        )
        assert (
            error.message
            == "HTTP 429 Too Many Requests: the server asks us to slow down; retry after 120s"
        )

    run(main())


@pytest.mark.process
def test_429_retry_after_as_http_date(clock: Clock) -> None:
    when = format_datetime(clock() + timedelta(hours=1), usegmt=True)

    async def main() -> None:
        routes = {"/feed": reply(429, headers=[("Retry-After", when)])}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL, now=clock) as f:
            error = await failure(f, server.url("/feed"))
        assert error.retry_after == 3600.0

    run(main())


@pytest.mark.process
def test_503_carries_retry_after_and_is_capped(clock: Clock) -> None:
    async def main() -> None:
        routes = {
            "/busy": reply(503, headers=[("Retry-After", "30")]),
            "/forever": reply(503, headers=[("Retry-After", "9" * 40)]),
            "/down": reply(503),
        }
        async with (
            RawServer(routes) as server,
            Fetcher(allow_private=LOCAL, now=clock, retry_after_cap=86400) as fetcher,
        ):
            busy = await failure(fetcher, server.url("/busy"))
            forever = await failure(fetcher, server.url("/forever"))
            down = await failure(fetcher, server.url("/down"))
        assert (busy.status, busy.retry_after) == (503, 30.0)
        assert forever.retry_after == 86400
        assert (down.status, down.retry_after, down.kind) == (503, None, "http")

    run(main())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Mon, 02 Mar 2026 10:00:00 GMT", 3600.0),
        ("Mon, 02 Mar 2026 10:00:00", 3600.0),  # no zone: GMT, as HTTP dates are
        ("Mon, 02 Mar 2026 08:00:00 GMT", None),  # in the past
        ("Fri, 02 Mar 2029 09:00:00 GMT", 31 * 86400.0),  # capped
        ("9" * 5000, 31 * 86400.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None, clock: Clock) -> None:
    assert parse_retry_after(value, clock(), 31 * 86400.0) == expected


@pytest.mark.process
def test_410_gone_says_the_feed_stops() -> None:
    async def main() -> None:
        async with RawServer({"/feed": reply(410)}) as server, Fetcher(allow_private=LOCAL) as f:
            error = await failure(f, server.url("/feed"))
        assert (error.status, error.gone, error.kind) == (410, True, "http")
        assert "HTTP 410 Gone" in error.message
        assert "not be polled again" in error.message and "config" in error.message

    run(main())


@pytest.mark.process
@pytest.mark.parametrize(
    ("status", "hint"),
    [(404, "check the feed URL"), (403, "refuses"), (500, "retried"), (401, "needs a login")],
)
def test_http_errors(status: int, hint: str) -> None:
    async def main() -> None:
        routes = {"/feed": reply(status, b"<html>nope</html>")}
        async with RawServer(routes) as server, Fetcher(allow_private=LOCAL) as f:
            error = await failure(f, server.url("/feed"))
        assert (error.kind, error.status, error.gone, error.retry_after) == (
            "http",
            status,
            False,
            None,
        )
        assert error.message.startswith(f"HTTP {status} ")
        assert hint in error.message

    run(main())


@pytest.mark.process
def test_unusual_but_real_host_names_are_fetched() -> None:
    """Names DNS serves though they break stricter rules: hyphens at the ends of labels,
    underscores, an IDN. (Not xn--ls8h.la: httpx refuses to decode it for a request, so
    it is a clear `url` error, in `news-monitor check` too.)"""
    names = ["myblog-.tumblr.com", "-edge-.example.org", "_feeds.example.org"]
    idn = "www.例え.jp"

    async def main() -> None:
        async with RawServer({"/feed": reply(200, RSS)}) as server:
            table = {name: ["127.0.0.1"] for name in [*names, idn.encode("idna").decode()]}
            async with Fetcher(allow_private=LOCAL, resolver=resolver(table)) as fetcher:
                for name in [*names, idn]:
                    result = await fetcher.fetch(f"http://{name}:{server.port}/feed")
                    assert result.content == RSS, name
                    assert url_problem(f"https://{name}/feed") is None, name

    run(main())


def test_connection_refused_and_unknown_host_are_network_errors(refused_port: int) -> None:
    async def main() -> None:
        async with Fetcher(allow_private=LOCAL, resolver=resolver({})) as fetcher:
            refused = await failure(fetcher, f"http://127.0.0.1:{refused_port}/feed")
            unknown = await failure(fetcher, "http://no-such-host.test/feed")
        assert refused.kind == "network"
        assert unknown.kind == "network"
        assert "cannot resolve no-such-host.test" in unknown.message

    run(main())


# --- conditional GET -------------------------------------------------------------------------


@pytest.mark.process
def test_etag_and_last_modified_make_a_304() -> None:
    stamp = "Mon, 02 Mar 2026 08:00:00 GMT"

    async def feed(request: Request, writer: asyncio.StreamWriter) -> None:
        if request.headers.get("if-none-match") == '"v1"':
            await reply(304, headers=[("ETag", '"v1"')])(request, writer)
        else:
            await reply(200, RSS, [("ETag", '"v1"'), ("Last-Modified", stamp)])(request, writer)

    async def main() -> None:
        async with RawServer({"/feed": feed}) as server, Fetcher(allow_private=LOCAL) as fetcher:
            first = await fetcher.fetch(server.url("/feed"))
            second = await fetcher.fetch(
                server.url("/feed"), etag=first.etag, last_modified=first.last_modified
            )
        assert (first.status, first.etag, first.last_modified) == (200, '"v1"', stamp)
        assert second.not_modified and second.content == b""
        assert (second.etag, second.last_modified) == ('"v1"', stamp)
        sent = server.requests[1].headers
        assert (sent["if-none-match"], sent["if-modified-since"]) == ('"v1"', stamp)

    run(main())


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.process
def test_credentials_go_as_basic_auth_and_never_into_messages() -> None:
    async def main() -> None:
        dns = resolver({"other.test": ["127.0.0.1"]})
        async with (
            RawServer() as server,
            Fetcher(allow_private=LOCAL, resolver=dns) as fetcher,
        ):
            server.routes = {
                "/private": reply(200, RSS),
                "/missing": reply(404),
                "/away": redirect(server.url("/elsewhere", host="other.test")),
                "/leaky": redirect(
                    server.url("/nothing").replace("http://", "http://admin:hunter2@")
                ),
            }
            base = server.url("/").replace("http://", "http://reader:s3cret@")
            assert (await fetcher.fetch(base + "private")).content == RSS
            missing = await failure(fetcher, base + "missing")
            await failure(fetcher, base + "away")
            leaky = await failure(fetcher, base + "leaky")

        token = base64.b64encode(b"reader:s3cret").decode()
        by_path = {r.path: r for r in server.requests}
        assert by_path["/private"].headers["authorization"] == f"Basic {token}"
        assert all("s3cret" not in r.target for r in server.requests)
        # Never sent to another host after a redirect.
        assert "authorization" not in by_path["/elsewhere"].headers
        # A redirect target's own credentials are used, and masked as well.
        hunter = base64.b64encode(b"admin:hunter2").decode()
        assert by_path["/nothing"].headers["authorization"] == f"Basic {hunter}"
        for error in (missing, leaky):
            assert "s3cret" not in str(error) and "hunter2" not in str(error)
            assert "***@" in error.url
        assert "/nothing" in leaky.message

    run(main())


# --- concurrency caps ------------------------------------------------------------------------


@dataclass
class Gate:
    """A handler that holds every request until released, counting those it holds."""

    holding: int = 0
    most: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: Request, writer: asyncio.StreamWriter) -> None:
        self.holding += 1
        self.most = max(self.most, self.holding)
        await self.release.wait()
        self.holding -= 1  # before answering, so a client never sees a stale count
        await reply(200, RSS)(request, writer)


@pytest.mark.process
def test_per_host_concurrency_cap() -> None:
    async def main() -> None:
        gate = Gate()
        async with (
            RawServer({"/feed": gate}) as server,
            Fetcher(allow_private=LOCAL, per_host=2) as fetcher,
        ):
            tasks = [asyncio.create_task(fetcher.fetch(server.url("/feed"))) for _ in range(5)]
            # Two at the server, three queued in the fetcher: nothing else can arrive.
            await until(lambda: gate.holding == 2 and fetcher.queued == 3)
            gate.release.set()
            results = await asyncio.gather(*tasks)
        assert [r.content for r in results] == [RSS] * 5
        assert gate.most == 2
        assert len(server.requests) == 5

    run(main())


@pytest.mark.process
def test_global_concurrency_cap() -> None:
    async def main() -> None:
        gate = Gate()
        dns = resolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
        async with (
            RawServer({"/feed": gate}) as server,
            Fetcher(allow_private=LOCAL, per_host=2, total=3, resolver=dns) as fetcher,
        ):
            urls = [server.url("/feed", host=h) for h in ("a.test", "a.test", "b.test", "b.test")]
            tasks = [asyncio.create_task(fetcher.fetch(u)) for u in urls]
            await until(lambda: gate.holding == 3 and fetcher.queued == 1)
            gate.release.set()
            await asyncio.gather(*tasks)
        assert gate.most == 3
        assert len(server.requests) == 4

    run(main())


@pytest.mark.process
def test_waiting_for_a_slot_does_not_use_up_the_deadline() -> None:
    async def main() -> None:
        gate = Gate()
        async with (
            RawServer({"/slow": gate, "/feed": reply(200, RSS)}) as server,
            # The second fetch has this long once it has the slot: room for a busy machine.
            Fetcher(allow_private=LOCAL, per_host=1, timeout=1.0) as fetcher,
        ):
            first = asyncio.create_task(fetcher.fetch(server.url("/slow")))
            await until(lambda: gate.holding == 1)
            second = asyncio.create_task(fetcher.fetch(server.url("/feed")))
            await until(lambda: fetcher.queued == 1)
            # The first fetch runs out of time while the second waits behind it.
            assert (await failure_of(first)).kind == "timeout"
            assert (await second).content == RSS
            gate.release.set()

    run(main())


async def failure_of(task: Awaitable[Any]) -> FeedError:
    with pytest.raises(FeedError) as info:
        await task
    return info.value


# --- the older module-level entry point ------------------------------------------------------


@pytest.mark.process
def test_module_fetch_stays_permissive_and_follows_redirects_by_hand() -> None:
    async def main() -> None:
        routes = {
            "/old": redirect("/feed", 301),
            "/feed": reply(200, gzip.compress(RSS), [("Content-Encoding", "gzip")]),
        }
        async with RawServer(routes) as server, make_client() as client:
            result = await fetch(client, server.url("/old"), timeout=5.0)
            assert result.content == RSS
            assert result.permanent_url == server.url("/feed")
            routes["/feed"] = _drip(0.02)
            server.routes.update(routes)
            with pytest.raises(FeedError) as info:
                await fetch(client, server.url("/feed"), timeout=0.3)
            assert info.value.kind == "timeout"

    run(main())
