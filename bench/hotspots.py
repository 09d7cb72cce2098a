"""Summarise a py-spy profile: ``python -m bench.hotspots FILE [--top N]``.

FILE is what ``python -m bench --profile-dir DIR`` records (py-spy ``--format
raw --idle``: one line per distinct stack, ``frame;frame;... count``). Prints,
per thread, how many samples were busy and how many waiting, then the busy
samples by leaf frame (self time) and by our own source line (inclusive).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Leaf frames where a thread waits rather than computes (paho's _loop as a
# leaf is its select() call: any work it does is in a deeper frame).
WAITING = (
    "EpollSelector.select",
    "Condition.wait",
    "Event.wait",
    "Lock.acquire",
    "select (",
    "poll (",
    "Client._loop (paho/",
)
OWN = re.compile(r"\((command|sensors|dispatch)/[^)]*\)$")


@dataclass(slots=True)
class Profile:
    threads: Counter[str] = field(default_factory=Counter)
    waiting: Counter[str] = field(default_factory=Counter)
    self_busy: Counter[str] = field(default_factory=Counter)
    own_busy: Counter[str] = field(default_factory=Counter)
    busy: int = 0


def _thread(frames: list[str]) -> str:
    if any("paho/mqtt/client.py" in f for f in frames):
        return "paho network thread"
    if frames[0].startswith("<module>"):
        return "event loop (main thread)"
    return frames[0]


def load(path: Path) -> Profile:
    profile = Profile()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = _thread(frames)
        profile.threads[thread] += n
        if frames[-1].startswith(WAITING):
            profile.waiting[thread] += n
            continue
        profile.busy += n
        profile.self_busy[frames[-1]] += n
        for frame in set(frames):
            if OWN.search(frame):
                profile.own_busy[frame] += n
    return profile


def report(profile: Profile, top: int) -> str:
    lines = ["thread                      samples   busy  waiting"]
    for thread, n in profile.threads.most_common():
        waiting = profile.waiting[thread]
        lines.append(f"{thread:<26} {n:8d} {100 * (n - waiting) / n:5.1f}% {100 * waiting / n:6.1f}%")
    busy = max(profile.busy, 1)
    lines += ["", f"busy samples by leaf frame (self), of {profile.busy}:"]
    lines += [f"{n:7d} {100 * n / busy:5.1f}%  {frame}" for frame, n in profile.self_busy.most_common(top)]
    lines += ["", "busy samples by our own frame (inclusive):"]
    lines += [f"{n:7d} {100 * n / busy:5.1f}%  {frame}" for frame, n in profile.own_busy.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    print(report(load(args.file), args.top))


if __name__ == "__main__":
    main()
