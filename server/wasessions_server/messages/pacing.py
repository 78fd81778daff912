"""Per-session send pacing: consecutive sends spaced 60 / max_per_minute on average."""

from __future__ import annotations

import asyncio
import random
import time


class SendPacer:
    """Spaces one session's sends: each waits until the previous one's gap (the mean interval
    times a jitter factor of 0.5 to 1.5) has passed.

    NOTE: the gap runs from the previous send, so an idle session sends its first message at
    once and a backlog goes out one gap at a time: never a burst.
    """

    def __init__(self, max_per_minute: int) -> None:
        self._interval = 60.0 / max_per_minute if max_per_minute > 0 else 0.0
        self._next: dict[str, float] = {}

    async def turn(self, session_id: str) -> None:
        if self._interval == 0.0:
            return
        delay = self._next.get(session_id, 0.0) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        gap = self._interval * random.uniform(0.5, 1.5)
        self._next[session_id] = time.monotonic() + gap

    def forget(self, session_id: str) -> None:
        self._next.pop(session_id, None)
