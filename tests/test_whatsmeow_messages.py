"""The whatsmeow engine's messages: the event mapping over neonize's own types, the outgoing
message it builds, and the send path with a fake client (no WhatsApp here)."""

from __future__ import annotations

# isort: off
from tests.test_whatsmeow import _connection, _next, _open  # (strips proxy variables first)

# isort: on
from pathlib import Path
from typing import Any

import pytest
from neonize.events import MessageEv, ReceiptEv
from neonize.exc import MarkReadError, SendMessageError
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource, SendResponse
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    ContextInfo,
    ExtendedTextMessage,
    ReactionMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaMessage
from neonize.utils.enum import ReceiptType
from neonize.utils.jid import build_jid
from wasessions_server.engines.base import (
    MessageReceived,
    OutgoingMessage,
    Receipt,
    ReceiptKind,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
)
from wasessions_server.engines.whatsmeow import WhatsmeowEngine
from wasessions_server.engines.whatsmeow_events import (
    SUBSCRIBED,
    Noted,
    build_message,
    jid_of,
    map_event,
    send_error,
)

NOW = 1_800_000_000.0
FRIEND = JID(User="15557654321", Server="s.whatsapp.net")
FRIEND_PHONE = JID(User="15557654321", Server="s.whatsapp.net", Device=3)
FRIEND_LID = JID(User="98765432101234", Server="lid")
GROUP = JID(User="120363000000000001", Server="g.us")
CHAT = "15557654321@s.whatsapp.net"


def _inbound(message: WaMessage, **source: Any) -> MessageEv:
    fields: dict[str, Any] = {"Chat": FRIEND, "Sender": FRIEND_PHONE} | source
    info = MessageInfo(MessageSource=MessageSource(**fields), ID="3A0001", Timestamp=int(NOW))
    return MessageEv(Info=info, Message=message)


def test_messages_and_receipts_are_subscribed() -> None:
    assert MessageEv in SUBSCRIBED and ReceiptEv in SUBSCRIBED
    assert not WhatsmeowEngine.fixes_message_ids


def test_an_inbound_text() -> None:
    mapped = map_event(_inbound(WaMessage(conversation="hi")), NOW)
    assert mapped == MessageReceived("3A0001", CHAT, CHAT, NOW, "hi")


def test_an_inbound_reply() -> None:
    text = ExtendedTextMessage(text="yes", contextInfo=ContextInfo(stanzaID="3EB0AAAA"))
    mapped = map_event(_inbound(WaMessage(extendedTextMessage=text)), NOW)
    assert mapped == MessageReceived("3A0001", CHAT, CHAT, NOW, "yes", reply_to="3EB0AAAA")


def test_an_inbound_reaction_and_a_withdrawn_one() -> None:
    key = MessageKey(remoteJID=CHAT, fromMe=True, ID="3EB0AAAA")
    mapped = map_event(_inbound(WaMessage(reactionMessage=ReactionMessage(key=key, text="👍"))))
    assert isinstance(mapped, MessageReceived)
    assert (mapped.reaction_to, mapped.reaction, mapped.text) == ("3EB0AAAA", "👍", "")
    withdrawn = WaMessage(reactionMessage=ReactionMessage(key=key, text=""))
    assert isinstance(map_event(_inbound(withdrawn), NOW), Noted)


def test_a_group_message_names_the_group_and_the_sender() -> None:
    mapped = map_event(_inbound(WaMessage(conversation="all"), Chat=GROUP, IsGroup=True), NOW)
    assert isinstance(mapped, MessageReceived)
    assert (mapped.chat, mapped.sender) == ("120363000000000001@g.us", CHAT)


def test_a_lid_addressed_message_uses_the_phone_number_jid() -> None:
    event = _inbound(
        WaMessage(conversation="hi"), Chat=FRIEND_LID, Sender=FRIEND_LID, SenderAlt=FRIEND_PHONE
    )
    mapped = map_event(event, NOW)
    assert isinstance(mapped, MessageReceived)
    assert (mapped.chat, mapped.sender) == (CHAT, CHAT)


def test_own_messages_and_media_are_only_noted() -> None:
    assert isinstance(map_event(_inbound(WaMessage(conversation="me"), IsFromMe=True)), Noted)
    assert isinstance(map_event(_inbound(WaMessage()), NOW), Noted)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ReceiptEv.DELIVERED, ReceiptKind.DELIVERED),
        (ReceiptEv.READ, ReceiptKind.READ),
        (ReceiptEv.PLAYED, ReceiptKind.PLAYED),
    ],
)
def test_receipts(kind: int, expected: ReceiptKind) -> None:
    event = ReceiptEv(
        MessageSource=MessageSource(Chat=FRIEND, Sender=FRIEND_PHONE),
        MessageIDs=["3EB0AAAA", "3EB0BBBB"],
        Timestamp=int(NOW),
        Type=kind,
    )
    assert map_event(event, NOW) == Receipt(CHAT, ("3EB0AAAA", "3EB0BBBB"), expected, NOW)


def test_receipts_not_from_a_recipient_are_only_noted() -> None:
    source = MessageSource(Chat=FRIEND, Sender=FRIEND_PHONE)
    for kind in (ReceiptEv.READ_SELF, ReceiptEv.RETRY, ReceiptEv.SERVER_ERROR, ReceiptEv.SENDER):
        assert isinstance(
            map_event(ReceiptEv(MessageSource=source, MessageIDs=["x"], Type=kind)), Noted
        )
    own = MessageSource(Chat=FRIEND, Sender=FRIEND_PHONE, IsFromMe=True)
    assert isinstance(map_event(ReceiptEv(MessageSource=own, MessageIDs=["x"], Type=4)), Noted)


