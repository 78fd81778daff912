"""The whatsmeow engine's event-to-code table, over the library's own event types."""

from __future__ import annotations

# isort: off
import tests.test_whatsmeow  # noqa: F401  (strips proxy variables before the Go library loads)

# isort: on
import pytest
from google.protobuf.message import Message
from neonize.events import (
    EVENT_TO_INT,
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    QREv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, PairStatus, TemporaryBan
from wasessions_server.engines.base import Closed
from wasessions_server.engines.whatsmeow_events import (
    KEEPALIVE_GIVE_UP_S,
    SUBSCRIBED,
    Alive,
    Connected,
    Noted,
    Paired,
    QrCodes,
    deletes_store,
    map_event,
    map_login_status,
)
from wasessions_server.model import RequiredAction
from wasessions_server.policy import Action, default_policy, is_qr_window_over

NOW = 1_800_000_000.0
R = ConnectFailureReason


def _failure(reason: int, message: str = "") -> Message:
    failure: Message = ConnectFailureEv(Reason=reason, Message=message)
    return failure


CLOSES: list[tuple[str, Message, int, str]] = [
    ("device removed", LoggedOutEv(OnConnect=False, Reason=R.LOGGED_OUT), 401, "device_removed"),
    ("logged out on connect", LoggedOutEv(OnConnect=True, Reason=R.LOGGED_OUT), 401, "logged_out"),
    ("main device gone", LoggedOutEv(OnConnect=True, Reason=R.MAIN_DEVICE_GONE), 403, "gone"),
    ("unknown logout", LoggedOutEv(OnConnect=True, Reason=R.UNKNOWN_LOGOUT), 406, "unknown"),
    ("stream replaced", StreamReplacedEv(), 440, "replaced"),
    ("client outdated", ClientOutdatedEv(), 405, "outdated"),
    ("outdated failure", _failure(R.CLIENT_OUTDATED), 405, "client_outdated"),
    ("service unavailable", _failure(R.SERVICE_UNAVAILABLE), 503, "service_unavailable"),
    ("internal error", _failure(R.INTERNAL_SERVER_ERROR, "oops"), 500, "oops"),
    ("temp banned failure", _failure(R.TEMP_BANNED), 402, "temp_banned"),
    ("generic failure", _failure(R.GENERIC), 400, "generic"),
    ("bad user agent", _failure(R.BAD_USER_AGENT), 409, "bad_user_agent"),
    ("experimental", _failure(R.EXPERIMENTAL), 501, "experimental"),
    ("failure without reason", ConnectFailureEv(Message="?"), 500, "unknown"),
    ("stream error 515", StreamErrorEv(Code="515"), 515, "515"),
    ("stream error 503", StreamErrorEv(Code="503"), 503, "503"),
    ("stream error text", StreamErrorEv(Code="conflict"), 500, "conflict"),
    ("disconnected", DisconnectedEv(status=True), 428, "Terminated"),
    (
        "keepalive given up",
        KeepAliveTimeoutEv(ErrorCount=5, LastSuccess=int(NOW - KEEPALIVE_GIVE_UP_S - 1)),
        408,
        "keepalive",
    ),
    ("pairing failed", PairStatusEv(Status=PairStatus.ERROR, Error="bad"), 500, "bad"),
]


@pytest.mark.parametrize(
    ("event", "code", "text"), [c[1:] for c in CLOSES], ids=[c[0] for c in CLOSES]
)
def test_library_events_close_with_whatsapp_codes(event: Message, code: int, text: str) -> None:
    mapped = map_event(event, NOW)
    assert isinstance(mapped, Closed)
    assert mapped.code == code
    assert text.lower() in mapped.message.lower()


def test_a_close_is_the_engine_event_itself() -> None:
    """One type for a close: what the table maps to is what the connection hands on."""
    for _, event, _, _ in CLOSES:
        assert type(map_event(event, NOW)) is Closed
    assert type(map_login_status("timeout")) is Closed


def test_only_a_logout_deletes_the_store() -> None:
    """whatsmeow deletes its device with LoggedOut (401 device_removed; 401, 403, 406 on
    connect), never on the other closes."""
    deleting = {name for name, event, _, _ in CLOSES if deletes_store(event)}
    assert deleting == {
        "device removed",
        "logged out on connect",
        "main device gone",
        "unknown logout",
    }
    assert not deletes_store(TemporaryBanEv(Code=TemporaryBan.BLOCKED_BY_USERS, Expire=60))


def test_temporary_ban_carries_its_expiry() -> None:
    ban = TemporaryBanEv(Code=TemporaryBan.BLOCKED_BY_USERS, Expire=3600)
    mapped = map_event(ban, NOW)
    assert mapped == Closed(
        402,
        "Connection Failure (temporarily banned: blocked_by_users; lifted in 3600 s, "
        "at 2027-01-15T09:00:00Z)",
    )
    unknown = map_event(TemporaryBanEv(Code=TemporaryBan.BROADCAST_LIST, Expire=0), NOW)
    assert isinstance(unknown, Closed) and "expiry unknown" in unknown.message


def test_login_events() -> None:
    jid = JID(User="15550001234", Server="s.whatsapp.net", Device=7)
    assert map_event(QREv(Codes=["a", "b"]), NOW) == QrCodes(("a", "b"))
    paired = map_event(PairStatusEv(ID=jid, Status=PairStatus.SUCCESS, BusinessName="Shop"), NOW)
    assert paired == Paired("15550001234:7@s.whatsapp.net", "+15550001234", "Shop")
    assert map_event(ConnectedEv(status=True), NOW) == Connected()
    assert map_event(KeepAliveRestoredEv(), NOW) == Alive(NOW)


def test_a_failing_keepalive_is_only_noted_until_the_give_up() -> None:
    recent = KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=int(NOW - 30))
    assert isinstance(map_event(recent, NOW), Noted)


