"""URL snapshots: fetch what a URL serves, with strict limits, as evidence.

The URL comes from a victim or a staff member, so the fetch is treated as hostile input aimed at
our own network (SSRF). Every hop is checked the same way:

- only `http` and `https`, no user name or password in the URL, at most `MAX_URL_LENGTH`
  characters;
- the host name is resolved here, and the hop is refused if *any* address it resolves to is not
  a public unicast address (loopback, private, link-local and the cloud metadata address,
  carrier-grade NAT, multicast, unspecified, reserved, and IPv6 forms that embed such an IPv4
  address). Loopback is allowed only with `allow_loopback` (tests);
- the connection goes to the address that was checked, never to the name again, so a second DNS
  answer cannot point somewhere else (DNS rebinding). The `Host` header, TLS SNI and certificate
  verification still use the host name.

Redirects are followed by hand, up to `max_redirects`, and each target is checked as above. One
`asyncio.timeout` covers resolution, connections, every redirect and the body; the body stops
at `max_bytes`. No cookies, no credentials, nothing about the victim is sent.

The URL is personal data: it is never logged, and error messages say what went wrong without
repeating it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx

from helpline.core.errors import HelplineError, Invalid, TooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
USER_AGENT = "Helpline evidence snapshot"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Networks that the `ipaddress` properties do not all cover on every Python version.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # last 32 bits are an IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # site-local translation: never public
# Special-purpose ranges that not every Python 3.11 release counts as private (IANA registry)
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.0.0/24", "192.88.99.0/24", "100::/64", "3fff::/20", "5f00::/16")
)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")


class SnapshotRefused(Invalid):
    """The URL, an address it resolves to, or a redirect target is not allowed."""

    code = "url_refused"


class SnapshotTooLarge(SnapshotRefused, TooLarge):
    """The response body is larger than the limit (declared or actually sent)."""

    status = 413
    code = "too_large"


class SnapshotFailed(HelplineError):
    """The URL was allowed but could not be fetched: no answer in time, no connection, a bad
    certificate, a malformed response."""

    status = 502
    code = "snapshot_failed"


@dataclass(frozen=True, slots=True)
class Snapshot:
    final_url: str  # after redirects, without any #fragment
    status: int
    headers: list[tuple[str, str]]  # as received, in order, repeated names kept
    fetched_at: datetime  # UTC, when the final response's headers arrived
    size: int
    sha256: str  # hex, of the body bytes as received (no content decoding)
    body: bytes | None  # None when the body went to a sink


@dataclass(frozen=True, slots=True)
class Target:
    """One checked hop: what to ask for, and the name it is asked under."""

    url: SplitResult
    scheme: str
    host: str  # ASCII (IDNA) host name or IP address text, lowercase, no brackets
    port: int
    is_ip_literal: bool

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def target(self) -> str:
        """Path and query, as sent in the request line."""
        path = self.url.path or "/"
        return f"{path}?{self.url.query}" if self.url.query else path

    @property
    def public_url(self) -> str:
        netloc = self.host_header
        return urlunsplit((self.scheme, netloc, self.url.path or "/", self.url.query, ""))


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (A and AAAA). Tests replace this function."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError):
        raise SnapshotFailed("The site's host name could not be resolved.") from None
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why the fetcher may not connect to `address`, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_refusal(embedded, allow_loopback=allow_loopback)
        if address in _NAT64_LOCAL:
            return "a local address translation range"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address (this server itself)"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local or cloud metadata address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private network address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global or any(address in network for network in _NOT_GLOBAL):
        return "an address that is not public"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv4-mapped, 6to4 or NAT64 address stands for. (The deprecated
    IPv4-compatible ::a.b.c.d form is refused as reserved.)"""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_url(url: str) -> Target:
    """Parse and check a URL's form (not its addresses); raise `SnapshotRefused` if not allowed."""
    if len(url) > MAX_URL_LENGTH:
        raise SnapshotRefused(f"The URL is too long (more than {MAX_URL_LENGTH} characters).")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise SnapshotRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SnapshotRefused("The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise SnapshotRefused("Only http:// and https:// URLs can be fetched.")
    if "@" in parts.netloc:
        raise SnapshotRefused("URLs with a user name or password are not fetched.")
    if "\\" in parts.netloc:
        raise SnapshotRefused("The URL's host is not valid.")
    if port == 0:
        raise SnapshotRefused("The URL's port is not valid.")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise SnapshotRefused("The URL has no host.")
    host, is_ip = _normalise_host(raw_host)
    return Target(
        url=parts,
        scheme=scheme,
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        is_ip_literal=is_ip,
    )


def _normalise_host(raw_host: str) -> tuple[str, bool]:
    try:
        address = ipaddress.ip_address(raw_host)
    except ValueError:
        pass
    else:
        return str(address), True
    host = raw_host.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise SnapshotRefused("The URL's host name is not valid.") from None
    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise SnapshotRefused("The URL's host name is not valid.")
    # http://2130706433/, http://0x7f.1/, http://0177.0.0.1/: other spellings of IPv4 addresses
    # that resolvers accept. A real host name never ends in a numeric label, so refuse outright
    # (the resolved address would be checked anyway).
    last = labels[-1]
    if last.isdigit() or _HEX_NUMBER.fullmatch(last):
        raise SnapshotRefused("IP addresses must be written as a.b.c.d or [IPv6].")
    return host, False


async def _checked_addresses(target: Target, allow_loopback: bool) -> list[IPAddress]:
    if target.is_ip_literal:
        addresses = [ipaddress.ip_address(target.host)]
    else:
        addresses = await resolve_host(target.host, target.port)
    if not addresses:
        raise SnapshotFailed("The site's host name could not be resolved.")
    for address in addresses:
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise SnapshotRefused(f"The URL leads to {reason}; it is not fetched.")
    return addresses


async def fetch_snapshot(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    max_redirects: int,
    allow_loopback: bool = False,
    sink: Callable[[bytes], Awaitable[None]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Snapshot:
    """Fetch `url` under the rules in this module's docstring.

    With `sink`, body chunks are awaited into it as they arrive and `Snapshot.body` is None; if
    this raises, whatever the sink received is incomplete and must be discarded. Without `sink`
    the body is returned. `ssl_context` replaces the default (system CAs, via httpx) for tests
    and private CAs.

    Raises `SnapshotRefused` (422) for a URL or address that is not allowed, including too
    many redirects; `SnapshotTooLarge` (413, also a `SnapshotRefused`) for a body over
    `max_bytes`; `SnapshotFailed` (502) when the site cannot be reached, answers too slowly,
    or sends a malformed response.
    """
    target = check_url(url)
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    try:
        async with asyncio.timeout(timeout):
            return await _follow(target, verify, max_bytes, max_redirects, allow_loopback, sink)
    except TimeoutError:
        raise SnapshotFailed(f"The site did not answer within {timeout:g} seconds.") from None


async def _follow(
    target: Target,
    verify: ssl.SSLContext | bool,
    max_bytes: int,
    max_redirects: int,
    allow_loopback: bool,
    sink: Callable[[bytes], Awaitable[None]] | None,
) -> Snapshot:
    seen = {target.public_url}
    redirects = 0
    while True:
        addresses = await _checked_addresses(target, allow_loopback)
        # a fresh transport per hop: no connection (and its TLS name) is reused for another host
        async with httpx.AsyncHTTPTransport(verify=verify, trust_env=False, retries=0) as transport:
            response = await _open(transport, target, addresses)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    next_url = urljoin(target.public_url, location)
                else:
                    return await _read(response, target, max_bytes, sink)
            finally:
                await response.aclose()
        redirects += 1
        if redirects > max_redirects:
            raise SnapshotRefused(f"The URL redirects more than {max_redirects} times.")
        target = check_url(next_url)
        if target.public_url in seen:
            raise SnapshotRefused("The URL redirects in a loop.")
        seen.add(target.public_url)


async def _open(
    transport: httpx.AsyncHTTPTransport, target: Target, addresses: list[IPAddress]
) -> httpx.Response:
    """Send the request to the first checked address that accepts a connection."""
    failure: httpx.TransportError | None = None
    for address in addresses:
        literal = f"[{address}]" if address.version == 6 else str(address)
        extensions: dict[str, object] = {}
        if not target.is_ip_literal:
            extensions["sni_hostname"] = target.host  # TLS name and certificate check
        try:
            request_url = httpx.URL(f"{target.scheme}://{literal}:{target.port}{target.target}")
        except httpx.InvalidURL:
            raise SnapshotRefused("The URL is not valid.") from None
        request = httpx.Request(
            "GET",
            request_url,
            headers=[
                ("Host", target.host_header),
                ("User-Agent", USER_AGENT),
                ("Accept", "*/*"),
                ("Accept-Encoding", "identity"),  # the body as served, and no zip bombs
                ("Connection", "close"),
            ],
            extensions=extensions,
        )
        try:
            return await transport.handle_async_request(request)
        except httpx.ConnectError as exc:
            failure = exc
        except httpx.TransportError as exc:
            raise _failed(exc) from None
    assert failure is not None
    raise _failed(failure) from None


async def _read(
    response: httpx.Response,
    target: Target,
    max_bytes: int,
    sink: Callable[[bytes], Awaitable[None]] | None,
) -> Snapshot:
    fetched_at = datetime.now(UTC)
    too_large = SnapshotTooLarge(f"The page is larger than the limit of {_amount(max_bytes)}.")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise too_large
    digest = hashlib.sha256()
    size = 0
    body = bytearray() if sink is None else None
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            digest.update(chunk)
            if body is not None:
                body += chunk
            elif sink is not None:
                await sink(chunk)
    except httpx.TransportError as exc:
        raise _failed(exc) from None
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
    ]
    return Snapshot(
        final_url=target.public_url,
        status=response.status_code,
        headers=headers,
        fetched_at=fetched_at,
        size=size,
        sha256=digest.hexdigest(),
        body=bytes(body) if body is not None else None,
    )


def _amount(size: int) -> str:
    mib = 1024 * 1024
    return f"{size // mib} MiB" if size >= mib and size % mib == 0 else f"{size} bytes"


def _failed(exc: httpx.TransportError) -> SnapshotFailed:
    # httpx's own messages are not shown: they are vague and could carry details of the request
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return SnapshotFailed("The site's TLS certificate is not valid for its name.")
        if isinstance(cause, ssl.SSLError):
            return SnapshotFailed("A secure (TLS) connection to the site failed.")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return SnapshotFailed("Could not connect to the site.")
    if isinstance(exc, httpx.RemoteProtocolError):
        return SnapshotFailed("The site sent an incomplete or malformed response.")
    if isinstance(exc, httpx.TimeoutException):
        return SnapshotFailed("The site did not answer in time.")
    return SnapshotFailed("The site could not be fetched.")
