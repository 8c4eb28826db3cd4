"""Where a result URL may be fetched from (media/url_guard.py): the address policy on literal and resolved
hosts, and the guarded transport's pinning (the request goes to the checked address, with the original Host
header and TLS name), through a real httpx client with redirects."""

from __future__ import annotations

import httpx
import pytest

from shim.media.url_guard import AddressPolicy, GuardedTransport, UnsafeUrl

UPSTREAM = "http://127.0.0.1:8123"


def resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://127.0.0.1:8124/x.png",  # the upstream's host, another port: not its origin
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.1.2.3/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "http://metadata.internal/x",  # resolves to a link-local address below
        "http://mixed.example/x",  # one public and one private address: refused
        "file:///etc/passwd",
        "ftp://cdn.example/x",
        "https://user:pass@cdn.example/x",
        "http://nowhere.example/x",  # does not resolve
    ],
)
async def test_non_public_or_odd_urls_are_refused(url) -> None:
    """Loopback (other than the upstream's own origin), private, link-local, shared, unspecified, multicast and
    IPv4-mapped addresses, odd schemes, credentials and unresolvable hosts are all refused."""
    policy = AddressPolicy(
        [UPSTREAM],
        resolve=resolver({"metadata.internal": ["169.254.169.254"], "mixed.example": ["93.184.216.34", "10.0.0.1"]}),
    )
    with pytest.raises(UnsafeUrl):
        await policy.address(httpx.URL(url))


async def test_trusted_origin_and_allowed_networks_pass() -> None:
    """The configured upstream's own origin (the emulator on 127.0.0.1) and SHIM_FETCH_ALLOW entries pass."""
    policy = AddressPolicy(
        [UPSTREAM + "/_upstream/reapi"],
        allow=["10.0.0.0/8", "cdn.corp"],
        resolve=resolver({"files.corp": ["10.9.9.9"]}),
    )
    assert await policy.address(httpx.URL(UPSTREAM + "/media/0.png")) is None
    assert await policy.address(httpx.URL("http://10.2.3.4/x.png")) is None
    assert await policy.address(httpx.URL("http://cdn.corp/x.png")) is None
    assert await policy.address(httpx.URL("http://files.corp/x.png")) == "10.9.9.9"


async def test_public_host_is_pinned_to_the_checked_address() -> None:
    """A public host is resolved once and the request goes to that address, with the Host header and the TLS
    server name kept: a second DNS answer (rebinding to 127.0.0.1) is never used."""
    seen: list[httpx.Request] = []

    def inner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"png")

    policy = AddressPolicy([], resolve=resolver({"cdn.example.com": ["93.184.216.34"]}))
    async with httpx.AsyncClient(transport=GuardedTransport(httpx.MockTransport(inner), policy)) as client:
        response = await client.get("https://cdn.example.com:8443/media/0.png?sig=abc")
    assert response.content == b"png"
    (sent,) = seen
    assert (sent.url.host, sent.url.port, sent.url.path, sent.url.query) == (
        "93.184.216.34",
        8443,
        "/media/0.png",
        b"sig=abc",
    )
    assert sent.headers["host"] == "cdn.example.com:8443"
    assert sent.extensions["sni_hostname"] == "cdn.example.com"
    assert response.request.url.host == "cdn.example.com"  # the client sees the URL it asked for


async def test_every_redirect_hop_is_checked() -> None:
    """A public result URL redirecting to the metadata service is refused at the hop, never fetched."""
    fetched: list[str] = []

    def inner(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})

    policy = AddressPolicy([], resolve=resolver({"cdn.example.com": ["93.184.216.34"]}))
    transport = GuardedTransport(httpx.MockTransport(inner), policy)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(UnsafeUrl, match="169.254.169.254"):
            await client.get("http://cdn.example.com/0.png")
    assert fetched == ["http://93.184.216.34/0.png"]
