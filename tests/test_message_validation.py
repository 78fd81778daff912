"""MessageService argument rules (message_validation), each with its edge cases."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import pytest
from wasessions.v1 import message_pb2
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions_server.api import message_validation as check
from wasessions_server.api import validation
from wasessions_server.errors import ServiceError, Status

M = message_pb2.Message


def _rejects(call: Callable[[], object], reason: str, field: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert (error.status, error.reason) == (Status.INVALID_ARGUMENT, reason), error
    assert [v.field for v in error.violations] == [field]
    assert error.message, "a sentence for a person"
    return error


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sessions/demo/messages/abc", ("demo", "abc")),
        ("sessions/a/messages/" + "Z" * 128, ("a", "Z" * 128)),
        ("sessions/x_1-2/messages/A-b_9", ("x_1-2", "A-b_9")),
    ],
)
def test_message_names_split(value: str, expected: tuple[str, str]) -> None:
    name = check.message_name(value)
    assert tuple(name) == expected
    assert str(name) == value


BAD_MESSAGE_NAMES = ["", "sessions/demo", "sessions/demo/messages/", "sessions/demo/messages/a\n",
                     "sessions/demo/messages/" + "a" * 129, "sessions/Demo/messages/a",
                     "sessions/-/messages/a", "sessions/demo/messages/a/b", "sessions/demo/msgs/a",
                     "demo/messages/a", "sessions//messages/a", "sessions/demo/messages/a b",
                     "sessions/demo/messages/ä", "sessions/demo\n/messages/a",
                     "sessions/demo/messages/a.b"]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_MESSAGE_NAMES)
def test_bad_message_names(bad: str) -> None:
    _rejects(lambda: check.message_name(bad), "INVALID_MESSAGE_NAME", "name")
    _rejects(lambda: check.message_name(bad, "reply_to"), "INVALID_MESSAGE_NAME", "reply_to")


def test_message_id_rule() -> None:
    assert check.message_id("a" * 128) == "a" * 128
    for bad in ("", "a" * 129, "a\n", "a/b", "-" + "é"):
        _rejects(partial(check.message_id, bad), "INVALID_MESSAGE_NAME", "message_id")


def test_reply_to_and_reactions_are_messages_of_the_same_session() -> None:
    name = check.same_session_message("sessions/a/messages/m", "a", "reply_to")
    assert str(name) == "sessions/a/messages/m"
    _rejects(
        partial(check.same_session_message, "sessions/b/messages/m", "a", "reaction.message"),
        "MESSAGE_OF_ANOTHER_SESSION",
        "reaction.message",
    )
    _rejects(
        partial(check.same_session_message, "sessions/a/messages/", "a", "reply_to"),
        "INVALID_MESSAGE_NAME",
        "reply_to",
    )


def test_parent_is_a_session_or_every_session() -> None:
    assert check.parent("sessions/demo") == "demo"
    assert check.parent("sessions/-") is None
    _rejects(lambda: check.parent("sessions/-", allow_all=False), "INVALID_SESSION_NAME", "parent")
    for bad in ("", "sessions/", "sessions/demo\n", "sessions/Demo", "demo", "sessions/a/b", "-"):
        _rejects(partial(check.parent, bad), "INVALID_SESSION_NAME", "parent")


def test_mark_read_names_are_of_one_session() -> None:
    names = check.message_names(["sessions/a/messages/1", "sessions/a/messages/2",
                                 "sessions/a/messages/1"])  # fmt: skip
    assert [str(n) for n in names] == ["sessions/a/messages/1", "sessions/a/messages/2"]
    _rejects(lambda: check.message_names([]), "INVALID_MESSAGE_NAME", "messages")
    _rejects(
        lambda: check.message_names(["sessions/a/messages/1", "bad"]),
        "INVALID_MESSAGE_NAME",
        "messages[1]",
    )
    _rejects(
        lambda: check.message_names(["sessions/a/messages/1", "sessions/b/messages/2"]),
        "MESSAGES_OF_SEVERAL_SESSIONS",
        "messages[1]",
    )
    many = [f"sessions/a/messages/{i}" for i in range(check.MAX_MARK_READ + 1)]
    assert len(check.message_names(many[:-1])) == check.MAX_MARK_READ
    _rejects(lambda: check.message_names(many), "INVALID_MESSAGE_NAME", "messages")


# -- recipients ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "jid"),
    [
        ("+15551234567", "15551234567@s.whatsapp.net"),
        ("+1234567", "1234567@s.whatsapp.net"),  # the shortest E.164: 7 digits
        ("+123456789012345", "123456789012345@s.whatsapp.net"),  # the longest: 15
        ("15551234567@s.whatsapp.net", "15551234567@s.whatsapp.net"),
        ("120363012345678901@g.us", "120363012345678901@g.us"),
        ("15551234567-1600000000@g.us", "15551234567-1600000000@g.us"),
    ],
)
def test_to_is_normalised_to_a_jid(value: str, jid: str) -> None:
    assert check.recipient(value) == jid


BAD_RECIPIENTS = [
    "",
    "+123456",
    "+1234567890123456",
    "+0555123456",
    "15551234567",
    "+1 555 123 4567",
    "+15551234567\n",
    " +15551234567",
    "15551234567@s.whatsapp.net\n",
    "15551234567:12@s.whatsapp.net",
    "15551234567@S.WHATSAPP.NET",
    "abc@g.us",
    "@g.us",
    "15551234567@c.us",
    "15551234567@lid",
    "+١٢٣٤٥٦٧٨",
    "user@example.com",
]


@pytest.mark.parametrize("bad", BAD_RECIPIENTS)
def test_bad_recipients_name_to(bad: str) -> None:
    error = _rejects(lambda: check.recipient(bad), "INVALID_RECIPIENT", "to")
    assert "E.164" in error.message or "required" in error.message


def test_a_sender_is_a_person_and_a_chat_filter_may_be_empty() -> None:
    assert check.contact("+15557654321") == "15557654321@s.whatsapp.net"
    _rejects(lambda: check.contact("120363012345678901@g.us"), "INVALID_RECIPIENT", "sender")
    assert check.chat_filter("") is None
    assert check.chat_filter("+15551234567") == "15551234567@s.whatsapp.net"
    _rejects(lambda: check.chat_filter("nope"), "INVALID_RECIPIENT", "chat")


# -- content -------------------------------------------------------------------------------------


def test_text_is_1_to_65536_code_points() -> None:
    assert check.text("x") == "x"
    assert check.text("x" * 65_536) == "x" * 65_536
    # Code points, not bytes nor UTF-16 units: 65,536 astral characters are fine.
    assert len(check.text("😀" * 65_536)) == 65_536
    assert check.text("line\n") == "line\n", "text keeps its whitespace"
    _rejects(lambda: check.text(""), "INVALID_TEXT", "text")
    error = _rejects(lambda: check.text("x" * 65_537), "INVALID_TEXT", "text")
    assert "65,537" in error.message
    _rejects(lambda: check.text("😀" * 65_537), "INVALID_TEXT", "text")


def test_no_content_is_its_own_reason() -> None:
    error = check.no_content()
    assert (error.status, error.reason) == (Status.INVALID_ARGUMENT, "MISSING_CONTENT")
    assert [v.field for v in error.violations] == ["text"]


GOOD_EMOJI = [
    "👍",
    "❤️",
    "❤",
    "😂",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇺🇸",
    "1️⃣",
    "#⃣",
    "©️",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "🧑🏿‍🚀",
]
BAD_EMOJI = ["", "a", "ab", "1", "!", " ", "👍 ", " 👍", "👍👍", "👍\n", "🇺", "🇺🇸🇺", "👍\u200d",
             "\u200d👍", "\ufe0f", "é", "\u0301", "👍" + "\ufe0f" * 40, "x\u20e3"]  # fmt: skip


@pytest.mark.parametrize("value", GOOD_EMOJI)
def test_one_emoji_is_accepted(value: str) -> None:
    assert check.emoji(value) == value


@pytest.mark.parametrize("bad", BAD_EMOJI)
def test_anything_but_one_emoji_is_rejected(bad: str) -> None:
    _rejects(lambda: check.emoji(bad), "INVALID_EMOJI", "reaction.emoji")


def test_whatsapp_ids() -> None:
    assert check.whatsapp_id("") is None
    assert check.whatsapp_id("3EB0C431C26A1916E7") == "3EB0C431C26A1916E7"
    for bad in ("a\n", "a" * 129, "a b", "ä"):
        _rejects(partial(check.whatsapp_id, bad), "INVALID_WHATSAPP_ID", "whatsapp_id")


# -- request_id, ttl -----------------------------------------------------------------------------


def test_request_id_is_at_most_128_printable_ascii() -> None:
    assert check.request_id is validation.request_id, "the same rule as CreateSession's"
    assert check.request_id("") == ""
    assert check.request_id("~" * 128) == "~" * 128
    for bad in ("a" * 129, "tab\t", "new\n", "ü", "\x00"):
        _rejects(partial(check.request_id, bad), "INVALID_REQUEST_ID", "request_id")


RETENTION = timedelta(days=7)


def test_ttl_is_positive_and_at_most_the_retention() -> None:
    assert check.ttl(None, RETENTION) is None, "unset: the configured default"
    assert check.ttl(timedelta(microseconds=1), RETENTION) == timedelta(microseconds=1)
    assert check.ttl(RETENTION, RETENTION) == RETENTION
    _rejects(lambda: check.ttl(timedelta(0), RETENTION), "INVALID_TTL", "ttl")
    _rejects(lambda: check.ttl(timedelta(seconds=-1), RETENTION), "INVALID_TTL", "ttl")
    error = _rejects(
        lambda: check.ttl(RETENTION + timedelta(microseconds=1), RETENTION), "INVALID_TTL", "ttl"
    )
    assert "604800" in error.message


# -- listing -------------------------------------------------------------------------------------


def test_page_size_rules_are_list_sessions_rules() -> None:
    assert check.page_size(0) == 50
    assert check.page_size(1) == 1
    assert check.page_size(1000) == 1000
    assert check.page_size(1001) == 1000
    assert check.page_size(2**31 - 1) == 1000
    _rejects(lambda: check.page_size(-1), "INVALID_PAGE_SIZE", "page_size")


def test_direction_and_statuses_come_back_as_names() -> None:
    assert check.direction(M.DIRECTION_UNSPECIFIED) is None
    assert check.direction(M.INBOUND) == "INBOUND"
    assert check.direction(M.OUTBOUND) == "OUTBOUND"
    _rejects(lambda: check.direction(99), "INVALID_DIRECTION", "direction")
    assert check.statuses([]) == frozenset()
    assert check.statuses([M.QUEUED, M.READ, M.QUEUED]) == {"QUEUED", "READ"}
    assert check.statuses([M.RECEIVED, M.CANCELLED]) == {"RECEIVED", "CANCELLED"}
    _rejects(
        lambda: check.statuses([M.SENT, M.STATUS_UNSPECIFIED]), "INVALID_STATUS", "statuses[1]"
    )
    _rejects(lambda: check.statuses([42]), "INVALID_STATUS", "statuses[0]")


LISTING = check.MessageFilter("demo", "15551234567@s.whatsapp.net", "OUTBOUND", frozenset({"SENT"}))


def test_page_tokens_round_trip_for_the_same_listing_only() -> None:
    assert check.page_token("", LISTING) == ""
    token = check.format_page_token("000000000042", LISTING)
    assert token.isascii() and "=" not in token, "url-safe, unpadded"
    assert check.page_token(token, LISTING) == "000000000042"
    same = check.MessageFilter(
        "demo", "15551234567@s.whatsapp.net", "OUTBOUND", frozenset({"SENT"})
    )
    assert check.page_token(token, same) == "000000000042"
    for other in (
        check.MessageFilter(None, LISTING.chat, LISTING.direction, LISTING.statuses),
        check.MessageFilter("demo", None, LISTING.direction, LISTING.statuses),
        check.MessageFilter("demo", LISTING.chat, "INBOUND", LISTING.statuses),
        check.MessageFilter("demo", LISTING.chat, LISTING.direction, frozenset()),
    ):
        error = _rejects(
            partial(check.page_token, token, other), "INVALID_PAGE_TOKEN", "page_token"
        )
        assert "different" in error.message


def _encoded(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_malformed_and_foreign_page_tokens_are_rejected() -> None:
    key = LISTING.key()
    list_sessions_token = validation.format_page_token("demo", frozenset())
    for bad in (
        "!!!",
        "a",
        _encoded([1]),
        _encoded({"v": 2, "k": "messages", "after": "1", "filter": key}),
        _encoded({"v": 1, "after": "1", "filter": key}),
        _encoded({"v": 1, "k": "messages", "after": 1, "filter": key}),
        _encoded({"v": 1, "k": "messages", "after": "", "filter": key}),
        _encoded({"v": 1, "k": "messages", "after": "x" * 513, "filter": key}),
        _encoded({"v": 1, "k": "messages", "after": "1\n", "filter": key}),
        list_sessions_token,
    ):
        error = _rejects(
            partial(check.page_token, bad, LISTING), "INVALID_PAGE_TOKEN", "page_token"
        )
        assert "ListMessages" in error.message
    # ...and a ListMessages token is not a ListSessions one.
    _rejects(
        lambda: validation.page_token(check.format_page_token("demo", LISTING), frozenset()),
        "INVALID_PAGE_TOKEN",
        "page_token",
    )


# -- the simulator's message RPCs ----------------------------------------------------------------


def test_simulator_receipts_failure_kinds_and_counts() -> None:
    assert [check.receipt(s) for s in (M.DELIVERED, M.READ, M.PLAYED)] == [
        "DELIVERED",
        "READ",
        "PLAYED",
    ]
    for bad in (M.STATUS_UNSPECIFIED, M.SENT, M.QUEUED, M.RECEIVED, M.FAILED, 77):
        _rejects(partial(check.receipt, bad), "INVALID_STATUS", "status")
    Kind = sim.InjectSendFailureRequest
    assert check.failure_kind(Kind.REJECT) == "REJECT"
    assert check.failure_kind(Kind.DROP_CONNECTION) == "DROP_CONNECTION"
    assert check.failure_kind(Kind.DROP_AFTER_ACCEPT) == "DROP_AFTER_ACCEPT"
    for bad_kind in (Kind.KIND_UNSPECIFIED, 9):
        _rejects(partial(check.failure_kind, bad_kind), "INVALID_FAILURE_KIND", "kind")
    assert (check.failure_count(0), check.failure_count(1), check.failure_count(1000)) == (
        1,
        1,
        1000,
    )
    for bad_count in (-1, 1001):
        _rejects(partial(check.failure_count, bad_count), "INVALID_COUNT", "count")
