"""Consoles that drop at random and resume by seq: ``python -m chaos.consoles``.

Runs in a process of its own, holding ``--count`` WebSocket consoles on the
feed (``/ws``), each on an instance picked at random from ``--urls`` every
time it connects. A console stays connected for an exponentially distributed
time (mean ``--mean-up`` s), then drops, half the time with a clean close and
half the time by aborting the TCP connection (a lost network: no close
frame), reconnects at once to a random instance and says hello with
``since`` = the last seq it applied. It records every seq it receives, in
order, so the orchestrator can compare them with the ``events`` table:
nothing missed, nothing twice, always increasing.

Protocol with the orchestrator: stdout ``ready`` once every console has its
first snapshot; stdin ``until N``: stop dropping, read until every console
has applied seq ``N``, then write the result to ``--out`` (JSON) and print a
one-line summary. The token comes in ``CHAOS_TOKEN`` (not argv: other local
users can read that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect


@dataclass(slots=True)
class Record:
    """What one console saw."""

    start_seq: int | None = None  # the first snapshot's seq
    seqs: list[int] = field(default_factory=list)  # every event seq received, in order
    connections: int = 0
    drops: int = 0
    resets: int = 0  # a snapshot instead of the replay asked for
    server_closes: Counter[int] = field(default_factory=Counter)
    # Drop → first frame on the new connection, seconds, for drops while events flowed.
    resume_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Console:
    def __init__(self, index: int, urls: list[str], token: str, mean_up: float, rng: random.Random) -> None:
        self.index = index
        self.urls = urls
        self.token = token
        self.mean_up = mean_up
        self.rng = rng
        self.record = Record()
        self.since: int | None = None
        self.ready = asyncio.Event()
        self.target: int | None = None  # set by "until N": stop dropping, read up to N
        self.done = asyncio.Event()
        self._dropped_at: float | None = None  # when the last connection went, until a frame came again

    async def run(self) -> None:
        while not self.done.is_set():
            url = self.rng.choice(self.urls)
            try:
                async with connect(url, open_timeout=10, max_size=None, close_timeout=2) as ws:
                    self.record.connections += 1
                    hello: dict[str, Any] = {"type": "hello", "token": self.token}
                    if self.since is not None:
                        hello["since"] = self.since
                    await ws.send(json.dumps(hello))
                    await self._session(ws)
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None:
                    self.record.server_closes[exc.rcvd.code] += 1
                self._dropped_at = self._dropped_at or time.monotonic()
                await asyncio.sleep(0.05)
            except (OSError, TimeoutError) as exc:
                # An instance restarting or refusing: try another in a moment.
                self.record.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.2)

    async def _session(self, ws: ClientConnection) -> None:
        """Read until it is time to drop (or, once told the target, until it is reached)."""
        up_until = time.monotonic() + self.rng.expovariate(1 / self.mean_up)
        while True:
            if self.target is not None and self.since is not None and self.since >= self.target:
                self.done.set()
            if self.done.is_set():
                await ws.close()
                return
            dropping = self.target is None
            timeout = max(0.0, up_until - time.monotonic()) if dropping else 1.0
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                if not dropping:
                    continue
                self.record.drops += 1
                self._dropped_at = time.monotonic()
                if self.rng.random() < 0.5:
                    await ws.close()
                else:
                    ws.transport.abort()  # the network went: no close frame, no FIN handshake
                return
            if self._dropped_at is not None:
                if self.target is None:  # while events flow; the final drain has gaps of its own
                    self.record.resume_s.append(time.monotonic() - self._dropped_at)
                self._dropped_at = None
            self._apply(json.loads(frame))

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            if self.record.start_seq is None:
                self.record.start_seq = int(message["seq"])
                self.ready.set()
            else:
                # Asked for a replay, got a fresh picture: the missed events are not coming.
                self.record.resets += 1
            self.since = int(message["seq"])
        elif kind == "event":
            self._seq(int(message["seq"]))
        elif kind == "batch":
            for event in message["events"]:
                self._seq(int(event["seq"]))
        elif kind == "error":
            self.record.errors.append(json.dumps(message)[:200])

    def _seq(self, seq: int) -> None:
        self.record.seqs.append(seq)
        if self.since is None or seq > self.since:
            self.since = seq


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> dict[str, Any]:
    token = os.environ["CHAOS_TOKEN"]
    rng = random.Random(args.seed)
    consoles = [
        Console(i, args.urls.split(","), token, args.mean_up, random.Random(rng.random()))
        for i in range(args.count)
    ]
    async with asyncio.TaskGroup() as group:
        for console in consoles:
            group.create_task(console.run(), name=f"console-{console.index}")
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in consoles)), 60)
        print("ready", flush=True)
        stdin = await _stdin_lines()
        target: int | None = None
        while target is None:
            line = (await stdin.readline()).decode()
            if not line:
                raise SystemExit("consoles: the orchestrator went away")
            if line.startswith("until "):
                target = int(line.split()[1])
        for console in consoles:
            console.target = target
        # Past the timeout the consoles short of the target say so in the result.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in consoles)), args.drain_timeout)
        for console in consoles:
            console.done.set()
    return {
        "target": target,
        "consoles": [asdict(c.record) | {"last": c.since} for c in consoles],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chaos.consoles", description=__doc__.split("\n")[0])
    p.add_argument("--urls", required=True, help="comma-separated ws://host:port/ws of the instances")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--mean-up", type=float, default=3.0, help="mean seconds connected before a drop")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result))
    reached = sum(1 for c in result["consoles"] if (c["last"] or 0) >= result["target"])
    print(json.dumps({"consoles": len(result["consoles"]), "reached_target": reached}), flush=True)


if __name__ == "__main__":
    main()
