"""How the registry runs sessions: every field is a configuration key (see README)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wasessions_server.policy import QrSchedule, ReconnectPolicy, default_policy


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """The `[manager]` section, with the policy and QR schedule it applies."""

    policy: ReconnectPolicy = field(default_factory=default_policy)
    qr: QrSchedule = field(default_factory=QrSchedule)
    #: A connection that stays up this long resets the retry attempts.
    stable_after_s: float = 60.0
    #: Connects per second across all sessions (reconnect storms, restores).
    connect_rate: float = 500.0
    #: Sessions restored (connecting) at once after a restart.
    restore_concurrency: int = 100
    #: Each restored session waits up to this long first, so restores do not arrive in step.
    restore_jitter_s: float = 2.0
    connect_timeout_s: float = 60.0
    close_timeout_s: float = 10.0
    max_sessions: int = 10_000
    heartbeat_interval_s: float = 30.0
