"""One fetch, hop by hop: the request, its redirects followed by hand, and the answer
turned into a :class:`FetchResult` or a :class:`FeedError`.

httpx is told never to follow redirects: each hop is a request of its own, so that
every target is checked before it is requested (http/https only, a valid host, the
address guard where the transport cannot check at connect time), credentials follow
only within the same origin, a loop (the same URL with the same cookies again) or a
chain longer than ``max_redirects`` is refused, and a chain of only 301/308 reports
where the feed now lives (``permanent_url``). The whole fetch has one deadline, which
runs only while a hop holds its concurrency slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import httpx

from monitor.errors import FeedError
from monitor.fetch.decode import ACCEPT_ENCODING, _read_body
from monitor.fetch.guard import AddressGuard
from monitor.fetch.stop import _short, _Stop
from monitor.fetch.urls import (
    Credentials,
    _check_host,
    _default_port,
    _host,
    _same_origin,
    _show,
    _split,
    _start,
    _with_creds,
)
from monitor.models import FetchResult
from monitor.text import mask_url

#: Longest Retry-After we honour by default: 31 days.
RETRY_AFTER_CAP = 31 * 86400.0

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_DIGITS = re.compile(r"[0-9]+")
#: Where :class:`_KeepLocation` puts a redirect's Location header.
_LOCATION = "X-News-Monitor-Location"

Slot = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Options:
    timeout: float
    max_bytes: int
    max_redirects: int
    retry_after_cap: float = RETRY_AFTER_CAP
    now: Callable[[], datetime] = _utcnow
    #: Checked before each hop when the transport cannot check at connect time.
    preflight: AddressGuard | None = None


@dataclass
class _Answer:
    """What one hop got back; ``content`` is read (and decoded) only for 2xx."""

    status: int
    reason: str
    headers: httpx.Headers
    content: bytes = b""


@dataclass
class _Hop:
    url: httpx.URL
    creds: Credentials | None
    #: (url, cookies) of every request made so far: the same again means a loop.
    seen: set[tuple[str, tuple[tuple[str, str, str, str], ...]]] = field(default_factory=set)
    chain: list[str] = field(default_factory=list)


async def _run(
    client: httpx.AsyncClient,
    options: _Options,
    url: str,
    etag: str | None,
    last_modified: str | None,
    *,
    slot: Slot | None,
) -> FetchResult:
    shown = _short(mask_url(url))
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    hop = _Hop(*_start(shown, url))
    hop.chain.append(_show(hop.url))
    try:
        answer, permanent = await _hops(client, options, hop, headers, slot)
    except _Stop as stop:
        raise _error(shown, hop, stop) from stop
    except (TimeoutError, httpx.TimeoutException) as exc:
        # The deadline, or one operation alone stalling that long: the same to the user.
        raise _error(
            shown, hop, _Stop("timeout", f"no complete response within {options.timeout:g}s")
        ) from exc
    except httpx.HTTPError as exc:
        raise _error(shown, hop, _transport_error(exc)) from exc
    if answer.status != 304 and not 200 <= answer.status < 300:
        raise _error(shown, hop, _http_error(answer, hop, options))
    # Where a chain of permanent redirects led: the feed's new URL (a 304 from there too:
    # a moved feed's server knows the old validators).
    moved = str(_with_creds(hop.url, hop.creds)) if permanent and len(hop.chain) > 1 else None
    return _result(url, answer, etag, last_modified, moved)


async def _hops(
    client: httpx.AsyncClient,
    options: _Options,
    hop: _Hop,
    headers: dict[str, str],
    slot: Slot | None,
) -> tuple[_Answer, bool]:
    """Request hop after hop until an answer is not a redirect: that answer, and whether
    every redirect on the way was permanent. Raises _Stop (and httpx's errors)."""
    jar = httpx.Cookies()
    permanent = True
    budget = options.timeout
    loop = asyncio.get_running_loop()
    redirects = 0
    # The deadline runs only while a hop holds its slots: waiting in the queue behind
    # other feeds of the same host is not this feed's fault and must not time it out.
    async with asyncio.timeout(None) as deadline:
        while True:
            async with slot(_host(hop.url)) if slot else contextlib.nullcontext():
                started = loop.time()
                deadline.reschedule(started + budget)
                answer = await _exchange(client, options, hop, headers, jar)
                budget -= loop.time() - started
                deadline.reschedule(None)
            if answer.status not in _REDIRECTS:
                return answer, permanent
            permanent = permanent and answer.status in _PERMANENT
            _follow(hop, answer, jar)
            if redirects == options.max_redirects:
                raise _Stop(
                    "redirects",
                    f"more than {options.max_redirects} redirects "
                    f"({' -> '.join(hop.chain[:3])} -> ... -> {hop.chain[-1]})",
                )
            redirects += 1


def _result(
    url: str, answer: _Answer, etag: str | None, last_modified: str | None, moved: str | None
) -> FetchResult:
    """The result of a fetch that ended in a 304 or a 2xx ``answer``."""
    if answer.status == 304:
        return FetchResult(
            url=url,
            status=304,
            etag=answer.headers.get("ETag") or etag,
            last_modified=answer.headers.get("Last-Modified") or last_modified,
            headers=dict(answer.headers),
            permanent_url=moved,
        )
    return FetchResult(
        url=url,
        status=answer.status,
        content=answer.content,
        # The body is decoded: the wire's length and coding no longer describe it.
        headers={
            k: v
            for k, v in answer.headers.items()
            if k not in ("content-encoding", "content-length")
        },
        etag=answer.headers.get("ETag"),
        last_modified=answer.headers.get("Last-Modified"),
        permanent_url=moved,
    )


async def _exchange(
    client: httpx.AsyncClient,
    options: _Options,
    hop: _Hop,
    headers: dict[str, str],
    jar: httpx.Cookies,
) -> _Answer:
    """One request: send, read the status line and headers, and the body of a 2xx."""
    if options.preflight is not None:
        await options.preflight.check(_host(hop.url), hop.url.port or _default_port(hop.url))
    request = client.build_request("GET", hop.url, headers=headers)
    jar.set_cookie_header(request)
    hop.seen.add((str(hop.url), _cookie_state(jar)))
    auth = httpx.BasicAuth(*hop.creds) if hop.creds else None
    response = await client.send(request, stream=True, follow_redirects=False, auth=auth)
    try:
        jar.extract_cookies(response)
        answer = _Answer(response.status_code, response.reason_phrase, response.headers)
        if 200 <= answer.status < 300:
            answer.content = await _read_body(response, options.max_bytes)
        return answer
    finally:
        await response.aclose()


def _follow(hop: _Hop, answer: _Answer, jar: httpx.Cookies) -> None:
    """Move ``hop`` to the redirect target of ``answer``, or raise _Stop."""
    location = (answer.headers.get(_LOCATION) or answer.headers.get("Location") or "").strip()
    if not location:
        raise _Stop(
            "http",
            f"HTTP {answer.status} redirect without a Location header",
            status=answer.status,
        )
    shown = _short(mask_url(location))
    try:
        target = hop.url.join(location)
        if target.scheme in ("http", "https"):
            _check_host(target)
    except (httpx.InvalidURL, _Stop) as exc:
        raise _Stop("url", f"redirected to an invalid URL: {shown}") from exc
    if target.scheme not in ("http", "https"):
        raise _Stop(
            "scheme",
            f"redirected to {shown}: only http and https can be fetched; refused",
        )
    target, creds = _split(target)
    if creds is None and _same_origin(hop.url, target):
        creds = hop.creds  # never send the feed's password to another host
    hop.url, hop.creds = target, creds
    hop.chain.append(_show(target))
    if (str(target), _cookie_state(jar)) in hop.seen:
        raise _Stop("redirects", f"redirect loop: {' -> '.join(hop.chain)}")


class _KeepLocation(httpx.AsyncBaseTransport):
    """Hides a redirect's Location from httpx, which would parse it (and fail on
    ``data:`` or junk) even with follow_redirects=False; :func:`_follow` reads it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code in _REDIRECTS and "Location" in response.headers:
            response.headers[_LOCATION] = response.headers.get_list("Location")[0]
            del response.headers["Location"]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _cookie_state(jar: httpx.Cookies) -> tuple[tuple[str, str, str, str], ...]:
    return tuple(sorted((c.name, c.value or "", c.domain, c.path) for c in jar.jar))


def _error(shown: str, hop: _Hop, stop: _Stop) -> FeedError:
    message = stop.message
    if len(hop.chain) > 1 and stop.kind not in ("redirects", "scheme"):
        moves = len(hop.chain) - 1
        message += f" (at {hop.chain[-1]}, after {moves} redirect{'s' if moves > 1 else ''})"
    return FeedError(
        shown,
        message,
        kind=stop.kind,
        status=stop.status,
        retry_after=stop.retry_after,
        gone=stop.gone,
    )


def _http_error(answer: _Answer, hop: _Hop, options: _Options) -> _Stop:
    status = answer.status
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = _short(answer.reason, 60)
    head = f"HTTP {status} {phrase}".rstrip()
    if status == 410:
        return _Stop(
            "http",
            f"{head}: the publisher removed this feed for good, so it will not be polled "
            "again. Delete it from the config, or give it its new URL there (a feed with a "
            "changed URL is polled again); if it comes back at this URL, `news-monitor "
            "feeds resume` polls it again",
            status=status,
            gone=True,
        )
    if status in (429, 503):
        wait = parse_retry_after(
            answer.headers.get("Retry-After"), options.now(), options.retry_after_cap
        )
        when = f"; retry after {wait:g}s" if wait is not None else ""
        what = "the server asks us to slow down" if status == 429 else "the server is unavailable"
        return _Stop("http", f"{head}: {what}{when}", status=status, retry_after=wait)
    if status == 401:
        hint = (
            "the user name or password in the URL was refused"
            if hop.creds
            else "the feed needs a login; put it in the URL as https://user:password@host/..."
        )
    elif status == 403:
        hint = "the server refuses this client; the feed may need a login or block robots"
    elif status in (404, 400):
        hint = "check the feed URL in the config"
    elif status >= 500:
        hint = "the server failed; it will be retried"
    else:
        hint = "unexpected answer; check the feed URL in the config"
    return _Stop("http", f"{head}: {hint}", status=status)


def _transport_error(exc: httpx.HTTPError) -> _Stop:
    if isinstance(exc, httpx.UnsupportedProtocol):
        return _Stop("scheme", "only http and https URLs can be fetched")
    if isinstance(exc, httpx.InvalidURL):
        return _Stop("url", f"invalid URL: {_reason(exc)}")
    if isinstance(exc, httpx.ProtocolError):
        return _Stop("protocol", f"the server's answer is not valid HTTP: {_reason(exc)}")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return _Stop("tls", f"TLS failed: {_short(str(cause), 200)}")
        cause = cause.__cause__ or cause.__context__
    # httpx messages can contain the URL; say only the kind of failure.
    return _Stop("network", f"{type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    return _short(mask_url(str(exc) or type(exc).__name__))


def parse_retry_after(value: str | None, now: datetime, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date).

    None for a missing, unreadable or past value; never more than ``cap``.
    """
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        seconds = float(value) if len(value) <= 15 else cap
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
        if seconds < 0:
            return None
    return min(seconds, cap)
