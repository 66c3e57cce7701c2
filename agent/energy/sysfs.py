"""Reading sysfs under an injectable root, and running helper commands (vcgencmd) safely.

Every meter and probe resolves ``/sys/...`` under ``root`` so tests point them at fake trees,
and takes a ``reader`` (path -> text) so a test can make a file unreadable even when the test
itself runs as root (root ignores mode bits, so a chmod 000 alone proves nothing there).
"""
from __future__ import annotations

import errno
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

Reader = Callable[[Path], str]
Runner = Callable[[Sequence[str]], str]

# errno values that mean "the device behind this file is gone", as opposed to a bad value.
GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN})


def read_text(path: Path) -> str:
    """The stripped content of a (small) sysfs file. Raises OSError like ``open`` does."""
    with open(path, "rb", buffering=0) as f:   # unbuffered: one read() syscall per file
        return f.read(4096).decode("utf-8", "replace").strip()


def sys_path(root: Path, absolute: str) -> Path:
    """``/sys/class/x`` resolved under ``root``."""
    return Path(root) / absolute.lstrip("/")


def try_read(reader: Reader, path: Path) -> str | None:
    """The file's text, or None when it is missing or unreadable (for optional probes)."""
    try:
        return reader(path)
    except (OSError, UnicodeError):
        return None


def try_read_number(reader: Reader, path: Path) -> float | None:
    """The file as a number, or None when missing, unreadable or not a number."""
    text = try_read(reader, path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def natural_key(path: Path) -> list[object]:
    """Sort hwmon10 after hwmon9 and cpu10 after cpu9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class CommandError(Exception):
    """A helper command failed, timed out or printed an error."""


class CommandNotFound(CommandError):
    """The helper command is not installed here."""


def run_command(argv: Sequence[str], timeout_s: float = 2.0) -> str:
    """Run ``argv`` without a shell and return its stdout; raise ``CommandError`` otherwise."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise CommandNotFound(f"{argv[0]} not found on PATH")
    try:
        done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True,
                              timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{argv[0]} timed out after {timeout_s} s") from exc
    except OSError as exc:
        raise CommandError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CommandError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done.stdout
