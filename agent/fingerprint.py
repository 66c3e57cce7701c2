"""Describes the machine the agent runs on, and derives a stable fingerprint from it.

LUT rows are keyed by the fingerprint, so it covers only what changes latency: CPU model,
cores, memory (rounded), OS family and architecture, and the runtime versions. It leaves out
the hostname, the agent version and the kernel release, so renaming or patching a board does
not orphan its LUTs. Nothing here imports a runtime: versions come from package metadata.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
from pathlib import Path

from hilnas.agent.backends import BACKEND_NAMES, get_backend
from hilnas.agent.results import DeviceInfo

# /proc/cpuinfo keys naming the CPU, most specific first: the board on a Raspberry Pi
# ("Model"), the SoC on Android ("Hardware"), the CPU on x86 and most others ("model name").
_CPUINFO_KEYS = ("Model", "Hardware", "model name", "Processor", "cpu model", "cpu")
_MEMORY_QUANTUM = 256 * 1024 * 1024  # MemTotal moves a little between kernels; round it


def cpu_model(cpuinfo: str | None = None) -> str:
    """A human-readable CPU (or board) name, e.g. "Raspberry Pi 4 Model B Rev 1.4"."""
    if cpuinfo is None:
        cpuinfo = _read("/proc/cpuinfo")
    values: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if sep and value and key not in values:
            values[key] = value
    for key in _CPUINFO_KEYS:
        # "Processor" on old ARM kernels is a name; on others "processor" is an index (skipped
        # by the case-sensitive match).
        if key in values and not values[key].isdigit():
            return values[key]
    model = _read("/sys/firmware/devicetree/base/model").strip("\x00 \n")  # ARM boards, Jetson
    return model or platform.processor() or platform.machine() or "unknown"


def memory_bytes() -> int:
    """Physical memory (MemTotal), bytes; 0 when unknown."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def is_android() -> bool:
    return hasattr(sys, "getandroidapilevel") or "ANDROID_ROOT" in os.environ


def os_family() -> str:
    """The stable part of the OS: system and architecture, e.g. "Linux x86_64", "Android aarch64"."""
    return f"{'Android' if is_android() else platform.system()} {platform.machine()}"


def os_description() -> str:
    """The OS in full, for people: distribution, kernel release and architecture."""
    pretty = ""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    if is_android():
        api = sys.getandroidapilevel() if hasattr(sys, "getandroidapilevel") else "?"
        pretty = f"Android (API {api})"
    base = f"{platform.system()} {platform.release()} {platform.machine()}"
    return f"{pretty} ({base})" if pretty else base


def runtime_versions() -> dict[str, str]:
    """Backend name -> runtime and version (e.g. "onnxruntime 1.31.1") of the installed ones."""
    versions = {}
    for name in BACKEND_NAMES:
        backend = get_backend(name)
        if backend.available():
            versions[name] = backend.runtime_version()
    return versions


def fingerprint(*, cpu_model: str, cpu_cores: int, memory_bytes: int, os_family: str,
                runtime_versions: dict[str, str]) -> str:
    """First 16 hex digits of the sha256 of a canonical JSON of the stable fields."""
    stable = {
        "cpu_model": cpu_model,
        "cpu_cores": cpu_cores,
        "memory_bytes": round(memory_bytes / _MEMORY_QUANTUM) * _MEMORY_QUANTUM,
        "os": os_family,
        "runtimes": dict(sorted(runtime_versions.items())),
    }
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe_host(default_backend: str = "onnxruntime") -> DeviceInfo:
    """DeviceInfo of this machine (limit fields and energy meters are left to the caller)."""
    from hilnas import __version__

    cpu, cores, memory = cpu_model(), os.cpu_count() or 1, memory_bytes()
    versions = runtime_versions()
    return DeviceInfo(
        fingerprint=fingerprint(cpu_model=cpu, cpu_cores=cores, memory_bytes=memory,
                                os_family=os_family(), runtime_versions=versions),
        hostname=socket.gethostname(),
        cpu_model=cpu,
        cpu_cores=cores,
        memory_bytes=memory,
        os=os_description(),
        backends=tuple(versions),
        runtime_versions=versions,
        agent_version=__version__,
        default_backend=default_backend,
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
