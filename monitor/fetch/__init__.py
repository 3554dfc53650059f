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

The modules, one part of a fetch each:

* :mod:`~monitor.fetch.client`: :class:`Fetcher`, :func:`make_client`, :func:`fetch`;
* :mod:`~monitor.fetch.hops`: one fetch, hop by hop, redirects and error messages;
* :mod:`~monitor.fetch.urls`: a URL checked and its credentials taken out before a hop;
* :mod:`~monitor.fetch.decode`: the body, decompressed with a bound on the output;
* :mod:`~monitor.fetch.guard`: the address guard (SSRF) and the guarded connections;
* :mod:`~monitor.fetch.limits`: the per-host and global concurrency caps;
* :mod:`~monitor.fetch.stop`: the reason a fetch gives up, shared by all of them.
"""

from monitor.fetch.client import (
    ACCEPT,
    MAX_BYTES,
    MAX_REDIRECTS,
    USER_AGENT,
    Fetcher,
    fetch,
    make_client,
)
from monitor.fetch.decode import ACCEPT_ENCODING
from monitor.fetch.guard import (
    AddressGuard,
    AddressPolicy,
    IPAddress,
    Resolver,
    non_public_reason,
    numeric_host,
    system_resolver,
)
from monitor.fetch.hops import RETRY_AFTER_CAP, parse_retry_after
from monitor.fetch.urls import url_problem

__all__ = [
    "ACCEPT",
    "ACCEPT_ENCODING",
    "MAX_BYTES",
    "MAX_REDIRECTS",
    "RETRY_AFTER_CAP",
    "USER_AGENT",
    "AddressGuard",
    "AddressPolicy",
    "Fetcher",
    "IPAddress",
    "Resolver",
    "fetch",
    "make_client",
    "non_public_reason",
    "numeric_host",
    "parse_retry_after",
    "system_resolver",
    "url_problem",
]