def test_unknown_events_are_noted_not_dropped() -> None:
    mapped = map_event(MessageEv(), NOW)
    assert isinstance(mapped, Noted) and "Message" in mapped.what


def test_qr_channel_statuses() -> None:
    timeout = map_login_status("timeout")
    assert timeout is not None and is_qr_window_over(timeout.code, timeout.message)
    assert map_login_status("success") is None
    outdated = map_login_status("err-client-outdated")
    assert outdated is not None and outdated.code == 405
    multidevice = map_login_status("err-scanned-without-multidevice")
    assert multidevice is not None and multidevice.code == 411
    other = map_login_status("something-new")
    assert other is not None and other.code == 500 and "something-new" in other.message


def test_every_mapped_code_has_the_designed_policy() -> None:
    """The codes the engine produces land on DESIGN.md's rows (unknown ones on the default)."""
    policy = default_policy()
    expected = {
        401: (Action.LOGOUT, RequiredAction.SCAN_QR),
        402: (Action.FAIL, RequiredAction.CONTACT_SUPPORT),
        403: (Action.FAIL, RequiredAction.CONTACT_SUPPORT),
        405: (Action.FAIL, RequiredAction.UPDATE_CLIENT),
        406: (Action.FAIL, RequiredAction.CONTACT_SUPPORT),
        440: (Action.FAIL, RequiredAction.RESOLVE_CONFLICT),
        428: (Action.RECONNECT, RequiredAction.START_SESSION),
        503: (Action.RECONNECT, RequiredAction.START_SESSION),
        515: (Action.RESTART, RequiredAction.START_SESSION),
    }
    for _, event, code, _ in CLOSES:
        close = map_event(event, NOW)
        assert isinstance(close, Closed)
        rule = policy.rule_for(close.code, close.message)
        if code in expected:
            assert (rule.action, rule.required_action) == expected[code], code
        elif code in (400, 409, 501):
            assert rule is policy.default


def test_the_subscribed_events_are_ones_the_library_forwards() -> None:
    assert all(event in EVENT_TO_INT for event in SUBSCRIBED)
    assert DisconnectedEv in SUBSCRIBED and KeepAliveTimeoutEv in SUBSCRIBED
