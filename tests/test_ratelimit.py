"""The connect rate limiter and the close pacer: the guarantees a reconnect storm relies on."""

from __future__ import annotations

import asyncio
import time

from wasessions_server.rates import ConnectMeter
from wasessions_server.sessions.pacing import ConnectRateLimiter, Pacer


def _most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_limiter_holds_the_rate_when_the_loop_is_late() -> None:
    """A busy loop makes the dispatcher late; it may catch up a little, never burst above the
    limit in any one-second window (measured when each waiter got its turn)."""
    limiter = ConnectRateLimiter(200.0)
    loop = asyncio.get_running_loop()
    times: list[float] = []
    busy = True

    async def hog() -> None:
        while busy:
            time.sleep(0.01)  # noqa: ASYNC251 - on purpose: a callback that blocks the loop
            await asyncio.sleep(0)

    async def connect() -> None:
        await limiter.acquire()
        times.append(loop.time())

    hogging = asyncio.create_task(hog())
    began = loop.time()
    await asyncio.gather(*(connect() for _ in range(300)))
    busy = False
    await hogging
    assert _most_in_window(times, 1.0) <= 200
    assert _most_in_window(times, 0.01) <= 5  # a late dispatcher catches up by 1/100 s at most
    assert loop.time() - began >= 299 / 200 * 0.95


def test_connect_meter_keeps_the_busiest_second() -> None:
    meter = ConnectMeter()
    starts = [0.0, 0.2, 0.5, 0.9, 1.0, 1.1, 1.15, 1.19, 3.0]  # (0.2, 1.19]: 7 starts
    for t in starts:
        meter.started(t)
    assert meter.total == len(starts)
    assert meter.peak_per_second == _most_in_window(starts, 1.0) == 7


async def test_meter_sees_the_limit_held_under_a_herd() -> None:
    """1,000 sessions that all want to connect at once start no more than the limit in any
    second, as counted where the connects begin."""
    limiter = ConnectRateLimiter(500.0)
    meter = ConnectMeter()

    async def connect() -> None:
        await limiter.acquire()
        meter.started()

    await asyncio.gather(*(connect() for _ in range(1000)))
    assert meter.total == 1000
    assert 400 <= meter.peak_per_second <= 500


async def test_limiter_skips_cancelled_waiters() -> None:
    limiter = ConnectRateLimiter(100.0)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    for task in waiters[:4]:
        task.cancel()
    began = time.monotonic()
    await asyncio.wait_for(waiters[4], 1)
    assert time.monotonic() - began < 0.05  # the cancelled turns were not waited for


async def test_pacer_admits_a_slice_per_loop_iteration_in_order() -> None:
    pacer = Pacer(per_turn=10)
    order: list[int] = []
    iteration = 0
    seen_in: dict[int, int] = {}

    async def ticker() -> None:
        nonlocal iteration
        while True:
            await asyncio.sleep(0)
            iteration += 1

    async def one(i: int) -> None:
        await pacer.turn()
        order.append(i)
        seen_in[i] = iteration

    ticking = asyncio.create_task(ticker())
    await asyncio.gather(*(one(i) for i in range(45)))
    ticking.cancel()
    assert order == list(range(45))
    per_iteration: dict[int, int] = {}
    for at in seen_in.values():
        per_iteration[at] = per_iteration.get(at, 0) + 1
    assert max(per_iteration.values()) <= 10
    assert len(per_iteration) >= 5
