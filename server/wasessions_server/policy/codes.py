"""WhatsApp's disconnect codes, as Baileys reports them, and their UPPER_SNAKE reasons."""

from __future__ import annotations

RESTART_REQUIRED = 515
SERVICE_UNAVAILABLE = 503
BAD_SESSION = 500
CONNECTION_REPLACED = 440
CONNECTION_CLOSED = 428
MULTIDEVICE_MISMATCH = 411
CONNECTION_LOST = 408
BANNED = 406
CLIENT_OUTDATED = 405
FORBIDDEN = 403
TEMPORARILY_BANNED = 402
LOGGED_OUT = 401

REASONS: dict[int, str] = {
    RESTART_REQUIRED: "RESTART_REQUIRED",
    SERVICE_UNAVAILABLE: "SERVICE_UNAVAILABLE",
    BAD_SESSION: "BAD_SESSION",
    CONNECTION_REPLACED: "CONNECTION_REPLACED",
    CONNECTION_CLOSED: "CONNECTION_CLOSED",
    MULTIDEVICE_MISMATCH: "MULTIDEVICE_MISMATCH",
    CONNECTION_LOST: "CONNECTION_LOST",
    BANNED: "BANNED",
    CLIENT_OUTDATED: "CLIENT_OUTDATED",
    FORBIDDEN: "FORBIDDEN",
    TEMPORARILY_BANNED: "TEMPORARILY_BANNED",
    LOGGED_OUT: "LOGGED_OUT",
}

# NOTE: WhatsApp ends an unscanned QR window with a plain 408; only the message tells it apart
# from a lost connection, and it must not be retried (that would be an endless QR loop).
QR_WINDOW_OVER_MESSAGE = "QR refs attempts ended"


def is_qr_window_over(code: int, message: str) -> bool:
    return code == CONNECTION_LOST and QR_WINDOW_OVER_MESSAGE in message


def reason_for(code: int, message: str = "") -> str:
    if is_qr_window_over(code, message):
        return "QR_WINDOW_OVER"
    return REASONS.get(code, "UNKNOWN")
