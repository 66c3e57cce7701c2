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

The records live in ``entries`` and the TOML reading/writing helpers in ``toml``;
this module holds ``Fleet`` and re-exports the public names.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from hilnas.server.fleet.entries import (AgentEndpoint, DeviceEntry, FleetError, TlsConfig,
                                         UnknownDeviceError, _norm_address,
                                         _norm_address_or_none, check_device_key, is_loopback,
                                         parse_address)
from hilnas.server.fleet.toml import _device_from_toml, _only_keys, _toml_str

FLEET_FILE = "fleet.toml"
FORMAT_VERSION = 1


def default_fleet_path(workspace: Path | str) -> Path:
    return Path(workspace) / FLEET_FILE


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
        # Absolute, so a relative path in the file means the same from any working directory.
        fleet = cls.from_toml(text, base_dir=path.parent.absolute(), source=str(path),
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


__all__ = ["FLEET_FILE", "FleetError", "UnknownDeviceError", "default_fleet_path",
           "parse_address", "is_loopback", "check_device_key", "TlsConfig", "AgentEndpoint",
           "DeviceEntry", "Fleet"]
