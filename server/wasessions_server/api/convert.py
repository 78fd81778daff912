"""Plain records to `wasessions.v1` messages."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc

from wasessions_server.engines import Qr
from wasessions_server.events import (
    Change,
    Heartbeat,
    Resync,
    Snapshot,
    SnapshotComplete,
    WatchItem,
    format_token,
)
from wasessions_server.model import SessionRecord, State, redact_proxy
from wasessions_server.policy import CodeRule
from wasessions_server.sessions import ManagerSettings, QrItem, QrOutcome

STATES = {s: pb.Session.State.Value(s.value) for s in State}
STATES_BACK = {v: s for s, v in STATES.items()}


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


# NOTE: records are immutable and replaced on every change, so a record converted once can be
# answered from here until it is replaced. In the event loop a conversion costs several times
# what it costs alone (about a sixth of a GetSession), and the same records are read again and
# again (polled sessions, and every change, which watchers and readers both convert).
_session_cache: dict[str, tuple[SessionRecord, pb.Session]] = {}
_SESSION_CACHE_SIZE = 4096


def session(record: SessionRecord) -> pb.Session:
    """The message for `record`. It may be shared with other callers: never modify it."""
    cached = _session_cache.get(record.session_id)
    if cached is not None and cached[0] is record:
        return cached[1]
    message = _new_session(record)
    if cached is None and len(_session_cache) >= _SESSION_CACHE_SIZE:
        _session_cache.pop(next(iter(_session_cache)))
    _session_cache[record.session_id] = (record, message)
    return message


def _new_session(record: SessionRecord) -> pb.Session:
    message = pb.Session(
        name=record.name,
        state=record.state.value,
        required_action=record.required_action.value,
        status_message=record.status_message,
        has_credentials=record.has_credentials,
        labels=record.labels,
        engine=record.engine,
        proxy=redact_proxy(record.proxy),
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        state_change_time=timestamp(record.state_change_time),
    )
    if record.last_activity_time is not None:
        message.last_activity_time.CopyFrom(timestamp(record.last_activity_time))
    if (d := record.last_disconnect) is not None:
        message.last_disconnect.CopyFrom(
            pb.Disconnect(code=d.code, reason=d.reason, message=d.message, time=timestamp(d.time))
        )
    if (r := record.retry) is not None:
        message.retry.attempt = r.attempt
        message.retry.max_attempts = r.max_attempts
        if r.next_attempt_time is not None:
            message.retry.next_attempt_time.CopyFrom(timestamp(r.next_attempt_time))
    if (a := record.account) is not None:
        message.account.CopyFrom(
            pb.Account(jid=a.jid, phone_number=a.phone_number, push_name=a.push_name)
        )
    return message


def watch_response(item: WatchItem, journal_id: str) -> svc.WatchSessionsResponse:
    if isinstance(item, Change):
        return _change(item, journal_id)
    token = format_token(journal_id, item.seq)
    if isinstance(item, Snapshot):
        return svc.WatchSessionsResponse(resume_token=token, snapshot=session(item.record))
    if isinstance(item, SnapshotComplete):
        return svc.WatchSessionsResponse(
            resume_token=token, snapshot_complete=svc.SnapshotComplete()
        )
    if isinstance(item, Heartbeat):
        return svc.WatchSessionsResponse(
            resume_token=token, heartbeat=svc.Heartbeat(time=timestamp(item.time))
        )
    assert isinstance(item, Resync)
    return svc.WatchSessionsResponse(resume_token=token, resync=svc.Resync(reason=item.reason))


# NOTE: a change looks the same to every watcher; converting it once per change instead of once
# per watcher matters when a hundred streams watch every session.
_change_cache: dict[int, svc.WatchSessionsResponse] = {}
_CHANGE_CACHE_SIZE = 4096


def _change(item: Change, journal_id: str) -> svc.WatchSessionsResponse:
    entry = item.entry
    cached = _change_cache.get(entry.seq)
    if cached is not None and cached.resume_token == format_token(journal_id, entry.seq):
        return cached
    token = format_token(journal_id, entry.seq)
    if entry.record is None:
        message = svc.WatchSessionsResponse(
            resume_token=token,
            deleted=svc.SessionDeleted(name=f"sessions/{entry.session_id}"),
        )
    else:
        message = svc.WatchSessionsResponse(
            resume_token=token,
            change=svc.SessionChange(
                session=session(entry.record),
                cause=entry.cause.value,
            ),
        )
    if len(_change_cache) >= _CHANGE_CACHE_SIZE:
        _change_cache.pop(next(iter(_change_cache)))
    _change_cache[entry.seq] = message
    return message


def qr_code(item: QrItem) -> svc.QrCode:
    if isinstance(item, Qr):
        return svc.QrCode(
            value=item.value, expire_time=timestamp(item.expire_time), sequence=item.sequence
        )
    outcome = {
        QrOutcome.PAIRED: svc.QrCode.PAIRED,
        QrOutcome.EXPIRED: svc.QrCode.EXPIRED,
        QrOutcome.STOPPED: svc.QrCode.STOPPED,
    }[item]
    return svc.QrCode(outcome=outcome)


def _rule(rule: CodeRule) -> svc.PolicyRule:
    b = rule.backoff
    return svc.PolicyRule(
        code=rule.code or 0,
        reason=rule.reason,
        action=rule.action.name,
        required_action=rule.required_action.value,
        initial_delay=duration(b.initial_delay_s),
        max_delay=duration(b.max_delay_s),
        multiplier=b.multiplier,
        jitter=duration(b.jitter_s),
        max_attempts=b.max_attempts,
    )


def policy(settings: ManagerSettings) -> svc.Policy:
    qr = settings.qr
    return svc.Policy(
        default_rule=_rule(settings.policy.default),
        rules=[_rule(r) for r in settings.policy.rules.values()],
        qr=svc.QrSchedule(
            first_timeout=duration(qr.first_timeout_s),
            timeout=duration(qr.timeout_s),
            max_codes=qr.max_codes,
        ),
        connect_rate=settings.connect_rate,
        stable_after=duration(settings.stable_after_s),
    )
