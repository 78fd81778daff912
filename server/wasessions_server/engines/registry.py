"""Builds the enabled engines by name. Engines with heavy imports are loaded only when used."""

from __future__ import annotations

from pathlib import Path

from wasessions_server.engines.base import Engine
from wasessions_server.policy import QrSchedule

KNOWN_ENGINES = ("sim", "whatsmeow")


def build_engine(name: str, state_dir: Path, qr: QrSchedule) -> Engine:
    """`state_dir` is the engine's own private folder under the data directory."""
    if name == "sim":
        from wasessions_server.engines.sim import SimEngine

        return SimEngine(state_dir, qr)
    if name == "whatsmeow":
        # NOTE: imported lazily: neonize loads a Go library and libmagic, which a server
        # without this engine must not need.
        from wasessions_server.engines.whatsmeow import WhatsmeowEngine  # type: ignore[import-not-found,unused-ignore]

        engine: Engine = WhatsmeowEngine(state_dir, qr)
        return engine
    raise ValueError(f"unknown engine {name!r}")
