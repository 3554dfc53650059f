"""Fetch one feed over HTTP, surviving whatever a server on the internet sends back.

:class:`Fetcher` is what the daemon uses: one shared HTTP client, and for every fetch

* one total deadline (DNS, connect, headers, the whole body, every redirect hop);
* a size cap on the *decoded* body: we ask for ``gzip, deflate, br``, read the raw
  stream and decompress it ourselves in bounded steps, so a 2 kB bomb costs at most
  ``max_bytes`` plus one step; stacked or unknown encodings are refused;
* redirects followed by hand, one hop at a time, each target re-checked (http/https
  only, no private addresses); loops and long chains are refused; credentials follow a
  redirect only within the same origin; a chain of only 301/308 reports ``permanent_url``;
* SSRF protection: a host is resolved, every address must be public (unless allowed by
  ``allow_private``), and the connection goes to an address that was checked;
* conditional GET (ETag / Last-Modified -> 304);
* per-host and global concurrency caps;
* errors as :class:`FeedError` with ``kind``, ``status``, ``retry_after`` and ``gone``,
  every URL in them masked (no credentials).

Returns a :class:`FetchResult` (2xx with bytes, or 304 not modified) or raises
:class:`FeedError` naming the URL (credentials masked). httpx lives here and nowhere else.
The module-level :func:`fetch` is the older entry point, kept for callers that bring
their own client; it has the same hop-by-hop logic but no address checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]
import httpcore
import httpx

from monitor import __version__
from monitor.errors import FeedError
from monitor.models import FetchResult
from monitor.text import mask_url

USER_AGENT = f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)"
MAX_BYTES = 15 * 1024 * 1024
MAX_REDIRECTS = 10
#: Longest Retry-After we honour by default: 31 days.
RETRY_AFTER_CAP = 31 * 86400.0
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
#: The content codings we can decode with a bound on the output.
ACCEPT_ENCODING = "gzip, deflate, br"

#: Resolve (host, port) to IP address strings; :func:`system_resolver` by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
#: Largest piece of output one decompression step may produce.
_STEP = 64 * 1024
_IPV4ISH = re.compile(r"[0-9][0-9a-fA-FxX.]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DIGITS = re.compile(r"[0-9]+")
#: A DNS name as resolvers take it: labels of 1-63 letters, digits, '-' or '_' (real
#: hosts have them at either end: myblog-.tumblr.com, _dmarc.example.org), 253
#: characters at most, a final dot allowed. An empty or longer label makes
#: getaddrinfo() raise, not fail.
_LABEL = r"[A-Za-z0-9_-]{1,63}"
_HOSTNAME = re.compile(rf"(?=[^\n]{{1,253}}\.?$)(?:{_LABEL}\.)*{_LABEL}\.?")
#: Where :class:`_KeepLocation` puts a redirect's Location header.
_LOCATION = "X-News-Monitor-Location"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the fetcher ---------------------------------------------------------------------------


class Fetcher:
    """Fetches feeds for the daemon: one per process, shared by every feed.

    ``allow_private`` lists CIDRs (``10.0.0.0/8``, ``127.0.0.1``) or host names
    (``intranet.example``) that may be fetched although they are not public addresses.
    ``transport`` replaces the network (tests); the address checks then run before each
    hop instead of at connect time. ``resolver`` replaces DNS (tests).
    """

    def __init__(
        self,
        *,
        user_agent: str = "",
        timeout: float = 30.0,
        max_bytes: int = MAX_BYTES,
        max_redirects: int = MAX_REDIRECTS,
        allow_private: Sequence[str] = (),
        per_host: int = 2,
        total: int = 20,
        retry_after_cap: float = RETRY_AFTER_CAP,
        now: Callable[[], datetime] = _utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes < 1 or max_redirects < 0 or per_host < 1 or total < 1:
            raise ValueError(
                "timeout and max_bytes must be positive, max_redirects >= 0, "
                "per_host and total >= 1"
            )
        guard = AddressGuard(AddressPolicy(allow_private), resolver or system_resolver)
        if transport is None:
            # The guard runs when a connection is opened, and the socket goes to the
            # address it checked: no DNS rebinding between the check and the connect.
            transport = _GuardedTransport(guard, total)
            preflight = None
        else:
            # A foreign transport opens its own connections: check before each hop.
            preflight = guard
        self._limiter = _Limiter(per_host, total)
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent or USER_AGENT, "Accept": ACCEPT},
            follow_redirects=False,
            transport=_KeepLocation(transport),
            timeout=httpx.Timeout(timeout),
            # No proxies from the environment: a proxy would connect where we never
            # checked. No cookies kept across fetches: each fetch has its own jar.
            trust_env=False,
            cookies=_no_cookies(),
        )
        self._options = _Options(
            timeout=timeout,
            max_bytes=max_bytes,
            max_redirects=max_redirects,
            retry_after_cap=retry_after_cap,
            now=now,
            preflight=preflight,
        )

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url`` conditionally, within one total deadline; raises FeedError."""
        return await _run(
            self._client, self._options, url, etag, last_modified, slot=self._limiter.slot
        )

    @property
    def queued(self) -> int:
        """Hops waiting for a free per-host or global slot right now (tests, metrics)."""
        return self._limiter.waiting

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def make_client(
    user_agent: str = "", transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """A client for :func:`fetch` (the older entry point; :class:`Fetcher` has its own)."""
    return httpx.AsyncClient(
        headers={"User-Agent": user_agent or USER_AGENT, "Accept": ACCEPT},
        follow_redirects=False,
        transport=_KeepLocation(transport or httpx.AsyncHTTPTransport()),
        # Per-operation timeouts; the total deadline is enforced in fetch().
        timeout=httpx.Timeout(30.0),
    )


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = 30.0,
    max_bytes: int = MAX_BYTES,
) -> FetchResult:
    """GET ``url`` with the caller's client: like :meth:`Fetcher.fetch` (deadline, size
    cap, redirects hop by hop, error attributes) but with no address checks and no
    concurrency caps. Kept while callers move to :class:`Fetcher`."""
    options = _Options(timeout=timeout, max_bytes=max_bytes, max_redirects=MAX_REDIRECTS)
    return await _run(client, options, url, etag, last_modified, slot=None)


