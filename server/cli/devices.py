"""``hilnas devices``: the fleet file's devices and the agents that serve them."""
from __future__ import annotations

from pathlib import Path

from hilnas.server.cli.common import _clients, _emit, _fleet, _open_store, add, json_flag


def _absolute(path: str | None) -> str | None:
    """A file named on the command line is relative to the current directory; the fleet file
    stores it absolute, since it is read later from wherever the next command runs."""
    return str(Path(path).expanduser().absolute()) if path else path


def cmd_devices_add(args) -> int:
    from hilnas.server.fleet import AgentEndpoint, DeviceEntry, TlsConfig

    fleet = _fleet(args)
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = TlsConfig(ca=_absolute(args.tls_ca), cert=_absolute(args.tls_cert), key=_absolute(args.tls_key),
                        server_name=args.tls_server_name)
    endpoint = AgentEndpoint(address=args.address, token=args.token, token_file=_absolute(args.token_file), tls=tls,
                             name=args.name or "", insecure=args.insecure)
    endpoint.check_files()
    if args.key in fleet:
        fleet.add_agent(args.key, endpoint)
        what = f"added agent {endpoint.address} to device {args.key}"
    else:
        fleet.add(DeviceEntry(key=args.key, agents=(endpoint,), notes=args.notes or ""))
        what = f"added device {args.key} ({endpoint.address})"
    path = fleet.save()
    print(f"{what}; fleet file {path}")
    return 0


def cmd_devices_list(args) -> int:
    fleet = _fleet(args, check_files=False)
    rows = [{"key": e.key, "agents": [a.address for a in e.agents], "notes": e.notes} for e in fleet]
    text = "\n".join(f"{r['key']:<16} {', '.join(r['agents'])}  {r['notes']}" for r in rows) or \
        "no devices yet: hilnas devices add KEY --address HOST:PORT"
    _emit(args, rows, text)
    return 0


def cmd_devices_describe(args) -> int:
    from hilnas.server.client import AgentUnavailable

    out, ok = [], True
    for client in _clients(args, args.key):
        with client:
            try:
                info = client.describe()
                out.append({"agent": client.config.address, "info": info})
            except AgentUnavailable as err:
                ok = False
                out.append({"agent": client.config.address, "error": str(err)})
    with _open_store(args) as store:
        for item in out:
            if "info" in item:
                store.upsert_device(args.key, fingerprint=item["info"].fingerprint, info=item["info"])
                break
    lines = []
    for item in out:
        if "error" in item:
            lines.append(f"{item['agent']}: UNREACHABLE: {item['error']}")
            continue
        i = item["info"]
        kind = f"simulated {i.profile}" if i.simulated else i.cpu_model
        meters = ", ".join(f"{m.name}{'' if m.available else ' (unavailable)'}" for m in i.energy_meters) or "none"
        backends = ", ".join(f"{b} {i.runtime_versions.get(b, '')}".strip() for b in i.backends)
        lines.append(f"{item['agent']}: {kind}, {i.cpu_cores} cores, {i.memory_bytes / 2**30:.1f} GiB, {i.os}\n"
                     f"  fingerprint {i.fingerprint}; backends {backends}\n"
                     f"  energy meters: {meters}; agent {i.agent_version}")
    _emit(args, out, "\n".join(lines))
    return 0 if ok else 1


def cmd_devices_remove(args) -> int:
    fleet = _fleet(args, check_files=False)
    fleet.remove(args.key)
    fleet.save()
    print(f"removed device {args.key} from the fleet (its LUT rows stay in the store)")
    return 0


# -- parser -----------------------------------------------------------------------------------
def register(sub) -> None:
    dev = sub.add_parser("devices", help="the fleet: which agents serve which device")
    dsub = dev.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    p = add(dsub, "add", cmd_devices_add, "add a device (or another agent of an existing one) to the fleet file")
    p.add_argument("key", help="device key, e.g. raspi4 (letters, digits, . _ -)")
    p.add_argument("--address", required=True, help="agent address HOST:PORT")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--token-file", help="file holding the agent's token (needed beyond loopback); relative to the current directory, "
                     "stored as an absolute path")
    tok.add_argument("--token", help="the token itself (stored in the fleet file, mode 0600)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback agent without a token")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
    p.add_argument("--tls-ca", help="CA that signed the agent's certificate (PEM); file paths are stored absolute")
    p.add_argument("--tls-cert", help="client certificate (PEM), for agents that require one")
    p.add_argument("--tls-key", help="client key (PEM)")
    p.add_argument("--tls-server-name", help="name in the agent's certificate, if not the host")
    p.add_argument("--name", help="label for this agent in messages")
    p.add_argument("--notes", help="free text about the device")
    p = add(dsub, "list", cmd_devices_list, "list the fleet's devices")
    json_flag(p)
    p = add(dsub, "describe", cmd_devices_describe, "ask a device's agents what they are (fingerprint, backends, meters)")
    p.add_argument("key")
    json_flag(p)
    p = add(dsub, "remove", cmd_devices_remove, "remove a device from the fleet file")
    p.add_argument("key")
