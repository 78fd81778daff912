"""Server reflection serving the contract with its comments, so `grpcurl describe` shows them."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from importlib import resources

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

#: `make proto` writes it next to the stubs: protoc's descriptor set with `--include_source_info`.
DESCRIPTOR_SET = "descriptor_set.binpb"


def contract_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """The contract's files, source info included."""
    raw = (resources.files("wasessions.v1") / DESCRIPTOR_SET).read_bytes()
    return list(descriptor_pb2.FileDescriptorSet.FromString(raw).file)


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> Iterator[str]:
    """Every fully qualified name the file defines (services, methods, messages, fields, enums,
    enum values: the symbols reflection clients ask for)."""
    package = file.package

    def enum(scope: str, e: descriptor_pb2.EnumDescriptorProto) -> Iterator[str]:
        yield f"{scope}.{e.name}"
        # NOTE: enum values are scoped like their enum's siblings (protobuf's C++ rule).
        yield from (f"{scope}.{v.name}" for v in e.value)

    def message(scope: str, m: descriptor_pb2.DescriptorProto) -> Iterator[str]:
        name = f"{scope}.{m.name}"
        yield name
        yield from (f"{name}.{f.name}" for f in m.field)
        yield from (f"{name}.{o.name}" for o in m.oneof_decl)
        for nested in m.nested_type:
            yield from message(name, nested)
        for e in m.enum_type:
            yield from enum(name, e)

    for service in file.service:
        yield f"{package}.{service.name}"
        yield from (f"{package}.{service.name}.{m.name}" for m in service.method)
    for m in file.message_type:
        yield from message(package, m)
    for e in file.enum_type:
        yield from enum(package, e)


class ContractReflection(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's servicer, answering with the contract's files and their comments.

    NOTE: grpcio-reflection serializes files from a descriptor pool, and the pool (upb) drops
    source info, also from files added with it (`CopyToProto` and `serialized_pb` return none);
    its symbol lookup does not know methods either (`describe Service.Method` would be "not
    found"). So contract symbols are looked up here and asked of grpcio by file name, and every
    contract file in an answer gets the source info of the descriptor set protoc wrote with it
    (both come from one `make proto` run; `make check-proto` keeps them equal).
    """

    def __init__(self, service_names: Iterable[str]) -> None:
        names = list(service_names)
        super().__init__(names)
        files = contract_files()
        self._source_info = {f.name: f.source_code_info for f in files}
        # Health and reflection themselves come from the default pool (without comments).
        for name in names:
            if not any(f.package and name.startswith(f"{f.package}.") for f in files):
                file = descriptor_pb2.FileDescriptorProto()
                descriptor_pool.Default().FindFileContainingSymbol(name).CopyToProto(file)
                files.append(file)
        self._file_of = {symbol: f.name for f in files for symbol in _symbols(f)}

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[
            reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
        ],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        # grpcio answers each request with one response, in order: a FIFO pairs them up.
        asked: deque[reflection_pb2.ServerReflectionRequest] = deque()

        async def by_file_name() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            async for request in request_iterator:
                asked.append(request)
                name = self._file_of.get(request.file_containing_symbol)
                if request.HasField("file_containing_symbol") and name is not None:
                    request = reflection_pb2.ServerReflectionRequest(
                        host=request.host, file_by_filename=name
                    )
                yield request

        async for response in super().ServerReflectionInfo(by_file_name(), context):
            response.original_request.CopyFrom(asked.popleft())
            if response.HasField("file_descriptor_response"):
                files = response.file_descriptor_response.file_descriptor_proto
                files[:] = [self._documented_copy(f) for f in files]
            yield response

    def _documented_copy(self, serialized: bytes) -> bytes:
        file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        documented = self._source_info.get(file.name)
        if documented is None:
            return serialized
        # NOTE: only the comments are added: the rest stays what grpcio serves (protoc's set
        # also carries json_name, which would turn grpcurl's output from field names to camelCase).
        file.source_code_info.CopyFrom(documented)
        return file.SerializeToString()
