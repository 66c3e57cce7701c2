"""A real `hilnas-agent serve` process on loopback (port 0) for the load and fault suites."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


class AgentProcess:
    """Starts `hilnas-agent serve ARGS --port PORT` and reads the port it bound; kill -9 with ``kill()``."""

    def __init__(self, folder: Path, *args: str, port: int = 0):
        self.folder, self.args = Path(folder), list(args)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "agent.log"
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "AgentProcess":
        cmd = [sys.executable, "-m", "hilnas.agent.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--cache-dir", str(self.folder / "cache"), "--log-level", "WARNING", *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        line = _readline(self.proc, timeout_s)
        m = re.search(r"serving on \S+:(\d+)", line)
        if not m:
            self.kill()
            raise RuntimeError(f"agent did not start: {line!r}; log: {self.log.read_text()[-2000:]}")
        self.port = int(m.group(1))
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2 ** 20

    def worker_cpu_s(self) -> float:
        """CPU time its worker processes have used (0 when none runs)."""
        total = 0.0
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def wait_measuring(self, timeout_s: float = 60.0) -> bool:
        """Until a worker is busy running a model (its CPU time grows by 0.3 s)."""
        base = self.worker_cpu_s()
        return wait_until(lambda: self.worker_cpu_s() > base + 0.3, timeout_s, every_s=0.05)

    def kill(self) -> None:
        """kill -9 of the agent and of its worker (a power cut, an OOM kill)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for child in children:   # the worker exits on its own within a second; do not wait for it
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


def _readline(proc: subprocess.Popen, timeout_s: float) -> str:
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return out[0].decode(errors="replace") if out else ""


def wait_until(predicate, timeout_s: float, every_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every_s)
    return False
