"""Assembles the service: store, journal, engines, manager, servicers, health, reflection."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from wasessions.v1 import session_service_pb2, simulator_service_pb2
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from wasessions_server.api.session_service import SessionService
from wasessions_server.api.simulator_service import SimulatorService
from wasessions_server.config import ServerConfig
from wasessions_server.engines import Engine
from wasessions_server.engines.registry import build_engine
from wasessions_server.engines.sim import SimEngine
from wasessions_server.events import EventJournal
from wasessions_server.manager import SessionManager
from wasessions_server.store import CredentialStore, DataDirLock, SqliteStore

log = logging.getLogger(__name__)

SESSION_SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
SIMULATOR_SERVICE = simulator_service_pb2.DESCRIPTOR.services_by_name["SimulatorService"].full_name


class BindError(Exception):
    """The listen address could not be bound (in use, or not an address of this host)."""


class WaSessionsServer:
    """One running service over one data directory."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self.manager: SessionManager | None = None
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._lock: DataDirLock | None = None
        self._journal: EventJournal | None = None
        self._stopped = False

    @property
    def target(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        data_dir = self.config.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        # NOTE: the lock comes before the port: a second server must fail on the data
        # directory, never get as far as serving on it.
        self._lock = DataDirLock(data_dir)
        self._lock.acquire()
        try:
            await self._start_locked(data_dir)
        except BaseException:
            await self._abandon()
            raise

    async def _start_locked(self, data_dir: Path) -> None:
        config = self.config
        self._journal = EventJournal(
            SqliteStore(data_dir / "wasessions.db"),
            retention_events=config.journal.retention_events,
            subscriber_queue_size=config.journal.subscriber_queue_size,
        )
        engines: dict[str, Engine] = {
            name: build_engine(name, data_dir / "engines" / name, config.manager.qr)
            for name in config.engines
        }
        sim = engines.get("sim")
        self.manager = SessionManager(
            self._journal, CredentialStore(data_dir / "credentials"), engines, config.manager
        )
        await self.manager.start()

        # NOTE: so_reuseport 0: a second process must not share the port and split traffic.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        svc_grpc.add_SessionServiceServicer_to_server(SessionService(self.manager), server)
        services = [SESSION_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if isinstance(sim, SimEngine):
            log.warning("the sim engine is enabled: SimulatorService (fault injection) is served")
            sim_grpc.add_SimulatorServiceServicer_to_server(
                SimulatorService(self.manager, sim), server
            )
            services.append(SIMULATOR_SERVICE)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(services, server)
        try:
            self.port = server.add_insecure_port(config.listen)
        except RuntimeError as error:
            raise BindError(f"cannot listen on {config.listen}: {error}") from None
        if self.port == 0:
            raise BindError(f"cannot listen on {config.listen}")
        self._server = server
        await server.start()
        for name in ("", SESSION_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("wa-sessions listening on %s (data dir %s)", self.target, data_dir)

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self) -> None:
        """SIGTERM: NOT_SERVING, streams end UNAVAILABLE, connections closed WITHOUT logout,
        journal flushed, lock released."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        if self.manager is not None:
            self.manager.drain()
        if self._server is not None:
            await self._server.stop(self.config.shutdown_grace_s)
        if self.manager is not None:
            await self.manager.shutdown()
            self._journal = None
        await self._abandon()
        log.info("wa-sessions stopped")

    async def _abandon(self) -> None:
        if self._server is not None and not self._stopped:
            await self._server.stop(None)
        if self._journal is not None:
            await self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
