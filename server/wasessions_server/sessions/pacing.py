"""Pacing: a global connect rate limit, so a reconnect storm never becomes a thundering herd,
and a pacer that spreads close handling over loop iterations."""

from __future__ import annotations

import asyncio
import collections

from wasessions_server.rates import SlidingWindow


class ConnectRateLimiter:
    """Hands out connects at most `rate` per second, in order: never more than `rate` in any
    one-second window, and no bursts.

    NOTE: one dispatcher releases the waiters, at the pace of a token bucket that holds at most
    1/100 s worth of connects (1 to 5): each release runs a connect in the same loop iteration,
    and small releases keep iterations short (grpc accepts new RPCs between them). Slots
    reserved ahead with one timer per session would all come due together after the loop was
    busy for a moment, and the connects would arrive as a burst above the limit; the bucket
    lets a late dispatcher catch up by a few connects at most, and a one-second window of
    release times caps the rate outright. A cancelled waiter simply leaves its turn unused.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._capacity = max(1.0, min(5.0, rate / 100))
        self._tokens = 1.0
        self._stamp = 0.0  # loop time the tokens were counted at
        # NOTE: 2 % below the limit: a released connect starts a loop iteration or two later,
        # so whoever counts the connects (WhatsApp) sees them a little bunched; 1 % was seen
        # at exactly the limit in a 10,000-session storm.
        self._per_second = max(1, int(rate * 0.98))
        self._released = SlidingWindow()  # releases in the last second
        self.granted = 0  # connects released so far (each starts right after its release)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._dispatcher: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiters and self._take(loop.time()):
            return
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch(), name="connect-rate-limiter")
        await future

    def _take(self, now: float) -> bool:
        if self._stamp == 0.0:
            self._stamp = now
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0 or self._released.count(now) >= self._per_second:
            return False
        self._tokens -= 1.0
        self._released.add(now)
        self.granted += 1
        return True

    @property
    def peak_per_second(self) -> int:
        """The most connects released within one second."""
        return self._released.peak

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        waiters = self._waiters
        while waiters:
            while waiters:
                if waiters[0].done():  # cancelled: the session stopped waiting
                    waiters.popleft()
                elif self._take(loop.time()):
                    waiters.popleft().set_result(None)
                else:
                    break
            if waiters:
                delay = (1.0 - self._tokens) / self.rate
                now = loop.time()
                if self._released.count(now) >= self._per_second:
                    oldest = self._released.oldest
                    assert oldest is not None
                    delay = max(delay, oldest + 1.0 - now)
                await asyncio.sleep(max(delay, 0.0005))


class Pacer:
    """Admits at most `per_turn` waiters per event-loop iteration, in order.

    NOTE: when thousands of connections close at once (a network blip), every session
    would otherwise run its close handling in the same loop iteration, and RPCs would wait
    behind all of it; paced, the loop answers RPCs between slices. One pacer, no timers.
    """

    def __init__(self, per_turn: int = 4) -> None:
        self.per_turn = per_turn
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._scheduled = False
        self._admitted = 0  # in the current iteration

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._scheduled:
            # NOTE: the first `per_turn` in an iteration pass at once; the count resets when
            # the loop gets to the release callback, i.e. in the next iteration.
            self._scheduled = True
            self._admitted = 0
            loop.call_soon(self._release)
        if not self._waiters and self._admitted < self.per_turn:
            self._admitted += 1
            return
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        await future

    def _release(self) -> None:
        self._admitted = 0
        while self._waiters and self._admitted < self.per_turn:
            future = self._waiters.popleft()
            if not future.done():  # a cancelled waiter (session stopped) takes no turn
                future.set_result(None)
                self._admitted += 1
        if self._waiters:
            asyncio.get_running_loop().call_soon(self._release)
        else:
            self._scheduled = False
