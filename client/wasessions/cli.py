"""`wa-sessions`: the command line for a wa-sessions server.

    wa-sessions create demo          # a new session; it starts showing QR codes
    wa-sessions qr demo              # shows each QR code in the terminal until it is scanned
    wa-sessions watch                # follows every session's state
    wa-sessions sim scan demo        # (sim engine) scans the code as a phone would
    wa-sessions send demo +15551234567 "hello" --wait   # queues a message, waits until SENT
    wa-sessions inbox demo           # follows the messages the session receives

The server is `--server` or `WASESSIONS_SERVER` (default 127.0.0.1:50051); the API key is
`--api-key` or `WASESSIONS_API_KEY`; `--tls` (with `--ca-file`, and `--client-cert`/`--client-key`
for mutual TLS) for a TLS port. Read commands print JSON with `--json`. A failure prints one
line on stderr and exits non-zero (1; 2 for bad usage; 130 on Ctrl-C).
"""

from __future__ import annotations

import os

# NOTE: gRPC's C core logs (failed TLS handshakes, ...) on stderr and reads GRPC_VERBOSITY once,
# when grpc is first imported: set it before that, so a failure is our one line. A value the user
# set wins (GRPC_VERBOSITY=INFO shows the core's logs again).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from wasessions import qr as qrcode
from wasessions.client import (
    MESSAGE_STATUS_NAMES,
    SENT_OR_LATER,
    STATE_NAMES,
    EventKind,
    MessageEventKind,
    MessageWatchEvent,
    QrCode,
    ReconnectPolicy,
    SessionsClient,
    WatchEvent,
    session_id,
    state_name,
    status_name,
    to_datetime,
)
from wasessions.errors import NotFoundError, WaSessionsError
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc

PROG = "wa-sessions"
DEFAULT_PORT = 50051
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report in one line (exit 1)."""


@dataclass
class Out:
    """Where the command writes: stdout for results, stderr for notes."""

    stdout: TextIO
    stderr: TextIO
    json: bool

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def emit(self, value: Any) -> None:
        """One JSON document on one line (so streams are JSON lines)."""
        self.line(json.dumps(value, sort_keys=True))

    @property
    def tty(self) -> bool:
        return self.stdout.isatty()


# Formatting --------------------------------------------------------------------------------------


def to_json(message: Message) -> dict[str, Any]:
    """A message as JSON, with the proto field names (`required_action`, `last_disconnect`)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def action_name(value: int) -> str:
    return str(pb.Session.RequiredAction.Name(value))


def _ago(ts: Any) -> str:
    when = to_datetime(ts)
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_line(session: pb.Session) -> str:
    """`demo  CONNECTED  NONE  +15551234567  <why: reason_text>`"""
    account = session.account.phone_number if session.HasField("account") else "-"
    return "  ".join(
        [
            session_id(session.name),
            state_name(session.state),
            action_name(session.required_action),
            account or "-",
            reason_text(session),
        ]
    ).rstrip()


_CLOSED_STATES = (pb.Session.RECONNECTING, pb.Session.FAILED, pb.Session.LOGGED_OUT)


def reason_text(session: pb.Session) -> str:
    """Why the session is in its state, in one line. After a close, the close itself:
    `408 CONNECTION_LOST: lookup web.whatsapp.com: no such host; retry 3/8 in 4.0 s` (the wait
    counted from the change) while RECONNECTING, with the status message once FAILED or
    LOGGED_OUT; otherwise the status message."""
    status = " ".join(session.status_message.split())
    if session.state not in _CLOSED_STATES or not session.HasField("last_disconnect"):
        return status
    d = session.last_disconnect
    message = " ".join(d.message.split())
    text = f"{d.code} {d.reason}" + (f": {message}" if message else "")
    if session.state != pb.Session.RECONNECTING:
        return f"{text} ({status})" if status else text
    if session.HasField("retry"):
        r = session.retry
        text += f"; retry {r.attempt}/{r.max_attempts}"
        at, then = to_datetime(session.update_time), to_datetime(r.next_attempt_time)
        if then is None:  # the attempt is under way
            text += " now"
        elif at is not None:
            text += f" in {max(0.0, (then - at).total_seconds()):.1f} s"
    return text


def doing(session: pb.Session) -> str:
    """The state and why: `RECONNECTING 408 CONNECTION_LOST: ...; retry 3/8 in 4.0 s`."""
    why = reason_text(session)
    return f"{state_name(session.state)} {why}" if why else state_name(session.state)


