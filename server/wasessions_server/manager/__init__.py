"""Manager layer: one supervisor per session, the state machine and the policy decisions."""

from wasessions_server.manager.manager import ManagerSettings, SessionManager
from wasessions_server.manager.qr import QrItem, QrOutcome
from wasessions_server.manager.supervisor import SessionSupervisor, SupervisorSettings

__all__ = [
    "ManagerSettings",
    "QrItem",
    "QrOutcome",
    "SessionManager",
    "SessionSupervisor",
    "SupervisorSettings",
]
