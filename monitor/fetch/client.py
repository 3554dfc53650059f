"""The entry points: :class:`Fetcher` (the daemon's: one shared client with the address
guard and the concurrency caps) and the older :func:`fetch` on a caller's own client.

Both run the same hop loop (:mod:`monitor.fetch.hops`); what this module adds is the
client they run it on. httpx never follows a redirect on either (the hop loop does);
the Fetcher's client is also set up so that nothing reaches past the address checks:
connections through the guard, no proxies from the environment, no cookies kept across
fetches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from monitor import __version__
from monitor.fetch.guard import (
    AddressGuard,
    AddressPolicy,
    Resolver,
    _GuardedTransport,
    system_resolver,
)
from monitor.fetch.hops import RETRY_AFTER_CAP, _KeepLocation, _Options, _run, _utcnow
from monitor.fetch.limits import _Limiter
from monitor.models import FetchResult

USER_AGENT = f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)"
MAX_BYTES = 15 * 1024 * 1024
MAX_REDIRECTS = 10
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


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


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie: the shared client must not carry state."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
