"""A client of one device agent: deadlines, retries with backoff on UNAVAILABLE, token, TLS.

Measurement failures come back as typed ``BenchmarkResult``s (``status`` says what went wrong),
never as exceptions; only an agent that stays unreachable after the retries raises
``AgentUnavailable``. A model is first offered by hash, and uploaded only when the agent does not
have it cached, so re-validation costs no upload.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import grpc

from hilnas.agent import convert
from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkRequest, BenchmarkResult, DeviceInfo, ModelFormat, Status
from hilnas.protos.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("hilnas.client")

DEFAULT_MAX_MESSAGE_BYTES = 300 * 1024 * 1024  # matches the agent's default; see docs/agent.md
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


class AgentUnavailable(ConnectionError):
    """The agent could not be reached (after retries), or refused our credentials."""


@dataclass(frozen=True)
class ClientConfig:
    address: str                       # "host:port"
    token: str | None = None           # bearer token, when the agent requires one
    tls: bool = False                  # use TLS
    tls_ca: str | None = None          # CA bundle that signed the agent's certificate (PEM)
    tls_cert: str | None = None        # client certificate (PEM), for agents that require one
    tls_key: str | None = None         # client key (PEM)
    tls_server_name: str | None = None  # expected name in the agent's certificate, if not the host
    retries: int = 4                   # attempts after the first on UNAVAILABLE
    backoff_s: float = 0.5             # first back-off; doubles each attempt (with jitter)
    describe_timeout_s: float = 10.0   # deadline of Describe
    benchmark_timeout_s: float = 600.0  # deadline of one Benchmark (queueing + measuring)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AgentClient:
    """Talks to one agent. Thread-safe (gRPC channels are)."""

    def __init__(self, config: ClientConfig):
        self.config = config
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes)]
        if config.tls_server_name:
            options.append(("grpc.ssl_target_name_override", config.tls_server_name))
        if config.tls or config.tls_ca:
            def read(p):
                return Path(p).read_bytes() if p else None
            creds = grpc.ssl_channel_credentials(read(config.tls_ca), read(config.tls_key), read(config.tls_cert))
            self._channel = grpc.secure_channel(config.address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(config.address, options=options)
        self._stub = agent_pb2_grpc.DeviceAgentStub(self._channel)
        self._metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls --------------------------------------------------------------------------------
    def _call(self, method, request, timeout: float):
        """Unary call with retries on UNAVAILABLE; other errors propagate as grpc.RpcError."""
        delay = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            try:
                return method.with_call(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    raise AgentUnavailable(f"{self.config.address}: {err.details()} (check the token)") from None
                if code not in _RETRYABLE:
                    raise
                if attempt == self.config.retries:
                    raise AgentUnavailable(f"{self.config.address} unreachable after {attempt + 1} attempts: "
                                           f"{err.details()}") from None
                log.info("agent %s unavailable (%s); retrying in %.1fs", self.config.address, err.details(), delay)
                time.sleep(delay)
                delay *= 2

    def describe(self) -> DeviceInfo:
        reply, _ = self._call(self._stub.Describe, agent_pb2.DescribeRequest(), self.config.describe_timeout_s)
        return convert.device_info_from_proto(reply)

    def benchmark(self, model: bytes, *, format: ModelFormat = ModelFormat.ONNX, backend: str = "",
                  config: MeasureConfig = MeasureConfig(), op_key: str = "", request_id: str = "",
                  timeout_s: float | None = None, upload: bool | None = None) -> BenchmarkResult:
        """Measure one model. ``upload=None`` offers the hash first and uploads on a cache miss."""
        digest = sha256_hex(model)
        req = BenchmarkRequest(sha256=digest, model=b"", format=format, backend=backend, config=config,
                               op_key=op_key, request_id=request_id)
        timeout = timeout_s or self.config.benchmark_timeout_s
        if upload is not True:
            result = self._benchmark_once(req, timeout)
            if result.status is not Status.MODEL_NOT_CACHED or upload is False:
                return result
        return self._benchmark_once(dataclasses.replace(req, model=model), timeout)

    def benchmark_request(self, request: BenchmarkRequest, *, timeout_s: float | None = None) -> BenchmarkResult:
        return self._benchmark_once(request, timeout_s or self.config.benchmark_timeout_s)

    def _benchmark_once(self, req: BenchmarkRequest, timeout: float) -> BenchmarkResult:
        try:
            reply, _ = self._call(self._stub.Benchmark, convert.request_to_proto(req), timeout)
            return convert.result_from_proto(reply)
        except grpc.RpcError as err:
            return _failure_from_rpc_error(err, req)

    def benchmark_stream(self, requests: Iterable[BenchmarkRequest], *, timeout_s: float | None = None,
                         reply_timeout_s: float | None = None) -> Iterator[BenchmarkResult]:
        """Measure many models over one stream; results arrive in request order.

        Transport failure (agent lost) raises ``AgentUnavailable`` from the iterator; results
        already yielded are final, so the caller can persist them and resume with the rest.
        ``reply_timeout_s``: waiting longer than this for the next reply cancels the call and
        raises ``AgentUnavailable`` too (the time the caller holds a result is not counted). An
        agent that vanished without closing its connection, or a stop whose GOAWAY the client
        never turns into an error, otherwise keeps the reader waiting for the whole ``timeout_s``.
        """
        stream = self._stub.BenchmarkStream((convert.request_to_proto(r) for r in requests),
                                            timeout=timeout_s, metadata=self._metadata)
        watchdog = _ReplyWatchdog(stream.cancel, reply_timeout_s)
        try:
            watchdog.arm()
            for reply in stream:
                watchdog.disarm()
                yield convert.result_from_proto(reply)
                watchdog.arm()
        except grpc.RpcError as err:
            if watchdog.fired:
                raise AgentUnavailable(f"{self.config.address}: no reply within {reply_timeout_s:g} s; "
                                       "the stream was cancelled") from None
            code = err.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise AgentBusy(f"{self.config.address}: {err.details()}") from None
            raise AgentUnavailable(f"{self.config.address}: stream ended with {code.name}: {err.details()}") from None
        finally:
            watchdog.disarm()
            # A caller that stops reading (its build stopped) ends the call now: the agent frees
            # its measurement slot instead of measuring models nobody will record.
            stream.cancel()


class _ReplyWatchdog:
    """Calls ``cancel`` when armed for longer than ``timeout_s`` (None: never)."""

    def __init__(self, cancel: Callable[[], object], timeout_s: float | None):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"reply_timeout_s must be > 0 (or None), got {timeout_s}")
        self._cancel, self._timeout_s = cancel, timeout_s
        self._timer: threading.Timer | None = None
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        self._cancel()

    def arm(self) -> None:
        if self._timeout_s is not None:
            self._timer = threading.Timer(self._timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AgentBusy(AgentUnavailable):
    """The agent's measurement queue is full."""


