"""The message commands of the CLI without a server: argument parsing (global flags in every
position), table and JSON formatting, and the client's message helpers. The end-to-end CLI
tests run against a real server (test_messages_cli.py, with the server side)."""

from __future__ import annotations

import argparse
import io
import json
import shlex
from collections.abc import AsyncIterator, Collection
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from wasessions import cli
from wasessions.client import (
    ALL_SESSIONS,
    MessageEventKind,
    MessageWatchEvent,
    message_parent,
    parse_direction,
    parse_status,
)
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
from wasessions.v1 import session_service_pb2 as svc

M = mpb.Message
NAME = "sessions/demo/messages/m1"


def _parse(line: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(shlex.split(line))


def _time(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def _outbound(**fields: Any) -> mpb.Message:
    base: dict[str, Any] = {
        "name": NAME,
        "chat": "15551234567@s.whatsapp.net",
        "sender": "15550000000@s.whatsapp.net",
        "direction": M.OUTBOUND,
        "status": M.SENT,
        "text": "hello",
        "create_time": _time(1_767_225_600),  # 2026-01-01T00:00:00Z
    }
    base.update(fields)
    return mpb.Message(**base)


def _inbound(**fields: Any) -> mpb.Message:
    return _outbound(
        name="sessions/demo/messages/in1",
        chat="15557654321@s.whatsapp.net",
        sender="15557654321@s.whatsapp.net",
        direction=M.INBOUND,
        status=M.RECEIVED,
        text="hi",
        **fields,
    )


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["send"], ["messages"], ["inbox"], ["sim", "receive"], ["sim", "ack"], ["sim", "fail"]],
    ids=" ".join,
)
def test_help_on_every_message_command(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: wa-sessions {' '.join(command)}")
    assert "--server" in text and "--json" in text


def test_send_arguments() -> None:
    args = _parse("send demo +15551234567 'hello there'")
    assert args.handler is cli.cmd_send
    assert (args.session, args.to, args.text) == ("demo", "+15551234567", "hello there")
    assert (args.wait, args.reply_to, args.request_id, args.ttl) == (False, "", "", None)
    args = _parse(f"send --wait --ttl 90 --reply-to {NAME} demo 1555@g.us -- -starts-with-a-dash")
    assert args.text == "-starts-with-a-dash"
    assert (args.wait, args.ttl, args.reply_to) == (True, 90.0, NAME)
    assert args.wait_timeout == 60.0


@pytest.mark.parametrize(
    "line",
    [
        "--server h:1 --json --api-key k send demo +15551234567 hi",
        "send --server h:1 demo --json +15551234567 hi --api-key k",
        "send demo +15551234567 hi --server h:1 --json --api-key k",
        "--json messages demo --server h:1 --api-key k",
        "inbox --api-key k demo --server h:1 --json",
        "--server h:1 sim --json receive demo +15557654321 hi --api-key k",
        "sim receive --server h:1 demo +15557654321 hi --json --api-key k",
        f"sim --api-key k ack {NAME} read --server h:1 --json",
        "--api-key k sim fail demo reject --server h:1 --json",
    ],
)
def test_global_flags_in_every_position(line: str) -> None:
    args = _parse(line)
    assert (args.server, args.json, args.api_key) == ("h:1", True, "k"), line


def test_messages_arguments() -> None:
    args = _parse("messages demo")
    assert args.handler is cli.cmd_messages
    assert (args.chat, args.direction, args.status, args.limit) == ("", None, None, 50)
    args = _parse("messages - --direction inbound --status sent --status read --limit 5")
    assert (args.session, args.direction, args.status, args.limit) == (
        "-",
        "INBOUND",
        ["SENT", "READ"],
        5,
    )


def test_inbox_and_sim_arguments() -> None:
    args = _parse("inbox demo --resume-token abc")
    assert (args.handler, args.session, args.resume_token) == (cli.cmd_inbox, "demo", "abc")
    args = _parse("sim receive demo +15557654321 'hi there' --whatsapp-id W1")
    assert args.handler is cli.cmd_sim_receive
    assert (args.session, args.sender, args.text, args.whatsapp_id) == (
        "demo",
        "+15557654321",
        "hi there",
        "W1",
    )
    for receipt in ("delivered", "READ", "Played"):
        args = _parse(f"sim ack {NAME} {receipt}")
        assert (args.handler, args.message, args.receipt) == (
            cli.cmd_sim_ack,
            NAME,
            receipt.lower(),
        )
    args = _parse("sim fail demo DROP-AFTER-ACCEPT --count 3")
    assert (args.kind, args.count, args.message) == ("drop-after-accept", 3, "")


@pytest.mark.parametrize(
    "line",
    [
        "send demo +15551234567",  # no text
        "send demo +15551234567 hi --ttl soon",
        "messages demo --limit 0",
        "messages demo --status nope",
        "messages demo --direction sideways",
        f"sim ack {NAME} seen",
        f"sim ack {NAME} sent",  # only the recipient's receipts
        "sim fail demo explode",
        "sim fail demo reject --count 0",
        "sim receive demo +15557654321",
    ],
)
def test_bad_usage_exits_2(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(shlex.split(line))
    assert exited.value.code == 2
    assert "usage: wa-sessions" in capsys.readouterr().err


def test_an_unreachable_server_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(shlex.split("send demo +15551234567 hi --server 127.0.0.1:1 --timeout 5"))
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "cannot reach the server at 127.0.0.1:1" in lines[0], lines


# -- formatting ----------------------------------------------------------------------------------


def test_content_is_one_line_and_bounded() -> None:
    assert cli.content_text(_outbound(text="two\nlines\t and  spaces")) == "two lines and spaces"
    long = cli.content_text(_outbound(text="x" * 500))
    assert len(long) == cli.CONTENT_WIDTH and long.endswith("...")
    reaction = _outbound(reaction=M.Reaction(message=NAME, emoji="👍"))
    assert cli.content_text(reaction) == f"reacted 👍 to {NAME}"
    assert cli.content_text(mpb.Message(name=NAME)) == "-"


def test_status_text_carries_the_error() -> None:
    assert cli.message_status_text(_outbound()) == "SENT"
    failed = _outbound(
        status=M.FAILED,
        error=M.Error(code=0, reason="SEND_ATTEMPTS_EXHAUSTED", message="5 attempts\nfailed"),
    )
    assert cli.message_status_text(failed) == "FAILED SEND_ATTEMPTS_EXHAUSTED: 5 attempts failed"
    assert cli.message_line(failed) == f"{NAME}  FAILED SEND_ATTEMPTS_EXHAUSTED: 5 attempts failed"


def test_message_table_rows() -> None:
    out = _outbound()
    inbound = _inbound()
    lines = cli.table(cli.MESSAGE_HEADER, [cli.message_row(out), cli.message_row(inbound)])
    assert lines[0].split() == ["TIME", "NAME", "DIRECTION", "CHAT", "STATUS", "CONTENT"]
    assert lines[1].split() == [
        "2026-01-01T00:00:00Z",
        NAME,
        "OUTBOUND",
        "15551234567@s.whatsapp.net",
        "SENT",
        "hello",
    ]
    # An inbound message shows who sent it.
    assert lines[2].split()[2:5] == ["INBOUND", "15557654321@s.whatsapp.net", "RECEIVED"]
    assert len({len(line.split("  ")[0]) for line in lines[1:]}) == 1, "aligned columns"


def test_inbox_lines_and_event_json() -> None:
    inbound = _inbound()
    event = MessageWatchEvent(MessageEventKind.EVENT, "t5", "RECEIVED", inbound)
    assert cli.is_inbound(event)
    assert cli.inbox_line(inbound) == (
        "00:00:00  15557654321@s.whatsapp.net  hi  (sessions/demo/messages/in1)"
    )
    doc = cli.message_event_json(event)
    assert doc["event"] == "event" and doc["type"] == "RECEIVED" and doc["resume_token"] == "t5"
    assert doc["message"]["direction"] == "INBOUND" and doc["message"]["text"] == "hi"
    assert doc["message"]["create_time"] == "2026-01-01T00:00:00Z"
    queued = MessageWatchEvent(MessageEventKind.EVENT, "t6", "QUEUED", _outbound(status=M.QUEUED))
    assert not cli.is_inbound(queued)
    started = MessageWatchEvent(MessageEventKind.STARTED, "t0")
    assert cli.message_event_json(started) == {"event": "started", "resume_token": "t0"}
    resync = MessageWatchEvent(MessageEventKind.RESYNC, "t9", reason="TOKEN_EXPIRED")
    assert cli.message_event_json(resync)["reason"] == "TOKEN_EXPIRED"


class _Listing:
    """Only what `cmd_messages` reads of a client: pages of messages (formatting only)."""

    def __init__(self, messages: list[mpb.Message]) -> None:
        self.messages = messages
        self.asked: dict[str, Any] = {}

    async def list_messages(
        self,
        session: str | None = None,
        *,
        chat: str = "",
        direction: str | int | None = None,
        statuses: Collection[str | int] = (),
        page_size: int = 0,
    ) -> AsyncIterator[mpb.Message]:
        self.asked = {"session": session, "direction": direction, "statuses": statuses,
                      "page_size": page_size}  # fmt: skip
        for message in self.messages:
            yield message


async def _messages(line: str, messages: list[mpb.Message]) -> tuple[str, str, _Listing]:
    args = _parse(line)
    stdout, stderr = io.StringIO(), io.StringIO()
    out = cli.Out(stdout, stderr, json=bool(getattr(args, "json", False)))
    listing = _Listing(messages)
    assert await cli.cmd_messages(listing, args, out) == 0  # type: ignore[arg-type]
    return stdout.getvalue(), stderr.getvalue(), listing


async def test_messages_table_json_and_limit() -> None:
    many = [_outbound(name=f"sessions/demo/messages/m{i}", text=f"t{i}") for i in range(5)]
    text, _, listing = await _messages("messages demo --limit 3 --status sent", many)
    assert listing.asked == {"session": "demo", "direction": None, "statuses": ["SENT"],
                             "page_size": 3}  # fmt: skip
    rows = text.splitlines()
    assert rows[0].startswith("TIME") and [r.split()[1] for r in rows[1:]] == [
        "sessions/demo/messages/m0",
        "sessions/demo/messages/m1",
        "sessions/demo/messages/m2",
    ], "newest first as listed, at most --limit"
    doc, _, _ = await _messages("messages demo --json", many[:2])
    parsed = json.loads(doc)
    assert [m["name"] for m in parsed["messages"]] == [m.name for m in many[:2]]
    assert parsed["messages"][0]["status"] == "SENT"
    empty, note, _ = await _messages("messages demo", [])
    assert (empty, note) == ("", "no messages\n")
    assert json.loads((await _messages("messages - --json", []))[0]) == {"messages": []}


# -- client helpers ------------------------------------------------------------------------------


def test_statuses_directions_and_parents() -> None:
    assert parse_status("sent") == M.SENT and parse_status("RECEIVED") == M.RECEIVED
    assert parse_status(M.READ) == M.READ
    with pytest.raises(ValueError, match="QUEUED"):
        parse_status("seen")
    assert parse_direction(None) == M.DIRECTION_UNSPECIFIED
    assert parse_direction("inbound") == M.INBOUND
    with pytest.raises(ValueError, match="inbound or outbound"):
        parse_direction("up")
    assert message_parent("demo") == "sessions/demo" == message_parent("sessions/demo")
    assert message_parent(None) == message_parent("-") == ALL_SESSIONS == "sessions/-"


def test_watch_messages_responses_become_events() -> None:
    started = MessageWatchEvent.from_message(
        msvc.WatchMessagesResponse(resume_token="a", started=msvc.WatchMessagesStarted())
    )
    assert (started.kind, started.resume_token, started.message) == (
        MessageEventKind.STARTED,
        "a",
        None,
    )
    event = MessageWatchEvent.from_message(
        msvc.WatchMessagesResponse(
            resume_token="b",
            event=msvc.MessageEvent(type=msvc.MessageEvent.STATUS_CHANGED, message=_outbound()),
        )
    )
    assert (event.kind, event.type, event.status) == (
        MessageEventKind.EVENT,
        "STATUS_CHANGED",
        "SENT",
    )
    resync = MessageWatchEvent.from_message(
        msvc.WatchMessagesResponse(resume_token="c", resync=svc.Resync(reason="TOKEN_EXPIRED"))
    )
    assert (resync.kind, resync.reason) == (MessageEventKind.RESYNC, "TOKEN_EXPIRED")
    beat = MessageWatchEvent.from_message(
        msvc.WatchMessagesResponse(resume_token="d", heartbeat=svc.Heartbeat())
    )
    assert (beat.kind, beat.resume_token, beat.status) == (MessageEventKind.HEARTBEAT, "d", "")
