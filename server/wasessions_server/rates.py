"""A sliding one-second window of events, and the connect meter built on it."""

from __future__ import annotations

import collections
import time


class SlidingWindow:
    """The events of the last second: how many there are now, the oldest, and the most there
    ever were at once (the busiest second, sliding)."""

    def __init__(self) -> None:
        self.peak = 0
        self._times: collections.deque[float] = collections.deque()

    def count(self, now: float) -> int:
        """Events within the second before `now`."""
        times = self._times
        while times and times[0] <= now - 1.0:
            times.popleft()
        return len(times)

    def add(self, now: float) -> None:
        """Records an event at `now` (times never go backwards)."""
        self._times.append(now)
        self.peak = max(self.peak, self.count(now))

    @property
    def oldest(self) -> float | None:
        """When the oldest event still in the window happened."""
        return self._times[0] if self._times else None


class ConnectMeter:
    """Counts connects as they start: how many in all, and the most that started within any
    one second, so the rate limit can be checked from outside.

    NOTE: counted where connects begin, not where the limiter releases them, so a late or
    bursty release would show here.
    """

    def __init__(self) -> None:
        self.total = 0
        self._window = SlidingWindow()

    @property
    def peak_per_second(self) -> int:
        return self._window.peak

    def started(self, now: float | None = None) -> None:
        self._window.add(time.monotonic() if now is None else now)
        self.total += 1