def session_details(session: pb.Session) -> list[str]:
    rows: list[tuple[str, str]] = [
        ("name", session.name),
        ("state", state_name(session.state)),
        ("required action", action_name(session.required_action)),
        ("status", session.status_message or "-"),
        ("engine", session.engine or "-"),
        ("has credentials", "yes" if session.has_credentials else "no"),
    ]
    if session.HasField("account"):
        a = session.account
        rows.append(("account", f"{a.phone_number} {a.jid} ({a.push_name})".strip()))
    if session.HasField("last_disconnect"):
        d = session.last_disconnect
        rows.append(
            ("last disconnect", f"{d.code} {d.reason} at {_ago(d.time)}: {d.message}".strip())
        )
    if session.HasField("retry"):
        r = session.retry
        nxt = _ago(r.next_attempt_time) if r.HasField("next_attempt_time") else "-"
        rows.append(("retry", f"attempt {r.attempt}/{r.max_attempts}, next at {nxt}"))
    if session.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(session.labels.items()))))
    if session.proxy:
        rows.append(("proxy", session.proxy))
    rows += [
        ("created", _ago(session.create_time)),
        ("state changed", _ago(session.state_change_time)),
        ("last activity", _ago(session.last_activity_time)),
    ]
    width = max(len(k) for k, _ in rows)
    return [f"{k.ljust(width)}  {v}" for k, v in rows]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(header), *rows]
    ]


SESSION_HEADER = ("SESSION", "STATE", "ACTION", "ACCOUNT", "STATUS")


def session_row(session: pb.Session) -> list[str]:
    account = session.account.phone_number if session.HasField("account") else ""
    return [
        session_id(session.name),
        state_name(session.state),
        action_name(session.required_action),
        account or "-",
        session.status_message,
    ]


def _seconds(duration: Any) -> str:
    return f"{duration.ToNanoseconds() / 1e9:g}s"


def policy_lines(policy: svc.Policy) -> list[str]:
    header = ("CODE", "REASON", "ACTION", "THEN", "DELAY", "MAX", "x", "JITTER", "ATTEMPTS")

    def row(rule: svc.PolicyRule, code: str) -> list[str]:
        return [
            code,
            rule.reason,
            svc.PolicyRule.Action.Name(rule.action),
            action_name(rule.required_action),
            _seconds(rule.initial_delay),
            _seconds(rule.max_delay),
            f"{rule.multiplier:g}",
            _seconds(rule.jitter),
            str(rule.max_attempts),
        ]

    rows = [row(r, str(r.code)) for r in policy.rules]
    rows.append(row(policy.default_rule, "other"))
    qr = policy.qr
    return [
        *table(header, rows),
        "",
        f"QR window: first code {_seconds(qr.first_timeout)}, then {_seconds(qr.timeout)} "
        f"each, {qr.max_codes} codes",
        f"connect rate: {policy.connect_rate:g}/s; attempts reset after "
        f"{_seconds(policy.stable_after)} connected",
    ]


def event_json(event: WatchEvent) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": event.kind.value, "resume_token": event.resume_token}
    if event.name:
        doc["name"] = event.name
    if event.session is not None:
        doc["session"] = to_json(event.session)
    if event.cause:
        doc["cause"] = event.cause
    if event.reason:
        doc["reason"] = event.reason
    return doc


def event_time(event: WatchEvent) -> datetime:
    """When it happened: a change at its `update_time`, a snapshot's state since its
    `state_change_time` (a replayed change keeps its own time); markers now."""
    when = None
    if event.session is not None:
        stamp = event.session.state_change_time
        if event.kind is EventKind.CHANGE:
            stamp = event.session.update_time
        when = to_datetime(stamp)
    return when or datetime.now(UTC)


def event_line(event: WatchEvent) -> str | None:
    now = event_time(event).strftime("%H:%M:%S")
    if event.kind is EventKind.SNAPSHOT_COMPLETE:
        return f"{now}  -- now following changes --"
    if event.kind is EventKind.RESYNC:
        return f"{now}  -- resync ({event.reason}): a new snapshot follows --"
    if event.kind is EventKind.DELETED:
        return f"{now}  {session_id(event.name)}  DELETED"
    if event.session is None:
        return None
    line = f"{now}  {session_line(event.session)}"
    if event.kind is EventKind.CHANGE:
        line += f"  [{event.cause}]"
    return line


# Messages: formatting ---------------------------------------------------------------------------

