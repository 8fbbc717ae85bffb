"""URL snapshots against a real HTTP/1.1 server on loopback (plain and TLS), and the address
checks without any network."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpline.core.errors import Invalid, TooLarge
from helpline.evidence import snapshot
from helpline.evidence.snapshot import (
    USER_AGENT,
    IPAddress,
    Snapshot,
    SnapshotFailed,
    SnapshotRefused,
    SnapshotTooLarge,
    address_refusal,
    fetch_snapshot,
)

PAGE = b"<html><body>The post that harms a victim.</body></html>"
LIMIT = 64 * 1024
WAIT = 5.0  # upper bound for any server-side wait


# ---------------------------------------------------------------- a small HTTP/1.1 server


@dataclass
class Received:
    target: str
    headers: dict[str, str]


@dataclass
class Site:
    """An `asyncio.start_server` HTTP/1.1 responder: one request per connection."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
            _, target, _ = line.split(" ", 2)
            headers = {}
            for header in lines:
                name, _, value = header.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.requests.append(Received(target, headers))
            await self.respond(target, headers, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass  # the client went away (as it should, for the refused cases)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), WAIT)

    @staticmethod
    async def send(
        writer: asyncio.StreamWriter,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        content_length: int | None = -1,
    ) -> None:
        if content_length == -1:
            content_length = len(body)
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
        if content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await asyncio.wait_for(writer.drain(), WAIT)

    async def respond(
        self, target: str, headers: dict[str, str], writer: asyncio.StreamWriter
    ) -> None:
        path = target.split("?", 1)[0]
        send = self.send
        if path == "/page":
            await send(
                writer,
                "200 OK",
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("X-Evidence", "kept"),
                    ("Set-Cookie", "tracking=1"),
                ],
                PAGE,
            )
        elif path == "/echo":
            await send(
                writer,
                "200 OK",
                [("Content-Type", "application/json")],
                json.dumps(headers).encode(),
            )
        elif path == "/gone":
            await send(writer, "404 Not Found", [], b"removed")
        elif path.startswith("/go/"):  # /go/<status>/<location>
            _, _, status, location = path.split("/", 3)
            location = location.replace("PORT", str(self.port))
            await send(writer, f"{status} Moved", [("Location", location)])
        elif path == "/r1":
            await send(writer, "302 Found", [("Location", "r2")])  # relative to /r1
        elif path == "/r2":
            await send(writer, "301 Moved", [("Location", f"{self.base}/r3")])  # absolute
        elif path == "/r3":
            await send(writer, "307 Temporary", [("Location", "/page?via=r3#top")])
        elif path == "/cookie":
            await send(
                writer, "302 Found", [("Set-Cookie", "session=secret"), ("Location", "/echo")]
            )
        elif path == "/loop":
            await send(writer, "302 Found", [("Location", "/loop")])
        elif path == "/ping":
            await send(writer, "302 Found", [("Location", "/pong")])
        elif path == "/pong":
            await send(writer, "302 Found", [("Location", "/ping")])
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            location = f"/chain/{left - 1}" if left > 0 else "/page"
            await send(writer, "302 Found", [("Location", location)])
        elif path == "/huge":  # streamed, no Content-Length: ends when the client goes away
            await send(writer, "200 OK", [], content_length=None)
            chunk = b"x" * 16384
            for _ in range(4096):  # at most 64 MiB
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), WAIT)
        elif path == "/declared-huge":
            await send(writer, "200 OK", [], b"small", content_length=10**9)
        elif path == "/lying":  # says 10 bytes, sends far more
            await send(writer, "200 OK", [], b"0123456789" + b"y" * 200_000, content_length=10)
        elif path == "/short":  # says 1000 bytes, sends 10 and hangs up
            await send(writer, "200 OK", [], b"0123456789", content_length=1000)
        elif path == "/slow":
            await asyncio.sleep(WAIT)
            await send(writer, "200 OK", [], PAGE)
        elif path == "/slow-body":
            await send(writer, "200 OK", [], content_length=None)
            for _ in range(int(WAIT / 0.05)):
                writer.write(b".")
                await asyncio.wait_for(writer.drain(), WAIT)
                await asyncio.sleep(0.05)
        else:
            await send(writer, "404 Not Found", [], b"no such test page")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=WAIT)


