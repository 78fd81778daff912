"""How the outbox sends: every field is a key of the `[messages]` section (see README)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageSettings:
    #: Sends per minute per session, spaced with jitter (0 turns pacing off).
    max_per_minute: int = 20
    #: How long a message may wait in the queue when SendMessage names no ttl.
    default_ttl_s: float = 86_400.0
    #: Send attempts before a message is FAILED (SEND_ATTEMPTS_EXHAUSTED).
    max_attempts: int = 5
    #: Message events (and final messages) are kept this long.
    retention_days: float = 7.0

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86_400.0
