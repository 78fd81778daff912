"""How whatsmeow's events, as neonize delivers them, map onto WhatsApp's disconnect codes.

Pure functions over the library's own event types (neonize's protobuf messages), so the whole
table is unit-tested without a network. The README's engine section shows the same table.
"""

from __future__ import annotations

import logging
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
    OfflineSyncCompletedEv,
    OfflineSyncPreviewEv,
    PairStatusEv,
    QREv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, PairStatus, TemporaryBan

from wasessions_server.engines.base import Closed
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
)

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


Mapped = Closed | Paired | Connected | QrCodes | Alive | Noted


def jid_string(jid: JID) -> str:
    if not jid.User:
        return ""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


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
    return Noted(f"unhandled library event {type(event).__name__}")


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
