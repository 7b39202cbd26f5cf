"""TLS upstreams: the connection goes to the checked address, the certificate is
verified for the upstream's name (SNI), for HTTP and websockets alike."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secmw.config import load_config
from secmw.errors import ConfigError
from secmw.proxy.build import build_gateway
from secmw.testing import AuditCapture
from tests.gateway_support import (
    EchoUpstream,
    HeldReceiver,
    assert_no_client_secrets,
    client_headers,
    gateway_config,
    serve,
    static_resolver,
)
from tests.support import Sender, http_scope, ws_scope

pytestmark = pytest.mark.anyio

NAME = "api.upstream.test"


def _certificate(
    subject: str, key: Any, issuer: x509.Name | None, signer: Any, *, ca: bool, names: list[str]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("secmw test CA", ca_key, None, ca_key, ca=True, names=[])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(NAME, key, ca.subject, ca_key, ca=False, names=[NAME])
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture(scope="module")
def tls_upstream(tls_files: dict[str, Path]) -> Iterator[tuple[EchoUpstream, int]]:
    echo = EchoUpstream()
    with serve(echo, ssl_certfile=str(tls_files["cert"]), ssl_keyfile=str(tls_files["key"])) as url:
        yield echo, int(url.rsplit(":", 1)[1])
    assert_no_client_secrets(echo)


def tls_config(port: int, ca: Path | None, host: str = NAME) -> dict[str, Any]:
    config = gateway_config([f"https://{host}:{port}"])
    config["gateway"]["ca_file"] = str(ca) if ca else None
    return config


async def test_https_upstream_by_name_pinned_to_the_checked_address(
    tls_upstream: tuple[EchoUpstream, int], tls_files: dict[str, Path]
) -> None:
    echo, port = tls_upstream
    audit = AuditCapture()
    gateway = build_gateway(
        load_config(tls_config(port, tls_files["ca"])),
        audit=audit,
        resolver=static_resolver({NAME: ["127.0.0.1"]}),
    )
    sender = Sender()
    await gateway(http_scope("/echo"), HeldReceiver(), sender)
    client = ws_scope("/ws", headers=client_headers("tls-token"))
    messages: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    await gateway(client, receive, record)
    await gateway.proxy.aclose()
    assert sender.status == 200
    assert sender.json()["headers"]["host"] == f"{NAME}:{port}"
    assert sent[0]["type"] == "websocket.accept"
    assert echo.seen[-1]["host"] == f"{NAME}:{port}"


async def test_a_certificate_for_another_name_is_refused(
    tls_upstream: tuple[EchoUpstream, int], tls_files: dict[str, Path]
) -> None:
    _, port = tls_upstream
    audit = AuditCapture()
    other = "other.upstream.test"
    gateway = build_gateway(
        load_config(tls_config(port, tls_files["ca"], host=other)),
        audit=audit,
        resolver=static_resolver({other: ["127.0.0.1"]}),
    )
    sender = Sender()
    await gateway(http_scope("/echo"), HeldReceiver(), sender)
    await gateway.proxy.aclose()
    assert sender.status == 502
    assert audit.events[-1].details["error"] == "ConnectError"


async def test_an_untrusted_issuer_is_refused(tls_upstream: tuple[EchoUpstream, int]) -> None:
    _, port = tls_upstream
    gateway = build_gateway(
        load_config(tls_config(port, None)), resolver=static_resolver({NAME: ["127.0.0.1"]})
    )
    sender = Sender()
    await gateway(http_scope("/echo"), HeldReceiver(), sender)
    await gateway.proxy.aclose()
    assert sender.status == 502


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.ca_file"):
        build_gateway(load_config(tls_config(443, tmp_path / "missing.pem")))


class _StrayTLSUpstream:
    """A TLS server that answers each request by its path and, after the first answer,
    sends a stray 500 in a record of its own (a late error page, a HEAD body)."""

    def __init__(self, files: dict[str, Path]) -> None:
        import socket
        import ssl
        import threading

        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(files["cert"]), str(files["key"]))
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._stray = True  # only after the very first answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: Any) -> None:
        raw.settimeout(5)
        with self._context.wrap_socket(raw, server_side=True) as conn:
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                path = head.split(b" ")[1]
                body = b"answer for " + path
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                if self._stray:
                    self._stray = False
                    conn.sendall(b"HTTP/1.1 500 Oops\r\ncontent-length: 5\r\n\r\noops!")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


async def test_bytes_after_an_answer_in_a_tls_record_never_reach_the_next_client(
    tls_files: dict[str, Path],
) -> None:
    upstream = _StrayTLSUpstream(tls_files)
    try:
        gateway = build_gateway(
            load_config(tls_config(upstream.port, tls_files["ca"])),
            audit=AuditCapture(),
            resolver=static_resolver({NAME: ["127.0.0.1"]}),
        )
        answers = []
        for who in ("/alice", "/bob", "/carol"):
            sender = Sender()
            await gateway(http_scope(who), HeldReceiver(), sender)
            answers.append((sender.status, sender.body))
        await gateway.proxy.aclose()
    finally:
        upstream.close()
    assert answers == [(200, b"answer for " + who) for who in (b"/alice", b"/bob", b"/carol")]
    assert upstream.connections == 2  # the stray's connection was dropped, the next reused


@pytest.mark.parametrize("client", ["builtin", "httpx"])
async def test_a_tls_connection_is_never_reused_for_a_name_its_certificate_does_not_prove(
    tls_upstream: tuple[EchoUpstream, int], tls_files: dict[str, Path], client: str
) -> None:
    echo, port = tls_upstream
    other = "other.upstream.test"  # the same address, but the certificate names NAME only
    config = gateway_config([f"https://{NAME}:{port}"], client=client)
    section = config["gateway"]
    section["ca_file"] = str(tls_files["ca"])
    section["upstreams"]["b"] = {
        "targets": [f"https://{other}:{port}"],
        "headers": {"authorization": "Bearer b-own-credential"},
    }
    section["routes"] = [
        {"prefix": "/a", "upstream": "u"},
        {"prefix": "/b", "upstream": "b"},
    ]
    audit = AuditCapture()
    gateway = build_gateway(
        load_config(config),
        audit=audit,
        resolver=static_resolver({NAME: ["127.0.0.1"], other: ["127.0.0.1"]}),
    )
    first, second = Sender(), Sender()
    before = len(echo.seen)
    await gateway(http_scope("/a/echo"), HeldReceiver(), first)
    await gateway(http_scope("/b/echo"), HeldReceiver(), second)
    await gateway.proxy.aclose()
    assert first.status == 200
    assert second.status == 502
    assert audit.events[-1].details["error"] == "ConnectError"
    assert len(echo.seen) == before + 1
    assert "b-own-credential" not in echo.seen[-1][":all"]


async def test_the_egress_transport_keeps_tls_connections_apart_by_name(
    tls_upstream: tuple[EchoUpstream, int], tls_files: dict[str, Path]
) -> None:
    import ssl

    import httpx

    from secmw.proxy import EgressGuard, EgressTransport

    echo, port = tls_upstream
    other = "other.upstream.test"
    guard = EgressGuard(
        allow_networks=["127.0.0.0/8"],
        resolver=static_resolver({NAME: ["127.0.0.1"], other: ["127.0.0.1"]}),
    )
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    before = len(echo.seen)
    transport = EgressTransport(guard, verify=context)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        first = await http.get(f"https://{NAME}:{port}/echo")
        with pytest.raises(httpx.ConnectError):  # the certificate does not name it
            await http.get(f"https://{other}:{port}/echo", headers={"x-for": "b"})
        again = await http.get(f"https://{NAME}:{port}/echo")
    assert (first.status_code, again.status_code) == (200, 200)
    assert len(echo.seen) == before + 2
