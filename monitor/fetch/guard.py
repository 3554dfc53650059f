"""The address guard: no feed fetch may reach a private or otherwise non-public address.

A feed URL comes from a config file or a redirect, so it can point anywhere: at the
machine's own services (``127.0.0.1``, ``169.254.169.254``), at the local network, or
at a public name that resolves to one of those. :class:`AddressGuard` resolves a host
and refuses it if any of its addresses is not public (unless ``fetch.allow_private``
lists it); :class:`_GuardedTransport` makes every connection go through the guard and
to an address it checked, so a second DNS answer cannot slip in between the check and
the connect (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from monitor.fetch.stop import _Stop

#: Resolve (host, port) to IP address strings; :func:`system_resolver` by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4ISH = re.compile(r"[0-9][0-9a-fA-FxX.]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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
