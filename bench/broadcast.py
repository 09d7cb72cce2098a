"""A bare aiohttp WebSocket broadcast server: ``python -m bench.broadcast``.

The raw baseline of the fan-out benchmark: the same aiohttp, the same
WebSocket settings as ``/ws`` (10 s heartbeat, aiohttp's default
compression offer), the same consoles, and frames of the same shape and
size as our ``incident.updated`` events; but nothing else: no database, no
outbox, no authentication, no per-console buffer or writer task. Each
console says hello, gets an empty snapshot, then every broadcast.

Protocol with the orchestrator: prints ``{"port": P}`` when listening; then
reads lines on stdin:

- ``broadcast PREFIX COUNT INTERVAL``: send COUNT frames, one every
  INTERVAL seconds, to every console; the frame's ``last_alarm`` is
  ``{"id": "PREFIX-n", "time": <the moment the send loop starts>}``, so the
  fleet measures the same thing as against our server. Prints one JSON line
  (frames sent, CPU seconds) when done.
- ``stop`` (or end of input): prints a last JSON line and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

HEARTBEAT_S = 10.0  # the server's default EMERGENCY_WS_HEARTBEAT_S


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Broadcaster:
    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.clients: set[web.WebSocketResponse] = set()
        self.failed_sends = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=64 * 1024)
        await ws.prepare(request)
        hello = await ws.receive()
        if hello.type != WSMsgType.TEXT:
            return ws
        await ws.send_str('{"type":"snapshot","seq":0,"incidents":[],"units":[],"reset":false}')
        self.clients.add(ws)
        try:
            async for _ in ws:
                pass  # the consoles say nothing after hello
        finally:
            self.clients.discard(ws)
        return ws

    def frame(self, prefix: str, n: int, seq: int) -> str:
        data = dict(self.template)
        data["last_alarm"] = {
            "id": f"{prefix}-{n}",
            "time": datetime.now(UTC).isoformat(),
            "sensor_id": "B-broadcast",
        }
        return json.dumps(
            {"type": "event", "seq": seq, "name": "incident.updated", "data": data}, separators=(",", ":")
        )

    async def broadcast(self, prefix: str, count: int, interval: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        cpu = cpu_seconds()
        start = loop.time()
        sent = 0
        for n in range(count):
            frame = self.frame(prefix, n, n + 1)
            # The plain loop: each send only queues on the transport unless
            # its buffer is over the high-water mark.
            for ws in list(self.clients):
                try:
                    await ws.send_str(frame)
                    sent += 1
                except ConnectionError:
                    self.failed_sends += 1
            delay = start + (n + 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        return {"frames": sent, "frame_bytes": len(frame) if count else 0, "cpu_s": cpu_seconds() - cpu}


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace, template: dict[str, Any]) -> None:
    caster = Broadcaster(template)
    app = web.Application()
    app.router.add_get("/ws", caster.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    print(json.dumps({"port": args.port}), flush=True)
    stdin = await _stdin()
    try:
        while True:
            words = (await stdin.readline()).decode().split()
            if words[:1] == ["broadcast"] and len(words) == 4:
                result = await caster.broadcast(words[1], int(words[2]), float(words[3]))
                print(json.dumps(result | {"clients": len(caster.clients)}), flush=True)
                continue
            break
    finally:
        # All at once, each bounded: a console that is gone cannot hold this up.
        await asyncio.gather(
            *(asyncio.wait_for(ws.close(), 1.0) for ws in list(caster.clients)), return_exceptions=True
        )
        await runner.cleanup()
    print(json.dumps({"failed_sends": caster.failed_sends, "cpu_s": cpu_seconds()}), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--template", help="a JSON file: the data of one of our incident events")
    args = p.parse_args(argv)
    template = json.loads(Path(args.template).read_text()) if args.template else {}
    asyncio.run(run(args, template))


if __name__ == "__main__":
    main()
