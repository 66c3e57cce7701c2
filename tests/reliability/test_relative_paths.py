"""Defect 1: relative file options of `hilnas devices add` (the README's own `--token-file pi.token`)
must keep working from any later working directory."""
from __future__ import annotations

import pytest

from loopback import start_agent
from tls_certs import make_ca, make_cert
from hilnas.server.cli import main

pytestmark = pytest.mark.integration
TOKEN = "relative-path-token-0123456789"


def run(capsys, *argv):
    code = main(["--retries", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_token_file_given_relative_to_cwd_keeps_working(tmp_path, monkeypatch, capsys):
    running = start_agent(tmp_path / "agent", token=TOKEN)
    try:
        project = tmp_path / "project"
        project.mkdir()
        (project / "pi.token").write_text(TOKEN + "\n")
        monkeypatch.chdir(project)
        code, out, err = run(capsys, "devices", "add", "pi", "--address", f"127.0.0.1:{running.port}",
                             "--token-file", "pi.token")
        assert code == 0, err
        code, out, err = run(capsys, "devices", "describe", "pi")
        assert code == 0, err
        assert "fingerprint" in out
        # From elsewhere, naming the same workspace: the fleet file still finds the token.
        monkeypatch.chdir(tmp_path)
        code, out, err = run(capsys, "--workspace", str(project / ".hilnas"), "devices", "describe", "pi")
        assert code == 0, err
    finally:
        running.stop(0)


def test_tls_files_given_relative_to_cwd_keep_working(tmp_path, monkeypatch, capsys):
    certs = tmp_path / "project"
    ca = make_ca(certs, "ca")
    server = make_cert(certs, "server", ca)
    client = make_cert(certs, "client", ca)
    running = start_agent(tmp_path / "agent", tls_cert=str(server.cert), tls_key=str(server.key),
                          tls_client_ca=str(ca.cert))
    try:
        monkeypatch.chdir(certs)
        code, out, err = run(capsys, "devices", "add", "pi", "--address", f"localhost:{running.port}",
                             "--tls-ca", "ca.crt", "--tls-cert", "client.crt", "--tls-key", "client.key")
        assert code == 0, err
        monkeypatch.chdir(tmp_path)
        code, out, err = run(capsys, "--workspace", str(certs / ".hilnas"), "devices", "describe", "pi")
        assert code == 0, err
        assert "fingerprint" in out
    finally:
        running.stop(0)


def test_missing_relative_token_file_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "devices", "add", "pi", "--address", "192.0.2.1:50061", "--token-file", "nope.token")
    assert code == 2
    assert "nope.token" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / ".hilnas" / "fleet.toml").exists()  # nothing half-written
