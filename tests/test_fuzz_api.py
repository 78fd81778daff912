"""Property-based attacks over real gRPC on a real server process: arbitrary field values and
malformed bytes to every RPC. Only canonical error codes come back, the server stays
healthy, and sessions and credentials that no request named do not change.

Bytes that do not parse would be answered by grpcio itself with UNKNOWN before our code runs;
the server's tolerant deserializer catches them first, and they are answered INVALID_ARGUMENT
(MALFORMED_REQUEST).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message as pb_message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from tests.helpers import S, spawn_server, write_config
from tests.security_helpers import SIM_FAST, Rpc, all_rpcs, terminate
from tests.test_security_data import SyncClient

# NOTE: SetNetwork(reachable=false) takes the (simulated) network down for every session:
# a change it asks for, so it is left out of the "nothing else changes" check.
FUZZED = [rpc for rpc in all_rpcs() if rpc.method != "SetNetwork"]
PROTECTED = ("keep-linked", "keep-stopped")

#: Codes our handlers may answer with. UNKNOWN, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED on
#: a unary call, ... would each be a bug.
CANONICAL = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class Target:
    client: SyncClient
    data_dir: Path
    baseline: dict[str, tuple[bytes, str]]


def _fingerprint(target: Target) -> dict[str, tuple[bytes, str]]:
    """What must not change: each protected session's record (without times) and credentials."""
    out = {}
    for session_id in PROTECTED:
        session = target.client.get(session_id)
        for volatile in ("update_time", "last_activity_time"):
            session.ClearField(volatile)
        creds = target.data_dir / "credentials" / session_id / "creds.json"
        blob = creds.read_bytes() if creds.exists() else b""
        out[session_id] = (blob, session.SerializeToString(deterministic=True).hex())
    return out


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    config = write_config(root / "config.toml", SIM_FAST)
    server = spawn_server(root / "data", config)
    client = SyncClient(server.target)
    try:
        client.link("keep-linked", labels={"owner": "fuzz"})
        client.sessions.CreateSession(
            svc.CreateSessionRequest(session_id="keep-stopped", skip_start=True), timeout=10
        )
        t = Target(client, root / "data", {})
        t.baseline = _fingerprint(t)
        assert t.baseline["keep-linked"][0], "the linked session has credentials"
        yield t
    finally:
        client.channel.close()
        assert terminate(server.process, server.target) == 0


# Strategies from the descriptors -------------------------------------------------------------

ID_CHARS = string.ascii_lowercase + string.digits + "_-"
session_ids = st.text(ID_CHARS, min_size=1, max_size=8).map(lambda s: "fz" + s)
names = st.one_of(
    session_ids.map(lambda s: "sessions/" + s),
    st.text(max_size=40),
    st.sampled_from(["", "sessions/", "sessions/A", "sessions/x\n", "sessions/../x", "x/y"]),
)
texts = st.one_of(st.text(max_size=80), names, st.sampled_from(["+15551234567", "sim", "a" * 300]))


def _unprotected(value: Any) -> bool:
    return "keep" not in repr(value)


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    FD = pb_descriptor.FieldDescriptor
    if t == FD.TYPE_STRING:
        if field.name in ("name", "names"):
            return names
        if field.name == "session_id":
            return st.one_of(session_ids, st.text(max_size=70))
        return texts
    if t == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_ENUM):
        return st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-3, 1200))
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    raise AssertionError(f"no strategy for {field.full_name}")


def _is_map(field: pb_descriptor.FieldDescriptor) -> bool:
    entry = field.message_type
    return (
        field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE
        and entry is not None
        and entry.GetOptions().map_entry
    )


