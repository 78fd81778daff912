"""SessionService: thin handlers over the SessionRegistry."""

from __future__ import annotations

from collections.abc import AsyncIterator

from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc

from wasessions_server.api import convert
from wasessions_server.api import validation as check
from wasessions_server.api.status import Ctx, streaming, unary
from wasessions_server.errors import invalid_argument
from wasessions_server.events import parse_token
from wasessions_server.model import State
from wasessions_server.sessions import SessionRegistry

#: A repeated field's tag and length prefix, at most, per session in a page.
_ENTRY_OVERHEAD = 6


class SessionService(svc_grpc.SessionServiceServicer):
    def __init__(self, sessions: SessionRegistry) -> None:
        self._sessions = sessions

    @unary
    async def CreateSession(self, request: svc.CreateSessionRequest, context: Ctx) -> pb.Session:
        session_id = check.session_id(request.session_id)
        labels = check.labels(request.labels)
        request_id = check.request_id(request.request_id)
        proxy = check.proxy_url(request.proxy)
        record = await self._sessions.create(
            session_id,
            labels=labels,
            engine=request.engine,
            start=not request.skip_start,
            request_id=request_id,
            proxy=proxy,
        )
        return convert.session(record)

    @unary
    async def GetSession(self, request: svc.GetSessionRequest, context: Ctx) -> pb.Session:
        return convert.session(self._sessions.get(check.session_name(request.name)))

    @unary
    async def ListSessions(
        self, request: svc.ListSessionsRequest, context: Ctx
    ) -> svc.ListSessionsResponse:
        size = check.page_size(request.page_size)
        states = frozenset(_state(v, f"states[{i}]") for i, v in enumerate(request.states))
        after = check.page_token(request.page_token, states)
        records, next_after = self._sessions.list_page(after, states, size)
        sessions: list[pb.Session] = []
        page_bytes = 0
        for record in records:
            session = convert.session(record)
            # NOTE: a page of 1,000 sessions with large labels would pass a client's 4 MiB
            # default; the byte cap ends it early (never before its first session).
            page_bytes += session.ByteSize() + _ENTRY_OVERHEAD
            if sessions and page_bytes > check.MAX_PAGE_BYTES:
                next_after = records[len(sessions) - 1].session_id
                break
            sessions.append(session)
        return svc.ListSessionsResponse(
            sessions=sessions,
            next_page_token=check.format_page_token(next_after, states) if next_after else "",
        )

    @unary
    async def UpdateSession(self, request: svc.UpdateSessionRequest, context: Ctx) -> pb.Session:
        session_id = check.session_name(request.name)
        paths = check.update_paths(request.update_mask.paths)
        labels = check.labels(request.labels)
        return convert.session(await self._sessions.update_labels(session_id, labels, paths))

    @unary
    async def StartSession(self, request: svc.StartSessionRequest, context: Ctx) -> pb.Session:
        session_id = check.session_name(request.name)
        record = await self._sessions.start_session(session_id, relink=request.relink)
        return convert.session(record)

    @unary
    async def StopSession(self, request: svc.StopSessionRequest, context: Ctx) -> pb.Session:
        record = await self._sessions.stop_session(check.session_name(request.name))
        return convert.session(record)

    @unary
    async def LogoutSession(self, request: svc.LogoutSessionRequest, context: Ctx) -> pb.Session:
        record = await self._sessions.logout_session(check.session_name(request.name))
        return convert.session(record)

    @unary
    async def DeleteSession(
        self, request: svc.DeleteSessionRequest, context: Ctx
    ) -> svc.DeleteSessionResponse:
        await self._sessions.delete_session(check.session_name(request.name))
        return svc.DeleteSessionResponse()

    @unary
    async def RequestPairingCode(
        self, request: svc.RequestPairingCodeRequest, context: Ctx
    ) -> svc.RequestPairingCodeResponse:
        session_id = check.session_name(request.name)
        phone = check.phone_number(request.phone_number)
        code = await self._sessions.request_pairing_code(session_id, phone)
        return svc.RequestPairingCodeResponse(code=code)

    @streaming
    async def WatchSessions(
        self, request: svc.WatchSessionsRequest, context: Ctx
    ) -> AsyncIterator[svc.WatchSessionsResponse]:
        session_ids = check.session_names(request.names)
        resume = None
        if request.resume_token:
            resume = parse_token(request.resume_token)
            if resume is None:
                raise invalid_argument(
                    "resume_token",
                    "INVALID_RESUME_TOKEN",
                    "resume_token is not a token from WatchSessions; watch without one to "
                    "start from a snapshot",
                )
        journal_id = self._sessions.journal.journal_id
        async for item in self._sessions.watch(session_ids, resume):
            yield convert.watch_response(item, journal_id)

    @streaming
    async def WatchQrCodes(
        self, request: svc.WatchQrCodesRequest, context: Ctx
    ) -> AsyncIterator[svc.QrCode]:
        session_id = check.session_name(request.name)
        async for item in self._sessions.qr_codes(session_id):
            yield convert.qr_code(item)

    @unary
    async def GetPolicy(self, request: svc.GetPolicyRequest, context: Ctx) -> svc.Policy:
        return convert.policy(self._sessions.settings)


def _state(value: int, field: str) -> State:
    state = convert.STATES_BACK.get(value)
    if state is None:
        raise invalid_argument(field, "INVALID_STATE", f"{field} is not a session state")
    return state
