"""Bench only: a wa-sessions server that also drives its own journal.

`python -m bench.journal_server --data-dir D --config C --sessions N --tasks T --seconds S`
starts a `WaSessionsServer` (the real one: gRPC, manager, journal over SQLite with
synchronous=FULL) and creates N sessions (not started). It prints the usual "listening on"
line; on SIGUSR1 it runs T tasks, each appending label changes to the sessions through
`EventJournal.append` (answered only after the commit, as every change is) for S seconds,
prints what was committed as a "journal result: {json}" line, and serves until SIGTERM.
The bench meanwhile probes `GetSession` over gRPC (bench/scenarios.py, `journal`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from wasessions_server.api.server import WaSessionsServer
from wasessions_server.config import load_config
from wasessions_server.logfmt import configure as configure_logging
from wasessions_server.model import Cause
from wasessions_server.store import SqliteStore


async def _load(
    server: WaSessionsServer, ids: list[str], tasks: int, seconds: float
) -> dict[str, Any]:
    manager = server.sessions
    assert manager is not None
    journal = manager.journal
    head_before = journal.head
    committed = 0
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal committed
        n = offset
        while time.monotonic() < deadline:
            session_id = ids[n % len(ids)]
            n += tasks
            record = manager.get(session_id)
            changed = dataclasses.replace(
                record, labels={**record.labels, "bench": str(n)}, update_time=time.time()
            )
            await journal.append(session_id, changed, Cause.LABELS_UPDATED)
            committed += 1

    began = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.monotonic() - began
    await journal.flush()
    # NOTE: proof that every counted change is in SQLite: the journal's durable head moved by
    # exactly as many entries, and the store's last sequence number agrees.
    _, stored_head = await journal.bounds()
    store = server.store
    assert isinstance(store, SqliteStore)
    synchronous = store.synchronous
    return {
        "committed": committed,
        "seconds": elapsed,
        "events_per_s": committed / elapsed,
        "tasks": tasks,
        "journal_head_moved": journal.head - head_before,
        "stored_head_moved": stored_head - head_before,
        "sqlite_synchronous": synchronous,  # 2 = FULL
    }


async def _serve(args: argparse.Namespace) -> None:
    config = load_config(args.config, {"listen": "127.0.0.1:0", "data_dir": str(args.data_dir)})
    server = WaSessionsServer(config)
    stop, go = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    await server.start()
    ids = [f"j{i:05d}" for i in range(args.sessions)]
    gate = asyncio.Semaphore(256)

    manager = server.sessions
    assert manager is not None

    async def create(session_id: str) -> None:
        async with gate:
            await manager.create(
                session_id, labels={}, engine="sim", start=False, request_id=session_id
            )

    await asyncio.gather(*(create(i) for i in ids))
    print(f"journal harness: {len(ids)} sessions; ready", file=sys.stderr, flush=True)
    await asyncio.wait(
        {asyncio.create_task(go.wait()), asyncio.create_task(stop.wait())},
        return_when=asyncio.FIRST_COMPLETED,
    )
    if not stop.is_set():
        result = await _load(server, ids, args.tasks, args.seconds)
        print(f"journal result: {json.dumps(result)}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal_server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    configure_logging("INFO", "text")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
