"""The SessionService contract: CRUD, paging, labels, idempotency, errors, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from tests.conftest import ServerFactory
from tests.helpers import Running, S, error_info

BAD_IDS = ["", "a" * 64, "Upper", "../x", "/", "a/b", "ünïcode", "nul\x00", "trailing\n", "-lead",
           "_lead", "sp ace", "sessions/x"]  # fmt: skip


def _invalid(error: grpc.aio.AioRpcError, reason: str, field: str) -> None:
    assert error_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, reason, [field]), error
    assert error.details(), "a message a person understands"


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_session_ids_are_invalid_argument(srv: Running, bad: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as create:
        await srv.create(bad)
    _invalid(create.value, "INVALID_SESSION_ID", "session_id")
    with pytest.raises(grpc.aio.AioRpcError) as get:
        await srv.sessions.GetSession(svc.GetSessionRequest(name=f"sessions/{bad}"))
    _invalid(get.value, "INVALID_SESSION_NAME", "name")
    listed = await srv.sessions.ListSessions(svc.ListSessionsRequest())
    assert list(listed.sessions) == [], "nothing was created"
    assert not (srv.data_dir / "credentials").exists() or not any(
        (srv.data_dir / "credentials").iterdir()
    )


async def test_longest_valid_id_works(srv: Running) -> None:
    sid = "a" + "b-_9" * 15 + "zz"
    assert len(sid) == 63
    created = await srv.create(sid, skip_start=True)
    assert created.name == f"sessions/{sid}"


async def test_unknown_session_is_not_found(srv: Running) -> None:
    calls: list[Awaitable[object]] = [
        srv.sessions.GetSession(svc.GetSessionRequest(name="sessions/nope")),
        srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/nope")),
        srv.sessions.StopSession(svc.StopSessionRequest(name="sessions/nope")),
        srv.sessions.LogoutSession(svc.LogoutSessionRequest(name="sessions/nope")),
        srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/nope")),
        srv.sessions.UpdateSession(svc.UpdateSessionRequest(name="sessions/nope")),
        srv.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/nope")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error_info(error.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


async def test_argument_errors_win_over_state_errors(srv: Running) -> None:
    # The session does not exist AND the phone number is bad: the argument error wins.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await srv.sessions.RequestPairingCode(
            svc.RequestPairingCodeRequest(name="sessions/nope", phone_number="123")
        )
    _invalid(error.value, "INVALID_PHONE_NUMBER", "phone_number")
    with pytest.raises(grpc.aio.AioRpcError) as code:
        await srv.sim.InjectDisconnect(
            sim.InjectDisconnectRequest(name="sessions/nope", code=99999)
        )
    _invalid(code.value, "INVALID_DISCONNECT_CODE", "code")


async def test_create_twice_and_idempotent_retry(srv: Running) -> None:
    first = await srv.create("x", skip_start=True, request_id="r-1")
    again = await srv.create("x", skip_start=True, request_id="r-1")
    assert again.name == first.name and again.create_time == first.create_time
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await srv.create("x", skip_start=True, request_id="r-2")
    assert error_info(error.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "SESSION_EXISTS")
    with pytest.raises(grpc.aio.AioRpcError) as plain:
        await srv.create("x", skip_start=True)
    assert plain.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_create_validates_engine_labels_and_proxy(srv: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as engine:
        await srv.create("x", engine="nope")
    assert error_info(engine.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_ENGINE",
        ["engine"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as labels:
        await srv.create("x", labels={"Bad Key": "v"})
    assert error_info(labels.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LABELS")
    with pytest.raises(grpc.aio.AioRpcError) as many:
        await srv.create("x", labels={f"k{i}": "v" for i in range(65)})
    assert error_info(many.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LABELS")
    for proxy in ("ftp://h:1", "http://nohost", "socks5://:99", "http://h:99999"):
        with pytest.raises(grpc.aio.AioRpcError) as bad_proxy:
            await srv.create("x", proxy=proxy)
        assert error_info(bad_proxy.value)[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PROXY",
        )
    created = await srv.create("x", skip_start=True, proxy="socks5://user:secret@127.0.0.1:1080")
    assert created.proxy == "socks5://***@127.0.0.1:1080"
    assert "secret" not in str(await srv.get("x"))


async def test_list_pages_in_id_order_and_filters(srv: Running) -> None:
    ids = [f"s{i:02d}" for i in range(25)]
    for sid in reversed(ids):
        await srv.create(sid, skip_start=True)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await srv.sessions.ListSessions(
            svc.ListSessionsRequest(page_size=10, page_token=token)
        )
        seen += [s.name.removeprefix("sessions/") for s in page.sessions]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids and pages == 3
    await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/s07"))
    await srv.wait_state("s07", S.QR_PENDING)
    qr = await srv.sessions.ListSessions(svc.ListSessionsRequest(states=[S.QR_PENDING]))
    assert [s.name for s in qr.sessions] == ["sessions/s07"] and not qr.next_page_token
    huge = await srv.sessions.ListSessions(svc.ListSessionsRequest(page_size=2**31 - 1))
    assert len(huge.sessions) == 25


async def test_list_pages_stop_at_one_mebibyte(srv: Running) -> None:
    # 64 labels of 256 characters: about 21 KB a session, so 1,000 would be about 21 MB.
    labels = {f"k{n:02d}-" + "x" * 58: "v" * 256 for n in range(64)}
    ids = [f"big{i:03d}" for i in range(120)]
    await asyncio.gather(*(srv.create(sid, skip_start=True, labels=labels) for sid in ids))
    seen: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        page = await srv.sessions.ListSessions(
            svc.ListSessionsRequest(page_size=1000, page_token=token)
        )
        sizes.append(page.ByteSize())
        seen += [s.name.removeprefix("sessions/") for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids, "every session once, in id order, across the capped pages"
    assert len(sizes) >= 3, sizes
    assert max(sizes) <= 1 << 20, sizes
    assert sizes[0] > (1 << 20) - 30_000, "a page is filled up to the cap"


async def test_list_page_always_holds_one_session(srv: Running) -> None:
    await srv.create("one", skip_start=True, labels={"a": "b"})
    page = await srv.sessions.ListSessions(svc.ListSessionsRequest(page_size=1))
    assert [s.name for s in page.sessions] == ["sessions/one"] and not page.next_page_token


async def test_list_rejects_bad_page_size_and_tokens(srv: Running) -> None:
    await srv.create("a", skip_start=True)
    await srv.create("b", skip_start=True)
    with pytest.raises(grpc.aio.AioRpcError) as negative:
        await srv.sessions.ListSessions(svc.ListSessionsRequest(page_size=-1))
    _invalid(negative.value, "INVALID_PAGE_SIZE", "page_size")
    for token in ("garbage", "eyJ2IjogMn0", "%%%"):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await srv.sessions.ListSessions(svc.ListSessionsRequest(page_token=token))
        _invalid(bad.value, "INVALID_PAGE_TOKEN", "page_token")
    page = await srv.sessions.ListSessions(svc.ListSessionsRequest(page_size=1))
    with pytest.raises(grpc.aio.AioRpcError) as other_filter:
        await srv.sessions.ListSessions(
            svc.ListSessionsRequest(page_token=page.next_page_token, states=[S.STOPPED])
        )
    _invalid(other_filter.value, "INVALID_PAGE_TOKEN", "page_token")


async def test_update_labels_with_mask(srv: Running) -> None:
    await srv.create("a", skip_start=True, labels={"team": "x", "env": "prod"})
    mask = field_mask_pb2.FieldMask(paths=["labels.team", "labels.env"])
    updated = await srv.sessions.UpdateSession(
        svc.UpdateSessionRequest(name="sessions/a", labels={"team": "y"}, update_mask=mask)
    )
    assert dict(updated.labels) == {"team": "y"}, "env was named but absent: removed"
    replaced = await srv.sessions.UpdateSession(
        svc.UpdateSessionRequest(name="sessions/a", labels={"new": "1"})
    )
    assert dict(replaced.labels) == {"new": "1"}
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await srv.sessions.UpdateSession(
            svc.UpdateSessionRequest(
                name="sessions/a", update_mask=field_mask_pb2.FieldMask(paths=["state"])
            )
        )
    _invalid(error.value, "INVALID_UPDATE_MASK", "update_mask.paths")
    assert dict((await srv.get("a")).labels) == {"new": "1"}


async def test_delete_removes_everything(srv: Running) -> None:
    await srv.linked("a")
    assert srv.creds_dir("a").exists()
    await srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/a"))
    assert not srv.creds_dir("a").exists()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await srv.get("a")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # The id can be used again, for a brand new session.
    again = await srv.create("a", skip_start=True)
    assert not again.has_credentials


async def test_get_policy_reflects_configuration(make_server: ServerFactory) -> None:
    srv = await make_server(
        {
            "policy": {
                "default": {"initial_delay_s": 2, "max_delay_s": 20, "max_attempts": 5},
                "codes": {"503": {"max_delay_s": 9.5}, "440": {"action": "reconnect"}},
            }
        }
    )
    policy = await srv.sessions.GetPolicy(svc.GetPolicyRequest())
    assert policy.default_rule.max_attempts == 5
    rules = {r.code: r for r in policy.rules}
    assert rules[503].initial_delay.seconds == 2, "a code row inherits the default's timing"
    assert rules[503].max_delay.ToMilliseconds() == 9500
    assert rules[440].action == svc.PolicyRule.RECONNECT
    assert rules[401].action == svc.PolicyRule.LOGOUT and rules[401].required_action == S.SCAN_QR
    assert rules[515].action == svc.PolicyRule.RESTART
    assert rules[500].max_attempts == 3 and rules[500].reason == "BAD_SESSION"
    assert policy.qr.max_codes == 3


async def test_health_and_reflection(srv: Running) -> None:
    health = health_pb2_grpc.HealthStub(srv.channel)
    for service in ("", "wasessions.v1.SessionService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for response in call:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {
        "wasessions.v1.SessionService",
        "wasessions.v1.SimulatorService",
        "grpc.health.v1.Health",
    } <= names