MESSAGE_HEADER = ("TIME", "NAME", "DIRECTION", "CHAT", "STATUS", "CONTENT")
#: The receipts `sim ack` can play.
RECEIPTS = ("delivered", "read", "played")
#: `sim fail` kinds, as typed (InjectSendFailureRequest.Kind with '-').
FAILURE_KINDS = ("reject", "drop-connection", "drop-after-accept")
CONTENT_WIDTH = 60


def one_line(text: str, width: int = CONTENT_WIDTH) -> str:
    """Text on one line (whitespace runs become one space), cut to `width` with '...'."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def content_text(message: mpb.Message, width: int = CONTENT_WIDTH) -> str:
    """The content in one line: the text, or `reacted 👍 to NAME`."""
    which = message.WhichOneof("content")
    if which == "text":
        return one_line(message.text, width)
    if which == "reaction":
        return f"reacted {message.reaction.emoji} to {message.reaction.message}"
    return "-"


def direction_name(value: int) -> str:
    return str(mpb.Message.Direction.Name(value))


def message_status_text(message: mpb.Message) -> str:
    """`SENT`, or `FAILED SEND_ATTEMPTS_EXHAUSTED: ...` with the error."""
    status = status_name(message.status)
    if message.HasField("error"):
        e = message.error
        detail = " ".join(e.message.split())
        status += f" {e.reason}" + (f": {detail}" if detail else "")
    return status


def message_row(message: mpb.Message) -> list[str]:
    other = message.chat if message.direction != mpb.Message.INBOUND else message.sender
    return [
        _ago(message.create_time),
        message.name,
        direction_name(message.direction),
        other or "-",
        message_status_text(message),
        content_text(message),
    ]


def message_line(message: mpb.Message) -> str:
    """`sessions/demo/messages/abc  SENT` (and the error once FAILED or EXPIRED)."""
    return f"{message.name}  {message_status_text(message)}"


def message_event_json(event: MessageWatchEvent) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": event.kind.value, "resume_token": event.resume_token}
    if event.type:
        doc["type"] = event.type
    if event.message is not None:
        doc["message"] = to_json(event.message)
    if event.reason:
        doc["reason"] = event.reason
    return doc


def is_inbound(event: MessageWatchEvent) -> bool:
    """A RECEIVED event: what `inbox` shows."""
    return (
        event.kind is MessageEventKind.EVENT
        and event.type == "RECEIVED"
        and event.message is not None
    )


def inbox_line(message: mpb.Message) -> str:
    """`12:00:01  15557654321@s.whatsapp.net  hi  (sessions/demo/messages/abc)`"""
    when = to_datetime(message.create_time) or datetime.now(UTC)
    text = content_text(message, width=200)
    return (
        f"{when.strftime('%H:%M:%S')}  {message.sender or message.chat}  {text}  ({message.name})"
    )


# Commands ----------------------------------------------------------------------------------------

Handler = Callable[[SessionsClient, argparse.Namespace, Out], Awaitable[int]]


async def cmd_create(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    labels = dict(_label(v) for v in args.label or ())
    session = await client.create_session(
        args.session,
        labels=labels,
        engine=args.engine,
        skip_start=args.no_start,
        request_id=args.request_id,
        proxy=args.proxy,
    )
    _print_session(session, out)
    if not out.json and not args.no_start:
        out.note(f"next: `{PROG} qr {session_id(session.name)}` shows the QR code to scan")
    return 0


async def cmd_get(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    session = await client.get_session(args.session)
    if out.json:
        out.emit(to_json(session))
    else:
        for line in session_details(session):
            out.line(line)
    return 0


async def cmd_list(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    sessions = await client.list_sessions(states=args.state or ())
    if out.json:
        out.emit({"sessions": [to_json(s) for s in sessions]})
    elif not sessions:
        out.note("no sessions")
    else:
        for line in table(SESSION_HEADER, [session_row(s) for s in sessions]):
            out.line(line)
    return 0


def _unary(method: str) -> Handler:
    async def run(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
        kwargs = {"relink": True} if getattr(args, "relink", False) else {}
        session = await getattr(client, method)(args.session, **kwargs)
        _print_session(session, out)
        return 0

    return run


async def cmd_delete(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.delete_session(args.session)
    if out.json:
        out.emit({"deleted": f"sessions/{session_id(args.session)}"})
    else:
        out.line(f"{session_id(args.session)}  deleted")
    return 0


async def cmd_pair(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    code = await client.request_pairing_code(args.session, args.phone_number)
    if out.json:
        out.emit({"code": code})
    else:
        out.line(f"{code[:4]}-{code[4:]}" if len(code) == 8 else code)
        out.note(
            "on the phone: WhatsApp > Linked devices > Link a device > "
            "Link with phone number instead, then type this code"
        )
    return 0


async def cmd_policy(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    policy = await client.get_policy()
    if out.json:
        out.emit(to_json(policy))
    else:
        for line in policy_lines(policy):
            out.line(line)
    return 0


async def cmd_wait(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    session = await client.wait_for_state(args.session, *args.states, timeout=args.wait_timeout)
    _print_session(session, out)
    return 0


async def cmd_watch(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    # NOTE: one cheap call first, so a wrong --server fails at once instead of reconnecting;
    # and a named session must exist (NOT_FOUND otherwise): to follow one before it is created,
    # watch every session.
    if args.sessions:
        for name in args.sessions:
            await client.get_session(name)
    else:
        await client.list_sessions_page(page_size=1)
    live_table = not out.json and (args.table or (out.tty and not args.lines))
    until = {s.upper() for s in args.until or ()}
    sessions: dict[str, pb.Session] = {}

    def connection(is_open: bool, why: str) -> None:
        if is_open:
            out.note("reconnected to the server")
        else:
            out.note(f"reconnecting to the server... ({why})" if why else "reconnecting...")

    watch = client.watch(
        args.sessions,
        resume_token=args.resume_token,
        reconnect=ReconnectPolicy(give_up_after_s=args.give_up_after),
        on_connection=connection,
    )
    async with watch:
        async for event in watch:
            if event.kind is EventKind.RESYNC:
                sessions.clear()
            if event.session is not None:
                sessions[event.name] = event.session
            elif event.kind is EventKind.DELETED:
                sessions.pop(event.name, None)
            if out.json:
                out.emit(event_json(event))
            elif live_table:
                if event.kind is not EventKind.SNAPSHOT:
                    _redraw(out, sessions)
            else:
                line = event_line(event)
                if line is not None:
                    out.line(line)
            reached = until and event.session is not None and event.state in until
            if reached and (event.kind is EventKind.CHANGE or not args.changes_only):
                if live_table and event.kind is EventKind.SNAPSHOT:
                    _redraw(out, sessions)
                return 0
    return 0  # pragma: no cover - a watch only ends by an error


async def cmd_send(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    message = await client.send_message(
        args.session,
        args.to,
        args.text,
        reply_to=args.reply_to,
        request_id=args.request_id,
        ttl=args.ttl,
    )
    if args.wait:
        message = await client.wait_for_message(
            message.name, *SENT_OR_LATER, timeout=args.wait_timeout
        )
    if out.json:
        out.emit(to_json(message))
    else:
        out.line(message_line(message) if args.wait else message.name)
    if status_name(message.status) not in SENT_OR_LATER | {"QUEUED"}:
        raise CliError(f"{message.name} was not sent: {message_status_text(message)}")
    return 0


async def cmd_messages(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    messages: list[mpb.Message] = []
    async for message in client.list_messages(
        args.session,
        chat=args.chat,
        direction=args.direction,
        statuses=args.status or (),
        page_size=min(args.limit, 1000),
    ):
        messages.append(message)
        if len(messages) >= args.limit:
            break
    if out.json:
        out.emit({"messages": [to_json(m) for m in messages]})
    elif not messages:
        out.note("no messages")
    else:
        for line in table(MESSAGE_HEADER, [message_row(m) for m in messages]):
            out.line(line)
    return 0


async def cmd_inbox(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    # NOTE: one cheap call first, so a wrong --server or session fails at once instead of
    # reconnecting.
    await client.list_messages_page(args.session, page_size=1)

    def connection(is_open: bool, why: str) -> None:
        if is_open:
            out.note("reconnected to the server")
        else:
            out.note(f"reconnecting to the server... ({why})" if why else "reconnecting...")

    watch = client.watch_messages(
        args.session,
        resume_token=args.resume_token,
        reconnect=ReconnectPolicy(give_up_after_s=args.give_up_after),
        on_connection=connection,
    )
    async with watch:
        async for event in watch:
            if event.kind is MessageEventKind.STARTED and not out.json:
                out.note(f"following inbound messages (resume token {event.resume_token})")
            elif event.kind is MessageEventKind.RESYNC and not out.json:
                out.note(f"-- resync ({event.reason}): events were missed; going on from now --")
            if out.json:
                if is_inbound(event) or event.kind is not MessageEventKind.EVENT:
                    out.emit(message_event_json(event))
            elif is_inbound(event) and event.message is not None:
                out.line(inbox_line(event.message))
    return 0  # pragma: no cover - a watch only ends by an error


def _redraw(out: Out, sessions: dict[str, pb.Session]) -> None:
    rows = [session_row(s) for _, s in sorted(sessions.items())]
    if out.tty:
        out.stdout.write("\x1b[H\x1b[2J")
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    count = f"{len(rows)} session" + ("" if len(rows) == 1 else "s")
    out.line(f"wa-sessions watch  {stamp}  ({count}; Ctrl-C to stop)")
    for line in table(SESSION_HEADER, rows):
        out.line(line)
    out.line()


async def cmd_qr(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    name = session_id(args.session)
    # NOTE: while there is no code to show (connecting, retrying), a watch says what the
    # session is doing instead of leaving the terminal silent.
    status = asyncio.create_task(_qr_status(client, name, out))
    try:
        async for code in client.qr_codes(args.session):
            if code.outcome:
                status.cancel()
                return await _qr_outcome(client, name, code, out)
            _show_qr(name, code, args, out)
    finally:
        status.cancel()
        await asyncio.gather(status, return_exceptions=True)
    raise CliError(f"the QR stream of {name} ended without an outcome")


def _show_qr(name: str, code: QrCode, args: argparse.Namespace, out: Out) -> None:
    if args.png:
        qrcode.write_png(code.value, args.png)
    if out.json:
        doc: dict[str, Any] = {"value": code.value, "sequence": code.sequence}
        if code.expire_time is not None:
            doc["expire_time"] = code.expire_time.isoformat()
        if args.png:
            doc["png"] = str(args.png)
        out.emit(doc)
        return
    if args.no_terminal:
        out.line(f"QR code {code.sequence} written to {args.png}")
        return
    if out.tty:
        out.stdout.write("\x1b[H\x1b[2J")
    out.line(_qr_caption(name, code))
    out.stdout.write(qrcode.render_terminal(code.value, invert=args.invert, large=args.large))
    if args.png:
        out.line(f"(also written to {args.png})")
    out.line()


#: States in which `qr` has a code to show, or is about to end (its last line says the state).
_QR_QUIET = (
    pb.Session.QR_PENDING,
    pb.Session.STOPPED,
    pb.Session.LOGGED_OUT,
    pb.Session.FAILED,
)


async def _qr_status(client: SessionsClient, name: str, out: Out) -> None:
    """One line per change of what the session is doing while it shows no QR code:
    `demo: RECONNECTING 408 CONNECTION_LOST: ...; retry 3/8 in 4.0 s`."""
    last = ""
    async with client.watch([name]) as events:
        async for event in events:
            session = event.session
            if session is None or session.state in _QR_QUIET:
                continue
            text = f"{name}: {doing(session)}"
            if text == last:
                continue
            last = text
            if out.json:
                out.emit({"status": doing(session), "session": to_json(session)})
            else:
                out.line(text)


def _qr_caption(name: str, code: QrCode) -> str:
    left = ""
    if code.expire_time is not None:
        seconds = max(0, int((code.expire_time - datetime.now(UTC)).total_seconds()))
        left = f", valid for {seconds}s"
    return (
        f"{name}: QR code {code.sequence}{left}. Scan it in WhatsApp > Linked devices > "
        "Link a device"
    )


async def _qr_outcome(client: SessionsClient, name: str, code: QrCode, out: Out) -> int:
    if out.json:
        out.emit({"outcome": code.outcome})
    if code.outcome == "PAIRED":
        if not out.json:
            out.line(f"{name}: linked; the session is connecting")
        return 0
    messages = {
        "EXPIRED": f"{name}: the QR window ended unscanned; `{PROG} start {name}` shows new codes",
        "STOPPED": f"{name}: the session stopped showing QR codes",
    }
    text = messages.get(code.outcome, f"{name}: QR phase ended: {code.outcome}")
    # The last line says where the session ended up, and why.
    try:
        text += f"; it is {doing(await client.get_session(name))}"
    except NotFoundError:
        text += "; it was deleted"
    if out.json:  # the outcome document already says it; one line on stderr too
        out.note(f"{PROG}: error: {text}")
        return EXIT_ERROR
    raise CliError(text)


async def cmd_sim_scan(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.simulator.scan(args.session)
    return _done(out, "scanned", session=args.session)


async def cmd_sim_pair(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.simulator.enter_pairing_code(args.session, args.code)
    return _done(out, "pairing code entered", session=args.session)


async def cmd_sim_disconnect(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.simulator.inject_disconnect(args.session, args.code, args.message)
    return _done(out, f"disconnected with {args.code}", session=args.session)


async def cmd_sim_network(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.simulator.set_network(args.state == "up")
    return _done(out, f"network {args.state}")


async def cmd_sim_receive(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    whatsapp_id = await client.simulator.receive(
        args.session, args.sender, args.text, args.whatsapp_id
    )
    if out.json:
        out.emit({"ok": True, "name": f"sessions/{session_id(args.session)}",
                  "whatsapp_id": whatsapp_id})  # fmt: skip
    else:
        out.line(f"{session_id(args.session)}  received {whatsapp_id} from {args.sender}")
    return 0


async def cmd_sim_ack(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    await client.simulator.acknowledge(args.message, args.receipt)
    if out.json:
        out.emit({"ok": True, "done": args.receipt.upper(), "name": args.message})
    else:
        out.line(f"{args.message}  {args.receipt.upper()}")
    return 0


async def cmd_sim_fail(client: SessionsClient, args: argparse.Namespace, out: Out) -> int:
    kind = args.kind.replace("-", "_")
    await client.simulator.inject_send_failure(args.session, kind, args.message, args.count)
    return _done(out, f"next {args.count} send(s) fail: {args.kind}", session=args.session)


def _done(out: Out, what: str, session: str = "") -> int:
    if out.json:
        doc = {"ok": True, "done": what}
        if session:
            doc["name"] = f"sessions/{session_id(session)}"
        out.emit(doc)
    else:
        out.line(f"{session_id(session)}  {what}" if session else what)
    return 0


def _print_session(session: pb.Session, out: Out) -> None:
    if out.json:
        out.emit(to_json(session))
    else:
        out.line(session_line(session))


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CliError(f"--label wants KEY=VALUE, got {text!r}")
    return key, value


# Arguments ---------------------------------------------------------------------------------------


def _common(json_flag: bool) -> argparse.ArgumentParser:
    """Connection flags, accepted anywhere: every parser (the top one, each command, `sim` and
    each of its actions) has them. SUPPRESS keeps a flag given at one level from being reset by
    the default of the next."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"host[:port] of the server (env WASESSIONS_SERVER; default {DEFAULT_SERVER}; "
        f"the port defaults to {DEFAULT_PORT})",
    )
    group.add_argument(
        "--api-key", default=argparse.SUPPRESS, help="API key (env WASESSIONS_API_KEY)"
    )
    group.add_argument(
        "--tls", action="store_true", default=argparse.SUPPRESS, help="connect with TLS"
    )
    group.add_argument(
        "--ca-file",
        type=Path,
        default=argparse.SUPPRESS,
        help="PEM root certificates for --tls (default: the system's)",
    )
    group.add_argument(
        "--client-cert",
        type=Path,
        default=argparse.SUPPRESS,
        help="PEM client certificate for mutual TLS (with --client-key)",
    )
    group.add_argument(
        "--client-key", type=Path, default=argparse.SUPPRESS, help="PEM key of --client-cert"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="seconds per call (default 30)",
    )
    if json_flag:
        parent.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print JSON (one document per line) instead of text",
        )
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _common(json_flag=True)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Command line for a wa-sessions server: create WhatsApp linked-device "
        "sessions, show their QR codes, follow their state.",
        epilog=f"Example: {PROG} create demo && {PROG} qr demo",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = command("create", "create a session (it starts showing QR codes)", cmd_create)
    p.add_argument("session", help="session id: [a-z0-9][a-z0-9_-]{0,62}")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (repeatable)")
    p.add_argument("--engine", default="", help="sim or whatsmeow (default: the server's)")
    p.add_argument("--no-start", action="store_true", help="create it STOPPED")
    p.add_argument("--request-id", default="", help="makes a retried create idempotent")
    p.add_argument("--proxy", default="", help="http://, https:// or socks5:// proxy URL")

    p = command("list", "list sessions", cmd_list)
    p.add_argument(
        "--state",
        action="append",
        type=str.upper,
        choices=STATE_NAMES,
        help="only sessions in this state (repeatable)",
    )

    p = command("get", "show one session", cmd_get)
    p.add_argument("session")

    p = command("start", "start a stopped, failed or logged-out session", _unary("start_session"))
    p.add_argument("session")
    p.add_argument("--relink", action="store_true", help="discard credentials, new QR login")

    for name, method, text in [
        ("stop", "stop_session", "close the connection, keep the credentials"),
        ("logout", "logout_session", "unlink the device and wipe the credentials"),
    ]:
        p = command(name, text, _unary(method))
        p.add_argument("session")

    p = command("delete", "log out (best effort) and remove a session", cmd_delete)
    p.add_argument("session")

    p = command("pair", "link by phone number: prints the code to type on the phone", cmd_pair)
    p.add_argument("session")
    p.add_argument("phone_number", help="E.164, e.g. +15551234567")

    p = command("watch", "follow the state of sessions (all when none are named)", cmd_watch)
    p.add_argument("sessions", nargs="*", metavar="session")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--table", action="store_true", help="a live table (default on a TTY)")
    view.add_argument("--lines", action="store_true", help="one line per change")
    p.add_argument("--resume-token", default="", help="resume after this token")
    p.add_argument(
        "--until",
        action="append",
        type=str.upper,
        choices=STATE_NAMES,
        help="exit 0 once a watched session is in this state (repeatable)",
    )
    p.add_argument(
        "--changes-only",
        action="store_true",
        help="with --until: only a change counts, not the initial snapshot",
    )
    p.add_argument(
        "--give-up-after",
        type=float,
        default=300.0,
        help="seconds to keep reconnecting after the server went away (default 300)",
    )

    p = command("wait", "wait until a session is in one of the given states", cmd_wait)
    p.add_argument("session")
    p.add_argument("states", nargs="+", type=str.upper, choices=STATE_NAMES, metavar="STATE")
    p.add_argument(
        "--wait-timeout", type=float, default=60.0, help="give up after this many seconds"
    )

    p = command("qr", "show each QR code in the terminal until it is scanned", cmd_qr)
    p.add_argument("session")
    p.add_argument("--png", type=Path, help="also write each code to this PNG file")
    p.add_argument("--no-terminal", action="store_true", help="with --png: do not print it")
    p.add_argument("--invert", action="store_true", help="for terminals with a light background")
    p.add_argument("--large", action="store_true", help="twice as big")

    command("policy", "show the effective reconnect policy table", cmd_policy)

    p = command("send", "queue a text message (prints its name)", cmd_send)
    p.add_argument("session")
    p.add_argument("to", help="E.164 (+15551234567) or a JID (...@s.whatsapp.net, ...@g.us)")
    p.add_argument("text")
    p.add_argument("--reply-to", default="", metavar="MESSAGE", help="the message replied to")
    p.add_argument("--request-id", default="", help="makes a retried send idempotent")
    p.add_argument("--ttl", type=float, default=None, help="seconds it may wait in the queue")
    p.add_argument("--wait", action="store_true", help="wait until it is SENT, then print it")
    p.add_argument(
        "--wait-timeout", type=float, default=60.0, help="give up after this many seconds"
    )

    p = command("messages", "list a session's messages, newest first ('-': all)", cmd_messages)
    p.add_argument("session", help="a session, or '-' for every session")
    p.add_argument("--chat", default="", help="only this chat (E.164 or JID)")
    p.add_argument("--direction", type=str.upper, choices=("INBOUND", "OUTBOUND"))
    p.add_argument(
        "--status",
        action="append",
        type=str.upper,
        choices=MESSAGE_STATUS_NAMES,
        help="only messages in this status (repeatable)",
    )
    p.add_argument("--limit", type=_positive_int, default=50, help="at most this many (50)")

    p = command("inbox", "follow the messages a session receives ('-': all)", cmd_inbox)
    p.add_argument("session", help="a session, or '-' for every session")
    p.add_argument("--resume-token", default="", help="resume after this token")
    p.add_argument(
        "--give-up-after",
        type=float,
        default=300.0,
        help="seconds to keep reconnecting after the server went away (default 300)",
    )

    sim_parser = sub.add_parser(
        "sim",
        help="drive the simulated WhatsApp (sim engine only)",
        description="Drive the simulated WhatsApp of a server with the sim engine.",
        parents=[common],
    )
    sim_sub = sim_parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)

    def sim_command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        q = sim_sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        q.set_defaults(handler=handler)
        return q

    q = sim_command("scan", "scan the session's current QR code as a phone would", cmd_sim_scan)
    q.add_argument("session")
    q = sim_command("pair", "type a pairing code on the simulated phone", cmd_sim_pair)
    q.add_argument("session")
    q.add_argument("code", help="ABCD-EFGH (with or without the hyphen)")
    q = sim_command(
        "disconnect", "close the session's connection with a WhatsApp code", cmd_sim_disconnect
    )
    q.add_argument("session")
    q.add_argument("code", type=int, help="e.g. 401, 408, 428, 440, 515")
    q.add_argument("--message", default="", help="the close message")
    q = sim_command("network", "take the simulated network down or up", cmd_sim_network)
    q.add_argument("state", choices=["up", "down"])
    q = sim_command("receive", "a contact sends the session a text message", cmd_sim_receive)
    q.add_argument("session")
    q.add_argument("sender", metavar="from", help="E.164 or JID of the contact")
    q.add_argument("text")
    q.add_argument("--whatsapp-id", default="", help="the message id (a repeat is a redelivery)")
    q = sim_command("ack", "the recipient's phone acknowledges a sent message", cmd_sim_ack)
    q.add_argument("message", help="sessions/{session}/messages/{id}")
    q.add_argument("receipt", type=str.lower, choices=RECEIPTS)
    q = sim_command("fail", "make the session's next sends fail", cmd_sim_fail)
    q.add_argument("session")
    q.add_argument("kind", type=str.lower, choices=FAILURE_KINDS)
    q.add_argument("--message", default="", help="REJECT: WhatsApp's refusal text")
    q.add_argument("--count", type=_positive_int, default=1, help="how many sends (1)")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def server_target(text: str) -> str:
    """`host:port` for gRPC; a host without a port gets 50051 (gRPC itself would take 443).
    A gRPC URI (`dns:///...`, `unix:...`) is used as given."""
    if "/" in text or text.startswith(("unix:", "unix-abstract:", "vsock:", "ipv4:", "ipv6:")):
        return text
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        return text if "]:" in text else f"{text}:{DEFAULT_PORT}"
    if text.count(":") > 1:  # a bare IPv6 address
        return f"[{text}]:{DEFAULT_PORT}"
    return text if ":" in text else f"{text}:{DEFAULT_PORT}"


