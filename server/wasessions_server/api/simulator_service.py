"""SimulatorService: drives the embedded simulated WhatsApp (fault injection)."""

from __future__ import annotations

from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from wasessions_server.api import message_validation as message_check
from wasessions_server.api import validation as check
from wasessions_server.api.status import Ctx, unary
from wasessions_server.engines.sim import SimEngine
from wasessions_server.errors import ServiceError, Status
from wasessions_server.message_model import Direction
from wasessions_server.sessions import SessionRegistry


class SimulatorService(sim_grpc.SimulatorServiceServicer):
    def __init__(self, sessions: SessionRegistry, engine: SimEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    def _sim_session(self, name: str) -> str:
        session_id = check.session_name(name)
        record = self._sessions.get(session_id)
        if record.engine != self._engine.name:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NOT_A_SIM_SESSION",
                f"session {session_id} runs on engine {record.engine!r}, not the simulator",
            )
        return session_id

    @unary
    async def ScanQrCode(
        self, request: sim.ScanQrCodeRequest, context: Ctx
    ) -> sim.ScanQrCodeResponse:
        self._engine.scan_qr(self._sim_session(request.name))
        return sim.ScanQrCodeResponse()

    @unary
    async def EnterPairingCode(
        self, request: sim.EnterPairingCodeRequest, context: Ctx
    ) -> sim.EnterPairingCodeResponse:
        check.session_name(request.name)
        code = check.pairing_code(request.code)
        self._engine.enter_pairing_code(self._sim_session(request.name), code)
        return sim.EnterPairingCodeResponse()

    @unary
    async def InjectDisconnect(
        self, request: sim.InjectDisconnectRequest, context: Ctx
    ) -> sim.InjectDisconnectResponse:
        check.session_name(request.name)
        code = check.disconnect_code(request.code)
        self._engine.inject_disconnect(self._sim_session(request.name), code, request.message)
        return sim.InjectDisconnectResponse()

    @unary
    async def SetNetwork(
        self, request: sim.SetNetworkRequest, context: Ctx
    ) -> sim.SetNetworkResponse:
        self._engine.set_network(request.reachable)
        return sim.SetNetworkResponse()

    @unary
    async def GetNetworkStats(
        self, request: sim.GetNetworkStatsRequest, context: Ctx
    ) -> sim.GetNetworkStatsResponse:
        connects, peak = self._engine.network_stats(request.reset)
        return sim.GetNetworkStatsResponse(connects=connects, peak_connects_per_second=peak)

    @unary
    async def ReceiveMessage(
        self, request: sim.ReceiveMessageRequest, context: Ctx
    ) -> sim.ReceiveMessageResponse:
        check.session_name(request.name)
        sender = message_check.contact(request.sender)
        text = message_check.text(request.text)
        whatsapp_id = message_check.whatsapp_id(request.whatsapp_id) or ""
        session_id = self._sim_session(request.name)
        return sim.ReceiveMessageResponse(
            whatsapp_id=self._engine.receive(session_id, sender, text, whatsapp_id)
        )

    @unary
    async def AcknowledgeMessage(
        self, request: sim.AcknowledgeMessageRequest, context: Ctx
    ) -> sim.AcknowledgeMessageResponse:
        name = message_check.message_name(request.name)
        kind = message_check.receipt(request.status)
        self._sim_session(f"sessions/{name.session_id}")
        messages = self._sessions.messages
        assert messages is not None
        record = await messages.get(name.session_id, name.message_id)
        if record.direction is not Direction.OUTBOUND or not record.whatsapp_id:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "MESSAGE_NOT_SENT",
                f"message {record.name} was not sent by the session; only sent messages are "
                "acknowledged by the recipient's phone",
            )
        self._engine.acknowledge(name.session_id, record.chat, (record.whatsapp_id,), kind)
        return sim.AcknowledgeMessageResponse()

    @unary
    async def InjectSendFailure(
        self, request: sim.InjectSendFailureRequest, context: Ctx
    ) -> sim.InjectSendFailureResponse:
        check.session_name(request.name)
        kind = message_check.failure_kind(request.kind)
        count = message_check.failure_count(request.count)
        session_id = self._sim_session(request.name)
        self._engine.inject_send_failure(session_id, kind, request.message, count)
        return sim.InjectSendFailureResponse()

    @unary
    async def ListDelivered(
        self, request: sim.ListDeliveredRequest, context: Ctx
    ) -> sim.ListDeliveredResponse:
        check.session_name(request.name)
        session_id = self._sim_session(request.name)
        return sim.ListDeliveredResponse(
            messages=[
                sim.DeliveredMessage(whatsapp_id=d.whatsapp_id, chat=d.chat, text=d.text)
                for d in self._engine.delivered(session_id)
            ]
        )
