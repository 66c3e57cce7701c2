"""One run at a time per workspace: the lock file ``<workspace>/run.lock``.

Two runs on one workspace would measure on the same devices at once (each timing the other's
load) and interleave their steps. ``workspace_lock`` takes an exclusive ``flock`` on the lock
file and writes the holder's PID and command into it; a second run is refused with that PID.
The kernel drops the lock when its process dies, even on ``kill -9``, so a killed run never
leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = "run.lock"


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace's run lock; the message names its PID."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


@contextlib.contextmanager
def workspace_lock(workspace: Path | str, command: str) -> Iterator[Path]:
    """Hold the workspace's run lock for the block; ``WorkspaceBusy`` when another process has it."""
    import fcntl

    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    path = ws / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            pid = holder.get("pid")
            since = time.strftime("%H:%M:%S", time.localtime(holder["started"])) if "started" in holder else "?"
            raise WorkspaceBusy(
                f"workspace {ws} is busy: \"{holder.get('command', 'hilnas run')}\" (PID {pid} on "
                f"{holder.get('host', '?')}, since {since}) is running there; wait for it to finish, stop it "
                f"(kill {pid}), or give this run another --workspace", pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "started": time.time()}).encode())
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)  # closing drops the flock


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
