"""Child processes of a benchmark run, each stopped when its block ends, even on error.

Publisher, subscriber and server each run in a process of their own, so no
two of them share an interpreter (and a GIL) with each other or with the
orchestrator. Their stderr goes to a log file in the run's folder; the tail
of it is quoted when a child fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
# The subscriber's result carries every latency: one long line.
_STDOUT_LIMIT = 64 * 1024 * 1024


class BenchError(RuntimeError):
    """A scenario could not be measured; the message says why."""


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Child:
    """One child process: stdout read by us, stderr (and stdout with ``log_stdout``) to ``log``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        log_stdout: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env) if env is not None else None
        self._stdin = stdin
        self._log_stdout = log_stdout
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        self._log_file = _open_log(self.log)
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if self._stdin else asyncio.subprocess.DEVNULL,
            stdout=self._log_file if self._log_stdout else asyncio.subprocess.PIPE,
            stderr=self._log_file,
            limit=_STDOUT_LIMIT,
        )

    def failure(self, what: str) -> BenchError:
        tail = _tail(self.log)
        return BenchError(f"{self.name}: {what}" + (f"\n--- {self.log} ---\n{tail}" if tail else ""))

    async def readline(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        except TimeoutError:
            raise self.failure(f"no output within {timeout:.0f} s") from None
        if not line:
            await self._proc.wait()
            raise self.failure(f"exited with status {self._proc.returncode}")
        return line.decode().strip()

    async def send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode() + b"\n")
        await self._proc.stdin.drain()

    async def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the child to finish; its last stdout line is a JSON object."""
        assert self._proc is not None and self._proc.stdout is not None
        try:
            out = await asyncio.wait_for(self._proc.stdout.read(), timeout)
            await asyncio.wait_for(self._proc.wait(), 30)
        except TimeoutError:
            raise self.failure(f"did not finish within {timeout:.0f} s") from None
        lines = [line for line in out.decode().splitlines() if line.strip()]
        if self._proc.returncode != 0 or not lines:
            raise self.failure(f"exited with status {self._proc.returncode}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    async def stop(self, grace: float = 20.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig``, then SIGKILL after ``grace`` seconds. Safe to call twice."""
        proc = self._proc
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


@contextlib.asynccontextmanager
async def running(child: Child) -> AsyncIterator[Child]:
    """Start ``child``; stop it when the block ends, however it ends."""
    try:
        await child.start()
        yield child
    finally:
        await child.stop()


def python_module(module: str, *args: str | int | float | Path) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without any EMERGENCY_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")}
    env.update(extra or {})
    return env
