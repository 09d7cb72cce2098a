"""Private services and server processes for one chaos run, all removed at the end.

One durable PostgreSQL cluster (fsync and synchronous commit on, as in
production: a crash test on a cluster without fsync would prove nothing)
with a migrated template database that registers the flood's sensors; every
case gets a fresh database cloned from it. Every case also gets a fresh
Mosquitto in a folder of its own with the configuration ``emergency up``
writes (command/services.py), so no session, queue or persistence file of one
case weighs on the next. The control case's broker is the one exception:
Mosquitto with its default configuration (see :class:`DefaultMosquitto`).

The folder, the cluster, its template and the per-case databases and
brokers are the benchmarks' (bench/rig.py: :func:`bench.rig.cluster`,
:class:`bench.rig.Services`); what a service or child process leaves when a
case fails is swept through chaos/procs.py's registry.

Servers are real ``emergency serve`` processes (:class:`Server`), so they can
be SIGKILLed like a crash and restarted under the same ``EMERGENCY_INSTANCE``
(the broker session that holds their alarms while they are away).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import asyncpg

from bench.procs import child_env, python_module
from bench.rig import Services, cluster
from chaos.fleet import build_fleet
from chaos.procs import REGISTRY, ChaosError, Child
from command import accounts
from command.broker_accounts import Role
from command.services import EmbeddedMosquitto, EmbeddedPostgres, _mosquitto_binary, _wait_for_port, free_port
from command.settings import MqttTarget

ADMIN_USERNAME = "chaos-admin"
ADMIN_SECRET = "chaos-admin.password"
CONSOLE_USER = "chaos-commander"
CONSOLE_PASSWORD = "chaos commander password"


def mqtt_login_env(url: str) -> dict[str, str]:
    """A child's environment carrying the broker login of ``url`` (not its argv: others can read that)."""
    target = MqttTarget.from_url(url)
    return child_env(
        {"CHAOS_MQTT_USERNAME": target.username or "", "CHAOS_MQTT_PASSWORD": target.password or ""}
    )


