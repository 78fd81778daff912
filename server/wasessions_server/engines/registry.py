"""Builds the enabled engines by name. Engines with heavy imports are loaded only when used."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wasessions_server.engines.base import Engine
from wasessions_server.errors import EngineUnavailable
from wasessions_server.policy import QrSchedule

KNOWN_ENGINES = ("sim", "whatsmeow")


def check_engines(names: Iterable[str]) -> None:
    """Loads each engine's code, so a missing system library stops the server before it
    starts anything. Raises EngineUnavailable saying what to install."""
    for name in names:
        if name == "whatsmeow":
            _whatsmeow_engine()


def build_engine(name: str, state_dir: Path, qr: QrSchedule) -> Engine:
    """`state_dir` is the engine's own private folder under the data directory."""
    if name == "sim":
        from wasessions_server.engines.sim import SimEngine

        return SimEngine(state_dir, qr)
    if name == "whatsmeow":
        engine: Engine = _whatsmeow_engine()(state_dir, qr)
        return engine
    raise ValueError(f"unknown engine {name!r}")


def _whatsmeow_engine() -> Any:
    # NOTE: imported lazily: neonize loads a Go library and libmagic (through python-magic,
    # which raises ImportError without Debian's libmagic1), which a server without this
    # engine must not need.
    try:
        from wasessions_server.engines.whatsmeow import WhatsmeowEngine  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, OSError) as error:
        if "libmagic" in str(error):
            sudo = "" if os.geteuid() == 0 else "sudo "
            raise EngineUnavailable(
                "the whatsmeow engine cannot load: libmagic is missing; install it "
                f"with `{sudo}apt-get install libmagic1`, or use --engine sim, which needs "
                "nothing"
            ) from None
        raise EngineUnavailable(
            f"the whatsmeow engine cannot load: {error}; --engine sim needs nothing"
        ) from None
    return WhatsmeowEngine
