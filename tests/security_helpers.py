"""Helpers for the security and operability tests: keys, keyed channels, certificates, every
RPC of the API, metrics scraping."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import message as pb_message
from wasessions.v1 import message_service_pb2, session_service_pb2, simulator_service_pb2
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from tests.helpers import FAST, Running, merge

#: FAST timings on the simulated engine, for servers started as processes.
SIM_FAST: dict[str, Any] = merge(FAST, {"engine": "sim"})

FULL_KEY = "full-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
HASHED_KEY = "hashed-key-0123456789abcdef"


def write_keys(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _with_key(details: Any, key: str) -> Any:
    return details._replace(metadata=tuple(details.metadata or ()) + bearer(key))


class _KeyUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_key(details, self._key), request)


class _KeyStream(grpc.aio.UnaryStreamClientInterceptor):
    # NOTE: grpc.aio files each interceptor under one kind only: one class per kind.
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_key(details, self._key), request)


def keyed(running: Running, key: str) -> Running:
    """The same server through a channel that sends `key` on every call."""
    channel = grpc.aio.insecure_channel(
        running.server.target, interceptors=[_KeyUnary(key), _KeyStream(key)]
    )
    return dataclasses.replace(
        running,
        channel=channel,
        sessions=svc_grpc.SessionServiceStub(channel),
        sim=sim_grpc.SimulatorServiceStub(channel),
    )


@dataclass(frozen=True)
class Rpc:
    service: str
    method: str
    request: type[pb_message.Message]
    response: type[pb_message.Message]
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


def all_rpcs() -> Iterator[Rpc]:
    """Every RPC of SessionService, MessageService and SimulatorService, from the descriptors."""
    for module, name in (
        (session_service_pb2, "SessionService"),
        (message_service_pb2, "MessageService"),
        (simulator_service_pb2, "SimulatorService"),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            yield Rpc(
                service.full_name,
                method.name,
                _message_class(module, method.input_type.name),
                _message_class(module, method.output_type.name),
                method.server_streaming,
            )


def _message_class(module: Any, name: str) -> type[pb_message.Message]:
    from wasessions.v1 import message_pb2, session_pb2

    for candidate in (module, session_pb2, session_service_pb2, message_pb2):
        if hasattr(candidate, name):
            cls: type[pb_message.Message] = getattr(candidate, name)
            return cls
    raise AssertionError(f"no message class {name}")


async def call_raw(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    request: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 5.0,
) -> list[bytes]:
    """Calls `rpc` with raw request bytes; returns the raw responses (reads at most 2 of a
    stream, then cancels it)."""
    if not rpc.server_streaming:
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(rpc.path)
        response = await unary(request, metadata=metadata, timeout=timeout)
        return [response]
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(rpc.path)
    call = stream(request, metadata=metadata, timeout=timeout)
    out: list[bytes] = []
    try:
        async for item in call:
            out.append(item)
            if len(out) >= 2:
                break
    finally:
        call.cancel()
    return out


# Certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    rogue_cert: Path  # a client certificate signed by other_ca
    rogue_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca[1], hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca("wa-sessions test CA")
    other = _ca("some other CA")
    server = _leaf("localhost", ca, server=True)
    client = _leaf("test client", ca, server=False)
    rogue = _leaf("rogue client", other, server=False)

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    pki = Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
        rogue_cert=folder / "rogue.pem",
        rogue_key=folder / "rogue.key",
    )
    pki.ca.write_bytes(pem(ca[0]))
    pki.other_ca.write_bytes(pem(other[0]))
    pki.server_cert.write_bytes(pem(server[0]))
    _write_key(pki.server_key, server[1])
    pki.client_cert.write_bytes(pem(client[0]))
    _write_key(pki.client_key, client[1])
    pki.rogue_cert.write_bytes(pem(rogue[0]))
    _write_key(pki.rogue_key, rogue[1])
    return pki


# Metrics ------------------------------------------------------------------------------------


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


# Processes --------------------------------------------------------------------------------


def wait_serving(target: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    """One answered health check: the process is past start-up (signal handlers installed)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), metadata=metadata, timeout=20
        )


def terminate(process: Any, target: str | None = None) -> int:
    """SIGTERM once the server is surely serving; returns the exit code."""
    if target:
        wait_serving(target)
    process.terminate()
    code: int = process.wait(30)
    return code