# --- one fetch, hop by hop -----------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    timeout: float
    max_bytes: int
    max_redirects: int
    retry_after_cap: float = RETRY_AFTER_CAP
    now: Callable[[], datetime] = _utcnow
    #: Checked before each hop when the transport cannot check at connect time.
    preflight: AddressGuard | None = None


class _Stop(Exception):
    """A reason to give up, raised deep down and turned into a FeedError at the top."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.gone = gone


@dataclass
class _Answer:
    """What one hop got back; ``content`` is read (and decoded) only for 2xx."""

    status: int
    reason: str
    headers: httpx.Headers
    content: bytes = b""


Slot = Callable[[str], contextlib.AbstractAsyncContextManager[None]]
Credentials = tuple[str, str]


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
    jar = httpx.Cookies()
    hop = _Hop(*_start(shown, url))
    hop.chain.append(_show(hop.url))
    permanent = True
    budget = options.timeout
    loop = asyncio.get_running_loop()
    try:
        # The deadline runs only while a hop holds its slots: waiting in the queue behind
        # other feeds of the same host is not this feed's fault and must not time it out.
        async with asyncio.timeout(None) as deadline:
            for redirects in range(options.max_redirects + 1):
                async with slot(_host(hop.url)) if slot else contextlib.nullcontext():
                    started = loop.time()
                    deadline.reschedule(started + budget)
                    answer = await _exchange(client, options, hop, headers, jar)
                    budget -= loop.time() - started
                    deadline.reschedule(None)
                if answer.status not in _REDIRECTS:
                    break
                permanent = permanent and answer.status in _PERMANENT
                _follow(hop, answer, jar)
                if redirects == options.max_redirects:
                    raise _Stop(
                        "redirects",
                        f"more than {options.max_redirects} redirects "
                        f"({' -> '.join(hop.chain[:3])} -> ... -> {hop.chain[-1]})",
                    )
    except _Stop as stop:
        raise _error(shown, hop, stop) from stop
    except (TimeoutError, httpx.TimeoutException) as exc:
        # The deadline, or one operation alone stalling that long: the same to the user.
        raise _error(
            shown, hop, _Stop("timeout", f"no complete response within {options.timeout:g}s")
        ) from exc
    except httpx.HTTPError as exc:
        raise _error(shown, hop, _transport_error(exc)) from exc

    # Where a chain of permanent redirects led: the feed's new URL (a 304 from there too:
    # a moved feed's server knows the old validators).
    moved = None
    if permanent and len(hop.chain) > 1 and (answer.status == 304 or 200 <= answer.status < 300):
        moved = str(_with_creds(hop.url, hop.creds))
    if answer.status == 304:
        return FetchResult(
            url=url,
            status=304,
            etag=answer.headers.get("ETag") or etag,
            last_modified=answer.headers.get("Last-Modified") or last_modified,
            headers=dict(answer.headers),
            permanent_url=moved,
        )
    if not 200 <= answer.status < 300:
        raise _error(shown, hop, _http_error(answer, hop, options))
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


def _start(shown: str, url: str) -> tuple[httpx.URL, Credentials | None]:
    """The first hop's URL (credentials removed) and the credentials; checks the scheme."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
    except ValueError as exc:
        raise FeedError(shown, _invalid_url(url, exc), kind="url") from exc
    if scheme not in ("http", "https"):
        raise FeedError(
            shown,
            f"only http and https URLs can be fetched, not {scheme or 'this'!r}; "
            "check the feed URL in the config",
            kind="scheme",
        )
    # Refuse numeric spellings of private addresses (0177.0.0.1...) even where httpx
    # would call them invalid, so the reason given is the real one.
    try:
        parsed = httpx.URL(url)
        _check_host(parsed)
        return _split(parsed)
    except _Stop as stop:
        raise FeedError(shown, stop.message, kind=stop.kind) from stop
    except httpx.InvalidURL as exc:
        numeric = numeric_host(host)
        reason = non_public_reason(numeric) if numeric is not None else None
        if numeric is not None and reason:
            raise FeedError(shown, _refused(host, numeric, numeric, reason), kind="ssrf") from exc
        raise FeedError(shown, _invalid_url(url, exc), kind="url") from exc