class Broker(EmbeddedMosquitto):
    """The shipped broker (``emergency up``'s configuration), plus an all-topics account for the fuzz case."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, save_every_change=True)
        self.admin_password: str | None = None

    def start(self, port: int | None = None) -> str:
        # Before the broker starts, so it reads the account with the others.
        self.admin_password = self.service_password(Role.ADMIN, ADMIN_USERNAME, ADMIN_SECRET)
        return super().start(port)

    @property
    def admin_url(self) -> str:
        assert self.admin_password is not None, "start the broker first"
        return self.url_for(ADMIN_USERNAME, self.admin_password)

    @property
    def pid(self) -> int | None:
        return self._running_pid()


class DefaultMosquitto:
    """Mosquitto with its default configuration, for the control case.

    Only what it needs to be reachable: a loopback listener on our port and
    anonymous access (it has no password file; the clients' logins are
    ignored). Everything else is Mosquitto's default, in particular
    ``persistence false``: whatever it holds lives in memory only.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    @property
    def url(self) -> str:
        return f"mqtt://anyone:anything@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self._log = (self.directory / "mosquitto.log").open("a")
        self._proc = subprocess.Popen(
            [_mosquitto_binary(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        _wait_for_port(self.port, 20, self._proc)

    def stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Server:
    """One ``emergency serve`` process with a fixed instance name and HTTP port, restartable."""

    def __init__(
        self, rig: Rig, name: str, database_url: str, mqtt_url: str, *, share_group: str | None = None
    ):
        self.name = name
        self.port = free_port()
        extra = {
            "EMERGENCY_DATABASE_URL": database_url,
            "EMERGENCY_MQTT_URL": mqtt_url,
            "EMERGENCY_HTTP_PORT": str(self.port),
            # Fixed across restarts: the broker keeps this instance's session
            # (client id emergency-server-<instance>) and its queued alarms.
            "EMERGENCY_INSTANCE": f"chaos-{name}",
        }
        if share_group is not None:
            extra["EMERGENCY_MQTT_SHARE_GROUP"] = share_group
        self.env = child_env(extra)
        self.log = rig.log_path(f"{name}-server")
        self.child: Child | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.child.proc.pid if self.child is not None and self.child.proc is not None else None

    async def start(self, timeout: float = 60.0) -> float:
        """Start (again) and wait until /healthz answers 200. Returns the wall-clock time it did."""
        self.child = Child(
            f"server {self.name}", python_module("command", "serve"), log=self.log, env=self.env
        )
        await self.child.start(stdout_to_log=True)
        self.starts += 1
        return await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = 60.0) -> float:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while loop.time() < deadline:
                if self.child is None or not self.child.running:
                    raise self.failure("exited before it was healthy")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return time.time()
                await asyncio.sleep(0.05)
        raise self.failure(f"not healthy within {timeout:.0f} s")

    def failure(self, what: str) -> ChaosError:
        if self.child is not None:
            return self.child.failure(what)
        return ChaosError(f"server {self.name}: {what}")

    async def kill(self) -> float:
        """SIGKILL (a crash: nothing cleaned up, the MQTT session left as it was). Returns the time."""
        assert self.child is not None
        when = time.time()
        await self.child.kill()
        return when

    def pause(self) -> None:
        """SIGSTOP: the server holds what it received, acknowledges nothing, reads nothing."""
        assert self.child is not None
        self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.child is not None
        self.child.signal(signal.SIGCONT)

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()

    async def health(self) -> dict[str, Any] | None:
        """/healthz's JSON, or None when it does not answer."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
                http.get(f"{self.url}/healthz") as response,
            ):
                body: dict[str, Any] = await response.json()
                body["http_status"] = response.status
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Rig(Services):
    """The run's folder and PostgreSQL cluster; brokers, databases and servers per case."""

    database_prefix = "c"

    def __init__(self, directory: Path, pg: EmbeddedPostgres) -> None:
        super().__init__(directory, pg, stoppers=REGISTRY.stoppers)

    @asynccontextmanager
    async def broker(self, name: str) -> AsyncIterator[Broker]:
        """A new Mosquitto with the shipped configuration, stopped (SIGTERM) at the end."""
        async with self.running(Broker(self.broker_dir(name))) as broker:
            yield broker

    @asynccontextmanager
    async def default_broker(self, name: str) -> AsyncIterator[DefaultMosquitto]:
        """A new Mosquitto with its default configuration (the control), stopped at the end."""
        async with self.running(DefaultMosquitto(self.broker_dir(name))) as broker:
            yield broker

    @asynccontextmanager
    async def server(
        self, name: str, database_url: str, mqtt_url: str, *, share_group: str | None = None
    ) -> AsyncIterator[Server]:
        """A healthy ``emergency serve``; stopped (SIGTERM, then SIGKILL) at the end, however it ends."""
        server = Server(self, name, database_url, mqtt_url, share_group=share_group)
        try:
            await server.start()
            yield server
        finally:
            await server.stop()


async def console_token(database_url: str) -> str:
    """A commander account in the case's database and a session token for it (one day)."""
    conn = await asyncpg.connect(database_url)
    try:
        await accounts.add_user(conn, username=CONSOLE_USER, password=CONSOLE_PASSWORD, role="commander")
        session = await accounts.login(
            conn, CONSOLE_USER, CONSOLE_PASSWORD, datetime.now(UTC), timedelta(days=1)
        )
    finally:
        await conn.close()
    if session is None:
        raise ChaosError("could not log the console account in")
    return session.token


@asynccontextmanager
async def rig(keep: bool = False) -> AsyncIterator[Rig]:
    """Start the run's PostgreSQL and template; at the end stop every child and service and remove the folder.

    Args:
        keep: leave the run's folder (service data and every log) in place.
    """
    sensors = [(s.id, s.cluster.kind, s.cluster.name, s.lon, s.lat) for s in build_fleet()]
    async with cluster("emergency-chaos-", sensors, keep=keep, stoppers=REGISTRY.stoppers) as (directory, pg):
        try:
            yield Rig(directory, pg)
        finally:
            await REGISTRY.stop_children()
            REGISTRY.sweep()  # brokers of cases that did not get to stop theirs, then PostgreSQL