def test_outgoing_messages_as_the_library_sends_them() -> None:
    assert build_message(OutgoingMessage("", CHAT, text="hello")) == WaMessage(conversation="hello")
    reply = build_message(OutgoingMessage("", CHAT, text="yes", reply_to="3A0001"))
    assert reply.extendedTextMessage.text == "yes"
    assert reply.extendedTextMessage.contextInfo.stanzaID == "3A0001"
    assert reply.extendedTextMessage.contextInfo.participant == CHAT
    reaction = build_message(OutgoingMessage("", CHAT, reaction_to="3A0001", reaction="❤️"), NOW)
    assert reaction.reactionMessage.text == "❤️"
    assert reaction.reactionMessage.key == MessageKey(remoteJID=CHAT, fromMe=False, ID="3A0001")
    assert reaction.reactionMessage.senderTimestampMS == int(NOW * 1000)


def test_jids() -> None:
    assert jid_of(CHAT) == build_jid("15557654321")
    assert jid_of(CHAT).IsInitialized()
    assert jid_of("15557654321:3@s.whatsapp.net").Device == 3
    assert jid_of("120363000000000001@g.us").Server == "g.us"
    with pytest.raises(ValueError):
        jid_of("+15557654321")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("server returned error 479", SendRefused),
        ("failed to get device list: unknown user", SendRefused),
        ("failed to get device list: info query timed out", SendInterrupted),
        ("websocket not connected", SendInterrupted),
        ("the store doesn't contain a device JID", SendInterrupted),
        ("failed to send message node: websocket not connected", SendInterrupted),
        ("failed to send message node: failed to write frame: broken pipe", SendOutcomeUnknown),
        ("timed out waiting for message send response", SendOutcomeUnknown),
        ("context canceled", SendOutcomeUnknown),
        ("something new", SendOutcomeUnknown),
    ],
)
def test_send_errors(text: str, kind: type[Exception]) -> None:
    assert type(send_error(text)) is kind


def test_a_refusal_keeps_whatsapps_code() -> None:
    refused = send_error("server returned error 463")
    assert isinstance(refused, SendRefused) and refused.code == 463


class SendingClient:
    """neonize's client, as far as sending goes."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.sent: list[tuple[JID, WaMessage]] = []
        self.read: list[tuple[tuple[str, ...], JID, JID, ReceiptType]] = []
        self.error = error

    def stop(self) -> None:
        self.calls.append("stop")

    def send_message(self, to: JID, message: WaMessage) -> SendResponse:
        if self.error is not None:
            raise self.error
        self.sent.append((to, message))
        return SendResponse(ID="3EB0CHOSEN", Timestamp=int(NOW))

    def mark_read(self, *ids: str, chat: JID, sender: JID, receipt: ReceiptType) -> None:
        if self.error is not None:
            raise MarkReadError("websocket not connected")
        self.read.append((ids, chat, sender, receipt))


async def test_a_send_returns_the_id_whatsmeow_chose(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    client = connection._client = SendingClient()
    await _open(connection)
    sent = await connection.send(OutgoingMessage("IGNORED", CHAT, text="hello"))
    assert (sent.whatsapp_id, sent.time) == ("3EB0CHOSEN", NOW)
    assert client.sent == [(jid_of(CHAT), WaMessage(conversation="hello"))]
    await connection.mark_read(CHAT, CHAT, ("3A0001",))
    assert client.read == [(("3A0001",), jid_of(CHAT), jid_of(CHAT), ReceiptType.READ)]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("server returned error 479", SendRefused),
        ("websocket not connected", SendInterrupted),
        ("timed out waiting for message send response", SendOutcomeUnknown),
    ],
)
async def test_library_send_errors_are_mapped(
    tmp_path: Path, text: str, kind: type[Exception]
) -> None:
    connection = await _connection(tmp_path)
    connection._client = SendingClient(SendMessageError(text))
    await _open(connection)
    with pytest.raises(kind):
        await connection.send(OutgoingMessage("", CHAT, text="hello"))


async def test_no_send_and_no_receipt_unless_open(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    client = connection._client = SendingClient()
    with pytest.raises(SendInterrupted):
        await connection.send(OutgoingMessage("", CHAT, text="hello"))
    await _open(connection)
    client.error = MarkReadError("gone")
    with pytest.raises(SendInterrupted):
        await connection.mark_read(CHAT, CHAT, ("3A0001",))
    connection._end(None)
    with pytest.raises(SendInterrupted):
        await connection.send(OutgoingMessage("", CHAT, text="hello"))
    assert client.sent == []


async def test_inbound_events_reach_the_open_connection(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    connection._client = SendingClient()
    events = await _open(connection)
    connection._on_library_event(_inbound(WaMessage(conversation="hi")))
    receipt = ReceiptEv(
        MessageSource=MessageSource(Chat=FRIEND, Sender=FRIEND_PHONE),
        MessageIDs=["3EB0CHOSEN"],
        Type=ReceiptEv.READ,
    )
    connection._on_library_event(receipt)
    message = await _next(events)
    assert isinstance(message, MessageReceived) and message.text == "hi"
    read = await _next(events)
    assert isinstance(read, Receipt) and read.kind is ReceiptKind.READ


async def test_messages_reported_before_connected_follow_opened(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    connection._client = SendingClient()
    connection._on_library_event(_inbound(WaMessage(conversation="offline")))
    events = await _open(connection)
    message = await _next(events)
    assert isinstance(message, MessageReceived) and message.text == "offline"
