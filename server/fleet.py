"""The fleet file: which devices exist and which agents serve each of them.

Default location ``<workspace>/fleet.toml`` (workspace default ``./.hilnas``). Format::

    # hilnas fleet file
    version = 1

    [[devices]]
    key = "raspi4"                      # letters, digits, '.', '_', '-'
    notes = "Pi 4B on the lab bench"    # optional

    [[devices.agents]]                  # one table per agent; several share the work
    address = "192.168.1.20:50061"      # host:port; IPv6 as "[fe80::1]:50061"
    name = "pi-a"                       # optional, for messages
    token_file = "pi.token"             # or: token = "..." (the file is written 0600)
    tls = { ca = "ca.pem", cert = "client.pem", key = "client.key" }  # optional

    [[devices.agents]]
    address = "192.168.1.21:50061"
    token_file = "pi.token"
    tls = true                          # TLS with the system's root certificates

    [[devices]]
    key = "local"

    [[devices.agents]]
    address = "127.0.0.1:50061"         # loopback: no token needed

Rules (checked on load, with the file, device and agent named in the error):
- ``address`` is ``host:port`` with a non-empty host and a port in 1..65535;
- an agent on a non-loopback address needs ``token`` or ``token_file``, unless
  ``insecure = true`` is written explicitly; ``token`` and ``token_file`` exclude each other;
- ``token_file`` and TLS files must exist (skip with ``check_files=False``, e.g. to list or
  remove a broken entry); relative paths are relative to the fleet file's folder;
- ``tls`` is ``false``/absent (plain), ``true`` (system roots) or a table with ``ca``
  (server CA), ``cert`` + ``key`` (client certificate, both or neither), ``server_name``
  (the name to check the server certificate against, when it differs from the host);
- device keys are unique; every device has at least one agent; an address appears once per
  device; unknown keys are errors (a typo must not silently drop a setting).
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FLEET_FILE = "fleet.toml"
FORMAT_VERSION = 1
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")  # DNS name or dotted IPv4


class FleetError(ValueError):
    """The fleet file or a requested change is invalid; the message says where and why."""


class UnknownDeviceError(FleetError):
    """A device key the fleet file does not name."""


def check_device_key(key: object) -> str:
    """Return ``key`` if it is a valid device key (also used by the store), else raise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise FleetError(f"device key {key!r} is not valid: use letters, digits, "
                         "'.', '_', '-' (starting with a letter or digit)")
    return key


def default_fleet_path(workspace: Path | str) -> Path:
    return Path(workspace) / FLEET_FILE


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[addr]:port``) into host and port, or raise FleetError."""
    if not isinstance(address, str) or not address.strip():
        raise FleetError("address is empty (expected host:port, e.g. 127.0.0.1:50061)")
    addr = address.strip()
    if "://" in addr:
        raise FleetError(f"address {address!r} has a scheme; write only host:port")
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise FleetError(f"address {address!r} has no port (expected [ipv6]:port)")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise FleetError(f"address {address!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = addr.rpartition(":")
        if not sep:
            raise FleetError(f"address {address!r} has no port (expected host:port, "
                             f"e.g. {addr}:50061)")
        if ":" in host:
            raise FleetError(f"address {address!r}: write an IPv6 address as [addr]:port")
        if not host:
            raise FleetError(f"address {address!r} has an empty host")
        if not _HOST_RE.match(host):
            raise FleetError(f"address {address!r}: {host!r} is not a valid host name or IP")
    if not port_text.isdigit():
        raise FleetError(f"address {address!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise FleetError(f"address {address!r}: port {port} is out of range 1..65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards one agent; all fields None = TLS with the system's root certificates."""

    ca: str | None = None           # PEM of the CA that signed the agent's certificate
    cert: str | None = None         # client certificate chain (PEM), for agents that demand one
    key: str | None = None          # client private key (PEM)
    server_name: str | None = None  # name to check the agent's certificate against

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise FleetError("tls: cert and key go together (give both or neither)")
        for name in ("ca", "cert", "key", "server_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise FleetError(f"tls.{name} must be a non-empty string")

    def files(self) -> dict[str, str]:
        return {k: v for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key)) if v}


