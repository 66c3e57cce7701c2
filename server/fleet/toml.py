"""Reading fleet-file TOML tables into records, and writing TOML strings back.

Every table is checked for unknown keys (a typo must not silently drop a setting), and errors
name the file, device and agent. Relative ``token_file`` and TLS paths are resolved against
the fleet file's folder.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from hilnas.server.fleet.entries import AgentEndpoint, DeviceEntry, FleetError, TlsConfig

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
