"""MessageService: thin handlers over `Messages` (arguments checked first, then state)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
from wasessions.v1 import message_service_pb2_grpc as msvc_grpc
from wasessions.v1 import session_service_pb2 as svc

from wasessions_server.api import message_validation as check
from wasessions_server.api.convert import timestamp
from wasessions_server.api.status import Ctx, streaming, unary
from wasessions_server.errors import invalid_argument
from wasessions_server.events import (
    Event,
    MessageHeartbeat,
    MessageResync,
    MessageWatchItem,
    Started,
    format_message_token,
    parse_message_token,
)
from wasessions_server.message_model import Direction, EventType, MessageRecord, MessageStatus
from wasessions_server.messages import Messages, Outgoing


class MessageService(msvc_grpc.MessageServiceServicer):
    def __init__(self, messages: Messages, heartbeat_s: float) -> None:
        self._messages = messages
        self._heartbeat_s = heartbeat_s
        self._retention = timedelta(seconds=messages.settings.retention_s)

    @unary
    async def SendMessage(self, request: msvc.SendMessageRequest, context: Ctx) -> mpb.Message:
        session_id = check.parent(request.parent, allow_all=False)
        assert session_id is not None
        chat = check.recipient(request.to)
        content = request.WhichOneof("content")
        text = reaction_to = emoji = ""
        if content == "text":
            text = check.text(request.text)
        elif content == "reaction":
            reaction_to = str(
                check.same_session_message(request.reaction.message, session_id, "reaction.message")
            )
            emoji = check.emoji(request.reaction.emoji)
        else:
            raise check.no_content()
        reply_to = ""
        if request.reply_to:
            reply_to = str(check.same_session_message(request.reply_to, session_id, "reply_to"))
        request_id = check.request_id(request.request_id)
        ttl = check.ttl(
            request.ttl.ToTimedelta() if request.HasField("ttl") else None, self._retention
        )
        outgoing = Outgoing(
            chat=chat,
            text=text,
            reaction_to=reaction_to,
            reaction=emoji,
            reply_to=reply_to,
            request_id=request_id,
            ttl_s=ttl.total_seconds() if ttl is not None else 0.0,
        )
        return message(await self._messages.send(session_id, outgoing))

    @unary
    async def GetMessage(self, request: msvc.GetMessageRequest, context: Ctx) -> mpb.Message:
        name = check.message_name(request.name)
        return message(await self._messages.get(name.session_id, name.message_id))

    @unary
    async def ListMessages(
        self, request: msvc.ListMessagesRequest, context: Ctx
    ) -> msvc.ListMessagesResponse:
        session_id = check.parent(request.parent)
        size = check.page_size(request.page_size)
        listing = check.MessageFilter(
            session_id,
            check.chat_filter(request.chat),
            check.direction(request.direction),
            check.statuses(request.statuses),
        )
        after = check.page_token(request.page_token, listing)
        before = None
        if after:
            if not after.isdigit():
                raise invalid_argument(
                    "page_token",
                    "INVALID_PAGE_TOKEN",
                    "page_token is not a token from ListMessages",
                )
            before = int(after)
        records, next_before = await self._messages.list_page(
            listing.session_id,
            listing.chat,
            listing.direction,
            listing.statuses,
            before,
            size,
        )
        token = check.format_page_token(str(next_before), listing) if next_before else ""
        return msvc.ListMessagesResponse(
            messages=[message(r) for r in records], next_page_token=token
        )

    @unary
    async def CancelMessage(self, request: msvc.CancelMessageRequest, context: Ctx) -> mpb.Message:
        name = check.message_name(request.name)
        return message(await self._messages.cancel(name.session_id, name.message_id))

    @unary
    async def MarkRead(self, request: msvc.MarkReadRequest, context: Ctx) -> msvc.MarkReadResponse:
        names = check.message_names(request.messages)
        records = await self._messages.mark_read(names[0].session_id, [n.message_id for n in names])
        return msvc.MarkReadResponse(messages=[message(r) for r in records])

    @streaming
    async def WatchMessages(
        self, request: msvc.WatchMessagesRequest, context: Ctx
    ) -> AsyncIterator[msvc.WatchMessagesResponse]:
        session_id = check.parent(request.parent)
        resume = None
        if request.resume_token:
            resume = parse_message_token(request.resume_token)
            if resume is None:
                raise invalid_argument(
                    "resume_token",
                    "INVALID_RESUME_TOKEN",
                    "resume_token is not a token from WatchMessages (WatchSessions tokens are "
                    "another kind); watch without one to start from the present",
                )
        journal_id = self._messages.journal.journal_id
        async for item in self._messages.watch(session_id, resume, self._heartbeat_s):
            yield _watch_response(item, journal_id)


_STATUSES = {s: mpb.Message.Status.Value(s.value) for s in MessageStatus}
_DIRECTIONS = {d: mpb.Message.Direction.Value(d.value) for d in Direction}
_TYPES = {t: msvc.MessageEvent.Type.Value(t.value) for t in EventType}


def message(record: MessageRecord) -> mpb.Message:
    out = mpb.Message(
        name=record.name,
        whatsapp_id=record.whatsapp_id,
        chat=record.chat,
        sender=record.sender,
        direction=_DIRECTIONS[record.direction],  # type: ignore[arg-type]
        status=_STATUSES[record.status],  # type: ignore[arg-type]
        reply_to=record.reply_to,
        attempts=record.attempts,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )
    if record.reaction:
        out.reaction.message = record.reaction_to
        out.reaction.emoji = record.reaction
    else:
        out.text = record.text
    if record.error is not None:
        out.error.code = record.error.code
        out.error.reason = record.error.reason
        out.error.message = record.error.message
    for field, value in (
        ("sent_time", record.sent_time),
        ("delivered_time", record.delivered_time),
        ("read_time", record.read_time),
        ("expire_time", record.expire_time),
    ):
        if value is not None:
            getattr(out, field).CopyFrom(timestamp(value))
    return out


def _watch_response(item: MessageWatchItem, journal_id: str) -> msvc.WatchMessagesResponse:
    token = format_message_token(journal_id, item.seq)
    if isinstance(item, Event):
        return msvc.WatchMessagesResponse(
            resume_token=token,
            event=msvc.MessageEvent(
                type=_TYPES[item.entry.type],  # type: ignore[arg-type]
                message=message(item.entry.record),
            ),
        )
    if isinstance(item, Started):
        return msvc.WatchMessagesResponse(resume_token=token, started=msvc.WatchMessagesStarted())
    if isinstance(item, MessageHeartbeat):
        return msvc.WatchMessagesResponse(
            resume_token=token, heartbeat=svc.Heartbeat(time=timestamp(item.time))
        )
    assert isinstance(item, MessageResync)
    return msvc.WatchMessagesResponse(resume_token=token, resync=svc.Resync(reason=item.reason))
