"""The parts of a fleet file, as validated frozen records: device keys, agent addresses, TLS.

``DeviceEntry`` is one device key with the ``AgentEndpoint``s that serve it; each record checks
itself on construction (address syntax, token rules, TLS pairs, duplicate agents) and raises
``FleetError`` saying what is wrong. ``check_device_key`` is shared with the run store.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

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


def _norm_address(address: str) -> str:
    host, port = parse_address(address)
    return f"{host.lower()}:{port}"


def _norm_address_or_none(text: str) -> str | None:
    try:
        return _norm_address(text)
    except FleetError:
        return None