def _invalid_url(url: str, exc: Exception) -> str:
    """Why ``url`` does not parse, without the parser's words if it has credentials:
    they may quote a piece of the password ("Invalid port: 'pa'")."""
    if mask_url(url) == url:
        return f"invalid URL: {_short(str(exc), 120)}"
    return (
        "invalid URL: it does not parse; if its user name or password has any of "
        "@ : / ? # or a space in it, percent-encode them (%40 %3A %2F %3F %23 %20)"
    )


def url_problem(url: str) -> str | None:
    """What is wrong with a feed URL before anything is fetched (scheme, syntax, host
    name, port), for `news-monitor check`; None if nothing is. Masked, like every error."""
    try:
        first, _ = _start(_short(mask_url(url)), url)
    except FeedError as exc:
        return exc.message
    masked = mask_url(url)
    if masked != url:
        # Masking must hide what the client sends as userinfo, no less: where the two
        # read the URL differently ("https://reader:/s3cret@host/": a / in the password
        # ends the authority, and the password would go in the path to a host called
        # "reader"), the URL is refused.
        try:
            seen = _host(httpx.URL(masked))
        except httpx.InvalidURL:
            seen = ""
        if seen != _host(first):
            return (  # what the client takes for the host may be a piece of the password
                "the url can be read two ways (where its user:password ends and its host "
                "begins): percent-encode @ / ? # in a user name or password (%40 %2F %3F "
                "%23), and an @ in the path (%40)"
            )
    return None