def _failure_from_rpc_error(err: grpc.RpcError, req: BenchmarkRequest) -> BenchmarkResult:
    status = None
    for key, value in (err.trailing_metadata() or ()):
        if key == "hilnas-status":
            status = Status.__members__.get(value)
    if status is None:
        status = {grpc.StatusCode.DEADLINE_EXCEEDED: Status.TIMEOUT,
                  grpc.StatusCode.RESOURCE_EXHAUSTED: Status.BUSY,
                  grpc.StatusCode.INVALID_ARGUMENT: Status.INVALID_MODEL,
                  grpc.StatusCode.UNIMPLEMENTED: Status.UNSUPPORTED_OP,
                  grpc.StatusCode.NOT_FOUND: Status.MODEL_NOT_CACHED}.get(err.code(), Status.CRASHED)
    return BenchmarkResult.failure(status, f"{err.code().name}: {err.details()}", req)


def client_for_endpoint(endpoint, **overrides) -> AgentClient:
    """An ``AgentClient`` for a fleet ``AgentEndpoint`` (reads its token file now)."""
    tls = endpoint.tls
    return AgentClient(ClientConfig(
        address=endpoint.address, token=endpoint.read_token(), tls=tls is not None,
        tls_ca=tls.ca if tls else None, tls_cert=tls.cert if tls else None, tls_key=tls.key if tls else None,
        tls_server_name=tls.server_name if tls else None, **overrides))
