"""SimulatorService: drives the embedded simulated WhatsApp (fault injection)."""

from __future__ import annotations

from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from wasessions_server.api import validation as check
from wasessions_server.api.status import Ctx, unary
from wasessions_server.engines.sim import SimEngine
from wasessions_server.errors import ServiceError, Status
from wasessions_server.sessions import SessionRegistry


class SimulatorService(sim_grpc.SimulatorServiceServicer):
    def __init__(self, sessions: SessionRegistry, engine: SimEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    # NOTE: the contract has the message RPCs (issue 11) before the sim engine plays them: until
    # it does they answer UNIMPLEMENTED, as the generated base class does.
    ReceiveMessage = sim_grpc.SimulatorServiceServicer.ReceiveMessage
    AcknowledgeMessage = sim_grpc.SimulatorServiceServicer.AcknowledgeMessage
    InjectSendFailure = sim_grpc.SimulatorServiceServicer.InjectSendFailure
    ListDelivered = sim_grpc.SimulatorServiceServicer.ListDelivered

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
