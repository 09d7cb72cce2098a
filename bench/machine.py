"""What a run ran on: enough to compare two results files honestly."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from command.services import _mosquitto_binary, _pg_bindir

REPO = Path(__file__).resolve().parent.parent


def _first_line(argv: list[str]) -> str:
    """The first line a tool prints (``mosquitto -h`` exits non-zero by design)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def machine_info() -> dict[str, str]:
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "memory": _memory(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": _first_line([str(_pg_bindir() / "postgres"), "--version"]),
        "mosquitto": _first_line([_mosquitto_binary(), "-h"]),
        "paho-mqtt": _version("paho-mqtt"),
        "asyncpg": _version("asyncpg"),
        "aiohttp": _version("aiohttp"),
        "revision": _git_revision(),
        "load": load_average(),
    }


def describe(m: dict[str, str], load_end: str) -> str:
    """``Machine: …; revision R. Load average L at the start, E at the end`` (no final stop)."""
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['postgres']}; {m['mosquitto']}; paho-mqtt {m['paho-mqtt']}; asyncpg {m['asyncpg']}; "
        f"aiohttp {m.get('aiohttp', '?')}; revision {m['revision']}. "
        f"Load average {m['load']} at the start, {load_end} at the end"
    )


def load_average() -> str:
    """1, 5 and 15 minute load: another job on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"
