"""Where the shim may fetch a URL that an upstream handed it (a result image): http(s) only, and only to public
addresses, unless the URL's origin is a configured upstream's own (the emulator on 127.0.0.1) or an address the
operator allowed (SHIM_FETCH_ALLOW). Otherwise a hostile upstream could make the shim fetch its cloud
metadata service or an internal admin page and hand the body back base64-encoded as an "image".

`GuardedTransport` checks every request that goes through it (so every redirect hop too) and connects to the
address it checked, never to a second DNS answer (no rebinding): the URL is rewritten to the checked IP, with
the Host header and the TLS server name kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(Exception):
    """A URL the shim refuses to fetch; the message says why (never with the URL's query string)."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int


def origin_of(url: str | httpx.URL) -> Origin | None:
    """(scheme, lowercased host, port) of an http(s) URL, else None."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.host:
        return None
    return Origin(scheme, parsed.host.lower(), parsed.port or _DEFAULT_PORTS[scheme])


def is_public(ip: IPAddress) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (169.254.169.254, the metadata
    service), shared (100.64/10), reserved, multicast or unspecified; IPv4-mapped IPv6 judged as its IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressPolicy:
    """Decides, per URL, whether it may be fetched and at which address."""

    def __init__(
        self,
        trusted: Iterable[str] = (),
        *,
        allow: Iterable[str] = (),
        resolve: Resolver = system_resolver,
    ) -> None:
        """`trusted`: base URLs whose origin may be fetched whatever its address (the configured upstreams).
        `allow`: host names or networks (CIDR) the operator allows although they are not public."""
        self._trusted = {o for o in (origin_of(url) for url in trusted) if o is not None}
        self._allowed_hosts: set[str] = set()
        self._allowed_nets: list[IPNetwork] = []
        for entry in allow:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self._allowed_nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._allowed_hosts.add(entry)
        self._resolve = resolve

    def _allowed(self, ip: IPAddress) -> bool:
        return is_public(ip) or any(ip in net for net in self._allowed_nets)

    async def address(self, url: httpx.URL) -> str | None:
        """The IP to connect to for `url`, or None to connect as usual (a trusted origin or an allowed host
        name). Raises UnsafeUrl."""
        origin = origin_of(url)
        if origin is None:
            raise UnsafeUrl(f"only http(s) URLs are fetched, not {url.scheme or 'this'!r}")
        if url.userinfo:
            raise UnsafeUrl("URLs with credentials are not fetched")
        if origin in self._trusted or origin.host in self._allowed_hosts:
            return None
        try:
            literal = ipaddress.ip_address(origin.host)
        except ValueError:
            pass
        else:
            if not self._allowed(literal):
                raise UnsafeUrl(f"{origin.host} is not a public address")
            return None
        try:
            found = await self._resolve(origin.host, origin.port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeUrl(f"{origin.host} does not resolve ({type(exc).__name__})") from None
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        if not addresses:
            raise UnsafeUrl(f"{origin.host} does not resolve")
        blocked = [a for a in addresses if not self._allowed(a)]
        if blocked:
            raise UnsafeUrl(f"{origin.host} resolves to {blocked[0]}, which is not a public address")
        return str(addresses[0])


class GuardedTransport(httpx.AsyncBaseTransport):
    """Every request is checked by the policy and sent to the address it checked."""

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: AddressPolicy, *, owns_inner: bool = True) -> None:
        self._inner = inner
        self._policy = policy
        self._owns_inner = owns_inner  # False: another client shares `inner` and closes it

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ip = await self._policy.address(request.url)
        if ip is None:
            return await self._inner.handle_async_request(request)
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.host  # the certificate is checked against the name
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=ip),
            headers=request.headers,  # Host: keeps the original name
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        if self._owns_inner:
            await self._inner.aclose()
