"""Credentials as files: one private folder per session, written so a crash never leaves a torn
file (the embedded `CredentialStore`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

_TMP_SUFFIX = ".tmp"
_TRASH_PREFIX = ".trash-"


class FileCredentialVault:
    """One session's credential folder (0700, files 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        return self.path

    def write(self, name: str, data: bytes) -> None:
        """Atomically replaces `name`: temp file, fsync, rename, fsync of the folder."""
        folder = self.ensure()
        target = folder / name
        tmp = folder / f".{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(folder)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        # NOTE: asked on every commit of the session: os.path, not pathlib (half the cost).
        return os.path.isfile(os.path.join(self.path, name))

    def wipe(self) -> None:
        """Removes the folder. NOTE: it is renamed first, so a crash mid-way cannot leave a
        half-deleted set of credentials that still looks usable."""
        if not self.path.exists():
            return
        trash = self.path.with_name(f"{_TRASH_PREFIX}{self.path.name}-{uuid.uuid4().hex}")
        os.replace(self.path, trash)
        _fsync_dir(self.path.parent)
        shutil.rmtree(trash, ignore_errors=True)


class FileCredentialStore:
    """All credential folders, one per session, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)

    def vault(self, session_id: str) -> FileCredentialVault:
        return FileCredentialVault(self.root / session_id)

    def sweep(self) -> None:
        """Finishes what a crash interrupted: half-done wipes and abandoned temp files."""
        for entry in self.root.iterdir():
            if entry.name.startswith(_TRASH_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_dir():
                for tmp in entry.glob(f".*{_TMP_SUFFIX}"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
