"""One session's QR codes for its watchers: the current code, then each new one, then the end."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator

from wasessions_server.engines import Qr
from wasessions_server.errors import shutting_down


class QrOutcome(enum.Enum):
    PAIRED = "PAIRED"
    EXPIRED = "EXPIRED"
    STOPPED = "STOPPED"


QrItem = Qr | QrOutcome
_DRAIN = object()


class QrCount:
    """QR codes shown by every session since the server started (for metrics)."""

    def __init__(self) -> None:
        self.issued = 0


class QrBoard:
    """The QR phase of one session as seen by its watchers."""

    def __init__(self, count: QrCount) -> None:
        self.current: Qr | None = None
        self._count = count
        self._watchers: set[asyncio.Queue[QrItem | object]] = set()

    def show(self, qr: Qr) -> None:
        self.current = qr
        self._count.issued += 1
        for queue in self._watchers:
            queue.put_nowait(qr)

    def finish(self, outcome: QrOutcome) -> None:
        """Ends the phase: every watcher gets `outcome` as its last item."""
        self.current = None
        watchers, self._watchers = self._watchers, set()
        for queue in watchers:
            queue.put_nowait(outcome)

    def drain(self) -> None:
        """Ends every watcher with UNAVAILABLE: the server is shutting down."""
        for queue in self._watchers:
            queue.put_nowait(_DRAIN)

    async def follow(self) -> AsyncIterator[QrItem]:
        """The current code (if any), each new code, and last the outcome."""
        queue: asyncio.Queue[QrItem | object] = asyncio.Queue()
        if self.current is not None:
            queue.put_nowait(self.current)
        self._watchers.add(queue)
        try:
            while True:
                item = await queue.get()
                if item is _DRAIN:
                    raise shutting_down()
                assert isinstance(item, Qr | QrOutcome)
                yield item
                if isinstance(item, QrOutcome):
                    return
        finally:
            self._watchers.discard(queue)
