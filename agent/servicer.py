"""The gRPC servicer: a thin adapter between ``hilnas.v1.DeviceAgent`` and ``core.Agent``."""
from __future__ import annotations

import time

import grpc

from hilnas.agent import convert
from hilnas.agent.core import Agent
from hilnas.agent.device import AgentError
from hilnas.agent.results import BenchmarkRequest, Status
from hilnas.protos.v1 import agent_pb2, agent_pb2_grpc

STATUS_METADATA_KEY = "hilnas-status"

# The gRPC code a failed unary Benchmark is answered with.
GRPC_CODES = {
    Status.INVALID_MODEL: grpc.StatusCode.INVALID_ARGUMENT,
    Status.HASH_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    Status.MODEL_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Status.UNSUPPORTED_OP: grpc.StatusCode.UNIMPLEMENTED,
    Status.BACKEND_UNAVAILABLE: grpc.StatusCode.FAILED_PRECONDITION,
    Status.MODEL_NOT_CACHED: grpc.StatusCode.NOT_FOUND,
    Status.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Status.CRASHED: grpc.StatusCode.INTERNAL,
    Status.BUSY: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    # gRPC reports "no deadline" as a huge number of seconds.
    if remaining is None or remaining > 10 ** 8:
        return None
    return time.monotonic() + remaining


class DeviceAgentServicer(agent_pb2_grpc.DeviceAgentServicer):
    def __init__(self, agent: Agent):
        self.agent = agent

    def Describe(self, request, context):
        return convert.device_info_to_proto(self.agent.describe())

    def Benchmark(self, request, context):
        try:
            req = convert.request_from_proto(request)
        except ValueError as err:
            context.set_trailing_metadata(((STATUS_METADATA_KEY, Status.INVALID_MODEL.name),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"INVALID_MODEL: bad request: {err}")
        result = self.agent.benchmark(req, deadline=_deadline(context))
        context.set_trailing_metadata(((STATUS_METADATA_KEY, result.status.name),))
        if not result.status.measured:
            context.abort(GRPC_CODES.get(result.status, grpc.StatusCode.UNKNOWN),
                          f"{result.status.name}: {result.error}")
        return convert.result_to_proto(result)

    def BenchmarkStream(self, request_iterator, context):
        def decoded():
            for msg in request_iterator:
                try:
                    yield convert.request_from_proto(msg)
                except ValueError as err:   # still echo what identifies the request
                    echo = BenchmarkRequest(sha256=msg.sha256, request_id=msg.request_id, op_key=msg.op_key)
                    yield AgentError(Status.INVALID_MODEL, f"bad request: {err}", echo)

        try:
            for result in self.agent.benchmark_stream(decoded(), deadline=_deadline(context)):
                if not context.is_active():
                    return
                yield convert.result_to_proto(result)
        except AgentError as err:
            context.abort(GRPC_CODES.get(err.status, grpc.StatusCode.UNKNOWN), f"{err.status.name}: {err.message}")


SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["DeviceAgent"].full_name
