"""Resume tokens: opaque to clients, naming a journal and a position in it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_VERSION = "1"
_JOURNAL_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ResumePoint:
    journal_id: str
    seq: int


def format_token(journal_id: str, seq: int) -> str:
    raw = f"{_VERSION}:{journal_id}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(token: str) -> ResumePoint | None:
    """The point a token names, or None if it is not a token this service made."""
    if not token or len(token) > 128:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != _VERSION or not _JOURNAL_ID.fullmatch(parts[1]):
        return None
    if not parts[2].isdigit() or len(parts[2]) > 18:
        return None
    return ResumePoint(parts[1], int(parts[2]))
