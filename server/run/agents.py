"""The agents of a run's devices: started by the run (a simulated device, this host) or reached
(an address in the run file, the workspace's fleet).

A started agent listens on loopback on a free port for as long as the run lasts. A reached agent
that does not answer is tried again with back-off (the client's retries); after the last try the
device fails with a message that says how to bring it back and resume.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hilnas.server.run.config import DeviceSpec, RunConfig

if TYPE_CHECKING:
    from hilnas.agent.results import DeviceInfo
    from hilnas.server.client import AgentClient

log = logging.getLogger("hilnas.run")


class DeviceDown(ConnectionError):
    """No agent of a device answered after the retries."""


class RunAgents:
    """Starts and reaches agents on demand; ``close`` stops the ones it started."""

    def __init__(self, config: RunConfig, workspace: Path, *, resume_command: str) -> None:
        self.config, self.workspace, self.resume_command = config, workspace, resume_command
        self._started: dict[str, object] = {}   # device key -> AgentServer
        self._clients: list[AgentClient] = []

    def __enter__(self) -> "RunAgents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, device: DeviceSpec) -> tuple[list[AgentClient], DeviceInfo]:
        """The device's clients (an answering agent first) and what it says about itself."""
        from hilnas.server.client import AgentUnavailable, ClientConfig, client_for_endpoint, AgentClient

        opts = {"retries": self.config.retries, "backoff_s": self.config.backoff_s}
        if device.started_by_run:
            server = self._start(device)
            endpoints_text = server.address  # type: ignore[attr-defined]
            clients = [AgentClient(ClientConfig(address=server.address, **opts))]  # type: ignore[attr-defined]
        else:
            endpoints = [device.endpoint] if device.endpoint else self._fleet_endpoints(device.key)
            endpoints_text = ", ".join(e.address for e in endpoints)
            clients = [client_for_endpoint(e, **opts) for e in endpoints]
        self._clients += clients
        errors = []
        for i, client in enumerate(clients):
            try:
                info = client.describe()
            except AgentUnavailable as err:
                errors.append(f"{client.config.address}: {err}")
                continue
            return [client] + clients[:i] + clients[i + 1:], info
        tries = self.config.retries + 1
        how = ("start it on the device (hilnas-agent serve ...; docs/deploy.md)" if not device.started_by_run
               else "the agent this run started did not answer")
        raise DeviceDown(f"device {device.key!r}: no agent answered at {endpoints_text} after {tries} tries with "
                         f"back-off ({'; '.join(errors)}); everything finished is kept: {how}, then run "
                         f"`{self.resume_command}` again to continue")

    def _start(self, device: DeviceSpec):
        if device.key not in self._started:
            from hilnas.agent.config import ServeConfig
            from hilnas.agent.server import create_server

            cache = self.workspace / "agent-cache" / device.key
            self._started[device.key] = create_server(ServeConfig(
                host="127.0.0.1", port=0, simulate=device.simulate, seed=device.seed, cache_dir=str(cache)))
            log.info("started the agent of %s on %s", device.key, self._started[device.key].address)  # type: ignore[attr-defined]
        return self._started[device.key]

    def _fleet_endpoints(self, key: str):
        from hilnas.server.fleet import Fleet, FleetError, default_fleet_path

        path = default_fleet_path(self.workspace)
        fleet = Fleet.load(path, missing_ok=True)
        try:
            return list(fleet.get(key).agents)
        except FleetError:
            raise DeviceDown(f"device {key!r} is not in the fleet of {self.workspace} ({path}); add it with "
                             f"`hilnas --workspace {self.workspace} devices add {key} --address HOST:PORT`, or give "
                             "it address, simulate or local = true in the run file") from None

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for server in self._started.values():
            server.stop(0)  # type: ignore[attr-defined]
        self._clients.clear()
        self._started.clear()
