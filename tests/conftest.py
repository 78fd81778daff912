from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wasessions_server.events import EventJournal
from wasessions_server.store import MemoryStore

from tests.helpers import Running, start_server, stop_server

ServerFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Starts real in-process servers on port 0; all are stopped at the end of the test."""
    started: list[Running] = []

    async def factory(
        config: dict[str, Any] | None = None, data_dir: Path | None = None
    ) -> Running:
        running = await start_server(data_dir or tmp_path / "data", config)
        started.append(running)
        return running

    yield factory
    for running in reversed(started):
        await stop_server(running)


@pytest.fixture
async def srv(make_server: ServerFactory) -> Running:
    return await make_server()


@pytest.fixture
def session_store() -> MemoryStore:
    """The store behind the sessions unit tests: in memory (`fail_writes` fills the disk)."""
    return MemoryStore()


@pytest.fixture
async def session_journal(session_store: MemoryStore) -> EventJournal:
    """The journal the unit tests of sessions write to (closed by the registry's shutdown)."""
    return await EventJournal.open(session_store)
