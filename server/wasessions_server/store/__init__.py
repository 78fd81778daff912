"""Store layer: the store protocols and their embedded implementations (SQLite for the registry
and journal, private folders for credentials), and the data-directory lock."""

from pathlib import Path

from wasessions_server.store.credentials import FileCredentialStore, FileCredentialVault
from wasessions_server.store.lock import DataDirLock, DataDirLocked
from wasessions_server.store.memory import MemoryStore
from wasessions_server.store.protocols import (
    CredentialStore,
    CredentialVault,
    MessageStore,
    SessionStore,
)
from wasessions_server.store.sqlite import SqliteStore


def open_embedded(data_dir: Path) -> tuple[SqliteStore, CredentialStore]:
    """The stores of one data directory: its SQLite database (sessions and messages) and its
    credential folders."""
    return SqliteStore(data_dir / "wasessions.db"), FileCredentialStore(data_dir / "credentials")


__all__ = [
    "CredentialStore",
    "CredentialVault",
    "DataDirLock",
    "DataDirLocked",
    "FileCredentialStore",
    "FileCredentialVault",
    "MemoryStore",
    "MessageStore",
    "SessionStore",
    "SqliteStore",
    "open_embedded",
]
