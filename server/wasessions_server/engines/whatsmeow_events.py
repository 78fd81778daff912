"""How whatsmeow's events, as neonize delivers them, map onto WhatsApp's disconnect codes and
the engine's message events, and how an outgoing message becomes the library's.

Pure functions over the library's own event types (neonize's protobuf messages), so the whole
table is unit-tested without a network. The README's engine section shows the same table.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from google.protobuf.message import Message
from neonize.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    OfflineSyncCompletedEv,
    OfflineSyncPreviewEv,
    PairStatusEv,
    QREv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, PairStatus, TemporaryBan
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    ContextInfo,
    ExtendedTextMessage,
    ReactionMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaMessage

from wasessions_server.engines.base import (
    Closed,
    MessageReceived,
    OutgoingMessage,
    Receipt,
    ReceiptKind,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
)
from wasessions_server.model import Account
from wasessions_server.policy import QR_WINDOW_OVER_MESSAGE
from wasessions_server.policy import codes as wa

log = logging.getLogger(__name__)

#: neonize re-encodes whatsmeow's numeric ConnectFailure reasons as its own enum; these are
#: WhatsApp's numbers again (whatsmeow/types/events ConnectFailureReason).
FAILURE_CODES: dict[int, int] = {
    ConnectFailureReason.GENERIC: 400,
    ConnectFailureReason.LOGGED_OUT: wa.LOGGED_OUT,
    ConnectFailureReason.TEMP_BANNED: wa.TEMPORARILY_BANNED,
    ConnectFailureReason.MAIN_DEVICE_GONE: wa.FORBIDDEN,
    ConnectFailureReason.UNKNOWN_LOGOUT: wa.BANNED,
    ConnectFailureReason.CLIENT_OUTDATED: wa.CLIENT_OUTDATED,
    ConnectFailureReason.BAD_USER_AGENT: 409,
    ConnectFailureReason.INTERNAL_SERVER_ERROR: wa.BAD_SESSION,
    ConnectFailureReason.EXPERIMENTAL: 501,
    ConnectFailureReason.SERVICE_UNAVAILABLE: wa.SERVICE_UNAVAILABLE,
}

#: The event types a connection subscribes to (neonize only forwards subscribed types).
SUBSCRIBED: tuple[type[Message], ...] = (
    QREv,
    PairStatusEv,
    ConnectedEv,
    KeepAliveTimeoutEv,
    KeepAliveRestoredEv,
    LoggedOutEv,
    StreamReplacedEv,
    TemporaryBanEv,
    ConnectFailureEv,
    ClientOutdatedEv,
    StreamErrorEv,
    DisconnectedEv,
    OfflineSyncPreviewEv,
    OfflineSyncCompletedEv,
    MessageEv,
    ReceiptEv,
)

_RECEIPTS: dict[int, ReceiptKind] = {
    ReceiptEv.DELIVERED: ReceiptKind.DELIVERED,
    ReceiptEv.READ: ReceiptKind.READ,
    ReceiptEv.PLAYED: ReceiptKind.PLAYED,
}
USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
_JID = re.compile(r"([^@:]*)(?::([0-9]+))?@(.+)")

#: whatsmeow's own keepalive gives up (and reconnects by itself) after 3 minutes without a
#: successful ping. The engine gives up first, so that reconnect never runs behind the
#: manager's back: the connection closes as 408 and the policy decides.
KEEPALIVE_GIVE_UP_S = 120.0


@dataclass(frozen=True, slots=True)
class Paired:
    """The phone accepted the link (QR scan or pairing code)."""

    jid: str
    phone_number: str
    business_name: str


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in and open."""


@dataclass(frozen=True, slots=True)
class QrCodes:
    """Every QR code of the login, at once (the library's own pacing is not used)."""

    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Alive:
    """The connection showed a sign of life."""

    time: float


@dataclass(frozen=True, slots=True)
class Noted:
    """Nothing to do but log."""

    what: str


Mapped = Closed | Paired | Connected | QrCodes | Alive | Noted | MessageReceived | Receipt


def jid_string(jid: JID) -> str:
    if not jid.User:
        return ""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


def jid_of(text: str) -> JID:
    """A JID string (`user[:device]@server`) as the library's JID."""
    match = _JID.fullmatch(text)
    if match is None:
        raise ValueError(f"not a JID: {text!r}")
    user, device, server = match.groups()
    # NOTE: every field set, as neonize's build_jid does: they are proto2 `required`.
    return JID(
        User=user, Device=int(device or 0), Server=server, RawAgent=0, Integrator=0, IsEmpty=False
    )


def _person(jid: JID, alt: JID) -> str:
    """A person's JID without its device; the phone-number JID where WhatsApp gave one (a
    message addressed by LID carries the phone-number JID as its alternative)."""
    if jid.Server == LID_SERVER and alt.User and alt.Server == USER_SERVER:
        jid = alt
    return f"{jid.User}@{jid.Server}" if jid.User else ""


