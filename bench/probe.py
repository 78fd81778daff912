"""The GetSession prober in a process of its own: `python -m bench.probe TARGET INTERVAL`, with
the session names on stdin (one per line). It says `probing` on stderr once the first call was
answered, probes until SIGTERM, then writes `{"samples": [[start, seconds], ...], "errors": n}`
to stdout. Start times are CLOCK_MONOTONIC, which every process on the machine shares."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys

import grpc
from wasessions.v1 import session_service_pb2 as svc

from bench.load import Prober, stubs


async def _probe(target: str, interval: float, names: list[str]) -> None:
    channel = grpc.aio.insecure_channel(target)
    sessions, _ = stubs(channel)
    requests = [svc.GetSessionRequest(name=n) for n in names]
    await sessions.GetSession(requests[0], timeout=30)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    prober = Prober(lambda: sessions.GetSession(random.choice(requests)), interval)
    prober.start()
    print("probing", file=sys.stderr, flush=True)
    await stop.wait()
    await prober.stop()
    await channel.close()
    json.dump({"samples": prober.samples, "errors": prober.errors}, sys.stdout)


if __name__ == "__main__":
    names = [line.strip() for line in sys.stdin if line.strip()]
    asyncio.run(_probe(sys.argv[1], float(sys.argv[2]), names))
