"""Messages layer: the outbox, the inbox and receipts of every session (see `center`)."""

from wasessions_server.messages.center import Messages, Outgoing, message_not_found
from wasessions_server.messages.settings import MessageSettings

__all__ = ["MessageSettings", "Messages", "Outgoing", "message_not_found"]
