"""A fleet of consoles on the WebSocket feed: ``python -m bench.consoles``.

Runs in its own process (the orchestrator starts several when one Python
process cannot keep up with the frames), holds ``--count`` WebSocket
connections to ``/ws`` and records, for every ``incident.*`` event that
carries ``last_alarm``, the receipt time minus the alarm's ``time`` (the
moment the publisher handed it to paho; every clock is this machine's).

Measurements are grouped by the alarm id's prefix (``lat1000-17`` counts
under ``lat1000``), so the orchestrator tells a warm-up from the measured
run, or one ramp step from the next, by the ids it publishes. The named
alarm is the newest of its batch for that incident; console 0 of the first
process also keeps a trace (alarm number, receipt time) from which the
orchestrator works out when *every* alarm first reached a screen.

Protocol with the orchestrator, one line each way:

- stdout ``{"ready": n, ...}`` once every console has its snapshot;
- stdin ``stats``: stdout one JSON line (CPU seconds, frames, open sockets);
- stdin ``stop`` (or end of input): close everything, write the latencies to
  ``--out`` (``<out>.<prefix>.f64``, raw doubles in milliseconds), print the
  result as the last stdout line and exit.

Consoles do not reconnect: a socket the server closes (1013 when a console
fell more than its queue behind) is counted by close code, so a result
shows when the server shed consoles rather than hiding it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet import parse_alarm_id

# The wire is compact JSON (separators without spaces) and ``last_alarm`` is a
# flat object: a regex finds it without parsing the whole frame, which for a
# thousand consoles would cost the fleet more than the server spends sending.
LAST_ALARM = re.compile(r'"last_alarm":(\{[^{}]*\})')
CONNECT_TIMEOUT_S = 60.0
_CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
# A measurement the fleet does not count: a last_alarm outside any prefix.
_IGNORED = ("", -1, 0.0)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Fleet:
    def __init__(self, args: argparse.Namespace, tokens: list[str]) -> None:
        self.args = args
        self.tokens = tokens
        self.sockets: list[aiohttp.ClientWebSocketResponse | None] = [None] * args.count
        # prefix -> latencies (ms), in receipt order, all consoles together
        self.latencies: dict[str, array.array[float]] = {}
        # prefix -> per-console count of matching events received
        self.received: dict[str, array.array[int]] = {}
        self.trace: list[tuple[str, int, float]] = []
        self.frames = 0
        self.frame_bytes = 0
        self.errors: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.connect_errors: list[str] = []
        self.cpu_s = 0.0
        # The same last_alarm text reaches every console: parse it once.
        self._parsed: dict[str, tuple[str, int, float]] = {}

    def _lookup(self, text: str) -> tuple[str, int, float]:
        hit = self._parsed.get(text)
        if hit is None:
            hit = _IGNORED
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(text)
                split = parse_alarm_id(str(doc["id"]))
                if split is not None:
                    sent = datetime.fromisoformat(doc["time"]).timestamp()
                    hit = (split[0], split[1], sent)
            self._parsed[text] = hit
        return hit

    def _record(self, index: int, data: str, received: float) -> None:
        self.frames += 1
        self.frame_bytes += len(data)
        for match in LAST_ALARM.finditer(data):
            prefix, number, sent = self._lookup(match.group(1))
            if not prefix:
                continue
            lat = self.latencies.get(prefix)
            if lat is None:
                lat = self.latencies[prefix] = array.array("d")
                self.received[prefix] = array.array("i", bytes(4 * self.args.count))
            lat.append((received - sent) * 1000)
            self.received[prefix][index] += 1
            if index == 0 and self.args.trace:
                self.trace.append((prefix, number, received))

    async def connect(self, http: aiohttp.ClientSession, index: int, gate: asyncio.Semaphore) -> None:
        token = self.tokens[(self.args.first + index) % len(self.tokens)]
        async with gate:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    ws = await http.ws_connect(
                        self.args.url,
                        autoping=True,  # answers the server's heartbeat pings
                        max_msg_size=0,
                        # A browser offers permessage-deflate; aiohttp's client does
                        # not unless asked. --compress makes the fleet ask.
                        compress=15 if self.args.compress else 0,
                    )
                    await ws.send_str(json.dumps({"type": "hello", "token": token}))
                    first = await ws.receive()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.connect_errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            if first.type != aiohttp.WSMsgType.TEXT or '"type":"snapshot"' not in first.data[:200]:
                self.connect_errors.append(f"first frame was not a snapshot: {str(first.data)[:120]!r}")
                await ws.close()
                return
            self.sockets[index] = ws

    async def read(self, index: int) -> None:
        ws = self.sockets[index]
        if ws is None:
            return
        while True:
            message = await ws.receive()
            received = time.time()
            if message.type == aiohttp.WSMsgType.TEXT:
                self._record(index, message.data, received)
                if message.data.startswith('{"type":"error"'):
                    self.errors[message.data[:120]] += 1
            elif message.type in _CLOSING:
                self.closed[str(ws.close_code)] += 1
                return
            elif message.type == aiohttp.WSMsgType.ERROR:
                self.closed[f"error: {ws.exception()!r}"[:80]] += 1
                return

    @property
    def open(self) -> int:
        return sum(1 for ws in self.sockets if ws is not None and not ws.closed)


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


async def run(fleet: Fleet) -> float:
    """Connect, report ready, record until told to stop. Returns the connect time in seconds."""
    args = fleet.args
    # No connection limit: each console holds one connection for the whole run.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.monotonic()
        gate = asyncio.Semaphore(args.concurrency)
        await asyncio.gather(*(fleet.connect(http, i, gate) for i in range(args.count)))
        connect_s = time.monotonic() - started
        readers = [asyncio.create_task(fleet.read(i), name=f"console-{i}") for i in range(args.count)]
        cpu_start = cpu_seconds()
        _say(
            {
                "ready": fleet.open,
                "failed": args.count - fleet.open,
                "connect_s": connect_s,
                "connect_errors": fleet.connect_errors[:5],
            }
        )
        stdin = await _stdin_lines()
        cpu = 0.0
        try:
            while True:
                line = (await stdin.readline()).decode().strip()
                if line == "stats":
                    _say(
                        {
                            "cpu_s": cpu_seconds() - cpu_start,
                            "frames": fleet.frames,
                            "frame_bytes": fleet.frame_bytes,
                            "open": fleet.open,
                        }
                    )
                    continue
                break  # "stop" or end of input
            cpu = cpu_seconds() - cpu_start
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            # All at once, each bounded: one handshake at a time would take
            # minutes for thousands, and the server notices a drop regardless.
            still_open = [ws for ws in fleet.sockets if ws is not None and not ws.closed]
            await asyncio.gather(
                *(asyncio.wait_for(ws.close(), 2.0) for ws in still_open), return_exceptions=True
            )
    fleet.cpu_s = cpu
    return connect_s


def _spread(fleet: Fleet, counts: array.array[int]) -> list[int]:
    connected = [counts[i] for i, ws in enumerate(fleet.sockets) if ws is not None] or [0]
    return [min(connected), max(connected), sum(connected)]


def finish(fleet: Fleet, connect_s: float) -> dict[str, Any]:
    """Write the latency files; the result line."""
    args = fleet.args
    files = {}
    for prefix, values in fleet.latencies.items():
        path = Path(f"{args.out}.{prefix}.f64")
        with path.open("wb") as f:
            values.tofile(f)
        files[prefix] = str(path)
    return {
        "consoles": args.count,
        "connected": args.count - len(fleet.connect_errors),
        "connect_s": connect_s,
        "cpu_s": fleet.cpu_s,
        "frames": fleet.frames,
        "frame_bytes": fleet.frame_bytes,
        "latency_files": files,
        # prefix -> [min, max, total] of matching events per connected console
        "received": {p: _spread(fleet, counts) for p, counts in fleet.received.items()},
        "closed": dict(fleet.closed),
        "errors": dict(fleet.errors.most_common(5)),
        "trace": fleet.trace,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.consoles", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="ws://host:port/ws")
    p.add_argument("--tokens", required=True, help="a file of bearer tokens, one a line")
    p.add_argument("--first", type=int, default=0, help="console i uses token first+i")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--out", required=True, help="latencies go to OUT.<prefix>.f64")
    p.add_argument("--trace", action="store_true", help="console 0 keeps (prefix, alarm number, receipt)")
    p.add_argument("--compress", action="store_true", help="offer permessage-deflate, as browsers do")
    p.add_argument("--concurrency", type=int, default=50, help="handshakes in progress at once")
    args = p.parse_args(argv)
    fleet = Fleet(args, [t for t in Path(args.tokens).read_text().split() if t])
    connect_s = asyncio.run(run(fleet))
    _say(finish(fleet, connect_s))


if __name__ == "__main__":
    main()