def _server(args: argparse.Namespace) -> str:
    given = getattr(args, "server", None) or os.environ.get("WASESSIONS_SERVER")
    return server_target(given) if given else DEFAULT_SERVER


def _client(args: argparse.Namespace) -> SessionsClient:
    env = os.environ
    server = _server(args)
    api_key = getattr(args, "api_key", None) or env.get("WASESSIONS_API_KEY") or None
    tls: bool | grpc.ChannelCredentials = bool(getattr(args, "tls", False))
    files: dict[str, Path | None] = {
        "ca-file": getattr(args, "ca_file", None),
        "client-cert": getattr(args, "client_cert", None),
        "client-key": getattr(args, "client_key", None),
    }
    if (files["client-cert"] is None) != (files["client-key"] is None):
        raise CliError("--client-cert and --client-key go together")
    if any(files.values()):
        pem: dict[str, bytes | None] = {}
        for flag, path in files.items():
            try:
                pem[flag] = path.read_bytes() if path is not None else None
            except OSError as error:
                raise CliError(f"cannot read --{flag}: {error}") from None
        tls = grpc.ssl_channel_credentials(
            root_certificates=pem["ca-file"],
            private_key=pem["client-key"],
            certificate_chain=pem["client-cert"],
        )
    return SessionsClient(server, api_key=api_key, tls=tls, timeout=getattr(args, "timeout", 30.0))