@st.composite
def messages(draw: Any, cls: type[pb_message.Message], depth: int = 0) -> pb_message.Message:
    message = cls()
    # NOTE: the stubs also allow upb's descriptor types; these are the same objects at runtime.
    for field in cast(pb_descriptor.Descriptor, cls.DESCRIPTOR).fields:
        if not draw(st.booleans()):
            continue
        if _is_map(field):
            assert field.message_type is not None
            _, value_field = field.message_type.fields
            entries = draw(
                st.dictionaries(
                    st.one_of(
                        st.text(max_size=70),
                        st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True),
                    ),
                    _scalar(value_field),
                    max_size=4,
                )
            )
            getattr(message, field.name).update(entries)
        elif field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
            if depth > 1:
                continue
            assert field.message_type is not None
            sub_cls = _message_class(field.message_type)
            if field.is_repeated:
                for sub in draw(st.lists(messages(sub_cls, depth + 1), max_size=2)):
                    getattr(message, field.name).add().CopyFrom(sub)
            else:
                getattr(message, field.name).CopyFrom(draw(messages(sub_cls, depth + 1)))
        elif field.is_repeated:
            if field.full_name.endswith("FieldMask.paths"):
                values = draw(st.lists(st.one_of(texts, st.just("labels")), max_size=3))
            else:
                values = draw(st.lists(_scalar(field), max_size=3))
            getattr(message, field.name).extend(values)
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def _message_class(descriptor: pb_descriptor.Descriptor) -> type[pb_message.Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


# Calling -------------------------------------------------------------------------------------


def _call(channel: grpc.Channel, rpc: Rpc, request: bytes) -> grpc.StatusCode:
    try:
        if not rpc.server_streaming:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(rpc.path)
            unary(request, timeout=20)
            return grpc.StatusCode.OK
        streaming: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(rpc.path)
        stream = streaming(request, timeout=3)
        try:
            for _ in stream:
                break  # the first message is enough: the handler ran
        finally:
            stream.cancel()
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        if code == grpc.StatusCode.CANCELLED:
            return grpc.StatusCode.OK  # we cancelled it
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and rpc.server_streaming:
            return grpc.StatusCode.OK  # a stream that is waiting for news is working
        return code


def _parses(rpc: Rpc, data: bytes) -> bool:
    try:
        rpc.request().ParseFromString(data)
    except Exception:
        return False
    return True


def _still_fine(target: Target) -> None:
    reply = health_pb2_grpc.HealthStub(target.client.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=20
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert _fingerprint(target) == target.baseline


@pytest.mark.slow
@pytest.mark.parametrize("rpc", FUZZED, ids=lambda r: r.method)
def test_arbitrary_field_values(target: Target, rpc: Rpc) -> None:
    @FUZZ_SETTINGS
    @given(messages(rpc.request).filter(_unprotected))
    def attack(request: pb_message.Message) -> None:
        code = _call(target.client.channel, rpc, request.SerializeToString())
        assert code in CANONICAL, f"{rpc.method}({request}) -> {code}"

    attack()
    _still_fine(target)


@pytest.mark.slow
@pytest.mark.parametrize("rpc", FUZZED, ids=lambda r: r.method)
def test_malformed_bytes(target: Target, rpc: Rpc) -> None:
    @FUZZ_SETTINGS
    @given(st.binary(max_size=200).filter(_unprotected))
    def attack(data: bytes) -> None:
        code = _call(target.client.channel, rpc, data)
        # NOTE: grpcio itself would answer bytes that do not parse with UNKNOWN; the server's
        # deserializer hands them on marked, and they are answered INVALID_ARGUMENT
        # (MALFORMED_REQUEST).
        if _parses(rpc, data):
            assert code in CANONICAL, f"{rpc.method}({data!r}) -> {code}"
        else:
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.method}({data!r}) -> {code}"

    attack()
    _still_fine(target)


def test_fuzzing_changes_only_what_it_names(target: Target) -> None:
    """The protected sessions are still what they were, credentials byte for byte."""
    _still_fine(target)
    creds = target.data_dir / "credentials" / "keep-linked" / "creds.json"
    digest = hashlib.sha256(creds.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(target.baseline["keep-linked"][0]).hexdigest()
    assert target.client.get("keep-linked").state == S.CONNECTED
    assert target.client.get("keep-stopped").state == S.STOPPED
    # The attack reached the handlers: valid requests among it created sessions.
    listed = target.client.sessions.ListSessions(
        svc.ListSessionsRequest(page_size=1000), timeout=10
    )
    assert len(listed.sessions) > len(PROTECTED)
    # And the server answers real work after the attack.
    target.client.sim.SetNetwork(sim.SetNetworkRequest(reachable=True), timeout=10)
    target.client.link("after-fuzz")
