"""Store layer: the session registry and event journal (SQLite), and the credential files."""

from wasessions_server.store.credentials import CredentialStore, CredentialVault
from wasessions_server.store.lock import DataDirLock, DataDirLocked
from wasessions_server.store.sqlite import SqliteStore

__all__ = ["CredentialStore", "CredentialVault", "DataDirLock", "DataDirLocked", "SqliteStore"]