def _host(url: httpx.URL) -> str:
    """The host as resolved: IDNA-encoded (``xn--...``), as the resolver takes it."""
    return url.raw_host.decode("ascii", "replace")


def _check_host(url: httpx.URL) -> None:
    """A DNS name (letters, digits, '-', '_', '.'; IDNA already applied) or an IP, and
    a port that exists."""
    host = _host(url)
    shown = _short(mask_url(host), 80)
    if not (_HOSTNAME.fullmatch(host) or numeric_host(host) is not None):
        raise _Stop("url", f"invalid host name {shown!r}")
    try:
        url.host  # noqa: B018 (httpx decodes xn-- labels to build each request)
    except (UnicodeError, ValueError) as exc:
        raise _Stop(
            "url", f"host name {shown!r} cannot be used: the HTTP client refuses it ({exc})"
        ) from exc
    if url.port is not None and not 0 < url.port < 65536:
        raise _Stop("url", f"invalid port {url.port} (ports go from 1 to 65535)")


def _split(url: httpx.URL) -> tuple[httpx.URL, Credentials | None]:
    """Move user:password out of the URL, so no library ever logs it; sent as BasicAuth."""
    if not url.userinfo:
        return url, None
    return url.copy_with(username=None, password=None), (url.username, url.password)


def _with_creds(url: httpx.URL, creds: Credentials | None) -> httpx.URL:
    return url.copy_with(username=creds[0], password=creds[1]) if creds else url


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


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    if _host(a) != _host(b):
        return False
    if a.scheme == b.scheme:
        return (a.port or _default_port(a)) == (b.port or _default_port(b))
    # http -> https on the default ports is an upgrade of the same site (as httpx does).
    return a.scheme == "http" and b.scheme == "https" and a.port is None and b.port is None


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _cookie_state(jar: httpx.Cookies) -> tuple[tuple[str, str, str, str], ...]:
    return tuple(sorted((c.name, c.value or "", c.domain, c.path) for c in jar.jar))


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie: the shared client must not carry state."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _show(url: httpx.URL) -> str:
    return _short(mask_url(str(url)))


def _short(text: str, limit: int = 200) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


# --- the body: raw bytes, decoded with a bound on the output -------------------------------


async def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    decoder = _decoder(response.headers)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
        raise _too_large(max_bytes, f"it announces {_size(int(declared[:19]))}")
    out = bytearray()
    raw = 0
    try:
        async for chunk in response.aiter_raw():
            # Compressed input that yields nothing (empty blocks) is bounded too.
            raw += len(chunk)
            if raw > max_bytes:
                raise _too_large(max_bytes, "as sent")
            for piece in decoder.decode(chunk):
                if len(out) + len(piece) > max_bytes:
                    raise _too_large(
                        max_bytes, "" if decoder.name == "identity" else "once decompressed"
                    )
                out += piece
    except (zlib.error, brotli.error) as exc:
        raise _Stop(
            "encoding", f"the {decoder.name} body is corrupt: {_short(str(exc), 100)}"
        ) from exc
    if raw and not decoder.finished():
        # A body cut off mid-stream (a connection closed early, with no length to tell):
        # parsed, it would store part of the feed and save its ETag for the rest.
        raise _Stop(
            "encoding",
            f"the {decoder.name} body ends before its compressed data does (cut off?); "
            "nothing of it is used",
        )
    return bytes(out)


