"""An error that asks the user to do something names the exact command, and that command fixes it:
a search on a device without its LUT, or with a LUT built for another shape of the space."""
from __future__ import annotations

import re
import shlex

import pytest

from hilnas.server.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

SEARCH = ["search", "dca", "--device", "pi", "--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1",
          "--dataset", "demo", "--budget", "latency_ms=1", "--search-epochs", "1", "--train-epochs", "1",
          "--max-batches", "2", "--quiet", "--min-runs", "3", "--min-seconds", "0", "--warmup", "1"]


def hilnas(capsys, ws, *argv):
    code = main(["--workspace", str(ws), "--retries", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def advised(err: str) -> list[str]:
    """The command between backticks in an error, as argv (without the leading 'hilnas')."""
    m = re.search(r"`(hilnas [^`]+)`", err)
    assert m, err
    return shlex.split(m.group(1))[1:]


@pytest.mark.slow
def test_a_missing_lut_names_the_exact_build_command_and_it_works(tmp_path, capsys, sim_agent) -> None:
    ws = tmp_path / "ws"
    assert hilnas(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim_agent.port}")[0] == 0

    code, _, err = hilnas(capsys, ws, *SEARCH)  # the device is in the fleet, not yet measured
    assert code == 2 and "unknown device 'pi'" in err
    command = advised(err)
    assert command == ["--workspace", str(ws), "lut", "build", "--device", "pi", "--space", "nb201",
                       "--space-opt", "C=4", "--space-opt", "N=1", "--dataset", "demo"]

    # a LUT of another shape of the space (C=8): the keys of C=4 are missing, and said with the same command
    assert hilnas(capsys, ws, "lut", "build", "--device", "pi", "--space", "nb201", "--space-opt", "C=8",
                  "--space-opt", "N=1", "--dataset", "demo", "--quiet", "--min-runs", "3", "--min-seconds", "0")[0] == 0
    code, _, err = hilnas(capsys, ws, *SEARCH)
    assert code == 2 and "op key(s) the search space needs" in err and advised(err) == command

    assert hilnas(capsys, ws, *command[2:], "--quiet", "--min-runs", "3", "--min-seconds", "0")[0] == 0
    code, out, err = hilnas(capsys, ws, *SEARCH)
    assert code in (0, 1), err  # it searches now (1: the found network measured over the budget)
    assert "dca on pi: budget latency_ms=1" in out
