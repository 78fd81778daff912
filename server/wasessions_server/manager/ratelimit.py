"""A global connect rate limit, so a reconnect storm never becomes a thundering herd."""

from __future__ import annotations

import asyncio


class ConnectRateLimiter:
    """Hands out connect slots at most `rate` per second, in order, with no bursts.

    NOTE: a slot is a point in time, reserved at once; waiting for it needs no lock and no
    timer per session, and a cancelled waiter simply leaves its slot unused.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate
        self._next_slot = 0.0

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
