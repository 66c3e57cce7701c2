"""Tokens and TLS over a real channel."""
from __future__ import annotations

import subprocess

import grpc
import pytest

from loopback import FAST, client_for, start_agent
from hilnas.agent.results import Status
from hilnas.server.client import AgentClient, AgentUnavailable, ClientConfig
from testmodels import mlp

pytestmark = pytest.mark.integration
TOKEN = "correct-horse-battery-staple-42"


@pytest.fixture
def token_agent(tmp_path):
    running = start_agent(tmp_path, token=TOKEN)
    yield running
    running.stop(0)


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token"])
def test_missing_or_wrong_token_is_unauthenticated(token_agent, token):
    with client_for(token_agent, token=token) as c:
        with pytest.raises(AgentUnavailable, match="token"):
            c.describe()
        with pytest.raises(AgentUnavailable, match="token"):
            c.benchmark(mlp(16, 1), config=FAST)
    # the right token still works afterwards
    with client_for(token_agent, token=TOKEN) as c:
        assert c.describe().backends
        assert c.benchmark(mlp(16, 1), config=FAST).status is Status.OK


def test_health_is_open_without_token(token_agent):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{token_agent.port}") as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refuses_non_loopback_bind_without_token(tmp_path):
    with pytest.raises(ValueError, match="without a token"):
        start_agent(tmp_path, host="0.0.0.0")


def _make_cert(tmp_path, name):
    key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


def test_tls_with_client_certificates(tmp_path):
    srv_crt, srv_key = _make_cert(tmp_path, "server")
    cli_crt, cli_key = _make_cert(tmp_path, "client")
    running = start_agent(tmp_path, tls_cert=str(srv_crt), tls_key=str(srv_key), tls_client_ca=str(cli_crt))
    try:
        addr = f"localhost:{running.port}"
        with AgentClient(ClientConfig(address=addr, tls=True, tls_ca=str(srv_crt), tls_cert=str(cli_crt),
                                      tls_key=str(cli_key), retries=0)) as c:
            assert c.describe().backends
            assert c.benchmark(mlp(16, 1), config=FAST).status is Status.OK
        # without a client certificate the handshake fails
        with AgentClient(ClientConfig(address=addr, tls=True, tls_ca=str(srv_crt), retries=0,
                                      describe_timeout_s=3)) as c:
            with pytest.raises((AgentUnavailable, grpc.RpcError)):
                c.describe()
        # plaintext to a TLS port fails too
        with AgentClient(ClientConfig(address=addr, retries=0, describe_timeout_s=3)) as c:
            with pytest.raises((AgentUnavailable, grpc.RpcError)):
                c.describe()
    finally:
        running.stop(0)
