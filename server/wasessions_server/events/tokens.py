"""Resume tokens: opaque to clients, naming a journal and a position in it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

#: The token kinds: WatchSessions ("1") and WatchMessages ("m1") tokens never pass for each other.
SESSIONS_KIND = "1"
MESSAGES_KIND = "m1"
_JOURNAL_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ResumePoint:
    journal_id: str
    seq: int


def format_token(journal_id: str, seq: int, kind: str = SESSIONS_KIND) -> str:
    raw = f"{kind}:{journal_id}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(token: str, kind: str = SESSIONS_KIND) -> ResumePoint | None:
    """The point a token of `kind` names, or None if it is not one this service made."""
    if not token or len(token) > 128:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != kind or not _JOURNAL_ID.fullmatch(parts[1]):
        return None
    if not parts[2].isdigit() or len(parts[2]) > 18:
        return None
    return ResumePoint(parts[1], int(parts[2]))
