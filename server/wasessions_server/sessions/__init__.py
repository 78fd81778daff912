"""Sessions layer: one object per session (its record, operations and run loop) and the
registry of the sessions this server runs."""

from wasessions_server.sessions.qr import QrItem, QrOutcome
from wasessions_server.sessions.registry import SessionRegistry
from wasessions_server.sessions.settings import ManagerSettings

__all__ = ["ManagerSettings", "QrItem", "QrOutcome", "SessionRegistry"]
