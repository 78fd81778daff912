"""Events layer: the durable journal, its subscribers and resume tokens."""

from wasessions_server.events.journal import EventJournal, Subscription
from wasessions_server.events.tokens import ResumePoint, format_token, parse_token
from wasessions_server.events.watch import (
    Change,
    Heartbeat,
    Resync,
    Snapshot,
    SnapshotComplete,
    WatchItem,
    watch,
)

__all__ = [
    "Change",
    "EventJournal",
    "Heartbeat",
    "ResumePoint",
    "Resync",
    "Snapshot",
    "SnapshotComplete",
    "Subscription",
    "WatchItem",
    "format_token",
    "parse_token",
    "watch",
]
