"""Fetch one feed over HTTP: conditional GET, one total deadline, a size cap.

Returns a :class:`FetchResult` (200 with bytes, or 304 not modified) or raises
:class:`FeedError` naming the URL (credentials masked). httpx lives here and nowhere else.
"""

from __future__ import annotations

import asyncio

import httpx

from monitor import __version__
from monitor.errors import FeedError
from monitor.models import FetchResult
from monitor.text import mask_url

USER_AGENT = f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)"
MAX_BYTES = 15 * 1024 * 1024
MAX_REDIRECTS = 10
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


def make_client(
    user_agent: str = "", transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one HTTP client the daemon shares across feeds (connection pooling)."""
    return httpx.AsyncClient(
        headers={"User-Agent": user_agent or USER_AGENT, "Accept": ACCEPT},
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        transport=transport,
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
    """GET ``url`` conditionally; the whole exchange must finish within ``timeout`` seconds."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    shown = mask_url(url)
    target, auth = _split_credentials(url)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("GET", target, headers=headers, auth=auth) as response:
                if response.status_code == 304:
                    return FetchResult(
                        url=url,
                        status=304,
                        etag=etag,
                        last_modified=last_modified,
                        headers=dict(response.headers),
                    )
                if response.status_code != 200:
                    raise FeedError(
                        shown,
                        f"HTTP {response.status_code} {response.reason_phrase}; "
                        "check the feed URL in the config",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FeedError(
                            shown, f"response larger than {max_bytes // (1024 * 1024)} MiB"
                        )
                    chunks.append(chunk)
                return FetchResult(
                    url=url,
                    status=200,
                    content=b"".join(chunks),
                    headers=dict(response.headers),
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
    except TimeoutError as exc:
        raise FeedError(shown, f"no complete response within {timeout:g}s") from exc
    except httpx.TooManyRedirects as exc:
        raise FeedError(shown, f"more than {MAX_REDIRECTS} redirects") from exc
    except httpx.HTTPError as exc:
        # httpx messages can contain the URL; say only the kind of failure.
        raise FeedError(shown, f"{type(exc).__name__}: {_reason(exc)}") from exc


def _split_credentials(url: str) -> tuple[httpx.URL | str, httpx.BasicAuth | None]:
    """Move user:password out of the URL into an auth header, so no library ever logs it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url, None
    if not parsed.userinfo:
        return parsed, None
    auth = httpx.BasicAuth(parsed.username, parsed.password)
    return parsed.copy_with(username=None, password=None), auth


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return mask_url(text)