def phone_of(jid: JID) -> str:
    return f"+{jid.User}" if jid.User and jid.Server == "s.whatsapp.net" else ""


def account_of(jid: JID, push_name: str) -> Account:
    return Account(jid_string(jid), phone_of(jid), push_name)


def map_event(event: Message, now: float | None = None) -> Mapped:
    """What one library event means for the connection. Never raises; an event type it does
    not know is reported as `Noted` (and logged by the caller)."""
    now = time.time() if now is None else now
    if isinstance(event, QREv):
        return QrCodes(tuple(event.Codes))
    if isinstance(event, PairStatusEv):
        if event.Status == PairStatus.SUCCESS:
            return Paired(jid_string(event.ID), phone_of(event.ID), event.BusinessName)
        return Closed(wa.BAD_SESSION, f"Pairing failed: {event.Error or 'unknown error'}")
    if isinstance(event, ConnectedEv):
        return Connected()
    if isinstance(event, LoggedOutEv):
        return _logged_out(event)
    if isinstance(event, StreamReplacedEv):
        return Closed(wa.CONNECTION_REPLACED, "Stream Errored (conflict: replaced)")
    if isinstance(event, TemporaryBanEv):
        return _temporary_ban(event, now)
    if isinstance(event, ConnectFailureEv):
        return _connect_failure(event)
    if isinstance(event, ClientOutdatedEv):
        return Closed(wa.CLIENT_OUTDATED, "Connection Failure (client outdated)")
    if isinstance(event, StreamErrorEv):
        code = int(event.Code) if event.Code.isdigit() else wa.BAD_SESSION
        return Closed(code, f"Stream Errored ({event.Code or 'no code'})")
    if isinstance(event, DisconnectedEv):
        return Closed(wa.CONNECTION_CLOSED, "Connection Terminated by Server")
    if isinstance(event, KeepAliveTimeoutEv):
        silent_s = now - event.LastSuccess if event.LastSuccess > 0 else 0.0
        if silent_s >= KEEPALIVE_GIVE_UP_S:
            return Closed(
                wa.CONNECTION_LOST,
                f"Connection was lost (keepalive failed {event.ErrorCount} times; no answer "
                f"for {silent_s:.0f} s)",
            )
        return Noted(f"keepalive failed {event.ErrorCount} times ({silent_s:.0f} s silent)")
    if isinstance(event, KeepAliveRestoredEv | OfflineSyncCompletedEv | OfflineSyncPreviewEv):
        return Alive(now)
    if isinstance(event, MessageEv):
        return map_message(event) or Noted("Message: of a kind the service does not handle")
    if isinstance(event, ReceiptEv):
        return map_receipt(event, now) or Noted("Receipt: of a kind the service does not track")
    return Noted(f"unhandled library event {type(event).__name__}")


def map_message(event: MessageEv) -> MessageReceived | None:
    """An inbound text, reply or reaction; None for what the service does not handle (its own
    messages from the phone, media, protocol messages, a reaction withdrawn)."""
    info = event.Info
    source = info.MessageSource
    if source.IsFromMe or not info.ID:
        return None
    sender = _person(source.Sender, source.SenderAlt)
    chat = jid_string(source.Chat) if source.IsGroup else _person(source.Chat, source.SenderAlt)
    # NOTE: neonize hands whatsmeow's timestamp over as Unix seconds.
    when = float(info.Timestamp) if info.Timestamp > 0 else time.time()
    message = event.Message
    if message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        if not reaction.text or not reaction.key.ID:
            return None
        return MessageReceived(
            info.ID, chat, sender, when, reaction_to=reaction.key.ID, reaction=reaction.text
        )
    if message.conversation:
        return MessageReceived(info.ID, chat, sender, when, message.conversation)
    if message.HasField("extendedTextMessage") and message.extendedTextMessage.text:
        extended = message.extendedTextMessage
        return MessageReceived(
            info.ID, chat, sender, when, extended.text, reply_to=extended.contextInfo.stanzaID
        )
    return None


def map_receipt(event: ReceiptEv, now: float) -> Receipt | None:
    """DELIVERED, READ or PLAYED from a recipient; None for the other kinds (our own devices'
    read-self, retries, server errors, ...)."""
    kind = _RECEIPTS.get(event.Type)
    source = event.MessageSource
    if kind is None or source.IsFromMe or not event.MessageIDs:
        return None
    chat = jid_string(source.Chat) if source.IsGroup else _person(source.Chat, source.SenderAlt)
    when = float(event.Timestamp) if event.Timestamp > 0 else now
    return Receipt(chat, tuple(event.MessageIDs), kind, when)


