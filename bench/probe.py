"""The GetSession prober in a process of its own:
`python -m bench.probe TARGET INTERVAL NAMES_FILE OUT_FILE`. It reads the session names (one a
line), says `probing TARGET` on stderr once the first call was answered, probes until SIGTERM,
then writes `{"samples": [[start, seconds], ...], "errors": n}` to OUT_FILE. Start times are
CLOCK_MONOTONIC, which every process on the machine shares."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

import grpc
from wasessions.v1 import session_service_pb2 as svc

from bench.load import Prober, stubs


async def _probe(target: str, interval: float, names: list[str]) -> dict[str, object]:
    channel = grpc.aio.insecure_channel(target)
    sessions, _ = stubs(channel)
    requests = [svc.GetSessionRequest(name=n) for n in names]
    await sessions.GetSession(requests[0], timeout=30)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    prober = Prober(lambda: sessions.GetSession(random.choice(requests)), interval)
    prober.start()
    print(f"probing {target}", file=sys.stderr, flush=True)
    await stop.wait()
    await prober.stop()
    await channel.close()
    return {"samples": prober.samples, "errors": prober.errors}


if __name__ == "__main__":
    target, interval, names_file, out_file = sys.argv[1:5]
    names = Path(names_file).read_text().split()
    result = asyncio.run(_probe(target, float(interval), names))
    Path(out_file).write_text(json.dumps(result))
