"""CPU seconds used by the processes of a scenario, from /proc (Linux).

On a machine with few cores the actors compete for CPU; how many seconds each
one burned per thousand messages says who the bottleneck is. Processes that
exit during the interval take their CPU time with them (the publisher and the
subscriber report their own, from getrusage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


def children_of(parent: int) -> list[int]:
    """``parent`` and its direct children (PostgreSQL's postmaster and its backends)."""
    found = [parent]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def postgres_pids(datadir: Path) -> list[int]:
    """The postmaster of the cluster in ``datadir`` and its backends."""
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return children_of(postmaster)


def pids_with_argument(argument: str) -> list[int]:
    """Processes whose command line contains ``argument`` exactly (e.g. a broker's config path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv:
            found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, every process and the kernel (/proc/stat).

    Beside the seconds our own processes used, it says how much of the
    machine something else took during a measurement: on a shared machine
    that is the first thing to know about a figure.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return (user + nice + system + irq + softirq + steal) / _TICK


def _per_pid(pids: list[int]) -> dict[int, float]:
    return {pid: seconds for pid in pids if (seconds := process_cpu(pid)) is not None}


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds of named process groups between ``start`` and ``stop``.

    Each group is a function listing its processes, asked again at ``stop``:
    a process started in between (a new PostgreSQL backend) counts from zero.
    """

    groups: dict[str, Callable[[], list[int]]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _started: float = 0.0

    def start(self) -> None:
        self._before = {name: _per_pid(list_pids()) for name, list_pids in self.groups.items()}
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Seconds used by each group, and ``wall`` (elapsed)."""
        used = {"wall": time.monotonic() - self._started}
        for name, list_pids in self.groups.items():
            before = self._before.get(name, {})
            now = _per_pid(list_pids())
            used[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())
        return used