@dataclass(frozen=True)
class AgentEndpoint:
    """How to reach one agent: address, credentials, TLS."""

    address: str                    # "host:port"
    token: str | None = None        # the agent's token, inline
    token_file: str | None = None   # or a file holding it (first line, whitespace stripped)
    tls: TlsConfig | None = None    # None = plain connection
    name: str = ""                  # label in messages; defaults to the address
    insecure: bool = False          # allow a non-loopback agent without a token

    def __post_init__(self) -> None:
        host, _ = parse_address(self.address)
        if self.token is not None and self.token_file is not None:
            raise FleetError("give token or token_file, not both")
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise FleetError("token is empty")
        if self.token_file is not None and (not isinstance(self.token_file, str)
                                            or not self.token_file.strip()):
            raise FleetError("token_file is empty")
        if not is_loopback(host) and self.token is None and self.token_file is None \
                and not self.insecure:
            raise FleetError(f"agent at {self.address} is not on loopback and has no token: "
                             "set token_file (or token), or write insecure = true to allow it")

    @property
    def host(self) -> str:
        return parse_address(self.address)[0]

    @property
    def port(self) -> int:
        return parse_address(self.address)[1]

    @property
    def label(self) -> str:
        return self.name or self.address

    def read_token(self) -> str | None:
        """The token to send (None = none), reading ``token_file`` now."""
        if self.token is not None:
            return self.token
        if self.token_file is None:
            return None
        try:
            text = Path(self.token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise FleetError(f"agent {self.label}: cannot read token_file "
                             f"{self.token_file}: {exc.strerror or exc}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise FleetError(f"agent {self.label}: token_file {self.token_file} is empty")
        return token

    def check_files(self) -> None:
        """Raise FleetError unless the token file and TLS files exist and are readable."""
        self.read_token()
        for what, path in (self.tls.files() if self.tls else {}).items():
            if not Path(path).is_file():
                raise FleetError(f"agent {self.label}: tls.{what} file {path} does not exist")


@dataclass(frozen=True)
class DeviceEntry:
    """One device key and the agents that serve it (identical boards may share one key)."""

    key: str
    agents: tuple[AgentEndpoint, ...]
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        check_device_key(self.key)
        if not self.agents:
            raise FleetError(f"device {self.key!r} has no agents")
        seen: set[str] = set()
        for agent in self.agents:
            if not isinstance(agent, AgentEndpoint):
                raise TypeError(f"device {self.key!r}: agents must be AgentEndpoint objects")
            norm = _norm_address(agent.address)
            if norm in seen:
                raise FleetError(f"device {self.key!r} lists agent {agent.address} twice")
            seen.add(norm)


class Fleet:
    """The devices of one workspace; load, change and save the fleet file."""

    def __init__(self, devices: Iterable[DeviceEntry] = (), *, path: Path | None = None) -> None:
        self.path = path
        self._devices: dict[str, DeviceEntry] = {}
        for entry in devices:
            self.add(entry)

    # -------------------------------------------------------------- reading
    @classmethod
    def load(cls, path: Path | str, *, missing_ok: bool = False,
             check_files: bool = True) -> "Fleet":
        """Read and validate a fleet file; a missing file is an empty fleet if ``missing_ok``."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path=path)
            raise FleetError(f"no fleet file at {path}; add a device first "
                             "(hilnas devices add)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FleetError(f"cannot read fleet file {path}: {exc}") from None
        fleet = cls.from_toml(text, base_dir=path.parent, source=str(path),
                              check_files=check_files)
        fleet.path = path
        return fleet

    @classmethod
    def from_toml(cls, text: str, *, base_dir: Path | None = None, source: str = "<fleet>",
                  check_files: bool = True) -> "Fleet":
        try:
            import tomllib  # Python >= 3.11
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FleetError(f"{source}: not valid TOML: {exc}") from None
        _only_keys(data, {"version", "devices"}, source)
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise FleetError(f"{source}: fleet file version {version!r} is not supported "
                             f"(this hilnas reads version {FORMAT_VERSION})")
        devices = data.get("devices", [])
        if not isinstance(devices, list):
            raise FleetError(f"{source}: 'devices' must be an array of tables ([[devices]])")
        fleet = cls()
        for i, raw in enumerate(devices):
            where = f"{source}: devices[{i}]"
            if not isinstance(raw, dict):
                raise FleetError(f"{where}: must be a table")
            if isinstance(raw.get("key"), str):
                where += f" ({raw['key']!r})"
            try:
                entry = _device_from_toml(raw, base_dir, where)
                if check_files:
                    for agent in entry.agents:
                        agent.check_files()
                fleet.add(entry)
            except FleetError as exc:
                if str(exc).startswith(where):
                    raise
                raise FleetError(f"{where}: {exc}") from None
        return fleet

    # -------------------------------------------------------------- writing
    def to_toml(self) -> str:
        out = ["# hilnas fleet file: devices and the agents that serve them.",
               "# Format: see the docstring of hilnas.server.fleet.",
               f"version = {FORMAT_VERSION}"]
        for entry in self._devices.values():
            out += ["", "[[devices]]", f"key = {_toml_str(entry.key)}"]
            if entry.notes:
                out.append(f"notes = {_toml_str(entry.notes)}")
            for agent in entry.agents:
                out += ["", "[[devices.agents]]", f"address = {_toml_str(agent.address)}"]
                if agent.name:
                    out.append(f"name = {_toml_str(agent.name)}")
                if agent.token is not None:
                    out.append(f"token = {_toml_str(agent.token)}")
                if agent.token_file is not None:
                    out.append(f"token_file = {_toml_str(agent.token_file)}")
                if agent.insecure:
                    out.append("insecure = true")
                if agent.tls is not None:
                    fields = [f"{k} = {_toml_str(v)}" for k, v in
                              (("ca", agent.tls.ca), ("cert", agent.tls.cert),
                               ("key", agent.tls.key), ("server_name", agent.tls.server_name))
                              if v is not None]
                    out.append(f"tls = {{ {', '.join(fields)} }}" if fields else "tls = true")
        return "\n".join(out) + "\n"

    def save(self, path: Path | str | None = None) -> Path:
        """Write the file atomically, readable only by its owner (it may hold tokens)."""
        target = Path(path).expanduser() if path is not None else self.path
        if target is None:
            raise FleetError("no path to save the fleet file to")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_toml())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.path = target
        return target

    # -------------------------------------------------------------- changing
    def add(self, entry: DeviceEntry, *, replace_existing: bool = False) -> None:
        if entry.key in self._devices and not replace_existing:
            raise FleetError(f"device {entry.key!r} is already in the fleet "
                             "(remove it first, or add an agent to it)")
        self._devices[entry.key] = entry

    def add_agent(self, key: str, agent: AgentEndpoint) -> DeviceEntry:
        """Add one more agent to an existing device; returns the new entry."""
        entry = self.get(key)
        new = replace(entry, agents=(*entry.agents, agent))
        self._devices[key] = new
        return new

    def remove_agent(self, key: str, address_or_name: str) -> DeviceEntry:
        """Remove one agent (by address or name); a device's last agent goes with ``remove``."""
        entry = self.get(key)
        keep = tuple(a for a in entry.agents
                     if a.name != address_or_name
                     and _norm_address(a.address) != _norm_address_or_none(address_or_name))
        if len(keep) == len(entry.agents):
            raise FleetError(f"device {key!r} has no agent {address_or_name!r}; its agents: "
                             + ", ".join(a.label for a in entry.agents))
        if not keep:
            raise FleetError(f"{address_or_name!r} is the last agent of {key!r}; "
                             "remove the device instead")
        new = replace(entry, agents=keep)
        self._devices[key] = new
        return new

    def remove(self, key: str) -> DeviceEntry:
        entry = self.get(key)
        del self._devices[key]
        return entry

    # -------------------------------------------------------------- querying
    def get(self, key: str) -> DeviceEntry:
        try:
            return self._devices[key]
        except KeyError:
            raise UnknownDeviceError(self._unknown_message(key)) from None

    def keys(self) -> list[str]:
        return list(self._devices)

    def check_files(self) -> None:
        """Raise FleetError unless every token file and TLS file is there."""
        for entry in self._devices.values():
            for agent in entry.agents:
                try:
                    agent.check_files()
                except FleetError as exc:
                    raise FleetError(f"device {entry.key!r}: {exc}") from None

    def __iter__(self) -> Iterator[DeviceEntry]:
        return iter(list(self._devices.values()))

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, key: object) -> bool:
        return key in self._devices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fleet) and list(self) == list(other)

    def _unknown_message(self, key: str) -> str:
        where = f" in {self.path}" if self.path else ""
        if not self._devices:
            return f"unknown device {key!r}: the fleet{where} has no devices yet"
        close = difflib.get_close_matches(key, list(self._devices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"unknown device {key!r}{hint}; devices{where}: "
                + ", ".join(self._devices))


# ---------------------------------------------------------------------- TOML helpers
_AGENT_KEYS = {"address", "name", "token", "token_file", "tls", "insecure"}
_TLS_KEYS = {"ca", "cert", "key", "server_name"}


def _device_from_toml(raw: dict[str, Any], base_dir: Path | None, where: str) -> DeviceEntry:
    _only_keys(raw, {"key", "notes", "agents"}, where)
    key, notes, agents = raw.get("key"), raw.get("notes", ""), raw.get("agents", [])
    if not isinstance(key, str):
        raise FleetError(f"{where}: 'key' is missing or not a string")
    if not isinstance(notes, str):
        raise FleetError(f"{where}: 'notes' must be a string")
    if not isinstance(agents, list):
        raise FleetError(f"{where}: 'agents' must be an array of tables ([[devices.agents]])")
    endpoints = []
    for j, a in enumerate(agents):
        label = f"{where}, agent {j}"
        if not isinstance(a, dict):
            raise FleetError(f"{label}: must be a table")
        if isinstance(a.get("name"), str) and a["name"]:
            label += f" ({a['name']!r})"
        try:
            endpoints.append(_agent_from_toml(a, base_dir, label))
        except FleetError as exc:
            raise FleetError(exc.args[0] if str(exc).startswith(label) else f"{label}: {exc}") \
                from None
    return DeviceEntry(key=key, agents=tuple(endpoints), notes=notes)


def _agent_from_toml(a: dict[str, Any], base_dir: Path | None, where: str) -> AgentEndpoint:
    _only_keys(a, _AGENT_KEYS, where)
    for name in ("address", "name", "token", "token_file"):
        if name in a and not isinstance(a[name], str):
            raise FleetError(f"{where}: {name!r} must be a string")
    if "address" not in a:
        raise FleetError(f"{where}: 'address' is missing")
    insecure = a.get("insecure", False)
    if not isinstance(insecure, bool):
        raise FleetError(f"{where}: 'insecure' must be true or false")
    tls_raw = a.get("tls", False)
    tls: TlsConfig | None
    if tls_raw is False:
        tls = None
    elif tls_raw is True:
        tls = TlsConfig()
    elif isinstance(tls_raw, dict):
        _only_keys(tls_raw, _TLS_KEYS, f"{where}: tls")
        if any(not isinstance(v, str) for v in tls_raw.values()):
            raise FleetError(f"{where}: tls values must be strings")
        tls = TlsConfig(**{k: (_resolve(v, base_dir) if k != "server_name" else v)
                           for k, v in tls_raw.items()})
    else:
        raise FleetError(f"{where}: 'tls' must be true, false or a table")
    token_file = a.get("token_file")
    return AgentEndpoint(address=a["address"], token=a.get("token"),
                         token_file=_resolve(token_file, base_dir) if token_file else token_file,
                         tls=tls, name=a.get("name", ""), insecure=insecure)


def _only_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)"
                             if (m := difflib.get_close_matches(k, sorted(allowed), n=1)) else "")
                 for k in extra]
        raise FleetError(f"{where}: unknown key {', '.join(hints)}; "
                         f"allowed: {', '.join(sorted(allowed))}")


def _resolve(path: str, base_dir: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _norm_address(address: str) -> str:
    host, port = parse_address(address)
    return f"{host.lower()}:{port}"


def _norm_address_or_none(text: str) -> str | None:
    try:
        return _norm_address(text)
    except FleetError:
        return None


def _toml_str(value: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


__all__ = ["FLEET_FILE", "FleetError", "UnknownDeviceError", "default_fleet_path",
           "parse_address", "is_loopback", "check_device_key", "TlsConfig", "AgentEndpoint",
           "DeviceEntry", "Fleet"]
