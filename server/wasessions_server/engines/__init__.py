"""Engines layer: one real (or simulated) WhatsApp connection as a stream of plain events."""

from wasessions_server.engines.base import (
    Activity,
    Closed,
    Connection,
    ConnectTarget,
    Engine,
    EngineEvent,
    Opened,
    PairSuccess,
    Qr,
)

__all__ = [
    "Activity",
    "Closed",
    "ConnectTarget",
    "Connection",
    "Engine",
    "EngineEvent",
    "Opened",
    "PairSuccess",
    "Qr",
]