@contextlib.asynccontextmanager
async def serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Site]:
    site = Site()
    server = await asyncio.start_server(site.handle, "127.0.0.1", 0, ssl=ssl_context)
    site.port = server.sockets[0].getsockname()[1]
    try:
        yield site
    finally:
        server.close()
        await site.stop()
        await asyncio.wait_for(server.wait_closed(), WAIT)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serving() as running:
        yield running


async def fetch(url: str, **options: object) -> Snapshot:
    settings: dict[str, object] = {
        "timeout": 3.0,
        "max_bytes": LIMIT,
        "max_redirects": 5,
        "allow_loopback": True,
    }
    settings.update(options)
    return await fetch_snapshot(url, **settings)  # type: ignore[arg-type]


def fake_resolver(
    names: dict[str, list[str]],
) -> Callable[[str, int], Awaitable[list[IPAddress]]]:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in names:
            raise AssertionError(f"unexpected resolution of {host}")
        return [ipaddress.ip_address(a) for a in names[host]]

    return resolve


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any host name resolution fails the test: the checks run without the network."""
    monkeypatch.setattr(snapshot, "resolve_host", fake_resolver({}))


# ---------------------------------------------------------------- good cases


async def test_page_with_headers_hash_and_size(site: Site) -> None:
    before = dt.datetime.now(dt.UTC)
    result = await fetch(f"{site.base}/page#fragment")
    assert result.status == 200
    assert result.final_url == f"{site.base}/page"
    assert result.body == PAGE
    assert result.size == len(PAGE)
    assert result.sha256 == hashlib.sha256(PAGE).hexdigest()
    assert ("X-Evidence", "kept") in result.headers
    assert ("Content-Type", "text/html; charset=utf-8") in result.headers
    assert result.fetched_at.tzinfo is dt.UTC and before <= result.fetched_at
    assert [r.target for r in site.requests] == ["/page"]


async def test_request_is_neutral(site: Site) -> None:
    result = await fetch(f"{site.base}/cookie")  # sets a cookie, then redirects to /echo
    assert result.body is not None
    sent = json.loads(result.body)
    assert sent["user-agent"] == USER_AGENT
    assert sent["host"] == f"127.0.0.1:{site.port}"
    assert not {"cookie", "authorization", "referer", "x-forwarded-for"} & set(sent)


async def test_error_status_is_still_a_snapshot(site: Site) -> None:
    result = await fetch(f"{site.base}/gone")
    assert (result.status, result.body) == (404, b"removed")


async def test_redirect_chain_relative_and_absolute(site: Site) -> None:
    result = await fetch(f"{site.base}/r1")
    assert result.final_url == f"{site.base}/page?via=r3"
    assert result.body == PAGE
    assert [r.target for r in site.requests] == ["/r1", "/r2", "/r3", "/page?via=r3"]


async def test_exactly_max_redirects_is_allowed(site: Site) -> None:
    result = await fetch(f"{site.base}/chain/2", max_redirects=3)
    assert result.body == PAGE
    with pytest.raises(SnapshotRefused, match="redirects more than 2 times"):
        await fetch(f"{site.base}/chain/2", max_redirects=2)
    with pytest.raises(SnapshotRefused, match="more than 0 times"):
        await fetch(f"{site.base}/r1", max_redirects=0)


async def test_sink_receives_the_body(site: Site) -> None:
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    result = await fetch(f"{site.base}/page", sink=sink)
    assert result.body is None
    assert b"".join(chunks) == PAGE
    assert result.sha256 == hashlib.sha256(PAGE).hexdigest()
    assert result.size == len(PAGE)


async def test_connects_to_the_checked_address_not_the_name(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `evidence.test` exists nowhere: the fetch works only because the connection goes to the
    # address the resolver gave (once), while Host still names the site
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(snapshot, "resolve_host", resolve)
    result = await fetch(f"http://Evidence.TEST:{site.port}/echo")
    assert result.final_url == f"http://evidence.test:{site.port}/echo"
    assert result.body is not None
    assert json.loads(result.body)["host"] == f"evidence.test:{site.port}"
    assert calls == ["evidence.test"]


async def test_real_resolver_tries_each_checked_address(site: Site) -> None:
    # localhost may resolve to ::1 first; the server listens on 127.0.0.1 only
    result = await fetch(f"http://localhost:{site.port}/page")
    assert result.body == PAGE
    with pytest.raises(SnapshotRefused, match="loopback"):
        await fetch(f"http://localhost:{site.port}/page", allow_loopback=False)


# ---------------------------------------------------------------- refused against the server


async def test_loopback_refused_unless_allowed(site: Site) -> None:
    with pytest.raises(SnapshotRefused, match="loopback") as refused:
        await fetch(f"{site.base}/page", allow_loopback=False)
    assert refused.value.code == "url_refused" and refused.value.status == 422
    assert site.requests == []  # refused before connecting


async def test_redirect_to_metadata_address_refused(site: Site) -> None:
    url = f"{site.base}/go/302/http://169.254.169.254/latest/meta-data/"
    with pytest.raises(SnapshotRefused, match="link-local or cloud metadata") as refused:
        await fetch(url)
    assert "169.254" not in refused.value.message and "meta-data" not in refused.value.message


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://10.0.0.1/", "private network"),
        ("http://[::ffff:192.168.0.1]/", "private network"),
        ("http://2130706433/", "a.b.c.d"),
        ("ftp://127.0.0.1:PORT/page", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("http://user:pw@127.0.0.1:PORT/page", "user name or password"),
    ],
)
async def test_redirect_targets_are_checked(site: Site, location: str, message: str) -> None:
    with pytest.raises(SnapshotRefused, match=message):
        await fetch(f"{site.base}/go/302/{location}")
    assert len(site.requests) == 1


async def test_redirect_to_name_resolving_to_private_address(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "resolve_host", fake_resolver({"intranet.test": ["10.9.8.7"]}))
    with pytest.raises(SnapshotRefused, match="private network"):
        await fetch(f"{site.base}/go/301/http://intranet.test/admin")


@pytest.mark.parametrize("path", ["/loop", "/ping"])
async def test_redirect_loop_refused(site: Site, path: str) -> None:
    with pytest.raises(SnapshotRefused, match="loop"):
        await fetch(f"{site.base}{path}", max_redirects=20)
    assert len(site.requests) <= 2


@pytest.mark.parametrize("use_sink", [False, True])
async def test_huge_streamed_body_refused(site: Site, use_sink: bool) -> None:
    received: list[int] = []

    async def sink(chunk: bytes) -> None:
        received.append(len(chunk))

    with pytest.raises(SnapshotTooLarge, match="larger than the limit of 65536 bytes") as big:
        await fetch(f"{site.base}/huge", sink=sink if use_sink else None)
    assert isinstance(big.value, TooLarge) and isinstance(big.value, SnapshotRefused)
    assert big.value.status == 413
    assert sum(received) <= LIMIT  # the sink never got more than the limit


async def test_declared_content_length_over_limit_refused_before_reading(site: Site) -> None:
    received: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        received.append(chunk)

    with pytest.raises(SnapshotTooLarge):
        await fetch(f"{site.base}/declared-huge", sink=sink)
    assert received == []


async def test_lying_small_content_length_reads_only_what_was_declared(site: Site) -> None:
    result = await fetch(f"{site.base}/lying")
    assert (result.body, result.size) == (b"0123456789", 10)
    assert result.sha256 == hashlib.sha256(b"0123456789").hexdigest()


async def test_body_shorter_than_declared_fails(site: Site) -> None:
    with pytest.raises(SnapshotFailed, match="incomplete or malformed") as failed:
        await fetch(f"{site.base}/short")
    assert failed.value.code == "snapshot_failed"


@pytest.mark.parametrize("path", ["/slow", "/slow-body"])
async def test_timeout_covers_the_whole_fetch(site: Site, path: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SnapshotFailed, match="did not answer within 0.3 seconds"):
        await fetch(f"{site.base}{path}", timeout=0.3)
    assert loop.time() - started < 2


async def test_timeout_covers_redirects(site: Site) -> None:
    with pytest.raises(SnapshotFailed, match="within 0.3 seconds"):
        await fetch(f"{site.base}/go/302//slow", timeout=0.3)


async def test_connection_refused_is_a_clear_failure() -> None:
    async with serving() as gone:
        port = gone.port
    with pytest.raises(SnapshotFailed, match="Could not connect"):
        await fetch(f"http://127.0.0.1:{port}/page")


# ---------------------------------------------------------------- TLS: SNI and the name checked


@dataclass
class Certificates:
    client: ssl.SSLContext
    server: ssl.SSLContext
    sni: list[str | None]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Snapshot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snapshot.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("snapshot.test")]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


@pytest.fixture
def certificates(tls_files: tuple[bytes, Path, Path]) -> Certificates:
    ca_pem, cert_file, key_file = tls_files
    sni: list[str | None] = []
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    server.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    client = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    return Certificates(client=client, server=server, sni=sni)


async def test_https_verifies_the_host_name_while_connecting_to_the_address(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"snapshot.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]}
    monkeypatch.setattr(snapshot, "resolve_host", fake_resolver(names))
    async with serving(certificates.server) as tls_site:
        url = f"https://snapshot.test:{tls_site.port}/echo"
        result = await fetch(url, ssl_context=certificates.client)
        assert result.final_url == url
        assert result.body is not None
        assert json.loads(result.body)["host"] == f"snapshot.test:{tls_site.port}"
        assert certificates.sni == ["snapshot.test"]

        with pytest.raises(SnapshotFailed, match="certificate is not valid"):
            await fetch(
                f"https://impostor.test:{tls_site.port}/page", ssl_context=certificates.client
            )
        with pytest.raises(SnapshotFailed, match="TLS"):  # an IP literal: no name matches
            await fetch(f"https://127.0.0.1:{tls_site.port}/page", ssl_context=certificates.client)


# ---------------------------------------------------------------- pure checks, no network


@pytest.mark.usefixtures("no_dns")
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/", "loopback"),
        ("http://10.1.2.3/", "private network"),
        ("http://172.16.5.4/", "private network"),
        ("http://192.168.1.1/", "private network"),
        ("http://169.254.169.254/latest/meta-data/", "link-local or cloud metadata"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:a9fe:a9fe]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fd00::1]/", "private network"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),
        ("http://[2002:a00:1::]/", "private network"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://240.0.0.1/", "not fetched"),
        ("http://2130706433/", "a.b.c.d"),
        ("http://0x7f.0.0.1/", "a.b.c.d"),
        ("http://0x7f000001/", "a.b.c.d"),
        ("http://0177.0.0.1/", "a.b.c.d"),
        ("ftp://x/", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("javascript:alert(1)", "Only http:// and https://"),
        ("gopher://example.com/", "Only http:// and https://"),
        ("//example.com/", "Only http:// and https://"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://example.com\\@127.0.0.1/", "user name or password"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "not valid"),
        ("http://example.com:0/", "port is not valid"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("http://exa_mple-.com/", "host name is not valid"),
        ("http://example.com/" + "a" * 2048, "too long"),
    ],
)
async def test_refused_without_network(url: str, message: str) -> None:
    with pytest.raises(SnapshotRefused, match=message) as refused:
        await fetch_snapshot(url, timeout=1, max_bytes=LIMIT, max_redirects=3)
    assert isinstance(refused.value, Invalid)
    assert refused.value.code == "url_refused"
    assert url not in refused.value.message and "example" not in refused.value.message


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], ["93.184.215.14", "192.168.0.1"], ["2606:4700::1111", "fd12::1"]],
)
async def test_a_name_with_any_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    monkeypatch.setattr(snapshot, "resolve_host", fake_resolver({"victim-site.test": addresses}))
    with pytest.raises(SnapshotRefused, match="private network"):
        await fetch_snapshot(
            "https://victim-site.test/post/1", timeout=1, max_bytes=LIMIT, max_redirects=3
        )


async def test_a_name_that_resolves_to_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "resolve_host", fake_resolver({"empty.test": []}))
    with pytest.raises(SnapshotFailed, match="could not be resolved"):
        await fetch_snapshot("http://empty.test/", timeout=1, max_bytes=LIMIT, max_redirects=3)


async def test_resolver_sees_numeric_spellings_as_the_address() -> None:
    # glibc's getaddrinfo turns these into 127.0.0.1 without any network: if the form check
    # were bypassed, the address check would still see loopback
    for host in ("2130706433", "0x7f.0.0.1"):
        try:
            resolved = await asyncio.wait_for(snapshot.resolve_host(host, 80), WAIT)
        except SnapshotFailed:
            continue  # a resolver that does not accept the form: nothing to reach either
        assert resolved and all(address_refusal(a) for a in resolved)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.255.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254",
        "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.251", "239.255.255.250",
        "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "192.0.0.8",
        "::1", "::", "fe80::1", "fc00::1", "fdff::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",
        "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808",
        "2002:7f00:1::", "2002:c0a8:1::", "2002:a9fe:a9fe::1", "2001::1", "192.88.99.1",
        "3fff::1", "5f00::1", "100::1",
    ],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
    ],
)
def test_allow_loopback_allows_only_loopback(address: str, allowed: bool) -> None:
    refusal = address_refusal(ipaddress.ip_address(address), allow_loopback=True)
    assert (refusal is None) is allowed
