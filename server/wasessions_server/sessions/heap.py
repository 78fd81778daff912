"""Keeps the sessions' long-lived objects out of the cyclic garbage collector's full passes."""

from __future__ import annotations

import gc
import time
from typing import Any

_installed: list[HeapFreezer] = []


class HeapFreezer:
    """After every generation 1 and 2 collection, moves what survived it into the collector's
    permanent generation (`gc.freeze()`), so later passes walk only what is newer.

    NOTE: with 10,000 sessions the heap holds hundreds of thousands of tracked objects, and a
    pass walks them with the event loop stopped. A reconnect storm allocates enough to trigger
    passes right when every session closes at once; a `gc.callbacks` probe measured 100-300 ms
    for each full pass and 10-15 ms for each generation 1 pass (dozens a second), most of
    GetSession's p99 in the storm. `gc.freeze()` is O(1) (a list splice). Objects that die by
    reference counting are freed frozen or not (nearly all garbage here: a full pass in a storm
    finds a few dozen cyclic objects); what a frozen object can no longer be is collected as
    part of a garbage cycle, so everything is handed back (`gc.unfreeze()`, one full pass over
    all of it) every `refresh_s` and after `deletions` sessions were deleted.
    """

    def __init__(self, *, refresh_s: float = 3600.0, deletions: int = 1000) -> None:
        self.refresh_s = refresh_s
        self.deletions = deletions
        self.freezes = 0
        self._deleted = 0
        self._refreshed = time.monotonic()

    def install(self) -> None:
        if self not in _installed:
            _installed.append(self)
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self in _installed:
            _installed.remove(self)
            gc.callbacks.remove(self._on_gc)
            if not _installed:
                gc.unfreeze()

    def session_deleted(self) -> None:
        self._deleted += 1
        if self._deleted >= self.deletions:
            self._deleted = 0
            gc.unfreeze()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") == 0:
            return
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_s:
            self._refreshed = now
            gc.unfreeze()
            return
        gc.freeze()
        self.freezes += 1
