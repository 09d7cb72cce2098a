"""Child processes of a chaos run, and the sweep that stops whatever is left.

Every child (server, publisher, console fleet) runs in a session of its own,
so a Ctrl-C in the terminal reaches only the orchestrator, which then stops
them in order (servers before the broker they talk to). Each child registers
with :data:`REGISTRY` while it runs, and so does every service. When the
run's block ends, however it ends, the children still registered are stopped
and then the services; ``python -m chaos`` sweeps once more after its event
loop has stopped, so a failure half-way through leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent


class ChaosError(RuntimeError):
    """A case could not be run; the message says why."""


class Registry:
    """Live children (by pid) and the stop callbacks of live services, newest last."""

    def __init__(self) -> None:
        self.children: dict[int, Child] = {}
        self.stoppers: list[Callable[[], None]] = []

    async def stop_children(self) -> None:
        """Stop every live child (SIGTERM, then SIGKILL after a few seconds), newest first."""
        for child in reversed(list(self.children.values())):
            await child.stop(grace=5)

    def sweep(self) -> None:
        """Synchronously SIGKILL every registered child, then stop every service (newest first)."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
            del self.children[pid]
        while self.stoppers:
            stop = self.stoppers.pop()
            with contextlib.suppress(Exception):  # one failing stop must not keep the others running
                stop()


REGISTRY = Registry()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Child:
    """One child process: stdout read by us (lines), stderr to ``log``."""

    def __init__(
        self, name: str, argv: list[str], *, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env) if env is not None else None
        self.proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, *, stdout_to_log: bool = False) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=self._log_file if stdout_to_log else asyncio.subprocess.PIPE,
            stderr=self._log_file,
            start_new_session=True,
            limit=16 * 1024 * 1024,
        )
        REGISTRY.children[self.proc.pid] = self

    def failure(self, what: str) -> ChaosError:
        text = tail(self.log)
        return ChaosError(f"{self.name}: {what}" + (f"\n--- {self.log} ---\n{text}" if text else ""))

    async def readline(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise self.failure(f"no output within {timeout:.0f} s") from None
        if not line:
            await self.proc.wait()
            raise self.failure(f"exited with status {self.proc.returncode}")
        return line.decode().strip()

    async def send(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the child to exit by itself; its last stdout line is a JSON object."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            out = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            raise self.failure(f"did not finish within {timeout:.0f} s") from None
        self._forget()
        lines = [line for line in out.decode().splitlines() if line.strip()]
        if self.proc.returncode != 0 or not lines:
            raise self.failure(f"exited with status {self.proc.returncode}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL and reap (a crash: nothing of the child runs again)."""
        if self.proc is not None and self.proc.returncode is None:
            self.signal(signal.SIGKILL)
            await self.proc.wait()
        self._forget()

    async def stop(self, grace: float = 15.0) -> None:
        """SIGCONT (in case it is paused) and SIGTERM; SIGKILL after ``grace`` s. Safe to call twice."""
        proc = self.proc
        try:
            if proc is not None and proc.returncode is None:
                self.signal(signal.SIGCONT)
                self.signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    self.signal(signal.SIGKILL)
                    await proc.wait()
        finally:
            self._forget()

    def _forget(self) -> None:
        if self.proc is not None:
            REGISTRY.children.pop(self.proc.pid, None)
            if self.proc.stdin is not None and not self.proc.stdin.is_closing():
                self.proc.stdin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
