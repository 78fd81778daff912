"""Counting connects in a sliding one-second window, as the simulated WhatsApp sees them."""

from __future__ import annotations

import collections
import time


class ConnectMeter:
    """Counts connects as they start: how many in all, and the most that started within any
    one second (a sliding window), so the rate limit can be checked from outside.

    NOTE: counted where connects begin, not where the limiter releases them, so a late or
    bursty release would show here.
    """

    def __init__(self) -> None:
        self.total = 0
        self.peak_per_second = 0
        self._recent: collections.deque[float] = collections.deque()

    def started(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - 1.0:
            recent.popleft()
        self.total += 1
        self.peak_per_second = max(self.peak_per_second, len(recent))
