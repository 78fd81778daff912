"""Events layer: the durable journal, its subscribers and resume tokens."""

from wasessions_server.events.journal import EventJournal, Subscription
from wasessions_server.events.message_journal import MessageJournal
from wasessions_server.events.message_watch import (
    Event,
    MessageHeartbeat,
    MessageResync,
    MessageWatchItem,
    Started,
    format_message_token,
    parse_message_token,
    watch_messages,
)
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
    "Event",
    "EventJournal",
    "Heartbeat",
    "MessageHeartbeat",
    "MessageJournal",
    "MessageResync",
    "MessageWatchItem",
    "ResumePoint",
    "Resync",
    "Snapshot",
    "SnapshotComplete",
    "Started",
    "Subscription",
    "WatchItem",
    "format_message_token",
    "format_token",
    "parse_message_token",
    "parse_token",
    "watch",
    "watch_messages",
]
