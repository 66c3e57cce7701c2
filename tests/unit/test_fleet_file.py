"""The fleet file: round trip, and clear errors for bad addresses, tokens and device keys."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hilnas.server.fleet import (AgentEndpoint, DeviceEntry, Fleet, FleetError, TlsConfig,
                                 UnknownDeviceError, default_fleet_path, parse_address)

GOOD = """
version = 1

[[devices]]
key = "raspi4"
notes = "Pi 4B \\"bench\\"\\nsecond line"

[[devices.agents]]
address = "192.168.1.20:50061"
name = "pi-a"
token_file = "pi.token"
tls = { ca = "ca.pem", cert = "client.pem", key = "client.key" }

[[devices.agents]]
address = "pi-b.local:50061"
token = "s3cr\\"et"
tls = true

[[devices]]
key = "local"

[[devices.agents]]
address = "127.0.0.1:50061"

[[devices.agents]]
address = "[::1]:50062"
"""


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    for name in ("pi.token", "ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("tok-123\n" if name == "pi.token" else "PEM")
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = default_fleet_path(folder)
    path.write_text(text)
    return path


def test_load_resolves_paths_and_round_trips(fleet_dir: Path) -> None:
    fleet = Fleet.load(_write(fleet_dir, GOOD))
    assert fleet.keys() == ["raspi4", "local"]
    pi = fleet.get("raspi4")
    a, b = pi.agents
    assert a.token_file == str(fleet_dir / "pi.token") and a.read_token() == "tok-123"
    assert a.tls == TlsConfig(ca=str(fleet_dir / "ca.pem"), cert=str(fleet_dir / "client.pem"),
                              key=str(fleet_dir / "client.key"))
    assert (b.host, b.port, b.read_token(), b.tls) == ("pi-b.local", 50061, 's3cr"et',
                                                        TlsConfig())
    assert pi.notes == 'Pi 4B "bench"\nsecond line'
    assert fleet.get("local").agents[1].host == "::1"
    out = fleet.save(fleet_dir / "copy" / "fleet.toml")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert Fleet.load(out) == fleet


def test_edit_and_save(tmp_path: Path) -> None:
    path = default_fleet_path(tmp_path)
    fleet = Fleet.load(path, missing_ok=True)
    assert len(fleet) == 0
    fleet.add(DeviceEntry("sim-pi", (AgentEndpoint("127.0.0.1:50070", name="s1"),)))
    fleet.add_agent("sim-pi", AgentEndpoint("localhost:50071"))
    with pytest.raises(FleetError, match="twice"):
        fleet.add_agent("sim-pi", AgentEndpoint("LOCALHOST:50071"))
    with pytest.raises(FleetError, match="already in the fleet"):
        fleet.add(DeviceEntry("sim-pi", (AgentEndpoint("127.0.0.1:1"),)))
    fleet.save()
    again = Fleet.load(path)
    assert [a.address for a in again.get("sim-pi").agents] == ["127.0.0.1:50070",
                                                               "localhost:50071"]
    again.remove_agent("sim-pi", "s1")
    with pytest.raises(FleetError, match="last agent"):
        again.remove_agent("sim-pi", "localhost:50071")
    assert again.remove("sim-pi").key == "sim-pi" and "sim-pi" not in again


@pytest.mark.parametrize("address, message", [
    ("192.168.1.5", "has no port"),
    ("pi.local:0", "out of range"),
    ("pi.local:70000", "out of range"),
    (":50061", "empty host"),
    ("pi.local:port", "not a number"),
    ("http://pi.local:50061", "scheme"),
    ("fe80::1:50061", r"\[addr\]:port"),
    ("bad host:50061", "not a valid host"),
    ("", "empty"),
])
def test_bad_address(address: str, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        parse_address(address)


def test_bad_address_in_file_names_device_and_agent(tmp_path: Path) -> None:
    text = '[[devices]]\nkey = "pi"\n[[devices.agents]]\nname = "pi-a"\naddress = "10.0.0.7"\n'
    with pytest.raises(FleetError) as err:
        Fleet.load(_write(tmp_path, text))
    msg = str(err.value)
    assert "fleet.toml" in msg and "'pi'" in msg and "'pi-a'" in msg and "no port" in msg


def test_non_loopback_agent_needs_a_token(tmp_path: Path) -> None:
    text = '[[devices]]\nkey = "pi"\n[[devices.agents]]\naddress = "10.0.0.7:50061"\n'
    with pytest.raises(FleetError, match="no token.*insecure = true"):
        Fleet.load(_write(tmp_path, text))
    fleet = Fleet.load(_write(tmp_path, text + "insecure = true\n"))
    assert fleet.get("pi").agents[0].read_token() is None
    assert Fleet.load(fleet.save()) == fleet  # the insecure flag survives a save


def test_missing_token_file(tmp_path: Path) -> None:
    text = ('[[devices]]\nkey = "pi"\n[[devices.agents]]\naddress = "10.0.0.7:50061"\n'
            'token_file = "gone.token"\n')
    path = _write(tmp_path, text)
    with pytest.raises(FleetError, match="cannot read token_file .*gone.token"):
        Fleet.load(path)
    fleet = Fleet.load(path, check_files=False)  # e.g. to list or remove the entry
    with pytest.raises(FleetError, match="gone.token"):
        fleet.check_files()
    (tmp_path / "gone.token").write_text("  \n")
    with pytest.raises(FleetError, match="is empty"):
        Fleet.load(path)


def test_token_and_tls_rules() -> None:
    with pytest.raises(FleetError, match="not both"):
        AgentEndpoint("10.0.0.7:1", token="a", token_file="/x")
    with pytest.raises(FleetError, match="cert and key"):
        TlsConfig(cert="/c.pem")
    with pytest.raises(FleetError, match="no agents"):
        DeviceEntry("pi", ())
    with pytest.raises(FleetError, match="not valid"):
        DeviceEntry("pi 4", (AgentEndpoint("127.0.0.1:1"),))


def test_duplicate_device_key(tmp_path: Path) -> None:
    one = '[[devices]]\nkey = "pi"\n[[devices.agents]]\naddress = "127.0.0.1:1"\n'
    with pytest.raises(FleetError, match="devices\\[1\\].*'pi' is already in the fleet"):
        Fleet.load(_write(tmp_path, one + one))


def test_unknown_device_lists_known_ones(fleet_dir: Path) -> None:
    fleet = Fleet.load(_write(fleet_dir, GOOD))
    with pytest.raises(UnknownDeviceError, match=r"'raspi3'.*did you mean 'raspi4'.*raspi4, local"):
        fleet.get("raspi3")
    with pytest.raises(UnknownDeviceError, match="no devices yet"):
        Fleet().get("x")


@pytest.mark.parametrize("text, message", [
    ('[[devices]]\nkey = "pi"\n[[devices.agents]]\nadress = "127.0.0.1:1"\n',
     "unknown key 'adress' \\(did you mean 'address'\\?\\)"),
    ('version = 2\n', "version 2 is not supported"),
    ('[[devices]]\nkey = "pi"\n', "no agents"),
    ('[[devices]]\nkey = "pi"\n[[devices.agents]]\naddress = "127.0.0.1:1"\ntls = "yes"\n',
     "'tls' must be"),
    ('[devices\n', "not valid TOML"),
])
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        Fleet.load(_write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="no fleet file"):
        Fleet.load(tmp_path / "fleet.toml")


def test_docstring_example_is_a_valid_fleet_file() -> None:
    import hilnas.server.fleet.file as fleet_module

    doc = fleet_module.__doc__ or ""
    example = doc.split("Format::\n", 1)[1].split("\nRules", 1)[0]
    text = "\n".join(line[4:] for line in example.splitlines())
    fleet = Fleet.from_toml(text, check_files=False)
    assert fleet.keys() == ["raspi4", "local"]
    assert len(fleet.get("raspi4").agents) == 2