def _too_large(max_bytes: int, how: str) -> _Stop:
    return _Stop(
        "too-large",
        f"response larger than {_size(max_bytes)}{' ' + how if how else ''}; "
        "raise fetch.max_bytes if this feed really is that big",
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


class _Decoder(Protocol):
    name: str

    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def finished(self) -> bool:
        """Whether the data so far ends where a complete body can end."""
        ...


def _decoder(headers: httpx.Headers) -> _Decoder:
    codings = [
        token.strip().lower()
        for value in headers.get_list("Content-Encoding")
        for token in value.split(",")
    ]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return _Identity()
    shown = ", ".join(_short(c, 30) for c in codings)
    if len(codings) > 1:
        raise _Stop("encoding", f"stacked content encodings ({shown}) are not accepted")
    if codings[0] in ("gzip", "x-gzip"):
        return _Gzip()
    if codings[0] == "deflate":
        return _Deflate()
    if codings[0] == "br":
        return _Brotli()
    raise _Stop("encoding", f"unsupported content encoding {shown!r} (we accept {ACCEPT_ENCODING})")


class _Identity:
    name = "identity"

    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finished(self) -> bool:
        return True


def _inflate(inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Feed ``data`` to ``inflater``, yielding output at most _STEP bytes at a time."""
    while True:
        out = inflater.decompress(data, _STEP)
        if out:
            yield out
        if inflater.eof:
            return
        tail = inflater.unconsumed_tail
        # A full step may leave output pending inside zlib even with no input left.
        if len(out) < _STEP and (not tail or len(tail) == len(data)):
            return
        data = tail


class _Gzip:
    """gzip, one member or several in a row; whatever follows them is ignored.

    The output is never decoded again: a gzip file inside the body stays bytes.
    """

    name = "gzip"

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._trailing = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        data, self._pending = self._pending + data, b""
        while data and not self._trailing:
            if self._inflater.eof:
                if len(data) < 2:
                    self._pending = data
                    return
                if data[:2] != b"\x1f\x8b":
                    self._trailing = True  # padding or junk after the last member
                    return
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            yield from _inflate(self._inflater, data)
            data = self._inflater.unused_data if self._inflater.eof else b""

    def finished(self) -> bool:
        return self._trailing or self._inflater.eof


class _Deflate:
    """deflate: zlib-wrapped as the RFC says, or raw deflate as some servers send."""

    name = "deflate"

    def __init__(self) -> None:
        self._inflater: zlib._Decompress | None = None
        self._head = b""

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if not self._inflater.eof:
            yield from _inflate(self._inflater, data)

    def finished(self) -> bool:
        return self._inflater is not None and self._inflater.eof


class _Brotli:
    """br, through brotli's ``output_buffer_limit`` (brotli >= 1.2)."""

    name = "br"

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._decompressor.is_finished():
            return  # junk after the end of the stream
        out: bytes = self._decompressor.process(data, output_buffer_limit=_STEP)
        while True:
            if out:
                yield out
            # A full step may leave output pending inside the decoder: drain it (with
            # no new input, as brotli requires) before taking more input.
            if len(out) < _STEP and self._decompressor.can_accept_more_data():
                return
            out = self._decompressor.process(b"", output_buffer_limit=_STEP)
            if not out and not self._decompressor.can_accept_more_data():
                raise brotli.error("the decoder makes no progress")

    def finished(self) -> bool:
        return bool(self._decompressor.is_finished())


# --- addresses: SSRF protection ------------------------------------------------------------


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host stands for, or None for a name.

    IPv4 is read the way ``inet_aton`` (and so the system resolver) reads it, so
    ``2130706433``, ``0x7f000001``, ``127.1`` and ``0177.0.0.1`` are all 127.0.0.1.
    """
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _IPV4ISH.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The addresses to judge: IPv6 forms that carry an IPv4 address are judged by it."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]  # ::ffff:127.0.0.1 is 127.0.0.1
    if address in _NAT64:
        # DNS64 gives every IPv4-only host such an address: judge the IPv4 part.
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    found: list[IPAddress] = [address]
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    return found


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address ("loopback"...), None if it is."""
    for candidate in _embedded(address):
        checks = (
            (candidate.is_unspecified, "unspecified"),
            (candidate.is_loopback, "loopback"),
            (candidate.is_link_local, "link-local"),
            (candidate.is_multicast, "multicast"),
            (candidate.is_private, "private"),
            (candidate.is_reserved, "reserved"),
            (isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local, "site"),
            (not candidate.is_global, "non-global"),
        )
        for failed, reason in checks:
            if failed:
                return reason
    return None


class AddressPolicy:
    """Which addresses may be fetched: public ones, plus the ``allow`` list.

    ``allow`` holds networks (``127.0.0.0/8``, ``::1``, ``10.1.2.3``) and host names
    (``intranet.example``: any address it resolves to is allowed).
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in allow:
            text = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if "/" in text or not text:
                    raise ValueError(
                        f"allow_private: {entry!r} is neither a CIDR nor a host"
                    ) from None
                self.names.add(_host_key(text))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """None if ``host`` at ``address`` may be fetched, else the reason why not."""
        if _host_key(host) in self.names:
            return None
        reason = non_public_reason(address)
        if reason is None:
            return None
        for candidate in [address, *_embedded(address)]:
            if any(candidate in net for net in self.networks):
                return None
        return reason


def _refused(host: str, numeric: IPAddress | None, address: IPAddress, reason: str) -> str:
    if numeric is None:
        what = f"{host} resolves to {address}, a"
    elif _host_key(host) == str(address):
        what = f"{address} is a"
    else:
        what = f"{host} is {address}, a"
    return f"{what} {reason} address; refused (list it in fetch.allow_private to allow it)"


def _host_key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class AddressGuard:
    """Resolves a host and returns its addresses if every one is allowed (else _Stop)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def check(self, host: str, port: int) -> list[str]:
        numeric = numeric_host(host)
        if numeric is not None:
            found = [numeric]
        else:
            try:
                names = await self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else None
                raise _Stop("network", f"cannot resolve {host}: {reason or exc}") from exc
            found = [a for a in (numeric_host(n) for n in names) if a is not None]
            if not found:
                raise _Stop("network", f"{host} has no address")
        # One bad address refuses the host: a mixed answer is how rebinding attacks start.
        for address in found:
            reason = self.policy.refusal(host, address)
            if reason is not None:
                raise _Stop("ssrf", _refused(host, numeric, address, reason))
        return [str(a) for a in found]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections only to addresses the guard checked, in the guard's order.

    TLS still verifies the host name: httpcore passes the URL's host as server_hostname.
    """

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.check(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # check() never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for feeds")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections pass the guard."""

    def __init__(self, guard: AddressGuard, total: int) -> None:
        limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
        context = httpx.create_ssl_context()  # certifi's CAs, SSL_CERT_FILE honoured
        super().__init__(verify=context, limits=limits, trust_env=False)
        # Same pool as httpx builds, but with the guarded network backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )


# --- concurrency caps ----------------------------------------------------------------------


@dataclass
class _HostSlots:
    semaphore: asyncio.Semaphore
    users: int = 0


class _Limiter:
    """At most ``per_host`` hops to one host and ``total`` hops in all, at once.

    A hop takes its host's slot first, then a global one, and holds one of each at most,
    so two fetches can never wait on each other in a cycle.
    """

    def __init__(self, per_host: int, total: int) -> None:
        self._per_host = per_host
        self._total = asyncio.Semaphore(total)
        self._hosts: dict[str, _HostSlots] = {}
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = _host_key(host)
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = _HostSlots(asyncio.Semaphore(self._per_host))
        entry.users += 1
        self.waiting += 1
        queued = True
        try:
            async with entry.semaphore, self._total:
                self.waiting -= 1
                queued = False
                yield
        finally:
            if queued:
                self.waiting -= 1
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[key]  # forget hosts nobody is fetching
