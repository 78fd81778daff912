"""MessageService against a real in-process server with the sim engine: the contract's errors,
the life of a message (QUEUED -> SENT -> DELIVERED -> READ), inbound messages, the network
going down while sending, WatchMessages resuming across a restart, read-only keys.

Every test names its pacing: `[messages] max_per_minute = 0` (off) unless pacing is the point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
from wasessions.v1 import message_service_pb2_grpc as msvc_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from tests.conftest import ServerFactory
from tests.helpers import Running, S, error_info, merge, next_message
from tests.security_helpers import FULL_KEY, READ_KEY, bearer, write_keys

M = mpb.Message
NO_PACING: dict[str, Any] = {"messages": {"max_per_minute": 0}}
BOB = "+15551234567"
BOB_JID = "15551234567@s.whatsapp.net"


def stub(running: Running) -> msvc_grpc.MessageServiceAsyncStub:
    return msvc_grpc.MessageServiceStub(running.channel)


async def send(running: Running, text: str, session: str = "demo", **kw: Any) -> mpb.Message:
    request = msvc.SendMessageRequest(parent=f"sessions/{session}", to=BOB, text=text, **kw)
    return await stub(running).SendMessage(request)


async def wait_status(
    running: Running, name: str, status: int, timeout: float = 5.0
) -> mpb.Message:
    deadline = time.monotonic() + timeout
    while True:
        message = await stub(running).GetMessage(msvc.GetMessageRequest(name=name))
        if message.status == status:
            return message
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)


async def delivered(running: Running, session: str = "demo") -> list[sim.DeliveredMessage]:
    reply = await running.sim.ListDelivered(sim.ListDeliveredRequest(name=f"sessions/{session}"))
    return list(reply.messages)


async def test_a_message_goes_queued_sent_delivered_read(make_server: ServerFactory) -> None:
    running = await make_server(NO_PACING)
    await running.linked("demo")
    watch = stub(running).WatchMessages(msvc.WatchMessagesRequest(parent="sessions/demo"))
    first = await next_message(watch)
    assert first.WhichOneof("kind") == "started" and first.resume_token
    queued = await send(running, "hello")
    assert queued.status == M.QUEUED and queued.chat == BOB_JID and queued.whatsapp_id
    sent = await wait_status(running, queued.name, M.SENT)
    assert sent.whatsapp_id == queued.whatsapp_id and sent.attempts == 1
    for status in (M.DELIVERED, M.READ):
        await running.sim.AcknowledgeMessage(
            sim.AcknowledgeMessageRequest(name=queued.name, status=status)
        )
        await wait_status(running, queued.name, status)
    # A late DELIVERED never replaces READ.
    await running.sim.AcknowledgeMessage(
        sim.AcknowledgeMessageRequest(name=queued.name, status=M.DELIVERED)
    )
    await asyncio.sleep(0.1)
    assert (await wait_status(running, queued.name, M.READ)).read_time.seconds > 0
    statuses: list[int] = []
    while len(statuses) < 5:
        item = await next_message(watch)
        if item.WhichOneof("kind") == "event":
            assert item.event.message.text == "hello"
            statuses.append(item.event.message.status)
    assert statuses == [M.QUEUED, M.SENDING, M.SENT, M.DELIVERED, M.READ]
    watch.cancel()
    assert [(d.whatsapp_id, d.text) for d in await delivered(running)] == [
        (queued.whatsapp_id, "hello")
    ]


async def test_the_contract_errors(make_server: ServerFactory) -> None:
    running = await make_server(NO_PACING)
    await running.linked("demo")
    await running.linked("other")
    theirs = await send(running, "x", session="other")
    cases: list[tuple[msvc.SendMessageRequest, grpc.StatusCode, str]] = [
        (
            msvc.SendMessageRequest(parent="sessions/nobody", to=BOB, text="x"),
            grpc.StatusCode.NOT_FOUND,
            "SESSION_NOT_FOUND",
        ),
        (
            msvc.SendMessageRequest(parent="sessions/nobody", to="+0", text="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_RECIPIENT",
        ),
        (
            msvc.SendMessageRequest(parent="sessions/demo", to=BOB, text=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_TEXT",
        ),
        (
            msvc.SendMessageRequest(
                parent="sessions/demo",
                to=BOB,
                reaction=mpb.Message.Reaction(message=theirs.name, emoji="👍"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MESSAGE_OF_ANOTHER_SESSION",
        ),
        (
            msvc.SendMessageRequest(
                parent="sessions/demo", to=BOB, text="x", reply_to="sessions/demo/messages/nope"
            ),
            grpc.StatusCode.NOT_FOUND,
            "MESSAGE_NOT_FOUND",
        ),
        (
            msvc.SendMessageRequest(
                parent="sessions/demo", to=BOB, text="x", ttl=Duration(seconds=10**9)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_TTL",
        ),
    ]
    for request, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub(running).SendMessage(request)
        got_code, got_reason, _ = error_info(raised.value)
        assert (got_code, got_reason) == (code, reason), request
    await running.create("fresh", skip_start=True)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(running, "x", session="fresh")
    assert error_info(raised.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SESSION_NOT_LINKED",
    )
    first = await send(running, "same", request_id="r-1")
    assert (await send(running, "same", request_id="r-1")).name == first.name
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(running, "different", request_id="r-1")
    assert error_info(raised.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    await wait_status(running, first.name, M.SENT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub(running).CancelMessage(msvc.CancelMessageRequest(name=first.name))
    assert error_info(raised.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MESSAGE_NOT_QUEUED",
    )
    sessions_watch = running.sessions.WatchSessions(svc.WatchSessionsRequest())
    session_token = (await next_message(sessions_watch)).resume_token
    sessions_watch.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        call = stub(running).WatchMessages(
            msvc.WatchMessagesRequest(parent="sessions/-", resume_token=session_token)
        )
        await next_message(call)
    assert error_info(raised.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_RESUME_TOKEN",
    )


async def test_inbound_messages_are_stored_once_and_marked_read(
    make_server: ServerFactory,
) -> None:
    running = await make_server(NO_PACING)
    await running.linked("demo")
    for _ in range(3):  # a redelivery is the same message
        await running.sim.ReceiveMessage(
            sim.ReceiveMessageRequest(
                name="sessions/demo", sender="+15557654321", text="hi", whatsapp_id="W1"
            )
        )
    deadline = time.monotonic() + 5
    while True:
        page = await stub(running).ListMessages(
            msvc.ListMessagesRequest(parent="sessions/-", direction=M.INBOUND)
        )
        if page.messages or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    page = await stub(running).ListMessages(
        msvc.ListMessagesRequest(parent="sessions/demo", direction=M.INBOUND)
    )
    assert [(m.whatsapp_id, m.text, m.status) for m in page.messages] == [("W1", "hi", M.RECEIVED)]
    read = await stub(running).MarkRead(msvc.MarkReadRequest(messages=[page.messages[0].name]))
    assert len(read.messages) == 1
    await wait_status(running, page.messages[0].name, M.READ)


async def test_network_down_queues_and_sends_each_once_in_order(
    make_server: ServerFactory,
) -> None:
    patient = {"policy": {"default": {"max_attempts": 1000, "max_delay_s": 0.2}}}
    running = await make_server(merge(NO_PACING, patient))
    await running.linked("demo")
    await running.sim.SetNetwork(sim.SetNetworkRequest(reachable=False))
    await running.wait_state("demo", S.RECONNECTING)
    names = [(await send(running, f"m{i}")).name for i in range(3)]
    await asyncio.sleep(0.2)
    assert await delivered(running) == []
    await running.sim.SetNetwork(sim.SetNetworkRequest(reachable=True))
    for name in names:
        await wait_status(running, name, M.SENT, timeout=10)
    assert [d.text for d in await delivered(running)] == ["m0", "m1", "m2"]


async def test_a_drop_after_accept_is_resent_under_the_same_id(
    make_server: ServerFactory,
) -> None:
    running = await make_server(NO_PACING)
    await running.linked("demo")
    await running.sim.InjectSendFailure(
        sim.InjectSendFailureRequest(
            name="sessions/demo", kind=sim.InjectSendFailureRequest.DROP_AFTER_ACCEPT
        )
    )
    message = await send(running, "once")
    sent = await wait_status(running, message.name, M.SENT, timeout=10)
    copies = await delivered(running)
    assert {d.whatsapp_id for d in copies} == {message.whatsapp_id} and len(copies) == 2
    assert sent.attempts == 2


async def test_a_401_while_sending_fails_what_is_still_queued(make_server: ServerFactory) -> None:
    # Paced at 600 a minute (0.1 s apart on average), so the 401 comes while the queue drains.
    running = await make_server({"messages": {"max_per_minute": 600}})
    await running.linked("demo")
    names = [(await send(running, f"m{i}")).name for i in range(20)]
    await wait_status(running, names[0], M.SENT)
    await running.inject("demo", 401)
    await running.wait_state("demo", S.LOGGED_OUT)
    deadline = time.monotonic() + 10
    while True:  # the send in flight at the 401 ends by its own outcome
        final = [await stub(running).GetMessage(msvc.GetMessageRequest(name=n)) for n in names]
        if all(m.status not in (M.QUEUED, M.SENDING) for m in final):
            break
        assert time.monotonic() < deadline, [M.Status.Name(m.status) for m in final]
        await asyncio.sleep(0.05)
    sent = [m for m in final if m.status == M.SENT]
    failed = [m for m in final if m.status == M.FAILED]
    assert len(sent) + len(failed) == 20 and failed, [M.Status.Name(m.status) for m in final]
    assert "SESSION_LOGGED_OUT" in {m.error.reason for m in failed}
    # NOTE: a send cut by the close may have reached WhatsApp: it says so, it is not resent.
    assert {m.error.reason for m in failed} <= {"SESSION_LOGGED_OUT", "SEND_OUTCOME_UNKNOWN"}
    unknown = {m.whatsapp_id for m in failed if m.error.reason == "SEND_OUTCOME_UNKNOWN"}
    copies = [d.whatsapp_id for d in await delivered(running)]
    assert len(copies) == len(set(copies))
    assert {m.whatsapp_id for m in sent} <= set(copies) <= {m.whatsapp_id for m in sent} | unknown


async def test_watch_resumes_across_a_restart_without_gap_or_duplicate(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    running = await make_server(NO_PACING, data)
    await running.linked("demo")
    await running.sessions.StopSession(svc.StopSessionRequest(name="sessions/demo"))
    watch = stub(running).WatchMessages(msvc.WatchMessagesRequest(parent="sessions/-"))
    token = (await next_message(watch)).resume_token
    first = [await send(running, f"a{i}") for i in range(3)]
    seen: list[str] = []
    while len(seen) < 2:
        item = await next_message(watch)
        if item.WhichOneof("kind") == "event":
            seen.append(item.event.message.name)
            token = item.resume_token
    watch.cancel()
    await running.channel.close()
    await running.server.stop()
    again = await make_server(NO_PACING, data)
    later = await send(again, "b0")
    resumed = stub(again).WatchMessages(
        msvc.WatchMessagesRequest(parent="sessions/-", resume_token=token)
    )
    rest: list[str] = []
    while len(rest) < 2:
        item = await next_message(resumed)
        assert item.WhichOneof("kind") in ("event", "heartbeat"), item
        if item.WhichOneof("kind") == "event":
            rest.append(item.event.message.name)
    resumed.cancel()
    assert seen + rest == [m.name for m in first] + [later.name]


async def test_read_only_keys_read_but_do_not_send(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    keys = write_keys(tmp_path / "keys", FULL_KEY, f"read:{READ_KEY}")
    running = await make_server({**NO_PACING, "api_keys_file": str(keys)})
    messages = stub(running)
    full, reader = bearer(FULL_KEY), bearer(READ_KEY)
    await running.sessions.CreateSession(svc.CreateSessionRequest(session_id="demo"), metadata=full)
    listed = await messages.ListMessages(
        msvc.ListMessagesRequest(parent="sessions/-"), metadata=reader
    )
    assert list(listed.messages) == []
    for call in (
        messages.SendMessage(
            msvc.SendMessageRequest(parent="sessions/demo", to=BOB, text="x"), metadata=reader
        ),
        messages.CancelMessage(
            msvc.CancelMessageRequest(name="sessions/demo/messages/x"), metadata=reader
        ),
        messages.MarkRead(
            msvc.MarkReadRequest(messages=["sessions/demo/messages/x"]), metadata=reader
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert error_info(raised.value)[:2] == (
            grpc.StatusCode.PERMISSION_DENIED,
            "READ_ONLY_API_KEY",
        )


async def test_message_text_never_reaches_the_logs(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "the-secret-text-7f3a"
    running = await make_server(NO_PACING)
    await running.linked("demo")
    await running.sim.InjectSendFailure(
        sim.InjectSendFailureRequest(
            name="sessions/demo", kind=sim.InjectSendFailureRequest.REJECT, message="refused"
        )
    )
    refused = await send(running, secret)
    sent = await send(running, secret + "-2")
    await running.sim.ReceiveMessage(
        sim.ReceiveMessageRequest(name="sessions/demo", sender="+15557654321", text=secret)
    )
    await wait_status(running, refused.name, M.FAILED)
    await wait_status(running, sent.name, M.SENT)
    await asyncio.sleep(0.2)
    assert secret not in caplog.text


async def test_racing_retries_with_one_request_id_send_once(make_server: ServerFactory) -> None:
    running = await make_server(NO_PACING)
    await running.linked("demo")
    replies = await asyncio.gather(*(send(running, "once", request_id="race") for _ in range(10)))
    assert len({r.name for r in replies}) == 1
    await wait_status(running, replies[0].name, M.SENT)
    await asyncio.sleep(0.1)
    assert [d.text for d in await delivered(running)] == ["once"]
