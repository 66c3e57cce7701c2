"""Start-up of an agent: ``create_server(config) -> AgentServer``, then ``serve()``.

Message size limits are raised explicitly on both ends (gRPC's 4 MB default refuses real
models): the agent accepts messages up to ``AgentLimits.max_message_bytes`` (300 MiB by
default), which must stay above ``max_model_bytes`` plus the request's few bytes of framing.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from hilnas.agent.config import ServeConfig
from hilnas.agent.core import Agent
from hilnas.agent.security import (TokenInterceptor, check_bind, check_token, plaintext_token_warning,
                                   server_credentials)
from hilnas.agent.servicer import SERVICE_NAME, DeviceAgentServicer
from hilnas.protos.v1 import agent_pb2_grpc

log = logging.getLogger("hilnas.agent")
SPARE_RPC_THREADS = 8   # threads beyond the measuring one and the queue: Describe, Health, refusals


@dataclass
class AgentServer:
    """A running agent: the gRPC server, the port it got, and the core behind it."""

    server: grpc.Server
    port: int
    agent: Agent
    address: str

    def stop(self, grace: float | None = 1.0) -> None:
        self.server.stop(grace).wait()
        self.agent.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        path = Path(base) / "hilnas-agent" / "models"
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        return Path(tempfile.mkdtemp(prefix="hilnas-agent-models-"))


def make_device(config: ServeConfig):
    """The device behind the agent: a simulated profile, or this host."""
    if config.simulate:
        from hilnas.agent.sim.device import SimulatedDevice

        return SimulatedDevice(config.simulate, seed=config.seed, memory_limit_mb=config.limits.worker_memory_mb,
                               realtime=config.realtime)
    from hilnas.agent.host import HostDevice

    return HostDevice(config.limits, default_backend=config.backend)


def create_server(config: ServeConfig, *, device=None) -> AgentServer:
    """Build and start the gRPC server (port 0 picks a free port)."""
    if config.token is not None:
        check_token(config.token)
    check_bind(config.host, config.token, config.insecure)
    warning = plaintext_token_warning(config.host, config.token, bool(config.tls_cert))
    if warning:
        log.warning("%s", warning)
    limits = config.limits
    if limits.max_message_bytes < limits.max_model_bytes + 1024 * 1024:
        raise ValueError("max_message_bytes must exceed max_model_bytes by at least 1 MiB")
    from hilnas.agent.cache import ModelCache

    device = device if device is not None else make_device(config)
    cache = ModelCache(Path(config.cache_dir) if config.cache_dir else default_cache_dir(), limits.cache_bytes)
    backend = "simulated" if config.simulate else config.backend
    agent = Agent(device, cache, limits, default_backend=backend)

    interceptors = [TokenInterceptor(config.token)] if config.token else []
    # One thread runs the measurement and queue_size wait for it; the slot refuses every further
    # Benchmark at once (BUSY), so at most queue_size + 1 threads ever wait and the spare ones
    # always serve Describe, Health and those refusals. No gRPC-wide concurrency limit: it
    # would refuse Describe and Health too when the board is busy, and a busy board is not dead.
    workers = limits.queue_size + 1 + SPARE_RPC_THREADS
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hilnas-rpc"),
        interceptors=interceptors,
        options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                 ("grpc.max_send_message_length", limits.max_message_bytes),
                 ("grpc.so_reuseport", 0)])
    agent_pb2_grpc.add_DeviceAgentServicer_to_server(DeviceAgentServicer(agent), server)

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)

    host = config.host
    bind = f"[{host}]:{config.port}" if ":" in host and not host.startswith("[") else f"{host}:{config.port}"
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        port = server.add_secure_port(bind, server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca))
    else:
        port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"could not bind {bind} (address in use or not available)")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = bind.rsplit(":", 1)[0] + f":{port}"
    log.info("hilnas-agent listening on %s (%s)", address, ("simulated " + config.simulate + (", realtime" if config.realtime else "")) if config.simulate else "host")
    return AgentServer(server=server, port=port, agent=agent, address=address)


def serve(config: ServeConfig) -> None:
    """Run until SIGINT/SIGTERM."""
    import signal

    running = create_server(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"hilnas-agent serving on {running.address}", flush=True)
    stop.wait()
    running.stop(grace=2.0)
