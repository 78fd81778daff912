"""Policy layer: what each disconnect code leads to, and how long to wait before retrying."""

from wasessions_server.policy.codes import QR_WINDOW_OVER_MESSAGE, is_qr_window_over, reason_for
from wasessions_server.policy.table import (
    Action,
    Backoff,
    CodeRule,
    QrSchedule,
    ReconnectPolicy,
    default_policy,
)

__all__ = [
    "QR_WINDOW_OVER_MESSAGE",
    "Action",
    "Backoff",
    "CodeRule",
    "QrSchedule",
    "ReconnectPolicy",
    "default_policy",
    "is_qr_window_over",
    "reason_for",
]
