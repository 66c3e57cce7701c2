"""One run per workspace: a second is refused with the PID of the first; a killed holder frees it."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from hilnas.server.run import WorkspaceBusy, workspace_lock


def _holder(ws) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time
        from hilnas.server.run import workspace_lock
        with workspace_lock({str(ws)!r}, "hilnas run examples/x.toml"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_is_refused_with_the_first_ones_pid_until_it_dies(tmp_path) -> None:
    ws = tmp_path / "ws"
    child = _holder(ws)
    try:
        with pytest.raises(WorkspaceBusy, match=rf'"hilnas run examples/x.toml" \(PID {child.pid} on .*kill {child.pid}'):
            with workspace_lock(ws, "hilnas run other.toml"):
                pass
        child.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the lock with the process
        child.wait(timeout=30)
        with workspace_lock(ws, "hilnas run other.toml") as path:
            assert "other.toml" in path.read_text()
    finally:
        child.kill()


def test_the_same_process_cannot_take_it_twice(tmp_path) -> None:
    with workspace_lock(tmp_path, "hilnas demo"):
        with pytest.raises(WorkspaceBusy, match="hilnas demo"):
            with workspace_lock(tmp_path, "hilnas demo"):
                pass
    with workspace_lock(tmp_path, "hilnas demo"):  # released on exit
        pass
