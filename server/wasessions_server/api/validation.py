"""Argument checks. They run before any state is looked at: argument errors win."""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping

from wasessions_server.errors import invalid_argument
from wasessions_server.model import NAME_PREFIX, SESSION_ID_PATTERN, State

PHONE_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
PAIRING_CODE = re.compile(r"[0-9A-Za-z]{4}-?[0-9A-Za-z]{4}")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_REQUEST_ID = 128
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: A ListSessions page ends before it would pass this size (it always holds one session).
MAX_PAGE_BYTES = 1 << 20

_ID_RULE = "1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"


def _shown(value: str) -> str:
    return repr(value[:80] + ("..." if len(value) > 80 else ""))


def session_id(value: str, field: str = "session_id") -> str:
    if not value:
        raise invalid_argument(field, "INVALID_SESSION_ID", f"{field} is required")
    if not SESSION_ID_PATTERN.fullmatch(value):
        raise invalid_argument(
            field, "INVALID_SESSION_ID", f"{field} must be {_ID_RULE}; got {_shown(value)}"
        )
    return value


def session_name(value: str, field: str = "name") -> str:
    """The session id in `sessions/{session_id}`."""
    if not value:
        raise invalid_argument(field, "INVALID_SESSION_NAME", f"{field} is required")
    if not value.startswith(NAME_PREFIX) or not SESSION_ID_PATTERN.fullmatch(
        value[len(NAME_PREFIX) :]
    ):
        raise invalid_argument(
            field,
            "INVALID_SESSION_NAME",
            f"{field} must be 'sessions/' followed by {_ID_RULE}; got {_shown(value)}",
        )
    return value[len(NAME_PREFIX) :]


def session_names(values: Iterable[str], field: str = "names") -> frozenset[str] | None:
    ids = frozenset(session_name(v, f"{field}[{i}]") for i, v in enumerate(values))
    return ids or None


def phone_number(value: str, field: str = "phone_number") -> str:
    if not PHONE_NUMBER.fullmatch(value):
        raise invalid_argument(
            field,
            "INVALID_PHONE_NUMBER",
            f"{field} must be in E.164 form: '+', then 7 to 15 digits with no leading 0 "
            f"(e.g. +15551234567); got {_shown(value)}",
        )
    return value


def labels(values: Mapping[str, str], field: str = "labels") -> dict[str, str]:
    if len(values) > MAX_LABELS:
        raise invalid_argument(field, "INVALID_LABELS", f"at most {MAX_LABELS} labels")
    for key, value in values.items():
        if not LABEL_KEY.fullmatch(key):
            raise invalid_argument(
                f"{field}[{key!r}]",
                "INVALID_LABELS",
                f"label keys are 1 to 63 characters of a-z, 0-9, '_', '.' and '-', starting "
                f"with a letter; got {_shown(key)}",
            )
        if len(value) > MAX_LABEL_VALUE or not value.isprintable():
            raise invalid_argument(
                f"{field}[{key!r}]",
                "INVALID_LABELS",
                f"label values are at most {MAX_LABEL_VALUE} printable characters",
            )
    return dict(values)


def request_id(value: str, field: str = "request_id") -> str:
    if len(value) > MAX_REQUEST_ID or not (value.isascii() and value.isprintable()):
        raise invalid_argument(
            field,
            "INVALID_REQUEST_ID",
            f"{field} is at most {MAX_REQUEST_ID} printable ASCII characters (a UUID is ideal)",
        )
    return value


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise invalid_argument(field, "INVALID_PAGE_SIZE", f"{field} must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _filter_key(states: frozenset[State]) -> list[str]:
    return sorted(s.value for s in states)


def format_page_token(after: str, states: frozenset[State]) -> str:
    raw = json.dumps({"v": 1, "after": after, "states": _filter_key(states)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_token(value: str, states: frozenset[State], field: str = "page_token") -> str:
    """The session id a page continues after ('' for the first page)."""
    if not value:
        return ""
    bad = invalid_argument(field, "INVALID_PAGE_TOKEN", f"{field} is not a token from ListSessions")
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("after"), str):
        raise bad
    if not SESSION_ID_PATTERN.fullmatch(data["after"]):
        raise bad
    if data.get("states") != _filter_key(states):
        raise invalid_argument(
            field,
            "INVALID_PAGE_TOKEN",
            f"{field} was made for a different filter; list again from the first page",
        )
    return str(data["after"])


def update_paths(paths: Iterable[str], field: str = "update_mask") -> list[str]:
    out = list(paths) or ["labels"]
    for path in out:
        if path != "labels" and not (
            path.startswith("labels.") and LABEL_KEY.fullmatch(path.removeprefix("labels."))
        ):
            raise invalid_argument(
                f"{field}.paths",
                "INVALID_UPDATE_MASK",
                f"only 'labels' or 'labels.KEY' can be updated; got {_shown(path)}",
            )
    return out


def disconnect_code(value: int, field: str = "code") -> int:
    if not 100 <= value <= 999:
        raise invalid_argument(
            field, "INVALID_DISCONNECT_CODE", f"{field} must be a WhatsApp code (100 to 999)"
        )
    return value


def pairing_code(value: str, field: str = "code") -> str:
    if not PAIRING_CODE.fullmatch(value):
        raise invalid_argument(
            field,
            "INVALID_PAIRING_CODE",
            f"{field} must be 8 letters or digits, with or without a hyphen (ABCD-EFGH)",
        )
    return value.replace("-", "").upper()


PROXY_SCHEMES = ("http", "https", "socks5")


def proxy_url(value: str, field: str = "proxy") -> str:
    """'' or a proxy URL: scheme, host and port, optionally user:password."""
    if not value:
        return ""
    problem = f"{field} must be http://, https:// or socks5:// with a host and a port"
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port
    except ValueError:
        raise invalid_argument(field, "INVALID_PROXY", problem) from None
    if (
        url.scheme not in PROXY_SCHEMES
        or not url.hostname
        or port is None
        or url.path not in ("", "/")
        or url.query
        or url.fragment
        or len(value) > 2048
        or not value.isprintable()
    ):
        raise invalid_argument(field, "INVALID_PROXY", problem)
    return value