async def _run(handler: Handler, args: argparse.Namespace, out: Out) -> int:
    async with _client(args) as client:
        return await handler(client, args, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Out(sys.stdout, sys.stderr, json=bool(getattr(args, "json", False)))
    server = _server(args)
    try:
        return asyncio.run(_run(args.handler, args, out))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except WaSessionsError as error:
        _fail(out, str(_explain(error, server)), error.to_dict())
    except CliError as error:
        _fail(out, str(error), {"message": str(error)})
    except (OSError, ValueError) as error:
        _fail(out, str(error), {"message": str(error)})
    return EXIT_ERROR


def _explain(error: WaSessionsError, server: str) -> str:
    if error.code is grpc.StatusCode.UNAVAILABLE and not error.reason:
        detail = " ".join(error.message.split())
        if len(detail) > 160:
            detail = detail[:157] + "..."
        return (
            f"cannot reach the server at {server} (is it running? --server / "
            f"WASESSIONS_SERVER; TLS: --tls, --ca-file): {detail}"
        )
    if error.code is grpc.StatusCode.UNIMPLEMENTED:
        return f"{error} (the sim commands need a server with the sim engine)"
    return str(error)


def _fail(out: Out, text: str, doc: dict[str, Any]) -> None:
    """One line on stderr; with --json also the error as JSON on stdout."""
    if out.json:
        out.emit({"error": doc})
    out.note(f"{PROG}: error: {text.splitlines()[0] if text else 'failed'}")


if __name__ == "__main__":
    sys.exit(main())
