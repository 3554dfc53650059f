"""A feed URL before any request: its scheme, host and port checked, its credentials
taken out.

A URL that cannot be fetched is refused here with the real reason (a numeric spelling
of a private address is an SSRF refusal, not "invalid URL"), and ``user:password`` is
moved out of the URL before any library sees it, so no library can log it: it is sent
as Basic auth, and only to the URL's own origin (see :func:`_same_origin`).
:func:`url_problem` is the same check for `news-monitor check`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from monitor.errors import FeedError
from monitor.fetch.guard import _refused, non_public_reason, numeric_host
from monitor.fetch.stop import _short, _Stop
from monitor.text import mask_url

Credentials = tuple[str, str]

#: A DNS name as resolvers take it: labels of 1-63 letters, digits, '-' or '_' (real
#: hosts have them at either end: myblog-.tumblr.com, _dmarc.example.org), 253
#: characters at most, a final dot allowed. An empty or longer label makes
#: getaddrinfo() raise, not fail.
_LABEL = r"[A-Za-z0-9_-]{1,63}"
_HOSTNAME = re.compile(rf"(?=[^\n]{{1,253}}\.?$)(?:{_LABEL}\.)*{_LABEL}\.?")


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


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    if _host(a) != _host(b):
        return False
    if a.scheme == b.scheme:
        return (a.port or _default_port(a)) == (b.port or _default_port(b))
    # http -> https on the default ports is an upgrade of the same site (as httpx does).
    return a.scheme == "http" and b.scheme == "https" and a.port is None and b.port is None


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _show(url: httpx.URL) -> str:
    return _short(mask_url(str(url)))
