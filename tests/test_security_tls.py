"""TLS and mutual TLS with certificates the test makes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions_server.config import config_from_mapping
from wasessions_server.errors import ConfigError

from tests.conftest import ServerFactory
from tests.helpers import S, error_info
from tests.security_helpers import FULL_KEY, Pki, bearer, make_pki, write_keys


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_channel(
    target: str, pki: Pki, cert: Path | None = None, key: Path | None = None
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.aio.secure_channel(target, credentials)


async def _policy(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    stub = svc_grpc.SessionServiceStub(channel)
    await stub.GetPolicy(svc.GetPolicyRequest(), metadata=metadata, timeout=10)


async def _refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _policy(channel)
    code: grpc.StatusCode = raised.value.code()
    return code


async def test_tls_serves_only_tls(make_server: ServerFactory, pki: Pki) -> None:
    running = await make_server({"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)})
    target = running.server.target
    async with _tls_channel(target, pki) as channel:
        stub = svc_grpc.SessionServiceStub(channel)
        created = await stub.CreateSession(
            svc.CreateSessionRequest(session_id="tls", skip_start=True)
        )
        assert created.state == S.STOPPED
    # A plaintext client gets nothing from a TLS port.
    assert await _refused(running.channel) == grpc.StatusCode.UNAVAILABLE
    # A client that does not trust the server's CA refuses it.
    wrong = grpc.ssl_channel_credentials(root_certificates=pki.other_ca.read_bytes())
    async with grpc.aio.secure_channel(target, wrong) as channel:
        assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    make_server: ServerFactory, pki: Pki
) -> None:
    running = await make_server(
        {
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
        }
    )
    target = running.server.target
    async with _tls_channel(target, pki, pki.client_cert, pki.client_key) as channel:
        await _policy(channel)
    async with _tls_channel(target, pki) as channel:
        assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE
    async with _tls_channel(target, pki, pki.rogue_cert, pki.rogue_key) as channel:
        assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_and_api_keys_together(
    make_server: ServerFactory, pki: Pki, tmp_path: Path
) -> None:
    keys = write_keys(tmp_path / "keys", FULL_KEY)
    running = await make_server(
        {
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
            "api_keys_file": str(keys),
        }
    )
    async with _tls_channel(running.server.target, pki, pki.client_cert, pki.client_key) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _policy(ch)
        assert error_info(raised.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")
        await _policy(ch, bearer(FULL_KEY))


def test_tls_configuration_errors_name_the_key(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        config_from_mapping({"tls_cert": str(pki.server_cert)})
    with pytest.raises(ConfigError, match="tls_client_ca"):
        config_from_mapping({"tls_client_ca": str(pki.ca)})
    with pytest.raises(ConfigError, match="tls_key"):
        config_from_mapping(
            {"tls_cert": str(pki.server_cert), "tls_key": str(tmp_path / "missing")}
        )
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM"):
        config_from_mapping({"tls_cert": str(not_pem), "tls_key": str(pki.server_key)})
    # Client certificates authenticate: a public address is allowed without API keys.
    config = config_from_mapping(
        {
            "listen": "0.0.0.0:0",
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
        }
    )
    assert config.security.authenticates
    with pytest.raises(ConfigError, match="loopback"):
        config_from_mapping(
            {
                "listen": "0.0.0.0:0",
                "tls_cert": str(pki.server_cert),
                "tls_key": str(pki.server_key),
            }
        )
