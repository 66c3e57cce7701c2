"""Auth against real agents on loopback: no, wrong and short tokens; the plaintext-token warning;
mutual TLS with a throwaway CA; expired certificates. After every refusal the agent still serves
the right client."""
from __future__ import annotations

import logging
import subprocess
import sys

import grpc
import pytest

from loopback import FAST, client_for, start_agent
from tls_certs import make_ca, make_cert
from hilnas.agent import security
from hilnas.agent.results import BenchmarkRequest, Status
from hilnas.server.client import AgentClient, AgentUnavailable, ClientConfig
from testmodels import mlp, sha

pytestmark = pytest.mark.integration
TOKEN = "auth-suite-token-0123456789abcdef"


@pytest.fixture(scope="module")
def token_agent(tmp_path_factory):
    running = start_agent(tmp_path_factory.mktemp("agent"), token=TOKEN)
    yield running
    running.stop(0)


def serves_the_right_client(running, **kw) -> None:
    with client_for(running, token=TOKEN, **kw) as c:
        assert c.describe().fingerprint
        r = c.benchmark(mlp(16, 1), config=FAST)
        assert r.status is Status.OK, r.error


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", TOKEN[:-1], TOKEN + "x", "Bearer " + TOKEN])
def test_missing_or_wrong_token_is_refused_on_every_rpc(token_agent, token):
    with client_for(token_agent, token=token, retries=0) as c:
        with pytest.raises(AgentUnavailable, match="token"):
            c.describe()
        with pytest.raises(AgentUnavailable, match="token"):
            c.benchmark(mlp(16, 1), config=FAST)
        with pytest.raises(AgentUnavailable, match="UNAUTHENTICATED"):
            model = mlp(16, 1)
            list(c.benchmark_stream([BenchmarkRequest(sha256=sha(model), model=model, config=FAST)]))
    # reflection needs the token too; health does not
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{token_agent.port}") as ch:
        meta = (("authorization", f"Bearer {token}"),) if token else ()
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=5, metadata=meta))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    serves_the_right_client(token_agent)


@pytest.mark.parametrize("flag, value", [("--token", "a"), ("--token", " "), ("--token", ""),
                                         ("--token", "fifteen-chars-x"), ("--token", "has a space in it!!"),
                                         ("--token-file", "a\n")])
def test_short_or_blank_token_is_refused_at_start(tmp_path, flag, value):
    if flag == "--token-file":
        (tmp_path / "tok").write_text(value)
        value = str(tmp_path / "tok")
    proc = subprocess.run([sys.executable, "-m", "hilnas.agent.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                           "--cache-dir", str(tmp_path / "cache"), flag, value],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0] and "secrets.token_urlsafe" in lines[0], proc.stderr
    with pytest.raises(ValueError, match="token"):
        start_agent(tmp_path, token="a")


def test_token_over_plaintext_beyond_loopback_warns_at_start(tmp_path, monkeypatch, caplog):
    # Pretend 127.0.0.1 is a LAN address, so the warning path runs while the test binds loopback only.
    monkeypatch.setattr(security, "is_loopback", lambda host: False)
    with caplog.at_level(logging.WARNING, logger="hilnas.agent"):
        running = start_agent(tmp_path, token=TOKEN)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("clear text" in w and "--tls-cert" in w for w in warnings), warnings
        serves_the_right_client(running)
    finally:
        running.stop(0)
    assert security.plaintext_token_warning("0.0.0.0", TOKEN, tls=True) is None
    monkeypatch.undo()
    assert security.plaintext_token_warning("127.0.0.1", TOKEN, tls=False) is None
    assert "clear text" in security.plaintext_token_warning("192.168.1.20", TOKEN, tls=False)


def test_plaintext_loopback_token_does_not_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hilnas.agent"):
        running = start_agent(tmp_path, token=TOKEN)
    running.stop(0)
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]


# -- mutual TLS ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, other_ca = make_ca(d, "ca"), make_ca(d, "other-ca")
    return {"ca": ca, "server": make_cert(d, "server", ca), "client": make_cert(d, "client", ca),
            "stranger": make_cert(d, "stranger", other_ca), "expired_client": make_cert(d, "old-client", ca, expired=True),
            "expired_server": make_cert(d, "old-server", ca, expired=True)}


def tls_client(running, pki, cert=None, *, ca=None, token=TOKEN) -> AgentClient:
    return AgentClient(ClientConfig(
        address=f"localhost:{running.port}", tls=True, tls_ca=str((ca or pki["ca"]).cert),
        tls_cert=str(cert.cert) if cert else None, tls_key=str(cert.key) if cert else None, token=token,
        retries=0, describe_timeout_s=5))


def test_mutual_tls_with_a_throwaway_ca(tmp_path, pki):
    running = start_agent(tmp_path, token=TOKEN, tls_cert=str(pki["server"].cert), tls_key=str(pki["server"].key),
                          tls_client_ca=str(pki["ca"].cert))
    try:
        with tls_client(running, pki, pki["client"]) as c:
            assert c.describe().fingerprint
            assert c.benchmark(mlp(16, 1), config=FAST).status is Status.OK
        refused = {"no client certificate": None, "certificate of another CA": pki["stranger"],
                   "expired client certificate": pki["expired_client"]}
        for why, cert in refused.items():
            with tls_client(running, pki, cert) as c:
                with pytest.raises(AgentUnavailable):
                    c.describe()
        with tls_client(running, pki, pki["client"], token="wrong-token-wrong-token") as c:
            with pytest.raises(AgentUnavailable, match="token"):   # TLS does not replace the token
                c.describe()
        with AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}", retries=0, describe_timeout_s=5)) as c:
            with pytest.raises(AgentUnavailable):                  # plaintext to a TLS port
                c.describe()
        with tls_client(running, pki, pki["client"]) as c:         # and it still serves the right client
            assert c.benchmark(mlp(16, 1, seed=3), config=FAST).status is Status.OK
    finally:
        running.stop(0)


def test_expired_server_certificate_is_refused_by_the_client(tmp_path, pki):
    running = start_agent(tmp_path, tls_cert=str(pki["expired_server"].cert), tls_key=str(pki["expired_server"].key))
    try:
        with tls_client(running, pki, token=None) as c:
            with pytest.raises(AgentUnavailable):
                c.describe()
    finally:
        running.stop(0)
