"""Logging: plain text or JSON lines (`--log-format json`), and one line per session state
change with session, state, code, reason and attempt.

No secrets: the state-change line is built from an explicit list of fields (never the proxy URL,
never credentials), and API keys are never passed to a logger anywhere.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import logging.handlers
import queue
import time
from typing import Any

from wasessions_server.model import JournalEntry

STATE_LOGGER = "wasessions_server.sessions"
FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _Enqueue(logging.handlers.QueueHandler):
    """Queues records for the writer thread, which formats them.

    NOTE: the stock `prepare` formats the record here, with a plain formatter, and drops the
    exception; only the message is fixed here, and the exception stays for the JSON field."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record


_writer: logging.handlers.QueueListener | None = None


def configure(level: str, fmt: str) -> None:
    """Logs to stderr from a writer thread: the event loop only puts a record on a queue.

    NOTE: a reconnect storm logs tens of thousands of state changes within seconds. Written from
    the event loop, each line is a write to stderr, which blocks whenever whatever reads it (a
    pipe to a log collector) falls behind, and every RPC would wait with it.
    """
    global _writer
    flush()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = logging.handlers.QueueListener(records, handler)
    _writer.start()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_Enqueue(records))
    root.setLevel(level.upper())


def flush() -> None:
    """Writes out every queued record and stops the writer thread (at exit)."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


atexit.register(flush)


class StateChangeLog:
    """A journal listener: one INFO line per state change (and per create and delete)."""

    def __init__(self) -> None:
        self._log = logging.getLogger(STATE_LOGGER)

    def __call__(self, entry: JournalEntry) -> None:
        sid = entry.session_id
        previous = entry.before.state.value if entry.before is not None else None
        record = entry.record
        if record is None:
            fields: dict[str, Any] = {"session": sid, "state": "DELETED", "previous": previous}
            self._log.info("session %s deleted", sid, extra={**fields, "cause": "DELETED"})
            return
        state = record.state.value
        if state == previous:
            return
        closed = record.last_disconnect
        retry = record.retry
        fields = {
            "session": sid,
            "state": state,
            "previous": previous,
            "cause": entry.cause.value,
            "required_action": record.required_action.value,
            "code": closed.code if closed is not None else None,
            "reason": closed.reason if closed is not None else None,
            "attempt": retry.attempt if retry is not None else None,
            "seq": entry.seq,
        }
        detail = ""
        if closed is not None:
            detail += f" code={closed.code} reason={closed.reason}"
        if retry is not None:
            detail += f" attempt={retry.attempt}/{retry.max_attempts}"
        self._log.info(
            "session %s %s -> %s (%s)%s",
            sid,
            previous or "-",
            state,
            entry.cause.value,
            detail,
            extra=fields,
        )