def build_message(message: OutgoingMessage, now: float | None = None) -> WaMessage:
    """The library's message for an outgoing text, reply or reaction.

    NOTE: a reaction's key says whose message it reacts to; OutgoingMessage does not say, so
    it is taken to be the chat's (the other person's, in a one-to-one chat).
    """
    if message.reaction_to:
        now = time.time() if now is None else now
        key = MessageKey(remoteJID=message.chat, fromMe=False, ID=message.reaction_to)
        return WaMessage(
            reactionMessage=ReactionMessage(
                key=key, text=message.reaction, senderTimestampMS=int(now * 1000)
            )
        )
    if message.reply_to:
        context = ContextInfo(stanzaID=message.reply_to)
        if not message.chat.endswith("@" + GROUP_SERVER):
            context.participant = message.chat
        return WaMessage(
            extendedTextMessage=ExtendedTextMessage(text=message.text, contextInfo=context)
        )
    return WaMessage(conversation=message.text)


# whatsmeow's error texts (neonize passes them on as SendMessageError's message).
_SERVER_ERROR = re.compile(r"server returned error (\d+)")
_NOT_SENT = (
    "websocket not connected",
    "not logged in",
    "doesn't contain a device",
    "client is nil",
)
_BEFORE_SEND = (
    "failed to get device list",
    "failed to get group members",
    "failed to encrypt",
    "failed to create sender key",
    "failed to marshal",
    "unknown server",
    "recipient",
)
_TRANSIENT = ("timed out", "timeout", "context", "disconnect", "closed", "eof", "connection")


def send_error(text: str) -> Exception:
    """What a failed library send means: SendRefused (final: WhatsApp refused it),
    SendInterrupted (it never left: safe to send again) or SendOutcomeUnknown (it may have
    left; never resent blindly). An error the table does not know is an unknown outcome."""
    lowered = text.lower()
    refused = _SERVER_ERROR.search(lowered)
    if refused is not None:
        return SendRefused(f"WhatsApp refused the message ({text})", int(refused.group(1)))
    if "failed to send message node" in lowered:
        if any(marker in lowered for marker in _NOT_SENT):
            return SendInterrupted(text)
        return SendOutcomeUnknown(text)
    if any(marker in lowered for marker in _NOT_SENT):
        return SendInterrupted(text)
    if any(marker in lowered for marker in _BEFORE_SEND):
        # NOTE: these fail before the message node is written.
        if any(marker in lowered for marker in _TRANSIENT):
            return SendInterrupted(text)
        return SendRefused(f"the message could not be sent ({text})")
    return SendOutcomeUnknown(text)


def deletes_store(event: Message) -> bool:
    """Whether whatsmeow deletes its device store along with this event.

    NOTE: whatsmeow dispatches LoggedOut (device_removed, and the connect failures 401, 403 and
    406) and deletes the device at the same time, so the event can come before the store is
    empty.
    """
    return isinstance(event, LoggedOutEv)


def _logged_out(event: LoggedOutEv) -> Closed:
    if not event.OnConnect:
        # NOTE: the phone removed this linked device while it was connected.
        return Closed(wa.LOGGED_OUT, "Stream Errored (conflict: device_removed)")
    code = FAILURE_CODES.get(event.Reason, wa.LOGGED_OUT)
    reason = ConnectFailureReason.Name(event.Reason) if event.HasField("Reason") else "unknown"
    return Closed(code, f"Connection Failure (logged out: {reason.lower()})")


def _temporary_ban(event: TemporaryBanEv, now: float) -> Closed:
    reason = (
        TemporaryBan.TempBanReason.Name(event.Code).lower() if event.HasField("Code") else "unknown"
    )
    if event.Expire > 0:
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + event.Expire))
        expiry = f"; lifted in {event.Expire} s, at {until}"
    else:
        expiry = "; expiry unknown"
    return Closed(
        wa.TEMPORARILY_BANNED, f"Connection Failure (temporarily banned: {reason}{expiry})"
    )


def _connect_failure(event: ConnectFailureEv) -> Closed:
    if event.HasField("Reason"):
        code = FAILURE_CODES.get(event.Reason, wa.BAD_SESSION)
        reason = ConnectFailureReason.Name(event.Reason).lower()
    else:
        code, reason = wa.BAD_SESSION, "unknown"
    detail = f": {event.Message}" if event.Message else ""
    return Closed(code, f"Connection Failure ({reason}{detail})")


# The statuses whatsmeow's QR channel reports besides the codes themselves.
_LOGIN_STATUS: dict[str, Closed | None] = {
    "success": None,
    "timeout": Closed(wa.CONNECTION_LOST, QR_WINDOW_OVER_MESSAGE),
    "err-client-outdated": Closed(wa.CLIENT_OUTDATED, "Connection Failure (client outdated)"),
    "err-scanned-without-multidevice": Closed(
        wa.MULTIDEVICE_MISMATCH, "Multi-device mismatch (the phone scanned without multi-device)"
    ),
    "err-unexpected-state": Closed(wa.BAD_SESSION, "Stream Errored (unexpected login state)"),
}


def map_login_status(status: str) -> Closed | None:
    """The QR channel's statuses; an unknown one ends the login as an unclassified error."""
    if status in _LOGIN_STATUS:
        return _LOGIN_STATUS[status]
    return Closed(wa.BAD_SESSION, f"Login failed ({status or 'no status'})")
