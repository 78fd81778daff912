"""Assembles the service: store, journal, engines, manager, servicers, health, reflection."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from wasessions.v1 import message_service_pb2, session_service_pb2, simulator_service_pb2
from wasessions.v1 import message_service_pb2_grpc as msg_grpc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from wasessions_server.api.auth import RpcGuard
from wasessions_server.api.message_service import MessageService
from wasessions_server.api.reflection import ContractReflection
from wasessions_server.api.session_health import SessionHealthServicer
from wasessions_server.api.session_service import SessionService
from wasessions_server.api.simulator_service import SimulatorService
from wasessions_server.config import ServerConfig
from wasessions_server.engines import Engine
from wasessions_server.engines.registry import build_engine
from wasessions_server.engines.sim import SimEngine
from wasessions_server.events import EventJournal, MessageJournal
from wasessions_server.logfmt import StateChangeLog
from wasessions_server.messages import Messages
from wasessions_server.metrics import MetricsHttpServer, ServerMetrics
from wasessions_server.security import Role, SecuritySettings
from wasessions_server.sessions import SessionRegistry
from wasessions_server.store import DataDirLock, SessionStore, open_embedded

log = logging.getLogger(__name__)

SESSION_SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
MESSAGE_SERVICE = message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name
SIMULATOR_SERVICE = simulator_service_pb2.DESCRIPTOR.services_by_name["SimulatorService"].full_name


_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BindError(Exception):
    """The listen address could not be bound (in use, or not an address of this host)."""


class WaSessionsServer:
    """One running service over one data directory."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self.sessions: SessionRegistry | None = None
        self.health = SessionHealthServicer()
        self.metrics = ServerMetrics()
        self.metrics_port = 0
        self._metrics_http: MetricsHttpServer | None = None
        self._server: grpc.aio.Server | None = None
        self._lock: DataDirLock | None = None
        self._journal: EventJournal | None = None
        #: The registry and journal store (for tests and benchmarks that inspect it).
        self.store: SessionStore | None = None
        self._stopped = False
        self._health_updates: set[asyncio.Task[None]] = set()

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
        store, credential_store = open_embedded(data_dir)
        self.store = store
        self._journal = await EventJournal.open(
            self.store,
            retention_events=config.journal.retention_events,
            subscriber_queue_size=config.journal.subscriber_queue_size,
        )
        self._journal.add_writable_listener(self._on_store_writable)
        engines: dict[str, Engine] = {
            name: build_engine(name, data_dir / "engines" / name, config.manager.qr)
            for name in config.engines
        }
        sim = engines.get("sim")
        messages = Messages(await MessageJournal.open(store), config.messages)
        self.sessions = SessionRegistry(
            self._journal,
            credential_store,
            engines,
            config.manager,
            default_engine=config.engine,
            messages=messages,
        )
        self.health.attach(self.sessions)
        self.metrics.attach(self.sessions)
        self._journal.add_listener(StateChangeLog())
        await self.sessions.start()

        security = config.security
        # NOTE: so_reuseport 0: a second process must not share the port and split traffic.
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", security.max_message_bytes),
            ],
        )
        # NOTE: every service is added through the guard's registrar, so none is unguarded.
        counted = self.metrics if security.metrics_listen is not None else None
        guarded = RpcGuard(security, counted).registrar(server)
        svc_grpc.add_SessionServiceServicer_to_server(SessionService(self.sessions), guarded)
        msg_grpc.add_MessageServiceServicer_to_server(
            MessageService(messages, config.manager.heartbeat_interval_s), guarded
        )
        services = [SESSION_SERVICE, MESSAGE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if isinstance(sim, SimEngine):
            log.warning("the sim engine is enabled: SimulatorService (fault injection) is served")
            sim_grpc.add_SimulatorServiceServicer_to_server(
                SimulatorService(self.sessions, sim), guarded
            )
            services.append(SIMULATOR_SERVICE)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            ContractReflection(services), guarded
        )
        try:
            if security.tls is not None:
                credentials = grpc.ssl_server_credentials(
                    [(security.tls.key, security.tls.cert)],
                    root_certificates=security.tls.client_ca,
                    require_client_auth=security.tls.client_ca is not None,
                )
                self.port = server.add_secure_port(config.listen, credentials)
            else:
                self.port = server.add_insecure_port(config.listen)
        except RuntimeError as error:
            raise BindError(f"cannot listen on {config.listen}: {error}") from None
        if self.port == 0:
            raise BindError(f"cannot listen on {config.listen}")
        self._server = server
        await server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        writable = self._journal.writable
        await self.health.set(
            SESSION_SERVICE, health_pb2.HealthCheckResponse.SERVING if writable else _NOT_SERVING
        )
        if security.metrics_listen is not None:
            self._metrics_http = MetricsHttpServer(self.metrics, security.metrics_listen)
            try:
                await self._metrics_http.start()
            except OSError as error:
                raise BindError(
                    f"cannot serve metrics on {security.metrics_listen}: {error.strerror}"
                ) from None
            self.metrics_port = self._metrics_http.port
            log.info("metrics at http://%s:%d/metrics", self._metrics_http.host, self.metrics_port)
        _log_security(security)
        log.info("wa-sessions listening on %s (data dir %s)", self.target, data_dir)

    def _on_store_writable(self, writable: bool) -> None:
        """SessionService is NOT_SERVING while the store cannot be written: what it would
        serve may be a state it knows is false (a change it could not make durable)."""
        if self._stopped or self._server is None:
            return
        if not writable:
            log.error(
                "the store cannot be written: %s is NOT_SERVING until a commit succeeds",
                SESSION_SERVICE,
            )
        status = health_pb2.HealthCheckResponse.SERVING if writable else _NOT_SERVING
        task = asyncio.get_running_loop().create_task(self.health.set(SESSION_SERVICE, status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

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
        if self.sessions is not None:
            self.sessions.drain()
        if self._server is not None:
            await self._server.stop(self.config.shutdown_grace_s)
        if self.sessions is not None:
            await self.sessions.shutdown()
            self._journal = None
        await self._abandon()
        log.info("wa-sessions stopped")

    async def _abandon(self) -> None:
        if self._metrics_http is not None:
            await self._metrics_http.stop()
            self._metrics_http = None
        if self._server is not None and not self._stopped:
            await self._server.stop(None)
        if self._journal is not None:
            await self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _log_security(security: SecuritySettings) -> None:
    tls = "off"
    if security.tls is not None:
        tls = "mutual (client certificates required)" if security.tls.client_ca else "on"
    if security.api_keys:
        read = sum(1 for k in security.api_keys.keys if k.role is Role.READ)
        log.info(
            "API keys required: %d keys (%d read-only); TLS %s",
            len(security.api_keys.keys),
            read,
            tls,
        )
    elif security.authenticates:
        log.info("no API keys; clients are authenticated by certificate (TLS %s)", tls)
    else:
        log.warning(
            "no API keys configured: every client that can reach the port has full access; "
            "bound to %s only (TLS %s)",
            "loopback" if not security.allow_unauthenticated else "the configured address",
            tls,
        )
