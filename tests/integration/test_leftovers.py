"""Private services left running by a run that died without cleaning up.

PostgreSQL and Mosquitto run in sessions of their own, so a SIGKILLed owner
(or one whose terminal closed, before SIGHUP was handled) leaves them
running; the next start in the same folder must stop them cleanly and carry
on with the data, and must not touch a folder whose owner is still alive.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from command.broker_accounts import Role
from command.services import EmbeddedMosquitto, EmbeddedPostgres, ServiceError, free_port
from tests.integration.helpers import EMERGENCY, ROOT, connected, processes_using, up_env

# Starts both services in the folder given as argv[1], writes to each, says
# "ready" with what it wrote, and runs until SIGTERM (then stops them) or SIGKILL.
OWNER = """
import asyncio, json, signal, sys, time
from pathlib import Path
import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from command.broker_accounts import Role
from command.services import EmbeddedMosquitto, EmbeddedPostgres
from command.settings import MqttTarget

folder = Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pg = EmbeddedPostgres(folder / "pg", durable=False)
broker = EmbeddedMosquitto(folder / "mosquitto", save_every_change=False)
try:
    url = pg.start()
    unit_password = broker.set_password(Role.UNIT, "units/U-1")
    broker.start()

    async def write() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        await conn.close()

    asyncio.run(write())
    server = MqttTarget.from_url(broker.url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="owner")
    client.username_pw_set(server.username, server.password)
    client.connect(server.host, server.port)
    client.loop_start()
    client.publish("units/U-1/dispatch", b"kept order", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    wrote = {"pg_port": pg.port, "mq_port": broker.port, "unit_password": unit_password}
    print(json.dumps(wrote), flush=True)
    while True:
        time.sleep(1)
finally:
    broker.stop()
    pg.stop()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _owner(folder: Path) -> tuple[subprocess.Popen[str], dict[str, object], int, int]:
    """Start the owner process; return it, what it wrote, and the postmaster's and broker's pids."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the owner process died (exit status {proc.wait()})"
    postmaster = int((folder / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    mosquitto = int((folder / "mosquitto" / "mosquitto.pid").read_text())
    return proc, json.loads(line), postmaster, mosquitto


async def _kept_row(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT v FROM kept"))
    finally:
        await conn.close()


def test_services_left_by_a_killed_owner_are_stopped_cleanly_and_their_data_kept(private_dir: Path) -> None:
    proc, wrote, postmaster, mosquitto = _owner(private_dir)
    proc.kill()
    proc.wait()
    assert _alive(postmaster) and _alive(mosquitto), "the orphans this test is about never existed"

    pg = EmbeddedPostgres(private_dir / "pg", durable=False)
    broker = EmbeddedMosquitto(private_dir / "mosquitto", save_every_change=False)
    try:
        pg.start()
        broker.start()
        assert not _alive(postmaster) and not _alive(mosquitto)
        # Stopped before the ports were chosen, so the recorded ones were free again.
        assert (pg.port, broker.port) == (wrote["pg_port"], wrote["mq_port"])
        assert asyncio.run(_kept_row(pg.url)) == "still here"
        # The leftover broker was stopped with SIGTERM, which saves its
        # persistence: the retained order (and the unit's account) survived.
        unit = connected(broker.port, "units/U-1", str(wrote["unit_password"]))
        try:
            unit.subscribe("units/U-1/dispatch")
            unit.wait(lambda: unit.messages, "the retained order")
            assert unit.messages == [("units/U-1/dispatch", b"kept order")]
        finally:
            unit.close()
    finally:
        broker.stop()
        pg.stop()


def test_a_folder_whose_owner_is_alive_is_left_alone(private_dir: Path) -> None:
    proc, _, postmaster, mosquitto = _owner(private_dir)
    try:
        with pytest.raises(ServiceError, match=rf"belongs to process {proc.pid}, which is still running"):
            EmbeddedPostgres(private_dir / "pg", durable=False).start()
        with pytest.raises(ServiceError, match=rf"belongs to process {proc.pid}, which is still running"):
            EmbeddedMosquitto(private_dir / "mosquitto").start()
        assert _alive(postmaster) and _alive(mosquitto)
    finally:
        proc.terminate()  # the owner stops its services itself
        assert proc.wait(timeout=60) == 0
    assert not _alive(postmaster) and not _alive(mosquitto)


def test_a_broker_account_can_be_added_while_another_process_runs_the_broker(private_dir: Path) -> None:
    proc, wrote, _, _ = _owner(private_dir)
    try:
        other = EmbeddedMosquitto(private_dir / "mosquitto")  # as `emergency sensors add` does
        password = other.set_password(Role.SENSOR, "sensors/S-1")  # returns once the broker takes it
        connected(int(str(wrote["mq_port"])), "sensors/S-1", password).close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0


# -- `emergency up`, killed, then run again; and a closed terminal ----------------------


def _up(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    # A session of its own, like a terminal's job: killpg reaches it and only it.
    proc = subprocess.Popen(
        [EMERGENCY, "up", "--no-demo", "--no-simulate"],
        env=up_env(data_dir, port, "leftover"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"emergency up exited with {proc.returncode}: {proc.communicate()[0]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                health = json.loads(response.read())
            assert health["database"] == "ok" and health["broker"] == "ok", health
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"emergency up never became healthy: {proc.communicate()[0]}")


def test_up_after_a_sigkilled_up_starts_and_a_hangup_leaves_nothing_behind(private_dir: Path) -> None:
    first, _ = _up(private_dir)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert processes_using(private_dir), "SIGKILL left no orphans: this test would prove nothing"

    second, _ = _up(private_dir)  # failed with "another server might be running" before
    os.killpg(second.pid, signal.SIGHUP)  # what closing the terminal sends
    output, _ = second.communicate(timeout=60)
    assert "left running by a run that ended without cleaning up" in output
    assert second.returncode == 0, output
    assert processes_using(private_dir) == []
